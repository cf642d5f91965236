//! Small filesystem helpers: atomic replace, directory sync, lock files, permission bits.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// Mode for files holding secrets and for the lock files next to them.
pub(crate) const PRIVATE_FILE_MODE: u32 = 0o600;
/// Mode for ordinary files we create (manifests, `.gitignore`, saved versions).
pub(crate) const PUBLIC_FILE_MODE: u32 = 0o644;
/// Mode for the tool's private state directory.
pub(crate) const PRIVATE_DIR_MODE: u32 = 0o700;

/// The parent directory of `path`, treating a bare file name as the current directory.
pub(crate) fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// Creates a named temporary file next to `target`, with `mode`.
pub(crate) fn temp_file_next_to(target: &Path, mode: u32) -> io::Result<tempfile::NamedTempFile> {
    let name = target
        .file_name()
        .map_or_else(|| "file".into(), |n| n.to_string_lossy());
    let file = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .tempfile_in(parent_dir(target))?;
    set_mode(file.as_file(), mode)?;
    Ok(file)
}

/// Replaces `target` with `bytes` atomically: write a temporary file in the same directory,
/// fsync it, rename it over `target`, fsync the directory. Readers see the old or the new
/// content, never a mix; on error the old file is untouched and the temporary file removed.
pub(crate) fn write_atomic(target: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let mut file = temp_file_next_to(target, mode)?;
    file.write_all(bytes)?;
    file.as_file().sync_all()?;
    file.persist(target).map_err(|e| e.error)?;
    sync_dir(parent_dir(target))
}

/// Flushes a directory entry change (rename, create) to disk.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// The permission bits of a file (`None` where the platform has none).
#[cfg_attr(
    unix,
    expect(
        clippy::unnecessary_wraps,
        reason = "None on platforms without permission bits"
    )
)]
pub(crate) fn mode_of(metadata: &fs::Metadata) -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        Some(metadata.permissions().mode() & 0o7777)
    }
    #[cfg(not(unix))]
    {
        let _ = metadata;
        None
    }
}

/// Sets the permission bits of an open file (a no-op where the platform has none).
pub(crate) fn set_mode(file: &File, mode: u32) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(fs::Permissions::from_mode(mode))
    }
    #[cfg(not(unix))]
    {
        let _ = (file, mode);
        Ok(())
    }
}

/// Options to create a new file with `mode` from the start (no window with looser bits).
pub(crate) fn create_new_options(mode: u32) -> OpenOptions {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    options
}

/// Creates `dir` (and parents); applies `mode` when this call created the last component.
pub(crate) fn create_dir(dir: &Path, mode: Option<u32>) -> Result<bool> {
    if dir.is_dir() {
        return Ok(false);
    }
    let map = |source| Error::CreateDirectory {
        path: dir.to_path_buf(),
        source,
    };
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(map)?;
    }
    let mut builder = fs::DirBuilder::new();
    #[cfg(unix)]
    if let Some(mode) = mode {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    match builder.create(dir) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(false),
        Err(e) => Err(map(e)),
    }
}

/// An exclusive advisory lock on a lock file, released when dropped (or when the process dies).
#[derive(Debug)]
pub(crate) struct LockGuard {
    _file: File,
}

/// Takes an exclusive lock on `path` (creating it with mode 0600), waiting at most `timeout`.
pub(crate) fn lock_exclusive(path: &Path, timeout: Duration) -> Result<LockGuard> {
    let map = |source| Error::Lock {
        path: path.to_path_buf(),
        source,
    };
    let mut options = OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(PRIVATE_FILE_MODE);
    }
    let file = options.open(path).map_err(map)?;
    let started = Instant::now();
    let mut pause = Duration::from_millis(2);
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(LockGuard { _file: file }),
            Err(TryLockError::Error(source)) => return Err(map(source)),
            Err(TryLockError::WouldBlock) => {}
        }
        let waited = started.elapsed();
        if waited >= timeout {
            return Err(Error::LockTimeout {
                path: path.to_path_buf(),
                timeout,
            });
        }
        pause = pause.min(timeout.saturating_sub(waited));
        pause_for(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// Blocks the current thread for `pause`. This crate is synchronous by design (it only touches
/// local files); callers in async code run it on a blocking thread.
#[expect(
    clippy::disallowed_methods,
    reason = "sync crate: bounded back-off while another process holds a file lock"
)]
pub(crate) fn pause_for(pause: Duration) {
    std::thread::sleep(pause);
}

/// The lock file that serializes updates of `target` (`.env` → `.env.lock`).
pub(crate) fn lock_path_for(target: &Path) -> PathBuf {
    let mut name = target
        .file_name()
        .map(ToOwned::to_owned)
        .unwrap_or_default();
    name.push(".lock");
    target.with_file_name(name)
}

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_path_is_next_to_the_target() {
        assert_eq!(
            lock_path_for(Path::new("/w/.env")),
            Path::new("/w/.env.lock")
        );
    }

    #[test]
    fn hex_encodes() {
        assert_eq!(hex(&[0, 0xab, 0xff]), "00abff");
    }

    #[test]
    fn second_lock_times_out_then_succeeds_after_release() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lock");
        let first = lock_exclusive(&path, Duration::from_secs(1)).unwrap();
        let err = lock_exclusive(&path, Duration::from_millis(30)).unwrap_err();
        assert!(matches!(err, Error::LockTimeout { .. }), "{err:?}");
        drop(first);
        lock_exclusive(&path, Duration::from_millis(30)).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn atomic_write_sets_mode_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env");
        fs::write(&path, "old").unwrap();
        write_atomic(&path, b"new", PRIVATE_FILE_MODE).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert_eq!(mode_of(&fs::metadata(&path).unwrap()), Some(0o600));
        let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file left behind");
    }
}
