//! rpb's addon on the Blender that real pods run: Blender 4.5 LTS (the setup script's default)
//! and 5.0, as Python modules from the Python package index (`bpy`), in the venvs `scripts/install-python-peers.sh` makes.
//! Each runs `tests/bpy/drive_addon.py`: the addon's commands as its socket server calls them
//! (scene, object, `execute_code` with its output and its errors, save and open, the compute
//! report) and a small Cycles CPU render. The viewport screenshot needs a window, which module
//! mode has not; it keeps running on Debian's Blender under Xvfb (the session tests).

use std::path::{Path, PathBuf};
use std::time::Duration;

/// The Blender releases tested, as `scripts/bpy/requirements-<version>.txt` pins them, with the
/// name each gives the EEVEE engine (`BLENDER_EEVEE_NEXT` in 4.2–4.5, `BLENDER_EEVEE` in 5.0).
const RELEASES: [(&str, &str); 2] = [("4.5.15", "BLENDER_EEVEE_NEXT"), ("5.0.1", "BLENDER_EEVEE")];

/// A render and its checks get this long on a loaded CI machine.
const LIMIT: Duration = Duration::from_secs(300);

fn venvs() -> PathBuf {
    if let Some(dir) = std::env::var_os("RPB_PYTHON_PEERS") {
        return PathBuf::from(dir);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME").map_or_else(
        || PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache"),
        PathBuf::from,
    );
    cache.join("rpb")
}

fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

async fn drive(version: &str) -> serde_json::Value {
    let python = venvs().join(format!("bpy-{version}/bin/python"));
    assert!(
        python.is_file(),
        "{} is missing: run `bash scripts/install-python-peers.sh` (Blender {version} from PyPI `bpy`, \
         CPython 3.11 with python3-venv)",
        python.display()
    );
    let work = tempfile::tempdir().expect("tempdir");
    let mut command = tokio::process::Command::new(&python);
    command
        .arg(crate_dir().join("tests/bpy/drive_addon.py"))
        .arg(crate_dir().join("assets/rpb_mcp.py"))
        .arg(work.path())
        .kill_on_drop(true);
    let output = tokio::time::timeout(LIMIT, command.output())
        .await
        .unwrap_or_else(|_| panic!("Blender {version} did not finish within {LIMIT:?}"))
        .expect("the venv's python runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "Blender {version}: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    let line = stdout
        .lines()
        .find_map(|line| line.strip_prefix("RPB-RESULT "))
        .unwrap_or_else(|| panic!("Blender {version} printed no result:\n{stdout}\n{stderr}"));
    let mut result: serde_json::Value = serde_json::from_str(line).expect("one JSON document");
    let frame = std::fs::read(work.path().join("frame.png")).expect("the rendered frame");
    result["frame_is_png"] = frame.starts_with(b"\x89PNG\r\n\x1a\n").into();
    result
}

#[tokio::test]
async fn the_addon_works_on_blender_4_5_lts_and_5_0() {
    for (version, eevee) in RELEASES {
        let result = drive(version).await;
        let context = format!("Blender {version}: {result}");
        assert_eq!(result["blender_version"], version, "{context}");
        assert_eq!(
            result["addon_info"]["blender_version"], version,
            "{context}"
        );
        assert_eq!(result["ping"]["pong"], true, "{context}");
        // The factory scene, and its default engine under the name this version gives it.
        assert_eq!(result["scene_before"]["object_count"], 3, "{context}");
        assert_eq!(result["scene_before"]["render_engine"], eevee, "{context}");
        // execute_code: the client's code runs, its output comes back, its errors are reported.
        assert_eq!(result["execute"]["result"], "objects 4\n", "{context}");
        assert_eq!(result["object"]["mesh"]["vertices"], 8, "{context}");
        assert!(
            result["error"]
                .as_str()
                .is_some_and(|error| error.contains("ValueError: on purpose")),
            "{context}"
        );
        // Saved, changed, opened again: the saved scene is back.
        assert!(
            result["save"]["size"]
                .as_u64()
                .is_some_and(|size| size > 1000),
            "{context}"
        );
        assert_eq!(result["open"]["object_count"], 4, "{context}");
        assert!(
            result["scene_after_open"]["objects"]
                .as_array()
                .is_some_and(|objects| objects.iter().any(|o| o["name"] == "RpbCube")),
            "{context}"
        );
        // No GPU here: the report says Cycles renders on the CPU, and it does.
        assert_eq!(result["compute"]["backend"], "CPU", "{context}");
        assert_eq!(result["frame_is_png"], true, "{context}");
    }
}
