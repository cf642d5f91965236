//! One forwarded connection: its local socket, its channel, the buffers between them, and one
//! pass of moving data both ways.

use std::io::{self, Read as _, Write as _};
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::link::is_eagain;

use super::pool::{Active, Dead, Sender};
use super::state::{BoundForward, Counters};

/// Per-connection buffer limit in each direction: beyond it the source is no longer read.
pub(super) const BUFFER_LIMIT: usize = 256 * 1024;
/// Largest single read from a channel.
const MAX_READ: usize = 256 * 1024;
/// A connection that has carried this much from the remote side counts as a bulk stream.
const BULK_BYTES: u64 = 4 << 20;
/// A channel's receive window starts at libssh2's 2 MiB and doubles, while the sender keeps it
/// nearly exhausted, up to this size (OpenSSH keeps 2 MiB), so a long link stays busy.
pub(super) const MAX_WINDOW: u32 = 16 << 20;
/// Bound on the sum of all grown windows (memory libssh2 may buffer for slow consumers).
const WINDOW_BUDGET: u64 = 128 << 20;
/// The window every channel starts with.
pub(super) const INITIAL_WINDOW: u32 = 2 << 20;
/// Largest single write to a channel.
const MAX_WRITE: usize = 256 * 1024;
/// How long an accepted connection may wait for its channel (also across a reconnect).
pub(super) const OPEN_TIMEOUT: Duration = Duration::from_secs(30);

#[expect(
    clippy::struct_excessive_bools,
    reason = "independent half-close flags"
)]
pub(super) struct Conn {
    pub(super) tcp: TcpStream,
    pub(super) forward: usize,
    pub(super) peer_port: u16,
    pub(super) accepted: Instant,
    pub(super) channel: Option<ssh2::Channel>,
    /// Index of the session (in the pool) that carries the channel.
    pub(super) slot: usize,
    pub(super) up: Buffer,
    pub(super) down: Buffer,
    pub(super) window: u32,
    /// Bytes read since the window was last checked, and in total.
    pub(super) consumed: u64,
    pub(super) received: u64,
    /// A window adjustment that returned `EAGAIN` and must be retried as is.
    pub(super) pending_adjust: Option<u32>,
    pub(super) local_eof: bool,
    pub(super) eof_sent: bool,
    pub(super) remote_eof: bool,
    pub(super) local_write_shut: bool,
    pub(super) closing: bool,
}

impl Conn {
    /// A connection just accepted (already non-blocking), waiting for its channel.
    pub(super) fn new(tcp: TcpStream, forward: usize, peer_port: u16) -> Self {
        Self {
            tcp,
            forward,
            peer_port,
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
        }
    }
}

/// A byte queue that sources read into directly (no staging copy). Its storage grows on demand
/// up to `BUFFER_LIMIT + MAX_READ` and is reused; bytes move down only when the tail is short.
#[derive(Default)]
pub(super) struct Buffer {
    data: Vec<u8>,
    start: usize,
    end: usize,
}

impl Buffer {
    pub(super) fn len(&self) -> usize {
        self.end - self.start
    }
    pub(super) fn is_empty(&self) -> bool {
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

/// What one channel-open attempt gave.
pub(super) enum Opened {
    Channel(ssh2::Channel),
    Waiting,
    Refused,
}

/// One attempt at the open in flight on `slot`.
pub(super) fn try_open(
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
            slot.sent(Sender::Open);
            slot.open_started = None;
            slot.opening = None;
            Ok(Opened::Channel(channel))
        }
        Err(e) if is_eagain(&e) => {
            slot.blocked_on(Sender::Open);
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
            slot.sent(Sender::Open);
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

/// Moves data for one connection. Returns (progress, finished).
#[expect(
    clippy::too_many_lines,
    reason = "one linear pass over both directions"
)]
pub(super) fn pump_one(
    id: u64,
    conn: &mut Conn,
    a: &mut Active,
    counters: &Counters,
) -> (bool, bool) {
    let mut progress = false;
    let Some(channel) = conn.channel.as_mut() else {
        return (false, false);
    };
    if conn.closing {
        if !a.can_send(Sender::Close(id)) {
            return (false, false);
        }
        return match channel.close() {
            Err(e) if is_eagain(&e) => {
                a.blocked_on(Sender::Close(id));
                (false, false)
            }
            Ok(()) | Err(_) => {
                a.sent(Sender::Close(id));
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
    while !conn.up.is_empty() && a.can_send(Sender::Write(id)) {
        let window = channel.write_window().remaining as usize;
        if window == 0 {
            // Not a half-sent packet: the server's window is full. Let libssh2 read its adjust.
            break;
        }
        let len = conn.up.len().min(window).min(MAX_WRITE);
        match channel.write(&conn.up.bytes()[..len]) {
            Ok(n) => {
                a.sent(Sender::Write(id));
                conn.up.consume(n);
                counters.to_remote.fetch_add(n as u64, Ordering::Relaxed);
                progress |= n > 0;
                if n == 0 {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                a.blocked_on(Sender::Write(id));
                break;
            }
            Err(_) => {
                a.sent(Sender::Write(id));
                conn.closing = true;
                return (true, false);
            }
        }
    }
    // Local EOF → channel EOF (half-close).
    if conn.local_eof && conn.up.is_empty() && !conn.eof_sent && a.can_send(Sender::Eof(id)) {
        match channel.send_eof() {
            Ok(()) => {
                a.sent(Sender::Eof(id));
                conn.eof_sent = true;
                progress = true;
            }
            Err(e) if is_eagain(&e) => a.blocked_on(Sender::Eof(id)),
            Err(_) => {
                a.sent(Sender::Eof(id));
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
            && a.can_send(Sender::Adjust(id))
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
                        a.sent(Sender::Adjust(id));
                        conn.pending_adjust = None;
                    }
                    Err(e) if is_eagain(&e) => {
                        // Must be retried with the same amount.
                        conn.pending_adjust = Some(adjust);
                        a.blocked_on(Sender::Adjust(id));
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

#[cfg(test)]
mod tests {
    use super::*;

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
