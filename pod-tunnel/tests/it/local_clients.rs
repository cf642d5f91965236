//! Only the tunnel's own user reaches its local ports: a client running as another uid is
//! closed before a byte moves. Needs root (to run a client as uid 65534) and `setpriv`
//! (Debian package util-linux); without them these tests fail, they never skip.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use pod_tunnel::{LocalClients, Tunnel};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

use crate::common::Fixture;

const GREETING: &[u8] = b"hello from the pod\n";
const NOBODY: &str = "65534";

/// A server on 127.0.0.1 that greets every connection at once and closes it.
async fn greeter() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = stream.write_all(GREETING).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    addr
}

/// Fails (never skips) unless this process can run a client as another user.
fn require_root_and_setpriv() {
    let uid = Command::new("id").arg("-u").output().expect("run id -u");
    assert_eq!(
        String::from_utf8_lossy(&uid.stdout).trim(),
        "0",
        "this test needs root to connect as another uid (uid {NOBODY})"
    );
    let setpriv = Command::new("setpriv").arg("--version").output();
    assert!(
        setpriv.is_ok_and(|out| out.status.success()),
        "this test needs setpriv to connect as another uid: install util-linux"
    );
}

/// Connects to `port` as uid 65534 and returns how many bytes arrive before EOF (bounded:
/// `cat` stops after 5 s, the whole client after 20 s).
async fn bytes_as_nobody(port: u16) -> usize {
    let script =
        r#"exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 3; timeout 5 cat <&3 | head -c 100 | wc -c"#;
    let out = tokio::task::spawn_blocking(move || {
        Command::new("timeout")
            .args(["20", "setpriv"])
            .args([
                &format!("--reuid={NOBODY}"),
                &format!("--regid={NOBODY}"),
                "--clear-groups",
            ])
            .args(["bash", "-c", script, "bash", &port.to_string()])
            .output()
    })
    .await
    .unwrap()
    .expect("run setpriv");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "client as uid {NOBODY} failed: {:?} {stdout} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout.trim().parse().expect("wc -c prints a number")
}

/// Connects as ourselves and reads to EOF.
async fn read_as_self(local: SocketAddr) -> Vec<u8> {
    let mut stream = TcpStream::connect(local).await.unwrap();
    let mut back = Vec::new();
    timeout(Duration::from_secs(10), stream.read_to_end(&mut back))
        .await
        .expect("the greeting arrives in time")
        .unwrap();
    back
}

async fn open(fx: &Fixture, target: SocketAddr, clients: Option<LocalClients>) -> Tunnel {
    let mut builder =
        fx.connector()
            .tunnel()
            .forward(pod_tunnel::Forward::new(0, "127.0.0.1", target.port()));
    if let Some(clients) = clients {
        builder = builder.local_clients(clients);
    }
    builder.open().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_user_is_closed_unserved_and_the_owner_is_still_served() {
    require_root_and_setpriv();
    let fx = Fixture::start();
    let tunnel = open(&fx, greeter().await, None).await;
    let local = tunnel.forwards()[0].local;

    assert_eq!(read_as_self(local).await, GREETING);
    assert_eq!(
        bytes_as_nobody(local.port()).await,
        0,
        "uid {NOBODY} got bytes through the tunnel"
    );
    let stats = tunnel.stats();
    assert_eq!(stats.connections_denied, 1, "{stats:?}");
    // The denied connection opened no channel.
    assert_eq!(stats.connections_total, 1, "{stats:?}");
    assert_eq!(read_as_self(local).await, GREETING);
    assert_eq!(tunnel.stats().connections_total, 2);
    tunnel.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_user_admits_another_uid() {
    require_root_and_setpriv();
    let fx = Fixture::start();
    let tunnel = open(&fx, greeter().await, Some(LocalClients::AnyUser)).await;
    let local = tunnel.forwards()[0].local;
    // The same client as above does receive the bytes when the check is off.
    assert_eq!(bytes_as_nobody(local.port()).await, GREETING.len());
    assert_eq!(tunnel.stats().connections_denied, 0);
    tunnel.close().await.unwrap();
}
