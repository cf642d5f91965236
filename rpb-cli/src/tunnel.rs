//! The background tunnel process: starting it detached, stopping it by its verified PID, and
//! its own loop (the tunnel, the cost guard, the signals).

use std::os::unix::fs::OpenOptionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use blender_session::daemon::{self, CostGuard, GuardStop, Liveness, TunnelRecord};
use blender_session::profile::Profile;
use blender_session::seams::{PodStatus, TunnelPorts};
use clap::Args;
use serde_json::json;
use tokio::signal::unix::{SignalKind, signal};
use tokio::time::Instant;

use crate::commands::{Ctx, loose_settings, secret_env};

/// How long `up` waits for the background process to report its tunnel.
const UP_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a stopped tunnel process gets before SIGKILL.
const DOWN_TIMEOUT: Duration = Duration::from_secs(15);
/// How often the background process checks traffic and the guard.
const GUARD_TICK: Duration = Duration::from_millis(500);
/// How often it reads the pod's status.
const POD_CHECK: Duration = Duration::from_secs(10);

/// Arguments of the hidden `tunnel-daemon` command (no secrets: those come in the environment).
#[derive(Debug, Clone, Args)]
pub(crate) struct DaemonArgs {
    /// The pod.
    #[arg(long)]
    pod_id: String,
    /// Stop the pod after this many hours.
    #[arg(long)]
    max_hours: Option<f64>,
    /// Stop the pod after this many idle minutes.
    #[arg(long)]
    idle_stop: Option<f64>,
}

/// What `tunnel status` finds.
pub(crate) enum TunnelStatus {
    /// Our process runs.
    Running(TunnelRecord),
    /// A record whose process is gone or is another program now; it was removed.
    Stale(TunnelRecord, Liveness),
    /// No record.
    None,
}

impl TunnelStatus {
    pub(crate) fn describe(&self) -> String {
        match self {
            Self::Running(record) => format!(
                "running (pid {}, pod {}): {} · mcp 127.0.0.1:{} · vnc 127.0.0.1:{}",
                record.pid,
                record.pod_id,
                record.novnc_url(),
                record.mcp_port,
                record.vnc_port
            ),
            Self::Stale(record, liveness) => format!(
                "not running (pid {} {}; removed the stale record)",
                record.pid,
                if *liveness == Liveness::NotOurs {
                    "now belongs to another program"
                } else {
                    "is gone"
                }
            ),
            Self::None => "not running".into(),
        }
    }

    pub(crate) fn to_json(&self) -> serde_json::Value {
        match self {
            Self::Running(record) => json!({
                "state": "running",
                "pid": record.pid,
                "pod_id": record.pod_id,
                "mcp_port": record.mcp_port,
                "vnc_port": record.vnc_port,
                "novnc_port": record.novnc_port,
                "novnc_url": record.novnc_url(),
                "started_at": record.started_at,
                "max_hours": record.guard.max_hours,
                "idle_stop_minutes": record.guard.idle_stop_minutes,
            }),
            Self::Stale(record, liveness) => json!({
                "state": "stale",
                "pid": record.pid,
                "pid_reused": *liveness == Liveness::NotOurs,
                "cleaned": true,
            }),
            Self::None => json!({"state": "none"}),
        }
    }
}

/// What `down` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Down {
    Stopped,
    Stale,
    None,
}

impl Down {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Stopped => "stopped",
            Self::Stale => "stale",
            Self::None => "none",
        }
    }
}

/// Reads the record, removing it when its process is gone or is not ours.
pub(crate) fn status(state_dir: &Path) -> anyhow::Result<TunnelStatus> {
    let path = daemon::record_path(state_dir);
    let Some(record) = TunnelRecord::read(&path)? else {
        return Ok(TunnelStatus::None);
    };
    match record.liveness() {
        Liveness::Running => Ok(TunnelStatus::Running(record)),
        liveness => {
            TunnelRecord::remove(&path)?;
            Ok(TunnelStatus::Stale(record, liveness))
        }
    }
}

/// Ends our background tunnel by its PID, after checking the PID is still ours.
pub(crate) async fn down(state_dir: &Path) -> anyhow::Result<Down> {
    let path = daemon::record_path(state_dir);
    let record = match status(state_dir)? {
        TunnelStatus::Running(record) => record,
        TunnelStatus::Stale(..) => return Ok(Down::Stale),
        TunnelStatus::None => return Ok(Down::None),
    };
    let pid = rustix::process::Pid::from_raw(
        i32::try_from(record.pid).context("the recorded pid is out of range")?,
    )
    .context("the recorded pid is 0")?;
    tracing::info!(pid = record.pid, "stopping the background tunnel");
    let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    let deadline = Instant::now() + DOWN_TIMEOUT;
    while record.liveness() == Liveness::Running {
        if Instant::now() >= deadline {
            tracing::warn!(
                pid = record.pid,
                "the background tunnel ignored SIGTERM; sending SIGKILL"
            );
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    TunnelRecord::remove(&path)?;
    Ok(Down::Stopped)
}

/// Starts the background tunnel for `pod_id` and waits until it reports its ports.
pub(crate) async fn up(
    ctx: &Ctx,
    profile: &Profile,
    pod_id: &str,
    guard: CostGuard,
) -> anyhow::Result<TunnelRecord> {
    let state_dir = ctx.store.state_dir();
    std::fs::create_dir_all(&state_dir)
        .with_context(|| format!("creating {}", state_dir.display()))?;
    let log_path = daemon::log_path(&state_dir);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&log_path)
        .with_context(|| format!("opening the tunnel log {}", log_path.display()))?;
    let log_err = log
        .try_clone()
        .with_context(|| format!("opening the tunnel log {}", log_path.display()))?;
    let exe = std::env::current_exe().context("finding the rpb executable")?;
    let mut command = std::process::Command::new(exe);
    command
        .arg("--workspace")
        .arg(ctx.store.root())
        .arg("--env-file")
        .arg(ctx.store.env_file())
        .args(["tunnel-daemon", "--pod-id", pod_id]);
    if let Some(hours) = guard.max_hours {
        command.arg("--max-hours").arg(hours.to_string());
    }
    if let Some(minutes) = guard.idle_stop_minutes {
        command.arg("--idle-stop").arg(minutes.to_string());
    }
    // Secrets travel in the environment, never in the arguments (`ps` shows those).
    for (key, value) in secret_env(profile) {
        command.env(key, value);
    }
    command
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(log_err)
        // Its own process group: Ctrl-C in this terminal does not reach it.
        .process_group(0);
    let mut child = command
        .spawn()
        .context("starting the background tunnel process")?;
    let pid = child.id();
    let record_path = daemon::record_path(&state_dir);
    let deadline = Instant::now() + UP_TIMEOUT;
    loop {
        if let Some(record) = TunnelRecord::read(&record_path)?
            && record.pid == pid
        {
            return Ok(record);
        }
        if let Some(exit) = child.try_wait().context("watching the tunnel process")? {
            bail!(
                "the background tunnel exited ({exit}) before it was up: {}",
                log_tail(&log_path)
            );
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "the background tunnel was not up within {UP_TIMEOUT:?}; see {}",
                log_path.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The background process's own error line (it prints `error: ...` last), else the log's
/// last line.
fn log_tail(path: &PathBuf) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let last = text
        .lines()
        .rev()
        .find(|line| line.starts_with("error: "))
        .map(|line| line.trim_start_matches("error: "))
        .or_else(|| text.lines().rev().find(|line| !line.trim().is_empty()))
        .unwrap_or("no output");
    format!("{last} (log {})", path.display())
}

/// Fails when a fixed local tunnel port is taken, before anything starts.
pub(crate) fn check_ports_free(ports: TunnelPorts) -> anyhow::Result<()> {
    for (what, port) in [
        ("mcp", ports.mcp),
        ("vnc", ports.vnc),
        ("novnc", ports.novnc),
    ] {
        if port == 0 {
            continue;
        }
        if let Err(error) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            bail!(
                "local port 127.0.0.1:{port} ({what}) is busy ({error}); stop the program \
                 using it or choose another port (RPB_{}_PORT in .env)",
                what.to_uppercase()
            );
        }
    }
    Ok(())
}

/// Whether Blender's MCP socket answers a ping on the local port.
pub(crate) async fn mcp_answers(port: u16) -> bool {
    let probe = async {
        let mut client = blender_session::mcp::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .command_timeout(Duration::from_secs(5))
            .connect(format!("127.0.0.1:{port}"))
            .await
            .ok()?;
        let answered = client.ping().await.ok();
        client.close().await;
        answered
    };
    tokio::time::timeout(Duration::from_secs(8), probe)
        .await
        .ok()
        .flatten()
        .is_some()
}

/// Whether something accepts connections on the local port.
pub(crate) async fn port_answers(port: u16) -> bool {
    tokio::time::timeout(
        Duration::from_secs(3),
        tokio::net::TcpStream::connect(("127.0.0.1", port)),
    )
    .await
    .is_ok_and(|connected| connected.is_ok())
}

/// The background process: opens the tunnel, records itself, keeps the tunnel (`pod_tunnel`
/// reconnects and re-resolves the endpoint through the API by itself), applies the cost guard,
/// and ends on SIGTERM, SIGINT or SIGHUP, or when the pod stops.
pub(crate) async fn daemon(ctx: &Ctx, args: DaemonArgs) -> anyhow::Result<()> {
    let mut profile = ctx.profile_with(&[("RUNPOD_POD_ID", args.pod_id.clone())])?;
    // A background tunnel is kept for hours over flaky networks: it retries (backoff capped at
    // 30 s) for as long as the pod runs, unless RPB_TUNNEL_RECONNECTS says otherwise; the pod
    // check below ends it when the pod stops.
    profile.tunnel_reconnects.get_or_insert(u32::MAX);
    let pod_id = args.pod_id;
    let guard = CostGuard::new(args.max_hours, args.idle_stop);
    let state_dir = ctx.store.state_dir();
    let record_path = daemon::record_path(&state_dir);
    let orchestrator = profile.orchestrator_with(&ctx.store, loose_settings(&profile))?;
    let mut terminate = signal(SignalKind::terminate()).context("installing SIGTERM handling")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing SIGINT handling")?;
    let mut hangup = signal(SignalKind::hangup()).context("installing SIGHUP handling")?;
    tracing::info!(pod_id, "opening the tunnel");
    let session = orchestrator.open_tunnel(&pod_id, &|_| {}).await?;
    let record = TunnelRecord::for_current_process(
        &pod_id,
        session.ports,
        guard,
        daemon::log_path(&state_dir),
    )?;
    record.write(&record_path)?;
    tracing::info!(
        pod_id,
        mcp = record.mcp_port,
        vnc = record.vnc_port,
        novnc = record.novnc_port,
        ?guard,
        "tunnel up"
    );
    let started = Instant::now();
    let mut last_bytes = session.traffic_bytes();
    let mut last_traffic = Instant::now();
    let mut last_pod_check = Instant::now();
    let mut last_state = session.tunnel_state();
    let mut tick = tokio::time::interval(GUARD_TICK);
    let why = loop {
        tokio::select! {
            _ = terminate.recv() => break Ending::Signal("SIGTERM"),
            _ = interrupt.recv() => break Ending::Signal("SIGINT"),
            _ = hangup.recv() => break Ending::Signal("SIGHUP"),
            _ = tick.tick() => {}
        }
        // The tunnel reconnects by itself (re-resolving the endpoint through the API); the log
        // says when, and where to. A tunnel that gave up ends this process: its ports are
        // closed, and a record saying "running" would be a lie.
        let state = session.tunnel_state();
        if state != last_state {
            tracing::info!(pod_id, state, "tunnel state changed");
            if state.starts_with("closed") {
                break Ending::TunnelClosed(state);
            }
            last_state = state;
        }
        let bytes = session.traffic_bytes();
        if bytes != last_bytes {
            last_bytes = bytes;
            last_traffic = Instant::now();
        }
        if let Some(reason) = guard.decide(started.elapsed(), last_traffic.elapsed()) {
            break Ending::Guard(reason);
        }
        if last_pod_check.elapsed() >= POD_CHECK {
            last_pod_check = Instant::now();
            match orchestrator.status(&pod_id, None).await {
                Ok(status)
                    if matches!(status.pod.status, PodStatus::Exited | PodStatus::Terminated) =>
                {
                    break Ending::PodGone(status.pod.status.to_string());
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(error = %error, "reading the pod's status failed"),
            }
        }
    };
    let result = end(why, &orchestrator, session, &pod_id, &state_dir).await;
    // Remove the record only if it is still ours.
    if let Ok(Some(current)) = TunnelRecord::read(&record_path)
        && current.pid == record.pid
    {
        TunnelRecord::remove(&record_path)?;
    }
    result
}

/// Closes the tunnel the way `why` asks: on a signal or a gone pod just closes it; on a guard
/// decision records why and stops the pod.
async fn end(
    why: Ending,
    orchestrator: &blender_session::Orchestrator,
    session: blender_session::Session,
    pod_id: &str,
    state_dir: &Path,
) -> anyhow::Result<()> {
    match why {
        Ending::Signal(name) => {
            tracing::info!(signal = name, "closing the tunnel");
            session.close().await.map_err(anyhow::Error::from)
        }
        Ending::TunnelClosed(state) => {
            tracing::error!(
                pod_id,
                state,
                "the tunnel gave up; run `rpb tunnel up` again"
            );
            Err(anyhow::anyhow!(
                "the tunnel to pod {pod_id} gave up ({state}); run `rpb tunnel up` again"
            ))
        }
        Ending::PodGone(status) => {
            tracing::info!(status, "the pod no longer runs; closing the tunnel");
            session.close().await.map_err(anyhow::Error::from)
        }
        Ending::Guard(reason) => {
            tracing::warn!(pod_id, reason, "cost guard: stopping the pod");
            let stop = GuardStop::now(pod_id, &reason);
            if let Err(error) = stop.write(&daemon::guard_path(state_dir)) {
                tracing::warn!(error = %error, "recording the guard stop failed");
            }
            orchestrator
                .stop(pod_id, Some(session), &|_| {})
                .await
                .map(|pod| tracing::warn!(pod_id, status = %pod.status, "cost guard: pod stopped"))
                .map_err(anyhow::Error::from)
        }
    }
}

enum Ending {
    Signal(&'static str),
    TunnelClosed(String),
    Guard(String),
    PodGone(String),
}
