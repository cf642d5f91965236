//! Reading and changing our own `known_hosts` file: pinning a key before the first connection,
//! looking a pin up, forgetting one. Every change holds `<file>.lock` and re-reads the file
//! under it, so two processes meeting the same new server never lose a pin, and the file is
//! replaced whole (an exclusively created temporary file renamed into place), never half
//! written.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::keyblob::{base64, decode_base64, fingerprint, key_type};

/// The longest name accepted for a `known_hosts` entry.
const MAX_NAME_LEN: usize = 255;

/// One recorded host key, as found by [`known_host`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct KnownHost {
    /// Every name on the entry's line (for example the pod id and `[host]:port`).
    pub names: Vec<String>,
    /// The key's algorithm (`ssh-ed25519`).
    pub key_type: String,
    /// Its `SHA256:…` fingerprint.
    pub fingerprint: String,
    /// The key as a `<type> <base64>` line, as [`pin_host_key`] takes it: what pins the same
    /// key under another name (a pod that replaces another on the same network volume).
    pub public_key: String,
    /// The line number in the file (from 1).
    pub line: usize,
}

/// What [`pin_host_key`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Pinned {
    /// The key was recorded.
    Added,
    /// The same key was already recorded under the name.
    Already,
}

/// Checks a name before it is written to or looked up in the file: a name with whitespace, a
/// comma, a control character or a pattern character would never match its own line (or would
/// match others), so a host would look new at every connection.
///
/// # Errors
///
/// [`Error::InvalidHostName`] naming the problem.
pub fn validate_name(name: &str) -> Result<()> {
    let problem = if name.is_empty() {
        Some("it is empty")
    } else if name.len() > MAX_NAME_LEN {
        Some("it is longer than 255 bytes")
    } else if name.starts_with(['@', '#', '|']) {
        Some("it starts with @, # or |, which known_hosts reads as a marker, comment or hash")
    } else if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Some("it contains whitespace or a control character")
    } else if name.contains([',', '*', '?', '!']) {
        Some("it contains , * ? or !, which known_hosts reads as a list or a pattern")
    } else {
        None
    };
    match problem {
        Some(reason) => Err(Error::InvalidHostName {
            name: name.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

/// Records `public_key` (a `ssh-ed25519 AAAA… [comment]` line) under `names` before any
/// connection, so the first contact is verified too. A name that already has this key is left
/// as it is; a name that has another key is an error (forget it first).
///
/// # Errors
///
/// [`Error::InvalidHostName`], [`Error::InvalidPublicKey`], [`Error::HostKeyMismatch`] when a
/// name is pinned to another key, [`Error::KnownHosts`] on I/O failures.
pub fn pin_host_key(known_hosts: &Path, names: &[&str], public_key: &str) -> Result<Pinned> {
    let (_, blob) = parse_public_key(public_key).ok_or_else(|| Error::InvalidPublicKey {
        reason: "expected `TYPE BASE64 [COMMENT]`".into(),
    })?;
    pin_blob(known_hosts, names, &blob)
}

/// [`pin_host_key`] with the key as an SSH wire-format blob.
pub(crate) fn pin_blob(known_hosts: &Path, names: &[&str], blob: &[u8]) -> Result<Pinned> {
    if names.is_empty() {
        return Err(Error::InvalidHostName {
            name: String::new(),
            reason: "no name given",
        });
    }
    for name in names {
        validate_name(name)?;
    }
    let kind = key_type(blob).ok_or_else(|| Error::InvalidPublicKey {
        reason: "the key blob has no algorithm name".into(),
    })?;
    let encoded = base64(blob, true);
    update(known_hosts, |text| {
        let entries = entries(text);
        let mut already = false;
        for name in names {
            for entry in entries.iter().filter(|e| e.names.iter().any(|n| n == name)) {
                if entry.kind == kind && entry.blob == encoded {
                    already = true;
                } else {
                    return Err(Error::HostKeyMismatch {
                        host: (*name).to_owned(),
                        expected: entry.fingerprint(),
                        actual: fingerprint(blob),
                        location: format!(" (line {} of {})", entry.line, known_hosts.display()),
                    });
                }
            }
        }
        if already {
            return Ok((None, Pinned::Already));
        }
        let mut text = text.to_owned();
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        let _ = writeln!(text, "{} {kind} {encoded}", names.join(","));
        Ok((Some(text), Pinned::Added))
    })
}

/// The first entry recorded under `name`, if any.
///
/// # Errors
///
/// [`Error::InvalidHostName`], or [`Error::KnownHosts`] when the file exists but cannot be
/// read.
pub fn known_host(known_hosts: &Path, name: &str) -> Result<Option<KnownHost>> {
    validate_name(name)?;
    let text = read_known_hosts(known_hosts)?;
    Ok(entries(&text)
        .into_iter()
        .find(|entry| entry.names.iter().any(|n| n == name))
        .map(|entry| KnownHost {
            fingerprint: entry.fingerprint(),
            public_key: format!("{} {}", entry.kind, entry.blob),
            key_type: entry.kind,
            names: entry.names,
            line: entry.line,
        }))
}

/// Removes every entry that names `name` (the whole line, with the other names on it, since
/// they were recorded for the same server); returns how many lines were removed.
///
/// # Errors
///
/// [`Error::InvalidHostName`], or [`Error::KnownHosts`] on I/O failures.
pub fn forget_host(known_hosts: &Path, name: &str) -> Result<usize> {
    validate_name(name)?;
    update(known_hosts, |text| {
        let lines: Vec<usize> = entries(text)
            .iter()
            .filter(|entry| entry.names.iter().any(|n| n == name))
            .map(|entry| entry.line)
            .collect();
        if lines.is_empty() {
            return Ok((None, 0));
        }
        let mut kept = String::with_capacity(text.len());
        for (index, line) in text.lines().enumerate() {
            if !lines.contains(&(index + 1)) {
                kept.push_str(line);
                kept.push('\n');
            }
        }
        Ok((Some(kept), lines.len()))
    })
}

/// The file's text; empty when it does not exist.
pub(crate) fn read_known_hosts(path: &Path) -> Result<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(source) => Err(Error::KnownHosts {
            path: path.to_owned(),
            source,
        }),
    }
}

/// The `TYPE` and wire-format blob of a `TYPE BASE64 [COMMENT]` public key line, when the blob
/// is valid base64 and names the same type.
pub fn parse_public_key(line: &str) -> Option<(String, Vec<u8>)> {
    let mut fields = line.split_whitespace();
    let (kind, encoded) = (fields.next()?, fields.next()?);
    let blob = decode_base64(encoded)?;
    (key_type(&blob)?.as_str() == kind).then(|| (kind.to_owned(), blob))
}

struct Entry {
    names: Vec<String>,
    kind: String,
    blob: String,
    line: usize,
}

impl Entry {
    fn fingerprint(&self) -> String {
        decode_base64(&self.blob).map_or_else(
            || format!("{} (unreadable key)", self.kind),
            |blob| fingerprint(&blob),
        )
    }
}

/// The plain entries of the file (hashed entries, markers and comments are skipped).
fn entries(text: &str) -> Vec<Entry> {
    let mut found = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with(['#', '@', '|']) {
            continue;
        }
        let mut fields = line.split_whitespace();
        let (Some(hosts), Some(kind), Some(blob)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        found.push(Entry {
            names: hosts.split(',').map(str::to_owned).collect(),
            kind: kind.to_owned(),
            blob: blob.to_owned(),
            line: index + 1,
        });
    }
    found
}

/// Runs `change` on the file's text while holding `<file>.lock`; when it returns new text,
/// that text replaces the file atomically (mode 0600).
fn update<T>(path: &Path, change: impl FnOnce(&str) -> Result<(Option<String>, T)>) -> Result<T> {
    let err = |source| Error::KnownHosts {
        path: path.to_owned(),
        source,
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(err)?;
    }
    let lock = lock_path(path);
    let lock_file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&lock)
        .map_err(err)?;
    lock_file.lock().map_err(err)?;
    let text = read_known_hosts(path)?;
    let (new_text, result) = change(&text)?;
    if let Some(new_text) = new_text {
        replace(path, &new_text).map_err(err)?;
    }
    drop(lock_file);
    Ok(result)
}

fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

fn replace(path: &Path, text: &str) -> std::io::Result<()> {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".tmp-{}", std::process::id()));
    let tmp = PathBuf::from(name);
    // A leftover from a crashed run of this process id; never followed, never appended to.
    let _ = std::fs::remove_file(&tmp);
    let written = (|| {
        let mut file: File = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;
    use crate::HostKeyPair;

    #[test]
    fn names_that_cannot_match_their_own_line_are_refused() {
        for bad in [
            "", "a b", "a,b", "a\nb", "a\tb", "@cert", "#x", "|1|x", "a*", "a?", "!a",
        ] {
            assert!(
                matches!(validate_name(bad), Err(Error::InvalidHostName { .. })),
                "{bad:?}"
            );
        }
        for good in ["pod-abc123", "[127.0.0.1]:2222", "[::1]:22", "host.example"] {
            validate_name(good).unwrap();
        }
        let err = validate_name("my pod").unwrap_err().to_string();
        assert!(
            err.contains("\"my pod\"") && err.contains("whitespace"),
            "{err}"
        );
    }

    #[test]
    fn pin_look_up_and_forget() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/known_hosts");
        let pair = HostKeyPair::generate_ed25519("one").unwrap();
        let other = HostKeyPair::generate_ed25519("two").unwrap();
        assert!(known_host(&path, "pod-1").unwrap().is_none());
        assert_eq!(
            pin_host_key(&path, &["pod-1"], pair.public_key()).unwrap(),
            Pinned::Added
        );
        assert_eq!(
            pin_host_key(&path, &["pod-1"], pair.public_key()).unwrap(),
            Pinned::Already
        );
        let found = known_host(&path, "pod-1").unwrap().unwrap();
        assert_eq!(found.fingerprint, pair.fingerprint());
        assert_eq!((found.line, found.key_type.as_str()), (1, "ssh-ed25519"));
        let err = pin_host_key(&path, &["pod-1"], other.public_key()).unwrap_err();
        assert!(matches!(err, Error::HostKeyMismatch { .. }), "{err}");
        pin_host_key(&path, &["pod-2", "[10.0.0.2]:22"], other.public_key()).unwrap();
        assert_eq!(forget_host(&path, "pod-1").unwrap(), 1);
        assert_eq!(forget_host(&path, "pod-1").unwrap(), 0);
        assert!(known_host(&path, "pod-1").unwrap().is_none());
        let kept = known_host(&path, "[10.0.0.2]:22").unwrap().unwrap();
        assert_eq!(kept.names, ["pod-2", "[10.0.0.2]:22"]);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(
            pin_host_key(&path, &["pod-3"], "ssh-ed25519 not-base64!").is_err(),
            "a malformed key is refused"
        );
    }

    #[test]
    fn concurrent_first_contacts_keep_every_pin() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_hosts");
        let pairs: Vec<HostKeyPair> = (0..16)
            .map(|i| HostKeyPair::generate_ed25519(&format!("k{i}")).unwrap())
            .collect();
        std::thread::scope(|scope| {
            for (i, pair) in pairs.iter().enumerate() {
                let path = &path;
                scope.spawn(move || {
                    let name = format!("pod-{i}");
                    pin_host_key(path, &[name.as_str()], pair.public_key()).unwrap();
                });
            }
        });
        for (i, pair) in pairs.iter().enumerate() {
            let found = known_host(&path, &format!("pod-{i}")).unwrap();
            assert_eq!(
                found.map(|f| f.fingerprint),
                Some(pair.fingerprint()),
                "pod-{i}"
            );
        }
    }
}
