//! The session lifecycle: create → set up → start → work in Blender → save → stop.
//!
//! [`Orchestrator`] holds a [`PodProvider`] and a [`HostConnector`] (the seams in
//! [`crate::seams`]) and turns them into safe, observable, recoverable steps. Every wait is
//! bounded; every step reports an [`Event`]; a start that fails after it started the pod stops
//! the pod again.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

pub use crate::assets::boot_command;
use crate::seams::{HostConnector, PodProvider, RemoteHost};
use crate::{Error, Result};

mod files;
mod lifecycle;
mod session;

pub use session::{Event, Events, Session, SessionSettings, SessionStatus, Step, WaitForGpu};

/// Drives sessions on pods through a provider and a connector.
pub struct Orchestrator {
    pub(crate) provider: Arc<dyn PodProvider>,
    connector: Arc<dyn HostConnector>,
    settings: SessionSettings,
    store: Option<project_store::Store>,
}

impl fmt::Debug for Orchestrator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Orchestrator")
            .field("pod_root", &self.settings.pod_root)
            .finish_non_exhaustive()
    }
}

struct Clock<'a> {
    started: Instant,
    events: Events<'a>,
}

impl Clock<'_> {
    fn emit(&self, step: Step, detail: impl Into<String>) {
        let event = Event {
            step,
            elapsed: self.started.elapsed(),
            detail: detail.into(),
        };
        tracing::info!(step = %event.step, detail = %event.detail, "session step");
        (self.events)(&event);
    }
}

fn tail(text: &str, lines: usize) -> String {
    let collected: Vec<&str> = text.lines().rev().take(lines).collect();
    collected.into_iter().rev().collect::<Vec<_>>().join(" | ")
}

impl Orchestrator {
    /// An orchestrator over `provider` and `connector`.
    pub fn new(
        provider: Arc<dyn PodProvider>,
        connector: Arc<dyn HostConnector>,
        settings: SessionSettings,
    ) -> Self {
        Self {
            provider,
            connector,
            settings,
            store: None,
        }
    }

    /// Records created pods' ids in this workspace's `.env` (`RUNPOD_POD_ID`).
    #[must_use]
    pub fn with_store(mut self, store: project_store::Store) -> Self {
        self.store = Some(store);
        self
    }

    /// The settings in use.
    pub fn settings(&self) -> &SessionSettings {
        &self.settings
    }

    async fn run_checked(
        &self,
        pod_id: &str,
        host: &dyn RemoteHost,
        what: &str,
        command: &str,
        stdin: Option<Vec<u8>>,
        timeout: Duration,
    ) -> Result<String> {
        let output = host.run(command, stdin, timeout).await?;
        if output.success() {
            Ok(output.stdout)
        } else {
            Err(Error::RemoteCommand {
                what: what.into(),
                pod_id: pod_id.into(),
                code: output
                    .code
                    .map_or_else(|| "a signal".to_owned(), |code| format!("code {code}")),
                stderr_tail: tail(&output.stderr, 4),
            })
        }
    }
}

pub(crate) fn create_dir(path: &Path) -> Result<()> {
    std::fs::create_dir_all(path).map_err(|source| Error::Io {
        operation: "create",
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_boot_command_falls_back_to_the_image_start_script() {
        assert_eq!(
            boot_command("/runpod/"),
            "bash -c '[ -f /runpod/rpb/bin/boot-hook.sh ] && exec bash /runpod/rpb/bin/boot-hook.sh /start.sh; exec /start.sh'"
        );
    }
}
