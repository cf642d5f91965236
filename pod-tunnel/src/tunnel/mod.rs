//! Local port forwarding (`ssh -N -L`) on one dedicated thread that owns non-blocking sessions.
//!
//! The actor thread multiplexes the listeners, every forwarded connection and the SSH sockets
//! with `poll(2)`. It follows libssh2's non-blocking rules (libssh2 1.11 `src/channel.c` and
//! `src/transport.c`; libssh2 issues #147 and #1945): channel opens run one at a time per session
//! (the open in flight is retried until it completes); after a send returns `EAGAIN` with
//! outbound blocking, only that same operation is retried on that session until it completes;
//! every channel is read until `EAGAIN` after each wake-up; a short poll timeout covers the cases
//! where libssh2 does not say which direction it waits for.
//!
//! Because one session opens one channel per round trip, a burst of connections makes the tunnel
//! connect up to three extra sessions in the background (same endpoint, same host-key check);
//! new channels go to the session carrying the fewest. The sessions share one fate: any of them
//! dying reconnects the tunnel as a whole.
//!
//! Layout: this module has the [`Tunnel`] handle and its builder; [`supervise`] runs the worker
//! thread (first connect, reconnects, close), [`actor`] is one turn of its loop, [`pool`] holds
//! its SSH sessions, [`conn`] one forwarded connection, [`peer`] who may connect, and [`state`]
//! what the handle and the worker share.

mod actor;
mod conn;
mod peer;
mod pool;
mod state;
mod supervise;

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::io::{self, Write as _};
use std::net::TcpListener;
use std::os::unix::net::UnixStream;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use tokio::sync::{oneshot, watch};

use crate::connect::{Connector, Endpoint};
use crate::error::{BoxError, Error, Result};

use actor::Actor;
pub use peer::LocalClients;
pub use state::{BoundForward, Forward, TunnelState, TunnelStats};
use state::{Command, Counters, Resolver};

/// Configures a [`Tunnel`]; made by [`Connector::tunnel`].
#[must_use]
pub struct TunnelBuilder {
    connector: Connector,
    forwards: Vec<Forward>,
    resolver: Option<Resolver>,
    reconnect_attempts: u32,
    backoff_initial: Duration,
    backoff_max: Duration,
    local_clients: LocalClients,
}

impl fmt::Debug for TunnelBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TunnelBuilder")
            .field("endpoint", self.connector.endpoint())
            .field("forwards", &self.forwards)
            .field("resolver", &self.resolver.is_some())
            .field("reconnect_attempts", &self.reconnect_attempts)
            .field("local_clients", &self.local_clients)
            .finish_non_exhaustive()
    }
}

impl Connector {
    /// Starts configuring a tunnel (local port forwards) on its own SSH connection.
    pub fn tunnel(&self) -> TunnelBuilder {
        TunnelBuilder::new(self.clone())
    }
}

impl TunnelBuilder {
    fn new(connector: Connector) -> Self {
        Self {
            connector,
            forwards: Vec::new(),
            resolver: None,
            reconnect_attempts: 20,
            backoff_initial: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            local_clients: LocalClients::SameUser,
        }
    }

    /// Which local processes may use the forwards. Default: [`LocalClients::SameUser`], so
    /// another user of this machine cannot reach the remote side through the 127.0.0.1 ports
    /// (on Linux; elsewhere the owner cannot be checked, see [`LocalClients::SameUser`]).
    pub fn local_clients(mut self, clients: LocalClients) -> Self {
        self.local_clients = clients;
        self
    }

    /// Adds a forward.
    pub fn forward(mut self, forward: Forward) -> Self {
        self.forwards.push(forward);
        self
    }

    /// How to find the server again before each reconnect attempt (a pod's address and port
    /// change when it restarts). Without one, the tunnel reconnects to the last endpoint.
    pub fn resolver<F, Fut, E>(mut self, resolve: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<Endpoint, E>> + Send + 'static,
        E: Into<BoxError>,
    {
        self.resolver = Some(Arc::new(move || {
            let fut = resolve();
            Box::pin(async move { fut.await.map_err(Into::into) })
        }));
        self
    }

    /// Reconnect attempts after a session is lost before the tunnel gives up. Default: 20.
    /// 0 disables reconnecting.
    pub fn reconnect_attempts(mut self, attempts: u32) -> Self {
        self.reconnect_attempts = attempts;
        self
    }

    /// Backoff between reconnect attempts: starts at `initial`, doubles up to `max`. Default:
    /// 500 ms up to 30 s.
    pub fn reconnect_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.backoff_initial = initial;
        self.backoff_max = max.max(initial);
        self
    }

    /// Binds every local port, connects, and starts forwarding.
    ///
    /// # Errors
    /// [`Error::Config`] without forwards, [`Error::PortInUse`] / [`Error::Bind`] when a local
    /// port cannot be bound, and any connect error of [`Connector::connect`].
    pub async fn open(self) -> Result<Tunnel> {
        if self.forwards.is_empty() {
            return Err(Error::Config {
                reason: "a tunnel needs at least one forward".into(),
            });
        }
        let mut listeners = Vec::with_capacity(self.forwards.len());
        let mut bound = Vec::with_capacity(self.forwards.len());
        for forward in &self.forwards {
            let port = forward.local_port;
            let listener = TcpListener::bind(("127.0.0.1", port)).map_err(|source| {
                if source.kind() == io::ErrorKind::AddrInUse {
                    Error::PortInUse { port, source }
                } else {
                    Error::Bind { port, source }
                }
            })?;
            let bind_err = |source| Error::Bind { port, source };
            listener.set_nonblocking(true).map_err(bind_err)?;
            let local = listener.local_addr().map_err(bind_err)?;
            bound.push(BoundForward {
                local,
                remote_host: forward.remote_host.clone(),
                remote_port: forward.remote_port,
            });
            listeners.push(listener);
        }
        let (wake_tx, wake_rx) =
            UnixStream::pair().map_err(|source| Error::Bind { port: 0, source })?;
        wake_tx
            .set_nonblocking(true)
            .map_err(|source| Error::Bind { port: 0, source })?;
        wake_rx
            .set_nonblocking(true)
            .map_err(|source| Error::Bind { port: 0, source })?;
        let (cmd_tx, cmd_rx) = mpsc::channel();
        let counters = Arc::new(Counters::default());
        let (state_tx, state_rx) = watch::channel(TunnelState::Reconnecting {
            attempt: 0,
            last_error: "connecting".into(),
        });
        let failure = Arc::new(Mutex::new(None));
        let (ready_tx, ready_rx) = oneshot::channel();
        let actor = Actor {
            options: Arc::clone(&self.connector.options),
            endpoint: self.connector.options.endpoint.clone(),
            forwards: bound.clone(),
            listeners,
            wake: wake_rx,
            commands: cmd_rx,
            counters: Arc::clone(&counters),
            state: state_tx,
            failure: Arc::clone(&failure),
            resolver: self.resolver,
            runtime: tokio::runtime::Handle::current(),
            reconnect_attempts: self.reconnect_attempts,
            backoff_initial: self.backoff_initial,
            backoff_max: self.backoff_max,
            conns: HashMap::new(),
            pending: VecDeque::new(),
            next_id: 0,
            accept_ready: true,
            local_clients: self.local_clients,
        };
        supervise::spawn(actor, ready_tx).map_err(|source| Error::Bind { port: 0, source })?;
        ready_rx.await.map_err(|_| Error::SessionClosed)??;
        Ok(Tunnel {
            forwards: bound,
            commands: cmd_tx,
            wake: wake_tx,
            counters,
            state: state_rx,
            failure,
            close_timeout: self.connector.options.connect_timeout + Duration::from_secs(10),
        })
    }
}

/// A running set of local forwards. Dropping it stops the tunnel in the background; prefer
/// [`Tunnel::close`], which waits and reports errors.
pub struct Tunnel {
    forwards: Vec<BoundForward>,
    commands: mpsc::Sender<Command>,
    wake: UnixStream,
    counters: Arc<Counters>,
    state: watch::Receiver<TunnelState>,
    failure: Arc<Mutex<Option<Error>>>,
    close_timeout: Duration,
}

impl fmt::Debug for Tunnel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tunnel")
            .field("forwards", &self.forwards)
            .field("state", &*self.state.borrow())
            .finish_non_exhaustive()
    }
}

impl Tunnel {
    /// The forwards with their bound local addresses, in the order they were added.
    pub fn forwards(&self) -> &[BoundForward] {
        &self.forwards
    }

    /// Counters so far.
    pub fn stats(&self) -> TunnelStats {
        let c = &self.counters;
        TunnelStats {
            bytes_to_remote: c.to_remote.load(Ordering::Relaxed),
            bytes_from_remote: c.from_remote.load(Ordering::Relaxed),
            connections_open: c.open.load(Ordering::Relaxed),
            connections_total: c.total.load(Ordering::Relaxed),
            connections_refused: c.refused.load(Ordering::Relaxed),
            connections_denied: c.denied.load(Ordering::Relaxed),
            reconnects: c.reconnects.load(Ordering::Relaxed),
            sessions: c.sessions.load(Ordering::Relaxed),
        }
    }

    /// The current state.
    pub fn state(&self) -> TunnelState {
        self.state.borrow().clone()
    }

    /// A receiver that sees every state change (for status displays and supervisors).
    pub fn state_changes(&self) -> watch::Receiver<TunnelState> {
        self.state.clone()
    }

    /// Drops the current session and reconnects (re-resolving the endpoint), for a caller that
    /// knows the server moved.
    pub fn reconnect(&self) {
        let _ = self.commands.send(Command::Reconnect);
        self.wake();
    }

    /// Stops accepting, closes every forwarded connection and the session, and waits for the
    /// worker thread to finish.
    ///
    /// # Errors
    /// The error that made the tunnel stop on its own (for example
    /// [`Error::ReconnectExhausted`] or a host-key mismatch after a reconnect), or
    /// [`Error::SessionClosed`] if the worker did not answer in time.
    pub async fn close(self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        let sent = self.commands.send(Command::Close(tx)).is_ok();
        self.wake();
        if sent {
            // An Err here means the worker already exited; the failure slot says why.
            let _ = tokio::time::timeout(self.close_timeout, rx)
                .await
                .map_err(|_| Error::SessionClosed)?;
        }
        let failure = self
            .failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        failure.map_or(Ok(()), Err)
    }

    fn wake(&self) {
        let _ = (&self.wake).write(&[1]);
    }
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        let (tx, _rx) = oneshot::channel();
        let _ = self.commands.send(Command::Close(tx));
        self.wake();
    }
}
