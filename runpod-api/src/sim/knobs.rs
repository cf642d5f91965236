//! The simulator's knobs and vocabulary: phase timings, SSH endpoints, fault counters, the
//! refusals it answers with (and RunPod's exact texts), times and the default GPU catalog.
//! A leaf: the world and the resource stores build on it.

use std::net::SocketAddr;
use std::time::Duration;

use crate::models::GpuType;

/// How long the lifecycle phases last. Default: 30 ms each, for tests.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Timings {
    /// `PROVISIONING` after create (machine assignment and image pull).
    pub provisioning: Duration,
    /// `STARTING` after provisioning, a start or a restart.
    pub starting: Duration,
}

impl Default for Timings {
    fn default() -> Self {
        Self {
            provisioning: Duration::from_millis(30),
            starting: Duration::from_millis(30),
        }
    }
}

impl Timings {
    /// Timings like the real cloud's with a cached image: 20 s provisioning, 40 s starting.
    pub fn realistic() -> Self {
        Self {
            provisioning: Duration::from_secs(20),
            starting: Duration::from_secs(40),
        }
    }

    /// Custom timings.
    pub fn new(provisioning: Duration, starting: Duration) -> Self {
        Self {
            provisioning,
            starting,
        }
    }
}

/// Which SSH endpoint a running pod reports in `ssh.direct`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SshEndpoints {
    /// A documentation address (`203.0.113.x`) with a new random port on every start, like the
    /// real cloud. Nothing listens there.
    Fake,
    /// Always this address (a local sshd, say).
    Fixed(SocketAddr),
    /// The next address of this list on every start (and restart), cycling.
    Rotating(Vec<SocketAddr>),
}

/// Fault knobs; each counter is consumed by the requests it affects.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Faults {
    /// Answer the next N authenticated requests with 429 and this `Retry-After` (seconds).
    pub rate_limit_next: u32,
    /// `Retry-After` of those 429 answers, in seconds.
    pub retry_after_secs: u64,
    /// Answer the next N authenticated requests with this 5xx status.
    pub server_error_next: u32,
    /// Status of those answers (default 503).
    pub server_error_status: u16,
    /// Refuse the next N creates with "no longer any instances available".
    pub no_capacity_next_create: u32,
    /// Answer the next N pod creates with 503 before creating anything (other requests are
    /// answered as usual): a storm that hits exactly the create.
    pub server_error_next_create: u32,
    /// Refuse the next N starts with "not enough free GPUs on the host machine".
    pub no_free_gpu_next_start: u32,
    /// After a start or restart, keep reporting the previous SSH port for this long once the
    /// pod runs again (the real API does this for about 90 s).
    pub stale_ssh_port_for: Duration,
    /// Delay every answer by this much.
    pub slow: Duration,
    /// Refuse creates and starts with 402.
    pub insufficient_balance: bool,
    /// The next pod that would reach `RUNNING` goes to `ERROR` instead (N times).
    pub error_next_boot: u32,
    /// Refuse the next N terminates (the terminate action, or `DELETE /pods/{id}`) with 409;
    /// the pod stays as it was.
    pub terminate_refused_next: u32,
}

/// A rule the request breaks, answered with 400, 402, 404 or 409.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) status: u16,
    pub(crate) title: &'static str,
    pub(crate) detail: String,
}

impl Refusal {
    pub(crate) fn new(status: u16, title: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            title,
            detail: detail.into(),
        }
    }
}

pub(crate) const NO_CAPACITY: &str = "There are no longer any instances available with the \
    requested specifications. Please refresh and try again.";
pub(crate) const NO_FREE_GPU: &str =
    "There are not enough free GPUs on the host machine to start this pod.";

/// Formats Unix seconds as an RFC 3339 UTC time.
pub(crate) fn format_rfc3339(seconds: i64) -> String {
    let days = seconds.div_euclid(86_400);
    let rest = seconds.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// The GPU catalog the simulator offers by default.
pub(crate) fn default_gpus() -> Vec<GpuType> {
    let gpus = serde_json::json!([
        {"id": "NVIDIA GeForce RTX 4090", "name": "RTX 4090", "pool": "ADA_24",
         "manufacturer": "NVIDIA", "memory": 24, "secure": true, "community": true,
         "price": {"secure": 0.69, "community": 0.34, "serverless": 0.00031},
         "maxCount": {"secure": 8, "community": 4}},
        {"id": "NVIDIA RTX A5000", "name": "RTX A5000", "pool": "AMPERE_24",
         "manufacturer": "NVIDIA", "memory": 24, "secure": true, "community": true,
         "price": {"secure": 0.27, "community": 0.16},
         "maxCount": {"secure": 8, "community": 8}},
        {"id": "NVIDIA RTX A6000", "name": "RTX A6000", "pool": null,
         "manufacturer": "NVIDIA", "memory": 48, "secure": true, "community": false,
         "price": {"secure": 0.49, "community": 0.0},
         "maxCount": {"secure": 8, "community": 0}},
    ]);
    serde_json::from_value(gpus).unwrap_or_default()
}

/// A short base-36 id like RunPod's, unique per `serial` within one simulator.
pub(crate) fn base36_id(prefix: &str, serial: u64) -> String {
    let mut value = serial * 7_919 + 1_000_000_000;
    let mut id = String::new();
    while value > 0 {
        let digit = u32::try_from(value % 36).unwrap_or(0);
        id.insert(0, char::from_digit(digit, 36).unwrap_or('0'));
        value /= 36;
    }
    format!("{prefix}{id}")
}
