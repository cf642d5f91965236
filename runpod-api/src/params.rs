//! Query parameters of the list and catalog operations. Each has `Default` (no filters) and
//! setters; `to_query` turns it into pairs without IO.

use crate::models::{
    BillingBucketSize, Cloud, Compliance, DataCenterInclude, DataCenterRegion, LogSource, Product,
    VolumeType,
};

/// Filters of `GET /v2/pods`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListPodsParams {
    /// Include cluster member pods (the API excludes them by default).
    pub include_cluster_pods: Option<bool>,
}

impl ListPodsParams {
    /// Includes or excludes cluster member pods.
    #[must_use]
    pub fn include_cluster_pods(mut self, include: bool) -> Self {
        self.include_cluster_pods = Some(include);
        self
    }

    pub(crate) fn to_query(&self) -> Vec<(&'static str, String)> {
        self.include_cluster_pods
            .map(|include| ("includeClusterPods", include.to_string()))
            .into_iter()
            .collect()
    }
}

/// Filters of the GPU catalog (`GET /v2/catalog/gpus`). Availability filters need
/// [`GpuCatalogParams::availability`], which also names the product contexts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct GpuCatalogParams {
    /// Product contexts of the availability to include; empty means availability is not asked.
    pub availability_for: Vec<Product>,
    /// GPU count for availability and lowest price.
    pub count: Option<u32>,
    /// Cloud for availability.
    pub cloud: Option<Cloud>,
    /// ISO 3166-1 alpha-2 country codes to scope availability to.
    pub country_codes: Vec<String>,
    /// Exact CUDA versions (`major.minor`) to scope availability to.
    pub cuda_versions: Vec<String>,
    /// Lowest CUDA version (`12` or `12.1`) to scope availability to.
    pub min_cuda_version: Option<String>,
}

impl GpuCatalogParams {
    /// Asks for availability in the given product contexts (such as [`Product::Pod`]).
    #[must_use]
    pub fn availability(mut self, products: impl IntoIterator<Item = Product>) -> Self {
        self.availability_for = products.into_iter().collect();
        self
    }

    /// GPU count for availability.
    #[must_use]
    pub fn count(mut self, count: u32) -> Self {
        self.count = Some(count);
        self
    }

    /// Cloud for availability.
    #[must_use]
    pub fn cloud(mut self, cloud: Cloud) -> Self {
        self.cloud = Some(cloud);
        self
    }

    /// Adds a country code.
    #[must_use]
    pub fn country_code(mut self, code: impl Into<String>) -> Self {
        self.country_codes.push(code.into());
        self
    }

    /// Adds an exact CUDA version.
    #[must_use]
    pub fn cuda_version(mut self, version: impl Into<String>) -> Self {
        self.cuda_versions.push(version.into());
        self
    }

    /// Sets the lowest CUDA version.
    #[must_use]
    pub fn min_cuda_version(mut self, version: impl Into<String>) -> Self {
        self.min_cuda_version = Some(version.into());
        self
    }

    /// Checks the API's rules that hold without a round trip.
    pub(crate) fn check(&self) -> Result<(), String> {
        let wants_filter = self.count.is_some()
            || self.cloud.is_some()
            || !self.country_codes.is_empty()
            || !self.cuda_versions.is_empty()
            || self.min_cuda_version.is_some();
        if wants_filter && self.availability_for.is_empty() {
            return Err(
                "availability filters need availability(...) with a product context".into(),
            );
        }
        if !self.cuda_versions.is_empty() && self.min_cuda_version.is_some() {
            return Err("cuda versions and a minimum cuda version exclude each other".into());
        }
        Ok(())
    }

    pub(crate) fn to_query(&self) -> Vec<(&'static str, String)> {
        let mut query = Vec::new();
        if !self.availability_for.is_empty() {
            query.push(("include", "AVAILABILITY".to_owned()));
            query.push((
                "product",
                join(self.availability_for.iter().map(Product::as_str)),
            ));
        }
        if let Some(count) = self.count {
            query.push(("count", count.to_string()));
        }
        if let Some(cloud) = &self.cloud {
            query.push(("cloud", cloud.as_str().to_owned()));
        }
        if !self.country_codes.is_empty() {
            query.push((
                "countryCodes",
                join(self.country_codes.iter().map(String::as_str)),
            ));
        }
        if !self.cuda_versions.is_empty() {
            query.push((
                "cudaVersions",
                join(self.cuda_versions.iter().map(String::as_str)),
            ));
        }
        if let Some(version) = &self.min_cuda_version {
            query.push(("minCudaVersion", version.clone()));
        }
        query
    }
}

/// Filters of the data-center catalog (`GET /v2/catalog/datacenters`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DataCenterParams {
    /// Expansions to include.
    pub include: Vec<DataCenterInclude>,
    /// Regions (any of).
    pub regions: Vec<DataCenterRegion>,
    /// Volume types (all of).
    pub network_volume_types: Vec<VolumeType>,
    /// Certifications (all of).
    pub compliance: Vec<Compliance>,
    /// Global networking support.
    pub global_network: Option<bool>,
}

impl DataCenterParams {
    /// Adds an expansion.
    #[must_use]
    pub fn include(mut self, include: DataCenterInclude) -> Self {
        self.include.push(include);
        self
    }

    /// Adds a region.
    #[must_use]
    pub fn region(mut self, region: DataCenterRegion) -> Self {
        self.regions.push(region);
        self
    }

    /// Adds a required volume type.
    #[must_use]
    pub fn network_volume_type(mut self, kind: VolumeType) -> Self {
        self.network_volume_types.push(kind);
        self
    }

    /// Adds a required certification.
    #[must_use]
    pub fn compliance(mut self, compliance: Compliance) -> Self {
        self.compliance.push(compliance);
        self
    }

    /// Filters on global networking support.
    #[must_use]
    pub fn global_network(mut self, supported: bool) -> Self {
        self.global_network = Some(supported);
        self
    }

    pub(crate) fn to_query(&self) -> Vec<(&'static str, String)> {
        let mut query = Vec::new();
        if !self.include.is_empty() {
            query.push((
                "include",
                join(self.include.iter().map(DataCenterInclude::as_str)),
            ));
        }
        if !self.regions.is_empty() {
            query.push((
                "regions",
                join(self.regions.iter().map(DataCenterRegion::as_str)),
            ));
        }
        if !self.network_volume_types.is_empty() {
            query.push((
                "networkVolumeTypes",
                join(self.network_volume_types.iter().map(VolumeType::as_str)),
            ));
        }
        if !self.compliance.is_empty() {
            query.push((
                "compliance",
                join(self.compliance.iter().map(Compliance::as_str)),
            ));
        }
        if let Some(global) = self.global_network {
            query.push(("globalNetwork", global.to_string()));
        }
        query
    }
}

/// Options of the pod log stream (`GET /v2/pods/{id}/logs`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LogParams {
    /// Only this source; both when `None`.
    pub source: Option<LogSource>,
    /// Historical lines to send first (0 to 5000; the API defaults to 100).
    pub tail: Option<u32>,
    /// Resume from this RFC 3339 time.
    pub since: Option<String>,
    /// Resume after this event id (a timestamp the stream sent); wins over `since` and `tail`.
    pub last_event_id: Option<String>,
}

impl LogParams {
    /// Only lines from `source`.
    #[must_use]
    pub fn source(mut self, source: LogSource) -> Self {
        self.source = Some(source);
        self
    }

    /// Backfill `lines` historical lines (at most 5000).
    #[must_use]
    pub fn tail(mut self, lines: u32) -> Self {
        self.tail = Some(lines);
        self
    }

    /// Resume from an RFC 3339 time.
    #[must_use]
    pub fn since(mut self, time: impl Into<String>) -> Self {
        self.since = Some(time.into());
        self
    }

    /// Resume after an event id.
    #[must_use]
    pub fn last_event_id(mut self, id: impl Into<String>) -> Self {
        self.last_event_id = Some(id.into());
        self
    }

    pub(crate) fn check(&self) -> Result<(), String> {
        match self.tail {
            Some(tail) if tail > 5000 => Err(format!("tail is at most 5000 lines, not {tail}")),
            _ => Ok(()),
        }
    }

    pub(crate) fn to_query(&self) -> Vec<(&'static str, String)> {
        let mut query = Vec::new();
        if let Some(source) = &self.source {
            query.push(("source", source.as_str().to_owned()));
        }
        if let Some(tail) = self.tail {
            query.push(("tail", tail.to_string()));
        }
        if let Some(since) = &self.since {
            query.push(("since", since.clone()));
        }
        query
    }
}

/// Filters of the billing operations (`GET /v2/billing` and `/v2/billing/*`). Use either a time
/// window or `last_n`. Each id filter belongs to one operation (`pod_id` to pod billing,
/// `serverless_id` to serverless billing, and so on); the client refuses a filter the operation
/// does not take rather than let the API ignore it and bill everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BillingParams {
    /// Window start (RFC 3339); the API defaults to 30 days ago.
    pub start_time: Option<String>,
    /// Window end (RFC 3339, exclusive); the API defaults to now.
    pub end_time: Option<String>,
    /// Bucket length; the API defaults to a day.
    pub bucket_size: Option<BillingBucketSize>,
    /// The last N buckets, ending with the current one.
    pub last_n: Option<u32>,
    /// Only this pod.
    pub pod_id: Option<String>,
    /// Only this serverless endpoint (serverless billing).
    pub serverless_id: Option<String>,
    /// Only this network volume (network volume billing).
    pub network_volume_id: Option<String>,
    /// Only this cluster (cluster billing).
    pub cluster_id: Option<String>,
}

impl BillingParams {
    /// Sets the window.
    #[must_use]
    pub fn window(mut self, start: impl Into<String>, end: impl Into<String>) -> Self {
        self.start_time = Some(start.into());
        self.end_time = Some(end.into());
        self
    }

    /// Sets the bucket length.
    #[must_use]
    pub fn bucket_size(mut self, size: BillingBucketSize) -> Self {
        self.bucket_size = Some(size);
        self
    }

    /// Asks for the last `buckets` buckets.
    #[must_use]
    pub fn last_n(mut self, buckets: u32) -> Self {
        self.last_n = Some(buckets);
        self
    }

    /// Only bills of `pod_id`.
    #[must_use]
    pub fn pod_id(mut self, pod_id: impl Into<String>) -> Self {
        self.pod_id = Some(pod_id.into());
        self
    }

    /// Only bills of the serverless endpoint `id`.
    #[must_use]
    pub fn serverless_id(mut self, id: impl AsRef<str>) -> Self {
        self.serverless_id = Some(id.as_ref().to_owned());
        self
    }

    /// Only bills of the network volume `id`.
    #[must_use]
    pub fn network_volume_id(mut self, id: impl AsRef<str>) -> Self {
        self.network_volume_id = Some(id.as_ref().to_owned());
        self
    }

    /// Only bills of the cluster `id`.
    #[must_use]
    pub fn cluster_id(mut self, id: impl AsRef<str>) -> Self {
        self.cluster_id = Some(id.as_ref().to_owned());
        self
    }

    /// [`Self::check`] plus: only the id filter `scope` takes may be set.
    pub(crate) fn check_for(&self, scope: BillingScope) -> Result<(), String> {
        self.check()?;
        let filters = [
            ("pod_id", BillingScope::Pods, self.pod_id.is_some()),
            (
                "serverless_id",
                BillingScope::Serverless,
                self.serverless_id.is_some(),
            ),
            (
                "network_volume_id",
                BillingScope::NetworkVolumes,
                self.network_volume_id.is_some(),
            ),
            (
                "cluster_id",
                BillingScope::Clusters,
                self.cluster_id.is_some(),
            ),
        ];
        match filters
            .iter()
            .find(|(_, owner, set)| *set && *owner != scope)
        {
            Some((name, owner, _)) => Err(format!(
                "the {name} filter belongs to {} billing; {} billing takes {}",
                owner.name(),
                scope.name(),
                scope.filter().unwrap_or("no id filter")
            )),
            None => Ok(()),
        }
    }

    pub(crate) fn check(&self) -> Result<(), String> {
        if self.last_n.is_some() && (self.start_time.is_some() || self.end_time.is_some()) {
            return Err("use either a time window or last_n, not both".into());
        }
        if self.last_n == Some(0) {
            return Err("last_n must be at least 1".into());
        }
        Ok(())
    }

    pub(crate) fn to_query(&self) -> Vec<(&'static str, String)> {
        let mut query = Vec::new();
        if let Some(start) = &self.start_time {
            query.push(("startTime", start.clone()));
        }
        if let Some(end) = &self.end_time {
            query.push(("endTime", end.clone()));
        }
        if let Some(size) = &self.bucket_size {
            query.push(("bucketSize", size.as_str().to_owned()));
        }
        if let Some(last_n) = self.last_n {
            query.push(("lastN", last_n.to_string()));
        }
        if let Some(pod_id) = &self.pod_id {
            query.push(("podId", pod_id.clone()));
        }
        if let Some(id) = &self.serverless_id {
            query.push(("serverlessId", id.clone()));
        }
        if let Some(id) = &self.network_volume_id {
            query.push(("networkVolumeId", id.clone()));
        }
        if let Some(id) = &self.cluster_id {
            query.push(("clusterId", id.clone()));
        }
        query
    }
}

/// Which billing operation a [`BillingParams`] is sent to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BillingScope {
    /// `GET /v2/billing`.
    Account,
    /// `GET /v2/billing/pods`.
    Pods,
    /// `GET /v2/billing/serverless`.
    Serverless,
    /// `GET /v2/billing/endpoints`.
    PublicEndpoints,
    /// `GET /v2/billing/network-volumes`.
    NetworkVolumes,
    /// `GET /v2/billing/clusters`.
    Clusters,
}

impl BillingScope {
    fn name(self) -> &'static str {
        match self {
            Self::Account => "account",
            Self::Pods => "pod",
            Self::Serverless => "serverless",
            Self::PublicEndpoints => "public endpoint",
            Self::NetworkVolumes => "network volume",
            Self::Clusters => "cluster",
        }
    }

    fn filter(self) -> Option<&'static str> {
        match self {
            Self::Pods => Some("pod_id"),
            Self::Serverless => Some("serverless_id"),
            Self::NetworkVolumes => Some("network_volume_id"),
            Self::Clusters => Some("cluster_id"),
            Self::Account | Self::PublicEndpoints => None,
        }
    }
}

fn join<'a>(items: impl Iterator<Item = &'a str>) -> String {
    items.collect::<Vec<_>>().join(",")
}

mod cpu;
pub use cpu::CpuCatalogParams;
