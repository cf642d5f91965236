//! A throwaway desktop served through noVNC: Xvfb on a display it picks itself, a Tk window
//! painted in known colours, x11vnc with a password file, and websockify serving noVNC, all on
//! 127.0.0.1 and all stopped by process id (each runs in its own process group).

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use test_support::process::free_port;

use anyhow::{Context as _, bail};
use rustix::process::{Pid, Signal};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::time::Instant;

/// The colour that fills most of the test window (nothing in noVNC's own UI uses it).
pub(crate) const WINDOW_COLOUR: [u8; 3] = [255, 0, 255];

const START_TIMEOUT: Duration = Duration::from_secs(15);

/// Draws an 800x450 magenta window with a green 400x225 block in its top left corner, at the
/// top left of the screen (no window manager runs, so the geometry is honoured).
const WISH_SCRIPT: &str = "\
wm overrideredirect . 1
wm geometry . 800x450+0+0
. configure -background #ff00ff
frame .block -width 400 -height 225 -background #00c000
place .block -x 0 -y 0
";

/// One started process, killed with its process group on drop.
struct Process {
    name: &'static str,
    pid: u32,
    child: Child,
}

impl Process {
    fn spawn(name: &'static str, package: &str, command: &mut Command) -> anyhow::Result<Self> {
        let child = command
            .stdin(Stdio::null())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| {
                format!("failed to run {name}: install the Debian package {package}")
            })?;
        let pid = child
            .id()
            .with_context(|| format!("{name} exited at once"))?;
        Ok(Self { name, pid, child })
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    async fn stop(mut self) -> anyhow::Result<()> {
        kill_group(self.pid);
        let _ = self.child.start_kill();
        tokio::time::timeout(Duration::from_secs(5), self.child.wait())
            .await
            .with_context(|| {
                format!(
                    "{} (pid {}) did not exit after SIGKILL",
                    self.name, self.pid
                )
            })?
            .with_context(|| format!("failed to wait for {}", self.name))?;
        Ok(())
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        kill_group(self.pid);
        let _ = self.child.start_kill();
    }
}

fn kill_group(pid: u32) {
    if let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
        let _ = rustix::process::kill_process_group(pid, Signal::KILL);
    }
}

/// The running stack. Dropping it kills everything; [`VncStack::stop`] also waits.
pub(crate) struct VncStack {
    dir: tempfile::TempDir,
    display: u32,
    web_port: u16,
    /// In start order; stopped in reverse.
    processes: Vec<Process>,
}

impl std::fmt::Debug for VncStack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VncStack")
            .field("display", &self.display)
            .field("web_port", &self.web_port)
            .finish_non_exhaustive()
    }
}

impl VncStack {
    /// Starts the stack with `password` as the VNC password (kept in a 0600 file, never on a
    /// command line).
    pub(crate) async fn start(password: &str) -> anyhow::Result<Self> {
        for (binary, package) in [
            ("/usr/bin/Xvfb", "xvfb"),
            ("/usr/bin/x11vnc", "x11vnc"),
            ("/usr/bin/websockify", "websockify"),
            ("/usr/share/novnc/vnc.html", "novnc"),
            ("/usr/bin/wish", "tk (x11vnc depends on it)"),
        ] {
            if !Path::new(binary).exists() {
                bail!("{binary} not found: install the Debian package {package}");
            }
        }
        let dir = tempfile::Builder::new()
            .prefix("rpb-vnc-")
            .tempdir()
            .context("failed to create the vnc fixture folder")?;
        let mut stack = Self {
            dir,
            display: 0,
            web_port: 0,
            processes: Vec::new(),
        };
        stack.start_xvfb().await?;
        stack.start_window()?;
        let vnc_port = stack.start_x11vnc(password).await?;
        stack.start_websockify(vnc_port).await?;
        Ok(stack)
    }

    /// Xvfb picks a free display itself and writes its number to stdout once it is ready.
    async fn start_xvfb(&mut self) -> anyhow::Result<()> {
        let mut xvfb = Process::spawn(
            "Xvfb",
            "xvfb",
            Command::new("/usr/bin/Xvfb")
                .args([
                    "-displayfd",
                    "1",
                    "-screen",
                    "0",
                    "1280x720x24",
                    "-nolisten",
                    "tcp",
                ])
                .stdout(Stdio::piped())
                .stderr(self.log("xvfb.log")?),
        )?;
        let stdout = xvfb.child.stdout.take().context("Xvfb has no stdout")?;
        self.processes.push(xvfb);
        let mut line = String::new();
        tokio::time::timeout(START_TIMEOUT, BufReader::new(stdout).read_line(&mut line))
            .await
            .context("Xvfb did not report its display in time")?
            .context("failed to read Xvfb's display number")?;
        self.display = line.trim().parse().with_context(|| {
            format!(
                "Xvfb reported no display number; the logs:\n{}",
                self.logs()
            )
        })?;
        Ok(())
    }

    fn start_window(&mut self) -> anyhow::Result<()> {
        let script = self.dir.path().join("window.tcl");
        std::fs::write(&script, WISH_SCRIPT).context("failed to write the wish script")?;
        let wish = Process::spawn(
            "wish",
            "tk",
            Command::new("/usr/bin/wish")
                .arg(&script)
                .env("DISPLAY", format!(":{}", self.display))
                .stdout(Stdio::null())
                .stderr(self.log("wish.log")?),
        )?;
        self.processes.push(wish);
        Ok(())
    }

    /// Serves the display over RFB on a free loopback port, which it returns.
    async fn start_x11vnc(&mut self, password: &str) -> anyhow::Result<u16> {
        let password_file = self.dir.path().join("vnc-password");
        std::fs::write(&password_file, format!("{password}\n"))
            .context("failed to write the vnc password file")?;
        std::fs::set_permissions(&password_file, std::fs::Permissions::from_mode(0o600))
            .context("failed to restrict the vnc password file")?;
        let vnc_port = free_port()?;
        let x11vnc = Process::spawn(
            "x11vnc",
            "x11vnc",
            Command::new("/usr/bin/x11vnc")
                .arg("-display")
                .arg(format!(":{}", self.display))
                .arg("-passwdfile")
                .arg(&password_file)
                .args(["-localhost", "-forever", "-shared", "-noipv6", "-rfbport"])
                .arg(vnc_port.to_string())
                .stdout(Stdio::null())
                .stderr(self.log("x11vnc.log")?),
        )?;
        self.processes.push(x11vnc);
        self.wait_for_banner(vnc_port, b"RFB 003.008\n").await?;
        Ok(vnc_port)
    }

    async fn start_websockify(&mut self, vnc_port: u16) -> anyhow::Result<()> {
        self.web_port = free_port()?;
        let websockify = Process::spawn(
            "websockify",
            "websockify",
            Command::new("/usr/bin/websockify")
                .args(["--web", "/usr/share/novnc"])
                .arg(format!("127.0.0.1:{}", self.web_port))
                .arg(format!("127.0.0.1:{vnc_port}"))
                .stdout(Stdio::null())
                .stderr(self.log("websockify.log")?),
        )?;
        self.processes.push(websockify);
        self.wait_for_banner(self.web_port, b"").await
    }

    /// The noVNC page that connects by itself with `password`.
    pub(crate) fn novnc_url(&self, password: &str) -> String {
        format!(
            "http://127.0.0.1:{}/vnc.html?autoconnect=1&password={password}&resize=scale",
            self.web_port
        )
    }

    /// Kills every process (in reverse start order) and waits for each.
    pub(crate) async fn stop(mut self) -> anyhow::Result<()> {
        while let Some(process) = self.processes.pop() {
            process.stop().await?;
        }
        Ok(())
    }

    /// Process ids of everything still running (for leak checks).
    pub(crate) fn pids(&self) -> Vec<u32> {
        self.processes.iter().map(|process| process.pid).collect()
    }

    fn log(&self, name: &str) -> anyhow::Result<std::fs::File> {
        let path = self.dir.path().join(name);
        std::fs::File::create(&path).with_context(|| format!("failed to create {}", path.display()))
    }

    /// Every log of the stack, for error messages.
    fn logs(&self) -> String {
        ["xvfb.log", "wish.log", "x11vnc.log", "websockify.log"]
            .iter()
            .map(|name| {
                let text = std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
                format!("--- {name}\n{text}")
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Waits until 127.0.0.1:`port` accepts a connection and sends `banner` first.
    async fn wait_for_banner(&mut self, port: u16, banner: &[u8]) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Ok(mut stream)) = tokio::time::timeout(
                Duration::from_secs(1),
                TcpStream::connect(("127.0.0.1", port)),
            )
            .await
            {
                let mut received = vec![0_u8; banner.len()];
                if let Ok(Ok(_)) =
                    tokio::time::timeout(Duration::from_secs(2), stream.read_exact(&mut received))
                        .await
                    && received == banner
                {
                    return Ok(());
                }
            }
            let exited = self
                .processes
                .iter_mut()
                .find_map(|process| process.exited().map(|status| (process.name, status)));
            if let Some((name, status)) = exited {
                bail!("{name} exited with {status}; the log:\n{}", self.logs());
            }
            if Instant::now() >= deadline {
                bail!(
                    "nothing answered on 127.0.0.1:{port} within {START_TIMEOUT:?}; the log:\n{}",
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
