//! Example programs for the rpb crates live in `src/bin/`, one scenario per file. This library
//! holds the one piece several of them share: a session on the embedded local pod.

use std::time::Duration;

use blender_session::local_pod::LocalPod;
use blender_session::seams::PodSpec;
use blender_session::{Event, Orchestrator, Session};
use secrecy::SecretString;

/// A running session on the embedded local pod (the RunPod simulator, a private sshd, and
/// Blender with x11vnc and noVNC from this machine).
pub struct LocalSession {
    /// The local pod.
    pub pod: LocalPod,
    /// The orchestrator wired to it.
    pub orchestrator: Orchestrator,
    /// The pod's id.
    pub pod_id: String,
    /// The running session.
    pub session: Session,
    _state: tempfile::TempDir,
}

/// Prints a progress event on stderr.
pub fn show(event: &Event) {
    #[expect(clippy::print_stderr, reason = "examples report progress on stderr")]
    {
        eprintln!(
            "{:>6.1}s  {:<26} {}",
            event.elapsed.as_secs_f64(),
            event.step.to_string(),
            event.detail
        );
    }
}

/// Starts the local pod, creates a pod on it and starts a session, printing progress.
///
/// # Errors
///
/// When a system package is missing (the error names it) or a step fails.
pub async fn start_local_session(vnc_password: &str) -> anyhow::Result<LocalSession> {
    let state = tempfile::tempdir()?;
    let pod = LocalPod::builder().start().await?;
    let settings = pod.session_settings(SecretString::from(vnc_password.to_owned()));
    let orchestrator = pod.orchestrator(state.path().join("known_hosts"), settings)?;
    let spec = PodSpec::new("rpb-example")
        .gpu_type("NVIDIA RTX A5000")
        .cloud(runpod_api::models::Cloud::Community);
    let created = orchestrator
        .create(&spec, pod.ssh_public_key(), &show)
        .await?;
    let session = orchestrator.start(created.id.as_str(), &show).await?;
    Ok(LocalSession {
        pod,
        orchestrator,
        pod_id: created.id.to_string(),
        session,
        _state: state,
    })
}

impl LocalSession {
    /// Stops the pod (waiting for $0/h) and shuts the local pod down, ending every process it
    /// started.
    ///
    /// # Errors
    ///
    /// When stopping fails.
    pub async fn stop(self) -> anyhow::Result<()> {
        let pod = self
            .orchestrator
            .stop(&self.pod_id, Some(self.session), &show)
            .await?;
        #[expect(clippy::print_stderr, reason = "examples report progress on stderr")]
        {
            eprintln!(
                "pod {} is {} at ${:.2}/h",
                pod.id, pod.status, pod.cost_per_hour
            );
        }
        tokio::time::timeout(Duration::from_secs(60), self.pod.shutdown()).await??;
        Ok(())
    }
}
