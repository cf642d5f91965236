//! Shared set-up: a local pod, an orchestrator wired to it, a workspace, and serial execution.

use std::path::Path;
use std::sync::{Arc, Mutex};
pub(crate) use test_support::process::alive;

use blender_session::local_pod::{LocalPod, LocalPodBuilder};
use blender_session::seams::PodSpec;
use blender_session::{Event, Orchestrator, SessionSettings};
use secrecy::SecretString;
use tokio::sync::{Mutex as AsyncMutex, MutexGuard};

pub(crate) const VNC_PASSWORD: &str = "e2e-vnc-7x";

/// Scenarios boot real Blender; two at once on a 2-core machine only slow each other down.
pub(crate) async fn serial() -> MutexGuard<'static, ()> {
    static LOCK: AsyncMutex<()> = AsyncMutex::const_new(());
    LOCK.lock().await
}

/// Everything one scenario needs.
pub(crate) struct Rig {
    pub(crate) pod: LocalPod,
    pub(crate) orchestrator: Orchestrator,
    pub(crate) store: project_store::Store,
    pub(crate) client: runpod_api::Client,
    pub(crate) events: Arc<Mutex<Vec<Event>>>,
    _workspace: tempfile::TempDir,
}

impl Rig {
    pub(crate) async fn start() -> anyhow::Result<Self> {
        Self::start_with(|_| {}).await
    }

    pub(crate) async fn start_with(
        tweak: impl FnOnce(&mut SessionSettings),
    ) -> anyhow::Result<Self> {
        Self::start_on(LocalPod::builder(), tweak).await
    }

    /// A rig on a local pod built by `builder` (for its fault knobs).
    pub(crate) async fn start_on(
        builder: LocalPodBuilder,
        tweak: impl FnOnce(&mut SessionSettings),
    ) -> anyhow::Result<Self> {
        let pod = builder.start().await?;
        let client = pod.client()?;
        let workspace = tempfile::tempdir()?;
        let store = project_store::Store::builder()
            .root(workspace.path().join("runpod"))
            .ignore_environment()
            .build()?;
        store.init()?;
        let orchestrator = build_orchestrator(&pod, &store, tweak)?;
        Ok(Self {
            pod,
            orchestrator,
            store,
            client,
            events: Arc::new(Mutex::new(Vec::new())),
            _workspace: workspace,
        })
    }

    /// Another orchestrator on the same pod and workspace, with changed settings.
    pub(crate) fn orchestrator_with(
        &self,
        tweak: impl FnOnce(&mut SessionSettings),
    ) -> anyhow::Result<Orchestrator> {
        build_orchestrator(&self.pod, &self.store, tweak)
    }

    /// A progress sink recording every event (and echoing it for the test log).
    pub(crate) fn sink(&self) -> impl Fn(&Event) + Send + Sync + use<> {
        let events = self.events.clone();
        move |event: &Event| {
            eprintln!(
                "{:>7.2}s {}: {}",
                event.elapsed.as_secs_f64(),
                event.step,
                event.detail
            );
            events.lock().expect("events").push(event.clone());
        }
    }

    pub(crate) fn spec() -> PodSpec {
        PodSpec::new("rpb-e2e")
            .gpu_type("NVIDIA RTX A5000")
            .cloud(runpod_api::models::Cloud::Community)
    }

    /// Creates a pod through the orchestrator and returns its id.
    pub(crate) async fn create(&self) -> anyhow::Result<String> {
        let sink = self.sink();
        let pod = self
            .orchestrator
            .create(&Self::spec(), self.pod.ssh_public_key(), &sink)
            .await?;
        Ok(pod.id.to_string())
    }

    /// PIDs recorded in the pod root's PID files.
    pub(crate) fn session_pids(&self) -> Vec<u32> {
        pid_files(&self.pod.pod_root().join("rpb/run"))
    }

    pub(crate) async fn shutdown(self) -> anyhow::Result<()> {
        self.pod.shutdown().await?;
        Ok(())
    }
}

fn build_orchestrator(
    pod: &LocalPod,
    store: &project_store::Store,
    tweak: impl FnOnce(&mut SessionSettings),
) -> anyhow::Result<Orchestrator> {
    let mut settings = pod.session_settings(SecretString::from(VNC_PASSWORD));
    tweak(&mut settings);
    Ok(pod
        .orchestrator(store.state_dir().join("known_hosts"), settings)?
        .with_store(store.clone()))
}

fn pid_files(dir: &Path) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|entry| entry.path().extension().is_some_and(|ext| ext == "pid"))
        .filter_map(|entry| std::fs::read_to_string(entry.path()).ok())
        .filter_map(|text| text.split_whitespace().next()?.parse().ok())
        .collect()
}
