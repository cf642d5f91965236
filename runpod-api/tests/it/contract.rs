//! The contract check: every fixture, every request body the client can produce, and every
//! problem answer validates against RunPod's official OpenAPI document (`RPB_RUNPOD_OPENAPI`).

use std::collections::BTreeMap;
use std::sync::OnceLock;

use runpod_api::PodAction;
use runpod_api::models::{
    CpuRequest, CreatePodRequest, GpuRequest, Mounts, PodActionRequest, SshKeys, UpdatePodRequest,
};
use serde_json::Value;
use test_support::contract::Contract;

use crate::fixture_json;

pub(crate) fn contract() -> &'static Contract {
    static CONTRACT: OnceLock<Contract> = OnceLock::new();
    CONTRACT.get_or_init(|| {
        Contract::from_env().unwrap_or_else(|error| panic!("contract check: {error:#}"))
    })
}

pub(crate) fn check(schema: &str, value: &Value) {
    if let Err(error) = contract().validate(schema, value) {
        panic!("{error:#}");
    }
}

#[test]
fn response_fixtures_match_the_spec() {
    for name in [
        "pod_running.json",
        "pod_provisioning.json",
        "pod_starting.json",
        "pod_running_no_ssh.json",
        "pod_running_runtime_port.json",
        "pod_exited.json",
        "pod_error.json",
    ] {
        check("Pod", &fixture_json(name));
    }
    check("ListPodsResponse", &fixture_json("pods_list.json"));
    check("ListGpuTypesResponse", &fixture_json("gpu_types.json"));
    check("GpuType", &fixture_json("gpu_type.json"));
    check(
        "ListDataCentersResponse",
        &fixture_json("data_centers.json"),
    );
    check("DataCenter", &fixture_json("data_center.json"));
    check("SshKeys", &fixture_json("ssh_keys.json"));
    check("ListPodBillingResponse", &fixture_json("pod_billing.json"));
}

#[test]
fn parsed_models_serialize_back_to_valid_documents() {
    let pod: runpod_api::Pod =
        serde_json::from_value(fixture_json("pod_running.json")).expect("pod");
    check("Pod", &serde_json::to_value(&pod).expect("json"));
    let provisioning: runpod_api::Pod =
        serde_json::from_value(fixture_json("pod_provisioning.json")).expect("pod");
    check("Pod", &serde_json::to_value(&provisioning).expect("json"));
}

#[test]
fn request_bodies_match_the_spec() {
    let creates = [
        crate::pods::full_create_request(),
        CreatePodRequest::new("minimal")
            .image("img")
            .gpu(GpuRequest::new("NVIDIA RTX A5000")),
        CreatePodRequest::new("cpu")
            .template_id("runpod-ubuntu")
            .cpu(CpuRequest::new("cpu3c", 4))
            .mounts(Mounts::network("vol123", "/data")),
        CreatePodRequest::new("cuda")
            .image("img")
            .gpu(
                GpuRequest::new("NVIDIA A40")
                    .count(2)
                    .min_cuda_version("12.4"),
            )
            .registry("reg1"),
    ];
    for request in &creates {
        check(
            "CreatePodRequest",
            &serde_json::to_value(request).expect("json"),
        );
    }
    let update = UpdatePodRequest::new()
        .name("renamed")
        .image("img2")
        .args("sleep infinity")
        .disk(30)
        .ports(["22/tcp"])
        .env(BTreeMap::from([("A".to_owned(), "1".to_owned())]))
        .mounts(Mounts::persistent(50, "/runpod"))
        .locked(false)
        .global_networking(true)
        .template_id("t1");
    check(
        "UpdatePodRequest",
        &serde_json::to_value(&update).expect("json"),
    );
    for action in [
        PodAction::Start,
        PodAction::Stop,
        PodAction::Restart,
        PodAction::Terminate,
    ] {
        check(
            "PodActionRequest",
            &serde_json::to_value(PodActionRequest::new(action)).expect("json"),
        );
    }
    let keys = SshKeys::new(["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOther rpb"]);
    check(
        "UpdateSshKeysRequest",
        &serde_json::to_value(&keys).expect("json"),
    );
}

#[test]
fn the_check_rejects_what_the_api_rejects() {
    let mut unknown = serde_json::to_value(crate::pods::full_create_request()).expect("json");
    unknown["supportPublicIp"] = true.into();
    assert!(contract().validate("CreatePodRequest", &unknown).is_err());
    let mut broken = fixture_json("pod_running.json");
    broken["status"] = "SLEEPING".into();
    assert!(contract().validate("Pod", &broken).is_err());
}

#[test]
fn problem_bodies_match_the_spec() {
    let problem = serde_json::json!({
        "title": "Unprocessable Entity",
        "status": 422,
        "detail": "Request validation failed.",
        "errors": ["gpu.count: must be >= 1"],
    });
    check("ErrorResponse", &problem);
}

/// Every kind of answer the simulator gives validates against the spec too.
#[tokio::test]
async fn simulator_answers_match_the_spec() {
    use runpod_api::sim::Simulator;

    let sim = Simulator::start().await.expect("simulator");
    let http = reqwest::Client::new();
    let base = sim.base_url();
    let get = |path: String| {
        let request = http.get(format!("{base}{path}")).bearer_auth(sim.api_key());
        async move {
            let response = request.send().await.expect("answer");
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.expect("json"))
        }
    };
    let client = sim.client().expect("client");
    client
        .add_ssh_key("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIContractCheck rpb")
        .await
        .expect("key");
    let pod = client
        .create_pod(&crate::sim::blender_pod())
        .await
        .expect("create");
    check("Pod", &serde_json::to_value(&pod).expect("json"));
    let (_, provisioning) = get(format!("/pods/{}", pod.id)).await;
    check("Pod", &provisioning);
    client
        .wait_for_pod(
            &pod.id,
            runpod_api::WaitFor::SshReady,
            &crate::sim::fast_wait(),
            |_| {},
        )
        .await
        .expect("running");
    let (_, running) = get(format!("/pods/{}", pod.id)).await;
    check("Pod", &running);
    client.stop_pod(&pod.id).await.expect("stop");
    let (_, exited) = get(format!("/pods/{}", pod.id)).await;
    check("Pod", &exited);
    for (path, schema) in [
        ("/pods".to_owned(), "ListPodsResponse"),
        ("/catalog/gpus".to_owned(), "ListGpuTypesResponse"),
        (
            "/catalog/gpus?include=AVAILABILITY&product=POD".to_owned(),
            "ListGpuTypesResponse",
        ),
        ("/catalog/gpus/NVIDIA%20RTX%20A5000".to_owned(), "GpuType"),
        (
            "/catalog/datacenters?include=GPU_AVAILABILITY".to_owned(),
            "ListDataCentersResponse",
        ),
        ("/catalog/datacenters/SIM-LOCAL-1".to_owned(), "DataCenter"),
        ("/account/ssh-keys".to_owned(), "SshKeys"),
        ("/billing/pods".to_owned(), "ListPodBillingResponse"),
        ("/pods/nope".to_owned(), "ErrorResponse"),
        (
            "/catalog/gpus?include=AVAILABILITY".to_owned(),
            "ErrorResponse",
        ),
    ] {
        let (status, body) = get(path.clone()).await;
        assert!(status < 500, "{path}: {status}");
        check(schema, &body);
    }
}
