//! The API operations: pods, pod actions and logs, catalogs, account SSH keys and billing.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::{Stream, StreamExt, stream::BoxStream};
use http::Method;

use crate::Result;
use crate::client::{Call, Client, Retry};
use crate::error::{ApiErrorKind, CreateCandidates, Error};
use crate::models::{
    CreatePodRequest, DataCenter, DataCenterInclude, DataCenterList, EndpointId, GpuType,
    GpuTypeList, LogLine, Pod, PodAction, PodActionRequest, PodBilling, PodId, PodList, SshKeys,
    UpdatePodRequest, WorkerId, is_valid_public_key_line, key_material,
};
use crate::params::{
    BillingParams, BillingScope, DataCenterParams, GpuCatalogParams, ListPodsParams, LogParams,
};
use crate::sse::SseParser;
use crate::time::parse_rfc3339;

/// How far back a pod's `createdAt` may lie before an ambiguous create call and still be taken
/// for that call's pod (allows for clock skew between us and RunPod).
const CREATE_LOOKUP_WINDOW: Duration = Duration::from_secs(600);
/// Name lookups after an ambiguous create, and the pause between them.
const CREATE_LOOKUPS: u32 = 3;
const CREATE_LOOKUP_PAUSE: Duration = Duration::from_secs(2);
/// A log stream that sends nothing (not even a keep-alive) for this long is considered dead.
pub(crate) const DEFAULT_LOG_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Longest SSE line accepted from the log stream.
const MAX_LOG_LINE: usize = 1 << 20;

fn invalid(operation: String, reason: String) -> Error {
    Error::InvalidRequest { operation, reason }
}

impl Client {
    /// Lists the account's pods (`GET /v2/pods`).
    ///
    /// # Errors
    ///
    /// An [`Error::Api`] answer (401, 403, 429 after retries, 5xx after retries), transport
    /// failures and timeouts after retries, or [`Error::Decode`].
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn list_pods(&self, params: &ListPodsParams) -> Result<Vec<Pod>> {
        let mut call = Call::new("list pods", Method::GET, &["pods"]);
        call.query = params.to_query();
        Ok(self.json::<PodList>(&call).await?.pods)
    }

    /// Gets one pod (`GET /v2/pods/{id}`).
    ///
    /// # Errors
    ///
    /// As [`Client::list_pods`], plus 404 ([`Error::is_not_found`]) for an unknown or
    /// terminated pod.
    #[tracing::instrument(level = "debug", skip_all, fields(pod_id = %id))]
    pub async fn get_pod(&self, id: &PodId) -> Result<Pod> {
        let path = ["pods", id.as_str()];
        let call = Call::new(format!("get pod {id}"), Method::GET, &path);
        self.json(&call).await
    }

    /// Creates a pod (`POST /v2/pods`). The pod starts in `PROVISIONING`; see
    /// [`Client::wait_for_pod`].
    ///
    /// The call is retried only when the API provably did not act on it (429, or no connection).
    /// After an ambiguous failure (timeout, 5xx, a broken or unreadable answer) the client looks
    /// the pod up by name among recently created pods that are not stopped: if it exists it is
    /// returned; if not, the original error is returned and creating again is safe.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidRequest`] before sending when the body breaks the API's rules; API
    /// answers such as 400 with no capacity ([`Error::is_no_capacity`]), 402, 403, 404 (unknown
    /// template), 422 ([`Error::violations`]); [`Error::CreateOutcomeUnknown`] when the lookup
    /// cannot settle an ambiguous failure.
    #[tracing::instrument(level = "debug", skip_all, fields(name = %request.name))]
    pub async fn create_pod(&self, request: &CreatePodRequest) -> Result<Pod> {
        let operation = format!("create pod {:?}", request.name);
        request
            .check()
            .map_err(|reason| invalid(operation.clone(), reason))?;
        let sent_at = SystemTime::now();
        let call = Call::new(operation, Method::POST, &["pods"]).json_body(request)?;
        match self.json::<Pod>(&call).await {
            Ok(pod) => Ok(pod),
            Err(error) if is_ambiguous(&error) => {
                self.settle_ambiguous_create(&request.name, sent_at, error)
                    .await
            }
            Err(error) => Err(error),
        }
    }

    async fn settle_ambiguous_create(
        &self,
        name: &str,
        sent_at: SystemTime,
        error: Error,
    ) -> Result<Pod> {
        tracing::warn!(name, error = %error, "create pod failed ambiguously; looking it up by name");
        let earliest = unix_seconds(sent_at)
            .saturating_sub(i64::try_from(CREATE_LOOKUP_WINDOW.as_secs()).unwrap_or(i64::MAX));
        for lookup in 0..CREATE_LOOKUPS {
            if lookup > 0 {
                tokio::time::sleep(CREATE_LOOKUP_PAUSE).await;
            }
            let Ok(pods) = self.list_pods(&ListPodsParams::default()).await else {
                return Err(Error::CreateOutcomeUnknown {
                    name: name.to_owned(),
                    candidates: CreateCandidates::LookupFailed,
                    source: Box::new(error),
                });
            };
            let mut candidates: Vec<Pod> = pods
                .into_iter()
                .filter(|pod| pod.name == name)
                .filter(|pod| parse_rfc3339(&pod.created_at).is_none_or(|at| at >= earliest))
                // What this request made is coming up (or failed); a stopped pod of the same
                // name is an older one, such as the pod a replacement stands in for.
                .filter(|pod| {
                    !matches!(
                        pod.status,
                        crate::PodStatus::Exited | crate::PodStatus::Terminated
                    )
                })
                .collect();
            match candidates.len() {
                0 => {}
                1 => {
                    let pod = candidates.remove(0);
                    tracing::warn!(pod_id = %pod.id, "the pod was created despite the failure");
                    return Ok(pod);
                }
                _ => {
                    return Err(Error::CreateOutcomeUnknown {
                        name: name.to_owned(),
                        candidates: CreateCandidates::Several(
                            candidates.into_iter().map(|pod| pod.id).collect(),
                        ),
                        source: Box::new(error),
                    });
                }
            }
        }
        tracing::info!(name, "no pod was created; creating again is safe");
        Err(error)
    }

    /// Changes a pod's settings (`PATCH /v2/pods/{id}`). Some changes restart the pod.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidRequest`] for an empty update or a broken rule; API answers 400, 404,
    /// 409 (cluster member), 422.
    #[tracing::instrument(level = "debug", skip_all, fields(pod_id = %id))]
    pub async fn update_pod(&self, id: &PodId, request: &UpdatePodRequest) -> Result<Pod> {
        let operation = format!("update pod {id}");
        if request == &UpdatePodRequest::default() {
            return Err(invalid(
                operation,
                "the update changes nothing; set a field".into(),
            ));
        }
        request
            .check()
            .map_err(|reason| invalid(operation.clone(), reason))?;
        let path = ["pods", id.as_str()];
        let call = Call::new(operation, Method::PATCH, &path).json_body(request)?;
        self.json(&call).await
    }

    /// Terminates and deletes a pod (`DELETE /v2/pods/{id}`); its persistent volume is
    /// destroyed. Idempotent from the caller's view only in that a second call gets 404.
    ///
    /// # Errors
    ///
    /// API answers 404 and 409 (cluster member), plus the usual transport errors.
    #[tracing::instrument(level = "debug", skip_all, fields(pod_id = %id))]
    pub async fn delete_pod(&self, id: &PodId) -> Result<()> {
        let path = ["pods", id.as_str()];
        let call = Call::new(format!("delete pod {id}"), Method::DELETE, &path);
        self.execute(&call).await.map(drop)
    }

    /// Requests a state transition (`POST /v2/pods/{id}/action`). Returns the updated pod, or
    /// `None` for `terminate` (answered with 204).
    ///
    /// Actions are retried like reads: repeating a transition is harmless (a repeat that is no
    /// longer valid gets 409).
    ///
    /// # Errors
    ///
    /// 409 as [`ApiErrorKind::InvalidAction`] with the pod's status and allowed actions filled
    /// in when a follow-up read succeeds; no free GPU on the host
    /// ([`ApiErrorKind::HostOutOfGpus`]); 402, 404 and the usual transport errors.
    #[tracing::instrument(level = "debug", skip_all, fields(pod_id = %id, action = %action))]
    pub async fn pod_action(&self, id: &PodId, action: PodAction) -> Result<Option<Pod>> {
        let path = ["pods", id.as_str(), "action"];
        let mut call = Call::new(format!("{action} pod {id}"), Method::POST, &path)
            .json_body(&PodActionRequest::new(action.clone()))?
            .retry(Retry::Always);
        call.action = Some(action);
        match self.execute(&call).await {
            Ok(answer) if answer.body.iter().all(u8::is_ascii_whitespace) => Ok(None),
            Ok(answer) => crate::client::decode(&call.operation, answer.status, &answer.body),
            Err(mut error) => {
                self.explain_invalid_action(id, &mut error).await;
                Err(error)
            }
        }
    }

    /// Fills the pod's status and allowed actions into a 409 invalid-action error, with one
    /// unretried read (a failure leaves the error as it was).
    async fn explain_invalid_action(&self, id: &PodId, error: &mut Error) {
        let Error::Api(api) = error else { return };
        let ApiErrorKind::InvalidAction {
            status, allowed, ..
        } = &mut api.kind
        else {
            return;
        };
        let path = ["pods", id.as_str()];
        let call = Call::new(format!("get pod {id}"), Method::GET, &path);
        let Ok(response) = self.attempt(&call).await else {
            return;
        };
        let Ok(answer) = self.finish(&call, response).await else {
            return;
        };
        if let Ok(pod) = crate::client::decode::<Pod>(&call.operation, answer.status, &answer.body)
        {
            *status = Some(pod.status);
            *allowed = pod.actions;
        }
    }

    /// Starts (resumes) a stopped pod.
    ///
    /// # Errors
    ///
    /// As [`Client::pod_action`].
    pub async fn start_pod(&self, id: &PodId) -> Result<Pod> {
        self.action_with_pod(id, PodAction::Start).await
    }

    /// Stops a pod, keeping its disk; compute billing ends.
    ///
    /// # Errors
    ///
    /// As [`Client::pod_action`].
    pub async fn stop_pod(&self, id: &PodId) -> Result<Pod> {
        self.action_with_pod(id, PodAction::Stop).await
    }

    /// Restarts a running pod's container.
    ///
    /// # Errors
    ///
    /// As [`Client::pod_action`].
    pub async fn restart_pod(&self, id: &PodId) -> Result<Pod> {
        self.action_with_pod(id, PodAction::Restart).await
    }

    /// Terminates a pod permanently (the `terminate` action).
    ///
    /// # Errors
    ///
    /// As [`Client::pod_action`].
    pub async fn terminate_pod(&self, id: &PodId) -> Result<()> {
        self.pod_action(id, PodAction::Terminate).await.map(drop)
    }

    async fn action_with_pod(&self, id: &PodId, action: PodAction) -> Result<Pod> {
        match self.pod_action(id, action.clone()).await? {
            Some(pod) => Ok(pod),
            // The spec answers start/stop/restart with the pod; read it if a server did not.
            None => self.get_pod(id).await,
        }
    }

    /// Streams a pod's logs (`GET /v2/pods/{id}/logs`, server-sent events) as typed lines.
    ///
    /// # Errors
    ///
    /// Opening the stream fails like [`Client::get_pod`]; items of the stream are
    /// [`Error::LogStream`] when the connection breaks, stays silent past the idle timeout, or
    /// sends an unreadable event.
    #[tracing::instrument(level = "debug", skip_all, fields(pod_id = %id))]
    pub async fn pod_logs(&self, id: &PodId, params: &LogParams) -> Result<LogStream> {
        let path = ["pods", id.as_str(), "logs"];
        let mut call = Call::new(format!("stream logs of pod {id}"), Method::GET, &path);
        params
            .check()
            .map_err(|reason| invalid(call.operation.clone(), reason))?;
        call.query = params.to_query();
        call.headers
            .push(("accept", "text/event-stream".to_owned()));
        if let Some(cursor) = &params.last_event_id {
            call.headers.push(("last-event-id", cursor.clone()));
        }
        call.streaming = true;
        let response = self.open_stream(&call).await?;
        Ok(LogStream::new(
            LogOwner::Pod(id.clone()),
            response.bytes_stream().boxed(),
            DEFAULT_LOG_IDLE_TIMEOUT,
        ))
    }

    /// Lists GPU types (`GET /v2/catalog/gpus`), with availability when asked.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidRequest`] for filters without an availability context or with both
    /// CUDA filters; API answers 400, 422 and the usual transport errors.
    pub async fn list_gpu_types(&self, params: &GpuCatalogParams) -> Result<Vec<GpuType>> {
        let mut call = Call::new("list gpu types", Method::GET, &["catalog", "gpus"]);
        params
            .check()
            .map_err(|reason| invalid(call.operation.clone(), reason))?;
        call.query = params.to_query();
        Ok(self.json::<GpuTypeList>(&call).await?.gpus)
    }

    /// Gets one GPU type (`GET /v2/catalog/gpus/{id}`).
    ///
    /// # Errors
    ///
    /// As [`Client::list_gpu_types`], plus 404 for an unknown GPU type.
    pub async fn get_gpu_type(&self, id: &str, params: &GpuCatalogParams) -> Result<GpuType> {
        let path = ["catalog", "gpus", id];
        let mut call = Call::new(format!("get gpu type {id:?}"), Method::GET, &path);
        params
            .check()
            .map_err(|reason| invalid(call.operation.clone(), reason))?;
        call.query = params.to_query();
        self.json(&call).await
    }

    /// Lists data centers (`GET /v2/catalog/datacenters`).
    ///
    /// # Errors
    ///
    /// API answers and the usual transport errors.
    pub async fn list_data_centers(&self, params: &DataCenterParams) -> Result<Vec<DataCenter>> {
        let mut call = Call::new(
            "list data centers",
            Method::GET,
            &["catalog", "datacenters"],
        );
        call.query = params.to_query();
        Ok(self.json::<DataCenterList>(&call).await?.data_centers)
    }

    /// Gets one data center (`GET /v2/catalog/datacenters/{id}`).
    ///
    /// # Errors
    ///
    /// As [`Client::list_data_centers`], plus 404 for an unknown data center.
    pub async fn get_data_center(
        &self,
        id: &str,
        include: &[DataCenterInclude],
    ) -> Result<DataCenter> {
        let path = ["catalog", "datacenters", id];
        let mut call = Call::new(format!("get data center {id}"), Method::GET, &path);
        if !include.is_empty() {
            let list: Vec<&str> = include.iter().map(DataCenterInclude::as_str).collect();
            call = call.query("include", list.join(","));
        }
        self.json(&call).await
    }

    /// The account's registered SSH public keys (`GET /v2/account/ssh-keys`).
    ///
    /// # Errors
    ///
    /// API answers and the usual transport errors.
    pub async fn ssh_keys(&self) -> Result<SshKeys> {
        let call = Call::new(
            "get account ssh keys",
            Method::GET,
            &["account", "ssh-keys"],
        );
        self.json(&call).await
    }

    /// Replaces the account's SSH public keys (`PUT /v2/account/ssh-keys`) with exactly `keys`.
    /// Prefer [`Client::add_ssh_key`], which keeps the keys already registered.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidRequest`] for a line that is not an `authorized_keys` entry; API answers
    /// 422 and the usual transport errors.
    pub async fn set_ssh_keys(&self, keys: &SshKeys) -> Result<SshKeys> {
        let operation = "replace account ssh keys";
        if let Some(bad) = keys.keys.iter().find(|key| !is_valid_public_key_line(key)) {
            let shown: String = bad.chars().take(24).collect();
            return Err(invalid(
                operation.into(),
                format!(
                    "{shown:?}… is not a public key line (`<type> <base64> [comment]`); pass \
                     the .pub file's content, never the private key"
                ),
            ));
        }
        // PUT replaces the whole set: sending it twice has the same effect as once.
        let call = Call::new(operation, Method::PUT, &["account", "ssh-keys"])
            .json_body(keys)?
            .retry(Retry::Always);
        self.json(&call).await
    }

    /// Registers `public_key` (an `authorized_keys` line) unless a key with the same material is
    /// already registered, keeping every other key. Returns the resulting key set.
    ///
    /// Two programs editing the key set at the same moment can still overwrite each other: the
    /// API offers no compare-and-swap.
    ///
    /// # Errors
    ///
    /// As [`Client::ssh_keys`] and [`Client::set_ssh_keys`].
    pub async fn add_ssh_key(&self, public_key: &str) -> Result<SshKeys> {
        let public_key = public_key.trim();
        if key_material(public_key).is_none() || !is_valid_public_key_line(public_key) {
            return Err(invalid(
                "add account ssh key".into(),
                "not a public key line (`<type> <base64> [comment]`); pass the .pub file's \
                 content"
                    .into(),
            ));
        }
        let mut keys = self.ssh_keys().await?;
        if keys.contains(public_key) {
            return Ok(keys);
        }
        keys.keys.push(public_key.to_owned());
        self.set_ssh_keys(&keys).await
    }

    /// Pod billing history (`GET /v2/billing/pods`).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidRequest`] for a window combined with `last_n`; API answers and the usual
    /// transport errors.
    pub async fn pod_billing(&self, params: &BillingParams) -> Result<PodBilling> {
        let mut call = Call::new("get pod billing", Method::GET, &["billing", "pods"]);
        params
            .check_for(BillingScope::Pods)
            .map_err(|reason| invalid(call.operation.clone(), reason))?;
        call.query = params.to_query();
        self.json(&call).await
    }
}

/// Failures after which a create may or may not have happened on the server.
fn is_ambiguous(error: &Error) -> bool {
    matches!(
        error,
        Error::Timeout { .. } | Error::Transport { .. } | Error::Decode { .. }
    ) || error.is_server_error()
}

fn unix_seconds(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |since| {
        i64::try_from(since.as_secs()).unwrap_or(i64::MAX)
    })
}

/// A pod's or serverless worker's log lines as they arrive. Ends when the server closes the
/// stream.
pub struct LogStream {
    inner: BoxStream<'static, Result<LogLine>>,
}

impl std::fmt::Debug for LogStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStream").finish_non_exhaustive()
    }
}

/// Whose logs a stream carries, for its errors.
pub(crate) enum LogOwner {
    Pod(PodId),
    Worker {
        endpoint_id: EndpointId,
        worker_id: WorkerId,
    },
}

struct LogState {
    owner: LogOwner,
    body: BoxStream<'static, reqwest::Result<Bytes>>,
    parser: SseParser,
    /// Lines parsed but not yet handed out, then possibly the error that ended the stream.
    ready: VecDeque<Result<LogLine>>,
    idle_timeout: Duration,
    done: bool,
}

impl LogStream {
    pub(crate) fn new(
        owner: LogOwner,
        body: BoxStream<'static, reqwest::Result<Bytes>>,
        idle_timeout: Duration,
    ) -> Self {
        let state = LogState {
            owner,
            body,
            parser: SseParser::new(MAX_LOG_LINE),
            ready: VecDeque::new(),
            idle_timeout,
            done: false,
        };
        let inner = futures_util::stream::unfold(state, |mut state| async move {
            let item = state.next_line().await?;
            Some((item, state))
        })
        .boxed();
        Self { inner }
    }
}

impl LogState {
    async fn next_line(&mut self) -> Option<Result<LogLine>> {
        loop {
            if let Some(item) = self.ready.pop_front() {
                return Some(item);
            }
            if self.done {
                return None;
            }
            let chunk = match tokio::time::timeout(self.idle_timeout, self.body.next()).await {
                Err(_) => {
                    return Some(Err(self.fail(format!(
                        "no data for {:?}; reconnect with last_event_id to resume",
                        self.idle_timeout
                    ))));
                }
                Ok(None) => {
                    self.done = true;
                    continue;
                }
                Ok(Some(Err(error))) => {
                    return Some(Err(self.fail(format!(
                        "the connection broke ({}); reconnect with last_event_id to resume",
                        error.without_url()
                    ))));
                }
                Ok(Some(Ok(chunk))) => chunk,
            };
            let events = match self.parser.push(&chunk) {
                Ok(events) => events,
                Err(too_long) => {
                    return Some(Err(
                        self.fail(format!("an event line exceeded {} bytes", too_long.0))
                    ));
                }
            };
            for event in events {
                if !(event.event.is_empty() || event.event == "message" || event.event == "log") {
                    continue;
                }
                match serde_json::from_str::<LogLine>(&event.data) {
                    Ok(mut line) => {
                        line.event_id = event.id;
                        self.ready.push_back(Ok(line));
                    }
                    Err(error) => {
                        // Lines before the bad event are still handed out first.
                        let error = self.fail(format!(
                            "an event is not a log line ({error}): {}",
                            crate::error::excerpt(event.data.as_bytes())
                        ));
                        self.ready.push_back(Err(error));
                        break;
                    }
                }
            }
        }
    }

    fn fail(&mut self, reason: String) -> Error {
        self.done = true;
        match &self.owner {
            LogOwner::Pod(pod_id) => Error::LogStream {
                pod_id: pod_id.clone(),
                reason,
            },
            LogOwner::Worker {
                endpoint_id,
                worker_id,
            } => Error::WorkerLogStream {
                endpoint_id: endpoint_id.clone(),
                worker_id: worker_id.clone(),
                reason,
            },
        }
    }
}

impl Stream for LogStream {
    type Item = Result<LogLine>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.poll_next_unpin(cx)
    }
}
