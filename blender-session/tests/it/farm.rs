//! The local farm: Slurm's own daemons (a private munged, slurmctld, two slurmd) on this
//! machine, driven the way rpb drives a farm of pods: an array job over frame chunks from
//! `farm::chunks`, `--requeue`, and the recovery commands when a node is lost.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use blender_session::farm::{self, FarmTask};
use blender_session::local_pod::farm::LocalFarm;

/// A stand-in for the render driver: renders each frame of its chunk (a line naming the
/// frame, the node and the restart count) to a temporary name and renames it into place, and
/// skips frames already there, so a requeued task finishes its chunk without redoing frames.
/// It starts rendering once the file `go` exists (bounded), so the test can act while tasks
/// run and no frame is done.
const TASK: &str = r#"#!/bin/bash
set -eu
read -r first last < <(sed -n "${SLURM_ARRAY_TASK_ID}p" "$1/chunks.txt")
mkdir -p "$1/frames"
echo "$SLURMD_NODENAME" > "$1/started-$SLURM_ARRAY_TASK_ID-${SLURM_RESTART_COUNT:-0}"
for _ in $(seq 600); do [ -e "$1/go" ] && break; sleep 0.1; done
for frame in $(seq "$first" "$last"); do
    [ -e "$1/frames/$frame" ] && continue
    sleep "$2"
    printf '%s %s %s\n' "$frame" "$SLURMD_NODENAME" "${SLURM_RESTART_COUNT:-0}" > "$1/frames/.$frame.$$"
    mv "$1/frames/.$frame.$$" "$1/frames/$frame"
done
"#;

const LIMIT: Duration = Duration::from_secs(120);

/// Writes the chunks of `frames` and submits one array task per chunk; returns the job id.
async fn submit(
    farm: &LocalFarm,
    dir: &Path,
    frames: i64,
    chunk: u32,
    seconds: &str,
    gated: bool,
) -> String {
    std::fs::create_dir_all(dir).expect("job folder");
    let chunks = farm::chunks(1, frames, chunk);
    let lines = chunks.iter().fold(String::new(), |mut text, c| {
        use std::fmt::Write as _;
        let _ = writeln!(text, "{} {}", c.first, c.last);
        text
    });
    std::fs::write(dir.join("chunks.txt"), lines).expect("chunks");
    if gated {
        std::fs::remove_file(dir.join("go")).ok();
    } else {
        std::fs::write(dir.join("go"), "").expect("go");
    }
    let script = dir.join("task.sh");
    std::fs::write(&script, TASK).expect("task script");
    let array = format!("--array={}", farm::array_spec(&chunks));
    let output = format!("--output={}/task-%a.log", dir.display());
    let dir = dir.display().to_string();
    let script = script.display().to_string();
    farm.run(&[
        "sbatch",
        "--parsable",
        "--requeue",
        "--job-name=rpb-render",
        &array,
        &output,
        &script,
        &dir,
        seconds,
    ])
    .await
    .expect("sbatch")
    .trim()
    .to_owned()
}

/// The frames rendered so far: frame → (node, restarts).
fn frames(dir: &Path) -> BTreeMap<i64, (String, u32)> {
    let Ok(entries) = std::fs::read_dir(dir.join("frames")) else {
        return BTreeMap::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let text = std::fs::read_to_string(entry.path()).ok()?;
            let mut fields = text.split_whitespace();
            let frame = fields.next()?.parse().ok()?;
            let node = fields.next()?.to_owned();
            let restarts = fields.next()?.parse().ok()?;
            Some((frame, (node, restarts)))
        })
        .collect()
}

fn tasks_of(tasks: &[FarmTask], job: &str) -> Vec<FarmTask> {
    tasks
        .iter()
        .filter(|task| task.array_job_id.to_string() == job)
        .cloned()
        .collect()
}

/// Waits until every frame is there and the job has no task left pending or running, releasing
/// requeued tasks on each round.
async fn finish(farm: &LocalFarm, job: &str, dir: &Path, count: usize) {
    let started = Instant::now();
    loop {
        let (_, tasks) = farm.status().await.expect("status");
        let open = tasks_of(&tasks, job)
            .iter()
            .filter(|task| matches!(task.state.as_str(), "PENDING" | "RUNNING"))
            .count();
        // The recovery rpb runs each round: requeued tasks start now, not in two minutes.
        for command in farm::release_requeued(&tasks) {
            let argv: Vec<&str> = command.iter().map(String::as_str).collect();
            farm.run(&argv).await.expect("release");
        }
        if open == 0 && frames(dir).len() == count {
            return;
        }
        assert!(
            started.elapsed() < LIMIT,
            "job {job} did not finish within {LIMIT:?}: frames {:?}, tasks {:?}",
            frames(dir),
            tasks_of(&tasks, job)
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_node_farm_renders_every_chunk_and_requeues_a_lost_node_s_tasks() {
    let farm = LocalFarm::builder()
        .nodes(2)
        .start()
        .await
        .expect("the local farm starts (Debian packages slurmctld slurmd slurm-client munge)");
    assert_eq!(farm.node_names(), ["n1", "n2"]);
    let shared = farm.shared_dir();

    // 8 frames in chunks of 2: four tasks, spread over both nodes, every frame once.
    let first = shared.join("first");
    let job = submit(&farm, &first, 8, 2, "0.3", false).await;
    finish(&farm, &job, &first, 8).await;
    let done = frames(&first);
    assert_eq!(
        done.keys().copied().collect::<Vec<_>>(),
        (1..=8).collect::<Vec<_>>()
    );
    let nodes: std::collections::BTreeSet<&str> =
        done.values().map(|(node, _)| node.as_str()).collect();
    assert_eq!(nodes.len(), 2, "both nodes rendered: {done:?}");

    // A node dies mid-job: rpb marks it lost, its task is requeued onto the other node and
    // finishes its chunk there; every frame is in the result exactly once.
    let second = shared.join("second");
    let job = submit(&farm, &second, 8, 2, "0.3", true).await;
    // Mid-job: a task's script runs on n2 (it said so), no frame is done.
    let started = Instant::now();
    let runs_on_n2 = || {
        std::fs::read_dir(&second).is_ok_and(|entries| {
            entries.flatten().any(|entry| {
                entry.file_name().to_string_lossy().starts_with("started-")
                    && std::fs::read_to_string(entry.path()).is_ok_and(|node| node.trim() == "n2")
            })
        })
    };
    while !runs_on_n2() {
        assert!(started.elapsed() < LIMIT, "no task ever ran on n2");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    farm.kill_node("n2").expect("kill n2");
    let lost = farm::mark_node_lost("n2", "pod lost");
    let argv: Vec<&str> = lost.iter().map(String::as_str).collect();
    farm.run(&argv).await.expect("mark n2 down");
    std::fs::write(second.join("go"), "").expect("go");
    finish(&farm, &job, &second, 8).await;
    let done = frames(&second);
    assert_eq!(
        done.keys().copied().collect::<Vec<_>>(),
        (1..=8).collect::<Vec<_>>()
    );
    assert!(
        done.values().all(|(node, _)| node == "n1"),
        "n2 rendered nothing after it was lost: {done:?}"
    );
    assert!(
        done.values().any(|(_, restarts)| *restarts == 1),
        "the lost node's task ran again: {done:?}"
    );
    let (nodes, _) = farm.status().await.expect("status");
    let n2 = nodes.iter().find(|node| node.name == "n2").expect("n2");
    assert!(!n2.is_up(), "{n2:?}");
    assert_eq!(n2.reason, "pod_lost");
    farm.shutdown();
}

/// Saves a small animated scene (a cube moving over 8 frames, a camera, a light) as `path`.
async fn animated_scene(path: &Path) {
    test_support::scenes::save_animated_cube(&crate::pod::require_peers(), path, 8, LIMIT)
        .await
        .expect("Blender saves the scene");
}

/// One job folder per chunk with its `spec.json` (Cycles on the CPU, 1 sample, 32x24), and the
/// task script that runs rpb's render driver in Blender on the task's chunk.
fn prepare_chunks(job: &Path, blend: &Path, driver: &Path, cut: &[farm::Chunk]) -> PathBuf {
    use blender_session::render::{Device, Engine, JobSpec, RenderOptions, RenderSource};
    for chunk in cut {
        let frames = format!("{}-{}", chunk.first, chunk.last);
        let mut options =
            RenderOptions::new(RenderSource::OpenScene, frames.parse().expect("frames"));
        options.settings.engine = Some(Engine::Cycles);
        options.settings.device = Device::Cpu;
        options.settings.samples = Some(1);
        options.settings.resolution = Some((32, 24));
        let spec = JobSpec::new(&options, blend.display().to_string(), None);
        let dir = job.join(format!("chunk-{}", chunk.task));
        std::fs::create_dir_all(&dir).expect("chunk folder");
        std::fs::write(
            dir.join("spec.json"),
            serde_json::to_vec(&spec).expect("spec"),
        )
        .expect("spec.json");
    }
    let script = job.join("task.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/bash\nset -eu\ndir={job}/chunk-$SLURM_ARRAY_TASK_ID\n\
             echo \"$SLURMD_NODENAME\" > \"$dir/node\"\n\
             exec {blender} --factory-startup -b {blend} --python-exit-code 3 \
             --python {driver} -- \"$dir\" >> \"$dir/blender.log\" 2>&1\n",
            job = job.display(),
            blender = crate::pod::require_peers().display(),
            blend = blend.display(),
            driver = driver.display(),
        ),
    )
    .expect("task script");
    script
}

/// Checks a finished chunk: the driver's result is `done`, and each frame has its record and
/// a PNG of the recorded size. Returns the node that rendered it.
fn check_chunk(job: &Path, chunk: &farm::Chunk) -> String {
    let dir = job.join(format!("chunk-{}", chunk.task));
    let log = std::fs::read_to_string(dir.join("blender.log")).unwrap_or_default();
    let result: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.join("result.json"))
            .unwrap_or_else(|_| panic!("chunk {} has a result:\n{log}", chunk.task)),
    )
    .expect("result.json");
    assert_eq!(
        result["state"], "done",
        "chunk {}: {result}\n{log}",
        chunk.task
    );
    for frame in chunk.first..=chunk.last {
        let record: serde_json::Value = serde_json::from_slice(
            &std::fs::read(dir.join("frames").join(format!("{frame}.json")))
                .expect("the frame's record"),
        )
        .expect("record");
        let image = std::fs::read(dir.join(record["file"].as_str().expect("file")))
            .expect("the frame's image");
        assert!(
            image.starts_with(b"\x89PNG\r\n\x1a\n"),
            "frame {frame} is a PNG"
        );
        assert_eq!(record["bytes"], image.len(), "frame {frame}");
    }
    std::fs::read_to_string(dir.join("node"))
        .expect("node")
        .trim()
        .to_owned()
}

/// The farm renders a real scene with rpb's pod-side render driver, one Slurm task per chunk,
/// each chunk its own job folder on the shared folder: every frame is rendered, verified by
/// the driver (logged `Saved:`, decodes at the expected size) with its SHA-256 in the chunk's
/// records, and both nodes render some.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_node_farm_renders_a_scene_with_the_pod_side_driver() {
    let farm = LocalFarm::builder()
        .nodes(2)
        .start()
        .await
        .expect("the local farm starts (Debian packages slurmctld slurmd slurm-client munge)");
    let shared = farm.shared_dir();
    let assets = shared.join("assets");
    blender_session::assets::write_to(&assets).expect("assets");
    let blend = shared.join("scene.blend");
    animated_scene(&blend).await;

    let job = shared.join("render");
    let cut = farm::chunks(1, 8, farm::default_chunk_size(8, 2));
    assert_eq!(cut.len(), 8, "one frame per task for 8 frames on 2 nodes");
    let script = prepare_chunks(&job, &blend, &assets.join("rpb_render.py"), &cut);
    let array = format!("--array={}", farm::array_spec(&cut));
    let output = format!("--output={}/task-%a.log", job.display());
    let script = script.display().to_string();
    let id = farm
        .run(&[
            "sbatch",
            "--parsable",
            "--requeue",
            &array,
            &output,
            &script,
        ])
        .await
        .expect("sbatch")
        .trim()
        .to_owned();

    let started = Instant::now();
    loop {
        let (_, tasks) = farm.status().await.expect("status");
        let open = tasks_of(&tasks, &id)
            .iter()
            .filter(|task| matches!(task.state.as_str(), "PENDING" | "RUNNING"))
            .count();
        if open == 0 {
            break;
        }
        assert!(
            started.elapsed() < LIMIT * 2,
            "the render did not finish: {tasks:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let nodes: std::collections::BTreeSet<String> =
        cut.iter().map(|chunk| check_chunk(&job, chunk)).collect();
    assert_eq!(nodes.len(), 2, "both nodes rendered: {nodes:?}");
    farm.shutdown();
}

/// `session.sh farm-conf`: slurm.conf from stdin, and gres.conf after its mark; says when
/// nothing changed; a farm without GPUs has no gres.conf.
#[test]
fn farm_conf_writes_slurm_conf_and_gres_conf_and_says_when_nothing_changed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let assets = dir.path().join("assets");
    blender_session::assets::write_to(&assets).expect("assets");
    let home = dir.path().join("rpb");
    let run = |input: &str| {
        use std::io::Write as _;
        let mut child = std::process::Command::new("bash")
            .arg(assets.join("session.sh"))
            .arg("farm-conf")
            .env("RPB_HOME", &home)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("bash");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write");
        let output = child.wait_with_output().expect("farm-conf");
        assert!(output.status.success(), "{output:?}");
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    };
    let farm = home.join("farm");
    let with_gpus =
        "ClusterName=rpbfarm\n# --- gres.conf ---\nNodeName=a Name=gpu File=/dev/nvidia0\n";
    assert_eq!(run(with_gpus), r#"{"rpb_farm_conf":"written"}"#);
    assert_eq!(
        std::fs::read_to_string(farm.join("slurm.conf")).unwrap(),
        "ClusterName=rpbfarm\n"
    );
    assert_eq!(
        std::fs::read_to_string(farm.join("gres.conf")).unwrap(),
        "NodeName=a Name=gpu File=/dev/nvidia0\n"
    );
    assert_eq!(run(with_gpus), r#"{"rpb_farm_conf":"unchanged"}"#);
    assert_eq!(
        run("ClusterName=rpbfarm\n"),
        r#"{"rpb_farm_conf":"written"}"#
    );
    assert!(!farm.join("gres.conf").exists(), "no GPUs, no gres.conf");
    assert_eq!(
        run("ClusterName=rpbfarm\n"),
        r#"{"rpb_farm_conf":"unchanged"}"#
    );
    let leftovers: Vec<_> = std::fs::read_dir(&farm)
        .unwrap()
        .flatten()
        .map(|entry| entry.file_name())
        .filter(|name| name.to_string_lossy().starts_with('.'))
        .collect();
    assert!(
        leftovers.is_empty(),
        "no temporary files left: {leftovers:?}"
    );
}
