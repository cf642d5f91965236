//! The render farm on the embedded local pod: `rpb farm up` makes two pods on one network
//! volume a Slurm cluster (real munged, slurmctld and slurmd), `rpb render --farm` renders a
//! real scene over both nodes, a node whose pod dies mid-job has its tasks requeued onto the
//! other, `farm up` replaces it, and `farm down` leaves no process.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use blender_session::local_pod::LocalPod;
use runpod_api::PodId;

use crate::support::{Workspace, eventually, local_pod_workspace, serial};

const SLOW: Duration = Duration::from_secs(400);

/// Saves a small animated scene (a cube moving over 8 frames) as `path`.
async fn animated_scene(path: &Path) {
    test_support::scenes::save_animated_cube(
        Path::new(blender_session::local_pod::BLENDER),
        path,
        8,
        SLOW,
    )
    .await
    .expect("Blender saves the scene");
}

fn render_args<'a>(samples: &'a str, size: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "render",
        "--farm",
        "--project",
        "farmed",
        "--blend",
        "scene.blend",
        "--frames",
        "1-8",
        "--engine",
        "cycles",
        "--device",
        "cpu",
        "--samples",
        samples,
        "--resolution",
        size,
        "--chunk",
        "2",
    ];
    args.extend_from_slice(extra);
    args
}

/// Frame → node, from a render's JSON; every frame local and its file there.
fn frames_by_node(json: &serde_json::Value) -> BTreeMap<i64, String> {
    let frames = json["frames"].as_array().expect("frames");
    frames
        .iter()
        .map(|frame| {
            let path = frame["path"].as_str().expect("a local path");
            let bytes = std::fs::read(path).expect("the frame is local");
            assert!(bytes.starts_with(b"\x89PNG"), "{path} is a PNG");
            (
                frame["frame"].as_i64().expect("frame"),
                frame["node"].as_str().expect("node").to_owned(),
            )
        })
        .collect()
}

/// How often each frame was recorded as rendered in the job's records on the volume.
fn done_records(job_dir: &Path) -> BTreeMap<i64, usize> {
    let events = std::fs::read_to_string(job_dir.join("events.jsonl")).unwrap_or_default();
    let mut counts = BTreeMap::new();
    for line in events.lines() {
        let Ok(record) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if record["event"] == "done" {
            *counts
                .entry(record["frame"].as_i64().unwrap_or(-1))
                .or_default() += 1;
        }
    }
    counts
}

/// Runs `rpb ARGS` (bounded) and keeps what it printed, for the secret scan.
async fn rpb(ws: &Workspace, outputs: &mut Vec<String>, args: &[&str]) -> crate::support::Run {
    let run = ws.rpb_within(SLOW, args).await;
    outputs.push(format!("{}\n{}", run.stdout, run.stderr));
    run
}

/// Processes whose command line or working folder names `needle`.
fn processes_with(needle: &str) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let command = std::fs::read(entry.path().join("cmdline"))
            .map(|bytes| String::from_utf8_lossy(&bytes).replace('\0', " "))
            .unwrap_or_default();
        let cwd = std::fs::read_link(entry.path().join("cwd"))
            .map(|path| path.display().to_string())
            .unwrap_or_default();
        if command.contains(needle) || cwd.contains(needle) {
            found.push((pid, command));
        }
    }
    found
}

/// Terminates `node`'s pod through the API once Blender there starts the first frame of its
/// task of the job in `job_dir` (the task's log says so); that task's number.
async fn kill_once_rendering(client: &runpod_api::Client, job_dir: &Path, node: &str) -> u64 {
    eventually(
        Duration::from_secs(120),
        "a frame starts on the node",
        || {
            task_on_node(job_dir, node).is_some_and(|task| {
                std::fs::read_to_string(job_dir.join("tasks").join(format!("{task}.log")))
                    .is_ok_and(|log| log.contains("start attempt"))
            })
        },
    )
    .await;
    client
        .terminate_pod(&PodId::new(node))
        .await
        .expect("the node's pod is terminated");
    task_on_node(job_dir, node).expect("the node's task")
}

/// The array task of `job_dir` that ran on `node` (its Slurm output names the node).
fn task_on_node(job_dir: &Path, node: &str) -> Option<u64> {
    std::fs::read_dir(job_dir.join("tasks"))
        .into_iter()
        .flatten()
        .flatten()
        .find_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let task = name.strip_suffix(".out")?.parse().ok()?;
            std::fs::read_to_string(entry.path())
                .ok()?
                .contains(&format!("on node {node}:"))
                .then_some(task)
        })
}

fn pod_ids(sim: &runpod_api::sim::Simulator) -> std::collections::BTreeSet<String> {
    sim.pods()
        .into_iter()
        .map(|pod| pod.id.as_str().to_owned())
        .collect()
}

fn nodes_of(json: &serde_json::Value) -> Vec<String> {
    json["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|node| node["pod_id"].as_str().expect("pod_id").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_farm_of_two_local_pods_renders_survives_a_lost_node_and_goes_down() {
    let _serial = serial().await;
    let pod = LocalPod::builder().start().await.expect(
        "the local pod starts (openssh-server, blender, xvfb, x11vnc, novnc, websockify; \
         the farm needs slurmctld slurmd slurm-client munge)",
    );
    let ws: Workspace = local_pod_workspace(&pod, "farm-vnc");
    let mut outputs = Vec::new();
    let volume = rpb(
        &ws,
        &mut outputs,
        &[
            "volume",
            "create",
            "--size",
            "10",
            "--datacenter",
            "SIM-LOCAL-1",
            "--use",
            "--json",
        ],
    )
    .await
    .success()
    .json()["volume"]["id"]
        .as_str()
        .expect("volume id")
        .to_owned();

    // Up: two pods on the volume, Slurm sees both.
    let up = rpb(&ws, &mut outputs, &["farm", "up", "--nodes", "2", "--json"])
        .await
        .success();
    let up = up.json();
    let nodes = nodes_of(&up["status"]);
    assert_eq!(nodes.len(), 2, "{up}");
    assert_eq!(up["created"].as_array().map(Vec::len), Some(2), "{up}");
    for node in up["status"]["nodes"].as_array().expect("nodes") {
        assert_eq!(node["pod_status"], "RUNNING", "{up}");
        assert!(
            matches!(
                node["slurm_state"].as_str(),
                Some("idle" | "mixed" | "allocated")
            ),
            "{up}"
        );
    }
    let sim = pod.simulator();
    for id in &nodes {
        let pod = sim.pod(id).expect("the node's pod");
        assert_eq!(pod.mounts.network[0].volume_id, volume);
        assert!(pod.global_networking.enabled, "global networking on {id}");
    }
    // The workspace's own pod is not a farm node.
    let env = std::fs::read_to_string(ws.root().join(".env")).expect(".env");
    assert!(!env.contains("RUNPOD_POD_ID"), "{env}");
    let key_path = ws.state_dir().join(blender_session::FARM_KEY_FILE);
    let key = std::fs::read(&key_path).expect("the munge key");
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&key_path)
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let farm_run = pod.pod_env()["RPB_FARM_RUN"].clone();
        let on_pod = Path::new(&farm_run).join("munge.key");
        assert_eq!(std::fs::read(&on_pod).expect("the key on the pods"), key);
        let mode = std::fs::metadata(&on_pod)
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o400, "the key is 0400 on the pods");
    }

    // While the farm runs, neither the munge key nor the API key is in any process's
    // arguments.
    let api_key = secrecy::ExposeSecret::expose_secret(pod.api_key()).to_owned();
    for (pid, argv) in all_argv() {
        assert!(
            !argv.windows(32).any(|w| w == &key[..32]),
            "the munge key is in the arguments of process {pid}"
        );
        assert!(
            !String::from_utf8_lossy(&argv).contains(&api_key),
            "the API key is in the arguments of process {pid}"
        );
    }

    // The farm's daemons listen on loopback only (slurmctld's port and each slurmd's).
    let record = &up["status"]["record"];
    let mut farm_ports = vec![record["controller_port"].as_u64().expect("controller port")];
    farm_ports.extend(
        record["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .filter_map(|node| node["port"].as_u64()),
    );
    let listening = test_support::net::listeners();
    for port in farm_ports {
        let rows: Vec<&(String, u16)> = listening
            .iter()
            .filter(|(_, p)| u64::from(*p) == port)
            .collect();
        assert!(!rows.is_empty(), "something listens on farm port {port}");
        assert!(
            rows.iter()
                .all(|(addr, _)| test_support::net::is_loopback(addr)),
            "farm port {port} listens beyond loopback: {rows:?}"
        );
    }

    // Up again: nothing changes.
    let again = rpb(&ws, &mut outputs, &["farm", "up", "--nodes", "2", "--json"])
        .await
        .success();
    assert_eq!(again.json()["unchanged"], true, "{}", again.stdout);

    // A render over both nodes.
    let volume_dir = pod.volume_dir(&volume).expect("volume dir");
    animated_scene(&volume_dir.join("scene.blend")).await;
    let rendered = rpb(&ws, &mut outputs, &render_args("1", "32x24", &["--json"]))
        .await
        .success();
    let json = rendered.json();
    assert_eq!(json["state"], "done", "{json}");
    let by_node = frames_by_node(&json);
    assert_eq!(
        by_node.keys().copied().collect::<Vec<_>>(),
        (1..=8).collect::<Vec<_>>()
    );
    for node in &nodes {
        assert!(
            by_node.values().any(|n| n == node),
            "node {node} rendered some frames: {by_node:?}"
        );
    }
    let job_id = json["job_id"].as_str().expect("job id").to_owned();
    let job_dir = volume_dir.join("rpb").join("jobs").join(&job_id);
    assert!(done_records(&job_dir).values().all(|count| *count == 1));

    // Status: both nodes, their cost.
    let status = rpb(&ws, &mut outputs, &["farm", "status", "--json"])
        .await
        .success()
        .json();
    assert_eq!(nodes_of(&status), nodes);
    let text = rpb(&ws, &mut outputs, &["farm", "status"])
        .await
        .success()
        .stdout;
    assert!(
        text.contains(&format!(
            "farm on network volume {volume} (SIM-LOCAL-1): 2 nodes"
        )) && text.contains(&format!(
            "{} (controller)  pod RUNNING  slurm idle",
            nodes[0]
        )) && text.contains("tasks: 0 running, 0 waiting"),
        "{text}"
    );
    assert!(
        status["cost_per_hour"].as_f64().unwrap_or_default() > 0.0,
        "{status}"
    );

    // Options the file cannot honour: the tasks' driver refuses the job, and rpb says so and
    // ends the other tasks.
    let refused = rpb(
        &ws,
        &mut outputs,
        &render_args("1", "32x24", &["--camera", "NoSuchCamera", "--json"]),
    )
    .await;
    assert_eq!(refused.code, 1, "{}", refused.stdout);
    assert!(
        refused.stderr.contains("was refused") && refused.stderr.contains("NoSuchCamera"),
        "{}",
        refused.stderr
    );
    let after = rpb(&ws, &mut outputs, &["farm", "status", "--json"])
        .await
        .success()
        .json();
    assert_eq!(after["tasks"].as_array().map(Vec::len), Some(0), "{after}");

    // A second job, with frames of a second or so; the second node's pod dies while its
    // first task runs.
    let started = rpb(
        &ws,
        &mut outputs,
        &render_args("96", "256x192", &["--detach", "--json"]),
    )
    .await
    .success();
    let second = started.json()["job_id"]
        .as_str()
        .expect("job id")
        .to_owned();
    let lost = nodes[1].clone();
    let second_dir = volume_dir.join("rpb").join("jobs").join(&second);
    let client = sim.client().expect("client");
    let lost_task = kill_once_rendering(&client, &second_dir, &lost).await;
    let followed = rpb(&ws, &mut outputs, &["render", "attach", &second, "--json"])
        .await
        .success();
    let json = followed.json();
    assert_eq!(json["state"], "done", "{json}");
    let by_node = frames_by_node(&json);
    assert_eq!(by_node.len(), 8, "{json}");
    assert!(
        json["farm"]["lost_nodes"][&lost].is_string(),
        "the report names the lost node: {json}"
    );
    assert!(
        json["farm"]["requeued"]
            .as_array()
            .is_some_and(|tasks| tasks.iter().any(|task| task.as_u64() == Some(lost_task))),
        "the lost node's task {lost_task} ran again: {json}"
    );
    // The frame the lost node was rendering came from the other node.
    let first_of_lost = json["farm"]["tasks"][lost_task.to_string()][0]
        .as_i64()
        .expect("the task's first frame");
    assert_eq!(by_node[&first_of_lost], nodes[0], "{json}");
    let counts = done_records(&second_dir);
    assert!(
        counts.len() == 8 && counts.values().all(|count| *count == 1),
        "every frame rendered exactly once: {counts:?}"
    );

    // Up after the loss: the dead node is replaced.
    let repaired = rpb(&ws, &mut outputs, &["farm", "up", "--nodes", "2", "--json"])
        .await
        .success()
        .json();
    assert_eq!(repaired["replaced"][0][0], lost.as_str(), "{repaired}");
    assert_eq!(
        repaired["created"].as_array().map(Vec::len),
        Some(1),
        "{repaired}"
    );
    let now = nodes_of(&repaired["status"]);
    assert_eq!(now[0], nodes[0], "the controller stays");
    assert_ne!(now[1], lost);

    // A third node whose pod fails to boot: `farm up` fails, terminates the pod it made (the
    // simulator forgets terminated pods), and the farm is as it was.
    let pods_before = pod_ids(sim);
    sim.set_faults(|faults| faults.error_next_boot = 1);
    let grown = rpb(&ws, &mut outputs, &["farm", "up", "--nodes", "3", "--json"]).await;
    assert_ne!(grown.code, 0, "{}", grown.stdout);
    assert!(
        grown.stderr.contains("ERROR"),
        "the error says the pod failed: {}",
        grown.stderr
    );
    assert_eq!(
        pod_ids(sim),
        pods_before,
        "no pod of the failed call is left"
    );
    let status = rpb(&ws, &mut outputs, &["farm", "status", "--json"])
        .await
        .success()
        .json();
    assert_eq!(nodes_of(&status), now, "{status}");

    // With --replace-dead, the follower itself brings a new node when one is lost mid-job.
    let flagged = rpb(
        &ws,
        &mut outputs,
        &["farm", "up", "--nodes", "2", "--replace-dead", "--json"],
    )
    .await
    .success()
    .json();
    assert_eq!(
        flagged["status"]["record"]["replace_dead"], true,
        "{flagged}"
    );
    let third = rpb(
        &ws,
        &mut outputs,
        &render_args("97", "256x192", &["--detach", "--json"]),
    )
    .await
    .success()
    .json()["job_id"]
        .as_str()
        .expect("job id")
        .to_owned();
    let third_dir = volume_dir.join("rpb").join("jobs").join(&third);
    let second_lost = now[1].clone();
    kill_once_rendering(&client, &third_dir, &second_lost).await;
    let followed = rpb(&ws, &mut outputs, &["render", "attach", &third, "--json"])
        .await
        .success()
        .json();
    assert_eq!(followed["state"], "done", "{followed}");
    assert_eq!(frames_by_node(&followed).len(), 8, "{followed}");
    let counts = done_records(&third_dir);
    assert!(
        counts.len() == 8 && counts.values().all(|count| *count == 1),
        "every frame rendered exactly once: {counts:?}"
    );
    let status = rpb(&ws, &mut outputs, &["farm", "status", "--json"])
        .await
        .success()
        .json();
    let replaced = nodes_of(&status);
    assert_eq!(replaced.len(), 2, "{status}");
    assert_eq!(replaced[0], nodes[0], "the controller stays");
    assert!(
        !now.contains(&replaced[1]) && replaced[1] != lost,
        "a new node took the lost one's place: {status}"
    );

    // The same work on "a cluster the user already has": the farm's Slurm, reached over SSH
    // at the local sshd as if it were a university login node, with a shared folder of its
    // own and the cluster's slurm.conf named.
    let shared = volume_dir.join("cluster-shared");
    std::fs::create_dir_all(&shared).expect("shared folder");
    std::fs::copy(volume_dir.join("scene.blend"), shared.join("scene.blend")).expect("scene");
    let login = format!("{}@127.0.0.1:{}", pod.ssh_user(), pod.sshd_address().port());
    let shared_arg = shared.display().to_string();
    let conf = volume_dir.join("rpb/farm/slurm.conf").display().to_string();
    let mut cluster_args = render_args("1", "32x24", &["--json"]);
    cluster_args.retain(|arg| *arg != "--farm");
    cluster_args.extend([
        "--slurm",
        &login,
        "--partition",
        "render",
        "--shared-dir",
        &shared_arg,
        "--slurm-conf",
        &conf,
    ]);
    let on_cluster = rpb(&ws, &mut outputs, &cluster_args).await.success();
    let json = on_cluster.json();
    assert_eq!(json["state"], "done", "{json}");
    assert_eq!(frames_by_node(&json).len(), 8, "{json}");
    assert!(
        json["farm"]["cluster"]["login"].as_str() == Some(login.as_str()),
        "{json}"
    );
    let cluster_job = json["job_id"].as_str().expect("job id");
    assert!(
        shared
            .join("rpb/jobs")
            .join(cluster_job)
            .join("spec.json")
            .is_file(),
        "the job lives in the cluster's shared folder"
    );
    assert!(
        on_cluster
            .stderr
            .contains("first contact with the cluster's login node"),
        "{}",
        on_cluster.stderr
    );
    // A login that is not USER@HOST is refused before anything runs.
    let bad = rpb(
        &ws,
        &mut outputs,
        &[
            "render",
            "--slurm",
            "nohost",
            "--project",
            "farmed",
            "--blend",
            "x.blend",
            "--frames",
            "1",
        ],
    )
    .await;
    assert_ne!(bad.code, 0);
    assert!(bad.stderr.contains("USER@HOST"), "{}", bad.stderr);

    // The farm's cost guard: once the whole farm has cost more than --max-cost, following a
    // job cancels it and stops every pod (frames finished before are kept).
    let guarded = rpb(
        &ws,
        &mut outputs,
        &[
            "farm",
            "up",
            "--nodes",
            "2",
            "--max-cost",
            "0.001",
            "--json",
        ],
    )
    .await
    .success()
    .json();
    let farm_pods = nodes_of(&guarded["status"]);
    let stopped = rpb(&ws, &mut outputs, &render_args("3", "32x24", &["--json"])).await;
    assert_eq!(
        stopped.code, 6,
        "the job did not finish: {}",
        stopped.stdout
    );
    let json = stopped.json();
    assert_eq!(json["state"], "cancelled", "{json}");
    assert!(
        json["reason"]
            .as_str()
            .is_some_and(|reason| reason.contains("the farm has cost")),
        "{json}"
    );
    assert_eq!(json["pod_stopped"], true, "{json}");
    for id in &farm_pods {
        assert_eq!(
            sim.pod(id).map(|pod| pod.status),
            Some(runpod_api::PodStatus::Exited),
            "pod {id} is stopped"
        );
    }

    // Down: every pod terminated, no farm process left.
    let down = rpb(&ws, &mut outputs, &["farm", "down", "--json"])
        .await
        .success()
        .json();
    assert_eq!(
        down["terminated"].as_array().map(Vec::len),
        Some(2),
        "{down}"
    );
    let farm_run = pod.pod_env()["RPB_FARM_RUN"].clone();
    let state = volume_dir.join("rpb").join("farm").join("state");
    eventually(Duration::from_secs(60), "no farm process is left", || {
        processes_with(&farm_run).is_empty()
            && processes_with(&state.display().to_string()).is_empty()
    })
    .await;
    assert!(!ws.state_dir().join(blender_session::FARM_KEY_FILE).exists());

    // The munge key is in no file but its own (the workspace's copy is gone now).
    let window = &key[..32];
    for dir in [
        ws.root().clone(),
        pod.state_dir().to_path_buf(),
        volume_dir.clone(),
    ] {
        for path in walk(&dir) {
            if path.file_name().is_some_and(|name| name == "munge.key") {
                continue;
            }
            let bytes = std::fs::read(&path).unwrap_or_default();
            assert!(
                !bytes.windows(window.len()).any(|w| w == window),
                "the munge key leaked into {}",
                path.display()
            );
        }
    }
    // Nor in anything rpb printed.
    for output in &outputs {
        assert!(
            !output.contains(&api_key),
            "the API key was printed: {output}"
        );
        assert!(
            !output.as_bytes().windows(window.len()).any(|w| w == window),
            "the munge key was printed"
        );
    }
    pod.shutdown().await.expect("the local pod stops");
}

/// Every process's arguments, as raw bytes.
fn all_argv() -> Vec<(u32, Vec<u8>)> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_str()?.parse::<u32>().ok()?;
            Some((pid, std::fs::read(entry.path().join("cmdline")).ok()?))
        })
        .collect()
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                pending.push(entry.path());
            } else if kind.is_file() {
                files.push(entry.path());
            }
        }
    }
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_farm_demo_renders_on_two_local_nodes_and_leaves_nothing_running() {
    let _serial = serial().await;
    let ws = Workspace::new();
    let run = ws
        .rpb_within(SLOW, &["demo", "--farm", "--json"])
        .await
        .success();
    let json = run.json();
    assert_eq!(json["state"], "done", "{json}");
    let nodes: Vec<&str> = json["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .filter_map(serde_json::Value::as_str)
        .collect();
    assert_eq!(nodes.len(), 2, "{json}");
    let frames = json["frames"].as_array().expect("frames");
    assert_eq!(frames.len(), 8, "{json}");
    for node in &nodes {
        assert!(
            frames.iter().any(|frame| frame["node"] == *node),
            "node {node} rendered some frames: {json}"
        );
    }
    assert_eq!(
        json["terminated"].as_array().map(Vec::len),
        Some(2),
        "{json}"
    );
    // The demo's farm ran under /tmp/rpb-farm-*: nothing of it runs any more.
    assert!(
        processes_with("/rpb-farm-").is_empty(),
        "{:?}",
        processes_with("/rpb-farm-")
    );
}
