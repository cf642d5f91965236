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

fn contract() -> &'static Contract {
    static CONTRACT: OnceLock<Contract> = OnceLock::new();
    CONTRACT.get_or_init(|| {
        Contract::from_env().unwrap_or_else(|error| panic!("contract check: {error:#}"))
    })
}

fn check(schema: &str, value: &Value) {
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
