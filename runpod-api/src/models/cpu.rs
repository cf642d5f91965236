//! The CPU catalog: CPU flavors for CPU pods and serverless workers.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::catalog::DataCenterAvailability;
use super::enums::{Availability, wire_enum};
use super::lenient;

wire_enum! {
    /// Product context of CPU availability.
    CpuProduct {
        /// CPU pods.
        Pod => "POD",
        /// Serverless CPU workers.
        Serverless => "SERVERLESS",
    }
}

/// A CPU flavor from the catalog (`GET /v2/catalog/cpus/{id}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct CpuType {
    /// Flavor id to use in `CpuRequest`, such as `cpu5c`.
    pub id: String,
    /// Display name, such as `Compute-Optimized`.
    pub name: String,
    /// Generation group, such as `Gen 5`.
    pub group: String,
    /// The vCPU counts an instance of this flavor can have.
    pub vcpu: VcpuRange,
    /// GB of RAM per vCPU (may be fractional).
    #[serde(deserialize_with = "lenient::f64_lenient")]
    pub ram_gb_per_vcpu: f64,
    /// List prices per vCPU per hour in USD.
    pub price: CpuPrice,
    /// Overall availability; present when requested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability: Option<Availability>,
    /// Availability per data center offering the flavor; present when requested and the
    /// flavor is available somewhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_centers: Option<Vec<DataCenterAvailability>>,
}

impl CpuType {
    /// RAM in GB of an instance with `vcpu_count` vCPUs.
    pub fn ram_gb(&self, vcpu_count: u32) -> f64 {
        self.ram_gb_per_vcpu * f64::from(vcpu_count)
    }

    /// Secure-cloud pod price per hour in USD of an instance with `vcpu_count` vCPUs.
    pub fn pod_price_per_hour(&self, vcpu_count: u32) -> f64 {
        self.price.secure_per_vcpu * f64::from(vcpu_count)
    }
}

/// The vCPU counts a flavor offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct VcpuRange {
    /// Fewest vCPUs.
    #[serde(deserialize_with = "lenient::u32_lenient")]
    pub min: u32,
    /// Most vCPUs.
    #[serde(deserialize_with = "lenient::u32_lenient")]
    pub max: u32,
}

/// Prices of a CPU flavor in USD per vCPU per hour.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct CpuPrice {
    /// Secure-cloud pods.
    #[serde(deserialize_with = "lenient::f64_lenient")]
    pub secure_per_vcpu: f64,
    /// Serverless workers.
    #[serde(deserialize_with = "lenient::f64_lenient")]
    pub serverless_per_vcpu: f64,
}

/// The answer of `GET /v2/catalog/cpus`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CpuTypeList {
    /// CPU flavors.
    #[serde(default, deserialize_with = "lenient::null_as_default")]
    pub cpus: Vec<CpuType>,
}
