//! Slow tests on the embedded local pod (real sshd, Blender, Xvfb, x11vnc, noVNC): the whole
//! CLI flow with the background tunnel and the cost guard, and the demo. Serialized.

use std::time::Duration;

use blender_session::local_pod::LocalPod;
use runpod_api::PodId;

use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, BufReader};

use crate::support::{
    Workspace, alive, eventually, files_containing, free_port, local_pod_workspace, path_string,
    serial,
};

const VNC: &str = "cli-e2e-vnc";
const SLOW: Duration = Duration::from_secs(400);
/// Stands for a real account's key exported in the shell: the demo must never touch it.
const CANARY: &str = "rpa_CANARY7Q2W9E4R1T6Y3U8I5O0P";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_start_work_tunnel_and_the_idle_guard_on_the_local_pod() {
    let _serial = serial().await;
    let pod = LocalPod::builder()
        .start()
        .await
        .expect("the local pod starts (openssh-server, blender, xvfb, x11vnc, novnc, websockify)");
    let remote = pod.remote_ports();
    let (mcp, vnc, novnc) = (free_port(), free_port(), free_port());
    let ws = Workspace::new();
    ws.write_env(&[
        ("RUNPOD_API_URL", pod.api_url()),
        ("RPB_SSH_USER", pod.ssh_user().to_owned()),
        ("RUNPOD_SSH_KEY", path_string(pod.ssh_identity_file())),
        ("RPB_POD_ROOT", path_string(pod.pod_root())),
        ("RPB_POD_MCP_PORT", remote.mcp.to_string()),
        ("RPB_POD_CONTROL_PORT", remote.control.to_string()),
        ("RPB_CONTROL_PORT", free_port().to_string()),
        ("RPB_POD_VNC_PORT", remote.vnc.to_string()),
        ("RPB_POD_NOVNC_PORT", remote.novnc.to_string()),
        ("RPB_MCP_PORT", mcp.to_string()),
        ("RPB_VNC_PORT", vnc.to_string()),
        ("RPB_NOVNC_PORT", novnc.to_string()),
        ("VNC_PASSWORD", VNC.into()),
    ]);
    // The key comes from the environment (precedence: flags, environment, .env).
    let mut ws = ws;
    ws.set(
        "RUNPOD_API_KEY",
        secrecy::ExposeSecret::expose_secret(pod.api_key()).to_owned(),
    );

    let created = ws.rpb_within(SLOW, &["create", "--json"]).await.success();
    let pod_id = created.json()["pod_id"]
        .as_str()
        .expect("pod_id")
        .to_owned();
    let env = std::fs::read_to_string(ws.root().join(".env")).expect(".env");
    assert!(env.contains(&format!("RUNPOD_POD_ID={pod_id}")), "{env}");
    // The pinned host key's fingerprint is a line of its own, even with --json.
    let pin = pod_tunnel::known_host(&ws.state_dir().join("known_hosts"), &pod_id)
        .expect("known_hosts")
        .expect("the new pod's key is pinned");
    assert!(
        created.stderr.lines().any(|line| line.starts_with(&format!(
            "host key: pinned the ssh host key made for pod {pod_id}"
        )) && line.ends_with(&pin.fingerprint)),
        "{}",
        created.stderr
    );

    // Start: Blender answers; the tunnel lives in a background process of ours.
    let started = ws.rpb_within(SLOW, &["start", "--json"]).await.success();
    let started = started.json();
    assert_eq!(started["mcp_port"], mcp);
    assert_eq!(
        started["novnc_url"],
        format!("http://127.0.0.1:{novnc}/vnc.html?autoconnect=1&resize=scale")
    );
    let daemon_pid = started["tunnel"]["pid"].as_u64().expect("tunnel pid");
    assert!(alive(daemon_pid));
    let args = std::fs::read(format!("/proc/{daemon_pid}/cmdline")).expect("cmdline");
    let args = String::from_utf8_lossy(&args);
    assert!(
        !args.contains(VNC) && !args.contains("RUNPOD_API_KEY"),
        "no secret in argv: {args}"
    );

    let tunnel = ws.rpb(&["tunnel", "status", "--json"]).await.success();
    assert_eq!(tunnel.json()["state"], "running");
    let py = ws
        .rpb(&["py", "import bpy; print(len(bpy.data.objects))", "--json"])
        .await
        .success();
    assert_eq!(py.json()["output"].as_str().map(str::trim), Some("3"));
    let exec = ws
        .rpb(&["exec", "--", "echo", "hello from", "the pod"])
        .await
        .success();
    assert_eq!(exec.stdout.trim(), "hello from the pod");
    let failing = ws.rpb(&["exec", "--shell", "--", "exit 7"]).await;
    assert_eq!(failing.code, 7, "exec passes the remote exit code on");
    let status = ws.rpb(&["status", "--json"]).await.success().json();
    assert_eq!(status["status"], "RUNNING");
    assert_eq!(status["blender_answers"], true);
    assert_eq!(status["novnc_answers"], true);
    assert!(status["cost_per_hour"].as_f64().unwrap_or_default() > 0.0);

    // websockify dies on the pod: the local listener still accepts, but status probes noVNC
    // over HTTP through the tunnel and tells the truth; `rpb start` brings it back.
    let pid_file = pod.pod_root().join("rpb/run/websockify.pid");
    let recorded = std::fs::read_to_string(&pid_file).expect("websockify's pid file");
    let websockify: u32 = recorded
        .split_whitespace()
        .next()
        .and_then(|pid| pid.parse().ok())
        .expect("a pid");
    let target = i32::try_from(websockify)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .expect("a valid pid");
    rustix::process::kill_process(target, rustix::process::Signal::KILL).expect("kill websockify");
    eventually(Duration::from_secs(10), "websockify is gone", || {
        !alive(websockify.into())
    })
    .await;
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", novnc)).is_ok(),
        "the tunnel's own listener still accepts"
    );
    let status = ws.rpb(&["status", "--json"]).await.success().json();
    assert_eq!(status["novnc_answers"], false, "{status}");
    assert_eq!(status["blender_answers"], true, "{status}");
    let restarted = ws
        .rpb_within(SLOW, &["start", "--json"])
        .await
        .success()
        .json();
    let status = ws.rpb(&["status", "--json"]).await.success().json();
    assert_eq!(status["novnc_answers"], true, "{status}");
    // `start` replaced the background tunnel: follow the new process.
    assert!(!alive(daemon_pid), "the old tunnel process ended");
    let daemon_pid = restarted["tunnel"]["pid"].as_u64().expect("tunnel pid");
    assert!(alive(daemon_pid));

    // Files: push and pull with hashes; save the scene into a project.
    let local = ws.dir.path().join("notes.txt");
    std::fs::write(&local, "rpb push/pull test\n").expect("write");
    let pushed = ws
        .rpb(&["push", &path_string(&local), "--json"])
        .await
        .success()
        .json();
    let remote_path = pushed["remote"].as_str().expect("remote").to_owned();
    let back = ws.dir.path().join("back.txt");
    let pulled = ws
        .rpb(&["pull", &remote_path, &path_string(&back), "--json"])
        .await
        .success()
        .json();
    assert_eq!(pulled["sha256"], pushed["sha256"]);
    assert_eq!(
        std::fs::read(&back).expect("back"),
        std::fs::read(&local).expect("local")
    );
    let saved = ws
        .rpb_within(SLOW, &["save", "--project", "chair", "--json"])
        .await
        .success()
        .json();
    assert!(saved["name"].as_str().is_some_and(|name| {
        std::path::Path::new(name)
            .extension()
            .is_some_and(|ext| ext == "blend")
    }));
    // Render: a job of the open scene, its frames local and verified, then listed and read back.
    let render = [
        "render",
        "--project",
        "chair",
        "--frames",
        "1-3",
        "--engine",
        "cycles",
        "--device",
        "cpu",
        "--samples",
        "2",
        "--resolution",
        "48x32",
        "--json",
    ];
    let rendered = ws.rpb_within(SLOW, &render).await.success().json();
    assert_eq!(rendered["state"], "done", "{rendered}");
    let frames = rendered["frames"].as_array().expect("frames");
    assert_eq!(frames.len(), 3, "{rendered}");
    for frame in frames {
        let path = frame["path"].as_str().expect("local path");
        assert!(std::path::Path::new(path).is_file(), "{path}");
        assert_eq!(frame["state"], "local");
    }
    assert_eq!(rendered["device"], "CPU");
    let job_id = rendered["job_id"].as_str().expect("job id").to_owned();
    let listed = ws.rpb(&["render", "list", "--json"]).await.success().json();
    assert_eq!(listed["jobs"][0]["job_id"], job_id.as_str());
    let status = ws
        .rpb(&["render", "status", "--json"])
        .await
        .success()
        .json();
    assert_eq!(status["state"], "done");
    let movie = ws
        .rpb(&[
            "render",
            "--project",
            "chair",
            "--frames",
            "1",
            "--format",
            "FFMPEG",
        ])
        .await;
    assert_eq!(movie.code, 1, "{movie:?}");
    assert!(movie.stderr.contains("makes a movie"), "{movie:?}");
    // A detached job, cancelled: the render ends, the interactive Blender does not.
    let detached = ws
        .rpb_within(
            SLOW,
            &[
                "render",
                "--project",
                "chair",
                "--frames",
                "1-8",
                "--device",
                "cpu",
                "--engine",
                "cycles",
                "--samples",
                "128",
                "--resolution",
                "320x240",
                "--detach",
                "--json",
            ],
        )
        .await
        .success()
        .json();
    let detached_id = detached["job_id"].as_str().expect("job id").to_owned();
    assert_eq!(detached["state"], "running", "{detached}");
    let cancelled = ws
        .rpb(&["render", "cancel", &detached_id, "--json"])
        .await
        .success()
        .json();
    assert_eq!(cancelled["state"], "cancelled");
    let status = ws
        .rpb(&["render", "status", &detached_id, "--json"])
        .await
        .success()
        .json();
    assert_eq!(status["state"], "cancelled", "{status}");
    // Resumed, it renders what is missing and ends with every frame local.
    let resumed = ws
        .rpb_within(SLOW, &["render", "resume", &detached_id, "--json"])
        .await
        .success()
        .json();
    assert_eq!(resumed["state"], "done", "{resumed}");
    assert_eq!(resumed["job_id"], detached_id.as_str());
    let frames = resumed["frames"].as_array().expect("frames");
    assert_eq!(frames.len(), 8, "{resumed}");
    assert!(
        frames.iter().all(|frame| frame["state"] == "local"),
        "{resumed}"
    );
    let py = ws
        .rpb(&["py", "import bpy; print(len(bpy.data.objects))", "--json"])
        .await
        .success();
    assert_eq!(py.json()["output"].as_str().map(str::trim), Some("3"));

    let mcp_config = ws
        .rpb(&["mcp-config", "--print", "--json"])
        .await
        .success()
        .json();
    assert_eq!(
        mcp_config["mcpServers"]["blender"]["env"]["BLENDER_PORT"],
        mcp.to_string()
    );

    // Down: the process ends by its PID and the ports close.
    let down = ws.rpb(&["tunnel", "down", "--json"]).await.success();
    assert_eq!(down.json()["tunnel"], "stopped");
    eventually(Duration::from_secs(10), "the tunnel process ends", || {
        !alive(daemon_pid)
    })
    .await;
    assert!(std::net::TcpStream::connect(("127.0.0.1", mcp)).is_err());
    // Without the tunnel, a command that needs Blender says so and what to run.
    let untunnelled = ws
        .rpb_within(SLOW, &["save", "--project", "chair", "--json"])
        .await;
    assert_eq!(untunnelled.code, 1, "{untunnelled:?}");
    assert!(
        untunnelled.stderr.contains("no tunnel to pod")
            && untunnelled.stderr.contains("rpb tunnel up --pod-id"),
        "{}",
        untunnelled.stderr
    );

    // A busy local port: the tunnel cannot come up, and says why.
    let blocker = std::net::TcpListener::bind(("127.0.0.1", mcp)).expect("occupy the port");
    let busy = ws.rpb_within(SLOW, &["tunnel", "up", "--json"]).await;
    assert_eq!(busy.code, 1, "{busy:?}");
    assert!(
        busy.stderr.contains(&mcp.to_string()),
        "names the port: {}",
        busy.stderr
    );
    drop(blocker);

    // The idle guard: no traffic for 0.1 min (6 s) stops the pod, and status says why.
    let up = ws
        .rpb_within(SLOW, &["tunnel", "up", "--idle-stop", "0.1", "--json"])
        .await
        .success();
    assert_eq!(up.json()["tunnel"]["idle_stop_minutes"], 0.1);
    let client = pod.client().expect("client");
    let id = PodId::new(&pod_id);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let status = client.get_pod(&id).await.expect("get pod").status;
        if status == runpod_api::PodStatus::Exited {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the idle guard did not stop the pod (last {status})"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let status = ws.rpb(&["status", "--json"]).await.success().json();
    assert_eq!(status["status"], "EXITED");
    assert!(
        status["guard_stop"]["reason"]
            .as_str()
            .is_some_and(|reason| reason.contains("no traffic")),
        "{status}"
    );
    let log = std::fs::read_to_string(ws.state_dir().join("tunnel.log")).expect("tunnel log");
    assert!(log.contains("cost guard"), "{log}");
    assert!(!log.contains(VNC), "no secret in the log");

    let stopped = ws
        .rpb_within(SLOW, &["stop", "--json"])
        .await
        .success()
        .json();
    assert_eq!(stopped["status"], "EXITED");
    assert_eq!(stopped["cost_per_hour"], 0.0);
    pod.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_exit_after_ready_prints_one_json_document_and_cleans_up() {
    let _serial = serial().await;
    let mut ws = Workspace::new();
    let tmp = ws.dir.path().join("tmp");
    std::fs::create_dir_all(&tmp).expect("tmp");
    ws.set("TMPDIR", path_string(&tmp));
    ws.set("VNC_PASSWORD", "demo-test-vnc");
    ws.set("RUNPOD_API_KEY", CANARY);
    let run = ws
        .rpb_within(SLOW, &["demo", "--exit-after-ready", "--json"])
        .await
        .success();
    assert!(!run.stdout.contains(CANARY) && !run.stderr.contains(CANARY));
    assert_eq!(
        files_containing(&tmp, CANARY),
        Vec::<std::path::PathBuf>::new()
    );
    let document = run.json();
    for key in ["novnc_url", "mcp_port", "vnc_port", "pod_id", "scene"] {
        assert!(!document[key].is_null(), "{key} in {document}");
    }
    assert_eq!(document["vnc_password_source"], "environment");
    assert_eq!(document["stopped"]["status"], "EXITED");
    // The demo's .mcp.json runs the blender-mcp server release rpb pins and tests (the one
    // whose addon the pod runs), not the newest.
    assert_eq!(
        document["mcp_config"]["mcpServers"]["blender"]["args"],
        serde_json::json!(["--from", "mcp-for-blender==2.2.4", "mcp-for-blender"])
    );
    let names: Vec<&str> = document["scene"]["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .filter_map(|object| object["name"].as_str())
        .collect();
    assert!(names.contains(&"Cube"), "{names:?}");
    assert!(!run.stdout.contains("demo-test-vnc") && !run.stderr.contains("demo-test-vnc"));
    let port = document["mcp_port"].as_u64().expect("port");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", u16::try_from(port).expect("port"))).is_err(),
        "the tunnel is closed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_never_reads_copies_or_writes_an_exported_api_key() {
    let _serial = serial().await;
    let mut ws = Workspace::new();
    let tmp = ws.dir.path().join("tmp");
    std::fs::create_dir_all(&tmp).expect("tmp");
    ws.set("TMPDIR", path_string(&tmp));
    ws.set("RUNPOD_API_KEY", CANARY);
    let mut child = ws
        .command(&["demo", "--json"])
        .spawn()
        .expect("spawn rpb demo");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    // While it waits for Ctrl-C, the demo has printed one pretty JSON document.
    let mut document = String::new();
    tokio::time::timeout(SLOW, async {
        loop {
            let mut line = String::new();
            let read = stdout.read_line(&mut line).await.expect("read stdout");
            assert!(read > 0, "the demo ended early: {document}");
            document.push_str(&line);
            if line == "}\n" {
                break;
            }
        }
    })
    .await
    .expect("the demo got ready in time");
    let document: serde_json::Value = serde_json::from_str(&document).expect("json");
    let workspace = document["workspace"].as_str().expect("workspace");
    let env = std::fs::read_to_string(std::path::Path::new(workspace).join(".env")).expect(".env");
    let key = env
        .lines()
        .find_map(|line| line.strip_prefix("RUNPOD_API_KEY="))
        .expect("the demo's .env has the simulator's key");
    assert!(!key.is_empty() && key != CANARY, "a fresh key of its own");
    assert_eq!(
        files_containing(&tmp, CANARY),
        Vec::<std::path::PathBuf>::new(),
        "no file of the demo (its .env, the local pod's logs and state) holds the exported key"
    );

    let pid = child.id().and_then(|pid| i32::try_from(pid).ok());
    let pid = pid.and_then(rustix::process::Pid::from_raw).expect("pid");
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM");
    let status = tokio::time::timeout(SLOW, child.wait())
        .await
        .expect("the demo stops in time")
        .expect("wait");
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).await.expect("stdout");
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .await
        .expect("stderr");
    eprintln!("rpb demo → {status}\n{rest}{stderr}");
    assert!(status.success(), "{stderr}");
    assert!(!rest.contains(CANARY) && !stderr.contains(CANARY));
    assert_eq!(
        files_containing(&tmp, CANARY),
        Vec::<std::path::PathBuf>::new()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_passes_arguments_literally_and_runs_shell_lines_only_with_shell() {
    let _serial = serial().await;
    let pod = LocalPod::builder()
        .start()
        .await
        .expect("the local pod starts (openssh-server, blender, xvfb, x11vnc, novnc, websockify)");
    let ws = local_pod_workspace(&pod, VNC);
    // A pod set up by `rpb create` (no Blender session needed: exec only uses SSH).
    ws.rpb_within(SLOW, &["create", "--json"]).await.success();
    let pod_home = pod.pod_env()["HOME"].clone();

    // argv: every argument arrives as it is, one per line from printf.
    let literal = ["two words", "$HOME", "a;touch pwned", "'q'", "*"];
    let mut args = vec!["exec", "--", "printf", "%s\\n"];
    args.extend(literal);
    let run = ws.rpb_within(SLOW, &args).await.success();
    assert_eq!(run.stdout, format!("{}\n", literal.join("\n")));
    let run = ws.rpb(&["exec", "--", "ls", &pod_home]).await.success();
    assert!(!run.stdout.contains("pwned"), "`;` ran a command: {run:?}");

    // --shell: one command line for the pod's shell, variables and `;` included.
    let run = ws
        .rpb(&["exec", "--shell", "--", "printf '%s\\n' \"$HOME\"; exit 7"])
        .await;
    assert_eq!(run.code, 7, "{run:?}");
    assert_eq!(run.stdout, format!("{pod_home}\n"));
    let run = ws
        .rpb(&["exec", "-c", "--", "echo", "$HOME", "|", "wc", "-l"])
        .await
        .success();
    assert_eq!(run.stdout.trim(), "1", "several arguments, joined: {run:?}");

    // One argument a shell would split or expand: refused, saying how to run it.
    let run = ws.rpb(&["exec", "--", "echo $HOME; exit 7"]).await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("add --shell"), "{}", run.stderr);
    pod.shutdown().await.expect("shutdown");
}

/// `rpb adopt` on a pod made by hand: `--dry-run` says what it would do and changes nothing;
/// adopting says the plan, trusts the first contact aloud and installs the hook; again changes
/// nothing; `--undo` gives the pod its own start command back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adopt_says_what_it_will_do_does_it_once_and_undoes_it() {
    use runpod_api::models::{CreatePodRequest, GpuRequest, Mounts};

    let _serial = serial().await;
    let pod = LocalPod::builder()
        .fresh_host_keys(true)
        .start()
        .await
        .expect("the local pod starts");
    let ws = local_pod_workspace(&pod, VNC);
    let client = pod.client().expect("client");
    client.add_ssh_key(pod.ssh_public_key()).await.expect("key");
    let created = client
        .create_pod(
            &CreatePodRequest::new("made-by-hand")
                .image("runpod/pytorch:1.0.2-cu1281-torch280-ubuntu2404")
                .gpu(GpuRequest::new("NVIDIA RTX A5000"))
                .mounts(Mounts::persistent(20, "/runpod"))
                .port("22/tcp"),
        )
        .await
        .expect("create");
    let id = created.id.to_string();
    eventually(Duration::from_secs(20), "pod running", || {
        pod.simulator()
            .pod(&id)
            .is_some_and(|pod| pod.status == runpod_api::PodStatus::Running)
    })
    .await;

    let dry = ws
        .rpb_within(SLOW, &["adopt", "--pod-id", &id, "--dry-run", "--json"])
        .await
        .success();
    assert_eq!(dry.json()["dry_run"], true);
    assert_eq!(dry.json()["start_command"], "");
    let args = || {
        let client = client.clone();
        let id = PodId::new(&id);
        async move { client.get_pod(&id).await.expect("pod").args }
    };
    assert_eq!(args().await, "", "a dry run changes nothing");

    let adopted = ws
        .rpb_within(SLOW, &["adopt", "--pod-id", &id])
        .await
        .success();
    assert!(
        adopted.stderr.contains(&format!("rpb adopt, on pod {id}")),
        "{}",
        adopted.stderr
    );
    assert!(
        adopted
            .stderr
            .contains(&format!("host key: first contact with pod {id}")),
        "{}",
        adopted.stderr
    );
    assert!(
        adopted.stdout.contains(&format!("adopted pod {id}")),
        "{}",
        adopted.stdout
    );
    assert!(args().await.contains("/rpb/bin/boot-hook.sh"));

    let again = ws
        .rpb_within(SLOW, &["adopt", "--pod-id", &id, "--json"])
        .await
        .success();
    assert_eq!(again.json()["already_adopted"], true);

    // Files the original workflow saved on the pod are listed and downloaded.
    let on_pod = pod.pod_root().join("projects/robot");
    std::fs::create_dir_all(&on_pod).unwrap();
    std::fs::write(on_pod.join("scene.blend"), b"BLENDER-v304 scene").unwrap();
    std::fs::write(on_pod.join("odd\tname.blend"), b"x").unwrap();
    std::fs::write(on_pod.join("notes.txt"), b"x").unwrap();
    let listed = ws
        .rpb_within(
            SLOW,
            &["project", "list", "--remote", "--pod-id", &id, "--json"],
        )
        .await
        .success();
    let files = listed.json()["files"].clone();
    assert_eq!(files.as_array().map(Vec::len), Some(1), "{files}");
    assert_eq!(files[0]["path"], "projects/robot/scene.blend");
    assert_eq!(files[0]["size"], 18);
    let local = ws.dir.path().join("scene.blend");
    ws.rpb_within(
        SLOW,
        &[
            "pull",
            "--pod-id",
            &id,
            "projects/robot/scene.blend",
            &path_string(&local),
        ],
    )
    .await
    .success();
    assert_eq!(std::fs::read(&local).unwrap(), b"BLENDER-v304 scene");

    let undone = ws
        .rpb_within(SLOW, &["adopt", "--pod-id", &id, "--undo", "--json"])
        .await
        .success();
    assert_eq!(undone.json()["undone"], true);
    assert_eq!(args().await, "");

    // Without the hook again, a restart brings a new key: refused, with what to do.
    client.stop_pod(&PodId::new(&id)).await.expect("stop");
    eventually(Duration::from_secs(20), "pod exited", || {
        pod.simulator()
            .pod(&id)
            .is_some_and(|pod| pod.status == runpod_api::PodStatus::Exited)
    })
    .await;
    client.start_pod(&PodId::new(&id)).await.expect("start");
    eventually(Duration::from_secs(20), "pod running", || {
        pod.simulator()
            .pod(&id)
            .is_some_and(|pod| pod.status == runpod_api::PodStatus::Running)
    })
    .await;
    let refused = ws.rpb_within(SLOW, &["adopt", "--pod-id", &id]).await;
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(
        refused.stderr.contains("does not match"),
        "{}",
        refused.stderr
    );
    assert!(
        refused
            .stderr
            .contains(&format!("hint: the pod offered another host key than the one pinned for it. `rpb trust --pod-id {id}`")),
        "{}",
        refused.stderr
    );
    pod.shutdown().await.expect("shutdown");
}
