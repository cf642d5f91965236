//! Every error path: the typed kind, the predicates, and the message (snapshotted).

use std::error::Error as _;
use std::time::Duration;

use runpod_api::models::{CreatePodRequest, GpuRequest};
use runpod_api::params::ListPodsParams;
use runpod_api::{ApiErrorKind, Client, Error, PodAction, PodId, PodStatus, RetryPolicy};
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::{client, fixture, json_response, problem, server};

async fn list_error(response: ResponseTemplate) -> Error {
    let server = server().await;
    Mock::given(method("GET"))
        .and(path("/v2/pods"))
        .respond_with(response)
        .mount(&server)
        .await;
    client(&server)
        .list_pods(&ListPodsParams::default())
        .await
        .expect_err("error answer")
}

#[tokio::test]
async fn unauthorized() {
    let error = list_error(problem(401, "Unauthorized", "missing bearer token")).await;
    assert!(error.is_unauthorized());
    assert!(!error.is_retryable());
    insta::assert_snapshot!("error_401", error.to_string());
}

#[tokio::test]
async fn insufficient_balance() {
    let error = list_error(problem(402, "Payment Required", "insufficient balance")).await;
    assert!(error.is_insufficient_balance());
    insta::assert_snapshot!("error_402", error.to_string());
}

#[tokio::test]
async fn forbidden() {
    let error = list_error(problem(403, "Forbidden", "access denied")).await;
    assert!(error.is_forbidden());
    insta::assert_snapshot!("error_403", error.to_string());
}

#[tokio::test]
async fn not_found() {
    let server = server().await;
    Mock::given(method("GET"))
        .and(path("/v2/pods/gone1"))
        .respond_with(problem(404, "Not Found", "pod not found"))
        .mount(&server)
        .await;
    let error = client(&server)
        .get_pod(&PodId::new("gone1"))
        .await
        .expect_err("404");
    assert!(error.is_not_found());
    assert_eq!(error.status().map(|status| status.as_u16()), Some(404));
    insta::assert_snapshot!("error_404", error.to_string());
}

#[tokio::test]
async fn invalid_action_names_the_status_and_the_allowed_actions() {
    let server = server().await;
    Mock::given(method("POST"))
        .and(path("/v2/pods/7h9k2m4n6p/action"))
        .respond_with(problem(
            409,
            "Conflict",
            "action stop is not valid for status EXITED",
        ))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v2/pods/7h9k2m4n6p"))
        .respond_with(json_response(200, fixture("pod_exited.json")))
        .expect(1)
        .mount(&server)
        .await;
    let error = client(&server)
        .stop_pod(&PodId::new("7h9k2m4n6p"))
        .await
        .expect_err("409");
    assert!(error.is_invalid_action());
    assert_eq!(
        error.kind(),
        Some(&ApiErrorKind::InvalidAction {
            action: PodAction::Stop,
            status: Some(PodStatus::Exited),
            allowed: vec![PodAction::Start, PodAction::Terminate],
        })
    );
    insta::assert_snapshot!("error_409_action", error.to_string());
}

#[tokio::test]
async fn conflict_outside_actions() {
    let server = server().await;
    Mock::given(method("DELETE"))
        .and(path("/v2/pods/member1"))
        .respond_with(problem(409, "Conflict", "pod belongs to cluster c1"))
        .mount(&server)
        .await;
    let error = client(&server)
        .delete_pod(&PodId::new("member1"))
        .await
        .expect_err("409");
    assert_eq!(error.kind(), Some(&ApiErrorKind::Conflict));
    insta::assert_snapshot!("error_409_conflict", error.to_string());
}

#[tokio::test]
async fn validation_lists_each_violation() {
    let server = server().await;
    let body = serde_json::json!({
        "title": "Unprocessable Entity",
        "status": 422,
        "detail": "Request validation failed.",
        "errors": ["gpu.count: must be >= 1", "unknownField: additional property not allowed"],
    });
    Mock::given(method("POST"))
        .and(path("/v2/pods"))
        .respond_with(
            ResponseTemplate::new(422).set_body_raw(body.to_string(), "application/problem+json"),
        )
        .expect(1)
        .mount(&server)
        .await;
    let request = CreatePodRequest::new("x")
        .image("i")
        .gpu(GpuRequest::new("g"));
    let error = client(&server).create_pod(&request).await.expect_err("422");
    assert!(error.is_validation());
    assert_eq!(error.violations().len(), 2);
    insta::assert_snapshot!("error_422", error.to_string());
}

#[tokio::test]
async fn rate_limited_with_retry_after_and_headers() {
    let error = list_error(
        problem(
            429,
            "Too Many Requests",
            "rate limit exceeded for the minute window",
        )
        .insert_header("retry-after", "12")
        .insert_header("ratelimit", r#""minute";r=0;t=12, "hour";r=2800;t=1812"#)
        .insert_header(
            "ratelimit-policy",
            r#""minute";q=60;w=60, "hour";q=3000;w=3600"#,
        ),
    )
    .await;
    assert!(error.is_rate_limited());
    assert!(error.is_retryable());
    assert_eq!(error.retry_after(), Some(Duration::from_secs(12)));
    let limit = error
        .api()
        .and_then(|api| api.rate_limit.clone())
        .expect("headers parsed");
    assert_eq!(
        limit.tightest().map(|window| window.name.as_str()),
        Some("minute")
    );
    insta::assert_snapshot!("error_429", error.to_string());
}

#[tokio::test]
async fn no_capacity_on_create() {
    let server = server().await;
    Mock::given(method("POST"))
        .and(path("/v2/pods"))
        .respond_with(problem(
            400,
            "Bad Request",
            "There are no longer any instances available with the requested specifications. \
             Please refresh and try again.",
        ))
        .expect(1)
        .mount(&server)
        .await;
    let request = CreatePodRequest::new("x")
        .image("i")
        .gpu(GpuRequest::new("g"));
    let error = client(&server).create_pod(&request).await.expect_err("400");
    assert!(error.is_no_capacity());
    assert_eq!(error.kind(), Some(&ApiErrorKind::NoCapacity));
    insta::assert_snapshot!("error_no_capacity", error.to_string());
}

#[tokio::test]
async fn no_free_gpu_on_the_host_on_start() {
    let server = server().await;
    Mock::given(method("POST"))
        .and(path("/v2/pods/7h9k2m4n6p/action"))
        .respond_with(problem(
            400,
            "Bad Request",
            "There are not enough free GPUs on the host machine to start this pod.",
        ))
        .expect(1)
        .mount(&server)
        .await;
    let error = client(&server)
        .start_pod(&PodId::new("7h9k2m4n6p"))
        .await
        .expect_err("400");
    assert_eq!(error.kind(), Some(&ApiErrorKind::HostOutOfGpus));
    assert!(error.is_no_capacity());
    insta::assert_snapshot!("error_host_out_of_gpus", error.to_string());
}

#[tokio::test]
async fn server_error_with_an_html_body_keeps_an_excerpt() {
    let error = list_error(
        ResponseTemplate::new(502)
            .set_body_raw("<html><body>Bad gateway</body></html>", "text/html")
            .insert_header("x-request-id", "req-42"),
    )
    .await;
    assert!(error.is_server_error());
    assert!(error.is_retryable());
    insta::assert_snapshot!("error_502_html", error.to_string());
}

#[tokio::test]
async fn timeout_names_the_operation_and_the_limit() {
    let server = server().await;
    Mock::given(method("GET"))
        .and(path("/v2/pods/slow1"))
        .respond_with(
            json_response(200, fixture("pod_running.json")).set_delay(Duration::from_secs(3)),
        )
        .mount(&server)
        .await;
    let client = Client::builder()
        .base_url(format!("{}/v2", server.uri()))
        .api_key(crate::KEY)
        .request_timeout(Duration::from_millis(200))
        .retry_policy(RetryPolicy::none())
        .build()
        .expect("client");
    let error = client
        .get_pod(&PodId::new("slow1"))
        .await
        .expect_err("timeout");
    assert!(error.is_timeout());
    assert!(error.is_retryable());
    let message = error
        .to_string()
        .replace(&server.uri(), "http://127.0.0.1:PORT");
    insta::assert_snapshot!("error_timeout", message);
}

#[tokio::test]
async fn connection_refused_is_a_connect_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    let client = Client::builder()
        .base_url(format!("http://127.0.0.1:{port}/v2"))
        .api_key(crate::KEY)
        .retry_policy(RetryPolicy::none())
        .build()
        .expect("client");
    let error = client
        .list_pods(&ListPodsParams::default())
        .await
        .expect_err("refused");
    assert!(matches!(error, Error::Connect { .. }), "{error:?}");
    assert!(
        error.source().is_some(),
        "the transport error is kept as the source"
    );
    let message = error.to_string().replace(&port.to_string(), "PORT");
    insta::assert_snapshot!("error_connect", message);
}

#[tokio::test]
async fn missing_env_and_config_errors() {
    let missing = Error::MissingEnv {
        name: runpod_api::API_KEY_ENV,
    };
    insta::assert_snapshot!("error_missing_env", missing.to_string());
}

#[tokio::test]
async fn an_oversized_answer_is_refused_instead_of_buffered() {
    let server = server().await;
    let body = format!("{{\"pods\":[],\"padding\":\"{}\"}}", "x".repeat(3 << 20));
    Mock::given(method("GET"))
        .and(path("/v2/pods"))
        .respond_with(json_response(200, body))
        .mount(&server)
        .await;
    let client = Client::builder()
        .base_url(format!("{}/v2", server.uri()))
        .api_key(crate::KEY)
        .max_response_bytes(2 << 20)
        .retry_policy(RetryPolicy::none())
        .build()
        .expect("client");
    let error = client
        .list_pods(&ListPodsParams::default())
        .await
        .expect_err("too large");
    assert!(
        matches!(error, Error::ResponseTooLarge { limit, .. } if limit == 2 << 20),
        "{error:?}"
    );
    insta::assert_snapshot!("error_response_too_large", error.to_string());

    // Within the limit the same answer parses.
    let roomy = Client::builder()
        .base_url(format!("{}/v2", server.uri()))
        .api_key(crate::KEY)
        .max_response_bytes(4 << 20)
        .retry_policy(RetryPolicy::none())
        .build()
        .expect("client");
    assert!(
        roomy
            .list_pods(&ListPodsParams::default())
            .await
            .expect("fits")
            .is_empty()
    );
}
