//! The render farm on the [`Orchestrator`]: N pods on one network volume as a Slurm cluster
//! (`farm_up`, `farm_status`, `farm_down`), and render jobs cut into Slurm array tasks
//! (`farm_render_start`, `farm_render_follow`).
//!
//! The farm's record (its pods, their Slurm ports, the cost guard) is kept in the workspace's
//! state folder (`farm.json`), with the munge key (`farm-munge.key`, mode 0600): made here,
//! sent to each pod on the standard input of `session.sh farm-node-up`, never in an argument,
//! a log or the pod's environment.

mod cluster;
mod render;
mod up;

pub use cluster::SlurmCluster;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pod_tunnel::shell;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::session::{Events, Session, Step};
use super::{Clock, Orchestrator};
use crate::farm::{self, FarmNode, FarmTask};
use crate::render::ClusterJob;
use crate::seams::{PodSpec, PodStatus, PodView};
use crate::{Error, Result};

/// The farm's record in the workspace's state folder.
pub const FARM_RECORD_FILE: &str = "farm.json";
/// The farm's munge key in the workspace's state folder (mode 0600).
pub const FARM_KEY_FILE: &str = "farm-munge.key";
/// Slurm's own ports, used on RunPod (each pod has its own address).
const SLURMCTLD_PORT: u16 = 6817;
const SLURMD_PORT: u16 = 6818;
/// How long nodes get to register with the controller after `farm up`.
const NODES_UP_TIMEOUT: Duration = Duration::from_secs(90);
/// Bounds of one Slurm client call on the controller.
const SLURM_TIMEOUT: Duration = Duration::from_secs(60);

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// What [`Orchestrator::farm_up`] builds.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct FarmSpec {
    /// How many pods (nodes); the first runs the controller too.
    pub nodes: u32,
    /// The pods' template: GPU type, image, cloud, pod root (its name is the prefix of the
    /// nodes' names).
    pub pod: PodSpec,
    /// The network volume every node mounts at the pod root.
    pub volume_id: String,
    /// Stop every pod once the farm has run this many hours.
    pub max_hours: Option<f64>,
    /// Stop every pod once the farm has cost this many USD.
    pub max_cost: Option<f64>,
    /// Bring a replacement node when a render job loses one.
    pub replace_dead: bool,
}

impl FarmSpec {
    /// `nodes` pods like `pod` on network volume `volume_id`.
    pub fn new(nodes: u32, pod: PodSpec, volume_id: impl Into<String>) -> Self {
        Self {
            nodes,
            pod,
            volume_id: volume_id.into(),
            max_hours: None,
            max_cost: None,
            replace_dead: false,
        }
    }
}

/// One node of the farm's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct FarmPod {
    /// The pod (its id is the node's Slurm name).
    pub pod_id: String,
    /// The port its `slurmd` listens on.
    pub port: u16,
    /// When rpb brought it into the farm (Unix seconds).
    pub joined_at: u64,
    /// Its GPUs, offered to Slurm as GRES (one task per GPU).
    #[serde(default)]
    pub gpus: u32,
}

/// The farm as the workspace records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct FarmRecord {
    /// The network volume all nodes mount.
    pub volume_id: String,
    /// Its data center.
    pub data_center: Option<String>,
    /// The GPU type of new nodes.
    pub gpu_type: String,
    /// The nodes; the first runs the controller.
    pub nodes: Vec<FarmPod>,
    /// The controller's port.
    pub controller_port: u16,
    /// The cost guard: hours.
    pub max_hours: Option<f64>,
    /// The cost guard: USD.
    pub max_cost: Option<f64>,
    /// Replace a lost node while a job runs.
    #[serde(default)]
    pub replace_dead: bool,
    /// When the farm came up (Unix seconds).
    pub created_at: u64,
    /// The nodes' container image (new nodes get the same).
    #[serde(default)]
    pub image: Option<String>,
    /// GPUs per node.
    #[serde(default)]
    pub gpu_count: Option<u32>,
    /// `SECURE` or `COMMUNITY`.
    #[serde(default)]
    pub cloud: Option<String>,
    /// Container disk per node, GB.
    #[serde(default)]
    pub disk_gb: Option<u32>,
}

impl FarmRecord {
    /// Why the farm's cost guard stops it now, given what it has cost so far, if it does.
    pub fn guard(&self, cost_so_far: f64, now: u64) -> Option<String> {
        let hours = hours_of(now.saturating_sub(self.created_at));
        match (self.max_cost, self.max_hours) {
            (Some(limit), _) if cost_so_far >= limit => Some(format!(
                "the farm has cost ${cost_so_far:.2}, the limit is ${limit:.2}"
            )),
            (_, Some(limit)) if hours >= limit => Some(format!(
                "the farm has run {hours:.2} h, the limit is {limit:.2} h"
            )),
            _ => None,
        }
    }

    /// What each task asks Slurm for: one GPU, when every node has one (`--gres=gpu:1`).
    pub fn task_gres(&self) -> Option<String> {
        (!self.nodes.is_empty() && self.nodes.iter().all(|node| node.gpus > 0))
            .then(|| "gpu:1".to_owned())
    }

    /// The spec new nodes are made from: the farm's GPU type, image, cloud and disk, the pod
    /// root at `pod_root`.
    pub fn pod_template(&self, pod_root: &str) -> PodSpec {
        let mut spec = PodSpec::new("rpb-farm")
            .gpu_type(self.gpu_type.clone())
            .pod_root(pod_root);
        if let Some(image) = &self.image {
            spec.image.clone_from(image);
        }
        if let Some(count) = self.gpu_count {
            spec.gpu_count = count;
        }
        if self.cloud.as_deref() == Some("COMMUNITY") {
            spec = spec.cloud(runpod_api::models::Cloud::Community);
        }
        if let Some(disk) = self.disk_gb {
            spec.disk_gb = disk;
        }
        spec
    }
    /// The controller's pod id.
    pub fn controller(&self) -> Option<&str> {
        self.nodes.first().map(|node| node.pod_id.as_str())
    }
}

/// One node as [`Orchestrator::farm_status`] sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct FarmNodeStatus {
    /// The pod (and Slurm node) id.
    pub pod_id: String,
    /// Whether it runs the controller.
    pub controller: bool,
    /// The pod's status, as the provider says (`gone` when it no longer exists).
    pub pod_status: String,
    /// Slurm's view of it, when the controller answers.
    pub slurm_state: Option<String>,
    /// Why Slurm has it down, when it does.
    pub slurm_reason: Option<String>,
    /// USD per hour now.
    pub cost_per_hour: f64,
    /// The GPU, when the provider says.
    pub gpu: Option<String>,
}

/// The farm's state.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct FarmStatus {
    /// The record.
    pub record: FarmRecord,
    /// Each node.
    pub nodes: Vec<FarmNodeStatus>,
    /// Slurm's open tasks (running, waiting, requeued), when the controller answers.
    pub tasks: Vec<FarmTask>,
    /// Why Slurm's view is missing, when it is.
    pub slurm_error: Option<String>,
    /// The whole farm's USD per hour now.
    pub cost_per_hour: f64,
    /// The farm's cost so far: each node's price times the time since it joined.
    pub cost_so_far: f64,
    /// Hours since the farm came up.
    pub hours: f64,
    /// Set when the cost guard's limit is reached.
    pub guard: Option<String>,
}

/// What [`Orchestrator::farm_up`] did.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct FarmUp {
    /// Pods created now.
    pub created: Vec<String>,
    /// Pods started again now (they were stopped).
    pub started: Vec<String>,
    /// Pods dropped from the farm (terminated, failed or gone), with why.
    pub replaced: Vec<(String, String)>,
    /// Whether slurm.conf changed.
    pub conf_changed: bool,
    /// Daemons started, per node.
    pub daemons: BTreeMap<String, Vec<String>>,
    /// The farm now.
    pub status: FarmStatus,
}

impl FarmUp {
    /// Whether `farm up` changed nothing (the farm already ran as asked).
    pub fn unchanged(&self) -> bool {
        self.created.is_empty()
            && self.started.is_empty()
            && self.replaced.is_empty()
            && !self.conf_changed
            && self.daemons.values().all(Vec::is_empty)
    }
}

/// What [`Orchestrator::farm_down`] did.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct FarmDown {
    /// Pods terminated.
    pub terminated: Vec<String>,
    /// Pods that were already gone.
    pub gone: Vec<String>,
    /// Slurm tasks still queued or running that `--now` ended.
    pub tasks_ended: usize,
}

/// How a job is cut and what its tasks ask Slurm for.
struct Submission {
    /// Frames per task (default: about four tasks per node).
    chunk: Option<u32>,
    /// Nodes to spread over (for the default chunk).
    nodes: u32,
    /// `--partition`.
    partition: Option<String>,
    /// `--gres` per task (`gpu:1`).
    gres: Option<String>,
    /// Set for a cluster of the user's own.
    cluster: Option<ClusterJob>,
}

/// `session.sh farm-env`'s answer.
#[derive(Debug, Deserialize)]
struct FarmEnv {
    /// The pod's farm folder (`RPB_FARM_RUN`): munged's socket is there.
    #[serde(rename = "rpb_farm_env")]
    run: String,
    #[serde(default)]
    addr: String,
    #[serde(default)]
    ports: String,
    hostname: String,
    #[serde(default)]
    missing: String,
    /// The pod's GPUs (`/dev/nvidia<N>`).
    #[serde(default)]
    gpus: u32,
}

/// `session.sh farm-node-up`'s answer.
#[derive(Debug, Deserialize)]
struct NodeUp {
    #[serde(default)]
    started: Vec<String>,
}

/// What a node has billed since it joined the farm at `joined`: its price times its uptime
/// (billing runs while the pod runs), within the time it has been a node.
fn billed_so_far(joined: u64, pod: Option<&PodView>, now: u64) -> f64 {
    let Some(pod) = pod else { return 0.0 };
    let seconds = pod
        .uptime_seconds
        .unwrap_or(0)
        .min(now.saturating_sub(joined));
    pod.cost_per_hour * hours_of(seconds)
}

/// Seconds as hours (a farm runs far less than the 136 years `u32` seconds hold).
fn hours_of(seconds: u64) -> f64 {
    f64::from(u32::try_from(seconds).unwrap_or(u32::MAX)) / 3600.0
}

fn farm_error(operation: impl Into<String>, detail: impl Into<String>) -> Error {
    Error::Farm {
        operation: operation.into(),
        detail: detail.into(),
    }
}

fn last_json_line<'a>(stdout: &'a str, prefix: &str) -> Option<&'a str> {
    stdout
        .lines()
        .rev()
        .find(|line| line.trim_start().starts_with(prefix))
}

/// Whether Slurm still has work to do for a task (queued, running, requeued, ending).
fn is_open(task: &FarmTask) -> bool {
    matches!(
        task.state.as_str(),
        "PENDING"
            | "RUNNING"
            | "CONFIGURING"
            | "COMPLETING"
            | "REQUEUED"
            | "REQUEUE_HOLD"
            | "REQUEUE_FED"
            | "RESIZING"
            | "SUSPENDED"
            | "STOPPED"
            | "SIGNALING"
            | "STAGE_OUT"
    )
}

fn is_dead(status: &PodStatus) -> bool {
    matches!(status, PodStatus::Terminated | PodStatus::Error)
}

impl Orchestrator {
    fn farm_state_dir(&self) -> Result<PathBuf> {
        self.store
            .as_ref()
            .map(project_store::Store::state_dir)
            .ok_or_else(|| {
                farm_error(
                    "using the render farm",
                    "this orchestrator has no workspace to keep the farm's record in",
                )
            })
    }

    /// The farm's record, if this workspace has a farm.
    ///
    /// # Errors
    ///
    /// [`Error::Farm`] when the record cannot be read.
    pub fn farm_record(&self) -> Result<Option<FarmRecord>> {
        let path = self.farm_state_dir()?.join(FARM_RECORD_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|error| {
                farm_error(
                    format!("reading the farm record {}", path.display()),
                    format!("{error}; fix or remove the file"),
                )
            }),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(Error::Io {
                operation: "read",
                path,
                source,
            }),
        }
    }

    fn require_farm(&self) -> Result<FarmRecord> {
        self.farm_record()?.ok_or_else(|| {
            farm_error(
                "using the render farm",
                "this workspace has no farm: run `rpb farm up --nodes N` first",
            )
        })
    }

    fn save_farm_record(&self, record: &FarmRecord) -> Result<()> {
        let path = self.farm_state_dir()?.join(FARM_RECORD_FILE);
        crate::daemon::write_private_json(&path, record)
    }

    /// The farm's munge key, made on first use (1024 random bytes, mode 0600).
    fn farm_key(&self) -> Result<secrecy::SecretSlice<u8>> {
        let path = self.farm_state_dir()?.join(FARM_KEY_FILE);
        match std::fs::read(&path) {
            Ok(bytes) if bytes.len() >= 32 => return Ok(bytes.into()),
            Ok(_) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(Error::Io {
                    operation: "read",
                    path,
                    source,
                });
            }
        }
        let mut key = vec![0_u8; 1024];
        rand::fill(&mut key[..]);
        crate::assets::write_atomically(&path, &key, 0o600).map_err(|source| Error::Io {
            operation: "write",
            path: path.clone(),
            source,
        })?;
        Ok(key.into())
    }

    /// The pod up and set up, with a connection to it: waits until it runs, connects (host
    /// key verified) and runs setup when needed.
    async fn farm_host(&self, pod_id: &str, clock: &Clock<'_>) -> Result<Session> {
        let pod = self.wait_running(pod_id, clock).await?;
        let (addr, host) = self.connect(pod_id, pod, clock).await?;
        self.ensure_setup(pod_id, host.as_ref(), clock).await?;
        Ok(Session::without_blender(pod_id, addr, host))
    }

    /// Connects to a farm pod that runs, without setting anything up.
    async fn farm_connect(&self, pod_id: &str) -> Result<Session> {
        let clock = Clock {
            started: Instant::now(),
            events: &|_| {},
        };
        let pod = self.provider.pod(pod_id).await?;
        if pod.status != PodStatus::Running {
            return Err(Error::PodFailed {
                pod_id: pod_id.into(),
                status: pod.status.to_string(),
                wanted: "running",
                hint: "the farm's controller does not run; `rpb farm up` brings it back",
            });
        }
        let (addr, host) = self.connect(pod_id, pod, &clock).await?;
        Ok(Session::without_blender(pod_id, addr, host))
    }

    /// Runs a Slurm client program on the controller (`sinfo`, `squeue`, `sbatch`, `scontrol`,
    /// `scancel`) against the farm's slurm.conf; its standard output.
    async fn slurm(&self, controller: &Session, argv: &[String]) -> Result<String> {
        let words: Vec<String> = argv.iter().map(|word| shell::quote(word)).collect();
        let command = format!(
            "{} farm-slurm {}",
            self.settings.session_script(),
            words.join(" ")
        );
        self.run_checked(
            &controller.pod_id,
            controller.host.as_ref(),
            &format!("`{}` on the farm's controller", argv.join(" ")),
            &command,
            None,
            SLURM_TIMEOUT,
        )
        .await
    }

    async fn slurm_view(&self, controller: &Session) -> Result<(Vec<FarmNode>, Vec<FarmTask>)> {
        let nodes = self
            .slurm(controller, &["sinfo".into(), "--json".into()])
            .await?;
        let tasks = self
            .slurm(controller, &["squeue".into(), "--json".into()])
            .await?;
        Ok((farm::parse_sinfo(&nodes)?, farm::parse_squeue(&tasks)?))
    }

    async fn status_of(
        &self,
        record: FarmRecord,
        controller: Option<&Session>,
    ) -> Result<FarmStatus> {
        let mut pods: Vec<(String, Option<PodView>)> = Vec::new();
        for node in &record.nodes {
            match self.provider.pod(&node.pod_id).await {
                Ok(pod) => pods.push((node.pod_id.clone(), Some(pod))),
                Err(error) if crate::orchestrator::portable::is_gone(&error) => {
                    pods.push((node.pod_id.clone(), None));
                }
                Err(error) => return Err(error),
            }
        }
        let fresh;
        let controller = match controller {
            Some(session) => Ok(session),
            None => match record.controller() {
                Some(id) => match self.farm_connect(id).await {
                    Ok(session) => {
                        fresh = session;
                        Ok(&fresh)
                    }
                    Err(error) => Err(error.to_string()),
                },
                None => Err("the farm has no nodes".to_owned()),
            },
        };
        let (slurm_nodes, tasks, slurm_error) = match controller {
            Ok(session) => match self.slurm_view(session).await {
                Ok((nodes, tasks)) => (nodes, tasks.into_iter().filter(is_open).collect(), None),
                Err(error) => (Vec::new(), Vec::new(), Some(error.to_string())),
            },
            Err(error) => (Vec::new(), Vec::new(), Some(error)),
        };
        let now = unix_now();
        let mut cost_per_hour = 0.0;
        let mut cost_so_far = 0.0;
        let mut nodes = Vec::new();
        for (index, (pod_id, pod)) in pods.iter().enumerate() {
            let rate = pod.as_ref().map_or(0.0, |pod| pod.cost_per_hour);
            cost_per_hour += rate;
            let joined = record
                .nodes
                .iter()
                .find(|node| &node.pod_id == pod_id)
                .map_or(now, |node| node.joined_at);
            cost_so_far += billed_so_far(joined, pod.as_ref(), now);
            let slurm = slurm_nodes.iter().find(|node| &node.name == pod_id);
            nodes.push(FarmNodeStatus {
                pod_id: pod_id.clone(),
                controller: index == 0,
                pod_status: pod
                    .as_ref()
                    .map_or_else(|| "gone".to_owned(), |pod| pod.status.to_string()),
                slurm_state: slurm.map(|node| node.state.clone()),
                slurm_reason: slurm
                    .map(|node| node.reason.clone())
                    .filter(|reason| !reason.is_empty()),
                cost_per_hour: rate,
                gpu: pod.as_ref().and_then(|pod| pod.gpu.clone()),
            });
        }
        let hours = hours_of(now.saturating_sub(record.created_at));
        let guard = record.guard(cost_so_far, now);
        Ok(FarmStatus {
            record,
            nodes,
            tasks,
            slurm_error,
            cost_per_hour,
            cost_so_far,
            hours,
            guard,
        })
    }

    /// The farm now: each node's pod and Slurm state, Slurm's tasks, the cost per hour of the
    /// whole farm and its cost so far. When the cost guard's limit is reached, every pod is
    /// stopped (the volume keeps everything; `farm up` starts them again).
    ///
    /// # Errors
    ///
    /// [`Error::Farm`] when this workspace has no farm; provider failures. A controller that
    /// does not answer is reported in [`FarmStatus::slurm_error`], not as an error.
    pub async fn farm_status(&self) -> Result<FarmStatus> {
        let record = self.require_farm()?;
        let status = self.status_of(record, None).await?;
        if let Some(reason) = &status.guard {
            self.stop_farm_pods(&status.record, reason).await;
        }
        Ok(status)
    }

    async fn stop_farm_pods(&self, record: &FarmRecord, reason: &str) {
        for node in &record.nodes {
            tracing::warn!(pod_id = %node.pod_id, reason, "the farm's cost guard stops the pod");
            if let Err(error) = self.provider.stop(&node.pod_id).await {
                tracing::error!(pod_id = %node.pod_id, %error, "stopping a farm pod for the cost guard failed");
            }
        }
    }

    /// Waits (at most `wait`) until Slurm has no open task, or with `now` cancels them; how
    /// many were cancelled.
    async fn end_or_await_tasks(
        &self,
        controller: &Session,
        now: bool,
        wait: Duration,
        clock: &Clock<'_>,
    ) -> Result<usize> {
        let started = Instant::now();
        loop {
            let tasks = match self.slurm_view(controller).await {
                Ok((_, tasks)) => tasks,
                // A controller that cannot say what runs does not keep pods billing.
                Err(error) if now => {
                    clock.emit(
                        Step::Farm,
                        format!("Slurm does not answer ({error}); terminating anyway"),
                    );
                    return Ok(0);
                }
                Err(error) => {
                    return Err(farm_error(
                        "taking the farm down",
                        format!(
                            "reading Slurm's tasks failed ({error}); `rpb farm down --now` terminates the pods anyway"
                        ),
                    ));
                }
            };
            let open: Vec<&FarmTask> = tasks.iter().filter(|task| is_open(task)).collect();
            if open.is_empty() {
                return Ok(0);
            }
            if now {
                let ended = open.len();
                let mut jobs: Vec<String> = open
                    .iter()
                    .map(|task| task.array_job_id.to_string())
                    .collect();
                jobs.sort();
                jobs.dedup();
                clock.emit(
                    Step::Farm,
                    format!("ending {} tasks of job(s) {}", open.len(), jobs.join(", ")),
                );
                let mut argv = vec!["scancel".to_owned()];
                argv.extend(jobs);
                // Terminating the pods ends the tasks too: a failed cancel stops nothing.
                if let Err(error) = self.slurm(controller, &argv).await {
                    clock.emit(
                        Step::Farm,
                        format!("cancelling failed ({error}); terminating anyway"),
                    );
                }
                return Ok(ended);
            }
            if started.elapsed() >= wait {
                return Err(farm_error(
                    "taking the farm down",
                    format!(
                        "{} tasks still run or wait after {wait:?}; follow them with `rpb render attach`, or end them with `rpb farm down --now`",
                        open.len()
                    ),
                ));
            }
            clock.emit(
                Step::Farm,
                format!("waiting for {} tasks to finish", open.len()),
            );
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }

    /// Takes the farm down: waits until Slurm has no task left (at most `wait`), or with
    /// `now` ends them at once, then terminates every node's pod (the network volume keeps
    /// everything) and forgets the farm.
    ///
    /// # Errors
    ///
    /// [`Error::Farm`] when this workspace has no farm, or tasks still run after `wait`
    /// (nothing is terminated then); provider failures.
    pub async fn farm_down(
        &self,
        now: bool,
        wait: Duration,
        events: Events<'_>,
    ) -> Result<FarmDown> {
        let clock = Clock {
            started: Instant::now(),
            events,
        };
        let record = self.require_farm()?;
        let mut tasks_ended = 0;
        if let Some(controller_id) = record.controller()
            && let Ok(controller) = self.farm_connect(controller_id).await
        {
            tasks_ended = self
                .end_or_await_tasks(&controller, now, wait, &clock)
                .await?;
        }
        let mut terminated = Vec::new();
        let mut gone = Vec::new();
        // Workers first, the controller last.
        for node in record.nodes.iter().rev() {
            match self.provider.terminate(&node.pod_id).await {
                Ok(()) => {
                    clock.emit(Step::Terminate, format!("terminated pod {}", node.pod_id));
                    terminated.push(node.pod_id.clone());
                }
                Err(error) if crate::orchestrator::portable::is_gone(&error) => {
                    gone.push(node.pod_id.clone());
                }
                Err(error) => {
                    // The record keeps what is left, so `farm down` again finishes the job.
                    let mut left = record.clone();
                    left.nodes.retain(|n| !terminated.contains(&n.pod_id));
                    self.save_farm_record(&left)?;
                    return Err(error);
                }
            }
        }
        let dir = self.farm_state_dir()?;
        for file in [FARM_RECORD_FILE, FARM_KEY_FILE] {
            match std::fs::remove_file(dir.join(file)) {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(Error::Io {
                        operation: "remove",
                        path: dir.join(file),
                        source,
                    });
                }
            }
        }
        Ok(FarmDown {
            terminated,
            gone,
            tasks_ended,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_nodes_are_made_like_the_farm_s_first_ones() {
        let record: FarmRecord = serde_json::from_value(serde_json::json!({
            "volume_id": "vol", "data_center": "EU-RO-1", "gpu_type": "NVIDIA RTX A5000",
            "nodes": [], "controller_port": 6817, "max_hours": null, "max_cost": 20.0,
            "created_at": 0, "image": "me/blender:1@sha256:00", "gpu_count": 2,
            "cloud": "COMMUNITY", "disk_gb": 40
        }))
        .unwrap();
        let spec = record.pod_template("/workspace");
        assert_eq!(spec.gpu_type, "NVIDIA RTX A5000");
        assert_eq!(spec.image, "me/blender:1@sha256:00");
        assert_eq!((spec.gpu_count, spec.disk_gb), (2, 40));
        assert_eq!(spec.cloud, runpod_api::models::Cloud::Community);
        assert_eq!(spec.volume_path, "/workspace");
        // A record written before these fields existed reads with the defaults.
        let old: FarmRecord = serde_json::from_value(serde_json::json!({
            "volume_id": "vol", "data_center": null, "gpu_type": "gpu", "nodes": [],
            "controller_port": 0, "max_hours": null, "max_cost": null, "created_at": 0
        }))
        .unwrap();
        assert_eq!(
            old.pod_template("/runpod").image,
            crate::seams::DEFAULT_IMAGE
        );
    }

    #[test]
    fn hours_and_open_tasks() {
        assert!((hours_of(5400) - 1.5).abs() < 1e-9);
        assert!(hours_of(u64::MAX) > 1e6, "saturates instead of wrapping");
        let task = |state: &str| FarmTask {
            job_id: 1,
            array_job_id: 1,
            task: Some(1),
            pending: String::new(),
            name: "rpb".into(),
            state: state.into(),
            reason: String::new(),
            node: String::new(),
            restarts: 0,
        };
        for open in ["PENDING", "RUNNING", "COMPLETING", "REQUEUED"] {
            assert!(is_open(&task(open)), "{open}");
        }
        for ended in ["COMPLETED", "FAILED", "CANCELLED", "NODE_FAIL", "TIMEOUT"] {
            assert!(!is_open(&task(ended)), "{ended}");
        }
    }
}
