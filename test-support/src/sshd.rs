//! A private OpenSSH `sshd` on a free loopback port, for tests that need a real SSH peer.
//!
//! [`Sshd::start`] generates ed25519 host and client keys in a temporary directory, writes an
//! `sshd_config`, runs `/usr/sbin/sshd -D -e -f CONFIG -p PORT` as the current user on
//! `127.0.0.1`, and waits until the server answers with its `SSH-2.0-` banner. The server runs in
//! its own process group; [`Sshd::stop`], [`Sshd::pause`] and dropping the fixture signal the
//! listener and every process descended from it (the per-connection children call `setsid`), by
//! PID, found through `/proc`. That is how "the server died" and "the server froze" are made.
//!
//! A missing `sshd` is an error that names the Debian package to install, never a skip.

use std::fmt::Write as _;
use std::io::Read as _;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use rustix::process::{Pid, Signal};

/// Absolute path of the OpenSSH server binary (sshd refuses to start from a relative path).
pub const SSHD_PATH: &str = "/usr/sbin/sshd";

/// How long [`Sshd::start`] waits for the banner before giving up.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// A running private `sshd`. Stops it (and its connection processes) on drop.
pub struct Sshd {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
    extra_config: Vec<String>,
}

impl std::fmt::Debug for Sshd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sshd")
            .field("dir", &self.dir.path())
            .field("port", &self.port)
            .field("pid", &self.child.as_ref().map(Child::id))
            .finish_non_exhaustive()
    }
}

impl Sshd {
    /// Starts a server with the default configuration.
    ///
    /// # Errors
    /// Fails when `sshd` or `ssh-keygen` is missing (naming the Debian package), when keys cannot
    /// be generated, or when the server does not answer within 15 seconds.
    pub fn start() -> anyhow::Result<Self> {
        Self::start_with(&[])
    }

    /// Starts a server with extra `sshd_config` lines (for example `"AllowTcpForwarding no"`).
    ///
    /// # Errors
    /// As [`Sshd::start`].
    pub fn start_with(extra_config: &[&str]) -> anyhow::Result<Self> {
        if !Path::new(SSHD_PATH).exists() {
            bail!(
                "{SSHD_PATH} not found: install the Debian package openssh-server \
                 (apt-get install openssh-server)"
            );
        }
        let dir = tempfile::Builder::new()
            .prefix("rpb-sshd-")
            .tempdir()
            .context("failed to create the sshd fixture directory")?;
        keygen(&dir.path().join("ssh_host_ed25519_key"), "rpb-test-host")?;
        // Sessions get a home of their own: the machine user's shell startup files never run
        // (one that takes a lock, such as `pyenv init`, stalls every later session once a test
        // kills a shell inside it).
        std::fs::create_dir(dir.path().join("home"))
            .context("failed to create the sshd fixture's home directory")?;
        keygen(&dir.path().join("id_ed25519"), "rpb-test-client")?;
        std::fs::copy(
            dir.path().join("id_ed25519.pub"),
            dir.path().join("authorized_keys"),
        )
        .context("failed to write authorized_keys")?;
        if rustix::process::geteuid().is_root() {
            // Privilege separation needs this directory when sshd runs as root.
            let _ = std::fs::create_dir_all("/run/sshd");
        }
        let mut sshd = Self {
            dir,
            port: 0,
            child: None,
            extra_config: extra_config.iter().map(|s| (*s).to_owned()).collect(),
        };
        sshd.write_config()?;
        let mut last_error = None;
        for _ in 0..5 {
            sshd.port = free_port()?;
            match sshd.spawn() {
                Ok(()) => return Ok(sshd),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("sshd did not start")))
    }

    /// The port sshd listens on (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The user name to log in as (the current user).
    pub fn user(&self) -> String {
        current_user()
    }

    /// The client's ed25519 private key file (no passphrase), authorized on this server.
    pub fn client_key(&self) -> PathBuf {
        self.dir.path().join("id_ed25519")
    }

    /// The fixture's temporary directory (keys, config, log). Removed on drop.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's host public key as an OpenSSH line (`ssh-ed25519 AAAA… comment`).
    ///
    /// # Errors
    /// Fails when the key file cannot be read.
    pub fn host_public_key(&self) -> anyhow::Result<String> {
        let path = self.dir.path().join("ssh_host_ed25519_key.pub");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("failed to read {}", path.display()))?;
        Ok(text.trim().to_owned())
    }

    /// A `known_hosts` line for this server: `[127.0.0.1]:PORT ssh-ed25519 AAAA…`.
    ///
    /// # Errors
    /// As [`Sshd::host_public_key`].
    pub fn known_hosts_line(&self) -> anyhow::Result<String> {
        let key = self.host_public_key()?;
        let mut fields = key.split_whitespace();
        let kind = fields.next().unwrap_or_default();
        let blob = fields.next().unwrap_or_default();
        Ok(format!("[127.0.0.1]:{} {kind} {blob}", self.port))
    }

    /// The host key's `SHA256:…` fingerprint, as `ssh-keygen -l` prints it.
    ///
    /// # Errors
    /// Fails when `ssh-keygen` fails.
    pub fn host_key_fingerprint(&self) -> anyhow::Result<String> {
        let out = Command::new("ssh-keygen")
            .arg("-l")
            .arg("-E")
            .arg("sha256")
            .arg("-f")
            .arg(self.dir.path().join("ssh_host_ed25519_key.pub"))
            .output()
            .context("failed to run ssh-keygen (Debian package openssh-client)")?;
        let text = String::from_utf8_lossy(&out.stdout);
        text.split_whitespace()
            .nth(1)
            .map(str::to_owned)
            .context("ssh-keygen printed no fingerprint")
    }

    /// The server's log so far (sshd runs with `-e`, its stderr goes to a file).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    /// The process id of the listening sshd, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Stops the server and every connection process it forked (SIGKILL to each, by PID),
    /// and waits for the listener to exit. Existing SSH connections die with it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Connection processes call setsid(), so the process group does not reach them:
            // signal every descendant of the listener by its PID (all started by us).
            let mut pids = crate::process::descendants(child.id());
            pids.push(child.id());
            for pid in &pids {
                signal_pid(*pid, Signal::KILL);
                signal_pid(*pid, Signal::CONT);
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the server and all its connection processes (SIGSTOP to each, by PID). The
    /// kernel still acknowledges TCP, so only an SSH-level liveness check can notice.
    ///
    /// # Errors
    /// Fails when the server is not running or the signal cannot be sent.
    pub fn pause(&self) -> anyhow::Result<()> {
        self.signal_group(Signal::STOP)
    }

    /// Resumes a server frozen by [`Sshd::pause`].
    ///
    /// # Errors
    /// Fails when the server is not running or the signal cannot be sent.
    pub fn resume(&self) -> anyhow::Result<()> {
        self.signal_group(Signal::CONT)
    }

    /// Starts the server again on the same port with the same keys (after [`Sshd::stop`]).
    ///
    /// # Errors
    /// Fails when the server does not answer within 15 seconds (for example when the port was
    /// taken in the meantime).
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        self.spawn()
    }

    /// Replaces the host key with a freshly generated one (takes effect on [`Sshd::restart`]).
    ///
    /// # Errors
    /// Fails when `ssh-keygen` fails.
    pub fn regenerate_host_key(&mut self) -> anyhow::Result<()> {
        let key = self.dir.path().join("ssh_host_ed25519_key");
        let _ = std::fs::remove_file(&key);
        let _ = std::fs::remove_file(key.with_extension("pub"));
        keygen(&key, "rpb-test-host-new")
    }

    fn signal_group(&self, signal: Signal) -> anyhow::Result<()> {
        let child = self.child.as_ref().context("sshd is not running")?;
        let mut pids = crate::process::descendants(child.id());
        pids.push(child.id());
        for pid in pids {
            signal_pid(pid, signal);
        }
        Ok(())
    }

    fn write_config(&self) -> anyhow::Result<()> {
        let dir = self.dir.path().display();
        let mut config = format!(
            "ListenAddress 127.0.0.1\n\
             HostKey {dir}/ssh_host_ed25519_key\n\
             PidFile {dir}/sshd.pid\n\
             AuthorizedKeysFile {dir}/authorized_keys\n\
             PubkeyAuthentication yes\n\
             PasswordAuthentication no\n\
             KbdInteractiveAuthentication no\n\
             PermitRootLogin prohibit-password\n\
             UsePAM no\n\
             StrictModes no\n\
             AllowTcpForwarding yes\n\
             Subsystem sftp internal-sftp\n\
             MaxSessions 100\n\
             MaxStartups 100\n\
             PrintMotd no\n\
             LogLevel VERBOSE\n\
             SetEnv HOME={dir}/home\n"
        );
        for line in &self.extra_config {
            let _ = writeln!(config, "{line}");
        }
        let path = self.dir.path().join("sshd_config");
        std::fs::write(&path, config).with_context(|| format!("failed to write {}", path.display()))
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let log_path = self.dir.path().join("sshd.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("failed to open {}", log_path.display()))?;
        let child = Command::new(SSHD_PATH)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(self.dir.path().join("sshd_config"))
            .arg("-p")
            .arg(self.port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .process_group(0)
            .spawn()
            .with_context(|| {
                format!("failed to run {SSHD_PATH}: install the Debian package openssh-server")
            })?;
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                bail!("sshd exited early with {status}; its log:\n{}", self.log());
            }
            if banner_answers(self.addr()) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.stop();
                bail!(
                    "sshd did not answer on {} within {START_TIMEOUT:?}; its log:\n{}",
                    self.addr(),
                    self.log()
                );
            }
            pause_briefly();
        }
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.stop();
    }
}

fn banner_answers(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut buf = [0_u8; 8];
    stream.read_exact(&mut buf).is_ok() && buf.starts_with(b"SSH-2.0-")
}

#[expect(
    clippy::disallowed_methods,
    reason = "fixture start-up poll, bounded by a deadline"
)]
fn pause_briefly() {
    std::thread::sleep(Duration::from_millis(25));
}

fn keygen(path: &Path, comment: &str) -> anyhow::Result<()> {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .status()
        .context("failed to run ssh-keygen: install the Debian package openssh-client")?;
    if !status.success() {
        bail!("ssh-keygen failed for {} with {status}", path.display());
    }
    Ok(())
}

pub use crate::process::free_port;

/// The current user's login name.
pub fn current_user() -> String {
    if rustix::process::geteuid().is_root() {
        return "root".to_owned();
    }
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "root".to_owned())
}

fn signal_pid(pid: u32, signal: Signal) {
    if let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
        let _ = rustix::process::kill_process(pid, signal);
    }
}
