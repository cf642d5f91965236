//! File and directory transfer over SCP or SFTP, atomic and verified.
//!
//! Every file is written under a temporary name next to its destination (`.NAME.rpb-part-…`),
//! checked by SHA-256 (the bytes we sent or received against `sha256sum` on the server), and only
//! then renamed into place (`mv -f` on the server, `rename(2)` locally). An interrupted or corrupt
//! transfer therefore never replaces a good file with a half one.

use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::io::{self, Read as _, Seek as _, Write as _};
use std::os::unix::ffi::{OsStrExt as _, OsStringExt as _};
use std::os::unix::fs::{FileExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};
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
/// Extra connections of a split upload, besides the session's own.
const SPLIT_HELPERS: usize = 3;
/// SFTP read size: libssh2 reads ahead four times this (capped at 8 MiB).
const SFTP_READ_CHUNK: usize = 2 << 20;
/// SCP download read size.
const SCP_READ_CHUNK: usize = 1 << 20;
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

impl Transfer {
    pub(crate) fn new(session: Session, upload: bool, local: &Path, remote: &Path) -> Self {
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
    /// [`Error::LocalIo`] for local file problems, [`Error::Transfer`] for remote ones (including
    /// a connection lost midway), [`Error::ChecksumMismatch`] when verification fails. In every
    /// case the destination is left as it was.
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
}

fn local_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> Error + use<> {
    let path = path.to_owned();
    move |source| Error::LocalIo {
        action,
        path,
        source,
    }
}

fn lossy(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// `.NAME.rpb-part-UNIQUE` next to `path`.
fn temp_sibling(path: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .map_or(&b"file"[..], std::ffi::OsStr::as_bytes);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let unique = format!(
        ".rpb-part-{:x}-{:x}-{}",
        std::process::id(),
        nanos,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    let mut bytes = Vec::with_capacity(name.len() + unique.len() + 1);
    bytes.push(b'.');
    bytes.extend_from_slice(name);
    bytes.extend_from_slice(unique.as_bytes());
    path.with_file_name(OsString::from_vec(bytes))
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

impl Job<'_> {
    fn endpoint(&self) -> String {
        self.inner.endpoint.to_string()
    }

    fn remote_err(&self, action: &'static str, path: &Path, source: io::Error) -> Error {
        Error::Transfer {
            action,
            path: lossy(path),
            endpoint: self.endpoint(),
            source,
        }
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

    fn sftp(&self, path: &Path) -> Result<ssh2::Sftp> {
        self.inner
            .ssh
            .sftp()
            .map_err(|e| self.remote_err("start sftp for", path, e.into()))
    }

    // ----- upload -------------------------------------------------------------------------

    fn upload(&mut self, local: &Path, remote: &Path) -> Result<(u64, Option<String>)> {
        let meta = fs::metadata(local).map_err(local_err("read", local))?;
        if meta.is_dir() {
            let mut files = Vec::new();
            let mut dirs = Vec::new();
            walk_local(local, Path::new(""), &mut dirs, &mut files)?;
            self.total = files.iter().map(|(_, size)| size).sum();
            let sftp = self.sftp(remote)?;
            make_remote_dir(&sftp, remote).map_err(|e| self.remote_err("create", remote, e))?;
            for dir in &dirs {
                let target = remote.join(dir);
                make_remote_dir(&sftp, &target)
                    .map_err(|e| self.remote_err("create", &target, e))?;
            }
            drop(sftp);
            for (file, _) in &files {
                self.upload_file(&local.join(file), &remote.join(file))?;
            }
            Ok((files.len() as u64, None))
        } else {
            self.total = meta.len();
            let hash = self.upload_file(local, remote)?;
            Ok((1, Some(hash)))
        }
    }

    fn upload_file(&self, local: &Path, remote: &Path) -> Result<String> {
        let mut file = fs::File::open(local).map_err(local_err("open", local))?;
        let meta = file.metadata().map_err(local_err("read", local))?;
        let mode = meta.permissions().mode() & 0o7777;
        let mtime = unix_secs(meta.modified());
        let atime = unix_secs(meta.accessed());
        let tmp = temp_sibling(remote);
        let sent = match self.protocol {
            Protocol::Scp => self.scp_send(&mut file, local, &tmp, meta.len(), mode, mtime, atime),
            Protocol::Sftp => {
                self.sftp_send(&mut file, local, &tmp, meta.len(), mode, mtime, atime)
            }
        };
        let hash = match sent {
            Ok(hash) => hash,
            Err(e) => {
                self.remove_remote(&tmp);
                return Err(e);
            }
        };
        // Verify and move into place in one round trip.
        let script = format!(
            "{}; {}; h=$(sha256sum < \"$t\") || exit 3; h=${{h%% *}}; \
             if [ \"$h\" = {hash} ]; then mv -f -- \"$t\" \"$d\" || exit 4; \
             else rm -f -- \"$t\"; printf %s \"$h\"; exit 5; fi",
            shell::assign("t", &tmp),
            shell::assign("d", remote),
        );
        let out = self.inner.run_simple(&script).inspect_err(|_| {
            self.remove_remote(&tmp);
        })?;
        match out.status.code() {
            Some(0) => Ok(hash),
            Some(5) => Err(Error::ChecksumMismatch {
                path: lossy(remote),
                endpoint: self.endpoint(),
                local: hash,
                remote: out.stdout_lossy(),
            }),
            _ => {
                self.remove_remote(&tmp);
                Err(self.remote_err(
                    "verify and rename",
                    remote,
                    io::Error::other(out.stderr_lossy().trim().to_owned()),
                ))
            }
        }
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "internal helper mirroring scp_send"
    )]
    fn scp_send(
        &self,
        file: &mut fs::File,
        local: &Path,
        tmp: &Path,
        size: u64,
        mode: u32,
        mtime: u64,
        atime: u64,
    ) -> Result<String> {
        let remote_err = |e: io::Error| self.remote_err("upload", tmp, e);
        let mode = i32::try_from(mode).unwrap_or(0o644);
        let mut channel = self
            .inner
            .ssh
            .scp_send(tmp, mode, size, Some((mtime, atime)))
            .map_err(|e| remote_err(e.into()))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0_u8; SCP_CHUNK];
        let mut sent = 0_u64;
        while sent < size {
            let n = file.read(&mut buf).map_err(local_err("read", local))?;
            if n == 0 {
                return Err(local_err("read", local)(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "file shrank while uploading",
                )));
            }
            let n = n.min(usize::try_from(size - sent).unwrap_or(usize::MAX));
            hasher.update(&buf[..n]);
            channel.write_all(&buf[..n]).map_err(remote_err)?;
            sent += n as u64;
            self.advance(n);
        }
        // The SCP protocol ends a file with a zero byte; without it `scp -t` exits with 1.
        channel.write_all(&[0]).map_err(remote_err)?;
        channel.send_eof().map_err(|e| remote_err(e.into()))?;
        channel.wait_eof().map_err(|e| remote_err(e.into()))?;
        let mut stderr = String::new();
        let _ = channel.stderr().take(4096).read_to_string(&mut stderr);
        channel.close().map_err(|e| remote_err(e.into()))?;
        channel.wait_close().map_err(|e| remote_err(e.into()))?;
        match channel.exit_status() {
            Ok(0) => Ok(hex(&hasher.finalize())),
            Ok(code) => Err(remote_err(io::Error::other(format!(
                "scp exited with code {code}: {}",
                stderr.trim()
            )))),
            Err(e) => Err(remote_err(e.into())),
        }
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "internal helper mirroring scp_send"
    )]
    fn sftp_send(
        &self,
        file: &mut fs::File,
        local: &Path,
        tmp: &Path,
        size: u64,
        mode: u32,
        mtime: u64,
        atime: u64,
    ) -> Result<String> {
        let remote_err = |e: io::Error| self.remote_err("upload", tmp, e);
        let sftp = self.sftp(tmp)?;
        let mut remote = sftp
            .open_mode(
                tmp,
                ssh2::OpenFlags::WRITE
                    | ssh2::OpenFlags::CREATE
                    | ssh2::OpenFlags::TRUNCATE
                    | ssh2::OpenFlags::EXCLUSIVE,
                0o600,
                ssh2::OpenType::File,
            )
            .map_err(|e| remote_err(e.into()))?;
        let hash = if size >= SPLIT_MIN {
            self.sftp_send_split(file, local, tmp, &mut remote, size)?
        } else {
            let mut hasher = Sha256::new();
            let mut buf = vec![0_u8; SFTP_WRITE_CHUNK];
            loop {
                let n = read_full(file, &mut buf).map_err(local_err("read", local))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                remote.write_all(&buf[..n]).map_err(remote_err)?;
                self.advance(n);
            }
            hex(&hasher.finalize())
        };
        remote
            .setstat(ssh2::FileStat {
                size: None,
                uid: None,
                gid: None,
                perm: Some(mode),
                atime: Some(atime),
                mtime: Some(mtime),
            })
            .map_err(|e| remote_err(e.into()))?;
        remote.close().map_err(|e| remote_err(e.into()))?;
        Ok(hash)
    }

    /// Writes a big file in chunks at their offsets, over this session's handle `remote` plus up
    /// to [`SPLIT_HELPERS`] extra connections (each with its own channel window), while another
    /// thread hashes the file in order. A helper that cannot connect, or fails midway, hands its
    /// chunk back; this session writes whatever is left, so the result never depends on them.
    fn sftp_send_split(
        &self,
        file: &fs::File,
        local: &Path,
        tmp: &Path,
        remote: &mut ssh2::File,
        size: u64,
    ) -> Result<String> {
        let chunks = size.div_ceil(SPLIT_CHUNK);
        let next = AtomicU64::new(0);
        let stop = AtomicBool::new(false);
        let returned = Mutex::new(Vec::new());
        let take = || {
            let back = returned
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .pop();
            back.or_else(|| Some(next.fetch_add(1, Ordering::Relaxed)).filter(|&k| k < chunks))
        };
        std::thread::scope(|scope| {
            let hasher = scope.spawn(|| hash_range(file, size));
            let helpers: Vec<_> = (0..SPLIT_HELPERS)
                .map(|_| {
                    scope.spawn(|| {
                        self.split_helper(file, local, tmp, size, &take, &stop, &returned);
                    })
                })
                .collect();
            let mut buf = vec![0_u8; SPLIT_BUFFER];
            let mut mine = || -> Result<()> {
                while let Some(k) = take() {
                    let mut written = 0;
                    self.write_chunk(remote, file, local, tmp, k, size, &mut buf, &mut written)?;
                }
                Ok(())
            };
            let result = mine();
            if result.is_err() {
                stop.store(true, Ordering::Relaxed);
            }
            for helper in helpers {
                let _ = helper.join();
            }
            result?;
            // Chunks a helper gave back after this session ran out of work.
            mine()?;
            let hash = hasher
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("hashing thread panicked")))
                .map_err(local_err("read", local))?;
            Ok(hash)
        })
    }

    /// One extra connection of a split upload: writes chunks until none is left.
    #[expect(
        clippy::too_many_arguments,
        reason = "the shared state of one split upload"
    )]
    fn split_helper(
        &self,
        file: &fs::File,
        local: &Path,
        tmp: &Path,
        size: u64,
        take: &(dyn Fn() -> Option<u64> + Sync),
        stop: &AtomicBool,
        returned: &Mutex<Vec<u64>>,
    ) {
        let Ok(link) = self.inner.options.connect_blocking(&self.inner.endpoint) else {
            return;
        };
        link.session.set_blocking(true);
        let opened = link.session.sftp().and_then(|sftp| {
            let handle =
                sftp.open_mode(tmp, ssh2::OpenFlags::WRITE, 0o600, ssh2::OpenType::File)?;
            Ok((sftp, handle))
        });
        if let Ok((_sftp, mut handle)) = opened {
            let mut buf = vec![0_u8; SPLIT_BUFFER];
            while !stop.load(Ordering::Relaxed) {
                let Some(k) = take() else { break };
                let mut written = 0;
                let wrote = self.write_chunk(
                    &mut handle,
                    file,
                    local,
                    tmp,
                    k,
                    size,
                    &mut buf,
                    &mut written,
                );
                if wrote.is_err() {
                    // This session writes the chunk again: count it once.
                    self.done.fetch_sub(written, Ordering::Relaxed);
                    returned
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push(k);
                    break;
                }
            }
            let _ = handle.close();
        }
        link.disconnect();
    }

    /// Writes chunk `k` of the file at its offset, counting progress in `written` too.
    #[expect(
        clippy::too_many_arguments,
        reason = "internal helper of a split upload"
    )]
    fn write_chunk(
        &self,
        remote: &mut ssh2::File,
        file: &fs::File,
        local: &Path,
        tmp: &Path,
        k: u64,
        size: u64,
        buf: &mut [u8],
        written: &mut u64,
    ) -> Result<()> {
        let remote_err = |e: io::Error| self.remote_err("upload", tmp, e);
        let start = k * SPLIT_CHUNK;
        let end = (start + SPLIT_CHUNK).min(size);
        remote
            .seek(io::SeekFrom::Start(start))
            .map_err(remote_err)?;
        let mut offset = start;
        while offset < end {
            let n = usize::try_from(end - offset)
                .unwrap_or(usize::MAX)
                .min(buf.len());
            file.read_exact_at(&mut buf[..n], offset)
                .map_err(local_err("read", local))?;
            remote.write_all(&buf[..n]).map_err(remote_err)?;
            self.advance(n);
            *written += n as u64;
            offset += n as u64;
        }
        Ok(())
    }

    fn remove_remote(&self, path: &Path) {
        // Best effort: the session may be gone, which is often why we are here.
        let script = format!("{}; rm -f -- \"$t\"", shell::assign("t", path));
        let _ = self.inner.run_simple(&script);
    }

    // ----- download -----------------------------------------------------------------------

    fn download(&mut self, remote: &Path, local: &Path) -> Result<(u64, Option<String>)> {
        let sftp = self.sftp(remote)?;
        let stat = sftp
            .stat(remote)
            .map_err(|e| self.remote_err("download", remote, e.into()))?;
        if stat.is_dir() {
            let mut files = Vec::new();
            let mut dirs = Vec::new();
            walk_remote(&sftp, remote, Path::new(""), &mut dirs, &mut files)
                .map_err(|e| self.remote_err("list", remote, e))?;
            drop(sftp);
            self.total = files.iter().map(|(_, size)| size).sum();
            fs::create_dir_all(local).map_err(local_err("create", local))?;
            for dir in &dirs {
                let target = local.join(dir);
                fs::create_dir_all(&target).map_err(local_err("create", &target))?;
            }
            for (file, _) in &files {
                self.download_file(&remote.join(file), &local.join(file))?;
            }
            Ok((files.len() as u64, None))
        } else {
            drop(sftp);
            self.total = stat.size.unwrap_or(0);
            let hash = self.download_file(remote, local)?;
            Ok((1, Some(hash)))
        }
    }

    fn download_file(&self, remote: &Path, local: &Path) -> Result<String> {
        // Size, mode, mtime and checksum of the source, in one round trip.
        let script = format!(
            "{}; stat -L -c '%s %a %Y' -- \"$d\" && sha256sum < \"$d\"",
            shell::assign("d", remote)
        );
        let out = self.inner.run_simple(&script)?;
        let text = out.stdout_lossy();
        let mut words = text.split_whitespace();
        let parsed = (|| {
            let size: u64 = words.next()?.parse().ok()?;
            let mode = u32::from_str_radix(words.next()?, 8).ok()?;
            let mtime: u64 = words.next()?.parse().ok()?;
            let hash = words.next()?.to_owned();
            Some((size, mode, mtime, hash))
        })();
        let Some((size, mode, mtime, remote_hash)) = parsed.filter(|_| out.status.success()) else {
            return Err(self.remote_err(
                "download",
                remote,
                io::Error::new(
                    io::ErrorKind::NotFound,
                    out.stderr_lossy().trim().to_owned(),
                ),
            ));
        };
        let tmp = temp_sibling(local);
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true).mode(0o600);
        let mut file = options.open(&tmp).map_err(local_err("create", &tmp))?;
        let received = match self.protocol {
            Protocol::Scp => self.scp_receive(remote, &mut file, &tmp, size),
            Protocol::Sftp => self.sftp_receive(remote, &mut file, &tmp),
        };
        let finish = received.and_then(|hash| {
            if hash != remote_hash {
                return Err(Error::ChecksumMismatch {
                    path: lossy(remote),
                    endpoint: self.endpoint(),
                    local: hash,
                    remote: remote_hash.clone(),
                });
            }
            file.set_permissions(fs::Permissions::from_mode(mode))
                .map_err(local_err("set permissions on", &tmp))?;
            file.set_modified(UNIX_EPOCH + Duration::from_secs(mtime))
                .map_err(local_err("set modification time on", &tmp))?;
            file.sync_all().map_err(local_err("write", &tmp))?;
            fs::rename(&tmp, local).map_err(local_err("rename into place", local))?;
            Ok(hash)
        });
        if finish.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        finish
    }

    fn scp_receive(
        &self,
        remote: &Path,
        file: &mut fs::File,
        tmp: &Path,
        size: u64,
    ) -> Result<String> {
        let remote_err = |e: io::Error| self.remote_err("download", remote, e);
        let window = crate::session::window_for_round_trip(
            crate::session::probe_round_trip(&self.inner.ssh),
            SCP_MAX_WINDOW,
        );
        let (mut channel, stat) = self
            .inner
            .ssh
            .scp_recv(remote)
            .map_err(|e| remote_err(e.into()))?;
        // On a long link, widen the receive window (OpenSSH keeps 2 MiB).
        if stat.size() != size {
            return Err(remote_err(io::Error::other(
                "file changed while downloading",
            )));
        }
        let mut hasher = Sha256::new();
        let mut buf = vec![0_u8; SCP_READ_CHUNK];
        let mut got = 0_u64;
        let mut since_check = u64::MAX;
        while got < size {
            // Reading the window state walks libssh2's packet list: do it every 8 MiB only.
            if let Some(target) = window
                && since_check >= u64::from(target / 4)
            {
                let remaining = channel.read_window().remaining;
                if remaining < target / 2 {
                    channel
                        .adjust_receive_window(u64::from(target - remaining), true)
                        .map_err(|e| remote_err(e.into()))?;
                }
                since_check = 0;
            }
            let n = channel.read(&mut buf).map_err(remote_err)?;
            since_check = since_check.saturating_add(n as u64);
            if n == 0 {
                return Err(remote_err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection ended before the whole file arrived",
                )));
            }
            hasher.update(&buf[..n]);
            file.write_all(&buf[..n]).map_err(local_err("write", tmp))?;
            got += n as u64;
            self.advance(n);
        }
        let _ = channel.send_eof();
        let _ = channel.wait_eof();
        let _ = channel.close();
        let _ = channel.wait_close();
        Ok(hex(&hasher.finalize()))
    }

    fn sftp_receive(&self, remote: &Path, file: &mut fs::File, tmp: &Path) -> Result<String> {
        let remote_err = |e: io::Error| self.remote_err("download", remote, e);
        let sftp = self.sftp(remote)?;
        let mut source = sftp.open(remote).map_err(|e| remote_err(e.into()))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0_u8; SFTP_READ_CHUNK];
        loop {
            let n = source.read(&mut buf).map_err(remote_err)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            file.write_all(&buf[..n]).map_err(local_err("write", tmp))?;
            self.advance(n);
        }
        Ok(hex(&hasher.finalize()))
    }
}

/// SHA-256 (hex) of the first `size` bytes of `file`, read at offsets (the file position is
/// left alone).
fn hash_range(file: &fs::File, size: u64) -> io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0_u8; 1 << 20];
    let mut offset = 0;
    while offset < size {
        let n = usize::try_from(size - offset)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        file.read_exact_at(&mut buf[..n], offset)?;
        hasher.update(&buf[..n]);
        offset += n as u64;
    }
    Ok(hex(&hasher.finalize()))
}

fn read_full(file: &mut fs::File, buf: &mut [u8]) -> io::Result<usize> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_sit_next_to_the_target_and_keep_odd_bytes() {
        let target = Path::new(std::ffi::OsStr::from_bytes(b"/data/caf\xe9.blend"));
        let tmp = temp_sibling(target);
        assert_eq!(tmp.parent(), target.parent());
        let name = tmp.file_name().unwrap().as_bytes();
        assert!(name.starts_with(b".caf\xe9.blend.rpb-part-"), "{tmp:?}");
        assert_ne!(temp_sibling(target), tmp);
    }

    #[test]
    fn hex_is_lowercase() {
        assert_eq!(hex(&[0, 255, 16]), "00ff10");
    }
}
