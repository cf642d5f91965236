//! The local pod's private sshd: pod-tunnel's fixture with the pod environment in every session
//! and its keys in the state directory (the host key made once, so it never changes), driven
//! on tokio's blocking pool since the fixture's API blocks.

use std::collections::BTreeMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use pod_tunnel::fixture::{self, LocalSshd};

use super::paths::Paths;
use super::{Error, Result};

/// The running fixture, shared with the blocking tasks that stop and restart it.
pub(super) type SharedSshd = Arc<Mutex<LocalSshd>>;

/// What start-up learns from the fixture.
pub(super) struct Started {
    pub(super) sshd: SharedSshd,
    pub(super) address: SocketAddr,
    pub(super) pid: u32,
    pub(super) user: String,
    pub(super) host_public_key: String,
    pub(super) host_key_fingerprint: String,
}

/// Generates the keys that are missing, writes `sshd_config` and starts sshd on a free port.
pub(super) async fn start(
    paths: &Paths,
    env: &BTreeMap<String, String>,
    limit: Duration,
) -> Result<Started> {
    let builder = LocalSshd::builder()
        .dir(&paths.sshd_dir)
        .host_key(paths.host_keys.join("ssh_host_ed25519_key"))
        .client_key(&paths.client_key)
        .log(paths.logs.join("sshd.log"))
        .envs(env.clone())
        .key_comment("rpb-local-pod")
        .start_timeout(limit);
    let started = tokio::task::spawn_blocking(move || -> fixture::Result<Started> {
        let sshd = builder.start()?;
        Ok(Started {
            address: sshd.addr(),
            pid: sshd.pid().unwrap_or(0),
            user: sshd.user().to_owned(),
            host_public_key: sshd.host_public_key()?,
            host_key_fingerprint: sshd.host_key_fingerprint()?,
            sshd: Arc::new(Mutex::new(sshd)),
        })
    })
    .await;
    match started {
        Ok(Ok(started)) => Ok(started),
        Ok(Err(error)) => Err(local_error(error, paths)),
        Err(join) => Err(Error::Sshd {
            address: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            log: paths.logs.join("sshd.log"),
            source: io::Error::other(join),
        }),
    }
}

/// Kills sshd and every process it forked (SIGKILL, by PID) and waits for it to be reaped.
pub(super) async fn stop(sshd: &SharedSshd) {
    let sshd = sshd.clone();
    let _ = tokio::task::spawn_blocking(move || lock(&sshd).stop()).await;
}

/// Starts sshd again on its port (`address`) with its host key; returns its new PID.
pub(super) async fn restart(sshd: &SharedSshd, address: SocketAddr, paths: &Paths) -> Result<u32> {
    let shared = sshd.clone();
    let restarted = tokio::task::spawn_blocking(move || {
        let mut sshd = lock(&shared);
        sshd.restart().map(|()| sshd.pid().unwrap_or(0))
    })
    .await;
    match restarted {
        Ok(Ok(pid)) => Ok(pid),
        Ok(Err(error)) => Err(local_error(error, paths)),
        Err(join) => Err(Error::Sshd {
            address,
            log: paths.logs.join("sshd.log"),
            source: io::Error::other(join),
        }),
    }
}

fn lock(sshd: &Mutex<LocalSshd>) -> std::sync::MutexGuard<'_, LocalSshd> {
    sshd.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The local pod's error for a fixture error, as the local pod reported it before the fixture
/// moved to pod-tunnel.
fn local_error(error: fixture::Error, paths: &Paths) -> Error {
    match error {
        fixture::Error::MissingProgram { program, package } => Error::MissingPackages {
            missing: format!("{program} (Debian package {package})"),
            packages: package.to_owned(),
        },
        fixture::Error::UnsafePath { path } => Error::UnsupportedPath { path },
        fixture::Error::Prepare { path, source } => Error::Prepare { path, source },
        fixture::Error::Keygen { path, source } => Error::Keygen { path, source },
        fixture::Error::UnknownUser { uid } => Error::UnknownUser { uid },
        fixture::Error::FreePort(source) => Error::Bind {
            address: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            source,
        },
        fixture::Error::Start {
            port, log, source, ..
        } => Error::Sshd {
            address: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            log,
            source,
        },
        other => Error::Prepare {
            path: paths.sshd_dir.clone(),
            source: io::Error::other(other),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn fixture_errors_become_the_local_pod_s_own() {
        let paths = Paths::new(Path::new("/state"));
        let error = local_error(
            fixture::Error::Start {
                port: 2222,
                log: "/state/logs/sshd.log".into(),
                log_tail: String::new(),
                source: io::Error::new(io::ErrorKind::TimedOut, "no SSH banner"),
            },
            &paths,
        );
        assert_eq!(
            error.to_string(),
            "sshd did not start on 127.0.0.1:2222; see its log /state/logs/sshd.log"
        );
        let error = local_error(
            fixture::Error::MissingProgram {
                program: "ssh-keygen",
                package: "openssh-client",
            },
            &paths,
        );
        assert!(
            error
                .to_string()
                .contains("apt-get install -y --no-install-recommends openssh-client"),
            "{error}"
        );
        let error = local_error(fixture::Error::NotRunning { port: 1 }, &paths);
        assert!(matches!(error, Error::Prepare { .. }), "{error:?}");
        assert!(std::error::Error::source(&error).is_some());
    }
}
