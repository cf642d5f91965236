//! The simulator's network volumes, templates and hosts, over raw HTTP where the client has no
//! methods for them.

use runpod_api::models::{CreatePodRequest, GpuRequest, Mounts};
use runpod_api::sim::Simulator;
use runpod_api::{ApiErrorKind, PodStatus};
use serde_json::{Value, json};

use crate::sim::fast_wait;

/// Raw HTTP against a simulator: status and JSON body (null when empty).
struct Http<'a> {
    sim: &'a Simulator,
    http: reqwest::Client,
}

impl Http<'_> {
    fn new(sim: &Simulator) -> Http<'_> {
        Http {
            sim,
            http: reqwest::Client::new(),
        }
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.sim.base_url()))
            .bearer_auth(self.sim.api_key());
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("the simulator answers");
        let status = response.status().as_u16();
        let text = response.text().await.expect("a body");
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).expect("json")
        };
        (status, value)
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.send(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    async fn patch(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::PATCH, path, Some(body)).await
    }

    async fn delete(&self, path: &str) -> (u16, Value) {
        self.send(reqwest::Method::DELETE, path, None).await
    }
}

fn gpu_pod(name: &str) -> CreatePodRequest {
    CreatePodRequest::new(name)
        .image("runpod/pytorch")
        .gpu(GpuRequest::new("NVIDIA RTX A5000"))
        .port("22/tcp")
}

#[tokio::test]
async fn network_volume_crud_and_limits() {
    let sim = Simulator::start().await.expect("simulator");
    let http = Http::new(&sim);
    let (status, volume) = http
        .post(
            "/network-volumes",
            json!({"name": "frames", "size": 50, "dataCenter": "SIM-LOCAL-1"}),
        )
        .await;
    assert_eq!(status, 201, "{volume}");
    assert_eq!(volume["type"], "STANDARD", "the data center's primary tier");
    let id = volume["id"].as_str().expect("id").to_owned();

    for (size, expected) in [(9, 422), (4097, 422), (10, 201), (4096, 201)] {
        let (status, body) = http
            .post(
                "/network-volumes",
                json!({"name": "v", "size": size, "dataCenter": "SIM-LOCAL-2"}),
            )
            .await;
        assert_eq!(status, expected, "size {size}: {body}");
    }
    let (status, body) = http
        .post(
            "/network-volumes",
            json!({"name": "v", "size": 10, "dataCenter": "SIM-LOCAL-1", "type": "HIGH_PERFORMANCE"}),
        )
        .await;
    assert_eq!(status, 400, "{body}");

    let (status, renamed) = http
        .patch(
            &format!("/network-volumes/{id}"),
            json!({"name": "renamed", "size": 60}),
        )
        .await;
    assert_eq!((status, renamed["size"].as_u64()), (200, Some(60)));
    let (status, body) = http
        .patch(&format!("/network-volumes/{id}"), json!({"size": 20}))
        .await;
    assert_eq!(status, 400, "storage cannot be reduced: {body}");
    let (status, _) = http
        .patch(&format!("/network-volumes/{id}"), json!({}))
        .await;
    assert_eq!(status, 422, "an empty update is rejected");

    let (status, list) = http.get("/network-volumes").await;
    assert_eq!(
        (status, list["networkVolumes"].as_array().map(Vec::len)),
        (200, Some(3))
    );
    assert_eq!(http.delete(&format!("/network-volumes/{id}")).await.0, 204);
    assert_eq!(http.get(&format!("/network-volumes/{id}")).await.0, 404);
}

#[tokio::test]
async fn volumes_bind_pods_to_their_data_center_and_outlive_them() {
    let sim = Simulator::start().await.expect("simulator");
    let client = sim.client().expect("client");
    let http = Http::new(&sim);
    let (_, volume) = http
        .post(
            "/network-volumes",
            json!({"name": "frames", "size": 50, "dataCenter": "SIM-LOCAL-2"}),
        )
        .await;
    let volume_id = volume["id"].as_str().expect("id").to_owned();

    let elsewhere = gpu_pod("elsewhere")
        .data_center("SIM-LOCAL-1")
        .mounts(Mounts::network(&volume_id, "/runpod-volume"));
    let error = client
        .create_pod(&elsewhere)
        .await
        .expect_err("other data center");
    assert_eq!(
        error.status().map(|status| status.as_u16()),
        Some(400),
        "{error}"
    );

    let pod = client
        .create_pod(&gpu_pod("farm").mounts(Mounts::network(&volume_id, "/runpod-volume")))
        .await
        .expect("created beside its volume");
    let pod = client
        .wait_for_pod(&pod.id, runpod_api::WaitFor::Running, &fast_wait(), |_| {})
        .await
        .expect("running");
    assert_eq!(pod.data_center_id.as_deref(), Some("SIM-LOCAL-2"));

    client.stop_pod(&pod.id).await.expect("stop");
    let (status, body) = http.delete(&format!("/network-volumes/{volume_id}")).await;
    assert_eq!(status, 409, "a stopped pod still uses it: {body}");
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.contains(pod.id.as_str())),
        "{body}"
    );

    client.terminate_pod(&pod.id).await.expect("terminate");
    let (status, kept) = http.get(&format!("/network-volumes/{volume_id}")).await;
    assert_eq!(
        (status, kept["name"].as_str()),
        (200, Some("frames")),
        "the volume outlives the pod"
    );
    assert_eq!(
        http.delete(&format!("/network-volumes/{volume_id}"))
            .await
            .0,
        204
    );
}

#[tokio::test]
async fn templates_are_stored_and_seed_pods() {
    let sim = Simulator::start().await.expect("simulator");
    let client = sim.client().expect("client");
    let http = Http::new(&sim);
    let (status, template) = http
        .post(
            "/templates",
            json!({"name": "blender", "image": "rpb/blender:4.5", "ports": ["22/tcp"],
                   "env": {"A": "template", "B": "template"}}),
        )
        .await;
    assert_eq!(status, 201, "{template}");
    assert_eq!(
        (
            template["startSsh"].as_bool(),
            template["category"].as_str()
        ),
        (Some(true), Some("NVIDIA"))
    );
    let id = template["id"].as_str().expect("id").to_owned();
    assert_eq!(
        http.post("/templates", json!({"name": "no image"})).await.0,
        422
    );

    let (status, updated) = http
        .patch(
            &format!("/templates/{id}"),
            json!({"args": "sleep infinity"}),
        )
        .await;
    assert_eq!(
        (status, updated["args"].as_str()),
        (200, Some("sleep infinity"))
    );
    let (_, list) = http.get("/templates").await;
    assert_eq!(list["templates"].as_array().map(Vec::len), Some(1));

    let mut request =
        CreatePodRequest::new("from-template").gpu(GpuRequest::new("NVIDIA RTX A5000"));
    request.template_id = Some(id.clone());
    request.env.insert("B".into(), "body".into());
    let pod = client
        .create_pod(&request)
        .await
        .expect("created from the template");
    assert_eq!(pod.image, "rpb/blender:4.5");
    assert_eq!(
        (pod.env["A"].as_str(), pod.env["B"].as_str()),
        ("template", "body")
    );
    assert!(
        pod.template.is_none(),
        "the pod keeps no link to its template"
    );

    assert_eq!(http.delete(&format!("/templates/{id}")).await.0, 204);
    assert_eq!(http.get(&format!("/templates/{id}")).await.0, 404);
    let error = client
        .create_pod(&request)
        .await
        .expect_err("unknown template");
    assert!(error.is_not_found(), "{error}");
}

async fn availability(http: &Http<'_>, center: &str, gpu: &str) -> String {
    let (_, body) = http
        .get(&format!(
            "/catalog/datacenters/{center}?include=GPU_AVAILABILITY"
        ))
        .await;
    body["gpuAvailability"]
        .as_array()
        .and_then(|gpus| gpus.iter().find(|entry| entry["id"] == gpu))
        .and_then(|entry| entry["availability"].as_str())
        .expect("listed")
        .to_owned()
}

#[tokio::test]
async fn a_full_host_refuses_a_start_while_the_data_center_takes_new_pods() {
    let sim = Simulator::start().await.expect("simulator");
    let client = sim.client().expect("client");
    let http = Http::new(&sim);
    let gpu = "NVIDIA RTX A5000";
    assert_eq!(availability(&http, "SIM-LOCAL-1", gpu).await, "HIGH");

    let pod = client.create_pod(&gpu_pod("bound")).await.expect("create");
    client
        .wait_for_pod(&pod.id, runpod_api::WaitFor::Running, &fast_wait(), |_| {})
        .await
        .expect("running");
    client.stop_pod(&pod.id).await.expect("stop");
    let host = sim
        .fill_host(pod.id.as_str())
        .expect("a GPU pod has a host");
    assert_eq!(
        sim.host_of(pod.id.as_str()).as_deref(),
        Some(host.as_str()),
        "bound while stopped"
    );

    let error = client
        .start_pod(&pod.id)
        .await
        .expect_err("its host is full");
    assert_eq!(error.kind(), Some(&ApiErrorKind::HostOutOfGpus));
    let text = "There are not enough free GPUs on the host machine to start this pod.";
    assert!(format!("{error:?}").contains(text), "{error:?}");

    let other = client
        .create_pod(&gpu_pod("newcomer"))
        .await
        .expect("another host has room");
    let other_host = sim.host_of(other.id.as_str()).expect("placed");
    assert_ne!(other_host, host);
    let same_center = sim
        .hosts()
        .into_iter()
        .find(|h| h.id == other_host)
        .expect("known")
        .data_center;
    assert_eq!(same_center, "SIM-LOCAL-1");

    // Availability follows the hosts: none left once every A5000 host there is full.
    for info in sim.hosts() {
        if info.data_center == "SIM-LOCAL-1" && info.gpu_type == gpu {
            assert!(sim.set_free_gpus(&info.id, 0));
        }
    }
    assert_eq!(availability(&http, "SIM-LOCAL-1", gpu).await, "NONE");
    assert_eq!(availability(&http, "SIM-LOCAL-2", gpu).await, "HIGH");
    let (_, gpus) = http
        .get("/catalog/gpus?include=AVAILABILITY&product=POD")
        .await;
    let a5000 = gpus["gpus"]
        .as_array()
        .and_then(|g| g.iter().find(|e| e["id"] == gpu))
        .expect("listed")
        .clone();
    assert_eq!(a5000["dataCenters"][0]["availability"], "NONE");
    assert_eq!(
        a5000["availability"], "HIGH",
        "the other data center still has stock"
    );

    assert!(sim.set_free_gpus(&host, 1));
    assert_eq!(availability(&http, "SIM-LOCAL-1", gpu).await, "LOW");
    let started = client.start_pod(&pod.id).await.expect("a GPU came free");
    assert_ne!(started.status, PodStatus::Exited);
}

/// The client's typed volume methods against the simulator: the two sides of the contract
/// written separately (client models, simulator shapes) agree.
#[tokio::test]
async fn the_typed_client_drives_the_simulator_s_network_volumes() {
    use runpod_api::models::{CreateNetworkVolumeRequest, UpdateNetworkVolumeRequest};

    let sim = Simulator::start().await.expect("simulator");
    let client = sim.client().expect("client");
    let created = client
        .create_network_volume(&CreateNetworkVolumeRequest::new(
            "scenes",
            50,
            "SIM-LOCAL-1",
        ))
        .await
        .expect("create");
    assert_eq!((created.name.as_str(), created.size), ("scenes", 50));
    assert_eq!(created.data_center, "SIM-LOCAL-1");
    let read = client.get_network_volume(&created.id).await.expect("get");
    assert_eq!(read, created);
    let grown = client
        .update_network_volume(&created.id, &UpdateNetworkVolumeRequest::new().size(80))
        .await
        .expect("grow");
    assert_eq!(grown.size, 80);
    let shrink = client
        .update_network_volume(&created.id, &UpdateNetworkVolumeRequest::new().size(60))
        .await
        .expect_err("a volume never shrinks");
    assert!(
        shrink.to_string().contains("60") || shrink.to_string().contains("shrink"),
        "{shrink}"
    );
    assert_eq!(client.list_network_volumes().await.expect("list").len(), 1);
    client
        .delete_network_volume(&created.id)
        .await
        .expect("delete");
    assert!(
        client
            .get_network_volume(&created.id)
            .await
            .expect_err("deleted")
            .is_not_found()
    );
    sim.shutdown().await;
}
