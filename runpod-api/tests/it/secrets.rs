//! The API key never leaves the `Authorization` header: not in URLs, `Debug`, errors or logs.

use std::fmt::Write as _;

use runpod_api::models::{CreatePodRequest, GpuRequest};
use runpod_api::params::{ListPodsParams, LogParams};
use runpod_api::{Client, PodId, RetryPolicy};
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::{problem, server};

const SECRET: &str = "rpa_SECRET0123456789abcdef";

#[tokio::test]
async fn the_key_appears_only_in_the_authorization_header() {
    let server = server().await;
    for status in [401_u16, 403, 404, 409, 422, 429, 500] {
        Mock::given(method("GET"))
            .and(path(format!("/v2/pods/status{status}")))
            .respond_with(problem(status, "Error", "no"))
            .mount(&server)
            .await;
    }
    Mock::given(method("GET"))
        .and(path("/v2/pods"))
        .respond_with(ResponseTemplate::new(200).set_body_string("not json"))
        .mount(&server)
        .await;
    let client = Client::builder()
        .base_url(format!("{}/v2", server.uri()))
        .api_key(SECRET)
        .retry_policy(RetryPolicy::none())
        .build()
        .expect("client");

    let mut outputs = vec![format!("{client:?}")];
    for status in [401, 403, 404, 409, 422, 429, 500] {
        let error = client
            .get_pod(&PodId::new(format!("status{status}")))
            .await
            .expect_err("error answer");
        outputs.push(format!("{error}"));
        outputs.push(format!("{error:?}"));
    }
    let decode = client
        .list_pods(&ListPodsParams::default())
        .await
        .expect_err("decode");
    outputs.push(format!("{decode} {decode:?}"));
    let logs = client
        .pod_logs(&PodId::new("status404"), &LogParams::default())
        .await
        .expect_err("logs 404");
    outputs.push(format!("{logs} {logs:?}"));
    let invalid = client
        .create_pod(&CreatePodRequest::new("x").gpu(GpuRequest::new("g")))
        .await
        .expect_err("invalid");
    outputs.push(format!("{invalid} {invalid:?}"));
    for output in &outputs {
        assert!(!output.contains(SECRET), "the key leaked into: {output}");
    }

    let requests = server.received_requests().await.unwrap_or_default();
    assert!(!requests.is_empty());
    for request in requests {
        assert!(
            !request.url.as_str().contains(SECRET),
            "key in URL {}",
            request.url
        );
        let auth = request
            .headers
            .get("authorization")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default();
        assert_eq!(auth, format!("Bearer {SECRET}"));
        for (name, value) in &request.headers {
            if name.as_str() != "authorization" {
                let value = value.to_str().unwrap_or_default();
                assert!(!value.contains(SECRET), "key in header {name}");
            }
        }
    }
}

#[tokio::test]
async fn connection_errors_do_not_carry_the_key() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    let client = Client::builder()
        .base_url(format!("http://127.0.0.1:{port}/v2"))
        .api_key(SECRET)
        .retry_policy(RetryPolicy::none())
        .build()
        .expect("client");
    let error = client
        .list_pods(&ListPodsParams::default())
        .await
        .expect_err("refused");
    let mut chain = format!("{error} {error:?}");
    let mut source = std::error::Error::source(&error);
    while let Some(inner) = source {
        write!(chain, " {inner} {inner:?}").expect("writing to a string");
        source = inner.source();
    }
    assert!(!chain.contains(SECRET), "{chain}");
}
