//! The narrow capabilities the orchestrator needs from a pod provider and from a remote host.
//!
//! [`crate::adapters`] implements them for `runpod_api::Client` and `pod_tunnel`; tests
//! implement them with in-memory fakes, so every branch of the lifecycle is testable without a
//! network.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::future::BoxFuture;
pub use runpod_api::PodStatus;

use crate::Result;

/// Where to reach a pod over SSH.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SshAddr {
    /// Host name or IP.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// User name.
    pub user: String,
}

impl fmt::Display for SshAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}:{}", self.user, self.host, self.port)
    }
}

/// What the orchestrator needs to know about a pod.
#[derive(Debug, Clone, PartialEq)]
pub struct PodView {
    /// Pod id.
    pub id: runpod_api::PodId,
    /// Pod name.
    pub name: String,
    /// Observed status.
    pub status: PodStatus,
    /// Direct SSH endpoint, once running.
    pub ssh: Option<SshAddr>,
    /// Cost in USD per hour now (0 when stopped).
    pub cost_per_hour: f64,
    /// Seconds since the container started, when running.
    pub uptime_seconds: Option<u64>,
    /// The GPU type and count (`NVIDIA GeForce RTX 4090 ×1`), when the provider says.
    pub gpu: Option<String>,
    /// The SSH host public key rpb gave the pod at creation ([`crate::assets::HOST_PUBLIC_KEY_ENV`]
    /// in its environment), read from the provider's API: what a machine that has never
    /// connected to the pod pins before its first connection. `None` for pods rpb did not
    /// create.
    pub host_public_key: Option<String>,
    /// The pod's start command (RunPod's `args`; empty: the image's own).
    pub start_command: String,
    /// The container image.
    pub image: String,
    /// Where the pod's persistent volume is mounted, if it has one.
    pub volume_path: Option<String>,
    /// The size of the pod's persistent volume disk in GB, if it has one: billed also while
    /// the pod is stopped.
    pub volume_gb: Option<u32>,
    /// The GPU type id (`NVIDIA GeForce RTX 4090`), when the provider says.
    pub gpu_type: Option<String>,
    /// The network volume the pod mounts, with its mount path, if any.
    pub network_volume: Option<NetworkVolumeMount>,
    /// The data center the pod runs in, when the provider says.
    pub data_center: Option<String>,
}

/// A network volume mounted by a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkVolumeMount {
    /// The volume's id.
    pub volume_id: String,
    /// Where it is mounted in the container.
    pub path: String,
}

/// The image a pod gets unless told otherwise: RunPod's `PyTorch` image (CUDA 12.8, Ubuntu 24.04),
/// which starts sshd from `/start.sh`, pinned by digest.
///
/// `1.0.2` is a versioned release of `runpod/containers`, but a registry tag is not immutable:
/// RunPod's own notes say tags "can be moved at any time", and a re-run release build re-pushes
/// the same version. So the reference carries the digest of the image index that tag named
/// (`docker buildx imagetools inspect runpod/pytorch:1.0.2-cu1281-torch280-ubuntu2404`,
/// "Digest:"; its linux/amd64 manifest is `sha256:4d1721e6…1851`), as several unrelated public
/// projects pin it. The registry then serves exactly this image or nothing. To move to another
/// image, set `RUNPOD_IMAGE` (or [`PodSpec::image`]) to a `name:tag@sha256:<digest>` of your own.
pub const DEFAULT_IMAGE: &str = "runpod/pytorch:1.0.2-cu1281-torch280-ubuntu2404\
     @sha256:0a360022e8de4375af99430f84e8b38951acc397252163a37ceac7204d01be35";
/// The GPU type a pod gets unless told otherwise.
pub const DEFAULT_GPU_TYPE: &str = "NVIDIA GeForce RTX 4090";
/// Where the persistent volume is mounted unless told otherwise.
pub const DEFAULT_POD_ROOT: &str = "/runpod";
/// Persistent volume size in GB unless told otherwise.
pub const DEFAULT_VOLUME_GB: u32 = 50;
/// Container disk size in GB unless told otherwise.
pub const DEFAULT_DISK_GB: u32 = 20;

/// What to create. [`PodSpec::new`] fills in the defaults; change fields or use the setters.
///
/// ```
/// use blender_session::seams::PodSpec;
///
/// let spec = PodSpec::new("blender")
///     .gpu_type("NVIDIA RTX A5000")
///     .pod_root("/workspace");
/// assert_eq!(spec.volume_path, "/workspace");
/// assert!(spec.start_command.contains("/workspace/rpb/bin/boot-hook.sh"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PodSpec {
    /// Pod name.
    pub name: String,
    /// Container image.
    pub image: String,
    /// GPU type id.
    pub gpu_type: String,
    /// Number of GPUs.
    pub gpu_count: u32,
    /// `SECURE` or `COMMUNITY`.
    pub cloud: runpod_api::models::Cloud,
    /// Persistent volume size in GB, mounted at `volume_path`.
    pub volume_gb: u32,
    /// Where the persistent volume is mounted (`/runpod`).
    pub volume_path: String,
    /// Container disk in GB.
    pub disk_gb: u32,
    /// The pod's start command (the boot hook with its fallback).
    pub start_command: String,
    /// The pod's SSH host key. [`crate::Orchestrator::create`] makes one when it is `None`,
    /// passes it in the pod's environment (the start command installs it before sshd starts)
    /// and pins it before connecting, so even the first contact is verified. `Debug` shows
    /// only its public half.
    pub host_key: Option<pod_tunnel::HostKeyPair>,
    /// The public host key the pod will serve when it is known without its private half: a
    /// pod that replaces another on the same network volume serves the key persisted there
    /// (rpb's boot hook restores it), so only the public key goes into its environment, for
    /// machines that pin from the API. Ignored when `host_key` is set.
    pub known_host_key: Option<String>,
    /// A network volume (id) to mount at `volume_path` instead of a persistent volume disk:
    /// the work then outlives the pod, and a new pod on any host of the volume's data center
    /// takes it over.
    pub network_volume: Option<String>,
    /// The data center to place the pod in (a network volume's own; RunPod refuses another).
    pub data_center: Option<String>,
    /// Global networking: the pod reaches the account's other pods with it at
    /// `<pod id>.runpod.internal` (a render farm's nodes need it).
    pub global_networking: bool,
}

impl PodSpec {
    /// A spec named `name` with the defaults: [`DEFAULT_IMAGE`], one [`DEFAULT_GPU_TYPE`] on the
    /// secure cloud, a [`DEFAULT_VOLUME_GB`] volume at [`DEFAULT_POD_ROOT`], a [`DEFAULT_DISK_GB`]
    /// container disk, and rpb's boot hook as the start command.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            image: DEFAULT_IMAGE.into(),
            gpu_type: DEFAULT_GPU_TYPE.into(),
            gpu_count: 1,
            cloud: runpod_api::models::Cloud::Secure,
            volume_gb: DEFAULT_VOLUME_GB,
            volume_path: DEFAULT_POD_ROOT.into(),
            disk_gb: DEFAULT_DISK_GB,
            start_command: crate::assets::boot_command(DEFAULT_POD_ROOT),
            host_key: None,
            known_host_key: None,
            network_volume: None,
            data_center: None,
            global_networking: false,
        }
    }

    /// The GPU type.
    #[must_use]
    pub fn gpu_type(mut self, gpu_type: impl Into<String>) -> Self {
        self.gpu_type = gpu_type.into();
        self
    }

    /// Secure or community cloud.
    #[must_use]
    pub fn cloud(mut self, cloud: runpod_api::models::Cloud) -> Self {
        self.cloud = cloud;
        self
    }

    /// Mounts network volume `volume_id` (in `data_center`) at the pod root instead of a
    /// volume disk.
    #[must_use]
    pub fn network_volume(
        mut self,
        volume_id: impl Into<String>,
        data_center: impl Into<String>,
    ) -> Self {
        self.network_volume = Some(volume_id.into());
        self.data_center = Some(data_center.into());
        self
    }

    /// Where the volume is mounted; the boot hook's start command follows it.
    #[must_use]
    pub fn pod_root(mut self, pod_root: impl Into<String>) -> Self {
        self.volume_path = pod_root.into();
        self.start_command = crate::assets::boot_command(&self.volume_path);
        self
    }
}

/// What the orchestrator needs from a pod provider (RunPod's API, a simulator, a fake).
#[async_trait]
pub trait PodProvider: Send + Sync {
    /// Reads a pod (one API request).
    async fn pod(&self, id: &str) -> Result<PodView>;
    /// Creates a pod.
    async fn create(&self, spec: &PodSpec) -> Result<PodView>;
    /// Requests a start. A host with no free GPU is [`crate::Error::NoGpuOnHost`].
    async fn start(&self, id: &str) -> Result<()>;
    /// Requests a stop.
    async fn stop(&self, id: &str) -> Result<()>;
    /// Replaces the pod's start command (it takes effect at the next start).
    async fn set_start_command(&self, id: &str, command: &str) -> Result<()>;
    /// Makes sure `public_key` is registered on the account (keeping every other key); returns
    /// whether it had to be added.
    async fn ensure_ssh_key(&self, public_key: &str) -> Result<bool>;
    /// Terminates a pod: it and its container disk are gone; a network volume it mounted
    /// stays. The default refuses (a provider without pods that move).
    async fn terminate(&self, id: &str) -> Result<()> {
        Err(unsupported(format!("terminating pod {id}")))
    }
    /// The data center a network volume lives in. The default refuses.
    async fn volume_data_center(&self, volume_id: &str) -> Result<String> {
        Err(unsupported(format!("reading network volume {volume_id}")))
    }
    /// The GPU type ids with free GPUs in `data_center` now, per the provider's catalog. The
    /// default refuses.
    async fn available_gpu_types(&self, data_center: &str) -> Result<Vec<String>> {
        Err(unsupported(format!(
            "reading the gpu availability of data center {data_center}"
        )))
    }
}

fn unsupported(operation: String) -> crate::Error {
    crate::Error::Refused {
        operation,
        reason: "this pod provider has no network volumes or gpu catalog".into(),
    }
}

/// The result of a remote command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutput {
    /// Exit code; `None` when killed by a signal.
    pub code: Option<i32>,
    /// Captured standard output.
    pub stdout: String,
    /// Captured standard error.
    pub stderr: String,
}

impl CommandOutput {
    /// Whether the command exited with 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// A finished file transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transferred {
    /// Bytes moved.
    pub bytes: u64,
    /// SHA-256 (hex) of the file, verified on both sides.
    pub sha256: String,
}

/// Transfer progress: bytes done and total.
pub type ProgressFn = Arc<dyn Fn(u64, u64) + Send + Sync>;

/// A connected remote host (the pod over SSH).
#[async_trait]
pub trait RemoteHost: Send + Sync {
    /// Runs a shell command, with optional standard input, within `timeout`.
    async fn run(
        &self,
        command: &str,
        stdin: Option<Vec<u8>>,
        timeout: Duration,
    ) -> Result<CommandOutput>;
    /// Uploads a local file; the remote file appears only when complete and verified.
    async fn upload(
        &self,
        local: &Path,
        remote: &str,
        progress: Option<ProgressFn>,
    ) -> Result<Transferred>;
    /// Downloads a remote file; the local file appears only when complete and verified.
    async fn download(
        &self,
        remote: &str,
        local: &Path,
        progress: Option<ProgressFn>,
    ) -> Result<Transferred>;
}

/// Finds the pod's current SSH endpoint again (after a restart moved it).
pub type Resolver = Arc<dyn Fn() -> BoxFuture<'static, Result<SshAddr>> + Send + Sync>;

/// Local ports of an open tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TunnelPorts {
    /// Blender's MCP socket (the AI client's).
    pub mcp: u16,
    /// rpb's own command socket in Blender (save, open, render...).
    pub control: u16,
    /// VNC.
    pub vnc: u16,
    /// noVNC.
    pub novnc: u16,
}

/// Where an open tunnel is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TunnelState {
    /// Forwarding through a live connection.
    Connected {
        /// The pod's SSH endpoint in use (`host:port`).
        endpoint: String,
    },
    /// The connection was lost; the local ports stay bound while a new one is made.
    Reconnecting {
        /// Attempt number, from 1.
        attempt: u32,
        /// Why the last connection or attempt failed.
        last_error: String,
    },
    /// The tunnel stopped and its local ports are closed.
    Closed {
        /// Why, when it gave up on its own (`None` when it was closed on purpose).
        error: Option<String>,
    },
}

impl TunnelState {
    /// Whether the tunnel stopped (on purpose or because it gave up).
    pub fn is_closed(&self) -> bool {
        matches!(self, Self::Closed { .. })
    }
}

impl std::fmt::Display for TunnelState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Connected { endpoint } => write!(f, "connected to {endpoint}"),
            Self::Reconnecting { attempt, .. } => write!(f, "reconnecting (attempt {attempt})"),
            Self::Closed { error: None } => f.write_str("closed"),
            Self::Closed { error: Some(error) } => write!(f, "closed: {error}"),
        }
    }
}

/// An open tunnel.
#[async_trait]
pub trait TunnelHandle: Send + Sync {
    /// The local ports actually bound.
    fn ports(&self) -> TunnelPorts;
    /// Its state now.
    fn state(&self) -> TunnelState {
        self.state_changes().borrow().clone()
    }
    /// A receiver that sees every state change (for supervisors that react to a tunnel giving
    /// up without polling).
    fn state_changes(&self) -> tokio::sync::watch::Receiver<TunnelState>;
    /// Bytes moved through the tunnel so far, both directions (for idle detection). Default: 0.
    fn traffic_bytes(&self) -> u64 {
        0
    }
    /// Closes every listener and the session.
    async fn close(self: Box<Self>) -> Result<()>;
}

/// Opens SSH sessions and tunnels to pods, and probes services through tunnels.
#[async_trait]
pub trait HostConnector: Send + Sync {
    /// Whether an SSH banner answers at `addr` within a short time.
    async fn banner(&self, addr: &SshAddr) -> bool;
    /// Connects and authenticates, verifying the host key pinned for `pod_id`. With no pin
    /// yet (a pod rpb did not create, first contact from this machine), the key is trusted and
    /// recorded; the orchestrator says so.
    async fn connect(&self, addr: &SshAddr, pod_id: &str) -> Result<Arc<dyn RemoteHost>>;
    /// The `SHA256:…` fingerprint pinned for `pod_id`, if any.
    async fn pinned_host_key(&self, pod_id: &str) -> Result<Option<String>>;
    /// Pins `public_key` (`ssh-ed25519 AAAA…`) for `pod_id` before any connection. A pod that
    /// already has this pin is left as it is; another pin is an error.
    async fn pin_host_key(&self, pod_id: &str, public_key: &str) -> Result<()>;
    /// The public key pinned for `name` (a pod id, or a network volume's alias), as a
    /// `<type> <base64>` line, or `None`. The default knows none.
    async fn pinned_public_key(&self, name: &str) -> Result<Option<String>> {
        let _ = name;
        Ok(None)
    }
    /// Opens a tunnel forwarding `local → remote` ports for (MCP, VNC, noVNC).
    async fn tunnel(
        &self,
        addr: &SshAddr,
        pod_id: &str,
        local: TunnelPorts,
        remote: TunnelPorts,
        resolver: Resolver,
    ) -> Result<Box<dyn TunnelHandle>>;
    /// Whether Blender's MCP socket answers a ping on the local port.
    async fn mcp_answers(&self, port: u16) -> bool;
    /// Whether noVNC's page is served on the local port.
    async fn novnc_answers(&self, port: u16) -> bool;
}
