//! Helpers shared by the integration tests.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

/// Every test step is bounded by this unless it says otherwise.
pub(crate) const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// Starts a server on 127.0.0.1 that hands up to `max_connections` accepted connections, each in
/// its own task, to `handler` (with the connection's index). The task ends with the test's
/// runtime.
pub(crate) async fn serve<F, Fut>(max_connections: usize, handler: F) -> SocketAddr
where
    F: Fn(usize, TcpStream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        for index in 0..max_connections {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let connection = handler(index, stream);
            tokio::spawn(async move {
                #[expect(
                    clippy::print_stderr,
                    reason = "test server diagnostics for a failing test"
                )]
                if let Err(error) = connection.await {
                    eprintln!("test server connection {index}: {error:#}");
                }
            });
        }
    });
    addr
}

/// Reads one JSON request (unframed, like the real protocol) from `stream`, keeping any extra
/// bytes in `buffer`. `None` when the peer closed first.
pub(crate) async fn read_request(
    stream: &mut TcpStream,
    buffer: &mut Vec<u8>,
) -> anyhow::Result<Option<Value>> {
    loop {
        let mut values = serde_json::Deserializer::from_slice(buffer).into_iter::<Value>();
        match values.next() {
            Some(Ok(value)) => {
                let used = values.byte_offset();
                buffer.drain(..used);
                return Ok(Some(value));
            }
            Some(Err(error)) if !error.is_eof() => return Err(error.into()),
            _ => {}
        }
        let mut chunk = [0u8; 8192];
        let read = tokio::time::timeout(STEP_TIMEOUT, stream.read(&mut chunk)).await??;
        if read == 0 {
            return Ok(None);
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
}
