//! Small Blender scenes the tests render.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;

/// Saves Blender's default scene as `path` with its cube moving along x from frame 1 to
/// `frames` (the scene ends there), running `blender` in the background, within `limit`.
///
/// # Errors
/// When Blender cannot run, takes longer than `limit`, or saves nothing.
pub async fn save_animated_cube(
    blender: &Path,
    path: &Path,
    frames: u32,
    limit: Duration,
) -> anyhow::Result<()> {
    let code = format!(
        "import bpy\n\
         cube = bpy.data.objects['Cube']\n\
         cube.location = (0, 0, 0); cube.keyframe_insert('location', frame=1)\n\
         cube.location = (1, 0, 0); cube.keyframe_insert('location', frame={frames})\n\
         bpy.context.scene.frame_end = {frames}\n\
         bpy.ops.wm.save_as_mainfile(filepath={:?})\n",
        path.display().to_string()
    );
    let output = tokio::time::timeout(
        limit,
        tokio::process::Command::new(blender)
            .args(["-b", "--factory-startup", "--python-expr", &code])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .with_context(|| format!("Blender did not save {} within {limit:?}", path.display()))?
    .with_context(|| format!("running {} (Debian package blender)", blender.display()))?;
    anyhow::ensure!(
        path.is_file(),
        "Blender did not save {}: {}{}",
        path.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}
