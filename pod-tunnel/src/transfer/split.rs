//! Split transfers: a big SFTP file moved in chunks over the session plus extra connections.

use std::fmt::Write as _;
use std::fs;
use std::io::{self, Read as _, Seek as _, Write as _};
use std::os::unix::fs::{FileExt as _, OpenOptionsExt as _};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use sha2::{Digest as _, Sha256};

use crate::error::Result;
use crate::session::Session;

use super::job::{ChunkError, Job, Names, hex};
use super::sftp::{Attributes, SFTP_READ_CHUNK};
use super::staging::temp_sibling;
use super::verify::STREAMED_LINE_MAX;

/// SFTP uploads at least this big are written over several connections at once, each taking
/// chunks of the file: sshd's per-channel window (2 MiB) otherwise caps an upload at one window
/// per round trip.
pub(super) const SPLIT_MIN: u64 = 64 << 20;
/// The chunk one connection writes at a time (at its offset) in a split upload; the streamed
/// check is told one chunk a line, so this is its [`STREAMED_LINE_MAX`].
const SPLIT_CHUNK: u64 = STREAMED_LINE_MAX;
/// One write call of a split upload: libssh2 keeps its requests pipelined within a call (the
/// whole chunk), and waits for the last acknowledgement at its end.
const SPLIT_BUFFER: usize = 4 << 20;
/// Extra connections of a split transfer, besides the session's own.
const SPLIT_HELPERS: usize = 3;
/// The chunk one connection reads at a time in a split download (SFTP downloads of at least
/// [`SPLIT_MIN`]): large, since the pipeline of read requests runs dry at each chunk's end.
const SPLIT_READ_CHUNK: u64 = 8 << 20;
/// Smallest read call near the end of a chunk.
const SFTP_MIN_READ: u64 = 30_000;

/// The work of a split transfer: chunks of a file handed out in order to this session and its
/// extra connections, and the extra connections themselves (so that a failure stops them all at
/// once).
struct Split {
    size: u64,
    chunk: u64,
    chunks: u64,
    next: AtomicU64,
    /// Chunks an extra connection gave back when it failed; handed out first.
    returned: Mutex<Vec<u64>>,
    stop: AtomicBool,
    helpers: Mutex<Vec<Session>>,
    /// Chunks completely written (downloads: locally; uploads: acknowledged by the server).
    complete: Mutex<Vec<bool>>,
    /// Signals `complete` and `opened` changes.
    completed: Condvar,
    /// Uploads: whether this session created the file (`None` until it tried).
    opened: Mutex<Option<bool>>,
    /// Whether an extra connection failed midway (its chunk was sent again).
    lost: AtomicBool,
}

impl Split {
    fn new(size: u64, chunk: u64) -> Self {
        let chunks = size.div_ceil(chunk);
        Self {
            size,
            chunk,
            chunks,
            next: AtomicU64::new(0),
            returned: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
            helpers: Mutex::new(Vec::new()),
            complete: Mutex::new(vec![false; usize::try_from(chunks).unwrap_or(0)]),
            completed: Condvar::new(),
            opened: Mutex::new(None),
            lost: AtomicBool::new(false),
        }
    }

    /// The next chunk to transfer, if any is left.
    pub(super) fn take(&self) -> Option<u64> {
        let back = lock(&self.returned).pop();
        back.or_else(|| {
            Some(self.next.fetch_add(1, Ordering::Relaxed)).filter(|&k| k < self.chunks)
        })
    }

    fn give_back(&self, k: u64) {
        self.lost.store(true, Ordering::Relaxed);
        lock(&self.returned).push(k);
    }

    /// An extra connection's share of the work: `transfer` each chunk it takes (counting its
    /// progress in the second argument) until none is left or the transfer stopped. On a
    /// failure the connection is shut first, so dropping its handle cannot wait on a stalled
    /// peer; the chunk's partial progress is uncounted and the chunk given back for another
    /// connection to redo.
    fn work_as_helper<E>(
        &self,
        job: &Job<'_>,
        session: &Session,
        mut transfer: impl FnMut(u64, &mut u64) -> std::result::Result<(), E>,
    ) {
        while !self.stopped() {
            let Some(k) = self.take() else { break };
            let mut written = 0;
            if transfer(k, &mut written).is_err() {
                session.inner.shut_down();
                job.done.fetch_sub(written, Ordering::Relaxed);
                self.give_back(k);
                break;
            }
        }
    }

    fn set_opened(&self, opened: bool) {
        *lock(&self.opened) = Some(opened);
        self.completed.notify_all();
    }

    /// Waits until this session tried to create the file; whether it did.
    fn wait_opened(&self) -> bool {
        let mut opened = lock(&self.opened);
        loop {
            if self.stopped() {
                return false;
            }
            if let Some(opened) = *opened {
                return opened;
            }
            // Bounded by this session's own steps, each within the I/O timeout.
            opened = self
                .completed
                .wait_timeout(opened, Duration::from_millis(200))
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
    }

    /// Byte range of chunk `k`.
    fn range(&self, k: u64) -> (u64, u64) {
        let start = k * self.chunk;
        (start, (start + self.chunk).min(self.size))
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Stops the extra connections at once: their sockets are shut down, so that whatever they
    /// wait for fails now instead of after the I/O timeout.
    fn abort(&self) {
        self.stop.store(true, Ordering::Relaxed);
        for session in lock(&self.helpers).iter() {
            session.inner.shut_down();
        }
        self.completed.notify_all();
    }

    fn mark_complete(&self, k: u64) {
        let mut complete = lock(&self.complete);
        if let Some(done) = usize::try_from(k).ok().and_then(|k| complete.get_mut(k)) {
            *done = true;
        }
        drop(complete);
        self.completed.notify_all();
    }

    /// Waits until chunk `k` is complete; false when the transfer stopped first.
    fn wait_complete(&self, k: u64) -> bool {
        let Ok(index) = usize::try_from(k) else {
            return false;
        };
        let mut complete = lock(&self.complete);
        loop {
            if self.stopped() {
                return false;
            }
            if complete.get(index).copied().unwrap_or(false) {
                return true;
            }
            // Bounded by the transfer itself: it completes the chunk or stops.
            complete = self
                .completed
                .wait_timeout(complete, Duration::from_millis(200))
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
    }

    /// Connects one extra connection (same settings as `job`'s session), registered so that
    /// [`Split::abort`] reaches it; `None` when that fails or the transfer already stopped.
    fn connect(&self, job: &Job<'_>) -> Option<Session> {
        if self.stopped() {
            return None;
        }
        let options = &job.inner.options;
        let link = match options.connect_blocking(&job.inner.endpoint) {
            Ok(link) => link,
            Err(e) => {
                tracing::debug!(error = %e, "an extra transfer connection failed to connect");
                return None;
            }
        };
        link.session.set_blocking(true);
        let session = Session::from_link(link, Arc::clone(options));
        let mut helpers = lock(&self.helpers);
        helpers.push(session.clone());
        // `abort` sets `stop` before it takes the lock: either it saw this session, or this
        // sees `stop`.
        if self.stopped() {
            session.inner.shut_down();
            return None;
        }
        Some(session)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Says goodbye on an extra connection (bounded by a short timeout) and shuts its socket.
fn hang_up(session: &Session) {
    let ssh = &session.inner.ssh;
    ssh.set_timeout(2000);
    let _ = ssh.disconnect(Some(ssh2::DisconnectCode::ByApplication), "done", None);
    session.inner.shut_down();
}

impl Job<'_> {
    /// Writes a big file in chunks at their offsets, over this session plus up to
    /// [`SPLIT_HELPERS`] extra connections (each with its own channel window; they connect while
    /// this session creates the file), while another thread hashes the file in order and the
    /// server hashes what was acknowledged, in order. A helper that cannot connect, or fails
    /// midway, hands its chunk back; this session writes whatever is left, so the result never
    /// depends on them.
    #[expect(
        clippy::too_many_arguments,
        reason = "internal helper; the arguments are the transfer's parts"
    )]
    pub(super) fn sftp_send_split(
        &self,
        names: &Names,
        sftp: Option<&ssh2::Sftp>,
        file: &fs::File,
        tmp: &Path,
        size: u64,
        attributes: &Attributes,
        verify: &mut ssh2::Channel,
    ) -> Result<(String, bool)> {
        let split = Split::new(size, SPLIT_CHUNK);
        std::thread::scope(|scope| {
            let helpers: Vec<_> = (0..SPLIT_HELPERS)
                .map(|_| scope.spawn(|| self.upload_helper(&split, file, tmp)))
                .collect();
            let hasher = scope.spawn(|| hash_range(file, size, &split.stop));
            let mut announced = 0;
            let mut buf = vec![0_u8; SPLIT_BUFFER];
            let mut mine = |remote: &mut ssh2::File, verify: &mut ssh2::Channel| -> Result<()> {
                while let Some(k) = split.take() {
                    let mut written = 0;
                    self.write_chunk(remote, file, &split, k, &mut buf, &mut written)
                        .map_err(|e| self.chunk_fail(names, e))?;
                    self.announce(names, verify, &split, &mut announced)?;
                }
                // Chunks the helpers completed since.
                self.announce(names, verify, &split, &mut announced)
            };
            let mut own = None;
            let opened = match sftp {
                Some(sftp) => Ok(sftp),
                None => self.sftp(names).map(|sftp| &*own.insert(sftp)),
            }
            .and_then(|sftp| self.create_temp(names, sftp, tmp));
            split.set_opened(opened.is_ok());
            let mut result = opened.and_then(|mut remote| {
                self.tell(names, verify, "go\n")?;
                mine(&mut remote, verify).map(|()| remote)
            });
            if result.is_err() {
                split.abort();
            }
            for helper in helpers {
                let _ = helper.join();
            }
            // Chunks a helper gave back after this session ran out of work.
            result = result.and_then(|mut remote| {
                mine(&mut remote, verify)?;
                Ok(remote)
            });
            if result.is_err() {
                split.abort();
            }
            let hash = hasher
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("hashing thread panicked")));
            let remote = result?;
            let hash = hash.map_err(|e| self.transfer_err(names, "reading the local file", e))?;
            self.set_attributes(names, remote, attributes)?;
            drop(own);
            Ok((hash, split.lost.load(Ordering::Relaxed)))
        })
    }

    /// Tells the streamed verification the byte counts of the chunks complete since the last
    /// call, in order (it hashes them in order).
    fn announce(
        &self,
        names: &Names,
        verify: &mut ssh2::Channel,
        split: &Split,
        announced: &mut u64,
    ) -> Result<()> {
        let mut lines = String::new();
        {
            let complete = lock(&split.complete);
            while let Some(true) = usize::try_from(*announced)
                .ok()
                .and_then(|k| complete.get(k).copied())
            {
                let (start, end) = split.range(*announced);
                let _ = writeln!(lines, "{}", end - start);
                *announced += 1;
            }
        }
        if lines.is_empty() {
            return Ok(());
        }
        self.tell(names, verify, &lines)
    }

    /// One extra connection of a split upload: connects at once, opens the file once this
    /// session created it, and writes chunks until none is left.
    fn upload_helper(&self, split: &Split, file: &fs::File, tmp: &Path) {
        let Some(session) = split.connect(self) else {
            return;
        };
        let mut opened = session.inner.ssh.sftp().ok();
        let mut handle = None;
        if let Some(sftp) = &opened
            && split.wait_opened()
        {
            handle = sftp
                .open_mode(tmp, ssh2::OpenFlags::WRITE, 0o600, ssh2::OpenType::File)
                .ok();
        }
        if let Some(handle) = &mut handle {
            let mut buf = vec![0_u8; SPLIT_BUFFER];
            split.work_as_helper(self, &session, |k, written| {
                self.write_chunk(handle, file, split, k, &mut buf, written)
            });
        }
        // Every write was acknowledged: hang up without closing the handle politely.
        hang_up(&session);
        drop(handle);
        opened.take();
    }

    /// Writes chunk `k` of the file at its offset, counting progress in `written` too; marks
    /// the chunk complete once the server acknowledged all of it.
    fn write_chunk(
        &self,
        remote: &mut ssh2::File,
        file: &fs::File,
        split: &Split,
        k: u64,
        buf: &mut [u8],
        written: &mut u64,
    ) -> std::result::Result<(), ChunkError> {
        let (start, end) = split.range(k);
        remote
            .seek(io::SeekFrom::Start(start))
            .map_err(ChunkError::Remote)?;
        let mut offset = start;
        while offset < end {
            let n = usize::try_from(end - offset)
                .unwrap_or(usize::MAX)
                .min(buf.len());
            file.read_exact_at(&mut buf[..n], offset)
                .map_err(ChunkError::Local)?;
            remote.write_all(&buf[..n]).map_err(ChunkError::Remote)?;
            self.advance(n);
            *written += n as u64;
            offset += n as u64;
        }
        split.mark_complete(k);
        Ok(())
    }

    /// Downloads a big file over SFTP in chunks read at their offsets, over this session's
    /// `sftp` plus up to [`SPLIT_HELPERS`] extra connections: each has its own channel window and
    /// its own thread decrypting. Chunks are written at their offsets into the local temporary
    /// file, which another thread hashes in order behind the writers, while the server works out
    /// its checksum. A helper that cannot connect, or fails midway, hands its chunk back, so the
    /// result never depends on them.
    pub(super) fn download_split(
        &self,
        names: &Names,
        sftp: &ssh2::Sftp,
        remote: &Path,
        local: &Path,
        size: u64,
    ) -> Result<String> {
        let tmp = temp_sibling(local);
        let mut options = fs::OpenOptions::new();
        options.write(true).read(true).create_new(true).mode(0o600);
        let file = options
            .open(&tmp)
            .map_err(|e| self.transfer_err(names, "creating the local temporary file", e))?;
        let split = Split::new(size, SPLIT_READ_CHUNK);
        let (received, pending) = std::thread::scope(|scope| {
            let hasher = scope.spawn(|| hash_behind(&file, &split));
            let helpers: Vec<_> = (0..SPLIT_HELPERS)
                .map(|_| scope.spawn(|| self.download_helper(&split, &file, remote)))
                .collect();
            let mut buf = vec![0_u8; SFTP_READ_CHUNK];
            let mut source = None;
            let mut mine = || -> Result<()> {
                while let Some(k) = split.take() {
                    let source =
                        match &mut source {
                            Some(source) => source,
                            None => source.insert(sftp.open(remote).map_err(|e| {
                                self.fail(names, "opening the remote file", e.into())
                            })?),
                        };
                    let mut written = 0;
                    self.read_chunk(source, &file, &split, k, &mut buf, &mut written)
                        .map_err(|e| self.chunk_fail(names, e))?;
                }
                Ok(())
            };
            // The server works out the source's facts and checksum while the data moves.
            let mut pending = None;
            let mut result = self.start_facts(names, remote, size).and_then(|started| {
                pending = Some(started);
                mine()
            });
            if result.is_err() {
                split.abort();
            }
            for helper in helpers {
                let _ = helper.join();
            }
            if result.is_ok() {
                // Chunks a helper gave back after this session ran out of work.
                result = mine();
            }
            if result.is_err() {
                split.abort();
            }
            let hash = hasher
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("hashing thread panicked")));
            drop(source);
            let received = result.and_then(|()| {
                hash.map_err(|e| self.transfer_err(names, "reading the local copy", e))
            });
            (received, pending)
        });
        let finish = match (received, pending) {
            (Ok(hash), Some(pending)) => self.collect_facts(names, pending).and_then(|facts| {
                if facts.size != size {
                    return Err(self.changed(names));
                }
                self.finish_download(names, &file, &tmp, local, hash, &facts)
            }),
            (received, pending) => {
                if let Some(pending) = pending {
                    self.discard(pending.channel);
                }
                Err(received.err().unwrap_or_else(|| {
                    self.transfer_err(
                        names,
                        "reading the remote file's size and checksum",
                        io::Error::other("the checksum was never started"),
                    )
                }))
            }
        };
        if finish.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        finish
    }

    /// One extra connection of a split download: reads chunks until none is left.
    fn download_helper(&self, split: &Split, file: &fs::File, remote: &Path) {
        let Some(session) = split.connect(self) else {
            return;
        };
        let mut opened = session.inner.ssh.sftp().and_then(|sftp| {
            let handle = sftp.open(remote)?;
            Ok((sftp, handle))
        });
        if let Ok((_, handle)) = &mut opened {
            let mut buf = vec![0_u8; SFTP_READ_CHUNK];
            split.work_as_helper(self, &session, |k, written| {
                self.read_chunk(handle, file, split, k, &mut buf, written)
            });
        }
        // Hang up before the handle and channel are dropped: closing them politely would cost
        // round trips for nothing.
        hang_up(&session);
        drop(opened);
    }

    /// Reads chunk `k` of the remote file into the same range of `file`, counting progress in
    /// `written` too; marks the chunk complete.
    fn read_chunk(
        &self,
        remote: &mut ssh2::File,
        file: &fs::File,
        split: &Split,
        k: u64,
        buf: &mut [u8],
        written: &mut u64,
    ) -> std::result::Result<(), ChunkError> {
        let (start, end) = split.range(k);
        remote
            .seek(io::SeekFrom::Start(start))
            .map_err(ChunkError::Remote)?;
        let mut offset = start;
        while offset < end {
            // libssh2 asks for up to four times the buffer ahead; keep that inside the chunk,
            // since what it asks beyond would be sent anyway and dropped at the next seek.
            let left = end - offset;
            let want = usize::try_from((left / 4).max(SFTP_MIN_READ).min(left))
                .unwrap_or(usize::MAX)
                .min(buf.len());
            let n = remote.read(&mut buf[..want]).map_err(ChunkError::Remote)?;
            if n == 0 {
                return Err(ChunkError::Remote(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the remote file shrank while downloading",
                )));
            }
            file.write_all_at(&buf[..n], offset)
                .map_err(ChunkError::Local)?;
            self.advance(n);
            *written += n as u64;
            offset += n as u64;
        }
        split.mark_complete(k);
        Ok(())
    }
}

/// SHA-256 (hex) of the first `size` bytes of `file`, read at offsets (the file position is
/// left alone); gives up when `stop` is set.
fn hash_range(file: &fs::File, size: u64, stop: &AtomicBool) -> io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0_u8; 1 << 20];
    let mut offset = 0;
    while offset < size {
        if stop.load(Ordering::Relaxed) {
            return Err(io::Error::other("upload abandoned"));
        }
        let n = usize::try_from(size - offset)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        file.read_exact_at(&mut buf[..n], offset)?;
        hasher.update(&buf[..n]);
        offset += n as u64;
    }
    Ok(hex(&hasher.finalize()))
}

/// SHA-256 (hex) of a split download's local file, reading each chunk once it is complete.
fn hash_behind(file: &fs::File, split: &Split) -> io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0_u8; 1 << 20];
    for k in 0..split.chunks {
        if !split.wait_complete(k) {
            return Err(io::Error::other("download abandoned"));
        }
        let (mut offset, end) = split.range(k);
        while offset < end {
            let n = usize::try_from(end - offset)
                .unwrap_or(usize::MAX)
                .min(buf.len());
            file.read_exact_at(&mut buf[..n], offset)?;
            hasher.update(&buf[..n]);
            offset += n as u64;
        }
    }
    Ok(hex(&hasher.finalize()))
}
