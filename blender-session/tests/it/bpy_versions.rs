//! rpb's addon on the Blender that real pods run: Blender 4.5 LTS (the setup script's default)
//! and 5.0, as Python modules from the Python package index (`bpy`), in the venvs `scripts/install-python-peers.sh` makes.
//! Each runs `tests/bpy/drive_addon.py`: the addon's commands as its socket server calls them
//! (scene, object, `execute_code` with its output and its errors, save and open, the compute
//! report) and a small Cycles CPU render. The viewport screenshot needs a window, which module
//! mode has not; it keeps running on Debian's Blender under Xvfb (the session tests).
//!
//! Also on each version: the addon layout the setup script makes (rpb's addon and the upstream
//! blender-mcp addon of the pinned release, enabled as a session enables them, with the upstream
//! addon's own command handlers run), and the render log parser on a live render's output.

use std::path::{Path, PathBuf};
use std::time::Duration;

use blender_session::mcp;

/// The Blender releases tested, as `scripts/python-peers/bpy-<version>.txt` pins them, with the
/// name each gives the EEVEE engine (`BLENDER_EEVEE_NEXT` in 4.2–4.5, `BLENDER_EEVEE` in 5.0).
const RELEASES: [(&str, &str); 2] = [("4.5.15", "BLENDER_EEVEE_NEXT"), ("5.0.1", "BLENDER_EEVEE")];

/// A render and its checks get this long on a loaded CI machine.
const LIMIT: Duration = Duration::from_secs(300);

fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

async fn drive(version: &str) -> serde_json::Value {
    let python = venv_python(version);
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

fn venv_python(version: &str) -> PathBuf {
    test_support::python_peers::venv(
        &format!("bpy-{version}"),
        "python",
        &format!("Blender {version} from PyPI `bpy`"),
    )
    .join("bin/python")
}

async fn run_python(version: &str, args: &[&std::ffi::OsStr]) -> (String, String) {
    let mut command = tokio::process::Command::new(venv_python(version));
    command.args(args).kill_on_drop(true);
    let output = tokio::time::timeout(LIMIT, command.output())
        .await
        .unwrap_or_else(|_| panic!("Blender {version} did not finish within {LIMIT:?}"))
        .expect("the venv's python runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "Blender {version}: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    (stdout, stderr)
}

#[tokio::test]
async fn the_setup_layout_loads_both_addons_on_blender_4_5_lts_and_5_0() {
    // The layout, made by the real setup script from the embedded assets.
    let pod = crate::pod::Pod::new().expect("a pod folder");
    let ssh = pod.dir.path().join("ssh");
    let debs = pod.dir.path().join("debs");
    std::fs::create_dir_all(&ssh).expect("ssh");
    std::fs::create_dir_all(&debs).expect("debs");
    let (ssh, debs) = (ssh.display().to_string(), debs.display().to_string());
    pod.run_ok(
        &pod.assets().join("setup.sh"),
        &[],
        &[
            ("BLENDER_BIN", "/bin/true"),
            ("RPB_SSH_DIR", &ssh),
            ("RPB_DEB_SOURCE", &debs),
        ],
        "",
        LIMIT,
    )
    .await
    .expect("setup");
    let home = pod.home();
    let script = crate_dir().join("tests/bpy/drive_layout.py");
    for (version, _) in RELEASES {
        let (stdout, stderr) = run_python(version, &[script.as_os_str(), home.as_os_str()]).await;
        let line = stdout
            .lines()
            .find_map(|line| line.strip_prefix("RPB_LAYOUT "))
            .unwrap_or_else(|| panic!("Blender {version} printed no result:\n{stdout}\n{stderr}"));
        let result: serde_json::Value = serde_json::from_str(line).expect("one JSON document");
        let context = format!("Blender {version}: {result}");
        assert_eq!(result["enabled"]["blender_mcp"], true, "{context}");
        assert_eq!(result["enabled"]["rpb_mcp"], true, "{context}");
        // rpb's addon pointed the upstream one at RPB_MCP_PORT, auto-start on.
        assert_eq!(result["port"], 19876, "{context}");
        assert_eq!(result["auto_start"], true, "{context}");
        let info = &result["addon_info"]["result"];
        assert_eq!(
            info["protocol_version"],
            mcp::UPSTREAM_PROTOCOL,
            "{context}"
        );
        assert!(
            info["blender_version"]
                .as_str()
                .is_some_and(|v| v.starts_with(version)),
            "{context}"
        );
        for command in ["list_scene_items", "snapshot", "scene_info", "execute_code"] {
            assert_eq!(result[command]["status"], "success", "{command}: {context}");
        }
        assert_eq!(
            result["list_scene_items"]["result"]["items"][0]["name"], "Cube",
            "{context}"
        );
        assert_eq!(result["snapshot"]["result"]["object_count"], 3, "{context}");
        assert_eq!(
            result["execute_code"]["result"]["result"], "3\n",
            "{context}"
        );
        let report = &result["mcp_port_report"];
        assert_eq!(report["addon"], "upstream", "{context}");
        assert_eq!(
            report["protocol_version"],
            mcp::UPSTREAM_PROTOCOL,
            "{context}"
        );
        // Module mode has no window: no server listens, and rpb's report says so.
        assert_eq!(report["listening"], false, "{context}");
    }
}

#[tokio::test]
async fn the_render_log_parser_reads_a_live_render_on_blender_4_5_lts_and_5_0() {
    use blender_session::render::log::{LineSplitter, LogLine, parse_line};
    let capture = crate_dir().join("tests/data/render-logs/capture.py");
    for (version, _) in RELEASES {
        let out = tempfile::tempdir().expect("tempdir");
        let pattern = out.path().join("frame_%04d");
        let mut args: Vec<&std::ffi::OsStr> = vec![
            capture.as_os_str(),
            "--engine".as_ref(),
            "CYCLES".as_ref(),
            "--frames".as_ref(),
            "1,2".as_ref(),
            "--out".as_ref(),
            pattern.as_os_str(),
        ];
        // 5.x logs progress at INFO: the module's stand-in for the command line's --log render.
        if version.starts_with('5') {
            args.extend([
                std::ffi::OsStr::new("--clog"),
                std::ffi::OsStr::new("render"),
            ]);
        }
        let (stdout, stderr) = run_python(version, &args).await;
        let mut splitter = LineSplitter::new();
        let mut lines = splitter.push(stdout.as_bytes());
        lines.extend(splitter.push(stderr.as_bytes()));
        lines.extend(splitter.finish());
        let parsed: Vec<LogLine> = lines.iter().filter_map(|line| parse_line(line)).collect();
        let context = format!("Blender {version}:\n{stdout}\n{stderr}");
        for frame in [1_i64, 2] {
            let path = out.path().join(format!("frame_{frame:04}.png"));
            assert!(
                parsed.contains(&LogLine::Saved {
                    path: path.display().to_string()
                }),
                "frame {frame} saved: {context}"
            );
            assert!(
                std::fs::read(&path)
                    .expect("the frame")
                    .starts_with(b"\x89PNG\r\n\x1a\n")
            );
            assert!(
                parsed
                    .iter()
                    .any(|line| matches!(line, LogLine::Progress(p) if p.frame == Some(frame))),
                "a status line of frame {frame}: {context}"
            );
        }
        let times = parsed
            .iter()
            .filter(|line| {
                matches!(
                    line,
                    LogLine::FrameTime {
                        saving_seconds: Some(_),
                        ..
                    }
                )
            })
            .count();
        assert_eq!(times, 2, "{context}");
        assert!(
            !parsed
                .iter()
                .any(|line| matches!(line, LogLine::Error { .. })),
            "{context}"
        );
    }
}
