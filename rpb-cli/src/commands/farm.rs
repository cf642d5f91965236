//! `rpb farm up|status|down`: a render farm of pods on one network volume, run by Slurm. The
//! logic is `blender_session`'s; this parses and prints.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::Context as _;
use blender_session::{FarmSpec, FarmStatus};
use clap::{Args, Subcommand};
use project_store::ConfigKey;
use serde_json::json;

use crate::ctx::{Ctx, sink};
use crate::output::Outcome;

#[derive(Debug, Clone, Subcommand)]
pub(crate) enum FarmCommand {
    /// Bring the farm up, or repair it: N pods on the network volume, Slurm on each, the first
    /// one its controller. Run again, it changes nothing, or replaces what died.
    Up(UpArgs),
    /// The nodes (pod and Slurm state), the tasks, and what the farm costs.
    Status,
    /// Terminate the farm's pods once their tasks are done (the volume keeps everything).
    Down(DownArgs),
}

#[derive(Debug, Clone, Args)]
pub(crate) struct UpArgs {
    /// How many pods; the first also runs the controller.
    #[arg(long)]
    nodes: u32,
    /// GPU type of the pods [env: RUNPOD_GPU_TYPE].
    #[arg(long)]
    gpu_type: Option<String>,
    /// The network volume the pods share [env: RUNPOD_NETWORK_VOLUME_ID].
    #[arg(long, value_name = "ID")]
    volume: Option<String>,
    /// Stop every pod once the farm has run this many hours.
    #[arg(long, value_name = "HOURS")]
    max_hours: Option<f64>,
    /// Stop every pod once the farm has cost this many USD.
    #[arg(long, value_name = "USD")]
    max_cost: Option<f64>,
    /// When a render job loses a node, bring a new one in its place.
    #[arg(long)]
    replace_dead: bool,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct DownArgs {
    /// End the farm's queued and running tasks at once instead of waiting for them.
    #[arg(long)]
    now: bool,
    /// How long to wait for the tasks before giving up (nothing is terminated then).
    #[arg(long, value_name = "MINUTES", default_value_t = 60)]
    wait_minutes: u64,
}

pub(crate) async fn farm(ctx: &Ctx, command: FarmCommand) -> anyhow::Result<Outcome> {
    match command {
        FarmCommand::Up(args) => up(ctx, args).await,
        FarmCommand::Status => status(ctx).await,
        FarmCommand::Down(args) => down(ctx, args).await,
    }
}

fn positive(value: Option<f64>, flag: &str) -> anyhow::Result<Option<f64>> {
    match value {
        Some(value) if !(value.is_finite() && value > 0.0) => {
            anyhow::bail!("{flag} takes a positive number, got {value}")
        }
        other => Ok(other),
    }
}

async fn up(ctx: &Ctx, args: UpArgs) -> anyhow::Result<Outcome> {
    let max_hours = positive(args.max_hours, "--max-hours")?;
    let max_cost = positive(args.max_cost, "--max-cost")?;
    let mut explicit: Vec<(&str, String)> = Vec::new();
    if let Some(gpu) = &args.gpu_type {
        explicit.push((ConfigKey::GpuType.as_str(), gpu.clone()));
    }
    if let Some(volume) = &args.volume {
        explicit.push((ConfigKey::NetworkVolumeId.as_str(), volume.clone()));
    }
    let profile = ctx.profile_with(&explicit)?;
    let volume = profile.config.network_volume_id.clone().context(
        "the farm's pods share a network volume: give one with --volume ID (`rpb volume create` makes one)",
    )?;
    let mut spec = FarmSpec::new(args.nodes, profile.pod_spec("rpb-farm"), volume);
    spec.max_hours = max_hours;
    spec.max_cost = max_cost;
    spec.replace_dead = args.replace_dead;
    let public = crate::ctx::read_public_key(&profile.ssh_key()?)?;
    let orchestrator = profile.orchestrator(&ctx.store)?;
    let progress = ctx.progress().spinner("bringing up the farm");
    let result = orchestrator.farm_up(&spec, &public, &sink(&progress)).await;
    progress.finish();
    let up = result?;
    let mut human = if up.unchanged() {
        "the farm already runs as asked: nothing changed\n".to_owned()
    } else {
        let mut text = String::new();
        if !up.created.is_empty() {
            let _ = writeln!(text, "created {}", up.created.join(", "));
        }
        if !up.started.is_empty() {
            let _ = writeln!(text, "started {}", up.started.join(", "));
        }
        for (pod, why) in &up.replaced {
            let _ = writeln!(text, "replaced {pod}: {why}");
        }
        text
    };
    human.push_str(&status_text(&up.status));
    Ok(Outcome::new(
        json!({
            "unchanged": up.unchanged(),
            "created": up.created,
            "started": up.started,
            "replaced": up.replaced,
            "conf_changed": up.conf_changed,
            "daemons": up.daemons,
            "status": up.status,
        }),
        human,
    ))
}

async fn status(ctx: &Ctx) -> anyhow::Result<Outcome> {
    let profile = ctx.profile()?;
    let orchestrator = profile.orchestrator(&ctx.store)?;
    let status = orchestrator.farm_status().await?;
    Ok(Outcome::new(json!(status), status_text(&status)))
}

fn status_text(status: &FarmStatus) -> String {
    let mut text = format!(
        "farm on network volume {} ({}): {} nodes, ${:.3}/h, ${:.3} so far over {:.2} h\n",
        status.record.volume_id,
        status.record.data_center.as_deref().unwrap_or("?"),
        status.nodes.len(),
        status.cost_per_hour,
        status.cost_so_far,
        status.hours,
    );
    for node in &status.nodes {
        let _ = writeln!(
            text,
            "  {}{}  pod {}  slurm {}{}  ${:.3}/h{}",
            node.pod_id,
            if node.controller { " (controller)" } else { "" },
            node.pod_status,
            node.slurm_state.as_deref().unwrap_or("?"),
            node.slurm_reason
                .as_deref()
                .map(|reason| format!(" ({reason})"))
                .unwrap_or_default(),
            node.cost_per_hour,
            node.gpu
                .as_deref()
                .map(|gpu| format!("  {gpu}"))
                .unwrap_or_default(),
        );
    }
    let running = status
        .tasks
        .iter()
        .filter(|task| task.state == "RUNNING")
        .count();
    let _ = writeln!(
        text,
        "tasks: {running} running, {} waiting",
        status.tasks.len() - running
    );
    if let Some(error) = &status.slurm_error {
        let _ = writeln!(text, "slurm: {error}");
    }
    if let Some(limit) = status.record.max_cost {
        let _ = writeln!(text, "cost guard: stop every pod at ${limit:.2}");
    }
    if let Some(limit) = status.record.max_hours {
        let _ = writeln!(text, "cost guard: stop every pod after {limit:.2} h");
    }
    if let Some(reason) = &status.guard {
        let _ = writeln!(
            text,
            "the cost guard stopped every pod: {reason} (`rpb farm up` starts them again)"
        );
    }
    text
}

async fn down(ctx: &Ctx, args: DownArgs) -> anyhow::Result<Outcome> {
    let profile = ctx.profile()?;
    let orchestrator = profile.orchestrator(&ctx.store)?;
    let progress = ctx.progress().spinner("taking the farm down");
    let result = orchestrator
        .farm_down(
            args.now,
            Duration::from_secs(args.wait_minutes.saturating_mul(60)),
            &sink(&progress),
        )
        .await;
    progress.finish();
    let down = result?;
    let mut human = format!(
        "terminated {} pod(s): {}\n",
        down.terminated.len(),
        down.terminated.join(", ")
    );
    if !down.gone.is_empty() {
        let _ = writeln!(human, "already gone: {}", down.gone.join(", "));
    }
    if down.tasks_ended > 0 {
        let _ = writeln!(human, "ended {} task(s)", down.tasks_ended);
    }
    human.push_str("the network volume keeps the jobs and the frames\n");
    Ok(Outcome::new(json!(down), human))
}
