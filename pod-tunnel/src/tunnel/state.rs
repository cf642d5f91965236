//! What the tunnel handle and its worker thread share: the forwards, the state, the counters,
//! the resolver and the commands.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use tokio::sync::oneshot;

use crate::connect::Endpoint;
use crate::error::{BoxError, Error, Result};

/// One local forward: `127.0.0.1:local_port` → `remote_host:remote_port` as seen from the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Forward {
    /// Local port on 127.0.0.1; 0 picks a free one (see [`Tunnel::forwards`](crate::Tunnel::forwards)).
    pub local_port: u16,
    /// Target host, resolved by the server.
    pub remote_host: String,
    /// Target port.
    pub remote_port: u16,
}

impl Forward {
    /// A forward from `127.0.0.1:local_port` to `remote_host:remote_port`.
    pub fn new(local_port: u16, remote_host: impl Into<String>, remote_port: u16) -> Self {
        Self {
            local_port,
            remote_host: remote_host.into(),
            remote_port,
        }
    }
}

impl std::str::FromStr for Forward {
    type Err = Error;

    /// Parses `LOCALPORT:HOST:PORT`, as `ssh -L` takes it.
    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::Config {
            reason: format!("forward {s:?} is not LOCALPORT:HOST:PORT"),
        };
        let (local, rest) = s.split_once(':').ok_or_else(bad)?;
        let (host, port) = rest.rsplit_once(':').ok_or_else(bad)?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(bad());
        }
        Ok(Self::new(
            local.parse().map_err(|_| bad())?,
            host,
            port.parse().map_err(|_| bad())?,
        ))
    }
}

/// A forward with its bound local address.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BoundForward {
    /// The local address clients connect to.
    pub local: SocketAddr,
    /// Target host, resolved by the server.
    pub remote_host: String,
    /// Target port.
    pub remote_port: u16,
}

/// Where the tunnel is in its life.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TunnelState {
    /// Forwarding through a live session.
    Connected {
        /// The server's endpoint.
        endpoint: Endpoint,
    },
    /// The session was lost; the listeners stay bound while a new one is made.
    Reconnecting {
        /// Attempt number, from 1.
        attempt: u32,
        /// Why the last session or attempt failed.
        last_error: String,
    },
    /// The tunnel stopped; its listeners are closed.
    Closed {
        /// Why, if it stopped on its own.
        error: Option<String>,
    },
}

/// Counters since the tunnel opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TunnelStats {
    /// Bytes sent from local clients to remote targets.
    pub bytes_to_remote: u64,
    /// Bytes sent from remote targets to local clients.
    pub bytes_from_remote: u64,
    /// Local connections currently open.
    pub connections_open: u64,
    /// Local connections accepted in total (not counting denied ones).
    pub connections_total: u64,
    /// Connections closed because the server could not reach (or refused) the target.
    pub connections_refused: u64,
    /// Local connections closed unserved because another user opened them, or their owner
    /// could not be found (see [`LocalClients::SameUser`](crate::LocalClients::SameUser)).
    pub connections_denied: u64,
    /// Successful reconnects.
    pub reconnects: u64,
    /// SSH sessions (connections) the tunnel currently uses: one, plus extras (up to 4 in all)
    /// connected when many local connections wait for their channel at once.
    pub sessions: u64,
}

#[derive(Default)]
pub(super) struct Counters {
    pub(super) to_remote: AtomicU64,
    pub(super) from_remote: AtomicU64,
    pub(super) open: AtomicU64,
    pub(super) total: AtomicU64,
    pub(super) refused: AtomicU64,
    pub(super) denied: AtomicU64,
    pub(super) reconnects: AtomicU64,
    pub(super) sessions: AtomicU64,
    /// Sum of window growth beyond the initial size, over live connections.
    pub(super) windows: AtomicU64,
}

pub(super) type ResolveFuture =
    Pin<Box<dyn Future<Output = std::result::Result<Endpoint, BoxError>> + Send>>;
pub(super) type Resolver = Arc<dyn Fn() -> ResolveFuture + Send + Sync>;

/// What the handle asks of the worker.
pub(super) enum Command {
    Close(oneshot::Sender<()>),
    Reconnect,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwards_parse_like_ssh_dash_l() {
        let f: Forward = "9876:127.0.0.1:9876".parse().unwrap();
        assert_eq!(f, Forward::new(9876, "127.0.0.1", 9876));
        let f: Forward = "0:[::1]:22".parse().unwrap();
        assert_eq!(f.remote_host, "::1");
        assert!("9876:host".parse::<Forward>().is_err());
        assert!("x:host:1".parse::<Forward>().is_err());
    }
}
