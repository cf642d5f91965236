//! Temporary names, staging directories for names SCP cannot carry, and removing what a failed
//! transfer left on the server.

use std::fmt::Write as _;
use std::io;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sha2::{Digest as _, Sha256};

use crate::connect::Options;
use crate::error::{Error, Result};
use crate::link::millis;
use crate::output::ExecOutput;
use crate::session::{Inner, Session};
use crate::shell;

use super::job::{Job, Names, hex, shown};

/// Where private staging directories for SCP go on the server (`mktemp -d` template).
pub(super) const STAGE_TEMPLATE: &str = "/tmp/rpb-scp.XXXXXXXXXX";
/// Longest part of the destination's name kept in a temporary name (`NAME_MAX` is 255).
const TEMP_STEM_MAX: usize = 80;

fn is_safe_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"._-".contains(&b)
}

/// Whether SCP (libssh2's quoting of the `scp -t/-f` command line, and the protocol header) can
/// carry `path` as it is: only ASCII letters, digits and `._-/+,@`, and no leading dash.
pub(super) fn scp_safe(path: &Path) -> bool {
    let bytes = path.as_os_str().as_bytes();
    bytes.first().is_some_and(|&b| b != b'-')
        && bytes
            .iter()
            .all(|&b| is_safe_byte(b) || b"/+,@".contains(&b))
}

/// The destination's name as it appears in temporary names: itself when it is short and made of
/// ASCII letters, digits, `.`, `_` and `-`; otherwise those bytes kept (others as `_`), cut short,
/// and 8 hex digits of its SHA-256, so the same destination always gets the same stem.
pub(super) fn temp_stem(name: &[u8]) -> String {
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
pub(super) fn temp_sibling(path: &Path) -> PathBuf {
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
pub(super) fn parent_of(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// How long removing temporary files after a failure may take: half the I/O timeout, within
/// 2 to 5 seconds.
fn cleanup_budget(io_timeout: Duration) -> Duration {
    (io_timeout / 2).clamp(Duration::from_secs(2), Duration::from_secs(5))
}

/// A shell script removing `files` (`rm -f`) and `dirs` (`rm -rf`); exits 0 when all are gone.
pub(super) fn removal_script(files: &[&Path], dirs: &[&Path]) -> String {
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
pub(super) enum Removal {
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
pub(super) fn with_leftovers(mut error: Error, left: Vec<String>) -> Error {
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
    /// After a failure: removes the remote temporary `files` and staging `dirs`, and names in
    /// `error` whatever could not be confirmed removed. Never replaces `error`.
    pub(super) fn clean_up(&self, error: Error, files: &[&Path], dirs: &[&Path]) -> Error {
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
    pub(super) fn remove_remote(&self, removal: &Removal) -> bool {
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
    pub(super) fn stage_directory(&self, names: &Names, target: &Path) -> Result<PathBuf> {
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
    pub(super) fn parse_stage(
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
}
