//! The crate's error type and the parsed RFC 9457 problem answers of the API.

use std::fmt;
use std::time::Duration;

use http::StatusCode;
use serde::Deserialize;

use crate::models::{EndpointId, PodAction, PodId, PodStatus, WorkerId};
use crate::ratelimit::RateLimit;

/// Everything that can go wrong when talking to the RunPod API.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The API answered with an error status; see [`ApiError`] for the parsed problem.
    #[error(transparent)]
    Api(Box<ApiError>),

    /// No answer arrived within the request timeout.
    #[error(
        "{operation} timed out after {timeout:?} waiting for {base_url}; check the network, or \
         raise the request timeout"
    )]
    Timeout {
        /// The operation, such as `get pod abc123`.
        operation: String,
        /// The API base URL.
        base_url: String,
        /// The timeout that expired.
        timeout: Duration,
    },

    /// The TCP or TLS connection to the API could not be made.
    #[error(
        "{operation} could not connect to {base_url}; check the network, any proxy settings, \
         and RUNPOD_API_URL"
    )]
    Connect {
        /// The operation.
        operation: String,
        /// The API base URL.
        base_url: String,
        /// The transport error (its URL removed).
        #[source]
        source: reqwest::Error,
    },

    /// The request failed in transport after the connection was made.
    #[error("{operation} failed while talking to {base_url}")]
    Transport {
        /// The operation.
        operation: String,
        /// The API base URL.
        base_url: String,
        /// The transport error (its URL removed).
        #[source]
        source: reqwest::Error,
    },

    /// A success answer whose body is not what the API documents.
    #[error(
        "{operation}: the API's {status} answer could not be decoded (body starts {excerpt:?})"
    )]
    Decode {
        /// The operation.
        operation: String,
        /// HTTP status of the answer.
        status: StatusCode,
        /// The first bytes of the body, for diagnosis.
        excerpt: String,
        /// The decoding error.
        #[source]
        source: serde_json::Error,
    },

    /// The answer's body was larger than the client accepts (see
    /// `ClientBuilder::max_response_bytes`).
    #[error(
        "{operation}: the API's answer is larger than {limit} bytes, which no documented answer \
         is; a proxy or the server misbehaves, retry later"
    )]
    ResponseTooLarge {
        /// The operation.
        operation: String,
        /// The limit in bytes.
        limit: usize,
    },

    /// The request was refused before sending because it breaks a rule the API enforces.
    #[error("invalid request to {operation}: {reason}")]
    InvalidRequest {
        /// The operation.
        operation: String,
        /// What is wrong and how to fix it.
        reason: String,
    },

    /// The client configuration is unusable.
    #[error("invalid runpod client configuration: {reason}")]
    Config {
        /// What is wrong and how to fix it.
        reason: String,
    },

    /// A required environment variable is missing.
    #[error(
        "environment variable {name} is not set; create an API key in the RunPod console \
         (Settings > API Keys) and export it as {name}"
    )]
    MissingEnv {
        /// The variable's name.
        name: &'static str,
    },

    /// Creating a pod failed ambiguously (timeout or server error) and looking the pod up by name
    /// did not settle whether it exists.
    #[error(
        "creating pod {name:?} may or may not have succeeded ({candidates}); list your pods \
         before creating it again, so you do not pay for two"
    )]
    CreateOutcomeUnknown {
        /// The requested pod name.
        name: String,
        /// What the lookup found.
        candidates: CreateCandidates,
        /// The failure of the create call.
        #[source]
        source: Box<Error>,
    },

    /// A wait for a pod ended early because the pod reached a state it will not leave by itself.
    #[error(
        "pod {pod_id} is {status} after {elapsed:?} while waiting for it to be {condition}; \
         {hint}"
    )]
    WaitAborted {
        /// The pod.
        pod_id: PodId,
        /// The condition waited for.
        condition: String,
        /// The status that ended the wait.
        status: PodStatus,
        /// Time spent waiting.
        elapsed: Duration,
        /// What to do next.
        hint: &'static str,
    },

    /// A wait for a pod reached its deadline.
    #[error(
        "pod {pod_id} did not become {condition} within {timeout:?} (last status: {}); check \
         its logs, or wait longer",
        last_status.as_ref().map_or_else(|| "unknown".to_owned(), ToString::to_string)
    )]
    WaitTimeout {
        /// The pod.
        pod_id: PodId,
        /// The condition waited for.
        condition: String,
        /// The deadline.
        timeout: Duration,
        /// The last status seen, if any poll succeeded.
        last_status: Option<PodStatus>,
    },

    /// The pod log stream broke or sent something unreadable.
    #[error("log stream of pod {pod_id} failed: {reason}")]
    LogStream {
        /// The pod.
        pod_id: PodId,
        /// What happened.
        reason: String,
    },

    /// A serverless worker's log stream broke or sent something unreadable.
    #[error("log stream of worker {worker_id} of endpoint {endpoint_id} failed: {reason}")]
    WorkerLogStream {
        /// The endpoint.
        endpoint_id: EndpointId,
        /// The worker.
        worker_id: WorkerId,
        /// What happened.
        reason: String,
    },
}

/// What a name lookup after an ambiguous create failure found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CreateCandidates {
    /// The lookup itself failed.
    LookupFailed,
    /// Several recent pods carry the name.
    Several(Vec<PodId>),
}

impl fmt::Display for CreateCandidates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::LookupFailed => f.write_str("looking it up by name failed too"),
            Self::Several(ids) => {
                f.write_str("several recent pods carry that name: ")?;
                for (index, id) in ids.iter().enumerate() {
                    if index > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{id}")?;
                }
                Ok(())
            }
        }
    }
}

/// What kind of failure an API error answer is.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ApiErrorKind {
    /// 400: the request breaks a rule (and no capacity text was recognised).
    BadRequest,
    /// 401: the API key is missing, malformed, expired or invalid.
    Unauthorized,
    /// 402: the account's balance is too low.
    InsufficientBalance,
    /// 403: the key is valid but lacks access.
    Forbidden,
    /// 404: no such resource.
    NotFound,
    /// 409 on a pod action: the action is not valid in the pod's current status.
    InvalidAction {
        /// The action requested.
        action: PodAction,
        /// The pod's status when known.
        status: Option<PodStatus>,
        /// The actions allowed now, when known (empty when unknown).
        allowed: Vec<PodAction>,
    },
    /// 409 elsewhere: the request conflicts with the resource's state.
    Conflict,
    /// 422: validation failed; `errors` on the [`ApiError`] lists each violation.
    Validation,
    /// 429: too many requests.
    RateLimited,
    /// No machine can take the requested GPU configuration now (create).
    NoCapacity,
    /// The stopped pod's host has no free GPU to start it on.
    HostOutOfGpus,
    /// 5xx: the API failed.
    Server,
    /// Any other status.
    Other,
}

/// An error answer of the API, parsed from its `application/problem+json` body.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ApiError {
    /// The operation, such as `start pod abc123`.
    pub operation: String,
    /// HTTP status.
    pub status: StatusCode,
    /// Classification.
    pub kind: ApiErrorKind,
    /// The problem's `title`.
    pub title: Option<String>,
    /// The problem's `detail`.
    pub detail: Option<String>,
    /// The problem's `errors` (validation violations).
    pub errors: Vec<String>,
    /// The `Retry-After` delay, when sent.
    pub retry_after: Option<Duration>,
    /// Rate-limit headers of the answer, when sent.
    pub rate_limit: Option<RateLimit>,
    /// A request id header, when sent (`x-request-id`), for support tickets.
    pub request_id: Option<String>,
}

impl ApiError {
    fn summary(&self) -> String {
        match &self.kind {
            ApiErrorKind::BadRequest => "the API rejected the request".into(),
            ApiErrorKind::Unauthorized => "the API key was refused".into(),
            ApiErrorKind::InsufficientBalance => "the account balance is too low".into(),
            ApiErrorKind::Forbidden => "the API key lacks access".into(),
            ApiErrorKind::NotFound => "not found".into(),
            ApiErrorKind::InvalidAction { action, status, .. } => match status {
                Some(status) => format!("{action} is not allowed while the pod is {status}"),
                None => format!("{action} is not allowed in the pod's current status"),
            },
            ApiErrorKind::Conflict => "the request conflicts with the resource's state".into(),
            ApiErrorKind::Validation => "the request failed validation".into(),
            ApiErrorKind::RateLimited => "rate limited".into(),
            ApiErrorKind::NoCapacity => "no machine has the requested GPUs free".into(),
            ApiErrorKind::HostOutOfGpus => "the pod's host machine has no free GPU".into(),
            ApiErrorKind::Server => "the API failed".into(),
            ApiErrorKind::Other => "the API answered with an error".into(),
        }
    }

    fn hint(&self) -> String {
        match &self.kind {
            ApiErrorKind::Unauthorized => "check RUNPOD_API_KEY; create a key in the RunPod \
                console under Settings > API Keys"
                .into(),
            ApiErrorKind::InsufficientBalance => {
                "add funds to the RunPod account, then try again".into()
            }
            ApiErrorKind::Forbidden => "use an API key with read/write access to pods".into(),
            ApiErrorKind::NotFound => "check the id; a terminated pod no longer exists".into(),
            ApiErrorKind::InvalidAction { allowed, .. } if !allowed.is_empty() => {
                let list: Vec<&str> = allowed.iter().map(PodAction::as_str).collect();
                format!("allowed now: {}", list.join(", "))
            }
            ApiErrorKind::InvalidAction { .. } => {
                "read the pod's status and its allowed actions, then retry".into()
            }
            ApiErrorKind::Validation => {
                "fix the listed fields; retrying unchanged will fail again".into()
            }
            ApiErrorKind::RateLimited => match self.retry_after {
                Some(wait) => format!("retry after {}s", wait.as_secs()),
                None => "slow down and retry later".into(),
            },
            ApiErrorKind::NoCapacity => "try another GPU type, cloud or data center, or retry \
                later (the GPU catalog with availability shows what is free)"
                .into(),
            ApiErrorKind::HostOutOfGpus => "a stopped pod can only start on its own host; wait \
                and start again later, or create a new pod (keep data on a network volume to \
                move freely)"
                .into(),
            ApiErrorKind::Server => "RunPod may be having trouble; retry later".into(),
            ApiErrorKind::BadRequest | ApiErrorKind::Conflict | ApiErrorKind::Other => {
                String::new()
            }
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} failed: {} ({}",
            self.operation,
            self.summary(),
            self.status.as_u16()
        )?;
        if let Some(detail) = self.detail.as_deref().filter(|detail| !detail.is_empty()) {
            write!(f, ": {detail}")?;
        } else if let Some(title) = self.title.as_deref().filter(|title| !title.is_empty()) {
            write!(f, ": {title}")?;
        }
        f.write_str(")")?;
        if !self.errors.is_empty() {
            write!(f, " [{}]", self.errors.join("; "))?;
        }
        let hint = self.hint();
        if !hint.is_empty() {
            write!(f, "; {hint}")?;
        }
        if let Some(request_id) = &self.request_id {
            write!(f, " (request id {request_id})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

/// The RFC 9457 problem body.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Problem {
    #[serde(default)]
    pub(crate) title: Option<String>,
    #[serde(default)]
    pub(crate) detail: Option<String>,
    #[serde(default)]
    pub(crate) errors: Option<Vec<String>>,
}

/// Known texts for "no capacity" (create) and "no free GPU on the host" (start), matched
/// case-insensitively. RunPod's 400 carries no machine-readable code for them.
const NO_CAPACITY_TEXTS: &[&str] = &[
    "no longer any instances available",
    "no instances available",
    "could not find any pods with required specifications",
    "no available machine",
    "insufficient capacity",
];
const HOST_OUT_OF_GPUS_TEXTS: &[&str] = &[
    "not enough free gpus on the host machine",
    "not enough free gpus",
];

pub(crate) fn classify(
    status: StatusCode,
    detail: &str,
    action: Option<&PodAction>,
) -> ApiErrorKind {
    let lower = detail.to_lowercase();
    if HOST_OUT_OF_GPUS_TEXTS
        .iter()
        .any(|text| lower.contains(text))
    {
        return ApiErrorKind::HostOutOfGpus;
    }
    if NO_CAPACITY_TEXTS.iter().any(|text| lower.contains(text)) {
        return ApiErrorKind::NoCapacity;
    }
    match status.as_u16() {
        400 => ApiErrorKind::BadRequest,
        401 => ApiErrorKind::Unauthorized,
        402 => ApiErrorKind::InsufficientBalance,
        403 => ApiErrorKind::Forbidden,
        404 => ApiErrorKind::NotFound,
        409 => match action {
            Some(action) => ApiErrorKind::InvalidAction {
                action: action.clone(),
                status: None,
                allowed: Vec::new(),
            },
            None => ApiErrorKind::Conflict,
        },
        422 => ApiErrorKind::Validation,
        429 => ApiErrorKind::RateLimited,
        500..=599 => ApiErrorKind::Server,
        _ => ApiErrorKind::Other,
    }
}

impl Error {
    /// The parsed API error answer, if this is one.
    pub fn api(&self) -> Option<&ApiError> {
        match self {
            Self::Api(api) => Some(api),
            Self::CreateOutcomeUnknown { source, .. } => source.api(),
            _ => None,
        }
    }

    /// The API error kind, if this is an API error answer.
    pub fn kind(&self) -> Option<&ApiErrorKind> {
        self.api().map(|api| &api.kind)
    }

    /// HTTP status of an API error answer.
    pub fn status(&self) -> Option<StatusCode> {
        self.api().map(|api| api.status)
    }

    /// 401: the API key was refused.
    pub fn is_unauthorized(&self) -> bool {
        matches!(self.kind(), Some(ApiErrorKind::Unauthorized))
    }

    /// 402: the balance is too low.
    pub fn is_insufficient_balance(&self) -> bool {
        matches!(self.kind(), Some(ApiErrorKind::InsufficientBalance))
    }

    /// 403: the key lacks access.
    pub fn is_forbidden(&self) -> bool {
        matches!(self.kind(), Some(ApiErrorKind::Forbidden))
    }

    /// 404: no such resource.
    pub fn is_not_found(&self) -> bool {
        matches!(self.kind(), Some(ApiErrorKind::NotFound))
    }

    /// 409 on a pod action: not valid in the pod's status.
    pub fn is_invalid_action(&self) -> bool {
        matches!(self.kind(), Some(ApiErrorKind::InvalidAction { .. }))
    }

    /// 422: validation failed.
    pub fn is_validation(&self) -> bool {
        matches!(self.kind(), Some(ApiErrorKind::Validation))
    }

    /// 429: rate limited.
    pub fn is_rate_limited(&self) -> bool {
        matches!(self.kind(), Some(ApiErrorKind::RateLimited))
    }

    /// No capacity for a new pod, or no free GPU on a stopped pod's host.
    pub fn is_no_capacity(&self) -> bool {
        matches!(
            self.kind(),
            Some(ApiErrorKind::NoCapacity | ApiErrorKind::HostOutOfGpus)
        )
    }

    /// 5xx: the API failed.
    pub fn is_server_error(&self) -> bool {
        matches!(self.kind(), Some(ApiErrorKind::Server))
    }

    /// A timeout.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout { .. })
    }

    /// A failure that may pass when the same request is sent again later: 429, 5xx, timeouts,
    /// connection and transport failures.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Api(api) => matches!(api.kind, ApiErrorKind::RateLimited | ApiErrorKind::Server),
            Self::Timeout { .. } | Self::Connect { .. } | Self::Transport { .. } => true,
            _ => false,
        }
    }

    /// The server's `Retry-After` delay, if it sent one.
    pub fn retry_after(&self) -> Option<Duration> {
        self.api().and_then(|api| api.retry_after)
    }

    /// Validation violations (422), or an empty slice.
    pub fn violations(&self) -> &[String] {
        self.api().map_or(&[], |api| api.errors.as_slice())
    }
}

/// A short, printable excerpt of a body for error messages.
pub(crate) fn excerpt(body: &[u8]) -> String {
    const MAX: usize = 200;
    let text = String::from_utf8_lossy(body);
    let mut out: String = text.chars().take(MAX).collect();
    if text.chars().count() > MAX {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_capacity_texts_whatever_the_status() {
        assert_eq!(
            classify(
                StatusCode::BAD_REQUEST,
                "There are no longer any instances available with the requested specifications. Please refresh and try again.",
                None
            ),
            ApiErrorKind::NoCapacity
        );
        assert_eq!(
            classify(
                StatusCode::CONFLICT,
                "There are not enough free GPUs on the host machine to start this pod.",
                Some(&PodAction::Start)
            ),
            ApiErrorKind::HostOutOfGpus
        );
        assert_eq!(
            classify(StatusCode::CONFLICT, "x", Some(&PodAction::Stop)),
            ApiErrorKind::InvalidAction {
                action: PodAction::Stop,
                status: None,
                allowed: vec![]
            }
        );
        assert_eq!(
            classify(StatusCode::CONFLICT, "x", None),
            ApiErrorKind::Conflict
        );
        assert_eq!(
            classify(StatusCode::BAD_GATEWAY, "", None),
            ApiErrorKind::Server
        );
    }

    #[test]
    fn excerpt_is_bounded() {
        let long = "é".repeat(500);
        let cut = excerpt(long.as_bytes());
        assert_eq!(cut.chars().count(), 201);
        assert!(cut.ends_with('…'));
        assert_eq!(excerpt(b"short"), "short");
    }
}
