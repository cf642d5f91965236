//! Adopting a pod rpb did not create (made by the original scripts or in the RunPod console):
//! its start command gets rpb's boot hook, so its SSH host key survives restarts and the pin
//! keeps verifying it; and the way back.

use std::path::PathBuf;
use std::time::Duration;

use pod_tunnel::shell;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::session::{Events, Step};
use super::{Clock, Orchestrator};
use crate::assets::{BOOT_HOOK_MARKER, boot_command_with_fallback};
use crate::seams::{PodStatus, RemoteHost};
use crate::{Error, Result};

/// How `adopt` finds the pod root and the command that runs after the hook.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct AdoptOptions {
    /// Take the pod's own volume path as the pod root when it differs from the settings' (a
    /// console pod's `/workspace`). Leave it off when the pod root was given explicitly.
    pub detect_pod_root: bool,
    /// What the pod runs after the hook when it has no start command of its own and its image
    /// is not RunPod's (whose images start from `/start.sh`).
    pub fallback: Option<String>,
}

impl AdoptOptions {
    /// Detects the pod root, no explicit fallback.
    pub fn new() -> Self {
        Self {
            detect_pod_root: true,
            fallback: None,
        }
    }
}

/// What `adopt` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AdoptReport {
    /// The pod.
    pub pod_id: String,
    /// The pod root used (the volume's mount path).
    pub pod_root: String,
    /// The pod's start command before (empty: the image's own).
    pub previous_start_command: String,
    /// The start command now.
    pub start_command: String,
    /// The host key persisted on the volume (the one this connection verified).
    pub host_key: Option<String>,
    /// The pod already ran rpb's boot hook: nothing was changed.
    pub already_adopted: bool,
    /// Where the previous start command is recorded for `undo_adopt`.
    pub record: Option<PathBuf>,
}

/// The record `undo_adopt` reads.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct AdoptRecord {
    pod_id: String,
    previous_start_command: String,
    pod_root: String,
}

impl Orchestrator {
    /// Adopts a running pod rpb did not create: verifies its host key (a first contact is
    /// trusted aloud, strictly afterwards), runs setup, persists the host key this connection
    /// verified on the volume, records the previous start command, and changes the start command
    /// to the boot hook followed by the pod's own command (which also runs alone when the
    /// volume has lost the hook). From the next start on, the pod keeps its host key. Idempotent:
    /// a pod that already runs the hook is left as it is.
    ///
    /// # Errors
    ///
    /// [`Error::PodFailed`] when the pod is not running; [`Error::Settings`] when it has no
    /// volume, or when neither its own start command nor its image tells what to run after the
    /// hook (pass [`AdoptOptions::fallback`]); SSH, setup and provider failures.
    pub async fn adopt(
        &self,
        pod_id: &str,
        options: &AdoptOptions,
        events: Events<'_>,
    ) -> Result<AdoptReport> {
        let clock = Clock {
            started: Instant::now(),
            events,
        };
        check_pod_id(pod_id)?;
        let pod = self.provider.pod(pod_id).await?;
        if pod.status != PodStatus::Running {
            return Err(Error::PodFailed {
                pod_id: pod_id.into(),
                status: pod.status.to_string(),
                wanted: "running",
                hint: "start it first (`rpb start` works on it as it is), then adopt it",
            });
        }
        let Some(volume_path) = pod.volume_path.clone() else {
            return Err(Error::Settings(format!(
                "pod {pod_id} has no persistent volume; rpb's boot hook and the pod's host key \
                 live on it, so only a pod with a volume can be adopted"
            )));
        };
        let previous = pod.start_command.clone();
        let mut pod_root = self.settings.pod_root.clone();
        if options.detect_pod_root && volume_path.trim_end_matches('/') != pod_root {
            clock.emit(
                Step::Setup,
                format!(
                    "the pod's volume is at {volume_path}, not {pod_root}: using it as the pod \
                     root (set RPB_POD_ROOT={volume_path} for the other commands)"
                ),
            );
            pod_root = volume_path.trim_end_matches('/').to_owned();
        }
        if previous.contains(BOOT_HOOK_MARKER) {
            clock.emit(
                Step::Setup,
                format!("pod {pod_id} already runs rpb's boot hook"),
            );
            return Ok(AdoptReport {
                pod_id: pod_id.into(),
                pod_root,
                start_command: previous.clone(),
                previous_start_command: previous,
                host_key: None,
                already_adopted: true,
                record: None,
            });
        }
        let fallback = fallback_for(pod_id, &pod, options)?;

        let mut settings = self.settings.clone();
        settings.pod_root.clone_from(&pod_root);
        let this = Orchestrator {
            provider: self.provider.clone(),
            connector: self.connector.clone(),
            settings,
            store: self.store.clone(),
        };
        let (_, host) = this.connect(pod_id, pod.clone(), &clock).await?;
        this.ensure_setup(pod_id, host.as_ref(), &clock).await?;
        let host_key = this.persist_host_key(pod_id, host.as_ref(), &clock).await?;

        let start_command = boot_command_with_fallback(&pod_root, fallback.as_deref());
        let record = match &self.store {
            Some(store) => Some(write_record(
                store,
                &AdoptRecord {
                    pod_id: pod_id.into(),
                    previous_start_command: previous.clone(),
                    pod_root: pod_root.clone(),
                },
            )?),
            None => None,
        };
        self.provider
            .set_start_command(pod_id, &start_command)
            .await?;
        clock.emit(
            Step::Setup,
            format!(
                "pod {pod_id} now starts through rpb's boot hook (from its next start), then {}",
                fallback.as_deref().unwrap_or("/start.sh")
            ),
        );
        Ok(AdoptReport {
            pod_id: pod_id.into(),
            pod_root,
            previous_start_command: previous,
            start_command,
            host_key,
            already_adopted: false,
            record,
        })
    }

    /// Gives an adopted pod its previous start command back (from the record `adopt` wrote in
    /// the workspace); it takes effect at the next start. Returns the restored command.
    ///
    /// # Errors
    ///
    /// [`Error::Settings`] when this workspace holds no record for the pod; provider failures.
    pub async fn undo_adopt(&self, pod_id: &str, events: Events<'_>) -> Result<String> {
        let clock = Clock {
            started: Instant::now(),
            events,
        };
        check_pod_id(pod_id)?;
        let Some(store) = &self.store else {
            return Err(Error::Settings(
                "undoing an adoption needs the workspace that adopted the pod".into(),
            ));
        };
        let path = record_path(store, pod_id);
        let text = std::fs::read_to_string(&path).map_err(|_| {
            Error::Settings(format!(
                "no adoption of pod {pod_id} is recorded in {}; set its start command back in \
                 the RunPod console",
                path.display()
            ))
        })?;
        let record: AdoptRecord = serde_json::from_str(&text).map_err(|error| {
            Error::Settings(format!(
                "the adoption record {} is unreadable: {error}",
                path.display()
            ))
        })?;
        self.provider
            .set_start_command(pod_id, &record.previous_start_command)
            .await?;
        std::fs::remove_file(&path).map_err(|source| Error::Io {
            operation: "remove",
            path: path.clone(),
            source,
        })?;
        clock.emit(
            Step::Setup,
            format!(
                "pod {pod_id} starts with its previous command again (from its next start): {}",
                if record.previous_start_command.is_empty() {
                    "the image's own"
                } else {
                    record.previous_start_command.as_str()
                }
            ),
        );
        Ok(record.previous_start_command)
    }

    /// Copies the pod's current SSH host keys (the ones this connection verified) to the
    /// volume, where the boot hook restores them from; returns the ed25519 key's fingerprint.
    async fn persist_host_key(
        &self,
        pod_id: &str,
        host: &dyn RemoteHost,
        clock: &Clock<'_>,
    ) -> Result<Option<String>> {
        let keys = shell::quote(&format!("{}/ssh-host-keys", self.settings.rpb_home()));
        let script = format!(
            "set -e; umask 077; src=${{RPB_SSH_DIR:-/etc/ssh}}; mkdir -p {keys}; \
             for key in \"$src\"/ssh_host_*_key; do [ -f \"$key\" ] || continue; \
             name=${{key##*/}}; cp -f \"$key\" {keys}/.rpb-new && mv -f {keys}/.rpb-new {keys}/\"$name\"; \
             if [ -f \"$key.pub\" ]; then cp -f \"$key.pub\" {keys}/.rpb-new && chmod 0644 {keys}/.rpb-new \
             && mv -f {keys}/.rpb-new {keys}/\"$name.pub\"; fi; done; \
             cat {keys}/ssh_host_ed25519_key.pub 2>/dev/null || true"
        );
        let stdout = self
            .run_checked(
                pod_id,
                host,
                "persisting the host keys on the volume",
                &format!(
                    "{} bash -c {}",
                    self.settings.env_prefix(),
                    shell::quote(&script)
                ),
                None,
                Duration::from_secs(30),
            )
            .await?;
        let fingerprint = pod_tunnel::parse_public_key(stdout.trim())
            .map(|(_, blob)| pod_tunnel::fingerprint(&blob));
        let pinned = self.connector.pinned_host_key(pod_id).await?;
        match (&fingerprint, &pinned) {
            (Some(persisted), Some(pinned)) if persisted != pinned => {
                return Err(Error::Settings(format!(
                    "pod {pod_id}'s ed25519 host key on disk ({persisted}) is not the pinned one \
                     ({pinned}); the pod's keys changed under this connection, nothing was adopted"
                )));
            }
            _ => {}
        }
        clock.emit(
            Step::HostKey,
            format!(
                "persisted pod {pod_id}'s host key {} on its volume; the boot hook restores it \
                 at every start",
                fingerprint.as_deref().unwrap_or("(no ed25519 key)")
            ),
        );
        Ok(fingerprint)
    }
}

/// What the pod runs after the hook: the given fallback, else its own start command, else
/// (none of its own) `/start.sh` for RunPod's images (`None`).
fn fallback_for(
    pod_id: &str,
    pod: &crate::seams::PodView,
    options: &AdoptOptions,
) -> Result<Option<String>> {
    match (pod.start_command.trim(), &options.fallback) {
        (_, Some(given)) => Ok(Some(given.clone())),
        ("", None) if pod.image.starts_with("runpod/") => Ok(None),
        ("", None) => Err(Error::Settings(format!(
            "pod {pod_id} has no start command of its own and its image {} is not RunPod's, so \
             rpb does not know what it must run after the boot hook; pass the image's start \
             command as the fallback",
            pod.image
        ))),
        (own, None) => Ok(Some(own.to_owned())),
    }
}

/// Pod ids name files here: letters, digits, `-` and `_` only.
fn check_pod_id(pod_id: &str) -> Result<()> {
    if !pod_id.is_empty()
        && pod_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        Ok(())
    } else {
        Err(Error::Settings(format!(
            "{pod_id:?} is not a pod id (letters, digits, - and _ only)"
        )))
    }
}

fn record_path(store: &project_store::Store, pod_id: &str) -> PathBuf {
    store
        .state_dir()
        .join("adopted")
        .join(format!("{pod_id}.json"))
}

fn write_record(store: &project_store::Store, record: &AdoptRecord) -> Result<PathBuf> {
    let path = record_path(store, &record.pod_id);
    let io = |source| Error::Io {
        operation: "write",
        path: path.clone(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
            .create(dir)
            .map_err(io)?;
    }
    crate::daemon::write_private_json(&path, record)?;
    Ok(path)
}
