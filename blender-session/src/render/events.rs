//! What starting and following a render job report: progress events, the follow options,
//! the outcome and the job handles.

use std::path::PathBuf;
use std::time::Duration;

use super::manifest::{Accepted, CostReport, FailedFrame, RenderManifest};

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
    /// A farm node was found lost (its pod stopped or died, or Slurm lost it): its tasks are
    /// requeued onto the other nodes.
    NodeLost {
        /// The node (pod id).
        node: String,
        /// Why.
        reason: String,
    },
    /// With `farm up --replace-dead`: lost nodes were terminated and new ones joined the farm.
    NodesReplaced {
        /// The lost nodes (pod ids).
        lost: Vec<String>,
        /// The nodes that joined.
        joined: Vec<String>,
    },
    /// The farm's tasks now: how many run, wait, and are done, and frames done per node.
    Farm {
        /// Tasks running.
        running: usize,
        /// Tasks waiting (pending or requeued).
        pending: usize,
        /// Frames rendered so far by each node.
        frames_by_node: std::collections::BTreeMap<String, usize>,
    },
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
