//! Headless Chromium driven through the `DevTools` protocol, for end-to-end tests that must see
//! what a person sees in a browser (noVNC showing Blender, for example).
//!
//! `chromium --screenshot` does not work for pages that need the network after loading: its
//! virtual time runs ahead of the page's WebSocket, so noVNC is caught at "Connecting...". This
//! module starts `/usr/bin/chromium --headless` with a fresh profile and a `DevTools` port, talks
//! to it over a WebSocket, and waits in real time: [`Page::wait_for`] polls a JavaScript
//! condition until it holds or a deadline passes, then [`Page::screenshot_png`] captures what is
//! on screen. [`Image`] tells a real picture from a blank canvas, and [`save_artifact`] keeps
//! the screenshot for people to look at.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use std::time::Duration;
//! use test_support::browser::{Browser, Image, NOVNC_CONNECTED, save_artifact};
//!
//! let browser = Browser::launch().await?;
//! let page = browser
//!     .open("http://127.0.0.1:6080/vnc.html?autoconnect=1&password=secret&resize=scale")
//!     .await?;
//! page.wait_for(NOVNC_CONNECTED, Duration::from_secs(30)).await?;
//! let png = page.screenshot_png().await?;
//! let path = save_artifact("novnc.png", &png)?;
//! let image = Image::from_png(&png)?;
//! assert!(!image.is_essentially_single_colour(), "{path:?}: {:?}", image.summary());
//! browser.close().await?;
//! # Ok(())
//! # }
//! ```
//!
//! Secrets: a URL may carry a password (noVNC reads it from `?password=`). The URL is sent to
//! the browser over its `DevTools` socket, never on a command line, and every error and `Debug`
//! output of this module shows it through [`redact`].
//!
//! Processes: Chromium runs in its own process group. [`Browser::close`] asks it to quit and
//! then kills whatever is left of that group, by its process id; dropping a [`Browser`] kills
//! the group at once. A missing `/usr/bin/chromium` is an error naming the Debian package
//! `chromium`, never a skip.

mod artifact;
mod cdp;
mod image;

use std::collections::VecDeque;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use base64::Engine as _;
use rustix::process::{Pid, Signal};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{broadcast, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub use artifact::{ARTIFACT_DIR_ENV, artifact_dir, save_artifact};
pub use image::{Image, ImageSummary, SINGLE_COLOUR_SHARE};

use cdp::Connection;

/// Where Debian's `chromium` package installs the browser.
pub const CHROMIUM_PATH: &str = "/usr/bin/chromium";

/// JavaScript condition that holds once noVNC (1.3, as in Debian's `novnc`) is connected to the
/// VNC server and past authentication: its `updateVisualState("connected")` puts the class
/// `noVNC_connected` on the root element.
pub const NOVNC_CONNECTED: &str = "document.documentElement.classList.contains('noVNC_connected')";

/// JavaScript expression for noVNC's status line ("Connected (unencrypted) to ...",
/// "Failed to connect to server", "New connection has been rejected with reason: ...").
pub const NOVNC_STATUS_TEXT: &str =
    "(document.getElementById('noVNC_status') || {}).textContent || ''";

/// The flags every launch uses: headless as root in a container, nothing phoning home.
const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-breakpad",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--mute-audio",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
];

const DEVTOOLS_PREFIX: &str = "DevTools listening on ";
const STDERR_TAIL_LINES: usize = 40;
const POLL_INTERVAL: Duration = Duration::from_millis(100);
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Replaces the value of every `password=` in `text` (URLs, query strings, messages) with
/// `<redacted>`.
pub fn redact(text: &str) -> String {
    const KEY: &str = "password=";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.to_ascii_lowercase().find(KEY) {
        let value_start = start + KEY.len();
        out.push_str(&rest[..value_start]);
        let value = &rest[value_start..];
        let end = value
            .find(|c: char| {
                matches!(c, '&' | '#' | '"' | '\'' | ')' | '>' | ';') || c.is_whitespace()
            })
            .unwrap_or(value.len());
        if end > 0 {
            out.push_str("<redacted>");
        }
        rest = &value[end..];
    }
    out.push_str(rest);
    out
}

/// Settings for [`Browser`]; start with [`Browser::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct BrowserBuilder {
    chromium: PathBuf,
    viewport: (u32, u32),
    launch_timeout: Duration,
    command_timeout: Duration,
    load_timeout: Duration,
}

impl Default for BrowserBuilder {
    fn default() -> Self {
        Self {
            chromium: PathBuf::from(CHROMIUM_PATH),
            viewport: (1280, 720),
            launch_timeout: Duration::from_secs(30),
            command_timeout: Duration::from_secs(30),
            load_timeout: Duration::from_secs(30),
        }
    }
}

impl BrowserBuilder {
    /// The browser binary. Default: [`CHROMIUM_PATH`].
    pub fn chromium(mut self, path: impl AsRef<Path>) -> Self {
        self.chromium = path.as_ref().to_path_buf();
        self
    }

    /// The size of each page's viewport in CSS pixels, which is the size of its screenshots.
    /// Default: 1280x720.
    pub fn viewport(mut self, width: u32, height: u32) -> Self {
        self.viewport = (width, height);
        self
    }

    /// How long Chromium may take to start and accept the `DevTools` connection. Default: 30 s.
    pub fn launch_timeout(mut self, timeout: Duration) -> Self {
        self.launch_timeout = timeout;
        self
    }

    /// How long one `DevTools` command (evaluate, screenshot, ...) may take. Default: 30 s.
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.command_timeout = timeout;
        self
    }

    /// How long [`Browser::open`] and [`Page::goto`] wait for the page's `load` event.
    /// Default: 30 s.
    pub fn load_timeout(mut self, timeout: Duration) -> Self {
        self.load_timeout = timeout;
        self
    }

    /// Starts Chromium with a fresh profile in a temporary folder.
    ///
    /// # Errors
    /// Fails when the binary is missing (naming the Debian package `chromium`), when Chromium
    /// exits or does not print its `DevTools` address within the launch timeout (the error then
    /// holds the end of its stderr), or when the `DevTools` connection fails.
    pub async fn launch(self) -> anyhow::Result<Browser> {
        let chromium = self.chromium.display().to_string();
        if !self.chromium.exists() {
            bail!(
                "{chromium} not found: install the Debian package chromium \
                 (apt-get install chromium)"
            );
        }
        let profile = tempfile::Builder::new()
            .prefix("rpb-chromium-")
            .tempdir()
            .context("failed to create a temporary chromium profile folder")?;
        let mut child = Command::new(&self.chromium)
            .args(CHROMIUM_FLAGS)
            .arg(format!(
                "--window-size={},{}",
                self.viewport.0, self.viewport.1
            ))
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            // Keep everything Chromium writes outside the profile (caches, NSS db) in it too.
            .env("HOME", profile.path())
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("XDG_CACHE_HOME")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| {
                format!("failed to run {chromium}: install the Debian package chromium")
            })?;
        let pid = child
            .id()
            .context("chromium exited before its pid was known")?;
        let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));
        let (endpoint_tx, endpoint_rx) = oneshot::channel();
        let stderr_task = child
            .stderr
            .take()
            .map(|stderr| tokio::spawn(read_stderr(stderr, endpoint_tx, Arc::clone(&stderr_tail))));
        let mut browser = Browser {
            child: Some(child),
            pid,
            connection: None,
            endpoint: String::new(),
            settings: self,
            stderr_tail,
            stderr_task,
            profile: Some(profile),
        };
        match browser.connect(endpoint_rx).await {
            Ok(()) => Ok(browser),
            Err(error) => {
                let tail = browser.stderr_tail();
                let _ = browser.shut_down().await;
                let tail = if tail.trim().is_empty() {
                    String::from("its stderr was empty")
                } else {
                    format!("the end of its stderr:\n{tail}")
                };
                Err(error.context(format!("failed to start {chromium}; {tail}")))
            }
        }
    }
}

/// A running headless Chromium. Kills its process group when dropped; prefer [`Browser::close`].
pub struct Browser {
    child: Option<Child>,
    pid: u32,
    connection: Option<Arc<Connection>>,
    endpoint: String,
    settings: BrowserBuilder,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
    stderr_task: Option<JoinHandle<()>>,
    profile: Option<tempfile::TempDir>,
}

impl fmt::Debug for Browser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Browser")
            .field("pid", &self.pid)
            .field("endpoint", &self.endpoint)
            .field(
                "profile",
                &self.profile.as_ref().map(tempfile::TempDir::path),
            )
            .finish_non_exhaustive()
    }
}

impl Browser {
    /// Settings for a browser, with the defaults documented on each setter.
    pub fn builder() -> BrowserBuilder {
        BrowserBuilder::default()
    }

    /// Starts Chromium with the default settings.
    ///
    /// # Errors
    /// As [`BrowserBuilder::launch`].
    pub async fn launch() -> anyhow::Result<Self> {
        Self::builder().launch().await
    }

    /// The process id of the browser process (also its process group id).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The temporary profile folder (removed by [`Browser::close`] and on drop).
    pub fn profile_dir(&self) -> Option<&Path> {
        self.profile.as_ref().map(tempfile::TempDir::path)
    }

    /// The last lines Chromium wrote to stderr, with passwords redacted.
    pub fn stderr_tail(&self) -> String {
        let tail = self
            .stderr_tail
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        redact(
            &tail
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join("\n"),
        )
    }

    /// Opens `url` in a new tab and waits for its `load` event.
    ///
    /// # Errors
    /// Fails when the browser is gone, when the page cannot be loaded (for example connection
    /// refused), or when it does not finish loading within the load timeout. The URL in the
    /// error has its password redacted.
    pub async fn open(&self, url: &str) -> anyhow::Result<Page> {
        let connection = Arc::clone(self.connection()?);
        let timeout = self.settings.command_timeout;
        let (width, height) = self.settings.viewport;
        let target = connection
            .call(
                None,
                "Target.createTarget",
                json!({ "url": "about:blank" }),
                timeout,
            )
            .await
            .context("failed to open a new tab")?;
        let target_id = string_field(&target, "targetId")?;
        let mut page = Page {
            connection,
            session_id: String::new(),
            target_id,
            url: String::from("about:blank"),
            command_timeout: timeout,
            load_timeout: self.settings.load_timeout,
        };
        let result = async {
            let attached = page
                .connection
                .call(
                    None,
                    "Target.attachToTarget",
                    json!({ "targetId": page.target_id, "flatten": true }),
                    timeout,
                )
                .await
                .context("failed to attach to the new tab")?;
            page.session_id = string_field(&attached, "sessionId")?;
            page.call("Page.enable", json!({})).await?;
            page.call(
                "Emulation.setDeviceMetricsOverride",
                json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": false }),
            )
            .await?;
            page.goto(url).await
        }
        .await;
        match result {
            Ok(()) => Ok(page),
            Err(error) => {
                let _ = page.close().await;
                Err(error)
            }
        }
    }

    /// Asks Chromium to quit, kills whatever is left of its process group, and removes the
    /// temporary profile.
    ///
    /// # Errors
    /// Fails when Chromium cannot be stopped or the profile folder cannot be removed.
    pub async fn close(mut self) -> anyhow::Result<()> {
        self.shut_down().await
    }

    async fn connect(&mut self, endpoint_rx: oneshot::Receiver<String>) -> anyhow::Result<()> {
        let timeout = self.settings.launch_timeout;
        let child = self.child.as_mut().context("chromium is not running")?;
        let endpoint = tokio::select! {
            endpoint = endpoint_rx => match endpoint {
                Ok(endpoint) => endpoint,
                // Stderr closed without the line: Chromium is most likely exiting.
                Err(_) => match tokio::time::timeout(CLOSE_TIMEOUT, child.wait()).await {
                    Ok(Ok(status)) => {
                        bail!("chromium exited with {status} before printing its devtools address")
                    }
                    _ => bail!("chromium closed its stderr without printing its devtools address"),
                },
            },
            status = child.wait() => {
                let status = status.context("failed to wait for chromium")?;
                bail!("chromium exited with {status} before printing its devtools address");
            }
            () = tokio::time::sleep(timeout) => {
                bail!("chromium did not print its devtools address within {timeout:?}");
            }
        };
        let connection = Connection::connect(&endpoint, timeout).await?;
        self.endpoint = endpoint;
        self.connection = Some(Arc::new(connection));
        Ok(())
    }

    fn connection(&self) -> anyhow::Result<&Arc<Connection>> {
        self.connection
            .as_ref()
            .context("the browser is not connected")
    }

    async fn shut_down(&mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        if let Some(connection) = self.connection.take() {
            // Chromium may drop the socket before it answers; the exit below is what counts.
            let _ = connection
                .call(None, "Browser.close", json!({}), CLOSE_TIMEOUT)
                .await;
        }
        let exited = tokio::time::timeout(CLOSE_TIMEOUT, child.wait()).await;
        // Helpers (zygotes, renderers) share the group: kill what is left of it. The group id
        // stays ours while any of its processes lives, and this runs right after the exit.
        kill_group(self.pid);
        if exited.is_err() {
            let _ = child.start_kill();
            tokio::time::timeout(CLOSE_TIMEOUT, child.wait())
                .await
                .map_err(|_| anyhow!("chromium (pid {}) did not exit after SIGKILL", self.pid))?
                .context("failed to wait for chromium")?;
        }
        wait_group_gone(self.pid).await;
        if let Some(task) = self.stderr_task.take() {
            task.abort();
        }
        if let Some(profile) = self.profile.take() {
            let path = profile.path().to_path_buf();
            profile.close().with_context(|| {
                format!(
                    "failed to remove the chromium profile folder {}",
                    path.display()
                )
            })?;
        }
        Ok(())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_group(self.pid);
            // kill_on_drop and tokio's orphan reaping collect the process later.
            let _ = child.start_kill();
        }
        if let Some(task) = self.stderr_task.take() {
            task.abort();
        }
    }
}

/// One tab of a [`Browser`].
pub struct Page {
    connection: Arc<Connection>,
    session_id: String,
    target_id: String,
    url: String,
    command_timeout: Duration,
    load_timeout: Duration,
}

impl fmt::Debug for Page {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Page")
            .field("target_id", &self.target_id)
            .field("url", &redact(&self.url))
            .finish_non_exhaustive()
    }
}

impl Page {
    /// The last URL opened in this tab, with passwords redacted (fit for messages).
    pub fn url_redacted(&self) -> String {
        redact(&self.url)
    }

    /// Loads `url` in this tab and waits for its `load` event.
    ///
    /// # Errors
    /// Fails when the page cannot be loaded or does not finish loading within the load
    /// timeout; the URL in the error has its password redacted.
    pub async fn goto(&mut self, url: &str) -> anyhow::Result<()> {
        let shown = redact(url);
        let mut events = self.connection.subscribe();
        let navigated = self
            .call("Page.navigate", json!({ "url": url }))
            .await
            .with_context(|| format!("failed to open {shown}"))?;
        url.clone_into(&mut self.url);
        if let Some(error) = navigated.get("errorText").and_then(Value::as_str)
            && !error.is_empty()
        {
            bail!("failed to open {shown}: the browser reported {error} (is the server up?)");
        }
        let deadline = Instant::now() + self.load_timeout;
        loop {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Ok(event)) => {
                    if event.method == "Page.loadEventFired"
                        && event.session_id.as_deref() == Some(self.session_id.as_str())
                    {
                        return Ok(());
                    }
                }
                Ok(Err(broadcast::error::RecvError::Lagged(_))) => {}
                Ok(Err(broadcast::error::RecvError::Closed)) => {
                    bail!("the browser went away while loading {shown}")
                }
                Err(_) => bail!(
                    "{shown} did not finish loading within {:?}",
                    self.load_timeout
                ),
            }
        }
    }

    /// Evaluates a JavaScript expression in the page (awaiting it if it is a promise) and
    /// returns its value as JSON (`null` for `undefined` and values that have no JSON form).
    ///
    /// # Errors
    /// Fails when the expression throws (the error holds the exception text) or the browser
    /// does not answer within the command timeout.
    pub async fn eval(&self, expression: &str) -> anyhow::Result<Value> {
        let mut result = self
            .call(
                "Runtime.evaluate",
                json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
            )
            .await?;
        if let Some(details) = result.get("exceptionDetails") {
            let text = details
                .pointer("/exception/description")
                .and_then(Value::as_str)
                .or_else(|| details.get("text").and_then(Value::as_str))
                .unwrap_or("unknown exception");
            bail!(
                "javascript `{}` threw on {}: {}",
                shorten(expression),
                self.url_redacted(),
                redact(text)
            );
        }
        Ok(result
            .get_mut("result")
            .and_then(|value| value.get_mut("value"))
            .map_or(Value::Null, Value::take))
    }

    /// Polls the JavaScript `condition` every 100 ms, in real time, until it is truthy.
    ///
    /// # Errors
    /// Fails when the condition does not hold within `timeout`; when its last evaluation threw,
    /// that error is the source.
    pub async fn wait_for(&self, condition: &str, timeout: Duration) -> anyhow::Result<()> {
        let expression = format!("!!(\n{condition}\n)");
        let deadline = Instant::now() + timeout;
        let mut last_error = None;
        loop {
            match tokio::time::timeout_at(deadline, self.eval(&expression)).await {
                Ok(Ok(Value::Bool(true))) => return Ok(()),
                Ok(Ok(_)) => last_error = None,
                Ok(Err(error)) => last_error = Some(error),
                Err(_) => {}
            }
            let now = Instant::now();
            if now >= deadline {
                let message = format!(
                    "`{}` did not become true within {timeout:?} on {}",
                    shorten(condition),
                    self.url_redacted()
                );
                return Err(match last_error {
                    Some(error) => error.context(message),
                    None => anyhow!(message),
                });
            }
            tokio::time::sleep(POLL_INTERVAL.min(deadline - now)).await;
        }
    }

    /// Waits until a noVNC page ([`NOVNC_CONNECTED`]) is connected and past authentication.
    ///
    /// # Errors
    /// Fails when it is not connected within `timeout`; the error then quotes noVNC's status
    /// line (for example "New connection has been rejected with reason: password check
    /// failed!" for a wrong password, or "Failed to connect to server").
    pub async fn wait_for_novnc_connected(&self, timeout: Duration) -> anyhow::Result<()> {
        let Err(error) = self.wait_for(NOVNC_CONNECTED, timeout).await else {
            return Ok(());
        };
        let status = match self.eval(NOVNC_STATUS_TEXT).await {
            Ok(Value::String(text)) if !text.trim().is_empty() => redact(text.trim()),
            _ => String::from("(no status shown)"),
        };
        Err(error.context(format!(
            "noVNC did not connect within {timeout:?}; its status line reads: {status}"
        )))
    }

    /// Captures the visible part of the page as a PNG.
    ///
    /// # Errors
    /// Fails when the browser does not answer within the command timeout or sends no image.
    pub async fn screenshot_png(&self) -> anyhow::Result<Vec<u8>> {
        let result = self
            .call("Page.captureScreenshot", json!({ "format": "png" }))
            .await
            .with_context(|| format!("failed to take a screenshot of {}", self.url_redacted()))?;
        let data = result
            .get("data")
            .and_then(Value::as_str)
            .context("the screenshot reply holds no image data")?;
        base64::engine::general_purpose::STANDARD
            .decode(data)
            .context("the screenshot reply holds invalid base64")
    }

    /// Closes this tab.
    ///
    /// # Errors
    /// Fails when the browser does not answer.
    pub async fn close(self) -> anyhow::Result<()> {
        self.connection
            .call(
                None,
                "Target.closeTarget",
                json!({ "targetId": self.target_id }),
                self.command_timeout,
            )
            .await
            .map(drop)
            .context("failed to close the tab")
    }

    async fn call(&self, method: &str, params: Value) -> anyhow::Result<Value> {
        self.connection
            .call(Some(&self.session_id), method, params, self.command_timeout)
            .await
    }
}

async fn read_stderr(
    stderr: tokio::process::ChildStderr,
    endpoint_tx: oneshot::Sender<String>,
    tail: Arc<Mutex<VecDeque<String>>>,
) {
    let mut endpoint_tx = Some(endpoint_tx);
    let mut reader = BufReader::new(stderr);
    let mut line = Vec::new();
    // Ends when Chromium closes stderr (it exits); reading on keeps its pipe from filling.
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&line).trim_end().to_owned();
        if let Some(endpoint) = text.strip_prefix(DEVTOOLS_PREFIX)
            && let Some(endpoint_tx) = endpoint_tx.take()
        {
            let _ = endpoint_tx.send(endpoint.trim().to_owned());
        }
        let mut tail = tail.lock().unwrap_or_else(PoisonError::into_inner);
        if tail.len() == STDERR_TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(text);
    }
}

fn string_field(value: &Value, name: &str) -> anyhow::Result<String> {
    value
        .get(name)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .with_context(|| format!("the devtools reply has no {name}"))
}

/// An expression fit for an error message: redacted and at most 200 characters.
fn shorten(expression: &str) -> String {
    let redacted = redact(expression);
    match redacted.char_indices().nth(200) {
        Some((index, _)) => format!("{}...", &redacted[..index]),
        None => redacted,
    }
}

fn kill_group(pid: u32) {
    if let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
        let _ = rustix::process::kill_process_group(pid, Signal::KILL);
    }
}

/// Waits (at most [`CLOSE_TIMEOUT`]) until no process of the group is left. Helpers that were
/// re-parented may linger as zombies if nothing reaps them; that is not worth failing over.
async fn wait_group_gone(pid: u32) {
    let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
        return;
    };
    let deadline = Instant::now() + CLOSE_TIMEOUT;
    while rustix::process::test_kill_process_group(pid).is_ok() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_every_password_value() {
        assert_eq!(
            redact("http://127.0.0.1:6080/vnc.html?autoconnect=1&password=s3cr3t&resize=scale"),
            "http://127.0.0.1:6080/vnc.html?autoconnect=1&password=<redacted>&resize=scale"
        );
        assert_eq!(redact("a?password=x#frag"), "a?password=<redacted>#frag");
        assert_eq!(
            redact("?Password=x y password=z"),
            "?Password=<redacted> y password=<redacted>"
        );
        assert_eq!(redact("'password=abc'"), "'password=<redacted>'");
        assert_eq!(redact("no secrets here"), "no secrets here");
        assert_eq!(redact("password="), "password=");
        assert_eq!(redact("päss password=ü&x"), "päss password=<redacted>&x");
    }

    #[test]
    fn shorten_redacts_and_cuts() {
        assert_eq!(shorten("f('password=abc')"), "f('password=<redacted>')");
        let long = "x".repeat(300);
        assert_eq!(shorten(&long).len(), 203);
    }
}
