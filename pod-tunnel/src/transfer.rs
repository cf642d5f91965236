//! File and directory transfer over SCP or SFTP, atomic and verified.
//!
//! Every file is written under a temporary name next to its destination (`.NAME.rpb-part-…`,
//! where NAME is the destination's name reduced to ASCII letters, digits, `.`, `_` and `-`, plus a
//! hash of the real name when anything was dropped),
//! checked by SHA-256 (the bytes we sent or received against `sha256sum` on the server), and only
//! then renamed into place (`mv -f` on the server, `rename(2)` locally). An interrupted or corrupt
//! transfer therefore never replaces a good file with a half one.
//!
//! SCP carries file names in its command line and in its protocol header, which cannot hold every
//! byte (a newline, a tab). So the SCP leg only ever sees names we chose: uploads write the
//! temporary file (a safe name) and rename it with a quoted shell command; a remote source or
//! directory with any other byte is reached through a symbolic link under a safe name in a private
//! `mktemp -d` directory on the server, removed afterwards.
//!
//! The server-side checks run while the data moves: a download's `stat` and `sha256sum` start
//! on a channel of their own before the data and are read back after it; an SFTP upload's check
//! script hashes the temporary file in order as it is told which bytes the server acknowledged,
//! and renames it once told the local hash. SFTP files of [`SPLIT_MIN`] bytes or more move in
//! chunks over the session plus up to [`SPLIT_HELPERS`] extra connections (see [`Split`]).
//!
//! After a failure the remote temporary file is removed over the same connection if it still
//! works, else over a fresh one, within a few seconds; what could not be removed is named in the
//! error. A transfer that stalls for the I/O timeout fails after about that long: its connection
//! is shut down at once, so that nothing else waits out the timeout again.

use std::fmt::{self, Write as _};
use std::fs;
use std::io::{self, Read as _, Seek as _, Write as _};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::{FileExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sha2::{Digest as _, Sha256};

use crate::connect::Options;
use crate::error::{Error, Result};
use crate::link::millis;
use crate::output::ExecOutput;
use crate::session::{Inner, Session};
use crate::shell;

/// SCP chunk size (the channel window, not the chunk, limits SCP).
const SCP_CHUNK: usize = 1 << 20;
/// SFTP write size: a multiple of libssh2's 30 000-byte packets, so one call keeps 64 requests
/// in flight.
const SFTP_WRITE_CHUNK: usize = 30_000 * 64;
/// SFTP uploads at least this big are written over several connections at once, each taking
/// chunks of the file: sshd's per-channel window (2 MiB) otherwise caps an upload at one window
/// per round trip.
const SPLIT_MIN: u64 = 64 << 20;
/// The chunk one connection writes at a time (at its offset) in a split upload.
const SPLIT_CHUNK: u64 = 4 << 20;
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
/// SFTP read size: libssh2 reads ahead four times this (capped at 8 MiB).
const SFTP_READ_CHUNK: usize = 2 << 20;
/// SCP download read size.
const SCP_READ_CHUNK: usize = 1 << 20;
/// Checksum speed assumed when bounding the server-side `sha256sum` (any disk and CPU beat it).
const CHECKSUM_BYTES_PER_SEC: u64 = 20 << 20;
/// Where private staging directories for SCP go on the server (`mktemp -d` template).
const STAGE_TEMPLATE: &str = "/tmp/rpb-scp.XXXXXXXXXX";
/// Longest part of the destination's name kept in a temporary name (`NAME_MAX` is 255).
const TEMP_STEM_MAX: usize = 80;
/// Temporary files of earlier, failed transfers to the same destination older than this are
/// removed after a successful upload (younger ones may belong to a transfer still running).
const STALE_MINUTES: u32 = 30;
/// Largest SCP download receive window (OpenSSH keeps 2 MiB in flight), used on long links only;
/// also a bound on what libssh2 may buffer.
const SCP_MAX_WINDOW: u32 = 32 << 20;

/// Which file-transfer protocol to use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Protocol {
    /// SFTP (the `sftp` subsystem). The default.
    #[default]
    Sftp,
    /// SCP (runs `scp -t` / `scp -f` on the server, as the manual workflow does).
    Scp,
}

impl std::str::FromStr for Protocol {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "sftp" => Ok(Self::Sftp),
            "scp" => Ok(Self::Scp),
            other => Err(Error::Config {
                reason: format!("unknown transfer protocol {other:?}; use scp or sftp"),
            }),
        }
    }
}

/// Bytes done out of the total, reported as a transfer advances.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Progress {
    /// Bytes transferred so far (all files).
    pub done: u64,
    /// Bytes to transfer in total (all files).
    pub total: u64,
}

/// What a finished transfer did.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct TransferReport {
    /// Files transferred.
    pub files: u64,
    /// Bytes transferred.
    pub bytes: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// SHA-256 (hex) of the file, for a single-file transfer.
    pub sha256: Option<String>,
}

type ProgressFn = Arc<dyn Fn(Progress) + Send + Sync>;

/// An upload or download being configured; made by [`Session::upload`] / [`Session::download`],
/// run by [`Transfer::send`].
#[must_use]
pub struct Transfer {
    session: Session,
    upload: bool,
    local: PathBuf,
    remote: PathBuf,
    protocol: Protocol,
    progress: Option<ProgressFn>,
}

impl fmt::Debug for Transfer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transfer")
            .field("upload", &self.upload)
            .field("local", &self.local)
            .field("remote", &self.remote)
            .field("protocol", &self.protocol)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Uploads a local file or directory tree to `remote` (see [`Transfer`]).
    pub fn upload(&self, local: impl AsRef<Path>, remote: impl AsRef<Path>) -> Transfer {
        Transfer::new(self.clone(), true, local.as_ref(), remote.as_ref())
    }

    /// Downloads a remote file or directory tree to `local` (see [`Transfer`]).
    pub fn download(&self, remote: impl AsRef<Path>, local: impl AsRef<Path>) -> Transfer {
        Transfer::new(self.clone(), false, local.as_ref(), remote.as_ref())
    }
}

impl Transfer {
    fn new(session: Session, upload: bool, local: &Path, remote: &Path) -> Self {
        Self {
            session,
            upload,
            local: local.to_owned(),
            remote: remote.to_owned(),
            protocol: Protocol::default(),
            progress: None,
        }
    }

    /// The protocol. Default: [`Protocol::Sftp`].
    pub fn protocol(mut self, protocol: Protocol) -> Self {
        self.protocol = protocol;
        self
    }

    /// Calls `report` as bytes are transferred (on a blocking thread, about every MiB).
    pub fn progress(mut self, report: impl Fn(Progress) + Send + Sync + 'static) -> Self {
        self.progress = Some(Arc::new(report));
        self
    }

    /// Runs the transfer. A directory is transferred as a tree (regular files and directories;
    /// symbolic links and special files are skipped). Mode and modification time are preserved.
    ///
    /// # Errors
    /// [`Error::LocalIo`] when the local source cannot be read before the transfer starts;
    /// [`Error::Transfer`] when a step fails (including a connection lost midway);
    /// [`Error::TransferStalled`] when nothing moved for the I/O timeout (the session is closed
    /// then: connect again); [`Error::ChecksumMismatch`] when verification fails. Each names the
    /// source and destination you gave. In every case the destination is left as it was, and
    /// temporary files that could not be removed are named in the error.
    pub async fn send(self) -> Result<TransferReport> {
        let Self {
            session,
            upload,
            local,
            remote,
            protocol,
            progress,
        } = self;
        session
            .run_blocking(move |inner| {
                let started = Instant::now();
                let mut job = Job {
                    inner,
                    protocol,
                    progress,
                    done: AtomicU64::new(0),
                    total: 0,
                    stalled: AtomicBool::new(false),
                };
                let (files, sha256) = if upload {
                    job.upload(&local, &remote)?
                } else {
                    job.download(&remote, &local)?
                };
                Ok(TransferReport {
                    files,
                    bytes: job.done.load(Ordering::Relaxed),
                    elapsed: started.elapsed(),
                    sha256,
                })
            })
            .await
    }
}

struct Job<'a> {
    inner: &'a Inner,
    protocol: Protocol,
    progress: Option<ProgressFn>,
    done: AtomicU64,
    total: u64,
    /// Set once a step timed out: the connection is shut down and must not be used again.
    stalled: AtomicBool,
}

/// The source and destination of one file's transfer, as the caller gave them, for messages.
struct Names {
    action: &'static str,
    from: Box<str>,
    to: Box<str>,
}

impl Names {
    fn upload(local: &Path, remote: &Path) -> Self {
        Self {
            action: "upload",
            from: shown(local).into(),
            to: shown(remote).into(),
        }
    }

    fn download(remote: &Path, local: &Path) -> Self {
        Self {
            action: "download",
            from: shown(remote).into(),
            to: shown(local).into(),
        }
    }
}

/// Why one chunk of a split transfer failed.
enum ChunkError {
    Local(io::Error),
    Remote(io::Error),
}

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
    fn take(&self) -> Option<u64> {
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

fn local_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> Error + use<> {
    let path = path.to_owned();
    move |source| Error::LocalIo {
        action,
        path,
        source,
    }
}

/// A path for messages: lossy UTF-8 with control characters escaped, so that a newline in a
/// file name cannot break (or forge) a line of a log.
fn shown(path: &Path) -> String {
    let text = path.to_string_lossy();
    if !text.chars().any(char::is_control) {
        return text.into_owned();
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn is_safe_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"._-".contains(&b)
}

/// Whether SCP (libssh2's quoting of the `scp -t/-f` command line, and the protocol header) can
/// carry `path` as it is: only ASCII letters, digits and `._-/+,@`, and no leading dash.
fn scp_safe(path: &Path) -> bool {
    let bytes = path.as_os_str().as_bytes();
    bytes.first().is_some_and(|&b| b != b'-')
        && bytes
            .iter()
            .all(|&b| is_safe_byte(b) || b"/+,@".contains(&b))
}

/// The destination's name as it appears in temporary names: itself when it is short and made of
/// ASCII letters, digits, `.`, `_` and `-`; otherwise those bytes kept (others as `_`), cut short,
/// and 8 hex digits of its SHA-256, so the same destination always gets the same stem.
fn temp_stem(name: &[u8]) -> String {
    if !name.is_empty() && name.len() <= TEMP_STEM_MAX && name.iter().all(|&b| is_safe_byte(b)) {
        return name.iter().map(|&b| char::from(b)).collect();
    }
    let mut stem: String = name
        .iter()
        .take(TEMP_STEM_MAX - 9)
        .map(|&b| if is_safe_byte(b) { char::from(b) } else { '_' })
        .collect();
    stem.push('-');
    stem.push_str(&hex(&Sha256::digest(name)[..4]));
    stem
}

/// `.STEM.rpb-part-UNIQUE` next to `path` (UNIQUE: hex digits and dashes only).
fn temp_sibling(path: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .map_or(&b"file"[..], std::ffi::OsStr::as_bytes);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    path.with_file_name(format!(
        ".{}.rpb-part-{:x}-{:x}-{:x}",
        temp_stem(name),
        std::process::id(),
        nanos,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ))
}

/// The directory holding `path` as a shell word's value (`.` for a bare name).
fn parent_of(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

fn hex(digest: &[u8]) -> String {
    use std::fmt::Write as _;
    digest.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn unix_secs(time: io::Result<SystemTime>) -> u64 {
    time.ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs())
}

/// How long removing temporary files after a failure may take: half the I/O timeout, within
/// 2 to 5 seconds.
fn cleanup_budget(io_timeout: Duration) -> Duration {
    (io_timeout / 2).clamp(Duration::from_secs(2), Duration::from_secs(5))
}

/// A shell script removing `files` (`rm -f`) and `dirs` (`rm -rf`); exits 0 when all are gone.
fn removal_script(files: &[&Path], dirs: &[&Path]) -> String {
    let mut script = String::from("r=0");
    for (paths, command) in [(files, "rm -f"), (dirs, "rm -rf")] {
        for path in paths {
            let _ = write!(
                script,
                "; {}; {command} -- \"$p\" || r=1",
                shell::assign("p", path)
            );
        }
    }
    script.push_str("; exit $r");
    script
}

/// What to remove on the server after a failure.
#[derive(Clone)]
enum Removal {
    /// Files, removed over SFTP: no shell is started (a login shell may be slow to start, or
    /// held up by a frozen one).
    Files(Vec<PathBuf>),
    /// A [`removal_script`].
    Script(String),
}

impl Removal {
    /// Removes over `inner` (its timeout already set); whether everything is gone.
    fn run(&self, inner: &Inner, within: Duration) -> Result<bool> {
        match self {
            Self::Files(files) => {
                let failed = |e: ssh2::Error| {
                    let source = io::Error::from(e);
                    if source.kind() == io::ErrorKind::TimedOut {
                        Error::ExecTimeout {
                            endpoint: inner.endpoint.to_string(),
                            timeout: within,
                        }
                    } else {
                        Error::Exec {
                            endpoint: inner.endpoint.to_string(),
                            source,
                        }
                    }
                };
                let sftp = inner.ssh.sftp().map_err(failed)?;
                for file in files {
                    match sftp.unlink(file) {
                        // Gone, or already gone (LIBSSH2_FX_NO_SUCH_FILE), like `rm -f`.
                        Ok(()) => {}
                        Err(e) if e.code() == ssh2::ErrorCode::SFTP(2) => {}
                        Err(e) => return Err(failed(e)),
                    }
                }
                Ok(true)
            }
            Self::Script(script) => inner
                .run_bounded(script, within)
                .map(|out| out.status.success()),
        }
    }
}

/// Adds `left` to the leftovers named by a transfer error.
fn with_leftovers(mut error: Error, left: Vec<String>) -> Error {
    if let Error::Transfer { leftovers, .. }
    | Error::TransferStalled { leftovers, .. }
    | Error::ChecksumMismatch { leftovers, .. } = &mut error
    {
        leftovers.extend(left);
    } else if !left.is_empty() {
        tracing::warn!(?left, "temporary files may remain on the server");
    }
    error
}

impl Job<'_> {
    fn endpoint(&self) -> Box<str> {
        self.inner.endpoint.to_string().into()
    }

    /// A failed step, without looking at why.
    fn transfer_err(&self, names: &Names, step: &'static str, source: io::Error) -> Error {
        Error::Transfer {
            action: names.action,
            from: names.from.clone(),
            to: names.to.clone(),
            endpoint: self.endpoint(),
            step,
            leftovers: Vec::new(),
            source,
        }
    }

    /// A failed remote step. A timeout means the peer stalled: the connection is shut down at
    /// once, so that dropping channels and handles (which libssh2 does politely, waiting for the
    /// peer) and the cleanup do not each wait out the timeout again.
    fn fail(&self, names: &Names, step: &'static str, source: io::Error) -> Error {
        if source.kind() == io::ErrorKind::TimedOut {
            self.stalled(names, step, self.inner.options.io_timeout)
        } else {
            self.transfer_err(names, step, source)
        }
    }

    fn stalled(&self, names: &Names, step: &'static str, timeout: Duration) -> Error {
        self.stalled.store(true, Ordering::Relaxed);
        self.inner.shut_down();
        Error::TransferStalled {
            action: names.action,
            from: names.from.clone(),
            to: names.to.clone(),
            endpoint: self.endpoint(),
            step,
            timeout,
            leftovers: Vec::new(),
        }
    }

    /// A failed helper command (checksum, rename).
    fn exec_fail(&self, names: &Names, step: &'static str, error: Error) -> Error {
        match error {
            Error::Exec { source, .. } => self.fail(names, step, source),
            Error::ExecTimeout { timeout, .. } => self.stalled(names, step, timeout),
            other => other,
        }
    }

    fn chunk_fail(&self, names: &Names, error: ChunkError) -> Error {
        let upload = names.action == "upload";
        match error {
            ChunkError::Local(e) if upload => self.transfer_err(names, "reading the local file", e),
            ChunkError::Local(e) => self.transfer_err(names, "writing the local copy", e),
            ChunkError::Remote(e) if upload => self.fail(names, "sending data", e),
            ChunkError::Remote(e) => self.fail(names, "receiving data", e),
        }
    }

    /// Time allowed for a server-side `sha256sum` of `size` bytes (plus the round trip).
    fn checksum_time(&self, size: u64) -> Duration {
        self.inner.options.io_timeout + Duration::from_secs(size / CHECKSUM_BYTES_PER_SEC)
    }

    fn advance(&self, n: usize) {
        let done = self.done.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
        if let Some(report) = &self.progress {
            report(Progress {
                done,
                total: self.total,
            });
        }
    }

    fn sftp(&self, names: &Names) -> Result<ssh2::Sftp> {
        self.inner
            .ssh
            .sftp()
            .map_err(|e| self.fail(names, "starting sftp", e.into()))
    }

    // ----- cleanup ------------------------------------------------------------------------

    /// After a failure: removes the remote temporary `files` and staging `dirs`, and names in
    /// `error` whatever could not be confirmed removed. Never replaces `error`.
    fn clean_up(&self, error: Error, files: &[&Path], dirs: &[&Path]) -> Error {
        if files.is_empty() && dirs.is_empty() {
            return error;
        }
        let removal = if dirs.is_empty() {
            Removal::Files(files.iter().map(|f| f.to_path_buf()).collect())
        } else {
            Removal::Script(removal_script(files, dirs))
        };
        if self.remove_remote(&removal) {
            return error;
        }
        let left = files.iter().chain(dirs).map(|p| shown(p)).collect();
        with_leftovers(error, left)
    }

    /// Removes remote files or directories over this session if it still works, else over a
    /// fresh connection, within [`cleanup_budget`] in all. Whether it is known to have succeeded.
    fn remove_remote(&self, removal: &Removal) -> bool {
        let io_timeout = self.inner.options.io_timeout;
        let budget = cleanup_budget(io_timeout);
        let deadline = Instant::now() + budget;
        if !self.stalled.load(Ordering::Relaxed) {
            // A cut connection fails here at once; a live one answers in a few round trips.
            let own = budget / 2;
            self.inner.ssh.set_timeout(millis(own));
            let ran = removal.run(self.inner, own);
            self.inner.ssh.set_timeout(millis(io_timeout));
            match ran {
                Ok(removed) => return removed,
                Err(Error::ExecTimeout { .. }) => {
                    self.stalled.store(true, Ordering::Relaxed);
                    self.inner.shut_down();
                }
                Err(e) => tracing::debug!(error = %e, "cleanup over the same session failed"),
            }
        }
        let within = deadline.saturating_duration_since(Instant::now());
        self.remove_over_fresh_connection(removal, within)
    }

    /// Connects again (same settings, timeouts cut to `within`) on a thread of its own and
    /// removes what `removal` names; waits at most `within` for it.
    fn remove_over_fresh_connection(&self, removal: &Removal, within: Duration) -> bool {
        if within.is_zero() {
            return false;
        }
        let base = &self.inner.options;
        let options = Arc::new(Options {
            endpoint: base.endpoint.clone(),
            user: base.user.clone(),
            identity: base.identity.clone(),
            passphrase: base.passphrase.clone(),
            host_key_policy: base.host_key_policy.clone(),
            connect_timeout: within,
            io_timeout: within,
            keepalive_interval: base.keepalive_interval,
            keepalive_max: base.keepalive_max,
            ciphers: base.ciphers.clone(),
        });
        let endpoint = self.inner.endpoint.clone();
        let removal = removal.clone();
        let (done_tx, done_rx) = mpsc::channel();
        // The thread ends by itself: every step it takes is bounded by `within`.
        let spawned = std::thread::Builder::new()
            .name("pod-tunnel-cleanup".to_owned())
            .spawn(move || {
                let removed = match options.connect_blocking(&endpoint) {
                    Ok(link) => {
                        let session = Session::from_link(link, Arc::clone(&options));
                        removal.run(&session.inner, within).unwrap_or(false)
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "cleanup connection failed");
                        false
                    }
                };
                let _ = done_tx.send(removed);
            });
        spawned.is_ok() && done_rx.recv_timeout(within).unwrap_or(false)
    }

    /// Makes a private directory on the server holding a symbolic link `d` to the directory of
    /// `target` (for SCP uploads into a directory whose name SCP cannot carry).
    fn stage_directory(&self, names: &Names, target: &Path) -> Result<PathBuf> {
        let step = "preparing a name scp can carry";
        let script = format!(
            "{}; case $p in /*) ;; *) p=$PWD/$p ;; esac; \
             [ -d \"$p\" ] || {{ echo 'no such directory' >&2; exit 2; }}; \
             s=$(mktemp -d {STAGE_TEMPLATE}) || exit 1; \
             ln -s -- \"$p\" \"$s/d\" || {{ rm -rf -- \"$s\"; exit 1; }}; printf %s \"$s\"",
            shell::assign("p", parent_of(target)),
        );
        let out = self
            .inner
            .run_bounded(&script, self.inner.options.io_timeout)
            .map_err(|e| self.exec_fail(names, step, e))?;
        self.parse_stage(
            names,
            step,
            out.status.success(),
            out.stdout_lossy().trim(),
            &out,
        )
    }

    /// Checks the staging directory a script printed; cleans it up when it is unusable.
    fn parse_stage(
        &self,
        names: &Names,
        step: &'static str,
        success: bool,
        printed: &str,
        out: &ExecOutput,
    ) -> Result<PathBuf> {
        let prefix = STAGE_TEMPLATE.trim_end_matches('X');
        let stage = Path::new(printed);
        if success && printed.starts_with(prefix) && scp_safe(stage) {
            return Ok(stage.to_owned());
        }
        let reason = out.stderr_lossy().trim().to_owned();
        let error = self.transfer_err(
            names,
            step,
            io::Error::other(if reason.is_empty() {
                "mktemp -d failed on the server".to_owned()
            } else {
                reason
            }),
        );
        if success && printed.starts_with(prefix) {
            return Err(self.clean_up(error, &[], &[stage]));
        }
        Err(error)
    }

    // ----- upload -------------------------------------------------------------------------

    fn upload(&mut self, local: &Path, remote: &Path) -> Result<(u64, Option<String>)> {
        let meta = fs::metadata(local).map_err(local_err("read", local))?;
        if meta.is_dir() {
            let mut files = Vec::new();
            let mut dirs = Vec::new();
            walk_local(local, Path::new(""), &mut dirs, &mut files)?;
            self.total = files.iter().map(|(_, size)| size).sum();
            let names = Names::upload(local, remote);
            let sftp = self.sftp(&names)?;
            make_remote_dir(&sftp, remote)
                .map_err(|e| self.fail(&names, "creating the remote directory", e))?;
            for dir in &dirs {
                let target = remote.join(dir);
                make_remote_dir(&sftp, &target).map_err(|e| {
                    self.fail(
                        &Names::upload(&local.join(dir), &target),
                        "creating the remote directory",
                        e,
                    )
                })?;
            }
            // SFTP uploads go on over this channel (starting another costs three round trips).
            let sftp = (self.protocol == Protocol::Sftp).then_some(sftp);
            for (file, _) in &files {
                self.upload_file(sftp.as_ref(), &local.join(file), &remote.join(file))?;
            }
            Ok((files.len() as u64, None))
        } else {
            self.total = meta.len();
            let hash = self.upload_file(None, local, remote)?;
            Ok((1, Some(hash)))
        }
    }

    /// Uploads one file; SFTP goes over `sftp` when given (a tree's files share one channel).
    fn upload_file(
        &self,
        sftp: Option<&ssh2::Sftp>,
        local: &Path,
        remote: &Path,
    ) -> Result<String> {
        let names = Names::upload(local, remote);
        let mut file = fs::File::open(local).map_err(local_err("open", local))?;
        let meta = file.metadata().map_err(local_err("read", local))?;
        // Permission bits only: a setuid, setgid or sticky bit never travels to the pod.
        let mode = meta.permissions().mode() & 0o777;
        let mtime = unix_secs(meta.modified());
        let atime = unix_secs(meta.accessed());
        let tmp = temp_sibling(remote);
        // SCP only ever sees names we chose: the temporary name, in the destination's directory
        // or (when that directory's name is odd) through a link in a private directory.
        let stage = if self.protocol == Protocol::Scp && !scp_safe(&tmp) {
            Some(self.stage_directory(&names, &tmp)?)
        } else {
            None
        };
        let dirs: Vec<&Path> = stage.iter().map(PathBuf::as_path).collect();
        let step = "verifying the checksum and renaming into place";
        let out = match (self.protocol, &stage) {
            (Protocol::Scp, stage) => {
                let sent = if let Some(stage) = stage {
                    let via = stage.join("d").join(tmp.file_name().unwrap_or_default());
                    self.scp_send(&names, &mut file, &via, meta.len(), mode, mtime, atime)
                } else {
                    self.scp_send(&names, &mut file, &tmp, meta.len(), mode, mtime, atime)
                };
                let hash = match sent {
                    Ok(hash) => hash,
                    Err(e) => return Err(self.clean_up(e, &[&tmp], &dirs)),
                };
                // Verify and move into place in one round trip; the script removes the
                // temporary file itself when it fails.
                let script = verify_script(
                    &tmp,
                    remote,
                    stage.as_deref(),
                    &Check::Hash(&hash),
                    STALE_MINUTES,
                );
                self.inner
                    .run_bounded(&script, self.checksum_time(meta.len()))
                    .map(|out| (hash, ScriptOutput::from(out)))
                    .map_err(|e| self.exec_fail(&names, step, e))
            }
            (Protocol::Sftp, _) => {
                // The server hashes the file as it arrives, in a script started first, which
                // renames it into place once told the hash of what was sent.
                let attributes = Attributes { mode, mtime, atime };
                self.streamed_verify(&names, &tmp, remote, meta.len(), |verify| {
                    self.sftp_send(&names, sftp, &file, &tmp, meta.len(), &attributes, verify)
                })
            }
        };
        let (hash, out) = match out {
            Ok(done) => done,
            Err(e) => return Err(self.clean_up(e, &[&tmp], &dirs)),
        };
        match out.code {
            Some(0) => Ok(hash),
            Some(5) => Err(Error::ChecksumMismatch {
                action: names.action,
                from: names.from,
                to: names.to,
                endpoint: self.endpoint(),
                local: hash.into(),
                remote: String::from_utf8_lossy(&out.stdout).into(),
                leftovers: Vec::new(),
            }),
            _ => {
                let error = self.transfer_err(
                    &names,
                    step,
                    io::Error::other(String::from_utf8_lossy(&out.stderr).trim().to_owned()),
                );
                Err(self.clean_up(error, &[&tmp], &dirs))
            }
        }
    }

    /// Runs `send` with the streamed verification script started (see [`Check::Streamed`]);
    /// `send` tells it what it must and returns the hash of what was sent and whether the whole
    /// file must be hashed again. The script's verdict, or `send`'s error (the script is then
    /// dropped: it renames nothing, and at most removes the temporary file).
    fn streamed_verify(
        &self,
        names: &Names,
        tmp: &Path,
        remote: &Path,
        size: u64,
        send: impl FnOnce(&mut ssh2::Channel) -> Result<(String, bool)>,
    ) -> Result<(String, ScriptOutput)> {
        let mut verify = self.start_streamed_verify(names, tmp, remote, size)?;
        match send(&mut verify) {
            Ok((hash, full)) => self
                .finish_streamed_verify(names, verify, &hash, full, size)
                .map(|out| (hash, out)),
            Err(e) => {
                self.discard(verify);
                Err(e)
            }
        }
    }

    /// Starts the streamed verification script (see [`verify_script`] with
    /// [`Check::Streamed`]) on this session.
    fn start_streamed_verify(
        &self,
        names: &Names,
        tmp: &Path,
        remote: &Path,
        size: u64,
    ) -> Result<ssh2::Channel> {
        let step = "verifying the checksum and renaming into place";
        let mut channel = self
            .inner
            .ssh
            .channel_session()
            .map_err(|e| self.fail(names, step, e.into()))?;
        let script = verify_script(tmp, remote, None, &Check::Streamed { size }, STALE_MINUTES);
        channel
            .exec(&script)
            .map_err(|e| self.fail(names, step, e.into()))?;
        Ok(channel)
    }

    /// Tells the streamed verification script something (a line: `go`, a byte count, ...).
    fn tell(&self, names: &Names, verify: &mut ssh2::Channel, lines: &str) -> Result<()> {
        verify
            .write_all(lines.as_bytes())
            .map_err(|e| self.fail(names, "verifying the checksum and renaming into place", e))
    }

    /// Ends the streamed verification: sends the hash of what was sent (and whether the server
    /// must hash the whole file again), and waits for the script's verdict.
    fn finish_streamed_verify(
        &self,
        names: &Names,
        mut verify: ssh2::Channel,
        hash: &str,
        full: bool,
        size: u64,
    ) -> Result<ScriptOutput> {
        let how = if full { "full" } else { "streamed" };
        self.tell(names, &mut verify, &format!("end\n{how} {hash}\n"))?;
        verify.send_eof().map_err(|e| {
            self.fail(
                names,
                "verifying the checksum and renaming into place",
                e.into(),
            )
        })?;
        let wait = if full {
            self.checksum_time(size)
        } else {
            self.checksum_time(SPLIT_CHUNK)
        };
        self.collect(
            names,
            "verifying the checksum and renaming into place",
            verify,
            wait,
        )
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "internal helper mirroring sftp_send"
    )]
    fn scp_send(
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

    /// Sends the file over SFTP into `tmp` (created here), telling `verify` what was
    /// acknowledged; the hash of what was sent, and whether the server must hash the whole file
    /// again (an extra connection failed midway).
    #[expect(
        clippy::too_many_arguments,
        reason = "internal helper; the arguments are the transfer's parts"
    )]
    fn sftp_send(
        &self,
        names: &Names,
        sftp: Option<&ssh2::Sftp>,
        file: &fs::File,
        tmp: &Path,
        size: u64,
        attributes: &Attributes,
        verify: &mut ssh2::Channel,
    ) -> Result<(String, bool)> {
        if size >= SPLIT_MIN {
            return self.sftp_send_split(names, sftp, file, tmp, size, attributes, verify);
        }
        let own;
        let sftp = if let Some(sftp) = sftp {
            sftp
        } else {
            own = self.sftp(names)?;
            &own
        };
        let mut remote = self.create_temp(names, sftp, tmp)?;
        self.tell(names, verify, "go\n")?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0_u8; SFTP_WRITE_CHUNK];
        loop {
            let n = read_full(file, &mut buf)
                .map_err(|e| self.transfer_err(names, "reading the local file", e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            remote
                .write_all(&buf[..n])
                .map_err(|e| self.fail(names, "sending data", e))?;
            // Acknowledged: the server may hash it.
            self.tell(names, verify, &format!("{n}\n"))?;
            self.advance(n);
        }
        self.set_attributes(names, remote, attributes)?;
        Ok((hex(&hasher.finalize()), false))
    }

    /// Creates the temporary file (exclusively: it is ours).
    fn create_temp(&self, names: &Names, sftp: &ssh2::Sftp, tmp: &Path) -> Result<ssh2::File> {
        sftp.open_mode(
            tmp,
            ssh2::OpenFlags::WRITE
                | ssh2::OpenFlags::CREATE
                | ssh2::OpenFlags::TRUNCATE
                | ssh2::OpenFlags::EXCLUSIVE,
            0o600,
            ssh2::OpenType::File,
        )
        .map_err(|e| self.fail(names, "creating the temporary file", e.into()))
    }

    /// Sets mode and times on the written file and closes it.
    fn set_attributes(
        &self,
        names: &Names,
        mut remote: ssh2::File,
        attributes: &Attributes,
    ) -> Result<()> {
        let step = "setting mode and modification time";
        remote
            .setstat(ssh2::FileStat {
                size: None,
                uid: None,
                gid: None,
                perm: Some(attributes.mode),
                atime: Some(attributes.atime),
                mtime: Some(attributes.mtime),
            })
            .map_err(|e| self.fail(names, step, e.into()))?;
        remote
            .close()
            .map_err(|e| self.fail(names, "closing the temporary file", e.into()))
    }

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
    fn sftp_send_split(
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

    // ----- download -----------------------------------------------------------------------

    fn download(&mut self, remote: &Path, local: &Path) -> Result<(u64, Option<String>)> {
        let names = Names::download(remote, local);
        let sftp = self.sftp(&names)?;
        let stat = sftp
            .stat(remote)
            .map_err(|e| self.fail(&names, "reading the remote file", e.into()))?;
        if stat.is_dir() {
            let mut files = Vec::new();
            let mut dirs = Vec::new();
            walk_remote(&sftp, remote, Path::new(""), &mut dirs, &mut files)
                .map_err(|e| self.fail(&names, "listing the remote directory", e))?;
            // SFTP downloads go on over this channel (starting another costs three round trips).
            let sftp = (self.protocol == Protocol::Sftp).then_some(sftp);
            self.total = files.iter().map(|(_, size)| size).sum();
            fs::create_dir_all(local).map_err(local_err("create", local))?;
            for dir in &dirs {
                let target = local.join(dir);
                fs::create_dir_all(&target).map_err(local_err("create", &target))?;
            }
            for (file, size) in &files {
                self.download_file(sftp.as_ref(), &remote.join(file), &local.join(file), *size)?;
            }
            Ok((files.len() as u64, None))
        } else {
            let sftp = (self.protocol == Protocol::Sftp).then_some(sftp);
            let size = stat.size.unwrap_or(0);
            self.total = size;
            let hash = self.download_file(sftp.as_ref(), remote, local, size)?;
            Ok((1, Some(hash)))
        }
    }

    fn download_file(
        &self,
        sftp: Option<&ssh2::Sftp>,
        remote: &Path,
        local: &Path,
        size_hint: u64,
    ) -> Result<String> {
        let names = Names::download(remote, local);
        let staged = self.protocol == Protocol::Scp && !scp_safe(remote);
        if staged {
            return self.download_staged(&names, remote, local, size_hint);
        }
        if let Some(sftp) = sftp
            && size_hint >= SPLIT_MIN
        {
            return self.download_split(&names, sftp, remote, local, size_hint);
        }
        // Size, mode, mtime and checksum of the source: the server works them out while the
        // data moves.
        let pending = self.start_facts(&names, remote, size_hint)?;
        let tmp = temp_sibling(local);
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true).mode(0o600);
        let mut file = match options.open(&tmp) {
            Ok(file) => file,
            Err(e) => {
                self.discard(pending.channel);
                return Err(self.transfer_err(&names, "creating the local temporary file", e));
            }
        };
        let received = match sftp {
            None if self.protocol == Protocol::Scp => {
                self.scp_receive(&names, remote, &mut file, None, Some(pending.round_trip))
            }
            Some(sftp) => self.sftp_receive(&names, sftp, remote, &mut file),
            None => self
                .sftp(&names)
                .and_then(|sftp| self.sftp_receive(&names, &sftp, remote, &mut file)),
        };
        let finish = match received {
            Ok((hash, size)) => self.collect_facts(&names, pending).and_then(|facts| {
                if facts.size != size {
                    return Err(self.changed(&names));
                }
                self.finish_download(&names, &file, &tmp, local, hash, &facts)
            }),
            Err(e) => {
                self.discard(pending.channel);
                Err(e)
            }
        };
        if finish.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        finish
    }

    fn changed(&self, names: &Names) -> Error {
        self.transfer_err(
            names,
            "receiving data",
            io::Error::other("the remote file changed while downloading; try again"),
        )
    }

    /// Downloads over SCP a file whose name SCP cannot carry, through a link in a private
    /// directory on the server, made by the same script that reads the source's facts (which
    /// therefore runs before the data moves).
    fn download_staged(
        &self,
        names: &Names,
        remote: &Path,
        local: &Path,
        size_hint: u64,
    ) -> Result<String> {
        let mut script = facts_script(remote);
        let _ = write!(
            script,
            "; case $d in /*) a=$d ;; *) a=$PWD/$d ;; esac; \
             s=$(mktemp -d {STAGE_TEMPLATE}) || exit 1; \
             ln -s -- \"$a\" \"$s/f\" || {{ rm -rf -- \"$s\"; exit 1; }}; printf '%s\\n' \"$s\""
        );
        let step = "reading the remote file's size and checksum";
        let out = self
            .inner
            .run_bounded(&script, self.checksum_time(size_hint))
            .map_err(|e| self.exec_fail(names, step, e))?;
        let success = out.status.success();
        let Some(facts) = Facts::parse(success, &out.stdout) else {
            return Err(self.missing_source(names, &out.stderr));
        };
        // After the facts' four words and sha256sum's `-`.
        let text = out.stdout_lossy();
        let printed = text.split_whitespace().nth(5).unwrap_or_default();
        let stage = self.parse_stage(names, step, success, printed, &out)?;
        let tmp = temp_sibling(local);
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true).mode(0o600);
        let received = options
            .open(&tmp)
            .map_err(|e| self.transfer_err(names, "creating the local temporary file", e))
            .and_then(|mut file| {
                let (hash, _) =
                    self.scp_receive(names, &stage.join("f"), &mut file, Some(facts.size), None)?;
                Ok((file, hash))
            });
        // The staging directory is done with, whatever happened.
        let mut left = Vec::new();
        if !self.remove_remote(&Removal::Script(removal_script(&[], &[&stage]))) {
            left.push(shown(&stage));
        }
        let finish = received
            .and_then(|(file, hash)| self.finish_download(names, &file, &tmp, local, hash, &facts));
        if finish.is_err() {
            let _ = fs::remove_file(&tmp);
        } else if !left.is_empty() {
            tracing::warn!(?left, "a staging directory may remain on the server");
        }
        finish.map_err(|e| with_leftovers(e, left))
    }

    /// Checks the hash of the received bytes against the remote one, sets mode and modification
    /// time, flushes the local temporary file to disk and renames it onto `local`.
    fn finish_download(
        &self,
        names: &Names,
        file: &fs::File,
        tmp: &Path,
        local: &Path,
        hash: String,
        facts: &Facts,
    ) -> Result<String> {
        if hash != facts.hash {
            return Err(Error::ChecksumMismatch {
                action: names.action,
                from: names.from.clone(),
                to: names.to.clone(),
                endpoint: self.endpoint(),
                local: hash.into(),
                remote: facts.hash.as_str().into(),
                leftovers: Vec::new(),
            });
        }
        let local_fail = |step| move |e| self.transfer_err(names, step, e);
        // The pod's permission bits, less this process's umask; never its setuid, setgid or
        // sticky bit (a hostile pod could otherwise plant a setuid program in a project).
        file.set_permissions(fs::Permissions::from_mode(
            facts.mode & 0o777 & !local_umask(),
        ))
        .map_err(local_fail("setting the mode of the local copy"))?;
        file.set_modified(UNIX_EPOCH + Duration::from_secs(facts.mtime))
            .map_err(local_fail(
                "setting the modification time of the local copy",
            ))?;
        file.sync_all()
            .map_err(local_fail("writing the local copy"))?;
        fs::rename(tmp, local).map_err(local_fail("renaming the local copy into place"))?;
        Ok(hash)
    }

    /// The error for a remote source whose facts could not be read (`stderr`: the script's).
    fn missing_source(&self, names: &Names, stderr: &[u8]) -> Error {
        self.transfer_err(
            names,
            "reading the remote file",
            io::Error::new(
                io::ErrorKind::NotFound,
                String::from_utf8_lossy(stderr).trim().to_owned(),
            ),
        )
    }

    /// Starts [`facts_script`] for `remote` on this session (two round trips), leaving its
    /// output to wait in its channel while the data moves over other channels.
    fn start_facts(&self, names: &Names, remote: &Path, size_hint: u64) -> Result<Pending> {
        let step = "reading the remote file's size and checksum";
        let started = Instant::now();
        let mut channel = self
            .inner
            .ssh
            .channel_session()
            .map_err(|e| self.fail(names, step, e.into()))?;
        let round_trip = started.elapsed();
        channel
            .exec(&facts_script(remote))
            .map_err(|e| self.fail(names, step, e.into()))?;
        Ok(Pending {
            channel,
            deadline: Instant::now() + self.checksum_time(size_hint),
            round_trip,
        })
    }

    /// Reads what [`Job::start_facts`] printed: waits until the script's time is up, and at
    /// least one I/O timeout from now.
    fn collect_facts(&self, names: &Names, pending: Pending) -> Result<Facts> {
        let step = "reading the remote file's size and checksum";
        let wait = pending.deadline.saturating_duration_since(Instant::now());
        let out = self.collect(names, step, pending.channel, wait)?;
        Facts::parse(out.code == Some(0), &out.stdout)
            .ok_or_else(|| self.missing_source(names, &out.stderr))
    }

    /// Reads a started script's output (4 KiB of each stream at most) and exit status, waiting
    /// at most `wait` (and at least one I/O timeout) for each step.
    fn collect(
        &self,
        names: &Names,
        step: &'static str,
        mut channel: ssh2::Channel,
        wait: Duration,
    ) -> Result<ScriptOutput> {
        let io_timeout = self.inner.options.io_timeout;
        let wait = wait.max(io_timeout);
        let ssh = &self.inner.ssh;
        ssh.set_timeout(millis(wait));
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        let read = (&mut channel)
            .take(4096)
            .read_to_end(&mut stdout)
            .and_then(|_| channel.stderr().take(4096).read_to_end(&mut stderr))
            .and_then(|_| {
                channel.close()?;
                channel.wait_close()?;
                Ok(channel.exit_status()?)
            });
        ssh.set_timeout(millis(io_timeout));
        match read {
            Ok(code) => Ok(ScriptOutput {
                code: Some(code),
                stdout,
                stderr,
            }),
            Err(e) if e.kind() == io::ErrorKind::TimedOut => Err(self.stalled(names, step, wait)),
            Err(e) => Err(self.fail(names, step, e)),
        }
    }

    /// Drops a started script's channel without waiting for the server (which answers a close
    /// only once the command ends).
    fn discard(&self, mut channel: ssh2::Channel) {
        let ssh = &self.inner.ssh;
        ssh.set_blocking(false);
        let _ = channel.close();
        drop(channel);
        ssh.set_blocking(true);
    }

    /// Downloads a big file over SFTP in chunks read at their offsets, over this session's
    /// `sftp` plus up to [`SPLIT_HELPERS`] extra connections: each has its own channel window and
    /// its own thread decrypting. Chunks are written at their offsets into the local temporary
    /// file, which another thread hashes in order behind the writers, while the server works out
    /// its checksum. A helper that cannot connect, or fails midway, hands its chunk back, so the
    /// result never depends on them.
    fn download_split(
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

    fn scp_receive(
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

    fn sftp_receive(
        &self,
        names: &Names,
        sftp: &ssh2::Sftp,
        remote: &Path,
        file: &mut fs::File,
    ) -> Result<(String, u64)> {
        let mut source = sftp
            .open(remote)
            .map_err(|e| self.fail(names, "opening the remote file", e.into()))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0_u8; SFTP_READ_CHUNK];
        let mut got = 0_u64;
        loop {
            let n = source
                .read(&mut buf)
                .map_err(|e| self.fail(names, "receiving data", e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            file.write_all(&buf[..n])
                .map_err(|e| self.transfer_err(names, "writing the local copy", e))?;
            self.advance(n);
            got += n as u64;
        }
        Ok((hex(&hasher.finalize()), got))
    }
}

/// How a server-side script of ours ended.
struct ScriptOutput {
    code: Option<i32>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

impl From<ExecOutput> for ScriptOutput {
    fn from(out: ExecOutput) -> Self {
        Self {
            code: out.status.code(),
            stdout: out.stdout,
            stderr: out.stderr,
        }
    }
}

/// Mode and times an upload gives its file.
struct Attributes {
    mode: u32,
    mtime: u64,
    atime: u64,
}

/// How the verification script knows the expected hash.
enum Check<'a> {
    /// Given in the script; the server hashes the whole file.
    Hash(&'a str),
    /// Streamed: the script waits for a line `go` (the file exists), then hashes the file in
    /// order as it is told byte counts (one a line, each only once the bytes were acknowledged),
    /// until a line `end`; then a line `streamed HASH` (or `full HASH`: hash the whole file
    /// again, after an extra connection failed midway) gives the hash to check against. The
    /// file must be `size` bytes long.
    Streamed { size: u64 },
}

/// A [`facts_script`] running on the server; see [`Job::start_facts`].
struct Pending {
    channel: ssh2::Channel,
    deadline: Instant,
    /// How long opening its channel took: one round trip.
    round_trip: Duration,
}

/// What a download needs to know of its remote source.
struct Facts {
    size: u64,
    mode: u32,
    mtime: u64,
    /// SHA-256 (hex).
    hash: String,
}

impl Facts {
    /// Reads the output of [`facts_script`] (words after the first four are the caller's).
    fn parse(success: bool, stdout: &[u8]) -> Option<Self> {
        if !success {
            return None;
        }
        let text = String::from_utf8_lossy(stdout);
        let mut words = text.split_whitespace();
        let size = words.next()?.parse().ok()?;
        let mode = u32::from_str_radix(words.next()?, 8).ok()?;
        let mtime = words.next()?.parse().ok()?;
        let hash = words.next()?;
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        Some(Self {
            size,
            mode,
            mtime,
            hash: hash.to_owned(),
        })
    }
}

/// A server-side script printing the size, mode (octal), modification time and SHA-256 of
/// `remote` (following symbolic links); exits 1 when it cannot read it.
fn facts_script(remote: &Path) -> String {
    format!(
        "{}; {{ stat -L -c '%s %a %Y' -- \"$d\" && sha256sum < \"$d\"; }} || exit 1",
        shell::assign("d", remote)
    )
}

/// The server-side script that checks the uploaded temporary file (see [`Check`]) and renames
/// it onto `remote`: exit 5 (printing the server's hash) on a mismatch, 6 when the file has the
/// wrong size, 4 when the rename fails, 3 when the file cannot be read (or the streamed check
/// never started); the temporary file is removed in every failing case. After a successful
/// rename, temporary files of earlier failed uploads to the same destination that nothing has
/// touched for [`STALE_MINUTES`] are removed too.
fn verify_script(
    tmp: &Path,
    remote: &Path,
    stage: Option<&Path>,
    check: &Check<'_>,
    stale_minutes: u32,
) -> String {
    let mut script = format!(
        "{}; {}; {}",
        shell::assign("t", tmp),
        shell::assign("d", remote),
        shell::assign("p", parent_of(remote)),
    );
    if let Some(stage) = stage {
        let _ = write!(script, "; {}; rm -rf -- \"$s\"", shell::assign("s", stage));
    }
    let stem = temp_stem(
        remote
            .file_name()
            .map_or(&b"file"[..], std::ffi::OsStr::as_bytes),
    );
    match check {
        Check::Hash(hash) => {
            let _ = write!(
                script,
                "; e={hash}; h=$(sha256sum < \"$t\") || {{ rm -f -- \"$t\"; exit 3; }}"
            );
        }
        Check::Streamed { size } => {
            // `head -c N` reads exactly N bytes (fewer only at the end of the file, which the
            // hash would then show) and leaves the shared offset of descriptor 3 after them.
            let _ = write!(
                script,
                "; read -r g || exit 3; [ \"$g\" = go ] || exit 3; \
                 exec 3< \"$t\" || {{ rm -f -- \"$t\"; exit 3; }}; \
                 h=$(while read -r n; do case $n in ''|*[!0-9]*) break ;; esac; \
                 head -c \"$n\" <&3; done | sha256sum); \
                 read -r m e; exec 3<&-; \
                 if [ \"$m\" = full ]; then \
                 h=$(sha256sum < \"$t\") || {{ rm -f -- \"$t\"; exit 3; }}; fi; \
                 z=$(stat -c %s -- \"$t\") || {{ rm -f -- \"$t\"; exit 3; }}; \
                 if [ \"$z\" != {size} ]; then rm -f -- \"$t\"; \
                 echo \"the temporary file has $z bytes, not {size}\" >&2; exit 6; fi"
            );
        }
    }
    let _ = write!(
        script,
        "; h=${{h%% *}}; \
         if [ \"$h\" != \"$e\" ]; then rm -f -- \"$t\"; printf %s \"$h\"; exit 5; fi; \
         if [ -d \"$d\" ]; then rm -f -- \"$t\"; \
         echo 'the destination is a directory: give the full path of the file' >&2; exit 4; fi; \
         mv -f -- \"$t\" \"$d\" || {{ rm -f -- \"$t\"; exit 4; }}; \
         case $p in /*) ;; *) p=./$p ;; esac; \
         find \"$p\" -maxdepth 1 -type f -name '.{stem}.rpb-part-*' \
         ! -name '.{stem}.rpb-part-*[!0-9a-f-]*' -cmin +{stale_minutes} \
         -exec rm -f -- {{}} + 2>/dev/null; exit 0"
    );
    script
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

fn read_full(mut file: impl io::Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Regular files (with sizes) and directories under `root`, relative to it, parents first.
fn walk_local(
    root: &Path,
    rel: &Path,
    dirs: &mut Vec<PathBuf>,
    files: &mut Vec<(PathBuf, u64)>,
) -> Result<()> {
    let dir = root.join(rel);
    let mut entries: Vec<_> = fs::read_dir(&dir)
        .map_err(local_err("list", &dir))?
        .collect::<io::Result<_>>()
        .map_err(local_err("list", &dir))?;
    entries.sort_by_key(fs::DirEntry::file_name);
    for entry in entries {
        let path = rel.join(entry.file_name());
        let kind = entry
            .file_type()
            .map_err(local_err("read", &entry.path()))?;
        if kind.is_dir() {
            dirs.push(path.clone());
            walk_local(root, &path, dirs, files)?;
        } else if kind.is_file() {
            let size = entry
                .metadata()
                .map_err(local_err("read", &entry.path()))?
                .len();
            files.push((path, size));
        } else {
            tracing::warn!(path = %entry.path().display(), "skipping a symbolic link or special file");
        }
    }
    Ok(())
}

fn walk_remote(
    sftp: &ssh2::Sftp,
    root: &Path,
    rel: &Path,
    dirs: &mut Vec<PathBuf>,
    files: &mut Vec<(PathBuf, u64)>,
) -> io::Result<()> {
    let mut entries = sftp.readdir(root.join(rel)).map_err(io::Error::from)?;
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    for (path, stat) in entries {
        let Some(name) = path.file_name() else {
            continue;
        };
        let child = rel.join(name);
        if stat.is_dir() {
            dirs.push(child.clone());
            walk_remote(sftp, root, &child, dirs, files)?;
        } else if stat.is_file() {
            files.push((child, stat.size.unwrap_or(0)));
        } else {
            tracing::warn!(path = %path.display(), "skipping a remote symbolic link or special file");
        }
    }
    Ok(())
}

fn make_remote_dir(sftp: &ssh2::Sftp, path: &Path) -> io::Result<()> {
    match sftp.mkdir(path, 0o755) {
        Ok(()) => Ok(()),
        Err(e) => match sftp.stat(path) {
            Ok(stat) if stat.is_dir() => Ok(()),
            _ => Err(e.into()),
        },
    }
}

/// This process's umask, read from `/proc/self/status` (Linux 4.7+; reading it with
/// `umask(2)` would briefly change it for every thread). Elsewhere the common 022.
fn local_umask() -> u32 {
    static UMASK: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *UMASK.get_or_init(|| {
        fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|status| {
                status
                    .lines()
                    .find_map(|line| line.strip_prefix("Umask:"))
                    .and_then(|value| u32::from_str_radix(value.trim(), 8).ok())
            })
            .unwrap_or(0o022)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_sit_next_to_the_target_and_are_safe_for_scp() {
        let target = Path::new(std::ffi::OsStr::from_bytes(b"/data/caf\xe9 \n\t$(x).blend"));
        let tmp = temp_sibling(target);
        assert_eq!(tmp.parent(), target.parent());
        assert!(scp_safe(&tmp), "{tmp:?}");
        let name = tmp.file_name().unwrap().to_str().unwrap();
        let stem = temp_stem(target.file_name().unwrap().as_bytes());
        assert!(name.starts_with(&format!(".{stem}.rpb-part-")), "{name}");
        assert!(stem.starts_with("caf______x_.blend-"), "{stem}");
        let unique = &name[stem.len() + 11..];
        assert!(
            unique.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-'),
            "{unique}"
        );
        assert_ne!(temp_sibling(target), tmp);
    }

    #[test]
    fn temp_stems_are_the_name_when_plain_and_bounded_always() {
        assert_eq!(temp_stem(b"scene-2.blend"), "scene-2.blend");
        // Different odd names never share a stem; the same name always gets the same one.
        assert_ne!(temp_stem(b"a b"), temp_stem(b"a\tb"));
        assert_eq!(temp_stem(b"a b"), temp_stem(b"a b"));
        let long = vec![b'x'; 255];
        assert_eq!(temp_stem(&long).len(), TEMP_STEM_MAX);
        assert!(
            temp_sibling(Path::new(std::ffi::OsStr::from_bytes(&long)))
                .as_os_str()
                .len()
                < 200
        );
    }

    #[test]
    fn scp_safety_is_strict() {
        assert!(scp_safe(Path::new(
            "/runpod/projects/demo/.scene.blend.rpb-part-1-2-3"
        )));
        assert!(scp_safe(Path::new("relative/file")));
        for odd in [
            "-leading",
            "/a b",
            "/a'b",
            "/a$b",
            "/a*b",
            "/a\nb",
            "/caf\u{e9}",
            "",
        ] {
            assert!(!scp_safe(Path::new(odd)), "{odd:?}");
        }
    }

    #[test]
    fn shown_paths_escape_control_characters() {
        assert_eq!(shown(Path::new("/a/b c")), "/a/b c");
        assert_eq!(shown(Path::new("/a/new\nline\t")), "/a/new\\nline\\t");
    }

    #[test]
    fn cleanup_is_bounded() {
        assert_eq!(
            cleanup_budget(Duration::from_secs(3)),
            Duration::from_secs(2)
        );
        assert_eq!(
            cleanup_budget(Duration::from_secs(8)),
            Duration::from_secs(4)
        );
        assert_eq!(
            cleanup_budget(Duration::from_secs(30)),
            Duration::from_secs(5)
        );
    }

    /// The verify script, run by the local shell on a scratch directory.
    #[test]
    #[expect(
        clippy::disallowed_methods,
        reason = "a leftover must be a second old for `find -cmin +0`"
    )]
    fn the_verify_script_renames_only_a_matching_file_and_removes_only_stale_leftovers() {
        let scratch = tempfile::tempdir().unwrap();
        let dir = scratch.path();
        let dest = dir.join("odd 'name'\n.blend");
        let tmp = temp_sibling(&dest);
        // A leftover of another transfer to the same destination, and look-alikes that are not.
        let other = temp_sibling(&dest);
        std::fs::write(&other, b"x").unwrap();
        let stem = temp_stem(dest.file_name().unwrap().as_bytes());
        let not_ours = [
            dir.join(format!(".{stem}.rpb-part-zz")),
            dir.join(format!(".{stem}x.rpb-part-1-2-3")),
            dir.join(".odd.rpb-part-1-2-3"),
        ];
        for path in &not_ours {
            std::fs::write(path, b"x").unwrap();
        }
        let run = |hash: &str, stale_minutes| {
            std::process::Command::new("sh")
                .arg("-c")
                .arg(verify_script(
                    &tmp,
                    &dest,
                    None,
                    &Check::Hash(hash),
                    stale_minutes,
                ))
                .output()
                .unwrap()
        };
        let good = hex(&Sha256::digest(b"data"));
        std::fs::write(&tmp, b"data").unwrap();
        let bad = run(&"0".repeat(64), STALE_MINUTES);
        assert_eq!(bad.status.code(), Some(5));
        assert!(!tmp.exists() && !dest.exists());
        std::fs::write(&tmp, b"data").unwrap();
        let out = run(&good, STALE_MINUTES);
        assert!(out.status.success(), "{out:?}");
        assert_eq!(std::fs::read(&dest).unwrap(), b"data");
        assert!(!tmp.exists() && other.exists(), "a fresh leftover stays");
        // Once old enough, our leftover goes, and nothing else.
        std::thread::sleep(Duration::from_millis(1100));
        std::fs::write(&tmp, b"data").unwrap();
        let out = run(&good, 0);
        assert!(out.status.success(), "{out:?}");
        assert!(!other.exists(), "a stale leftover is removed");
        assert!(not_ours.iter().all(|p| p.exists()));
        // A destination that is a directory is refused, and the temporary file removed.
        std::fs::remove_file(&dest).unwrap();
        std::fs::create_dir(&dest).unwrap();
        std::fs::write(&tmp, b"data").unwrap();
        let out = run(&good, STALE_MINUTES);
        assert_eq!(out.status.code(), Some(4));
        assert!(!tmp.exists() && dest.is_dir());
    }

    /// The streamed verify script, run by the local shell with what an upload would tell it.
    #[test]
    fn the_streamed_verify_script_checks_what_it_was_told_and_renames_only_a_match() {
        use std::process::{Command, Stdio};
        let scratch = tempfile::tempdir().unwrap();
        let dest = scratch.path().join("scene.blend");
        let tmp = temp_sibling(&dest);
        let data = b"hello, streamed world";
        let good = hex(&Sha256::digest(data));
        let run = |input: &str, size: u64| {
            let mut child = Command::new("sh")
                .arg("-c")
                .arg(verify_script(
                    &tmp,
                    &dest,
                    None,
                    &Check::Streamed { size },
                    STALE_MINUTES,
                ))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let mut stdin = child.stdin.take().unwrap();
            // The script may stop reading early: a failed write is part of the test.
            let _ = stdin.write_all(input.as_bytes());
            drop(stdin);
            child.wait_with_output().unwrap()
        };
        let size = data.len() as u64;
        // Told in two parts, then the right hash: renamed into place.
        std::fs::write(&tmp, data).unwrap();
        let out = run(&format!("go\n8\n13\nend\nstreamed {good}\n"), size);
        assert!(out.status.success(), "{out:?}");
        assert_eq!(std::fs::read(&dest).unwrap(), data);
        assert!(!tmp.exists());
        // A wrong hash, or a stream covering only part of the file: removed, never renamed.
        for input in [
            format!("go\n21\nend\nstreamed {}\n", "0".repeat(64)),
            format!("go\n8\nend\nstreamed {good}\n"),
            // Cut before the hash line (the upload died).
            "go\n21\n".to_owned(),
        ] {
            std::fs::write(&tmp, b"new data, not checked").unwrap();
            let out = run(&input, size);
            assert_eq!(out.status.code(), Some(5), "{input:?}: {out:?}");
            assert!(!tmp.exists(), "{input:?}");
            assert_eq!(std::fs::read(&dest).unwrap(), data, "{input:?}");
        }
        // `full`: the whole file is hashed again, whatever was streamed.
        std::fs::write(&tmp, data).unwrap();
        let out = run(&format!("go\nend\nfull {good}\n"), size);
        assert!(out.status.success(), "{out:?}");
        // The wrong size: refused.
        std::fs::write(&tmp, data).unwrap();
        let out = run(&format!("go\n21\nend\nstreamed {good}\n"), size + 1);
        assert_eq!(out.status.code(), Some(6), "{out:?}");
        assert!(!tmp.exists());
        // Never told to start (the file was never made): nothing is touched.
        std::fs::write(&tmp, b"someone else's?").unwrap();
        let out = run("", size);
        assert_eq!(out.status.code(), Some(3), "{out:?}");
        assert!(tmp.exists());
    }

    #[test]
    fn hex_is_lowercase() {
        assert_eq!(hex(&[0, 255, 16]), "00ff10");
    }
}
