//! Sending and receiving one file over SCP.

use std::fs;
use std::io::{self, Read as _, Write as _};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

use crate::error::Result;

use super::job::{Job, Names, hex};

/// SCP chunk size (the channel window, not the chunk, limits SCP).
const SCP_CHUNK: usize = 1 << 20;
/// SCP download read size.
const SCP_READ_CHUNK: usize = 1 << 20;
/// Largest SCP download receive window (OpenSSH keeps 2 MiB in flight), used on long links only;
/// also a bound on what libssh2 may buffer.
const SCP_MAX_WINDOW: u32 = 32 << 20;

impl Job<'_> {
    #[expect(
        clippy::too_many_arguments,
        reason = "internal helper mirroring sftp_send"
    )]
    pub(super) fn scp_send(
        &self,
        names: &Names,
        file: &mut fs::File,
        target: &Path,
        size: u64,
        mode: u32,
        mtime: u64,
        atime: u64,
    ) -> Result<String> {
        let fail = |step, e: io::Error| self.fail(names, step, e);
        let mode = i32::try_from(mode).unwrap_or(0o644);
        let mut channel = self
            .inner
            .ssh
            .scp_send(target, mode, size, Some((mtime, atime)))
            .map_err(|e| fail("starting scp", e.into()))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0_u8; SCP_CHUNK];
        let mut sent = 0_u64;
        while sent < size {
            let n = file
                .read(&mut buf)
                .map_err(|e| self.transfer_err(names, "reading the local file", e))?;
            if n == 0 {
                return Err(self.transfer_err(
                    names,
                    "reading the local file",
                    io::Error::new(io::ErrorKind::UnexpectedEof, "file shrank while uploading"),
                ));
            }
            let n = n.min(usize::try_from(size - sent).unwrap_or(usize::MAX));
            hasher.update(&buf[..n]);
            channel
                .write_all(&buf[..n])
                .map_err(|e| fail("sending data", e))?;
            sent += n as u64;
            self.advance(n);
        }
        // The SCP protocol ends a file with a zero byte; without it `scp -t` exits with 1.
        let step = "finishing scp";
        channel.write_all(&[0]).map_err(|e| fail(step, e))?;
        channel.send_eof().map_err(|e| fail(step, e.into()))?;
        channel.wait_eof().map_err(|e| fail(step, e.into()))?;
        let mut stderr = String::new();
        let _ = channel.stderr().take(4096).read_to_string(&mut stderr);
        channel.close().map_err(|e| fail(step, e.into()))?;
        channel.wait_close().map_err(|e| fail(step, e.into()))?;
        match channel.exit_status() {
            Ok(0) => Ok(hex(&hasher.finalize())),
            Ok(code) => Err(fail(
                step,
                io::Error::other(format!("scp exited with code {code}: {}", stderr.trim())),
            )),
            Err(e) => Err(fail(step, e.into())),
        }
    }

    pub(super) fn scp_receive(
        &self,
        names: &Names,
        source: &Path,
        file: &mut fs::File,
        expected: Option<u64>,
        round_trip: Option<Duration>,
    ) -> Result<(String, u64)> {
        let fail = |step, e: io::Error| self.fail(names, step, e);
        let round_trip = if let Some(round_trip) = round_trip {
            round_trip
        } else {
            let probing = Instant::now();
            let round_trip = crate::link::probe_round_trip(&self.inner.ssh);
            if probing.elapsed() >= self.inner.options.io_timeout {
                // The probe gives up quietly; a peer that let it time out has stalled.
                return Err(self.stalled(names, "starting scp", self.inner.options.io_timeout));
            }
            round_trip
        };
        let window = crate::link::window_for_round_trip(round_trip, SCP_MAX_WINDOW);
        let (mut channel, stat) = self
            .inner
            .ssh
            .scp_recv(source)
            .map_err(|e| fail("starting scp", e.into()))?;
        let size = stat.size();
        if expected.is_some_and(|expected| expected != size) {
            return Err(self.changed(names));
        }
        let mut hasher = Sha256::new();
        let mut buf = vec![0_u8; SCP_READ_CHUNK];
        let mut got = 0_u64;
        let mut since_check = u64::MAX;
        while got < size {
            // On a long link, widen the receive window (OpenSSH keeps 2 MiB). Reading the window
            // state walks libssh2's packet list: do it every 8 MiB only.
            if let Some(target) = window
                && since_check >= u64::from(target / 4)
            {
                let remaining = channel.read_window().remaining;
                if remaining < target / 2 {
                    channel
                        .adjust_receive_window(u64::from(target - remaining), true)
                        .map_err(|e| fail("receiving data", e.into()))?;
                }
                since_check = 0;
            }
            let n = channel
                .read(&mut buf)
                .map_err(|e| fail("receiving data", e))?;
            since_check = since_check.saturating_add(n as u64);
            if n == 0 {
                return Err(fail(
                    "receiving data",
                    io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection ended before the whole file arrived",
                    ),
                ));
            }
            hasher.update(&buf[..n]);
            file.write_all(&buf[..n])
                .map_err(|e| self.transfer_err(names, "writing the local copy", e))?;
            got += n as u64;
            self.advance(n);
        }
        // Every byte is here (and is checked next); a peer stalling now must not hold us.
        let closing = channel
            .send_eof()
            .and_then(|()| channel.wait_eof())
            .and_then(|()| channel.close())
            .and_then(|()| channel.wait_close());
        if let Err(e) = closing
            && e.code() == ssh2::ErrorCode::Session(-9)
        {
            self.stalled.store(true, Ordering::Relaxed);
            self.inner.shut_down();
        }
        Ok((hex(&hasher.finalize()), size))
    }
}
