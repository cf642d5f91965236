//! Templates and the public template catalog: exact requests, body snapshots, fixtures, error
//! mapping and the checks made before sending.

use std::collections::BTreeMap;

use runpod_api::models::{
    CreateTemplateRequest, RegistryId, TemplateCategory, TemplateId, TemplateMounts,
    TemplateSource, UpdateTemplateRequest,
};
use runpod_api::{ApiErrorKind, Error, RetryPolicy};
use wiremock::matchers::{any, method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::exact::{assert_sent, json_body, only_request};
use crate::{client, count, fixture, json_response, paused_client, problem, server};

pub(crate) fn full_create_request() -> CreateTemplateRequest {
    CreateTemplateRequest::new("blender-private", "ghcr.io/example/blender:4.2-cuda")
        .args("bash /start.sh")
        .disk(30)
        .env("RPB_POD_ROOT", "/runpod")
        .port("22/tcp")
        .port("6080/http")
        .registry(RegistryId::new("6n2k8v4d"))
        .allowed_cuda_version("12.8")
        .allowed_cuda_version("12.6")
        .category(TemplateCategory::Nvidia)
        .mounts(TemplateMounts::persistent(50, "/runpod"))
        .public(false)
        .serverless(false)
        .start_jupyter(false)
        .start_ssh(true)
}

pub(crate) fn full_update_request() -> UpdateTemplateRequest {
    UpdateTemplateRequest::new()
        .name("Renamed PyTorch Template")
        .image("runpod/pytorch:1.0.2-cu1281-torch280-ubuntu2404")
        .args("")
        .disk(60)
        .env(BTreeMap::from([("A".to_owned(), "1".to_owned())]))
        .ports(["8888/http", "22/tcp"])
        .registry(RegistryId::new("6n2k8v4d"))
        .allowed_cuda_versions(Vec::<String>::new())
        .category(TemplateCategory::Amd)
        .mounts(TemplateMounts::persistent(20, "/workspace"))
        .public(true)
        .serverless(false)
        .start_jupyter(true)
        .start_ssh(false)
}

#[tokio::test]
async fn list_templates_gets_the_collection_and_parses_every_kind() {
    let server = server().await;
    Mock::given(method("GET"))
        .and(path("/v2/templates"))
        .respond_with(json_response(200, fixture("templates_list.json")))
        .expect(1)
        .mount(&server)
        .await;
    let templates = client(&server).list_templates().await.expect("templates");
    assert_sent(&only_request(&server).await, "GET", "/v2/templates", None);
    assert_eq!(templates.len(), 3);
    let spec_example = &templates[0];
    assert_eq!(spec_example.id, TemplateId::new("9x4m2p7v"));
    assert_eq!(spec_example.disk, Some(50));
    assert_eq!(
        spec_example
            .mounts
            .persistent
            .as_ref()
            .map(|mount| (mount.size, mount.path.as_str())),
        Some((20, "/workspace"))
    );
    assert_eq!(spec_example.registry, None);
    assert!(spec_example.start_ssh && !spec_example.start_jupyter);
    let private = &templates[1];
    assert_eq!(private.registry, Some(RegistryId::new("6n2k8v4d")));
    assert_eq!(private.allowed_cuda_versions, ["12.8", "12.6"]);
    assert_eq!(private.mounts, TemplateMounts::default());
    let worker = &templates[2];
    assert!(worker.serverless);
    assert_eq!(worker.category, TemplateCategory::Cpu);
}

#[tokio::test]
async fn template_fields_parse_leniently() {
    let mut value = crate::fixture_json("template.json");
    value["disk"] = serde_json::json!(50.0);
    value["env"] = serde_json::Value::Null;
    value["mounts"] = serde_json::Value::Null;
    value["category"] = serde_json::json!("TPU");
    value["laterField"] = serde_json::json!(true);
    let template: runpod_api::models::Template =
        serde_json::from_value(value).expect("lenient parse");
    assert_eq!(template.disk, Some(50));
    assert!(template.env.is_empty());
    assert_eq!(template.mounts, TemplateMounts::default());
    assert_eq!(template.category, TemplateCategory::Unknown("TPU".into()));
}

#[tokio::test]
async fn create_template_posts_every_field() {
    let server = server().await;
    Mock::given(method("POST"))
        .and(path("/v2/templates"))
        .respond_with(json_response(201, fixture("template.json")))
        .expect(1)
        .mount(&server)
        .await;
    let template = client(&server)
        .create_template(&full_create_request())
        .await
        .expect("create");
    assert_eq!(template.id.as_str(), "9x4m2p7v");
    let request = only_request(&server).await;
    assert_sent(&request, "POST", "/v2/templates", None);
    insta::assert_json_snapshot!("create_template_full_body", json_body(&request));
}

#[tokio::test]
async fn a_minimal_template_sends_only_name_and_image() {
    let server = server().await;
    Mock::given(method("POST"))
        .and(path("/v2/templates"))
        .respond_with(json_response(201, fixture("template.json")))
        .mount(&server)
        .await;
    client(&server)
        .create_template(&CreateTemplateRequest::new("t", "img"))
        .await
        .expect("create");
    let request = only_request(&server).await;
    assert_eq!(
        json_body(&request),
        serde_json::json!({"name": "t", "image": "img"})
    );
}

#[tokio::test]
async fn get_template_and_its_not_found() {
    let server = server().await;
    Mock::given(method("GET"))
        .and(path("/v2/templates/9x4m2p7v"))
        .respond_with(json_response(200, fixture("template.json")))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v2/templates/gone1"))
        .respond_with(problem(404, "Not Found", "template not found"))
        .expect(1)
        .mount(&server)
        .await;
    let client = client(&server);
    let template = client
        .get_template(&TemplateId::new("9x4m2p7v"))
        .await
        .expect("get");
    assert_eq!(template.name, "PyTorch GPU Template");
    let error = client
        .get_template(&TemplateId::new("gone1"))
        .await
        .expect_err("404");
    assert!(error.is_not_found(), "{error:?}");
    assert!(
        error.to_string().starts_with("get template gone1 failed"),
        "{error}"
    );
}

#[tokio::test]
async fn update_template_patches_the_given_fields() {
    let server = server().await;
    Mock::given(method("PATCH"))
        .and(path("/v2/templates/9x4m2p7v"))
        .respond_with(json_response(200, fixture("template.json")))
        .expect(1)
        .mount(&server)
        .await;
    client(&server)
        .update_template(&TemplateId::new("9x4m2p7v"), &full_update_request())
        .await
        .expect("update");
    let request = only_request(&server).await;
    assert_sent(&request, "PATCH", "/v2/templates/9x4m2p7v", None);
    insta::assert_json_snapshot!("update_template_body", json_body(&request));
}

#[tokio::test]
async fn delete_template_accepts_204_and_maps_in_use_to_bad_request() {
    let server = server().await;
    Mock::given(method("DELETE"))
        .and(path("/v2/templates/9x4m2p7v"))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path("/v2/templates/inuse1"))
        .respond_with(problem(
            400,
            "Bad Request",
            "template is in use by pod 7h9k2m4n6p",
        ))
        .expect(1)
        .mount(&server)
        .await;
    let client = client(&server);
    client
        .delete_template(&TemplateId::new("9x4m2p7v"))
        .await
        .expect("delete");
    let requests = server.received_requests().await.unwrap_or_default();
    assert_sent(&requests[0], "DELETE", "/v2/templates/9x4m2p7v", None);
    assert!(requests[0].body.is_empty());
    let error = client
        .delete_template(&TemplateId::new("inuse1"))
        .await
        .expect_err("in use");
    assert_eq!(error.kind(), Some(&ApiErrorKind::BadRequest));
    insta::assert_snapshot!("error_delete_template_in_use", error.to_string());
}

#[tokio::test]
async fn public_templates_name_their_source() {
    let server = server().await;
    Mock::given(method("GET"))
        .and(path("/v2/catalog/templates"))
        .respond_with(json_response(200, fixture("public_templates.json")))
        .mount(&server)
        .await;
    let client = client(&server);
    let templates = client
        .list_public_templates(&TemplateSource::Verified)
        .await
        .expect("catalog");
    assert!(templates[0].public);
    assert!(templates[0].start_jupyter);
    assert_sent(
        &only_request(&server).await,
        "GET",
        "/v2/catalog/templates",
        Some("source=verified"),
    );
    client
        .list_public_templates(&TemplateSource::default())
        .await
        .expect("official");
    let requests = server.received_requests().await.unwrap_or_default();
    assert_eq!(requests[1].url.query(), Some("source=official"));
}

#[tokio::test]
async fn invalid_template_requests_fail_before_sending() {
    let server = server().await;
    let client = client(&server);
    let id = TemplateId::new("9x4m2p7v");
    let mut messages = Vec::new();
    let creates = [
        CreateTemplateRequest::new("", "img"),
        CreateTemplateRequest::new("t", " "),
        CreateTemplateRequest::new("t", "img").disk(0),
        CreateTemplateRequest::new("t", "img").allowed_cuda_version("12"),
        CreateTemplateRequest::new("t", "img").category(TemplateCategory::from("TPU")),
        CreateTemplateRequest::new("t", "img").mounts(TemplateMounts::persistent(5, "/w")),
    ];
    for request in &creates {
        messages.push(client.create_template(request).await.expect_err("invalid"));
    }
    let updates = [
        UpdateTemplateRequest::new(),
        UpdateTemplateRequest::new().name(""),
        UpdateTemplateRequest::new().allowed_cuda_versions(["12.8.1"]),
    ];
    for request in &updates {
        messages.push(
            client
                .update_template(&id, request)
                .await
                .expect_err("invalid"),
        );
    }
    messages.push(
        client
            .get_template(&TemplateId::new(""))
            .await
            .expect_err("empty id"),
    );
    messages.push(
        client
            .delete_template(&TemplateId::new(" "))
            .await
            .expect_err("blank id"),
    );
    messages.push(
        client
            .list_public_templates(&TemplateSource::from("trending"))
            .await
            .expect_err("unknown source"),
    );
    for error in &messages {
        assert!(matches!(error, Error::InvalidRequest { .. }), "{error:?}");
    }
    let text: Vec<String> = messages.iter().map(ToString::to_string).collect();
    insta::assert_snapshot!("invalid_template_requests", text.join("\n"));
    assert!(
        server
            .received_requests()
            .await
            .unwrap_or_default()
            .is_empty()
    );
}

#[tokio::test(start_paused = true)]
async fn updates_retry_like_reads_but_creates_do_not() {
    let server = server().await;
    Mock::given(any())
        .respond_with(problem(503, "Service Unavailable", "upstream busy"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path("/v2/templates/9x4m2p7v"))
        .respond_with(json_response(200, fixture("template.json")))
        .mount(&server)
        .await;
    let policy = RetryPolicy::default().with_max_attempts(3);
    let client = paused_client(&server, policy);
    let update = UpdateTemplateRequest::new().name("again");
    client
        .update_template(&TemplateId::new("9x4m2p7v"), &update)
        .await
        .expect("retried after the 503");
    assert_eq!(count(&server, "PATCH", "/v2/templates/9x4m2p7v").await, 2);

    Mock::given(method("POST"))
        .and(path("/v2/templates"))
        .respond_with(problem(503, "Service Unavailable", "upstream busy"))
        .mount(&server)
        .await;
    let error = client
        .create_template(&CreateTemplateRequest::new("t", "img"))
        .await
        .expect_err("not retried");
    assert!(error.is_server_error());
    assert_eq!(count(&server, "POST", "/v2/templates").await, 1);
}
