//! The pod's news applied to a job's local record: the driver's `events.jsonl` records, its
//! `result.json`, and Blender's log lines as [`RenderEvent`]s.

use serde::Deserialize;

use super::events::{RenderEvent, RenderEvents};
use super::log::{LogLine, parse_line};
use super::manifest::{Accepted, FailedFrame, FrameEntry, JobState, RenderManifest};

/// A record of the driver's `events.jsonl`.
#[derive(Debug, Deserialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub(super) enum PodEvent {
    /// The driver's findings, in the shape the manifest keeps them.
    Accepted(Accepted),
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
        #[serde(default)]
        node: Option<String>,
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

/// The pod's `result.json`: failed frames with their reasons, and why the job ended.
pub(super) fn apply_result(manifest: &mut RenderManifest, result: &serde_json::Value) {
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

pub(super) fn apply_pod_event(
    manifest: &mut RenderManifest,
    event: PodEvent,
    events: RenderEvents<'_>,
) {
    match event {
        PodEvent::Accepted(accepted) => {
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
            node,
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
                        node,
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

pub(super) fn log_event(line: &str, events: RenderEvents<'_>) {
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
