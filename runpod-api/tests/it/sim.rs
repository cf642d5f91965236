//! The client's whole behaviour against the embedded simulator, each fault knob, and the
//! `runpod-sim` binary.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use futures_util::StreamExt;
use runpod_api::models::{CreatePodRequest, GpuRequest, LogSource, Mounts, SshKeys};
use runpod_api::params::{ListPodsParams, LogParams};
use runpod_api::sim::{Simulator, SshEndpoints, Timings};
use runpod_api::{
    ApiErrorKind, Client, Error, PodId, PodStatus, RetryPolicy, WaitFor, WaitOptions,
};

pub(crate) fn fast_wait() -> WaitOptions {
    WaitOptions::default()
        .intervals(Duration::from_millis(10), Duration::from_millis(50))
        .timeout(Duration::from_secs(10))
}

pub(crate) fn blender_pod() -> CreatePodRequest {
    CreatePodRequest::new("rpb-blender")
        .image("runpod/pytorch:1.0.2-cu1281-torch280-ubuntu2404")
        .gpu(GpuRequest::new("NVIDIA RTX A5000"))
        .mounts(Mounts::persistent(50, "/runpod"))
        .port("22/tcp")
        .start_ssh(true)
}

async fn ready(client: &Client, id: &PodId) -> runpod_api::Pod {
    client
        .wait_for_pod(id, WaitFor::SshReady, &fast_wait(), |_| {})
        .await
        .expect("pod becomes reachable")
}

#[tokio::test]
async fn create_stop_start_terminate_lifecycle() {
    let sim = Simulator::builder()
        .ssh_endpoints(SshEndpoints::Rotating(vec![
            "127.0.0.1:2201".parse().expect("addr"),
            "127.0.0.1:2202".parse().expect("addr"),
        ]))
        .start()
        .await
        .expect("simulator");
    let client = sim.client().expect("client");

    let created = client.create_pod(&blender_pod()).await.expect("create");
    assert_eq!(created.status, PodStatus::Provisioning);
    assert!(created.ssh.direct.is_none() && created.runtime.is_none());
    let mut statuses = Vec::new();
    let running = client
        .wait_for_pod(&created.id, WaitFor::SshReady, &fast_wait(), |event| {
            if let runpod_api::WaitEvent::StatusChanged { to, .. } = event {
                statuses.push(to.clone());
            }
        })
        .await
        .expect("running");
    assert_eq!(statuses.last(), Some(&PodStatus::Running));
    assert_eq!(running.ssh_endpoint().map(|ssh| ssh.port), Some(2201));
    assert!(
        (running.cost_per_hour() - 0.27).abs() < 1e-9,
        "A5000 secure price"
    );

    client.stop_pod(&created.id).await.expect("stop");
    let stopped = client
        .wait_for_pod(&created.id, WaitFor::Stopped, &fast_wait(), |_| {})
        .await
        .expect("stopped");
    assert!(stopped.cost.abs() < f64::EPSILON);
    assert!(stopped.ssh.direct.is_none());

    client.start_pod(&created.id).await.expect("start");
    let again = ready(&client, &created.id).await;
    assert_eq!(
        again.ssh_endpoint().map(|ssh| ssh.port),
        Some(2202),
        "a new port per start"
    );

    client.terminate_pod(&created.id).await.expect("terminate");
    let gone = client.get_pod(&created.id).await.expect_err("gone");
    assert!(gone.is_not_found());
    assert!(
        client
            .list_pods(&ListPodsParams::default())
            .await
            .expect("list")
            .is_empty()
    );
}

#[tokio::test]
async fn the_stale_port_window_is_visible_after_a_restart() {
    let sim = Simulator::start().await.expect("simulator");
    let client = sim.client().expect("client");
    let pod = client.create_pod(&blender_pod()).await.expect("create");
    let first = ready(&client, &pod.id).await.ssh_endpoint().expect("ssh");
    sim.set_faults(|faults| faults.stale_ssh_port_for = Duration::from_millis(400));
    let restarted = std::time::Instant::now();
    client.restart_pod(&pod.id).await.expect("restart");
    let stale = ready(&client, &pod.id).await.ssh_endpoint().expect("ssh");
    assert_eq!(stale, first, "the API still reports the previous port");
    // Poll for the new port (bounded) rather than sleeping past the window.
    let fresh = loop {
        let now = client
            .get_pod(&pod.id)
            .await
            .expect("pod")
            .ssh_endpoint()
            .expect("ssh");
        if now.port != first.port {
            break now;
        }
        assert!(
            restarted.elapsed() < Duration::from_secs(10),
            "the stale port never went away"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_ne!(fresh.port, first.port, "then the new one");
    assert!(
        restarted.elapsed() >= Duration::from_millis(400),
        "the stale window lasted its configured 400 ms, not {:?}",
        restarted.elapsed()
    );
}

#[tokio::test]
async fn capacity_faults_give_typed_errors() {
    let sim = Simulator::start().await.expect("simulator");
    let client = sim.client().expect("client");
    sim.set_faults(|faults| faults.no_capacity_next_create = 1);
    let error = client
        .create_pod(&blender_pod())
        .await
        .expect_err("no capacity");
    assert_eq!(error.kind(), Some(&ApiErrorKind::NoCapacity));

    let pod = client
        .create_pod(&blender_pod())
        .await
        .expect("then created");
    ready(&client, &pod.id).await;
    client.stop_pod(&pod.id).await.expect("stop");
    sim.set_faults(|faults| faults.no_free_gpu_next_start = 1);
    let error = client.start_pod(&pod.id).await.expect_err("host full");
    assert_eq!(error.kind(), Some(&ApiErrorKind::HostOutOfGpus));
    client
        .start_pod(&pod.id)
        .await
        .expect("starts once the GPU is free");
}

#[tokio::test]
async fn invalid_actions_get_409_with_the_allowed_actions() {
    let sim = Simulator::start().await.expect("simulator");
    let client = sim.client().expect("client");
    let pod = client.create_pod(&blender_pod()).await.expect("create");
    ready(&client, &pod.id).await;
    let error = client
        .start_pod(&pod.id)
        .await
        .expect_err("already running");
    match error.kind() {
        Some(ApiErrorKind::InvalidAction {
            status, allowed, ..
        }) => {
            assert_eq!(status.as_ref(), Some(&PodStatus::Running));
            assert_eq!(allowed.len(), 3);
        }
        other => panic!("expected an invalid action, got {other:?}"),
    }
}

#[tokio::test]
async fn retries_recover_from_429_and_5xx_bursts() {
    let sim = Simulator::start().await.expect("simulator");
    let client = sim.client().expect("client");
    sim.set_faults(|faults| {
        faults.rate_limit_next = 2;
        faults.retry_after_secs = 0;
    });
    client
        .list_pods(&ListPodsParams::default())
        .await
        .expect("recovers from 429s");
    sim.set_faults(|faults| {
        faults.server_error_next = 3;
        faults.server_error_status = 502;
    });
    client
        .list_pods(&ListPodsParams::default())
        .await
        .expect("recovers from 5xx");
    assert_eq!(sim.faults().server_error_next, 0);

    sim.set_faults(|faults| faults.server_error_next = 10);
    let error = client
        .list_pods(&ListPodsParams::default())
        .await
        .expect_err("budget exhausted");
    assert!(error.is_server_error());
    assert_eq!(sim.faults().server_error_next, 6, "four attempts in all");
}

#[tokio::test]
async fn slow_answers_hit_the_client_timeout() {
    let sim = Simulator::start().await.expect("simulator");
    sim.set_faults(|faults| faults.slow = Duration::from_millis(500));
    let client = Client::builder()
        .base_url(sim.base_url())
        .api_key(sim.api_key())
        .request_timeout(Duration::from_millis(100))
        .retry_policy(RetryPolicy::none())
        .build()
        .expect("client");
    let error = client
        .list_pods(&ListPodsParams::default())
        .await
        .expect_err("too slow");
    assert!(error.is_timeout(), "{error:?}");
}

#[tokio::test]
async fn a_pod_that_fails_to_boot_ends_the_wait() {
    let sim = Simulator::start().await.expect("simulator");
    let client = sim.client().expect("client");
    sim.set_faults(|faults| faults.error_next_boot = 1);
    let pod = client.create_pod(&blender_pod()).await.expect("create");
    let error = client
        .wait_for_pod(&pod.id, WaitFor::SshReady, &fast_wait(), |_| {})
        .await
        .expect_err("boot fails");
    assert!(
        matches!(
            error,
            Error::WaitAborted {
                status: PodStatus::Error,
                ..
            }
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn insufficient_balance_and_bad_keys() {
    let sim = Simulator::start().await.expect("simulator");
    sim.set_faults(|faults| faults.insufficient_balance = true);
    let error = sim
        .client()
        .expect("client")
        .create_pod(&blender_pod())
        .await
        .expect_err("402");
    assert!(error.is_insufficient_balance());

    let wrong = Client::builder()
        .base_url(sim.base_url())
        .api_key("not-the-key")
        .build()
        .expect("client");
    let error = wrong
        .list_pods(&ListPodsParams::default())
        .await
        .expect_err("401");
    assert!(error.is_unauthorized());
}

#[tokio::test]
async fn unknown_fields_and_broken_rules_are_refused_like_the_real_api() {
    let sim = Simulator::start().await.expect("simulator");
    let http = reqwest::Client::new();
    let send = |body: serde_json::Value| {
        http.post(format!("{}/pods", sim.base_url()))
            .bearer_auth(sim.api_key())
            .json(&body)
            .send()
    };
    let unknown = send(serde_json::json!({
        "name": "x", "image": "i", "gpu": {"id": "NVIDIA RTX A5000"}, "supportPublicIp": true
    }))
    .await
    .expect("answer");
    assert_eq!(unknown.status(), 422);
    let problem: serde_json::Value = unknown.json().await.expect("problem json");
    assert_eq!(
        problem["errors"][0],
        "supportPublicIp: additional property not allowed"
    );
    // The spec's `CreateGpuConfig` is closed too: host filters are not part of it.
    let gpu_filter = send(serde_json::json!({
        "name": "x", "image": "i", "gpu": {"id": "NVIDIA RTX A5000", "minRamPerGpu": 32}
    }))
    .await
    .expect("answer");
    assert_eq!(gpu_filter.status(), 422);
    let problem: serde_json::Value = gpu_filter.json().await.expect("problem json");
    assert_eq!(
        problem["errors"][0],
        "gpu.minRamPerGpu: additional property not allowed"
    );
    let both = send(serde_json::json!({
        "name": "x", "image": "i", "gpu": {"id": "NVIDIA RTX A5000"}, "cpu": {"id": "c", "vcpuCount": 2}
    }))
    .await
    .expect("answer");
    assert_eq!(both.status(), 400);
    let unauthenticated = http
        .get(format!("{}/pods", sim.base_url()))
        .send()
        .await
        .expect("answer");
    assert_eq!(unauthenticated.status(), 401);
}

#[tokio::test]
async fn ssh_keys_logs_catalog_and_billing() {
    let sim = Simulator::start().await.expect("simulator");
    let client = sim.client().expect("client");
    let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHostKeyForSimulatorTests me@laptop";
    client.add_ssh_key(key).await.expect("register");
    client.add_ssh_key(key).await.expect("idempotent");
    assert_eq!(sim.ssh_keys(), [key]);
    let bad = client.set_ssh_keys(&SshKeys::new(["nonsense"])).await;
    assert!(bad.is_err());

    let pod = client.create_pod(&blender_pod()).await.expect("create");
    ready(&client, &pod.id).await;
    let mut logs = client
        .pod_logs(&pod.id, &LogParams::default().source(LogSource::Container))
        .await
        .expect("logs");
    let line = tokio::time::timeout(Duration::from_secs(5), logs.next())
        .await
        .expect("a line arrives")
        .expect("stream open")
        .expect("valid line");
    assert!(line.line.contains("sshd"), "{line:?}");
    assert!(line.event_id.is_some());
    drop(logs);

    let gpus = client
        .list_gpu_types(&runpod_api::params::GpuCatalogParams::default())
        .await
        .expect("gpus");
    assert!(gpus.iter().any(|gpu| gpu.id == "NVIDIA RTX A5000"));
    let billing = client
        .pod_billing(&runpod_api::params::BillingParams::default().pod_id(pod.id.as_str()))
        .await
        .expect("billing");
    assert_eq!(billing.records.len(), 1);
    assert!(billing.metadata.totals.total_amount >= 0.0);
}

#[tokio::test]
async fn realistic_timings_are_available() {
    let sim = Simulator::builder()
        .timings(Timings::realistic())
        .start()
        .await
        .expect("simulator");
    let client = sim.client().expect("client");
    let pod = client.create_pod(&blender_pod()).await.expect("create");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let pod = client.get_pod(&pod.id).await.expect("pod");
    assert_eq!(pod.status, PodStatus::Provisioning, "20 s of provisioning");
}

#[test]
fn the_binary_prints_its_url_serves_and_stops_on_sigterm() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_runpod-sim"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--ssh-endpoint",
            "127.0.0.1:2222",
        ])
        .env("RUNPOD_SIM_API_KEY", "k")
        .stdout(Stdio::piped())
        .spawn()
        .expect("runpod-sim starts");
    let stdout = child.stdout.take().expect("stdout piped");
    let mut first = String::new();
    BufReader::new(stdout)
        .read_line(&mut first)
        .expect("reads the url line");
    let url = first.trim().to_owned();
    assert!(
        url.starts_with("http://127.0.0.1:") && url.ends_with("/v2"),
        "{url:?}"
    );

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    #[expect(
        clippy::disallowed_methods,
        reason = "a sync test drives its own small runtime"
    )]
    let answer = runtime.block_on(async {
        let http = reqwest::Client::new();
        let pods = http
            .get(format!("{url}/pods"))
            .header("authorization", "Bearer k")
            .send()
            .await?;
        let status = pods.status();
        let body = pods.text().await?;
        let faults = http
            .put(format!("{url}/../_sim/faults"))
            .header("authorization", "Bearer k")
            .body(r#"{"rateLimitNext": 1}"#)
            .send()
            .await?
            .status();
        Ok::<_, reqwest::Error>((status, body, faults))
    });
    let (status, body, faults) = answer.expect("the simulator answers");
    assert_eq!(status, 200);
    assert_eq!(body, r#"{"pods":[]}"#);
    assert_eq!(faults, 200);

    let pid = child.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "runpod-sim did not stop"
        );
        #[expect(clippy::disallowed_methods, reason = "a bounded poll in a sync test")]
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success(), "stops cleanly on SIGTERM: {exit:?}");
}
