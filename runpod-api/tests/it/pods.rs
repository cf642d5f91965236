//! Pod operations: method, path, query, auth header, request body snapshots, and response parsing.

use std::collections::BTreeMap;

use futures_util::StreamExt;
use runpod_api::models::{
    Cloud, CpuRequest, CreatePodRequest, GpuRequest, LogSource, Mounts, UpdatePodRequest,
};
use runpod_api::params::{ListPodsParams, LogParams};
use runpod_api::{PodAction, PodId, PodStatus};
use wiremock::matchers::{body_json, header, method, path, query_param};
use wiremock::{Mock, ResponseTemplate};

use crate::{KEY, bodies, client, fixture, json_response, server};

fn bearer() -> String {
    format!("Bearer {KEY}")
}

pub(crate) fn full_create_request() -> CreatePodRequest {
    CreatePodRequest::new("rpb-blender")
        .image("runpod/pytorch:1.0.2-cu1281-torch280-ubuntu2404")
        .gpu(
            GpuRequest::new("NVIDIA GeForce RTX 4090")
                .count(1)
                .allowed_cuda_version("12.8"),
        )
        .cloud(Cloud::Community)
        .data_center("EU-RO-1")
        .disk(40)
        .args("bash /runpod/rpb/boot-hook.sh")
        .port("22/tcp")
        .port("6080/http")
        .env("RPB_POD_ROOT", "/runpod")
        .mounts(Mounts::persistent(50, "/runpod"))
        .global_networking(false)
        .start_ssh(true)
        .start_jupyter(false)
}

#[tokio::test]
async fn list_pods_sends_filters_and_parses_gpu_and_cpu_pods() {
    let server = server().await;
    Mock::given(method("GET"))
        .and(path("/v2/pods"))
        .and(query_param("includeClusterPods", "true"))
        .and(header("authorization", bearer().as_str()))
        .respond_with(json_response(200, fixture("pods_list.json")))
        .expect(1)
        .mount(&server)
        .await;

    let pods = client(&server)
        .list_pods(&ListPodsParams::default().include_cluster_pods(true))
        .await
        .expect("list pods");
    assert_eq!(pods.len(), 2);
    assert_eq!(
        pods[0].gpu.as_ref().map(|gpu| gpu.id.as_str()),
        Some("NVIDIA GeForce RTX 4090")
    );
    assert_eq!(
        pods[1].cpu.as_ref().map(|cpu| cpu.vcpu_count),
        Some(Some(4))
    );
    assert!(pods[1].global_networking.enabled);
    assert_eq!(pods[1].mounts, Mounts::default());
}

#[tokio::test]
async fn get_pod_parses_the_spec_example_and_its_helpers() {
    let server = server().await;
    Mock::given(method("GET"))
        .and(path("/v2/pods/7h9k2m4n6p"))
        .and(header("authorization", bearer().as_str()))
        .respond_with(json_response(200, fixture("pod_running.json")))
        .expect(1)
        .mount(&server)
        .await;

    let pod = client(&server)
        .get_pod(&PodId::new("7h9k2m4n6p"))
        .await
        .expect("get pod");
    assert_eq!(pod.status, PodStatus::Running);
    assert!(pod.is_running());
    assert!(pod.allows(&PodAction::Stop));
    assert!(!pod.allows(&PodAction::Start));
    assert!((pod.cost_per_hour() - 0.44).abs() < 1e-9);
    let ssh = pod.ssh_endpoint().expect("direct ssh");
    assert_eq!(ssh.to_string(), "root@195.26.233.3:34446");
    assert_eq!(
        pod.runtime.as_ref().and_then(|runtime| runtime.uptime),
        Some(3600)
    );
    assert_eq!(
        pod.mounts
            .persistent
            .as_ref()
            .map(|mount| mount.path.as_str()),
        Some("/workspace")
    );
}

#[tokio::test]
async fn ssh_endpoint_falls_back_to_the_public_runtime_port() {
    let server = server().await;
    Mock::given(method("GET"))
        .and(path("/v2/pods/7h9k2m4n6p"))
        .respond_with(json_response(200, fixture("pod_running_runtime_port.json")))
        .mount(&server)
        .await;
    let pod = client(&server)
        .get_pod(&PodId::new("7h9k2m4n6p"))
        .await
        .expect("get pod");
    assert!(pod.ssh.direct.is_none());
    let ssh = pod.ssh_endpoint().expect("runtime port 22 on a public ip");
    assert_eq!((ssh.host.as_str(), ssh.port), ("195.26.233.3", 34446));

    let provisioning: runpod_api::Pod =
        serde_json::from_str(&fixture("pod_provisioning.json")).expect("parses");
    assert!(provisioning.ssh_endpoint().is_none());
    assert!(provisioning.runtime.is_none());
}

#[tokio::test]
async fn lenient_numbers_and_unknown_values_parse() {
    let mut value = crate::fixture_json("pod_running.json");
    value["disk"] = serde_json::json!(50.0);
    value["cost"] = serde_json::json!("0.44");
    value["status"] = serde_json::json!("MIGRATING");
    value["brandNewField"] = serde_json::json!({"x": 1});
    value["env"] = serde_json::Value::Null;
    let pod: runpod_api::Pod = serde_json::from_value(value).expect("lenient parse");
    assert_eq!(pod.disk, Some(50));
    assert!((pod.cost - 0.44).abs() < 1e-9);
    assert_eq!(pod.status, PodStatus::Unknown("MIGRATING".into()));
    assert!(pod.env.is_empty());
}

#[tokio::test]
async fn create_pod_sends_every_field() {
    let server = server().await;
    Mock::given(method("POST"))
        .and(path("/v2/pods"))
        .and(header("authorization", bearer().as_str()))
        .and(header("content-type", "application/json"))
        .respond_with(json_response(201, fixture("pod_provisioning.json")))
        .expect(1)
        .mount(&server)
        .await;

    let pod = client(&server)
        .create_pod(&full_create_request())
        .await
        .expect("create pod");
    assert_eq!(pod.status, PodStatus::Provisioning);
    assert_eq!(pod.id.as_str(), "7h9k2m4n6p");
    let sent = bodies(&server, "POST", "/v2/pods").await;
    insta::assert_json_snapshot!("create_pod_full_body", sent[0]);
}

#[tokio::test]
async fn create_cpu_pod_with_a_network_volume_sends_only_what_is_set() {
    let server = server().await;
    Mock::given(method("POST"))
        .and(path("/v2/pods"))
        .respond_with(json_response(201, fixture("pod_provisioning.json")))
        .expect(1)
        .mount(&server)
        .await;
    let request = CreatePodRequest::new("cpu")
        .template_id("runpod-ubuntu")
        .cpu(CpuRequest::new("cpu3c", 4))
        .mounts(Mounts::network("vol123", "/data"));
    client(&server).create_pod(&request).await.expect("create");
    let sent = bodies(&server, "POST", "/v2/pods").await;
    insta::assert_json_snapshot!("create_pod_cpu_body", sent[0]);
}

#[tokio::test]
async fn invalid_create_requests_fail_before_sending() {
    let server = server().await;
    let client = client(&server);
    let cases = [
        CreatePodRequest::new("no-image").gpu(GpuRequest::new("NVIDIA RTX A5000")),
        CreatePodRequest::new("no-compute").image("img"),
        CreatePodRequest::new("tiny-volume")
            .image("img")
            .gpu(GpuRequest::new("NVIDIA RTX A5000"))
            .mounts(Mounts::persistent(5, "/runpod")),
        CreatePodRequest::new("")
            .image("img")
            .gpu(GpuRequest::new("NVIDIA RTX A5000")),
    ];
    let mut messages = Vec::new();
    for request in &cases {
        let error = client.create_pod(request).await.expect_err("invalid");
        assert!(
            matches!(error, runpod_api::Error::InvalidRequest { .. }),
            "{error:?}"
        );
        messages.push(error.to_string());
    }
    insta::assert_snapshot!("invalid_create_requests", messages.join("\n"));
    assert!(
        server
            .received_requests()
            .await
            .unwrap_or_default()
            .is_empty()
    );
}

#[tokio::test]
async fn update_pod_patches_only_the_given_fields() {
    let server = server().await;
    Mock::given(method("PATCH"))
        .and(path("/v2/pods/7h9k2m4n6p"))
        .and(header("authorization", bearer().as_str()))
        .respond_with(json_response(200, fixture("pod_running.json")))
        .expect(1)
        .mount(&server)
        .await;
    let request = UpdatePodRequest::new()
        .name("renamed")
        .ports(["22/tcp", "8888/http"])
        .env(BTreeMap::from([("A".to_owned(), "1".to_owned())]))
        .mounts(Mounts::persistent(50, "/runpod"))
        .locked(true);
    client(&server)
        .update_pod(&PodId::new("7h9k2m4n6p"), &request)
        .await
        .expect("update");
    let sent = bodies(&server, "PATCH", "/v2/pods/7h9k2m4n6p").await;
    insta::assert_json_snapshot!("update_pod_body", sent[0]);

    let empty = client(&server)
        .update_pod(&PodId::new("7h9k2m4n6p"), &UpdatePodRequest::new())
        .await
        .expect_err("empty update");
    assert!(empty.to_string().contains("changes nothing"), "{empty}");
}

#[tokio::test]
async fn delete_pod_sends_delete_and_accepts_204() {
    let server = server().await;
    Mock::given(method("DELETE"))
        .and(path("/v2/pods/7h9k2m4n6p"))
        .and(header("authorization", bearer().as_str()))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    client(&server)
        .delete_pod(&PodId::new("7h9k2m4n6p"))
        .await
        .expect("delete");
}

#[tokio::test]
async fn pod_actions_post_the_action_and_parse_the_pod() {
    let server = server().await;
    let action_path = "/v2/pods/7h9k2m4n6p/action";
    for (action, fixture_name) in [
        ("start", "pod_starting.json"),
        ("stop", "pod_exited.json"),
        ("restart", "pod_running.json"),
    ] {
        Mock::given(method("POST"))
            .and(path(action_path))
            .and(header("authorization", bearer().as_str()))
            .and(body_json(serde_json::json!({ "action": action })))
            .respond_with(json_response(200, fixture(fixture_name)))
            .expect(1)
            .mount(&server)
            .await;
    }
    Mock::given(method("POST"))
        .and(path(action_path))
        .and(body_json(serde_json::json!({ "action": "terminate" })))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;

    let client = client(&server);
    let id = PodId::new("7h9k2m4n6p");
    assert_eq!(
        client.start_pod(&id).await.expect("start").status,
        PodStatus::Starting
    );
    let stopped = client.stop_pod(&id).await.expect("stop");
    assert_eq!(stopped.status, PodStatus::Exited);
    assert!(stopped.cost.abs() < f64::EPSILON);
    assert_eq!(
        client.restart_pod(&id).await.expect("restart").status,
        PodStatus::Running
    );
    assert_eq!(
        client
            .pod_action(&id, PodAction::Terminate)
            .await
            .expect("terminate"),
        None
    );
    let sent = bodies(&server, "POST", action_path).await;
    insta::assert_json_snapshot!("pod_action_bodies", sent);
}

#[tokio::test]
async fn pod_logs_stream_typed_lines_with_resume_cursors() {
    let server = server().await;
    let stream = concat!(
        ": connected\n\n",
        "id: 2026-11-30T10:00:00Z\n",
        "data: {\"source\":\"container\",\"line\":\"sshd started\",\"ts\":\"2026-11-30T10:00:00Z\"}\n\n",
        "event: log\r\n",
        "id: 2026-11-30T10:00:01Z\r\n",
        "data: {\"source\":\"system\",\"line\":\"image pulled\",\"ts\":\"2026-11-30T10:00:01Z\"}\r\n\r\n",
        "event: heartbeat\n",
        "data: {}\n\n",
    );
    Mock::given(method("GET"))
        .and(path("/v2/pods/7h9k2m4n6p/logs"))
        .and(query_param("source", "container"))
        .and(query_param("tail", "0"))
        .and(header("accept", "text/event-stream"))
        .and(header("last-event-id", "2026-11-30T09:59:59Z"))
        .and(header("authorization", bearer().as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_raw(stream, "text/event-stream"))
        .expect(1)
        .mount(&server)
        .await;

    let params = LogParams::default()
        .source(LogSource::Container)
        .tail(0)
        .last_event_id("2026-11-30T09:59:59Z");
    let lines: Vec<_> = client(&server)
        .pod_logs(&PodId::new("7h9k2m4n6p"), &params)
        .await
        .expect("open logs")
        .collect()
        .await;
    let lines: Vec<_> = lines
        .into_iter()
        .map(|line| line.expect("valid line"))
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0].line, "sshd started");
    assert_eq!(lines[0].event_id.as_deref(), Some("2026-11-30T10:00:00Z"));
    assert_eq!(lines[1].source, LogSource::System);
}

#[tokio::test]
async fn a_garbage_log_event_ends_the_stream_with_a_clear_error_after_good_lines() {
    let server = server().await;
    let stream = concat!(
        "data: {\"source\":\"container\",\"line\":\"ok\",\"ts\":\"2026-11-30T10:00:00Z\"}\n\n",
        "data: not json\n\n",
        "data: {\"source\":\"container\",\"line\":\"never\",\"ts\":\"2026-11-30T10:00:00Z\"}\n\n",
    );
    Mock::given(method("GET"))
        .and(path("/v2/pods/p1/logs"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(stream, "text/event-stream"))
        .mount(&server)
        .await;
    let items: Vec<_> = client(&server)
        .pod_logs(&PodId::new("p1"), &LogParams::default())
        .await
        .expect("open")
        .collect()
        .await;
    assert_eq!(items.len(), 2);
    assert_eq!(items[0].as_ref().expect("first line").line, "ok");
    let error = items[1].as_ref().expect_err("garbage");
    insta::assert_snapshot!("log_stream_garbage", error.to_string());
}

#[tokio::test]
async fn pod_ids_cannot_escape_their_path_segment() {
    let server = server().await;
    Mock::given(method("GET"))
        .and(path("/v2/pods/..%2Faccount%2Fssh-keys"))
        .respond_with(json_response(200, fixture("pod_running.json")))
        .expect(1)
        .mount(&server)
        .await;
    client(&server)
        .get_pod(&PodId::new("../account/ssh-keys"))
        .await
        .expect("encoded id reaches the pod route");
}
