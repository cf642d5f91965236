//! Fast tests: help, usage, JSON shapes and error exit codes, against the RunPod simulator.

use std::time::Duration;

use runpod_api::models::{CreatePodRequest, GpuRequest};
use runpod_api::sim::Simulator;

use crate::support::{Workspace, alive, path_string};

pub(crate) const KEY: &str = "cli-test-key";

pub(crate) async fn simulator() -> Simulator {
    Simulator::builder()
        .api_key(KEY)
        .start()
        .await
        .expect("start the simulator")
}

/// A workspace pointed at the simulator, with a key, a VNC password and an SSH key path.
pub(crate) fn workspace_for(sim: &Simulator) -> Workspace {
    let ws = Workspace::new();
    ws.write_env(&[
        ("RUNPOD_API_KEY", KEY.into()),
        ("RUNPOD_API_URL", sim.base_url()),
        ("VNC_PASSWORD", "cli-test-vnc".into()),
        (
            "RUNPOD_SSH_KEY",
            path_string(&ws.dir.path().join("home/.ssh/id_test")),
        ),
    ]);
    ws
}

/// Creates a pod on the simulator and waits until it has the wanted status.
pub(crate) async fn pod_in(sim: &Simulator, stopped: bool) -> String {
    let client = sim.client().expect("client");
    let pod = client
        .create_pod(
            &CreatePodRequest::new("cli-test")
                .image("runpod/pytorch")
                .gpu(GpuRequest::new("NVIDIA RTX A5000"))
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
    if stopped {
        client.stop_pod(&pod.id).await.expect("stop");
        crate::support::eventually(Duration::from_secs(10), "pod exited", || {
            sim.pod(&id)
                .is_some_and(|pod| pod.status == runpod_api::PodStatus::Exited)
        })
        .await;
    }
    id
}

#[tokio::test]
async fn help_lists_every_job_and_the_exit_codes() {
    let ws = Workspace::new();
    let run = ws.rpb(&["--help"]).await.success();
    insta::assert_snapshot!("help", run.stdout);
    let run = ws.rpb(&["tunnel", "--help"]).await.success();
    insta::assert_snapshot!("tunnel_help", run.stdout);
    let run = ws.rpb(&["start", "--help"]).await.success();
    insta::assert_snapshot!("start_help", run.stdout);
    let run = ws.rpb(&["render", "--help"]).await.success();
    insta::assert_snapshot!("render_help", run.stdout);
}

#[tokio::test]
async fn usage_errors_exit_2_and_completions_print() {
    let ws = Workspace::new();
    let run = ws.rpb(&["frobnicate"]).await;
    assert_eq!(run.code, 2, "{run:?}");
    let run = ws.rpb(&["exec"]).await;
    assert_eq!(run.code, 2, "exec without a command: {run:?}");
    let run = ws.rpb(&["completions", "bash"]).await.success();
    assert!(run.stdout.contains("_rpb()"), "{}", run.stdout);
}

#[tokio::test]
async fn a_missing_key_is_an_error_naming_the_setting() {
    let ws = Workspace::new();
    ws.write_env(&[("RUNPOD_POD_ID", "abc123".into())]);
    let run = ws.rpb(&["status", "--json"]).await;
    assert_eq!(run.code, 1);
    let settings = ws.insta();
    settings.bind(|| insta::assert_json_snapshot!("missing_key", run.json()));
    // Without a pod chosen, the message says how to choose one.
    ws.write_env(&[("RUNPOD_API_KEY", "x".into())]);
    let run = ws.rpb(&["stop"]).await;
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("--pod-id"), "{}", run.stderr);
}

#[tokio::test]
async fn an_unknown_pod_is_an_error() {
    let sim = simulator().await;
    let ws = workspace_for(&sim);
    let run = ws.rpb(&["status", "--pod-id", "nosuchpod", "--json"]).await;
    assert_eq!(run.code, 1);
    ws.insta()
        .bind(|| insta::assert_json_snapshot!("unknown_pod", run.json()));
    sim.shutdown().await;
}

#[tokio::test]
async fn a_host_without_a_free_gpu_exits_4() {
    let sim = simulator().await;
    let ws = workspace_for(&sim);
    let pod_id = pod_in(&sim, true).await;
    sim.set_faults(|faults| faults.no_free_gpu_next_start = 1);
    let run = ws.rpb(&["start", "--pod-id", &pod_id]).await;
    assert_eq!(run.code, 4, "{run:?}");
    assert!(run.stderr.contains("no free GPU"), "{}", run.stderr);
    assert_eq!(
        sim.pod(&pod_id).map(|pod| pod.status),
        Some(runpod_api::PodStatus::Exited),
        "nothing left billing"
    );
    sim.shutdown().await;
}

/// `--blender` takes the default release alone, any other only with its checksum, and refuses
/// before anything is created.
#[tokio::test]
async fn another_blender_release_needs_its_checksum_before_any_pod_is_created() {
    let sim = simulator().await;
    let ws = workspace_for(&sim);
    // A checksum of another release in .env must not be taken for this one.
    ws.write_env(&[("RPB_BLENDER_SHA256", "ab".repeat(32))]);
    for args in [
        &["create", "--blender", "5.0.1"][..],
        &["start", "--pod-id", "anypod", "--blender", "5.0.1"][..],
    ] {
        let run = ws.rpb(args).await;
        assert_eq!(run.code, 1, "{run:?}");
        assert!(
            run.stderr
                .contains("--blender 5.0.1 needs --blender-sha256")
                && run.stderr.contains("blender-5.0.1-linux-x64.tar.xz"),
            "{}",
            run.stderr
        );
    }
    let bad = ws
        .rpb(&["create", "--blender", "5.0.1", "--blender-sha256", "nothex"])
        .await;
    assert_eq!(bad.code, 1, "{bad:?}");
    assert!(bad.stderr.contains("RPB_BLENDER_SHA256"), "{}", bad.stderr);
    let usage = ws.rpb(&["create", "--blender-sha256", "unverified"]).await;
    assert_eq!(usage.code, 2, "the checksum goes with a release: {usage:?}");
    assert!(sim.pods().is_empty(), "nothing was created");
    sim.shutdown().await;
}

/// `rpb trust` shows the pin and what the API says the pod was created with, flags a pin that
/// disagrees, and `--reset` forgets it; `ssh-info` pins the API's key for its strict `ssh`.
#[tokio::test]
async fn trust_shows_checks_and_resets_the_pin() {
    let sim = simulator().await;
    let ws = workspace_for(&sim);
    let pair = pod_tunnel::HostKeyPair::generate_ed25519("cli-trust").unwrap();
    let client = sim.client().expect("client");
    let pod = client
        .create_pod(
            &CreatePodRequest::new("cli-trust")
                .image("runpod/pytorch")
                .gpu(GpuRequest::new("NVIDIA RTX A5000"))
                .port("22/tcp")
                .env(
                    blender_session::assets::HOST_PUBLIC_KEY_ENV,
                    pair.public_key(),
                ),
        )
        .await
        .expect("create");
    let id = pod.id.to_string();
    crate::support::eventually(Duration::from_secs(10), "pod running", || {
        sim.pod(&id)
            .is_some_and(|pod| pod.status == runpod_api::PodStatus::Running)
    })
    .await;
    let known_hosts = ws.state_dir().join("known_hosts");

    let before = ws
        .rpb(&["trust", "--pod-id", &id, "--json"])
        .await
        .success();
    let document = before.json();
    assert_eq!(document["pinned"], serde_json::Value::Null, "{document}");
    assert_eq!(document["api_fingerprint"], pair.fingerprint().as_str());

    let info = ws.rpb(&["ssh-info", "--pod-id", &id]).await.success();
    assert!(
        info.stdout.contains("StrictHostKeyChecking=yes"),
        "{}",
        info.stdout
    );
    let pin = pod_tunnel::known_host(&known_hosts, &id)
        .unwrap()
        .expect("pinned");
    assert_eq!(pin.fingerprint, pair.fingerprint());
    let shown = ws.rpb(&["trust", "--pod-id", &id]).await.success();
    assert!(
        shown.stdout.contains(&pair.fingerprint()),
        "{}",
        shown.stdout
    );
    assert!(
        shown.stdout.contains("(the pinned key)"),
        "{}",
        shown.stdout
    );

    // A pin that is not the key the pod was created with is called out.
    pod_tunnel::forget_host(&known_hosts, &id).unwrap();
    let other = pod_tunnel::HostKeyPair::generate_ed25519("other").unwrap();
    pod_tunnel::pin_host_key(&known_hosts, &[id.as_str()], other.public_key()).unwrap();
    let differs = ws.rpb(&["trust", "--pod-id", &id]).await.success();
    assert!(
        differs.stdout.contains("NOT the pinned key"),
        "{}",
        differs.stdout
    );

    let reset = ws
        .rpb(&["trust", "--pod-id", &id, "--reset", "--json"])
        .await
        .success();
    assert_eq!(reset.json()["removed"], 1);
    assert!(pod_tunnel::known_host(&known_hosts, &id).unwrap().is_none());
    sim.shutdown().await;
}

#[tokio::test]
async fn status_ssh_info_and_doctor_json_shapes() {
    let sim = simulator().await;
    let ws = workspace_for(&sim);
    let pod_id = pod_in(&sim, false).await;
    let mut settings = ws.insta();
    settings.add_filter(&crate::support::regex_escape(&pod_id), "[POD]");
    settings.add_filter(
        r#""(cost_so_far|uptime_seconds)": [0-9.e-]+"#,
        "\"$1\": [N]",
    );
    settings.add_filter(r"-p \d+", "-p [N]");
    settings.add_filter(r#""host": "[0-9.]+""#, "\"host\": \"[HOST]\"");
    settings.add_filter(r"@[0-9.]+", "@[HOST]");
    let status = ws
        .rpb(&["status", "--pod-id", &pod_id, "--json"])
        .await
        .success();
    settings.bind(|| insta::assert_json_snapshot!("status", status.json()));
    let human = ws.rpb(&["status", "--pod-id", &pod_id]).await.success();
    assert!(human.stdout.contains("is RUNNING"), "{}", human.stdout);
    assert!(
        human.stdout.contains("/h"),
        "cost per hour: {}",
        human.stdout
    );
    let info = ws
        .rpb(&["ssh-info", "--pod-id", &pod_id, "--json"])
        .await
        .success();
    settings.bind(|| insta::assert_json_snapshot!("ssh_info", info.json()));
    let doctor = ws.rpb(&["doctor", "--json"]).await;
    assert_eq!(doctor.code, 1, "the ssh key does not exist: {doctor:?}");
    settings.bind(|| insta::assert_json_snapshot!("doctor", doctor.json()));
    sim.shutdown().await;
}

#[tokio::test]
async fn init_works_without_a_terminal_or_a_key() {
    let ws = Workspace::new();
    let run = ws.rpb(&["init", "--json"]).await.success();
    ws.insta()
        .bind(|| insta::assert_json_snapshot!("init", run.json()));
    let env = std::fs::read_to_string(ws.root().join(".env")).expect(".env");
    assert!(env.contains("VNC_PASSWORD="), "a generated password");
    assert!(
        ws.dir
            .path()
            .join("home/.runpod/ssh/RunPod-Key-Go")
            .exists()
    );
}

/// A workspace made by the original recipe (`.env` with its three keys, a git repository, its
/// `.gitignore`, `.mcp.json` for `uvx blender-mcp`, a project folder with a `.blend`) works as
/// it is: `rpb init` keeps every value and file, completes `.gitignore` below the user's
/// lines, and records the `.blend` where it is.
#[tokio::test]
async fn init_takes_the_original_recipe_s_workspace_as_it_is() {
    use std::process::Command;

    let ws = Workspace::new();
    let root = ws.root();
    std::fs::create_dir_all(root.join("projects/robot")).unwrap();
    std::fs::write(
        root.join(".env"),
        "RUNPOD_API_KEY=\nRUNPOD_POD_ID=abc123\nVNC_PASSWORD=blender123\n",
    )
    .unwrap();
    let gitignore = ".env\n.DS_Store\n*.blend1\n__pycache__/\n";
    std::fs::write(root.join(".gitignore"), gitignore).unwrap();
    let mcp = r#"{"mcpServers":{"blender":{"command":"uvx","args":["blender-mcp"]}}}"#;
    std::fs::write(root.join(".mcp.json"), mcp).unwrap();
    std::fs::write(root.join("projects/robot/scene.blend"), b"BLENDER-v304").unwrap();
    let git = |args: &[&str]| {
        let output = Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
            .args(args)
            .current_dir(&root)
            .output()
            .expect("git");
        assert!(output.status.success(), "{output:?}");
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    };
    git(&["init", "-q"]);
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "original"]);
    let head = git(&["rev-parse", "HEAD"]);

    let run = ws.rpb(&["init", "--no-register", "--json"]).await.success();
    assert_eq!(
        run.json()["recorded_blend_files"],
        serde_json::json!(["projects/robot/scene.blend"])
    );
    let env = std::fs::read_to_string(root.join(".env")).unwrap();
    assert!(env.contains("RUNPOD_POD_ID=abc123\n"), "{env}");
    assert!(
        env.contains("VNC_PASSWORD=blender123\n"),
        "kept, not regenerated: {env}"
    );
    let completed = std::fs::read_to_string(root.join(".gitignore")).unwrap();
    assert!(
        completed.starts_with(gitignore),
        "the user's lines first: {completed}"
    );
    assert!(completed.contains(".rpb/"), "{completed}");
    assert_eq!(
        std::fs::read_to_string(root.join(".mcp.json")).unwrap(),
        mcp
    );
    assert_eq!(git(&["rev-parse", "HEAD"]), head, "no commit made");
    assert_eq!(
        std::fs::read(root.join("projects/robot/scene.blend")).unwrap(),
        b"BLENDER-v304"
    );
    let list = ws.rpb(&["project", "list", "--json"]).await.success();
    assert!(list.stdout.contains("robot"), "{}", list.stdout);
    let again = ws.rpb(&["init", "--no-register", "--json"]).await.success();
    assert_eq!(again.json()["recorded_blend_files"], serde_json::json!([]));
}

#[tokio::test]
async fn projects_json_shapes_and_invalid_names() {
    let ws = Workspace::new();
    ws.write_env(&[]);
    let new = ws
        .rpb(&["project", "new", "chair", "--json"])
        .await
        .success();
    let list = ws.rpb(&["project", "list", "--json"]).await.success();
    let show = ws
        .rpb(&["project", "show", "chair", "--json"])
        .await
        .success();
    let settings = ws.insta();
    settings.bind(|| {
        insta::assert_json_snapshot!("project_new", new.json());
        insta::assert_json_snapshot!("project_list", list.json());
        insta::assert_json_snapshot!("project_show", show.json());
    });
    let bad = ws.rpb(&["project", "new", "../escape", "--json"]).await;
    assert_eq!(bad.code, 1);
    settings.bind(|| insta::assert_json_snapshot!("project_invalid", bad.json()));
    let mcp = ws.rpb(&["mcp-config", "--json"]).await.success();
    settings.bind(|| insta::assert_json_snapshot!("mcp_config", mcp.json()));
    assert!(ws.root().join(".mcp.json").is_file());
}

#[tokio::test]
async fn tunnel_status_cleans_stale_records_and_never_signals_a_stranger() {
    let ws = Workspace::new();
    ws.write_env(&[]);
    let none = ws.rpb(&["tunnel", "status", "--json"]).await;
    assert_eq!(none.code, 1);
    assert_eq!(none.json()["state"], "none");

    // A record whose process is gone.
    let mut gone = std::process::Command::new("true")
        .spawn()
        .expect("spawn true");
    let gone_pid = gone.id();
    gone.wait().expect("wait");
    let record = |pid: u32, start_time: u64| {
        serde_json::json!({
            "pid": pid, "start_time": start_time, "pod_id": "p1",
            "mcp_port": 1, "vnc_port": 2, "novnc_port": 3, "started_at": 0,
            "log": "/dev/null",
        })
        .to_string()
    };
    let path = ws.state_dir().join("tunnel.json");
    std::fs::write(&path, record(gone_pid, 1)).expect("write record");
    let stale = ws.rpb(&["tunnel", "status", "--json"]).await;
    ws.insta()
        .bind(|| insta::assert_json_snapshot!("tunnel_stale", stale.json()));
    assert!(!path.exists(), "the stale record is removed");

    // A record whose PID now belongs to another process: ours (the test), with another start
    // time. `tunnel down` must not signal it.
    let stranger = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .expect("spawn sleep");
    let stranger_pid = stranger.id();
    std::fs::write(&path, record(stranger_pid, 1)).expect("write record");
    let down = ws.rpb(&["tunnel", "down", "--json"]).await.success();
    assert_eq!(down.json()["tunnel"], "stale");
    assert!(
        alive(u64::from(stranger_pid)),
        "the stranger was not signalled"
    );
    assert!(!path.exists());
    std::fs::write(&path, record(stranger_pid, 1)).expect("write record");
    let status = ws.rpb(&["tunnel", "status", "--json"]).await;
    assert_eq!(status.json()["pid_reused"], true);
    let mut stranger = stranger;
    stranger.kill().expect("kill our sleep");
    stranger.wait().expect("reap");
}

#[tokio::test]
async fn a_busy_local_port_stops_start_before_the_pod_starts() {
    let sim = simulator().await;
    let mut ws = workspace_for(&sim);
    let pod_id = pod_in(&sim, true).await;
    let blocker = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = blocker.local_addr().expect("addr").port();
    // The environment beats the .env file.
    ws.set("RPB_MCP_PORT", port.to_string());
    let run = ws.rpb(&["start", "--pod-id", &pod_id, "--json"]).await;
    assert_eq!(run.code, 1, "{run:?}");
    ws.insta()
        .bind(|| insta::assert_json_snapshot!("busy_port", run.json()));
    assert_eq!(
        sim.pod(&pod_id).map(|pod| pod.status),
        Some(runpod_api::PodStatus::Exited),
        "the pod was not started"
    );
    drop(blocker);
    sim.shutdown().await;
}

#[tokio::test]
async fn init_registers_the_ssh_key_when_it_has_an_api_key() {
    let sim = simulator().await;
    let mut ws = Workspace::new();
    ws.set("RUNPOD_API_KEY", KEY);
    ws.set("RUNPOD_API_URL", sim.base_url());
    let run = ws.rpb(&["init", "--json"]).await.success();
    let document = run.json();
    assert_eq!(document["api_key_set"], true);
    assert_eq!(document["ssh_key_registered"], true);
    let public = std::fs::read_to_string(ws.dir.path().join("home/.runpod/ssh/RunPod-Key-Go.pub"))
        .expect("public key");
    assert_eq!(sim.ssh_keys(), [public.trim().to_owned()]);
    let env = std::fs::read_to_string(ws.root().join(".env")).expect(".env");
    assert!(
        env.contains(&format!("RUNPOD_API_KEY={KEY}")),
        "the key is saved in .env"
    );
    // Again: nothing to add.
    let again = ws.rpb(&["init", "--json"]).await.success();
    assert_eq!(again.json()["ssh_key_registered"], false);
    sim.shutdown().await;
}

#[tokio::test]
async fn py_reaches_blender_only_through_this_pods_own_tunnel() {
    // Something listens where the default MCP port points: it must never receive the code.
    let bystander = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    bystander.set_nonblocking(true).expect("nonblocking");
    let port = bystander.local_addr().expect("addr").port();
    let ws = Workspace::new();
    ws.write_env(&[
        ("RUNPOD_POD_ID", "poda".into()),
        ("RPB_MCP_PORT", port.to_string()),
    ]);
    let no_tunnel = ws.rpb(&["py", "print(1)"]).await;
    assert_eq!(no_tunnel.code, 1, "{no_tunnel:?}");
    assert!(
        no_tunnel
            .stderr
            .contains("no background tunnel to pod poda"),
        "{}",
        no_tunnel.stderr
    );

    // A live tunnel record (this test process stands in for it) of another pod, on that port.
    let own = test_support::process::stat(std::process::id()).expect("own stat");
    let record = serde_json::json!({
        "pid": own.pid, "start_time": own.start_time, "pod_id": "podb",
        "mcp_port": port, "vnc_port": 2, "novnc_port": 3, "started_at": 0, "log": "/dev/null",
    });
    std::fs::write(ws.state_dir().join("tunnel.json"), record.to_string()).expect("record");
    let other_pod = ws.rpb(&["py", "--pod-id", "poda", "print(1)"]).await;
    assert_eq!(other_pod.code, 1, "{other_pod:?}");
    assert!(
        other_pod.stderr.contains("serves pod podb, not pod poda"),
        "{}",
        other_pod.stderr
    );
    assert!(
        matches!(bystander.accept(), Err(error) if error.kind() == std::io::ErrorKind::WouldBlock),
        "nothing connected to the default port"
    );
}

/// `rpb mcp-config` on a workspace that has a `.mcp.json` (the original recipe's, with a server
/// of the user's own): rpb's entry goes in, every other key stays, and it says what changed; a
/// second run changes nothing; a file that is not JSON is left alone.
#[tokio::test]
async fn mcp_config_merges_into_an_existing_file_and_says_what_it_changed() {
    let ws = Workspace::new();
    ws.write_env(&[("RPB_MCP_PORT", "19876".into())]);
    let path = ws.root().join(".mcp.json");
    let original = serde_json::json!({
        "mcpServers": {
            "blender": {
                "command": "uvx",
                "args": ["blender-mcp"],
                "env": {"DISABLE_TELEMETRY": "true", "BLENDER_PORT": "1"}
            },
            "notes": {"command": "notes-server", "args": ["--db", "x"]}
        },
        "theme": "dark"
    });
    std::fs::write(&path, serde_json::to_string_pretty(&original).unwrap()).unwrap();

    let run = ws.rpb(&["mcp-config", "--json"]).await.success();
    let json = run.json();
    assert_eq!(json["changed"], true);
    let changes: Vec<&str> = json["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|change| change.as_str().unwrap())
        .collect();
    assert!(
        changes.iter().any(|change| change.starts_with(
            "mcpServers.blender.args: [\"blender-mcp\"] → [\"--from\",\"mcp-for-blender=="
        )),
        "{changes:?}"
    );
    assert!(
        changes.contains(
            &"mcpServers.blender.env: {\"BLENDER_PORT\":\"1\",\"DISABLE_TELEMETRY\":\"true\"} → \
              {\"BLENDER_HOST\":\"127.0.0.1\",\"BLENDER_PORT\":\"19876\",\"DISABLE_TELEMETRY\":\"true\"}"
        ),
        "{changes:?}"
    );
    assert!(
        changes.contains(&"kept the other servers: notes"),
        "{changes:?}"
    );
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(written["theme"], "dark");
    assert_eq!(
        written["mcpServers"]["notes"],
        original["mcpServers"]["notes"]
    );
    assert_eq!(
        written["mcpServers"]["blender"]["env"]["BLENDER_PORT"],
        "19876"
    );
    assert_eq!(
        written["mcpServers"]["blender"]["env"]["DISABLE_TELEMETRY"], "true",
        "the user's own variables stay"
    );

    let again = ws.rpb(&["mcp-config"]).await.success();
    assert!(again.stdout.contains("unchanged"), "{}", again.stdout);

    std::fs::write(&path, "{ not json").unwrap();
    let bad = ws.rpb(&["mcp-config"]).await;
    assert_eq!(bad.code, 1, "{bad:?}");
    assert!(bad.stderr.contains("was left unchanged"), "{}", bad.stderr);
    assert!(bad.stderr.contains("not JSON"), "{}", bad.stderr);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "{ not json");
}

/// A console pod keeps its volume at `/workspace`: with the default pod root, `start` refuses
/// before touching the pod and names the setting to pass (an explicit `RPB_POD_ROOT` is the
/// user's choice and is not checked).
#[tokio::test]
async fn start_names_the_setting_for_a_volume_outside_the_default_pod_root() {
    let sim = simulator().await;
    let ws = workspace_for(&sim);
    let client = sim.client().expect("client");
    let pod = client
        .create_pod(
            &CreatePodRequest::new("console-pod")
                .image("runpod/pytorch")
                .gpu(GpuRequest::new("NVIDIA RTX A5000"))
                .mounts(runpod_api::models::Mounts::persistent(20, "/workspace"))
                .port("22/tcp"),
        )
        .await
        .expect("create");
    let id = pod.id.to_string();
    client.stop_pod(&pod.id).await.expect("stop");
    let run = ws.rpb(&["start", "--pod-id", &id]).await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains(&format!(
            "pod {id}'s volume is mounted at /workspace, not at the pod root /runpod"
        )),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("RPB_POD_ROOT=/workspace"),
        "{}",
        run.stderr
    );
    assert_eq!(
        sim.pod(&id).map(|pod| pod.status),
        Some(runpod_api::PodStatus::Exited),
        "not started"
    );
    sim.shutdown().await;
}
