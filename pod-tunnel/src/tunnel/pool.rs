//! The SSH sessions of one connection generation: the first one plus extras connected on
//! demand, each with the bookkeeping the libssh2 rules need.

use std::io::{self, Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::sync::atomic::Ordering;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use crate::connect::{Endpoint, Link, Options};
use crate::error::{Error, Result, error_chain};

use super::state::Counters;

/// Sessions per tunnel at most: libssh2 opens one channel at a time per session, so connections
/// arriving together are spread over extra sessions, connected in the background on demand.
const POOL_SIZE: usize = 4;

/// A live session plus the bookkeeping the libssh2 rules need.
pub(super) struct Active {
    pub(super) link: Link,
    /// A session channel with no request: reading it makes libssh2 process incoming packets
    /// (keepalive replies, window adjusts) even when no forward is active.
    pub(super) control: ssh2::Channel,
    /// The send that returned `EAGAIN` with outbound blocking and must be retried first.
    pub(super) blocked: Option<Sender>,
    pub(super) open_started: Option<Instant>,
    pub(super) last_heard: Instant,
    pub(super) next_keepalive: Instant,
    /// How far a bulk stream's receive window may grow on this link (`None`: a short link,
    /// where libssh2's own 2 MiB is best).
    pub(super) max_window: Option<u32>,
    /// The connection whose channel open is in flight on this session.
    pub(super) opening: Option<u64>,
}

impl Active {
    /// A fresh session (already non-blocking) and its control channel.
    pub(super) fn new(
        link: Link,
        control: ssh2::Channel,
        max_window: Option<u32>,
        keepalive_interval: Duration,
    ) -> Self {
        let now = Instant::now();
        Self {
            link,
            control,
            blocked: None,
            open_started: None,
            last_heard: now,
            next_keepalive: now + keepalive_interval,
            max_window,
            opening: None,
        }
    }

    pub(super) fn can_send(&self, who: Sender) -> bool {
        self.blocked.is_none_or(|b| b == who)
    }

    /// Records the outcome of a send that returned `EAGAIN`.
    pub(super) fn blocked_on(&mut self, who: Sender) {
        let outbound = matches!(
            self.link.session.block_directions(),
            ssh2::BlockDirections::Outbound | ssh2::BlockDirections::Both
        );
        if outbound {
            self.blocked = Some(who);
        } else if self.blocked == Some(who) {
            self.blocked = None;
        }
    }

    pub(super) fn sent(&mut self, who: Sender) {
        if self.blocked == Some(who) {
            self.blocked = None;
        }
    }

    /// Reads the control channel so that libssh2 processes incoming packets; notices death.
    pub(super) fn drain_control(&mut self) -> std::result::Result<(), Dead> {
        let mut buf = [0_u8; 256];
        match self.control.read(&mut buf) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(Dead(format!("session failed: {e}"))),
        }
    }
}

/// A connected extra session and its control channel, from a background thread.
pub(super) type Joined = Result<(Link, ssh2::Channel)>;

/// The sessions of one connection generation: the first one, plus extras that join on demand.
/// A reconnect replaces the whole pool, so late joiners of an old generation are dropped.
pub(super) struct Pool {
    pub(super) slots: Vec<Active>,
    joined_tx: mpsc::Sender<Joined>,
    joined: mpsc::Receiver<Joined>,
    /// Written by a joining thread when it is done; polled with everything else.
    join_wake_tx: UnixStream,
    pub(super) join_wake: UnixStream,
    /// Extra sessions still connecting.
    outstanding: usize,
    /// An extra session failed to connect: stay at the current size until the next reconnect.
    grow_failed: bool,
}

impl Pool {
    /// A pool of one session, `first`.
    ///
    /// # Errors
    /// [`Error::Bind`] when the wake-up socket pair cannot be made.
    pub(super) fn new(first: Active) -> Result<Self> {
        let pair_err = |source| Error::Bind { port: 0, source };
        let (join_wake_tx, join_wake) = UnixStream::pair().map_err(pair_err)?;
        join_wake.set_nonblocking(true).map_err(pair_err)?;
        let (joined_tx, joined) = mpsc::channel();
        Ok(Self {
            slots: vec![first],
            joined_tx,
            joined,
            join_wake_tx,
            join_wake,
            outstanding: 0,
            grow_failed: false,
        })
    }

    /// Starts extra sessions in the background when more connections wait for a channel than
    /// the pool can open at once (`waiting`: connections waiting for one).
    pub(super) fn grow(&mut self, waiting: usize, options: &Arc<Options>, endpoint: &Endpoint) {
        let free = self.slots.iter().filter(|s| s.opening.is_none()).count();
        let size = self.slots.len() + self.outstanding;
        if self.grow_failed || waiting <= free || size >= POOL_SIZE {
            return;
        }
        for _ in 0..(POOL_SIZE - size).min(waiting - free) {
            let Ok(wake) = self.join_wake_tx.try_clone() else {
                self.grow_failed = true;
                return;
            };
            let options = Arc::clone(options);
            let endpoint = endpoint.clone();
            let results = self.joined_tx.clone();
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
                self.grow_failed = true;
                return;
            }
            self.outstanding += 1;
        }
    }

    /// Adds the extra sessions that finished connecting.
    pub(super) fn adopt(&mut self, options: &Options, endpoint: &Endpoint, counters: &Counters) {
        let mut buf = [0_u8; 16];
        while matches!((&self.join_wake).read(&mut buf), Ok(n) if n > 0) {}
        while let Ok(joined) = self.joined.try_recv() {
            self.outstanding = self.outstanding.saturating_sub(1);
            match joined {
                Ok((link, control)) => {
                    let max_window = self.slots[0].max_window;
                    let slot = Active::new(link, control, max_window, options.keepalive_interval);
                    self.slots.push(slot);
                    counters
                        .sessions
                        .store(self.slots.len() as u64, Ordering::Relaxed);
                    tracing::debug!(endpoint = %endpoint, sessions = self.slots.len(), "tunnel session added");
                }
                Err(e) => {
                    tracing::debug!(endpoint = %endpoint, error = %error_chain(&e), "extra tunnel session failed");
                    self.grow_failed = true;
                }
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Sender {
    Open,
    Write(u64),
    Eof(u64),
    Close(u64),
    Adjust(u64),
}

/// Why the current session must be dropped.
pub(super) struct Dead(pub(super) String);
