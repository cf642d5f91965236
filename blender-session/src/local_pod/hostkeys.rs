//! The host key the local pod's sshd serves, as a pod's start command would install it: a pod
//! created with a host key in its environment ([`crate::assets::HOST_KEY_ENV`], what
//! `Orchestrator::create` does) gets that key when it boots, any other pod the local pod's own
//! key. The key changes before the boot's SSH port opens, so even the first contact meets the
//! pod's own key. All pods of one local pod share its sshd, so they share the key of the pod
//! that booted last: run one rpb-created pod at a time per local pod.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use runpod_api::sim::Simulator;
use tokio::io::AsyncReadExt as _;

use super::paths::Paths;

const KEY_FILE: &str = "ssh_host_ed25519_key";
/// Where the local pod's own key waits while a pod's key is installed.
const OWN_KEY_DIR: &str = "own";
/// How long sshd may take to answer again after it re-reads its keys.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(10);

/// The served key's state, owned by the watcher.
pub(super) struct HostKeys {
    dir: PathBuf,
    sshd_pid: Arc<AtomicU32>,
    sshd_address: SocketAddr,
    /// The public key line of the pod key installed now; `None` while the own key serves.
    installed: Option<String>,
    /// `false`: pods' keys are ignored (a test's man in the middle).
    serve_pod_keys: bool,
    /// Plays an image that makes new host keys at every boot: a pod without a key of its own
    /// gets a fresh one per boot, unless its start command runs rpb's boot hook and the volume
    /// holds persisted keys (which the hook restores).
    fresh_per_boot: bool,
    /// Where setup persists the keys on the pod root (`rpb/ssh-host-keys`).
    persisted: PathBuf,
}

impl HostKeys {
    pub(super) fn new(
        paths: &Paths,
        sshd_pid: Arc<AtomicU32>,
        sshd_address: SocketAddr,
        serve_pod_keys: bool,
        fresh_per_boot: bool,
    ) -> Self {
        Self {
            dir: paths.host_keys.clone(),
            sshd_pid,
            sshd_address,
            installed: None,
            serve_pod_keys,
            fresh_per_boot,
            persisted: paths.rpb_home.join("ssh-host-keys"),
        }
    }

    /// Serves the host key pod `pod_id` asks for (its own one, or the local pod's), reloading
    /// sshd when that changes the key. Failures are logged: the client then meets another key
    /// than it pinned and refuses it, which is what a real pod with a broken key install does.
    pub(super) async fn serve_for(&mut self, simulator: &Simulator, pod_id: &str) {
        if !self.serve_pod_keys {
            return;
        }
        let Some(pod) = simulator
            .pods()
            .into_iter()
            .find(|pod| pod.id.as_str() == pod_id)
        else {
            return;
        };
        let own_key = pod
            .env
            .get(crate::assets::HOST_KEY_ENV)
            .zip(pod.env.get(crate::assets::HOST_PUBLIC_KEY_ENV));
        // On a pod, the boot hook restores the keys persisted on the volume after the start
        // command installed the environment's key, so those win. Only a network volume is the
        // pod's own here: the machine's disk is shared by every other pod.
        let from_volume = if pod.mounts.network.is_empty() {
            None
        } else {
            self.restored_by_hook(&pod.args)
        };
        let wanted = match (from_volume, own_key) {
            (Some(keys), _) => Some(keys),
            (None, Some((private, public))) => Some((private.clone(), public.clone())),
            (None, None) if self.fresh_per_boot => {
                Some(self.restored_by_hook(&pod.args).unwrap_or_else(fresh_key))
            }
            (None, None) => None,
        };
        if wanted.as_ref().map(|(_, public)| public) == self.installed.as_ref() {
            return;
        }
        let result = match &wanted {
            Some((private, public)) => self.install(private, public),
            None => self.restore_own(),
        };
        if let Err(error) = result {
            tracing::warn!(pod_id, %error, "installing the pod's ssh host key failed");
            return;
        }
        self.installed = wanted.map(|(_, public)| public);
        self.reload().await;
    }

    /// The keys rpb's boot hook restores: those persisted on the volume, when the pod's start
    /// command runs the hook. As `(base64 of the private key file, public key line)`.
    fn restored_by_hook(&self, start_command: &str) -> Option<(String, String)> {
        if !start_command.contains(crate::assets::BOOT_HOOK_MARKER) {
            return None;
        }
        let key = self.persisted.join(KEY_FILE);
        let private = std::fs::read(&key).ok()?;
        let public = std::fs::read_to_string(public_path(&key)).ok()?;
        Some((
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, private),
            public.trim().to_owned(),
        ))
    }

    fn install(&self, private_base64: &str, public: &str) -> std::io::Result<()> {
        let private = base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            private_base64.trim(),
        )
        .map_err(|_| std::io::Error::other("the pod's host key is not base64"))?;
        let own = self.dir.join(OWN_KEY_DIR);
        if !own.join(KEY_FILE).exists() {
            std::fs::create_dir_all(&own)?;
            copy_key(&self.dir, &own)?;
        }
        let key = self.dir.join(KEY_FILE);
        crate::assets::write_atomically(&key, &private, 0o600)?;
        crate::assets::write_atomically(&public_path(&key), format!("{public}\n").as_bytes(), 0o644)
    }

    fn restore_own(&self) -> std::io::Result<()> {
        restore_own_key(&self.dir)
    }

    /// sshd re-executes itself on SIGHUP (same PID, same port) and reads its host keys again;
    /// open sessions go on. Waits until it answers again.
    async fn reload(&self) {
        let pid = self.sshd_pid.load(Ordering::SeqCst);
        let Some(pid) = i32::try_from(pid)
            .ok()
            .and_then(rustix::process::Pid::from_raw)
        else {
            return;
        };
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::HUP);
        let deadline = tokio::time::Instant::now() + RELOAD_TIMEOUT;
        // The old listener may answer for a moment before the re-executed sshd replaces it.
        tokio::time::sleep(Duration::from_millis(100)).await;
        while tokio::time::Instant::now() < deadline {
            if banner(self.sshd_address).await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tracing::warn!(address = %self.sshd_address, "sshd did not answer after reloading its host key");
    }
}

/// A new key, as an image's start makes one when the container disk is new.
fn fresh_key() -> (String, String) {
    use secrecy::ExposeSecret as _;
    match pod_tunnel::HostKeyPair::generate_ed25519("rpb-local-pod-boot") {
        Ok(pair) => (
            base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                pair.private_key().expose_secret(),
            ),
            pair.public_key().to_owned(),
        ),
        Err(error) => {
            tracing::warn!(%error, "making a fresh host key failed");
            (String::new(), String::new())
        }
    }
}

/// Puts the local pod's own key back in place if a pod's key was left installed (a run that
/// did not shut down); before sshd starts.
pub(super) fn restore_own_key(dir: &Path) -> std::io::Result<()> {
    let own = dir.join(OWN_KEY_DIR);
    if !own.join(KEY_FILE).exists() {
        return Ok(());
    }
    copy_key(&own, dir)?;
    std::fs::remove_dir_all(&own)
}

fn copy_key(from: &Path, to: &Path) -> std::io::Result<()> {
    let key = std::fs::read(from.join(KEY_FILE))?;
    crate::assets::write_atomically(&to.join(KEY_FILE), &key, 0o600)?;
    let public = std::fs::read(public_path(&from.join(KEY_FILE)))?;
    crate::assets::write_atomically(&public_path(&to.join(KEY_FILE)), &public, 0o644)
}

fn public_path(key: &Path) -> PathBuf {
    key.with_extension("pub")
}

async fn banner(address: SocketAddr) -> bool {
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect(address).await.ok()?;
        let mut buffer = [0_u8; 4];
        stream.read_exact(&mut buffer).await.ok()?;
        Some(&buffer == b"SSH-")
    };
    tokio::time::timeout(Duration::from_secs(2), attempt)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}
