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

mod adopt;
mod farm;
mod files;
mod lifecycle;
mod migrate;
mod portable;
mod session;

pub use adopt::{AdoptOptions, AdoptReport};
pub use farm::{
    FARM_KEY_FILE, FARM_RECORD_FILE, FarmDown, FarmNodeStatus, FarmPod, FarmRecord, FarmSpec,
    FarmStatus, FarmUp, SlurmCluster,
};
pub use files::RemoteBlend;

pub use migrate::{Migrated, staging_dir};
pub use portable::Terminated;
pub use session::{
    Event, Events, Moved, Session, SessionSettings, SessionStatus, Step, WaitForGpu,
};

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

/// Closes a session's tunnel, if there is one, before its pod stops or goes; a failure to close
/// is only logged (the pod's end closes it anyway).
async fn close_tunnel(pod_id: &str, session: Option<Session>, clock: &Clock<'_>) {
    if let Some(session) = session {
        clock.emit(Step::CloseTunnel, "closing the tunnel");
        if let Err(error) = session.close().await {
            tracing::warn!(pod_id, error = %error, "closing the tunnel reported an error");
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

    /// Runs the start command as a container would (`sh -c`), with the pod root and the SSH
    /// directory in a scratch folder and a boot hook that records its arguments.
    fn boot(env: &[(&str, &str)]) -> (tempfile::TempDir, std::process::Output) {
        let scratch = tempfile::tempdir().unwrap();
        let bin = scratch.path().join("root/rpb/bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::write(
            bin.join("boot-hook.sh"),
            format!("echo \"hook $*\" > {}/hook.out\n", scratch.path().display()),
        )
        .unwrap();
        let command = boot_command(&format!("{}/root/", scratch.path().display()));
        let output = std::process::Command::new("sh")
            .arg("-c")
            .arg(&command)
            .env("RPB_SSH_DIR", scratch.path().join("etc/ssh"))
            .envs(env.iter().copied())
            .output()
            .unwrap();
        (scratch, output)
    }

    #[test]
    fn the_boot_command_installs_the_given_host_key_then_runs_the_hook() {
        use std::os::unix::fs::PermissionsExt as _;

        use secrecy::ExposeSecret as _;

        let pair = pod_tunnel::HostKeyPair::generate_ed25519("boot-test").unwrap();
        let encoded = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            pair.private_key().expose_secret(),
        );
        let command = boot_command("/runpod");
        assert!(
            !command.contains(&encoded[..16]),
            "no key material in the command"
        );
        let (scratch, output) = boot(&[
            (crate::assets::HOST_KEY_ENV, encoded.as_str()),
            (crate::assets::HOST_PUBLIC_KEY_ENV, pair.public_key()),
        ]);
        assert!(output.status.success(), "{output:?}");
        let key = scratch.path().join("etc/ssh/ssh_host_ed25519_key");
        assert_eq!(
            std::fs::read_to_string(&key).unwrap(),
            pair.private_key().expose_secret()
        );
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(
            std::fs::read_to_string(scratch.path().join("etc/ssh/ssh_host_ed25519_key.pub"))
                .unwrap(),
            format!("{}\n", pair.public_key())
        );
        assert_eq!(
            std::fs::read_to_string(scratch.path().join("hook.out")).unwrap(),
            "hook /start.sh\n"
        );
    }

    #[test]
    fn a_hostile_pod_root_stays_one_path() {
        let scratch = tempfile::tempdir().unwrap();
        let marker = scratch.path().join("pwned");
        // A folder of that very name holds the hook: the path must reach it whole.
        let root = format!(
            "{}/x'; touch {}; '",
            scratch.path().display(),
            marker.display()
        );
        let bin = std::path::Path::new(&root).join("rpb/bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::write(
            bin.join("boot-hook.sh"),
            format!("echo \"hook $*\" > {}/hook.out\n", scratch.path().display()),
        )
        .unwrap();
        let output = std::process::Command::new("sh")
            .arg("-c")
            .arg(boot_command(&root))
            .env("RPB_SSH_DIR", scratch.path().join("etc/ssh"))
            .output()
            .unwrap();
        assert!(
            !marker.exists(),
            "the pod root ran as a command: {output:?}"
        );
        assert_eq!(
            std::fs::read_to_string(scratch.path().join("hook.out")).unwrap(),
            "hook /start.sh\n",
            "{output:?}"
        );
    }

    #[test]
    fn an_adopted_pod_s_own_start_command_follows_the_hook_or_runs_alone() {
        let scratch = tempfile::tempdir().unwrap();
        let out = scratch.path().join("fallback.out");
        let own = format!("echo \"own $((1 + 1)) 'quoted'\" > {}", out.display());
        let run = |root: &str| {
            std::process::Command::new("sh")
                .arg("-c")
                .arg(crate::assets::boot_command_with_fallback(root, Some(&own)))
                .env("RPB_SSH_DIR", scratch.path().join("etc/ssh"))
                .output()
                .unwrap()
        };
        // No hook on the volume: the pod's own command runs, as before adoption.
        let output = run("/nonexistent");
        assert!(output.status.success(), "{output:?}");
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "own 2 'quoted'\n");
        std::fs::remove_file(&out).unwrap();
        // With the hook, the hook gets the pod's own command as its arguments.
        let root = scratch.path().join("root");
        let bin = root.join("rpb/bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::write(bin.join("boot-hook.sh"), "exec \"$@\"\n").unwrap();
        let output = run(root.to_str().unwrap());
        assert!(output.status.success(), "{output:?}");
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "own 2 'quoted'\n");
    }

    #[test]
    fn without_a_key_the_boot_command_only_runs_the_hook() {
        let (scratch, output) = boot(&[]);
        assert!(output.status.success(), "{output:?}");
        assert!(!scratch.path().join("etc/ssh").exists());
        assert_eq!(
            std::fs::read_to_string(scratch.path().join("hook.out")).unwrap(),
            "hook /start.sh\n"
        );
    }
}
