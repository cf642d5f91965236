//! `rpb render --slurm`: the farm's render jobs on a Slurm cluster the user already has (a
//! university cluster's login node), over the same SSH layer. rpb puts its two pod-side files
//! (`session.sh`, `rpb_render.py`) and the job in a folder the cluster's nodes share, and
//! submits the same array job; the cluster's own Slurm config, partitions and Blender are used.

use pod_tunnel::shell;
use tokio::time::Instant;

use super::{SLURM_TIMEOUT, farm_error, last_json_line};
use crate::orchestrator::session::{Events, Session, Step};
use crate::orchestrator::{Clock, Orchestrator};
use crate::render::{ClusterJob, RenderJob, RenderOptions, RenderSource};
use crate::seams::SshAddr;
use crate::{Error, Result};

/// An existing Slurm cluster, reached over SSH at its login node.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SlurmCluster {
    /// The login node.
    pub login: SshAddr,
    /// The partition to submit to (default: the cluster's).
    pub partition: Option<String>,
    /// A folder every node of the cluster sees (default: `$HOME/rpb-farm` on the login node).
    pub shared_dir: Option<String>,
    /// The slurm.conf the cluster's clients need named (`SLURM_CONF`), when it is not in
    /// Slurm's default place.
    pub slurm_conf: Option<String>,
    /// What each task asks for besides a CPU (`--gres`, such as `gpu:1`).
    pub gres: Option<String>,
}

impl SlurmCluster {
    /// The cluster whose login node is `login` (`user@host` or `user@host:port`).
    ///
    /// # Errors
    ///
    /// [`Error::Settings`] for a login that is not `user@host[:port]`.
    pub fn new(login: &str) -> Result<Self> {
        Ok(Self {
            login: parse_login(login)?,
            partition: None,
            shared_dir: None,
            slurm_conf: None,
            gres: None,
        })
    }
}

/// `user@host[:port]` (port 22 by default).
pub(super) fn parse_login(text: &str) -> Result<SshAddr> {
    let bad = || {
        Error::Settings(format!(
            "the cluster's login must be USER@HOST or USER@HOST:PORT, not {text:?}"
        ))
    };
    let (user, rest) = text.split_once('@').ok_or_else(bad)?;
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) => (host, port.parse::<u16>().map_err(|_| bad())?),
        None => (rest, 22),
    };
    let plain = |part: &str| {
        !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    };
    if !plain(user) || !plain(host) || port == 0 {
        return Err(bad());
    }
    Ok(SshAddr {
        host: host.to_owned(),
        port,
        user: user.to_owned(),
    })
}

/// The name the login node's host key is pinned under.
fn pin_name(login: &SshAddr) -> String {
    format!("slurm-{}-{}", login.host, login.port)
}

/// `session.sh farm-env`'s answer, the parts a cluster needs.
#[derive(Debug, serde::Deserialize)]
struct ClusterEnv {
    #[serde(default)]
    clients_missing: String,
    #[serde(default)]
    blender: String,
}

impl Orchestrator {
    /// Connects to the cluster's login node; its host key is trusted on first contact and
    /// pinned (as `slurm-HOST-PORT`), then required.
    pub(super) async fn cluster_connect(
        &self,
        login: &SshAddr,
        events: Events<'_>,
    ) -> Result<Session> {
        let name = pin_name(login);
        let first = self.connector.pinned_host_key(&name).await?.is_none();
        let host = self.connector.connect(login, &name).await?;
        if first {
            let recorded = self.connector.pinned_host_key(&name).await?;
            let clock = Clock {
                started: Instant::now(),
                events,
            };
            clock.emit(
                Step::HostKey,
                format!(
                    "first contact with the cluster's login node {login}: trusted its host key {} \
                     and recorded it; from now on only this key is accepted",
                    recorded.as_deref().unwrap_or("(not recorded)")
                ),
            );
        }
        Ok(Session::without_blender(&name, login.clone(), host))
    }

    /// This orchestrator working in the cluster's shared folder: the pod root is `shared_dir`,
    /// and Slurm's clients use the cluster's own configuration (or `slurm_conf`).
    pub(super) fn for_cluster(
        &self,
        shared_dir: &str,
        slurm_conf: Option<&str>,
    ) -> Result<Orchestrator> {
        let plain = |path: &str| path.starts_with('/') && shell::quote(path) == path;
        if !plain(shared_dir) {
            return Err(Error::Settings(format!(
                "the cluster's shared folder must be an absolute path without spaces or shell \
                 characters, not {shared_dir:?}"
            )));
        }
        let mut settings = self.settings.clone();
        let shared = shared_dir.trim_end_matches('/').to_owned();
        settings
            .pod_env
            .insert("RPB_HOME".into(), format!("{shared}/rpb"));
        settings
            .pod_env
            .insert("RPB_FARM_CLUSTER".into(), "1".into());
        match slurm_conf {
            Some(conf) if plain(conf) => {
                settings
                    .pod_env
                    .insert("SLURM_CONF".into(), conf.to_owned());
            }
            Some(conf) => {
                return Err(Error::Settings(format!(
                    "the cluster's slurm.conf must be an absolute path without spaces or shell \
                     characters, not {conf:?}"
                )));
            }
            None => {
                settings.pod_env.remove("SLURM_CONF");
            }
        }
        settings.pod_root = shared;
        Ok(Orchestrator {
            provider: self.provider.clone(),
            connector: self.connector.clone(),
            settings,
            store: self.store.clone(),
        })
    }

    /// Submits a render job to a Slurm cluster the user already has: puts rpb's pod-side
    /// files and the job in the cluster's shared folder (a saved version of the project is
    /// uploaded there; `--blend` names a file in it), and submits one array task per chunk,
    /// `--requeue`, to the partition asked for. Blender is the cluster's (`BLENDER_BIN`, or
    /// `blender` on the login node's `PATH`).
    ///
    /// # Errors
    ///
    /// [`Error::RenderOptions`] for bad options, [`Error::Farm`] when the login node has no
    /// Slurm clients or no Blender, SSH, transfer and Slurm failures.
    pub async fn cluster_render_start(
        &self,
        cluster: &SlurmCluster,
        store: &project_store::Store,
        project: &project_store::ProjectName,
        options: &RenderOptions,
        chunk: Option<u32>,
        events: Events<'_>,
    ) -> Result<RenderJob> {
        options.validate()?;
        if matches!(options.source, RenderSource::OpenScene) {
            return Err(Error::RenderOptions(
                "a cluster renders a saved version or a .blend in its shared folder; save the open scene first (`rpb save`) or name one with --version".into(),
            ));
        }
        let operation = format!("rendering on the Slurm cluster at {}", cluster.login);
        let session = self.cluster_connect(&cluster.login, events).await?;
        let shared = if let Some(dir) = &cluster.shared_dir {
            dir.clone()
        } else {
            let home = self
                .run_checked(
                    &session.pod_id,
                    session.host.as_ref(),
                    "reading $HOME on the login node",
                    "printf '%s' \"$HOME\"",
                    None,
                    SLURM_TIMEOUT,
                )
                .await?;
            format!("{}/rpb-farm", home.trim().trim_end_matches('/'))
        };
        let this = self.for_cluster(&shared, cluster.slurm_conf.as_deref())?;
        this.install_cluster_files(&session).await?;
        let env_out = this
            .run_checked(
                &session.pod_id,
                session.host.as_ref(),
                "checking the login node",
                &format!("{} farm-env", this.settings.session_script()),
                None,
                SLURM_TIMEOUT,
            )
            .await?;
        let env: ClusterEnv = last_json_line(&env_out, "{\"rpb_farm_env\"")
            .and_then(|line| serde_json::from_str(line).ok())
            .ok_or_else(|| {
                farm_error(
                    &operation,
                    format!("the login node's answer has no report: {env_out:.300}"),
                )
            })?;
        if !env.clients_missing.trim().is_empty() {
            return Err(farm_error(
                &operation,
                format!(
                    "the login node lacks Slurm's clients ({}): is it a Slurm cluster's login node?",
                    env.clients_missing.trim()
                ),
            ));
        }
        if env.blender.is_empty() {
            return Err(farm_error(
                &operation,
                "no Blender on the login node: put `blender` on its PATH (a module), or set BLENDER_BIN in the cluster account's environment",
            ));
        }
        let (nodes, _) = this.slurm_view(&session).await?;
        let nodes =
            u32::try_from(nodes.iter().filter(|node| node.is_up()).count().max(1)).unwrap_or(1);
        let job = ClusterJob {
            login: cluster.login.to_string(),
            partition: cluster.partition.clone(),
            shared_dir: this.settings.pod_root.clone(),
            slurm_conf: cluster.slurm_conf.clone(),
        };
        let submission = super::Submission {
            chunk,
            nodes,
            partition: cluster.partition.clone(),
            gres: cluster.gres.clone(),
            cluster: Some(job),
        };
        this.submit_job(&session, store, project, options, submission)
            .await
    }

    /// Puts this build's `session.sh` and render driver in the shared folder's `rpb/bin`.
    async fn install_cluster_files(&self, session: &Session) -> Result<()> {
        let bin = format!("{}/bin", self.settings.rpb_home());
        self.run_checked(
            &session.pod_id,
            session.host.as_ref(),
            "creating rpb's folder in the cluster's shared folder",
            &format!("mkdir -p {}", shell::quote(&bin)),
            None,
            SLURM_TIMEOUT,
        )
        .await?;
        let local = crate::orchestrator::lifecycle::tempfile_dir()?;
        crate::assets::write_to(local.path())?;
        for asset in [crate::assets::SESSION_SCRIPT, crate::assets::RENDER_DRIVER] {
            session
                .host
                .upload(
                    &local.path().join(asset.name),
                    &format!("{bin}/{}", asset.name),
                    None,
                )
                .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logins_parse_with_and_without_a_port_and_refuse_the_rest() {
        let login = parse_login("alice@login.hpc.example.edu").unwrap();
        assert_eq!((login.user.as_str(), login.port), ("alice", 22));
        assert_eq!(login.host, "login.hpc.example.edu");
        assert_eq!(parse_login("bob@10.0.0.5:2222").unwrap().port, 2222);
        for bad in [
            "login.example",
            "@host",
            "a@",
            "a@h:0",
            "a@h:x",
            "a b@h",
            "a@h;rm",
        ] {
            let error = parse_login(bad).unwrap_err().to_string();
            assert!(error.contains("USER@HOST"), "{bad}: {error}");
        }
    }
}
