//! Render jobs on the local pod, with real Blender: frames land verified, a killed job resumes
//! without rendering a frame twice, a dropped SSH connection does not stop the render, an
//! unwritable output fails with Blender's words, bad options fail before anything runs, and
//! `stop_after` stops the pod only once every frame is local.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use blender_session::render::{
    Device, Engine, FollowOptions, FrameSpec, JobSpec, JobState, RenderEvent, RenderOptions,
    RenderOutcome, RenderSource,
};
use blender_session::seams::PodStatus;
use blender_session::{Error, Orchestrator, Session};
use project_store::{OnExisting, ProjectName};
use runpod_api::PodId;
use sha2::{Digest as _, Sha256};

use crate::support::{Rig, alive, serial};

/// Animates the default cube, so every frame differs.
const ANIMATE: &str = "\
import bpy
scene = bpy.context.scene
cube = bpy.data.objects['Cube']
cube.animation_data_clear()
for frame, x in ((1, -2.5), (8, 2.5)):
    cube.location.x = x
    cube.keyframe_insert('location', frame=frame)
scene.frame_start, scene.frame_end = 1, 8
print('animated')
";

fn options(source: RenderSource, frames: &str, samples: u32, size: (u32, u32)) -> RenderOptions {
    let mut options = RenderOptions::new(source, frames.parse().expect("frame spec"));
    options.settings.engine = Some(Engine::Cycles);
    options.settings.device = Device::Cpu;
    options.settings.samples = Some(samples);
    options.settings.resolution = Some(size);
    options.settings.denoise = Some(false);
    options
}

/// Records every render event (and echoes the interesting ones to the test log).
fn recorder() -> (
    Arc<Mutex<Vec<RenderEvent>>>,
    impl Fn(&RenderEvent) + Send + Sync,
) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = {
        let events = events.clone();
        move |event: &RenderEvent| {
            if !matches!(event, RenderEvent::Progress { .. } | RenderEvent::Cost(_)) {
                eprintln!("render: {event:?}");
            }
            events.lock().expect("events").push(event.clone());
        }
    };
    (events, sink)
}

fn sha256_hex(path: &Path) -> anyhow::Result<String> {
    let bytes = std::fs::read(path)?;
    Ok(format!("{:x}", Sha256::digest(&bytes)))
}

/// Decodes a PNG: (width, height, pixels).
fn decode_png(path: &Path) -> anyhow::Result<(u32, u32, Vec<u8>)> {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path)?));
    let mut reader = decoder.read_info()?;
    let mut pixels = vec![0; reader.output_buffer_size().unwrap_or(0)];
    let info = reader.next_frame(&mut pixels)?;
    pixels.truncate(info.buffer_size());
    Ok((info.width, info.height, pixels))
}

/// The driver's `done` records per frame in a job's `events.jsonl` on the pod.
fn done_records(job_dir: &Path) -> anyhow::Result<BTreeMap<i64, usize>> {
    let mut counts = BTreeMap::new();
    for line in std::fs::read_to_string(job_dir.join("events.jsonl"))?.lines() {
        let record: serde_json::Value = serde_json::from_str(line)?;
        if record["event"] == "done" {
            *counts
                .entry(record["frame"].as_i64().unwrap_or(-1))
                .or_insert(0) += 1;
        }
    }
    Ok(counts)
}

/// Follows a job in single passes until `enough` says so (bounded).
async fn follow_until(
    orchestrator: &Orchestrator,
    session: &Session,
    dir: &Path,
    what: &str,
    enough: impl Fn(&blender_session::render::RenderManifest) -> bool,
) -> anyhow::Result<()> {
    let mut once = FollowOptions::default();
    once.once = true;
    for _ in 0..600 {
        let report = orchestrator
            .render_follow(session, dir, &once, &|_| {})
            .await?;
        if enough(&report.manifest) {
            return Ok(());
        }
        anyhow::ensure!(
            !report.manifest.state.ended(),
            "the job ended ({}) before {what}: the frames render too fast for this test",
            report.manifest.state
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("waited 60 s for {what}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn render_jobs_land_verified_frames_resume_survive_ssh_loss_and_stop_the_pod()
-> anyhow::Result<()> {
    let _serial = serial().await;
    let mut rig = Rig::start().await?;
    let sink = rig.sink();
    let pod_id = rig.create().await?;
    let session = rig.orchestrator.start(&pod_id, &sink).await?;
    let printed = session.mcp().await?.execute_code(ANIMATE).await?;
    assert!(printed.contains("animated"), "{printed:?}");
    let project = ProjectName::new("shots")?;
    rig.store.create_project(&project, OnExisting::Reuse)?;

    bad_options_fail_before_anything_runs(&rig, &session, &project).await?;
    four_frames_arrive_verified(&rig, &session, &project).await?;
    a_killed_job_resumes_without_rendering_a_frame_twice(&rig, &session, &project).await?;
    let session = the_render_goes_on_without_ssh(&mut rig, session, &pod_id, &project).await?;
    unwritable_output_fails_with_blenders_words(&rig, &session, &project).await?;
    stop_after_stops_the_pod_once_every_frame_is_local(&rig, &session, &pod_id, &project).await?;
    drop(session);
    rig.shutdown().await
}

async fn bad_options_fail_before_anything_runs(
    rig: &Rig,
    session: &Session,
    project: &ProjectName,
) -> anyhow::Result<()> {
    let jobs_dir = rig.pod.pod_root().join("rpb/jobs");
    // Bad options fail before anything runs on the pod.
    let error = "1-x"
        .parse::<FrameSpec>()
        .expect_err("must fail")
        .to_string();
    assert!(error.contains("bad frame spec"), "{error}");
    let error = "luxcore"
        .parse::<Engine>()
        .expect_err("must fail")
        .to_string();
    assert!(error.contains("unknown engine"), "{error}");
    let missing = options(
        RenderSource::PodPath("/nonexistent/missing.blend".into()),
        "1",
        1,
        (32, 24),
    );
    let error = rig
        .orchestrator
        .render_start(session, &rig.store, project, &missing)
        .await
        .expect_err("must fail");
    assert!(
        matches!(error, Error::RenderOptions(_)) && error.to_string().contains("does not exist"),
        "{error}"
    );
    assert!(
        !jobs_dir.exists(),
        "a job folder was made for a missing .blend"
    );
    // An unknown camera: the driver refuses the job and renders nothing.
    let mut no_camera = options(RenderSource::OpenScene, "1-2", 1, (32, 24));
    no_camera.settings.camera = Some("NoSuchCamera".into());
    let error = rig
        .orchestrator
        .render_start(session, &rig.store, project, &no_camera)
        .await
        .expect_err("must fail");
    let text = error.to_string();
    assert!(
        matches!(error, Error::RenderRefused { .. })
            && text.contains("no camera named 'NoSuchCamera'")
            && text.contains("cameras: Camera"),
        "{text}"
    );
    let rendered: usize = std::fs::read_dir(&jobs_dir)?
        .flatten()
        .filter_map(|job| std::fs::read_dir(job.path().join("out")).ok())
        .map(Iterator::count)
        .sum();
    assert_eq!(rendered, 0, "a refused job rendered frames");

    Ok(())
}

async fn four_frames_arrive_verified(
    rig: &Rig,
    session: &Session,
    project: &ProjectName,
) -> anyhow::Result<()> {
    // 4 frames of the open scene: they arrive, decode, differ, and match the record.
    let (events, record) = recorder();
    let four = options(RenderSource::OpenScene, "1-4", 4, (64, 48));
    let job = rig
        .orchestrator
        .render_start(session, &rig.store, project, &four)
        .await?;
    let report = rig
        .orchestrator
        .render_follow(session, &job.dir, &FollowOptions::default(), &record)
        .await?;
    assert_eq!(report.outcome, RenderOutcome::Done);
    let accepted = report.manifest.accepted.clone().expect("accepted");
    assert!(accepted.blender_version.starts_with('3'), "{accepted:?}");
    assert_eq!((accepted.device.as_str(), accepted.size), ("CPU", (64, 48)));
    assert_eq!(report.manifest.frames.len(), 4);
    let mut images = Vec::new();
    for entry in report.manifest.frames.values() {
        let path = entry.path.clone().expect("local");
        assert!(path.starts_with(&job.dir), "{}", path.display());
        assert_eq!(sha256_hex(&path)?, entry.sha256, "frame {}", entry.frame);
        let (width, height, pixels) = decode_png(&path)?;
        assert_eq!((width, height), (64, 48), "frame {}", entry.frame);
        assert!(entry.seconds > 0.0 && entry.samples == Some(4), "{entry:?}");
        images.push(pixels);
    }
    for (index, a) in images.iter().enumerate() {
        for b in &images[index + 1..] {
            assert_ne!(a, b, "two frames of a moving cube are identical");
        }
    }
    let saved = rig.store.project(project)?;
    assert!(
        saved.versions().count() >= 1,
        "the open scene was saved first as a version"
    );
    let manifest_on_disk: serde_json::Value =
        serde_json::from_slice(&std::fs::read(job.dir.join("render.json"))?)?;
    assert_eq!(manifest_on_disk["state"], "done");
    {
        let events = events.lock().expect("events");
        let local = events
            .iter()
            .filter(|event| matches!(event, RenderEvent::FrameLocal { .. }))
            .count();
        assert_eq!(local, 4, "one FrameLocal per frame");
        assert!(
            events.iter().any(|event| matches!(
                event,
                RenderEvent::Progress {
                    samples: Some((_, 4)),
                    ..
                }
            )),
            "Blender's sample progress was parsed"
        );
    }
    // The interactive Blender kept running and answering.
    let scene = session.mcp().await?.scene_info().await?;
    assert!(scene.object_names().any(|name| name == "Cube"));

    Ok(())
}

async fn a_killed_job_resumes_without_rendering_a_frame_twice(
    rig: &Rig,
    session: &Session,
    project: &ProjectName,
) -> anyhow::Result<()> {
    let jobs_dir = rig.pod.pod_root().join("rpb/jobs");
    // Kill the job mid-render (its whole process group, as a crash or pod restart would), then
    // resume: only the missing frames are rendered, none twice.
    let slow = options(
        RenderSource::Version("latest".into()),
        "1-8",
        256,
        (320, 240),
    );
    let job = rig
        .orchestrator
        .render_start(session, &rig.store, project, &slow)
        .await?;
    let remote_job = jobs_dir.join(&job.id);
    follow_until(
        &rig.orchestrator,
        session,
        &job.dir,
        "two frames rendered",
        |manifest| manifest.frames.len() >= 2,
    )
    .await?;
    let runner: u32 = std::fs::read_to_string(remote_job.join("job.pid"))?
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .parse()?;
    // A Blender crash: the runner starts Blender again and the job goes on by itself.
    let blender: u32 = std::fs::read_to_string(format!("/proc/{runner}/task/{runner}/children"))?
        .split_whitespace()
        .next()
        .context("the runner has no Blender child")?
        .parse()?;
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &blender.to_string()])
        .status()?;
    assert!(killed.success(), "kill -KILL {blender}");
    follow_until(
        &rig.orchestrator,
        session,
        &job.dir,
        "a frame rendered after the crash",
        |manifest| manifest.frames.len() >= 3,
    )
    .await?;
    let log = std::fs::read_to_string(remote_job.join("blender.log"))?;
    assert!(
        log.contains("Blender ended without finishing the job (killed by signal 9)")
            && log.contains("rpb-render: launch 2 "),
        "the runner did not start Blender again after the crash"
    );
    // Then the whole job dies (its process group, as a pod restart would end it).
    let killed = std::process::Command::new("kill")
        .args(["-KILL", "--", &format!("-{runner}")])
        .status()?;
    assert!(killed.success(), "kill -KILL -{runner}");
    for _ in 0..100 {
        if !alive(runner) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = rig.orchestrator.render_status(session, &job.dir).await?;
    assert_eq!(status.state, JobState::Stopped, "a killed job is stopped");
    let before = done_records(&remote_job)?;
    assert!(before.len() >= 3 && before.len() < 8, "{before:?}");
    let resumed = rig
        .orchestrator
        .render_start(session, &rig.store, project, &slow)
        .await?;
    assert_eq!(resumed.id, job.id, "the same render is the same job");
    assert!(resumed.resumed);
    let report = rig
        .orchestrator
        .render_follow(session, &job.dir, &FollowOptions::default(), &|_| {})
        .await?;
    assert_eq!(report.outcome, RenderOutcome::Done);
    assert_eq!(report.manifest.frames.len(), 8);
    let mut skipped = report.manifest.skipped.clone();
    skipped.sort_unstable();
    let done_before: Vec<i64> = before.keys().copied().collect();
    assert_eq!(
        skipped, done_before,
        "the resumed run skipped exactly the done frames"
    );
    let after = done_records(&remote_job)?;
    assert_eq!(after.len(), 8, "{after:?}");
    assert!(
        after.values().all(|count| *count == 1),
        "a frame was rendered twice: {after:?}"
    );
    for entry in report.manifest.frames.values() {
        let path = entry.path.clone().expect("local");
        assert_eq!(sha256_hex(&path)?, entry.sha256);
        assert_eq!(decode_png(&path)?.0, 320);
    }

    Ok(())
}

async fn the_render_goes_on_without_ssh(
    rig: &mut Rig,
    session: Session,
    pod_id: &str,
    project: &ProjectName,
) -> anyhow::Result<Session> {
    let jobs_dir = rig.pod.pod_root().join("rpb/jobs");
    // Drop every SSH connection during a render: it goes on; attach picks up the downloads.
    let other = options(
        RenderSource::Version("latest".into()),
        "1-5",
        256,
        (320, 240),
    );
    let job = rig
        .orchestrator
        .render_start(&session, &rig.store, project, &other)
        .await?;
    follow_until(
        &rig.orchestrator,
        &session,
        &job.dir,
        "a frame rendered",
        |manifest| !manifest.frames.is_empty(),
    )
    .await?;
    rig.pod.restart_sshd().await?;
    // Following over the broken session reconnects by itself.
    let (events, record) = recorder();
    let report = rig
        .orchestrator
        .render_follow(&session, &job.dir, &FollowOptions::default(), &record)
        .await?;
    assert!(
        events
            .lock()
            .expect("events")
            .iter()
            .any(|event| matches!(event, RenderEvent::Reconnecting { .. })),
        "following went on without noticing the broken connection"
    );
    assert_eq!(report.outcome, RenderOutcome::Done);
    assert_eq!(report.manifest.frames.len(), 5);
    assert!(
        report.manifest.skipped.is_empty(),
        "{:?}",
        report.manifest.skipped
    );
    let log = std::fs::read_to_string(jobs_dir.join(&job.id).join("blender.log"))?;
    assert_eq!(
        log.matches("rpb-render: launch ").count(),
        1,
        "the render was restarted instead of going on"
    );
    // Attaching anew (as `rpb render attach` does) finds the job done and every frame local.
    let sink = rig.sink();
    let session = rig
        .orchestrator
        .attach(pod_id, session.ports, &sink)
        .await?;
    let again = rig
        .orchestrator
        .render_follow(&session, &job.dir, &FollowOptions::default(), &|_| {})
        .await?;
    assert_eq!(again.outcome, RenderOutcome::Done);
    assert!(again.manifest.all_local());
    assert!(
        report
            .manifest
            .frames
            .values()
            .all(|entry| entry.path.is_some())
    );

    Ok(session)
}

async fn unwritable_output_fails_with_blenders_words(
    rig: &Rig,
    session: &Session,
    project: &ProjectName,
) -> anyhow::Result<()> {
    let jobs_dir = rig.pod.pod_root().join("rpb/jobs");
    // An output folder that cannot be written: the frames fail with Blender's words.
    let mut unwritable = options(RenderSource::Version("latest".into()), "1-2", 2, (32, 24));
    unwritable.settings.retries = 1;
    let latest = rig.store.project(project)?.resolve("latest")?.clone();
    let blend = format!(
        "{}/projects/{project}/{}",
        rig.pod.pod_root().display(),
        latest.name
    );
    let id = JobSpec::new(&unwritable, blend, Some(latest.sha256.clone())).job_id("shots");
    std::fs::create_dir_all(jobs_dir.join(&id))?;
    std::os::unix::fs::symlink("/proc", jobs_dir.join(&id).join("out"))?;
    let job = rig
        .orchestrator
        .render_start(session, &rig.store, project, &unwritable)
        .await?;
    assert_eq!(job.id, id);
    let report = rig
        .orchestrator
        .render_follow(session, &job.dir, &FollowOptions::default(), &|_| {})
        .await?;
    let RenderOutcome::FramesFailed(failed) = &report.outcome else {
        panic!("expected failed frames, got {:?}", report.outcome);
    };
    assert_eq!(failed.len(), 2, "{failed:?}");
    for frame in failed {
        assert!(
            frame.reason.contains("cannot save") && frame.attempts == 2,
            "{frame:?}"
        );
    }

    Ok(())
}

async fn stop_after_stops_the_pod_once_every_frame_is_local(
    rig: &Rig,
    session: &Session,
    pod_id: &str,
    project: &ProjectName,
) -> anyhow::Result<()> {
    // stop_after: the pod stops only once every frame is local.
    let last = options(RenderSource::Version("latest".into()), "7-8", 4, (64, 48));
    let job = rig
        .orchestrator
        .render_start(session, &rig.store, project, &last)
        .await?;
    let mut stop_after = FollowOptions::default();
    stop_after.stop_after = true;
    let report = rig
        .orchestrator
        .render_follow(session, &job.dir, &stop_after, &|_| {})
        .await?;
    assert_eq!(report.outcome, RenderOutcome::Done);
    assert!(report.pod_stopped);
    assert!(report.manifest.all_local());
    for entry in report.manifest.frames.values() {
        let path = entry.path.clone().expect("local");
        assert_eq!(sha256_hex(&path)?, entry.sha256);
    }
    let pod = rig.client.get_pod(&PodId::new(pod_id)).await?;
    assert_eq!(pod.status, PodStatus::Exited, "nothing left billing");
    Ok(())
}
