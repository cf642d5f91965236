//! Moving a pod's work from its own volume disk onto a network volume: the old pod runs (as soon
//! as its host has a GPU), its pod root comes to this machine, a new pod on the volume gets it,
//! and every file is checked by SHA-256 on both pods before the workspace switches over.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use pod_tunnel::shell;
use tokio::time::Instant;

use super::session::{Events, Step};
use super::{Clock, Orchestrator};
use crate::seams::{PodStatus, RemoteHost};
use crate::{Error, Result};

/// Folders under the pod root that are not copied: the session's PID files and locks, the
/// pod's own persisted host keys (the new pod keeps its own, which is pinned), and staging.
const NOT_COPIED: [&str; 3] = ["rpb/run", "rpb/ssh-host-keys", "rpb/staging"];

/// What [`Orchestrator::migrate_to_volume`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Migrated {
    /// The pod whose work was copied; stopped, kept as it was (its volume disk still bills).
    pub from_pod: String,
    /// The new pod on the volume, set up and stopped; the workspace's pod from now on.
    pub to_pod: String,
    /// The network volume.
    pub volume_id: String,
    /// Its data center.
    pub data_center: String,
    /// Regular files copied and verified.
    pub files: usize,
    /// Their bytes.
    pub bytes: u64,
    /// Symbolic links recreated.
    pub links: usize,
}

/// What the old pod's pod root holds: one `sha256sum` line per regular file, its symlinks,
/// and its size.
struct Inventory {
    physical_root: String,
    sums: BTreeSet<String>,
    links: Vec<u8>,
    bytes: u64,
}

/// `find` over the pod root without the folders that are not copied.
fn find_prefix() -> String {
    let prunes: Vec<String> = NOT_COPIED
        .iter()
        .map(|dir| format!("-path ./{dir}"))
        .collect();
    format!("find . \\( {} \\) -prune -o", prunes.join(" -o "))
}

/// Prints the physical pod root, then a line with the total bytes, then the `sha256sum` lines,
/// sorted by name (bytewise).
fn inventory_command(pod_root: &str) -> String {
    let find = find_prefix();
    format!(
        "cd {} && pwd -P && {find} -type f -printf '%s\\n' | awk '{{s += $1}} END {{print s + 0}}' \
         && {find} -type f -print0 | LC_ALL=C sort -z | xargs -0r sha256sum --",
        shell::quote(pod_root)
    )
}

/// Prints each symbolic link as `path NUL target NUL`.
fn links_command(pod_root: &str) -> String {
    format!(
        "cd {} && {} -type l -printf '%p\\0%l\\0'",
        shell::quote(pod_root),
        find_prefix()
    )
}

/// Recreates the links read on standard input (as [`links_command`] prints them).
fn relink_command(pod_root: &str) -> String {
    format!(
        "cd {} && while IFS= read -r -d '' path && IFS= read -r -d '' target; do \
         mkdir -p -- \"$(dirname -- \"$path\")\" && ln -sfn -- \"$target\" \"$path\" || exit 1; done",
        shell::quote(pod_root)
    )
}

impl Orchestrator {
    /// Moves pod `pod_id`'s work onto network volume `volume_id`: starts the pod if needed
    /// (waiting for a GPU per the settings), stops its session, copies its pod root through
    /// `staging` (a local folder with room for it), creates a pod on the volume (registering
    /// `public_key`), uploads, recreates symbolic links, and compares the SHA-256 of every file
    /// on both pods. Then the workspace's pod is the new one (`RUNPOD_POD_ID`) and its volume
    /// `RUNPOD_NETWORK_VOLUME_ID`; both pods are left stopped. When a step fails, the new pod
    /// is terminated, the workspace still names the old pod, and nothing on it changed.
    ///
    /// # Errors
    ///
    /// [`Error::Refused`] for a pod already on a network volume or whose volume is not at the
    /// pod root; [`Error::MoveFailed`] naming the step, and what happened to both pods.
    pub async fn migrate_to_volume(
        &self,
        pod_id: &str,
        volume_id: &str,
        public_key: &str,
        staging: &Path,
        events: Events<'_>,
    ) -> Result<Migrated> {
        let clock = Clock {
            started: Instant::now(),
            events,
        };
        let old = self.provider.pod(pod_id).await?;
        let root = self.settings.pod_root.trim_end_matches('/').to_owned();
        check_migratable(&old, pod_id, volume_id, &root)?;
        let data_center = self.provider.volume_data_center(volume_id).await?;
        clock.emit(
            Step::Move,
            format!(
                "copying pod {pod_id}'s {root} onto network volume {volume_id} ({data_center}) \
                 through this machine"
            ),
        );
        if matches!(old.status, PodStatus::Exited | PodStatus::Error) {
            self.start_pod(pod_id, &clock).await?;
        }
        let tree = staging.join("pod-root");
        let copied = self.copy_out(pod_id, &root, &tree, &clock).await;
        // The old pod has done its part (or failed to): it stops, and keeps its disk.
        clock.emit(Step::StopPod, format!("stopping pod {pod_id}"));
        if let Err(error) = self.provider.stop(pod_id).await {
            tracing::warn!(pod_id, %error, "stopping the old pod after copying failed");
        }
        let inventory = copied.map_err(|error| Error::MoveFailed {
            pod_id: pod_id.into(),
            detail: "reading its pod root failed; nothing was created and the pod is stopped"
                .into(),
            source: Box::new(error),
        })?;
        let new_id = self
            .create_on_volume(&old, volume_id, &data_center, public_key, events)
            .await
            .map_err(|error| Error::MoveFailed {
                pod_id: pod_id.into(),
                detail: "the pod on the network volume did not come up; the workspace still \
                         names the old pod, which is stopped"
                    .into(),
                source: Box::new(error),
            })?;
        let copied_in = self
            .copy_in(&new_id, &root, &tree, &inventory, &clock)
            .await;
        let links = match copied_in {
            Ok(links) => links,
            Err(error) => {
                return Err(self.undo_migration(pod_id, &new_id, error).await);
            }
        };
        if let Err(error) = self.record_volume_id(volume_id).await {
            return Err(self.undo_migration(pod_id, &new_id, error).await);
        }
        clock.emit(Step::StopPod, format!("stopping pod {new_id}"));
        if let Err(error) = self.provider.stop(&new_id).await {
            tracing::warn!(pod_id = new_id, %error, "stopping the new pod after the copy failed");
        }
        let _ = std::fs::remove_dir_all(&tree);
        clock.emit(
            Step::Move,
            format!(
                "pod {new_id} on network volume {volume_id} holds all {} files of pod {pod_id}, \
                 each checked by SHA-256",
                inventory.sums.len()
            ),
        );
        Ok(Migrated {
            from_pod: pod_id.into(),
            to_pod: new_id,
            volume_id: volume_id.into(),
            data_center,
            files: inventory.sums.len(),
            bytes: inventory.bytes,
            links,
        })
    }

    /// Records `volume_id` as the workspace's network volume (`RUNPOD_NETWORK_VOLUME_ID`).
    async fn record_volume_id(&self, volume_id: &str) -> Result<()> {
        let Some(store) = self.store.clone() else {
            return Ok(());
        };
        let volume = volume_id.to_owned();
        let operation = format!("saving RUNPOD_NETWORK_VOLUME_ID={volume_id} in .env");
        match tokio::task::spawn_blocking(move || {
            store.set_config(project_store::ConfigKey::NetworkVolumeId, &volume)
        })
        .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error)) => Err(Error::store(operation)(error)),
            Err(source) => Err(Error::Task { operation, source }),
        }
    }

    /// Reads the pod root's inventory on the running old pod (after stopping its session, so
    /// nothing changes under it) and downloads it into `tree`.
    async fn copy_out(
        &self,
        pod_id: &str,
        root: &str,
        tree: &Path,
        clock: &Clock<'_>,
    ) -> Result<Inventory> {
        let pod = self.wait_running(pod_id, clock).await?;
        let (_, host) = self.connect(pod_id, pod, clock).await?;
        clock.emit(
            Step::Session,
            "stopping blender so that nothing changes while copying",
        );
        self.run_checked(
            pod_id,
            host.as_ref(),
            "stopping the session",
            &format!("{} stop", self.settings.session_script()),
            None,
            self.settings.session_timeout,
        )
        .await?;
        let inventory = self.inventory(pod_id, host.as_ref(), root).await?;
        clock.emit(
            Step::Transfer,
            format!(
                "downloading {} files ({} bytes) of pod {pod_id}",
                inventory.sums.len(),
                inventory.bytes
            ),
        );
        if tree.exists() {
            std::fs::remove_dir_all(tree).map_err(|source| Error::Io {
                operation: "clear the staging folder",
                path: tree.to_path_buf(),
                source,
            })?;
        }
        host.download(&inventory.physical_root, tree, None).await?;
        for dir in NOT_COPIED {
            let _ = std::fs::remove_dir_all(tree.join(dir));
        }
        Ok(inventory)
    }

    async fn inventory(
        &self,
        pod_id: &str,
        host: &dyn RemoteHost,
        root: &str,
    ) -> Result<Inventory> {
        let listed = self
            .run_checked(
                pod_id,
                host,
                "listing the pod root with SHA-256",
                &inventory_command(root),
                None,
                self.settings.setup_timeout,
            )
            .await?;
        let mut rows = listed.lines();
        let physical_root = rows.next().unwrap_or_default().to_owned();
        let bytes = rows
            .next()
            .and_then(|line| line.trim().parse().ok())
            .unwrap_or_default();
        let sums = rows.map(str::to_owned).collect();
        let links = host
            .run(&links_command(root), None, self.settings.session_timeout)
            .await?;
        Ok(Inventory {
            physical_root,
            sums,
            links: links.stdout.into_bytes(),
            bytes,
        })
    }

    /// Creates the pod on the volume with the old pod's image and the first allowed GPU type
    /// the catalog shows free in the data center; set up, pinned and recorded by `create`.
    async fn create_on_volume(
        &self,
        old: &crate::seams::PodView,
        volume_id: &str,
        data_center: &str,
        public_key: &str,
        events: Events<'_>,
    ) -> Result<String> {
        let mut spec = self.replacement_spec(Some(old), volume_id, data_center);
        let wanted: Vec<String> = if self.settings.gpu_types.is_empty() {
            vec![spec.gpu_type.clone()]
        } else {
            self.settings.gpu_types.clone()
        };
        let free = self
            .provider
            .available_gpu_types(data_center)
            .await
            .unwrap_or_default();
        if let Some(gpu) = wanted
            .iter()
            .find(|gpu| free.contains(gpu))
            .or(wanted.first())
        {
            spec.gpu_type.clone_from(gpu);
        }
        let pod = self.create(&spec, public_key, events).await?;
        Ok(pod.id.as_str().to_owned())
    }

    /// Uploads the tree into the new pod's pod root, recreates the links, and checks every
    /// file's SHA-256 there against the old pod's. Returns how many links were made.
    async fn copy_in(
        &self,
        new_id: &str,
        root: &str,
        tree: &Path,
        old: &Inventory,
        clock: &Clock<'_>,
    ) -> Result<usize> {
        let pod = self.wait_running(new_id, clock).await?;
        let (_, host) = self.connect(new_id, pod, clock).await?;
        self.run_checked(
            new_id,
            host.as_ref(),
            "stopping the new pod's session",
            &format!("{} stop", self.settings.session_script()),
            None,
            self.settings.session_timeout,
        )
        .await?;
        let physical = self
            .run_checked(
                new_id,
                host.as_ref(),
                "finding the pod root",
                &format!("cd {} && pwd -P", shell::quote(root)),
                None,
                self.settings.session_timeout,
            )
            .await?;
        clock.emit(
            Step::Transfer,
            format!("uploading {} files to pod {new_id}", old.sums.len()),
        );
        if tree.is_dir() {
            host.upload(tree, physical.trim(), None).await?;
        }
        if !old.links.is_empty() {
            self.run_checked(
                new_id,
                host.as_ref(),
                "recreating symbolic links",
                &relink_command(root),
                Some(old.links.clone()),
                self.settings.session_timeout,
            )
            .await?;
        }
        clock.emit(
            Step::Transfer,
            "checking every file's SHA-256 on the new pod",
        );
        let now = self.inventory(new_id, host.as_ref(), root).await?;
        let missing: Vec<&String> = old.sums.difference(&now.sums).collect();
        let old_links = link_set(&old.links);
        let links_missing = old_links.difference(&link_set(&now.links)).count();
        if missing.is_empty() && links_missing == 0 {
            return Ok(old_links.len());
        }
        let shown: Vec<&str> = missing
            .iter()
            .take(5)
            .map(|line| {
                line.split_once("  ")
                    .map_or(line.as_str(), |(_, path)| path)
            })
            .collect();
        Err(Error::CopyMismatch {
            pod_id: new_id.into(),
            detail: format!(
                "{} file(s) differ or are missing{}; {links_missing} symbolic link(s) missing",
                missing.len(),
                if shown.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", shown.join(", "))
                },
            ),
        })
    }

    /// Terminates the new pod of a migration that failed and points the workspace back at
    /// the old one.
    async fn undo_migration(&self, old_id: &str, new_id: &str, error: Error) -> Error {
        let ended = match self.provider.terminate(new_id).await {
            Ok(()) => format!("the new pod {new_id} was terminated"),
            Err(terminate) => format!(
                "terminating the new pod {new_id} failed too ({terminate}): terminate it in the \
                 RunPod console"
            ),
        };
        let clock = Clock {
            started: Instant::now(),
            events: &|_| {},
        };
        let pointer = match self.record_pod_id(old_id, &clock).await {
            Ok(()) => String::new(),
            Err(_) => format!(" (set RUNPOD_POD_ID={old_id} again)"),
        };
        Error::MoveFailed {
            pod_id: old_id.into(),
            detail: format!(
                "{ended}; the workspace names pod {old_id} again{pointer}, which is stopped and \
                 unchanged"
            ),
            source: Box::new(error),
        }
    }
}

/// Refuses a pod whose work is not on a volume disk at the pod root.
fn check_migratable(
    old: &crate::seams::PodView,
    pod_id: &str,
    volume_id: &str,
    root: &str,
) -> Result<()> {
    let refuse = |reason: String| Error::Refused {
        operation: format!("moving pod {pod_id} onto network volume {volume_id}"),
        reason,
    };
    if let Some(mount) = &old.network_volume {
        return Err(refuse(format!(
            "it already keeps its work on network volume {}",
            mount.volume_id
        )));
    }
    if old.status == PodStatus::Terminated {
        return Err(refuse(
            "the pod was terminated: its volume disk is gone".into(),
        ));
    }
    if old
        .volume_path
        .as_deref()
        .map(|path| path.trim_end_matches('/'))
        != Some(root)
    {
        return Err(refuse(format!(
            "its volume is at {}, not at the pod root {root}; set RPB_POD_ROOT to its volume \
             path first",
            old.volume_path.as_deref().unwrap_or("(none)")
        )));
    }
    Ok(())
}

/// The `(path, target)` pairs of [`links_command`]'s output.
fn link_set(listed: &[u8]) -> BTreeSet<(Vec<u8>, Vec<u8>)> {
    let parts: Vec<&[u8]> = listed.split(|byte| *byte == 0).collect();
    parts
        .chunks_exact(2)
        .map(|pair| (pair[0].to_vec(), pair[1].to_vec()))
        .collect()
}

/// Where a migration stages the pod root: a private folder under `base`.
///
/// # Errors
///
/// [`Error::Io`] when it cannot be made.
pub fn staging_dir(base: &Path) -> Result<PathBuf> {
    let dir = base.join(format!("migrate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
        operation: "create the staging folder",
        path: dir.clone(),
        source,
    })?;
    Ok(dir)
}
