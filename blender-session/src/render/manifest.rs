//! The local record of a render job ([`RenderManifest`], `render.json`): the job's state, its
//! frames, the driver's findings, the cost report, and where the records are kept.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::log::LineSplitter;
use super::spec::JobSpec;
use crate::{Error, Result};

/// The local record of a job: `projects/<project>/renders/<job-id>/render.json`.
pub const MANIFEST_FILE: &str = "render.json";

/// How a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum JobState {
    /// Created locally, not started on the pod yet.
    New,
    /// Blender renders.
    Running,
    /// Every frame rendered and verified.
    Done,
    /// Some frames failed after their retries.
    Failed,
    /// Cancelled on request (or by the cost guard).
    Cancelled,
    /// The driver refused the options (no such camera, scene...).
    Invalid,
    /// The job's processes ended without finishing (the pod stopped or restarted): resume it.
    Stopped,
    /// The pod has no such job (another pod, or its volume was lost).
    Missing,
}

impl JobState {
    pub(super) fn from_pod(text: &str) -> Self {
        match text {
            "running" => Self::Running,
            "done" => Self::Done,
            "failed" => Self::Failed,
            "cancelled" => Self::Cancelled,
            "invalid" => Self::Invalid,
            "stopped" => Self::Stopped,
            "missing" => Self::Missing,
            _ => Self::New,
        }
    }

    /// Whether the job's processes have ended on the pod.
    pub fn ended(self) -> bool {
        !matches!(self, Self::New | Self::Running)
    }

    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::New => "new",
            Self::Running => "running",
            Self::Done => "done",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Invalid => "invalid",
            Self::Stopped => "stopped",
            Self::Missing => "missing",
        }
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One rendered frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct FrameEntry {
    /// Frame number.
    pub frame: i64,
    /// The image, relative to the job folder (`out/frame_0001.png` on the pod).
    pub file: String,
    /// The local copy, once downloaded and verified.
    pub path: Option<PathBuf>,
    /// SHA-256 of the image (checked on the pod and again after the download).
    pub sha256: String,
    /// Size in bytes.
    pub bytes: u64,
    /// Render seconds (Blender's render call, saving included).
    pub seconds: f64,
    /// Samples per pixel, when the engine has them.
    pub samples: Option<u32>,
    /// The attempt that succeeded.
    pub attempt: u32,
    /// `rendered` (on the pod) or `local` (downloaded and verified).
    pub state: String,
    /// When Blender finished writing it (Unix seconds, the pod's clock).
    #[serde(default)]
    pub rendered_at: f64,
    /// When the pod recorded it as verified (Unix seconds, the pod's clock).
    #[serde(default)]
    pub verified_at: f64,
    /// The farm node (pod id) that rendered it, for a job rendered on a farm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// A frame that failed every attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct FailedFrame {
    /// Frame number.
    pub frame: i64,
    /// Attempts made.
    pub attempts: u32,
    /// Blender's words (or what the check found).
    pub reason: String,
}

/// What the pod-side driver found about the file and the machine.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Accepted {
    /// Blender's version.
    pub blender_version: String,
    /// Blender's engine identifier.
    pub engine: String,
    /// The device (`OPTIX`, `CUDA`, `CPU`, ...).
    pub device: String,
    /// Samples per pixel, when the engine has them.
    pub samples: Option<u32>,
    /// The scene rendered.
    pub scene: String,
    /// The camera.
    pub camera: String,
    /// Output size in pixels.
    pub size: (u32, u32),
    /// What the driver changed or wants said (a denoiser this Blender lacks, ...).
    #[serde(default)]
    pub notes: Vec<String>,
}

/// The local record of a render job, kept in the project next to its frames.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RenderManifest {
    /// The job id.
    pub job_id: String,
    /// The project.
    pub project: String,
    /// The pod it runs on.
    pub pod_id: String,
    /// The job folder on the pod.
    pub remote_dir: String,
    /// What is rendered.
    pub spec: JobSpec,
    /// When the job was created (Unix seconds).
    pub created_at: u64,
    /// The state last seen.
    pub state: JobState,
    /// The driver's findings, once it accepted the job.
    pub accepted: Option<Accepted>,
    /// The pod's price when the job was followed, USD per hour.
    pub cost_per_hour: Option<f64>,
    /// The pod's GPU type and count, when the provider says.
    #[serde(default)]
    pub gpu: Option<String>,
    /// Seconds the current run has been going (or went), as the pod's clock says.
    pub elapsed_seconds: f64,
    /// Cost of that time at the pod's price.
    pub cost: f64,
    /// Rendered frames, by frame number.
    pub frames: BTreeMap<i64, FrameEntry>,
    /// Frames that failed every attempt.
    pub failed: Vec<FailedFrame>,
    /// Frames skipped because an earlier run had rendered them.
    pub skipped: Vec<i64>,
    /// Why the job ended, in the pod's words, when it did not end done.
    pub reason: Option<String>,
    /// How far the driver's records (`events.jsonl`) have been read.
    #[serde(default)]
    pub events_offset: u64,
    /// How far Blender's log has been read.
    pub log_offset: u64,
    /// The end of the log read so far that is not a whole line yet (Blender was writing it).
    #[serde(skip)]
    pub(super) log_tail: String,
    /// For a job rendered on a render farm: its Slurm job and chunks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub farm: Option<FarmJob>,
}

/// A render job's life on a render farm: one Slurm array task per chunk of frames.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct FarmJob {
    /// The Slurm job id of the array.
    pub slurm_job: String,
    /// Frames per task.
    pub chunk: u32,
    /// The array's tasks, numbered from 1: the frames of each.
    pub tasks: BTreeMap<u32, Vec<i64>>,
    /// Nodes (pod ids) found lost while the job ran, with why.
    #[serde(default)]
    pub lost_nodes: BTreeMap<String, String>,
    /// Tasks that Slurm ran again after their node was lost.
    #[serde(default)]
    pub requeued: Vec<u32>,
    /// Set when the job runs on an existing Slurm cluster (`rpb render --slurm`) rather than
    /// on rpb's farm of pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterJob>,
}

/// Where a job submitted to an existing Slurm cluster lives.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ClusterJob {
    /// The login node, `user@host:port`.
    pub login: String,
    /// The partition the job was submitted to, if one was named.
    pub partition: Option<String>,
    /// The folder shared by the cluster's nodes that holds rpb's files and the job.
    pub shared_dir: String,
    /// A slurm.conf the cluster's clients need named (`SLURM_CONF`), if any.
    #[serde(default)]
    pub slurm_conf: Option<String>,
}

impl RenderManifest {
    /// Frames rendered on the pod but not yet local.
    pub fn pending_downloads(&self) -> impl Iterator<Item = &FrameEntry> {
        self.frames.values().filter(|entry| entry.path.is_none())
    }

    /// Whether every rendered frame is local.
    pub fn all_local(&self) -> bool {
        self.pending_downloads().next().is_none()
    }

    /// The cost and speed report.
    #[expect(
        clippy::cast_precision_loss,
        reason = "frame counts are far below 2^52"
    )]
    pub fn cost_report(&self) -> CostReport {
        let done = self.frames.len();
        let total = self.spec.frames.len();
        let render_seconds: f64 = self.frames.values().map(|entry| entry.seconds).sum();
        let mean = if done > 0 {
            Some(render_seconds / done as f64)
        } else {
            None
        };
        let remaining = total.saturating_sub(done + self.failed.len());
        let eta = mean.map(|mean| mean * remaining as f64);
        let rate = self.cost_per_hour.unwrap_or(0.0);
        let samples: f64 = self
            .frames
            .values()
            .filter_map(|entry| entry.samples.map(f64::from))
            .sum();
        CostReport {
            elapsed_seconds: self.elapsed_seconds,
            render_seconds,
            cost: self.cost,
            cost_per_hour: rate,
            frames_done: done,
            frames_failed: self.failed.len(),
            frames_total: total,
            mean_seconds_per_frame: mean,
            eta_seconds: eta,
            cost_to_finish: eta.map(|eta| eta / 3600.0 * rate),
            samples_per_minute: if samples > 0.0 && render_seconds > 0.0 {
                Some(samples / render_seconds * 60.0)
            } else {
                None
            },
        }
    }

    pub(crate) fn new(
        job_id: &str,
        project: &project_store::ProjectName,
        pod_id: &str,
        remote_dir: &str,
        spec: JobSpec,
    ) -> Self {
        Self {
            job_id: job_id.to_owned(),
            project: project.as_str().to_owned(),
            pod_id: pod_id.to_owned(),
            remote_dir: remote_dir.to_owned(),
            spec,
            created_at: unix_now(),
            state: JobState::New,
            accepted: None,
            cost_per_hour: None,
            gpu: None,
            elapsed_seconds: 0.0,
            cost: 0.0,
            frames: BTreeMap::new(),
            failed: Vec::new(),
            skipped: Vec::new(),
            reason: None,
            events_offset: 0,
            log_offset: 0,
            log_tail: String::new(),
            farm: None,
        }
    }

    /// Whole lines of the log from what was kept and `text`; a line Blender is still writing
    /// waits for the rest of it in the next answer, unless the job ended.
    pub(super) fn log_lines(&mut self, text: &str, ended: bool) -> Vec<String> {
        let mut splitter = LineSplitter::new();
        let mut lines = splitter.push(std::mem::take(&mut self.log_tail).as_bytes());
        lines.extend(splitter.push(text.as_bytes()));
        if let Some(partial) = splitter.finish() {
            if ended {
                lines.push(partial);
            } else {
                self.log_tail = partial;
            }
        }
        lines
    }

    /// The record in a job folder.
    ///
    /// # Errors
    ///
    /// When the folder holds none, or it does not parse.
    pub fn load_from(dir: &Path) -> Result<Self> {
        Self::load(&dir.join(MANIFEST_FILE))?.ok_or_else(|| {
            Error::RenderOptions(format!("{} holds no render record", dir.display()))
        })
    }

    pub(crate) fn load(path: &Path) -> Result<Option<Self>> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|error| {
                Error::RenderOptions(format!(
                    "the render record {} does not parse ({error}); move it away to start the job afresh",
                    path.display()
                ))
            }),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(Error::Io {
                operation: "read",
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// Writes the record atomically (a temporary file renamed over the old one).
    pub(crate) fn store(&self, path: &Path) -> Result<()> {
        let temporary = path.with_extension("json.tmp");
        let text = serde_json::to_vec_pretty(self).unwrap_or_default();
        std::fs::write(&temporary, text)
            .and_then(|()| std::fs::rename(&temporary, path))
            .map_err(|source| Error::Io {
                operation: "write",
                path: path.to_owned(),
                source,
            })
    }
}

/// Elapsed time, cost and speed of a job.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct CostReport {
    /// Seconds since the current run started.
    pub elapsed_seconds: f64,
    /// Seconds Blender spent rendering the done frames (GPU time).
    pub render_seconds: f64,
    /// Cost so far at the pod's price.
    pub cost: f64,
    /// The pod's price, USD per hour.
    pub cost_per_hour: f64,
    /// Frames done.
    pub frames_done: usize,
    /// Frames failed.
    pub frames_failed: usize,
    /// Frames in the job.
    pub frames_total: usize,
    /// Mean render seconds per frame.
    pub mean_seconds_per_frame: Option<f64>,
    /// Estimated seconds to finish.
    pub eta_seconds: Option<f64>,
    /// Estimated cost to finish.
    pub cost_to_finish: Option<f64>,
    /// Samples per minute (Cycles, EEVEE).
    pub samples_per_minute: Option<f64>,
}

/// The jobs of a workspace, newest first.
///
/// # Errors
///
/// Reading the projects folder.
pub fn list_jobs(store: &project_store::Store) -> Result<Vec<(PathBuf, RenderManifest)>> {
    let mut jobs = Vec::new();
    let projects = store.projects_dir();
    let Ok(entries) = std::fs::read_dir(&projects) else {
        return Ok(jobs);
    };
    for project in entries.flatten() {
        let Ok(renders) = std::fs::read_dir(project.path().join("renders")) else {
            continue;
        };
        for job in renders.flatten() {
            let dir = job.path();
            if let Ok(Some(manifest)) = RenderManifest::load(&dir.join(MANIFEST_FILE)) {
                jobs.push((dir, manifest));
            }
        }
    }
    jobs.sort_by(|a, b| {
        b.1.created_at
            .cmp(&a.1.created_at)
            .then(a.1.job_id.cmp(&b.1.job_id))
    });
    Ok(jobs)
}

/// Finds a job by id (or the newest, for `None`).
///
/// # Errors
///
/// [`Error::RenderJob`] when there is none.
pub fn find_job(
    store: &project_store::Store,
    job_id: Option<&str>,
) -> Result<(PathBuf, RenderManifest)> {
    let jobs = list_jobs(store)?;
    let found = match job_id {
        Some(id) => jobs.into_iter().find(|(_, manifest)| manifest.job_id == id),
        None => jobs.into_iter().next(),
    };
    found.ok_or_else(|| Error::RenderJob {
        job_id: job_id.unwrap_or("(newest)").to_owned(),
        pod_id: "-".into(),
        detail: format!(
            "no such render job in {} (rpb render list shows them)",
            store.projects_dir().display()
        ),
    })
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::{RenderOptions, RenderSource};

    fn manifest() -> RenderManifest {
        let options = RenderOptions::new(RenderSource::OpenScene, "1".parse().expect("frames"));
        let spec = JobSpec::new(&options, "/runpod/a.blend".into(), None);
        let project = project_store::ProjectName::new("p").expect("name");
        RenderManifest::new("r1", &project, "pod", "/runpod/rpb/jobs/r1", spec)
    }

    #[test]
    fn a_log_line_cut_between_two_answers_is_read_once_whole() {
        let mut manifest = manifest();
        let first = manifest.log_lines("Saved: '/out/frame_0001.png'\nFra:2 Mem:9M | Sam", false);
        assert_eq!(first, ["Saved: '/out/frame_0001.png'"]);
        let second = manifest.log_lines("ple 3/4\n", false);
        assert_eq!(second, ["Fra:2 Mem:9M | Sample 3/4"]);
        // Once the job ended, a last line without its newline is read as it is.
        assert_eq!(manifest.log_lines("Blender quit", true), ["Blender quit"]);
        assert!(manifest.log_lines("", false).is_empty());
    }
}
