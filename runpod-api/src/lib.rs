//! A typed async client for RunPod's REST API v2 (`https://api.runpod.io/v2`), every operation of
//! its official OpenAPI document: pods (actions, logs), network volumes, templates, container
//! registry auth, clusters, serverless endpoints (workers, releases, worker logs), the GPU, CPU,
//! data-center and public-template catalogs, account SSH keys, and billing.
//!
//! REST v1 was retired on 2026-11-15 and GraphQL retires in early 2027; this crate speaks only
//! v2, following RunPod's official OpenAPI document.
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use runpod_api::models::{Cloud, CreatePodRequest, GpuRequest, Mounts};
//! use runpod_api::{Client, WaitFor, WaitOptions};
//!
//! # async fn run() -> runpod_api::Result<()> {
//! // RUNPOD_API_KEY (and optionally RUNPOD_API_URL) from the environment.
//! let client = Client::from_env()?;
//!
//! let request = CreatePodRequest::new("blender")
//!     .image("runpod/pytorch:1.0.2-cu1281-torch280-ubuntu2404")
//!     .gpu(GpuRequest::new("NVIDIA GeForce RTX 4090"))
//!     .cloud(Cloud::Community)
//!     .mounts(Mounts::persistent(50, "/runpod"))
//!     .port("22/tcp")
//!     .start_ssh(true);
//! let pod = client.create_pod(&request).await?;
//!
//! let options = WaitOptions::default().timeout(Duration::from_secs(900));
//! let pod = client
//!     .wait_for_pod(&pod.id, WaitFor::SshReady, &options, |event| eprintln!("{event:?}"))
//!     .await?;
//! println!("ssh {}", pod.ssh_endpoint().expect("ready means reachable"));
//! println!("costs ${:.2}/h", pod.cost_per_hour());
//!
//! client.stop_pod(&pod.id).await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Errors and retries
//!
//! Every operation returns [`Error`]. API error answers (RFC 9457 problem documents) become
//! [`Error::Api`] with an [`ApiErrorKind`] and predicates such as [`Error::is_not_found`],
//! [`Error::is_no_capacity`] and [`Error::is_rate_limited`]. Reads, deletes and pod actions are
//! retried on 429 (honouring `Retry-After`), 5xx and transport failures under a
//! [`RetryPolicy`]; creating a pod is never retried blindly (see [`Client::create_pod`]).
//!
//! # Secrets
//!
//! The API key is held as a [`secrecy::SecretString`] and only ever sent in the
//! `Authorization` header: it is absent from URLs, `Debug` output, errors and logs.

mod checks;
mod client;
mod cpus;
mod error;
pub mod models;
mod ops;
pub mod params;
mod ratelimit;
mod registries;
mod retry;
#[cfg(feature = "sim")]
pub mod sim;
mod sse;
mod templates;
mod time;
mod volumes;
mod wait;

mod billing;
mod clusters;
mod serverless;

pub use client::{API_KEY_ENV, API_URL_ENV, Client, ClientBuilder, DEFAULT_BASE_URL};
pub use error::{ApiError, ApiErrorKind, CreateCandidates, Error};
pub use models::{Pod, PodAction, PodId, PodStatus};
pub use ops::LogStream;
pub use ratelimit::{RateLimit, RateLimitPolicy, RateLimitWindow};
pub use retry::RetryPolicy;
pub use wait::{WaitEvent, WaitFor, WaitOptions};

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
