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

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::io::{self, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags};
use tokio::sync::{oneshot, watch};

use crate::connect::{Connector, Endpoint, Link, Options};
use crate::error::{BoxError, Error, Result};
use crate::session::poll;

/// Per-connection buffer limit in each direction: beyond it the source is no longer read.
const BUFFER_LIMIT: usize = 256 * 1024;
/// Largest single read from a channel.
const MAX_READ: usize = 256 * 1024;
/// A connection that has carried this much from the remote side counts as a bulk stream.
const BULK_BYTES: u64 = 4 << 20;
/// A channel's receive window starts at libssh2's 2 MiB and doubles, while the sender keeps it
/// nearly exhausted, up to this size (OpenSSH keeps 2 MiB), so a long link stays busy.
const MAX_WINDOW: u32 = 16 << 20;
/// Bound on the sum of all grown windows (memory libssh2 may buffer for slow consumers).
const WINDOW_BUDGET: u64 = 128 << 20;
/// The window every channel starts with.
const INITIAL_WINDOW: u32 = 2 << 20;
/// Largest single write to a channel.
const MAX_WRITE: usize = 256 * 1024;
/// At most this many local connections at once; further ones wait in the listen backlog.
const MAX_CONNECTIONS: usize = 1024;
/// How long an accepted connection may wait for its channel (also across a reconnect).
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);
/// Poll timeout when libssh2 may be waiting without saying on what (libssh2#1945).
const SHORT_POLL: Duration = Duration::from_millis(2);
/// Longest idle poll.
const IDLE_POLL: Duration = Duration::from_millis(500);
/// Sessions per tunnel at most: libssh2 opens one channel at a time per session, so connections
/// arriving together are spread over extra sessions, connected in the background on demand.
const POOL_SIZE: usize = 4;

/// One local forward: `127.0.0.1:local_port` → `remote_host:remote_port` as seen from the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Forward {
    /// Local port on 127.0.0.1; 0 picks a free one (see [`Tunnel::forwards`]).
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
    /// Local connections accepted in total.
    pub connections_total: u64,
    /// Connections closed because the server could not reach (or refused) the target.
    pub connections_refused: u64,
    /// Successful reconnects.
    pub reconnects: u64,
    /// SSH sessions (connections) the tunnel currently uses: one, plus extras (up to 4 in all)
    /// connected when many local connections wait for their channel at once.
    pub sessions: u64,
}

#[derive(Default)]
struct Counters {
    to_remote: AtomicU64,
    from_remote: AtomicU64,
    open: AtomicU64,
    total: AtomicU64,
    refused: AtomicU64,
    reconnects: AtomicU64,
    sessions: AtomicU64,
    /// Sum of window growth beyond the initial size, over live connections.
    windows: AtomicU64,
}

type ResolveFuture = Pin<Box<dyn Future<Output = std::result::Result<Endpoint, BoxError>> + Send>>;
type Resolver = Arc<dyn Fn() -> ResolveFuture + Send + Sync>;

/// Configures a [`Tunnel`]; made by [`Connector::tunnel`].
#[must_use]
pub struct TunnelBuilder {
    connector: Connector,
    forwards: Vec<Forward>,
    resolver: Option<Resolver>,
    reconnect_attempts: u32,
    backoff_initial: Duration,
    backoff_max: Duration,
}

impl fmt::Debug for TunnelBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TunnelBuilder")
            .field("endpoint", self.connector.endpoint())
            .field("forwards", &self.forwards)
            .field("resolver", &self.resolver.is_some())
            .field("reconnect_attempts", &self.reconnect_attempts)
            .finish_non_exhaustive()
    }
}

impl TunnelBuilder {
    pub(crate) fn new(connector: Connector) -> Self {
        Self {
            connector,
            forwards: Vec::new(),
            resolver: None,
            reconnect_attempts: 20,
            backoff_initial: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
        }
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
        };
        std::thread::Builder::new()
            .name("pod-tunnel".into())
            .spawn(move || actor.run(ready_tx))
            .map_err(|source| Error::Bind { port: 0, source })?;
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

enum Command {
    Close(oneshot::Sender<()>),
    Reconnect,
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

// ---------------------------------------------------------------------------------------------
// The actor.

struct Actor {
    options: Arc<Options>,
    endpoint: Endpoint,
    forwards: Vec<BoundForward>,
    listeners: Vec<TcpListener>,
    wake: UnixStream,
    commands: mpsc::Receiver<Command>,
    counters: Arc<Counters>,
    state: watch::Sender<TunnelState>,
    failure: Arc<Mutex<Option<Error>>>,
    resolver: Option<Resolver>,
    runtime: tokio::runtime::Handle,
    reconnect_attempts: u32,
    backoff_initial: Duration,
    backoff_max: Duration,
    conns: HashMap<u64, Conn>,
    /// Accepted connections waiting for their channel, oldest first.
    pending: VecDeque<u64>,
    next_id: u64,
    /// Whether the last poll saw a listener ready (accepting costs a syscall per listener).
    accept_ready: bool,
}

/// A live session plus the bookkeeping the libssh2 rules need.
struct Active {
    link: Link,
    /// A session channel with no request: reading it makes libssh2 process incoming packets
    /// (keepalive replies, window adjusts) even when no forward is active.
    control: ssh2::Channel,
    /// The send that returned `EAGAIN` with outbound blocking and must be retried first.
    blocked: Option<Sender>,
    open_started: Option<Instant>,
    last_heard: Instant,
    next_keepalive: Instant,
    /// How far a bulk stream's receive window may grow on this link (`None`: a short link,
    /// where libssh2's own 2 MiB is best).
    max_window: Option<u32>,
    /// The connection whose channel open is in flight on this session.
    opening: Option<u64>,
}

/// A connected extra session and its control channel, from a background thread.
type Joined = Result<(Link, ssh2::Channel)>;

/// The sessions of one connection generation: the first one, plus extras that join on demand.
/// A reconnect replaces the whole pool, so late joiners of an old generation are dropped.
struct Pool {
    slots: Vec<Active>,
    joined_tx: mpsc::Sender<Joined>,
    joined: mpsc::Receiver<Joined>,
    /// Written by a joining thread when it is done; polled with everything else.
    join_wake_tx: UnixStream,
    join_wake: UnixStream,
    /// Extra sessions still connecting.
    outstanding: usize,
    /// An extra session failed to connect: stay at the current size until the next reconnect.
    grow_failed: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Sender {
    Open,
    Write(u64),
    Eof(u64),
    Close(u64),
    Adjust(u64),
}

#[expect(
    clippy::struct_excessive_bools,
    reason = "independent half-close flags"
)]
struct Conn {
    tcp: TcpStream,
    forward: usize,
    peer_port: u16,
    accepted: Instant,
    channel: Option<ssh2::Channel>,
    /// Index of the session (in the pool) that carries the channel.
    slot: usize,
    up: Buffer,
    down: Buffer,
    window: u32,
    /// Bytes read since the window was last checked, and in total.
    consumed: u64,
    received: u64,
    /// A window adjustment that returned `EAGAIN` and must be retried as is.
    pending_adjust: Option<u32>,
    local_eof: bool,
    eof_sent: bool,
    remote_eof: bool,
    local_write_shut: bool,
    closing: bool,
}

/// A byte queue that sources read into directly (no staging copy). Its storage grows on demand
/// up to `BUFFER_LIMIT + MAX_READ` and is reused; bytes move down only when the tail is short.
#[derive(Default)]
struct Buffer {
    data: Vec<u8>,
    start: usize,
    end: usize,
}

impl Buffer {
    fn len(&self) -> usize {
        self.end - self.start
    }
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn bytes(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }
    fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }
    /// Free space of at most `want` bytes at the tail; fill it, then call [`Buffer::commit`].
    fn spare(&mut self, want: usize) -> &mut [u8] {
        if self.data.len() - self.end < want && self.start > 0 {
            self.data.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let needed = self.end + want;
        if self.data.len() < needed {
            let grown = needed
                .max(self.data.len() * 2)
                .min(BUFFER_LIMIT + MAX_READ)
                .max(needed);
            self.data.resize(grown, 0);
        }
        &mut self.data[self.end..self.end + want]
    }
    fn commit(&mut self, n: usize) {
        self.end += n;
    }
}

fn is_eagain(e: &ssh2::Error) -> bool {
    e.code() == ssh2::ErrorCode::Session(-37)
}

/// Why the current session must be dropped.
struct Dead(String);

/// What one channel-open attempt gave.
enum Opened {
    Channel(ssh2::Channel),
    Waiting,
    Refused,
}

enum Step {
    Continue,
    Close(Option<oneshot::Sender<()>>),
    Reconnect(String),
}

impl Actor {
    fn run(mut self, ready: oneshot::Sender<Result<()>>) {
        let first = self
            .options
            .connect_blocking(&self.endpoint)
            .and_then(|link| self.activate(link));
        let mut active = match first {
            Ok(active) => {
                let _ = ready.send(Ok(()));
                Some(active)
            }
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        let mut last_error = String::new();
        loop {
            let step = match active.as_mut() {
                Some(a) => self.step(a),
                None => match self.reconnect(&last_error) {
                    Ok(a) => {
                        active = Some(a);
                        Step::Continue
                    }
                    Err(step) => step,
                },
            };
            match step {
                Step::Continue => {}
                Step::Reconnect(reason) => {
                    tracing::warn!(endpoint = %self.endpoint, reason = %reason, "ssh session lost; reconnecting");
                    if let Some(a) = active.take() {
                        self.drop_session(a);
                    }
                    last_error = reason;
                }
                Step::Close(reply) => {
                    if let Some(a) = active.take() {
                        self.shutdown(a);
                    }
                    self.listeners.clear();
                    self.conns.clear();
                    self.counters.open.store(0, Ordering::Relaxed);
                    let error = self
                        .failure
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .as_ref()
                        .map(ToString::to_string);
                    let _ = self.state.send(TunnelState::Closed { error });
                    if let Some(reply) = reply {
                        let _ = reply.send(());
                    }
                    return;
                }
            }
        }
    }

    /// Switches a fresh link to non-blocking mode, with its control channel: the first session
    /// of a new pool.
    fn activate(&mut self, link: Link) -> Result<Pool> {
        // Opening a channel takes one round trip with next to no work on the server: it tells
        // whether this is a long link (where bigger windows pay) or a short one (where they only
        // make libssh2 queue more).
        let started = Instant::now();
        let control = link
            .session
            .channel_session()
            .map_err(|source| Error::Exec {
                endpoint: link.endpoint.to_string(),
                source: source.into(),
            })?;
        let round_trip = started
            .elapsed()
            .min(crate::session::probe_round_trip(&link.session));
        tracing::debug!(endpoint = %link.endpoint, ?round_trip, "tunnel session ready");
        link.session.set_blocking(false);
        self.endpoint = link.endpoint.clone();
        let _ = self.state.send(TunnelState::Connected {
            endpoint: link.endpoint.clone(),
        });
        let max_window = crate::session::window_for_round_trip(round_trip, MAX_WINDOW);
        let first = self.slot(link, control, max_window);
        let pair_err = |source| Error::Bind { port: 0, source };
        let (join_wake_tx, join_wake) = UnixStream::pair().map_err(pair_err)?;
        join_wake.set_nonblocking(true).map_err(pair_err)?;
        let (joined_tx, joined) = mpsc::channel();
        self.counters.sessions.store(1, Ordering::Relaxed);
        Ok(Pool {
            slots: vec![first],
            joined_tx,
            joined,
            join_wake_tx,
            join_wake,
            outstanding: 0,
            grow_failed: false,
        })
    }

    fn slot(&self, link: Link, control: ssh2::Channel, max_window: Option<u32>) -> Active {
        let now = Instant::now();
        Active {
            link,
            control,
            blocked: None,
            open_started: None,
            last_heard: now,
            next_keepalive: now + self.options.keepalive_interval,
            max_window,
            opening: None,
        }
    }

    /// Starts extra sessions in the background when more connections wait for a channel than
    /// the pool can open at once.
    fn grow(&self, p: &mut Pool) {
        let free = p.slots.iter().filter(|s| s.opening.is_none()).count();
        let size = p.slots.len() + p.outstanding;
        if p.grow_failed || self.pending.len() <= free || size >= POOL_SIZE {
            return;
        }
        for _ in 0..(POOL_SIZE - size).min(self.pending.len() - free) {
            let Ok(wake) = p.join_wake_tx.try_clone() else {
                p.grow_failed = true;
                return;
            };
            let options = Arc::clone(&self.options);
            let endpoint = self.endpoint.clone();
            let results = p.joined_tx.clone();
            let spawned = std::thread::Builder::new()
                .name("pod-tunnel-join".into())
                .spawn(move || {
                    let joined = options.connect_blocking(&endpoint).and_then(|link| {
                        let control =
                            link.session
                                .channel_session()
                                .map_err(|source| Error::Exec {
                                    endpoint: link.endpoint.to_string(),
                                    source: source.into(),
                                })?;
                        link.session.set_blocking(false);
                        Ok((link, control))
                    });
                    // A closed receiver means the pool is gone: the link is simply dropped.
                    if results.send(joined).is_ok() {
                        let _ = (&wake).write(&[1]);
                    }
                });
            if spawned.is_err() {
                p.grow_failed = true;
                return;
            }
            p.outstanding += 1;
        }
    }

    /// Adds the extra sessions that finished connecting.
    fn adopt(&self, p: &mut Pool) {
        let mut buf = [0_u8; 16];
        while matches!((&p.join_wake).read(&mut buf), Ok(n) if n > 0) {}
        while let Ok(joined) = p.joined.try_recv() {
            p.outstanding = p.outstanding.saturating_sub(1);
            match joined {
                Ok((link, control)) => {
                    let max_window = p.slots[0].max_window;
                    let slot = self.slot(link, control, max_window);
                    p.slots.push(slot);
                    self.counters
                        .sessions
                        .store(p.slots.len() as u64, Ordering::Relaxed);
                    tracing::debug!(endpoint = %self.endpoint, sessions = p.slots.len(), "tunnel session added");
                }
                Err(e) => {
                    tracing::debug!(endpoint = %self.endpoint, error = %error_chain(&e), "extra tunnel session failed");
                    p.grow_failed = true;
                }
            }
        }
    }

    /// Drops dead sessions: every connection that had a channel is lost, waiting ones (including
    /// those whose open was in flight) are kept for the next session.
    fn drop_session(&mut self, p: Pool) {
        self.counters.sessions.store(0, Ordering::Relaxed);
        for slot in &p.slots {
            let _ = slot.link.socket.shutdown(std::net::Shutdown::Both);
            if let Some(id) = slot.opening {
                self.pending.push_front(id);
            }
        }
        let lost: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, c)| c.channel.is_some())
            .map(|(id, _)| *id)
            .collect();
        for id in lost {
            self.remove(id);
        }
        drop(p);
    }

    /// Graceful close: EOF and close every channel, then disconnect (bounded by short timeouts).
    fn shutdown(&mut self, p: Pool) {
        self.counters.sessions.store(0, Ordering::Relaxed);
        for slot in &p.slots {
            slot.link.session.set_blocking(true);
            slot.link.session.set_timeout(1000);
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        for conn in self.conns.values_mut() {
            if Instant::now() >= deadline {
                break;
            }
            if let Some(channel) = conn.channel.as_mut() {
                let _ = channel.send_eof();
                let _ = channel.close();
            }
        }
        self.conns.clear();
        for slot in p.slots {
            drop(slot.control);
            slot.link.disconnect();
        }
    }

    fn remove(&mut self, id: u64) {
        if let Some(conn) = self.conns.remove(&id) {
            self.counters.open.fetch_sub(1, Ordering::Relaxed);
            let grown = u64::from(conn.window - INITIAL_WINDOW);
            self.counters.windows.fetch_sub(grown, Ordering::Relaxed);
        }
    }

    /// Handles queued commands; drains the wake socket.
    fn commands(&mut self) -> Option<Step> {
        let mut buf = [0_u8; 64];
        while matches!((&self.wake).read(&mut buf), Ok(n) if n > 0) {}
        match self.commands.try_recv() {
            Ok(Command::Close(reply)) => Some(Step::Close(Some(reply))),
            Ok(Command::Reconnect) => Some(Step::Reconnect("reconnect requested".into())),
            Err(mpsc::TryRecvError::Empty) => None,
            Err(mpsc::TryRecvError::Disconnected) => Some(Step::Close(None)),
        }
    }

    fn reconnect(&mut self, last_error: &str) -> std::result::Result<Pool, Step> {
        let mut backoff = self.backoff_initial;
        let mut last_error = last_error.to_owned();
        let mut last: Option<Error> = None;
        for attempt in 1..=self.reconnect_attempts {
            let _ = self.state.send(TunnelState::Reconnecting {
                attempt,
                last_error: last_error.clone(),
            });
            if let Some(step) = self.wait_commands(backoff) {
                return Err(step);
            }
            backoff = (backoff * 2).min(self.backoff_max);
            let endpoint = match self.resolve() {
                Ok(e) => e,
                Err(e) => {
                    last_error = error_chain(&e);
                    last = Some(e);
                    continue;
                }
            };
            match self
                .options
                .connect_blocking(&endpoint)
                .and_then(|link| self.activate(link))
            {
                Ok(active) => {
                    self.counters.reconnects.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(endpoint = %endpoint, attempt, "ssh tunnel reconnected");
                    return Ok(active);
                }
                Err(e) => {
                    last_error = error_chain(&e);
                    tracing::warn!(endpoint = %endpoint, attempt, error = %last_error, "reconnect failed");
                    let fatal = matches!(
                        e,
                        Error::HostKeyMismatch { .. }
                            | Error::HostKeyUnknown { .. }
                            | Error::Authenticate { .. }
                    );
                    if fatal {
                        self.set_failure(e);
                        return Err(Step::Close(None));
                    }
                    self.endpoint = endpoint;
                    last = Some(e);
                }
            }
        }
        let source = last.unwrap_or(Error::SessionClosed);
        self.set_failure(Error::ReconnectExhausted {
            endpoint: self.endpoint.to_string(),
            attempts: self.reconnect_attempts,
            source: Box::new(source),
        });
        Err(Step::Close(None))
    }

    fn set_failure(&self, error: Error) {
        *self
            .failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(error);
    }

    fn resolve(&self) -> Result<Endpoint> {
        let Some(resolver) = &self.resolver else {
            return Ok(self.endpoint.clone());
        };
        let fut = resolver();
        let limit = self.options.io_timeout;
        self.runtime
            .block_on(async move { tokio::time::timeout(limit, fut).await })
            .map_err(|elapsed| Error::Resolve {
                source: Box::new(elapsed),
            })?
            .map_err(|source| Error::Resolve { source })
    }

    /// Waits up to `timeout` for a command (listeners stay bound; clients wait in the backlog).
    fn wait_commands(&mut self, timeout: Duration) -> Option<Step> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(step) = self.commands() {
                return match step {
                    Step::Reconnect(_) => None,
                    other => Some(other),
                };
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            let mut fds = [PollFd::new(&self.wake, PollFlags::IN)];
            let _ = poll(&mut fds, left);
        }
    }

    fn can_send(a: &Active, who: Sender) -> bool {
        a.blocked.is_none_or(|b| b == who)
    }

    /// Records the outcome of a send that returned `EAGAIN`.
    fn blocked_on(a: &mut Active, who: Sender) {
        let outbound = matches!(
            a.link.session.block_directions(),
            ssh2::BlockDirections::Outbound | ssh2::BlockDirections::Both
        );
        if outbound {
            a.blocked = Some(who);
        } else if a.blocked == Some(who) {
            a.blocked = None;
        }
    }

    fn sent(a: &mut Active, who: Sender) {
        if a.blocked == Some(who) {
            a.blocked = None;
        }
    }

    /// One turn of the loop.
    fn step(&mut self, p: &mut Pool) -> Step {
        if let Some(step) = self.commands() {
            return step;
        }
        if self.accept_ready {
            self.accept();
        }
        self.adopt(p);
        let mut busy = false;
        for round in 0..8 {
            let mut pass = false;
            match self.open_channels(p) {
                Ok(progress) => pass |= progress,
                Err(Dead(reason)) => return Step::Reconnect(reason),
            }
            let (pumped, read_any) = self.pump(p);
            pass |= pumped;
            for (slot, read) in p.slots.iter_mut().zip(read_any) {
                if !read && let Err(Dead(reason)) = Self::drain_control(slot) {
                    return Step::Reconnect(reason);
                }
            }
            if !pass {
                break;
            }
            // Still moving data after many passes: poll without sleeping, then come back.
            busy = round == 7;
        }
        self.grow(p);
        let now = Instant::now();
        if p.slots
            .iter()
            .any(|a| now.duration_since(a.last_heard) > self.options.dead_after())
        {
            return Step::Reconnect(format!(
                "no answer from {} for {:?} (keepalive)",
                self.endpoint,
                self.options.dead_after()
            ));
        }
        self.expire_pending(now);
        self.wait(p, busy)
    }

    fn accept(&mut self) {
        for (index, listener) in self.listeners.iter().enumerate() {
            while self.conns.len() < MAX_CONNECTIONS {
                match listener.accept() {
                    Ok((tcp, peer)) => {
                        if tcp.set_nonblocking(true).is_err() {
                            continue;
                        }
                        let _ = tcp.set_nodelay(true);
                        let id = self.next_id;
                        self.next_id += 1;
                        self.conns.insert(
                            id,
                            Conn {
                                tcp,
                                forward: index,
                                peer_port: peer.port(),
                                accepted: Instant::now(),
                                channel: None,
                                slot: 0,
                                up: Buffer::default(),
                                down: Buffer::default(),
                                window: INITIAL_WINDOW,
                                consumed: 0,
                                received: 0,
                                pending_adjust: None,
                                local_eof: false,
                                eof_sent: false,
                                remote_eof: false,
                                local_write_shut: false,
                                closing: false,
                            },
                        );
                        self.pending.push_back(id);
                        self.counters.total.fetch_add(1, Ordering::Relaxed);
                        self.counters.open.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => {
                        tracing::debug!(error = %e, "accept failed");
                        break;
                    }
                }
            }
        }
    }

    /// Drops connections that waited too long for a channel (for example across a long outage).
    fn expire_pending(&mut self, now: Instant) {
        while let Some(&id) = self.pending.front() {
            match self.conns.get(&id) {
                Some(c) if c.channel.is_none() && now.duration_since(c.accepted) > OPEN_TIMEOUT => {
                    self.pending.pop_front();
                    self.remove(id);
                }
                Some(_) => break,
                None => {
                    self.pending.pop_front();
                }
            }
        }
    }

    /// Opens channels for waiting connections: one at a time per session, on the session that
    /// carries the fewest channels.
    fn open_channels(&mut self, p: &mut Pool) -> std::result::Result<bool, Dead> {
        let mut progress = false;
        // Opens in flight first: libssh2 resends the first call's message whatever the arguments.
        for index in 0..p.slots.len() {
            let slot = &mut p.slots[index];
            let Some(id) = slot.opening else { continue };
            if !Self::can_send(slot, Sender::Open) {
                continue;
            }
            let conn = self.conns.get(&id);
            let forward = &self.forwards[conn.map_or(0, |c| c.forward)];
            let peer_port = conn.map_or(0, |c| c.peer_port);
            let opened = Self::try_open(slot, forward, peer_port)?;
            progress |= self.opened(id, index, opened);
        }
        while !self.pending.is_empty() {
            let mut load = vec![0_usize; p.slots.len()];
            for conn in self.conns.values() {
                if conn.channel.is_some() {
                    load[conn.slot] += 1;
                }
            }
            let Some(index) = (0..p.slots.len())
                .filter(|&i| {
                    p.slots[i].opening.is_none() && Self::can_send(&p.slots[i], Sender::Open)
                })
                .min_by_key(|&i| load[i])
            else {
                break;
            };
            let Some(id) = self.pending.pop_front() else {
                break;
            };
            let Some(conn) = self.conns.get(&id) else {
                continue;
            };
            let slot = &mut p.slots[index];
            slot.opening = Some(id);
            let opened = Self::try_open(slot, &self.forwards[conn.forward], conn.peer_port)?;
            progress |= self.opened(id, index, opened);
        }
        Ok(progress)
    }

    /// One attempt at the open in flight on `slot`.
    fn try_open(
        slot: &mut Active,
        forward: &BoundForward,
        peer_port: u16,
    ) -> std::result::Result<Opened, Dead> {
        match slot.link.session.channel_direct_tcpip(
            &forward.remote_host,
            forward.remote_port,
            Some(("127.0.0.1", peer_port)),
        ) {
            Ok(channel) => {
                Self::sent(slot, Sender::Open);
                slot.open_started = None;
                slot.opening = None;
                Ok(Opened::Channel(channel))
            }
            Err(e) if is_eagain(&e) => {
                Self::blocked_on(slot, Sender::Open);
                let started = *slot.open_started.get_or_insert_with(Instant::now);
                if started.elapsed() > OPEN_TIMEOUT {
                    return Err(Dead(format!(
                        "opening a channel to {}:{} took longer than {OPEN_TIMEOUT:?}",
                        forward.remote_host, forward.remote_port
                    )));
                }
                Ok(Opened::Waiting)
            }
            Err(e) if matches!(e.code(), ssh2::ErrorCode::Session(-21 | -22)) => {
                Self::sent(slot, Sender::Open);
                tracing::warn!(
                    target_host = %forward.remote_host,
                    target_port = forward.remote_port,
                    error = %e,
                    "server could not open the forward target; closing that connection"
                );
                slot.open_started = None;
                slot.opening = None;
                Ok(Opened::Refused)
            }
            Err(e) => Err(Dead(format!("opening a channel failed: {e}"))),
        }
    }

    /// Applies the outcome of an open for connection `id` on session `index`; returns progress.
    fn opened(&mut self, id: u64, index: usize, opened: Opened) -> bool {
        match opened {
            Opened::Waiting => false,
            Opened::Channel(channel) => {
                // A connection that went away meanwhile just drops its channel.
                if let Some(conn) = self.conns.get_mut(&id) {
                    conn.channel = Some(channel);
                    conn.slot = index;
                }
                true
            }
            Opened::Refused => {
                self.counters.refused.fetch_add(1, Ordering::Relaxed);
                self.remove(id);
                true
            }
        }
    }

    /// Moves data for every connection; retries each session's blocked sender first.
    /// Returns progress, and per session whether some channel was read (which also drains
    /// the transport).
    fn pump(&mut self, p: &mut Pool) -> (bool, Vec<bool>) {
        let mut progress = false;
        let mut read_any = vec![false; p.slots.len()];
        let mut ids: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, c)| c.channel.is_some())
            .map(|(id, _)| *id)
            .collect();
        // The blocked senders go first.
        let mut front = 0;
        for slot in &p.slots {
            if let Some(Sender::Write(b) | Sender::Eof(b) | Sender::Close(b) | Sender::Adjust(b)) =
                slot.blocked
                && let Some(pos) = ids.iter().position(|&id| id == b)
                && pos >= front
            {
                ids.swap(front, pos);
                front += 1;
            }
        }
        let mut finished = Vec::new();
        for id in ids {
            let Some(conn) = self.conns.get_mut(&id) else {
                continue;
            };
            let Some(a) = p.slots.get_mut(conn.slot) else {
                continue;
            };
            read_any[conn.slot] |=
                !conn.closing && !conn.remote_eof && conn.down.len() < BUFFER_LIMIT;
            let (moved, done) = pump_one(id, conn, a, &self.counters);
            progress |= moved;
            if done {
                finished.push(id);
            }
        }
        for id in finished {
            self.remove(id);
        }
        (progress, read_any)
    }

    /// Reads the control channel so that libssh2 processes incoming packets; notices death.
    fn drain_control(a: &mut Active) -> std::result::Result<(), Dead> {
        let mut buf = [0_u8; 256];
        match a.control.read(&mut buf) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(Dead(format!("session failed: {e}"))),
        }
    }

    /// Sends keepalives when due and polls every descriptor.
    fn wait(&mut self, p: &mut Pool, busy: bool) -> Step {
        let now = Instant::now();
        let mut timeout = if busy { Duration::ZERO } else { IDLE_POLL };
        let mut fds =
            Vec::with_capacity(2 + p.slots.len() + self.listeners.len() + self.conns.len());
        fds.push(PollFd::new(&self.wake, PollFlags::IN));
        let mut session_flags = Vec::with_capacity(p.slots.len());
        for a in &mut p.slots {
            if now >= a.next_keepalive && a.blocked.is_none() && socket_writable(&a.link.socket) {
                match a.link.session.keepalive_send() {
                    Ok(secs) => {
                        a.next_keepalive = now + Duration::from_secs(u64::from(secs.max(1)));
                    }
                    Err(e) => return Step::Reconnect(format!("keepalive failed: {e}")),
                }
            }
            timeout = timeout
                .min(a.next_keepalive.saturating_duration_since(now))
                .min(
                    (a.last_heard + self.options.dead_after())
                        .saturating_duration_since(now)
                        .max(Duration::from_millis(1)),
                );
            let direction = a.link.session.block_directions();
            let waiting = a.blocked.is_some() || a.open_started.is_some();
            if waiting && direction == ssh2::BlockDirections::None {
                timeout = timeout.min(SHORT_POLL);
            }
            let mut flags = PollFlags::IN;
            if a.blocked.is_some()
                || matches!(
                    direction,
                    ssh2::BlockDirections::Outbound | ssh2::BlockDirections::Both
                )
            {
                flags |= PollFlags::OUT;
            }
            session_flags.push(flags);
        }
        fds.push(PollFd::new(&p.join_wake, PollFlags::IN));
        for (a, flags) in p.slots.iter().zip(session_flags) {
            fds.push(PollFd::new(&a.link.socket, flags));
        }
        let listening = self.conns.len() < MAX_CONNECTIONS;
        if listening {
            for listener in &self.listeners {
                fds.push(PollFd::new(listener, PollFlags::IN));
            }
        }
        for conn in self.conns.values() {
            if conn.channel.is_none() {
                continue;
            }
            let mut flags = PollFlags::empty();
            if !conn.local_eof && !conn.closing && conn.up.len() < BUFFER_LIMIT {
                flags |= PollFlags::IN;
            }
            if !conn.down.is_empty() {
                flags |= PollFlags::OUT;
            }
            if !flags.is_empty() {
                fds.push(PollFd::new(&conn.tcp, flags));
            }
        }
        if poll(&mut fds, timeout).is_ok() {
            let heard: Vec<bool> = fds[2..2 + p.slots.len()]
                .iter()
                .map(|fd| {
                    fd.revents()
                        .intersects(PollFlags::IN | PollFlags::HUP | PollFlags::ERR)
                })
                .collect();
            let first = 2 + heard.len();
            let listeners = if listening {
                &fds[first..first + self.listeners.len()]
            } else {
                &[]
            };
            self.accept_ready = listeners.iter().any(|fd| !fd.revents().is_empty());
            drop(fds);
            let heard_at = Instant::now();
            for (a, heard) in p.slots.iter_mut().zip(heard) {
                if heard {
                    a.last_heard = heard_at;
                }
            }
        }
        Step::Continue
    }
}

fn socket_writable(socket: &TcpStream) -> bool {
    let mut fds = [PollFd::new(socket, PollFlags::OUT)];
    matches!(poll(&mut fds, Duration::ZERO), Ok(1)) && fds[0].revents().contains(PollFlags::OUT)
}

/// Moves data for one connection. Returns (progress, finished).
#[expect(
    clippy::too_many_lines,
    reason = "one linear pass over both directions"
)]
fn pump_one(id: u64, conn: &mut Conn, a: &mut Active, counters: &Counters) -> (bool, bool) {
    let mut progress = false;
    let Some(channel) = conn.channel.as_mut() else {
        return (false, false);
    };
    if conn.closing {
        if !Actor::can_send(a, Sender::Close(id)) {
            return (false, false);
        }
        return match channel.close() {
            Err(e) if is_eagain(&e) => {
                Actor::blocked_on(a, Sender::Close(id));
                (false, false)
            }
            Ok(()) | Err(_) => {
                Actor::sent(a, Sender::Close(id));
                (true, true)
            }
        };
    }
    // Local → buffer.
    while !conn.local_eof && conn.up.len() < BUFFER_LIMIT {
        let want = (BUFFER_LIMIT - conn.up.len()).min(MAX_READ);
        match conn.tcp.read(conn.up.spare(want)) {
            Ok(0) => conn.local_eof = true,
            Ok(n) => {
                conn.up.commit(n);
                progress = true;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => {
                conn.closing = true;
                return (true, false);
            }
        }
    }
    // Buffer → channel.
    while !conn.up.is_empty() && Actor::can_send(a, Sender::Write(id)) {
        let window = channel.write_window().remaining as usize;
        if window == 0 {
            // Not a half-sent packet: the server's window is full. Let libssh2 read its adjust.
            break;
        }
        let len = conn.up.len().min(window).min(MAX_WRITE);
        match channel.write(&conn.up.bytes()[..len]) {
            Ok(n) => {
                Actor::sent(a, Sender::Write(id));
                conn.up.consume(n);
                counters.to_remote.fetch_add(n as u64, Ordering::Relaxed);
                progress |= n > 0;
                if n == 0 {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                Actor::blocked_on(a, Sender::Write(id));
                break;
            }
            Err(_) => {
                Actor::sent(a, Sender::Write(id));
                conn.closing = true;
                return (true, false);
            }
        }
    }
    // Local EOF → channel EOF (half-close).
    if conn.local_eof && conn.up.is_empty() && !conn.eof_sent && Actor::can_send(a, Sender::Eof(id))
    {
        match channel.send_eof() {
            Ok(()) => {
                Actor::sent(a, Sender::Eof(id));
                conn.eof_sent = true;
                progress = true;
            }
            Err(e) if is_eagain(&e) => Actor::blocked_on(a, Sender::Eof(id)),
            Err(_) => {
                Actor::sent(a, Sender::Eof(id));
                conn.eof_sent = true;
            }
        }
    }
    // Channel → buffer.
    while !conn.remote_eof && conn.down.len() < BUFFER_LIMIT {
        // Bulk streams whose consumer keeps up get a bigger receive window, so a long link stays
        // busy; the others keep libssh2's own management (about 2 MiB). Checked once per quarter
        // window consumed, because reading the window state walks libssh2's packet list.
        if (conn.consumed >= u64::from(conn.window / 4) || conn.pending_adjust.is_some())
            && Actor::can_send(a, Sender::Adjust(id))
        {
            let adjust = if let Some(pending) = conn.pending_adjust {
                pending
            } else {
                let remaining = channel.read_window().remaining;
                if conn.received >= BULK_BYTES
                    && conn.down.is_empty()
                    && a.max_window.is_some_and(|max| conn.window < max)
                    && counters.windows.load(Ordering::Relaxed) + u64::from(conn.window)
                        <= WINDOW_BUDGET
                {
                    counters
                        .windows
                        .fetch_add(u64::from(conn.window), Ordering::Relaxed);
                    conn.window *= 2;
                }
                conn.consumed = 0;
                if conn.window > INITIAL_WINDOW {
                    conn.window.saturating_sub(remaining)
                } else {
                    0
                }
            };
            if adjust > 0 {
                match channel.adjust_receive_window(u64::from(adjust), true) {
                    Ok(_) => {
                        Actor::sent(a, Sender::Adjust(id));
                        conn.pending_adjust = None;
                    }
                    Err(e) if is_eagain(&e) => {
                        // Must be retried with the same amount.
                        conn.pending_adjust = Some(adjust);
                        Actor::blocked_on(a, Sender::Adjust(id));
                    }
                    Err(_) => {
                        conn.closing = true;
                        return (true, false);
                    }
                }
            }
        }
        match channel.read(conn.down.spare(MAX_READ)) {
            Ok(0) => {
                if channel.eof() {
                    conn.remote_eof = true;
                    progress = true;
                }
                break;
            }
            Ok(n) => {
                conn.down.commit(n);
                conn.consumed += n as u64;
                conn.received += n as u64;
                counters.from_remote.fetch_add(n as u64, Ordering::Relaxed);
                progress = true;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(_) => {
                conn.closing = true;
                return (true, false);
            }
        }
    }
    // Buffer → local.
    while !conn.down.is_empty() {
        match conn.tcp.write(conn.down.bytes()) {
            Ok(n) => {
                conn.down.consume(n);
                progress |= n > 0;
                if n == 0 {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => {
                conn.closing = true;
                return (true, false);
            }
        }
    }
    if conn.remote_eof && conn.down.is_empty() && !conn.local_write_shut {
        let _ = conn.tcp.shutdown(std::net::Shutdown::Write);
        conn.local_write_shut = true;
        progress = true;
    }
    if conn.local_eof && conn.eof_sent && conn.remote_eof && conn.down.is_empty() {
        conn.closing = true;
        progress = true;
    }
    (progress, false)
}

fn error_chain(error: &Error) -> String {
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

    #[test]
    fn forwards_parse_like_ssh_dash_l() {
        let f: Forward = "9876:127.0.0.1:9876".parse().unwrap();
        assert_eq!(f, Forward::new(9876, "127.0.0.1", 9876));
        let f: Forward = "0:[::1]:22".parse().unwrap();
        assert_eq!(f.remote_host, "::1");
        assert!("9876:host".parse::<Forward>().is_err());
        assert!("x:host:1".parse::<Forward>().is_err());
    }

    #[test]
    fn buffers_consume_and_compact() {
        let mut b = Buffer::default();
        b.spare(4).copy_from_slice(&[1, 2, 3, 4]);
        b.commit(4);
        b.consume(3);
        assert_eq!(b.bytes(), &[4]);
        // Asking for more room than the tail has moves the remaining bytes down.
        let room = b.data.len() - b.end + 10;
        b.spare(room)[0] = 5;
        b.commit(1);
        assert_eq!(b.bytes(), &[4, 5]);
        assert_eq!(b.start, 0);
        b.consume(2);
        assert!(b.is_empty());
    }
}
