//! The pod's life: `start`, `stop`, `status` and `ssh-info`.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{Context as _, bail};
use blender_session::Event;
use blender_session::daemon::{self, GuardStop};
use clap::Args;
use serde_json::json;

use crate::commands::tunnel;
use crate::commands::tunnel::{GuardArgs, guard_text, record_json};
use crate::ctx::{Ctx, PodArgs, loose_settings, pod_id_of, sink};
use crate::output::Outcome;

#[derive(Debug, Clone, Args)]
pub(crate) struct StartArgs {
    #[command(flatten)]
    pod: PodArgs,
    #[command(flatten)]
    guard: GuardArgs,
    /// Keep retrying for this many minutes while the pod's host has no free GPU.
    #[arg(long, value_name = "MINUTES")]
    wait_for_gpu: Option<f64>,
    /// A GPU type a replacement pod may have when the pod (on a network volume) cannot start;
    /// repeat it, in order of preference [env: RUNPOD_GPU_TYPES, comma-separated; default: the
    /// pod's own type].
    #[arg(long = "gpu-type", value_name = "TYPE")]
    gpu_types: Vec<String>,
    #[command(flatten)]
    blender: crate::ctx::BlenderArgs,
}

pub(crate) async fn start(ctx: &Ctx, args: StartArgs) -> anyhow::Result<Outcome> {
    let guard = args.guard.guard()?;
    let mut explicit = args.pod.explicit();
    if !args.gpu_types.is_empty() {
        if let Some(bad) = args.gpu_types.iter().find(|gpu| gpu.contains(',')) {
            bail!("--gpu-type takes one GPU type id, not a list ({bad:?}): repeat the flag");
        }
        explicit.push((
            blender_session::profile::GPU_TYPES,
            args.gpu_types.join(","),
        ));
    }
    explicit.extend(args.blender.explicit()?);
    let profile = ctx.profile_with(&explicit)?;
    let old_pod_id = pod_id_of(&profile)?;
    let state_dir = ctx.state_dir()?;
    // A tunnel of ours for another pod (or a stale record) goes first; one for this pod stays
    // only when its guard is the same.
    daemon::stop(&state_dir, tunnel::DOWN_TIMEOUT).await?;
    tunnel::check_ports_free(profile.local_ports)?;
    let mut settings = profile.session_settings()?;
    if !profile.pod_root_set {
        check_pod_root(&profile, &old_pod_id).await?;
    }
    if let Some(minutes) = args.wait_for_gpu {
        settings.wait_for_gpu = Some(blender_session::orchestrator::WaitForGpu {
            interval: Duration::from_secs(10),
            deadline: Duration::from_secs_f64(minutes.max(0.0) * 60.0),
        });
    }
    let orchestrator = profile.orchestrator_with(&ctx.store, settings)?;
    let progress = ctx.progress().spinner("starting");
    let result = orchestrator.start(&old_pod_id, &sink(&progress)).await;
    let session = match result {
        Ok(session) => session,
        Err(error) => {
            progress.finish();
            return Err(error.into());
        }
    };
    // After a move, the session runs on the new pod.
    let pod_id = session.pod_id.clone();
    args.blender.save(&ctx.store, &pod_id)?;
    let moved = session.moved.clone();
    // The session works; hand the tunnel over to a background process of ours.
    let started_pod = session.started_pod;
    let blender = session
        .report
        .addon
        .as_ref()
        .map(|addon| addon.blender_version.clone());
    let _ = session.close().await;
    progress.event(&Event {
        step: blender_session::Step::Tunnel,
        elapsed: Duration::ZERO,
        detail: "handing the tunnel to a background process".into(),
    });
    let spawned = tunnel::up(ctx, &profile, &pod_id, guard).await;
    progress.finish();
    let record = match spawned {
        Ok(record) => record,
        Err(error) if started_pod => {
            let _ = orchestrator.stop(&pod_id, None, &|_| {}).await;
            return Err(error.context(format!(
                "the background tunnel did not start; pod {pod_id} was stopped again"
            )));
        }
        Err(error) => return Err(error),
    };
    let mut human = moved.as_ref().map(moved_text).unwrap_or_default();
    let _ = write!(
        human,
        "pod {pod_id} is running Blender{}\n  open   {}\n  mcp    127.0.0.1:{} (rpb mcp-config writes .mcp.json)\n  vnc    127.0.0.1:{}\n  tunnel pid {} (rpb tunnel status; log {})\n",
        blender
            .as_deref()
            .map(|v| format!(" {v}"))
            .unwrap_or_default(),
        record.novnc_url(),
        record.mcp_port,
        record.vnc_port,
        record.pid,
        record.log.display(),
    );
    if guard.is_armed() {
        let _ = writeln!(human, "  cost guard: {}", guard_text(&guard));
    }
    human.push_str("stop paying with: rpb stop");
    Ok(Outcome::new(
        json!({
            "pod_id": pod_id,
            "started_pod": started_pod,
            "novnc_url": record.novnc_url(),
            "mcp_port": record.mcp_port,
            "control_port": record.control_port,
            "vnc_port": record.vnc_port,
            "novnc_port": record.novnc_port,
            "blender_version": blender,
            "tunnel": record_json(&record),
            "moved": moved.as_ref().map(moved_json),
        }),
        human,
    ))
}

/// With the default pod root (`/runpod`), refuses a pod whose volume is mounted elsewhere (a
/// console pod's `/workspace`): work saved under `/runpod` would be on its container disk and
/// lost at the next stop. Says which setting to pass. A pod that cannot be read is left to
/// `start` to report.
async fn check_pod_root(
    profile: &blender_session::profile::Profile,
    pod_id: &str,
) -> anyhow::Result<()> {
    let Ok(pod) = profile
        .client()?
        .get_pod(&runpod_api::PodId::new(pod_id))
        .await
    else {
        return Ok(());
    };
    let mounted = pod
        .mounts
        .network
        .first()
        .map(|mount| mount.path.clone())
        .or_else(|| {
            pod.mounts
                .persistent
                .as_ref()
                .map(|mount| mount.path.clone())
        });
    match mounted {
        Some(path) if path.trim_end_matches('/') != profile.pod_root.trim_end_matches('/') => {
            bail!(
                "pod {pod_id}'s volume is mounted at {path}, not at the pod root {root}: work \
                 saved under {root} would be on its container disk and lost at the next stop. \
                 Set RPB_POD_ROOT={path} in .env, or run `rpb adopt --pod-id {pod_id}`, which \
                 finds it and records it",
                root = profile.pod_root
            )
        }
        _ => Ok(()),
    }
}

/// The lines that say a session moved to another host, and why.
fn moved_text(moved: &blender_session::orchestrator::Moved) -> String {
    let mut text = format!(
        "moved: pod {} could not start ({}); a new pod with {} in {} took over network volume {}\n",
        moved.from_pod, moved.reason, moved.gpu_type, moved.data_center, moved.volume_id
    );
    if !moved.tried.is_empty() {
        let _ = writeln!(text, "  tried first: {}", moved.tried.join("; "));
    }
    match &moved.old_pod_left {
        None => {
            let _ = writeln!(text, "  the old pod {} is terminated", moved.from_pod);
        }
        Some(error) => {
            let _ = writeln!(
                text,
                "  the old pod {} could not be terminated ({error}): it is stopped and bills only \
                 its disk; terminate it in the RunPod console",
                moved.from_pod
            );
        }
    }
    text
}

fn moved_json(moved: &blender_session::orchestrator::Moved) -> serde_json::Value {
    json!({
        "from_pod": moved.from_pod,
        "reason": moved.reason,
        "volume_id": moved.volume_id,
        "data_center": moved.data_center,
        "gpu_type": moved.gpu_type,
        "tried": moved.tried,
        "old_pod_terminated": moved.old_pod_left.is_none(),
        "old_pod_error": moved.old_pod_left,
    })
}

#[derive(Debug, Clone, Args)]
pub(crate) struct StopArgs {
    #[command(flatten)]
    pod: PodArgs,
    /// Stop a pod on a network volume instead of terminating it (it keeps its container disk
    /// and its host, and bills for the disk).
    #[arg(long)]
    keep: bool,
}

pub(crate) async fn stop(ctx: &Ctx, args: StopArgs) -> anyhow::Result<Outcome> {
    let profile = ctx.profile_with(&args.pod.explicit())?;
    let pod_id = pod_id_of(&profile)?;
    let tunnel = daemon::stop(&ctx.store.state_dir(), tunnel::DOWN_TIMEOUT).await?;
    let orchestrator = profile.orchestrator(&ctx.store)?;
    // A pod whose work is on a network volume is disposable: the next start makes a new one.
    let on_volume = match orchestrator.status(&pod_id, None).await {
        Ok(status) => status.pod.network_volume.is_some(),
        Err(error)
            if error
                .runpod()
                .and_then(runpod_api::Error::kind)
                .is_some_and(|kind| *kind == runpod_api::ApiErrorKind::NotFound) =>
        {
            return Ok(Outcome::new(
                json!({
                    "pod_id": pod_id,
                    "status": "NOT_FOUND",
                    "cost_per_hour": 0.0,
                    "tunnel": tunnel.as_str(),
                }),
                format!(
                    "pod {pod_id} no longer exists: nothing to stop (tunnel: {})",
                    tunnel.as_str()
                ),
            ));
        }
        Err(error) => return Err(error.into()),
    };
    if on_volume && !args.keep {
        let progress = ctx.progress().spinner("terminating");
        let result = orchestrator
            .terminate(&pod_id, None, &sink(&progress))
            .await;
        progress.finish();
        let terminated = result?;
        return Ok(Outcome::new(
            json!({
                "pod_id": pod_id,
                "status": "TERMINATED",
                "cost_per_hour": 0.0,
                "volume_id": terminated.volume_id,
                "checked_on_pod": terminated.checked_on_pod,
                "tunnel": tunnel.as_str(),
            }),
            format!(
                "pod {pod_id} is terminated; network volume {} keeps the work and bills for its \
                 size only (rpb volume list); `rpb start` makes a new pod on it (tunnel: {})",
                terminated.volume_id,
                tunnel.as_str()
            ),
        ));
    }
    let progress = ctx.progress().spinner("stopping");
    let result = orchestrator.stop(&pod_id, None, &sink(&progress)).await;
    progress.finish();
    let pod = result?;
    let idle = pod
        .volume_gb
        .map(|gb| profile.storage_prices.stopped_volume(gb));
    Ok(Outcome::new(
        json!({
            "pod_id": pod_id,
            "status": pod.status.to_string(),
            "cost_per_hour": pod.cost_per_hour,
            "idle_storage": idle_json(idle),
            "tunnel": tunnel.as_str(),
        }),
        format!(
            "pod {pod_id} is {}: {} (tunnel: {})",
            pod.status,
            blender_session::costs::stopped_pod_text(idle),
            tunnel.as_str()
        ),
    ))
}

/// What a stopped pod's volume disk costs, for `--json` (always an estimate).
fn idle_json(idle: Option<blender_session::costs::StorageCost>) -> serde_json::Value {
    idle.map_or(serde_json::Value::Null, |cost| {
        json!({
            "volume_gb": cost.gb,
            "cost_per_hour": cost.per_hour,
            "cost_per_month": cost.per_month,
            "estimate": true,
        })
    })
}

pub(crate) async fn status(ctx: &Ctx, args: PodArgs) -> anyhow::Result<Outcome> {
    let profile = ctx.profile_with(&args.explicit())?;
    let pod_id = pod_id_of(&profile)?;
    let orchestrator = profile.orchestrator_with(&ctx.store, loose_settings(&profile))?;
    let status = orchestrator.status(&pod_id, None).await?;
    let state_dir = ctx.store.state_dir();
    let tunnel = daemon::status(&state_dir)?;
    let (control_answers, mcp_answers, novnc_answers) = match &tunnel {
        daemon::TunnelStatus::Running(record) if record.pod_id == pod_id => (
            record.control_port != 0
                && blender_session::probe::mcp_answers(record.control_port).await,
            blender_session::probe::mcp_answers(record.mcp_port).await,
            blender_session::probe::novnc_answers(record.novnc_port).await,
        ),
        _ => (false, false, false),
    };
    let guard_stop =
        GuardStop::read(&daemon::guard_path(&state_dir)).filter(|stop| stop.pod_id == pod_id);
    let pod = &status.pod;
    let ssh = pod
        .ssh
        .as_ref()
        .map(|addr| json!({"host": addr.host, "port": addr.port, "user": addr.user}));
    let mut human = format!(
        "pod {} ({}) is {}\n  cost   ${:.3}/h, ${:.3} so far{}\n",
        pod.id,
        pod.name,
        pod.status,
        pod.cost_per_hour,
        status.cost_since_start,
        pod.uptime_seconds
            .map(|s| format!(" (up {})", human_duration(s)))
            .unwrap_or_default(),
    );
    let idle = pod
        .volume_gb
        .map(|gb| profile.storage_prices.stopped_volume(gb));
    if let Some(cost) = idle.filter(|cost| cost.gb > 0) {
        let _ = writeln!(
            human,
            "  idle   its {} GB volume costs about ${:.2}/month (${:.3}/h) while stopped \
             (estimate)",
            cost.gb, cost.per_month, cost.per_hour
        );
    }
    if let Some(addr) = &pod.ssh {
        let _ = writeln!(human, "  ssh    {addr}");
    }
    let _ = writeln!(human, "  tunnel {}", tunnel::describe(&tunnel));
    if let daemon::TunnelStatus::Running(_) = &tunnel {
        let answers = |yes: bool| if yes { "answers" } else { "does not answer" };
        let _ = writeln!(
            human,
            "  blender {} (rpb), mcp {}, novnc {}",
            answers(control_answers),
            answers(mcp_answers),
            answers(novnc_answers)
        );
    }
    if let Some(stop) = &guard_stop {
        let _ = writeln!(human, "  stopped by the cost guard: {}", stop.reason);
    }
    Ok(Outcome::new(
        json!({
            "pod_id": pod.id,
            "name": pod.name,
            "status": pod.status.to_string(),
            "cost_per_hour": pod.cost_per_hour,
            "cost_so_far": status.cost_since_start,
            "idle_storage": idle_json(idle),
            "uptime_seconds": pod.uptime_seconds,
            "ssh": ssh,
            "tunnel": tunnel::status_json(&tunnel),
            "blender_answers": control_answers,
            "mcp_answers": mcp_answers,
            "novnc_answers": novnc_answers,
            "guard_stop": guard_stop.map(|stop| json!({"reason": stop.reason, "at": stop.at})),
        }),
        human,
    ))
}

fn human_duration(seconds: u64) -> String {
    let (hours, minutes, seconds) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    if hours > 0 {
        format!("{hours}h{minutes:02}m")
    } else if minutes > 0 {
        format!("{minutes}m{seconds:02}s")
    } else {
        format!("{seconds}s")
    }
}

pub(crate) async fn ssh_info(ctx: &Ctx, args: PodArgs) -> anyhow::Result<Outcome> {
    let profile = ctx.profile_with(&args.explicit())?;
    let pod_id = pod_id_of(&profile)?;
    let orchestrator = profile.orchestrator_with(&ctx.store, loose_settings(&profile))?;
    let status = orchestrator.status(&pod_id, None).await?;
    let Some(addr) = status.pod.ssh else {
        bail!(
            "pod {pod_id} has no SSH endpoint while it is {}; start it with `rpb start`",
            status.pod.status
        );
    };
    let key = profile.ssh_key()?;
    let known_hosts = ctx.store.state_dir().join("known_hosts");
    // OpenSSH is told to check strictly, so the pin must be there: a pod rpb created carries
    // its host key in the API, which is pinned here if this machine never met the pod.
    if let Some(public_key) = status.pod.host_public_key.clone() {
        let (file, name) = (known_hosts.clone(), pod_id.clone());
        tokio::task::spawn_blocking(move || {
            if pod_tunnel::known_host(&file, &name)?.is_none() {
                pod_tunnel::pin_host_key(&file, &[name.as_str()], &public_key)?;
            }
            anyhow::Ok(())
        })
        .await?
        .with_context(|| format!("pinning the host key of pod {pod_id}"))?;
    }
    let command = format!(
        "ssh -i {} -p {} -o UserKnownHostsFile={} -o HostKeyAlias={} -o StrictHostKeyChecking=yes {}@{}",
        key.display(),
        addr.port,
        known_hosts.display(),
        pod_id,
        addr.user,
        addr.host
    );
    Ok(Outcome::new(
        json!({
            "pod_id": pod_id,
            "host": addr.host,
            "port": addr.port,
            "user": addr.user,
            "identity_file": key,
            "known_hosts": known_hosts,
            "command": command,
        }),
        command,
    ))
}

// ---------------------------------------------------------------------------------------------
// projects
