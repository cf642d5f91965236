//! Whether the services of a session answer on local ports (through a tunnel): each probe
//! speaks the service's own protocol, so a listener whose far end is dead does not count.

use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Whether Blender's MCP socket on `127.0.0.1:port` answers a ping within 8 seconds.
pub async fn mcp_answers(port: u16) -> bool {
    let probe = async {
        let mut client = crate::mcp::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .command_timeout(Duration::from_secs(5))
            .connect(format!("127.0.0.1:{port}"))
            .await
            .ok()?;
        let answered = client.ping().await.ok();
        client.close().await;
        answered
    };
    tokio::time::timeout(Duration::from_secs(8), probe)
        .await
        .ok()
        .flatten()
        .is_some()
}

/// Whether noVNC's page is served on `127.0.0.1:port` (an HTTP `200` for `/vnc.html` within
/// 5 seconds). A tunnel's local listener accepts connections even while websockify on the pod
/// is dead; only an HTTP answer proves the far end.
pub async fn novnc_answers(port: u16) -> bool {
    let probe = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        stream
            .write_all(b"GET /vnc.html HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .await
            .ok()?;
        let mut head = [0_u8; 12];
        stream.read_exact(&mut head).await.ok()?;
        Some(head.starts_with(b"HTTP/1.") && &head[9..12] == b"200")
    };
    tokio::time::timeout(Duration::from_secs(5), probe)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}
