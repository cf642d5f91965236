//! Instant clusters: the cluster object and the bodies that create and rename one.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::common::{ClusterId, EnvVars};
use super::enums::{PodStatus, wire_enum};
use super::lenient;
use super::pod::{Mounts, PodId, check_mounts};

wire_enum! {
    /// The kind of a cluster.
    ClusterType {
        /// A general multi-node application cluster.
        Application => "APPLICATION",
        /// A generic distributed-training cluster.
        Training => "TRAINING",
        /// A managed Slurm controller and compute topology.
        Slurm => "SLURM",
        /// A managed Ray head and worker topology.
        Ray => "RAY",
    }
}

/// Fewest pods a cluster may have (`ClusterCompute.podCount` minimum).
pub const MIN_CLUSTER_PODS: u32 = 2;
/// Most pods a cluster may have (`ClusterCompute.podCount` maximum).
pub const MAX_CLUSTER_PODS: u32 = 250;

/// A cluster as the API reports it (`GET /v2/clusters/{id}`). `pods` only counts the members;
/// [`Client::list_cluster_pods`](crate::Client::list_cluster_pods) returns them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Cluster {
    /// Identifier.
    pub id: ClusterId,
    /// Name.
    pub name: String,
    /// Kind.
    #[serde(rename = "type")]
    pub kind: ClusterType,
    /// The shape every member pod has.
    pub compute: ClusterCompute,
    /// Template the member pods were created from, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// The data center the cluster sits in, once a pod is placed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_center_id: Option<String>,
    /// Member pod counts.
    #[serde(default)]
    pub pods: ClusterPodsSummary,
    /// The overlay network, once provisioned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<ClusterNetwork>,
    /// The primary node, once placed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<ClusterPrimary>,
    /// Creation time (RFC 3339).
    pub created_at: String,
}

impl Cluster {
    /// Total GPUs of the cluster (`podCount` × `gpuCountPerPod`).
    pub fn total_gpus(&self) -> u64 {
        u64::from(self.compute.pod_count) * u64::from(self.compute.gpu_count_per_pod)
    }
}

/// The homogeneous shape of a cluster: `pod_count` pods with `gpu_count_per_pod` GPUs of type
/// `gpu_type_id` each.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ClusterCompute {
    /// GPU type id from the catalog, such as `NVIDIA H100 80GB HBM3`.
    pub gpu_type_id: String,
    /// GPUs on each pod (at least 1, at most the GPU type's `maxCount`).
    #[serde(deserialize_with = "lenient::u32_lenient")]
    pub gpu_count_per_pod: u32,
    /// Number of pods (2 to 250).
    #[serde(deserialize_with = "lenient::u32_lenient")]
    pub pod_count: u32,
}

impl ClusterCompute {
    /// `pod_count` pods with `gpu_count_per_pod` GPUs of type `gpu_type_id` each.
    pub fn new(gpu_type_id: impl Into<String>, gpu_count_per_pod: u32, pod_count: u32) -> Self {
        Self {
            gpu_type_id: gpu_type_id.into(),
            gpu_count_per_pod,
            pod_count,
        }
    }

    fn check(&self) -> Result<(), String> {
        if self.gpu_type_id.trim().is_empty() {
            return Err("compute.gpuTypeId is empty; name a GPU type from the catalog".into());
        }
        if self.gpu_count_per_pod == 0 {
            return Err("compute.gpuCountPerPod must be at least 1".into());
        }
        if !(MIN_CLUSTER_PODS..=MAX_CLUSTER_PODS).contains(&self.pod_count) {
            return Err(format!(
                "compute.podCount must be {MIN_CLUSTER_PODS} to {MAX_CLUSTER_PODS}, not {}",
                self.pod_count
            ));
        }
        Ok(())
    }
}

/// Counts of a cluster's member pods.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ClusterPodsSummary {
    /// Member pods currently provisioned.
    #[serde(default, deserialize_with = "lenient::u64_lenient")]
    pub total: u64,
    /// Member pods per status; statuses without pods are absent.
    #[serde(default, deserialize_with = "lenient::null_as_default")]
    pub by_status: BTreeMap<PodStatus, u64>,
}

impl ClusterPodsSummary {
    /// Member pods in `status`.
    pub fn count(&self, status: &PodStatus) -> u64 {
        self.by_status.get(status).copied().unwrap_or(0)
    }
}

/// A cluster's private VXLAN overlay network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ClusterNetwork {
    /// The overlay's CIDR block, such as `10.65.0.0/16`.
    pub cidr: String,
    /// VXLAN network identifier, once assigned.
    #[serde(
        default,
        deserialize_with = "lenient::opt_u64_lenient",
        skip_serializing_if = "Option::is_none"
    )]
    pub vxlan_id: Option<u64>,
    /// UDP port of the VXLAN traffic, once assigned.
    #[serde(
        default,
        deserialize_with = "lenient::opt_u16_lenient",
        skip_serializing_if = "Option::is_none"
    )]
    pub vxlan_port: Option<u16>,
}

/// The primary (master) node of a cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ClusterPrimary {
    /// The primary member pod.
    pub pod_id: PodId,
    /// Its status.
    pub status: PodStatus,
    /// Public SSH endpoint as `host:port`, once the primary runs with `22/tcp` exposed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_endpoint: Option<String>,
}

impl ClusterPrimary {
    /// The SSH endpoint split into host and port; `None` when absent or unreadable.
    pub fn ssh_host_port(&self) -> Option<(&str, u16)> {
        let (host, port) = self.ssh_endpoint.as_deref()?.rsplit_once(':')?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = port.parse().ok()?;
        (!host.is_empty()).then_some((host, port))
    }
}

/// The answer of `GET /v2/clusters`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ClusterList {
    /// Clusters.
    #[serde(default, deserialize_with = "lenient::null_as_default")]
    pub clusters: Vec<Cluster>,
}

/// Body of `POST /v2/clusters`. The container settings apply to every member pod; compute,
/// type and container settings cannot change later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[non_exhaustive]
pub struct CreateClusterRequest {
    /// Name (not empty).
    pub name: String,
    /// Kind.
    #[serde(rename = "type")]
    pub kind: ClusterType,
    /// Shape of every member pod.
    pub compute: ClusterCompute,
    /// Container image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Arguments for the container entrypoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<String>,
    /// Container disk in GB (at least 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<u32>,
    /// Exposed ports such as `22/tcp`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<String>,
    /// Environment variables (values are redacted from `Debug`).
    #[serde(default, skip_serializing_if = "EnvVars::is_empty")]
    pub env: EnvVars,
    /// Preferred data centers; empty lets the scheduler choose (a cluster sits in one).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub data_center_ids: Vec<String>,
    /// Storage mounts of every member pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mounts: Option<Mounts>,
    /// Set up SSH on every member from the account's registered keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_ssh: Option<bool>,
    /// Start JupyterLab on every member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_jupyter: Option<bool>,
}

impl CreateClusterRequest {
    /// A cluster named `name` of kind `kind` with the shape `compute`; add the container
    /// settings with the other methods.
    pub fn new(name: impl Into<String>, kind: ClusterType, compute: ClusterCompute) -> Self {
        Self {
            name: name.into(),
            kind,
            compute,
            image: None,
            args: None,
            disk: None,
            ports: Vec::new(),
            env: EnvVars::new(),
            data_center_ids: Vec::new(),
            mounts: None,
            start_ssh: None,
            start_jupyter: None,
        }
    }

    /// Sets the container image.
    #[must_use]
    pub fn image(mut self, image: impl Into<String>) -> Self {
        self.image = Some(image.into());
        self
    }

    /// Sets the container arguments.
    #[must_use]
    pub fn args(mut self, args: impl Into<String>) -> Self {
        self.args = Some(args.into());
        self
    }

    /// Sets the container disk in GB.
    #[must_use]
    pub fn disk(mut self, gb: u32) -> Self {
        self.disk = Some(gb);
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
        self.env.insert(key, value);
        self
    }

    /// Adds a preferred data center.
    #[must_use]
    pub fn data_center(mut self, id: impl Into<String>) -> Self {
        self.data_center_ids.push(id.into());
        self
    }

    /// Sets the storage mounts of every member pod.
    #[must_use]
    pub fn mounts(mut self, mounts: Mounts) -> Self {
        self.mounts = Some(mounts);
        self
    }

    /// Sets up SSH on every member from the account's registered keys.
    #[must_use]
    pub fn start_ssh(mut self, enabled: bool) -> Self {
        self.start_ssh = Some(enabled);
        self
    }

    /// Starts JupyterLab on every member.
    #[must_use]
    pub fn start_jupyter(mut self, enabled: bool) -> Self {
        self.start_jupyter = Some(enabled);
        self
    }

    /// Checks the spec's rules that hold without a round trip; returns the first violation.
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.name.trim().is_empty() {
            return Err("name is empty".into());
        }
        if let ClusterType::Unknown(other) = &self.kind {
            return Err(format!(
                "type {other:?} is not one of APPLICATION, TRAINING, SLURM, RAY"
            ));
        }
        self.compute.check()?;
        if self.disk == Some(0) {
            return Err("disk must be at least 1 GB".into());
        }
        if let Some(mounts) = &self.mounts {
            check_mounts(mounts).map_err(|reason| format!("mounts: {reason}"))?;
        }
        Ok(())
    }
}

/// Body of `PATCH /v2/clusters/{id}`: only the name can change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[non_exhaustive]
pub struct UpdateClusterRequest {
    /// New name (not empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl UpdateClusterRequest {
    /// An update that changes nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Renames the cluster.
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    pub(crate) fn check(&self) -> Result<(), String> {
        match &self.name {
            None => Err("the update changes nothing; set a name (the only mutable field)".into()),
            Some(name) if name.trim().is_empty() => Err("name is empty".into()),
            Some(_) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> CreateClusterRequest {
        CreateClusterRequest::new(
            "train",
            ClusterType::Training,
            ClusterCompute::new("NVIDIA H100 80GB HBM3", 8, 2),
        )
        .image("img")
    }

    #[test]
    fn create_checks_follow_the_spec() {
        assert_eq!(request().check(), Ok(()));
        let mut one_pod = request();
        one_pod.compute.pod_count = 1;
        assert!(one_pod.check().expect_err("min 2").contains("podCount"));
        let mut many = request();
        many.compute.pod_count = 251;
        assert!(many.check().is_err());
        let mut no_gpus = request();
        no_gpus.compute.gpu_count_per_pod = 0;
        assert!(
            no_gpus
                .check()
                .expect_err("min 1")
                .contains("gpuCountPerPod")
        );
        let both = request().mounts(Mounts {
            persistent: Mounts::persistent(20, "/w").persistent,
            network: Mounts::network("v", "/n").network,
        });
        assert!(both.check().expect_err("exclusive").starts_with("mounts:"));
        assert!(request().disk(0).check().is_err());
    }

    #[test]
    fn primary_ssh_endpoint_splits() {
        let primary = ClusterPrimary {
            pod_id: PodId::new("p"),
            status: PodStatus::Running,
            ssh_endpoint: Some("1.2.3.4:22001".into()),
        };
        assert_eq!(primary.ssh_host_port(), Some(("1.2.3.4", 22001)));
    }

    #[test]
    fn debug_hides_env_values() {
        let debug = format!("{:?}", request().env("HF_TOKEN", "hf_secret"));
        assert!(!debug.contains("hf_secret"), "{debug}");
    }
}
