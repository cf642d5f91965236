//! GPU and data-center catalogs, account SSH keys, billing and log lines.

use serde::{Deserialize, Serialize};

use super::enums::{
    Availability, BillingBucketSize, Compliance, DataCenterRegion, GpuManufacturer, LogSource,
    VolumeType,
};
use super::lenient;

/// A GPU type from the catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct GpuType {
    /// Identifier to use when creating a pod, such as `NVIDIA GeForce RTX 4090`.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Serverless pool id, if the GPU is in a pool.
    #[serde(default)]
    pub pool: Option<String>,
    /// Manufacturer.
    pub manufacturer: GpuManufacturer,
    /// VRAM in GB.
    #[serde(deserialize_with = "lenient::u64_lenient")]
    pub memory: u64,
    /// Offered on the secure cloud.
    #[serde(default)]
    pub secure: bool,
    /// Offered on the community cloud.
    #[serde(default)]
    pub community: bool,
    /// List price per GPU per hour in USD.
    pub price: GpuPrice,
    /// Most GPUs of this type on one pod, per cloud.
    pub max_count: GpuMaxCount,
    /// Overall availability; present when requested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability: Option<Availability>,
    /// Availability per data center; present when requested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_centers: Option<Vec<DataCenterAvailability>>,
    /// CUDA versions on offer with current capacity; present when requested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cuda_versions: Option<Vec<CudaVersionAvailability>>,
}

impl GpuType {
    /// Price per GPU per hour on the given cloud.
    pub fn price_on(&self, cloud: &super::Cloud) -> Option<f64> {
        match cloud {
            super::Cloud::Secure => Some(self.price.secure),
            super::Cloud::Community => Some(self.price.community),
            super::Cloud::Unknown(_) => None,
        }
    }
}

/// List prices of a GPU type, in USD per GPU per hour.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct GpuPrice {
    /// Secure cloud.
    #[serde(deserialize_with = "lenient::f64_lenient")]
    pub secure: f64,
    /// Community cloud.
    #[serde(deserialize_with = "lenient::f64_lenient")]
    pub community: f64,
    /// Serverless, when the GPU is in a pool.
    #[serde(
        default,
        deserialize_with = "lenient::opt_f64_lenient",
        skip_serializing_if = "Option::is_none"
    )]
    pub serverless: Option<f64>,
}

/// Most GPUs of a type on one pod, per cloud.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct GpuMaxCount {
    /// Secure cloud.
    #[serde(deserialize_with = "lenient::u32_lenient")]
    pub secure: u32,
    /// Community cloud.
    #[serde(deserialize_with = "lenient::u32_lenient")]
    pub community: u32,
}

/// Availability of a GPU type in one data center.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DataCenterAvailability {
    /// Data center id.
    pub id: String,
    /// Data center name.
    pub name: String,
    /// Stock level.
    pub availability: Availability,
}

/// A CUDA version offered for a GPU type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CudaVersionAvailability {
    /// `major.minor`.
    pub version: String,
    /// Whether a machine with this version has free capacity now.
    pub available: bool,
}

/// The answer of `GET /v2/catalog/gpus`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct GpuTypeList {
    /// GPU types.
    #[serde(default, deserialize_with = "lenient::null_as_default")]
    pub gpus: Vec<GpuType>,
}

/// A data center from the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct DataCenter {
    /// Identifier, such as `EU-RO-1`.
    pub id: String,
    /// Name.
    pub name: String,
    /// Region.
    pub region: DataCenterRegion,
    /// Supports global networking.
    #[serde(default)]
    pub global_network: bool,
    /// Network volume tiers supported.
    #[serde(default, deserialize_with = "lenient::null_as_default")]
    pub network_volume_types: Vec<VolumeType>,
    /// Compliance certifications.
    #[serde(default, deserialize_with = "lenient::null_as_default")]
    pub compliance: Vec<Compliance>,
    /// Per-GPU availability; present when requested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_availability: Option<Vec<ResourceAvailability>>,
    /// Per-CPU-flavor availability; present when requested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_availability: Option<Vec<ResourceAvailability>>,
}

/// Availability of one GPU type or CPU flavor in a data center.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ResourceAvailability {
    /// Resource id.
    pub id: String,
    /// Resource name.
    pub name: String,
    /// Stock level.
    pub availability: Availability,
}

/// The answer of `GET /v2/catalog/datacenters`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct DataCenterList {
    /// Data centers.
    #[serde(default, deserialize_with = "lenient::null_as_default")]
    pub data_centers: Vec<DataCenter>,
}

/// The account's registered SSH public keys (`GET` and `PUT /v2/account/ssh-keys`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct SshKeys {
    /// One `authorized_keys` line per key: `<type> <base64> [comment]`.
    #[serde(default, deserialize_with = "lenient::null_as_default")]
    pub keys: Vec<String>,
}

impl SshKeys {
    /// A key set.
    pub fn new(keys: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self {
            keys: keys.into_iter().map(Into::into).collect(),
        }
    }

    /// Whether a key with the same type and key material is registered (comments are ignored).
    pub fn contains(&self, public_key: &str) -> bool {
        let wanted = key_material(public_key);
        wanted.is_some() && self.keys.iter().any(|key| key_material(key) == wanted)
    }
}

/// `(type, base64)` of an `authorized_keys` line, ignoring the comment.
pub(crate) fn key_material(line: &str) -> Option<(&str, &str)> {
    let mut parts = line.split_whitespace();
    Some((parts.next()?, parts.next()?))
}

/// Whether `line` looks like an `authorized_keys` line the API accepts
/// (`^(ssh|ecdsa|sk)-\S+ \S+([ \t][^\n\r]*)?$`).
pub(crate) fn is_valid_public_key_line(line: &str) -> bool {
    if line.contains(['\n', '\r']) {
        return false;
    }
    let Some((kind, rest)) = line.split_once(' ') else {
        return false;
    };
    let prefix_ok = ["ssh-", "ecdsa-", "sk-"].iter().any(|prefix| {
        kind.strip_prefix(prefix)
            .is_some_and(|tail| !tail.is_empty())
    });
    if !prefix_ok || kind.chars().any(char::is_whitespace) {
        return false;
    }
    let key_end = rest.find([' ', '\t']).unwrap_or(rest.len());
    let key = &rest[..key_end];
    !key.is_empty() && !key.chars().any(char::is_whitespace)
}

/// One log line from `GET /v2/pods/{id}/logs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LogLine {
    /// Where the line came from.
    pub source: LogSource,
    /// The text.
    pub line: String,
    /// Timestamp (RFC 3339).
    pub ts: String,
    /// The event id, usable as a resume cursor.
    #[serde(skip)]
    pub event_id: Option<String>,
}

/// The answer of `GET /v2/billing/pods`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PodBilling {
    /// One record per pod per bucket.
    #[serde(default, deserialize_with = "lenient::null_as_default")]
    pub records: Vec<PodBillingRecord>,
    /// The resolved query and totals.
    pub metadata: PodBillingMetadata,
}

/// Cost components in USD.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct BillingAmounts {
    /// Total.
    #[serde(deserialize_with = "lenient::f64_lenient")]
    pub total_amount: f64,
    /// GPU compute.
    #[serde(deserialize_with = "lenient::f64_lenient")]
    pub gpu_amount: f64,
    /// CPU compute.
    #[serde(deserialize_with = "lenient::f64_lenient")]
    pub cpu_amount: f64,
    /// Disk.
    #[serde(deserialize_with = "lenient::f64_lenient")]
    pub disk_amount: f64,
}

/// One time bucket of one pod's bill.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct PodBillingRecord {
    /// The pod billed.
    pub pod_id: String,
    /// Bucket start (RFC 3339, inclusive).
    pub start_time: String,
    /// Bucket end (RFC 3339, exclusive).
    pub end_time: String,
    /// Amounts.
    #[serde(flatten)]
    pub amounts: BillingAmounts,
}

/// Totals and the resolved query of a billing answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct PodBillingMetadata {
    /// The resolved query window.
    pub query: ResolvedBillingQuery,
    /// Number of records.
    #[serde(deserialize_with = "lenient::u64_lenient")]
    pub record_count: u64,
    /// Number of distinct pods.
    #[serde(deserialize_with = "lenient::u64_lenient")]
    pub unique_pod_count: u64,
    /// Totals over all records.
    pub totals: BillingAmounts,
}

/// The billing window the API resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ResolvedBillingQuery {
    /// Window start (RFC 3339).
    pub start_time: String,
    /// Window end (RFC 3339).
    pub end_time: String,
    /// Bucket length.
    pub bucket_size: BillingBucketSize,
    /// The pod filter, if any.
    #[serde(default)]
    pub pod_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_key_lines() {
        assert!(is_valid_public_key_line("ssh-ed25519 AAAAC3Nza me@host"));
        assert!(is_valid_public_key_line("ecdsa-sha2-nistp256 AAAA"));
        assert!(!is_valid_public_key_line("ssh-ed25519"));
        assert!(!is_valid_public_key_line("rsa AAAA"));
        assert!(!is_valid_public_key_line("ssh-ed25519 AAAA\nssh-rsa BBBB"));
        assert!(!is_valid_public_key_line("ssh- AAAA"));
    }

    #[test]
    fn key_comparison_ignores_comments() {
        let keys = SshKeys::new(["ssh-ed25519 AAAA laptop"]);
        assert!(keys.contains("ssh-ed25519 AAAA desktop"));
        assert!(!keys.contains("ssh-ed25519 BBBB laptop"));
        assert!(!keys.contains("garbage"));
    }
}
