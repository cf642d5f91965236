//! Render jobs on the farm: one Slurm array task per chunk of frames, followed with merged
//! progress, lost nodes detected and their tasks requeued.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use pod_tunnel::shell;

use super::{FarmRecord, FarmSpec, SLURM_TIMEOUT, Submission, farm_error, is_open};
use crate::farm::{self, FarmNode, FarmTask};
use crate::orchestrator::{Orchestrator, Session};
use crate::render::{
    FarmJob, FollowOptions, JobSpec, JobState, MANIFEST_FILE, RenderEvent, RenderEvents, RenderJob,
    RenderManifest, RenderOptions, RenderOutcome, RenderReport, RenderSource,
};
use crate::seams::PodStatus;
use crate::{Error, Result};

impl Orchestrator {
    /// Starts a render job on the farm: puts the `.blend` (a saved version of the project, or
    /// a file on the volume) and the job's spec on the shared volume, and submits one Slurm
    /// array task per chunk of `chunk` frames (default: about four tasks per node), with
    /// `--requeue`, each running the pod-side render driver on its frames. A job already
    /// submitted whose tasks still run is followed, not submitted again.
    ///
    /// # Errors
    ///
    /// [`Error::RenderOptions`] for bad options (the open scene: save it as a version first),
    /// [`Error::Farm`] without a farm, SSH, transfer and Slurm failures.
    pub async fn farm_render_start(
        &self,
        store: &project_store::Store,
        project: &project_store::ProjectName,
        options: &RenderOptions,
        chunk: Option<u32>,
    ) -> Result<RenderJob> {
        options.validate()?;
        if matches!(options.source, RenderSource::OpenScene) {
            return Err(Error::RenderOptions(
                "the farm renders a saved version or a .blend on the volume; save the open scene first (`rpb save`) or name one with --version".into(),
            ));
        }
        let record = self.require_farm()?;
        let controller_id = record.controller().unwrap_or_default().to_owned();
        let controller = self.farm_connect(&controller_id).await?;
        self.ensure_assets(&controller).await?;
        let submission = Submission {
            chunk,
            nodes: u32::try_from(record.nodes.len()).unwrap_or(1),
            partition: None,
            gres: record.task_gres(),
            cluster: None,
        };
        self.submit_job(&controller, store, project, options, submission)
            .await
    }

    /// Puts the job on the shared folder through `controller` and submits its array (or
    /// finds it still with Slurm), for a farm of `nodes` nodes or a cluster.
    pub(super) async fn submit_job(
        &self,
        controller: &Session,
        store: &project_store::Store,
        project: &project_store::ProjectName,
        options: &RenderOptions,
        submission: Submission,
    ) -> Result<RenderJob> {
        let Submission {
            chunk,
            nodes,
            partition,
            gres,
            cluster,
        } = submission;
        let controller_id = controller.pod_id.clone();
        let (blend, blend_sha256) = self
            .render_blend(controller, store, project, &options.source)
            .await?;
        let spec = JobSpec::new(options, blend, blend_sha256);
        let job_id = spec.job_id(project.as_str());
        let dir = crate::render::local_job_dir(store, project, &job_id);
        crate::orchestrator::create_dir(&dir)?;
        let manifest_path = dir.join(MANIFEST_FILE);
        let remote_dir = format!("{}/jobs/{job_id}", self.settings.rpb_home());
        let mut manifest = match RenderManifest::load(&manifest_path)? {
            Some(manifest) => manifest,
            None => {
                RenderManifest::new(&job_id, project, &controller_id, &remote_dir, spec.clone())
            }
        };
        manifest.pod_id.clone_from(&controller_id);
        let resumed = !manifest.frames.is_empty();
        // A job whose tasks are still with Slurm is followed as it is.
        if let Some(job) = &manifest.farm {
            let (_, tasks) = self.slurm_view(controller).await?;
            if tasks
                .iter()
                .any(|task| task.array_job_id.to_string() == job.slurm_job)
            {
                return Ok(RenderJob {
                    id: job_id,
                    dir,
                    manifest,
                    resumed: true,
                });
            }
        }
        let size =
            chunk.unwrap_or_else(|| farm::default_chunk_size(spec.frames.len() as u64, nodes));
        let tasks = farm::chunk_frames(spec.frames.frames(), size);
        let chunks_text = tasks
            .iter()
            .fold(String::new(), |mut text, (task, frames)| {
                use std::fmt::Write as _;
                let list: Vec<String> = frames.iter().map(ToString::to_string).collect();
                let _ = writeln!(text, "{task} {}", list.join(","));
                text
            });
        self.put_farm_job(controller, &job_id, &dir, &remote_dir, &spec, chunks_text)
            .await?;
        let mut requests = Vec::new();
        if let Some(partition) = partition {
            requests.push(format!("--partition={partition}"));
        }
        if let Some(gres) = gres {
            requests.push(format!("--gres={gres}"));
        }
        let slurm_job = self
            .submit_array(controller, &job_id, &remote_dir, tasks.len(), &requests)
            .await?;
        manifest.farm = Some(FarmJob {
            slurm_job,
            chunk: size,
            tasks: tasks.into_iter().collect(),
            lost_nodes: BTreeMap::new(),
            requeued: Vec::new(),
            cluster,
        });
        manifest.state = JobState::Running;
        manifest.reason = None;
        manifest.failed.clear();
        manifest.store(&manifest_path)?;
        Ok(RenderJob {
            id: job_id,
            dir,
            manifest,
            resumed,
        })
    }

    /// Watches the farm's nodes once: a node whose pod the API reports not running (or gone),
    /// or that Slurm has down, is lost; rpb marks it down in Slurm (which requeues its tasks)
    /// and records why. The controller is not watched here (without it nothing is followed).
    /// Returns the farm's price per hour now and what it has cost so far.
    async fn watch_nodes(
        &self,
        controller: &Session,
        record: &FarmRecord,
        nodes: &[FarmNode],
        job: &mut FarmJob,
        events: RenderEvents<'_>,
    ) -> Result<(f64, f64)> {
        let controller_id = controller.pod_id.as_str();
        let now = super::unix_now();
        let mut rate = 0.0;
        let mut cost_so_far = 0.0;
        for node in &record.nodes {
            let pod = match self.provider.pod(&node.pod_id).await {
                Ok(pod) => Some(pod),
                Err(error) if crate::orchestrator::portable::is_gone(&error) => None,
                Err(error) => return Err(error),
            };
            rate += pod.as_ref().map_or(0.0, |pod| pod.cost_per_hour);
            cost_so_far += super::billed_so_far(node.joined_at, pod.as_ref(), now);
            let lost = match &pod {
                None => Some("its pod no longer exists".to_owned()),
                Some(pod) if pod.status != PodStatus::Running => {
                    Some(format!("its pod is {}", pod.status))
                }
                Some(_) => nodes
                    .iter()
                    .find(|seen| seen.name == node.pod_id && !seen.is_up())
                    .map(|seen| format!("Slurm has it {} ({})", seen.state, seen.reason)),
            };
            if let Some(reason) = lost
                && !job.lost_nodes.contains_key(&node.pod_id)
                && node.pod_id != controller_id
            {
                events(&RenderEvent::NodeLost {
                    node: node.pod_id.clone(),
                    reason: reason.clone(),
                });
                let still_up = nodes
                    .iter()
                    .any(|seen| seen.name == node.pod_id && seen.is_up());
                if still_up {
                    self.slurm(
                        controller,
                        &farm::mark_node_lost(&node.pod_id, &format!("rpb: {reason}")),
                    )
                    .await?;
                }
                job.lost_nodes.insert(node.pod_id.clone(), reason);
            }
        }
        Ok((rate, cost_so_far))
    }

    /// One round's news: the records the tasks wrote, the frames that landed (downloaded and
    /// verified), and the farm's progress event. Whether more records wait to be read.
    async fn collect_round(
        &self,
        controller: &Session,
        dir: &Path,
        manifest: &mut RenderManifest,
        (open, running): (usize, usize),
        events: RenderEvents<'_>,
    ) -> Result<bool> {
        let job_id = manifest.job_id.clone();
        let polled = self
            .poll_once(controller, &job_id, manifest, events)
            .await?;
        self.download_frames(controller, dir, manifest, events)
            .await?;
        events(&RenderEvent::Farm {
            running,
            pending: open - running,
            frames_by_node: frames_by_node(manifest),
        });
        Ok(polled.more)
    }

    /// The job's tasks in Slurm's list: notes the requeued ones, releases those Slurm holds
    /// after a requeue; how many are open and how many run.
    async fn track_tasks(
        &self,
        controller: &Session,
        tasks: &[FarmTask],
        job: &mut FarmJob,
    ) -> Result<(usize, usize)> {
        let ours: Vec<FarmTask> = tasks
            .iter()
            .filter(|task| task.array_job_id.to_string() == job.slurm_job)
            .cloned()
            .collect();
        for task in &ours {
            if task.restarts > 0
                && let Some(number) = task.task
                && !job.requeued.contains(&number)
            {
                job.requeued.push(number);
            }
        }
        for command in farm::release_requeued(&ours) {
            self.slurm(controller, &command).await?;
        }
        let open: Vec<&FarmTask> = ours.iter().filter(|task| is_open(task)).collect();
        let running = open.iter().filter(|task| task.state == "RUNNING").count();
        Ok((open.len(), running))
    }

    /// The cost guard's end on the farm: cancel the job, bring home what finished, stop every
    /// pod.
    async fn farm_guard_stop(
        &self,
        controller: &Session,
        record: Option<&FarmRecord>,
        dir: &Path,
        mut manifest: RenderManifest,
        reason: String,
        events: RenderEvents<'_>,
    ) -> Result<RenderReport> {
        events(&RenderEvent::CostGuard(reason.clone()));
        let slurm_job = manifest
            .farm
            .as_ref()
            .map(|job| job.slurm_job.clone())
            .unwrap_or_default();
        self.slurm(controller, &["scancel".into(), slurm_job])
            .await?;
        self.close_cancelled(controller, dir, &mut manifest, &reason, events)
            .await?;
        if let Some(record) = record {
            self.stop_farm_pods(record, &reason).await;
        }
        Ok(RenderReport {
            manifest,
            dir: dir.to_owned(),
            outcome: RenderOutcome::Cancelled(reason),
            pod_stopped: record.is_some(),
        })
    }

    /// With `farm up --replace-dead`: terminates the job's lost nodes that are still in the
    /// farm and brings the farm back to its size; the new record, or `None` when no lost node
    /// is left in it.
    async fn replace_lost(
        &self,
        record: &FarmRecord,
        job: &FarmJob,
        public_key: &str,
        events: RenderEvents<'_>,
    ) -> Result<Option<FarmRecord>> {
        let lost: Vec<&String> = job
            .lost_nodes
            .keys()
            .filter(|node| record.nodes.iter().any(|n| &n.pod_id == *node))
            .collect();
        if lost.is_empty() {
            return Ok(None);
        }
        for node in &lost {
            if let Err(error) = self.provider.terminate(node).await
                && !crate::orchestrator::portable::is_gone(&error)
            {
                return Err(error);
            }
        }
        let mut spec = FarmSpec::new(
            u32::try_from(record.nodes.len()).unwrap_or(1),
            record.pod_template(&self.settings.pod_root),
            record.volume_id.clone(),
        );
        spec.replace_dead = true;
        let up = self.farm_up(&spec, public_key, &|_| {}).await?;
        events(&RenderEvent::NodesReplaced {
            lost: lost.iter().map(|node| (*node).clone()).collect(),
            joined: up.created,
        });
        Ok(Some(up.status.record))
    }

    /// Puts a farm job's spec and chunks on the volume, through the controller.
    async fn put_farm_job(
        &self,
        controller: &Session,
        job_id: &str,
        dir: &Path,
        remote_dir: &str,
        spec: &JobSpec,
        chunks_text: String,
    ) -> Result<()> {
        self.put_spec(controller, job_id, remote_dir, dir, spec, "tasks")
            .await?;
        let host = controller.host.as_ref();
        self.run_checked(
            &controller.pod_id,
            host,
            "writing the job's chunks on the volume",
            &format!(
                "cat > {dir}/chunks.txt.tmp && mv -f {dir}/chunks.txt.tmp {dir}/chunks.txt && rm -f {dir}/result.json && date +%s > {dir}/started_at",
                dir = shell::quote(remote_dir)
            ),
            Some(chunks_text.into_bytes()),
            SLURM_TIMEOUT,
        )
        .await?;
        Ok(())
    }

    /// Submits the job's array (`tasks` tasks, numbered from 1) to Slurm; its job id.
    async fn submit_array(
        &self,
        controller: &Session,
        job_id: &str,
        remote_dir: &str,
        tasks: usize,
        requests: &[String],
    ) -> Result<String> {
        let array = if tasks == 1 {
            "1".to_owned()
        } else {
            format!("1-{tasks}")
        };
        let script = format!("{}/bin/session.sh", self.settings.rpb_home());
        let mut argv: Vec<String> = vec![
            "sbatch".into(),
            "--parsable".into(),
            "--requeue".into(),
            format!("--job-name=rpb-{job_id}"),
            format!("--array={array}"),
            format!("--output={remote_dir}/tasks/%a.out"),
            format!("--chdir={remote_dir}"),
        ];
        argv.extend(requests.iter().cloned());
        argv.extend([script, "farm-task".into(), job_id.to_owned()]);
        let submitted = self.slurm(controller, &argv).await?;
        let slurm_job = submitted
            .trim()
            .split(';')
            .next()
            .unwrap_or_default()
            .to_owned();
        if slurm_job.is_empty() || !slurm_job.bytes().all(|b| b.is_ascii_digit()) {
            return Err(farm_error(
                format!("submitting render job {job_id} to the farm"),
                format!("sbatch answered {submitted:?}, not a job id"),
            ));
        }
        Ok(slurm_job)
    }

    /// Follows a farm job until it ends (or once, with [`FollowOptions::once`]): merges the
    /// tasks' records (frames done, which node rendered each), downloads each verified frame
    /// as it lands, watches the nodes (a pod the API reports stopped or gone, or a node Slurm
    /// lost, is marked down so its tasks are requeued, and requeued tasks are released at once),
    /// brings a replacement node when the farm asks for it, and applies the cost guard to the
    /// whole farm (cancel the job, stop every pod).
    ///
    /// # Errors
    ///
    /// [`Error::RenderJob`], SSH, transfer, Slurm and provider failures. The job goes on on the
    /// farm whatever happens here; follow it again to pick up where this stopped.
    pub async fn farm_render_follow(
        &self,
        dir: &Path,
        options: &FollowOptions,
        public_key: Option<&str>,
        events: RenderEvents<'_>,
    ) -> Result<RenderReport> {
        let manifest = RenderManifest::load_from(dir)?;
        let Some(job) = manifest.farm.clone() else {
            return Err(Error::RenderOptions(format!(
                "render job {} did not run on the farm",
                manifest.job_id
            )));
        };
        if let Some(cluster) = &job.cluster {
            let login = super::cluster::parse_login(&cluster.login)?;
            let this = self.for_cluster(&cluster.shared_dir, cluster.slurm_conf.as_deref())?;
            let controller = self.cluster_connect(&login, &|_| {}).await?;
            let target = Target::Cluster(login);
            // Boxed: the follow loop's state is large, and callers keep their futures small.
            return Box::pin(
                this.follow_farm_job(target, controller, dir, manifest, options, events),
            )
            .await;
        }
        let record = self.require_farm()?;
        let controller_id = record.controller().unwrap_or_default().to_owned();
        let controller = self.farm_connect(&controller_id).await?;
        let target = Target::Farm {
            record,
            public_key: public_key.map(str::to_owned),
        };
        Box::pin(self.follow_farm_job(target, controller, dir, manifest, options, events)).await
    }

    async fn follow_farm_job(
        &self,
        mut target: Target,
        mut controller: Session,
        dir: &Path,
        mut manifest: RenderManifest,
        options: &FollowOptions,
        events: RenderEvents<'_>,
    ) -> Result<RenderReport> {
        let mut job = manifest.farm.clone().unwrap_or_default();
        let mut last_report = None;
        let mut quiet_rounds = 0_u32;
        let mut reconnects = 0_u32;
        loop {
            let (nodes, tasks) = match self.slurm_view(&controller).await {
                Ok(view) => {
                    reconnects = 0;
                    view
                }
                Err(error @ Error::Remote { .. }) if reconnects < 10 => {
                    reconnects += 1;
                    events(&RenderEvent::Reconnecting {
                        attempt: reconnects,
                        error: error.to_string(),
                    });
                    tokio::time::sleep(Duration::from_secs(u64::from(reconnects).min(10))).await;
                    controller = match &target {
                        Target::Farm { .. } => self.farm_connect(&controller.pod_id).await?,
                        Target::Cluster(login) => self.cluster_connect(login, &|_| {}).await?,
                    };
                    continue;
                }
                Err(error) => return Err(error),
            };
            // The nodes: the API's view of the pods beside Slurm's (a cluster's are Slurm's
            // alone).
            // The farm's own cost guard, from the same reading of the pods.
            let mut farm_guard = None;
            if let Target::Farm { record, .. } = &target {
                let (rate, cost_so_far) = self
                    .watch_nodes(&controller, record, &nodes, &mut job, events)
                    .await?;
                if rate > 0.0 {
                    manifest.cost_per_hour = Some(rate);
                }
                farm_guard = record.guard(cost_so_far, super::unix_now());
            }
            let (open, running) = self.track_tasks(&controller, &tasks, &mut job).await?;
            let more = self
                .collect_round(&controller, dir, &mut manifest, (open, running), events)
                .await?;
            manifest.farm = Some(job.clone());
            settle(&mut manifest, open, more, &mut quiet_rounds);
            manifest.store(&dir.join(MANIFEST_FILE))?;
            let report = manifest.cost_report();
            if last_report.as_ref() != Some(&report) {
                events(&RenderEvent::Cost(report.clone()));
                last_report = Some(report);
            }
            let record = match &target {
                Target::Farm { record, .. } => Some(record),
                Target::Cluster(_) => None,
            };
            if !manifest.state.ended()
                && let Some(reason) =
                    farm_guard.or_else(|| crate::render::guard_reason(&manifest, options))
            {
                return self
                    .farm_guard_stop(&controller, record, dir, manifest, reason, events)
                    .await;
            }
            if manifest.state == JobState::Invalid {
                // The spec does not fit the file: the other tasks would only say so again.
                self.slurm(&controller, &["scancel".into(), job.slurm_job.clone()])
                    .await?;
                return Err(Error::RenderRefused {
                    job_id: manifest.job_id.clone(),
                    pod_id: controller.pod_id.clone(),
                    reason: manifest.reason.clone().unwrap_or_default(),
                });
            }
            if manifest.state.ended() && manifest.all_local() {
                break;
            }
            if let Target::Farm {
                record,
                public_key: Some(public_key),
            } = &mut target
                && record.replace_dead
                && let Some(renewed) = self.replace_lost(record, &job, public_key, events).await?
            {
                *record = renewed;
            }
            if options.once && !more {
                return Ok(RenderReport {
                    manifest,
                    dir: dir.to_owned(),
                    outcome: RenderOutcome::Running,
                    pod_stopped: false,
                });
            }
            if !more {
                tokio::time::sleep(options.poll_interval).await;
            }
        }
        Ok(RenderReport {
            outcome: outcome_of(&manifest),
            manifest,
            dir: dir.to_owned(),
            pod_stopped: false,
        })
    }
}

/// What a farm job runs on.
enum Target {
    /// rpb's farm of pods: its nodes are watched through the API too.
    Farm {
        record: FarmRecord,
        /// For `--replace-dead`: the key new nodes are made with.
        public_key: Option<String>,
    },
    /// A Slurm cluster the user has, at its login node.
    Cluster(crate::seams::SshAddr),
}

/// How an ended farm job ended.
fn outcome_of(manifest: &RenderManifest) -> RenderOutcome {
    if manifest.state == JobState::Done {
        RenderOutcome::Done
    } else if !manifest.failed.is_empty() {
        RenderOutcome::FramesFailed(manifest.failed.clone())
    } else {
        RenderOutcome::Cancelled(manifest.reason.clone().unwrap_or_default())
    }
}

/// Frames rendered so far by each node.
fn frames_by_node(manifest: &RenderManifest) -> BTreeMap<String, usize> {
    let mut by_node: BTreeMap<String, usize> = BTreeMap::new();
    for entry in manifest.frames.values() {
        *by_node
            .entry(entry.node.clone().unwrap_or_else(|| "?".into()))
            .or_default() += 1;
    }
    by_node
}

/// The job's state after a round: done (or failed) once no task is open and every frame has a
/// record; failed, naming the missing frames, when every task ended without them for a few
/// rounds.
fn settle(manifest: &mut RenderManifest, open: usize, more: bool, quiet_rounds: &mut u32) {
    // The driver refused the spec (no such camera, ...): every task would; that is the end.
    if manifest.state == JobState::Invalid {
        return;
    }
    let total = manifest.spec.frames.len();
    let finished = manifest.frames.len() + manifest.failed.len() >= total;
    manifest.state = if open == 0 && finished {
        if manifest.failed.is_empty() {
            JobState::Done
        } else {
            JobState::Failed
        }
    } else {
        JobState::Running
    };
    if open > 0 || finished || more {
        *quiet_rounds = 0;
        return;
    }
    // Every task ended, but frames are missing: the records get a few rounds to come in.
    *quiet_rounds += 1;
    if *quiet_rounds > 5 {
        let missing: Vec<String> = manifest
            .spec
            .frames
            .frames()
            .iter()
            .filter(|frame| {
                !manifest.frames.contains_key(frame)
                    && !manifest.failed.iter().any(|failed| failed.frame == **frame)
            })
            .map(ToString::to_string)
            .collect();
        manifest.state = JobState::Failed;
        manifest.reason = Some(format!(
            "the farm's tasks ended without frames {}; see {}/tasks/ on the volume",
            missing.join(","),
            manifest.remote_dir
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(frames: &str) -> RenderManifest {
        let options = RenderOptions::new(
            RenderSource::PodPath("scene.blend".into()),
            frames.parse().unwrap(),
        );
        let spec = JobSpec::new(&options, "/runpod/scene.blend".into(), None);
        let project = project_store::ProjectName::new("p").unwrap();
        RenderManifest::new("job", &project, "pod", "/runpod/rpb/jobs/job", spec)
    }

    fn frame(number: i64) -> crate::render::FrameEntry {
        serde_json::from_value(serde_json::json!({
            "frame": number, "file": format!("out/frame_{number:04}.png"), "path": null,
            "sha256": "00", "bytes": 1, "seconds": 0.1, "samples": 1, "attempt": 1,
            "state": "rendered", "node": "pod-a"
        }))
        .unwrap()
    }

    #[test]
    fn a_job_is_done_once_no_task_is_open_and_every_frame_has_a_record() {
        let mut job = manifest("1-3");
        let mut quiet = 0;
        settle(&mut job, 2, false, &mut quiet);
        assert_eq!(job.state, JobState::Running);
        for number in 1..=3 {
            job.frames.insert(number, frame(number));
        }
        settle(&mut job, 1, false, &mut quiet);
        assert_eq!(job.state, JobState::Running, "a task is still open");
        settle(&mut job, 0, false, &mut quiet);
        assert_eq!(job.state, JobState::Done);
        assert_eq!(frames_by_node(&job)["pod-a"], 3);
        assert_eq!(outcome_of(&job), RenderOutcome::Done);
    }

    #[test]
    fn a_refused_spec_stays_refused() {
        let mut job = manifest("1-2");
        job.state = JobState::Invalid;
        job.reason = Some("no camera Cam2".into());
        let mut quiet = 0;
        for _ in 0..8 {
            settle(&mut job, 0, false, &mut quiet);
        }
        assert_eq!(job.state, JobState::Invalid);
        assert_eq!(job.reason.as_deref(), Some("no camera Cam2"));
    }

    #[test]
    fn tasks_that_end_without_frames_fail_the_job_after_a_few_rounds_naming_them() {
        let mut job = manifest("1-4");
        job.frames.insert(1, frame(1));
        let mut quiet = 0;
        for _ in 0..5 {
            settle(&mut job, 0, false, &mut quiet);
            assert_eq!(job.state, JobState::Running, "records may still come in");
        }
        settle(&mut job, 0, true, &mut quiet);
        assert_eq!(quiet, 0, "more records to read: the wait starts over");
        for _ in 0..6 {
            settle(&mut job, 0, false, &mut quiet);
        }
        assert_eq!(job.state, JobState::Failed);
        let reason = job.reason.clone().unwrap_or_default();
        assert!(reason.contains("without frames 2,3,4"), "{reason}");
        assert!(reason.contains("/runpod/rpb/jobs/job/tasks/"), "{reason}");
    }
}
