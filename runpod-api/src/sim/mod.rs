//! An embedded RunPod simulator: a stateful REST v2 server on 127.0.0.1 for tests, demos and
//! your own programs. Enabled by the `sim` feature.
//!
//! It keeps pods, network volumes and templates in memory, places GPU pods on simulated hosts,
//! and answers the pod, action, log, catalog, SSH-key, billing, network-volume and template
//! endpoints as RunPod's OpenAPI document describes, including the awkward parts: pods pass
//! through `PROVISIONING` and `STARTING`, `ssh.direct` is null until `RUNNING`, a restarted pod
//! gets a new SSH port (and, with a fault knob, keeps reporting the old one for a while), and
//! [`Faults`] switch on capacity errors, 429s, 5xx, slow answers, boot failures and 402s.
//!
//! ```no_run
//! use runpod_api::models::{CreatePodRequest, GpuRequest};
//! use runpod_api::sim::Simulator;
//! use runpod_api::{WaitFor, WaitOptions};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let sim = Simulator::start().await?;
//! let client = sim.client()?;
//! let request = CreatePodRequest::new("test")
//!     .image("runpod/pytorch")
//!     .gpu(GpuRequest::new("NVIDIA RTX A5000"))
//!     .port("22/tcp");
//! let pod = client.create_pod(&request).await?;
//! let pod = client
//!     .wait_for_pod(&pod.id, WaitFor::SshReady, &WaitOptions::default(), |_| {})
//!     .await?;
//! sim.set_faults(|faults| faults.no_free_gpu_next_start = 1);
//! # Ok(()) }
//! ```

mod hosts;
mod knobs;
mod resources;
mod server;
mod state;
mod templates;
mod validate;
mod volumes;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use hosts::HostInfo;
pub use knobs::{Faults, SshEndpoints, Timings};

use crate::models::{GpuType, Pod};
use crate::{Client, RetryPolicy};
use state::World;

/// The API key the simulator accepts unless another is configured.
pub const DEFAULT_API_KEY: &str = "sim-api-key";

/// Builds a [`Simulator`].
#[derive(Debug)]
#[must_use]
pub struct SimulatorBuilder {
    listen: SocketAddr,
    api_key: String,
    timings: Timings,
    endpoints: SshEndpoints,
    gpus: Option<Vec<GpuType>>,
}

impl Default for SimulatorBuilder {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            api_key: DEFAULT_API_KEY.to_owned(),
            timings: Timings::default(),
            endpoints: SshEndpoints::Fake,
            gpus: None,
        }
    }
}

impl SimulatorBuilder {
    /// Address to listen on. Default: `127.0.0.1:0` (a free port). Only loopback addresses are
    /// accepted: the simulator is a local test peer.
    pub fn listen(mut self, address: SocketAddr) -> Self {
        self.listen = address;
        self
    }

    /// The bearer token it accepts. Default: [`DEFAULT_API_KEY`].
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = key.into();
        self
    }

    /// Phase durations. Default: [`Timings::default`] (30 ms each).
    pub fn timings(mut self, timings: Timings) -> Self {
        self.timings = timings;
        self
    }

    /// The SSH endpoints running pods report. Default: [`SshEndpoints::Fake`].
    pub fn ssh_endpoints(mut self, endpoints: SshEndpoints) -> Self {
        self.endpoints = endpoints;
        self
    }

    /// The GPU catalog. Default: RTX 4090, RTX A5000 and RTX A6000 at list prices.
    pub fn gpu_types(mut self, gpus: Vec<GpuType>) -> Self {
        self.gpus = Some(gpus);
        self
    }

    /// Binds and starts serving on the current tokio runtime.
    ///
    /// # Errors
    ///
    /// When the address is not loopback or cannot be bound; the message names the address.
    pub async fn start(self) -> std::io::Result<Simulator> {
        if !self.listen.ip().is_loopback() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "the simulator listens on loopback only, not {}; use 127.0.0.1",
                    self.listen
                ),
            ));
        }
        let listener = tokio::net::TcpListener::bind(self.listen)
            .await
            .map_err(|error| {
                std::io::Error::new(
                    error.kind(),
                    format!("failed to bind the simulator to {}: {error}", self.listen),
                )
            })?;
        let address = listener.local_addr()?;
        let world = Arc::new(Mutex::new(World::new(
            self.timings,
            self.endpoints,
            self.gpus.unwrap_or_else(knobs::default_gpus),
        )));
        let (shutdown, stopped) = oneshot::channel();
        let router = server::router(world.clone(), self.api_key.clone());
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, router).with_graceful_shutdown(async move {
                let _ = stopped.await;
            });
            if let Err(error) = serve.await {
                tracing::error!(%error, "runpod simulator stopped with an error");
            }
        });
        tracing::info!(%address, "runpod simulator listening");
        Ok(Simulator {
            address,
            api_key: self.api_key,
            world,
            shutdown: Some(shutdown),
            task: Some(task),
        })
    }
}

/// A running simulator. Dropping it stops the server.
#[derive(Debug)]
pub struct Simulator {
    address: SocketAddr,
    api_key: String,
    world: Arc<Mutex<World>>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Simulator {
    /// Starts configuring a simulator.
    pub fn builder() -> SimulatorBuilder {
        SimulatorBuilder::default()
    }

    /// Starts a simulator with the defaults on a free loopback port.
    ///
    /// # Errors
    ///
    /// When no loopback port can be bound.
    pub async fn start() -> std::io::Result<Self> {
        Self::builder().start().await
    }

    /// The address it listens on.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The base URL to give a client: `http://127.0.0.1:PORT/v2`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v2", self.address)
    }

    /// The API key it accepts.
    pub fn api_key(&self) -> &str {
        &self.api_key
    }

    /// A client pointed at this simulator, with short retry backoffs.
    ///
    /// # Errors
    ///
    /// As [`crate::ClientBuilder::build`].
    pub fn client(&self) -> crate::Result<Client> {
        Client::builder()
            .base_url(self.base_url())
            .api_key(self.api_key.clone())
            .retry_policy(
                RetryPolicy::default()
                    .with_backoff(Duration::from_millis(20), Duration::from_millis(200))
                    .with_max_retry_after(Duration::from_secs(5)),
            )
            .build()
    }

    fn world(&self) -> MutexGuard<'_, World> {
        // A panic while holding the lock cannot leave the world half-updated in a way that
        // matters for a test double; keep serving.
        self.world
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Changes the fault knobs.
    pub fn set_faults(&self, change: impl FnOnce(&mut Faults)) {
        change(&mut self.world().faults);
    }

    /// The fault knobs as they are now (counters decrease as faults fire).
    pub fn faults(&self) -> Faults {
        self.world().faults.clone()
    }

    /// Changes the SSH endpoints reported from the next start or restart on.
    pub fn set_ssh_endpoints(&self, endpoints: SshEndpoints) {
        self.world().set_endpoints(endpoints);
    }

    /// A pod's current state, as the API would report it.
    pub fn pod(&self, id: &str) -> Option<Pod> {
        let mut world = self.world();
        world.get(id, tokio::time::Instant::now()).ok()
    }

    /// The SSH endpoint a pod's current boot really serves, ignoring what the API reports
    /// (with [`Faults::stale_ssh_port_for`] the API keeps reporting the previous boot's port for
    /// a while). `Some` only while the pod is `RUNNING` and exposes `22/tcp`; `None` for a pod
    /// that is booting, stopped, failed or unknown. For harnesses that stand in for the pod's
    /// machine, such as a relay that must answer only on the current boot's port.
    pub fn current_ssh_endpoint(&self, pod_id: &str) -> Option<SocketAddr> {
        self.world()
            .current_endpoint(pod_id, tokio::time::Instant::now())
    }

    /// The number of a pod's current boot (1 for the boot its create began, one more for each
    /// start or restart), while the pod is up (provisioning, starting or running); `None` for a
    /// pod that is stopped, failed or unknown. For harnesses that play the pod's machine and
    /// must tell a new boot from the same boot on another port.
    pub fn current_boot(&self, pod_id: &str) -> Option<u64> {
        self.world()
            .current_boot(pod_id, tokio::time::Instant::now())
    }

    /// Moves a running pod's SSH service to the next endpoint of the configured
    /// [`SshEndpoints`] within the same boot, as when sshd is restarted on another port inside
    /// the container, and returns it. The API reports the new endpoint at once. `None` when the
    /// pod is not running.
    pub fn move_ssh_endpoint(&self, pod_id: &str) -> Option<SocketAddr> {
        self.world()
            .move_endpoint(pod_id, tokio::time::Instant::now())
    }

    /// All pods.
    pub fn pods(&self) -> Vec<Pod> {
        let mut world = self.world();
        world.refresh_all(tokio::time::Instant::now());
        world.pods.values().map(|sim| sim.pod.clone()).collect()
    }

    /// The host machines, with the GPUs free on each.
    pub fn hosts(&self) -> Vec<HostInfo> {
        let mut world = self.world();
        world.refresh_all(tokio::time::Instant::now());
        world
            .hosts
            .iter()
            .map(|host| HostInfo {
                id: host.id.clone(),
                data_center: host.data_center.to_owned(),
                gpu_type: host.gpu_type.clone(),
                gpus: host.gpus,
                free: hosts::free_on(host, world.used_on(&host.id)),
            })
            .collect()
    }

    /// The host a GPU pod is placed on (it stays bound to it while stopped); `None` for CPU
    /// pods and unknown ids.
    pub fn host_of(&self, pod_id: &str) -> Option<String> {
        self.world().pods.get(pod_id)?.host.clone()
    }

    /// Lets other customers rent every GPU of the pod's host that the account's pods don't use,
    /// so starting the pod after a stop fails with RunPod's "There are not enough free GPUs on
    /// the host machine to start this pod." while other hosts of the data center still take new
    /// pods. Returns the host's id; `None` for CPU pods and unknown ids.
    pub fn fill_host(&self, pod_id: &str) -> Option<String> {
        let host = self.host_of(pod_id)?;
        self.set_free_gpus(&host, 0).then_some(host)
    }

    /// Sets how many GPUs of a host are free for the account (the rest rented by others, never
    /// less than the account's own pods use). `false` for an unknown host.
    pub fn set_free_gpus(&self, host_id: &str, free: u32) -> bool {
        let mut world = self.world();
        world.refresh_all(tokio::time::Instant::now());
        world.set_free_gpus(host_id, free)
    }

    /// The account's registered SSH keys.
    pub fn ssh_keys(&self) -> Vec<String> {
        self.world().ssh_keys.clone()
    }

    /// Stops serving and waits for the server task to end.
    pub async fn shutdown(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            // Open log streams end when their connection does; don't wait forever for them.
            if tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
            {
                tracing::warn!("the runpod simulator did not stop within 5 s");
            }
        }
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
