//! Files between this machine and the pod on the [`Orchestrator`]: saving the open scene as a
//! project version, opening a version on the pod, uploading versions, and plain push and pull.

use std::path::Path;
use std::time::Duration;

use super::session::Session;
use super::{Orchestrator, create_dir};
use crate::seams::{ProgressFn, Transferred};
use crate::{Error, Result};
use pod_tunnel::shell;

/// A `.blend` file in a project folder on the pod (`<pod root>/projects/<project>/<file>`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[non_exhaustive]
pub struct RemoteBlend {
    /// The project folder's name (as it is on the pod; it may not be a valid local name).
    pub project: String,
    /// The file's name.
    pub file: String,
    /// Its path relative to the pod root (what `pull` takes).
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, seconds since the Unix epoch.
    pub modified: f64,
}

impl Orchestrator {
    /// The `.blend` files under the pod root's `projects/<project>/` folders (what the original
    /// workflow saved there, or `save` did), sorted by path. Files with a tab or newline in
    /// their path are skipped (they cannot be listed safely).
    ///
    /// # Errors
    ///
    /// SSH failures, and a listing the pod could not make.
    pub async fn remote_blends(&self, session: &Session) -> Result<Vec<RemoteBlend>> {
        let root = self.settings.pod_root.trim_end_matches('/');
        let projects = format!("{root}/projects");
        let command = format!(
            "[ -d {dir} ] || exit 0; find {dir} -mindepth 2 -maxdepth 2 -type f -name '*.blend' \
             -printf '%P\\t%s\\t%T@\\n'",
            dir = shell::quote(&projects)
        );
        let listing = self
            .run_checked(
                &session.pod_id,
                session.host.as_ref(),
                "listing the project files on the pod",
                &command,
                None,
                Duration::from_secs(60),
            )
            .await?;
        let mut found: Vec<RemoteBlend> = listing
            .lines()
            .filter_map(|line| {
                let mut fields = line.split('\t');
                let relative = fields.next()?;
                let size = fields.next()?.parse().ok()?;
                let modified = fields.next()?.parse().ok()?;
                if fields.next().is_some() {
                    return None;
                }
                let (project, file) = relative.split_once('/')?;
                Some(RemoteBlend {
                    project: project.to_owned(),
                    file: file.to_owned(),
                    path: format!("projects/{relative}"),
                    size,
                    modified,
                })
            })
            .collect();
        found.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(found)
    }

    pub(crate) fn remote_project_dir(&self, project: &project_store::ProjectName) -> String {
        format!(
            "{}/projects/{project}",
            self.settings.pod_root.trim_end_matches('/')
        )
    }

    /// Saves the open scene on the pod as `<pod root>/projects/<project>/<name>.blend`, then
    /// downloads it into the local project as a new version (hash verified, manifest updated).
    ///
    /// # Errors
    ///
    /// MCP, transfer and store failures; nothing partial is left in the project.
    pub async fn save(
        &self,
        session: &Session,
        store: &project_store::Store,
        project: &project_store::ProjectName,
        name: &str,
    ) -> Result<project_store::FileEntry> {
        // Checked before the name goes into any path here or on the pod (`../..` never does).
        project_store::project::validate_name(name).map_err(|source| Error::Store {
            operation: format!("saving the scene of pod {} as {name:?}", session.pod_id),
            source: project_store::Error::InvalidStem {
                stem: name.to_owned(),
                source,
            },
        })?;
        let remote = format!("{}/{name}.blend", self.remote_project_dir(project));
        let mut client = session.mcp().await?;
        client.save_blend(&remote).await?;
        let local_dir = store
            .projects_dir()
            .join(project.as_str())
            .join(".rpb-incoming");
        let temp = local_dir.join(format!("{name}.blend.download"));
        create_dir(&local_dir)?;
        let transferred = session.host.download(&remote, &temp, None).await;
        let result = match transferred {
            Ok(transferred) => store
                .save_version(project, name)
                .source(project_store::Source::pod(&session.pod_id, &remote))
                .expected_sha256(transferred.sha256)
                .copy_from_file(&temp)
                .map_err(Error::store(format!(
                    "saving {remote} from pod {} as version {name} of project {project}",
                    session.pod_id
                ))),
            Err(error) => Err(error),
        };
        let _ = std::fs::remove_file(&temp);
        let _ = std::fs::remove_dir(&local_dir);
        result
    }

    /// Opens a local version (`latest`, a file name or a stem) in Blender on the pod, uploading
    /// it first when the pod lacks it or holds a different file; a `.blend` file name that is
    /// no local version but is in the pod's project folder opens there. Returns the remote
    /// path.
    ///
    /// # Errors
    ///
    /// Store, transfer and MCP failures.
    pub async fn open(
        &self,
        session: &Session,
        store: &project_store::Store,
        project: &project_store::ProjectName,
        version: &str,
    ) -> Result<String> {
        let remote = match self.upload_version(session, store, project, version).await {
            Ok((remote, _)) => remote,
            // Not a local version: a `.blend` only on the pod (made there, or by the original
            // scripts) opens where it is.
            Err(Error::Store {
                source: project_store::Error::VersionNotFound { .. },
                ..
            }) if self.remote_blend_exists(session, project, version).await? => {
                format!("{}/{version}", self.remote_project_dir(project))
            }
            Err(error) => return Err(error),
        };
        let mut client = session.mcp().await?;
        client.open_blend(&remote).await?;
        Ok(remote)
    }

    /// Whether `name` (a plain `.blend` file name) is a file in the pod's folder of `project`.
    async fn remote_blend_exists(
        &self,
        session: &Session,
        project: &project_store::ProjectName,
        name: &str,
    ) -> Result<bool> {
        let plain = !name.is_empty()
            && !name.contains('/')
            && !name.starts_with('.')
            && std::path::Path::new(name)
                .extension()
                .is_some_and(|extension| extension.eq_ignore_ascii_case("blend"));
        if !plain {
            return Ok(false);
        }
        let remote = format!("{}/{name}", self.remote_project_dir(project));
        let check = session
            .host
            .run(
                &format!("test -f {}", shell::quote(&remote)),
                None,
                Duration::from_secs(60),
            )
            .await?;
        Ok(check.success())
    }

    /// Uploads a local version to the pod's project folder unless the pod holds the same file;
    /// returns the remote path and the version's SHA-256.
    pub(crate) async fn upload_version(
        &self,
        session: &Session,
        store: &project_store::Store,
        project: &project_store::ProjectName,
        version: &str,
    ) -> Result<(String, String)> {
        let local_project = store
            .project(project)
            .map_err(Error::store(format!("opening project {project}")))?;
        let entry = local_project
            .resolve(version)
            .map_err(Error::store(format!(
                "finding version {version} of project {project}"
            )))?
            .clone();
        let local = local_project.path_of(&entry);
        let remote = format!("{}/{}", self.remote_project_dir(project), entry.name);
        let check = session
            .host
            .run(
                &format!("sha256sum {} 2>/dev/null || true", shell::quote(&remote)),
                None,
                Duration::from_secs(120),
            )
            .await?;
        let remote_hash = check
            .stdout
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned();
        if remote_hash != entry.sha256 {
            self.run_checked(
                &session.pod_id,
                session.host.as_ref(),
                "creating the project folder",
                &format!(
                    "mkdir -p {}",
                    shell::quote(&self.remote_project_dir(project))
                ),
                None,
                Duration::from_secs(30),
            )
            .await?;
            session.host.upload(&local, &remote, None).await?;
        }
        Ok((remote, entry.sha256))
    }

    /// Uploads a local file to the pod.
    ///
    /// # Errors
    ///
    /// Transfer failures.
    pub async fn push(
        &self,
        session: &Session,
        local: &Path,
        remote: &str,
        progress: Option<ProgressFn>,
    ) -> Result<Transferred> {
        session.host.upload(local, remote, progress).await
    }

    /// Downloads a file from the pod.
    ///
    /// # Errors
    ///
    /// Transfer failures.
    pub async fn pull(
        &self,
        session: &Session,
        remote: &str,
        local: &Path,
        progress: Option<ProgressFn>,
    ) -> Result<Transferred> {
        session.host.download(remote, local, progress).await
    }
}
