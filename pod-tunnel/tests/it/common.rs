//! Shared helpers.

use std::path::{Path, PathBuf};
use std::time::Duration;

use pod_tunnel::{Connector, Endpoint, HostKeyPolicy, Session, SessionBuilder};
use test_support::sshd::Sshd;

/// A started sshd plus a scratch directory for `known_hosts` files and test data.
pub(crate) struct Fixture {
    pub(crate) sshd: Sshd,
    pub(crate) dir: tempfile::TempDir,
}

impl Fixture {
    pub(crate) fn start() -> Fixture {
        Self::start_with(&[])
    }

    pub(crate) fn start_with(extra: &[&str]) -> Fixture {
        let sshd = Sshd::start_with(extra).expect("start the sshd fixture");
        let dir = tempfile::tempdir().expect("tempdir");
        Fixture { sshd, dir }
    }

    pub(crate) fn known_hosts(&self) -> PathBuf {
        self.dir.path().join("known_hosts")
    }

    /// A builder with fast timeouts and accept-new into our scratch `known_hosts`.
    pub(crate) fn builder(&self) -> SessionBuilder {
        builder_for(&self.sshd, HostKeyPolicy::accept_new(self.known_hosts()))
    }

    pub(crate) fn connector(&self) -> Connector {
        self.builder().build().expect("valid settings")
    }

    pub(crate) async fn session(&self) -> Session {
        self.connector().connect().await.expect("connect to sshd")
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

pub(crate) fn builder_for(sshd: &Sshd, policy: HostKeyPolicy) -> SessionBuilder {
    Session::builder()
        .endpoint(Endpoint::new("127.0.0.1", sshd.port()))
        .user(sshd.user())
        .identity_file(sshd.client_key())
        .host_key_policy(policy)
        .connect_timeout(Duration::from_secs(5))
        .io_timeout(Duration::from_secs(15))
}

/// Deterministic pseudo-random bytes (xorshift), so data corruption cannot hide in zeros.
pub(crate) fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

pub(crate) fn sha256_file(path: &Path) -> String {
    let out = std::process::Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// The full error chain, for assertions on messages.
pub(crate) fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        text.push_str(" :: ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
