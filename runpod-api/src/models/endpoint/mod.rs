//! Serverless endpoints: the endpoint object, its workers and releases (`worker`), and the
//! bodies that create and update one (`request`).

use std::fmt;

use serde::{Deserialize, Serialize};

use super::common::{EndpointId, EnvVars};
use super::enums::wire_enum;
use super::lenient;

mod request;
mod worker;

pub use request::{
    CreateEndpointRequest, EndpointGpuRequest, EndpointGpuUpdate, UpdateEndpointRequest,
    WorkersConfig,
};
pub use worker::{
    Release, ReleaseDiffEntry, ReleaseList, ReleaseSource, RolloutSummary, Worker, WorkerList,
    WorkerStatus, WorkerSummary,
};

wire_enum! {
    /// How requests reach an endpoint's workers.
    EndpointType {
        /// Jobs go through the managed queue (`/run`, `/runsync`, ...).
        Queue => "QUEUE",
        /// Requests go straight to worker-defined HTTP paths.
        LoadBalancer => "LOAD_BALANCER",
    }
}

wire_enum! {
    /// Cold-start acceleration (`FlashBoot`).
    FlashBoot {
        /// Disabled (the API's default).
        Off => "OFF",
        /// Enabled.
        FlashBoot => "FLASHBOOT",
        /// Enabled with priority capacity.
        PriorityFlashBoot => "PRIORITY_FLASHBOOT",
    }
}

/// Most seconds an idle worker may stay up (`EndpointWorkers.idleTimeout` maximum).
pub const MAX_IDLE_TIMEOUT_SECONDS: u32 = 3600;
/// Smallest queue delay a `QUEUE_DELAY` scaler accepts, in seconds.
pub const MIN_QUEUE_DELAY_SECONDS: f64 = 0.5;

/// A serverless endpoint as the API reports it (`GET /v2/serverless/{id}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Endpoint {
    /// Identifier.
    pub id: EndpointId,
    /// Name.
    pub name: String,
    /// Request routing.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<EndpointType>,
    /// URLs to send requests to, by routing type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_urls: Option<EndpointRequestUrls>,
    /// Container image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Arguments for the container entrypoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<String>,
    /// Container disk in GB.
    #[serde(
        default,
        deserialize_with = "lenient::opt_u64_lenient",
        skip_serializing_if = "Option::is_none"
    )]
    pub disk: Option<u64>,
    /// Exposed ports.
    #[serde(default, deserialize_with = "lenient::null_as_default")]
    pub ports: Vec<String>,
    /// Environment variables (values are redacted from `Debug`).
    #[serde(default, deserialize_with = "lenient::null_as_default")]
    pub env: EnvVars,
    /// Container registry credential id, for private images.
    #[serde(default)]
    pub registry: Option<String>,
    /// GPU selection; `None` for CPU endpoints.
    #[serde(default)]
    pub gpu: Option<EndpointGpu>,
    /// Eligible CPU configurations; empty for GPU endpoints.
    #[serde(
        default,
        deserialize_with = "lenient::null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub cpu: Vec<EndpointCpu>,
    /// Worker bounds.
    pub workers: EndpointWorkers,
    /// Autoscaling signal.
    pub scaling: EndpointScaling,
    /// Preferred data centers (empty: any).
    #[serde(default, deserialize_with = "lenient::null_as_default")]
    pub data_center_ids: Vec<String>,
    /// Attached network volume ids.
    #[serde(default, deserialize_with = "lenient::null_as_default")]
    pub network_volumes: Vec<String>,
    /// Per-request execution timeout in milliseconds.
    #[serde(deserialize_with = "lenient::u64_lenient")]
    pub timeout: u64,
    /// `flashboot` mode.
    pub flashboot: FlashBoot,
    /// Creation time (RFC 3339).
    pub created_at: String,
}

/// The URLs of an endpoint, by its routing type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
#[non_exhaustive]
pub enum EndpointRequestUrls {
    /// A queue-based endpoint's job URLs.
    Queue(QueueRequestUrls),
    /// A load-balancing endpoint's base and health URLs.
    LoadBalancer(LoadBalancerRequestUrls),
    /// A shape this version of the crate does not know, kept verbatim.
    Unknown(serde_json::Value),
}

/// Job URLs of a queue-based endpoint (`{job_id}` is a placeholder in some of them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct QueueRequestUrls {
    /// Submit a job asynchronously.
    pub run: String,
    /// Submit a job and wait for it.
    pub run_sync: String,
    /// A job's status.
    pub status: String,
    /// A job's incremental output.
    pub stream: String,
    /// Cancel a job.
    pub cancel: String,
    /// Requeue a failed job.
    pub retry: String,
    /// Drop all pending jobs.
    pub purge_queue: String,
    /// The endpoint's health.
    pub health: String,
}

/// URLs of a load-balancing endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct LoadBalancerRequestUrls {
    /// Base URL for the worker-defined paths.
    pub base: String,
    /// The health check the load balancer polls.
    pub health: String,
}

/// The GPU selection of an endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct EndpointGpu {
    /// Serverless GPU pool ids workers may be placed on.
    #[serde(default, deserialize_with = "lenient::null_as_default")]
    pub pools: Vec<String>,
    /// GPU type ids subtracted from the pools.
    #[serde(
        default,
        deserialize_with = "lenient::null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub excluded_types: Vec<String>,
    /// GPUs per worker.
    #[serde(default = "one", deserialize_with = "lenient::u32_lenient")]
    pub count: u32,
    /// Acceptable CUDA versions (empty: any).
    #[serde(default, deserialize_with = "lenient::null_as_default")]
    pub allowed_cuda_versions: Vec<String>,
    /// Lowest acceptable CUDA version (`None`: no floor).
    #[serde(default)]
    pub min_cuda_version: Option<String>,
}

fn one() -> u32 {
    1
}

/// One eligible CPU configuration of an endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct EndpointCpu {
    /// CPU flavor id.
    pub id: String,
    /// vCPUs per worker.
    #[serde(deserialize_with = "lenient::u32_lenient")]
    pub vcpu_count: u32,
    /// Memory per worker in GB.
    #[serde(deserialize_with = "lenient::u32_lenient")]
    pub memory: u32,
}

/// The worker bounds of an endpoint as reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct EndpointWorkers {
    /// Fewest workers kept.
    #[serde(deserialize_with = "lenient::u32_lenient")]
    pub min: u32,
    /// Most workers.
    #[serde(deserialize_with = "lenient::u32_lenient")]
    pub max: u32,
    /// Seconds before an idle worker scales down; absent for queue endpoints scaling on
    /// request count.
    #[serde(
        default,
        deserialize_with = "lenient::opt_u64_lenient",
        skip_serializing_if = "Option::is_none"
    )]
    pub idle_timeout: Option<u64>,
}

/// The autoscaling signal of an endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
#[non_exhaustive]
pub enum EndpointScaling {
    /// Scale on how long requests wait in the queue (queue endpoints only).
    #[serde(rename = "QUEUE_DELAY", rename_all = "camelCase")]
    QueueDelay {
        /// Target queue wait in seconds (at least 0.5).
        #[serde(deserialize_with = "lenient::f64_lenient")]
        queue_delay: f64,
    },
    /// Scale on in-flight requests per worker (required for load-balancing endpoints).
    #[serde(rename = "REQUEST_COUNT", rename_all = "camelCase")]
    RequestCount {
        /// Target in-flight requests per worker (at least 1).
        #[serde(deserialize_with = "lenient::u32_lenient")]
        request_count: u32,
    },
    /// A scaler this version of the crate does not know; it cannot be sent.
    #[serde(other, skip_serializing)]
    Unknown,
}

impl EndpointScaling {
    /// Scale on queue wait, in seconds.
    pub fn queue_delay(seconds: f64) -> Self {
        Self::QueueDelay {
            queue_delay: seconds,
        }
    }

    /// Scale on in-flight requests per worker.
    pub fn request_count(requests: u32) -> Self {
        Self::RequestCount {
            request_count: requests,
        }
    }

    fn check(&self) -> Result<(), String> {
        match self {
            Self::QueueDelay { queue_delay } => {
                if queue_delay.is_finite() && *queue_delay >= MIN_QUEUE_DELAY_SECONDS {
                    Ok(())
                } else {
                    Err(format!(
                        "scaling.queueDelay must be at least {MIN_QUEUE_DELAY_SECONDS} seconds, \
                         not {queue_delay}"
                    ))
                }
            }
            Self::RequestCount { request_count: 0 } => {
                Err("scaling.requestCount must be at least 1".into())
            }
            Self::RequestCount { .. } => Ok(()),
            Self::Unknown => Err(
                "scaling is a scaler this crate does not know; use QUEUE_DELAY or REQUEST_COUNT"
                    .into(),
            ),
        }
    }
}

/// The answer of `GET /v2/serverless`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct EndpointList {
    /// Endpoints.
    #[serde(default, deserialize_with = "lenient::null_as_default")]
    pub endpoints: Vec<Endpoint>,
}

impl fmt::Display for EndpointScaling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::QueueDelay { queue_delay } => write!(f, "QUEUE_DELAY {queue_delay}s"),
            Self::RequestCount { request_count } => write!(f, "REQUEST_COUNT {request_count}"),
            Self::Unknown => f.write_str("unknown scaler"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaling_round_trips_and_tolerates_new_scalers() {
        let scaling: EndpointScaling =
            serde_json::from_str(r#"{"type":"QUEUE_DELAY","queueDelay":4}"#).expect("known");
        assert_eq!(scaling, EndpointScaling::queue_delay(4.0));
        assert_eq!(
            serde_json::to_string(&EndpointScaling::request_count(3)).expect("json"),
            r#"{"type":"REQUEST_COUNT","requestCount":3}"#
        );
        let unknown: EndpointScaling =
            serde_json::from_str(r#"{"type":"GPU_UTIL","target":80}"#).expect("unknown");
        assert_eq!(unknown, EndpointScaling::Unknown);
    }
}
