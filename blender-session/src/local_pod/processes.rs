//! Everything a running local pod keeps going (simulator, sshd, relays, watcher), started and
//! stopped together.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

use runpod_api::sim::{Simulator, SshEndpoints};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::timeout;

use super::boot::{container_life, stop_session, watch_pods};
use super::hostkeys::HostKeys;
use super::paths::Paths;
use super::pids::kill_recorded;
use super::relay::{Relay, relay, reserve};
use super::sshd::{self, SharedSshd, Started};
use super::{Error, LocalPodBuilder, Result, SESSION_STOP_TIMEOUT};

/// Everything running: simulator, sshd, relays, watcher.
pub(super) struct Processes {
    pub(super) simulator: Arc<Simulator>,
    /// The private sshd; dropping the last handle kills it (by PID, without waiting).
    pub(super) sshd: SharedSshd,
    /// sshd's address, the same across restarts.
    pub(super) sshd_address: SocketAddr,
    /// sshd's PID for the container task, which outlives a restart of sshd.
    pub(super) sshd_pid: Arc<AtomicU32>,
    pub(super) relay_ports: Vec<u16>,
    relays: Vec<JoinHandle<()>>,
    /// The watcher's end flag; dropping it also ends the watcher.
    stop_watcher: watch::Sender<bool>,
    watcher: JoinHandle<()>,
    container: JoinHandle<()>,
}

impl Processes {
    pub(super) async fn start(
        paths: &Paths,
        env: &BTreeMap<String, String>,
        api_key: &str,
        options: &LocalPodBuilder,
        sshd: Started,
    ) -> Result<Self> {
        let mut reserved = Vec::with_capacity(options.relays);
        for _ in 0..options.relays {
            reserved.push(reserve(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?);
        }
        let relay_ports = reserved
            .iter()
            .map(|socket| {
                socket
                    .local_addr()
                    .ok()
                    .and_then(|address| address.as_socket())
                    .map_or(0, |address| address.port())
            })
            .collect::<Vec<_>>();
        let endpoints = relay_ports
            .iter()
            .map(|port| SocketAddr::from((Ipv4Addr::LOCALHOST, *port)))
            .collect();
        let simulator = Simulator::builder()
            .api_key(api_key)
            .timings(options.timings.clone())
            .ssh_endpoints(SshEndpoints::Rotating(endpoints))
            .start()
            .await
            .map_err(Error::Simulator)?;
        let simulator = Arc::new(simulator);

        let (live_tx, live_rx) = watch::channel(BTreeSet::new());
        let relays = reserved
            .into_iter()
            .zip(&relay_ports)
            .map(|(socket, port)| {
                tokio::spawn(relay(Relay {
                    port: *port,
                    reserved: Some(socket),
                    target: sshd.address,
                    live: live_rx.clone(),
                    simulator: simulator.clone(),
                }))
            })
            .collect();
        let (container_tx, container_rx) = mpsc::channel(1);
        let sshd_pid = Arc::new(AtomicU32::new(sshd.pid));
        let container = tokio::spawn(container_life(
            container_rx,
            simulator.clone(),
            sshd_pid.clone(),
            paths.clone(),
            env.clone(),
        ));
        let (stop_watcher, stop_rx) = watch::channel(false);
        let host_keys = HostKeys::new(
            paths,
            sshd_pid.clone(),
            sshd.address,
            options.pod_host_keys,
            options.fresh_host_keys,
        );
        let watcher = tokio::spawn(watch_pods(
            simulator.clone(),
            live_tx,
            container_tx,
            options.poll_interval,
            host_keys,
            paths.clone(),
            stop_rx,
        ));
        Ok(Self {
            simulator,
            sshd: sshd.sshd,
            sshd_address: sshd.address,
            sshd_pid,
            relay_ports,
            relays,
            stop_watcher,
            watcher,
            container,
        })
    }

    pub(super) async fn shutdown(
        self,
        paths: &Paths,
        env: &BTreeMap<String, String>,
    ) -> Result<()> {
        let Self {
            simulator,
            sshd,
            relays,
            stop_watcher,
            watcher,
            container,
            ..
        } = self;
        let _ = stop_watcher.send(true);
        // The watcher ends at once (closing the container channel, which ends that task once
        // any `session.sh stop` it runs is done).
        let _ = timeout(Duration::from_secs(5), watcher).await;
        let container_abort = container.abort_handle();
        if timeout(SESSION_STOP_TIMEOUT, container).await.is_err() {
            container_abort.abort();
        }
        // As when a container ends: the connections and SSH sessions first (a `session.sh
        // start` running over SSH would hold the session lock), then the session by its PID
        // files. The relays' live-port channel closed with the watcher; make sure they are gone.
        for relay in relays {
            relay.abort();
            let _ = relay.await;
        }
        sshd::stop(&sshd).await;
        let result = stop_session(paths, env).await;
        // The session of a pod whose volume is no longer at the pod root too.
        for run_dir in paths.run_dirs() {
            kill_recorded(&run_dir);
        }
        super::farm::end_all(&paths.farm_run, &paths.farm_state_dirs());
        match Arc::try_unwrap(simulator) {
            Ok(simulator) => simulator.shutdown().await,
            Err(shared) => drop(shared),
        }
        result
    }

    /// Best effort, without waiting: what Drop can do.
    pub(super) fn kill_now(self, paths: &Paths) {
        let _ = self.stop_watcher.send(true);
        self.watcher.abort();
        self.container.abort();
        for relay in &self.relays {
            relay.abort();
        }
        for run_dir in paths.run_dirs() {
            kill_recorded(&run_dir);
        }
        super::farm::end_all(&paths.farm_run, &paths.farm_state_dirs());
        // The last handle: the fixture's Drop kills sshd and its connections by PID. A blocking
        // task still holding one (a cancelled restart) drops it when it ends.
        drop(self.sshd);
    }
}
