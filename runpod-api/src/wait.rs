//! Waiting for a pod to reach a condition, with backoff polling, a deadline, early failure on
//! states a pod does not leave by itself, and progress reports.

use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

use crate::Result;
use crate::client::Client;
use crate::error::Error;
use crate::models::{Pod, PodId, PodStatus};

/// What to wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WaitFor {
    /// Status `RUNNING`.
    Running,
    /// Status `RUNNING` with a direct SSH endpoint ([`Pod::ssh_endpoint`]). The endpoint may
    /// still be stale for a while after a restart: confirm it answers before trusting it.
    SshReady,
    /// Status `EXITED` with cost 0: the pod is stopped and compute billing has ended.
    Stopped,
}

impl fmt::Display for WaitFor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Running => "running",
            Self::SshReady => "reachable over ssh",
            Self::Stopped => "stopped",
        })
    }
}

impl WaitFor {
    fn is_met(self, pod: &Pod) -> bool {
        match self {
            Self::Running => pod.status == PodStatus::Running,
            Self::SshReady => pod.status == PodStatus::Running && pod.ssh_endpoint().is_some(),
            Self::Stopped => pod.status == PodStatus::Exited && pod.cost <= 0.0,
        }
    }
}

/// Timing of a wait. Defaults: 10 min deadline, polls every 1 s growing to 5 s, and an `EXITED`
/// pod is given 30 s to start moving before a wait for it to run gives up.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WaitOptions {
    /// Deadline of the whole wait. Default: 10 min (cold image pulls take minutes).
    pub timeout: Duration,
    /// First pause between polls. Default: 1 s.
    pub initial_interval: Duration,
    /// Longest pause between polls. Default: 5 s.
    pub max_interval: Duration,
    /// While waiting to run, how long a pod may stay `EXITED` (e.g. right after a start
    /// request) before the wait fails. A pod that was seen moving and then reads `EXITED`
    /// fails the wait at once. Default: 30 s.
    pub exited_grace: Duration,
}

impl Default for WaitOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(600),
            initial_interval: Duration::from_secs(1),
            max_interval: Duration::from_secs(5),
            exited_grace: Duration::from_secs(30),
        }
    }
}

impl WaitOptions {
    /// Sets the deadline.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the first and the longest pause between polls.
    #[must_use]
    pub fn intervals(mut self, initial: Duration, max: Duration) -> Self {
        self.initial_interval = initial;
        self.max_interval = max.max(initial);
        self
    }

    /// Sets how long an `EXITED` pod is given to start moving.
    #[must_use]
    pub fn exited_grace(mut self, grace: Duration) -> Self {
        self.exited_grace = grace;
        self
    }
}

/// Progress of a wait, for drawing it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum WaitEvent {
    /// The pod's status changed (or was read for the first time).
    StatusChanged {
        /// The status before, `None` on the first read.
        from: Option<PodStatus>,
        /// The status now.
        to: PodStatus,
        /// Time since the wait began.
        elapsed: Duration,
    },
    /// A poll found the pod not ready yet.
    Polled {
        /// The status now.
        status: PodStatus,
        /// Time since the wait began.
        elapsed: Duration,
    },
    /// A poll failed in a way that may pass; the wait goes on.
    PollFailed {
        /// The error, as text.
        error: String,
        /// Time since the wait began.
        elapsed: Duration,
    },
}

impl Client {
    /// Polls the pod until `condition` holds and returns the pod as last read.
    ///
    /// Ends early with [`Error::WaitAborted`] when the pod is `ERROR` or `TERMINATED`, or
    /// `EXITED` while waiting for it to run (after [`WaitOptions::exited_grace`]), and with
    /// [`Error::WaitTimeout`] at the deadline. Retryable poll failures are reported through
    /// `on_event` and the wait continues.
    ///
    /// # Errors
    ///
    /// The two above, and non-retryable errors of [`Client::get_pod`] (404 when the pod is gone,
    /// 401, ...).
    #[tracing::instrument(level = "debug", skip(self, options, on_event), fields(pod_id = %id))]
    pub async fn wait_for_pod(
        &self,
        id: &PodId,
        condition: WaitFor,
        options: &WaitOptions,
        mut on_event: impl FnMut(&WaitEvent) + Send,
    ) -> Result<Pod> {
        let started = Instant::now();
        let deadline = started + options.timeout;
        let mut interval = options.initial_interval;
        let mut last_status: Option<PodStatus> = None;
        let mut seen_moving = false;
        loop {
            match self.get_pod(id).await {
                Ok(pod) => {
                    let elapsed = started.elapsed();
                    if last_status.as_ref() != Some(&pod.status) {
                        on_event(&WaitEvent::StatusChanged {
                            from: last_status.clone(),
                            to: pod.status.clone(),
                            elapsed,
                        });
                    }
                    last_status = Some(pod.status.clone());
                    if condition.is_met(&pod) {
                        return Ok(pod);
                    }
                    if let Some(hint) =
                        abort_hint(condition, &pod.status, seen_moving, elapsed, options)
                    {
                        return Err(Error::WaitAborted {
                            pod_id: id.clone(),
                            condition: condition.to_string(),
                            status: pod.status,
                            elapsed,
                            hint,
                        });
                    }
                    if pod.status != PodStatus::Exited {
                        seen_moving = true;
                    }
                    on_event(&WaitEvent::Polled {
                        status: pod.status,
                        elapsed,
                    });
                }
                Err(error) if error.is_retryable() => on_event(&WaitEvent::PollFailed {
                    error: error.to_string(),
                    elapsed: started.elapsed(),
                }),
                Err(error) => return Err(error),
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::WaitTimeout {
                    pod_id: id.clone(),
                    condition: condition.to_string(),
                    timeout: options.timeout,
                    last_status,
                });
            }
            tokio::time::sleep(interval.min(deadline - now)).await;
            interval = interval.mul_f64(1.5).min(options.max_interval);
        }
    }
}

/// Why a wait must end now, if it must: the pod is in a state it will not leave by itself.
fn abort_hint(
    condition: WaitFor,
    status: &PodStatus,
    seen_moving: bool,
    elapsed: Duration,
    options: &WaitOptions,
) -> Option<&'static str> {
    match (condition, status) {
        (_, PodStatus::Terminated) => Some("the pod was terminated; create a new one"),
        (_, PodStatus::Error) => {
            Some("the container failed; read the pod's logs, then start it again or recreate it")
        }
        (WaitFor::Running | WaitFor::SshReady, PodStatus::Exited)
            if seen_moving || elapsed >= options.exited_grace =>
        {
            Some("the pod stopped; start it again, and read its logs if it keeps stopping")
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exited_only_aborts_after_moving_or_grace() {
        let options = WaitOptions::default();
        let early = Duration::from_secs(1);
        assert_eq!(
            abort_hint(WaitFor::Running, &PodStatus::Exited, false, early, &options),
            None
        );
        assert!(abort_hint(WaitFor::Running, &PodStatus::Exited, true, early, &options).is_some());
        assert!(
            abort_hint(
                WaitFor::SshReady,
                &PodStatus::Exited,
                false,
                Duration::from_secs(31),
                &options
            )
            .is_some()
        );
        assert_eq!(
            abort_hint(WaitFor::Stopped, &PodStatus::Exited, true, early, &options),
            None
        );
        assert!(abort_hint(WaitFor::Stopped, &PodStatus::Error, false, early, &options).is_some());
    }
}
