//! The MCP client against tiny in-test servers that misbehave in controlled ways.

use std::error::Error as _;
use std::time::{Duration, Instant};

use blender_session::mcp::{Client, Error};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use crate::support::{STEP_TIMEOUT, read_request, serve};

fn success(result: &Value) -> Vec<u8> {
    json!({ "status": "success", "result": result })
        .to_string()
        .into_bytes()
}

async fn client(addr: std::net::SocketAddr) -> Client {
    Client::builder()
        .command_timeout(STEP_TIMEOUT)
        .connect(addr.to_string())
        .await
        .expect("connect to the test server")
}

#[tokio::test]
async fn requests_have_the_blender_mcp_shape_and_share_one_connection() {
    let addr = serve(1, |_, mut stream| async move {
        let mut buffer = Vec::new();
        while let Some(request) = read_request(&mut stream, &mut buffer).await? {
            // Echo the request back as the result.
            stream.write_all(&success(&request)).await?;
        }
        Ok(())
    })
    .await;
    let mut client = client(addr).await;
    let echoed = client.call("get_scene_info", Value::Null).await.unwrap();
    assert_eq!(echoed, json!({ "type": "get_scene_info", "params": {} }));
    let echoed = client
        .call("get_object_info", json!({ "name": "Cube" }))
        .await
        .unwrap();
    assert_eq!(
        echoed,
        json!({ "type": "get_object_info", "params": { "name": "Cube" } })
    );
    assert!(client.is_connected());
}

#[tokio::test]
async fn replies_split_into_tiny_writes_are_reassembled() {
    let addr = serve(1, |_, mut stream| async move {
        let mut buffer = Vec::new();
        read_request(&mut stream, &mut buffer).await?;
        // Multi-byte UTF-8, escaped quotes and braces in strings, split at every 3 bytes.
        let reply = success(&json!({ "executed": true, "result": "é✓ \"{[}]\" \\ done\n" }));
        for chunk in reply.chunks(3) {
            stream.write_all(chunk).await?;
            stream.flush().await?;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        read_request(&mut stream, &mut buffer).await?;
        Ok(())
    })
    .await;
    let mut client = client(addr).await;
    let stdout = client.execute_code("print('x')").await.unwrap();
    assert_eq!(stdout, "é✓ \"{[}]\" \\ done\n");
}

#[tokio::test]
async fn replies_merged_into_one_write_are_read_one_per_command() {
    let addr = serve(1, |_, mut stream| async move {
        let mut buffer = Vec::new();
        read_request(&mut stream, &mut buffer).await?;
        let mut both = success(&json!({ "n": 1 }));
        both.extend_from_slice(b"\n  ");
        both.extend_from_slice(&success(&json!({ "n": 2 })));
        both.push(b'\n');
        stream.write_all(&both).await?;
        read_request(&mut stream, &mut buffer).await?;
        read_request(&mut stream, &mut buffer).await?;
        Ok(())
    })
    .await;
    let mut client = client(addr).await;
    assert_eq!(
        client.call("first", Value::Null).await.unwrap(),
        json!({ "n": 1 })
    );
    assert_eq!(
        client.call("second", Value::Null).await.unwrap(),
        json!({ "n": 2 })
    );
}

fn letter(index: usize) -> char {
    char::from(b"abcdefghijklmnopqrstuvwxyz"[index % 26])
}

#[tokio::test]
async fn a_reply_of_tens_of_mib_arrives_intact() {
    const SIZE: usize = 40 * 1024 * 1024;
    let addr = serve(1, |_, mut stream| async move {
        let mut buffer = Vec::new();
        read_request(&mut stream, &mut buffer).await?;
        let text: String = (0..SIZE).map(letter).collect();
        stream
            .write_all(&success(&json!({ "executed": true, "result": text })))
            .await?;
        read_request(&mut stream, &mut buffer).await?;
        Ok(())
    })
    .await;
    let mut client = client(addr).await;
    let started = Instant::now();
    let stdout = client.execute_code("print('a' * 40 MiB)").await.unwrap();
    assert_eq!(stdout.len(), SIZE);
    assert!(stdout.chars().enumerate().all(|(i, c)| c == letter(i)));
    assert!(
        started.elapsed() < STEP_TIMEOUT,
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn garbage_is_invalid_json_at_once_and_the_next_command_reconnects() {
    let addr = serve(2, |index, mut stream| async move {
        let mut buffer = Vec::new();
        read_request(&mut stream, &mut buffer).await?;
        if index == 0 {
            stream
                .write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n")
                .await?;
            // Keep the socket open: the client must not wait for more.
            tokio::time::sleep(STEP_TIMEOUT).await;
        } else {
            stream.write_all(&success(&json!({ "pong": true }))).await?;
            read_request(&mut stream, &mut buffer).await?;
        }
        Ok(())
    })
    .await;
    let mut client = client(addr).await;
    let started = Instant::now();
    let error = client.call("ping", Value::Null).await.unwrap_err();
    assert!(
        matches!(
            error,
            Error::InvalidJson {
                offset: 0,
                source: None,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(!client.is_connected());
    client.ping().await.unwrap();
}

#[tokio::test]
async fn an_object_that_does_not_parse_is_invalid_json_with_the_parser_error() {
    let addr = serve(1, |_, mut stream| async move {
        let mut buffer = Vec::new();
        read_request(&mut stream, &mut buffer).await?;
        stream.write_all(br#"{"status": success}"#).await?;
        read_request(&mut stream, &mut buffer).await?;
        Ok(())
    })
    .await;
    let mut client = client(addr).await;
    let error = client.call("ping", Value::Null).await.unwrap_err();
    assert!(
        matches!(
            error,
            Error::InvalidJson {
                source: Some(_),
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.source().is_some());
}

#[tokio::test]
async fn a_server_that_closes_mid_reply_is_reported_as_closed() {
    let addr = serve(1, |_, mut stream| async move {
        let mut buffer = Vec::new();
        read_request(&mut stream, &mut buffer).await?;
        stream
            .write_all(br#"{"status": "success", "result": {"na"#)
            .await?;
        stream.shutdown().await?;
        Ok(())
    })
    .await;
    let mut client = client(addr).await;
    let error = client
        .call("get_scene_info", Value::Null)
        .await
        .unwrap_err();
    match &error {
        Error::Closed {
            command, received, ..
        } => {
            assert_eq!(command, "get_scene_info");
            assert!(*received > 10, "{received}");
        }
        other => panic!("expected Closed, got {other:?}"),
    }
    assert!(
        error
            .to_string()
            .contains("closed the connection before replying to get_scene_info")
    );
}

#[tokio::test]
async fn a_server_that_never_replies_times_out_within_the_command_timeout() {
    let addr = serve(1, |_, mut stream| async move {
        let mut buffer = Vec::new();
        read_request(&mut stream, &mut buffer).await?;
        tokio::time::sleep(STEP_TIMEOUT).await;
        Ok(())
    })
    .await;
    let mut client = client(addr).await;
    let started = Instant::now();
    let error = client
        .call_with_timeout(
            "execute_code",
            json!({ "code": "" }),
            Duration::from_millis(300),
        )
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    assert!(error.is_timeout(), "{error:?}");
    assert!(
        elapsed >= Duration::from_millis(300) && elapsed < Duration::from_secs(5),
        "{elapsed:?}"
    );
    assert!(
        !client.is_connected(),
        "a timed-out connection must not be reused"
    );
}

#[tokio::test]
async fn an_error_reply_is_a_blender_error_and_keeps_the_connection() {
    let addr = serve(1, |_, mut stream| async move {
        let mut buffer = Vec::new();
        read_request(&mut stream, &mut buffer).await?;
        let reply = json!({ "status": "error", "message": "Unknown command type: nope" });
        stream.write_all(reply.to_string().as_bytes()).await?;
        read_request(&mut stream, &mut buffer).await?;
        stream.write_all(&success(&json!({}))).await?;
        read_request(&mut stream, &mut buffer).await?;
        Ok(())
    })
    .await;
    let mut client = client(addr).await;
    let error = client.call("nope", Value::Null).await.unwrap_err();
    assert_eq!(error.blender_message(), Some("Unknown command type: nope"));
    assert_eq!(
        error.to_string(),
        "blender refused nope: Unknown command type: nope"
    );
    assert!(client.is_connected());
    client.ping().await.unwrap();
}

#[tokio::test]
async fn a_reply_without_status_is_malformed() {
    let addr = serve(1, |_, mut stream| async move {
        let mut buffer = Vec::new();
        read_request(&mut stream, &mut buffer).await?;
        stream.write_all(br#"{"result": 1}"#).await?;
        read_request(&mut stream, &mut buffer).await?;
        Ok(())
    })
    .await;
    let mut client = client(addr).await;
    let error = client.call("ping", Value::Null).await.unwrap_err();
    assert!(matches!(error, Error::Malformed { .. }), "{error:?}");
}

#[tokio::test]
async fn a_reply_over_the_size_limit_is_refused() {
    let addr = serve(1, |_, mut stream| async move {
        let mut buffer = Vec::new();
        read_request(&mut stream, &mut buffer).await?;
        stream
            .write_all(&success(&json!("x".repeat(100_000))))
            .await?;
        read_request(&mut stream, &mut buffer).await?;
        Ok(())
    })
    .await;
    let mut client = Client::builder()
        .max_reply_bytes(4096)
        .command_timeout(STEP_TIMEOUT)
        .connect(addr.to_string())
        .await
        .unwrap();
    let error = client.call("ping", Value::Null).await.unwrap_err();
    assert!(
        matches!(error, Error::TooLarge { limit: 4096, .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_typed_helper_reports_an_unexpected_result_shape() {
    let addr = serve(1, |_, mut stream| async move {
        let mut buffer = Vec::new();
        read_request(&mut stream, &mut buffer).await?;
        stream.write_all(&success(&json!({ "name": 3 }))).await?;
        read_request(&mut stream, &mut buffer).await?;
        Ok(())
    })
    .await;
    let mut client = client(addr).await;
    let error = client.scene_info().await.unwrap_err();
    assert!(matches!(error, Error::UnexpectedResult { .. }), "{error:?}");
    assert!(error.source().is_some());
    assert!(client.is_connected());
}

#[tokio::test]
async fn a_refused_connection_is_a_connect_error_naming_the_address() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    drop(listener);
    let error = Client::connect(addr.clone()).await.unwrap_err();
    assert!(matches!(error, Error::Connect { .. }), "{error:?}");
    assert!(error.to_string().contains(&addr));
    assert!(
        error.source().is_some(),
        "the io error is the source, not part of the message"
    );
    assert!(!error.to_string().contains("refused"));
}
