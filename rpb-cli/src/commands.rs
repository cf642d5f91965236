//! The commands: each parses its arguments into library calls and describes the result.

use std::fmt::Write as _;
use std::io::{IsTerminal as _, Read as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use blender_session::daemon::{self, CostGuard, GuardStop, TunnelRecord};
use blender_session::orchestrator::boot_command;
use blender_session::profile::Profile;
use blender_session::seams::{PodSpec, TunnelPorts};
use blender_session::{Event, Orchestrator, Session};
use clap::{Args, Subcommand};
use pod_tunnel::shell;
use project_store::{ConfigKey, OnExisting, ProjectName, Store};
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::json;

use crate::Global;
use crate::output::{Outcome, Progress};
use crate::tunnel;

/// What every command needs: the global options and the workspace.
pub(crate) struct Ctx {
    pub(crate) global: Global,
    pub(crate) store: Store,
}

impl Ctx {
    pub(crate) fn new(global: Global) -> anyhow::Result<Self> {
        let mut builder = Store::builder();
        if let Some(root) = &global.workspace {
            builder = builder.root(root);
        }
        if let Some(env_file) = &global.env_file {
            builder = builder.env_file(env_file);
        }
        let store = builder.build().context("choosing the workspace")?;
        Ok(Self { global, store })
    }

    /// The settings: `explicit` (flags), then the environment, then `.env`.
    pub(crate) fn profile_with(&self, explicit: &[(&str, String)]) -> anyhow::Result<Profile> {
        Profile::resolve(&self.store, explicit, |key| std::env::var(key).ok())
            .with_context(|| format!("reading the settings ({})", self.store.env_file().display()))
    }

    pub(crate) fn profile(&self) -> anyhow::Result<Profile> {
        self.profile_with(&[])
    }

    pub(crate) fn progress(&self) -> Progress {
        Progress::new(&self.global)
    }

    /// Prints the outcome and returns its exit code.
    #[expect(clippy::print_stdout, reason = "the CLI prints its results on stdout")]
    pub(crate) fn finish(&self, outcome: &Outcome) -> ExitCode {
        if self.global.json {
            if outcome.json.is_null() {
                return ExitCode::from(outcome.code);
            }
            println!(
                "{}",
                serde_json::to_string_pretty(&outcome.json).unwrap_or_default()
            );
        } else if !outcome.human.is_empty() {
            println!("{}", outcome.human.trim_end());
        }
        ExitCode::from(outcome.code)
    }

    fn state_dir(&self) -> anyhow::Result<PathBuf> {
        let dir = self.store.state_dir();
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("creating the state folder {}", dir.display()))?;
        Ok(dir)
    }
}

/// `--pod-id`, for commands about one pod.
#[derive(Debug, Clone, Args)]
pub(crate) struct PodArgs {
    /// The pod [env: RUNPOD_POD_ID; default: RUNPOD_POD_ID in .env].
    #[arg(long, value_name = "ID")]
    pub(crate) pod_id: Option<String>,
}

impl PodArgs {
    fn explicit(&self) -> Vec<(&'static str, String)> {
        self.pod_id
            .iter()
            .map(|id| (ConfigKey::PodId.as_str(), id.clone()))
            .collect()
    }
}

fn pod_id_of(profile: &Profile) -> anyhow::Result<String> {
    Ok(profile
        .config
        .require_pod_id()
        .context("no pod chosen: pass --pod-id, set RUNPOD_POD_ID, or run `rpb create`")?
        .to_owned())
}

fn sink(progress: &Progress) -> impl Fn(&Event) + Send + Sync + use<> {
    let progress = progress.clone();
    move |event: &Event| progress.event(event)
}

// ---------------------------------------------------------------------------------------------
// init

#[derive(Debug, Clone, Args)]
pub(crate) struct InitArgs {
    /// Read the RunPod API key from standard input (one line) instead of RUNPOD_API_KEY.
    #[arg(long)]
    api_key_stdin: bool,
    /// Do not register the SSH key on the RunPod account.
    #[arg(long)]
    no_register: bool,
}

pub(crate) async fn init(ctx: &Ctx, args: InitArgs) -> anyhow::Result<Outcome> {
    let store = ctx.store.clone();
    let report = tokio::task::spawn_blocking(move || store.init())
        .await
        .context("initializing the workspace")??;
    let mut notes = Vec::new();
    let key = if args.api_key_stdin {
        let mut line = String::new();
        std::io::stdin()
            .read_to_string(&mut line)
            .context("reading the API key from standard input")?;
        let key = line.trim().to_owned();
        if key.is_empty() {
            bail!(
                "--api-key-stdin got an empty line; pipe the key in: `printf %s \"$KEY\" | rpb init --api-key-stdin`"
            );
        }
        Some(SecretString::from(key))
    } else {
        std::env::var("RUNPOD_API_KEY")
            .ok()
            .filter(|key| !key.is_empty())
            .map(SecretString::from)
    };
    if let Some(key) = &key {
        ctx.store.set_secret(ConfigKey::ApiKey, key)?;
        notes.push("saved the API key in .env".to_owned());
    }
    let config = ctx.store.load_config()?;
    if config.vnc_password.is_none() {
        ctx.store
            .set_secret(ConfigKey::VncPassword, &random_secret())?;
        notes.push("generated a VNC password in .env".to_owned());
    }
    let profile = ctx.profile()?;
    let ssh_key = profile.ssh_key()?;
    let generated = ensure_ssh_key(&ssh_key).await?;
    if generated {
        notes.push(format!("generated the SSH key {}", ssh_key.display()));
    }
    let mut registered = None;
    if profile.config.api_key.is_some() && !args.no_register {
        let public = read_public_key(&ssh_key)?;
        let provider = blender_session::adapters::RunpodProvider::new(profile.client()?);
        let added = blender_session::seams::PodProvider::ensure_ssh_key(&provider, &public)
            .await
            .context("registering the SSH key on the RunPod account")?;
        registered = Some(added);
        notes.push(if added {
            "registered the SSH key on the account".to_owned()
        } else {
            "the SSH key is already registered on the account".to_owned()
        });
    } else if profile.config.api_key.is_none() {
        notes.push(
            "no API key yet: set RUNPOD_API_KEY in .env (or `rpb init --api-key-stdin`)".into(),
        );
    }
    let mut human = format!("workspace {}\n", ctx.store.root().display());
    for path in &report.created {
        let _ = writeln!(human, "  created {}", path.display());
    }
    for note in &notes {
        let _ = writeln!(human, "  {note}");
    }
    Ok(Outcome::new(
        json!({
            "workspace": ctx.store.root(),
            "env_file": ctx.store.env_file(),
            "created": report.created,
            "api_key_set": profile.config.api_key.is_some(),
            "ssh_key": ssh_key,
            "ssh_key_generated": generated,
            "ssh_key_registered": registered,
        }),
        human,
    ))
}

fn random_secret() -> SecretString {
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzACDEFGHJKLMNPQRTUVWXY34679";
    let text: String = (0..16)
        .map(|_| char::from(ALPHABET[rand::random_range(0..ALPHABET.len())]))
        .collect();
    SecretString::from(text)
}

pub(crate) fn random_password() -> SecretString {
    random_secret()
}

async fn ensure_ssh_key(path: &Path) -> anyhow::Result<bool> {
    if path.exists() {
        return Ok(false);
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let output = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "rpb", "-f"])
            .arg(path)
            .stdin(std::process::Stdio::null())
            .output(),
    )
    .await
    .context("ssh-keygen timed out")?
    .context("running ssh-keygen (Debian package openssh-client)")?;
    if !output.status.success() {
        bail!(
            "ssh-keygen failed for {}: {}",
            path.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(true)
}

fn read_public_key(private: &Path) -> anyhow::Result<String> {
    let mut public = private.as_os_str().to_owned();
    public.push(".pub");
    let public = PathBuf::from(public);
    Ok(std::fs::read_to_string(&public)
        .with_context(|| {
            format!(
                "reading the public key {} (run `rpb init`)",
                public.display()
            )
        })?
        .trim()
        .to_owned())
}

// ---------------------------------------------------------------------------------------------
// create

#[derive(Debug, Clone, Args)]
pub(crate) struct CreateArgs {
    /// Pod name.
    #[arg(long, default_value = "rpb-blender")]
    name: String,
    /// GPU type id [env: RUNPOD_GPU_TYPE; default: NVIDIA GeForce RTX 4090].
    #[arg(long)]
    gpu_type: Option<String>,
    /// GPUs [env: RUNPOD_GPU_COUNT; default: 1].
    #[arg(long)]
    gpu_count: Option<u32>,
    /// SECURE or COMMUNITY [env: RUNPOD_CLOUD_TYPE; default: SECURE].
    #[arg(long)]
    cloud: Option<String>,
    /// Persistent volume at /runpod, GB [env: RUNPOD_VOLUME_GB; default: 50].
    #[arg(long)]
    volume_gb: Option<u32>,
    /// Container disk, GB [env: RUNPOD_CONTAINER_DISK_GB; default: 20].
    #[arg(long)]
    disk_gb: Option<u32>,
    /// Container image [env: RUNPOD_IMAGE].
    #[arg(long)]
    image: Option<String>,
}

const DEFAULT_IMAGE: &str = "runpod/pytorch:1.0.2-cu1281-torch280-ubuntu2404";

pub(crate) async fn create(ctx: &Ctx, args: CreateArgs) -> anyhow::Result<Outcome> {
    let mut explicit: Vec<(&str, String)> = Vec::new();
    let mut put = |key: ConfigKey, value: Option<String>| {
        if let Some(value) = value {
            explicit.push((key.as_str(), value));
        }
    };
    put(ConfigKey::GpuType, args.gpu_type);
    put(ConfigKey::GpuCount, args.gpu_count.map(|n| n.to_string()));
    put(ConfigKey::CloudType, args.cloud);
    put(ConfigKey::VolumeGb, args.volume_gb.map(|n| n.to_string()));
    put(
        ConfigKey::ContainerDiskGb,
        args.disk_gb.map(|n| n.to_string()),
    );
    put(ConfigKey::Image, args.image);
    let profile = ctx.profile_with(&explicit)?;
    let config = &profile.config;
    let cloud = match config.cloud_type {
        Some(project_store::CloudType::Community) => runpod_api::models::Cloud::Community,
        _ => runpod_api::models::Cloud::Secure,
    };
    let spec = PodSpec {
        name: args.name,
        image: config.image.clone().unwrap_or_else(|| DEFAULT_IMAGE.into()),
        gpu_type: config
            .gpu_type
            .clone()
            .unwrap_or_else(|| "NVIDIA GeForce RTX 4090".into()),
        gpu_count: config.gpu_count.unwrap_or(1),
        cloud,
        volume_gb: config.volume_gb.unwrap_or(50),
        volume_path: profile.pod_root.clone(),
        disk_gb: config.container_disk_gb.unwrap_or(20),
        start_command: boot_command(&profile.pod_root),
    };
    let public = read_public_key(&profile.ssh_key()?)?;
    let orchestrator = profile.orchestrator(&ctx.store)?;
    let progress = ctx.progress().spinner("creating the pod");
    let result = orchestrator.create(&spec, &public, &sink(&progress)).await;
    progress.finish();
    let pod = result?;
    Ok(Outcome::new(
        json!({
            "pod_id": pod.id,
            "name": pod.name,
            "status": pod.status.to_string(),
            "cost_per_hour": pod.cost_per_hour,
            "gpu_type": spec.gpu_type,
        }),
        format!(
            "created pod {} ({}), set up and {}; RUNPOD_POD_ID saved in {}\nnext: rpb start",
            pod.id,
            spec.gpu_type,
            pod.status,
            ctx.store.env_file().display()
        ),
    ))
}

// ---------------------------------------------------------------------------------------------
// start / stop / status / ssh-info

#[derive(Debug, Clone, Args)]
pub(crate) struct StartArgs {
    #[command(flatten)]
    pod: PodArgs,
    #[command(flatten)]
    guard: GuardArgs,
    /// Keep retrying for this many minutes while the pod's host has no free GPU.
    #[arg(long, value_name = "MINUTES")]
    wait_for_gpu: Option<f64>,
}

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
    fn guard(&self) -> anyhow::Result<CostGuard> {
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

fn record_json(record: &TunnelRecord) -> serde_json::Value {
    json!({
        "pid": record.pid,
        "pod_id": record.pod_id,
        "mcp_port": record.mcp_port,
        "vnc_port": record.vnc_port,
        "novnc_port": record.novnc_port,
        "novnc_url": record.novnc_url(),
        "started_at": record.started_at,
        "max_hours": record.guard.max_hours,
        "idle_stop_minutes": record.guard.idle_stop_minutes,
        "log": record.log,
    })
}

pub(crate) async fn start(ctx: &Ctx, args: StartArgs) -> anyhow::Result<Outcome> {
    let guard = args.guard.guard()?;
    let profile = ctx.profile_with(&args.pod.explicit())?;
    let pod_id = pod_id_of(&profile)?;
    let state_dir = ctx.state_dir()?;
    // A tunnel of ours for another pod (or a stale record) goes first; one for this pod stays
    // only when its guard is the same.
    tunnel::down(&state_dir).await?;
    tunnel::check_ports_free(profile.local_ports)?;
    let mut settings = profile.session_settings()?;
    if let Some(minutes) = args.wait_for_gpu {
        settings.wait_for_gpu = Some(blender_session::orchestrator::WaitForGpu {
            interval: Duration::from_secs(10),
            deadline: Duration::from_secs_f64(minutes.max(0.0) * 60.0),
        });
    }
    let orchestrator = profile.orchestrator_with(&ctx.store, settings)?;
    let progress = ctx.progress().spinner("starting");
    let result = orchestrator.start(&pod_id, &sink(&progress)).await;
    let session = match result {
        Ok(session) => session,
        Err(error) => {
            progress.finish();
            return Err(error.into());
        }
    };
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
    let mut human = format!(
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
            "vnc_port": record.vnc_port,
            "novnc_port": record.novnc_port,
            "blender_version": blender,
            "tunnel": record_json(&record),
        }),
        human,
    ))
}

fn guard_text(guard: &CostGuard) -> String {
    let mut parts = Vec::new();
    if let Some(hours) = guard.max_hours {
        parts.push(format!("stop after {hours} h"));
    }
    if let Some(minutes) = guard.idle_stop_minutes {
        parts.push(format!("stop after {minutes} min idle"));
    }
    parts.join(", ")
}

pub(crate) async fn stop(ctx: &Ctx, args: PodArgs) -> anyhow::Result<Outcome> {
    let profile = ctx.profile_with(&args.explicit())?;
    let pod_id = pod_id_of(&profile)?;
    let tunnel = tunnel::down(&ctx.store.state_dir()).await?;
    let orchestrator = profile.orchestrator(&ctx.store)?;
    let progress = ctx.progress().spinner("stopping");
    let result = orchestrator.stop(&pod_id, None, &sink(&progress)).await;
    progress.finish();
    let pod = result?;
    Ok(Outcome::new(
        json!({
            "pod_id": pod_id,
            "status": pod.status.to_string(),
            "cost_per_hour": pod.cost_per_hour,
            "tunnel": tunnel.as_str(),
        }),
        format!(
            "pod {pod_id} is {}; it costs ${:.2}/h now (tunnel: {})",
            pod.status,
            pod.cost_per_hour,
            tunnel.as_str()
        ),
    ))
}

pub(crate) async fn status(ctx: &Ctx, args: PodArgs) -> anyhow::Result<Outcome> {
    let profile = ctx.profile_with(&args.explicit())?;
    let pod_id = pod_id_of(&profile)?;
    let orchestrator = profile.orchestrator_with(&ctx.store, loose_settings(&profile))?;
    let status = orchestrator.status(&pod_id, None).await?;
    let state_dir = ctx.store.state_dir();
    let tunnel = tunnel::status(&state_dir)?;
    let (mcp_answers, novnc_answers) = match &tunnel {
        tunnel::TunnelStatus::Running(record) if record.pod_id == pod_id => (
            tunnel::mcp_answers(record.mcp_port).await,
            tunnel::port_answers(record.novnc_port).await,
        ),
        _ => (false, false),
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
    if let Some(addr) = &pod.ssh {
        let _ = writeln!(human, "  ssh    {addr}");
    }
    let _ = writeln!(human, "  tunnel {}", tunnel.describe());
    if let tunnel::TunnelStatus::Running(_) = &tunnel {
        let _ = writeln!(
            human,
            "  blender {}, novnc {}",
            if mcp_answers {
                "answers"
            } else {
                "does not answer"
            },
            if novnc_answers {
                "answers"
            } else {
                "does not answer"
            }
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
            "uptime_seconds": pod.uptime_seconds,
            "ssh": ssh,
            "tunnel": tunnel.to_json(),
            "blender_answers": mcp_answers,
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
    let command = format!(
        "ssh -i {} -p {} -o UserKnownHostsFile={} -o HostKeyAlias={} {}@{}",
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

#[derive(Debug, Clone, Subcommand)]
pub(crate) enum ProjectCommand {
    /// Create a project folder.
    New {
        /// The project's name (letters, digits, `-`, `_`, `.`).
        name: String,
    },
    /// List the projects.
    List,
    /// A project's saved versions and files.
    Show {
        /// The project's name.
        name: String,
    },
}

pub(crate) fn project(ctx: &Ctx, command: ProjectCommand) -> anyhow::Result<Outcome> {
    match command {
        ProjectCommand::New { name } => {
            let name = ProjectName::new(name)?;
            let project = ctx.store.create_project(&name, OnExisting::Reuse)?;
            Ok(Outcome::new(
                json!({"project": name.as_str(), "dir": project.dir}),
                format!("project {name} at {}", project.dir.display()),
            ))
        }
        ProjectCommand::List => {
            let names = ctx.store.list_projects()?;
            let mut rows = Vec::new();
            let mut human = String::new();
            for name in &names {
                let latest = ctx.store.latest_version(name)?;
                let count = ctx.store.versions(name)?.len();
                let _ = writeln!(
                    human,
                    "{:<24} {count:>3} version(s){}",
                    name.as_str(),
                    latest
                        .as_ref()
                        .map(|entry| format!(", latest {}", entry.name))
                        .unwrap_or_default()
                );
                rows.push(json!({
                    "project": name.as_str(),
                    "versions": count,
                    "latest": latest.map(|entry| entry.name),
                }));
            }
            if names.is_empty() {
                human.push_str("no projects yet: rpb project new NAME");
            }
            Ok(Outcome::new(json!({ "projects": rows }), human))
        }
        ProjectCommand::Show { name } => {
            let name = ProjectName::new(name)?;
            let project = ctx.store.project(&name)?;
            let mut human = format!("project {name} at {}\n", project.dir.display());
            for entry in project.versions() {
                let _ = writeln!(
                    human,
                    "  {:<40} {:>10} B  {}  {}",
                    entry.name,
                    entry.size,
                    entry.saved_at,
                    &entry.sha256.get(..12).unwrap_or_default()
                );
            }
            Ok(Outcome::new(
                json!({
                    "project": name.as_str(),
                    "dir": project.dir,
                    "latest": project.manifest.latest,
                    "files": project.manifest.files,
                }),
                human,
            ))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// work on the pod

/// Attaches to the running session: SSH now, MCP through the background tunnel.
pub(crate) async fn attach(
    ctx: &Ctx,
    pod: &PodArgs,
    progress: &Progress,
) -> anyhow::Result<(Orchestrator, Session)> {
    let profile = ctx.profile_with(&pod.explicit())?;
    let pod_id = pod_id_of(&profile)?;
    let ports = match tunnel::status(&ctx.store.state_dir())? {
        tunnel::TunnelStatus::Running(record) if record.pod_id == pod_id => TunnelPorts {
            mcp: record.mcp_port,
            vnc: record.vnc_port,
            novnc: record.novnc_port,
        },
        _ => profile.local_ports,
    };
    let orchestrator = profile.orchestrator_with(&ctx.store, loose_settings(&profile))?;
    let session = orchestrator.attach(&pod_id, ports, &sink(progress)).await?;
    Ok((orchestrator, session))
}

#[derive(Debug, Clone, Args)]
pub(crate) struct PushArgs {
    #[command(flatten)]
    pod: PodArgs,
    /// The local file.
    local: PathBuf,
    /// Where on the pod [default: the same file name in the pod root].
    remote: Option<String>,
}

pub(crate) async fn push(ctx: &Ctx, args: PushArgs) -> anyhow::Result<Outcome> {
    let progress = ctx.progress().spinner("connecting");
    let (orchestrator, session) = attach(ctx, &args.pod, &progress).await?;
    progress.finish();
    let name = args
        .local
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .context("the local path names no file")?;
    let remote = args.remote.unwrap_or_else(|| {
        format!(
            "{}/{name}",
            orchestrator.settings().pod_root.trim_end_matches('/')
        )
    });
    let (bar, callback) = progress.transfer(&name);
    let result = orchestrator
        .push(&session, &args.local, &remote, callback)
        .await;
    bar.finish();
    let done = result?;
    Ok(Outcome::new(
        json!({"local": args.local, "remote": remote, "bytes": done.bytes, "sha256": done.sha256}),
        format!(
            "uploaded {} → {remote} ({} bytes, sha256 {} verified)",
            args.local.display(),
            done.bytes,
            done.sha256.get(..12).unwrap_or_default()
        ),
    ))
}

#[derive(Debug, Clone, Args)]
pub(crate) struct PullArgs {
    #[command(flatten)]
    pod: PodArgs,
    /// The file on the pod (relative paths are under the pod root).
    remote: String,
    /// Where to write it [default: its file name in the current folder].
    local: Option<PathBuf>,
}

pub(crate) async fn pull(ctx: &Ctx, args: PullArgs) -> anyhow::Result<Outcome> {
    let progress = ctx.progress().spinner("connecting");
    let (orchestrator, session) = attach(ctx, &args.pod, &progress).await?;
    progress.finish();
    let remote = if args.remote.starts_with('/') {
        args.remote.clone()
    } else {
        format!(
            "{}/{}",
            orchestrator.settings().pod_root.trim_end_matches('/'),
            args.remote
        )
    };
    let name = remote.rsplit('/').next().unwrap_or("download").to_owned();
    let local = args.local.unwrap_or_else(|| PathBuf::from(&name));
    let (bar, callback) = progress.transfer(&name);
    let result = orchestrator.pull(&session, &remote, &local, callback).await;
    bar.finish();
    let done = result?;
    Ok(Outcome::new(
        json!({"remote": remote, "local": local, "bytes": done.bytes, "sha256": done.sha256}),
        format!(
            "downloaded {remote} → {} ({} bytes, sha256 {} verified)",
            local.display(),
            done.bytes,
            done.sha256.get(..12).unwrap_or_default()
        ),
    ))
}

#[derive(Debug, Clone, Args)]
pub(crate) struct SaveArgs {
    #[command(flatten)]
    pod: PodArgs,
    /// The project to save into (created if missing).
    #[arg(long, short)]
    project: String,
    /// The version's stem.
    #[arg(long, default_value = "scene")]
    name: String,
}

pub(crate) async fn save(ctx: &Ctx, args: SaveArgs) -> anyhow::Result<Outcome> {
    let project = ProjectName::new(&args.project)?;
    ctx.store.create_project(&project, OnExisting::Reuse)?;
    let progress = ctx.progress().spinner("saving the scene");
    let attached = attach(ctx, &args.pod, &progress).await;
    let result = match attached {
        Ok((orchestrator, session)) => {
            orchestrator
                .save(&session, &ctx.store, &project, &args.name)
                .await
        }
        Err(error) => {
            progress.finish();
            return Err(error);
        }
    };
    progress.finish();
    let entry = result?;
    let path = ctx.store.project(&project)?.path_of(&entry);
    Ok(Outcome::new(
        json!({
            "project": project.as_str(),
            "name": entry.name,
            "path": path,
            "size": entry.size,
            "sha256": entry.sha256,
        }),
        format!(
            "saved {} ({} bytes, sha256 {})",
            path.display(),
            entry.size,
            entry.sha256.get(..12).unwrap_or_default()
        ),
    ))
}

#[derive(Debug, Clone, Args)]
pub(crate) struct OpenArgs {
    #[command(flatten)]
    pod: PodArgs,
    /// The project.
    #[arg(long, short)]
    project: String,
    /// `latest`, a file name or a stem.
    #[arg(default_value = "latest")]
    version: String,
}

pub(crate) async fn open(ctx: &Ctx, args: OpenArgs) -> anyhow::Result<Outcome> {
    let project = ProjectName::new(&args.project)?;
    let progress = ctx.progress().spinner("opening");
    let attached = attach(ctx, &args.pod, &progress).await;
    let result = match attached {
        Ok((orchestrator, session)) => {
            orchestrator
                .open(&session, &ctx.store, &project, &args.version)
                .await
        }
        Err(error) => {
            progress.finish();
            return Err(error);
        }
    };
    progress.finish();
    let remote = result?;
    Ok(Outcome::new(
        json!({"project": project.as_str(), "remote": remote}),
        format!("Blender opened {remote}"),
    ))
}

#[derive(Debug, Clone, Args)]
pub(crate) struct ExecArgs {
    #[command(flatten)]
    pod: PodArgs,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    /// The command and its arguments (after `--`).
    #[arg(required = true, last = true)]
    command: Vec<String>,
}

pub(crate) async fn exec(ctx: &Ctx, args: ExecArgs) -> anyhow::Result<Outcome> {
    let progress = ctx.progress().spinner("connecting");
    let attached = attach(ctx, &args.pod, &progress).await;
    progress.finish();
    let (_, session) = attached?;
    let command = if args.command.len() == 1 {
        args.command[0].clone()
    } else {
        shell::join(&args.command)
    };
    let output = session
        .host()
        .run(&command, None, Duration::from_secs(args.timeout))
        .await?;
    let code = output.code.unwrap_or(128);
    if !ctx.global.json {
        eprint!("{}", output.stderr);
    }
    Ok(Outcome::new(
        json!({"code": output.code, "stdout": output.stdout, "stderr": output.stderr}),
        output.stdout,
    )
    .with_code(u8::try_from(code).unwrap_or(1)))
}

#[derive(Debug, Clone, Args)]
pub(crate) struct PyArgs {
    /// The Python code.
    #[arg(required_unless_present = "file", conflicts_with = "file")]
    code: Option<String>,
    /// Read the code from this file (`-` for standard input).
    #[arg(long, short)]
    file: Option<PathBuf>,
    #[command(flatten)]
    pod: PodArgs,
}

pub(crate) async fn py(ctx: &Ctx, args: PyArgs) -> anyhow::Result<Outcome> {
    let code = match (&args.code, &args.file) {
        (Some(code), _) => code.clone(),
        (None, Some(path)) if path.as_os_str() == "-" => {
            if std::io::stdin().is_terminal() {
                bail!("--file - reads the code from standard input; pipe it in");
            }
            let mut code = String::new();
            std::io::stdin()
                .read_to_string(&mut code)
                .context("reading the code from standard input")?;
            code
        }
        (None, Some(path)) => {
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
        }
        (None, None) => bail!("give the code or --file"),
    };
    let profile = ctx.profile_with(&args.pod.explicit())?;
    let port = match tunnel::status(&ctx.store.state_dir())? {
        tunnel::TunnelStatus::Running(record) => record.mcp_port,
        _ => profile.local_ports.mcp,
    };
    let mut client = blender_session::mcp::Client::connect(format!("127.0.0.1:{port}"))
        .await
        .with_context(|| {
            format!("connecting to Blender on 127.0.0.1:{port}; is the session up (`rpb start`, `rpb tunnel up`)?")
        })?;
    let printed = client.execute_code(&code).await?;
    client.close().await;
    Ok(Outcome::new(json!({"output": printed}), printed))
}

// ---------------------------------------------------------------------------------------------
// tunnel

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
            if let tunnel::TunnelStatus::Running(record) = tunnel::status(&state_dir)? {
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
                tunnel::down(&state_dir).await?;
            }
            tunnel::check_ports_free(profile.local_ports)?;
            let progress = ctx.progress().spinner("opening the tunnel");
            let result = tunnel::up(ctx, &profile, &pod_id, guard).await;
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
            let outcome = tunnel::down(&state_dir).await?;
            Ok(Outcome::new(
                json!({"tunnel": outcome.as_str()}),
                match outcome {
                    tunnel::Down::Stopped => "tunnel stopped",
                    tunnel::Down::Stale => "no tunnel was running (removed a stale record)",
                    tunnel::Down::None => "no tunnel was running",
                },
            ))
        }
        TunnelCommand::Status => {
            let status = tunnel::status(&state_dir)?;
            let code = u8::from(!matches!(status, tunnel::TunnelStatus::Running(_)));
            Ok(
                Outcome::new(status.to_json(), status.describe()).with_code(if code == 0 {
                    0
                } else {
                    crate::EXIT_ERROR
                }),
            )
        }
    }
}

// ---------------------------------------------------------------------------------------------
// mcp-config, doctor

#[derive(Debug, Clone, Args)]
pub(crate) struct McpConfigArgs {
    /// Where to write it [default: .mcp.json in the workspace].
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Print it instead of writing it.
    #[arg(long)]
    print: bool,
}

pub(crate) fn mcp_config(ctx: &Ctx, args: &McpConfigArgs) -> anyhow::Result<Outcome> {
    let profile = ctx.profile()?;
    let port = match tunnel::status(&ctx.store.state_dir())? {
        tunnel::TunnelStatus::Running(record) => record.mcp_port,
        _ => profile.local_ports.mcp,
    };
    let document = mcp_json(port);
    let text = serde_json::to_string_pretty(&document)?;
    if args.print {
        return Ok(Outcome::new(document, text));
    }
    let path = args
        .output
        .clone()
        .unwrap_or_else(|| ctx.store.root().join(".mcp.json"));
    std::fs::write(&path, format!("{text}\n"))
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(Outcome::new(
        json!({"path": path, "mcp_port": port, "config": document}),
        format!(
            "wrote {} (uvx blender-mcp → 127.0.0.1:{port})",
            path.display()
        ),
    ))
}

/// The `.mcp.json` document for `uvx blender-mcp` through the tunnel.
pub(crate) fn mcp_json(port: u16) -> serde_json::Value {
    json!({
        "mcpServers": {
            "blender": {
                "command": "uvx",
                "args": ["blender-mcp"],
                "env": {"BLENDER_HOST": "127.0.0.1", "BLENDER_PORT": port.to_string()},
            }
        }
    })
}

struct Check {
    name: &'static str,
    ok: bool,
    detail: String,
    fix: Option<String>,
}

#[expect(clippy::too_many_lines, reason = "one check after the other")]
pub(crate) async fn doctor(ctx: &Ctx) -> anyhow::Result<Outcome> {
    let mut checks = Vec::new();
    let env_file = ctx.store.env_file().to_owned();
    let config = ctx.store.load_config();
    checks.push(match &config {
        Ok(config) => {
            let loose = config
                .warnings
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>();
            Check {
                name: "config",
                ok: loose.is_empty(),
                detail: if loose.is_empty() {
                    format!("{} reads cleanly", env_file.display())
                } else {
                    loose.join("; ")
                },
                fix: (!loose.is_empty())
                    .then(|| format!("edit {} (chmod 600 it if it is loose)", env_file.display())),
            }
        }
        Err(error) => Check {
            name: "config",
            ok: false,
            detail: error.to_string(),
            fix: Some("run `rpb init`".into()),
        },
    });
    let profile = ctx.profile();
    match &profile {
        Ok(profile) => {
            let key_set = profile.config.api_key.is_some();
            checks.push(Check {
                name: "api key",
                ok: key_set,
                detail: if key_set {
                    "set".into()
                } else {
                    "RUNPOD_API_KEY is not set".into()
                },
                fix: (!key_set)
                    .then(|| "put RUNPOD_API_KEY in .env or run `rpb init --api-key-stdin`".into()),
            });
            checks.push(ssh_key_check(profile));
            if key_set {
                checks.push(api_check(profile).await);
            }
            checks.push(Check {
                name: "vnc password",
                ok: profile.config.vnc_password.is_some(),
                detail: if profile.config.vnc_password.is_some() {
                    "set".into()
                } else {
                    "VNC_PASSWORD is not set".into()
                },
                fix: profile
                    .config
                    .vnc_password
                    .is_none()
                    .then(|| "run `rpb init` (it generates one)".into()),
            });
        }
        Err(error) => checks.push(Check {
            name: "settings",
            ok: false,
            detail: format!("{error:#}"),
            fix: Some(format!("fix the value in {}", env_file.display())),
        }),
    }
    for (program, package) in [("ssh", "openssh-client"), ("ssh-keygen", "openssh-client")] {
        let found = find_program(program);
        checks.push(Check {
            name: "local tool",
            ok: found.is_some(),
            detail: found.map_or_else(
                || format!("{program} not found"),
                |path| format!("{program} at {}", path.display()),
            ),
            fix: found_fix(program, package),
        });
    }
    let failed = checks.iter().filter(|check| !check.ok).count();
    let mut human = String::new();
    for check in &checks {
        let _ = writeln!(
            human,
            "{} {:<13} {}",
            if check.ok { "ok  " } else { "FAIL" },
            check.name,
            check.detail
        );
        if let Some(fix) = &check.fix {
            let _ = writeln!(human, "     fix: {fix}");
        }
    }
    let _ = write!(
        human,
        "{}",
        if failed == 0 {
            "everything looks right".to_owned()
        } else {
            format!("{failed} problem(s)")
        }
    );
    let rows: Vec<_> = checks
        .iter()
        .map(|check| {
            json!({"check": check.name, "ok": check.ok, "detail": check.detail, "fix": check.fix})
        })
        .collect();
    Ok(
        Outcome::new(json!({"ok": failed == 0, "checks": rows}), human).with_code(if failed == 0 {
            0
        } else {
            crate::EXIT_ERROR
        }),
    )
}

fn found_fix(program: &str, package: &str) -> Option<String> {
    find_program(program)
        .is_none()
        .then(|| format!("sudo apt-get install -y {package}"))
}

fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

fn ssh_key_check(profile: &Profile) -> Check {
    use std::os::unix::fs::PermissionsExt as _;
    let Ok(key) = profile.ssh_key() else {
        return Check {
            name: "ssh key",
            ok: false,
            detail: "no SSH key path and no home directory".into(),
            fix: Some("set RUNPOD_SSH_KEY in .env".into()),
        };
    };
    match std::fs::metadata(&key) {
        Ok(meta) if meta.permissions().mode() & 0o077 != 0 => Check {
            name: "ssh key",
            ok: false,
            detail: format!(
                "{} has mode {:o}; ssh refuses keys others can read",
                key.display(),
                meta.permissions().mode() & 0o777
            ),
            fix: Some(format!("chmod 600 {}", key.display())),
        },
        Ok(_) => Check {
            name: "ssh key",
            ok: true,
            detail: format!("{} (mode 600)", key.display()),
            fix: None,
        },
        Err(_) => Check {
            name: "ssh key",
            ok: false,
            detail: format!("{} does not exist", key.display()),
            fix: Some("run `rpb init` (it generates and registers one)".into()),
        },
    }
}

async fn api_check(profile: &Profile) -> Check {
    let result = async {
        let client = profile.client()?;
        let pods = client
            .list_pods(&runpod_api::params::ListPodsParams::default())
            .await?;
        anyhow::Ok((client.base_url().to_owned(), pods.len()))
    }
    .await;
    match result {
        Ok((url, count)) => Check {
            name: "api",
            ok: true,
            detail: format!("{url} answers; {count} pod(s) on the account"),
            fix: None,
        },
        Err(error) => Check {
            name: "api",
            ok: false,
            detail: format!("{error:#}"),
            fix: Some("check RUNPOD_API_KEY and RUNPOD_API_URL, and the network".into()),
        },
    }
}

/// The environment handed to a background process: the resolved secrets, never in argv.
pub(crate) fn secret_env(profile: &Profile) -> Vec<(&'static str, String)> {
    let mut env = Vec::new();
    if let Some(key) = &profile.config.api_key {
        env.push(("RUNPOD_API_KEY", key.expose_secret().to_owned()));
    }
    if let Some(password) = &profile.config.vnc_password {
        env.push(("VNC_PASSWORD", password.expose_secret().to_owned()));
    }
    env
}

/// Session settings from the profile that work without a VNC password (for commands that do
/// not start the session).
pub(crate) fn loose_settings(profile: &Profile) -> blender_session::SessionSettings {
    let password = profile
        .vnc_password()
        .cloned()
        .unwrap_or_else(|| SecretString::from(String::new()));
    let mut settings = blender_session::SessionSettings::new(password);
    settings.pod_root.clone_from(&profile.pod_root);
    settings.remote_ports = profile.remote_ports;
    settings.local_ports = profile.local_ports;
    settings
}
