//! The background tunnel's own loop: open the tunnel, record it, and keep it until something
//! ends it (a shutdown request, the tunnel giving up, the cost guard, or the pod stopping).

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior};

use super::{CostGuard, GuardReason, GuardStop, TunnelRecord, guard_path, log_path, record_path};
use crate::seams::{PodStatus, TunnelState};
use crate::{Orchestrator, Result};

/// How often the supervisor looks at things it cannot be told about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SupervisorOptions {
    /// How often the pod's status is read through the API (a pod stopped elsewhere ends the
    /// tunnel). Default: 10 s.
    pub pod_check: Duration,
    /// How often the tunnel's byte counters are read for the idle limit (only when the guard
    /// has one). Default: 1 s.
    pub traffic_check: Duration,
}

impl Default for SupervisorOptions {
    fn default() -> Self {
        Self {
            pod_check: Duration::from_secs(10),
            traffic_check: Duration::from_secs(1),
        }
    }
}

/// Why a background tunnel ended.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Ending {
    /// The caller's shutdown future completed (a signal, say), with its reason.
    Shutdown(String),
    /// The tunnel gave up reconnecting; its local ports are closed.
    TunnelGaveUp {
        /// Its last error.
        error: Option<String>,
    },
    /// The cost guard stopped the pod.
    Guard(GuardReason),
    /// The pod stopped or was terminated by someone else.
    PodGone(PodStatus),
}

impl Ending {
    /// Whether the tunnel ended against the user's wishes (they must open it again).
    pub fn is_failure(&self) -> bool {
        matches!(self, Self::TunnelGaveUp { .. })
    }
}

impl std::fmt::Display for Ending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Shutdown(why) => write!(f, "shut down ({why})"),
            Self::TunnelGaveUp { error: Some(error) } => write!(f, "the tunnel gave up: {error}"),
            Self::TunnelGaveUp { error: None } => f.write_str("the tunnel gave up"),
            Self::Guard(reason) => write!(f, "cost guard stopped the pod: {reason}"),
            Self::PodGone(status) => write!(f, "the pod is {status}"),
        }
    }
}

/// Opens the tunnel to `pod_id`, records this process in `state_dir` (see [`super::status`]),
/// and keeps it until `shutdown` completes, the tunnel gives up, the cost `guard` stops the pod
/// (recording a [`GuardStop`]), or the pod stops. The record is removed at the end, if it is
/// still this process's.
///
/// The tunnel reconnects by itself (re-resolving the pod's endpoint through the API); state
/// changes are watched, not polled.
///
/// # Errors
///
/// Opening the tunnel, writing the record, closing the session, or (for a guard stop)
/// stopping the pod.
pub async fn run_background_tunnel(
    orchestrator: &Orchestrator,
    pod_id: &str,
    guard: CostGuard,
    state_dir: &Path,
    options: SupervisorOptions,
    shutdown: impl Future<Output = String>,
) -> Result<Ending> {
    tracing::info!(pod_id, "opening the tunnel");
    let session = orchestrator.open_tunnel(pod_id, &|_| {}).await?;
    let record =
        TunnelRecord::for_current_process(pod_id, session.ports, guard, log_path(state_dir))?;
    let record_file = record_path(state_dir);
    record.write(&record_file)?;
    tracing::info!(
        pod_id,
        mcp = record.mcp_port,
        vnc = record.vnc_port,
        novnc = record.novnc_port,
        ?guard,
        "tunnel up"
    );
    let mut state_changes = session
        .tunnel_state_changes()
        .unwrap_or_else(|| tokio::sync::watch::channel(session.tunnel_state()).1);
    let started = Instant::now();
    let hours_limit = guard
        .max_duration()
        .and_then(|limit| started.checked_add(limit));
    // Resolves once, with the limit that was reached: the loop breaks on it, so it is never
    // polled again after completing.
    let hours_reached = async {
        match (hours_limit, guard.max_hours) {
            (Some(deadline), Some(hours)) => {
                tokio::time::sleep_until(deadline).await;
                GuardReason::MaxHours { hours }
            }
            _ => std::future::pending().await,
        }
    };
    let mut traffic_tick = tokio::time::interval(options.traffic_check);
    traffic_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut pod_tick = tokio::time::interval_at(started + options.pod_check, options.pod_check);
    pod_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let idle_armed = guard.idle_limit().is_some();
    let mut last_bytes = session.traffic_bytes();
    let mut last_traffic = Instant::now();
    tokio::pin!(shutdown, hours_reached);
    let ending = loop {
        tokio::select! {
            why = &mut shutdown => break Ending::Shutdown(why),
            changed = state_changes.changed() => {
                let state = match changed {
                    Ok(()) => state_changes.borrow_and_update().clone(),
                    // The tunnel is gone without saying why.
                    Err(_) => TunnelState::Closed { error: None },
                };
                tracing::info!(pod_id, state = %state, "tunnel state changed");
                if let TunnelState::Closed { error } = state {
                    break Ending::TunnelGaveUp { error };
                }
            }
            reason = &mut hours_reached => break Ending::Guard(reason),
            _ = traffic_tick.tick(), if idle_armed => {
                let bytes = session.traffic_bytes();
                if bytes != last_bytes {
                    last_bytes = bytes;
                    last_traffic = Instant::now();
                }
                if let Some(reason) = guard.decide(started.elapsed(), last_traffic.elapsed()) {
                    break Ending::Guard(reason);
                }
            }
            _ = pod_tick.tick() => {
                match orchestrator.status(pod_id, None).await {
                    Ok(status)
                        if matches!(status.pod.status, PodStatus::Exited | PodStatus::Terminated) =>
                    {
                        break Ending::PodGone(status.pod.status);
                    }
                    Ok(_) => {}
                    Err(error) => tracing::warn!(pod_id, error = %error, "reading the pod's status failed"),
                }
            }
        }
    };
    let closed = finish(&ending, orchestrator, session, pod_id, state_dir).await;
    // Remove the record only if it is still ours (a newer tunnel may have replaced it).
    if let Ok(Some(current)) = TunnelRecord::read(&record_file)
        && current.pid == record.pid
    {
        TunnelRecord::remove(&record_file)?;
    }
    closed.map(|()| ending)
}

/// Closes the session the way `ending` asks: on a guard decision, records why and stops the pod.
async fn finish(
    ending: &Ending,
    orchestrator: &Orchestrator,
    session: crate::Session,
    pod_id: &str,
    state_dir: &Path,
) -> Result<()> {
    match ending {
        Ending::Shutdown(_) | Ending::PodGone(_) => {
            tracing::info!(pod_id, ending = %ending, "closing the tunnel");
            session.close().await
        }
        Ending::TunnelGaveUp { .. } => {
            tracing::error!(pod_id, ending = %ending, "the tunnel gave up");
            // Its listeners are closed already; this only releases the SSH session.
            let _ = session.close().await;
            Ok(())
        }
        Ending::Guard(reason) => {
            tracing::warn!(pod_id, reason = %reason, "cost guard: stopping the pod");
            if let Err(error) =
                GuardStop::now(pod_id, reason.to_string()).write(&guard_path(state_dir))
            {
                tracing::warn!(error = %error, "recording the guard stop failed");
            }
            orchestrator
                .stop(pod_id, Some(session), &|_| {})
                .await
                .map(|pod| tracing::warn!(pod_id, status = %pod.status, "cost guard: pod stopped"))
        }
    }
}
