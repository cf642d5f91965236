//! The container's life: the watcher that reads the pods' boots, and what a container's end
//! does (ending the SSH sessions, `session.sh stop`).

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use runpod_api::models::PodStatus;
use runpod_api::sim::Simulator;
use tokio::process::Command;
use tokio::sync::{mpsc, watch};
use tokio::time::{sleep, timeout};

use super::hostkeys::HostKeys;
use super::paths::Paths;
use super::pids::{descendants, has_pid_files, kill, kill_recorded};
use super::{Error, Result, SESSION_STOP_TIMEOUT};

/// A pod's boot as the watcher sees it, with the boot's number (a restart is a new boot; an
/// SSH service moved to another port is the same one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Boot {
    /// Provisioning or starting (or running without `22/tcp`): the container is coming up.
    Booting(u64),
    /// Running, serving SSH at this endpoint.
    Running(u64, SocketAddr),
}

impl Boot {
    fn number(self) -> u64 {
        match self {
            Self::Booting(number) | Self::Running(number, _) => number,
        }
    }
}

/// The boots of all pods that are up (pods that are down are absent).
fn observe(simulator: &Simulator) -> BTreeMap<String, Boot> {
    simulator
        .pods()
        .into_iter()
        .filter_map(|pod| {
            let id = pod.id.as_str().to_owned();
            let number = simulator.current_boot(&id)?;
            let boot = match simulator.current_ssh_endpoint(&id) {
                Some(endpoint) => Boot::Running(number, endpoint),
                None if matches!(
                    pod.status,
                    PodStatus::Provisioning | PodStatus::Starting | PodStatus::Running
                ) =>
                {
                    Boot::Booting(number)
                }
                None => return None,
            };
            Some((id, boot))
        })
        .collect()
}

/// The relay ports that are some pod's current boot's endpoint.
pub(super) fn live_ports(simulator: &Simulator) -> BTreeSet<u16> {
    ports_of(&observe(simulator))
}

fn ports_of(boots: &BTreeMap<String, Boot>) -> BTreeSet<u16> {
    boots
        .values()
        .filter_map(|boot| match boot {
            Boot::Running(_, endpoint) => Some(endpoint.port()),
            Boot::Booting(_) => None,
        })
        .collect()
}

/// The pods whose boot ended from `before` to `now` (down, or booted again).
fn ended_boots(before: &BTreeMap<String, Boot>, now: &BTreeMap<String, Boot>) -> Vec<String> {
    before
        .iter()
        .filter(|(id, previous)| {
            now.get(*id)
                .is_none_or(|current| current.number() != previous.number())
        })
        .map(|(id, _)| id.clone())
        .collect()
}

/// Whether the change from `before` to `now` ends the machine's container: some pod's boot
/// ended (the pod went down, or booted again) and no pod's boot went on.
fn container_ended(before: &BTreeMap<String, Boot>, now: &BTreeMap<String, Boot>) -> bool {
    let mut ended = false;
    let mut went_on = false;
    for (id, previous) in before {
        match (previous, now.get(id)) {
            (_, None) => ended = true,
            (previous, Some(current)) if current.number() != previous.number() => ended = true,
            (_, Some(_)) => went_on = true,
        }
    }
    ended && !went_on
}

/// Reads the pods every `interval`, publishes the live relay ports, and signals the container
/// task when the container ends.
pub(super) async fn watch_pods(
    simulator: Arc<Simulator>,
    live: watch::Sender<BTreeSet<u16>>,
    container: mpsc::Sender<()>,
    interval: Duration,
    mut host_keys: HostKeys,
    paths: Paths,
    mut stop: watch::Receiver<bool>,
) {
    let mut before = BTreeMap::new();
    loop {
        let now = observe(&simulator);
        // A boot that just began mounts its volume at the pod root, as a container does.
        for (id, boot) in &now {
            if before
                .get(id)
                .is_none_or(|previous: &Boot| previous.number() != boot.number())
            {
                mount_volume(&simulator, &paths, id);
            }
        }
        // A boot that just came up gets its host key before its SSH port opens.
        for (id, boot) in &now {
            let new_boot = before.get(id).is_none_or(|previous: &Boot| {
                !matches!(previous, Boot::Running(number, _) if *number == boot.number())
            });
            if new_boot && matches!(boot, Boot::Running(..)) {
                host_keys.serve_for(&simulator, id).await;
            }
        }
        let ports = ports_of(&now);
        live.send_if_modified(|current| {
            let changed = *current != ports;
            if changed {
                current.clone_from(&ports);
            }
            changed
        });
        // A pod of a farm ends alone: its node's daemons and tasks go with it, as with a
        // container's end (the others' go on).
        for id in ended_boots(&before, &now) {
            super::farm::end_pod_node(&paths.farm_run, &paths.farm_state_dirs(), &id);
        }
        if container_ended(&before, &now) {
            tracing::debug!("the local pod's container ended");
            // A full channel already holds a pending stop: one run covers both.
            let _ = container.try_send(());
        }
        before = now;
        tokio::select! {
            () = sleep(interval) => {}
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
    }
}

/// Points the pod root at the volume pod `pod_id` mounts: its network volume's folder, or the
/// machine's disk. Failures are logged: the pod then sees another volume, which setup and the
/// client's checks report.
fn mount_volume(simulator: &Simulator, paths: &Paths, pod_id: &str) {
    let Some(pod) = simulator.pod(pod_id) else {
        return;
    };
    let target = match pod.mounts.network.first() {
        Some(mount) => paths.volume_dir(&mount.volume_id),
        None => Ok(paths.machine_disk.clone()),
    };
    match target.and_then(|target| {
        paths
            .point_pod_root_at(&target)
            .map(|changed| (target, changed))
    }) {
        Ok((target, true)) => {
            tracing::debug!(pod_id, target = %target.display(), "the pod root now leads to the pod's volume");
        }
        Ok((_, false)) => {}
        Err(error) => {
            tracing::warn!(pod_id, %error, "mounting the pod's volume at the pod root failed");
        }
    }
}

/// Does what a container's end does to its processes: ends the SSH sessions (when no pod runs
/// any more) and stops the Blender session by its PID files.
pub(super) async fn container_life(
    mut ended: mpsc::Receiver<()>,
    simulator: Arc<Simulator>,
    sshd_pid: Arc<AtomicU32>,
    paths: Paths,
    env: BTreeMap<String, String>,
) {
    while ended.recv().await.is_some() {
        let nothing_runs = observe(&simulator)
            .values()
            .all(|boot| matches!(boot, Boot::Booting(_)));
        let sshd_pid = sshd_pid.load(Ordering::SeqCst);
        if nothing_runs && sshd_pid != 0 {
            let pid = sshd_pid;
            let sessions = descendants(pid);
            for session in &sessions {
                kill(*session);
            }
            if !sessions.is_empty() {
                tracing::debug!(
                    count = sessions.len(),
                    "ended the SSH sessions of the stopped pod"
                );
            }
        }
        if let Err(error) = stop_session(&paths, &env).await {
            tracing::warn!(error = %error, "stopping the session of a stopped local pod failed");
            kill_recorded(&paths.run_dir());
        }
    }
}

/// Whether a render job was ever started here (`jobs/<id>/job.pid`): `session.sh stop` ends
/// the running ones, as a container's end does.
fn has_render_jobs(rpb_home: &Path) -> bool {
    std::fs::read_dir(rpb_home.join("jobs")).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|entry| entry.path().join("job.pid").is_file())
    })
}

/// Runs this crate's `session.sh stop` against the pod root, bounded, with its output in
/// `logs/container.log`. Does nothing when no PID file exists.
pub(super) async fn stop_session(paths: &Paths, env: &BTreeMap<String, String>) -> Result<()> {
    if !has_pid_files(&paths.run_dir())
        && !has_render_jobs(&paths.rpb_home)
        && !has_pid_files(&paths.farm_run)
    {
        return Ok(());
    }
    let log = paths.logs.join("container.log");
    let fail = |source| Error::SessionStop {
        log: log.clone(),
        source,
    };
    let open_log = || {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
    };
    let stdout = open_log().map_err(fail)?;
    let stderr = open_log().map_err(fail)?;
    let mut child = Command::new("bash")
        .arg(paths.session_script())
        .arg("stop")
        .env_remove("VNC_PASSWORD")
        .env_remove("VNC_PASSWORD_FILE")
        .envs(env)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .kill_on_drop(true)
        .spawn()
        .map_err(fail)?;
    let Ok(status) = timeout(SESSION_STOP_TIMEOUT, child.wait()).await else {
        let _ = child.start_kill();
        return Err(fail(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("session.sh stop did not finish within {SESSION_STOP_TIMEOUT:?}"),
        )));
    };
    let status = status.map_err(fail)?;
    if status.success() {
        Ok(())
    } else {
        Err(fail(io::Error::other(format!(
            "session.sh stop exited with {status}"
        ))))
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, SocketAddrV4};

    use super::*;

    fn up(boot: u64, port: u16) -> Boot {
        Boot::Running(
            boot,
            SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)),
        )
    }

    fn boots(list: &[(&str, Boot)]) -> BTreeMap<String, Boot> {
        list.iter()
            .map(|(id, boot)| ((*id).to_owned(), *boot))
            .collect()
    }

    #[test]
    fn the_container_ends_when_the_only_boot_ends() {
        let running = boots(&[("a", up(1, 1))]);
        assert!(
            container_ended(&running, &boots(&[])),
            "stopped or terminated"
        );
        assert!(
            container_ended(&running, &boots(&[("a", Boot::Booting(2))])),
            "restarting"
        );
        assert!(
            container_ended(&running, &boots(&[("a", up(2, 2))])),
            "restarted"
        );
        assert!(
            !container_ended(&running, &boots(&[("a", up(1, 2))])),
            "sshd moved to another port within the boot"
        );
        assert!(!container_ended(&running, &running), "still running");
        let booting = boots(&[("a", Boot::Booting(1))]);
        assert!(!container_ended(&booting, &running), "came up");
        assert!(
            container_ended(&booting, &boots(&[])),
            "stopped while booting"
        );
        assert!(!container_ended(&boots(&[]), &running), "a new pod");
    }

    #[test]
    fn another_pod_s_boot_keeps_the_container() {
        let two = boots(&[("a", up(1, 1)), ("b", up(1, 2))]);
        assert!(!container_ended(&two, &boots(&[("b", up(1, 2))])));
        assert!(
            container_ended(&two, &boots(&[("b", up(2, 3))])),
            "both ended"
        );
        assert_eq!(ports_of(&two), BTreeSet::from([1, 2]));
        assert!(ports_of(&boots(&[("a", Boot::Booting(1))])).is_empty());
    }
}
