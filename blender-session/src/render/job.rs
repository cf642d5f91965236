//! Render jobs: start one on the pod, follow it, bring its frames home, cancel it.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pod_tunnel::shell;
use serde::Deserialize;
use tokio::time::Instant;

use super::events::{
    FollowOptions, RenderEvent, RenderEvents, RenderJob, RenderOutcome, RenderReport,
};
use super::manifest::{JobState, MANIFEST_FILE, RenderManifest};
use super::pod_events::{PodEvent, apply_pod_event, apply_result, log_event};
use super::spec::{JobSpec, RenderOptions, RenderSource};
use crate::orchestrator::{Orchestrator, Session, create_dir};
use crate::{Error, Result};

/// Attempts to connect again when the SSH connection breaks while following a job.
const MAX_RECONNECTS: u32 = 10;

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

/// Where a job's frames go locally.
pub(crate) fn local_job_dir(
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
    pub(crate) async fn render_blend(
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
        self.put_spec(session, job_id, remote_dir, dir, spec, "")
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

    /// Puts a job's spec on the pod as a verified upload (the job folder, and `subfolder` in
    /// it, made first), keeping the local copy in `dir`.
    pub(crate) async fn put_spec(
        &self,
        session: &Session,
        job_id: &str,
        remote_dir: &str,
        dir: &Path,
        spec: &JobSpec,
        subfolder: &str,
    ) -> Result<()> {
        let folder = if subfolder.is_empty() {
            remote_dir.to_owned()
        } else {
            format!("{remote_dir}/{subfolder}")
        };
        let mkdir = session
            .host()
            .run(
                &format!("mkdir -p {}", shell::quote(&folder)),
                None,
                Duration::from_secs(30),
            )
            .await?;
        if !mkdir.success() {
            return Err(Self::job_error(
                session,
                job_id,
                format!("creating {folder} failed: {}", mkdir.stderr.trim()),
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
    pub(crate) async fn poll_once(
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
        self.close_cancelled(session, dir, &mut manifest, &reason, events)
            .await?;
        self.stop(&session.pod_id, None, &|_| {}).await?;
        Ok(RenderReport {
            manifest,
            dir: dir.to_owned(),
            outcome: RenderOutcome::Cancelled(reason),
            pod_stopped: true,
        })
    }

    /// After a job was cancelled: whatever finished before comes home, and the record says
    /// why the job ended.
    pub(crate) async fn close_cancelled(
        &self,
        session: &Session,
        dir: &Path,
        manifest: &mut RenderManifest,
        reason: &str,
        events: RenderEvents<'_>,
    ) -> Result<()> {
        let job_id = manifest.job_id.clone();
        // The last records are best effort: the frames already known still come home.
        let _ = self.poll_once(session, &job_id, manifest, events).await;
        self.download_frames(session, dir, manifest, events).await?;
        manifest.state = JobState::Cancelled;
        manifest.reason = Some(reason.to_owned());
        manifest.store(&dir.join(MANIFEST_FILE))
    }

    pub(crate) async fn download_frames(
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

pub(crate) struct Polled {
    /// Whether the pod has more to say right away (a capped answer).
    pub(crate) more: bool,
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

pub(crate) fn guard_reason(manifest: &RenderManifest, options: &FollowOptions) -> Option<String> {
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
