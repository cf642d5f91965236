//! The client handle, its builder, and the request core shared by every operation: URL building,
//! authentication, timeouts, error parsing and retries.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use tokio::time::Instant;
use url::Url;

use crate::Result;
use crate::error::{ApiError, Error, Problem, classify, excerpt};
use crate::models::PodAction;
use crate::ratelimit::RateLimit;
use crate::retry::RetryPolicy;

/// The default API base URL.
pub const DEFAULT_BASE_URL: &str = "https://api.runpod.io/v2";
/// Environment variable holding the API key, read by [`Client::from_env`].
pub const API_KEY_ENV: &str = "RUNPOD_API_KEY";
/// Environment variable overriding the base URL, read by [`Client::from_env`].
pub const API_URL_ENV: &str = "RUNPOD_API_URL";

const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest answer body buffered; a bigger one is a server or proxy fault, not data.
const DEFAULT_MAX_RESPONSE_BYTES: usize = 32 << 20;

/// A client for RunPod's REST API v2. Cheap to clone: clones share one connection pool.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base_url: Url,
    api_key: SecretString,
    retry: RetryPolicy,
    request_timeout: Option<Duration>,
    max_response_bytes: usize,
    last_rate_limit: Mutex<Option<RateLimit>>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base_url", &self.inner.base_url.as_str())
            .field("api_key", &"[redacted]")
            .field("retry", &self.inner.retry)
            .field("request_timeout", &self.inner.request_timeout)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Client`]. Every setting has a documented default; only the API key is required.
#[derive(Default)]
#[must_use]
pub struct ClientBuilder {
    base_url: Option<String>,
    api_key: Option<SecretString>,
    connect_timeout: Option<Duration>,
    request_timeout: Option<Duration>,
    timeouts_disabled: bool,
    max_response_bytes: Option<usize>,
    user_agent: Option<String>,
    retry: Option<RetryPolicy>,
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "[redacted]"))
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("timeouts_disabled", &self.timeouts_disabled)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("user_agent", &self.user_agent)
            .field("retry", &self.retry)
            .finish()
    }
}

impl ClientBuilder {
    /// The API base URL. Default: [`DEFAULT_BASE_URL`] (`https://api.runpod.io/v2`).
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = Some(url.into());
        self
    }

    /// The API key. Required. It is only ever sent in the `Authorization` header.
    pub fn api_key(mut self, key: impl Into<SecretString>) -> Self {
        self.api_key = Some(key.into());
        self
    }

    /// Time allowed to open a connection. Default: 10 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// Time allowed for one request from sending to the end of the answer. Default: 30 s.
    /// Log streams use it for the answer's start only.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = Some(timeout);
        self
    }

    /// Disables both timeouts. Meant for tests under paused tokio time, where a pending timeout
    /// would fire as soon as the runtime idles; never use it against the real API.
    pub fn no_timeouts(mut self) -> Self {
        self.timeouts_disabled = true;
        self
    }

    /// Largest answer body the client buffers; a larger one fails with
    /// [`Error::ResponseTooLarge`] instead of growing memory. Default: 32 MiB.
    pub fn max_response_bytes(mut self, bytes: usize) -> Self {
        self.max_response_bytes = Some(bytes.max(1024));
        self
    }

    /// The `User-Agent`. Default: `runpod-api-rust/<crate version>`.
    pub fn user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = Some(user_agent.into());
        self
    }

    /// The retry policy. Default: [`RetryPolicy::default`].
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry = Some(policy);
        self
    }

    /// Builds the client.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when the key is missing or not a valid header value, the base URL is
    /// not an `http`/`https` URL without credentials, query or fragment, or the HTTP stack
    /// cannot be initialised.
    pub fn build(self) -> Result<Client> {
        let api_key = self.api_key.ok_or_else(|| Error::Config {
            reason: format!("no API key; pass one to the builder or set {API_KEY_ENV}"),
        })?;
        check_api_key(api_key.expose_secret())?;
        let base_url = parse_base_url(self.base_url.as_deref().unwrap_or(DEFAULT_BASE_URL))?;
        let (connect_timeout, request_timeout) = if self.timeouts_disabled {
            (None, None)
        } else {
            (
                Some(self.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT)),
                Some(self.request_timeout.unwrap_or(DEFAULT_REQUEST_TIMEOUT)),
            )
        };
        let user_agent = self
            .user_agent
            .unwrap_or_else(|| format!("runpod-api-rust/{}", env!("CARGO_PKG_VERSION")));
        let mut http = reqwest::Client::builder()
            .user_agent(user_agent)
            .redirect(reqwest::redirect::Policy::none())
            // No idle-pool timer either without timeouts: under paused time it would fire
            // while a request waits for its answer.
            .pool_idle_timeout(connect_timeout.map(|_| Duration::from_secs(60)));
        if let Some(timeout) = connect_timeout {
            http = http.connect_timeout(timeout);
        }
        let http = http.build().map_err(|source| Error::Config {
            reason: format!(
                "the HTTP client could not be built: {}",
                source.without_url()
            ),
        })?;
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                base_url,
                api_key,
                retry: self.retry.unwrap_or_default(),
                request_timeout,
                max_response_bytes: self
                    .max_response_bytes
                    .unwrap_or(DEFAULT_MAX_RESPONSE_BYTES),
                last_rate_limit: Mutex::new(None),
            }),
        })
    }
}

fn check_api_key(key: &str) -> Result<()> {
    if key.trim().is_empty() {
        return Err(Error::Config {
            reason: format!("the API key is empty; set {API_KEY_ENV} to a key from the console"),
        });
    }
    if key
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || !c.is_ascii())
    {
        return Err(Error::Config {
            reason: "the API key contains whitespace or non-ASCII characters; copy it again \
                     from the console"
                .into(),
        });
    }
    Ok(())
}

fn parse_base_url(raw: &str) -> Result<Url> {
    let url = Url::parse(raw).map_err(|error| Error::Config {
        reason: format!("the base URL {raw:?} is not a URL ({error})"),
    })?;
    // First, since the later messages quote the URL: never echo credentials back.
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Error::Config {
            reason: "the base URL must not carry credentials; pass the API key to the builder"
                .into(),
        });
    }
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Error::Config {
            reason: format!("the base URL {raw:?} must use http or https"),
        });
    }
    if url.scheme() == "http" && !is_loopback(&url) {
        // The API key goes in every request's header: over plain http to another machine
        // anyone on the path reads it (a `.env` in a cloned repository could point here).
        return Err(Error::Config {
            reason: format!(
                "the base URL {raw:?} uses plain http to another machine, which would send the \
                 API key unencrypted; use https (http is accepted for 127.0.0.1, ::1 and \
                 localhost only)"
            ),
        });
    }
    if url.query().is_some() || url.fragment().is_some() || url.cannot_be_a_base() {
        return Err(Error::Config {
            reason: format!("the base URL {raw:?} must not have a query or fragment"),
        });
    }
    Ok(url)
}

/// Whether the URL's host is this machine (a loopback address or `localhost`).
fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// Which failures of a request may be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Idempotent requests: 429, 5xx, timeouts and transport failures.
    Always,
    /// Requests that must not run twice: only failures proving the server did not act
    /// (429, or a connection that never opened).
    OnlyUnsent,
}

/// One API call, described without IO.
#[derive(Debug)]
pub(crate) struct Call<'a> {
    pub(crate) operation: String,
    pub(crate) method: Method,
    pub(crate) path: &'a [&'a str],
    pub(crate) query: Vec<(&'static str, String)>,
    pub(crate) body: Option<Vec<u8>>,
    pub(crate) headers: Vec<(&'static str, String)>,
    pub(crate) retry: Retry,
    /// The pod action requested, so a 409 can be classified as an invalid action.
    pub(crate) action: Option<PodAction>,
    /// A streamed answer: the request timeout bounds only the wait for the answer's head.
    pub(crate) streaming: bool,
}

impl<'a> Call<'a> {
    pub(crate) fn new(operation: impl Into<String>, method: Method, path: &'a [&'a str]) -> Self {
        let retry = if method == Method::POST || method == Method::PATCH {
            Retry::OnlyUnsent
        } else {
            Retry::Always
        };
        Self {
            operation: operation.into(),
            method,
            path,
            query: Vec::new(),
            body: None,
            headers: Vec::new(),
            retry,
            action: None,
            streaming: false,
        }
    }

    pub(crate) fn json_body<T: serde::Serialize>(mut self, body: &T) -> Result<Self> {
        let bytes = serde_json::to_vec(body).map_err(|error| Error::InvalidRequest {
            operation: self.operation.clone(),
            reason: format!("the body could not be serialized: {error}"),
        })?;
        self.body = Some(bytes);
        Ok(self)
    }

    pub(crate) fn query(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.query.push((key, value.into()));
        self
    }

    pub(crate) fn retry(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self
    }
}

/// A successful answer.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) body: Bytes,
}

impl Client {
    /// Starts building a client.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// A client configured from the environment: the key from `RUNPOD_API_KEY` and, when set,
    /// the base URL from `RUNPOD_API_URL`; every other setting at its default.
    ///
    /// # Errors
    ///
    /// [`Error::MissingEnv`] when `RUNPOD_API_KEY` is unset or empty, and the errors of
    /// [`ClientBuilder::build`].
    pub fn from_env() -> Result<Self> {
        let key = std::env::var(API_KEY_ENV)
            .ok()
            .filter(|key| !key.trim().is_empty())
            .ok_or(Error::MissingEnv { name: API_KEY_ENV })?;
        let mut builder = Self::builder().api_key(key);
        if let Some(url) = std::env::var(API_URL_ENV)
            .ok()
            .filter(|url| !url.is_empty())
        {
            builder = builder.base_url(url);
        }
        builder.build()
    }

    /// The base URL requests go to.
    pub fn base_url(&self) -> &str {
        self.inner.base_url.as_str()
    }

    /// The retry policy in force.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.inner.retry
    }

    /// The rate-limit state reported on the most recent answer that carried it.
    pub fn last_rate_limit(&self) -> Option<RateLimit> {
        self.inner
            .last_rate_limit
            .lock()
            .map_or(None, |guard| guard.clone())
    }

    pub(crate) fn url(&self, call: &Call<'_>) -> Url {
        let mut url = self.inner.base_url.clone();
        {
            let Ok(mut segments) = url.path_segments_mut() else {
                unreachable!("invariant: the base URL was checked to be a base at build time");
            };
            segments.pop_if_empty();
            // Each segment is percent-encoded, so an id can never escape its path position.
            segments.extend(call.path);
        }
        if !call.query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (key, value) in &call.query {
                pairs.append_pair(key, value);
            }
        }
        url
    }

    /// Sends a call with retries and returns the successful answer.
    pub(crate) async fn execute(&self, call: &Call<'_>) -> Result<Answer> {
        self.with_retries(call, || async {
            let response = self.attempt(call).await?;
            self.finish(call, response).await
        })
        .await
    }

    /// Sends a call with retries and returns the successful response with its body unread.
    pub(crate) async fn open_stream(&self, call: &Call<'_>) -> Result<reqwest::Response> {
        self.with_retries(call, || async {
            let response = self.attempt(call).await?;
            if response.status().is_success() {
                Ok(response)
            } else {
                Err(self
                    .finish(call, response)
                    .await
                    .err()
                    .unwrap_or_else(|| unreachable!("invariant: an error status never succeeds")))
            }
        })
        .await
    }

    /// Runs `attempt` until it succeeds or the retry policy says stop.
    async fn with_retries<T, F, Fut>(&self, call: &Call<'_>, mut attempt: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let started = Instant::now();
        let mut retry = 0;
        loop {
            let error = match attempt().await {
                Ok(value) => return Ok(value),
                Err(error) => error,
            };
            let may_retry = match call.retry {
                Retry::Always => error.is_retryable(),
                Retry::OnlyUnsent => {
                    error.is_rate_limited() || matches!(error, Error::Connect { .. })
                }
            };
            if !may_retry {
                return Err(error);
            }
            retry += 1;
            let Some(delay) =
                self.inner
                    .retry
                    .delay_before_retry(retry, error.retry_after(), started.elapsed())
            else {
                return Err(error);
            };
            tracing::warn!(
                operation = %call.operation,
                retry,
                delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                error = %error,
                "retrying runpod api call"
            );
            tokio::time::sleep(delay).await;
        }
    }

    /// Sends a call and decodes a JSON answer.
    pub(crate) async fn json<T: DeserializeOwned>(&self, call: &Call<'_>) -> Result<T> {
        let answer = self.execute(call).await?;
        decode(&call.operation, answer.status, &answer.body)
    }

    /// One attempt: sends the request and returns the raw response (any status).
    pub(crate) async fn attempt(&self, call: &Call<'_>) -> Result<reqwest::Response> {
        let url = self.url(call);
        let mut request = self
            .inner
            .http
            .request(call.method.clone(), url)
            .bearer_auth(self.inner.api_key.expose_secret());
        if !call
            .headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("accept"))
        {
            request = request.header(
                http::header::ACCEPT,
                "application/json, application/problem+json",
            );
        }
        if let (Some(timeout), false) = (self.inner.request_timeout, call.streaming) {
            request = request.timeout(timeout);
        }
        for (name, value) in &call.headers {
            request = request.header(*name, value);
        }
        if let Some(body) = &call.body {
            request = request
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(body.clone());
        }
        tracing::debug!(operation = %call.operation, method = %call.method, "runpod api request");
        let sent = request.send();
        match (self.inner.request_timeout, call.streaming) {
            (Some(timeout), true) => match tokio::time::timeout(timeout, sent).await {
                Ok(result) => result.map_err(|source| self.transport_error(call, source)),
                Err(_) => Err(Error::Timeout {
                    operation: call.operation.clone(),
                    base_url: self.inner.base_url.to_string(),
                    timeout,
                }),
            },
            _ => sent
                .await
                .map_err(|source| self.transport_error(call, source)),
        }
    }

    /// Reads a response: success bodies are returned, error statuses parsed into [`ApiError`].
    pub(crate) async fn finish(
        &self,
        call: &Call<'_>,
        response: reqwest::Response,
    ) -> Result<Answer> {
        let status = response.status();
        let headers = response.headers().clone();
        let rate_limit = RateLimit::from_headers(&headers);
        if let (Some(limit), Ok(mut last)) = (&rate_limit, self.inner.last_rate_limit.lock()) {
            *last = Some(limit.clone());
        }
        let body = self.read_body(call, response).await?;
        if status.is_success() {
            return Ok(Answer { status, body });
        }
        Err(api_error(call, status, &headers, &body, rate_limit))
    }

    /// Reads a body, refusing one larger than the configured limit (before reading, when the
    /// length is announced).
    async fn read_body(&self, call: &Call<'_>, mut response: reqwest::Response) -> Result<Bytes> {
        let limit = self.inner.max_response_bytes;
        let too_large = || Error::ResponseTooLarge {
            operation: call.operation.clone(),
            limit,
        };
        if response
            .content_length()
            .is_some_and(|length| length > limit as u64)
        {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|source| self.transport_error(call, source))?
        {
            if body.len() + chunk.len() > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Bytes::from(body))
    }

    pub(crate) fn transport_error(&self, call: &Call<'_>, source: reqwest::Error) -> Error {
        let source = source.without_url();
        let base_url = self.inner.base_url.to_string();
        let operation = call.operation.clone();
        if source.is_timeout() {
            Error::Timeout {
                operation,
                base_url,
                timeout: self
                    .inner
                    .request_timeout
                    .unwrap_or(DEFAULT_REQUEST_TIMEOUT),
            }
        } else if source.is_connect() {
            Error::Connect {
                operation,
                base_url,
                source,
            }
        } else {
            Error::Transport {
                operation,
                base_url,
                source,
            }
        }
    }
}

pub(crate) fn decode<T: DeserializeOwned>(
    operation: &str,
    status: StatusCode,
    body: &[u8],
) -> Result<T> {
    serde_json::from_slice(body).map_err(|source| Error::Decode {
        operation: operation.to_owned(),
        status,
        excerpt: excerpt(body),
        source,
    })
}

fn api_error(
    call: &Call<'_>,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    rate_limit: Option<RateLimit>,
) -> Error {
    let problem: Problem = serde_json::from_slice(body).unwrap_or_else(|_| Problem {
        // Not a problem document (a proxy's HTML page, say): keep an excerpt as the detail.
        detail: (!body.is_empty()).then(|| excerpt(body)),
        ..Problem::default()
    });
    let detail_text = problem.detail.as_deref().unwrap_or_default();
    let kind = classify(status, detail_text, call.action.as_ref());
    Error::Api(Box::new(ApiError {
        operation: call.operation.clone(),
        status,
        kind,
        title: problem.title,
        detail: problem.detail,
        errors: problem.errors.unwrap_or_default(),
        retry_after: retry_after(headers),
        rate_limit,
        request_id: headers
            .get("x-request-id")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned),
    }))
}

/// `Retry-After` in seconds (the form RunPod sends). An HTTP date is not used by the API and is
/// ignored, falling back to the policy's own backoff.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(base: &str) -> Client {
        Client::builder()
            .base_url(base)
            .api_key("test-key")
            .build()
            .expect("valid")
    }

    #[test]
    fn urls_encode_each_segment_and_keep_the_base_path() {
        let client = client("http://127.0.0.1:9/v2/");
        let path = ["pods", "../account/ssh-keys?x"];
        let call = Call::new("op", Method::GET, &path).query("include", "A,B");
        assert_eq!(
            client.url(&call).as_str(),
            "http://127.0.0.1:9/v2/pods/..%2Faccount%2Fssh-keys%3Fx?include=A%2CB"
        );
    }

    #[test]
    fn builder_rejects_bad_settings_without_echoing_secrets() {
        let no_key = Client::builder().build().expect_err("no key");
        assert!(no_key.to_string().contains("RUNPOD_API_KEY"));
        let bad = Client::builder()
            .api_key("abc def")
            .build()
            .expect_err("space in key");
        assert!(!bad.to_string().contains("abc"));
        let creds = Client::builder()
            .api_key("k")
            .base_url("https://user:hunter2@example.com/v2")
            .build()
            .expect_err("credentials in url");
        assert!(!creds.to_string().contains("hunter2"));
        for url in [
            "http://user:hunter2@attacker.example/v2",
            "ftp://user:hunter2@example.com",
            "https://user:hunter2@example.com/v2?x=1",
        ] {
            let error = Client::builder()
                .api_key("k")
                .base_url(url)
                .build()
                .expect_err("credentials in url");
            assert!(!error.to_string().contains("hunter2"), "{url}: {error}");
        }
        let scheme = Client::builder()
            .api_key("k")
            .base_url("ftp://example.com")
            .build()
            .expect_err("scheme");
        assert!(scheme.to_string().contains("http or https"));
        for plain in [
            "http://api.runpod.io/v2",
            "http://attacker.example/v2",
            "http://10.0.0.1:8080/v2",
            "http://127.0.0.1.example.com/v2",
        ] {
            let error = Client::builder()
                .api_key("k")
                .base_url(plain)
                .build()
                .expect_err("plain http off this machine");
            assert!(error.to_string().contains("use https"), "{plain}: {error}");
        }
        for local in [
            "http://127.0.0.1:8765/v2",
            "http://127.3.4.5/v2",
            "http://[::1]:8765/v2",
            "http://localhost:8765/v2",
            "https://api.runpod.io/v2",
        ] {
            Client::builder()
                .api_key("k")
                .base_url(local)
                .build()
                .unwrap_or_else(|error| panic!("{local}: {error}"));
        }
    }

    #[test]
    fn debug_redacts_the_key() {
        let client = client("http://127.0.0.1:9/v2");
        let debug = format!("{client:?}");
        assert!(!debug.contains("test-key"), "{debug}");
        assert!(debug.contains("[redacted]"));
        let builder = format!("{:?}", Client::builder().api_key("test-key"));
        assert!(!builder.contains("test-key"), "{builder}");
    }
}
