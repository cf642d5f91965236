//! The local pod's private sshd: started on a free loopback port, killed by PID with every
//! process it forked.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt as _;
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::time::{Instant, sleep, timeout};

use super::paths::Paths;
use super::pids::{descendants, kill};
use super::{Error, Result, SSHD};

/// The private sshd.
pub(super) struct Sshd {
    pub(super) child: Child,
    pub(super) address: SocketAddr,
}

impl Sshd {
    pub(super) async fn start(paths: &Paths, limit: Duration) -> Result<Self> {
        let log = paths.logs.join("sshd.log");
        let mut last_error = None;
        // A free port may be taken between the check and sshd's bind: try a few.
        for _ in 0..5 {
            let probe =
                std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|source| {
                    Error::Bind {
                        address: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
                        source,
                    }
                })?;
            let address = probe.local_addr().map_err(|source| Error::Bind {
                address: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
                source,
            })?;
            drop(probe);
            match Self::spawn(paths, address, &log, limit).await {
                Ok(sshd) => return Ok(sshd),
                Err(source) => {
                    tracing::debug!(%address, error = %source, "sshd did not start; trying another port");
                    last_error = Some((address, source));
                }
            }
        }
        let (address, source) = last_error.expect("invariant: the loop ran at least once");
        Err(Error::Sshd {
            address,
            log,
            source,
        })
    }

    pub(super) async fn spawn(
        paths: &Paths,
        address: SocketAddr,
        log: &Path,
        limit: Duration,
    ) -> io::Result<Self> {
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?;
        let child = Command::new(SSHD)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&paths.sshd_config)
            .arg("-p")
            .arg(address.port().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            // Its own process group: a terminal's Ctrl-C reaches the program, which then
            // stops sshd in order.
            .process_group(0)
            .kill_on_drop(true)
            .spawn()?;
        let mut sshd = Self { child, address };
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = sshd.child.try_wait()? {
                return Err(io::Error::other(format!(
                    "sshd exited at once with {status}"
                )));
            }
            if banner_answers(address).await {
                tracing::debug!(%address, pid = ?sshd.child.id(), "sshd answers");
                return Ok(sshd);
            }
            if Instant::now() >= deadline {
                sshd.stop().await;
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no SSH banner within {limit:?}"),
                ));
            }
            sleep(Duration::from_millis(25)).await;
        }
    }

    /// SIGKILL to the listener and every process it forked (connection processes call
    /// `setsid`, so a process group does not reach them), by PID; then reaps the listener.
    pub(super) async fn stop(&mut self) {
        self.kill_now();
        let _ = timeout(Duration::from_secs(5), self.child.wait()).await;
    }

    pub(super) fn kill_now(&mut self) {
        if let Some(pid) = self.child.id() {
            let family = descendants(pid);
            kill(pid);
            for child in family {
                kill(child);
            }
        }
        let _ = self.child.start_kill();
    }
}

/// Whether an SSH server answers at `address` with its banner.
async fn banner_answers(address: SocketAddr) -> bool {
    let Ok(Ok(mut stream)) = timeout(Duration::from_millis(500), TcpStream::connect(address)).await
    else {
        return false;
    };
    let mut banner = [0_u8; 8];
    matches!(
        timeout(Duration::from_secs(2), stream.read_exact(&mut banner)).await,
        Ok(Ok(_))
    ) && banner.starts_with(b"SSH-2.0-")
}
