//! Render jobs: start one on the pod, follow it, bring its frames home, cancel it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pod_tunnel::shell;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::log::{LineSplitter, LogLine, parse_line};
use super::spec::{JobSpec, RenderOptions, RenderSource};
use crate::orchestrator::{Orchestrator, Session, create_dir};
use crate::{Error, Result};

/// The local record of a job: `projects/<project>/renders/<job-id>/render.json`.
pub const MANIFEST_FILE: &str = "render.json";

/// Attempts to connect again when the SSH connection breaks while following a job.
const MAX_RECONNECTS: u32 = 10;

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
    fn from_pod(text: &str) -> Self {
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
    log_tail: String,
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

    fn new(
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
        }
    }

    /// Whole lines of the log from what was kept and `text`; a line Blender is still writing
    /// waits for the rest of it in the next answer, unless the job ended.
    fn log_lines(&mut self, text: &str, ended: bool) -> Vec<String> {
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

    fn load(path: &Path) -> Result<Option<Self>> {
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
    fn store(&self, path: &Path) -> Result<()> {
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

/// Progress of a job, as it happens.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum RenderEvent {
    /// The driver accepted the job.
    Accepted(Accepted),
    /// A frame started rendering.
    FrameStarted {
        /// Frame.
        frame: i64,
        /// Attempt, from 1.
        attempt: u32,
    },
    /// A status line of the frame being rendered.
    Progress {
        /// Frame, when Blender says.
        frame: Option<i64>,
        /// Samples done and total.
        samples: Option<(u32, u32)>,
        /// Blender's estimate of the frame's remaining seconds.
        remaining_seconds: Option<f64>,
        /// Blender's status text.
        status: String,
    },
    /// A frame was rendered and verified on the pod.
    FrameRendered {
        /// Frame.
        frame: i64,
        /// The image on the pod, relative to the job folder (`out/frame_0001.png`).
        file: String,
        /// Render seconds.
        seconds: f64,
    },
    /// A frame was skipped: an earlier run had rendered it.
    FrameSkipped {
        /// Frame.
        frame: i64,
    },
    /// A frame attempt failed.
    FrameFailed {
        /// Frame.
        frame: i64,
        /// Attempt, from 1.
        attempt: u32,
        /// Blender's words.
        reason: String,
        /// Whether no attempt is left.
        last: bool,
    },
    /// A frame is local, verified.
    FrameLocal {
        /// Frame.
        frame: i64,
        /// The local file.
        path: PathBuf,
        /// Its SHA-256.
        sha256: String,
        /// From Blender saving the frame on the pod to the verified local copy (across two
        /// clocks on a real pod).
        delay: Duration,
    },
    /// A warning Blender logged.
    Warning(String),
    /// An error Blender logged.
    BlenderError(String),
    /// Cost and speed, after each change.
    Cost(CostReport),
    /// The cost guard ended the job.
    CostGuard(String),
    /// The SSH connection broke; following goes on over a new one (the job never stopped).
    Reconnecting {
        /// Attempt, from 1.
        attempt: u32,
        /// What broke.
        error: String,
    },
}

/// Receives render progress.
pub type RenderEvents<'a> = &'a (dyn Fn(&RenderEvent) + Send + Sync);

/// How to follow a job.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct FollowOptions {
    /// Pause between polls of the pod. Default: 400 ms.
    pub poll_interval: Duration,
    /// Stop the pod once the job ended and every rendered frame is local.
    pub stop_after: bool,
    /// Cancel the job and stop the pod once its run costs this much (USD).
    pub max_cost: Option<f64>,
    /// Cancel the job and stop the pod once its run took this long.
    pub max_duration: Option<Duration>,
    /// Return after one pass (download what is there) instead of waiting for the end.
    pub once: bool,
}

impl Default for FollowOptions {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_millis(400),
            stop_after: false,
            max_cost: None,
            max_duration: None,
            once: false,
        }
    }
}

/// How a job ended (or stands, after a single pass).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum RenderOutcome {
    /// Every frame rendered, verified and local.
    Done,
    /// Some frames failed every attempt; the rest are local.
    FramesFailed(Vec<FailedFrame>),
    /// Cancelled (on request, or by the cost guard with its reason).
    Cancelled(String),
    /// The job's processes ended without finishing (the pod stopped): resume it.
    Stopped,
    /// Still running (after a single pass).
    Running,
}

/// A followed job: its record and how it ended.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RenderReport {
    /// The local record.
    pub manifest: RenderManifest,
    /// Where the frames are.
    pub dir: PathBuf,
    /// The outcome.
    pub outcome: RenderOutcome,
    /// Whether the pod was stopped at the end (`stop_after` or the cost guard).
    pub pod_stopped: bool,
}

/// A job started (or found running) on the pod.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RenderJob {
    /// The job id.
    pub id: String,
    /// The local folder of its frames and record.
    pub dir: PathBuf,
    /// The local record.
    pub manifest: RenderManifest,
    /// Whether an earlier run had left frames this one skips.
    pub resumed: bool,
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

fn unix_now_f64() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |elapsed| elapsed.as_secs_f64())
}

/// One answer of `session.sh render-poll`.
#[derive(Debug, Deserialize)]
struct PollHead {
    rpb_render: String,
    #[serde(default)]
    started_at: Option<f64>,
    #[serde(default)]
    now: Option<f64>,
    #[serde(default)]
    events_size: u64,
    #[serde(default)]
    events_bytes: u64,
    #[serde(default)]
    log_size: u64,
    #[serde(default)]
    log_bytes: u64,
    #[serde(default)]
    result: Option<serde_json::Value>,
}

/// A record of the driver's `events.jsonl`.
#[derive(Debug, Deserialize)]
#[serde(tag = "event", rename_all = "lowercase")]
enum PodEvent {
    Accepted {
        blender_version: String,
        engine: String,
        device: String,
        samples: Option<u32>,
        scene: String,
        camera: String,
        size: (u32, u32),
        #[serde(default)]
        notes: Vec<String>,
    },
    Done {
        frame: i64,
        file: String,
        sha256: String,
        bytes: u64,
        seconds: f64,
        samples: Option<u32>,
        attempt: u32,
        #[serde(default)]
        rendered_at: f64,
        at: f64,
    },
    Failed {
        frame: i64,
        attempt: u32,
        reason: String,
        #[serde(rename = "final")]
        last: bool,
    },
    Skipped {
        frame: i64,
    },
    Invalid {
        reason: String,
    },
}

/// Where a job's frames go locally.
fn local_job_dir(
    store: &project_store::Store,
    project: &project_store::ProjectName,
    job_id: &str,
) -> PathBuf {
    store
        .projects_dir()
        .join(project.as_str())
        .join("renders")
        .join(job_id)
}

impl Orchestrator {
    fn job_error(session: &Session, job_id: &str, detail: impl Into<String>) -> Error {
        Error::RenderJob {
            job_id: job_id.to_owned(),
            pod_id: session.pod_id.clone(),
            detail: detail.into(),
        }
    }

    /// The `.blend` a source names, on the pod: saves the open scene as a new version first, or
    /// uploads a local version the pod lacks. Returns its path and SHA-256 when known.
    async fn render_blend(
        &self,
        session: &Session,
        store: &project_store::Store,
        project: &project_store::ProjectName,
        source: &RenderSource,
    ) -> Result<(String, Option<String>)> {
        match source {
            RenderSource::OpenScene => {
                let entry = self.save(session, store, project, "scene").await?;
                // `save` writes `scene.blend` on the pod, the next save overwrites it: the job
                // renders a copy with the version's own name, in the same folder so the file's
                // relative paths (`//textures/...`) still resolve.
                let dir = self.remote_project_dir(project);
                let saved = format!("{dir}/scene.blend");
                let version = format!("{dir}/{}", entry.name);
                let output = session
                    .host()
                    .run(
                        &format!(
                            "cp -f {} {}.tmp && mv -f {}.tmp {}",
                            shell::quote(&saved),
                            shell::quote(&version),
                            shell::quote(&version),
                            shell::quote(&version)
                        ),
                        None,
                        Duration::from_secs(300),
                    )
                    .await?;
                if !output.success() {
                    return Err(Self::job_error(
                        session,
                        "-",
                        format!(
                            "copying {saved} to {version} failed: {}",
                            output.stderr.trim()
                        ),
                    ));
                }
                Ok((version, Some(entry.sha256)))
            }
            RenderSource::Version(version) => {
                let (remote, sha256) = self
                    .upload_version(session, store, project, version)
                    .await?;
                Ok((remote, Some(sha256)))
            }
            RenderSource::PodPath(path) => {
                let path = if path.starts_with('/') {
                    path.clone()
                } else {
                    format!("{}/{path}", self.settings().pod_root.trim_end_matches('/'))
                };
                let output = session
                    .host()
                    .run(
                        &format!("test -f {}", shell::quote(&path)),
                        None,
                        Duration::from_secs(30),
                    )
                    .await?;
                if !output.success() {
                    return Err(Error::RenderOptions(format!(
                        "the .blend file {path} does not exist on pod {}",
                        session.pod_id
                    )));
                }
                Ok((path, None))
            }
        }
    }

    /// Starts a render job (or resumes the same job: same project, file and options), and
    /// waits until the pod-side driver has accepted it. Frames an earlier run rendered and
    /// verified are skipped, never rendered again.
    ///
    /// # Errors
    ///
    /// [`Error::RenderOptions`] for bad options or a missing `.blend` (nothing started),
    /// [`Error::RenderRefused`] when the options do not fit the file (no frame rendered),
    /// [`Error::RenderJob`], SSH, transfer and MCP failures.
    pub async fn render_start(
        &self,
        session: &Session,
        store: &project_store::Store,
        project: &project_store::ProjectName,
        options: &RenderOptions,
    ) -> Result<RenderJob> {
        options.validate()?;
        self.ensure_assets(session).await?;
        let (blend, blend_sha256) = self
            .render_blend(session, store, project, &options.source)
            .await?;
        let spec = JobSpec::new(options, blend, blend_sha256);
        let job_id = spec.job_id(project.as_str());
        let dir = local_job_dir(store, project, &job_id);
        create_dir(&dir)?;
        let manifest_path = dir.join(MANIFEST_FILE);
        let remote_dir = format!("{}/jobs/{job_id}", self.settings().rpb_home());
        let manifest = match RenderManifest::load(&manifest_path)? {
            Some(mut manifest) => {
                manifest.pod_id.clone_from(&session.pod_id);
                manifest
            }
            None => {
                RenderManifest::new(&job_id, project, &session.pod_id, &remote_dir, spec.clone())
            }
        };
        self.run_job(session, dir, manifest).await
    }

    /// Starts a recorded job again where it stopped (after a cancel, a crash or a stopped
    /// pod), with its very spec: frames already verified are skipped.
    ///
    /// # Errors
    ///
    /// As [`Orchestrator::render_start`].
    pub async fn render_resume(&self, session: &Session, dir: &Path) -> Result<RenderJob> {
        let manifest = RenderManifest::load_from(dir)?;
        if manifest.pod_id != session.pod_id {
            return Err(Self::job_error(
                session,
                &manifest.job_id,
                format!(
                    "the job belongs to pod {}, not to this one: choose that pod (--pod-id)",
                    manifest.pod_id
                ),
            ));
        }
        self.ensure_assets(session).await?;
        self.run_job(session, dir.to_owned(), manifest).await
    }

    /// Launches a job's runner on the pod and waits until the driver accepted the job.
    async fn run_job(
        &self,
        session: &Session,
        dir: PathBuf,
        mut manifest: RenderManifest,
    ) -> Result<RenderJob> {
        let manifest_path = dir.join(MANIFEST_FILE);
        let resumed = !manifest.frames.is_empty();
        self.launch_job(
            session,
            &manifest.job_id,
            &manifest.remote_dir,
            &dir,
            &manifest.spec,
        )
        .await?;
        manifest.state = JobState::Running;
        manifest.reason = None;
        manifest.failed.clear();
        // This run's driver accepts (or refuses) the job anew.
        manifest.accepted = None;
        manifest.store(&manifest_path)?;
        // Wait for the driver to accept the file (or refuse it) before saying it runs.
        match self.wait_accepted(session, &mut manifest).await {
            Err(error @ Error::RenderRefused { .. }) if manifest.frames.is_empty() => {
                // Nothing was rendered: leave no local record of a job that never ran.
                let _ = std::fs::remove_dir_all(&dir);
                return Err(error);
            }
            Err(error) => {
                manifest.store(&manifest_path)?;
                return Err(error);
            }
            Ok(()) => manifest.store(&manifest_path)?,
        }
        Ok(RenderJob {
            id: manifest.job_id.clone(),
            dir,
            manifest,
            resumed,
        })
    }

    /// Puts the spec on the pod (a verified upload) and starts the job's runner there; a
    /// runner that already runs is fine (the job is followed, not started twice).
    async fn launch_job(
        &self,
        session: &Session,
        job_id: &str,
        remote_dir: &str,
        dir: &Path,
        spec: &JobSpec,
    ) -> Result<()> {
        // The spec travels as a verified upload; the folder first.
        let mkdir = session
            .host()
            .run(
                &format!("mkdir -p {}", shell::quote(remote_dir)),
                None,
                Duration::from_secs(30),
            )
            .await?;
        if !mkdir.success() {
            return Err(Self::job_error(
                session,
                job_id,
                format!("creating {remote_dir} failed: {}", mkdir.stderr.trim()),
            ));
        }
        let spec_file = dir.join("spec.json");
        std::fs::write(
            &spec_file,
            serde_json::to_vec_pretty(&spec).unwrap_or_default(),
        )
        .map_err(|source| Error::Io {
            operation: "write",
            path: spec_file.clone(),
            source,
        })?;
        session
            .host()
            .upload(&spec_file, &format!("{remote_dir}/spec.json"), None)
            .await?;
        let start = session
            .host()
            .run(
                &format!("{} render-start {job_id}", self.settings().session_script()),
                None,
                Duration::from_secs(60),
            )
            .await?;
        if !start.success() {
            let words = start
                .stderr
                .trim()
                .trim_start_matches("rpb-session: error: ");
            if !words.contains("already runs") {
                if words.contains("does not exist") {
                    return Err(Error::RenderOptions(format!(
                        "{words} (pod {})",
                        session.pod_id
                    )));
                }
                return Err(Self::job_error(
                    session,
                    job_id,
                    format!("starting it failed: {words}"),
                ));
            }
        }
        Ok(())
    }

    async fn wait_accepted(&self, session: &Session, manifest: &mut RenderManifest) -> Result<()> {
        let job_id = manifest.job_id.clone();
        let started = Instant::now();
        loop {
            let poll = self.poll_once(session, &job_id, manifest, &|_| {}).await?;
            if manifest.state == JobState::Invalid {
                return Err(Error::RenderRefused {
                    job_id,
                    pod_id: session.pod_id.clone(),
                    reason: manifest.reason.clone().unwrap_or_default(),
                });
            }
            if manifest.accepted.is_some() || manifest.state.ended() {
                return Ok(());
            }
            if started.elapsed() > Duration::from_secs(600) {
                return Err(Self::job_error(
                    session,
                    &job_id,
                    format!(
                        "Blender did not load the file within 10 minutes; see {}/blender.log",
                        manifest.remote_dir
                    ),
                ));
            }
            if !poll.more {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }

    /// Reads the job's news from the pod once (state, driver records, log lines) into
    /// `manifest`, reporting events. Frames are not downloaded here.
    async fn poll_once(
        &self,
        session: &Session,
        job_id: &str,
        manifest: &mut RenderManifest,
        events: RenderEvents<'_>,
    ) -> Result<Polled> {
        let command = format!(
            "{} render-poll {job_id} {} {}",
            self.settings().session_script(),
            manifest.events_offset,
            manifest.log_offset
        );
        let output = session
            .host()
            .run(&command, None, Duration::from_secs(60))
            .await?;
        if !output.success() {
            return Err(Self::job_error(
                session,
                job_id,
                format!(
                    "reading its state failed ({}): {}",
                    output.code.map_or_else(
                        || "killed by a signal".to_owned(),
                        |code| format!("exit code {code}")
                    ),
                    output.stderr.trim()
                ),
            ));
        }
        let (head, rest) = output
            .stdout
            .split_once('\n')
            .unwrap_or((&output.stdout, ""));
        let head: PollHead = serde_json::from_str(head).map_err(|error| {
            Self::job_error(
                session,
                job_id,
                format!("the pod's answer does not parse ({error}): {head:.200}"),
            )
        })?;
        let state = JobState::from_pod(&head.rpb_render);
        if state == JobState::Missing {
            manifest.state = state;
            return Ok(Polled { more: false });
        }
        if head.events_size < manifest.events_offset || head.log_size < manifest.log_offset {
            // The pod's files are shorter than what was read: the job was made anew there.
            // Reading again from the start is safe (records apply idempotently).
            manifest.events_offset = 0;
            manifest.log_offset = 0;
            manifest.log_tail.clear();
            return Ok(Polled { more: true });
        }
        let events_len = usize::try_from(head.events_bytes).unwrap_or(usize::MAX);
        // The records are ASCII JSON, so their byte count is a character boundary.
        let (event_text, log_text) = rest
            .split_at_checked(events_len.min(rest.len()))
            .ok_or_else(|| {
                Self::job_error(
                    session,
                    job_id,
                    "the pod's records are not ASCII JSON; is its rpb_render.py another rpb's?",
                )
            })?;
        for line in event_text.lines().filter(|line| !line.trim().is_empty()) {
            let Ok(event) = serde_json::from_str::<PodEvent>(line) else {
                continue;
            };
            apply_pod_event(manifest, event, events);
        }
        for line in &manifest.log_lines(log_text, state.ended()) {
            log_event(line, events);
        }
        manifest.events_offset += head.events_bytes;
        manifest.log_offset += head.log_bytes;
        if let (Some(started), Some(now)) = (head.started_at, head.now) {
            let end = head
                .result
                .as_ref()
                .and_then(|result| result.get("at"))
                .and_then(serde_json::Value::as_f64)
                .unwrap_or(now);
            manifest.elapsed_seconds = (end - started).max(0.0);
            manifest.cost =
                manifest.elapsed_seconds / 3600.0 * manifest.cost_per_hour.unwrap_or(0.0);
        }
        if let Some(result) = &head.result {
            apply_result(manifest, result);
        }
        // The pod decides the state before it measures the files, and the driver writes its
        // last record before the result: an ended job whose answer was not capped has had
        // every record read. A capped answer waits for the rest.
        let capped =
            manifest.events_offset < head.events_size || manifest.log_offset < head.log_size;
        if manifest.state != JobState::Invalid {
            manifest.state = if state.ended() && capped {
                JobState::Running
            } else {
                state
            };
        }
        Ok(Polled { more: capped })
    }

    /// Follows a job until it ends (or once, with [`FollowOptions::once`]): reports progress,
    /// downloads each verified frame as soon as it is rendered (SHA-256 checked, written
    /// atomically), keeps the local record up to date, and applies the cost guard.
    ///
    /// # Errors
    ///
    /// [`Error::RenderJob`] and SSH, transfer and provider failures. The job goes on on the pod
    /// whatever happens here; follow it again to pick up where this stopped.
    pub async fn render_follow(
        &self,
        session: &Session,
        dir: &Path,
        options: &FollowOptions,
        events: RenderEvents<'_>,
    ) -> Result<RenderReport> {
        let mut manifest = RenderManifest::load_from(dir)?;
        let job_id = manifest.job_id.clone();
        if manifest.pod_id != session.pod_id {
            return Err(Self::job_error(
                session,
                &job_id,
                format!(
                    "the job runs on pod {}, not on this one: choose that pod (--pod-id)",
                    manifest.pod_id
                ),
            ));
        }
        if let Ok(pod) = self.provider.pod(&session.pod_id).await {
            if pod.cost_per_hour > 0.0 {
                manifest.cost_per_hour = Some(pod.cost_per_hour);
            }
            if pod.gpu.is_some() {
                manifest.gpu = pod.gpu;
            }
        }
        let mut last_report = None;
        // A session of our own once the caller's connection broke (SSH dropped, sshd restarted).
        let mut fresh: Option<Session> = None;
        let mut reconnects = 0;
        loop {
            let current = fresh.as_ref().unwrap_or(session);
            let polled = match self.follow_step(current, dir, &mut manifest, events).await {
                Ok(polled) => {
                    reconnects = 0;
                    polled
                }
                Err(error @ Error::Remote { .. }) if reconnects < MAX_RECONNECTS => {
                    reconnects += 1;
                    events(&RenderEvent::Reconnecting {
                        attempt: reconnects,
                        error: error.to_string(),
                    });
                    tokio::time::sleep(Duration::from_secs(u64::from(reconnects).min(10))).await;
                    match self.attach(&session.pod_id, session.ports, &|_| {}).await {
                        Ok(session) => fresh = Some(session),
                        // The pod stopped: no connection will come back.
                        Err(error @ Error::PodFailed { .. }) => return Err(error),
                        Err(_) => {}
                    }
                    continue;
                }
                Err(error) => return Err(error),
            };
            let session = current;
            let report = manifest.cost_report();
            if last_report.as_ref() != Some(&report) {
                events(&RenderEvent::Cost(report.clone()));
                last_report = Some(report);
            }
            if !manifest.state.ended()
                && let Some(reason) = guard_reason(&manifest, options)
            {
                return self
                    .guard_stop(session, dir, manifest, reason, events)
                    .await;
            }
            if manifest.state.ended() && manifest.all_local() {
                break;
            }
            if options.once && !polled.more {
                return Ok(RenderReport {
                    manifest,
                    dir: dir.to_owned(),
                    outcome: RenderOutcome::Running,
                    pod_stopped: false,
                });
            }
            if !polled.more {
                tokio::time::sleep(options.poll_interval).await;
            }
        }
        let outcome = outcome_of(&manifest).ok_or_else(|| Error::RenderRefused {
            job_id,
            pod_id: session.pod_id.clone(),
            reason: manifest.reason.clone().unwrap_or_default(),
        })?;
        let pod_stopped = options.stop_after
            && matches!(
                outcome,
                RenderOutcome::Done | RenderOutcome::FramesFailed(_)
            );
        if pod_stopped {
            self.stop(&session.pod_id, None, &|_| {}).await?;
        }
        Ok(RenderReport {
            manifest,
            dir: dir.to_owned(),
            outcome,
            pod_stopped,
        })
    }

    /// One round of following: the pod's news, then the frames that landed, then the record.
    async fn follow_step(
        &self,
        session: &Session,
        dir: &Path,
        manifest: &mut RenderManifest,
        events: RenderEvents<'_>,
    ) -> Result<Polled> {
        let job_id = manifest.job_id.clone();
        let before = (manifest.events_offset, manifest.state);
        let polled = self.poll_once(session, &job_id, manifest, events).await?;
        if manifest.state == JobState::Missing {
            manifest.store(&dir.join(MANIFEST_FILE))?;
            return Err(Self::job_error(
                session,
                &job_id,
                format!(
                    "the pod has no {} (another pod, or its volume was replaced); start the job again",
                    manifest.remote_dir
                ),
            ));
        }
        let downloaded = self.download_frames(session, dir, manifest, events).await?;
        // Written when a record, the state or a frame changed, not on every poll: a long job's
        // record is large, and the log offset alone is cheap to read again.
        if downloaded > 0 || before != (manifest.events_offset, manifest.state) {
            manifest.store(&dir.join(MANIFEST_FILE))?;
        }
        Ok(polled)
    }

    /// The cost guard's end: cancel the job, bring home what finished, stop the pod.
    async fn guard_stop(
        &self,
        session: &Session,
        dir: &Path,
        mut manifest: RenderManifest,
        reason: String,
        events: RenderEvents<'_>,
    ) -> Result<RenderReport> {
        events(&RenderEvent::CostGuard(reason.clone()));
        let job_id = manifest.job_id.clone();
        self.render_cancel_id(session, &job_id).await?;
        // Whatever finished before the cancel comes home first.
        let _ = self
            .poll_once(session, &job_id, &mut manifest, events)
            .await;
        self.download_frames(session, dir, &mut manifest, events)
            .await?;
        manifest.state = JobState::Cancelled;
        manifest.reason = Some(reason.clone());
        manifest.store(&dir.join(MANIFEST_FILE))?;
        self.stop(&session.pod_id, None, &|_| {}).await?;
        Ok(RenderReport {
            manifest,
            dir: dir.to_owned(),
            outcome: RenderOutcome::Cancelled(reason),
            pod_stopped: true,
        })
    }

    async fn download_frames(
        &self,
        session: &Session,
        dir: &Path,
        manifest: &mut RenderManifest,
        events: RenderEvents<'_>,
    ) -> Result<usize> {
        let pending: Vec<(i64, String, String)> = manifest
            .pending_downloads()
            .map(|entry| (entry.frame, entry.file.clone(), entry.sha256.clone()))
            .collect();
        let count = pending.len();
        for (frame, file, sha256) in pending {
            let name = file.rsplit('/').next().unwrap_or(&file).to_owned();
            let local = dir.join(&name);
            let remote = format!("{}/{file}", manifest.remote_dir);
            let done = session.host().download(&remote, &local, None).await?;
            if done.sha256 != sha256 {
                let _ = std::fs::remove_file(&local);
                return Err(Self::job_error(
                    session,
                    &manifest.job_id,
                    format!(
                        "frame {frame} changed on the pod after it was verified ({remote}: sha256 {} now, {sha256} when rendered); render it again",
                        done.sha256
                    ),
                ));
            }
            let mut delay = Duration::ZERO;
            if let Some(entry) = manifest.frames.get_mut(&frame) {
                entry.path = Some(local.clone());
                entry.state = "local".into();
                let saved = if entry.rendered_at > 0.0 {
                    entry.rendered_at
                } else {
                    entry.verified_at
                };
                if saved > 0.0 {
                    delay = Duration::from_secs_f64((unix_now_f64() - saved).max(0.0));
                }
            }
            events(&RenderEvent::FrameLocal {
                frame,
                path: local,
                sha256,
                delay,
            });
        }
        Ok(count)
    }

    /// Reads a job's state from the pod without downloading anything.
    ///
    /// # Errors
    ///
    /// As [`Orchestrator::render_follow`].
    pub async fn render_status(&self, session: &Session, dir: &Path) -> Result<RenderManifest> {
        let manifest_path = dir.join(MANIFEST_FILE);
        let mut manifest = RenderManifest::load_from(dir)?;
        let job_id = manifest.job_id.clone();
        // A long log comes in capped pieces: read until the answer is whole (bounded).
        for _ in 0..64 {
            let polled = self
                .poll_once(session, &job_id, &mut manifest, &|_| {})
                .await?;
            if !polled.more {
                break;
            }
        }
        if manifest.state != JobState::Missing {
            manifest.store(&manifest_path)?;
        }
        Ok(manifest)
    }

    /// Cancels a job on the pod: its runner and Blender end (by the recorded PID), and frames
    /// already verified stay. The interactive Blender is not touched.
    ///
    /// # Errors
    ///
    /// [`Error::RenderJob`] and SSH failures.
    pub async fn render_cancel(&self, session: &Session, dir: &Path) -> Result<RenderManifest> {
        let manifest_path = dir.join(MANIFEST_FILE);
        let mut manifest = RenderManifest::load_from(dir)?;
        self.render_cancel_id(session, &manifest.job_id).await?;
        manifest.state = JobState::Cancelled;
        manifest.store(&manifest_path)?;
        Ok(manifest)
    }

    async fn render_cancel_id(&self, session: &Session, job_id: &str) -> Result<()> {
        let output = session
            .host()
            .run(
                &format!(
                    "{} render-cancel {job_id}",
                    self.settings().session_script()
                ),
                None,
                Duration::from_secs(60),
            )
            .await?;
        if output.success() {
            Ok(())
        } else {
            Err(Self::job_error(
                session,
                job_id,
                format!("cancelling failed: {}", output.stderr.trim()),
            ))
        }
    }
}

struct Polled {
    /// Whether the pod has more to say right away (a capped answer).
    more: bool,
}

/// The pod's `result.json`: failed frames with their reasons, and why the job ended.
fn apply_result(manifest: &mut RenderManifest, result: &serde_json::Value) {
    if let Some(failed) = result.get("failed").and_then(serde_json::Value::as_array) {
        for item in failed {
            let frame = item.get("frame").and_then(serde_json::Value::as_i64);
            let reason = item.get("reason").and_then(serde_json::Value::as_str);
            if let (Some(frame), Some(reason)) = (frame, reason)
                && !manifest.failed.iter().any(|failed| failed.frame == frame)
            {
                manifest.failed.push(FailedFrame {
                    frame,
                    attempts: manifest.spec.settings.retries + 1,
                    reason: reason.to_owned(),
                });
            }
        }
    }
    if let Some(reason) = result.get("reason").and_then(serde_json::Value::as_str) {
        manifest.reason = Some(reason.to_owned());
    }
}

/// How an ended job ended; `None` for a refused one.
fn outcome_of(manifest: &RenderManifest) -> Option<RenderOutcome> {
    Some(match manifest.state {
        JobState::Done => RenderOutcome::Done,
        JobState::Failed => RenderOutcome::FramesFailed(manifest.failed.clone()),
        JobState::Cancelled => RenderOutcome::Cancelled(
            manifest
                .reason
                .clone()
                .unwrap_or_else(|| "cancelled by request".into()),
        ),
        JobState::Invalid => return None,
        _ => RenderOutcome::Stopped,
    })
}

fn guard_reason(manifest: &RenderManifest, options: &FollowOptions) -> Option<String> {
    if let Some(limit) = options.max_cost
        && manifest.cost >= limit
    {
        return Some(format!(
            "the job's run cost ${:.2}, reaching --max-cost ${limit:.2}",
            manifest.cost
        ));
    }
    if let Some(limit) = options.max_duration
        && manifest.elapsed_seconds >= limit.as_secs_f64()
    {
        return Some(format!(
            "the job ran {:.0} s, reaching its limit of {:.0} s",
            manifest.elapsed_seconds,
            limit.as_secs_f64()
        ));
    }
    None
}

fn apply_pod_event(manifest: &mut RenderManifest, event: PodEvent, events: RenderEvents<'_>) {
    match event {
        PodEvent::Accepted {
            blender_version,
            engine,
            device,
            samples,
            scene,
            camera,
            size,
            notes,
        } => {
            let accepted = Accepted {
                blender_version,
                engine,
                device,
                samples,
                scene,
                camera,
                size,
                notes,
            };
            events(&RenderEvent::Accepted(accepted.clone()));
            manifest.accepted = Some(accepted);
        }
        PodEvent::Done {
            frame,
            file,
            sha256,
            bytes,
            seconds,
            samples,
            attempt,
            rendered_at,
            at,
        } => {
            let unchanged = manifest
                .frames
                .get(&frame)
                .is_some_and(|entry| entry.sha256 == sha256 && entry.path.is_some());
            manifest.failed.retain(|failed| failed.frame != frame);
            if !unchanged {
                events(&RenderEvent::FrameRendered {
                    frame,
                    file: file.clone(),
                    seconds,
                });
                manifest.frames.insert(
                    frame,
                    FrameEntry {
                        frame,
                        file,
                        path: None,
                        sha256,
                        bytes,
                        seconds,
                        samples,
                        attempt,
                        state: "rendered".into(),
                        rendered_at,
                        verified_at: at,
                    },
                );
            }
        }
        PodEvent::Failed {
            frame,
            attempt,
            reason,
            last,
        } => {
            events(&RenderEvent::FrameFailed {
                frame,
                attempt,
                reason: reason.clone(),
                last,
            });
            if last && !manifest.failed.iter().any(|failed| failed.frame == frame) {
                manifest.failed.push(FailedFrame {
                    frame,
                    attempts: attempt,
                    reason,
                });
            }
        }
        PodEvent::Skipped { frame } => {
            events(&RenderEvent::FrameSkipped { frame });
            if !manifest.skipped.contains(&frame) {
                manifest.skipped.push(frame);
            }
        }
        PodEvent::Invalid { reason } => {
            manifest.state = JobState::Invalid;
            manifest.reason = Some(reason);
        }
    }
}

fn log_event(line: &str, events: RenderEvents<'_>) {
    if let Some(rest) = line.strip_prefix("rpb-render: frame ") {
        // `rpb-render: frame N start attempt K`
        let mut words = rest.split_whitespace();
        if let (Some(frame), Some("start"), Some("attempt"), Some(attempt)) =
            (words.next(), words.next(), words.next(), words.next())
            && let (Ok(frame), Ok(attempt)) = (frame.parse(), attempt.parse())
        {
            events(&RenderEvent::FrameStarted { frame, attempt });
        }
        return;
    }
    match parse_line(line) {
        Some(LogLine::Progress(progress)) => events(&RenderEvent::Progress {
            frame: progress.frame,
            samples: progress.samples,
            remaining_seconds: progress.remaining_seconds,
            status: progress.status,
        }),
        Some(LogLine::Warning { message }) => events(&RenderEvent::Warning(message)),
        Some(LogLine::Error { message }) => events(&RenderEvent::BlenderError(message)),
        _ => {}
    }
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
