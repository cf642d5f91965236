//! Host-key policies and our own `known_hosts` file.
//!
//! The file uses OpenSSH's format (`HOSTS KEYTYPE BASE64 [COMMENT]`), so `ssh -o
//! UserKnownHostsFile=FILE` and `ssh-keygen -R '[host]:port' -f FILE` work on it too. Hashed
//! entries and `@` markers are ignored.

use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::keyblob::{base64, decode_base64, fingerprint, key_type};
use crate::known_hosts::{Pinned, pin_blob, read_known_hosts, validate_name};

/// How the server's host key is checked on every connect (and on every reconnect).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HostKeyPolicy {
    /// Accept only a server whose key has this fingerprint (`SHA256:…`, as `ssh-keygen -l`
    /// prints it).
    Pinned(String),
    /// Accept only a key already recorded in the known-hosts file; never record anything.
    Strict {
        /// Our own known-hosts file.
        known_hosts: PathBuf,
        /// Look the key up under this identity (for example a pod id) instead of `[host]:port`.
        alias: Option<String>,
    },
    /// Trust on first use: record an unknown key in the known-hosts file, then require it.
    AcceptNew {
        /// Our own known-hosts file (created with mode 0600 if missing).
        known_hosts: PathBuf,
        /// Record and look the key up under this identity (for example a pod id) as well, so a
        /// server that moves to another address keeps its trust.
        alias: Option<String>,
    },
    /// Accept any key. Only for throwaway test servers: every connect logs a warning.
    Insecure,
}

impl HostKeyPolicy {
    /// [`HostKeyPolicy::Strict`] on `known_hosts`, keyed by `[host]:port`.
    pub fn strict(known_hosts: impl Into<PathBuf>) -> Self {
        Self::Strict {
            known_hosts: known_hosts.into(),
            alias: None,
        }
    }

    /// [`HostKeyPolicy::AcceptNew`] on `known_hosts`, keyed by `[host]:port`.
    pub fn accept_new(known_hosts: impl Into<PathBuf>) -> Self {
        Self::AcceptNew {
            known_hosts: known_hosts.into(),
            alias: None,
        }
    }

    /// [`HostKeyPolicy::Pinned`] to a `SHA256:…` fingerprint.
    pub fn pinned(fingerprint: impl Into<String>) -> Self {
        Self::Pinned(fingerprint.into())
    }

    /// Sets the identity under which keys are recorded and looked up (strict and accept-new
    /// only; ignored otherwise).
    #[must_use]
    pub fn with_alias(mut self, identity: impl Into<String>) -> Self {
        match &mut self {
            Self::Strict { alias, .. } | Self::AcceptNew { alias, .. } => {
                *alias = Some(identity.into());
            }
            Self::Pinned(_) | Self::Insecure => {}
        }
        self
    }
}

/// Checks `key_blob` (the server's host key in SSH wire format) for `host:port` under `policy`.
pub(crate) fn verify(policy: &HostKeyPolicy, host: &str, port: u16, key_blob: &[u8]) -> Result<()> {
    let actual = fingerprint(key_blob);
    let host_port = host_port_name(host, port);
    match policy {
        HostKeyPolicy::Insecure => {
            tracing::warn!(
                host = %host_port,
                fingerprint = %actual,
                "host key NOT verified (insecure policy)"
            );
            Ok(())
        }
        HostKeyPolicy::Pinned(expected) => {
            if normalize_fingerprint(expected) == normalize_fingerprint(&actual) {
                Ok(())
            } else {
                Err(Error::HostKeyMismatch {
                    host: host_port,
                    expected: expected.clone(),
                    actual,
                    location: String::new(),
                })
            }
        }
        HostKeyPolicy::Strict { known_hosts, alias }
        | HostKeyPolicy::AcceptNew { known_hosts, alias } => {
            if let Some(alias) = alias {
                validate_name(alias)?;
            }
            let lookup = alias.clone().unwrap_or_else(|| host_port.clone());
            let text = read_known_hosts(known_hosts)?;
            match check(&text, &lookup, key_blob) {
                Check::Match => Ok(()),
                Check::Mismatch { line, expected } => Err(Error::HostKeyMismatch {
                    host: lookup,
                    expected,
                    actual,
                    location: format!(" (line {line} of {})", known_hosts.display()),
                }),
                Check::NotFound if matches!(policy, HostKeyPolicy::Strict { .. }) => {
                    Err(Error::HostKeyUnknown {
                        host: lookup,
                        actual,
                        known_hosts: known_hosts.clone(),
                    })
                }
                Check::NotFound => {
                    let mut names = vec![host_port.as_str()];
                    if let Some(alias) = alias {
                        names.insert(0, alias.as_str());
                    }
                    // Checked again under the lock: another process may have recorded a key
                    // for this name since the read above.
                    match pin_blob(known_hosts, &names, key_blob)? {
                        Pinned::Added => tracing::warn!(
                            host = %lookup,
                            fingerprint = %actual,
                            file = %known_hosts.display(),
                            "first contact: trusted and recorded a new host key (accept-new)"
                        ),
                        Pinned::Already => {}
                    }
                    Ok(())
                }
            }
        }
    }
}

/// `[host]:port`, or plain `host` for port 22, as OpenSSH writes it.
pub(crate) fn host_port_name(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_owned()
    } else {
        format!("[{host}]:{port}")
    }
}

fn normalize_fingerprint(fp: &str) -> &str {
    fp.trim()
        .trim_start_matches("SHA256:")
        .trim_end_matches('=')
}

#[derive(Debug, PartialEq, Eq)]
enum Check {
    Match,
    Mismatch { line: usize, expected: String },
    NotFound,
}

fn check(text: &str, name: &str, key_blob: &[u8]) -> Check {
    let key_type = key_type(key_blob);
    let key_b64 = base64(key_blob, true);
    let mut first_mismatch = None;
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('@') {
            continue;
        }
        let mut fields = line.split_whitespace();
        let (Some(hosts), Some(kind), Some(blob)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if !hosts.split(',').any(|h| h == name) {
            continue;
        }
        if Some(kind) == key_type.as_deref() && blob == key_b64 {
            return Check::Match;
        }
        if first_mismatch.is_none() {
            let expected = decode_base64(blob)
                .map_or_else(|| format!("{kind} (unreadable key)"), |b| fingerprint(&b));
            first_mismatch = Some(Check::Mismatch {
                line: index + 1,
                expected,
            });
        }
    }
    first_mismatch.unwrap_or(Check::NotFound)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(kind: &str, body: &[u8]) -> Vec<u8> {
        let mut b = u32::try_from(kind.len()).unwrap().to_be_bytes().to_vec();
        b.extend_from_slice(kind.as_bytes());
        b.extend_from_slice(body);
        b
    }

    #[test]
    fn base64_round_trips_and_matches_known_values() {
        assert_eq!(base64(b"foobar", true), "Zm9vYmFy");
        assert_eq!(base64(b"fooba", true), "Zm9vYmE=");
        assert_eq!(base64(b"foob", false), "Zm9vYg");
        for len in 0..20 {
            let data: Vec<u8> = (0..len).map(|i: u8| i.wrapping_mul(37)).collect();
            assert_eq!(decode_base64(&base64(&data, true)).unwrap(), data);
        }
    }

    #[test]
    fn check_finds_match_mismatch_and_absence() {
        let key = blob("ssh-ed25519", &[1; 32]);
        let other = blob("ssh-ed25519", &[2; 32]);
        let text = format!(
            "# comment\n[127.0.0.1]:2222 ssh-ed25519 {}\npod-1,[10.0.0.1]:22 ssh-ed25519 {}\n",
            base64(&key, true),
            base64(&other, true)
        );
        assert_eq!(check(&text, "[127.0.0.1]:2222", &key), Check::Match);
        assert_eq!(
            check(&text, "pod-1", &key),
            Check::Mismatch {
                line: 3,
                expected: fingerprint(&other)
            }
        );
        assert_eq!(check(&text, "[127.0.0.1]:2223", &key), Check::NotFound);
    }

    #[test]
    fn accept_new_records_then_requires_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/known_hosts");
        let policy = HostKeyPolicy::accept_new(&path).with_alias("pod-7");
        let key = blob("ssh-ed25519", &[3; 32]);
        verify(&policy, "127.0.0.1", 2200, &key).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("pod-7,[127.0.0.1]:2200 ssh-ed25519 "),
            "{text}"
        );
        // The same identity at another address keeps its trust.
        verify(&policy, "10.1.1.1", 40022, &key).unwrap();
        let err = verify(&policy, "10.1.1.1", 40022, &blob("ssh-ed25519", &[4; 32]))
            .unwrap_err()
            .to_string();
        assert!(err.contains(&fingerprint(&key)), "{err}");
        assert!(err.contains("line 1 of"), "{err}");
        let strict = HostKeyPolicy::strict(&path);
        verify(&strict, "127.0.0.1", 2200, &key).unwrap();
        assert!(matches!(
            verify(&strict, "127.0.0.1", 2201, &key),
            Err(Error::HostKeyUnknown { .. })
        ));
    }

    #[test]
    fn pinned_accepts_with_or_without_prefix() {
        let key = blob("ssh-ed25519", &[5; 32]);
        let fp = fingerprint(&key);
        verify(&HostKeyPolicy::pinned(fp.clone()), "h", 22, &key).unwrap();
        verify(
            &HostKeyPolicy::pinned(fp.trim_start_matches("SHA256:")),
            "h",
            22,
            &key,
        )
        .unwrap();
        assert!(verify(&HostKeyPolicy::pinned("SHA256:abc"), "h", 22, &key).is_err());
    }
}
