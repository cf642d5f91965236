//! websockify with rpb's Origin plugin (`rpb_novnc_origin.py`), as `session.sh` starts it, in
//! front of an echo server: only a page on a loopback origin gets its WebSocket. The session
//! scenario (`session.rs`) checks the same on the websockify `session.sh` itself started.

#![expect(
    clippy::unwrap_used,
    reason = "test steps fail the test by panicking, like the test itself"
)]

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use blender_session::assets;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::time::timeout;

use crate::pod::{free_port, which};

/// An echo server on 127.0.0.1 (the VNC server's stand-in); returns its port.
async fn echo_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = stream.into_split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    port
}

/// websockify on a free port with the plugin from `plugin_dir`, as session.sh runs it, once
/// it serves `vnc.html` (bounded). Killed by its PID when dropped.
async fn websockify(plugin_dir: &Path, target: u16, origins: Option<&str>) -> (Child, u16) {
    assert!(
        which("websockify").is_some() && Path::new("/usr/share/novnc/vnc.html").is_file(),
        "needs websockify and noVNC: apt-get install -y --no-install-recommends websockify novnc"
    );
    let port = free_port();
    let mut command = Command::new("websockify");
    command
        .env("PYTHONPATH", plugin_dir)
        .args(["--auth-plugin", "rpb_novnc_origin.LoopbackOrigin"])
        .args(["--web", "/usr/share/novnc"])
        .arg(format!("127.0.0.1:{port}"))
        .arg(format!("127.0.0.1:{target}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    match origins {
        Some(origins) => command.env("RPB_NOVNC_ORIGINS", origins),
        None => command.env_remove("RPB_NOVNC_ORIGINS"),
    };
    let mut child = command.spawn().expect("start websockify");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if blender_session::probe::novnc_answers(port).await {
            return (child, port);
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("websockify exited at once ({status}): is the plugin importable?");
        }
        assert!(
            Instant::now() < deadline,
            "websockify did not answer in 20 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sends a WebSocket upgrade with `origin` (none if `None`); returns the stream and the status
/// line (empty when the server closed without one).
pub(crate) async fn upgrade(port: u16, origin: Option<&str>) -> (TcpStream, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let origin = origin.map_or(String::new(), |o| format!("Origin: {o}\r\n"));
    let request = format!(
        "GET /websockify HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n{origin}\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    // Read the response head byte by byte, so nothing after it is consumed.
    let mut head = Vec::new();
    let read = timeout(Duration::from_secs(10), async {
        let mut byte = [0_u8; 1];
        while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).await.unwrap_or(0) == 1 {
            head.push(byte[0]);
        }
    });
    read.await.expect("websockify answers the upgrade in time");
    let head = String::from_utf8_lossy(&head).into_owned();
    let status = head.lines().next().unwrap_or_default().to_owned();
    (stream, status)
}

/// One masked binary frame through the WebSocket and back from the echo server.
async fn echo_through(stream: &mut TcpStream) -> Vec<u8> {
    let mask = [1_u8, 2, 3, 4];
    let mut frame = vec![0x82, 0x80 | 4];
    frame.extend_from_slice(&mask);
    frame.extend(b"ping".iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
    stream.write_all(&frame).await.unwrap();
    let mut back = [0_u8; 6];
    timeout(Duration::from_secs(10), stream.read_exact(&mut back))
        .await
        .expect("the echo comes back in time")
        .unwrap();
    assert_eq!(back[..2], [0x82, 4], "an unmasked binary frame of 4 bytes");
    back[2..].to_vec()
}

async fn stop(mut child: Child) {
    child.kill().await.unwrap();
}

#[tokio::test]
async fn only_a_loopback_origin_opens_the_websocket() {
    let dir = tempfile::tempdir().unwrap();
    assets::write_to(dir.path()).unwrap();
    let (child, port) = websockify(dir.path(), echo_server().await, None).await;

    for origin in [
        "http://127.0.0.1:6080",
        "http://localhost:41234",
        "http://[::1]:8080",
        "http://127.0.0.1",
    ] {
        let (mut stream, status) = upgrade(port, Some(origin)).await;
        assert!(status.starts_with("HTTP/1.1 101"), "{origin}: {status:?}");
        assert_eq!(echo_through(&mut stream).await, b"ping", "{origin}");
    }
    for origin in [
        Some("https://evil.example"),
        Some("http://evil.example:6080"),
        Some("http://127.0.0.1.evil.example:6080"),
        Some("https://127.0.0.1:6080"),
        Some("null"),
        None,
    ] {
        let (_, status) = upgrade(port, origin).await;
        assert!(status.starts_with("HTTP/1.1 403"), "{origin:?}: {status:?}");
    }
    // Plain HTTP is not checked: the noVNC page and rpb's probes still work.
    assert!(blender_session::probe::novnc_answers(port).await);
    stop(child).await;
}

#[tokio::test]
async fn rpb_novnc_origins_replaces_the_loopback_rule() {
    let dir = tempfile::tempdir().unwrap();
    assets::write_to(dir.path()).unwrap();
    let origins = "https://novnc.example http://127.0.0.1:7000";
    let (child, port) = websockify(dir.path(), echo_server().await, Some(origins)).await;
    for origin in ["https://novnc.example", "http://127.0.0.1:7000"] {
        let (_, status) = upgrade(port, Some(origin)).await;
        assert!(status.starts_with("HTTP/1.1 101"), "{origin}: {status:?}");
    }
    for origin in ["http://127.0.0.1:7001", "http://localhost:7000"] {
        let (_, status) = upgrade(port, Some(origin)).await;
        assert!(status.starts_with("HTTP/1.1 403"), "{origin}: {status:?}");
    }
    stop(child).await;
}
