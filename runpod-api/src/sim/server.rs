//! The simulator's HTTP layer: routing, authentication, fault injection, validation of request
//! bodies (422 for unknown fields, as the real API's `additionalProperties: false`), and the
//! server-sent log stream.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::knobs::{Faults, Refusal, SshEndpoints, format_rfc3339};
use super::state::World;
use super::validate::{self, Shape};
use super::{hosts, resources};
use crate::models::{CreatePodRequest, PodActionRequest, SshKeys, UpdatePodRequest};

#[derive(Clone)]
pub(super) struct AppState {
    world: Arc<Mutex<World>>,
    api_key: Arc<str>,
}

impl AppState {
    pub(super) fn world(&self) -> MutexGuard<'_, World> {
        self.world
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

pub(super) fn router(world: Arc<Mutex<World>>, api_key: String) -> Router {
    let state = AppState {
        world,
        api_key: api_key.into(),
    };
    Router::new()
        .route("/v2/pods", get(list_pods).post(create_pod))
        .route(
            "/v2/pods/{id}",
            get(get_pod).patch(update_pod).delete(delete_pod),
        )
        .route("/v2/pods/{id}/action", post(pod_action))
        .route("/v2/pods/{id}/logs", get(pod_logs))
        .route("/v2/catalog/gpus", get(list_gpus))
        .route("/v2/catalog/gpus/{id}", get(get_gpu))
        .route("/v2/catalog/datacenters", get(list_data_centers))
        .route("/v2/catalog/datacenters/{id}", get(get_data_center))
        .route("/v2/account/ssh-keys", get(get_ssh_keys).put(put_ssh_keys))
        .route("/v2/billing/pods", get(pod_billing))
        .route("/v2/billing/network-volumes", get(network_volume_billing))
        .route(
            "/v2/network-volumes",
            get(resources::list_volumes).post(resources::create_volume),
        )
        .route(
            "/v2/network-volumes/{id}",
            get(resources::get_volume)
                .patch(resources::update_volume)
                .delete(resources::delete_volume),
        )
        .route(
            "/v2/templates",
            get(resources::list_templates).post(resources::create_template),
        )
        .route(
            "/v2/templates/{id}",
            get(resources::get_template)
                .patch(resources::update_template)
                .delete(resources::delete_template),
        )
        .route("/_sim/faults", get(get_faults).put(put_faults))
        .route("/_sim/ssh-endpoints", put(put_ssh_endpoints))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), gate))
        .with_state(state)
}

pub(super) fn problem(status: u16, title: &str, detail: &str, errors: &[String]) -> Response {
    let mut body = json!({ "title": title, "status": status, "detail": detail });
    if !errors.is_empty() {
        body["errors"] = json!(errors);
    }
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(header::CONTENT_TYPE, "application/problem+json")],
        body.to_string(),
    )
        .into_response()
}

pub(super) fn refusal(refusal: &Refusal) -> Response {
    problem(refusal.status, refusal.title, &refusal.detail, &[])
}

pub(super) fn ok_json(status: StatusCode, value: &impl serde::Serialize) -> Response {
    match serde_json::to_string(value) {
        Ok(body) => (status, [(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(error) => problem(500, "Internal Server Error", &error.to_string(), &[]),
    }
}

/// Authentication, fault injection and rate-limit headers, around every route.
async fn gate(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let expected = format!("Bearer {}", state.api_key);
    let authorized = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value == expected);
    if !authorized {
        let detail = if request.headers().contains_key(header::AUTHORIZATION) {
            "invalid bearer token"
        } else {
            "missing bearer token"
        };
        return problem(401, "Unauthorized", detail, &[]);
    }
    let (slow, fault, remaining) = {
        let mut world = state.world();
        let now = Instant::now();
        while world
            .minute_requests
            .front()
            .is_some_and(|at| now.saturating_duration_since(*at) > Duration::from_secs(60))
        {
            world.minute_requests.pop_front();
        }
        world.minute_requests.push_back(now);
        let remaining = 60_usize.saturating_sub(world.minute_requests.len());
        let is_admin = request.uri().path().starts_with("/_sim/");
        let faults = &mut world.faults;
        let fault = if is_admin {
            None
        } else if faults.rate_limit_next > 0 {
            faults.rate_limit_next -= 1;
            Some(Fault::RateLimited(faults.retry_after_secs))
        } else if faults.server_error_next > 0 {
            faults.server_error_next -= 1;
            Some(Fault::Server(faults.server_error_status))
        } else {
            None
        };
        (faults.slow, fault, remaining)
    };
    if !slow.is_zero() {
        tokio::time::sleep(slow).await;
    }
    let mut response = match fault {
        Some(Fault::RateLimited(retry_after)) => {
            let mut response = problem(
                429,
                "Too Many Requests",
                "rate limit exceeded for the minute window",
                &[],
            );
            if let Ok(value) = HeaderValue::from_str(&retry_after.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            response
        }
        Some(Fault::Server(status)) => problem(
            status,
            "Service Unavailable",
            "the simulated upstream failed",
            &[],
        ),
        None => next.run(request).await,
    };
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&format!("\"minute\";r={remaining};t=60")) {
        headers.insert("ratelimit", value);
    }
    headers.insert(
        "ratelimit-policy",
        HeaderValue::from_static("\"minute\";q=60;w=60"),
    );
    response
}

enum Fault {
    RateLimited(u64),
    Server(u16),
}

async fn not_found() -> Response {
    problem(404, "Not Found", "resource not found", &[])
}

fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .map(|(key, value)| (key.into_owned(), value.into_owned()))
        .collect()
}

fn query_value<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(name, _)| name == key)
        .map(|(_, value)| value.as_str())
}

async fn list_pods(State(state): State<AppState>, RawQuery(query): RawQuery) -> Response {
    if let Err(response) = check_query(&query_pairs(query.as_deref()), &validate::list_pods_query())
    {
        return response;
    }
    let mut world = state.world();
    world.refresh_all(Instant::now());
    let pods: Vec<_> = world.pods.values().map(|sim| sim.pod.clone()).collect();
    ok_json(StatusCode::OK, &json!({ "pods": pods }))
}

async fn get_pod(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    match state.world().get(&id, Instant::now()) {
        Ok(pod) => ok_json(StatusCode::OK, &pod),
        Err(error) => refusal(&error),
    }
}

/// Checks the query parameters an operation declares (others are ignored, as the real API
/// does); `Err` is the 422 answer.
#[expect(
    clippy::result_large_err,
    reason = "the error is the handler's answer, built once"
)]
fn check_query(
    pairs: &[(String, String)],
    declared: &[(&'static str, Shape)],
) -> Result<(), Response> {
    let mut errors = Vec::new();
    for (name, shape) in declared {
        if let Some(raw) = query_value(pairs, name) {
            validate::check_query(raw, shape, name, &mut errors);
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(invalid(&errors))
    }
}

fn invalid(errors: &[String]) -> Response {
    problem(
        422,
        "Unprocessable Entity",
        "Request validation failed.",
        errors,
    )
}

/// Parses a JSON body that must match `shape` (422 otherwise, listing each violation) and then
/// `extra`, the document's conditional rules. A body the schema accepts but the simulator's
/// types cannot hold (a disk of 2^40 GB) is a 400, as a rule the handler enforces.
#[expect(
    clippy::result_large_err,
    reason = "the error is the handler's answer, built once"
)]
pub(super) fn parse_body<T: serde::de::DeserializeOwned>(
    body: &[u8],
    shape: &Shape,
    extra: impl FnOnce(&Value, &mut Vec<String>),
) -> Result<T, Response> {
    let mut value: Value = serde_json::from_slice(body).map_err(|error| {
        problem(
            400,
            "Bad Request",
            &format!("the body is not JSON: {error}"),
            &[],
        )
    })?;
    let mut errors = Vec::new();
    validate::check(&value, shape, "", &mut errors);
    if errors.is_empty() {
        extra(&value, &mut errors);
    }
    if !errors.is_empty() {
        return Err(invalid(&errors));
    }
    validate::normalize_integers(&mut value);
    serde_json::from_value(value).map_err(|error| {
        problem(
            400,
            "Bad Request",
            &format!("the request cannot be served: {error}"),
            &[],
        )
    })
}

async fn create_pod(State(state): State<AppState>, body: Bytes) -> Response {
    let request: CreatePodRequest =
        match parse_body(&body, &validate::create_pod(), |value, errors| {
            if value.get("templateId").is_none() && value.get("image").is_none() {
                errors.push("image: required unless templateId is set".into());
            }
        }) {
            Ok(request) => request,
            Err(response) => return response,
        };
    match state.world().create(&request, Instant::now()) {
        Ok(pod) => ok_json(StatusCode::CREATED, &pod),
        Err(error) => refusal(&error),
    }
}

async fn update_pod(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let request: UpdatePodRequest = match parse_body(&body, &validate::update_pod(), |_, _| {}) {
        Ok(request) => request,
        Err(response) => return response,
    };
    match state.world().update(&id, &request, Instant::now()) {
        Ok(pod) => ok_json(StatusCode::OK, &pod),
        Err(error) => refusal(&error),
    }
}

async fn delete_pod(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    match state.world().delete(&id) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(error) => refusal(&error),
    }
}

async fn pod_action(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let request: PodActionRequest = match parse_body(&body, &validate::pod_action(), |_, _| {}) {
        Ok(request) => request,
        Err(response) => return response,
    };
    match state.world().action(&id, &request.action, Instant::now()) {
        Ok(Some(pod)) => ok_json(StatusCode::OK, &pod),
        Ok(None) => StatusCode::NO_CONTENT.into_response(),
        Err(error) => refusal(&error),
    }
}

async fn pod_logs(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let pairs = query_pairs(query.as_deref());
    if let Err(response) = check_query(&pairs, &validate::logs_query()) {
        return response;
    }
    if let Some(raw) = headers.get("last-event-id") {
        let valid = raw.to_str().is_ok_and(validate::is_rfc3339);
        if !valid {
            return invalid(&["Last-Event-ID: must be an RFC 3339 date-time".into()]);
        }
    }
    let tail: usize = query_value(&pairs, "tail")
        .and_then(|tail| tail.parse().ok())
        .unwrap_or(100);
    let source = query_value(&pairs, "source").map(str::to_owned);
    let cursor = headers
        .get("last-event-id")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
        .or_else(|| query_value(&pairs, "since").map(str::to_owned));
    let backlog = {
        let mut world = state.world();
        world.refresh(&id, Instant::now());
        let Some(pod) = world.pods.get(&id) else {
            return problem(404, "Not Found", &format!("pod {id} not found"), &[]);
        };
        pod.logs.len()
    };
    // Start from the cursor, or `tail` lines back.
    let first = if cursor.is_some() {
        0
    } else {
        backlog.saturating_sub(tail)
    };
    let stream = LogFeed {
        state,
        id,
        next: first,
        source,
        cursor,
        last_keepalive: Instant::now(),
    };
    let body = futures_util::stream::unfold(stream, |mut feed| async move {
        let chunk = feed.next_chunk().await?;
        Some((Ok::<_, Infallible>(chunk), feed))
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .header("x-accel-buffering", "no")
        .body(Body::from_stream(body))
        .unwrap_or_else(|_| problem(500, "Internal Server Error", "stream", &[]))
}

/// Feeds one pod's log lines as server-sent events until the pod is deleted or the client goes.
struct LogFeed {
    state: AppState,
    id: String,
    next: usize,
    source: Option<String>,
    cursor: Option<String>,
    last_keepalive: Instant,
}

impl LogFeed {
    async fn next_chunk(&mut self) -> Option<Bytes> {
        loop {
            {
                let mut world = self.state.world();
                world.refresh(&self.id, Instant::now());
                let pod = world.pods.get(&self.id)?;
                let mut out = String::new();
                while let Some(line) = pod.logs.get(self.next) {
                    self.next += 1;
                    let wanted_source = self
                        .source
                        .as_deref()
                        .is_none_or(|source| source == line.source.as_str());
                    let after_cursor = self
                        .cursor
                        .as_deref()
                        .is_none_or(|cursor| line.ts.as_str() > cursor);
                    if wanted_source && after_cursor {
                        let data = serde_json::to_string(line).unwrap_or_default();
                        let _ = write!(out, "id: {}\ndata: {data}\n\n", line.ts);
                    }
                }
                if !out.is_empty() {
                    return Some(Bytes::from(out));
                }
            }
            if self.last_keepalive.elapsed() >= Duration::from_secs(15) {
                self.last_keepalive = Instant::now();
                return Some(Bytes::from_static(b": keep-alive\n\n"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[expect(
    clippy::result_large_err,
    reason = "the error is the handler's answer, built once"
)]
fn availability_query(pairs: &[(String, String)]) -> Result<Option<u32>, Response> {
    check_query(pairs, &validate::gpu_catalog_query())?;
    let bad_request = |detail: &str| problem(400, "Bad Request", detail, &[]);
    let availability = query_value(pairs, "include").is_some_and(|include| !include.is_empty());
    let product = query_value(pairs, "product").is_some_and(|product| !product.is_empty());
    if availability && !product {
        return Err(bad_request("product is required with include=AVAILABILITY"));
    }
    if !availability {
        let filters = [
            "product",
            "count",
            "cloud",
            "countryCodes",
            "cudaVersions",
            "minCudaVersion",
        ];
        if let Some(filter) = filters
            .iter()
            .find(|filter| query_value(pairs, filter).is_some())
        {
            return Err(bad_request(&format!(
                "{filter} is valid only with include=AVAILABILITY"
            )));
        }
    }
    if query_value(pairs, "cudaVersions").is_some()
        && query_value(pairs, "minCudaVersion").is_some()
    {
        return Err(bad_request(
            "cudaVersions and minCudaVersion are mutually exclusive",
        ));
    }
    let count = query_value(pairs, "count")
        .and_then(|count| count.parse().ok())
        .unwrap_or(1);
    Ok(availability.then_some(count))
}

async fn list_gpus(State(state): State<AppState>, RawQuery(query): RawQuery) -> Response {
    let pairs = query_pairs(query.as_deref());
    let availability = match availability_query(&pairs) {
        Ok(availability) => availability,
        Err(response) => return response,
    };
    let mut world = state.world();
    world.refresh_all(Instant::now());
    let gpus: Vec<Value> = world
        .gpus
        .iter()
        .map(|gpu| hosts::gpu_json(gpu, &world.hosts, |host| world.used_on(host), availability))
        .collect();
    ok_json(StatusCode::OK, &json!({ "gpus": gpus }))
}

async fn get_gpu(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let pairs = query_pairs(query.as_deref());
    let availability = match availability_query(&pairs) {
        Ok(availability) => availability,
        Err(response) => return response,
    };
    let mut world = state.world();
    world.refresh_all(Instant::now());
    match world.gpus.iter().find(|gpu| gpu.id == id) {
        Some(gpu) => ok_json(
            StatusCode::OK,
            &hosts::gpu_json(gpu, &world.hosts, |host| world.used_on(host), availability),
        ),
        None => problem(404, "Not Found", &format!("gpu type {id:?} not found"), &[]),
    }
}

/// Data centers as the catalog lists them, with the `include` expansions asked for.
fn data_centers_json(world: &World, pairs: &[(String, String)], wanted: &[&str]) -> Vec<Value> {
    let list = |name: &str| -> Vec<String> {
        query_value(pairs, name)
            .filter(|raw| !raw.is_empty())
            .map(|raw| raw.split(',').map(str::to_owned).collect())
            .unwrap_or_default()
    };
    let (include, regions, types) = (list("include"), list("regions"), list("networkVolumeTypes"));
    let include: Vec<&str> = include.iter().map(String::as_str).collect();
    let compliance = list("compliance");
    let global = query_value(pairs, "globalNetwork");
    hosts::DATA_CENTERS
        .iter()
        .filter(|center| wanted.is_empty() || wanted.contains(&center.id))
        .filter(|center| regions.is_empty() || regions.iter().any(|r| r == center.region))
        .filter(|center| {
            types.is_empty()
                || types
                    .iter()
                    .any(|t| center.volume_types.contains(&t.as_str()))
        })
        // No simulated data center holds a certificate or global networking.
        .filter(|_| compliance.is_empty() && global != Some("true"))
        .map(|center| {
            hosts::data_center_json(
                center,
                &world.gpus,
                &world.hosts,
                |host| world.used_on(host),
                &include,
            )
        })
        .collect()
}

async fn list_data_centers(State(state): State<AppState>, RawQuery(query): RawQuery) -> Response {
    let pairs = query_pairs(query.as_deref());
    if let Err(response) = check_query(&pairs, &validate::data_centers_query()) {
        return response;
    }
    let mut world = state.world();
    world.refresh_all(Instant::now());
    let centers = data_centers_json(&world, &pairs, &[]);
    ok_json(StatusCode::OK, &json!({ "dataCenters": centers }))
}

async fn get_data_center(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let pairs = query_pairs(query.as_deref());
    if let Err(response) = check_query(&pairs, &validate::data_center_query()) {
        return response;
    }
    let mut world = state.world();
    world.refresh_all(Instant::now());
    match data_centers_json(&world, &pairs, &[id.as_str()]).pop() {
        Some(center) => ok_json(StatusCode::OK, &center),
        None => problem(
            404,
            "Not Found",
            &format!("data center {id} not found"),
            &[],
        ),
    }
}

async fn get_ssh_keys(State(state): State<AppState>) -> Response {
    let keys = SshKeys::new(state.world().ssh_keys.clone());
    ok_json(StatusCode::OK, &keys)
}

async fn put_ssh_keys(State(state): State<AppState>, body: Bytes) -> Response {
    let keys: SshKeys = match parse_body(&body, &validate::ssh_keys(), |_, _| {}) {
        Ok(keys) => keys,
        Err(response) => return response,
    };
    state.world().ssh_keys.clone_from(&keys.keys);
    ok_json(StatusCode::OK, &keys)
}

/// Today's UTC day, as the one billing bucket the simulator answers: `(start, end)` in RFC 3339.
fn today_bucket() -> (String, String) {
    let now_wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| i64::try_from(since.as_secs()).unwrap_or(0));
    let day_start = now_wall - now_wall.rem_euclid(86_400);
    (
        format_rfc3339(day_start),
        format_rfc3339(day_start + 86_400),
    )
}

/// Each network volume's charge since it was created, in one bucket (today's); a filter to
/// one volume narrows it. Other windows answer the same totals: the simulator keeps no history.
async fn network_volume_billing(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Response {
    let pairs = query_pairs(query.as_deref());
    if let Err(response) = check_query(&pairs, &validate::network_volume_billing_query()) {
        return response;
    }
    let bucket = query_value(&pairs, "bucketSize")
        .unwrap_or("day")
        .to_owned();
    let filter = query_value(&pairs, "networkVolumeId").map(str::to_owned);
    let (start, end) = today_bucket();
    let bills = state.world().volumes.bills(std::time::Instant::now());
    let mut records = Vec::new();
    let (mut total, mut standard, mut high) = (0.0, 0.0, 0.0);
    for bill in bills
        .iter()
        .filter(|bill| filter.as_deref().is_none_or(|wanted| wanted == bill.id))
    {
        let (std_amount, hp_amount) = if bill.kind == "HIGH_PERFORMANCE" {
            (0.0, bill.amount)
        } else {
            (bill.amount, 0.0)
        };
        total += bill.amount;
        standard += std_amount;
        high += hp_amount;
        records.push(json!({
            "networkVolumeId": bill.id, "startTime": start, "endTime": end,
            "totalAmount": bill.amount, "standardAmount": std_amount,
            "highPerformanceAmount": hp_amount,
        }));
    }
    let body = json!({
        "records": records,
        "metadata": {
            "query": {
                "startTime": start, "endTime": end, "bucketSize": bucket,
                "networkVolumeId": filter,
            },
            "recordCount": records.len(),
            "uniqueNetworkVolumeCount": records.len(),
            "totals": {
                "totalAmount": total, "standardAmount": standard,
                "highPerformanceAmount": high,
            },
        },
    });
    ok_json(StatusCode::OK, &body)
}

async fn pod_billing(State(state): State<AppState>, RawQuery(query): RawQuery) -> Response {
    let pairs = query_pairs(query.as_deref());
    if let Err(response) = check_query(&pairs, &validate::pod_billing_query()) {
        return response;
    }
    let bucket = query_value(&pairs, "bucketSize")
        .unwrap_or("day")
        .to_owned();
    let pod_filter = query_value(&pairs, "podId").map(str::to_owned);
    let (start, end) = today_bucket();
    let mut world = state.world();
    let now = Instant::now();
    let ids: Vec<String> = world
        .pods
        .keys()
        .filter(|id| {
            pod_filter
                .as_deref()
                .is_none_or(|wanted| wanted == id.as_str())
        })
        .cloned()
        .collect();
    let mut records = Vec::new();
    let (mut gpu_total, mut disk_total) = (0.0, 0.0);
    for id in &ids {
        if let Some((gpu, disk)) = world.billed(id, now) {
            gpu_total += gpu;
            disk_total += disk;
            records.push(json!({
                "podId": id, "startTime": start, "endTime": end,
                "totalAmount": gpu + disk, "gpuAmount": gpu, "cpuAmount": 0.0, "diskAmount": disk,
            }));
        }
    }
    let body = json!({
        "records": records,
        "metadata": {
            "query": { "startTime": start, "endTime": end, "bucketSize": bucket, "podId": pod_filter },
            "recordCount": records.len(),
            "uniquePodCount": records.len(),
            "totals": {
                "totalAmount": gpu_total + disk_total, "gpuAmount": gpu_total,
                "cpuAmount": 0.0, "diskAmount": disk_total,
            },
        },
    });
    ok_json(StatusCode::OK, &body)
}

/// Fault knobs over HTTP, for the `runpod-sim` binary and other languages' tests.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FaultsUpdate {
    rate_limit_next: Option<u32>,
    retry_after_secs: Option<u64>,
    server_error_next: Option<u32>,
    server_error_status: Option<u16>,
    no_capacity_next_create: Option<u32>,
    no_free_gpu_next_start: Option<u32>,
    stale_ssh_port_secs: Option<u64>,
    slow_ms: Option<u64>,
    insufficient_balance: Option<bool>,
    error_next_boot: Option<u32>,
}

fn faults_json(faults: &Faults) -> Value {
    json!({
        "rateLimitNext": faults.rate_limit_next,
        "retryAfterSecs": faults.retry_after_secs,
        "serverErrorNext": faults.server_error_next,
        "serverErrorStatus": faults.server_error_status,
        "noCapacityNextCreate": faults.no_capacity_next_create,
        "noFreeGpuNextStart": faults.no_free_gpu_next_start,
        "staleSshPortSecs": faults.stale_ssh_port_for.as_secs(),
        "slowMs": u64::try_from(faults.slow.as_millis()).unwrap_or(u64::MAX),
        "insufficientBalance": faults.insufficient_balance,
        "errorNextBoot": faults.error_next_boot,
    })
}

async fn get_faults(State(state): State<AppState>) -> Response {
    ok_json(StatusCode::OK, &faults_json(&state.world().faults))
}

async fn put_faults(State(state): State<AppState>, body: Bytes) -> Response {
    let update: FaultsUpdate = match serde_json::from_slice(&body) {
        Ok(update) => update,
        Err(error) => {
            return problem(
                422,
                "Unprocessable Entity",
                "Request validation failed.",
                &[error.to_string()],
            );
        }
    };
    if update
        .server_error_status
        .is_some_and(|status| !(500..=599).contains(&status))
    {
        return problem(
            422,
            "Unprocessable Entity",
            "Request validation failed.",
            &["serverErrorStatus: must be 5xx".into()],
        );
    }
    let mut world = state.world();
    let faults = &mut world.faults;
    macro_rules! apply {
        ($($field:ident),*) => { $( if let Some(value) = update.$field { faults.$field = value; } )* };
    }
    apply!(
        rate_limit_next,
        retry_after_secs,
        server_error_next,
        server_error_status,
        no_capacity_next_create,
        no_free_gpu_next_start,
        insufficient_balance,
        error_next_boot
    );
    if let Some(seconds) = update.stale_ssh_port_secs {
        faults.stale_ssh_port_for = Duration::from_secs(seconds);
    }
    if let Some(millis) = update.slow_ms {
        faults.slow = Duration::from_millis(millis);
    }
    ok_json(StatusCode::OK, &faults_json(faults))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EndpointsUpdate {
    endpoints: Vec<String>,
}

async fn put_ssh_endpoints(State(state): State<AppState>, body: Bytes) -> Response {
    let update: EndpointsUpdate = match serde_json::from_slice(&body) {
        Ok(update) => update,
        Err(error) => {
            return problem(
                422,
                "Unprocessable Entity",
                "Request validation failed.",
                &[error.to_string()],
            );
        }
    };
    let mut addresses = Vec::new();
    for endpoint in &update.endpoints {
        match endpoint.parse() {
            Ok(address) => addresses.push(address),
            Err(_) => {
                return problem(
                    422,
                    "Unprocessable Entity",
                    "Request validation failed.",
                    &[format!("endpoints: {endpoint:?} is not HOST:PORT")],
                );
            }
        }
    }
    let endpoints = match addresses.len() {
        0 => SshEndpoints::Fake,
        1 => SshEndpoints::Fixed(addresses[0]),
        _ => SshEndpoints::Rotating(addresses),
    };
    state.world().set_endpoints(endpoints);
    StatusCode::NO_CONTENT.into_response()
}
