//! Serde models of every request and response of the REST v2 operations.

mod billing;
mod catalog;
mod cluster;
mod common;
mod cpu;
mod endpoint;
mod enums;
mod ids;
mod lenient;
mod pod;
mod registry;
mod template;
mod volume;

pub use billing::{
    AccountBilling, AccountBillingAmounts, AccountBillingMetadata, AccountBillingRecord,
    BillingQuery, ClusterBilling, ClusterBillingAmounts, ClusterBillingMetadata,
    ClusterBillingRecord, NetworkVolumeBilling, NetworkVolumeBillingAmounts,
    NetworkVolumeBillingMetadata, NetworkVolumeBillingRecord, PublicEndpointBilling,
    PublicEndpointBillingAmounts, PublicEndpointBillingMetadata, PublicEndpointBillingRecord,
    ServerlessBilling, ServerlessBillingAmounts, ServerlessBillingMetadata,
    ServerlessBillingRecord,
};
pub use catalog::{
    BillingAmounts, CudaVersionAvailability, DataCenter, DataCenterAvailability, DataCenterList,
    GpuMaxCount, GpuPrice, GpuType, GpuTypeList, LogLine, PodBilling, PodBillingMetadata,
    PodBillingRecord, ResolvedBillingQuery, ResourceAvailability, SshKeys,
};
pub(crate) use catalog::{is_valid_public_key_line, key_material};
pub use cluster::{
    Cluster, ClusterCompute, ClusterList, ClusterNetwork, ClusterPodsSummary, ClusterPrimary,
    ClusterType, CreateClusterRequest, MAX_CLUSTER_PODS, MIN_CLUSTER_PODS, UpdateClusterRequest,
};
pub use common::{ClusterId, EndpointId, EnvVars, WorkerId};
pub use cpu::{CpuPrice, CpuProduct, CpuType, CpuTypeList, VcpuRange};
pub use endpoint::{
    CreateEndpointRequest, Endpoint, EndpointCpu, EndpointGpu, EndpointGpuRequest,
    EndpointGpuUpdate, EndpointList, EndpointRequestUrls, EndpointScaling, EndpointType,
    EndpointWorkers, FlashBoot, LoadBalancerRequestUrls, MAX_IDLE_TIMEOUT_SECONDS,
    MIN_QUEUE_DELAY_SECONDS, QueueRequestUrls, Release, ReleaseDiffEntry, ReleaseList,
    ReleaseSource, RolloutSummary, UpdateEndpointRequest, Worker, WorkerList, WorkerStatus,
    WorkerSummary, WorkersConfig,
};
pub use enums::{
    Availability, BillingBucketSize, Cloud, Compliance, DataCenterInclude, DataCenterRegion,
    GpuManufacturer, LogSource, PodAction, PodStatus, Product, VolumeType,
};
pub use ids::{DelegationId, NetworkVolumeId, RegistryId, TemplateId};
pub use pod::{
    CpuRequest, CreatePodRequest, GlobalNetworking, GpuRequest, GpuUtilization, Mounts,
    NetworkMount, PersistentMount, Pod, PodActionRequest, PodCluster, PodCpu, PodGpu, PodId,
    PodList, PodRuntime, PodSsh, RuntimePort, SshEndpoint, SshTarget, UpdatePodRequest,
    Utilization,
};
pub use registry::{
    CreateEcrDelegationRequest, CreateRegistryRequest, EcrDelegation, EcrDelegationList, Registry,
    RegistryList,
};
pub use template::{
    CreateTemplateRequest, Template, TemplateCategory, TemplateList, TemplateMounts,
    TemplateSource, UpdateTemplateRequest,
};
pub use volume::{
    CreateNetworkVolumeRequest, MAX_NETWORK_VOLUME_GB, MIN_NETWORK_VOLUME_GB, NetworkVolume,
    NetworkVolumeList, UpdateNetworkVolumeRequest,
};
