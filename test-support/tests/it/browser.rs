//! The headless Chromium harness against a tiny local web page and a real noVNC connection.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use test_support::browser::{Browser, Image, NOVNC_CONNECTED, NOVNC_STATUS_TEXT, save_artifact};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::vnc_stack::{VncStack, WINDOW_COLOUR};

/// Draws a magenta band and a green band on a canvas 300 ms after loading, then marks the root
/// element, so the test has to wait in real time.
const CANVAS_PAGE: &str = r"<!doctype html>
<html><head><title>canvas</title></head>
<body style='margin:0;background:#ffffff'>
<canvas id='c' width='640' height='360'></canvas>
<script>
setTimeout(() => {
  const context = document.getElementById('c').getContext('2d');
  context.fillStyle = '#ff00ff';
  context.fillRect(0, 0, 640, 180);
  context.fillStyle = '#00c000';
  context.fillRect(0, 180, 640, 180);
  document.documentElement.classList.add('drawn');
}, 300);
</script>
</body></html>";

/// A one-page HTTP server on 127.0.0.1 that answers every request with `body`; stops on drop.
struct PageServer {
    port: u16,
    task: JoinHandle<()>,
}

impl PageServer {
    async fn start(body: &'static str) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buffer = [0_u8; 1024];
                    // Read the request head (bounded in size and time), then answer.
                    let head = tokio::time::timeout(Duration::from_secs(5), async {
                        while !request.windows(4).any(|window| window == b"\r\n\r\n")
                            && request.len() < 16 * 1024
                        {
                            match stream.read(&mut buffer).await {
                                Ok(0) | Err(_) => return false,
                                Ok(read) => request.extend_from_slice(&buffer[..read]),
                            }
                        }
                        true
                    })
                    .await;
                    if head != Ok(true) {
                        return;
                    }
                    let response = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: text/html; charset=utf-8\r\n\
                         content-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(response.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        Ok(Self { port, task })
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }
}

impl Drop for PageServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("a bound address").port()
}

/// Waits (bounded) until no live process is left in `group`.
async fn group_gone(group: u32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !test_support::process::group_members(group).is_empty() {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    true
}

#[tokio::test]
async fn a_missing_chromium_names_the_debian_package() {
    let error = Browser::builder()
        .chromium("/nonexistent/chromium")
        .launch()
        .await
        .unwrap_err();
    let message = format!("{error:#}");
    assert!(
        message.contains("install the Debian package chromium"),
        "{message}"
    );

    // A "browser" that exits at once is reported as such, promptly.
    let started = Instant::now();
    let error = Browser::builder()
        .chromium("/bin/false")
        .launch()
        .await
        .unwrap_err();
    let message = format!("{error:#}");
    assert!(
        message.contains("chromium exited with exit status: 1"),
        "{message}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn dropping_a_browser_kills_its_processes() -> anyhow::Result<()> {
    let browser = Browser::launch().await?;
    let pid = browser.pid();
    assert!(!test_support::process::group_members(pid).is_empty());
    drop(browser);
    assert!(
        group_gone(pid).await,
        "left: {:?}",
        test_support::process::group_members(pid)
    );
    Ok(())
}

#[tokio::test]
async fn artifact_names_must_be_plain_file_names() {
    assert!(save_artifact("../escape.png", b"x").is_err());
    let path = save_artifact("harness-selftest.txt", b"ok").unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"ok");
    std::fs::remove_file(&path).unwrap();
    assert!(
        path.parent().unwrap().ends_with("test-artifacts"),
        "{}",
        path.display()
    );
}

#[tokio::test]
async fn a_canvas_page_is_waited_for_and_captured() -> anyhow::Result<()> {
    let server = PageServer::start(CANVAS_PAGE).await?;
    let browser = Browser::launch().await?;
    let pid = browser.pid();
    let profile = browser
        .profile_dir()
        .context("no profile folder")?
        .to_path_buf();
    let page = browser.open(&server.url()).await?;

    page.wait_for(
        "document.documentElement.classList.contains('drawn')",
        Duration::from_secs(10),
    )
    .await?;
    assert_eq!(page.eval("document.title").await?, "canvas");
    assert_eq!(page.eval("Promise.resolve(6 * 7)").await?, 42);
    assert_eq!(page.eval("undefined").await?, serde_json::Value::Null);

    let png = page.screenshot_png().await?;
    let path = save_artifact("browser-canvas.png", &png)?;
    let image = Image::from_png(&png)?;
    let summary = image.summary();
    assert_eq!(
        (image.width(), image.height()),
        (1280, 720),
        "{}",
        path.display()
    );
    assert!(
        !image.is_essentially_single_colour(),
        "{}: {summary:?}",
        path.display()
    );
    // 640x180 of 1280x720 pixels is magenta: 12.5 %.
    let magenta = image.share_near([255, 0, 255], 2);
    assert!(
        (0.10..0.15).contains(&magenta),
        "{}: magenta {magenta}",
        path.display()
    );
    assert_eq!(image.pixel(10, 10), Some([255, 0, 255]));
    assert_eq!(image.pixel(10, 200), Some([0, 192, 0]));
    assert_eq!(image.pixel(1000, 600), Some([255, 255, 255]));

    // A condition that never holds fails after its timeout, promptly.
    let started = Instant::now();
    let error = page
        .wait_for("window.neverSet === true", Duration::from_millis(500))
        .await;
    assert!(error.is_err());
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let message = format!("{:#}", error.unwrap_err());
    assert!(
        message.contains("did not become true within 500ms"),
        "{message}"
    );

    // A throwing expression is an error carrying the exception.
    let message = format!(
        "{:#}",
        page.eval("throw new Error('boom')").await.unwrap_err()
    );
    assert!(message.contains("boom"), "{message}");

    // A page that cannot load is an error, and a password in its URL is not shown.
    let unreachable = format!(
        "http://127.0.0.1:{}/vnc.html?password=hunter2&x=1",
        closed_port()
    );
    let message = format!("{:#}", browser.open(&unreachable).await.unwrap_err());
    assert!(message.contains("failed to open"), "{message}");
    assert!(message.contains("password=<redacted>&x=1"), "{message}");
    assert!(!message.contains("hunter2"), "{message}");
    assert!(!format!("{page:?}").contains("hunter2"));

    page.close().await?;
    browser.close().await?;
    assert!(
        test_support::process::group_members(pid).is_empty(),
        "chromium {pid} left processes after close"
    );
    assert!(
        !profile.exists(),
        "profile {} left behind",
        profile.display()
    );
    Ok(())
}

#[tokio::test]
async fn novnc_connects_with_the_password_and_refuses_a_wrong_one() -> anyhow::Result<()> {
    const PASSWORD: &str = "rpb-test-7f3a";
    let stack = VncStack::start(PASSWORD).await?;
    let browser = Browser::launch().await?;

    let page = browser.open(&stack.novnc_url(PASSWORD)).await?;
    page.wait_for_novnc_connected(Duration::from_secs(20))
        .await?;
    let status = page.eval(NOVNC_STATUS_TEXT).await?;
    assert!(
        status
            .as_str()
            .is_some_and(|text| text.starts_with("Connected")),
        "{status}"
    );

    // The remote desktop, with its magenta test window, is what the page shows. The first
    // frame can lag the connected state a little: poll, bounded.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (png, image) = loop {
        let png = page.screenshot_png().await?;
        let image = Image::from_png(&png)?;
        if image.share_near(WINDOW_COLOUR, 8) > 0.15 || Instant::now() >= deadline {
            break (png, image);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let path = save_artifact("browser-novnc.png", &png)?;
    let summary = image.summary();
    assert!(
        !image.is_essentially_single_colour(),
        "{}: {summary:?}",
        path.display()
    );
    let magenta = image.share_near(WINDOW_COLOUR, 8);
    assert!(
        magenta > 0.15,
        "{}: magenta {magenta}, {summary:?}",
        path.display()
    );

    // A wrong password is refused: noVNC reports it and never reaches the connected state.
    let wrong = browser.open(&stack.novnc_url("wrong-password")).await?;
    wrong
        .wait_for(
            &format!("!({NOVNC_CONNECTED}) && /rejected|failed/i.test({NOVNC_STATUS_TEXT})"),
            Duration::from_secs(20),
        )
        .await?;
    let status = wrong.eval(NOVNC_STATUS_TEXT).await?;
    assert!(
        status
            .as_str()
            .is_some_and(|text| text.contains("rejected")),
        "{status}"
    );
    assert_eq!(wrong.eval(NOVNC_CONNECTED).await?, false, "{status}");
    let message = format!(
        "{:#}",
        wrong
            .wait_for_novnc_connected(Duration::from_millis(500))
            .await
            .unwrap_err()
    );
    assert!(
        message.contains("its status line reads: New connection has been rejected"),
        "{message}"
    );
    assert!(
        message.contains("password=<redacted>") && !message.contains("wrong-password"),
        "{message}"
    );
    save_artifact(
        "browser-novnc-wrong-password.png",
        &wrong.screenshot_png().await?,
    )?;

    browser.close().await?;
    let pids = stack.pids();
    stack.stop().await?;
    for pid in pids {
        assert!(
            test_support::process::group_members(pid).is_empty(),
            "process group {pid} still running"
        );
    }
    Ok(())
}
