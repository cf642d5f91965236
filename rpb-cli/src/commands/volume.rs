//! `gpus` and `volume`: the GPU catalog (cheapest available first) and the account's network
//! volumes, with what they cost.

use std::fmt::Write as _;

use anyhow::Context as _;
use blender_session::catalog::{self, GpuFilter};
use blender_session::seams::DEFAULT_GPU_TYPE;
use blender_session::volumes::{self, Force};
use clap::{Args, Subcommand};
use project_store::ConfigKey;
use serde_json::json;

use crate::ctx::Ctx;
use crate::output::Outcome;

#[derive(Debug, Clone, Args)]
pub(crate) struct GpusArgs {
    /// Count availability in this data center only (such as EU-RO-1).
    #[arg(long, value_name = "ID")]
    datacenter: Option<String>,
    /// Only GPU types with at least this much VRAM.
    #[arg(long, value_name = "GB")]
    min_vram: Option<u64>,
}

/// The cloud prices are ranked on: `RUNPOD_CLOUD_TYPE`, secure by default.
fn cloud_of(profile: &blender_session::profile::Profile) -> runpod_api::models::Cloud {
    match profile.config.cloud_type {
        Some(project_store::CloudType::Community) => runpod_api::models::Cloud::Community,
        _ => runpod_api::models::Cloud::Secure,
    }
}

fn price(price: Option<f64>) -> String {
    price.map_or_else(|| "-".into(), |price| format!("${price:.2}"))
}

pub(crate) async fn gpus(ctx: &Ctx, args: GpusArgs) -> anyhow::Result<Outcome> {
    let profile = ctx.profile()?;
    let client = profile.client()?;
    let gpus = catalog::gpu_catalog(&client).await?;
    let mut filter = GpuFilter::default();
    if let Some(id) = &args.datacenter {
        filter = filter.data_center(id);
    }
    if let Some(gb) = args.min_vram {
        filter = filter.min_vram_gb(gb);
    }
    let cloud = cloud_of(&profile);
    let ranked = catalog::rank_gpus(&gpus, &filter, &cloud);
    let mut human = format!(
        "GPU types, cheapest available first (per GPU per hour, ranked on the {} cloud{}):\n",
        cloud.as_str().to_lowercase(),
        args.datacenter
            .as_deref()
            .map(|id| format!(", availability in {id}"))
            .unwrap_or_default()
    );
    let _ = writeln!(
        human,
        "  {:<28} {:>5} {:>8} {:>9}  availability",
        "gpu", "vram", "secure", "community"
    );
    for offer in &ranked {
        let centers: Vec<String> = offer
            .data_centers
            .iter()
            .map(|center| format!("{} {}", center.id, center.availability.as_str()))
            .collect();
        let _ = writeln!(
            human,
            "  {:<28} {:>3}GB {:>8} {:>9}  {}{}",
            offer.id,
            offer.vram_gb,
            price(offer.secure_price),
            price(offer.community_price),
            if offer.is_available() {
                ""
            } else {
                "unavailable: "
            },
            centers.join(", ")
        );
    }
    if ranked.is_empty() {
        human.push_str("  (none match)\n");
    }
    Ok(Outcome::new(
        json!({
            "cloud": cloud.as_str(),
            "datacenter": args.datacenter,
            "min_vram_gb": args.min_vram,
            "gpus": ranked.iter().map(|offer| json!({
                "id": offer.id,
                "name": offer.name,
                "vram_gb": offer.vram_gb,
                "secure_price": offer.secure_price,
                "community_price": offer.community_price,
                "price_per_hour": offer.price_per_hour,
                "available": offer.is_available(),
                "availability": offer.availability.as_str(),
                "data_centers": offer.data_centers.iter().map(|center| json!({
                    "id": center.id,
                    "availability": center.availability.as_str(),
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        }),
        human,
    ))
}

/// Network volumes: storage that outlives pods and is not bound to one host.
#[derive(Debug, Clone, Subcommand)]
pub(crate) enum VolumeCommand {
    /// Create a network volume (billed per GB-month until deleted).
    Create(CreateArgs),
    /// The account's network volumes, with what each costs per month.
    List,
    /// Delete a network volume and its data (refused while a pod mounts it).
    Delete(DeleteArgs),
    /// Move the workspace's pod onto a network volume: copy its pod root to a new pod on the
    /// volume, check every file's SHA-256, and switch the workspace.
    Migrate(MigrateArgs),
}

#[derive(Debug, Clone, Args)]
pub(crate) struct MigrateArgs {
    #[command(flatten)]
    pod: crate::ctx::PodArgs,
    /// An existing network volume [default: a new one, the size of the pod's volume disk, in
    /// the data center where the workspace's GPU type is best stocked].
    #[arg(long, value_name = "ID")]
    volume: Option<String>,
    /// The new volume's size in GB (10 to 4096) [default: the pod's volume disk's].
    #[arg(long, value_name = "GB", conflicts_with = "volume")]
    size: Option<u32>,
    /// Keep trying for this many minutes to start the pod while its host has no free GPU.
    #[arg(long, value_name = "MINUTES")]
    wait_for_gpu: Option<f64>,
    /// Where the pod root is staged on this machine (it needs room for all of it) [default:
    /// the workspace's state folder].
    #[arg(long, value_name = "DIR")]
    staging: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct CreateArgs {
    /// Size in GB (10 to 4096).
    #[arg(long, value_name = "GB")]
    size: u32,
    /// The data center [default: where the workspace's GPU type (RUNPOD_GPU_TYPE) is most
    /// available now].
    #[arg(long, value_name = "ID")]
    datacenter: Option<String>,
    /// The volume's name.
    #[arg(long, value_name = "NAME", default_value = "rpb")]
    name: String,
    /// Record it as the workspace's volume (RUNPOD_NETWORK_VOLUME_ID in .env).
    #[arg(long = "use")]
    use_it: bool,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct DeleteArgs {
    /// The volume.
    id: String,
    /// Delete it even when it is the workspace's volume (RUNPOD_NETWORK_VOLUME_ID).
    #[arg(long)]
    force: bool,
}

pub(crate) async fn volume(ctx: &Ctx, command: VolumeCommand) -> anyhow::Result<Outcome> {
    match command {
        VolumeCommand::Create(args) => create(ctx, args).await,
        VolumeCommand::List => list(ctx).await,
        VolumeCommand::Delete(args) => delete(ctx, args).await,
        VolumeCommand::Migrate(args) => migrate(ctx, args).await,
    }
}

async fn migrate(ctx: &Ctx, args: MigrateArgs) -> anyhow::Result<Outcome> {
    let profile = ctx.profile_with(&args.pod.explicit())?;
    let pod_id = crate::ctx::pod_id_of(&profile)?;
    let client = profile.client()?;
    let mut settings = profile.session_settings()?;
    if let Some(minutes) = args.wait_for_gpu {
        settings.wait_for_gpu = Some(blender_session::orchestrator::WaitForGpu {
            interval: std::time::Duration::from_secs(10),
            deadline: std::time::Duration::from_secs_f64(minutes.max(0.0) * 60.0),
        });
    }
    let tunnel = blender_session::daemon::stop(
        &ctx.store.state_dir(),
        crate::commands::tunnel::DOWN_TIMEOUT,
    )
    .await?;
    let orchestrator = profile.orchestrator_with(&ctx.store, settings)?;
    let pod = orchestrator.status(&pod_id, None).await?.pod;
    if let Some(mount) = &pod.network_volume {
        anyhow::bail!(
            "pod {pod_id} already keeps its work on network volume {}: nothing to migrate",
            mount.volume_id
        );
    }
    let (volume_id, created) = if let Some(id) = &args.volume {
        (id.clone(), false)
    } else {
        let size = args
            .size
            .or(pod.volume_gb)
            .unwrap_or(blender_session::seams::DEFAULT_VOLUME_GB)
            .max(runpod_api::models::MIN_NETWORK_VOLUME_GB);
        volumes::check_size(size)?;
        let gpu_type = pod
            .gpu_type
            .clone()
            .or_else(|| profile.config.gpu_type.clone())
            .unwrap_or_else(|| DEFAULT_GPU_TYPE.to_owned());
        let gpus = catalog::gpu_catalog(&client).await?;
        let choice = catalog::choose_data_center(&gpus, &gpu_type)?;
        let volume = volumes::create(&client, "rpb", size, &choice.data_center).await?;
        (volume.id.to_string(), true)
    };
    let public = crate::ctx::read_public_key(&profile.ssh_key()?)?;
    let base = args
        .staging
        .clone()
        .unwrap_or_else(|| ctx.store.state_dir());
    let staging = blender_session::orchestrator::staging_dir(&base)?;
    let progress = ctx.progress().spinner("migrating");
    let result = orchestrator
        .migrate_to_volume(
            &pod_id,
            &volume_id,
            &public,
            &staging,
            &crate::ctx::sink(&progress),
        )
        .await;
    progress.finish();
    let _ = std::fs::remove_dir_all(&staging);
    let migrated = result.with_context(|| {
        if created {
            format!(
                "network volume {volume_id} was created for this and is kept (it bills until \
                 deleted: `rpb volume delete {volume_id}`, or retry with --volume {volume_id})"
            )
        } else {
            format!("network volume {volume_id} is kept")
        }
    })?;
    Ok(Outcome::new(
        json!({
            "from_pod": migrated.from_pod,
            "pod_id": migrated.to_pod,
            "volume_id": migrated.volume_id,
            "data_center": migrated.data_center,
            "volume_created": created,
            "files": migrated.files,
            "bytes": migrated.bytes,
            "links": migrated.links,
            "tunnel": tunnel.as_str(),
        }),
        format!(
            "pod {} on network volume {} ({}) now holds pod {}'s work: {} files, {} bytes, each \
             checked by SHA-256; RUNPOD_POD_ID and RUNPOD_NETWORK_VOLUME_ID saved\n  pod {} is \
             stopped and unchanged; its volume disk still bills: terminate it in the RunPod \
             console once you no longer need it\nnext: rpb start",
            migrated.to_pod,
            migrated.volume_id,
            migrated.data_center,
            migrated.from_pod,
            migrated.files,
            migrated.bytes,
            migrated.from_pod
        ),
    ))
}

async fn create(ctx: &Ctx, args: CreateArgs) -> anyhow::Result<Outcome> {
    volumes::check_size(args.size)?;
    let profile = ctx.profile()?;
    let client = profile.client()?;
    let (data_center, reason) = if let Some(id) = &args.datacenter {
        (id.clone(), "given with --datacenter".to_owned())
    } else {
        let gpu_type = profile
            .config
            .gpu_type
            .clone()
            .unwrap_or_else(|| DEFAULT_GPU_TYPE.to_owned());
        let gpus = catalog::gpu_catalog(&client).await?;
        let choice = catalog::choose_data_center(&gpus, &gpu_type)?;
        (choice.data_center, choice.reason)
    };
    let volume = volumes::create(&client, &args.name, args.size, &data_center).await?;
    let cost = profile.storage_prices.network_volume(volume.size);
    let mut human = format!(
        "created network volume {} ({:?}, {} GB) in {}: {reason}\n  costs about ${:.2}/month \
         (${:.3}/h) until deleted, pods or not (estimate)\n",
        volume.id, volume.name, volume.size, volume.data_center, cost.per_month, cost.per_hour,
    );
    if args.use_it {
        ctx.store
            .set_config(ConfigKey::NetworkVolumeId, volume.id.as_str())
            .with_context(|| format!("recording network volume {} in .env", volume.id))?;
        let _ = writeln!(
            human,
            "  recorded as the workspace's volume ({}={} in {})",
            ConfigKey::NetworkVolumeId,
            volume.id,
            ctx.store.env_file().display()
        );
    }
    Ok(Outcome::new(
        json!({
            "volume": volume,
            "data_center_reason": reason,
            "cost_per_month": cost.per_month,
            "cost_per_hour": cost.per_hour,
            "cost_is_estimate": true,
            "used_by_workspace": args.use_it,
        }),
        human,
    ))
}

async fn list(ctx: &Ctx) -> anyhow::Result<Outcome> {
    let profile = ctx.profile()?;
    let client = profile.client()?;
    let listed = volumes::list(&client, &profile.storage_prices).await?;
    let ours = profile.config.network_volume_id.as_deref();
    let mut human = String::new();
    for item in &listed {
        let volume = &item.volume;
        let _ = writeln!(
            human,
            "{}  {:<16} {:>5} GB  {:<12} ~${:.2}/month{}{}",
            volume.id,
            volume.name,
            volume.size,
            volume.data_center,
            item.cost.per_month,
            item.billed_last_30_days
                .map(|billed| format!(", billed ${billed:.2} in 30 days"))
                .unwrap_or_default(),
            if ours == Some(volume.id.as_str()) {
                "  (this workspace's)"
            } else {
                ""
            }
        );
    }
    let total: f64 = listed.iter().map(|item| item.cost.per_month).sum();
    let billed: Option<f64> = listed.iter().map(|item| item.billed_last_30_days).sum();
    if listed.is_empty() {
        human.push_str("no network volumes\n");
    } else {
        let _ = writeln!(
            human,
            "about ${total:.2}/month in all (estimate from the price table){}",
            billed.map_or_else(
                || "; RunPod's billing did not answer".to_owned(),
                |billed| format!("; RunPod billed ${billed:.2} for them in the last 30 days")
            )
        );
    }
    Ok(Outcome::new(
        json!({
            "volumes": listed.iter().map(|item| json!({
                "id": item.volume.id,
                "name": item.volume.name,
                "size_gb": item.volume.size,
                "data_center": item.volume.data_center,
                "type": item.volume.volume_type.as_str(),
                "cost_per_month": item.cost.per_month,
                "billed_last_30_days": item.billed_last_30_days,
                "workspace": ours == Some(item.volume.id.as_str()),
            })).collect::<Vec<_>>(),
            "cost_per_month": total,
            "cost_is_estimate": true,
            "billed_last_30_days": billed,
        }),
        human,
    ))
}

async fn delete(ctx: &Ctx, args: DeleteArgs) -> anyhow::Result<Outcome> {
    let profile = ctx.profile()?;
    let client = profile.client()?;
    let ours = profile.config.network_volume_id.clone();
    let force = if args.force { Force::Yes } else { Force::No };
    volumes::delete(&client, &args.id, ours.as_deref(), force).await?;
    let mut human = format!("deleted network volume {} and its data", args.id);
    let forgot = ours.as_deref() == Some(args.id.as_str());
    if forgot {
        ctx.store
            .set_config(ConfigKey::NetworkVolumeId, "")
            .with_context(|| format!("forgetting network volume {} in .env", args.id))?;
        human.push_str("; the workspace no longer names it (RUNPOD_NETWORK_VOLUME_ID cleared)");
    }
    Ok(Outcome::new(
        json!({ "deleted": args.id, "workspace_cleared": forgot }),
        human,
    ))
}
