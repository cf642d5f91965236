//! What the farm's controller says: nodes from `sinfo --json`, tasks from `squeue --json`
//! (Slurm 22.05's data parser, v0.0.38), and the commands that recover from a lost node.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// A node as `sinfo --json` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct FarmNode {
    /// Slurm's name for it.
    pub name: String,
    /// `idle`, `allocated`, `mixed`, `down`, `drained`, ... as Slurm says it.
    pub state: String,
    /// Flags such as `NOT_RESPONDING` or `DRAIN`.
    pub flags: Vec<String>,
    /// Why it is down or drained (empty otherwise).
    pub reason: String,
}

impl FarmNode {
    /// Whether it can run tasks: neither down nor drained nor failing to answer.
    pub fn is_up(&self) -> bool {
        !matches!(
            self.state.as_str(),
            "down" | "drained" | "draining" | "fail"
        ) && !self
            .flags
            .iter()
            .any(|flag| matches!(flag.as_str(), "NOT_RESPONDING" | "DRAIN" | "FAIL"))
    }
}

/// One task of a job array, or the still pending rest of one, as `squeue --json` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct FarmTask {
    /// The task's own job id (what `scontrol` takes).
    pub job_id: u64,
    /// The array's job id (what `sbatch` printed).
    pub array_job_id: u64,
    /// The task id, or `None` for a line standing for several pending tasks ([`Self::pending`]).
    pub task: Option<u32>,
    /// The pending task ids a line stands for, as Slurm writes them (`3-4`, `5,7`).
    pub pending: String,
    /// The job's name.
    pub name: String,
    /// `PENDING`, `RUNNING`, `COMPLETED`, `FAILED`, ...
    pub state: String,
    /// Why it waits (`Resources`, `BeginTime`, ...), `None` when it does not.
    pub reason: String,
    /// The node it runs or ran on (empty while pending).
    pub node: String,
    /// How many times it was requeued.
    pub restarts: u32,
}

impl FarmTask {
    /// A task that was requeued (after its node was lost) and waits for the begin time Slurm
    /// gives requeued jobs (about two minutes), though nodes are free.
    pub fn waits_after_requeue(&self) -> bool {
        self.state == "PENDING" && self.reason == "BeginTime" && self.restarts > 0
    }
}

#[derive(Deserialize)]
struct SinfoReply {
    nodes: Vec<SinfoNode>,
}

#[derive(Deserialize)]
struct SinfoNode {
    name: String,
    state: String,
    #[serde(default)]
    state_flags: Vec<String>,
    #[serde(default)]
    reason: String,
}

#[derive(Deserialize)]
struct SqueueReply {
    jobs: Vec<SqueueJob>,
}

#[derive(Deserialize)]
struct SqueueJob {
    job_id: u64,
    #[serde(default)]
    array_job_id: u64,
    array_task_id: Option<u32>,
    #[serde(default)]
    array_task_string: String,
    #[serde(default)]
    name: String,
    job_state: String,
    #[serde(default)]
    state_reason: String,
    #[serde(default)]
    nodes: String,
    #[serde(default)]
    restart_cnt: u32,
}

fn parse<T: serde::de::DeserializeOwned>(what: &'static str, json: &str) -> Result<T> {
    serde_json::from_str(json).map_err(|source| Error::FarmReport { what, source })
}

/// The nodes in `sinfo --json` output.
///
/// # Errors
///
/// [`Error::FarmReport`] when the output is not `sinfo --json`'s.
pub fn parse_sinfo(json: &str) -> Result<Vec<FarmNode>> {
    let reply: SinfoReply = parse("sinfo --json", json)?;
    Ok(reply
        .nodes
        .into_iter()
        .map(|node| FarmNode {
            name: node.name,
            state: node.state,
            flags: node.state_flags,
            reason: node.reason,
        })
        .collect())
}

/// The jobs in `squeue --json` output (finished ones included while Slurm keeps them).
///
/// # Errors
///
/// [`Error::FarmReport`] when the output is not `squeue --json`'s.
pub fn parse_squeue(json: &str) -> Result<Vec<FarmTask>> {
    let reply: SqueueReply = parse("squeue --json", json)?;
    Ok(reply
        .jobs
        .into_iter()
        .map(|job| FarmTask {
            job_id: job.job_id,
            array_job_id: job.array_job_id,
            task: job.array_task_id,
            pending: job.array_task_string,
            name: job.name,
            state: job.job_state,
            reason: if job.state_reason == "None" {
                String::new()
            } else {
                job.state_reason
            },
            node: job.nodes,
            restarts: job.restart_cnt,
        })
        .collect())
}

/// The `scontrol` command (argv) that takes a lost node out: it is marked down, which
/// requeues its tasks (submitted with `--requeue`) onto the others. rpb runs it as soon as it
/// knows the node's pod is gone, without waiting for the controller's own timeout.
pub fn mark_node_lost(node: &str, reason: &str) -> Vec<String> {
    vec![
        "scontrol".into(),
        "update".into(),
        format!("NodeName={node}"),
        "State=DOWN".into(),
        format!("Reason={}", reason.replace(char::is_whitespace, "_")),
    ]
}

/// The `scontrol` command (argv) that puts a node rpb marked lost back in service, once its
/// pod runs again (`farm up` started it): Slurm keeps a node an operator set down until told.
pub fn resume_node(node: &str) -> Vec<String> {
    vec![
        "scontrol".into(),
        "update".into(),
        format!("NodeName={node}"),
        "State=RESUME".into(),
    ]
}

/// Whether rpb marked this node lost ([`mark_node_lost`] with a reason starting `rpb:`).
pub fn marked_lost_by_rpb(node: &FarmNode) -> bool {
    !node.is_up() && node.reason.starts_with("rpb:")
}

/// The `scontrol` commands (argv) that let requeued tasks start now instead of after the
/// begin time Slurm sets on requeue.
pub fn release_requeued(tasks: &[FarmTask]) -> Vec<Vec<String>> {
    tasks
        .iter()
        .filter(|task| task.waits_after_requeue())
        .map(|task| {
            vec![
                "scontrol".into(),
                "update".into(),
                format!("JobId={}", task.job_id),
                "StartTime=now".into(),
            ]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SINFO: &str = include_str!("../../tests/data/slurm/sinfo-22.05-one-down.json");
    const SQUEUE: &str = include_str!("../../tests/data/slurm/squeue-22.05-array.json");

    #[test]
    fn sinfo_shows_the_lost_node_down_with_rpb_s_reason() {
        let nodes = parse_sinfo(SINFO).unwrap();
        assert_eq!(nodes.len(), 2);
        assert_eq!(nodes[0].name, "n1");
        assert_eq!(nodes[0].state, "allocated");
        assert!(nodes[0].is_up());
        assert_eq!(nodes[1].state, "down");
        assert_eq!(nodes[1].flags, ["NOT_RESPONDING"]);
        assert_eq!(nodes[1].reason, "pod lost");
        assert!(!nodes[1].is_up());
    }

    #[test]
    fn only_nodes_rpb_marked_lost_are_put_back_in_service() {
        let mut nodes = parse_sinfo(SINFO).unwrap();
        assert!(!marked_lost_by_rpb(&nodes[1]), "down for another reason");
        let marked = mark_node_lost("n2", "rpb: its pod is EXITED");
        assert_eq!(marked[4], "Reason=rpb:_its_pod_is_EXITED");
        nodes[1].reason = marked[4].trim_start_matches("Reason=").to_owned();
        assert!(marked_lost_by_rpb(&nodes[1]));
        assert!(!marked_lost_by_rpb(&nodes[0]), "an up node is left alone");
        assert_eq!(
            resume_node("n2"),
            ["scontrol", "update", "NodeName=n2", "State=RESUME"]
        );
    }

    #[test]
    fn squeue_shows_array_tasks_their_nodes_restarts_and_the_pending_rest() {
        let tasks = parse_squeue(SQUEUE).unwrap();
        let requeued = tasks
            .iter()
            .find(|task| task.array_job_id == 9 && task.task == Some(2))
            .unwrap();
        assert_eq!(
            (requeued.state.as_str(), requeued.node.as_str()),
            ("RUNNING", "n1")
        );
        assert_eq!(requeued.restarts, 1);
        let pending = tasks.iter().find(|task| task.array_job_id == 11).unwrap();
        assert_eq!(pending.task, None);
        assert_eq!(pending.pending, "1-3");
        assert_eq!(pending.reason, "Resources");
        assert_eq!(pending.name, "rpb-render");
        let done = tasks
            .iter()
            .filter(|task| task.array_job_id == 1 && task.state == "COMPLETED")
            .count();
        assert_eq!(done, 4);
        assert!(parse_squeue("{\"jobs\": 3}").is_err());
    }

    #[test]
    fn recovery_marks_the_node_down_and_releases_only_requeued_waiting_tasks() {
        assert_eq!(
            mark_node_lost("n2", "pod lost"),
            [
                "scontrol",
                "update",
                "NodeName=n2",
                "State=DOWN",
                "Reason=pod_lost"
            ]
        );
        let mut waiting = parse_squeue(SQUEUE).unwrap();
        for task in &mut waiting {
            if task.task == Some(2) && task.array_job_id == 9 {
                task.state = "PENDING".into();
                task.reason = "BeginTime".into();
            }
        }
        assert_eq!(
            release_requeued(&waiting),
            [["scontrol", "update", "JobId=9", "StartTime=now"]]
        );
    }
}
