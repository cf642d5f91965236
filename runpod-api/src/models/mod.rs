//! Serde models of every request and response of the pod-related REST v2 operations.

mod catalog;
mod cpu;
mod enums;
mod ids;
mod lenient;
mod pod;
mod registry;
mod template;
mod volume;

pub use catalog::{
    BillingAmounts, CudaVersionAvailability, DataCenter, DataCenterAvailability, DataCenterList,
    GpuMaxCount, GpuPrice, GpuType, GpuTypeList, LogLine, PodBilling, PodBillingMetadata,
    PodBillingRecord, ResolvedBillingQuery, ResourceAvailability, SshKeys,
};
pub(crate) use catalog::{is_valid_public_key_line, key_material};
pub use cpu::{CpuPrice, CpuProduct, CpuType, CpuTypeList, VcpuRange};
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
