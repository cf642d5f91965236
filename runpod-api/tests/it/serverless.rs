//! Serverless endpoint operations: method, path, auth header, request body snapshots, response
//! parsing, worker logs, and the checks made before sending.

use futures_util::StreamExt;
use runpod_api::Error;
use runpod_api::models::{
    CpuRequest, CreateEndpointRequest, EndpointGpuRequest, EndpointGpuUpdate, EndpointId,
    EndpointRequestUrls, EndpointScaling, EndpointType, EnvVars, FlashBoot, LogSource,
    ReleaseSource, UpdateEndpointRequest, WorkerId, WorkerStatus, WorkersConfig,
};
use runpod_api::params::LogParams;
use wiremock::matchers::{body_json, header, method, path, query_param};
use wiremock::{Mock, ResponseTemplate};

use crate::{KEY, bodies, client, fixture, json_response, problem, server};

fn bearer() -> String {
    format!("Bearer {KEY}")
}

pub(crate) fn full_gpu_request() -> CreateEndpointRequest {
    CreateEndpointRequest::new(
        "image-generator",
        EndpointType::Queue,
        EndpointScaling::queue_delay(4.0),
    )
    .image("runpod/pytorch:1.0.2-cu1281-torch280-ubuntu2404")
    .args("python handler.py")
    .disk(20)
    .port("8000/http")
    .env("MODEL_NAME", "sdxl")
    .registry("reg_abc")
    .gpu(
        EndpointGpuRequest::new(["ADA_24", "AMPERE_24"])
            .exclude_type("NVIDIA L4")
            .count(1)
            .allowed_cuda_version("12.8")
            .allowed_cuda_version("12.6"),
    )
    .workers(WorkersConfig::new(0, 5).idle_timeout(5))
    .data_center("US-KS-2")
    .network_volume("2q9m7x4c")
    .timeout_ms(300_000)
    .flashboot(FlashBoot::FlashBoot)
}

pub(crate) fn cpu_request() -> CreateEndpointRequest {
    CreateEndpointRequest::new(
        "cpu-inference",
        EndpointType::Queue,
        EndpointScaling::queue_delay(4.0),
    )
    .image("python:3.11-slim")
    .cpu(CpuRequest::new("cpu5c", 4))
    .cpu(CpuRequest::new("cpu5g", 8))
    .workers(WorkersConfig::new(0, 3).idle_timeout(10))
    .timeout_ms(300_000)
}

pub(crate) fn load_balancer_request() -> CreateEndpointRequest {
    CreateEndpointRequest::new(
        "llm-api",
        EndpointType::LoadBalancer,
        EndpointScaling::request_count(4),
    )
    .template_id("30zmvf89kd")
    .env("HF_TOKEN", "hf_requestSecretValue")
    .gpu(EndpointGpuRequest::new(["ADA_48_PRO"]).min_cuda_version("12.4"))
}

pub(crate) fn full_update_request() -> UpdateEndpointRequest {
    UpdateEndpointRequest::new()
        .name("image-generator-v2")
        .image("runpod/pytorch:1.0.3")
        .env(
            [("MODEL_NAME", "sdxl-turbo")]
                .into_iter()
                .collect::<EnvVars>(),
        )
        .gpu(
            EndpointGpuUpdate::new()
                .pools(["ADA_24"])
                .exclude_type("NVIDIA L4")
                .allowed_cuda_versions(["12.8"])
                .clear_min_cuda_version(),
        )
        .workers(WorkersConfig::new(1, 10).idle_timeout(10))
        .scaling(EndpointScaling::queue_delay(8.0))
        .data_center_ids(Vec::<String>::new())
        .network_volumes(["2q9m7x4c"])
        .timeout_ms(600_000)
        .flashboot(FlashBoot::Off)
}

#[tokio::test]
async fn list_endpoints_parses_queue_cpu_and_load_balancer_endpoints() {
    let server = server().await;
    Mock::given(method("GET"))
        .and(path("/v2/serverless"))
        .and(header("authorization", bearer().as_str()))
        .respond_with(json_response(200, fixture("endpoints_list.json")))
        .expect(1)
        .mount(&server)
        .await;

    let endpoints = client(&server).list_endpoints().await.expect("list");
    assert_eq!(endpoints.len(), 3);
    let queue = &endpoints[0];
    assert_eq!(queue.kind, Some(EndpointType::Queue));
    assert!(matches!(
        &queue.request_urls,
        Some(EndpointRequestUrls::Queue(urls)) if urls.run_sync.ends_with("/runsync")
    ));
    assert_eq!(queue.scaling, EndpointScaling::queue_delay(4.0));
    assert_eq!(
        queue.gpu.as_ref().map(|gpu| gpu.pools.clone()),
        Some(vec!["ADA_24".to_owned()])
    );
    assert_eq!(queue.workers.idle_timeout, Some(5));
    let cpu = &endpoints[1];
    assert!(cpu.gpu.is_none());
    assert_eq!(cpu.cpu.len(), 2);
    assert_eq!(cpu.cpu[1].memory, 16);
    let balancer = &endpoints[2];
    assert!(matches!(
        &balancer.request_urls,
        Some(EndpointRequestUrls::LoadBalancer(urls)) if urls.health.ends_with("/ping")
    ));
    assert_eq!(balancer.scaling, EndpointScaling::request_count(4));
    assert_eq!(balancer.flashboot, FlashBoot::FlashBoot);
    assert_eq!(balancer.env.get("PORT"), Some("8000"));
    let debug = format!("{balancer:?}");
    assert!(!debug.contains("hf_fixtureSecretValue"), "{debug}");
}

#[tokio::test]
async fn get_endpoint_and_404() {
    let server = server().await;
    Mock::given(method("GET"))
        .and(path("/v2/serverless/4m7x2k9q"))
        .and(header("authorization", bearer().as_str()))
        .respond_with(json_response(200, fixture("endpoint_gpu.json")))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v2/serverless/gone"))
        .respond_with(problem(404, "Not Found", "endpoint not found"))
        .expect(1)
        .mount(&server)
        .await;
    let client = client(&server);
    let endpoint = client
        .get_endpoint(&EndpointId::new("4m7x2k9q"))
        .await
        .expect("get");
    assert_eq!(endpoint.id.as_str(), "4m7x2k9q");
    assert_eq!(endpoint.timeout, 300_000);
    let error = client
        .get_endpoint(&EndpointId::new("gone"))
        .await
        .expect_err("404");
    assert!(error.is_not_found());
}

#[tokio::test]
async fn create_endpoint_bodies() {
    let server = server().await;
    Mock::given(method("POST"))
        .and(path("/v2/serverless"))
        .and(header("authorization", bearer().as_str()))
        .and(header("content-type", "application/json"))
        .respond_with(json_response(201, fixture("endpoint_gpu.json")))
        .expect(3)
        .mount(&server)
        .await;

    let client = client(&server);
    for request in [full_gpu_request(), cpu_request(), load_balancer_request()] {
        client.create_endpoint(&request).await.expect("create");
    }
    let sent = bodies(&server, "POST", "/v2/serverless").await;
    insta::assert_json_snapshot!("create_endpoint_gpu_body", sent[0]);
    insta::assert_json_snapshot!("create_endpoint_cpu_body", sent[1]);
    insta::assert_json_snapshot!("create_endpoint_load_balancer_body", sent[2]);
}

#[tokio::test]
async fn create_endpoint_maps_422_and_is_not_retried_after_a_server_error() {
    let server = server().await;
    Mock::given(method("POST"))
        .and(path("/v2/serverless"))
        .and(body_json(
            serde_json::json!({"name": "bad-template", "type": "LOAD_BALANCER",
            "scaling": {"type": "REQUEST_COUNT", "requestCount": 4},
            "templateId": "pod-template", "gpu": {"pools": ["ADA_24"]}}),
        ))
        .respond_with(
            ResponseTemplate::new(422).set_body_raw(
                serde_json::json!({
                    "title": "Unprocessable Entity",
                    "status": 422,
                    "detail": "Request validation failed.",
                    "errors": ["templateId: not a serverless template"],
                })
                .to_string(),
                "application/problem+json",
            ),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v2/serverless"))
        .respond_with(problem(503, "Service Unavailable", "upstream timeout"))
        .expect(1)
        .mount(&server)
        .await;
    let retrying = crate::client_with(&server, runpod_api::RetryPolicy::default());
    let bad_template = CreateEndpointRequest::new(
        "bad-template",
        EndpointType::LoadBalancer,
        EndpointScaling::request_count(4),
    )
    .template_id("pod-template")
    .gpu(EndpointGpuRequest::new(["ADA_24"]));
    let error = retrying
        .create_endpoint(&bad_template)
        .await
        .expect_err("422");
    assert!(error.is_validation(), "{error:?}");
    assert_eq!(
        error.violations(),
        ["templateId: not a serverless template"]
    );

    // A 503 may come after the endpoint was made: never sent twice.
    let error = retrying
        .create_endpoint(&full_gpu_request())
        .await
        .expect_err("503");
    assert!(error.is_server_error(), "{error:?}");
}

#[tokio::test]
async fn invalid_endpoint_creates_fail_before_sending() {
    let server = server().await;
    let client = client(&server);
    let pools = || EndpointGpuRequest::new(["ADA_24"]);
    let queue = |name: &str| {
        CreateEndpointRequest::new(name, EndpointType::Queue, EndpointScaling::queue_delay(4.0))
            .image("img")
    };
    let creates = [
        queue("").gpu(pools()),
        CreateEndpointRequest::new(
            "no-image",
            EndpointType::Queue,
            EndpointScaling::queue_delay(4.0),
        )
        .gpu(pools()),
        queue("no-compute"),
        {
            let mut both = queue("both").cpu(CpuRequest::new("cpu5c", 4));
            both.gpu = Some(pools());
            both
        },
        queue("no-pools").gpu(EndpointGpuRequest::new(Vec::<String>::new())),
        queue("zero-gpus").gpu(pools().count(0)),
        queue("cuda-set-and-floor").gpu(
            pools()
                .allowed_cuda_version("12.8")
                .min_cuda_version("12.1"),
        ),
        queue("bad-cuda").gpu(pools().min_cuda_version("12")),
        queue("dup-exclusion").gpu(pools().exclude_type("NVIDIA L4").exclude_type(" NVIDIA L4")),
        queue("odd-vcpus").cpu(CpuRequest::new("cpu5c", 6)),
        queue("dup-cpu")
            .cpu(CpuRequest::new("cpu5c", 4))
            .cpu(CpuRequest::new("cpu5c", 4)),
        CreateEndpointRequest::new(
            "lb-on-queue-delay",
            EndpointType::LoadBalancer,
            EndpointScaling::queue_delay(4.0),
        )
        .image("img")
        .gpu(pools()),
        CreateEndpointRequest::new(
            "idle-on-request-count",
            EndpointType::Queue,
            EndpointScaling::request_count(2),
        )
        .image("img")
        .gpu(pools())
        .workers(WorkersConfig::new(0, 2).idle_timeout(30)),
        CreateEndpointRequest::new(
            "fast",
            EndpointType::Queue,
            EndpointScaling::queue_delay(0.1),
        )
        .image("img")
        .gpu(pools()),
        CreateEndpointRequest::new(
            "zero",
            EndpointType::Queue,
            EndpointScaling::request_count(0),
        )
        .image("img")
        .gpu(pools()),
        queue("long-idle")
            .gpu(pools())
            .workers(WorkersConfig::new(0, 2).idle_timeout(3601)),
        queue("min-above-max")
            .gpu(pools())
            .workers(WorkersConfig::new(4, 2)),
        queue("new-flashboot")
            .gpu(pools())
            .flashboot(FlashBoot::from("TURBO")),
    ];
    let mut messages = Vec::new();
    for request in &creates {
        let error = client.create_endpoint(request).await.expect_err("invalid");
        assert!(matches!(error, Error::InvalidRequest { .. }), "{error:?}");
        messages.push(error.to_string());
    }
    insta::assert_snapshot!("invalid_endpoint_creates", messages.join("\n"));
    assert!(
        server
            .received_requests()
            .await
            .unwrap_or_default()
            .is_empty()
    );
}

#[tokio::test]
async fn invalid_endpoint_updates_fail_before_sending() {
    let server = server().await;
    let client = client(&server);
    let mut messages = Vec::new();
    let id = EndpointId::new("4m7x2k9q");
    let updates = [
        UpdateEndpointRequest::new(),
        UpdateEndpointRequest::new().name(""),
        UpdateEndpointRequest::new()
            .gpu(EndpointGpuUpdate::new().count(2))
            .cpu([CpuRequest::new("cpu5c", 4)]),
        UpdateEndpointRequest::new().gpu(EndpointGpuUpdate::new().exclude_type("NVIDIA L4")),
        UpdateEndpointRequest::new().gpu(
            EndpointGpuUpdate::new()
                .allowed_cuda_versions(["12.8"])
                .min_cuda_version("12.1"),
        ),
        UpdateEndpointRequest::new().cpu([]),
        UpdateEndpointRequest::new().workers(WorkersConfig::new(5, 1)),
        UpdateEndpointRequest::new().scaling(EndpointScaling::queue_delay(f64::NAN)),
    ];
    for update in &updates {
        let error = client
            .update_endpoint(&id, update)
            .await
            .expect_err("invalid");
        assert!(matches!(error, Error::InvalidRequest { .. }), "{error:?}");
        messages.push(error.to_string());
    }
    insta::assert_snapshot!("invalid_endpoint_updates", messages.join("\n"));
    assert!(
        server
            .received_requests()
            .await
            .unwrap_or_default()
            .is_empty()
    );
}

#[tokio::test]
async fn update_endpoint_patches_only_the_given_fields() {
    let server = server().await;
    Mock::given(method("PATCH"))
        .and(path("/v2/serverless/4m7x2k9q"))
        .and(header("authorization", bearer().as_str()))
        .respond_with(json_response(200, fixture("endpoint_gpu.json")))
        .expect(2)
        .mount(&server)
        .await;
    let client = client(&server);
    let id = EndpointId::new("4m7x2k9q");
    client
        .update_endpoint(&id, &full_update_request())
        .await
        .expect("update");
    let scale = UpdateEndpointRequest::new()
        .workers(WorkersConfig::new(1, 10).idle_timeout(10))
        .scaling(EndpointScaling::queue_delay(8.0));
    client.update_endpoint(&id, &scale).await.expect("scale");
    let sent = bodies(&server, "PATCH", "/v2/serverless/4m7x2k9q").await;
    insta::assert_json_snapshot!("update_endpoint_full_body", sent[0]);
    assert_eq!(
        sent[1],
        serde_json::json!({
            "workers": {"min": 1, "max": 10, "idleTimeout": 10},
            "scaling": {"type": "QUEUE_DELAY", "queueDelay": 8.0},
        })
    );
}

#[tokio::test]
async fn delete_endpoint_accepts_204() {
    let server = server().await;
    Mock::given(method("DELETE"))
        .and(path("/v2/serverless/4m7x2k9q"))
        .and(header("authorization", bearer().as_str()))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    client(&server)
        .delete_endpoint(&EndpointId::new("4m7x2k9q"))
        .await
        .expect("delete");
}

#[tokio::test]
async fn workers_and_releases_parse() {
    let server = server().await;
    Mock::given(method("GET"))
        .and(path("/v2/serverless/4m7x2k9q/workers"))
        .and(header("authorization", bearer().as_str()))
        .respond_with(json_response(200, fixture("endpoint_workers.json")))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v2/serverless/4m7x2k9q/releases"))
        .and(header("authorization", bearer().as_str()))
        .respond_with(json_response(200, fixture("endpoint_releases.json")))
        .expect(1)
        .mount(&server)
        .await;
    let client = client(&server);
    let id = EndpointId::new("4m7x2k9q");
    let workers = client.list_endpoint_workers(&id).await.expect("workers");
    assert_eq!(workers.endpoint_version, Some(4));
    assert_eq!(workers.summary.total, 3);
    let statuses: Vec<_> = workers.workers.iter().map(|w| w.status.clone()).collect();
    assert_eq!(
        statuses,
        [
            WorkerStatus::Running,
            WorkerStatus::Idle,
            WorkerStatus::Initializing
        ]
    );
    assert!(workers.workers[1].is_stale);
    assert!(workers.workers[2].gpu_type_id.is_none());

    let releases = client.list_endpoint_releases(&id).await.expect("releases");
    assert!(releases.rollout.in_progress);
    assert_eq!(releases.rollout.percent_on_latest, 50);
    assert_eq!(releases.releases[0].source, ReleaseSource::Manual);
    assert_eq!(releases.releases[0].diff[0].new, serde_json::json!(10));
    assert_eq!(releases.releases[1].source, ReleaseSource::GitBuild);
    assert!(releases.releases[1].diff[1].old.is_null());
}

#[tokio::test]
async fn worker_logs_stream_typed_lines() {
    let server = server().await;
    let stream = concat!(
        "id: 2026-06-01T12:05:04Z/000000000042\n",
        "data: {\"ts\":\"2026-06-01T12:05:04Z\",\"source\":\"container\",\"line\":\"Worker ready.\"}\n\n",
        "id: 2026-06-01T12:05:05Z/000000000043\n",
        "data: {\"ts\":\"2026-06-01T12:05:05Z\",\"source\":\"container\",\"line\":\"job 1 done\"}\n\n",
    );
    Mock::given(method("GET"))
        .and(path("/v2/serverless/4m7x2k9q/workers/8g3n5t6r/logs"))
        .and(query_param("source", "container"))
        .and(query_param("since", "2026-06-01T12:00:00Z"))
        .and(header("accept", "text/event-stream"))
        .and(header("authorization", bearer().as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_raw(stream, "text/event-stream"))
        .expect(1)
        .mount(&server)
        .await;
    let params = LogParams::default()
        .source(LogSource::Container)
        .since("2026-06-01T12:00:00Z");
    let lines: Vec<_> = client(&server)
        .worker_logs(
            &EndpointId::new("4m7x2k9q"),
            &WorkerId::new("8g3n5t6r"),
            &params,
        )
        .await
        .expect("open logs")
        .collect()
        .await;
    let lines: Vec<_> = lines
        .into_iter()
        .map(|line| line.expect("valid line"))
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0].line, "Worker ready.");
    assert_eq!(
        lines[1].event_id.as_deref(),
        Some("2026-06-01T12:05:05Z/000000000043")
    );
}

#[tokio::test]
async fn worker_log_errors_name_the_worker() {
    let server = server().await;
    Mock::given(method("GET"))
        .and(path("/v2/serverless/4m7x2k9q/workers/w1/logs"))
        .and(header("last-event-id", "2026-06-01T12:05:04Z/000000000042"))
        .respond_with(
            ResponseTemplate::new(200).set_body_raw("data: not json\n\n", "text/event-stream"),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v2/serverless/4m7x2k9q/workers/gone/logs"))
        .respond_with(problem(404, "Not Found", "worker not found"))
        .expect(1)
        .mount(&server)
        .await;
    let client = client(&server);
    let endpoint = EndpointId::new("4m7x2k9q");
    let params = LogParams::default().last_event_id("2026-06-01T12:05:04Z/000000000042");
    let items: Vec<_> = client
        .worker_logs(&endpoint, &WorkerId::new("w1"), &params)
        .await
        .expect("open")
        .collect()
        .await;
    let error = items[0].as_ref().expect_err("garbage");
    assert!(matches!(error, Error::WorkerLogStream { .. }), "{error:?}");
    insta::assert_snapshot!("worker_log_stream_garbage", error.to_string());

    let missing = client
        .worker_logs(&endpoint, &WorkerId::new("gone"), &LogParams::default())
        .await
        .expect_err("404");
    assert!(missing.is_not_found());
    let too_long = client
        .worker_logs(
            &endpoint,
            &WorkerId::new("w1"),
            &LogParams::default().tail(5001),
        )
        .await
        .expect_err("tail");
    assert!(matches!(too_long, Error::InvalidRequest { .. }));
}

#[tokio::test]
async fn create_body_matches_the_spec_example() {
    let server = server().await;
    let example = serde_json::json!({
        "name": "image-generator",
        "image": "runpod/pytorch:1.0.2-cu1281-torch280-ubuntu2404",
        "type": "QUEUE",
        "gpu": {"pools": ["ADA_24"], "count": 1},
        "workers": {"min": 0, "max": 5, "idleTimeout": 5},
        "scaling": {"type": "QUEUE_DELAY", "queueDelay": 4.0},
        "dataCenterIds": ["US-KS-2"],
        "timeout": 300_000,
    });
    Mock::given(method("POST"))
        .and(path("/v2/serverless"))
        .and(body_json(&example))
        .respond_with(json_response(201, fixture("endpoint_gpu.json")))
        .expect(1)
        .mount(&server)
        .await;
    let request = CreateEndpointRequest::new(
        "image-generator",
        EndpointType::Queue,
        EndpointScaling::queue_delay(4.0),
    )
    .image("runpod/pytorch:1.0.2-cu1281-torch280-ubuntu2404")
    .gpu(EndpointGpuRequest::new(["ADA_24"]).count(1))
    .workers(WorkersConfig::new(0, 5).idle_timeout(5))
    .data_center("US-KS-2")
    .timeout_ms(300_000);
    client(&server)
        .create_endpoint(&request)
        .await
        .expect("create");
}
