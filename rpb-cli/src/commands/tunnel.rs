//! The background tunnel process as the CLI runs it: the command line that starts it detached
//! (`blender_session::daemon::spawn`), and the hidden `tunnel-daemon` command, which runs
//! `blender_session::daemon::run_background_tunnel` until a signal ends it.

use std::time::Duration;

use anyhow::{Context as _, bail};
use blender_session::daemon::{
    self, CostGuard, Ending, Liveness, SupervisorOptions, TunnelRecord, TunnelStatus,
};
use blender_session::profile::Profile;
use blender_session::seams::TunnelPorts;
use clap::{Args, Subcommand};
use serde_json::json;
use tokio::signal::unix::{SignalKind, signal};

use crate::ctx::{Ctx, PodArgs, loose_settings, pod_id_of, secret_env};
use crate::output::Outcome;

/// How long `up` waits for the background process to report its tunnel.
const UP_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a stopped tunnel process gets before SIGKILL.
pub(crate) const DOWN_TIMEOUT: Duration = Duration::from_secs(15);

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

/// One line for `tunnel status`.
pub(crate) fn describe(status: &TunnelStatus) -> String {
    match status {
        TunnelStatus::Running(record) => format!(
            "running (pid {}, pod {}): {} · mcp 127.0.0.1:{} · vnc 127.0.0.1:{}",
            record.pid,
            record.pod_id,
            record.novnc_url(),
            record.mcp_port,
            record.vnc_port
        ),
        TunnelStatus::Stale(record, liveness) => format!(
            "not running (pid {} {}; removed the stale record)",
            record.pid,
            if *liveness == Liveness::NotOurs {
                "now belongs to another program"
            } else {
                "is gone"
            }
        ),
        _ => "not running".into(),
    }
}

/// `tunnel status --json`.
pub(crate) fn status_json(status: &TunnelStatus) -> serde_json::Value {
    match status {
        TunnelStatus::Running(record) => {
            let mut document = record_json(record);
            document["state"] = json!("running");
            document
        }
        TunnelStatus::Stale(record, liveness) => json!({
            "state": "stale",
            "pid": record.pid,
            "pid_reused": *liveness == Liveness::NotOurs,
            "cleaned": true,
        }),
        _ => json!({"state": "none"}),
    }
}

/// Starts the background tunnel for `pod_id` and waits until it reports its ports.
pub(crate) async fn up(
    ctx: &Ctx,
    profile: &Profile,
    pod_id: &str,
    guard: CostGuard,
) -> anyhow::Result<TunnelRecord> {
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
    Ok(daemon::spawn(command, &ctx.store.state_dir(), UP_TIMEOUT).await?)
}

/// Fails when a fixed local tunnel port is taken, before anything starts.
pub(crate) fn check_ports_free(ports: TunnelPorts) -> anyhow::Result<()> {
    for (what, port) in [
        ("mcp", ports.mcp),
        ("control", ports.control),
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

/// The background process: runs the library's supervisor until SIGTERM, SIGINT or SIGHUP, the
/// tunnel giving up, the cost guard, or the pod stopping.
pub(crate) async fn daemon(ctx: &Ctx, args: DaemonArgs) -> anyhow::Result<()> {
    let mut profile = ctx.profile_with(&[("RUNPOD_POD_ID", args.pod_id.clone())])?;
    // A background tunnel is kept for hours over flaky networks: it retries (backoff capped at
    // 30 s) for as long as the pod runs, unless RPB_TUNNEL_RECONNECTS says otherwise; the pod
    // check ends it when the pod stops.
    profile.tunnel_reconnects.get_or_insert(u32::MAX);
    let pod_id = args.pod_id;
    let guard = CostGuard::new(args.max_hours, args.idle_stop);
    let orchestrator = profile.orchestrator_with(&ctx.store, loose_settings(&profile))?;
    let mut terminate = signal(SignalKind::terminate()).context("installing SIGTERM handling")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing SIGINT handling")?;
    let mut hangup = signal(SignalKind::hangup()).context("installing SIGHUP handling")?;
    let signalled = async {
        tokio::select! {
            _ = terminate.recv() => "SIGTERM".to_owned(),
            _ = interrupt.recv() => "SIGINT".to_owned(),
            _ = hangup.recv() => "SIGHUP".to_owned(),
        }
    };
    let ending = daemon::run_background_tunnel(
        &orchestrator,
        &pod_id,
        guard,
        &ctx.store.state_dir(),
        SupervisorOptions::default(),
        signalled,
    )
    .await?;
    match ending {
        Ending::TunnelGaveUp { error } => bail!(
            "the tunnel to pod {pod_id} gave up ({}); run `rpb tunnel up` again",
            error.as_deref().unwrap_or("closed")
        ),
        ending => {
            tracing::info!(pod_id, ending = %ending, "the background tunnel ended");
            Ok(())
        }
    }
}

#[derive(Debug, Clone, Subcommand)]
pub(crate) enum TunnelCommand {
    /// Open the tunnel in a background process (the session must run).
    Up {
        #[command(flatten)]
        pod: PodArgs,
        #[command(flatten)]
        guard: GuardArgs,
    },
    /// Close the background tunnel.
    Down,
    /// Whether the background tunnel runs (a stale record is removed).
    Status,
}

pub(crate) async fn tunnel(ctx: &Ctx, command: TunnelCommand) -> anyhow::Result<Outcome> {
    let state_dir = ctx.state_dir()?;
    match command {
        TunnelCommand::Up { pod, guard } => {
            let guard = guard.guard()?;
            let profile = ctx.profile_with(&pod.explicit())?;
            let pod_id = pod_id_of(&profile)?;
            if let daemon::TunnelStatus::Running(record) = daemon::status(&state_dir)? {
                if record.pod_id == pod_id && record.guard == guard {
                    return Ok(Outcome::new(
                        json!({"state": "running", "already": true, "tunnel": record_json(&record)}),
                        format!(
                            "the tunnel already runs (pid {}): {}",
                            record.pid,
                            record.novnc_url()
                        ),
                    ));
                }
                daemon::stop(&state_dir, DOWN_TIMEOUT).await?;
            }
            check_ports_free(profile.local_ports)?;
            let progress = ctx.progress().spinner("opening the tunnel");
            let result = up(ctx, &profile, &pod_id, guard).await;
            progress.finish();
            let record = result?;
            Ok(Outcome::new(
                json!({"state": "running", "already": false, "tunnel": record_json(&record)}),
                format!(
                    "tunnel up (pid {}): {} · mcp 127.0.0.1:{} · vnc 127.0.0.1:{}",
                    record.pid,
                    record.novnc_url(),
                    record.mcp_port,
                    record.vnc_port
                ),
            ))
        }
        TunnelCommand::Down => {
            let outcome = daemon::stop(&state_dir, DOWN_TIMEOUT).await?;
            Ok(Outcome::new(
                json!({"tunnel": outcome.as_str()}),
                match outcome {
                    daemon::Down::Stopped => "tunnel stopped",
                    daemon::Down::Stale => "no tunnel was running (removed a stale record)",
                    _ => "no tunnel was running",
                },
            ))
        }
        TunnelCommand::Status => {
            let status = daemon::status(&state_dir)?;
            let code = u8::from(!matches!(status, daemon::TunnelStatus::Running(_)));
            Ok(
                Outcome::new(status_json(&status), describe(&status)).with_code(if code == 0 {
                    0
                } else {
                    crate::output::EXIT_ERROR
                }),
            )
        }
    }
}

// ---------------------------------------------------------------------------------------------
// mcp-config, doctor

/// The cost guard's limits.
#[derive(Debug, Clone, Args)]
pub(crate) struct GuardArgs {
    /// Stop the pod this many hours after the session started.
    #[arg(long, value_name = "H")]
    max_hours: Option<f64>,
    /// Stop the pod after this many minutes without traffic through the tunnel.
    #[arg(long, value_name = "MINUTES")]
    idle_stop: Option<f64>,
}

impl GuardArgs {
    pub(crate) fn guard(&self) -> anyhow::Result<CostGuard> {
        for (name, value) in [
            ("--max-hours", self.max_hours),
            ("--idle-stop", self.idle_stop),
        ] {
            if value.is_some_and(|value| !(value.is_finite() && value > 0.0)) {
                bail!("{name} must be a positive number");
            }
        }
        Ok(CostGuard::new(self.max_hours, self.idle_stop))
    }
}

/// The tunnel record as `start`, `tunnel up` and `tunnel status` print it.
pub(crate) fn record_json(record: &TunnelRecord) -> serde_json::Value {
    json!({
        "pid": record.pid,
        "pod_id": record.pod_id,
        "mcp_port": record.mcp_port,
        "control_port": record.control_port,
        "vnc_port": record.vnc_port,
        "novnc_port": record.novnc_port,
        "novnc_url": record.novnc_url(),
        "started_at": record.started_at,
        "max_hours": record.guard.max_hours,
        "idle_stop_minutes": record.guard.idle_stop_minutes,
        "log": record.log,
    })
}

pub(crate) fn guard_text(guard: &CostGuard) -> String {
    let mut parts = Vec::new();
    if let Some(hours) = guard.max_hours {
        parts.push(format!("stop after {hours} h"));
    }
    if let Some(minutes) = guard.idle_stop_minutes {
        parts.push(format!("stop after {minutes} min idle"));
    }
    parts.join(", ")
}
