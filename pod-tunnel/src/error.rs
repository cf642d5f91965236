//! The crate's error type.

use std::path::PathBuf;
use std::time::Duration;

use crate::output::ExitStatus;

/// Boxed error returned by caller-supplied code (for example an endpoint resolver).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong in `pod-tunnel`.
///
/// Messages name the operation and the endpoint or path; the underlying cause is available through
/// [`std::error::Error::source`], never repeated in the message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The builder was given an invalid or missing setting.
    #[error("invalid ssh configuration: {reason}")]
    Config {
        /// What is wrong and how to fix it.
        reason: String,
    },

    /// The TCP connection to the SSH server could not be made.
    #[error("failed to connect to {endpoint}; check that the server is running and reachable")]
    Connect {
        /// `host:port` of the server.
        endpoint: String,
        /// The socket error.
        #[source]
        source: std::io::Error,
    },

    /// The SSH handshake (banner, key exchange) failed.
    #[error("ssh handshake with {endpoint} failed; is it an SSH server?")]
    Handshake {
        /// `host:port` of the server.
        endpoint: String,
        /// The libssh2 error.
        #[source]
        source: ssh2::Error,
    },

    /// The server's host key is not the one recorded or pinned.
    #[error(
        "host key for {host} does not match: expected {expected}, the server offered {actual}; \
         if the server was legitimately rebuilt, remove its entry{location} and connect again"
    )]
    HostKeyMismatch {
        /// `[host]:port` (or the caller-given identity) that was checked.
        host: String,
        /// Fingerprint that was expected (`SHA256:…`).
        expected: String,
        /// Fingerprint that the server presented (`SHA256:…`).
        actual: String,
        /// Where the expected key is recorded (` from FILE line N`), or empty for a pinned key.
        location: String,
    },

    /// Strict host-key checking found no recorded key for the server.
    #[error(
        "host key for {host} ({actual}) is not in {known_hosts}; add it to that file or connect \
         once with the accept-new policy"
    )]
    HostKeyUnknown {
        /// `[host]:port` that was looked up.
        host: String,
        /// Fingerprint that the server presented.
        actual: String,
        /// The known-hosts file that was searched.
        known_hosts: PathBuf,
    },

    /// A name for a `known_hosts` entry (a host alias such as a pod id) that could never match
    /// its own line.
    #[error("invalid known-hosts name {name:?}: {reason}")]
    InvalidHostName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// A public key line that is not `TYPE BASE64 [COMMENT]` with a matching key blob.
    #[error("invalid ssh public key: {reason}")]
    InvalidPublicKey {
        /// What is wrong with it.
        reason: String,
    },

    /// The known-hosts file could not be read or written.
    #[error("failed to access known hosts file {path}")]
    KnownHosts {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// The server did not provide a host key we could read.
    #[error("server {endpoint} offered no usable host key")]
    NoHostKey {
        /// `host:port` of the server.
        endpoint: String,
    },

    /// Public-key authentication failed.
    #[error(
        "authentication as {user} on {endpoint} with key {key} failed; check that the key is \
         authorized on the server and that the passphrase is right"
    )]
    Authenticate {
        /// User name.
        user: String,
        /// `host:port` of the server.
        endpoint: String,
        /// Private key file.
        key: PathBuf,
        /// The libssh2 error.
        #[source]
        source: ssh2::Error,
    },

    /// A channel could not be opened or used for a command.
    #[error("failed to run a command on {endpoint}")]
    Exec {
        /// `host:port` of the server.
        endpoint: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A command did not finish in time; it was abandoned and its channel closed.
    #[error("command on {endpoint} did not finish within {timeout:?}")]
    ExecTimeout {
        /// `host:port` of the server.
        endpoint: String,
        /// The limit that was exceeded.
        timeout: Duration,
    },

    /// A checked command exited unsuccessfully.
    #[error("command on {endpoint} failed with {status}: {stderr_tail}")]
    ExitStatus {
        /// `host:port` of the server.
        endpoint: String,
        /// How the command ended.
        status: ExitStatus,
        /// The last line of its standard error, if any.
        stderr_tail: String,
    },

    /// A local port for a forward is taken by another program.
    #[error(
        "local port 127.0.0.1:{port} is already in use; stop the program using it or pick another port"
    )]
    PortInUse {
        /// The port.
        port: u16,
        /// The bind error.
        #[source]
        source: std::io::Error,
    },

    /// A local listener could not be bound for another reason.
    #[error("failed to listen on 127.0.0.1:{port}")]
    Bind {
        /// The port.
        port: u16,
        /// The bind error.
        #[source]
        source: std::io::Error,
    },

    /// The caller-supplied endpoint resolver failed.
    #[error("failed to resolve the ssh endpoint for reconnecting")]
    Resolve {
        /// The resolver's error.
        #[source]
        source: BoxError,
    },

    /// The tunnel gave up reconnecting.
    #[error("tunnel to {endpoint} gave up after {attempts} reconnect attempts")]
    ReconnectExhausted {
        /// Last endpoint tried.
        endpoint: String,
        /// Attempts made.
        attempts: u32,
        /// The last attempt's error.
        #[source]
        source: Box<Error>,
    },

    /// The tunnel's worker thread is gone (closed, failed, or panicked).
    #[error("ssh session is closed")]
    SessionClosed,

    /// A blocking task was cancelled or panicked.
    #[error("ssh worker task failed")]
    Join(#[source] tokio::task::JoinError),

    /// A local file or directory could not be read or written.
    #[error("failed to {action} {path}")]
    LocalIo {
        /// What was being done (`read`, `create`, `rename`, …).
        action: &'static str,
        /// The local path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// A file transfer failed; the destination was left untouched.
    #[error(
        "failed to {action} {from} to {to} on {endpoint} while {step}; the destination was left \
         untouched{}",
        leftover_note(.leftovers)
    )]
    Transfer {
        /// `upload` or `download`.
        action: &'static str,
        /// The source path given by the caller (local for an upload, remote for a download),
        /// lossily converted, control characters escaped.
        from: Box<str>,
        /// The destination path given by the caller, shown the same way.
        to: Box<str>,
        /// `host:port` of the server.
        endpoint: Box<str>,
        /// The step that failed (`sending data`, `verifying the checksum`, …).
        step: &'static str,
        /// Temporary paths on the server that could not be confirmed removed; delete them by
        /// hand. Usually empty: after a failure the transfer removes its temporary file, over a
        /// fresh connection if its own is gone.
        leftovers: Vec<String>,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A file transfer stalled: nothing moved for the I/O timeout (a frozen server or a silent
    /// network). The session's connection is closed, since a stalled SSH connection cannot be
    /// resumed safely; connect again to retry. The destination was left untouched.
    #[error(
        "{action} of {from} to {to} on {endpoint} stalled while {step}: nothing moved for \
         {timeout:?} (the i/o timeout); the destination was left untouched and the connection \
         closed: connect again to retry{}",
        leftover_note(.leftovers)
    )]
    TransferStalled {
        /// `upload` or `download`.
        action: &'static str,
        /// The source path given by the caller, as in [`Error::Transfer`].
        from: Box<str>,
        /// The destination path given by the caller, as in [`Error::Transfer`].
        to: Box<str>,
        /// `host:port` of the server.
        endpoint: Box<str>,
        /// The step that stalled.
        step: &'static str,
        /// The limit that was exceeded.
        timeout: Duration,
        /// Temporary paths on the server that could not be confirmed removed, as in
        /// [`Error::Transfer`].
        leftovers: Vec<String>,
    },

    /// The checksum after a transfer did not match; the temporary file was removed.
    #[error(
        "checksum mismatch after the {action} of {from} to {to} on {endpoint}: local sha256 \
         {local}, remote sha256 {remote}; the destination was left untouched{}",
        leftover_note(.leftovers)
    )]
    ChecksumMismatch {
        /// `upload` or `download`.
        action: &'static str,
        /// The source path given by the caller, as in [`Error::Transfer`].
        from: Box<str>,
        /// The destination path given by the caller, as in [`Error::Transfer`].
        to: Box<str>,
        /// `host:port` of the server.
        endpoint: Box<str>,
        /// Local SHA-256 (hex).
        local: Box<str>,
        /// Remote SHA-256 (hex).
        remote: Box<str>,
        /// Temporary paths on the server that could not be confirmed removed, as in
        /// [`Error::Transfer`].
        leftovers: Vec<String>,
    },
}

/// `; the temporary file X may remain on the server: delete it` (or nothing).
fn leftover_note(leftovers: &[String]) -> String {
    match leftovers {
        [] => String::new(),
        [one] => format!("; the temporary file {one} may remain on the server: delete it"),
        many => format!(
            "; the temporary files {} may remain on the server: delete them",
            many.join(" and ")
        ),
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `error` and its sources, joined by `: `, for a state description or a log line.
pub(crate) fn error_chain(error: &Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn messages_do_not_repeat_their_source() {
        let err = Error::Connect {
            endpoint: "127.0.0.1:22".into(),
            source: std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused"),
        };
        let text = err.to_string();
        assert!(!text.contains("refused"), "{text}");
        assert_eq!(
            err.source().map(ToString::to_string).as_deref(),
            Some("refused")
        );
    }

    #[test]
    fn transfer_errors_name_both_paths_and_what_is_left() {
        let err = Error::Transfer {
            action: "upload",
            from: "/home/me/scene.blend".into(),
            to: "/runpod/scene.blend".into(),
            endpoint: "h:1".into(),
            step: "sending data",
            leftovers: vec!["/runpod/.scene.blend.rpb-part-1-2-3".into()],
            source: std::io::Error::other("boom"),
        };
        assert_eq!(
            err.to_string(),
            "failed to upload /home/me/scene.blend to /runpod/scene.blend on h:1 while sending \
             data; the destination was left untouched; the temporary file \
             /runpod/.scene.blend.rpb-part-1-2-3 may remain on the server: delete it"
        );
        let err = Error::TransferStalled {
            action: "download",
            from: "/runpod/a".into(),
            to: "a".into(),
            endpoint: "h:1".into(),
            step: "receiving data",
            timeout: Duration::from_secs(4),
            leftovers: Vec::new(),
        };
        assert_eq!(
            err.to_string(),
            "download of /runpod/a to a on h:1 stalled while receiving data: nothing moved for 4s \
             (the i/o timeout); the destination was left untouched and the connection closed: \
             connect again to retry"
        );
    }

    #[test]
    fn nested_errors_keep_the_chain() {
        let inner = Error::Connect {
            endpoint: "h:1".into(),
            source: std::io::Error::other("boom"),
        };
        let err = Error::ReconnectExhausted {
            endpoint: "h:1".into(),
            attempts: 3,
            source: Box::new(inner),
        };
        let chain: Vec<String> = std::iter::successors(err.source(), |e| (*e).source())
            .map(ToString::to_string)
            .collect();
        assert_eq!(chain.len(), 2, "{chain:?}");
        assert!(chain[1].contains("boom"));
    }
}
