//! Retries under paused tokio time: counts, backoff and `Retry-After` honoured exactly, and
//! create never retried blindly.

use std::time::Duration;

use runpod_api::models::{CreatePodRequest, GpuRequest};
use runpod_api::params::ListPodsParams;
use runpod_api::{CreateCandidates, Error, PodId, RetryPolicy};
use tokio::time::Instant;
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::{count, fixture, fixture_json, json_response, paused_client, problem, server};

fn policy() -> RetryPolicy {
    RetryPolicy::default()
        .with_max_attempts(4)
        .with_backoff(Duration::from_millis(500), Duration::from_secs(8))
}

fn create_request() -> CreatePodRequest {
    CreatePodRequest::new("pytorch-training")
        .image("img")
        .gpu(GpuRequest::new("NVIDIA GeForce RTX 4090"))
}

#[tokio::test(start_paused = true)]
async fn reads_retry_server_errors_with_exponential_backoff() {
    let server = server().await;
    Mock::given(method("GET"))
        .and(path("/v2/pods/7h9k2m4n6p"))
        .respond_with(problem(503, "Service Unavailable", "upstream busy"))
        .up_to_n_times(2)
        .expect(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v2/pods/7h9k2m4n6p"))
        .respond_with(json_response(200, fixture("pod_running.json")))
        .expect(1)
        .mount(&server)
        .await;
    let started = Instant::now();
    let pod = paused_client(&server, policy())
        .get_pod(&PodId::new("7h9k2m4n6p"))
        .await
        .expect("recovers");
    assert_eq!(pod.id.as_str(), "7h9k2m4n6p");
    // 500 ms before the first retry, 1 s before the second.
    assert_eq!(started.elapsed(), Duration::from_millis(1500));
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_honoured_exactly() {
    let server = server().await;
    Mock::given(method("GET"))
        .and(path("/v2/pods"))
        .respond_with(
            problem(429, "Too Many Requests", "slow down").insert_header("retry-after", "7"),
        )
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v2/pods"))
        .respond_with(json_response(200, fixture("pods_list.json")))
        .mount(&server)
        .await;
    let started = Instant::now();
    let client = paused_client(&server, policy());
    let pods = client
        .list_pods(&ListPodsParams::default())
        .await
        .expect("after waiting");
    assert_eq!(pods.len(), 2);
    assert_eq!(started.elapsed(), Duration::from_secs(7));
    assert_eq!(count(&server, "GET", "/v2/pods").await, 2);
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_beyond_the_cap_fails_at_once() {
    let server = server().await;
    Mock::given(method("GET"))
        .and(path("/v2/pods"))
        .respond_with(
            problem(429, "Too Many Requests", "hour window").insert_header("retry-after", "1800"),
        )
        .mount(&server)
        .await;
    let started = Instant::now();
    let error = paused_client(&server, policy())
        .list_pods(&ListPodsParams::default())
        .await
        .expect_err("too long to wait");
    assert!(error.is_rate_limited());
    assert_eq!(error.retry_after(), Some(Duration::from_secs(1800)));
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!(count(&server, "GET", "/v2/pods").await, 1);
}

#[tokio::test(start_paused = true)]
async fn retries_stop_after_the_attempt_budget() {
    let server = server().await;
    Mock::given(method("GET"))
        .and(path("/v2/pods"))
        .respond_with(problem(500, "Internal Server Error", "boom"))
        .mount(&server)
        .await;
    let started = Instant::now();
    let error = paused_client(&server, policy())
        .list_pods(&ListPodsParams::default())
        .await
        .expect_err("gives up");
    assert!(error.is_server_error());
    assert_eq!(count(&server, "GET", "/v2/pods").await, 4);
    assert_eq!(started.elapsed(), Duration::from_millis(500 + 1000 + 2000));
}

#[tokio::test(start_paused = true)]
async fn pod_actions_retry_server_errors() {
    let server = server().await;
    Mock::given(method("POST"))
        .and(path("/v2/pods/7h9k2m4n6p/action"))
        .respond_with(problem(502, "Bad Gateway", "upstream"))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v2/pods/7h9k2m4n6p/action"))
        .respond_with(json_response(200, fixture("pod_exited.json")))
        .mount(&server)
        .await;
    paused_client(&server, policy())
        .stop_pod(&PodId::new("7h9k2m4n6p"))
        .await
        .expect("retried");
    assert_eq!(
        count(&server, "POST", "/v2/pods/7h9k2m4n6p/action").await,
        2
    );
}

#[tokio::test(start_paused = true)]
async fn create_is_retried_after_429_because_nothing_was_created() {
    let server = server().await;
    Mock::given(method("POST"))
        .and(path("/v2/pods"))
        .respond_with(problem(429, "Too Many Requests", "x").insert_header("retry-after", "2"))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v2/pods"))
        .respond_with(json_response(201, fixture("pod_provisioning.json")))
        .mount(&server)
        .await;
    paused_client(&server, policy())
        .create_pod(&create_request())
        .await
        .expect("created");
    assert_eq!(count(&server, "POST", "/v2/pods").await, 2);
}

fn recent_pod_named(name: &str, id: &str) -> serde_json::Value {
    let mut pod = fixture_json("pod_provisioning.json");
    pod["name"] = name.into();
    pod["id"] = id.into();
    // Created "now" by the clock of the machine running the test.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    pod["createdAt"] = rfc3339(now).into();
    pod
}

/// Formats Unix seconds as RFC 3339 UTC (test helper, civil-from-days).
fn rfc3339(seconds: u64) -> String {
    let days = i64::try_from(seconds / 86_400).expect("small");
    let rest = seconds % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[tokio::test(start_paused = true)]
async fn an_ambiguous_create_failure_finds_the_pod_by_name_instead_of_retrying() {
    let server = server().await;
    Mock::given(method("POST"))
        .and(path("/v2/pods"))
        .respond_with(problem(
            500,
            "Internal Server Error",
            "gateway lost the answer",
        ))
        .mount(&server)
        .await;
    let old = {
        let mut pod = fixture_json("pod_running.json");
        pod["id"] = "old1".into();
        pod["name"] = "pytorch-training".into();
        pod["createdAt"] = "2020-01-01T00:00:00Z".into();
        pod
    };
    // A recent pod of the same name that is stopped is an older one (the pod a replacement
    // stands in for), never what this create made.
    let stopped = {
        let mut pod = recent_pod_named("pytorch-training", "stopped1");
        pod["status"] = "EXITED".into();
        pod
    };
    let list = serde_json::json!({
        "pods": [old, stopped, recent_pod_named("pytorch-training", "new1"), recent_pod_named("other", "x1")]
    });
    Mock::given(method("GET"))
        .and(path("/v2/pods"))
        .respond_with(json_response(200, list.to_string()))
        .mount(&server)
        .await;
    let pod = paused_client(&server, policy())
        .create_pod(&create_request())
        .await
        .expect("found by name");
    assert_eq!(pod.id.as_str(), "new1");
    assert_eq!(
        count(&server, "POST", "/v2/pods").await,
        1,
        "create is never re-sent"
    );
}

#[tokio::test(start_paused = true)]
async fn an_ambiguous_create_with_no_pod_returns_the_original_error() {
    let server = server().await;
    Mock::given(method("POST"))
        .and(path("/v2/pods"))
        .respond_with(problem(503, "Service Unavailable", "try later"))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v2/pods"))
        .respond_with(json_response(200, r#"{"pods":[]}"#.to_owned()))
        .mount(&server)
        .await;
    let error = paused_client(&server, policy())
        .create_pod(&create_request())
        .await
        .expect_err("not created");
    assert!(error.is_server_error(), "{error}");
    assert_eq!(count(&server, "POST", "/v2/pods").await, 1);
    assert_eq!(
        count(&server, "GET", "/v2/pods").await,
        3,
        "looked up three times"
    );
}

#[tokio::test(start_paused = true)]
async fn an_ambiguous_create_that_cannot_be_settled_says_so() {
    let server = server().await;
    Mock::given(method("POST"))
        .and(path("/v2/pods"))
        .respond_with(problem(500, "Internal Server Error", "x"))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v2/pods"))
        .respond_with(ResponseTemplate::new(401))
        .mount(&server)
        .await;
    let error = paused_client(&server, policy())
        .create_pod(&create_request())
        .await
        .expect_err("unknown outcome");
    assert!(
        matches!(
            &error,
            Error::CreateOutcomeUnknown {
                candidates: CreateCandidates::LookupFailed,
                ..
            }
        ),
        "{error:?}"
    );
    insta::assert_snapshot!("error_create_outcome_unknown", error.to_string());

    let server = crate::server().await;
    Mock::given(method("POST"))
        .and(path("/v2/pods"))
        .respond_with(problem(500, "Internal Server Error", "x"))
        .mount(&server)
        .await;
    let list = serde_json::json!({
        "pods": [recent_pod_named("pytorch-training", "a1"), recent_pod_named("pytorch-training", "b2")]
    });
    Mock::given(method("GET"))
        .and(path("/v2/pods"))
        .respond_with(json_response(200, list.to_string()))
        .mount(&server)
        .await;
    let error = paused_client(&server, policy())
        .create_pod(&create_request())
        .await
        .expect_err("two candidates");
    insta::assert_snapshot!("error_create_several_candidates", error.to_string());
}

#[tokio::test(start_paused = true)]
async fn the_last_rate_limit_is_exposed() {
    let server = server().await;
    Mock::given(method("GET"))
        .and(path("/v2/pods"))
        .respond_with(
            json_response(200, fixture("pods_list.json"))
                .insert_header("ratelimit", r#""minute";r=41;t=30"#)
                .insert_header("ratelimit-policy", r#""minute";q=60;w=60"#),
        )
        .mount(&server)
        .await;
    let client = paused_client(&server, policy());
    assert_eq!(client.last_rate_limit(), None);
    client
        .list_pods(&ListPodsParams::default())
        .await
        .expect("ok");
    let limit = client.last_rate_limit().expect("recorded");
    assert_eq!(limit.windows[0].remaining, Some(41));
    assert_eq!(limit.policies[0].quota, Some(60));
}
