//! Pods that move: a pod whose work is on a network volume is disposable. When it cannot start
//! (its host has no free GPU, or it is gone), a new pod on another host of the volume's data
//! center mounts the same volume and takes over; and [`Orchestrator::terminate`] ends such a
//! pod once it is proven that the volume holds the pod root.

use pod_tunnel::shell;
use tokio::time::Instant;

use super::session::{Events, Moved, Session, Step};
use super::{Clock, Orchestrator, close_tunnel};
use crate::seams::{PodSpec, PodStatus, PodView};
use crate::{Error, Result};

/// The `known_hosts` name under which a network volume's host key is pinned as well: the key
/// lives on the volume (rpb's boot hook restores it), so every pod that mounts the volume
/// serves it, whatever its id.
pub(crate) fn volume_alias(volume_id: &str) -> String {
    format!("rpb-volume-{volume_id}")
}

/// Whether a provider error says the pod does not exist (any more).
pub(crate) fn is_gone(error: &Error) -> bool {
    error
        .runpod()
        .and_then(runpod_api::Error::kind)
        .is_some_and(|kind| *kind == runpod_api::ApiErrorKind::NotFound)
}

/// Whether a create failed for want of free GPUs (so another GPU type may succeed).
fn is_no_capacity(error: &Error) -> bool {
    error
        .runpod()
        .and_then(runpod_api::Error::kind)
        .is_some_and(|kind| *kind == runpod_api::ApiErrorKind::NoCapacity)
}

/// What [`Orchestrator::terminate`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Terminated {
    /// The terminated pod.
    pub pod_id: String,
    /// The network volume that keeps the work.
    pub volume_id: String,
    /// Whether the pod root was checked on the running pod (else only the API's mounts were:
    /// the pod was not running).
    pub checked_on_pod: bool,
}

/// Lists what under the pod root is not on the network volume: `disk` when the pod root itself
/// is on the container disk (`$RPB_CONTAINER_DISK`, `/` on a pod), else one `elsewhere <path>`
/// line per file or folder on another file system (a mount inside it, or a symlink out of it),
/// at most 20. Exit 0 with no output: everything is on the volume.
fn volume_check_command(pod_root: &str) -> String {
    let root = shell::quote(pod_root);
    format!(
        "root={root}; disk=\"${{RPB_CONTAINER_DISK:-/}}\"; \
         rdev=$(stat -L -c %d \"$root\") || exit 2; ddev=$(stat -L -c %d \"$disk\") || exit 2; \
         if [ \"$rdev\" = \"$ddev\" ]; then echo disk; exit 0; fi; \
         timeout 120 find -L \"$root/\" -printf '%D %p\\n' 2>/dev/null \
         | awk -v dev=\"$rdev\" '$1 != dev {{ sub(/^[^ ]+ /, \"\"); print \"elsewhere \" $0; \
         if (++n >= 20) exit }}'; exit 0"
    )
}

impl Orchestrator {
    /// Replaces pod `old_id` (which cannot start: `reason`) by a new pod on another host of
    /// network volume `volume_id`'s data center, then brings the session up on it. The old pod
    /// is terminated only after the new one runs the session; when no new pod can be made, or
    /// the new one does not come up, the old pod is left as it was.
    pub(super) async fn move_to_another_host(
        &self,
        old_id: &str,
        old: Option<PodView>,
        volume_id: &str,
        reason: &str,
        clock: &Clock<'_>,
    ) -> Result<Session> {
        clock.emit(
            Step::Move,
            format!(
                "pod {old_id} cannot start ({reason}); its work is on network volume \
                 {volume_id}, so a new pod on another host takes over"
            ),
        );
        let data_center = self.provider.volume_data_center(volume_id).await?;
        let spec = self.replacement_spec(old.as_ref(), volume_id, &data_center);
        let known_key = self
            .known_volume_key(old_id, old.as_ref(), volume_id)
            .await?;
        let (new_pod, tried) = self
            .create_replacement(
                old_id,
                reason,
                volume_id,
                &data_center,
                &spec,
                known_key.as_deref(),
                clock,
            )
            .await?;
        let new_id = new_pod.id.as_str().to_owned();
        let gpu_type = new_pod.gpu_type.clone().unwrap_or_default();
        if let Some(key) = &known_key {
            // Pinned before anything connects: the new pod serves the volume's key.
            let pinned = self.connector.pin_host_key(&new_id, key).await;
            if let Err(error) = pinned {
                return Err(self
                    .abandon_replacement(old_id, old.as_ref(), &new_id, error)
                    .await);
            }
            clock.emit(
                Step::HostKey,
                format!(
                    "pod {new_id} mounts network volume {volume_id}, whose host key is pinned: \
                     {}",
                    fingerprint_of(key)
                ),
            );
        }
        if let Err(error) = self.record_pod_id(&new_id, clock).await {
            return Err(self
                .abandon_replacement(old_id, old.as_ref(), &new_id, error)
                .await);
        }
        let mut session = match self.bring_up(&new_id, true, clock).await {
            Ok(session) => session,
            Err(error) => {
                return Err(self
                    .abandon_replacement(old_id, old.as_ref(), &new_id, error)
                    .await);
            }
        };
        if known_key.is_none()
            && let Ok(Some(key)) = self.connector.pinned_public_key(&new_id).await
        {
            self.pin_volume_alias(volume_id, &key).await;
        }
        // The new pod answers and runs the session: only now does the old one go.
        clock.emit(
            Step::Move,
            format!("pod {new_id} answers and runs Blender on network volume {volume_id}"),
        );
        let old_pod_left = self.retire_old_pod(old_id, old.as_ref(), clock).await;
        clock.emit(
            Step::Move,
            format!("moved from pod {old_id} to pod {new_id} ({gpu_type}, {data_center})"),
        );
        session.moved = Some(Moved {
            from_pod: old_id.to_owned(),
            reason: reason.to_owned(),
            volume_id: volume_id.to_owned(),
            data_center,
            gpu_type,
            tried,
            old_pod_left,
        });
        Ok(session)
    }

    /// Terminates the pod a move replaced (unless it is gone already); returns why that
    /// failed, if it did (the pod is stopped then, and is reported, never replaced again).
    async fn retire_old_pod(
        &self,
        old_id: &str,
        old: Option<&PodView>,
        clock: &Clock<'_>,
    ) -> Option<String> {
        if old.is_none_or(|pod| pod.status == PodStatus::Terminated) {
            return None;
        }
        clock.emit(Step::Terminate, format!("terminating the old pod {old_id}"));
        match self.provider.terminate(old_id).await {
            Ok(()) => {
                clock.emit(Step::Terminate, format!("terminated the old pod {old_id}"));
                None
            }
            Err(error) => {
                let text = error_chain(&error);
                clock.emit(
                    Step::Terminate,
                    format!(
                        "could not terminate the old pod {old_id} ({text}); it is stopped and \
                         bills only its disk: terminate it in the RunPod console"
                    ),
                );
                Some(text)
            }
        }
    }

    /// The new pod: the old pod's image and start command when it is known, else the
    /// configured replacement; mounting the volume at the pod root.
    pub(super) fn replacement_spec(
        &self,
        old: Option<&PodView>,
        volume_id: &str,
        data_center: &str,
    ) -> PodSpec {
        let settings = &self.settings;
        let mut spec = settings
            .replacement
            .clone()
            .unwrap_or_else(|| PodSpec::new("rpb-blender").pod_root(settings.pod_root.clone()));
        let mount_path = old
            .and_then(|pod| pod.network_volume.as_ref())
            .map_or_else(|| settings.pod_root.clone(), |mount| mount.path.clone());
        spec = spec.pod_root(mount_path);
        if let Some(pod) = old {
            spec.name.clone_from(&pod.name);
            if !pod.image.is_empty() {
                spec.image.clone_from(&pod.image);
            }
            if pod.start_command.contains(crate::assets::BOOT_HOOK_MARKER) {
                spec.start_command.clone_from(&pod.start_command);
            }
            if let Some(gpu) = &pod.gpu_type {
                spec.gpu_type.clone_from(gpu);
            }
        }
        spec.host_key = None;
        spec.network_volume(volume_id, data_center)
    }

    /// The host key every pod of the volume serves, as pinned here (for the old pod, or for
    /// the volume), else as the API reports the old pod's.
    async fn known_volume_key(
        &self,
        old_id: &str,
        old: Option<&PodView>,
        volume_id: &str,
    ) -> Result<Option<String>> {
        if let Some(key) = self.connector.pinned_public_key(old_id).await? {
            return Ok(Some(key));
        }
        if let Some(key) = self
            .connector
            .pinned_public_key(&volume_alias(volume_id))
            .await?
        {
            return Ok(Some(key));
        }
        Ok(old.and_then(|pod| pod.host_public_key.clone()))
    }

    /// Tries the allowed GPU types in order, those the catalog shows free in the data center
    /// first; returns the new pod and what was tried before it.
    #[expect(
        clippy::too_many_arguments,
        reason = "one call site, all of it the move's context"
    )]
    async fn create_replacement(
        &self,
        old_id: &str,
        reason: &str,
        volume_id: &str,
        data_center: &str,
        spec: &PodSpec,
        known_key: Option<&str>,
        clock: &Clock<'_>,
    ) -> Result<(PodView, Vec<String>)> {
        let wanted: Vec<String> = if self.settings.gpu_types.is_empty() {
            vec![spec.gpu_type.clone()]
        } else {
            self.settings.gpu_types.clone()
        };
        let available = match self.provider.available_gpu_types(data_center).await {
            Ok(types) => Some(types),
            Err(error) => {
                tracing::warn!(%error, data_center, "reading gpu availability failed; trying every type");
                None
            }
        };
        let is_free = |gpu: &String| available.as_ref().is_none_or(|free| free.contains(gpu));
        let order: Vec<&String> = wanted
            .iter()
            .filter(|gpu| is_free(gpu))
            .chain(wanted.iter().filter(|gpu| !is_free(gpu)))
            .collect();
        let mut tried = Vec::new();
        for gpu in order {
            let mut candidate = spec.clone().gpu_type(gpu.clone());
            candidate.known_host_key = known_key.map(str::to_owned);
            let note = if is_free(gpu) {
                ""
            } else {
                " (the catalog shows none free there)"
            };
            clock.emit(
                Step::CreatePod,
                format!("creating a pod with {gpu} in {data_center}{note}"),
            );
            match self.provider.create(&candidate).await {
                // The provider settled a failed create on the old pod itself (a lookup by
                // name): no new pod can be told to exist, so nothing moves.
                Ok(pod) if pod.id.as_str() == old_id => {
                    return Err(Error::NoReplacement {
                        pod_id: old_id.into(),
                        reason: reason.into(),
                        volume_id: volume_id.into(),
                        data_center: data_center.into(),
                        tried: format!(
                            "creating a pod with {gpu} failed in a way that could not be told \
                             apart from pod {old_id} itself; look for a new pod in the RunPod \
                             console before trying again"
                        ),
                    });
                }
                Ok(pod) => {
                    clock.emit(Step::CreatePod, format!("created pod {}", pod.id));
                    let mut pod = pod;
                    pod.gpu_type.get_or_insert_with(|| gpu.clone());
                    return Ok((pod, tried));
                }
                Err(error) if is_no_capacity(&error) => {
                    clock.emit(Step::CreatePod, format!("no {gpu} free in {data_center}"));
                    tried.push(format!("{gpu}: no free gpu"));
                }
                Err(error) => {
                    return Err(Error::MoveFailed {
                        pod_id: old_id.into(),
                        detail: format!(
                            "creating a pod with {gpu} in {data_center} failed, so pod {old_id} \
                             was left as it was and no new pod runs"
                        ),
                        source: Box::new(error),
                    });
                }
            }
        }
        Err(Error::NoReplacement {
            pod_id: old_id.into(),
            reason: reason.into(),
            volume_id: volume_id.into(),
            data_center: data_center.into(),
            tried: format!("tried {}", tried.join("; ")),
        })
    }

    /// Terminates a replacement that did not come up (the volume keeps the work), and points
    /// the workspace back at the old pod.
    async fn abandon_replacement(
        &self,
        old_id: &str,
        old: Option<&PodView>,
        new_id: &str,
        error: Error,
    ) -> Error {
        let ended = match self.provider.terminate(new_id).await {
            Ok(()) => format!("the new pod {new_id} was terminated"),
            Err(terminate) => {
                tracing::error!(pod_id = new_id, error = %terminate, "terminating a replacement that failed failed too");
                format!(
                    "terminating the new pod {new_id} failed too ({}): terminate it in the \
                     RunPod console",
                    error_chain(&terminate)
                )
            }
        };
        let pointer = if old.is_some_and(|pod| pod.status != PodStatus::Terminated) {
            match self
                .record_pod_id(
                    old_id,
                    &Clock {
                        started: Instant::now(),
                        events: &|_| {},
                    },
                )
                .await
            {
                Ok(()) => format!("; pod {old_id} was left as it was"),
                Err(_) => {
                    format!("; pod {old_id} was left as it was (set RUNPOD_POD_ID={old_id} again)")
                }
            }
        } else {
            String::new()
        };
        Error::MoveFailed {
            pod_id: old_id.into(),
            detail: format!("{ended}{pointer}"),
            source: Box::new(error),
        }
    }

    /// Records `pod_id` as the workspace's pod (`RUNPOD_POD_ID` in the store's `.env`).
    pub(super) async fn record_pod_id(&self, pod_id: &str, clock: &Clock<'_>) -> Result<()> {
        let Some(store) = self.store.clone() else {
            return Ok(());
        };
        let id = pod_id.to_owned();
        let recorded = tokio::task::spawn_blocking(move || {
            store.set_config(project_store::ConfigKey::PodId, &id)
        })
        .await;
        let operation = format!("saving RUNPOD_POD_ID={pod_id} in .env");
        match recorded {
            Ok(Ok(_)) => {
                clock.emit(Step::CreatePod, "saved RUNPOD_POD_ID in .env");
                Ok(())
            }
            Ok(Err(error)) => Err(Error::store(operation)(error)),
            Err(source) => Err(Error::Task { operation, source }),
        }
    }

    /// Pins `key` under the volume's alias too; a failure only costs the fallback, so it is
    /// logged.
    pub(super) async fn pin_volume_alias(&self, volume_id: &str, key: &str) {
        if let Err(error) = self
            .connector
            .pin_host_key(&volume_alias(volume_id), key)
            .await
        {
            tracing::warn!(volume_id, %error, "pinning the network volume's host key failed");
        }
    }

    /// Terminates a pod whose work is on a network volume, after proving it: the API says the
    /// volume is mounted at the pod root, and, when the pod runs, nothing under the pod root is
    /// on the container disk (which terminating deletes). Closes the session's tunnel first.
    ///
    /// # Errors
    ///
    /// [`Error::Refused`] naming what is not on the volume (nothing was terminated), provider
    /// and SSH failures, the stop deadline.
    pub async fn terminate(
        &self,
        pod_id: &str,
        session: Option<Session>,
        events: Events<'_>,
    ) -> Result<Terminated> {
        let clock = Clock {
            started: Instant::now(),
            events,
        };
        close_tunnel(pod_id, session, &clock).await;
        let pod = self.provider.pod(pod_id).await?;
        let operation = format!("terminating pod {pod_id}");
        let Some(mount) = pod.network_volume.clone() else {
            return Err(Error::Refused {
                operation,
                reason: "its work is on its own volume disk, which terminating deletes; stop it \
                         instead (it keeps its disk)"
                    .into(),
            });
        };
        let root = self.settings.pod_root.trim_end_matches('/');
        if mount.path.trim_end_matches('/') != root {
            return Err(Error::Refused {
                operation,
                reason: format!(
                    "network volume {} is mounted at {}, not at the pod root {root}, so the \
                     pod root is on the container disk; stop the pod instead",
                    mount.volume_id, mount.path
                ),
            });
        }
        let checked_on_pod = pod.status == PodStatus::Running;
        if checked_on_pod {
            self.check_volume_holds_root(pod_id, pod, &clock).await?;
        } else {
            clock.emit(
                Step::Terminate,
                format!(
                    "pod {pod_id} is {}: the API says network volume {} is its pod root",
                    pod.status.clone(),
                    mount.volume_id
                ),
            );
        }
        clock.emit(Step::Terminate, format!("terminating pod {pod_id}"));
        self.provider.terminate(pod_id).await?;
        self.wait_gone(pod_id, &clock).await?;
        clock.emit(
            Step::Terminate,
            format!(
                "pod {pod_id} is terminated; network volume {} keeps the work",
                mount.volume_id
            ),
        );
        Ok(Terminated {
            pod_id: pod_id.into(),
            volume_id: mount.volume_id,
            checked_on_pod,
        })
    }

    async fn check_volume_holds_root(
        &self,
        pod_id: &str,
        pod: PodView,
        clock: &Clock<'_>,
    ) -> Result<()> {
        let (_, host) = self.connect(pod_id, pod, clock).await?;
        let root = &self.settings.pod_root;
        let found = self
            .run_checked(
                pod_id,
                host.as_ref(),
                "checking that the network volume holds the pod root",
                &volume_check_command(root),
                None,
                self.settings.session_timeout,
            )
            .await?;
        let problems: Vec<&str> = found
            .lines()
            .filter(|line| !line.trim().is_empty())
            .collect();
        if problems.is_empty() {
            clock.emit(
                Step::Terminate,
                format!("everything under {root} is on the network volume"),
            );
            return Ok(());
        }
        let reason = if problems.first() == Some(&"disk") {
            format!(
                "{root} is on the container disk, which terminating deletes; stop the pod instead"
            )
        } else {
            let paths: Vec<&str> = problems
                .iter()
                .filter_map(|line| line.strip_prefix("elsewhere "))
                .collect();
            format!(
                "these are under {root} but not on the network volume, so terminating would \
                 delete them: {}; move them onto the volume, or stop the pod instead",
                paths.join(", ")
            )
        };
        Err(Error::Refused {
            operation: format!("terminating pod {pod_id}"),
            reason,
        })
    }

    /// Waits until the pod is terminated (or no longer exists).
    async fn wait_gone(&self, pod_id: &str, clock: &Clock<'_>) -> Result<()> {
        let deadline = Instant::now() + self.settings.stop_timeout;
        let mut interval = self.settings.poll_interval;
        loop {
            match self.provider.pod(pod_id).await {
                Ok(pod) if pod.status == PodStatus::Terminated => return Ok(()),
                Err(error) if is_gone(&error) => return Ok(()),
                Err(error) => return Err(error),
                Ok(pod) if Instant::now() >= deadline => {
                    return Err(Error::NotReady {
                        pod_id: pod_id.into(),
                        wanted: "terminated",
                        waited: self.settings.stop_timeout,
                        last_status: pod.status,
                    });
                }
                Ok(pod) => {
                    clock.emit(Step::Terminate, format!("pod {pod_id} is {}", pod.status));
                }
            }
            tokio::time::sleep(interval).await;
            interval = interval.mul_f64(1.5).min(std::time::Duration::from_secs(5));
        }
    }
}

fn fingerprint_of(public_key: &str) -> String {
    pod_tunnel::parse_public_key(public_key).map_or_else(
        || "(unreadable)".to_owned(),
        |(_, blob)| pod_tunnel::fingerprint(&blob),
    )
}

/// An error with its causes, on one line.
fn error_chain(error: &Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(root: &std::path::Path, disk: &std::path::Path) -> String {
        let output = std::process::Command::new("bash")
            .arg("-c")
            .arg(volume_check_command(&root.display().to_string()))
            .env("RPB_CONTAINER_DISK", disk)
            .output()
            .expect("bash runs");
        assert!(output.status.success(), "{output:?}");
        String::from_utf8(output.stdout).expect("utf-8")
    }

    #[test]
    fn the_volume_check_tells_a_root_on_the_container_disk_and_files_elsewhere() {
        let disk = tempfile::tempdir().expect("tempdir");
        // The same file system as the "container disk": refused as a whole.
        let root = disk.path().join("root");
        std::fs::create_dir(&root).expect("mkdir");
        assert_eq!(check(&root, disk.path()).trim(), "disk");
        // Another file system (the tmpfs at /dev/shm stands for the volume): all there.
        let volume = tempfile::tempdir_in("/dev/shm").expect("a tmpfs at /dev/shm");
        std::fs::write(volume.path().join("scene.blend"), b"x").expect("write");
        assert_eq!(check(volume.path(), disk.path()), "");
        // A symlink out of it leads to the container disk: named.
        std::os::unix::fs::symlink(disk.path(), volume.path().join("out")).expect("symlink");
        let found = check(volume.path(), disk.path());
        assert!(
            found
                .lines()
                .any(|line| line == format!("elsewhere {}/out", volume.path().display())),
            "{found}"
        );
        assert!(!found.contains("scene.blend"), "{found}");
    }
}
