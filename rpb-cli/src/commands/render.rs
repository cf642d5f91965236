//! `rpb render`: parses the options, calls `blender_session::render`, prints progress and the
//! result.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context as _;
use blender_session::render::{
    self, Device, Engine, FollowOptions, ImageFormat, RenderEvent, RenderManifest, RenderOptions,
    RenderOutcome, RenderReport, RenderSource,
};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use project_store::{OnExisting, ProjectName};
use serde_json::json;

use crate::ctx::{Ctx, PodArgs, attach};
use crate::output::{Outcome, Progress};

/// Exit code: the job ended with frames that failed every attempt.
pub(crate) const EXIT_FRAMES_FAILED: u8 = 5;
/// Exit code: the job did not finish (cancelled, by request or the cost guard, or stopped).
pub(crate) const EXIT_RENDER_UNFINISHED: u8 = 6;

#[derive(Debug, Clone, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct RenderArgs {
    #[command(subcommand)]
    command: Option<RenderCommand>,
    #[command(flatten)]
    start: StartArgs,
}

#[derive(Debug, Clone, Subcommand)]
enum RenderCommand {
    /// The job's state on the pod, and its frames.
    Status(JobArgs),
    /// Follow a running job: progress, and its frames as they land.
    Attach(FollowArgs),
    /// Start a job again where it stopped (frames already verified are skipped).
    Resume(FollowArgs),
    /// Cancel a job (verified frames stay).
    Cancel(JobArgs),
    /// Download the job's rendered frames that are not local yet.
    Pull(JobArgs),
    /// The jobs of this workspace, newest first.
    List,
}

#[derive(Debug, Clone, Args)]
struct JobArgs {
    /// The job id [default: the newest job].
    job: Option<String>,
}

#[derive(Debug, Clone, Args)]
struct FollowArgs {
    /// The job id [default: the newest job].
    job: Option<String>,
    #[command(flatten)]
    guard: GuardArgs,
}

#[derive(Debug, Clone, Args)]
struct GuardArgs {
    /// Stop the pod once the job ended and every rendered frame is local.
    #[arg(long)]
    stop_after: bool,
    /// Cancel the job and stop the pod once its run costs this many USD.
    #[arg(long, value_name = "USD")]
    max_cost: Option<f64>,
    /// Cancel the job and stop the pod once its run took this many hours.
    #[arg(long, value_name = "HOURS")]
    max_hours: Option<f64>,
}

impl GuardArgs {
    fn follow_options(&self) -> anyhow::Result<FollowOptions> {
        let mut options = FollowOptions::default();
        options.stop_after = self.stop_after;
        if let Some(cost) = self.max_cost {
            anyhow::ensure!(
                cost.is_finite() && cost > 0.0,
                "--max-cost must be above 0, got {cost}"
            );
            options.max_cost = Some(cost);
        }
        if let Some(hours) = self.max_hours {
            anyhow::ensure!(
                hours.is_finite() && hours > 0.0 && hours < 24.0 * 366.0,
                "--max-hours must be above 0 and below a year, got {hours}"
            );
            options.max_duration = Some(Duration::from_secs_f64(hours * 3600.0));
        }
        Ok(options)
    }
}

#[derive(Debug, Clone, Args)]
struct StartArgs {
    #[command(flatten)]
    pod: PodArgs,
    /// The project whose renders/ folder receives the frames (created if missing).
    #[arg(long, short)]
    project: Option<String>,
    /// Render this saved version of the project (`latest`, a file name or a stem) instead of
    /// the open scene.
    #[arg(long, conflicts_with = "blend")]
    version: Option<String>,
    /// Render this .blend on the pod (absolute, or relative to the pod root) instead of the
    /// open scene.
    #[arg(long, value_name = "PATH")]
    blend: Option<String>,
    /// Frames: 1-250, 1,5,9, 1-100x5 (every 5th).
    #[arg(long, short, value_name = "SPEC")]
    frames: Option<String>,
    /// cycles, eevee or workbench [default: the file's].
    #[arg(long, short)]
    engine: Option<String>,
    /// Samples per pixel [default: the file's].
    #[arg(long, short)]
    samples: Option<u32>,
    /// Output size, WIDTHxHEIGHT [default: the file's].
    #[arg(long, value_name = "WxH", conflicts_with = "percent")]
    resolution: Option<String>,
    /// Output size in percent of the file's resolution.
    #[arg(long)]
    percent: Option<u32>,
    /// PNG, OPEN_EXR or JPEG.
    #[arg(long, default_value = "PNG")]
    format: String,
    /// Cycles device: auto (the best GPU found), cpu, optix, cuda, hip, oneapi.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Cycles denoising: on or off [default: the file's].
    #[arg(long, value_name = "on|off")]
    denoise: Option<String>,
    /// Camera object [default: the scene's].
    #[arg(long)]
    camera: Option<String>,
    /// Scene [default: the file's active scene].
    #[arg(long)]
    scene: Option<String>,
    /// Render a single view layer.
    #[arg(long)]
    view_layer: Option<String>,
    /// Tries again per failed frame.
    #[arg(long, default_value_t = 2)]
    retries: u32,
    /// Render on the farm (`rpb farm up`): one Slurm array task per chunk of frames, spread
    /// over its nodes. The open scene is saved into the project first, as a new version.
    #[arg(long)]
    farm: bool,
    /// Render on a Slurm cluster you already have (a university cluster's login node), over
    /// SSH with the workspace's key: USER@HOST or USER@HOST:PORT.
    #[arg(long, value_name = "USER@HOST", conflicts_with = "farm")]
    slurm: Option<String>,
    /// The cluster's partition [default: the cluster's].
    #[arg(long, requires = "slurm")]
    partition: Option<String>,
    /// A folder every node of the cluster sees [default: $HOME/rpb-farm on the login node].
    #[arg(long, value_name = "PATH", requires = "slurm")]
    shared_dir: Option<String>,
    /// What each cluster task asks for besides a CPU, such as gpu:1 (Slurm's --gres).
    #[arg(long, value_name = "GRES", requires = "slurm")]
    gres: Option<String>,
    /// The cluster's slurm.conf, when its clients need it named (SLURM_CONF).
    #[arg(long, value_name = "PATH", requires = "slurm")]
    slurm_conf: Option<String>,
    /// Frames per farm or cluster task [default: about four tasks per node].
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u32).range(1..))]
    chunk: Option<u32>,
    /// Start the job and return at once (follow it with `rpb render attach`, which takes the
    /// cost guard options).
    #[arg(long, conflicts_with_all = ["stop_after", "max_cost", "max_hours"])]
    detach: bool,
    #[command(flatten)]
    guard: GuardArgs,
}

impl StartArgs {
    fn options(&self) -> anyhow::Result<RenderOptions> {
        let frames = self
            .frames
            .as_deref()
            .context("say which frames to render: --frames 1-250 (or 1,5,9, or 1-100x5)")?
            .parse()?;
        let source = match (&self.version, &self.blend) {
            (Some(version), _) => RenderSource::Version(version.clone()),
            (None, Some(path)) => RenderSource::PodPath(path.clone()),
            (None, None) => RenderSource::OpenScene,
        };
        let mut options = RenderOptions::new(source, frames);
        options.settings.engine = self
            .engine
            .as_deref()
            .map(str::parse::<Engine>)
            .transpose()?;
        options.settings.samples = self.samples;
        options.settings.resolution = self
            .resolution
            .as_deref()
            .map(render::parse_resolution)
            .transpose()?;
        options.settings.percent = self.percent;
        options.settings.format = self.format.parse::<ImageFormat>()?;
        options.settings.device = self.device.parse::<Device>()?;
        options.settings.denoise = match self.denoise.as_deref() {
            None => None,
            Some("on" | "true" | "yes") => Some(true),
            Some("off" | "false" | "no") => Some(false),
            Some(other) => anyhow::bail!("--denoise takes on or off, got {other:?}"),
        };
        options.settings.camera.clone_from(&self.camera);
        options.settings.scene.clone_from(&self.scene);
        options.settings.view_layer.clone_from(&self.view_layer);
        options.settings.retries = self.retries;
        options.validate()?;
        Ok(options)
    }
}

pub(crate) async fn run(ctx: &Ctx, args: RenderArgs) -> anyhow::Result<Outcome> {
    match args.command {
        None => Box::pin(start(ctx, args.start)).await,
        Some(RenderCommand::Attach(follow_args)) => follow(ctx, follow_args, false).await,
        Some(RenderCommand::Resume(follow_args)) => follow(ctx, follow_args, true).await,
        Some(RenderCommand::Status(job)) => status(ctx, &job).await,
        Some(RenderCommand::Cancel(job)) => cancel(ctx, &job).await,
        Some(RenderCommand::Pull(job)) => pull(ctx, &job).await,
        Some(RenderCommand::List) => list(ctx),
    }
}

async fn start(ctx: &Ctx, args: StartArgs) -> anyhow::Result<Outcome> {
    // Everything that can be wrong with the options is said before anything runs on the pod.
    let options = args.options()?;
    let guard = args.guard.follow_options()?;
    let project = ProjectName::new(
        args.project
            .as_deref()
            .context("say which project receives the frames: --project NAME")?,
    )?;
    anyhow::ensure!(
        args.chunk.is_none() || args.farm || args.slurm.is_some(),
        "--chunk cuts a farm job into tasks: use it with --farm or --slurm"
    );
    ctx.store.create_project(&project, OnExisting::Reuse)?;
    if args.farm || args.slurm.is_some() {
        return start_on_farm(ctx, args, options, &project, &guard).await;
    }
    let progress = ctx.progress().spinner("connecting");
    let attached = attach(ctx, &args.pod, &progress).await;
    let (orchestrator, session) = match attached {
        Ok(attached) => attached,
        Err(error) => {
            progress.finish();
            return Err(error);
        }
    };
    progress.event(&blender_session::Event {
        step: blender_session::Step::Transfer,
        elapsed: Duration::ZERO,
        detail: "starting the render job".into(),
    });
    let job = orchestrator
        .render_start(&session, &ctx.store, &project, &options)
        .await;
    progress.finish();
    let job = job?;
    if args.detach {
        let accepted = job.manifest.accepted.clone().unwrap_or_default();
        return Ok(Outcome::new(
            manifest_json(&job.manifest, &job.dir),
            format!(
                "render job {} {} on pod {}: {} frames, Blender {} on {}\n  follow it: rpb render attach {}\n  frames land in {}",
                job.id,
                if job.resumed { "resumed" } else { "started" },
                session.pod_id,
                job.manifest.spec.frames.len(),
                accepted.blender_version,
                accepted.device,
                job.id,
                job.dir.display()
            ),
        ));
    }
    follow_job(ctx, &orchestrator, Some(&session), &job.dir, &guard).await
}

async fn start_on_farm(
    ctx: &Ctx,
    args: StartArgs,
    mut options: RenderOptions,
    project: &ProjectName,
    guard: &FollowOptions,
) -> anyhow::Result<Outcome> {
    let progress = ctx.progress().spinner("connecting");
    if matches!(options.source, RenderSource::OpenScene) {
        // The farm renders files: the open scene becomes the project's newest version first.
        let attached = attach(ctx, &args.pod, &progress).await;
        let saved = match attached {
            Ok((orchestrator, session)) => {
                orchestrator
                    .save(&session, &ctx.store, project, "scene")
                    .await
            }
            Err(error) => {
                progress.finish();
                return Err(error.context(
                    "the farm renders the open scene once it is saved, which needs the session (`rpb start`); or name a saved version with --version",
                ));
            }
        };
        let entry = match saved {
            Ok(entry) => entry,
            Err(error) => {
                progress.finish();
                return Err(error.into());
            }
        };
        options.source = RenderSource::Version(entry.name);
    }
    let profile = ctx.profile()?;
    let orchestrator = profile.orchestrator(&ctx.store)?;
    let job = match &args.slurm {
        Some(login) => {
            let mut cluster = blender_session::SlurmCluster::new(login)?;
            cluster.partition.clone_from(&args.partition);
            cluster.shared_dir.clone_from(&args.shared_dir);
            cluster.slurm_conf.clone_from(&args.slurm_conf);
            cluster.gres.clone_from(&args.gres);
            orchestrator
                .cluster_render_start(
                    &cluster,
                    &ctx.store,
                    project,
                    &options,
                    args.chunk,
                    &crate::ctx::sink(&progress),
                )
                .await
        }
        None => {
            orchestrator
                .farm_render_start(&ctx.store, project, &options, args.chunk)
                .await
        }
    };
    progress.finish();
    let job = job?;
    if args.detach {
        let farm = job.manifest.farm.clone().unwrap_or_default();
        return Ok(Outcome::new(
            manifest_json(&job.manifest, &job.dir),
            format!(
                "render job {} {} on {}: Slurm job {}, {} frames in {} tasks of up to {}\n  follow it: rpb render attach {}\n  frames land in {}",
                job.id,
                if job.resumed { "resumed" } else { "submitted" },
                farm.cluster.as_ref().map_or_else(
                    || "the farm".to_owned(),
                    |cluster| format!("the cluster at {}", cluster.login)
                ),
                farm.slurm_job,
                job.manifest.spec.frames.len(),
                farm.tasks.len(),
                farm.chunk,
                job.id,
                job.dir.display()
            ),
        ));
    }
    follow_job(ctx, &orchestrator, None, &job.dir, guard).await
}

async fn follow(ctx: &Ctx, args: FollowArgs, resume: bool) -> anyhow::Result<Outcome> {
    let guard = args.guard.follow_options()?;
    let job = JobArgs { job: args.job };
    let (dir, manifest) = render::find_job(&ctx.store, job.job.as_deref())?;
    if manifest.farm.is_some() {
        anyhow::ensure!(
            !resume,
            "render job {} ran on the farm: `rpb render --farm` with the same options submits its missing frames again",
            manifest.job_id
        );
        let profile = ctx.profile()?;
        let orchestrator = profile.orchestrator(&ctx.store)?;
        return follow_job(ctx, &orchestrator, None, &dir, &guard).await;
    }
    let (dir, manifest, orchestrator, session) = job_session(ctx, &job).await?;
    if resume {
        let current = orchestrator.render_status(&session, &dir).await?;
        if current.state.ended() {
            let job = orchestrator.render_resume(&session, &dir).await?;
            anyhow::ensure!(
                job.id == manifest.job_id,
                "resuming made job {} instead of {}",
                job.id,
                manifest.job_id
            );
        }
    }
    follow_job(ctx, &orchestrator, Some(&session), &dir, &guard).await
}

/// What the progress display keeps between events.
#[derive(Default)]
struct Shown {
    frame: Option<i64>,
    samples: Option<(u32, u32)>,
    cost: String,
    farm: String,
}

async fn follow_job(
    ctx: &Ctx,
    orchestrator: &blender_session::Orchestrator,
    session: Option<&blender_session::Session>,
    dir: &Path,
    guard: &FollowOptions,
) -> anyhow::Result<Outcome> {
    // A farm job without a farm `--replace-dead` needs no key; with one, the new node is
    // created with the workspace's key.
    let public_key = match session {
        Some(_) => None,
        None => ctx
            .profile()
            .ok()
            .and_then(|profile| profile.ssh_key().ok())
            .and_then(|key| crate::ctx::read_public_key(&key).ok()),
    };
    let total =
        RenderManifest::load_from(dir).map_or(0, |manifest| manifest.spec.frames.len() as u64);
    let bar = Progress::new(&ctx.global).enabled().then(|| {
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template("frames {pos}/{len} [{elapsed:>3}] {wide_bar} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.enable_steady_tick(Duration::from_millis(250));
        bar
    });
    let show = progress_display(bar.clone());
    let following = async {
        match session {
            Some(session) => orchestrator.render_follow(session, dir, guard, &show).await,
            None => {
                orchestrator
                    .farm_render_follow(dir, guard, public_key.as_deref(), &show)
                    .await
            }
        }
    };
    let followed = tokio::select! {
        result = following => Some(result),
        _ = tokio::signal::ctrl_c() => None,
    };
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let Some(result) = followed else {
        let manifest = RenderManifest::load_from(dir)?;
        return Ok(Outcome::new(
            json!({"job_id": manifest.job_id, "state": "detached", "dir": dir}),
            format!(
                "detached: the render goes on on pod {}; follow it again with: rpb render attach {}",
                manifest.pod_id, manifest.job_id
            ),
        )
        .with_code(EXIT_RENDER_UNFINISHED));
    };
    let report = result.with_context(|| {
        format!(
            "following the render (it goes on on the pod; pick it up with: rpb render attach {})",
            dir.file_name()
                .map(|name| name.to_string_lossy())
                .unwrap_or_default()
        )
    })?;
    Ok(report_outcome(&report))
}

/// What the progress bar shows of each render event (nothing without a bar).
fn progress_display(bar: Option<ProgressBar>) -> impl Fn(&RenderEvent) + Send + Sync {
    let shown = Arc::new(Mutex::new(Shown::default()));

    move |event: &RenderEvent| {
        let Some(bar) = &bar else {
            return;
        };
        let mut shown = shown.lock().unwrap_or_else(PoisonError::into_inner);
        match event {
            RenderEvent::FrameStarted { frame, .. } => {
                shown.frame = Some(*frame);
                shown.samples = None;
            }
            RenderEvent::Progress { samples, .. } => shown.samples = *samples,
            RenderEvent::FrameLocal { .. } | RenderEvent::FrameSkipped { .. } => bar.inc(1),
            RenderEvent::FrameFailed {
                frame,
                reason,
                last,
                ..
            } => bar.println(format!(
                "frame {frame} failed{}: {reason}",
                if *last {
                    " (no attempts left)"
                } else {
                    ", trying again"
                }
            )),
            RenderEvent::BlenderError(message) => bar.println(format!("blender: {message}")),
            RenderEvent::CostGuard(reason) => bar.println(format!("cost guard: {reason}")),
            RenderEvent::NodeLost { node, reason } => bar.println(format!(
                "farm node {node} lost ({reason}): its tasks go to the other nodes"
            )),
            RenderEvent::Farm {
                running,
                pending,
                frames_by_node,
            } => {
                // Frames per node: each node's throughput at a glance.
                let nodes: Vec<String> = frames_by_node
                    .iter()
                    .map(|(node, frames)| format!("{node} {frames}"))
                    .collect();
                shown.farm = format!(
                    "{running} tasks running, {pending} waiting · frames {} · ",
                    nodes.join(", ")
                );
            }
            RenderEvent::NodesReplaced { lost, joined } => bar.println(format!(
                "farm: {} joined in place of lost {}",
                joined.join(", "),
                lost.join(", ")
            )),
            RenderEvent::Reconnecting { attempt, error } => bar.println(format!(
                "{error}: connecting again (attempt {attempt}); the render goes on"
            )),
            RenderEvent::Cost(report) => {
                let mut text = format!("{} so far", dollars(report.cost));
                if let (Some(eta), Some(cost)) = (report.eta_seconds, report.cost_to_finish) {
                    let _ = write!(text, ", ~{eta:.0} s and {} to finish", dollars(cost));
                }
                shown.cost = text;
            }
            _ => {}
        }
        let mut message = String::new();
        if let Some(frame) = shown.frame {
            let _ = write!(message, "frame {frame}");
            if let Some((done, all)) = shown.samples {
                let _ = write!(message, " sample {done}/{all}");
            }
            message.push_str(" · ");
        }
        message.push_str(&shown.farm);
        message.push_str(&shown.cost);
        bar.set_message(message);
    }
}

fn report_outcome(report: &RenderReport) -> Outcome {
    let manifest = &report.manifest;
    let costs = manifest.cost_report();
    let accepted = manifest.accepted.clone().unwrap_or_default();
    let mut human = format!(
        "render job {} {}: {} of {} frames in {} (Blender {}, {})\n",
        manifest.job_id,
        manifest.state,
        manifest.frames.len(),
        manifest.spec.frames.len(),
        report.dir.display(),
        accepted.blender_version,
        accepted.device
    );
    for note in &accepted.notes {
        let _ = writeln!(human, "  note: {note}");
    }
    let _ = write!(
        human,
        "  {:.1} s elapsed, {:.1} s rendering",
        costs.elapsed_seconds, costs.render_seconds
    );
    if let Some(mean) = costs.mean_seconds_per_frame {
        let _ = write!(human, ", {mean:.2} s per frame");
    }
    if let Some(rate) = costs.samples_per_minute {
        let _ = write!(human, ", {rate:.0} samples per minute");
    }
    let _ = writeln!(
        human,
        ", {} at {}/h",
        dollars(costs.cost),
        dollars(costs.cost_per_hour)
    );
    if !manifest.skipped.is_empty() {
        let _ = writeln!(
            human,
            "  skipped (rendered by an earlier run): {}",
            frames_text(&manifest.skipped)
        );
    }
    for failed in &manifest.failed {
        let _ = writeln!(
            human,
            "  frame {} failed after {} attempt(s): {}",
            failed.frame, failed.attempts, failed.reason
        );
    }
    let code = match &report.outcome {
        RenderOutcome::Done => 0,
        RenderOutcome::FramesFailed(_) => EXIT_FRAMES_FAILED,
        RenderOutcome::Cancelled(reason) => {
            let _ = writeln!(human, "  cancelled: {reason}");
            EXIT_RENDER_UNFINISHED
        }
        RenderOutcome::Stopped => {
            let _ = writeln!(
                human,
                "  the job stopped before finishing (the pod stopped?): rpb render resume {}",
                manifest.job_id
            );
            EXIT_RENDER_UNFINISHED
        }
        _ => EXIT_RENDER_UNFINISHED,
    };
    farm_lines(manifest, &mut human);
    if report.pod_stopped {
        if manifest.farm.is_some() {
            let _ = writeln!(
                human,
                "  every farm pod stopped (`rpb farm up` starts them)"
            );
        } else {
            let _ = writeln!(human, "  pod {} stopped", manifest.pod_id);
        }
    }
    let mut document = manifest_json(manifest, &report.dir);
    document["pod_stopped"] = json!(report.pod_stopped);
    Outcome::new(document, human).with_code(code)
}

/// The farm's part of a job's report: the Slurm job, frames per node, lost nodes.
fn farm_lines(manifest: &RenderManifest, human: &mut String) {
    if let Some(farm) = &manifest.farm {
        let mut by_node: std::collections::BTreeMap<&str, usize> =
            std::collections::BTreeMap::new();
        for entry in manifest.frames.values() {
            *by_node
                .entry(entry.node.as_deref().unwrap_or("?"))
                .or_default() += 1;
        }
        let nodes: Vec<String> = by_node
            .iter()
            .map(|(node, frames)| format!("{node} {frames}"))
            .collect();
        let _ = writeln!(
            *human,
            "  farm: Slurm job {}, {} tasks; frames per node: {}",
            farm.slurm_job,
            farm.tasks.len(),
            nodes.join(", ")
        );
        for (node, reason) in &farm.lost_nodes {
            let _ = writeln!(
                human,
                "  lost node {node}: {reason}; its tasks ran again elsewhere"
            );
        }
    }
}

/// Dollars with enough digits to show a few seconds of a pod's price.
fn dollars(amount: f64) -> String {
    if amount != 0.0 && amount.abs() < 0.01 {
        format!("${amount:.5}")
    } else {
        format!("${amount:.3}")
    }
}

fn frames_text(frames: &[i64]) -> String {
    frames
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

fn manifest_json(manifest: &RenderManifest, dir: &Path) -> serde_json::Value {
    let accepted = manifest.accepted.clone();
    json!({
        "job_id": manifest.job_id,
        "project": manifest.project,
        "pod_id": manifest.pod_id,
        "state": manifest.state,
        "dir": dir,
        "frames": manifest.frames.values().map(|entry| json!({
            "frame": entry.frame,
            "path": entry.path,
            "sha256": entry.sha256,
            "bytes": entry.bytes,
            "seconds": entry.seconds,
            "samples": entry.samples,
            "state": entry.state,
            "node": entry.node,
        })).collect::<Vec<_>>(),
        "failed": manifest.failed,
        "skipped": manifest.skipped,
        "blender_version": accepted.as_ref().map(|a| a.blender_version.clone()),
        "engine": accepted.as_ref().map(|a| a.engine.clone()),
        "device": accepted.as_ref().map(|a| a.device.clone()),
        "gpu": manifest.gpu,
        "notes": accepted.as_ref().map(|a| a.notes.clone()).unwrap_or_default(),
        "elapsed_seconds": manifest.elapsed_seconds,
        "cost": manifest.cost,
        "report": manifest.cost_report(),
        "reason": manifest.reason,
        "farm": manifest.farm,
    })
}

async fn job_session(
    ctx: &Ctx,
    job: &JobArgs,
) -> anyhow::Result<(
    std::path::PathBuf,
    RenderManifest,
    blender_session::Orchestrator,
    blender_session::Session,
)> {
    let (dir, manifest) = render::find_job(&ctx.store, job.job.as_deref())?;
    let pod = PodArgs {
        pod_id: Some(manifest.pod_id.clone()),
    };
    let progress = ctx.progress().spinner("connecting");
    let attached = attach(ctx, &pod, &progress).await;
    progress.finish();
    let (orchestrator, session) = attached?;
    Ok((dir, manifest, orchestrator, session))
}

async fn status(ctx: &Ctx, job: &JobArgs) -> anyhow::Result<Outcome> {
    let (dir, _, orchestrator, session) = job_session(ctx, job).await?;
    let manifest = orchestrator.render_status(&session, &dir).await?;
    let local = manifest
        .frames
        .values()
        .filter(|e| e.path.is_some())
        .count();
    let human = format!(
        "render job {} on pod {} is {}: {} of {} frames rendered, {} local, {} failed; {:.1} s, {}",
        manifest.job_id,
        manifest.pod_id,
        manifest.state,
        manifest.frames.len(),
        manifest.spec.frames.len(),
        local,
        manifest.failed.len(),
        manifest.elapsed_seconds,
        dollars(manifest.cost)
    );
    Ok(Outcome::new(manifest_json(&manifest, &dir), human))
}

async fn cancel(ctx: &Ctx, job: &JobArgs) -> anyhow::Result<Outcome> {
    let (dir, _, orchestrator, session) = job_session(ctx, job).await?;
    let manifest = orchestrator.render_cancel(&session, &dir).await?;
    Ok(Outcome::new(
        manifest_json(&manifest, &dir),
        format!(
            "render job {} cancelled; {} verified frame(s) stay (rpb render pull {} brings them home)",
            manifest.job_id,
            manifest.frames.len(),
            manifest.job_id
        ),
    ))
}

async fn pull(ctx: &Ctx, job: &JobArgs) -> anyhow::Result<Outcome> {
    let (dir, _, orchestrator, session) = job_session(ctx, job).await?;
    let mut options = FollowOptions::default();
    options.once = true;
    let report = orchestrator
        .render_follow(&session, &dir, &options, &|_| {})
        .await?;
    let manifest = &report.manifest;
    let local = manifest
        .frames
        .values()
        .filter(|e| e.path.is_some())
        .count();
    Ok(Outcome::new(
        manifest_json(manifest, &dir),
        format!(
            "render job {} ({}): {local} frame(s) local in {}",
            manifest.job_id,
            manifest.state,
            dir.display()
        ),
    ))
}

fn list(ctx: &Ctx) -> anyhow::Result<Outcome> {
    let jobs = render::list_jobs(&ctx.store)?;
    let mut human = String::new();
    for (dir, manifest) in &jobs {
        let _ = writeln!(
            human,
            "{}  {:<10} {:>5}/{:<5} frames  {:<9} pod {}  {}",
            manifest.job_id,
            manifest.project,
            manifest.frames.len(),
            manifest.spec.frames.len(),
            manifest.state.as_str(),
            manifest.pod_id,
            dir.display()
        );
    }
    if jobs.is_empty() {
        human.push_str("no render jobs yet (rpb render --project NAME --frames 1-10 starts one)");
    }
    Ok(Outcome::new(
        json!({"jobs": jobs.iter().map(|(dir, manifest)| manifest_json(manifest, dir)).collect::<Vec<_>>()}),
        human,
    ))
}
