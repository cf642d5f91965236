//! The local farm: Slurm's own daemons (a private munged, slurmctld, two slurmd) on this
//! machine, driven the way rpb drives a farm of pods: an array job over frame chunks from
//! `farm::chunks`, `--requeue`, and the recovery commands when a node is lost.

use std::collections::BTreeMap;
use std::path::Path;
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
    let started = Instant::now();
    loop {
        let (_, tasks) = farm.status().await.expect("status");
        if tasks_of(&tasks, &job)
            .iter()
            .any(|task| task.state == "RUNNING" && task.node == "n2")
        {
            break;
        }
        assert!(
            started.elapsed() < LIMIT,
            "no task ever ran on n2: {tasks:?}"
        );
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
