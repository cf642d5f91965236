//! SSH sessions, remote exec, local port forwarding and file transfer on [`ssh2`] (libssh2),
//! made safe to drive from tokio.
//!
//! ```no_run
//! use pod_tunnel::{Endpoint, Forward, HostKeyPolicy, Session};
//!
//! # async fn demo() -> pod_tunnel::Result<()> {
//! let connector = Session::builder()
//!     .endpoint(Endpoint::new("203.0.113.7", 40022))
//!     .user("root")
//!     .identity_file("/home/me/.ssh/id_ed25519")
//!     .host_key_policy(HostKeyPolicy::accept_new("/home/me/.local/state/rpb/known_hosts"))
//!     .build()?;
//!
//! // Exec: a non-zero exit is data, not an error.
//! let session = connector.connect().await?;
//! let out = session.command("sh -s").stdin("echo hi; exit 3").output().await?;
//! assert_eq!(out.status.code(), Some(3));
//!
//! // Transfer: written under a temporary name, verified by SHA-256, renamed into place.
//! session.upload("scene.blend", "/runpod/projects/demo/scene.blend").send().await?;
//!
//! // Tunnel: its own connection, on its own thread; port 0 picks a free local port.
//! let tunnel = connector
//!     .tunnel()
//!     .forward(Forward::new(0, "127.0.0.1", 9876))
//!     .forward(Forward::new(0, "127.0.0.1", 6080))
//!     .open()
//!     .await?;
//! println!("MCP on {}", tunnel.forwards()[0].local);
//! tunnel.close().await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Design
//!
//! libssh2 serializes every call on a session behind one mutex, so a blocking read on one
//! channel stalls every other channel of that session. Hence:
//!
//! - [`Session`] (exec, transfers) runs each operation on tokio's blocking pool, one at a time.
//!   Open more sessions for parallel work.
//! - [`Tunnel`] owns a separate connection on one dedicated thread, in non-blocking mode, and
//!   multiplexes every forwarded connection with `poll(2)`, with per-connection buffers and
//!   backpressure. It sends keepalives, detects a dead peer, and reconnects (re-resolving the
//!   endpoint through a caller-supplied function) while keeping its local listeners bound.
//!   Its listeners are on 127.0.0.1 and, on Linux, serve only this user's processes
//!   ([`LocalClients`]).
//!
//! # Shell quoting
//!
//! Remote commands go through the user's login shell; [`shell::quote`], [`shell::quote_path`]
//! and [`shell::join`] build command lines from arbitrary words and paths.
//!
//! # Host keys
//!
//! Every connection checks the server's key under a [`HostKeyPolicy`]; there is no default.
//! Keys are recorded in *our own* known-hosts file, in OpenSSH format.
//!
//! # Errors
//!
//! All fallible operations return [`Error`]; messages name the operation and the endpoint or path,
//! and the cause is in [`std::error::Error::source`].

mod connect;
mod error;
#[cfg(feature = "sshd-fixture")]
pub mod fixture;
mod hostkey;
mod keyblob;
mod keypair;
mod known_hosts;
mod link;
mod output;
mod session;
pub mod shell;
mod transfer;
mod tunnel;

pub use connect::{
    Connector, DEFAULT_CONNECT_TIMEOUT, DEFAULT_IO_TIMEOUT, DEFAULT_KEEPALIVE_INTERVAL,
    DEFAULT_KEEPALIVE_MAX, Endpoint, SessionBuilder,
};
pub use error::{BoxError, Error, Result};
pub use hostkey::HostKeyPolicy;
pub use keyblob::fingerprint;
pub use keypair::HostKeyPair;
pub use known_hosts::{
    KnownHost, Pinned, forget_host, known_host, parse_public_key, pin_host_key, validate_name,
};
pub use output::{ExecOutput, ExitStatus, OutputStream};
pub use session::{Command, DEFAULT_EXEC_TIMEOUT, DEFAULT_MAX_OUTPUT, Session};
pub use transfer::{Progress, Protocol, Transfer, TransferReport};
pub use tunnel::{
    BoundForward, Forward, LocalClients, Tunnel, TunnelBuilder, TunnelState, TunnelStats,
};
