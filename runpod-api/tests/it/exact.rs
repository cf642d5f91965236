//! Exact-request assertions for the resource tests: one request, with exactly this method,
//! path, query, bearer key and JSON body.

use serde_json::Value;
use wiremock::{MockServer, Request};

use crate::KEY;

/// The only request `server` received (fails when there were none or several).
pub(crate) async fn only_request(server: &MockServer) -> Request {
    let mut requests = server.received_requests().await.unwrap_or_default();
    let seen: Vec<String> = requests
        .iter()
        .map(|request| format!("{} {}", request.method, request.url))
        .collect();
    assert_eq!(requests.len(), 1, "expected exactly one request: {seen:?}");
    requests.remove(0)
}

/// Asserts the method, path and whole query string (`None`: no query at all), and that the
/// key went in the `Authorization` header.
pub(crate) fn assert_sent(request: &Request, method: &str, path: &str, query: Option<&str>) {
    assert_eq!(request.method.as_str(), method, "method of {}", request.url);
    assert_eq!(request.url.path(), path);
    assert_eq!(request.url.query(), query, "query of {}", request.url);
    let auth = request
        .headers
        .get("authorization")
        .and_then(|value| value.to_str().ok());
    assert_eq!(auth, Some(format!("Bearer {KEY}").as_str()));
}

/// The request's JSON body; `Value::Null` for an empty body (with no `content-type` sent).
pub(crate) fn json_body(request: &Request) -> Value {
    if request.body.is_empty() {
        assert!(
            request.headers.get("content-type").is_none(),
            "an empty body with a content type"
        );
        return Value::Null;
    }
    let content_type = request
        .headers
        .get("content-type")
        .and_then(|value| value.to_str().ok());
    assert_eq!(content_type, Some("application/json"));
    serde_json::from_slice(&request.body).expect("request bodies are JSON")
}
