//! Container registry credentials and ECR delegations: exact requests, fixtures, error mapping,
//! the checks made before sending, and the password kept out of everything but the body.

use std::fmt::Write as _;

use runpod_api::models::{
    CreateEcrDelegationRequest, CreateRegistryRequest, DelegationId, RegistryId,
};
use runpod_api::{ApiErrorKind, Client, Error, RetryPolicy};
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::exact::{assert_sent, json_body, only_request};
use crate::{client, fixture, json_response, problem, server};

const PASSWORD: &str = "correct-horse-battery-staple-7731";

#[tokio::test]
async fn list_registries_returns_ids_and_names() {
    let server = server().await;
    Mock::given(method("GET"))
        .and(path("/v2/registries"))
        .respond_with(json_response(200, fixture("registries_list.json")))
        .expect(1)
        .mount(&server)
        .await;
    let registries = client(&server).list_registries().await.expect("list");
    assert_sent(&only_request(&server).await, "GET", "/v2/registries", None);
    assert_eq!(registries.len(), 2);
    assert_eq!(registries[0].id, RegistryId::new("6n2k8v4d"));
    assert_eq!(registries[1].name, "ghcr");
}

#[tokio::test]
async fn create_registry_sends_the_credentials_in_the_body_only() {
    let server = server().await;
    Mock::given(method("POST"))
        .and(path("/v2/registries"))
        .respond_with(json_response(201, fixture("registry.json")))
        .expect(1)
        .mount(&server)
        .await;
    let request = CreateRegistryRequest::new("dockerhub-private", "runpod-user", PASSWORD);
    let registry = client(&server)
        .create_registry(&request)
        .await
        .expect("create");
    assert_eq!(registry.id.as_str(), "6n2k8v4d");
    let sent = only_request(&server).await;
    assert_sent(&sent, "POST", "/v2/registries", None);
    insta::assert_json_snapshot!("create_registry_body", json_body(&sent));
}

#[tokio::test]
async fn get_and_delete_registry_with_their_errors() {
    let server = server().await;
    Mock::given(method("GET"))
        .and(path("/v2/registries/6n2k8v4d"))
        .respond_with(json_response(200, fixture("registry.json")))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v2/registries/gone1"))
        .respond_with(problem(404, "Not Found", "registry not found"))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path("/v2/registries/6n2k8v4d"))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path("/v2/registries/inuse1"))
        .respond_with(problem(
            400,
            "Bad Request",
            "registry credential is in use by pod 7h9k2m4n6p",
        ))
        .expect(1)
        .mount(&server)
        .await;
    let client = client(&server);
    let registry = client
        .get_registry(&RegistryId::new("6n2k8v4d"))
        .await
        .expect("get");
    assert_eq!(registry.name, "dockerhub-private");
    let missing = client
        .get_registry(&RegistryId::new("gone1"))
        .await
        .expect_err("404");
    assert!(missing.is_not_found());
    client
        .delete_registry(&RegistryId::new("6n2k8v4d"))
        .await
        .expect("delete");
    let in_use = client
        .delete_registry(&RegistryId::new("inuse1"))
        .await
        .expect_err("in use");
    assert_eq!(in_use.kind(), Some(&ApiErrorKind::BadRequest));
    let requests = server.received_requests().await.unwrap_or_default();
    assert_sent(&requests[0], "GET", "/v2/registries/6n2k8v4d", None);
    assert_sent(&requests[2], "DELETE", "/v2/registries/6n2k8v4d", None);
    assert!(requests[2].body.is_empty());
}

#[tokio::test]
async fn ecr_delegations_list_create_and_revoke() {
    let server = server().await;
    Mock::given(method("GET"))
        .and(path("/v2/registries/delegations"))
        .respond_with(json_response(200, fixture("ecr_delegations_list.json")))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v2/registries/delegations"))
        .respond_with(json_response(201, fixture("ecr_delegation.json")))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path("/v2/registries/delegations/deleg_abc123"))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path("/v2/registries/delegations/gone1"))
        .respond_with(problem(404, "Not Found", "delegation not found"))
        .expect(1)
        .mount(&server)
        .await;
    let client = client(&server);
    let delegations = client.list_ecr_delegations().await.expect("list");
    assert_eq!(delegations.len(), 2);
    assert_eq!(
        delegations[0].docker_registry_uri.as_deref(),
        Some("123456789.dkr.ecr.us-east-2.amazonaws.com")
    );
    assert_eq!(delegations[1].name, None);
    assert_eq!(delegations[1].docker_registry_uri, None);
    let request = CreateEcrDelegationRequest::new(
        "arn:aws:ecr:us-east-2:418399314813:repository/runpod/deployment",
    )
    .name("my-delegation");
    let created = client
        .create_ecr_delegation(&request)
        .await
        .expect("create");
    assert_eq!(created.id, DelegationId::new("deleg_abc123"));
    client
        .revoke_ecr_delegation(&DelegationId::new("deleg_abc123"))
        .await
        .expect("revoke");
    let missing = client
        .revoke_ecr_delegation(&DelegationId::new("gone1"))
        .await
        .expect_err("404");
    assert!(missing.is_not_found());

    let requests = server.received_requests().await.unwrap_or_default();
    assert_sent(&requests[0], "GET", "/v2/registries/delegations", None);
    assert_sent(&requests[1], "POST", "/v2/registries/delegations", None);
    insta::assert_json_snapshot!("create_ecr_delegation_body", json_body(&requests[1]));
    assert_sent(
        &requests[2],
        "DELETE",
        "/v2/registries/delegations/deleg_abc123",
        None,
    );
}

#[tokio::test]
async fn invalid_registry_requests_fail_before_sending() {
    let server = server().await;
    let client = client(&server);
    let mut errors = Vec::new();
    for request in [
        CreateRegistryRequest::new("", "user", PASSWORD),
        CreateRegistryRequest::new("hub", "", PASSWORD),
        CreateRegistryRequest::new("hub", "user", ""),
    ] {
        errors.push(client.create_registry(&request).await.expect_err("invalid"));
    }
    errors.push(
        client
            .get_registry(&RegistryId::new("delegations"))
            .await
            .expect_err("collides with the delegation list"),
    );
    errors.push(
        client
            .delete_registry(&RegistryId::new(""))
            .await
            .expect_err("empty id"),
    );
    errors.push(
        client
            .create_ecr_delegation(&CreateEcrDelegationRequest::new("runpod/deployment"))
            .await
            .expect_err("not an arn"),
    );
    errors.push(
        client
            .revoke_ecr_delegation(&DelegationId::new(""))
            .await
            .expect_err("empty id"),
    );
    for error in &errors {
        assert!(matches!(error, Error::InvalidRequest { .. }), "{error:?}");
    }
    let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
    insta::assert_snapshot!("invalid_registry_requests", text.join("\n"));
    assert!(!text.join("\n").contains(PASSWORD));
    assert!(
        server
            .received_requests()
            .await
            .unwrap_or_default()
            .is_empty()
    );
}

/// The registry password reaches the server in the body and nowhere else: not in the URL, a
/// header, `Debug` output, or any error (API answers, undecodable answers, transport failures).
#[tokio::test]
async fn the_registry_password_appears_only_in_the_request_body() {
    let server = server().await;
    for (name, status) in [
        ("status400", 400_u16),
        ("status422", 422),
        ("status500", 500),
    ] {
        Mock::given(method("POST"))
            .and(path("/v2/registries"))
            .and(wiremock::matchers::body_partial_json(
                serde_json::json!({ "name": name }),
            ))
            .respond_with(problem(status, "Error", "rejected"))
            .mount(&server)
            .await;
    }
    Mock::given(method("POST"))
        .and(path("/v2/registries"))
        .and(wiremock::matchers::body_partial_json(
            serde_json::json!({ "name": "garbage" }),
        ))
        .respond_with(ResponseTemplate::new(201).set_body_string("not json"))
        .mount(&server)
        .await;
    let client = client(&server);
    let mut outputs = Vec::new();
    for name in ["status400", "status422", "status500", "garbage"] {
        let request = CreateRegistryRequest::new(name, "user", PASSWORD);
        outputs.push(format!("{request:?}"));
        let error = client.create_registry(&request).await.expect_err("fails");
        outputs.push(error_chain(&error));
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    let offline = Client::builder()
        .base_url(format!("http://127.0.0.1:{port}/v2"))
        .api_key(crate::KEY)
        .retry_policy(RetryPolicy::none())
        .build()
        .expect("client");
    let refused = offline
        .create_registry(&CreateRegistryRequest::new("offline", "user", PASSWORD))
        .await
        .expect_err("refused");
    outputs.push(error_chain(&refused));
    for output in &outputs {
        assert!(
            !output.contains(PASSWORD),
            "the password leaked into: {output}"
        );
    }

    let requests = server.received_requests().await.unwrap_or_default();
    assert_eq!(requests.len(), 4);
    for request in requests {
        assert!(!request.url.as_str().contains(PASSWORD), "{}", request.url);
        for (name, value) in &request.headers {
            let value = value.to_str().unwrap_or_default();
            assert!(!value.contains(PASSWORD), "password in header {name}");
        }
        assert_eq!(json_body(&request)["password"], PASSWORD);
    }
}

fn error_chain(error: &Error) -> String {
    let mut chain = format!("{error} {error:?}");
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        write!(chain, " {inner} {inner:?}").expect("writing to a string");
        source = inner.source();
    }
    chain
}
