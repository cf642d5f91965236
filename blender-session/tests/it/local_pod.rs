//! The embedded local pod against its real peers: the simulator, a private sshd (Debian package
//! `openssh-server`) and the SSH relays, driven through `runpod_api::Client` and `pod_tunnel`.
//! No Blender is started here; the container-stop emulation is checked with a stand-in process
//! named in a session PID file.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, bail};
use blender_session::local_pod::LocalPod;
use pod_tunnel::{Endpoint, HostKeyPolicy, Session};
use runpod_api::models::{CreatePodRequest, GpuRequest, Pod, PodId, PodStatus};
use runpod_api::{Client, RetryPolicy, WaitFor, WaitOptions};
use secrecy::ExposeSecret as _;
use tokio::io::AsyncReadExt as _;
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep, timeout};

use crate::pod::alive;

/// Bound of each test step.
const STEP: Duration = Duration::from_secs(20);

fn client(local: &LocalPod) -> anyhow::Result<Client> {
    Ok(Client::builder()
        .base_url(local.api_url())
        .api_key(local.api_key().clone())
        .retry_policy(
            RetryPolicy::default()
                .with_backoff(Duration::from_millis(20), Duration::from_millis(200)),
        )
        .build()?)
}

fn request() -> CreatePodRequest {
    CreatePodRequest::new("local-pod-test")
        .image("runpod/pytorch")
        .gpu(GpuRequest::new("NVIDIA RTX A5000"))
        .port("22/tcp")
}

async fn wait(client: &Client, id: &PodId, condition: WaitFor) -> anyhow::Result<Pod> {
    let options = WaitOptions::default()
        .timeout(STEP)
        .intervals(Duration::from_millis(20), Duration::from_millis(100));
    Ok(client.wait_for_pod(id, condition, &options, |_| {}).await?)
}

fn ssh_address(pod: &Pod) -> anyhow::Result<SocketAddr> {
    let target = pod.ssh_endpoint().context("a running pod has ssh.direct")?;
    Ok(format!("{}:{}", target.host, target.port).parse()?)
}

/// Logs in as the local pod's user; retries while the relay of a fresh boot is not listening
/// yet (at most one watcher interval after RUNNING), as a caller does until the banner answers.
async fn connect(
    local: &LocalPod,
    address: SocketAddr,
    known_hosts: &Path,
) -> anyhow::Result<Session> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let attempt = Session::builder()
            .endpoint(Endpoint::new(address.ip().to_string(), address.port()))
            .user(local.ssh_user())
            .identity_file(local.ssh_identity_file())
            .host_key_policy(HostKeyPolicy::accept_new(known_hosts))
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await;
        match attempt {
            Ok(session) => return Ok(session),
            Err(error) if Instant::now() < deadline => {
                tracing::debug!(%error, "not yet");
                sleep(Duration::from_millis(25)).await;
            }
            Err(error) => return Err(error).context(format!("ssh to {address}")),
        }
    }
}

/// What a server at `address` sends first: `Ok(bytes)` (empty when it closes at once), or the
/// connect error.
async fn first_bytes(address: SocketAddr) -> std::io::Result<Vec<u8>> {
    let mut stream = timeout(Duration::from_secs(2), TcpStream::connect(address))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect"))??;
    let mut buffer = vec![0_u8; 8];
    let read = timeout(Duration::from_secs(2), stream.read(&mut buffer))
        .await
        .unwrap_or(Ok(0))
        .unwrap_or(0);
    buffer.truncate(read);
    Ok(buffer)
}

fn says_ssh(answer: &std::io::Result<Vec<u8>>) -> bool {
    answer
        .as_ref()
        .is_ok_and(|bytes| bytes.starts_with(b"SSH-2.0-"))
}

/// Waits (bounded) until `address` refuses connections.
async fn refused(address: SocketAddr) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let answer = first_bytes(address).await;
        if matches!(&answer, Err(error) if error.kind() == std::io::ErrorKind::ConnectionRefused) {
            return Ok(());
        }
        assert!(!says_ssh(&answer), "{address} still serves SSH");
        if Instant::now() >= deadline {
            bail!("{address} still accepts connections: {answer:?}");
        }
        sleep(Duration::from_millis(20)).await;
    }
}

/// Direct children (and their children) of `root`, from /proc.
fn family(root: u32) -> Vec<u32> {
    let table: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .expect("read /proc")
        .flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            let parent = stat[stat.rfind(')')? + 1..]
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            Some((pid, parent))
        })
        .collect();
    let mut found = Vec::new();
    let mut frontier = vec![root];
    while let Some(parent) = frontier.pop() {
        for &(pid, ppid) in &table {
            if ppid == parent && !found.contains(&pid) {
                found.push(pid);
                frontier.push(pid);
            }
        }
    }
    found
}

async fn gone(pids: &[u32]) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while pids.iter().any(|pid| alive(*pid)) {
        if Instant::now() >= deadline {
            return false;
        }
        sleep(Duration::from_millis(20)).await;
    }
    true
}

/// A stand-in for a session process (`sleep 60`), recorded in `run/NAME.pid` as `session.sh`
/// records its own (PID and kernel start time).
fn stand_in(run: &Path, name: &str) -> anyhow::Result<tokio::process::Child> {
    let child = tokio::process::Command::new("sleep")
        .arg("60")
        .kill_on_drop(true)
        .spawn()?;
    let pid = child.id().context("running")?;
    let started = test_support::process::stat(pid)
        .context("the stand-in's stat")?
        .start_time;
    std::fs::create_dir_all(run)?;
    std::fs::write(
        run.join(format!("{name}.pid")),
        format!("{pid} {started}\n"),
    )?;
    Ok(child)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_boot_gets_its_own_port_and_an_ended_boot_s_port_does_not_answer() {
    timeout(Duration::from_secs(60), boots_and_ports())
        .await
        .expect("the test finishes within 60 s")
        .unwrap();
}

#[allow(
    clippy::too_many_lines,
    reason = "one local pod through create, restart and stale ports, told in order"
)]
async fn boots_and_ports() -> anyhow::Result<()> {
    let local = LocalPod::builder().start().await?;
    let client = client(&local)?;
    client.add_ssh_key(local.ssh_public_key()).await?;
    let known = tempfile::tempdir()?;
    let known_hosts = known.path().join("known_hosts");

    let pod = client.create_pod(&request()).await?;
    let pod = wait(&client, &pod.id, WaitFor::SshReady).await?;
    let first = ssh_address(&pod)?;
    assert!(first.ip().is_loopback());
    assert!(
        local.relay_ports().contains(&first.port()),
        "{first} is a relay"
    );
    assert_eq!(
        pod.ssh_endpoint().map(|ssh| ssh.username),
        Some("root".to_owned()),
        "the API says root; the local pod's user is {}",
        local.ssh_user()
    );

    let session = connect(&local, first, &known_hosts).await?;
    let out = session.exec("echo ok").await?;
    assert_eq!(out.stdout_lossy(), "ok\n");
    assert_eq!(session.host_key_fingerprint(), local.host_key_fingerprint());
    // sshd gives every session the pod environment.
    // HOME is the pod's own folder, so the shell reads no startup file of this machine's user;
    // the working directory stays the user's home, where sshd puts every session.
    let out = session
        .exec("printf '%s %s %s %s' \"$RPB_POD_ROOT\" \"$RPB_MCP_PORT\" \"$HOME\" \"$(pwd)\"")
        .await?;
    let home = &local.pod_env()["HOME"];
    assert_eq!(
        out.stdout_lossy(),
        format!(
            "{} {} {home} {}",
            local.pod_root().display(),
            local.remote_ports().mcp,
            std::env::var("HOME").unwrap_or_default(),
        )
    );
    assert!(Path::new(home).is_dir() && home.starts_with(&*local.state_dir().to_string_lossy()));

    // Restart, with the API reporting the old port for a while, as RunPod does.
    local
        .simulator()
        .set_faults(|faults| faults.stale_ssh_port_for = Duration::from_secs(60));
    client.restart_pod(&pod.id).await?;
    let restarted = wait(&client, &pod.id, WaitFor::SshReady).await?;
    assert_eq!(ssh_address(&restarted)?, first, "the stale report");
    let second = local
        .simulator()
        .current_ssh_endpoint(pod.id.as_str())
        .context("the new boot's endpoint")?;
    assert_ne!(second.port(), first.port(), "a new port for the new boot");
    // The old boot's port never shows a banner again, and its connections are cut.
    assert!(
        !says_ssh(&first_bytes(first).await),
        "the stale port answered"
    );
    refused(first).await?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while session.exec("true").await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "the old boot's session still works"
        );
        sleep(Duration::from_millis(50)).await;
    }
    drop(session);

    let session = connect(&local, second, &known_hosts).await?;
    assert_eq!(session.exec("echo again").await?.stdout_lossy(), "again\n");
    assert_eq!(
        session.host_key_fingerprint(),
        local.host_key_fingerprint(),
        "the host key survives the restart"
    );
    drop(session);

    // Stop: the current endpoint refuses at once (within a watcher interval).
    client.stop_pod(&pod.id).await?;
    let stopped = wait(&client, &pod.id, WaitFor::Stopped).await?;
    assert_eq!(stopped.status, PodStatus::Exited);
    refused(second).await?;
    assert_eq!(
        local.simulator().current_ssh_endpoint(pod.id.as_str()),
        None
    );

    // Shutdown ends sshd and its connection processes, by PID.
    let sshd = local.sshd_pid().context("sshd runs")?;
    let direct = connect(&local, local.sshd_address(), &known_hosts).await?;
    assert_eq!(direct.exec("echo direct").await?.stdout_lossy(), "direct\n");
    let mut pids = family(sshd);
    assert!(
        !pids.is_empty(),
        "a connection process serves the open session"
    );
    pids.push(sshd);
    let relays = local.relay_ports();
    let state = local.state_dir().to_path_buf();
    timeout(STEP, local.shutdown()).await??;
    assert!(gone(&pids).await, "sshd processes left: {pids:?}");
    for port in relays {
        assert!(
            first_bytes(SocketAddr::from(([127, 0, 0, 1], port)))
                .await
                .is_err()
        );
    }
    assert!(!state.exists(), "the temporary state directory is removed");
    drop(direct);
    Ok(())
}

// The default (current-thread) runtime, as most callers' tests use.
#[tokio::test]
async fn a_stopped_pod_s_session_processes_are_stopped_and_state_is_reused() {
    timeout(Duration::from_secs(60), container_stop())
        .await
        .expect("the test finishes within 60 s")
        .unwrap();
}

async fn container_stop() -> anyhow::Result<()> {
    let state = tempfile::tempdir()?;
    let local = LocalPod::builder()
        .state_dir(state.path().join("local"))
        .api_key("caller-chosen-key".to_owned().into())
        .start()
        .await?;
    assert_eq!(local.api_key().expose_secret(), "caller-chosen-key");

    // The environment the pod-side scripts get.
    let env = local.pod_env();
    let ports = local.remote_ports();
    let mut distinct = vec![ports.mcp, ports.control, ports.vnc, ports.novnc];
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), 4);
    for (name, port, default) in [
        ("RPB_MCP_PORT", ports.mcp, 9876),
        ("RPB_CONTROL_PORT", ports.control, 9877),
        ("RPB_VNC_PORT", ports.vnc, 5900),
        ("RPB_NOVNC_PORT", ports.novnc, 6080),
    ] {
        assert_eq!(env[name], port.to_string());
        assert_ne!(port, default);
        std::net::TcpListener::bind(("127.0.0.1", port))
            .with_context(|| format!("{name} is free"))?;
    }
    assert_eq!(env["RPB_DISPLAY"], local.display().to_string());
    assert!(!Path::new(&format!("/tmp/.X{}-lock", local.display())).exists());
    assert_eq!(env["RPB_POD_ROOT"], local.pod_root().display().to_string());
    assert_eq!(env["BLENDER_BIN"], "/usr/bin/blender");
    assert!(Path::new(&env["RPB_DEB_SOURCE"]).is_dir());
    assert!(
        Path::new(&env["RPB_SSH_DIR"])
            .join("ssh_host_ed25519_key")
            .is_file()
    );
    assert!(local.ssh_public_key().starts_with("ssh-ed25519 "));
    assert!(local.pod_root().starts_with(state.path()));

    let run = local.pod_root().join("rpb/run");
    let mut stand_in_process = stand_in(&run, "xvfb")?;

    let client = client(&local)?;
    client.add_ssh_key(local.ssh_public_key()).await?;
    let pod = client.create_pod(&request()).await?;
    wait(&client, &pod.id, WaitFor::Running).await?;
    sleep(Duration::from_millis(200)).await;
    assert!(
        stand_in_process.try_wait()?.is_none(),
        "a running pod's processes keep running"
    );

    client.stop_pod(&pod.id).await?;
    let status = timeout(STEP, stand_in_process.wait())
        .await
        .context("the stopped pod's session process was not stopped")??;
    assert!(!status.success(), "ended by a signal: {status:?}");
    // session.sh stop removes the PID file and reports what it stopped.
    let container_log = local.log_dir().join("container.log");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let log = std::fs::read_to_string(&container_log).unwrap_or_default();
        if !run.join("xvfb.pid").exists() && log.contains(r#"{"rpb_stopped":["xvfb"]}"#) {
            break;
        }
        assert!(Instant::now() < deadline, "no stop report in {log}");
        sleep(Duration::from_millis(20)).await;
    }

    // Dropping without shutdown still ends sshd (best effort, by PID); a given state directory
    // is kept, keys included.
    let sshd = local.sshd_pid().context("sshd runs")?;
    let fingerprint = local.host_key_fingerprint().to_owned();
    drop(local);
    assert!(gone(&[sshd]).await, "sshd {sshd} still runs after drop");

    // Started again on the same state directory: the keys are reused, and what a previous
    // run's session left running is stopped.
    let mut leftover = stand_in(&run, "blender")?;
    let again = LocalPod::builder()
        .state_dir(state.path().join("local"))
        .start()
        .await?;
    assert_eq!(again.host_key_fingerprint(), fingerprint);
    let status = timeout(Duration::from_secs(5), leftover.wait())
        .await
        .context("the previous run's session process was not stopped")??;
    assert!(!status.success());
    timeout(STEP, again.shutdown()).await??;
    assert!(
        state.path().join("local/runpod").is_dir(),
        "a given state directory is kept"
    );
    Ok(())
}
