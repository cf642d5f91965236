use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// Errors of this crate outside the MCP client (which has its own [`mcp::Error`](crate::mcp::Error)).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Writing an embedded asset to disk failed.
    #[error("failed to write pod asset {path}")]
    WriteAsset {
        /// The file being written.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A render farm operation failed.
    #[error("{operation}: {detail}")]
    Farm {
        /// What was done (`bringing up the farm`, `reading the farm record ...`).
        operation: String,
        /// What went wrong and what to do.
        detail: String,
    },
    /// The farm's controller printed something that is not what rpb asked for.
    #[error("failed to read the output of `{what}` on the farm's controller")]
    FarmReport {
        /// The command (`sinfo --json`, `squeue --json`).
        what: &'static str,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// A pod-side script's output holds no readable report line.
    #[error(
        "the pod-side script printed no readable report (a JSON line starting with \
         {{\"rpb_session\" or {{\"rpb_setup\"); check its stderr and the logs under the pod root"
    )]
    ParseReport {
        /// The parser's error, when a report line was found but did not parse.
        #[source]
        source: Option<serde_json::Error>,
    },
    /// An MCP client error.
    #[error(transparent)]
    Mcp(#[from] crate::mcp::Error),

    /// A call to the pod provider (RunPod's API) failed.
    #[error("{operation} failed")]
    Provider {
        /// The operation, naming the pod.
        operation: String,
        /// The provider's error.
        #[source]
        source: BoxError,
    },

    /// The stopped pod's host has no free GPU.
    #[error(
        "pod {pod_id} cannot start: its host machine has no free GPU. A stopped pod can only \
         start on its own host, and this pod keeps its work on its own volume disk. Options: \
         wait and retry (start with wait-for-gpu retries on an interval), or keep the work on a \
         network volume, which any host of its data center can mount, so a new pod takes over \
         when a host is full (copy the pod root to one once the pod runs again)"
    )]
    NoGpuOnHost {
        /// The pod.
        pod_id: String,
    },

    /// The pod did not reach the wanted state in time.
    #[error("pod {pod_id} did not become {wanted} within {waited:?} (last status {last_status})")]
    NotReady {
        /// The pod.
        pod_id: String,
        /// What was waited for.
        wanted: &'static str,
        /// How long.
        waited: Duration,
        /// The last status seen.
        last_status: runpod_api::models::PodStatus,
    },

    /// The pod reached a state it will not leave by itself.
    #[error("pod {pod_id} is {status} while waiting for it to be {wanted}; {hint}")]
    PodFailed {
        /// The pod.
        pod_id: String,
        /// Its status.
        status: String,
        /// What was waited for.
        wanted: &'static str,
        /// What to do.
        hint: &'static str,
    },

    /// No SSH banner answered at the pod's endpoint in time.
    #[error(
        "pod {pod_id} runs but its sshd did not answer at {endpoint} within {waited:?}; the \
         image must start sshd (RunPod images do from /start.sh) and expose 22/tcp"
    )]
    SshUnreachable {
        /// The pod.
        pod_id: String,
        /// The last endpoint tried.
        endpoint: String,
        /// How long.
        waited: Duration,
    },

    /// An SSH operation on the pod failed.
    #[error("{operation} on pod {pod_id} failed")]
    Remote {
        /// The operation.
        operation: String,
        /// The pod.
        pod_id: String,
        /// The SSH layer's error.
        #[source]
        source: BoxError,
    },

    /// A pod's SSH host key could not be made, pinned or read from the known-hosts file.
    #[error("{operation} failed")]
    HostKey {
        /// What was done, naming the pod and the file.
        operation: String,
        /// The SSH layer's error.
        #[source]
        source: BoxError,
    },

    /// A pod-side script or command exited unsuccessfully.
    #[error("{what} on pod {pod_id} exited with {code}: {stderr_tail}")]
    RemoteCommand {
        /// What ran.
        what: String,
        /// The pod.
        pod_id: String,
        /// Exit code, or `signal`.
        code: String,
        /// The last lines of its standard error.
        stderr_tail: String,
    },

    /// Blender's MCP socket or noVNC did not answer through the tunnel in time.
    #[error("{which} did not answer through the tunnel on 127.0.0.1:{port} within {waited:?}")]
    ServiceNotReady {
        /// `blender (mcp)` or `novnc`.
        which: &'static str,
        /// The local port.
        port: u16,
        /// How long.
        waited: Duration,
    },

    /// Starting failed after this call had started the pod.
    #[error("starting pod {pod_id} failed; {}", if *.stopped_again { "the pod was stopped again (or no longer runs), so it does not bill" } else { "the pod may still be running: stop it when done" })]
    StartFailed {
        /// The pod.
        pod_id: String,
        /// Whether the pod is stopped: stopped again by the call, or no longer running by itself
        /// (a pod in `ERROR`). `false` when it was kept as asked or stopping it failed too.
        stopped_again: bool,
        /// What failed.
        #[source]
        source: Box<Error>,
    },

    /// Blender is not reachable: no tunnel to this pod is open (a session attached over SSH
    /// alone has none).
    #[error(
        "no tunnel to pod {pod_id} is open, so its Blender cannot be reached; open the tunnel \
         to this pod first"
    )]
    NoTunnel {
        /// The pod.
        pod_id: String,
    },

    /// The background tunnel process could not be started or stopped.
    #[error("background tunnel: {detail}")]
    TunnelProcess {
        /// What went wrong and what to do.
        detail: String,
    },

    /// A local workspace or project operation failed.
    #[error("{operation} failed")]
    Store {
        /// What was done, naming the project, version or setting.
        operation: String,
        /// The store's error.
        #[source]
        source: project_store::Error,
    },

    /// A background task of this crate panicked or was cancelled.
    #[error("{operation} did not finish")]
    Task {
        /// What the task was doing.
        operation: String,
        /// The runtime's report.
        #[source]
        source: tokio::task::JoinError,
    },

    /// A local file operation failed.
    #[error("failed to {operation} {path}")]
    Io {
        /// What was done.
        operation: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },

    /// The settings cannot work.
    #[error("invalid session settings: {0}")]
    Settings(String),

    /// A render job's options are wrong; nothing was started.
    #[error("invalid render options: {0}")]
    RenderOptions(String),

    /// The render driver refused the job: the options do not fit the `.blend` (no such camera,
    /// scene, view layer or engine). No frame was rendered.
    #[error("render job {job_id} on pod {pod_id} was refused: {reason}")]
    RenderRefused {
        /// The job.
        job_id: String,
        /// The pod.
        pod_id: String,
        /// The driver's words.
        reason: String,
    },

    /// A render job cannot be found, started or followed.
    #[error("render job {job_id} on pod {pod_id}: {detail}")]
    RenderJob {
        /// The job.
        job_id: String,
        /// The pod.
        pod_id: String,
        /// What went wrong and what to do.
        detail: String,
    },

    /// A request was refused before it reached the API: a network volume size out of range,
    /// deleting the workspace's own volume without force, no data center where the GPU is.
    #[error("{operation} refused: {reason}")]
    Refused {
        /// The operation, naming the volume or GPU type.
        operation: String,
        /// Why, and what to do.
        reason: String,
    },

    /// A pod on a network volume could not start, and no new pod could be made in the volume's
    /// data center with any of the GPU types allowed. The old pod was left as it was.
    #[error(
        "pod {pod_id} cannot start ({reason}), and no new pod could be made for network volume \
         {volume_id} in data center {data_center}: {tried}. No pod was created, and pod {pod_id} \
         was left as it was. Allow more GPU types (RUNPOD_GPU_TYPES, comma-separated), see what is free there \
         (`rpb gpus --datacenter {data_center}`), or wait and retry"
    )]
    NoReplacement {
        /// The pod that could not start.
        pod_id: String,
        /// Why it could not start.
        reason: String,
        /// The volume.
        volume_id: String,
        /// The volume's data center.
        data_center: String,
        /// Each GPU type tried, with why it failed.
        tried: String,
    },

    /// A copy between pods does not match its source.
    #[error("the copy on pod {pod_id} does not match the original: {detail}")]
    CopyMismatch {
        /// The pod that holds the copy.
        pod_id: String,
        /// What differs.
        detail: String,
    },

    /// Moving a session to a new pod on another host failed after the decision to move.
    #[error("moving pod {pod_id} to another host failed: {detail}")]
    MoveFailed {
        /// The pod that could not start.
        pod_id: String,
        /// What happened to the old and the new pod.
        detail: String,
        /// The failure.
        #[source]
        source: BoxError,
    },

    /// The network volume is mounted by a pod, so the API refuses to delete it.
    #[error(
        "cannot delete network volume {volume_id}: pod {pods} mounts it (a stopped pod too); \
         terminate the pod first (its work on the volume stays), then delete the volume"
    )]
    VolumeInUse {
        /// The volume.
        volume_id: String,
        /// The pods that mount it, comma-separated (`unknown` when they cannot be listed).
        pods: String,
        /// The API's refusal.
        #[source]
        source: BoxError,
    },
}

impl Error {
    /// A store error with the operation it failed in.
    pub(crate) fn store(operation: impl Into<String>) -> impl FnOnce(project_store::Error) -> Self {
        let operation = operation.into();
        move |source| Self::Store { operation, source }
    }

    /// RunPod's API error behind a [`Error::Provider`] failure (also when wrapped in
    /// [`Error::StartFailed`]), when the provider is `runpod_api`.
    pub fn runpod(&self) -> Option<&runpod_api::Error> {
        match self {
            Self::Provider { source, .. } | Self::VolumeInUse { source, .. } => {
                source.downcast_ref()
            }
            Self::StartFailed { source, .. } => source.runpod(),
            _ => None,
        }
    }

    /// The SSH layer's error behind a [`Error::Remote`] failure (also when wrapped in
    /// [`Error::StartFailed`]), when the connector is `pod_tunnel`.
    pub fn ssh(&self) -> Option<&pod_tunnel::Error> {
        match self {
            Self::Remote { source, .. } | Self::HostKey { source, .. } => source.downcast_ref(),
            Self::StartFailed { source, .. } => source.ssh(),
            _ => None,
        }
    }

    /// The local store's error behind a [`Error::Store`] failure.
    pub fn store_error(&self) -> Option<&project_store::Error> {
        match self {
            Self::Store { source, .. } => Some(source),
            Self::StartFailed { source, .. } => source.store_error(),
            _ => None,
        }
    }

    /// Whether the pod does not exist (RunPod answered 404).
    pub fn is_not_found(&self) -> bool {
        self.runpod().is_some_and(runpod_api::Error::is_not_found)
    }
}

/// A boxed error from a lower layer.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
