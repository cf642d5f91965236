//! Serde models of every request and response of the pod-related REST v2 operations.

mod catalog;
mod enums;
mod lenient;
mod pod;

pub use catalog::{
    BillingAmounts, CudaVersionAvailability, DataCenter, DataCenterAvailability, DataCenterList,
    GpuMaxCount, GpuPrice, GpuType, GpuTypeList, LogLine, PodBilling, PodBillingMetadata,
    PodBillingRecord, ResolvedBillingQuery, ResourceAvailability, SshKeys,
};
pub(crate) use catalog::{is_valid_public_key_line, key_material};
pub use enums::{
    Availability, BillingBucketSize, Cloud, Compliance, DataCenterInclude, DataCenterRegion,
    GpuManufacturer, LogSource, PodAction, PodStatus, Product, VolumeType,
};
pub use pod::{
    CpuRequest, CreatePodRequest, GlobalNetworking, GpuRequest, GpuUtilization, Mounts,
    NetworkMount, PersistentMount, Pod, PodActionRequest, PodCluster, PodCpu, PodGpu, PodId,
    PodList, PodRuntime, PodSsh, RuntimePort, SshEndpoint, SshTarget, UpdatePodRequest,
    Utilization,
};
