//! Serverless workers and endpoint releases.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::super::common::WorkerId;
use super::super::enums::wire_enum;
use super::super::lenient;

wire_enum! {
    /// A serverless worker's state.
    WorkerStatus {
        /// Processing a job.
        Running => "RUNNING",
        /// Ready and polling for jobs.
        Idle => "IDLE",
        /// Starting up.
        Initializing => "INITIALIZING",
        /// Waiting for compute capacity.
        Throttled => "THROTTLED",
        /// Failing health checks.
        Unhealthy => "UNHEALTHY",
    }
}

wire_enum! {
    /// What produced an endpoint release.
    ReleaseSource {
        /// A completed GitHub build.
        GitBuild => "GIT_BUILD",
        /// A manual configuration change.
        Manual => "MANUAL",
    }
}

/// A serverless worker (`GET /v2/serverless/{id}/workers`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Worker {
    /// Identifier (for [`Client::worker_logs`](crate::Client::worker_logs)).
    pub id: WorkerId,
    /// State.
    pub status: WorkerStatus,
    /// Whether the worker runs an older configuration than the endpoint's current one.
    #[serde(default)]
    pub is_stale: bool,
    /// The endpoint configuration version it runs, if known.
    #[serde(default, deserialize_with = "lenient::opt_u64_lenient")]
    pub version: Option<u64>,
    /// GPUs allocated.
    #[serde(default, deserialize_with = "lenient::u64_lenient")]
    pub gpu_count: u64,
    /// Container image.
    #[serde(default)]
    pub image: Option<String>,
    /// Seconds running, once placed and running.
    #[serde(default, deserialize_with = "lenient::opt_u64_lenient")]
    pub uptime_seconds: Option<u64>,
    /// GPU type, once placed.
    #[serde(default)]
    pub gpu_type_id: Option<String>,
    /// Data center, once placed.
    #[serde(default)]
    pub data_center_id: Option<String>,
    /// Last start time (RFC 3339), if started.
    #[serde(default)]
    pub started_at: Option<String>,
}

/// Worker counts per state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct WorkerSummary {
    /// Processing a job.
    #[serde(default, deserialize_with = "lenient::u64_lenient")]
    pub running: u64,
    /// Ready and polling.
    #[serde(default, deserialize_with = "lenient::u64_lenient")]
    pub idle: u64,
    /// Starting up.
    #[serde(default, deserialize_with = "lenient::u64_lenient")]
    pub initializing: u64,
    /// Waiting for capacity.
    #[serde(default, deserialize_with = "lenient::u64_lenient")]
    pub throttled: u64,
    /// Failing health checks.
    #[serde(default, deserialize_with = "lenient::u64_lenient")]
    pub unhealthy: u64,
    /// All workers.
    #[serde(default, deserialize_with = "lenient::u64_lenient")]
    pub total: u64,
}

/// The answer of `GET /v2/serverless/{id}/workers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct WorkerList {
    /// Active workers.
    #[serde(default, deserialize_with = "lenient::null_as_default")]
    pub workers: Vec<Worker>,
    /// Counts per state.
    #[serde(default)]
    pub summary: WorkerSummary,
    /// The endpoint's current configuration version, if known.
    #[serde(default, deserialize_with = "lenient::opt_u64_lenient")]
    pub endpoint_version: Option<u64>,
}

/// One configuration release of an endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Release {
    /// Identifier.
    pub id: String,
    /// The configuration version it produced.
    #[serde(default, deserialize_with = "lenient::opt_u64_lenient")]
    pub version: Option<u64>,
    /// What produced it.
    pub source: ReleaseSource,
    /// The build behind a `GIT_BUILD` release.
    #[serde(default)]
    pub build_id: Option<String>,
    /// The user who made it.
    #[serde(default)]
    pub created_by_user_id: Option<String>,
    /// Workers running this release's version.
    #[serde(default, deserialize_with = "lenient::u64_lenient")]
    pub worker_count: u64,
    /// Creation time (RFC 3339).
    pub created_at: String,
    /// The fields that changed.
    #[serde(default, deserialize_with = "lenient::null_as_default")]
    pub diff: Vec<ReleaseDiffEntry>,
}

/// One changed field of a release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ReleaseDiffEntry {
    /// The field, such as `workers.max` or `template.imageName`.
    pub field: String,
    /// Previous value (`null` when added).
    #[serde(default)]
    pub old: serde_json::Value,
    /// New value (`null` when removed).
    #[serde(default)]
    pub new: serde_json::Value,
}

/// How far the current version has rolled out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct RolloutSummary {
    /// Whether a worker still runs an older version.
    #[serde(default)]
    pub in_progress: bool,
    /// Workers on the current version.
    #[serde(default, deserialize_with = "lenient::u64_lenient")]
    pub workers_on_latest: u64,
    /// All workers.
    #[serde(default, deserialize_with = "lenient::u64_lenient")]
    pub workers_total: u64,
    /// Percent of workers on the current version.
    #[serde(default, deserialize_with = "lenient::u64_lenient")]
    pub percent_on_latest: u64,
}

/// The answer of `GET /v2/serverless/{id}/releases`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ReleaseList {
    /// The endpoint's current configuration version, if known.
    #[serde(default, deserialize_with = "lenient::opt_u64_lenient")]
    pub endpoint_version: Option<u64>,
    /// Rollout state of the current version.
    #[serde(default)]
    pub rollout: RolloutSummary,
    /// Releases, newest first.
    #[serde(default, deserialize_with = "lenient::null_as_default")]
    pub releases: Vec<Release>,
}
