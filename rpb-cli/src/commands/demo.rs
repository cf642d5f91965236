//! `rpb demo`: the main job on the embedded local pod (simulator, private sshd, Blender).

use std::path::Path;

use anyhow::Context as _;
use blender_session::daemon::{self, CostGuard, TunnelRecord};
use blender_session::local_pod::LocalPod;
use blender_session::profile;
use blender_session::render::{
    Device, Engine, FollowOptions, RenderOptions, RenderOutcome, RenderSource,
};
use blender_session::seams::PodSpec;
use blender_session::{Orchestrator, Session};
use clap::Args;
use project_store::{ConfigKey, OnExisting, ProjectName, Store};
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::json;
use tokio::signal::unix::{SignalKind, signal};

use crate::commands::blender::mcp_json;
use crate::ctx::{Ctx, random_password};
use crate::output::{Outcome, Progress};

#[derive(Debug, Clone, Args)]
pub(crate) struct DemoArgs {
    /// Stop and clean up as soon as Blender is ready (for scripts and CI), instead of waiting
    /// for Ctrl-C.
    #[arg(long)]
    exit_after_ready: bool,
    /// Show the render farm instead: two local pods on one network volume run by Slurm
    /// render 8 frames, one node's task after the other's, and the farm goes down (runs as
    /// root; needs the Debian packages slurmctld slurmd slurm-client munge).
    #[arg(long, conflicts_with = "exit_after_ready")]
    farm: bool,
}

pub(crate) async fn run(ctx: &Ctx, args: DemoArgs) -> anyhow::Result<Outcome> {
    let from_env = |key: &str| std::env::var(key).ok().filter(|value| !value.is_empty());
    let vnc_from_env = from_env("VNC_PASSWORD");
    let vnc_source = if vnc_from_env.is_some() {
        "environment"
    } else {
        "generated"
    };
    let vnc_password = vnc_from_env.map_or_else(random_password, SecretString::from);
    let progress = ctx
        .progress()
        .spinner("starting the local pod (simulator, sshd)");
    let temp = tempfile::Builder::new()
        .prefix("rpb-demo-")
        .tempdir()
        .context("creating the demo's temporary folder")?;
    // Always the builder's fresh random key: an exported RUNPOD_API_KEY is a real account's,
    // and the demo writes its key into a temporary .env.
    let pod = match LocalPod::builder().start().await {
        Ok(pod) => pod,
        Err(error) => {
            progress.finish();
            return Err(anyhow::Error::from(error).context("starting the embedded local pod"));
        }
    };
    if args.farm {
        let result = farm_demo(&pod, &temp.path().join("workspace"), &progress).await;
        progress.finish();
        let shutdown = pod.shutdown().await;
        let outcome = result?;
        shutdown.context("stopping the local pod")?;
        return Ok(outcome);
    }
    let flow = Flow {
        ctx,
        pod: &pod,
        workspace: &temp.path().join("workspace"),
        vnc_password,
        vnc_source,
        progress: &progress,
        exit_after_ready: args.exit_after_ready,
    };
    let result = flow.run().await;
    progress.finish();
    let shutdown = pod.shutdown().await;
    let outcome = result?;
    shutdown.context("stopping the local pod")?;
    Ok(outcome)
}

struct Flow<'a> {
    ctx: &'a Ctx,
    pod: &'a LocalPod,
    workspace: &'a Path,
    vnc_password: SecretString,
    vnc_source: &'static str,
    progress: &'a Progress,
    exit_after_ready: bool,
}

impl Flow<'_> {
    async fn run(&self) -> anyhow::Result<Outcome> {
        let store = Store::builder()
            .root(self.workspace)
            .ignore_environment()
            .build()?;
        store.init()?;
        let settings = self.pod.session_settings(self.vnc_password.clone());
        let orchestrator = self
            .pod
            .orchestrator(store.state_dir().join("known_hosts"), settings)?
            .with_store(store.clone());
        let spec = PodSpec::new("rpb-demo")
            .gpu_type("NVIDIA RTX A5000")
            .cloud(runpod_api::models::Cloud::Community);
        let progress = self.progress.clone();
        let sink = move |event: &blender_session::Event| progress.event(event);
        let created = orchestrator
            .create(&spec, self.pod.ssh_public_key(), &sink)
            .await?;
        let pod_id = created.id.to_string();
        let session = orchestrator.start(&pod_id, &sink).await?;
        let result = self.ready(&orchestrator, &store, &session).await;
        let document = match result {
            Ok(document) => document,
            Err(error) => {
                let _ = orchestrator.stop(&pod_id, Some(session), &sink).await;
                return Err(error);
            }
        };
        if !self.exit_after_ready {
            self.progress.finish();
            // Record the demo's own tunnel, so `rpb --workspace ... status` and `tunnel status`
            // see it (and `tunnel down` ends the demo cleanly, by its verified PID).
            let record_path = daemon::record_path(&store.state_dir());
            TunnelRecord::for_current_process(
                &pod_id,
                session.ports,
                CostGuard::default(),
                daemon::log_path(&store.state_dir()),
            )?
            .write(&record_path)?;
            self.announce(&document, &store);
            let waited = wait_for_interrupt().await;
            let _ = TunnelRecord::remove(&record_path);
            waited?;
        }
        let stopped = orchestrator.stop(&pod_id, Some(session), &sink).await?;
        let mut document = document;
        if let Some(fields) = document.as_object_mut() {
            // The demo's workspace is gone with the demo.
            fields.remove("workspace");
        }
        document["stopped"] = json!({
            "status": stopped.status.to_string(),
            "cost_per_hour": stopped.cost_per_hour,
        });
        if !self.exit_after_ready {
            return Ok(Outcome::new(
                serde_json::Value::Null,
                format!(
                    "stopped pod {pod_id} ({}) and every process of the local pod",
                    stopped.status
                ),
            ));
        }
        let human = format!(
            "the demo ran: Blender {} answered with scene {:?}; pod {pod_id} is {} now",
            document["blender_version"].as_str().unwrap_or("?"),
            document["scene"]["name"].as_str().unwrap_or("?"),
            stopped.status
        );
        Ok(Outcome::new(document, human))
    }

    /// Reads the scene through MCP and records the demo's settings in its workspace `.env` so
    /// other `rpb` commands can work on it (`rpb --workspace DIR status`).
    async fn ready(
        &self,
        orchestrator: &Orchestrator,
        store: &Store,
        session: &Session,
    ) -> anyhow::Result<serde_json::Value> {
        let mut blender = session.mcp().await?;
        let scene = blender.scene_info().await?;
        blender.close().await;
        let render = self.render(orchestrator, store, session).await?;
        let remote = self.pod.remote_ports();
        let api_key = self.pod.api_key().clone();
        let entries: [(&str, String); 13] = [
            (profile::API_URL, self.pod.api_url()),
            (profile::SSH_USER, self.pod.ssh_user().to_owned()),
            (profile::POD_ROOT, orchestrator.settings().pod_root.clone()),
            (profile::POD_MCP_PORT, remote.mcp.to_string()),
            (profile::POD_CONTROL_PORT, remote.control.to_string()),
            (profile::POD_VNC_PORT, remote.vnc.to_string()),
            (profile::POD_NOVNC_PORT, remote.novnc.to_string()),
            (
                ConfigKey::SshKey.as_str(),
                self.pod.ssh_identity_file().display().to_string(),
            ),
            (ConfigKey::McpPort.as_str(), session.ports.mcp.to_string()),
            (
                ConfigKey::ControlPort.as_str(),
                session.ports.control.to_string(),
            ),
            (ConfigKey::VncPort.as_str(), session.ports.vnc.to_string()),
            (
                ConfigKey::NoVncPort.as_str(),
                session.ports.novnc.to_string(),
            ),
            (ConfigKey::PodId.as_str(), session.pod_id.clone()),
        ];
        for (key, value) in entries {
            store.set_env_var(key, &value)?;
        }
        store.set_secret(ConfigKey::ApiKey, &api_key)?;
        store.set_secret(ConfigKey::VncPassword, &self.vnc_password)?;
        Ok(json!({
            "pod_id": session.pod_id,
            "novnc_url": session.novnc_url(),
            "mcp_port": session.ports.mcp,
            "vnc_port": session.ports.vnc,
            "novnc_port": session.ports.novnc,
            "vnc_password_source": self.vnc_source,
            "blender_version": session.report.addon.as_ref().map(|addon| addon.blender_version.clone()),
            "scene": scene,
            "workspace": store.root(),
            "mcp_config": mcp_json(session.ports.mcp),
            "render": render,
        }))
    }

    /// Renders a few small frames of the (animated) default scene on the CPU, as `rpb render`
    /// does: a detached job on the pod, each frame verified and downloaded into the project.
    async fn render(
        &self,
        orchestrator: &Orchestrator,
        store: &Store,
        session: &Session,
    ) -> anyhow::Result<serde_json::Value> {
        self.progress.event(&blender_session::Event {
            step: blender_session::Step::Transfer,
            elapsed: std::time::Duration::ZERO,
            detail: "rendering 3 small frames".into(),
        });
        let mut blender = session.mcp().await?;
        blender
            .execute_code(
                "import bpy\ncube = bpy.data.objects['Cube']\nfor frame, x in ((1, -2.0), (3, 2.0)):\n    cube.location.x = x\n    cube.keyframe_insert('location', frame=frame)\n",
            )
            .await?;
        blender.close().await;
        let project = ProjectName::new("demo")?;
        store.create_project(&project, OnExisting::Reuse)?;
        let mut options = RenderOptions::new(RenderSource::OpenScene, "1-3".parse()?);
        options.settings.engine = Some(Engine::Cycles);
        options.settings.device = Device::Cpu;
        options.settings.samples = Some(8);
        options.settings.resolution = Some((160, 90));
        let job = orchestrator
            .render_start(session, store, &project, &options)
            .await?;
        let report = orchestrator
            .render_follow(session, &job.dir, &FollowOptions::default(), &|_| {})
            .await?;
        anyhow::ensure!(
            report.outcome == RenderOutcome::Done,
            "the demo render ended {:?}",
            report.outcome
        );
        Ok(json!({
            "job_id": report.manifest.job_id,
            "state": report.manifest.state,
            "frames": report.manifest.frames.values().map(|entry| json!({
                "frame": entry.frame,
                "sha256": entry.sha256,
                "seconds": entry.seconds,
                "path": entry.path,
            })).collect::<Vec<_>>(),
            "device": report.manifest.accepted.as_ref().map(|accepted| accepted.device.clone()),
            "dir": report.dir,
        }))
    }

    #[expect(
        clippy::print_stdout,
        reason = "the demo shows where things are before it waits"
    )]
    fn announce(&self, document: &serde_json::Value, store: &Store) {
        if self.ctx.global.json {
            println!(
                "{}",
                serde_json::to_string_pretty(document).unwrap_or_default()
            );
            return;
        }
        let password = if self.vnc_source == "generated" {
            format!(
                "{} (generated; set VNC_PASSWORD to choose one)",
                self.vnc_password.expose_secret()
            )
        } else {
            "from VNC_PASSWORD".to_owned()
        };
        println!(
            "Blender runs on the local pod {pod}.\n\n  open     {url}\n  password {password}\n  scene    {scene} ({count} objects)\n  mcp      127.0.0.1:{mcp}\n  render   {frames} frames rendered on the pod and verified in {render_dir}\n\n.mcp.json for the blender-mcp server ({server}):\n{mcp_json}\n\nTry, in another terminal:\n  rpb --workspace {ws} status\n  rpb --workspace {ws} py 'import bpy; print(bpy.app.version_string)'\n  rpb --workspace {ws} render --project demo --frames 1-3 --device cpu --samples 8 --resolution 160x90\n\nPress Ctrl-C to stop the pod and clean up.",
            pod = document["pod_id"].as_str().unwrap_or("?"),
            url = document["novnc_url"].as_str().unwrap_or("?"),
            scene = document["scene"]["name"].as_str().unwrap_or("?"),
            count = document["scene"]["object_count"],
            mcp = document["mcp_port"],
            frames = document["render"]["frames"].as_array().map_or(0, Vec::len),
            render_dir = document["render"]["dir"].as_str().unwrap_or("?"),
            mcp_json = serde_json::to_string_pretty(&document["mcp_config"]).unwrap_or_default(),
            server = blender_session::mcp::SERVER_REQUIREMENT,
            ws = store.root().display(),
        );
    }
}

/// `rpb demo --farm`: a two-node farm on the local pod renders 8 frames and goes down.
async fn farm_demo(
    pod: &LocalPod,
    workspace: &Path,
    progress: &Progress,
) -> anyhow::Result<Outcome> {
    anyhow::ensure!(
        rustix::process::geteuid().is_root(),
        "the farm demo runs Slurm's daemons, which run as root here: run `rpb demo --farm` as root"
    );
    let store = Store::builder()
        .root(workspace)
        .ignore_environment()
        .build()?;
    store.init()?;
    let settings = pod.session_settings(SecretString::from(String::new()));
    let orchestrator = pod
        .orchestrator(store.state_dir().join("known_hosts"), settings)?
        .with_store(store.clone());
    let shown = progress.clone();
    let sink = move |event: &blender_session::Event| shown.event(event);
    let volume = pod
        .client()?
        .create_network_volume(&runpod_api::models::CreateNetworkVolumeRequest::new(
            "rpb-demo-farm",
            10,
            "SIM-LOCAL-1",
        ))
        .await?;
    let volume_id = volume.id.to_string();
    let spec = blender_session::FarmSpec::new(
        2,
        PodSpec::new("rpb-demo-farm")
            .gpu_type("NVIDIA RTX A5000")
            .cloud(runpod_api::models::Cloud::Community),
        volume_id.clone(),
    );
    let up = orchestrator
        .farm_up(&spec, pod.ssh_public_key(), &sink)
        .await?;
    // The scene goes onto the volume the nodes mount.
    let rendered = match farm_demo_scene(&pod.volume_dir(&volume_id)?).await {
        Ok(()) => farm_demo_render(&orchestrator, &store).await,
        Err(error) => Err(error),
    };
    let down = orchestrator
        .farm_down(rendered.is_err(), std::time::Duration::from_secs(60), &sink)
        .await;
    let report = rendered?;
    let down = down?;
    let nodes: Vec<String> = up
        .status
        .nodes
        .iter()
        .map(|node| node.pod_id.clone())
        .collect();
    let frames: Vec<serde_json::Value> = report
        .manifest
        .frames
        .values()
        .map(|entry| json!({"frame": entry.frame, "node": entry.node, "sha256": entry.sha256}))
        .collect();
    let mut by_node = std::collections::BTreeMap::<String, usize>::new();
    for entry in report.manifest.frames.values() {
        *by_node
            .entry(entry.node.clone().unwrap_or_default())
            .or_default() += 1;
    }
    let human = format!(
        "the farm demo ran: nodes {} rendered {} frames ({}) in {:.1} s for ${:.4}; the farm is down ({} pods terminated)",
        nodes.join(" and "),
        frames.len(),
        by_node
            .iter()
            .map(|(node, count)| format!("{node}: {count}"))
            .collect::<Vec<_>>()
            .join(", "),
        report.manifest.elapsed_seconds,
        report.manifest.cost,
        down.terminated.len()
    );
    Ok(Outcome::new(
        json!({
            "nodes": nodes,
            "volume_id": volume_id,
            "job_id": report.manifest.job_id,
            "state": report.manifest.state,
            "frames": frames,
            "farm": report.manifest.farm,
            "cost_per_hour": up.status.cost_per_hour,
            "cost": report.manifest.cost,
            "terminated": down.terminated,
        }),
        human,
    ))
}

/// The farm demo's scene on the volume the nodes share: a cube moving over 8 frames.
async fn farm_demo_scene(volume_dir: &Path) -> anyhow::Result<()> {
    let blend = volume_dir.join("demo-farm.blend");
    let code = format!(
        "import bpy\n\
         cube = bpy.data.objects['Cube']\n\
         for frame, x in ((1, -2.0), (8, 2.0)):\n    \
         cube.location.x = x\n    \
         cube.keyframe_insert('location', frame=frame)\n\
         bpy.context.scene.frame_end = 8\n\
         bpy.ops.wm.save_as_mainfile(filepath={:?})\n",
        blend.display().to_string()
    );
    let saved = tokio::process::Command::new(blender_session::local_pod::BLENDER)
        .args(["-b", "--factory-startup", "--python-expr", &code])
        .kill_on_drop(true)
        .output()
        .await
        .context("running Blender to make the demo scene (Debian package blender)")?;
    anyhow::ensure!(
        blend.is_file(),
        "Blender did not save the demo scene {}: {}{}",
        blend.display(),
        String::from_utf8_lossy(&saved.stdout),
        String::from_utf8_lossy(&saved.stderr)
    );
    Ok(())
}

async fn farm_demo_render(
    orchestrator: &Orchestrator,
    store: &Store,
) -> anyhow::Result<blender_session::render::RenderReport> {
    let project = ProjectName::new("demo")?;
    store.create_project(&project, OnExisting::Reuse)?;
    let mut options = RenderOptions::new(
        RenderSource::PodPath("demo-farm.blend".into()),
        "1-8".parse()?,
    );
    options.settings.engine = Some(Engine::Cycles);
    options.settings.device = Device::Cpu;
    options.settings.samples = Some(8);
    options.settings.resolution = Some((160, 90));
    let job = orchestrator
        .farm_render_start(store, &project, &options, Some(2))
        .await?;
    let report = orchestrator
        .farm_render_follow(&job.dir, &FollowOptions::default(), None, &|_| {})
        .await?;
    anyhow::ensure!(
        report.outcome == RenderOutcome::Done,
        "the farm demo's render ended {:?}",
        report.outcome
    );
    Ok(report)
}

async fn wait_for_interrupt() -> anyhow::Result<()> {
    let mut terminate = signal(SignalKind::terminate()).context("installing SIGTERM handling")?;
    let mut hangup = signal(SignalKind::hangup()).context("installing SIGHUP handling")?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.context("waiting for Ctrl-C")?,
        _ = terminate.recv() => {}
        _ = hangup.recv() => {}
    }
    Ok(())
}
