//! Cluster operations: method, path, auth header, request body snapshots, response parsing, and
//! the checks made before sending.

use runpod_api::models::{
    ClusterCompute, ClusterId, ClusterType, CreateClusterRequest, Mounts, UpdateClusterRequest,
};
use runpod_api::{Error, PodStatus};
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::{KEY, bodies, client, fixture, json_response, problem, server};

fn bearer() -> String {
    format!("Bearer {KEY}")
}

pub(crate) fn full_create_request() -> CreateClusterRequest {
    CreateClusterRequest::new(
        "my-training-cluster",
        ClusterType::Training,
        ClusterCompute::new("NVIDIA H100 80GB HBM3", 8, 4),
    )
    .image("runpod/pytorch:1.0.2-cu1281-torch280-ubuntu2404")
    .args("sleep infinity")
    .disk(50)
    .port("22/tcp")
    .port("8888/http")
    .env("NCCL_DEBUG", "INFO")
    .data_center("US-TX-3")
    .mounts(Mounts::network("vol_xyz", "/workspace"))
    .start_ssh(true)
    .start_jupyter(false)
}

#[tokio::test]
async fn list_clusters_parses_placed_and_unplaced_clusters() {
    let server = server().await;
    Mock::given(method("GET"))
        .and(path("/v2/clusters"))
        .and(header("authorization", bearer().as_str()))
        .respond_with(json_response(200, fixture("clusters_list.json")))
        .expect(1)
        .mount(&server)
        .await;

    let clusters = client(&server)
        .list_clusters()
        .await
        .expect("list clusters");
    assert_eq!(clusters.len(), 2);
    let placed = &clusters[0];
    assert_eq!(placed.kind, ClusterType::Training);
    assert_eq!(placed.total_gpus(), 32);
    assert_eq!(placed.pods.count(&PodStatus::Running), 3);
    assert_eq!(placed.pods.count(&PodStatus::Exited), 0);
    let primary = placed.primary.as_ref().expect("primary");
    assert_eq!(primary.ssh_host_port(), Some(("1.2.3.4", 22001)));
    assert_eq!(
        placed.network.as_ref().map(|network| network.vxlan_port),
        Some(Some(4789))
    );
    let unplaced = &clusters[1];
    assert_eq!(unplaced.kind, ClusterType::Ray);
    assert!(unplaced.primary.is_none() && unplaced.network.is_none());
    assert!(unplaced.data_center_id.is_none());
    assert_eq!(unplaced.pods.total, 0);
}

#[tokio::test]
async fn get_cluster_and_its_pods() {
    let server = server().await;
    Mock::given(method("GET"))
        .and(path("/v2/clusters/cluster_abc123"))
        .and(header("authorization", bearer().as_str()))
        .respond_with(json_response(200, fixture("cluster.json")))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v2/clusters/cluster_abc123/pods"))
        .and(header("authorization", bearer().as_str()))
        .respond_with(json_response(200, fixture("cluster_pods.json")))
        .expect(1)
        .mount(&server)
        .await;

    let client = client(&server);
    let id = ClusterId::new("cluster_abc123");
    let cluster = client.get_cluster(&id).await.expect("get cluster");
    assert_eq!(cluster.id, id);
    assert_eq!(cluster.template.as_deref(), Some("tpl_abc"));
    let pods = client.list_cluster_pods(&id).await.expect("cluster pods");
    assert_eq!(pods.len(), 2);
    let ranks: Vec<_> = pods
        .iter()
        .map(|pod| pod.cluster.as_ref().and_then(|cluster| cluster.rank))
        .collect();
    assert_eq!(ranks, [Some(0), Some(1)]);
    assert!(pods[0].ssh_endpoint().is_some());
    assert_eq!(pods[1].status, PodStatus::Provisioning);
}

#[tokio::test]
async fn create_cluster_sends_every_field() {
    let server = server().await;
    Mock::given(method("POST"))
        .and(path("/v2/clusters"))
        .and(header("authorization", bearer().as_str()))
        .and(header("content-type", "application/json"))
        .respond_with(json_response(201, fixture("cluster_provisioning.json")))
        .expect(1)
        .mount(&server)
        .await;

    let cluster = client(&server)
        .create_cluster(&full_create_request())
        .await
        .expect("create cluster");
    assert_eq!(cluster.id.as_str(), "cluster_def456");
    let sent = bodies(&server, "POST", "/v2/clusters").await;
    insta::assert_json_snapshot!("create_cluster_full_body", sent[0]);
}

#[tokio::test]
async fn create_cluster_minimal_body() {
    let server = server().await;
    Mock::given(method("POST"))
        .and(path("/v2/clusters"))
        .and(body_json(serde_json::json!({
            "name": "ray",
            "type": "RAY",
            "compute": {"gpuTypeId": "NVIDIA A100 80GB PCIe", "gpuCountPerPod": 2, "podCount": 2},
        })))
        .respond_with(json_response(201, fixture("cluster_provisioning.json")))
        .expect(1)
        .mount(&server)
        .await;
    let request = CreateClusterRequest::new(
        "ray",
        ClusterType::Ray,
        ClusterCompute::new("NVIDIA A100 80GB PCIe", 2, 2),
    );
    client(&server)
        .create_cluster(&request)
        .await
        .expect("create cluster");
}

#[tokio::test]
async fn invalid_cluster_requests_fail_before_sending() {
    let server = server().await;
    let client = client(&server);
    let shape = |gpus, pods| ClusterCompute::new("NVIDIA H100 80GB HBM3", gpus, pods);
    let creates = [
        CreateClusterRequest::new("", ClusterType::Training, shape(8, 2)),
        CreateClusterRequest::new("one-node", ClusterType::Training, shape(8, 1)),
        CreateClusterRequest::new("too-big", ClusterType::Training, shape(8, 251)),
        CreateClusterRequest::new("no-gpus", ClusterType::Slurm, shape(0, 2)),
        CreateClusterRequest::new(
            "blank-gpu-type",
            ClusterType::Training,
            ClusterCompute::new(" ", 8, 2),
        ),
        CreateClusterRequest::new("new-kind", ClusterType::from("QUANTUM"), shape(8, 2)),
        CreateClusterRequest::new("tiny-volume", ClusterType::Training, shape(8, 2))
            .mounts(Mounts::persistent(5, "/workspace")),
        CreateClusterRequest::new("no-disk", ClusterType::Application, shape(1, 2)).disk(0),
    ];
    let mut messages = Vec::new();
    for request in &creates {
        let error = client.create_cluster(request).await.expect_err("invalid");
        assert!(matches!(error, Error::InvalidRequest { .. }), "{error:?}");
        messages.push(error.to_string());
    }
    let id = ClusterId::new("cluster_abc123");
    for update in [
        UpdateClusterRequest::new(),
        UpdateClusterRequest::new().name("  "),
    ] {
        let error = client
            .update_cluster(&id, &update)
            .await
            .expect_err("invalid");
        messages.push(error.to_string());
    }
    insta::assert_snapshot!("invalid_cluster_requests", messages.join("\n"));
    assert!(
        server
            .received_requests()
            .await
            .unwrap_or_default()
            .is_empty()
    );
}

#[tokio::test]
async fn update_cluster_renames() {
    let server = server().await;
    Mock::given(method("PATCH"))
        .and(path("/v2/clusters/cluster_abc123"))
        .and(header("authorization", bearer().as_str()))
        .and(body_json(serde_json::json!({"name": "renamed-cluster"})))
        .respond_with(json_response(200, fixture("cluster.json")))
        .expect(1)
        .mount(&server)
        .await;
    client(&server)
        .update_cluster(
            &ClusterId::new("cluster_abc123"),
            &UpdateClusterRequest::new().name("renamed-cluster"),
        )
        .await
        .expect("rename");
}

#[tokio::test]
async fn delete_cluster_accepts_204_and_maps_404() {
    let server = server().await;
    Mock::given(method("DELETE"))
        .and(path("/v2/clusters/cluster_abc123"))
        .and(header("authorization", bearer().as_str()))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path("/v2/clusters/cluster_gone"))
        .respond_with(problem(404, "Not Found", "cluster not found"))
        .expect(1)
        .mount(&server)
        .await;
    let client = client(&server);
    client
        .delete_cluster(&ClusterId::new("cluster_abc123"))
        .await
        .expect("delete");
    let gone = client
        .delete_cluster(&ClusterId::new("cluster_gone"))
        .await
        .expect_err("404");
    assert!(gone.is_not_found(), "{gone:?}");
    assert!(
        gone.to_string().contains("delete cluster cluster_gone"),
        "{gone}"
    );
}

#[tokio::test]
async fn unknown_clusters_are_not_found_and_ids_stay_in_their_segment() {
    let server = server().await;
    Mock::given(method("GET"))
        .and(path("/v2/clusters/nope/pods"))
        .respond_with(problem(404, "Not Found", "cluster not found"))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v2/clusters/..%2Fpods"))
        .respond_with(json_response(200, fixture("cluster.json")))
        .expect(1)
        .mount(&server)
        .await;
    let client = client(&server);
    let error = client
        .list_cluster_pods(&ClusterId::new("nope"))
        .await
        .expect_err("404");
    assert!(error.is_not_found());
    client
        .get_cluster(&ClusterId::new("../pods"))
        .await
        .expect("encoded id reaches the cluster route");
}

#[tokio::test]
async fn lenient_cluster_numbers_and_new_values_parse() {
    let mut value = crate::fixture_json("cluster.json");
    value["compute"]["podCount"] = serde_json::json!(4.0);
    value["type"] = serde_json::json!("INFERENCE");
    value["pods"]["byStatus"]["MIGRATING"] = serde_json::json!(1);
    value["brandNewField"] = serde_json::json!(true);
    let cluster: runpod_api::models::Cluster = serde_json::from_value(value).expect("lenient");
    assert_eq!(cluster.compute.pod_count, 4);
    assert_eq!(cluster.kind, ClusterType::Unknown("INFERENCE".into()));
    assert_eq!(
        cluster.pods.count(&PodStatus::Unknown("MIGRATING".into())),
        1
    );
}
