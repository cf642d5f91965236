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

/// Fixtures of clusters, serverless endpoints and billing validate against the spec.
#[test]
fn cluster_serverless_and_billing_fixtures_match_the_spec() {
    for (name, schema) in [
        ("cluster.json", "Cluster"),
        ("cluster_provisioning.json", "Cluster"),
        ("clusters_list.json", "ListClustersResponse"),
        ("cluster_pods.json", "ListPodsResponse"),
        ("endpoint_gpu.json", "Endpoint"),
        ("endpoint_cpu.json", "Endpoint"),
        ("endpoint_load_balancer.json", "Endpoint"),
        ("endpoints_list.json", "ListEndpointsResponse"),
        ("endpoint_workers.json", "ListEndpointWorkersResponse"),
        ("endpoint_releases.json", "ListEndpointReleasesResponse"),
        ("account_billing.json", "ListBillingResponse"),
        ("serverless_billing.json", "ListServerlessBillingResponse"),
        (
            "public_endpoint_billing.json",
            "ListEndpointBillingResponse",
        ),
        (
            "network_volume_billing.json",
            "ListNetworkVolumeBillingResponse",
        ),
        ("cluster_billing.json", "ListClusterBillingResponse"),
    ] {
        check(schema, &fixture_json(name));
    }
}

/// Decoding then encoding a cluster, endpoint, worker list, release list or billing answer
/// yields a document the spec still accepts.
#[test]
fn parsed_cluster_serverless_and_billing_models_serialize_back() {
    use runpod_api::models::{
        AccountBilling, Cluster, ClusterBilling, Endpoint, NetworkVolumeBilling,
        PublicEndpointBilling, ReleaseList, ServerlessBilling, WorkerList,
    };

    fn round_trip<T: serde::de::DeserializeOwned + serde::Serialize>(name: &str, schema: &str) {
        let model: T = serde_json::from_value(fixture_json(name)).expect("decodes");
        check(schema, &serde_json::to_value(&model).expect("encodes"));
    }
    round_trip::<Cluster>("cluster.json", "Cluster");
    round_trip::<Cluster>("cluster_provisioning.json", "Cluster");
    for name in [
        "endpoint_gpu.json",
        "endpoint_cpu.json",
        "endpoint_load_balancer.json",
    ] {
        round_trip::<Endpoint>(name, "Endpoint");
    }
    round_trip::<WorkerList>("endpoint_workers.json", "ListEndpointWorkersResponse");
    round_trip::<ReleaseList>("endpoint_releases.json", "ListEndpointReleasesResponse");
    round_trip::<AccountBilling>("account_billing.json", "ListBillingResponse");
    round_trip::<ServerlessBilling>("serverless_billing.json", "ListServerlessBillingResponse");
    round_trip::<PublicEndpointBilling>(
        "public_endpoint_billing.json",
        "ListEndpointBillingResponse",
    );
    round_trip::<NetworkVolumeBilling>(
        "network_volume_billing.json",
        "ListNetworkVolumeBillingResponse",
    );
    round_trip::<ClusterBilling>("cluster_billing.json", "ListClusterBillingResponse");
}

/// Every cluster and endpoint body the tests build validates against the spec.
#[test]
fn cluster_and_endpoint_request_bodies_match_the_spec() {
    use runpod_api::models::{
        ClusterCompute, ClusterType, CpuRequest, CreateClusterRequest, EndpointGpuUpdate,
        EndpointScaling, UpdateClusterRequest, UpdateEndpointRequest, WorkersConfig,
    };

    let clusters = [
        crate::clusters::full_create_request(),
        CreateClusterRequest::new(
            "ray",
            ClusterType::Ray,
            ClusterCompute::new("NVIDIA A100 80GB PCIe", 2, 250),
        ),
        CreateClusterRequest::new(
            "slurm",
            ClusterType::Slurm,
            ClusterCompute::new("NVIDIA H100 80GB HBM3", 1, 2),
        )
        .image("img")
        .mounts(Mounts::persistent(10, "/workspace")),
    ];
    for request in &clusters {
        check(
            "CreateClusterRequest",
            &serde_json::to_value(request).expect("json"),
        );
    }
    check(
        "UpdateClusterRequest",
        &serde_json::to_value(UpdateClusterRequest::new().name("renamed")).expect("json"),
    );
    for request in [
        crate::serverless::full_gpu_request(),
        crate::serverless::cpu_request(),
        crate::serverless::load_balancer_request(),
    ] {
        check(
            "CreateEndpointRequest",
            &serde_json::to_value(&request).expect("json"),
        );
    }
    for update in [
        crate::serverless::full_update_request(),
        UpdateEndpointRequest::new().workers(WorkersConfig::new(1, 10)),
        UpdateEndpointRequest::new().scaling(EndpointScaling::request_count(2)),
        UpdateEndpointRequest::new().cpu([CpuRequest::new("cpu5c", 2)]),
        UpdateEndpointRequest::new().gpu(
            EndpointGpuUpdate::new()
                .count(2)
                .clear_allowed_cuda_versions()
                .min_cuda_version("12.1"),
        ),
        UpdateEndpointRequest::new().template_id("30zmvf89kd"),
    ] {
        check(
            "UpdateEndpointRequest",
            &serde_json::to_value(&update).expect("json"),
        );
    }
}

/// The client-side checks and the spec agree: each body below is refused by the client before
/// sending, and the spec's schema rejects it too.
#[tokio::test]
async fn cluster_and_endpoint_checks_match_what_the_spec_rejects() {
    use runpod_api::models::{
        ClusterCompute, ClusterType, CpuRequest, CreateClusterRequest, CreateEndpointRequest,
        EndpointGpuRequest, EndpointGpuUpdate, EndpointId, EndpointScaling, EndpointType,
        UpdateEndpointRequest, WorkersConfig,
    };

    let server = crate::server().await;
    let client = crate::client(&server);
    let refused = |error: runpod_api::Error| {
        assert!(
            matches!(error, runpod_api::Error::InvalidRequest { .. }),
            "{error:?}"
        );
    };
    let shape = |gpus, pods| ClusterCompute::new("NVIDIA H100 80GB HBM3", gpus, pods);
    for request in [
        CreateClusterRequest::new("one", ClusterType::Training, shape(8, 1)),
        CreateClusterRequest::new("many", ClusterType::Training, shape(8, 251)),
        CreateClusterRequest::new("none", ClusterType::Training, shape(0, 2)),
        CreateClusterRequest::new("", ClusterType::Training, shape(8, 2)),
        CreateClusterRequest::new("disk", ClusterType::Training, shape(8, 2)).disk(0),
        CreateClusterRequest::new("small", ClusterType::Training, shape(8, 2))
            .mounts(Mounts::persistent(5, "/w")),
    ] {
        let body = serde_json::to_value(&request).expect("json");
        assert!(
            contract().validate("CreateClusterRequest", &body).is_err(),
            "the spec accepts {body}"
        );
        refused(client.create_cluster(&request).await.expect_err("refused"));
    }
    let queue = |scaling| {
        CreateEndpointRequest::new("e", EndpointType::Queue, scaling)
            .image("img")
            .gpu(EndpointGpuRequest::new(["ADA_24"]))
    };
    let delay = || EndpointScaling::queue_delay(4.0);
    for request in [
        CreateEndpointRequest::new("lb", EndpointType::LoadBalancer, delay())
            .image("img")
            .gpu(EndpointGpuRequest::new(["ADA_24"])),
        queue(EndpointScaling::queue_delay(0.25)),
        queue(EndpointScaling::request_count(0)),
        queue(delay()).workers(WorkersConfig::new(0, 1).idle_timeout(0)),
        queue(delay()).workers(WorkersConfig::new(0, 1).idle_timeout(3601)),
        queue(delay()).gpu(EndpointGpuRequest::new(Vec::<String>::new())),
        queue(delay()).gpu(EndpointGpuRequest::new(["ADA_24"]).count(0)),
        queue(delay()).gpu(EndpointGpuRequest::new(["ADA_24"]).min_cuda_version("12")),
        queue(delay()).gpu(EndpointGpuRequest::new(["ADA_24"]).exclude_type("-NVIDIA L4")),
        queue(delay()).cpu(CpuRequest::new("cpu5c", 1)),
        queue(delay())
            .cpu(CpuRequest::new("cpu5c", 4))
            .cpu(CpuRequest::new("cpu5c", 4)),
        CreateEndpointRequest::new("", EndpointType::Queue, delay())
            .image("img")
            .gpu(EndpointGpuRequest::new(["ADA_24"])),
        CreateEndpointRequest::new("no-image", EndpointType::Queue, delay())
            .gpu(EndpointGpuRequest::new(["ADA_24"])),
    ] {
        let body = serde_json::to_value(&request).expect("json");
        assert!(
            contract().validate("CreateEndpointRequest", &body).is_err(),
            "the spec accepts {body}"
        );
        refused(client.create_endpoint(&request).await.expect_err("refused"));
    }
    let id = EndpointId::new("e1");
    for update in [
        UpdateEndpointRequest::new().gpu(EndpointGpuUpdate::new().exclude_type("NVIDIA L4")),
        UpdateEndpointRequest::new().gpu(EndpointGpuUpdate::new().min_cuda_version("12")),
        UpdateEndpointRequest::new().cpu([]),
        UpdateEndpointRequest::new().name(""),
        UpdateEndpointRequest::new().workers(WorkersConfig::default().idle_timeout(0)),
    ] {
        let body = serde_json::to_value(&update).expect("json");
        assert!(
            contract().validate("UpdateEndpointRequest", &body).is_err(),
            "the spec accepts {body}"
        );
        refused(
            client
                .update_endpoint(&id, &update)
                .await
                .expect_err("refused"),
        );
    }
    assert!(
        server
            .received_requests()
            .await
            .unwrap_or_default()
            .is_empty()
    );
}
