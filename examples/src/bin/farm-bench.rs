//! Measures the render farm on the embedded local pod, in one run:
//!
//! 1. **Scheduling overhead per task**: the same chunk of frames rendered directly on one pod
//!    (`rpb render`: a job started, followed, every frame verified and downloaded) against the
//!    farm's per-task time on a one-node farm (the same chunks as Slurm array tasks, one after
//!    the other); the difference is what Slurm, the task's start and the merged follow add.
//! 2. **Scaling from one node to two**: the same job (tasks × frames) on a one-node and on a
//!    two-node farm, wall time from submitting to the last frame local, as a ratio.
//!
//! ```text
//! cargo run --release -p rpb-examples --bin farm-bench
//! cargo run --release -p rpb-examples --bin farm-bench -- --tasks 8 --frames-per-task 2 --hold 1.5
//! ```
//!
//! This machine has 2 cores, and both "pods" of a local farm share them: a CPU-bound render
//! cannot go faster on two nodes here. So each frame is made to hold its node the way a GPU
//! render holds a pod while its CPU idles: Blender renders a tiny Cycles frame (32×24, one
//! sample: a few milliseconds of CPU) and then waits `--hold` seconds in a render handler
//! (`bpy.app.handlers.render_post`, installed by a wrapper around `/usr/bin/blender` that the
//! tasks and the direct jobs both run). Blender's own start per task (about 1 s of CPU here)
//! stays in every figure.
//!
//! Needs the local pod's Debian packages (`openssh-server`, `blender`, `xvfb`, `x11vnc`,
//! `novnc`, `websockify`) and Slurm's (`slurmctld`, `slurmd`, `slurm-client`, `munge`), run as
//! root (Slurm's daemons run as root here). Everything listens on 127.0.0.1 and stops by itself.

#![expect(
    clippy::print_stdout,
    clippy::disallowed_methods,
    clippy::too_many_lines,
    reason = "a benchmark binary owns its runtime and prints its figures, in one sequence"
)]

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use blender_session::local_pod::{BLENDER, LocalPod};
use blender_session::render::{
    Device, Engine, FollowOptions, FrameSpec, RenderOptions, RenderOutcome, RenderSource,
};
use blender_session::seams::{PodSpec, TunnelPorts};
use blender_session::{FarmSpec, Orchestrator};
use clap::Parser;
use project_store::{OnExisting, ProjectName, Store};
use rpb_examples::show;
use runpod_api::models::CreateNetworkVolumeRequest;
use secrecy::SecretString;

/// Render farm benchmark.
#[derive(Parser, Debug)]
struct Args {
    /// Array tasks per job.
    #[arg(long, default_value_t = 6)]
    tasks: u32,
    /// Frames per task (the chunk).
    #[arg(long, default_value_t = 2)]
    frames_per_task: u32,
    /// Seconds each frame holds its node after rendering (the stand-in for GPU time).
    #[arg(long, default_value_t = 1.0)]
    hold: f64,
    /// Runs of the direct chunk; the best is reported.
    #[arg(long, default_value_t = 3)]
    repeat: u32,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.tasks >= 2 && args.frames_per_task >= 1 && args.hold >= 0.0,
        "--tasks must be 2 or more, --frames-per-task 1 or more, --hold 0 or more"
    );
    let pod = LocalPod::builder().start().await?;
    let result = Box::pin(bench(&pod, &args)).await;
    pod.shutdown().await?;
    result
}

/// A `blender` that renders as usual and then holds each frame `hold` seconds.
fn holding_blender(dir: &Path, hold: f64) -> anyhow::Result<String> {
    use std::os::unix::fs::PermissionsExt as _;
    let hook = dir.join("hold.py");
    std::fs::write(
        &hook,
        format!(
            "import time\nimport bpy\n\n\
             @bpy.app.handlers.persistent\n\
             def rpb_bench_hold(*_):\n    time.sleep({hold})\n\n\
             bpy.app.handlers.render_post.append(rpb_bench_hold)\n"
        ),
    )?;
    let wrapper = dir.join("blender");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec {BLENDER} --python {} \"$@\"\n",
            hook.display()
        ),
    )?;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    Ok(wrapper.display().to_string())
}

fn options(blend: &str, frames: &str) -> anyhow::Result<RenderOptions> {
    let frames: FrameSpec = frames.parse()?;
    let mut options = RenderOptions::new(RenderSource::PodPath(blend.to_owned()), frames);
    options.settings.engine = Some(Engine::Cycles);
    options.settings.device = Device::Cpu;
    options.settings.samples = Some(1);
    options.settings.resolution = Some((32, 24));
    options.settings.denoise = Some(false);
    Ok(options)
}

async fn bench(pod: &LocalPod, args: &Args) -> anyhow::Result<()> {
    let work = tempfile::Builder::new()
        .prefix("rpb-farm-bench-")
        .tempdir()?;
    let store = Store::builder()
        .root(work.path().join("ws"))
        .ignore_environment()
        .build()?;
    store.init()?;
    let project = ProjectName::new("bench")?;
    store.create_project(&project, OnExisting::Reuse)?;
    let wrapper_dir = tempfile::Builder::new()
        .prefix("rpb-bench-blender-")
        .tempdir()?;
    let wrapper = holding_blender(wrapper_dir.path(), args.hold)?;
    let mut settings = pod.session_settings(SecretString::from("farm-bench".to_owned()));
    settings.pod_env.insert("BLENDER_BIN".into(), wrapper);
    let orchestrator: Orchestrator = pod
        .orchestrator(store.state_dir().join("known_hosts"), settings)?
        .with_store(store.clone());

    let client = pod.client()?;
    let volume = client
        .create_network_volume(&CreateNetworkVolumeRequest::new("bench", 10, "SIM-LOCAL-1"))
        .await?;
    let volume_id = volume.id.to_string();
    let volume_dir = pod.volume_dir(&volume_id)?;
    let total = args.tasks * args.frames_per_task;
    let blend = volume_dir.join("bench.blend");
    let code = format!(
        "import bpy\nbpy.context.scene.frame_end = {}\nbpy.ops.wm.save_as_mainfile(filepath={:?})\n",
        3 * total + 10,
        blend.display().to_string()
    );
    let saved = std::process::Command::new(BLENDER)
        .args(["-b", "--factory-startup", "--python-expr", &code])
        .output()
        .context("running Blender: install the Debian package blender")?;
    anyhow::ensure!(blend.is_file(), "Blender did not save the scene: {saved:?}");
    let blend = "bench.blend";

    // 1. The chunk, directly on one pod.
    let spec = PodSpec::new("rpb-bench-direct").network_volume(&volume_id, "SIM-LOCAL-1");
    let direct_pod = orchestrator
        .create(&spec, pod.ssh_public_key(), &show)
        .await?;
    let no_tunnel = TunnelPorts {
        mcp: 0,
        control: 0,
        vnc: 0,
        novnc: 0,
    };
    let session = orchestrator
        .attach(direct_pod.id.as_str(), no_tunnel, &show)
        .await?;
    let mut direct = Vec::new();
    for run in 0..args.repeat {
        let mut chunk = options(blend, &format!("1-{}", args.frames_per_task))?;
        // A fresh job each run (the same options would resume the finished one).
        chunk.settings.retries = run + 3;
        let started = Instant::now();
        let job = orchestrator
            .render_start(&session, &store, &project, &chunk)
            .await?;
        let report = orchestrator
            .render_follow(&session, &job.dir, &FollowOptions::default(), &|_| {})
            .await?;
        direct.push(started.elapsed());
        anyhow::ensure!(
            report.outcome == RenderOutcome::Done,
            "{:?}",
            report.outcome
        );
    }
    client.terminate_pod(&direct_pod.id).await?;
    let direct = direct.iter().min().copied().unwrap_or_default();

    // 2. The job on one node, then on two.
    let mut farm_times = Vec::new();
    for (index, nodes) in [1_u32, 2].into_iter().enumerate() {
        let farm = FarmSpec::new(nodes, PodSpec::new("rpb-bench-farm"), volume_id.clone());
        orchestrator
            .farm_up(&farm, pod.ssh_public_key(), &show)
            .await?;
        let first = u32::try_from(index).unwrap_or(0) * total + 1;
        let job = options(blend, &format!("{first}-{}", first + total - 1))?;
        let started = Instant::now();
        let submitted = orchestrator
            .farm_render_start(&store, &project, &job, Some(args.frames_per_task))
            .await?;
        let report = orchestrator
            .farm_render_follow(&submitted.dir, &FollowOptions::default(), None, &|_| {})
            .await?;
        farm_times.push(started.elapsed());
        anyhow::ensure!(
            report.outcome == RenderOutcome::Done,
            "{:?}",
            report.outcome
        );
        let nodes_used: std::collections::BTreeSet<String> = report
            .manifest
            .frames
            .values()
            .filter_map(|frame| frame.node.clone())
            .collect();
        anyhow::ensure!(
            nodes_used.len() == nodes as usize,
            "{nodes} node(s) in the farm, {} rendered",
            nodes_used.len()
        );
    }
    orchestrator.farm_down(true, Duration::ZERO, &show).await?;

    let one = farm_times[0];
    let two = farm_times[1];
    let per_task = one.as_secs_f64() / f64::from(args.tasks);
    let overhead = per_task - direct.as_secs_f64();
    println!(
        "\nfarm: {} tasks × {} frames, each frame held {:.1} s (Cycles CPU 32×24, 1 sample), 2 cores",
        args.tasks, args.frames_per_task, args.hold
    );
    println!("| run | wall time | ratio |");
    println!("|---|---|---|");
    println!(
        "| one chunk directly on a pod (rpb render, best of {}) | {:.2} s | 1.00 |",
        args.repeat,
        direct.as_secs_f64()
    );
    println!(
        "| per task on a 1-node farm ({} tasks in {:.2} s) | {per_task:.2} s | {:.2} |",
        args.tasks,
        one.as_secs_f64(),
        per_task / direct.as_secs_f64()
    );
    println!("\nscheduling overhead per task: {overhead:.2} s (target: under 2 s)");
    println!("\n| farm | wall time | speed-up |");
    println!("|---|---|---|");
    println!("| 1 node | {:.2} s | 1.00 |", one.as_secs_f64());
    println!(
        "| 2 nodes | {:.2} s | {:.2} |",
        two.as_secs_f64(),
        one.as_secs_f64() / two.as_secs_f64()
    );
    Ok(())
}
