//! Integration tests of `runpod-api` against wiremock (the exact HTTP contract) and, with the
//! `contract` feature, against RunPod's official OpenAPI document.

#![allow(
    clippy::disallowed_methods,
    reason = "#[tokio::test] builds its own runtime and blocks on it"
)]

mod catalog;
#[cfg(feature = "contract")]
mod contract;
#[cfg(feature = "contract")]
mod contract_resources;
#[cfg(feature = "contract")]
mod coverage;
mod cpus;
mod errors;
mod exact;
mod pods;
mod registries;
mod retries;
mod secrets;
mod sim;
mod sim_volumes;
mod templates;
mod volumes;
mod wait;

mod billing;
mod clusters;
mod serverless;

use runpod_api::{Client, RetryPolicy};
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, ResponseTemplate};

pub(crate) const KEY: &str = "test-key-0123456789";

/// Loads a JSON fixture from `tests/it/fixtures`.
pub(crate) fn fixture(name: &str) -> String {
    let path = format!("{}/tests/it/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("fixture {path}: {error}"))
}

pub(crate) fn fixture_json(name: &str) -> serde_json::Value {
    serde_json::from_str(&fixture(name)).expect("fixtures are JSON")
}

/// A mock server whose unmatched routes answer 500, so a wrong path or method fails loudly.
pub(crate) async fn server() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(500).set_body_string("unmatched route in test"))
        .with_priority(u8::MAX)
        .mount(&server)
        .await;
    server
}

/// A client for `server` that does not retry and has no jitter.
pub(crate) fn client(server: &MockServer) -> Client {
    client_with(server, RetryPolicy::none())
}

pub(crate) fn client_with(server: &MockServer, retry: RetryPolicy) -> Client {
    Client::builder()
        .base_url(format!("{}/v2", server.uri()))
        .api_key(KEY)
        .retry_policy(retry.with_jitter(false))
        .build()
        .expect("test client builds")
}

/// A client without timeouts, for tests under paused tokio time.
pub(crate) fn paused_client(server: &MockServer, retry: RetryPolicy) -> Client {
    Client::builder()
        .base_url(format!("{}/v2", server.uri()))
        .api_key(KEY)
        .retry_policy(retry.with_jitter(false))
        .no_timeouts()
        .build()
        .expect("test client builds")
}

pub(crate) fn json_response(status: u16, body: String) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_raw(body, "application/json")
}

pub(crate) fn problem(status: u16, title: &str, detail: &str) -> ResponseTemplate {
    let body = serde_json::json!({"title": title, "status": status, "detail": detail});
    ResponseTemplate::new(status).set_body_raw(body.to_string(), "application/problem+json")
}

/// The JSON bodies of the requests `server` received for `method` `path`.
pub(crate) async fn bodies(
    server: &MockServer,
    method: &str,
    path: &str,
) -> Vec<serde_json::Value> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|request| request.method.as_str() == method && request.url.path() == path)
        .map(|request| serde_json::from_slice(&request.body).expect("request bodies are JSON"))
        .collect()
}

/// How many requests `server` received for `method` `path`.
pub(crate) async fn count(server: &MockServer, method: &str, path: &str) -> usize {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|request| request.method.as_str() == method && request.url.path() == path)
        .count()
}
