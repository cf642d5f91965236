//! The session script, the addon and the MCP client on the real Blender 3.4 of Debian, under
//! Xvfb, with x11vnc and websockify/noVNC. Starting Blender is slow on two cores, so one test
//! runs the whole scenario in order on one session; a guard stops the session whatever happens.

#![expect(
    clippy::unwrap_used,
    reason = "test steps fail the test by panicking, like the test itself"
)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use blender_session::assets::{self, SessionReport, SessionState};
use blender_session::mcp::{self, Client, ComputeBackend};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::novnc_origin::upgrade;
use crate::pod::{Pod, alive, require_peers};

const START_LIMIT: Duration = Duration::from_secs(240);
const STOP_LIMIT: Duration = Duration::from_secs(90);
const PASSWORD: &str = "rpb-T3st!pw";

/// Runs `session.sh stop` when dropped, so no test failure leaves processes behind.
struct StopOnDrop {
    script: PathBuf,
    env: Vec<(String, String)>,
}

impl StopOnDrop {
    fn for_pod(pod: &Pod, script: &Path) -> Self {
        Self {
            script: script.to_path_buf(),
            env: pod
                .env
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }
}

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        // Synchronous and bounded by coreutils' timeout: Drop cannot await.
        let _ = std::process::Command::new("timeout")
            .arg("90")
            .arg("bash")
            .arg(&self.script)
            .arg("stop")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .status();
    }
}

async fn start(pod: &Pod, script: &Path) -> SessionReport {
    let stdout = pod
        .run_ok(
            script,
            &["start", "--vnc-password-stdin"],
            &[],
            &format!("{PASSWORD}\n"),
            START_LIMIT,
        )
        .await
        .unwrap();
    SessionReport::parse(&stdout).unwrap()
}

/// Connects to the VNC port and offers a wrong password; returns (banner, security result).
async fn vnc_wrong_password(port: u16) -> anyhow::Result<(String, u32)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
    let mut banner = [0u8; 12];
    stream.read_exact(&mut banner).await?;
    stream.write_all(b"RFB 003.008\n").await?;
    let count = stream.read_u8().await?;
    anyhow::ensure!(count > 0, "the server refused the connection at once");
    let mut types = vec![0u8; usize::from(count)];
    stream.read_exact(&mut types).await?;
    anyhow::ensure!(
        types.contains(&2),
        "no VNC authentication offered: {types:?}"
    );
    stream.write_u8(2).await?;
    let mut challenge = [0u8; 16];
    stream.read_exact(&mut challenge).await?;
    // Any 16 bytes other than DES(challenge, password) are a wrong answer.
    stream.write_all(&[0x55; 16]).await?;
    let result = stream.read_u32().await?;
    Ok((String::from_utf8_lossy(&banner).into_owned(), result))
}

async fn http_get(port: u16, path: &str) -> anyhow::Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
        .await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    Ok(String::from_utf8_lossy(&response).into_owned())
}

fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| String::from_utf8_lossy(&raw).replace('\0', " "))
        .unwrap_or_default()
}

async fn setup(pod: &Pod, blender: &str) {
    let debs = pod.dir.path().join("debs");
    std::fs::create_dir_all(&debs).unwrap();
    let debs = debs.display().to_string();
    let ssh = pod.dir.path().join("ssh").display().to_string();
    pod.run_ok(
        &pod.assets().join("setup.sh"),
        &[],
        &[
            ("BLENDER_BIN", blender),
            ("RPB_DEB_SOURCE", &debs),
            ("RPB_SSH_DIR", &ssh),
        ],
        "",
        Duration::from_secs(60),
    )
    .await
    .unwrap();
}

fn check_first_report(pod: &Pod, report: &SessionReport) {
    assert_eq!(report.state, SessionState::Ready, "{report:?}");
    assert_eq!(report.started, ["xvfb", "x11vnc", "websockify", "blender"]);
    assert_eq!(report.assets_version, assets::version());
    assert_eq!(report.ports.mcp, pod.port("RPB_MCP_PORT"));
    assert_eq!(report.ports.control, pod.port("RPB_CONTROL_PORT"));
    let addon = report.addon.clone().expect("the addon answered");
    assert_eq!(addon.name, "rpb_mcp");
    // The MCP port is the upstream addon's, of the pinned release, speaking its protocol.
    assert_eq!(
        report.mcp_addon,
        format!(
            "mcp-for-blender {} sha256:{}",
            mcp::UPSTREAM_VERSION,
            mcp::UPSTREAM_WHEEL_SHA256
        )
    );
    let served = addon.mcp.clone().expect("rpb's addon reports the MCP port");
    assert_eq!(served.addon, "upstream");
    assert_eq!(served.port, report.ports.mcp);
    assert!(served.listening, "{served:?}");
    assert_eq!(served.protocol_version, Some(mcp::UPSTREAM_PROTOCOL));
    assert!(
        addon.blender_version.starts_with(char::is_numeric),
        "{addon:?}"
    );
    // This machine has no GPU: Cycles says CPU, and why.
    assert_eq!(
        addon.compute.backend,
        ComputeBackend::Cpu,
        "{:?}",
        addon.compute
    );
    assert!(!addon.compute.backend.is_gpu());
    assert!(
        addon.compute.detail.contains("CPU"),
        "{}",
        addon.compute.detail
    );
    let pids = report.pids;
    for pid in [pids.xvfb, pids.x11vnc, pids.websockify, pids.blender] {
        assert!(alive(pid), "pid {pid} from the report is alive");
    }
}

/// The MCP port answers as the upstream addon does for the AI client's server: its handshake
/// (protocol, capabilities) and a command rpb's addon lacks, while rpb's own commands are not
/// there.
async fn step_upstream_on_the_mcp_port(port: u16) {
    let mut upstream = Client::builder()
        .command_timeout(Duration::from_secs(60))
        .connect(format!("127.0.0.1:{port}"))
        .await
        .unwrap();
    let info = upstream
        .call("get_addon_info", serde_json::json!({}))
        .await
        .unwrap();
    assert_eq!(info["name"], "MCP for Blender", "{info}");
    assert_eq!(info["protocol_version"], mcp::UPSTREAM_PROTOCOL, "{info}");
    let capabilities = info["capabilities"].as_array().expect("capabilities");
    for wanted in [
        "list_scene_items",
        "get_world_state_snapshot",
        "execute_code",
    ] {
        assert!(
            capabilities.iter().any(|c| c == wanted),
            "{wanted} in {info}"
        );
    }
    let items = upstream
        .call("list_scene_items", serde_json::json!({}))
        .await
        .unwrap();
    assert!(
        items["items"]
            .as_array()
            .is_some_and(|items| items.iter().any(|item| item["name"] == "Cube")),
        "{items}"
    );
    let error = upstream
        .call("save_blend", serde_json::json!({"path": "/tmp/x.blend"}))
        .await
        .expect_err("rpb's commands are on the control port only");
    assert!(error.to_string().contains("save_blend"), "{error}");
    upstream.close().await;
}

/// The addon's side of the protocol, on a raw socket: a request split over two writes, two
/// requests in one write, and garbage (an error reply, then the connection closes).
async fn step_raw_protocol(port: u16) {
    use tokio::io::AsyncBufReadExt as _;
    let limit = Duration::from_secs(30);
    let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let (read, mut write) = stream.into_split();
    let mut lines = tokio::io::BufReader::new(read).lines();
    let mut next = async || {
        tokio::time::timeout(limit, lines.next_line())
            .await
            .unwrap()
            .unwrap()
    };

    write.write_all(br#"{"type": "ping", "par"#).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    write.write_all(br#"ams": {}}"#).await.unwrap();
    assert_eq!(
        next().await.unwrap(),
        r#"{"status": "success", "result": {"pong": true}}"#
    );

    write
        .write_all(br#"{"type": "ping", "params": {}} {"type": "get_telemetry_consent"}"#)
        .await
        .unwrap();
    assert_eq!(
        next().await.unwrap(),
        r#"{"status": "success", "result": {"pong": true}}"#
    );
    assert_eq!(
        next().await.unwrap(),
        r#"{"status": "success", "result": {"consent": false}}"#
    );

    write.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
    let error = next().await.unwrap();
    assert!(
        error.starts_with(r#"{"status": "error", "message": "expected a JSON object"#),
        "{error}"
    );
    assert_eq!(
        next().await,
        None,
        "the addon closes the connection after garbage"
    );
}

async fn step_drive_blender(client: &mut Client) {
    client.ping().await.unwrap();
    let info = client.addon_info().await.unwrap();
    assert_eq!(info.compute.backend, ComputeBackend::Cpu);
    let scene = client.scene_info().await.unwrap();
    let names: Vec<&str> = scene.object_names().collect();
    for expected in ["Cube", "Light", "Camera"] {
        assert!(names.contains(&expected), "{expected} in {names:?}");
    }
    let cube = client.object_info("Cube").await.unwrap();
    assert_eq!(cube.kind, "MESH");
    assert_eq!(cube.mesh.map(|mesh| mesh.vertices), Some(8));
    let missing = client.object_info("NoSuchObject").await.unwrap_err();
    assert!(
        missing
            .blender_message()
            .is_some_and(|m| m.contains("NoSuchObject")),
        "{missing}"
    );

    let stdout = client
        .execute_code(
            "import bpy\nbpy.ops.mesh.primitive_uv_sphere_add(location=(0, 0, 3))\n\
             bpy.context.active_object.name = 'RpbSphere'\nprint('objects', len(bpy.data.objects))",
        )
        .await
        .unwrap();
    assert_eq!(stdout, "objects 4\n");
    let raised = client
        .execute_code("raise ValueError('boom from the test')")
        .await
        .unwrap_err();
    assert!(
        raised
            .blender_message()
            .is_some_and(|m| m.contains("boom from the test")),
        "{raised}"
    );
    let unknown = client
        .call("no_such_command", serde_json::Value::Null)
        .await
        .unwrap_err();
    assert_eq!(
        unknown.blender_message(),
        Some("Unknown command type: no_such_command")
    );
    // The upstream MCP server's health ping.
    let polyhaven = client
        .call("get_polyhaven_status", serde_json::Value::Null)
        .await
        .unwrap();
    assert_eq!(polyhaven["enabled"], serde_json::Value::Bool(false));

    // A 20 MiB reply arrives intact.
    let big = client
        .execute_code("print(''.join(chr(97 + i % 26) for i in range(20 * 1024 * 1024)), end='')")
        .await
        .unwrap();
    assert_eq!(big.len(), 20 * 1024 * 1024);
    assert!(
        big.bytes()
            .enumerate()
            .all(|(i, b)| usize::from(b) == 97 + i % 26)
    );
}

async fn step_save_open_and_screenshot(pod: &Pod, client: &mut Client) {
    // save_blend writes a real .blend (creating folders); open_blend loads it back.
    let blend = pod.dir.path().join("pod/projects/demo/nested/scene.blend");
    let saved = client
        .save_blend(&blend.display().to_string())
        .await
        .unwrap();
    let bytes = std::fs::read(&blend).unwrap();
    assert!(
        bytes.starts_with(b"BLENDER"),
        "{:?}",
        &bytes[..16.min(bytes.len())]
    );
    assert_eq!(saved.size, u64::try_from(bytes.len()).unwrap());
    client
        .execute_code("import bpy\nbpy.data.objects.remove(bpy.data.objects['RpbSphere'])")
        .await
        .unwrap();
    assert!(
        !client
            .scene_info()
            .await
            .unwrap()
            .object_names()
            .any(|n| n == "RpbSphere")
    );
    let opened = client
        .open_blend(&blend.display().to_string())
        .await
        .unwrap();
    assert_eq!(opened.object_count, 4);
    assert!(
        client
            .scene_info()
            .await
            .unwrap()
            .object_names()
            .any(|n| n == "RpbSphere")
    );
    let relative = client.save_blend("relative/scene.blend").await.unwrap_err();
    assert!(
        relative
            .blender_message()
            .is_some_and(|m| m.contains("absolute")),
        "{relative}"
    );
    let absent = client
        .open_blend("/nonexistent/scene.blend")
        .await
        .unwrap_err();
    assert!(
        absent
            .blender_message()
            .is_some_and(|m| m.contains("no such file")),
        "{absent}"
    );

    // A viewport screenshot is written on the Blender machine, scaled down.
    let shot = pod.dir.path().join("shots/viewport.png");
    let screenshot = client
        .viewport_screenshot(&shot.display().to_string(), 400)
        .await
        .unwrap();
    assert!(
        screenshot.width <= 400 && screenshot.height <= 400,
        "{screenshot:?}"
    );
    assert!(std::fs::read(&shot).unwrap().starts_with(b"\x89PNG"));
}

async fn step_vnc_and_novnc(pod: &Pod, report: &SessionReport) {
    // VNC speaks RFB on loopback and refuses a wrong password.
    let (banner, result) = vnc_wrong_password(report.ports.vnc).await.unwrap();
    assert!(banner.starts_with("RFB 003."), "{banner:?}");
    assert_ne!(result, 0, "a wrong VNC password must be refused");
    // noVNC's page is served.
    let page = http_get(report.ports.novnc, "/vnc.html").await.unwrap();
    assert!(
        page.starts_with("HTTP/1.1 200") || page.starts_with("HTTP/1.0 200"),
        "{page:.200}"
    );
    assert!(page.contains("noVNC"));
    // Only a page on a loopback origin opens the WebSocket (rpb_novnc_origin.py); through it,
    // x11vnc's RFB banner arrives as the first binary frame.
    let novnc = report.ports.novnc;
    let loopback = format!("http://127.0.0.1:{novnc}");
    let (mut socket, status) = upgrade(novnc, Some(&loopback)).await;
    assert!(status.starts_with("HTTP/1.1 101"), "{status:?}");
    let mut frame = [0_u8; 14];
    tokio::time::timeout(Duration::from_secs(10), socket.read_exact(&mut frame))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&frame[..2], [0x82, 12]);
    assert!(frame[2..].starts_with(b"RFB 003."), "{frame:?}");
    drop(socket);
    for origin in [Some("https://evil.example"), None] {
        let (_, status) = upgrade(novnc, origin).await;
        assert!(status.starts_with("HTTP/1.1 403"), "{origin:?}: {status:?}");
    }
    // The password is in no process's arguments, and its file is private.
    let x11vnc = cmdline(report.pids.x11vnc);
    assert!(
        x11vnc.contains("-rfbauth") && x11vnc.contains("-localhost"),
        "{x11vnc}"
    );
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        {
            assert!(
                !cmdline(pid).contains(PASSWORD),
                "pid {pid} shows the VNC password"
            );
        }
    }
    let passwd = pod.home().join("vnc/passwd");
    let mode = std::fs::metadata(&passwd).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let stored = std::fs::read(&passwd).unwrap();
    assert!(
        !stored
            .windows(PASSWORD.len())
            .any(|w| w == PASSWORD.as_bytes())
    );
    // It is the file x11vnc itself makes for that password, so the right password gets in.
    let reference = pod.dir.path().join("reference-passwd");
    let storepasswd = tokio::process::Command::new("x11vnc")
        .arg("-storepasswd")
        .arg(PASSWORD)
        .arg(&reference)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let storepasswd = tokio::time::timeout(Duration::from_secs(30), storepasswd)
        .await
        .unwrap()
        .unwrap();
    assert!(storepasswd.status.success(), "{storepasswd:?}");
    assert_eq!(std::fs::read(&reference).unwrap(), stored);
}

async fn step_rerun_and_crash(
    pod: &Pod,
    script: &Path,
    client: &mut Client,
    first: &SessionReport,
) -> SessionReport {
    let pids = first.pids;
    // A second start with everything healthy changes nothing.
    let again = start(pod, script).await;
    assert_eq!(again.state, SessionState::Ready);
    assert!(again.started.is_empty(), "{:?}", again.started);
    assert_eq!(again.pids, pids);

    // A crashed Blender is restarted, and only Blender.
    let kill = std::process::Command::new("kill")
        .args(["-KILL", &pids.blender.to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(pids.blender) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!alive(pids.blender));
    let status = pod
        .run(script, &["status"], &[], "", STOP_LIMIT)
        .await
        .unwrap();
    assert_eq!(
        status.status.code(),
        Some(3),
        "status exits 3 when degraded"
    );
    let status = SessionReport::parse(&String::from_utf8_lossy(&status.stdout)).unwrap();
    assert_eq!(status.state, SessionState::Degraded);
    assert_eq!(status.down, ["blender"]);
    let restarted = start(pod, script).await;
    assert_eq!(restarted.state, SessionState::Ready);
    assert_eq!(restarted.started, ["blender"]);
    assert_eq!(restarted.pids.xvfb, pids.xvfb);
    assert_eq!(restarted.pids.x11vnc, pids.x11vnc);
    assert_eq!(restarted.pids.websockify, pids.websockify);
    assert_ne!(restarted.pids.blender, pids.blender);
    // The client reconnects to the new Blender after its connection broke.
    assert!(
        client.ping().await.is_err(),
        "the old connection died with Blender"
    );
    client.ping().await.unwrap();
    let fresh = client.scene_info().await.unwrap();
    assert!(
        !fresh.object_names().any(|n| n == "RpbSphere"),
        "a fresh Blender has the default scene"
    );
    restarted
}

async fn step_stop(pod: &Pod, script: &Path, report: &SessionReport) {
    // stop ends exactly the processes in the PID files.
    let pids = report.pids;
    let stopped = pod
        .run_ok(script, &["stop"], &[], "", STOP_LIMIT)
        .await
        .unwrap();
    assert!(
        stopped.contains(r#"{"rpb_stopped":["blender","websockify","x11vnc","xvfb"]}"#),
        "{stopped}"
    );
    for pid in [pids.xvfb, pids.x11vnc, pids.websockify, pids.blender] {
        assert!(!alive(pid), "pid {pid} is gone after stop");
    }
    let left: Vec<_> = std::fs::read_dir(pod.home().join("run"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| Path::new(name).extension().is_some_and(|ext| ext == "pid"))
        .collect();
    assert!(left.is_empty(), "pid files left: {left:?}");
    for port in [report.ports.mcp, report.ports.control] {
        assert!(
            TcpStream::connect(("127.0.0.1", port)).await.is_err(),
            "port {port} is closed"
        );
    }
    let again = pod
        .run_ok(script, &["stop"], &[], "", STOP_LIMIT)
        .await
        .unwrap();
    assert!(again.contains(r#"{"rpb_stopped":[]}"#), "{again}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_session_starts_serves_blender_restarts_a_crash_and_stops() {
    let blender = require_peers();
    let pod = Pod::new().unwrap();
    setup(&pod, &blender.display().to_string()).await;
    let script = pod.home().join("bin/session.sh");
    let _guard = StopOnDrop::for_pod(&pod, &script);

    let started_at = Instant::now();
    let report = start(&pod, &script).await;
    eprintln!("session started in {:?}", started_at.elapsed());
    check_first_report(&pod, &report);

    step_upstream_on_the_mcp_port(report.ports.mcp).await;
    let mut client = Client::builder()
        .command_timeout(Duration::from_secs(60))
        .connect(format!("127.0.0.1:{}", report.ports.control))
        .await
        .unwrap();
    step_raw_protocol(report.ports.control).await;
    step_drive_blender(&mut client).await;
    step_save_open_and_screenshot(&pod, &mut client).await;
    step_vnc_and_novnc(&pod, &report).await;
    let restarted = step_rerun_and_crash(&pod, &script, &mut client, &report).await;
    step_stop(&pod, &script, &restarted).await;
}

/// `RPB_MCP_ADDON=rpb` (a pod without internet): setup downloads nothing, and rpb's addon
/// serves the MCP port as well as its control port, one command queue for both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_upstream_addon_rpb_s_addon_serves_the_mcp_port_too() {
    let blender = require_peers();
    let mut pod = Pod::new().unwrap();
    pod.env.insert("RPB_MCP_ADDON".to_owned(), "rpb".to_owned());
    // Nothing to download from: an empty cache.
    let empty = pod.dir.path().join("no-downloads");
    pod.env
        .insert("RPB_DOWNLOAD_CACHE".to_owned(), empty.display().to_string());
    setup(&pod, &blender.display().to_string()).await;
    assert!(
        !pod.home()
            .join("blender-scripts/addons/blender_mcp.py")
            .exists()
    );
    let script = pod.home().join("bin/session.sh");
    let _guard = StopOnDrop::for_pod(&pod, &script);
    let report = start(&pod, &script).await;
    assert_eq!(report.state, SessionState::Ready, "{report:?}");
    assert_eq!(report.mcp_addon, "rpb");
    let served = report
        .addon
        .as_ref()
        .and_then(|addon| addon.mcp.clone())
        .expect("the MCP port's report");
    assert_eq!(served.addon, "rpb");
    assert!(served.listening, "{served:?}");
    let mut on_mcp = Client::connect(format!("127.0.0.1:{}", report.ports.mcp))
        .await
        .unwrap();
    let mut on_control = Client::connect(format!("127.0.0.1:{}", report.ports.control))
        .await
        .unwrap();
    assert_eq!(on_mcp.addon_info().await.unwrap().name, "rpb_mcp");
    let printed = on_mcp
        .execute_code("import bpy; bpy.context.scene['rpb_mark'] = 7; print('marked')")
        .await
        .unwrap();
    assert_eq!(printed.trim(), "marked");
    let seen = on_control
        .execute_code("import bpy; print(bpy.context.scene['rpb_mark'])")
        .await
        .unwrap();
    assert_eq!(seen.trim(), "7", "both ports reach the same Blender");
    on_mcp.close().await;
    on_control.close().await;
    pod.run_ok(&script, &["stop"], &[], "", STOP_LIMIT)
        .await
        .unwrap();
}
