//! Getting started: `init` (workspace, keys, `.env`) and `create` (a new pod).

use std::fmt::Write as _;
use std::io::Read as _;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;
use project_store::ConfigKey;
use secrecy::SecretString;
use serde_json::json;

use crate::ctx::{Ctx, random_secret, sink};
use crate::output::Outcome;

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
    let (report, adopted) = tokio::task::spawn_blocking(move || {
        let report = store.init()?;
        // A workspace made by hand or by the original scripts: its projects' .blend files get
        // manifest entries where they are.
        let mut adopted = Vec::new();
        for name in store.list_projects()? {
            for entry in store.track_loose_blends(&name)? {
                adopted.push(format!("projects/{name}/{}", entry.name));
            }
        }
        anyhow::Ok((report, adopted))
    })
    .await
    .context("initializing the workspace")??;
    let mut notes = Vec::new();
    if !adopted.is_empty() {
        notes.push(format!(
            "recorded {} .blend file(s) already in projects/ (SHA-256 and size; not moved): {}",
            adopted.len(),
            adopted.join(", ")
        ));
    }
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
        let public = crate::ctx::read_public_key(&ssh_key)?;
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
            "recorded_blend_files": adopted,
            "api_key_set": profile.config.api_key.is_some(),
            "ssh_key": ssh_key,
            "ssh_key_generated": generated,
            "ssh_key_registered": registered,
        }),
        human,
    ))
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
    /// Mount this network volume at the pod root instead of a volume disk, and record it as
    /// the workspace's (RUNPOD_NETWORK_VOLUME_ID): a pod that cannot start is then replaced by
    /// a new one on any host of the volume's data center [env: RUNPOD_NETWORK_VOLUME_ID].
    #[arg(long, value_name = "ID")]
    volume: Option<String>,
    #[command(flatten)]
    blender: crate::ctx::BlenderArgs,
}

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
    put(ConfigKey::NetworkVolumeId, args.volume.clone());
    explicit.extend(args.blender.explicit()?);
    let profile = ctx.profile_with(&explicit)?;
    let spec = profile.pod_spec(args.name);
    let public = crate::ctx::read_public_key(&profile.ssh_key()?)?;
    let orchestrator = profile.orchestrator(&ctx.store)?;
    let progress = ctx.progress().spinner("creating the pod");
    let result = orchestrator.create(&spec, &public, &sink(&progress)).await;
    progress.finish();
    let pod = result?;
    args.blender.save(&ctx.store, pod.id.as_str())?;
    if let Some(volume) = &args.volume {
        ctx.store
            .set_config(ConfigKey::NetworkVolumeId, volume)
            .with_context(|| {
                format!(
                    "pod {} was created on network volume {volume}, but saving \
                     RUNPOD_NETWORK_VOLUME_ID={volume} in .env failed: add it by hand",
                    pod.id
                )
            })?;
    }
    Ok(Outcome::new(
        json!({
            "pod_id": pod.id,
            "name": pod.name,
            "status": pod.status.to_string(),
            "cost_per_hour": pod.cost_per_hour,
            "gpu_type": spec.gpu_type,
            "network_volume": spec.network_volume,
            "blender_version": profile.blender.version,
        }),
        format!(
            "created pod {} ({}{}), set up and {}; RUNPOD_POD_ID saved in {}\nnext: rpb start",
            pod.id,
            spec.gpu_type,
            spec.network_volume
                .as_deref()
                .map(|volume| format!(", on network volume {volume}"))
                .unwrap_or_default(),
            pod.status,
            ctx.store.env_file().display()
        ),
    ))
}

// ---------------------------------------------------------------------------------------------
// start / stop / status / ssh-info
