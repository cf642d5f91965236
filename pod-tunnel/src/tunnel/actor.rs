//! The worker thread's state and one turn of its loop: accept local connections, open their
//! channels, move data, send keepalives and poll every descriptor.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read as _};
use std::net::TcpListener;
use std::os::unix::net::UnixStream;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags};
use tokio::sync::{oneshot, watch};

use crate::connect::{Endpoint, Options};
use crate::error::Error;
use crate::link::{poll, socket_writable};

use super::conn::{BUFFER_LIMIT, Conn, INITIAL_WINDOW, OPEN_TIMEOUT, Opened, pump_one, try_open};
use super::peer::{self, LocalClients, Owners};
use super::pool::{Dead, Pool, Sender};
use super::state::{BoundForward, Command, Counters, Resolver, TunnelState};

/// At most this many local connections at once; further ones wait in the listen backlog.
const MAX_CONNECTIONS: usize = 1024;
/// Poll timeout when libssh2 may be waiting without saying on what (libssh2#1945).
const SHORT_POLL: Duration = Duration::from_millis(2);
/// Longest idle poll.
const IDLE_POLL: Duration = Duration::from_millis(500);

/// The worker: owns the listeners, the forwarded connections and (in [`Pool`]s, one
/// generation at a time) the SSH sessions.
pub(super) struct Actor {
    pub(super) options: Arc<Options>,
    pub(super) endpoint: Endpoint,
    pub(super) forwards: Vec<BoundForward>,
    pub(super) listeners: Vec<TcpListener>,
    pub(super) wake: UnixStream,
    pub(super) commands: mpsc::Receiver<Command>,
    pub(super) counters: Arc<Counters>,
    pub(super) state: watch::Sender<TunnelState>,
    pub(super) failure: Arc<Mutex<Option<Error>>>,
    pub(super) resolver: Option<Resolver>,
    pub(super) runtime: tokio::runtime::Handle,
    pub(super) reconnect_attempts: u32,
    pub(super) backoff_initial: Duration,
    pub(super) backoff_max: Duration,
    pub(super) conns: HashMap<u64, Conn>,
    /// Accepted connections waiting for their channel, oldest first.
    pub(super) pending: VecDeque<u64>,
    pub(super) next_id: u64,
    /// Whether the last poll saw a listener ready (accepting costs a syscall per listener).
    pub(super) accept_ready: bool,
    pub(super) local_clients: LocalClients,
}

/// What the loop does next.
pub(super) enum Step {
    Continue,
    Close(Option<oneshot::Sender<()>>),
    Reconnect(String),
}

impl Actor {
    pub(super) fn remove(&mut self, id: u64) {
        if let Some(conn) = self.conns.remove(&id) {
            self.counters.open.fetch_sub(1, Ordering::Relaxed);
            let grown = u64::from(conn.window - INITIAL_WINDOW);
            self.counters.windows.fetch_sub(grown, Ordering::Relaxed);
        }
    }

    /// Handles queued commands; drains the wake socket.
    pub(super) fn commands(&mut self) -> Option<Step> {
        let mut buf = [0_u8; 64];
        while matches!((&self.wake).read(&mut buf), Ok(n) if n > 0) {}
        match self.commands.try_recv() {
            Ok(Command::Close(reply)) => Some(Step::Close(Some(reply))),
            Ok(Command::Reconnect) => Some(Step::Reconnect("reconnect requested".into())),
            Err(mpsc::TryRecvError::Empty) => None,
            Err(mpsc::TryRecvError::Disconnected) => Some(Step::Close(None)),
        }
    }

    /// One turn of the loop.
    pub(super) fn step(&mut self, p: &mut Pool) -> Step {
        if let Some(step) = self.commands() {
            return step;
        }
        if self.accept_ready {
            self.accept();
        }
        p.adopt(&self.options, &self.endpoint, &self.counters);
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
                if !read && let Err(Dead(reason)) = slot.drain_control() {
                    return Step::Reconnect(reason);
                }
            }
            if !pass {
                break;
            }
            // Still moving data after many passes: poll without sleeping, then come back.
            busy = round == 7;
        }
        p.grow(self.pending.len(), &self.options, &self.endpoint);
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
        let mut owners = Owners::default();
        for (index, listener) in self.listeners.iter().enumerate() {
            while self.conns.len() < MAX_CONNECTIONS {
                match listener.accept() {
                    Ok((tcp, peer)) => {
                        // Dropping the socket closes it before a byte moves or a channel opens.
                        if self.local_clients == LocalClients::SameUser
                            && !peer::admit(&mut owners, peer, self.forwards[index].local)
                        {
                            self.counters.denied.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        if tcp.set_nonblocking(true).is_err() {
                            continue;
                        }
                        let _ = tcp.set_nodelay(true);
                        let id = self.next_id;
                        self.next_id += 1;
                        self.conns.insert(id, Conn::new(tcp, index, peer.port()));
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
            if !slot.can_send(Sender::Open) {
                continue;
            }
            let conn = self.conns.get(&id);
            let forward = &self.forwards[conn.map_or(0, |c| c.forward)];
            let peer_port = conn.map_or(0, |c| c.peer_port);
            let opened = try_open(slot, forward, peer_port)?;
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
                .filter(|&i| p.slots[i].opening.is_none() && p.slots[i].can_send(Sender::Open))
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
            let opened = try_open(slot, &self.forwards[conn.forward], conn.peer_port)?;
            progress |= self.opened(id, index, opened);
        }
        Ok(progress)
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
