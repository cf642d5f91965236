//! Server-side checks: the scripts that read a download source's size, mode, time and SHA-256,
//! and that verify an uploaded temporary file and rename it into place; and the local end of a
//! download's check.

use std::fmt::Write as _;
use std::fs;
use std::io::{self, Read as _, Write as _};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::time::{Duration, Instant, UNIX_EPOCH};

use crate::error::{Error, Result};
use crate::link::millis;
use crate::output::ExecOutput;
use crate::shell;

use super::job::{Job, Names};
use super::staging::{parent_of, temp_stem};

/// The most bytes the streamed check is told in one line (a split upload's chunk): all it may
/// have left to hash once told the end.
pub(super) const STREAMED_LINE_MAX: u64 = 4 << 20;
/// Temporary files of earlier, failed transfers to the same destination older than this are
/// removed after a successful upload (younger ones may belong to a transfer still running).
pub(super) const STALE_MINUTES: u32 = 30;

impl Job<'_> {
    /// Runs `send` with the streamed verification script started (see [`Check::Streamed`]);
    /// `send` tells it what it must and returns the hash of what was sent and whether the whole
    /// file must be hashed again. The script's verdict, or `send`'s error (the script is then
    /// dropped: it renames nothing, and at most removes the temporary file).
    pub(super) fn streamed_verify(
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
    pub(super) fn tell(
        &self,
        names: &Names,
        verify: &mut ssh2::Channel,
        lines: &str,
    ) -> Result<()> {
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
            self.checksum_time(STREAMED_LINE_MAX)
        };
        self.collect(
            names,
            "verifying the checksum and renaming into place",
            verify,
            wait,
        )
    }

    /// Checks the hash of the received bytes against the remote one, sets mode and modification
    /// time, flushes the local temporary file to disk and renames it onto `local`.
    pub(super) fn finish_download(
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
    pub(super) fn missing_source(&self, names: &Names, stderr: &[u8]) -> Error {
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
    pub(super) fn start_facts(
        &self,
        names: &Names,
        remote: &Path,
        size_hint: u64,
    ) -> Result<Pending> {
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
    pub(super) fn collect_facts(&self, names: &Names, pending: Pending) -> Result<Facts> {
        let step = "reading the remote file's size and checksum";
        let wait = pending.deadline.saturating_duration_since(Instant::now());
        let out = self.collect(names, step, pending.channel, wait)?;
        Facts::parse(out.code == Some(0), &out.stdout)
            .ok_or_else(|| self.missing_source(names, &out.stderr))
    }

    /// Reads a started script's output (4 KiB of each stream at most) and exit status, waiting
    /// at most `wait` (and at least one I/O timeout) for each step.
    pub(super) fn collect(
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
    pub(super) fn discard(&self, mut channel: ssh2::Channel) {
        let ssh = &self.inner.ssh;
        ssh.set_blocking(false);
        let _ = channel.close();
        drop(channel);
        ssh.set_blocking(true);
    }
}

/// How a server-side script of ours ended.
pub(super) struct ScriptOutput {
    pub(super) code: Option<i32>,
    pub(super) stdout: Vec<u8>,
    pub(super) stderr: Vec<u8>,
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

/// How the verification script knows the expected hash.
pub(super) enum Check<'a> {
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
pub(super) struct Pending {
    pub(super) channel: ssh2::Channel,
    deadline: Instant,
    /// How long opening its channel took: one round trip.
    pub(super) round_trip: Duration,
}

/// What a download needs to know of its remote source.
pub(super) struct Facts {
    pub(super) size: u64,
    pub(super) mode: u32,
    pub(super) mtime: u64,
    /// SHA-256 (hex).
    pub(super) hash: String,
}

impl Facts {
    /// Reads the output of [`facts_script`] (words after the first four are the caller's).
    pub(super) fn parse(success: bool, stdout: &[u8]) -> Option<Self> {
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
pub(super) fn facts_script(remote: &Path) -> String {
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
pub(super) fn verify_script(
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
    use sha2::{Digest as _, Sha256};

    use super::super::job::hex;
    use super::super::staging::temp_sibling;
    use super::*;

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
}
