//! The pod object and the request bodies that create, update and act on pods.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::enums::{Cloud, PodAction, PodStatus};
use super::lenient;

/// A pod's identifier, such as `7h9k2m4n6p`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PodId(String);

impl PodId {
    /// Wraps an identifier.
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    /// The identifier as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PodId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for PodId {
    fn from(id: &str) -> Self {
        Self(id.to_owned())
    }
}

impl From<String> for PodId {
    fn from(id: String) -> Self {
        Self(id)
    }
}

impl AsRef<str> for PodId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// A pod as the API reports it (`GET /v2/pods/{id}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Pod {
    /// Identifier.
    pub id: PodId,
    /// Name given at creation.
    pub name: String,
    /// Observed lifecycle status.
    pub status: PodStatus,
    /// Actions valid in the current status.
    #[serde(default, deserialize_with = "lenient::null_as_default")]
    pub actions: Vec<PodAction>,
    /// Container image.
    #[serde(default, deserialize_with = "lenient::null_as_default")]
    pub image: String,
    /// Arguments passed to the container entrypoint.
    #[serde(default, deserialize_with = "lenient::null_as_default")]
    pub args: String,
    /// Container disk in GB (ephemeral, wiped on restart).
    #[serde(default, deserialize_with = "lenient::opt_u64_lenient")]
    pub disk: Option<u64>,
    /// Storage mounts.
    #[serde(default, deserialize_with = "lenient::null_as_default")]
    pub mounts: Mounts,
    /// Exposed ports, such as `22/tcp` or `8888/http`.
    #[serde(default, deserialize_with = "lenient::null_as_default")]
    pub ports: Vec<String>,
    /// Environment variables.
    #[serde(default, deserialize_with = "lenient::null_as_default")]
    pub env: BTreeMap<String, String>,
    /// Container registry credential id, for private images.
    #[serde(default)]
    pub registry: Option<String>,
    /// Cloud tier.
    pub cloud: Cloud,
    /// Data center the pod runs in, once assigned.
    #[serde(default)]
    pub data_center_id: Option<String>,
    /// CUDA version of the host machine, once assigned.
    #[serde(default)]
    pub cuda_version: Option<String>,
    /// How to reach the pod over SSH.
    #[serde(default, deserialize_with = "lenient::null_as_default")]
    pub ssh: PodSsh,
    /// Template the pod was created from.
    #[serde(default)]
    pub template: Option<String>,
    /// Current cost in USD per hour (0 when stopped or terminated).
    #[serde(deserialize_with = "lenient::f64_lenient")]
    pub cost: f64,
    /// Whether the pod is locked against stop and reset.
    #[serde(default)]
    pub locked: bool,
    /// Live metrics and port mappings; `None` unless the pod is running.
    #[serde(default)]
    pub runtime: Option<PodRuntime>,
    /// Creation time (RFC 3339).
    pub created_at: String,
    /// Last start time (RFC 3339), once started.
    #[serde(default)]
    pub started_at: Option<String>,
    /// Global networking state.
    #[serde(default, deserialize_with = "lenient::null_as_default")]
    pub global_networking: GlobalNetworking,
    /// GPU allocation; present for GPU pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<PodGpu>,
    /// CPU allocation; present for CPU pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<PodCpu>,
    /// Cluster membership; present for cluster member pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<PodCluster>,
}

impl Pod {
    /// Whether the API allows `action` in the pod's current state (its `actions` field).
    pub fn allows(&self, action: &PodAction) -> bool {
        self.actions.contains(action)
    }

    /// Cost in USD per hour right now (0 when stopped).
    pub fn cost_per_hour(&self) -> f64 {
        self.cost
    }

    /// Whether the pod reports `RUNNING`.
    pub fn is_running(&self) -> bool {
        self.status == PodStatus::Running
    }

    /// The endpoint for direct SSH (with SCP, SFTP and port forwarding): `ssh.direct` when the
    /// API reports it, else the runtime port mapping of private port 22 over TCP on a public IP.
    /// `None` while the pod is not running or has no `22/tcp` port.
    pub fn ssh_endpoint(&self) -> Option<SshTarget> {
        if let Some(direct) = &self.ssh.direct {
            return Some(SshTarget {
                host: direct.host.clone(),
                port: direct.port,
                username: direct.username.clone(),
            });
        }
        let runtime = self.runtime.as_ref()?;
        runtime.ports.iter().find_map(|port| {
            let is_tcp = port.kind.as_deref().is_none_or(|kind| kind == "tcp");
            let ip = port.ip.as_deref()?;
            let public = port.public?;
            (port.private == Some(22) && is_tcp && is_public_ip(ip)).then(|| SshTarget {
                host: ip.to_owned(),
                port: public,
                username: "root".to_owned(),
            })
        })
    }
}

/// Whether `ip` is an address reachable from the internet (not private, loopback, link-local,
/// shared CGNAT space or unspecified). Non-IP strings (host names) count as public.
fn is_public_ip(ip: &str) -> bool {
    match ip.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => {
            let [a, b, ..] = v4.octets();
            let cgnat = a == 100 && (64..128).contains(&b);
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || cgnat)
        }
        Ok(IpAddr::V6(v6)) => {
            let first = v6.segments()[0];
            let unique_local = first & 0xfe00 == 0xfc00;
            let link_local = first & 0xffc0 == 0xfe80;
            !(v6.is_loopback() || v6.is_unspecified() || unique_local || link_local)
        }
        Err(_) => !ip.is_empty(),
    }
}

/// Where to connect for direct SSH.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct SshTarget {
    /// Host name or IP address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// User name (`root` on RunPod images).
    pub username: String,
}

impl fmt::Display for SshTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}:{}", self.username, self.host, self.port)
    }
}

/// Storage mounts of a pod. At most one of `persistent` and `network` is set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Mounts {
    /// Host-local persistent storage (survives stop and start, pinned to the host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent: Option<PersistentMount>,
    /// A network volume (at most one today).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub network: Vec<NetworkMount>,
}

impl Mounts {
    /// A persistent volume of `size_gb` GB mounted at `path`.
    pub fn persistent(size_gb: u32, path: impl Into<String>) -> Self {
        Self {
            persistent: Some(PersistentMount {
                size: size_gb,
                path: path.into(),
            }),
            network: Vec::new(),
        }
    }

    /// The network volume `volume_id` mounted at `path`.
    pub fn network(volume_id: impl Into<String>, path: impl Into<String>) -> Self {
        Self {
            persistent: None,
            network: vec![NetworkMount {
                volume_id: volume_id.into(),
                path: path.into(),
            }],
        }
    }
}

/// Host-local persistent storage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct PersistentMount {
    /// Size in GB (at least 10).
    #[serde(deserialize_with = "lenient::u32_lenient")]
    pub size: u32,
    /// Mount path inside the container.
    pub path: String,
}

/// A network volume mount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct NetworkMount {
    /// Network volume id.
    pub volume_id: String,
    /// Mount path inside the container.
    pub path: String,
}

/// SSH access to a pod.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct PodSsh {
    /// Through RunPod's SSH proxy: an interactive shell only (no SCP, SFTP or forwarding).
    #[serde(default)]
    pub proxy: Option<SshEndpoint>,
    /// Straight to the pod's sshd over its published `22/tcp` port; `None` until running.
    #[serde(default)]
    pub direct: Option<SshEndpoint>,
}

/// One way to reach a pod over SSH.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct SshEndpoint {
    /// Host name or IP.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// User name (an opaque routing token for the proxy).
    pub username: String,
    /// The equivalent `ssh` command line.
    #[serde(default)]
    pub command: String,
}

impl SshEndpoint {
    /// An endpoint with the `ssh` command the API would print for it.
    pub fn new(host: impl Into<String>, port: u16, username: impl Into<String>) -> Self {
        let host = host.into();
        let username = username.into();
        let command = if port == 22 {
            format!("ssh {username}@{host}")
        } else {
            format!("ssh {username}@{host} -p {port}")
        };
        Self {
            host,
            port,
            username,
            command,
        }
    }
}

/// Live metrics of a running pod.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct PodRuntime {
    /// Seconds since the container started.
    #[serde(
        default,
        deserialize_with = "lenient::opt_u64_lenient",
        skip_serializing_if = "Option::is_none"
    )]
    pub uptime: Option<u64>,
    /// Per-GPU utilization.
    #[serde(
        default,
        deserialize_with = "lenient::null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub gpus: Vec<GpuUtilization>,
    /// CPU utilization.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Utilization>,
    /// Memory utilization.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Utilization>,
    /// Live port mappings.
    #[serde(
        default,
        deserialize_with = "lenient::null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub ports: Vec<RuntimePort>,
}

/// Utilization of one GPU, in percent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct GpuUtilization {
    /// Compute utilization.
    #[serde(
        default,
        deserialize_with = "lenient::opt_u64_lenient",
        skip_serializing_if = "Option::is_none"
    )]
    pub util: Option<u64>,
    /// Memory utilization.
    #[serde(
        default,
        deserialize_with = "lenient::opt_u64_lenient",
        skip_serializing_if = "Option::is_none"
    )]
    pub memory_util: Option<u64>,
}

/// A single utilization percentage.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Utilization {
    /// Percent, 0 to 100.
    #[serde(
        default,
        deserialize_with = "lenient::opt_u64_lenient",
        skip_serializing_if = "Option::is_none"
    )]
    pub util: Option<u64>,
}

/// A live port mapping.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RuntimePort {
    /// Port inside the container.
    #[serde(
        default,
        deserialize_with = "lenient::opt_u16_lenient",
        skip_serializing_if = "Option::is_none"
    )]
    pub private: Option<u16>,
    /// Published port, once assigned.
    #[serde(default, deserialize_with = "lenient::opt_u16_lenient")]
    pub public: Option<u16>,
    /// `tcp` or `http`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Address the port is published on.
    #[serde(default)]
    pub ip: Option<String>,
}

/// Global networking state of a pod.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct GlobalNetworking {
    /// Whether the pod has a private cross-data-center address.
    #[serde(default)]
    pub enabled: bool,
    /// That address, when enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// Internal DNS name, when enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internal_dns: Option<String>,
}

/// The GPU allocation of a pod.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct PodGpu {
    /// GPU type id, such as `NVIDIA GeForce RTX 4090`.
    pub id: String,
    /// Number of GPUs.
    #[serde(default = "one", deserialize_with = "lenient::u32_lenient")]
    pub count: u32,
}

fn one() -> u32 {
    1
}

/// The CPU allocation of a pod.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct PodCpu {
    /// CPU flavor id.
    pub id: String,
    /// Number of vCPUs.
    #[serde(
        default,
        deserialize_with = "lenient::opt_u64_lenient",
        skip_serializing_if = "Option::is_none"
    )]
    pub vcpu_count: Option<u64>,
    /// Memory in GB.
    #[serde(
        default,
        deserialize_with = "lenient::opt_f64_lenient",
        skip_serializing_if = "Option::is_none"
    )]
    pub memory: Option<f64>,
}

/// A pod's membership in a cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PodCluster {
    /// Cluster id.
    pub id: String,
    /// Node rank, once assigned.
    #[serde(default, deserialize_with = "lenient::opt_u64_lenient")]
    pub rank: Option<u64>,
    /// Role in SLURM or RAY clusters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Address on the cluster's private network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
}

/// The answer of `GET /v2/pods`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PodList {
    /// The pods.
    #[serde(default, deserialize_with = "lenient::null_as_default")]
    pub pods: Vec<Pod>,
}

/// Body of `POST /v2/pods`. Start with [`CreatePodRequest::new`] and add settings; the API needs
/// `image` (unless `template_id` is set) and exactly one of `gpu` or `cpu`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[non_exhaustive]
pub struct CreatePodRequest {
    /// Pod name (required, non-empty).
    pub name: String,
    /// Container image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Template to base the pod on; body fields override the template's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_id: Option<String>,
    /// GPU request, for a GPU pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<GpuRequest>,
    /// CPU request, for a CPU pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuRequest>,
    /// Cloud tier; the API defaults to `SECURE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud: Option<Cloud>,
    /// Preferred data centers; empty lets the scheduler choose.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub data_center_ids: Vec<String>,
    /// Container disk in GB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<u32>,
    /// Arguments for the container entrypoint (they replace the image's default command).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<String>,
    /// Exposed ports such as `22/tcp`; the API has no default.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<String>,
    /// Environment variables.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Container registry credential id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<String>,
    /// Storage mounts; omitted means no persistent storage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mounts: Option<Mounts>,
    /// Global networking.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub global_networking: Option<bool>,
    /// Set up SSH from the account's registered keys (does nothing when none are registered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_ssh: Option<bool>,
    /// Start JupyterLab.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_jupyter: Option<bool>,
}

impl CreatePodRequest {
    /// A request for a pod named `name`; add the image and compute with the other methods.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ..Self::default()
        }
    }

    /// Sets the container image.
    #[must_use]
    pub fn image(mut self, image: impl Into<String>) -> Self {
        self.image = Some(image.into());
        self
    }

    /// Sets the template.
    #[must_use]
    pub fn template_id(mut self, template_id: impl Into<String>) -> Self {
        self.template_id = Some(template_id.into());
        self
    }

    /// Requests GPUs (and clears a CPU request).
    #[must_use]
    pub fn gpu(mut self, gpu: GpuRequest) -> Self {
        self.gpu = Some(gpu);
        self.cpu = None;
        self
    }

    /// Requests a CPU pod (and clears a GPU request).
    #[must_use]
    pub fn cpu(mut self, cpu: CpuRequest) -> Self {
        self.cpu = Some(cpu);
        self.gpu = None;
        self
    }

    /// Sets the cloud tier.
    #[must_use]
    pub fn cloud(mut self, cloud: Cloud) -> Self {
        self.cloud = Some(cloud);
        self
    }

    /// Adds a preferred data center.
    #[must_use]
    pub fn data_center(mut self, id: impl Into<String>) -> Self {
        self.data_center_ids.push(id.into());
        self
    }

    /// Sets the container disk in GB.
    #[must_use]
    pub fn disk(mut self, gb: u32) -> Self {
        self.disk = Some(gb);
        self
    }

    /// Sets the container arguments (they replace the image's default command).
    #[must_use]
    pub fn args(mut self, args: impl Into<String>) -> Self {
        self.args = Some(args.into());
        self
    }

    /// Exposes a port such as `22/tcp`.
    #[must_use]
    pub fn port(mut self, port: impl Into<String>) -> Self {
        self.ports.push(port.into());
        self
    }

    /// Sets an environment variable.
    #[must_use]
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.insert(key.into(), value.into());
        self
    }

    /// Sets the registry credential id.
    #[must_use]
    pub fn registry(mut self, registry: impl Into<String>) -> Self {
        self.registry = Some(registry.into());
        self
    }

    /// Sets the storage mounts.
    #[must_use]
    pub fn mounts(mut self, mounts: Mounts) -> Self {
        self.mounts = Some(mounts);
        self
    }

    /// Turns global networking on or off.
    #[must_use]
    pub fn global_networking(mut self, enabled: bool) -> Self {
        self.global_networking = Some(enabled);
        self
    }

    /// Asks the provisioner to set up SSH from the account's registered keys.
    #[must_use]
    pub fn start_ssh(mut self, enabled: bool) -> Self {
        self.start_ssh = Some(enabled);
        self
    }

    /// Asks the provisioner to start JupyterLab.
    #[must_use]
    pub fn start_jupyter(mut self, enabled: bool) -> Self {
        self.start_jupyter = Some(enabled);
        self
    }

    /// Checks the rules the API enforces that can be checked without it, so a bad request fails
    /// before it is sent. Returns a description of the first violation.
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.name.trim().is_empty() {
            return Err("the pod name is empty".into());
        }
        if self.image.is_none() && self.template_id.is_none() {
            return Err("set an image or a template id".into());
        }
        match (&self.gpu, &self.cpu) {
            (None, None) => return Err("request either a GPU (gpu) or a CPU pod (cpu)".into()),
            (Some(_), Some(_)) => return Err("request a GPU or a CPU pod, not both".into()),
            (Some(gpu), None) => {
                if gpu.id.trim().is_empty() {
                    return Err("the GPU type id is empty".into());
                }
                if gpu.count == Some(0) {
                    return Err("the GPU count must be at least 1".into());
                }
            }
            (None, Some(cpu)) => {
                if cpu.vcpu_count < 2 || !cpu.vcpu_count.is_power_of_two() {
                    return Err("the vCPU count must be a power of two, at least 2".into());
                }
            }
        }
        if let Some(mounts) = &self.mounts {
            check_mounts(mounts)?;
        }
        Ok(())
    }
}

pub(super) fn check_mounts(mounts: &Mounts) -> Result<(), String> {
    if mounts.persistent.is_some() && !mounts.network.is_empty() {
        return Err("mount a persistent volume or a network volume, not both".into());
    }
    if mounts.network.len() > 1 {
        return Err("at most one network volume can be mounted".into());
    }
    if let Some(persistent) = &mounts.persistent {
        if persistent.size < 10 {
            return Err(format!(
                "the persistent volume must be at least 10 GB, not {}",
                persistent.size
            ));
        }
        if !persistent.path.starts_with('/') {
            return Err(format!(
                "the persistent volume path {:?} must be absolute",
                persistent.path
            ));
        }
    }
    Ok(())
}

/// GPU part of a create request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[non_exhaustive]
pub struct GpuRequest {
    /// GPU type id from the catalog, such as `NVIDIA GeForce RTX 4090`.
    pub id: String,
    /// Number of GPUs; the API defaults to 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    /// Acceptable host CUDA versions (`major.minor`), matched exactly.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_cuda_versions: Vec<String>,
    /// Lowest acceptable host CUDA version (`major.minor`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_cuda_version: Option<String>,
}

impl GpuRequest {
    /// One GPU of type `id`.
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            ..Self::default()
        }
    }

    /// Sets the number of GPUs.
    #[must_use]
    pub fn count(mut self, count: u32) -> Self {
        self.count = Some(count);
        self
    }

    /// Adds an acceptable host CUDA version.
    #[must_use]
    pub fn allowed_cuda_version(mut self, version: impl Into<String>) -> Self {
        self.allowed_cuda_versions.push(version.into());
        self
    }

    /// Sets the lowest acceptable host CUDA version.
    #[must_use]
    pub fn min_cuda_version(mut self, version: impl Into<String>) -> Self {
        self.min_cuda_version = Some(version.into());
        self
    }
}

/// CPU part of a create request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[non_exhaustive]
pub struct CpuRequest {
    /// CPU flavor id from the catalog.
    pub id: String,
    /// Number of vCPUs (a power of two, at least 2).
    pub vcpu_count: u32,
}

impl CpuRequest {
    /// `vcpu_count` vCPUs of flavor `id`.
    pub fn new(id: impl Into<String>, vcpu_count: u32) -> Self {
        Self {
            id: id.into(),
            vcpu_count,
        }
    }
}

/// Body of `PATCH /v2/pods/{id}`: only the fields set are changed. Some changes restart the pod.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[non_exhaustive]
pub struct UpdatePodRequest {
    /// New name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// New image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// New container arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<String>,
    /// New container disk in GB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<u32>,
    /// New port list (replaces the old one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<String>>,
    /// New environment (replaces the old one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<BTreeMap<String, String>>,
    /// New registry credential id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<String>,
    /// New mounts (paths may change; volumes may not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mounts: Option<Mounts>,
    /// Global networking on the next start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub global_networking: Option<bool>,
    /// Lock or unlock the pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locked: Option<bool>,
    /// Apply a template's container settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_id: Option<String>,
}

impl UpdatePodRequest {
    /// An update that changes nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Renames the pod.
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Changes the image.
    #[must_use]
    pub fn image(mut self, image: impl Into<String>) -> Self {
        self.image = Some(image.into());
        self
    }

    /// Changes the container arguments.
    #[must_use]
    pub fn args(mut self, args: impl Into<String>) -> Self {
        self.args = Some(args.into());
        self
    }

    /// Changes the container disk.
    #[must_use]
    pub fn disk(mut self, gb: u32) -> Self {
        self.disk = Some(gb);
        self
    }

    /// Replaces the port list.
    #[must_use]
    pub fn ports(mut self, ports: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.ports = Some(ports.into_iter().map(Into::into).collect());
        self
    }

    /// Replaces the environment.
    #[must_use]
    pub fn env(mut self, env: BTreeMap<String, String>) -> Self {
        self.env = Some(env);
        self
    }

    /// Changes the mounts.
    #[must_use]
    pub fn mounts(mut self, mounts: Mounts) -> Self {
        self.mounts = Some(mounts);
        self
    }

    /// Locks or unlocks the pod.
    #[must_use]
    pub fn locked(mut self, locked: bool) -> Self {
        self.locked = Some(locked);
        self
    }

    /// Turns global networking on or off (from the next start).
    #[must_use]
    pub fn global_networking(mut self, enabled: bool) -> Self {
        self.global_networking = Some(enabled);
        self
    }

    /// Applies a template's container settings.
    #[must_use]
    pub fn template_id(mut self, template_id: impl Into<String>) -> Self {
        self.template_id = Some(template_id.into());
        self
    }

    pub(crate) fn check(&self) -> Result<(), String> {
        if self
            .name
            .as_deref()
            .is_some_and(|name| name.trim().is_empty())
        {
            return Err("the new pod name is empty".into());
        }
        if let Some(mounts) = &self.mounts {
            check_mounts(mounts)?;
        }
        Ok(())
    }
}

/// Body of `POST /v2/pods/{id}/action`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct PodActionRequest {
    /// The transition.
    pub action: PodAction,
}

impl PodActionRequest {
    /// A request for `action`.
    pub fn new(action: PodAction) -> Self {
        Self { action }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_ip_rules() {
        assert!(is_public_ip("195.26.233.3"));
        assert!(!is_public_ip("10.1.2.3"));
        assert!(!is_public_ip("100.65.0.101"));
        assert!(!is_public_ip("127.0.0.1"));
        assert!(!is_public_ip("fd00::1"));
        assert!(is_public_ip("2001:db8::1"));
        assert!(is_public_ip("pod.example.com"));
        assert!(!is_public_ip(""));
    }

    #[test]
    fn create_request_checks() {
        let ok = CreatePodRequest::new("a")
            .image("img")
            .gpu(GpuRequest::new("NVIDIA RTX A5000"));
        assert_eq!(ok.check(), Ok(()));
        assert!(
            CreatePodRequest::new("a")
                .gpu(GpuRequest::new("x"))
                .check()
                .is_err()
        );
        assert!(
            CreatePodRequest::new(" ")
                .image("i")
                .gpu(GpuRequest::new("x"))
                .check()
                .is_err()
        );
        assert!(CreatePodRequest::new("a").image("i").check().is_err());
        assert!(
            CreatePodRequest::new("a")
                .image("i")
                .cpu(CpuRequest::new("cpu3c", 3))
                .check()
                .is_err()
        );
        let small = ok.clone().mounts(Mounts::persistent(5, "/runpod"));
        assert_eq!(
            small.check(),
            Err("the persistent volume must be at least 10 GB, not 5".into())
        );
    }
}
