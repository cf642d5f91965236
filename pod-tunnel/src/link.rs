//! Low-level helpers for one SSH connection's socket: tuning it, `poll(2)` on it, measuring
//! the round trip and sizing receive windows from it.
//!
//! This module knows nothing of sessions, tunnels or transfers, so that all of them can use it
//! without depending on each other.

use std::io;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags};

/// Round trips shorter than this count as a short link, where libssh2's own 2 MiB receive
/// window is best: a bigger one only makes both ends queue more (OpenSSH's sshd copies its
/// output buffer around, and burns CPU, when a fast link lets it fill a big window).
const LONG_LINK: Duration = Duration::from_millis(15);

/// Sets `TCP_NODELAY` and TCP keepalives (probing every `interval`, giving up after `retries`
/// unanswered probes), and on Linux a matching `TCP_USER_TIMEOUT`.
pub(crate) fn tune_socket(stream: &TcpStream, interval: Duration, retries: u32) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let sock = socket2::SockRef::from(stream);
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(interval)
        .with_interval(interval)
        .with_retries(retries);
    sock.set_tcp_keepalive(&keepalive)?;
    #[cfg(target_os = "linux")]
    sock.set_tcp_user_timeout(Some(interval * retries))?;
    Ok(())
}

/// A libssh2 timeout in milliseconds: at least 1 (0 would mean "no timeout").
pub(crate) fn millis(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX).max(1)
}

/// Whether a libssh2 call returned `LIBSSH2_ERROR_EAGAIN` (a non-blocking call would block).
pub(crate) fn is_eagain(e: &ssh2::Error) -> bool {
    e.code() == ssh2::ErrorCode::Session(-37)
}

/// The receive window worth using on a link with this round trip: enough for about 256 MB/s,
/// at least 4 MiB, at most `max`; `None` on a short link.
pub(crate) fn window_for_round_trip(round_trip: Duration, max: u32) -> Option<u32> {
    if round_trip < LONG_LINK {
        return None;
    }
    let bytes = round_trip.as_micros().saturating_mul(256);
    Some(
        u32::try_from(bytes)
            .unwrap_or(u32::MAX)
            .clamp(4 << 20, max.max(4 << 20)),
    )
}

/// Measures the round trip on a blocking session: opening a channel costs the server next to
/// nothing. The probe channels are closed again.
pub(crate) fn probe_round_trip(ssh: &ssh2::Session) -> Duration {
    // The shortest of a few probes: a busy machine only ever makes one look longer.
    let mut shortest = Duration::MAX;
    for _ in 0..3 {
        let started = Instant::now();
        let Ok(mut channel) = ssh.channel_session() else {
            return Duration::ZERO;
        };
        shortest = shortest.min(started.elapsed());
        let _ = channel.close();
    }
    shortest
}

/// Waits (at most `timeout`) until `socket` is ready in the directions `session` is blocked on.
pub(crate) fn wait_socket(session: &ssh2::Session, socket: &TcpStream, timeout: Duration) {
    let flags = match session.block_directions() {
        ssh2::BlockDirections::Inbound => PollFlags::IN,
        ssh2::BlockDirections::Outbound => PollFlags::OUT,
        ssh2::BlockDirections::Both | ssh2::BlockDirections::None => PollFlags::IN | PollFlags::OUT,
    };
    // With no direction known, poll briefly rather than trusting readiness (libssh2#1945).
    let timeout = if session.block_directions() == ssh2::BlockDirections::None {
        timeout.min(Duration::from_millis(5))
    } else {
        timeout
    };
    let mut fds = [PollFd::new(socket, flags)];
    let _ = poll(&mut fds, timeout);
}

/// Whether `socket` can take a write right now.
pub(crate) fn socket_writable(socket: &TcpStream) -> bool {
    let mut fds = [PollFd::new(socket, PollFlags::OUT)];
    matches!(poll(&mut fds, Duration::ZERO), Ok(1)) && fds[0].revents().contains(PollFlags::OUT)
}

/// `poll(2)` with a `Duration` timeout; `EINTR` counts as "nothing happened".
pub(crate) fn poll(fds: &mut [PollFd<'_>], timeout: Duration) -> io::Result<usize> {
    let ts = rustix::event::Timespec::try_from(timeout).unwrap_or(rustix::event::Timespec {
        tv_sec: 3600,
        tv_nsec: 0,
    });
    match rustix::event::poll(fds, Some(&ts)) {
        Ok(n) => Ok(n),
        Err(rustix::io::Errno::INTR) => Ok(0),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_grow_only_on_long_links_and_stay_bounded() {
        assert_eq!(
            window_for_round_trip(Duration::from_millis(1), 16 << 20),
            None
        );
        assert_eq!(
            window_for_round_trip(Duration::from_millis(20), 16 << 20),
            Some(5_120_000)
        );
        assert_eq!(
            window_for_round_trip(Duration::from_millis(50), 16 << 20),
            Some(12_800_000)
        );
        assert_eq!(
            window_for_round_trip(Duration::from_secs(2), 16 << 20),
            Some(16 << 20)
        );
    }

    #[test]
    fn libssh2_timeouts_are_never_zero() {
        assert_eq!(millis(Duration::ZERO), 1);
        assert_eq!(millis(Duration::from_millis(1500)), 1500);
        assert_eq!(millis(Duration::from_secs(u64::MAX)), u32::MAX);
    }
}
