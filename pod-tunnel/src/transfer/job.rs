//! One transfer's shared state and what every step uses: the protocol, progress, the names
//! shown in messages, and the errors made from them.

use std::fmt::Write as _;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::session::Inner;

/// Checksum speed assumed when bounding the server-side `sha256sum` (any disk and CPU beat it).
const CHECKSUM_BYTES_PER_SEC: u64 = 20 << 20;

/// Which file-transfer protocol to use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Protocol {
    /// SFTP (the `sftp` subsystem). The default.
    #[default]
    Sftp,
    /// SCP (runs `scp -t` / `scp -f` on the server, as the manual workflow does).
    Scp,
}

impl std::str::FromStr for Protocol {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "sftp" => Ok(Self::Sftp),
            "scp" => Ok(Self::Scp),
            other => Err(Error::Config {
                reason: format!("unknown transfer protocol {other:?}; use scp or sftp"),
            }),
        }
    }
}

/// Bytes done out of the total, reported as a transfer advances.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Progress {
    /// Bytes transferred so far (all files).
    pub done: u64,
    /// Bytes to transfer in total (all files).
    pub total: u64,
}

pub(super) type ProgressFn = Arc<dyn Fn(Progress) + Send + Sync>;

/// One running transfer (a file or a tree, either way), on its session's blocking thread.
pub(super) struct Job<'a> {
    pub(super) inner: &'a Inner,
    pub(super) protocol: Protocol,
    pub(super) progress: Option<ProgressFn>,
    pub(super) done: AtomicU64,
    pub(super) total: u64,
    /// Set once a step timed out: the connection is shut down and must not be used again.
    pub(super) stalled: AtomicBool,
}

/// The source and destination of one file's transfer, as the caller gave them, for messages.
pub(super) struct Names {
    pub(super) action: &'static str,
    pub(super) from: Box<str>,
    pub(super) to: Box<str>,
}

impl Names {
    pub(super) fn upload(local: &Path, remote: &Path) -> Self {
        Self {
            action: "upload",
            from: shown(local).into(),
            to: shown(remote).into(),
        }
    }

    pub(super) fn download(remote: &Path, local: &Path) -> Self {
        Self {
            action: "download",
            from: shown(remote).into(),
            to: shown(local).into(),
        }
    }
}

/// Why one chunk of a split transfer failed.
pub(super) enum ChunkError {
    Local(io::Error),
    Remote(io::Error),
}

pub(super) fn local_err(
    action: &'static str,
    path: &Path,
) -> impl FnOnce(io::Error) -> Error + use<> {
    let path = path.to_owned();
    move |source| Error::LocalIo {
        action,
        path,
        source,
    }
}

/// A path for messages: lossy UTF-8 with control characters escaped, so that a newline in a
/// file name cannot break (or forge) a line of a log.
pub(super) fn shown(path: &Path) -> String {
    let text = path.to_string_lossy();
    if !text.chars().any(char::is_control) {
        return text.into_owned();
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

pub(super) fn hex(digest: &[u8]) -> String {
    digest.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

impl Job<'_> {
    pub(super) fn endpoint(&self) -> Box<str> {
        self.inner.endpoint.to_string().into()
    }

    /// A failed step, without looking at why.
    pub(super) fn transfer_err(
        &self,
        names: &Names,
        step: &'static str,
        source: io::Error,
    ) -> Error {
        Error::Transfer {
            action: names.action,
            from: names.from.clone(),
            to: names.to.clone(),
            endpoint: self.endpoint(),
            step,
            leftovers: Vec::new(),
            source,
        }
    }

    /// A failed remote step. A timeout means the peer stalled: the connection is shut down at
    /// once, so that dropping channels and handles (which libssh2 does politely, waiting for the
    /// peer) and the cleanup do not each wait out the timeout again.
    pub(super) fn fail(&self, names: &Names, step: &'static str, source: io::Error) -> Error {
        if source.kind() == io::ErrorKind::TimedOut {
            self.stalled(names, step, self.inner.options.io_timeout)
        } else {
            self.transfer_err(names, step, source)
        }
    }

    pub(super) fn stalled(&self, names: &Names, step: &'static str, timeout: Duration) -> Error {
        self.stalled.store(true, Ordering::Relaxed);
        self.inner.shut_down();
        Error::TransferStalled {
            action: names.action,
            from: names.from.clone(),
            to: names.to.clone(),
            endpoint: self.endpoint(),
            step,
            timeout,
            leftovers: Vec::new(),
        }
    }

    /// A failed helper command (checksum, rename).
    pub(super) fn exec_fail(&self, names: &Names, step: &'static str, error: Error) -> Error {
        match error {
            Error::Exec { source, .. } => self.fail(names, step, source),
            Error::ExecTimeout { timeout, .. } => self.stalled(names, step, timeout),
            other => other,
        }
    }

    pub(super) fn chunk_fail(&self, names: &Names, error: ChunkError) -> Error {
        let upload = names.action == "upload";
        match error {
            ChunkError::Local(e) if upload => self.transfer_err(names, "reading the local file", e),
            ChunkError::Local(e) => self.transfer_err(names, "writing the local copy", e),
            ChunkError::Remote(e) if upload => self.fail(names, "sending data", e),
            ChunkError::Remote(e) => self.fail(names, "receiving data", e),
        }
    }

    /// Time allowed for a server-side `sha256sum` of `size` bytes (plus the round trip).
    pub(super) fn checksum_time(&self, size: u64) -> Duration {
        self.inner.options.io_timeout + Duration::from_secs(size / CHECKSUM_BYTES_PER_SEC)
    }

    pub(super) fn advance(&self, n: usize) {
        let done = self.done.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
        if let Some(report) = &self.progress {
            report(Progress {
                done,
                total: self.total,
            });
        }
    }

    pub(super) fn sftp(&self, names: &Names) -> Result<ssh2::Sftp> {
        self.inner
            .ssh
            .sftp()
            .map_err(|e| self.fail(names, "starting sftp", e.into()))
    }

    pub(super) fn changed(&self, names: &Names) -> Error {
        self.transfer_err(
            names,
            "receiving data",
            io::Error::other("the remote file changed while downloading; try again"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_paths_escape_control_characters() {
        assert_eq!(shown(Path::new("/a/b c")), "/a/b c");
        assert_eq!(shown(Path::new("/a/new\nline\t")), "/a/new\\nline\\t");
    }

    #[test]
    fn hex_is_lowercase() {
        assert_eq!(hex(&[0, 255, 16]), "00ff10");
    }
}
