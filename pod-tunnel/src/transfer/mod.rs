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
//! chunks over the session plus up to a few extra connections (see [`split`]).
//!
//! After a failure the remote temporary file is removed over the same connection if it still
//! works, else over a fresh one, within a few seconds; what could not be removed is named in the
//! error. A transfer that stalls for the I/O timeout fails after about that long: its connection
//! is shut down at once, so that nothing else waits out the timeout again.
//!
//! Layout: this module has the public types and the upload and download flows; they use
//! [`scp`], [`sftp`] and [`split`] to move data, [`verify`] for the checks, [`staging`] for
//! temporary names and cleanup, and [`job`] for what every step shares.

mod job;
mod scp;
mod sftp;
mod split;
mod staging;
mod verify;

use std::fmt::{self, Write as _};
use std::fs;
use std::io;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};
use crate::session::Session;

use job::{Job, Names, ProgressFn, local_err, shown};
pub use job::{Progress, Protocol};
use sftp::{Attributes, make_remote_dir, walk_remote};
use split::SPLIT_MIN;
use staging::{Removal, STAGE_TEMPLATE, removal_script, scp_safe, temp_sibling, with_leftovers};
use verify::{Check, Facts, STALE_MINUTES, ScriptOutput, facts_script, verify_script};

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

fn unix_secs(time: io::Result<SystemTime>) -> u64 {
    time.ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs())
}

impl Job<'_> {
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
                    let size = meta.len();
                    if size >= SPLIT_MIN {
                        self.sftp_send_split(&names, sftp, &file, &tmp, size, &attributes, verify)
                    } else {
                        self.sftp_send(&names, sftp, &file, &tmp, &attributes, verify)
                    }
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
