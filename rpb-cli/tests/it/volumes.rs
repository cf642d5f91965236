//! `rpb gpus` and `rpb volume` against the simulator: ranking, availability that follows the
//! hosts, the data-center choice, `.env` bookkeeping, refusals; and `stop`'s idle cost line.

use std::time::Duration;

use runpod_api::models::{CreatePodRequest, GpuRequest, Mounts};

use crate::cli::{simulator, workspace_for};

fn ids(run: &crate::support::Run) -> Vec<String> {
    run.json()["gpus"]
        .as_array()
        .expect("gpus")
        .iter()
        .map(|gpu| gpu["id"].as_str().expect("id").to_owned())
        .collect()
}

#[tokio::test]
async fn gpus_rank_cheapest_available_first_and_follow_the_hosts() {
    let sim = simulator().await;
    let ws = workspace_for(&sim);
    let run = ws.rpb(&["gpus", "--json"]).await.success();
    ws.insta()
        .bind(|| insta::assert_json_snapshot!("gpus", run.json()));
    assert_eq!(
        ids(&run),
        [
            "NVIDIA RTX A5000",
            "NVIDIA RTX A6000",
            "NVIDIA GeForce RTX 4090"
        ]
    );
    let run = ws
        .rpb(&["gpus", "--min-vram", "32", "--json"])
        .await
        .success();
    assert_eq!(ids(&run), ["NVIDIA RTX A6000"]);

    // Other customers rent every A5000 in SIM-LOCAL-1: there it goes last.
    for host in sim.hosts() {
        if host.gpu_type == "NVIDIA RTX A5000" && host.data_center == "SIM-LOCAL-1" {
            assert!(sim.set_free_gpus(&host.id, 0));
        }
    }
    let run = ws
        .rpb(&["gpus", "--datacenter", "SIM-LOCAL-1", "--json"])
        .await
        .success();
    assert_eq!(
        ids(&run),
        [
            "NVIDIA RTX A6000",
            "NVIDIA GeForce RTX 4090",
            "NVIDIA RTX A5000"
        ]
    );
    assert_eq!(run.json()["gpus"][2]["available"], false);
    // Still available in the other data center, so first when all count.
    let run = ws.rpb(&["gpus"]).await.success();
    assert!(
        run.stdout
            .lines()
            .nth(2)
            .is_some_and(|line| line.contains("RTX A5000")),
        "{}",
        run.stdout
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn volume_create_chooses_the_data_center_and_says_why() {
    let sim = simulator().await;
    let mut ws = workspace_for(&sim);
    // The workspace wants an A6000; SIM-LOCAL-1 has none free, so SIM-LOCAL-2 it is.
    ws.set("RUNPOD_GPU_TYPE", "NVIDIA RTX A6000");
    for host in sim.hosts() {
        if host.gpu_type == "NVIDIA RTX A6000" && host.data_center == "SIM-LOCAL-1" {
            sim.set_free_gpus(&host.id, 0);
        }
    }
    let run = ws
        .rpb(&["volume", "create", "--size", "50", "--use", "--json"])
        .await
        .success();
    let json = run.json();
    assert_eq!(json["volume"]["dataCenter"], "SIM-LOCAL-2", "{json}");
    let reason = json["data_center_reason"].as_str().unwrap();
    assert!(reason.contains("NVIDIA RTX A6000"), "{reason}");
    assert!(reason.contains("HIGH"), "{reason}");
    assert!((json["cost_per_month"].as_f64().unwrap() - 3.5).abs() < 1e-9);
    let id = json["volume"]["id"].as_str().unwrap().to_owned();
    let env = std::fs::read_to_string(ws.root().join(".env")).unwrap();
    assert!(
        env.contains(&format!("RUNPOD_NETWORK_VOLUME_ID={id}")),
        "{env}"
    );

    // Given explicitly, the reason says so; the human text tells the cost.
    let run = ws
        .rpb(&[
            "volume",
            "create",
            "--size",
            "1000",
            "--datacenter",
            "SIM-LOCAL-1",
            "--name",
            "big",
        ])
        .await
        .success();
    assert!(
        run.stdout.contains("given with --datacenter"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("$50.00/month"), "{}", run.stdout);

    let run = ws.rpb(&["volume", "list", "--json"]).await.success();
    let volumes = run.json()["volumes"].as_array().unwrap().clone();
    assert_eq!(volumes.len(), 2);
    assert!(
        volumes
            .iter()
            .any(|v| v["id"] == id.as_str() && v["workspace"] == true)
    );
    assert!((run.json()["cost_per_month"].as_f64().unwrap() - 53.5).abs() < 1e-9);
    // RunPod's billing (the simulator bills from each volume's creation) gives the real
    // charges: tiny after a moment, never negative, and per volume.
    let billed = run.json()["billed_last_30_days"]
        .as_f64()
        .expect("billing answered");
    assert!((0.0..0.01).contains(&billed), "{billed}");
    assert!(
        volumes
            .iter()
            .all(|v| v["billed_last_30_days"].as_f64().is_some())
    );
    let run = ws.rpb(&["volume", "list"]).await.success();
    assert!(
        run.stdout
            .contains("; RunPod billed $0.00 for them in the last 30 days"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("(this workspace's)"), "{}", run.stdout);
    assert!(
        run.stdout.contains("about $53.50/month in all"),
        "{}",
        run.stdout
    );

    // No data center with the GPU free: a clear refusal, nothing created.
    for host in sim.hosts() {
        if host.gpu_type == "NVIDIA RTX A6000" {
            sim.set_free_gpus(&host.id, 0);
        }
    }
    let run = ws.rpb(&["volume", "create", "--size", "20"]).await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("--datacenter"), "{}", run.stderr);
    sim.shutdown().await;
}

#[tokio::test]
async fn volume_sizes_out_of_range_are_refused_before_any_request() {
    let sim = simulator().await;
    let ws = workspace_for(&sim);
    for size in ["9", "4097"] {
        let run = ws.rpb(&["volume", "create", "--size", size]).await;
        assert_eq!(run.code, 1, "{run:?}");
        assert!(
            run.stderr.contains("10 to 4096 GB"),
            "{size}: {}",
            run.stderr
        );
    }
    assert!(
        sim.client()
            .unwrap()
            .list_network_volumes()
            .await
            .unwrap()
            .is_empty()
    );
    sim.shutdown().await;
}

/// `rpb volume create --use` of 10 GB in SIM-LOCAL-1; returns the volume id.
async fn workspace_volume(ws: &crate::support::Workspace) -> String {
    let run = ws
        .rpb(&[
            "volume",
            "create",
            "--size",
            "10",
            "--datacenter",
            "SIM-LOCAL-1",
            "--use",
            "--json",
        ])
        .await
        .success();
    run.json()["volume"]["id"]
        .as_str()
        .expect("volume id")
        .to_owned()
}

#[tokio::test]
async fn volume_delete_is_refused_while_a_pod_mounts_it() {
    let sim = simulator().await;
    let ws = workspace_for(&sim);
    let id = workspace_volume(&ws).await;
    let client = sim.client().unwrap();
    let pod = client
        .create_pod(
            &CreatePodRequest::new("on-volume")
                .image("runpod/pytorch")
                .gpu(GpuRequest::new("NVIDIA RTX A5000"))
                .data_center("SIM-LOCAL-1")
                .mounts(Mounts::network(id.clone(), "/runpod")),
        )
        .await
        .expect("a pod on the volume");

    // The workspace's own volume needs --force.
    let run = ws.rpb(&["volume", "delete", &id]).await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("--force"), "{}", run.stderr);
    assert!(run.stderr.contains("workspace's volume"), "{}", run.stderr);

    // Forced, the API still refuses while the pod mounts it: the error names the pod.
    let run = ws.rpb(&["volume", "delete", &id, "--force"]).await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains(&format!("pod {} mounts it", pod.id)),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("terminate the pod first"),
        "{}",
        run.stderr
    );

    client.terminate_pod(&pod.id).await.expect("terminate");
    crate::support::eventually(Duration::from_secs(10), "pod gone", || {
        sim.pod(pod.id.as_str())
            .is_none_or(|pod| pod.status == runpod_api::PodStatus::Terminated)
    })
    .await;
    let run = ws
        .rpb(&["volume", "delete", &id, "--force", "--json"])
        .await
        .success();
    assert_eq!(run.json()["workspace_cleared"], true);
    let env = std::fs::read_to_string(ws.root().join(".env")).unwrap();
    assert!(!env.contains(&id), "{env}");
    assert!(client.list_network_volumes().await.unwrap().is_empty());
    sim.shutdown().await;
}

#[tokio::test]
async fn stop_tells_what_the_stopped_volume_still_costs() {
    let sim = simulator().await;
    let ws = workspace_for(&sim);
    let client = sim.client().unwrap();
    let pod = client
        .create_pod(
            &CreatePodRequest::new("with-disk")
                .image("runpod/pytorch")
                .gpu(GpuRequest::new("NVIDIA RTX A5000"))
                .mounts(Mounts::persistent(50, "/runpod"))
                .port("22/tcp"),
        )
        .await
        .expect("create");
    let id = pod.id.to_string();
    crate::support::eventually(Duration::from_secs(10), "pod running", || {
        sim.pod(&id)
            .is_some_and(|pod| pod.status == runpod_api::PodStatus::Running)
    })
    .await;
    let run = ws.rpb(&["stop", "--pod-id", &id]).await.success();
    assert!(
        run.stdout.contains(
            "$0.00/h for the GPU; its 50 GB volume still costs about $10.00/month ($0.014/h) \
             while stopped (estimate)"
        ),
        "{}",
        run.stdout
    );
    let run = ws
        .rpb(&["status", "--pod-id", &id, "--json"])
        .await
        .success();
    let idle = &run.json()["idle_storage"];
    assert_eq!(idle["volume_gb"], 50);
    assert!((idle["cost_per_month"].as_f64().unwrap() - 10.0).abs() < 1e-9);
    assert_eq!(idle["estimate"], true);

    // The price table follows the workspace's setting.
    let mut ws = ws;
    ws.set("RPB_PRICE_VOLUME_STOPPED_GB_MONTH", "0.3");
    let run = ws.rpb(&["status", "--pod-id", &id]).await.success();
    assert!(run.stdout.contains("about $15.00/month"), "{}", run.stdout);
    sim.shutdown().await;
}

/// A pod on a network volume whose host is full, in a data center where no allowed GPU type is
/// free: `start` tries each type in order, creates nothing, leaves the pod as it was, and says
/// what it tried and what to do.
#[tokio::test]
async fn a_move_with_no_capacity_anywhere_leaves_the_pod_as_it_was() {
    let sim = simulator().await;
    let mut ws = workspace_for(&sim);
    let volume = workspace_volume(&ws).await;
    let client = sim.client().unwrap();
    let pod = client
        .create_pod(
            &CreatePodRequest::new("on-volume")
                .image("runpod/pytorch")
                .gpu(GpuRequest::new("NVIDIA RTX A5000"))
                .data_center("SIM-LOCAL-1")
                .port("22/tcp")
                .mounts(Mounts::network(volume.clone(), "/runpod")),
        )
        .await
        .expect("a pod on the volume");
    let pod_id = pod.id.to_string();
    crate::support::eventually(Duration::from_secs(10), "pod running", || {
        sim.pod(&pod_id)
            .is_some_and(|pod| pod.status == runpod_api::PodStatus::Running)
    })
    .await;
    client.stop_pod(&pod.id).await.expect("stop");
    // Its host and every other A5000 and A6000 host of the data center are rented out.
    for host in sim.hosts() {
        if host.data_center == "SIM-LOCAL-1"
            && ["NVIDIA RTX A5000", "NVIDIA RTX A6000"].contains(&host.gpu_type.as_str())
        {
            assert!(sim.set_free_gpus(&host.id, 0));
        }
    }
    ws.set("RUNPOD_POD_ID", pod_id.clone());
    let run = ws
        .rpb(&[
            "start",
            "--gpu-type",
            "NVIDIA RTX A6000",
            "--gpu-type",
            "NVIDIA RTX A5000",
        ])
        .await;
    assert_eq!(run.code, 4, "{run:?}");
    for expected in [
        format!("pod {pod_id} cannot start (its host has no free GPU)"),
        format!("no new pod could be made for network volume {volume} in data center SIM-LOCAL-1"),
        "tried NVIDIA RTX A6000: no free gpu; NVIDIA RTX A5000: no free gpu".to_owned(),
        format!("No pod was created, and pod {pod_id} was left as it was"),
        "rpb gpus --datacenter SIM-LOCAL-1".to_owned(),
    ] {
        assert!(
            run.stderr.contains(&expected),
            "{expected:?} in {}",
            run.stderr
        );
    }
    let pods = sim.pods();
    assert_eq!(pods.len(), 1, "no pod was created: {pods:?}");
    assert_eq!(pods[0].status, runpod_api::PodStatus::Exited);
    let env = std::fs::read_to_string(ws.root().join(".env")).unwrap();
    assert!(
        !env.contains("RUNPOD_POD_ID="),
        "the workspace still names no other pod: {env}"
    );

    // A 5xx storm on the create of the replacement (free GPUs again, but the service fails).
    // A 5xx on a create is ambiguous (the pod may exist), so the client never creates again:
    // it looks the pod up by name, and must not take the stopped old pod of the same name for
    // it. Finding none, the move fails: nothing is created, and the error names the step and
    // says the pod was left as it was.
    for host in sim.hosts() {
        if host.data_center == "SIM-LOCAL-1" && host.gpu_type == "NVIDIA RTX A6000" {
            assert!(sim.set_free_gpus(&host.id, 8));
        }
    }
    sim.set_faults(|faults| faults.server_error_next_create = 10);
    let run = ws.rpb(&["start", "--gpu-type", "NVIDIA RTX A6000"]).await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains(&format!(
            "moving pod {pod_id} to another host failed: creating a pod with NVIDIA RTX A6000 in \
             SIM-LOCAL-1 failed, so pod {pod_id} was left as it was and no new pod runs"
        )),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("503"), "{}", run.stderr);
    assert_eq!(
        sim.faults().server_error_next_create,
        9,
        "one create, never repeated"
    );
    sim.set_faults(|faults| faults.server_error_next_create = 0);
    assert_eq!(sim.pods().len(), 1, "nothing created");
    assert_eq!(sim.pods()[0].status, runpod_api::PodStatus::Exited);

    // A comma inside one --gpu-type is a usage mistake, said before anything happens.
    let run = ws
        .rpb(&["start", "--gpu-type", "NVIDIA RTX A6000,NVIDIA RTX A5000"])
        .await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("repeat the flag"), "{}", run.stderr);
    sim.shutdown().await;
}
