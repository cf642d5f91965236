//! Measures `rpb render` against running the same `blender -b` by hand over OpenSSH, on the
//! embedded local pod, side by side in one run:
//!
//! 1. wall time of rendering the same frames of the same file with the same settings, by
//!    `ssh … blender -b FILE --python-expr SETTINGS -o OUT -f A..B` and by rpb's render job
//!    (start, follow, every frame verified and downloaded), reported as a ratio;
//! 2. the delay from Blender saving a 1920×1080 PNG on the pod to its verified local copy.
//!
//! ```text
//! cargo run --release -p rpb-examples --bin render-bench
//! cargo run --release -p rpb-examples --bin render-bench -- --frames 1-24 --samples 128 --repeat 3
//! ```
//!
//! Needs the Debian packages the local pod uses (`openssh-server`, `openssh-client`, `blender`,
//! `xvfb`, `x11vnc`, `novnc`, `websockify`). Everything listens on 127.0.0.1 and stops by
//! itself; the OpenSSH runs skip host-key checks (a loopback benchmark, nothing else).

#![expect(
    clippy::print_stdout,
    clippy::disallowed_methods,
    clippy::cast_precision_loss,
    clippy::too_many_lines,
    reason = "a benchmark binary owns its runtime and prints its figures, in one sequence"
)]

use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context as _;
use blender_session::render::{
    Device, Engine, FollowOptions, RenderEvent, RenderOptions, RenderOutcome, RenderSource,
};
use clap::Parser;
use project_store::{OnExisting, ProjectName};
use rpb_examples::start_local_session;

/// `rpb render` vs `ssh … blender -b` benchmark.
#[derive(Parser, Debug)]
struct Args {
    /// Frames of each run.
    #[arg(long, default_value = "1-12")]
    frames: String,
    /// Cycles samples per pixel.
    #[arg(long, default_value_t = 64)]
    samples: u32,
    /// Resolution of the wall-time runs, `WIDTHxHEIGHT`.
    #[arg(long, default_value = "480x270")]
    resolution: String,
    /// Runs of each tool, alternating; the best is reported.
    #[arg(long, default_value_t = 2)]
    repeat: u32,
    /// Frames of the 1080p delay run.
    #[arg(long, default_value_t = 6)]
    delay_frames: u32,
}

const ANIMATE: &str = "\
import bpy
cube = bpy.data.objects['Cube']
cube.animation_data_clear()
for frame, x in ((1, -2.5), (48, 2.5)):
    cube.location.x = x
    cube.keyframe_insert('location', frame=frame)
";

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (width, height) = blender_session::render::parse_resolution(&args.resolution)?;
    let frames: blender_session::render::FrameSpec = args.frames.parse()?;
    let local = start_local_session("rpb-bench").await?;
    let result = bench(&local, &args, frames, (width, height)).await;
    local.stop().await?;
    result
}

async fn bench(
    local: &rpb_examples::LocalSession,
    args: &Args,
    frames: blender_session::render::FrameSpec,
    (width, height): (u32, u32),
) -> anyhow::Result<()> {
    let pod_root = local.pod.pod_root().to_owned();
    let blend = pod_root.join("bench/scene.blend");
    std::fs::create_dir_all(pod_root.join("bench"))?;
    let mut blender = local.session.mcp().await?;
    blender.execute_code(ANIMATE).await?;
    blender.save_blend(&blend.display().to_string()).await?;
    blender.close().await;

    let workspace = tempfile::tempdir()?;
    let store = project_store::Store::builder()
        .root(workspace.path())
        .ignore_environment()
        .build()?;
    store.init()?;
    let project = ProjectName::new("bench")?;
    store.create_project(&project, OnExisting::Reuse)?;

    let first = frames.frames().first().copied().unwrap_or(1);
    let last = frames.frames().last().copied().unwrap_or(1);
    let settings = format!(
        "import bpy; s = bpy.context.scene; s.render.engine = 'CYCLES'; s.cycles.device = 'CPU'; \
         s.cycles.samples = {samples}; s.cycles.use_denoising = False; \
         s.render.resolution_x = {width}; s.render.resolution_y = {height}; \
         s.render.resolution_percentage = 100; s.render.image_settings.file_format = 'PNG'",
        samples = args.samples
    );
    let mut by_hand = Vec::new();
    let mut with_rpb = Vec::new();
    for run in 0..args.repeat {
        // OpenSSH, by hand: one blender -b over ssh, frames written on the pod, nothing copied.
        let out = pod_root.join(format!("bench/hand-{run}"));
        let remote = format!(
            "blender -b {} --python-expr \"{settings}\" -o {}/f_#### -F PNG -f {first}..{last} -- --cycles-device CPU",
            blend.display(),
            out.display()
        );
        let started = Instant::now();
        let status = Command::new("ssh")
            .arg("-p")
            .arg(local.session.endpoint.port.to_string())
            .arg("-i")
            .arg(local.pod.ssh_identity_file())
            .args([
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
            ])
            .args([
                "-o",
                "BatchMode=yes",
                "-o",
                "LogLevel=ERROR",
                "-F",
                "/dev/null",
            ])
            .arg(format!("{}@127.0.0.1", local.pod.ssh_user()))
            .arg(&remote)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .context("running ssh: install the Debian package openssh-client")?;
        anyhow::ensure!(status.success(), "ssh … blender -b failed: {status}");
        by_hand.push(started.elapsed());
        let rendered = std::fs::read_dir(&out)?.count();
        anyhow::ensure!(
            rendered == frames.len(),
            "blender -b wrote {rendered} frames, not {}",
            frames.len()
        );

        // rpb: a fresh job each run (the same options would resume the finished job, which
        // renders nothing): only the retry budget differs, the work is the same.
        let mut options = RenderOptions::new(
            RenderSource::PodPath(blend.display().to_string()),
            frames.clone(),
        );
        options.settings.engine = Some(Engine::Cycles);
        options.settings.device = Device::Cpu;
        options.settings.samples = Some(args.samples);
        options.settings.resolution = Some((width, height));
        options.settings.denoise = Some(false);
        options.settings.retries = run;
        let started = Instant::now();
        let job = local
            .orchestrator
            .render_start(&local.session, &store, &project, &options)
            .await?;
        let report = local
            .orchestrator
            .render_follow(&local.session, &job.dir, &FollowOptions::default(), &|_| {})
            .await?;
        with_rpb.push(started.elapsed());
        anyhow::ensure!(
            report.outcome == RenderOutcome::Done,
            "{:?}",
            report.outcome
        );
        anyhow::ensure!(report.manifest.all_local(), "frames missing locally");
    }
    let hand = by_hand.iter().min().copied().unwrap_or_default();
    let rpb = with_rpb.iter().min().copied().unwrap_or_default();
    println!(
        "\nrender: {} frames, Cycles CPU, {width}x{height}, {} samples (best of {})",
        frames.len(),
        args.samples,
        args.repeat
    );
    println!("| tool | wall time | ratio |");
    println!("|---|---|---|");
    println!(
        "| ssh … blender -b (OpenSSH, frames left on the pod) | {:.2} s | 1.00 |",
        hand.as_secs_f64()
    );
    println!(
        "| rpb render (job, verified, every frame downloaded) | {:.2} s | {:.3} |",
        rpb.as_secs_f64(),
        rpb.as_secs_f64() / hand.as_secs_f64()
    );

    // The delay from Saved to the verified local copy, for 1080p PNGs.
    let delays = Arc::new(Mutex::new(Vec::new()));
    let record = {
        let delays = delays.clone();
        move |event: &RenderEvent| {
            if let RenderEvent::FrameLocal { delay, .. } = event {
                delays.lock().expect("delays").push(*delay);
            }
        }
    };
    let mut options = RenderOptions::new(
        RenderSource::PodPath(blend.display().to_string()),
        format!("1-{}", args.delay_frames).parse()?,
    );
    options.settings.engine = Some(Engine::Cycles);
    options.settings.device = Device::Cpu;
    options.settings.samples = Some(1);
    options.settings.resolution = Some((1920, 1080));
    let job = local
        .orchestrator
        .render_start(&local.session, &store, &project, &options)
        .await?;
    let report = local
        .orchestrator
        .render_follow(&local.session, &job.dir, &FollowOptions::default(), &record)
        .await?;
    anyhow::ensure!(
        report.outcome == RenderOutcome::Done,
        "{:?}",
        report.outcome
    );
    let mut delays = delays.lock().expect("delays").clone();
    delays.sort();
    let bytes: u64 = report
        .manifest
        .frames
        .values()
        .map(|entry| entry.bytes)
        .sum();
    println!(
        "\nsaved → verified local copy, 1920x1080 PNG ({} frames, {:.1} MB each on average):",
        delays.len(),
        bytes as f64 / delays.len().max(1) as f64 / 1e6
    );
    if let (Some(best), Some(worst)) = (delays.first(), delays.last()) {
        let median = delays[delays.len() / 2];
        println!(
            "  median {:.0} ms, best {:.0} ms, worst {:.0} ms (poll interval {:?})",
            median.as_secs_f64() * 1e3,
            best.as_secs_f64() * 1e3,
            worst.as_secs_f64() * 1e3,
            FollowOptions::default().poll_interval
        );
    }
    Ok(())
}
