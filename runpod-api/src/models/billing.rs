//! Billing answers beyond pods: the account total (`GET /v2/billing`), serverless endpoints,
//! RunPod's public endpoints, network volumes and clusters. Pod billing is
//! [`PodBilling`](super::PodBilling).
//!
//! Every answer is a list of time-bucketed `records` plus `metadata` echoing the resolved window
//! and the totals over all records. Amounts are USD.

use serde::{Deserialize, Serialize};

use super::common::{ClusterId, EndpointId};
use super::enums::BillingBucketSize;
use super::lenient;

/// The window (and filter) the API resolved for a billing query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct BillingQuery {
    /// Window start (RFC 3339).
    pub start_time: String,
    /// Window end (RFC 3339, exclusive).
    pub end_time: String,
    /// Bucket length.
    pub bucket_size: BillingBucketSize,
    /// The endpoint filter of serverless billing, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serverless_id: Option<String>,
    /// The volume filter of network volume billing, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_volume_id: Option<String>,
    /// The cluster filter of cluster billing, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
}

/// Spend of every billable resource family in one bucket (or in total).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct AccountBillingAmounts {
    /// Everything.
    #[serde(deserialize_with = "lenient::f64_lenient")]
    pub total_amount: f64,
    /// Pod GPU compute.
    #[serde(default, deserialize_with = "lenient::f64_lenient")]
    pub pod_gpu_amount: f64,
    /// Pod CPU compute.
    #[serde(default, deserialize_with = "lenient::f64_lenient")]
    pub pod_cpu_amount: f64,
    /// Pod disks.
    #[serde(default, deserialize_with = "lenient::f64_lenient")]
    pub pod_disk_amount: f64,
    /// Serverless GPU compute.
    #[serde(default, deserialize_with = "lenient::f64_lenient")]
    pub serverless_gpu_amount: f64,
    /// Serverless CPU compute.
    #[serde(default, deserialize_with = "lenient::f64_lenient")]
    pub serverless_cpu_amount: f64,
    /// Serverless disks.
    #[serde(default, deserialize_with = "lenient::f64_lenient")]
    pub serverless_disk_amount: f64,
    /// Serverless platform fees.
    #[serde(default, deserialize_with = "lenient::f64_lenient")]
    pub serverless_fee_amount: f64,
    /// Standard network storage.
    #[serde(default, deserialize_with = "lenient::f64_lenient")]
    pub storage_standard_amount: f64,
    /// High-performance network storage.
    #[serde(default, deserialize_with = "lenient::f64_lenient")]
    pub storage_high_performance_amount: f64,
    /// RunPod public endpoints.
    #[serde(default, deserialize_with = "lenient::f64_lenient")]
    pub endpoint_amount: f64,
    /// Cluster GPU compute.
    #[serde(default, deserialize_with = "lenient::f64_lenient")]
    pub cluster_gpu_amount: f64,
    /// Cluster disks.
    #[serde(default, deserialize_with = "lenient::f64_lenient")]
    pub cluster_disk_amount: f64,
    /// Cluster inter-node networking.
    #[serde(default, deserialize_with = "lenient::f64_lenient")]
    pub cluster_networking_amount: f64,
}

/// One time bucket of the account's spend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct AccountBillingRecord {
    /// Bucket start (RFC 3339, inclusive).
    pub start_time: String,
    /// Bucket end (RFC 3339, exclusive).
    pub end_time: String,
    /// Amounts.
    #[serde(flatten)]
    pub amounts: AccountBillingAmounts,
}

/// Metadata of the account's spend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct AccountBillingMetadata {
    /// The resolved window.
    pub query: BillingQuery,
    /// Number of records.
    #[serde(deserialize_with = "lenient::u64_lenient")]
    pub record_count: u64,
    /// Totals over all records.
    pub totals: AccountBillingAmounts,
}

/// The answer of `GET /v2/billing`: the account's spend across every resource family.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AccountBilling {
    /// One record per bucket.
    #[serde(default, deserialize_with = "lenient::null_as_default")]
    pub records: Vec<AccountBillingRecord>,
    /// The resolved query and totals.
    pub metadata: AccountBillingMetadata,
}

/// Serverless endpoint spend.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ServerlessBillingAmounts {
    /// Total.
    #[serde(deserialize_with = "lenient::f64_lenient")]
    pub total_amount: f64,
    /// GPU compute.
    #[serde(default, deserialize_with = "lenient::f64_lenient")]
    pub gpu_amount: f64,
    /// CPU compute.
    #[serde(default, deserialize_with = "lenient::f64_lenient")]
    pub cpu_amount: f64,
    /// Disk.
    #[serde(default, deserialize_with = "lenient::f64_lenient")]
    pub disk_amount: f64,
    /// Platform fee.
    #[serde(default, deserialize_with = "lenient::f64_lenient")]
    pub fee_amount: f64,
}

/// One time bucket of one serverless endpoint's bill.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ServerlessBillingRecord {
    /// The endpoint billed.
    pub serverless_id: EndpointId,
    /// Bucket start (RFC 3339, inclusive).
    pub start_time: String,
    /// Bucket end (RFC 3339, exclusive).
    pub end_time: String,
    /// Amounts.
    #[serde(flatten)]
    pub amounts: ServerlessBillingAmounts,
}

/// Metadata of serverless billing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ServerlessBillingMetadata {
    /// The resolved window and filter.
    pub query: BillingQuery,
    /// Number of records.
    #[serde(deserialize_with = "lenient::u64_lenient")]
    pub record_count: u64,
    /// Number of distinct endpoints.
    #[serde(deserialize_with = "lenient::u64_lenient")]
    pub unique_serverless_count: u64,
    /// Totals over all records.
    pub totals: ServerlessBillingAmounts,
}

/// The answer of `GET /v2/billing/serverless`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ServerlessBilling {
    /// One record per endpoint per bucket.
    #[serde(default, deserialize_with = "lenient::null_as_default")]
    pub records: Vec<ServerlessBillingRecord>,
    /// The resolved query and totals.
    pub metadata: ServerlessBillingMetadata,
}

/// Spend on RunPod's public endpoints.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct PublicEndpointBillingAmounts {
    /// Total.
    #[serde(deserialize_with = "lenient::f64_lenient")]
    pub total_amount: f64,
}

/// One time bucket of public endpoint spend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct PublicEndpointBillingRecord {
    /// Bucket start (RFC 3339, inclusive).
    pub start_time: String,
    /// Bucket end (RFC 3339, exclusive).
    pub end_time: String,
    /// Amounts.
    #[serde(flatten)]
    pub amounts: PublicEndpointBillingAmounts,
}

/// Metadata of public endpoint billing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct PublicEndpointBillingMetadata {
    /// The resolved window.
    pub query: BillingQuery,
    /// Number of records.
    #[serde(deserialize_with = "lenient::u64_lenient")]
    pub record_count: u64,
    /// Totals over all records.
    pub totals: PublicEndpointBillingAmounts,
}

/// The answer of `GET /v2/billing/endpoints`: spend on RunPod's public endpoints (hosted
/// models), not on your own serverless endpoints (see [`ServerlessBilling`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PublicEndpointBilling {
    /// One record per bucket.
    #[serde(default, deserialize_with = "lenient::null_as_default")]
    pub records: Vec<PublicEndpointBillingRecord>,
    /// The resolved query and totals.
    pub metadata: PublicEndpointBillingMetadata,
}

/// Network volume spend.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct NetworkVolumeBillingAmounts {
    /// Total.
    #[serde(deserialize_with = "lenient::f64_lenient")]
    pub total_amount: f64,
    /// Standard storage.
    #[serde(default, deserialize_with = "lenient::f64_lenient")]
    pub standard_amount: f64,
    /// High-performance storage.
    #[serde(default, deserialize_with = "lenient::f64_lenient")]
    pub high_performance_amount: f64,
}

/// One time bucket of one network volume's bill.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct NetworkVolumeBillingRecord {
    /// The volume billed.
    pub network_volume_id: String,
    /// Bucket start (RFC 3339, inclusive).
    pub start_time: String,
    /// Bucket end (RFC 3339, exclusive).
    pub end_time: String,
    /// Amounts.
    #[serde(flatten)]
    pub amounts: NetworkVolumeBillingAmounts,
}

/// Metadata of network volume billing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct NetworkVolumeBillingMetadata {
    /// The resolved window and filter.
    pub query: BillingQuery,
    /// Number of records.
    #[serde(deserialize_with = "lenient::u64_lenient")]
    pub record_count: u64,
    /// Number of distinct volumes.
    #[serde(deserialize_with = "lenient::u64_lenient")]
    pub unique_network_volume_count: u64,
    /// Totals over all records.
    pub totals: NetworkVolumeBillingAmounts,
}

/// The answer of `GET /v2/billing/network-volumes`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct NetworkVolumeBilling {
    /// One record per volume per bucket.
    #[serde(default, deserialize_with = "lenient::null_as_default")]
    pub records: Vec<NetworkVolumeBillingRecord>,
    /// The resolved query and totals.
    pub metadata: NetworkVolumeBillingMetadata,
}

/// Cluster spend (clusters are GPU-only: no CPU component).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ClusterBillingAmounts {
    /// Total.
    #[serde(deserialize_with = "lenient::f64_lenient")]
    pub total_amount: f64,
    /// GPU compute.
    #[serde(default, deserialize_with = "lenient::f64_lenient")]
    pub gpu_amount: f64,
    /// Disk.
    #[serde(default, deserialize_with = "lenient::f64_lenient")]
    pub disk_amount: f64,
    /// Inter-node networking.
    #[serde(default, deserialize_with = "lenient::f64_lenient")]
    pub networking_amount: f64,
}

/// One time bucket of one cluster's bill.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ClusterBillingRecord {
    /// The cluster billed.
    pub cluster_id: ClusterId,
    /// Bucket start (RFC 3339, inclusive).
    pub start_time: String,
    /// Bucket end (RFC 3339, exclusive).
    pub end_time: String,
    /// Amounts.
    #[serde(flatten)]
    pub amounts: ClusterBillingAmounts,
}

/// Metadata of cluster billing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ClusterBillingMetadata {
    /// The resolved window and filter.
    pub query: BillingQuery,
    /// Number of records.
    #[serde(deserialize_with = "lenient::u64_lenient")]
    pub record_count: u64,
    /// Number of distinct clusters.
    #[serde(deserialize_with = "lenient::u64_lenient")]
    pub unique_cluster_count: u64,
    /// Totals over all records.
    pub totals: ClusterBillingAmounts,
}

/// The answer of `GET /v2/billing/clusters`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ClusterBilling {
    /// One record per cluster per bucket.
    #[serde(default, deserialize_with = "lenient::null_as_default")]
    pub records: Vec<ClusterBillingRecord>,
    /// The resolved query and totals.
    pub metadata: ClusterBillingMetadata,
}
