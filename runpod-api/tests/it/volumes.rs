//! Network volumes: exact requests, body snapshots, fixtures, error mapping and the checks made
//! before sending.

use runpod_api::models::{
    CreateNetworkVolumeRequest, NetworkVolumeId, UpdateNetworkVolumeRequest, VolumeType,
};
use runpod_api::{ApiErrorKind, Error};
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::exact::{assert_sent, json_body, only_request};
use crate::{client, fixture, json_response, problem, server};

#[tokio::test]
async fn list_network_volumes_parses_both_tiers() {
    let server = server().await;
    Mock::given(method("GET"))
        .and(path("/v2/network-volumes"))
        .respond_with(json_response(200, fixture("network_volumes_list.json")))
        .expect(1)
        .mount(&server)
        .await;
    let volumes = client(&server)
        .list_network_volumes()
        .await
        .expect("volumes");
    assert_sent(
        &only_request(&server).await,
        "GET",
        "/v2/network-volumes",
        None,
    );
    assert_eq!(volumes.len(), 2);
    assert_eq!(volumes[0].id, NetworkVolumeId::new("2q9m7x4c"));
    assert_eq!(volumes[0].volume_type, VolumeType::HighPerformance);
    assert_eq!(
        (volumes[1].size, volumes[1].data_center.as_str()),
        (50, "EU-RO-1")
    );
    assert_eq!(volumes[1].volume_type, VolumeType::Standard);
}

#[tokio::test]
async fn create_network_volume_posts_name_size_data_center_and_type() {
    let server = server().await;
    Mock::given(method("POST"))
        .and(path("/v2/network-volumes"))
        .respond_with(json_response(201, fixture("network_volume.json")))
        .expect(1)
        .mount(&server)
        .await;
    let request = CreateNetworkVolumeRequest::new("training-dataset", 100, "US-KS-2")
        .volume_type(VolumeType::HighPerformance);
    let volume = client(&server)
        .create_network_volume(&request)
        .await
        .expect("create");
    assert_eq!(volume.size, 100);
    let sent = only_request(&server).await;
    assert_sent(&sent, "POST", "/v2/network-volumes", None);
    insta::assert_json_snapshot!("create_network_volume_body", json_body(&sent));
}

#[tokio::test]
async fn create_without_a_type_leaves_it_to_the_data_center() {
    let server = server().await;
    Mock::given(method("POST"))
        .and(path("/v2/network-volumes"))
        .respond_with(json_response(201, fixture("network_volume.json")))
        .mount(&server)
        .await;
    client(&server)
        .create_network_volume(&CreateNetworkVolumeRequest::new("v", 10, "EU-RO-1"))
        .await
        .expect("create");
    assert_eq!(
        json_body(&only_request(&server).await),
        serde_json::json!({"name": "v", "size": 10, "dataCenter": "EU-RO-1"})
    );
}

#[tokio::test]
async fn get_network_volume_and_its_not_found() {
    let server = server().await;
    Mock::given(method("GET"))
        .and(path("/v2/network-volumes/2q9m7x4c"))
        .respond_with(json_response(200, fixture("network_volume.json")))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v2/network-volumes/gone1"))
        .respond_with(problem(404, "Not Found", "network volume not found"))
        .expect(1)
        .mount(&server)
        .await;
    let client = client(&server);
    let volume = client
        .get_network_volume(&NetworkVolumeId::new("2q9m7x4c"))
        .await
        .expect("get");
    assert_eq!(volume.name, "training-dataset");
    let error = client
        .get_network_volume(&NetworkVolumeId::new("gone1"))
        .await
        .expect_err("404");
    assert!(error.is_not_found(), "{error:?}");
    assert!(
        error
            .to_string()
            .starts_with("get network volume gone1 failed"),
        "{error}"
    );
}

#[tokio::test]
async fn update_network_volume_patches_and_maps_a_shrink_to_bad_request() {
    let server = server().await;
    Mock::given(method("PATCH"))
        .and(path("/v2/network-volumes/2q9m7x4c"))
        .and(wiremock::matchers::body_json(
            serde_json::json!({"name": "renamed", "size": 200}),
        ))
        .respond_with(json_response(200, fixture("network_volume.json")))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path("/v2/network-volumes/2q9m7x4c"))
        .and(wiremock::matchers::body_json(
            serde_json::json!({"size": 20}),
        ))
        .respond_with(problem(
            400,
            "Bad Request",
            "size cannot be decreased (current 100 GB)",
        ))
        .expect(1)
        .mount(&server)
        .await;
    let client = client(&server);
    let id = NetworkVolumeId::new("2q9m7x4c");
    let update = UpdateNetworkVolumeRequest::new().name("renamed").size(200);
    client
        .update_network_volume(&id, &update)
        .await
        .expect("update");
    let requests = server.received_requests().await.unwrap_or_default();
    assert_sent(&requests[0], "PATCH", "/v2/network-volumes/2q9m7x4c", None);
    insta::assert_json_snapshot!("update_network_volume_body", json_body(&requests[0]));
    let error = client
        .update_network_volume(&id, &UpdateNetworkVolumeRequest::new().size(20))
        .await
        .expect_err("shrink");
    assert_eq!(error.kind(), Some(&ApiErrorKind::BadRequest));
    insta::assert_snapshot!("error_shrink_network_volume", error.to_string());
}

#[tokio::test]
async fn delete_network_volume_accepts_204() {
    let server = server().await;
    Mock::given(method("DELETE"))
        .and(path("/v2/network-volumes/2q9m7x4c"))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    client(&server)
        .delete_network_volume(&NetworkVolumeId::new("2q9m7x4c"))
        .await
        .expect("delete");
    let request = only_request(&server).await;
    assert_sent(&request, "DELETE", "/v2/network-volumes/2q9m7x4c", None);
    assert_eq!(json_body(&request), serde_json::Value::Null);
}

#[tokio::test]
async fn invalid_network_volume_requests_fail_before_sending() {
    let server = server().await;
    let client = client(&server);
    let id = NetworkVolumeId::new("2q9m7x4c");
    let mut errors = Vec::new();
    for request in [
        CreateNetworkVolumeRequest::new("", 50, "EU-RO-1"),
        CreateNetworkVolumeRequest::new("v", 50, ""),
        CreateNetworkVolumeRequest::new("v", 9, "EU-RO-1"),
        CreateNetworkVolumeRequest::new("v", 4097, "EU-RO-1"),
        CreateNetworkVolumeRequest::new("v", 50, "EU-RO-1")
            .volume_type(VolumeType::from("ARCHIVE")),
    ] {
        errors.push(
            client
                .create_network_volume(&request)
                .await
                .expect_err("invalid"),
        );
    }
    for request in [
        UpdateNetworkVolumeRequest::new(),
        UpdateNetworkVolumeRequest::new().name(" "),
        UpdateNetworkVolumeRequest::new().size(5000),
    ] {
        errors.push(
            client
                .update_network_volume(&id, &request)
                .await
                .expect_err("invalid"),
        );
    }
    errors.push(
        client
            .delete_network_volume(&NetworkVolumeId::new(""))
            .await
            .expect_err("empty id"),
    );
    for error in &errors {
        assert!(matches!(error, Error::InvalidRequest { .. }), "{error:?}");
    }
    let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
    insta::assert_snapshot!("invalid_network_volume_requests", text.join("\n"));
    assert!(
        server
            .received_requests()
            .await
            .unwrap_or_default()
            .is_empty()
    );
}
