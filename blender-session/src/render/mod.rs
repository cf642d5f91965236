//! Render jobs on the pod: a detached `blender -b` whose frames are verified on the pod and
//! downloaded, verified again, as they land.
//!
//! A job lives in `<pod root>/rpb/jobs/<job-id>/` on the pod: its spec, the runner's PID (with
//! its start time; the runner leads its own process group, so the job survives the SSH
//! connection and is ended by that PID only), Blender's full log, one record per verified
//! frame, and the images. The pod-side driver (`rpb_render.py`, see [`crate::assets`]) renders
//! only frames without a record, so a job that was killed, crashed or stopped with its pod
//! resumes where it stopped, never rendering a verified frame again. A frame counts as done
//! when Blender logged `Saved:` for its path, logged no error while rendering it, and the file
//! decodes as an image of the expected size.
//!
//! Locally the frames land in `projects/<project>/renders/<job-id>/` with a record
//! ([`RenderManifest`], `render.json`) holding the spec, Blender's version, the device, each
//! frame's seconds, samples and SHA-256, and the cost.
//!
//! ```no_run
//! # async fn demo(rpb: blender_session::Orchestrator, session: blender_session::Session) -> Result<(), Box<dyn std::error::Error>> {
//! use blender_session::render::{FollowOptions, RenderOptions, RenderOutcome, RenderSource};
//!
//! let store = project_store::Store::open("/home/me/blender-files/runpod")?;
//! let project = project_store::ProjectName::new("chair")?;
//! let mut options = RenderOptions::new(RenderSource::OpenScene, "1-250".parse()?);
//! options.settings.samples = Some(128);
//! let job = rpb.render_start(&session, &store, &project, &options).await?;
//! let show = |event: &blender_session::render::RenderEvent| eprintln!("{event:?}");
//! let report = rpb.render_follow(&session, &job.dir, &FollowOptions::default(), &show).await?;
//! assert_eq!(report.outcome, RenderOutcome::Done);
//! println!("{} frames in {}", report.manifest.frames.len(), report.dir.display());
//! # Ok(())
//! # }
//! ```

mod events;
mod job;
pub(crate) use job::{guard_reason, local_job_dir};
pub mod log;
mod manifest;
mod pod_events;
mod spec;

pub use events::{
    FollowOptions, RenderEvent, RenderEvents, RenderJob, RenderOutcome, RenderReport,
};
pub use manifest::{
    Accepted, ClusterJob, CostReport, FailedFrame, FarmJob, FrameEntry, JobState, MANIFEST_FILE,
    RenderManifest, find_job, list_jobs,
};
pub use spec::{
    Device, Engine, FrameSpec, ImageFormat, JobSpec, MAX_FRAMES, RenderOptions, RenderSettings,
    RenderSource, parse_resolution,
};
