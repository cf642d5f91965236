//! Runs Python inside Blender on a pod through the MCP socket: adds an object and lists the
//! scene. Uses the embedded local pod, so no account is needed.
//!
//! ```text
//! cargo run -p rpb-examples --bin blender-python
//! ```

#![expect(
    clippy::print_stdout,
    clippy::disallowed_methods,
    reason = "an example binary owns its runtime and prints its results"
)]

use rpb_examples::start_local_session;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let local = start_local_session("rpb-demo").await?;
    let mut blender = local.session.mcp().await?;
    let info = blender.addon_info().await?;
    println!(
        "Blender {} (addon {}), rendering on {:?}",
        info.blender_version, info.version, info.compute.backend
    );
    let output = blender
        .execute_code("import bpy\nbpy.ops.mesh.primitive_monkey_add(location=(0, 0, 2))\nprint(len(bpy.data.objects), 'objects')")
        .await?;
    print!("python printed: {output}");
    let scene = blender.scene_info().await?;
    println!(
        "scene: {}",
        scene.object_names().collect::<Vec<_>>().join(", ")
    );
    local.stop().await
}
