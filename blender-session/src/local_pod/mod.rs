//! The embedded local pod: a faithful stand-in for a RunPod pod on this machine, for tests and
//! `rpb demo`, with no account and no cloud.
//!
//! [`LocalPod::start`] brings up, all on 127.0.0.1:
//!
//! - the `runpod-api` [`Simulator`], which keeps the pods and answers the REST v2 API;
//! - a private OpenSSH `sshd`, run as the current user from generated keys (its own host key
//!   is made once per state directory, so it never changes across pod restarts, like a pod
//!   whose boot hook restores its persisted keys; a pod created with a host key in its
//!   environment, as `Orchestrator::create` does, is served with that key from its first boot,
//!   as its start command installs it on RunPod);
//! - a few SSH relays, one port each: the simulator hands them out in turn as the pods'
//!   `ssh.direct` endpoints, so every boot gets a new port as on RunPod. A relay listens only
//!   while its port is the endpoint of a pod's *current* boot: the port of an ended boot
//!   refuses connections (and its open connections are closed), so a stale port reported by
//!   the API really does not answer;
//! - a watcher that plays the container's life: when a pod's boot ends (stop, restart, error,
//!   terminate) and no other pod's boot goes on, it ends the SSH sessions and runs the
//!   pod-side `session.sh stop`, so nothing a pod started keeps running after the pod stops.
//!
//! The pod root (what `/runpod` is on a real pod) is a folder in the state directory, and
//! Blender, Xvfb, x11vnc and noVNC come from this machine's Debian packages. The environment
//! the pod-side scripts need to run here instead of on a real pod ([`LocalPod::pod_env`]: pod
//! root, free ports, a free display, the system Blender, an offline package cache, ...) is also
//! set by sshd in every SSH session (`SetEnv`), so commands run over SSH need no prefix.
//!
//! All pods of one local pod share this machine: the sshd, the pod root and the session. Every
//! process it starts is stopped by its PID in [`LocalPod::shutdown`] (and, best effort, on
//! drop); nothing is ever killed by name.
//!
//! For callers: log in as [`LocalPod::ssh_user`] (the API says `root`); a new boot's relay
//! starts listening within one watcher interval (50 ms) after the pod reports `RUNNING` and
//! refuses until then, as a booting pod's sshd does, so wait for the SSH banner as `rpb`'s
//! start does; and use [`LocalPod::remote_ports`] as the tunnel's remote ports.
//!
//! ```no_run
//! use blender_session::local_pod::LocalPod;
//! use runpod_api::models::{CreatePodRequest, GpuRequest};
//! use runpod_api::{WaitFor, WaitOptions};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let local = LocalPod::builder().start().await?;
//! let client = runpod_api::Client::builder()
//!     .base_url(local.api_url())
//!     .api_key(local.api_key().clone())
//!     .build()?;
//! client.add_ssh_key(local.ssh_public_key()).await?;
//! let request = CreatePodRequest::new("demo")
//!     .image("runpod/pytorch")
//!     .gpu(GpuRequest::new("NVIDIA RTX A5000"))
//!     .port("22/tcp");
//! let pod = client.create_pod(&request).await?;
//! let pod = client
//!     .wait_for_pod(&pod.id, WaitFor::SshReady, &WaitOptions::default(), |_| {})
//!     .await?;
//! let ssh = pod.ssh_endpoint().expect("running with 22/tcp");
//! // Log in as `local.ssh_user()` (not the API's `root`) with `local.ssh_identity_file()`;
//! // the session's ports on the "pod" are `local.remote_ports()`.
//! println!("ssh -p {} {}@{}", ssh.port, local.ssh_user(), ssh.host);
//! local.shutdown().await?;
//! # Ok(())
//! # }
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use runpod_api::sim::{Simulator, Timings};
use secrecy::{ExposeSecret as _, SecretString};

use crate::assets::{self, SessionPorts};

mod boot;
pub mod farm;
mod host;
mod hostkeys;
mod paths;
mod pids;
mod processes;
mod relay;
mod sshd;

use boot::stop_session;
use host::{free_display, free_port, random_api_key, require_programs};
use paths::{Paths, create_private_dir, pod_env, read_trimmed};
use pids::{descendants, has_pid_files, kill_recorded};
use processes::Processes;

/// The OpenSSH server binary (sshd refuses to run from a relative path).
pub const SSHD: &str = pod_tunnel::fixture::SSHD;
/// The Blender the local pod's sessions run (Debian package `blender`).
pub const BLENDER: &str = "/usr/bin/blender";
/// noVNC's web folder (Debian package `novnc`).
pub const NOVNC_WEB: &str = "/usr/share/novnc";
/// The Debian packages the local pod needs, for an install command.
pub const DEBIAN_PACKAGES: &str =
    "openssh-server openssh-client blender xvfb x11vnc novnc websockify";
/// Debian packages whose programs the local pod's sessions check (`RPB_PACKAGES` in
/// [`LocalPod::pod_env`]): all installed here, so no session ever installs anything.
const SESSION_PACKAGES: &str = "xvfb x11vnc novnc websockify";

/// Loopback ports a local pod reserves for a render farm (`RPB_FARM_PORTS`): the controller's
/// and one per node.
const FARM_PORTS: usize = 9;
/// Default number of SSH relays (distinct ports handed out in turn to pod boots).
pub const DEFAULT_RELAYS: usize = 3;
/// Default interval at which the watcher reads the simulator's pods.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Default time sshd gets to answer with its banner.
pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(15);
/// How long `session.sh stop` may take (its own default allows 15 s per part, four parts).
const SESSION_STOP_TIMEOUT: Duration = Duration::from_secs(90);
/// Buffer size of each direction of a relayed connection.
const RELAY_BUFFER: usize = 64 * 1024;

/// Errors of the local pod.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The local pod runs on Linux only (Xvfb, `/proc`, Debian's packages).
    #[error(
        "the local pod runs on Linux only (it needs Xvfb, x11vnc, websockify, sshd and Blender \
         from Debian, and /proc); this is {os}. Use a RunPod pod, or run the demo in a Linux VM"
    )]
    UnsupportedOs {
        /// This OS (`std::env::consts::OS`).
        os: &'static str,
    },
    /// Programs the local pod needs are not installed.
    #[error(
        "the local pod needs {missing}: install them with \
         `apt-get install -y --no-install-recommends {packages}`"
    )]
    MissingPackages {
        /// What is missing, each with its Debian package.
        missing: String,
        /// The Debian packages to install.
        packages: String,
    },
    /// The state directory's path cannot be written into an `sshd_config`.
    #[error(
        "the local pod's state directory {path} must be an absolute UTF-8 path without \
         whitespace, quotes, backslashes or '%' (sshd_config cannot hold it): choose another"
    )]
    UnsupportedPath {
        /// The path.
        path: PathBuf,
    },
    /// A file or folder of the state directory could not be prepared.
    #[error("failed to prepare {path} for the local pod")]
    Prepare {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Writing the pod-side assets failed.
    #[error("failed to write the pod-side assets for the local pod")]
    Assets(#[source] Box<crate::Error>),
    /// `ssh-keygen` failed.
    #[error("failed to run ssh-keygen for {path} (Debian package openssh-client)")]
    Keygen {
        /// The key file.
        path: PathBuf,
        /// What went wrong (spawn error, or its exit status and stderr).
        #[source]
        source: io::Error,
    },
    /// The current user's login name is unknown.
    #[error(
        "cannot tell the current user's login name: uid {uid} is not in /etc/passwd and \
         USER is unset; set USER"
    )]
    UnknownUser {
        /// The effective user id.
        uid: u32,
    },
    /// The local farm's Slurm daemons or commands failed.
    #[error("local farm: {0}")]
    Farm(String),
    /// No free loopback port or X display was found.
    #[error("no free {what} on this machine")]
    NoFree {
        /// What was looked for.
        what: &'static str,
    },
    /// Binding a loopback socket failed.
    #[error("failed to bind {address} for the local pod")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// sshd did not start.
    #[error("sshd did not start on {address}; see its log {log}")]
    Sshd {
        /// The address it was to listen on.
        address: SocketAddr,
        /// Its log file.
        log: PathBuf,
        /// What went wrong (spawn error, early exit, or timeout).
        #[source]
        source: io::Error,
    },
    /// The simulator did not start.
    #[error("failed to start the RunPod simulator for the local pod")]
    Simulator(#[source] io::Error),
    /// `session.sh stop` failed while stopping the local pod's session.
    #[error("`session.sh stop` failed for the local pod; see {log}")]
    SessionStop {
        /// The log holding its output.
        log: PathBuf,
        /// What went wrong (spawn error, exit status, or timeout).
        #[source]
        source: io::Error,
    },
}

/// Result type of the local pod.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Configures and starts a [`LocalPod`].
#[must_use]
pub struct LocalPodBuilder {
    state_dir: Option<PathBuf>,
    api_key: Option<SecretString>,
    timings: Timings,
    relays: usize,
    poll_interval: Duration,
    start_timeout: Duration,
    pod_host_keys: bool,
    fresh_host_keys: bool,
}

impl fmt::Debug for LocalPodBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalPodBuilder")
            .field("state_dir", &self.state_dir)
            .field("api_key", &self.api_key.as_ref().map(|_| "[REDACTED]"))
            .field("timings", &self.timings)
            .field("relays", &self.relays)
            .field("poll_interval", &self.poll_interval)
            .field("start_timeout", &self.start_timeout)
            .field("pod_host_keys", &self.pod_host_keys)
            .field("fresh_host_keys", &self.fresh_host_keys)
            .finish()
    }
}

impl Default for LocalPodBuilder {
    fn default() -> Self {
        Self {
            state_dir: None,
            api_key: None,
            timings: Timings::default(),
            relays: DEFAULT_RELAYS,
            poll_interval: DEFAULT_POLL_INTERVAL,
            start_timeout: DEFAULT_START_TIMEOUT,
            pod_host_keys: true,
            fresh_host_keys: false,
        }
    }
}

impl LocalPodBuilder {
    /// Keeps the state (pod root, keys, logs) in this folder, created if missing and kept
    /// afterwards; keys found there are reused, so the host key stays the same across runs.
    /// Default: a temporary folder removed when the [`LocalPod`] is dropped.
    pub fn state_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.state_dir = Some(dir.into());
        self
    }

    /// The API key the simulator accepts. Default: a random one (see [`LocalPod::api_key`]).
    pub fn api_key(mut self, key: SecretString) -> Self {
        self.api_key = Some(key);
        self
    }

    /// How long the simulated pods stay `PROVISIONING` and `STARTING`. Default:
    /// [`Timings::default`] (30 ms each).
    pub fn timings(mut self, timings: Timings) -> Self {
        self.timings = timings;
        self
    }

    /// How many SSH relay ports the pod boots cycle through. Default: [`DEFAULT_RELAYS`] (3).
    /// Clamped to 2..=64: with at least 2, consecutive boots of a pod always get different
    /// ports.
    pub fn relays(mut self, count: usize) -> Self {
        self.relays = count.clamp(2, 64);
        self
    }

    /// How often the watcher reads the pods' states. Default: [`DEFAULT_POLL_INTERVAL`]
    /// (50 ms). A new boot's relay starts listening within one interval after the pod reports
    /// `RUNNING` (until then it refuses, as a booting pod's sshd does).
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval.max(Duration::from_millis(5));
        self
    }

    /// Whether a pod created with a host key in its environment (as `Orchestrator::create`
    /// makes) is served with that key, as its start command installs it on RunPod. Default:
    /// `true`. `false` plays a host that serves another key at the pod's first contact (a man
    /// in the middle, or an image that replaced the key), for tests that it is refused.
    pub fn pod_host_keys(mut self, serve: bool) -> Self {
        self.pod_host_keys = serve;
        self
    }

    /// Plays an image that makes new SSH host keys at every boot, as RunPod's do (the
    /// container disk is new at each start): a pod without a host key of its own gets a fresh
    /// key per boot, unless its start command runs rpb's boot hook and its volume holds the keys
    /// setup persisted (the hook restores them). Default: `false` (such pods share the local
    /// pod's own key, which never changes).
    pub fn fresh_host_keys(mut self, fresh: bool) -> Self {
        self.fresh_host_keys = fresh;
        self
    }

    /// How long sshd gets to answer. Default: [`DEFAULT_START_TIMEOUT`] (15 s).
    pub fn start_timeout(mut self, limit: Duration) -> Self {
        self.start_timeout = limit;
        self
    }

    /// Prepares the state directory and starts sshd, the relays, the simulator and the
    /// watcher, on the current tokio runtime.
    ///
    /// # Errors
    /// [`Error::UnsupportedOs`] off Linux; [`Error::MissingPackages`] naming the Debian packages to install; [`Error::Prepare`],
    /// [`Error::UnsupportedPath`], [`Error::Assets`] and [`Error::Keygen`] for the state
    /// directory; [`Error::UnknownUser`]; [`Error::NoFree`] and [`Error::Bind`] for ports and
    /// the display; [`Error::Sshd`] when sshd does not answer in time; [`Error::Simulator`].
    /// Whatever was started before the failure is stopped again.
    #[tracing::instrument(level = "debug", skip(self), fields(state_dir = ?self.state_dir))]
    pub async fn start(mut self) -> Result<LocalPod> {
        if !cfg!(target_os = "linux") {
            return Err(Error::UnsupportedOs {
                os: std::env::consts::OS,
            });
        }
        require_programs()?;
        let (temporary, state_dir) = if let Some(dir) = &self.state_dir {
            create_private_dir(dir)?;
            (None, dir.clone())
        } else {
            let temporary = tempfile::Builder::new()
                .prefix("rpb-local-pod-")
                .tempdir()
                .map_err(|source| Error::Prepare {
                    path: std::env::temp_dir(),
                    source,
                })?;
            let path = temporary.path().to_path_buf();
            (Some(temporary), path)
        };
        let state_dir = std::path::absolute(&state_dir).map_err(|source| Error::Prepare {
            path: state_dir.clone(),
            source,
        })?;
        // sshd_config names files in the state directory.
        pod_tunnel::fixture::check_path(&state_dir).map_err(|_| Error::UnsupportedPath {
            path: state_dir.clone(),
        })?;
        let mut paths = Paths::new(&state_dir);
        let farm_run = farm_run_dir()?;
        paths.farm_run = farm_run.path().to_path_buf();
        let volumes = volumes_elsewhere(&state_dir);
        if let Some(volumes) = &volumes {
            paths.volumes = volumes.path().to_path_buf();
        }
        paths.create()?;
        assets::write_to(&paths.assets).map_err(|error| Error::Assets(Box::new(error)))?;

        let display = free_display()?;
        let ports = SessionPorts {
            mcp: free_port()?,
            control: free_port()?,
            vnc: free_port()?,
            novnc: free_port()?,
        };
        let mut env = pod_env(&paths, ports, display);
        // The farm's controller and one slurmd per pod, all on this machine's loopback.
        let farm_ports = (0..FARM_PORTS)
            .map(|_| free_port().map(|port| port.to_string()))
            .collect::<Result<Vec<_>>>()?;
        env.insert("RPB_FARM_PORTS".into(), farm_ports.join(" "));
        if has_pid_files(&paths.run_dir()) {
            // A reused state directory whose last run did not shut down: end what its session
            // left running (recorded by PID and start time, so only our own processes).
            if let Err(error) = stop_session(&paths, &env).await {
                tracing::warn!(error = %error, "stopping the previous run's session failed");
            }
            kill_recorded(&paths.run_dir());
        }
        // A pod's host key left installed by a run that did not shut down gives way to ours.
        hostkeys::restore_own_key(&paths.host_keys).map_err(|source| Error::Prepare {
            path: paths.host_keys.clone(),
            source,
        })?;
        // The fixture stops sshd when dropped, so a failure below leaves nothing running.
        let sshd = sshd::start(&paths, &env, self.start_timeout).await?;
        let public_key = read_trimmed(&paths.client_key.with_extension("pub"))?;

        let api_key = self.api_key.take().unwrap_or_else(random_api_key);
        // From here on, `LocalPod`'s Drop cleans up whatever was started if a step fails.
        let mut pod = LocalPod {
            api_key,
            user: sshd.user.clone(),
            public_key,
            host_public_key: sshd.host_public_key.clone(),
            host_key_fingerprint: sshd.host_key_fingerprint.clone(),
            env,
            ports,
            display,
            paths,
            state_dir,
            processes: None,
            _volumes: volumes,
            _farm_run: farm_run,
            _temporary: temporary,
        };
        pod.processes = Some(
            Processes::start(
                &pod.paths,
                &pod.env,
                pod.api_key.expose_secret(),
                &self,
                sshd,
            )
            .await?,
        );
        tracing::info!(
            api = %pod.api_url(),
            sshd = %pod.sshd_address(),
            relays = ?pod.relay_ports(),
            state_dir = %pod.state_dir.display(),
            "local pod ready"
        );
        Ok(pod)
    }
}

/// A running local pod. See the [module documentation](self).
///
/// Stop it with [`LocalPod::shutdown`], which reports problems; dropping it stops everything
/// too, best effort (SIGKILL by PID, no waiting).
pub struct LocalPod {
    api_key: SecretString,
    user: String,
    public_key: String,
    host_public_key: String,
    host_key_fingerprint: String,
    env: BTreeMap<String, String>,
    ports: SessionPorts,
    display: u32,
    paths: Paths,
    state_dir: PathBuf,
    processes: Option<Processes>,
    /// The network volumes' folders on a tmpfs, removed with the local pod (the simulator
    /// that knows the volumes lives as long).
    _volumes: Option<tempfile::TempDir>,
    /// The farm's per-machine folder (`RPB_FARM_RUN`), removed with the local pod.
    _farm_run: tempfile::TempDir,
    /// Declared last: removed after everything else is dropped.
    _temporary: Option<tempfile::TempDir>,
}

/// The farm's per-machine folder: munged wants every folder above its socket open to all, which
/// the state directory (private) is not, so it lives in the temporary folder, mode 0755.
fn farm_run_dir() -> Result<tempfile::TempDir> {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::Builder::new()
        .prefix("rpb-farm-")
        .tempdir()
        .map_err(|source| Error::Prepare {
            path: std::env::temp_dir(),
            source,
        })?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).map_err(
        |source| Error::Prepare {
            path: dir.path().to_path_buf(),
            source,
        },
    )?;
    Ok(dir)
}

/// A folder for the network volumes on another file system than the state directory (the
/// tmpfs at `/dev/shm`), so a pod root on a network volume really is not on the "container
/// disk"; `None` (volumes under the state directory) when there is none.
fn volumes_elsewhere(state_dir: &Path) -> Option<tempfile::TempDir> {
    use std::os::unix::fs::MetadataExt as _;
    let shm = Path::new("/dev/shm");
    let other_device = std::fs::metadata(shm)
        .ok()
        .zip(std::fs::metadata(state_dir).ok())
        .is_some_and(|(shm, state)| shm.is_dir() && shm.dev() != state.dev());
    if !other_device {
        return None;
    }
    tempfile::Builder::new()
        .prefix("rpb-local-volumes-")
        .tempdir_in(shm)
        .ok()
}

impl fmt::Debug for LocalPod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalPod")
            .field("api_url", &self.api_url())
            .field("state_dir", &self.state_dir)
            .field("sshd", &self.sshd_address())
            .field("sshd_pid", &self.sshd_pid())
            .field("relay_ports", &self.relay_ports())
            .field("user", &self.user)
            .field("ports", &self.ports)
            .field("display", &self.display)
            .finish_non_exhaustive()
    }
}

impl LocalPod {
    /// Starts configuring a local pod.
    pub fn builder() -> LocalPodBuilder {
        LocalPodBuilder::default()
    }

    /// Starts a local pod with the defaults (a temporary state directory).
    ///
    /// # Errors
    /// As [`LocalPodBuilder::start`].
    pub async fn start() -> Result<Self> {
        Self::builder().start().await
    }

    fn running(&self) -> &Processes {
        self.processes
            .as_ref()
            .expect("invariant: a LocalPod handed to a caller has its processes until shutdown")
    }

    /// The simulator's base URL, for `runpod_api::ClientBuilder::base_url`
    /// (`http://127.0.0.1:PORT/v2`).
    pub fn api_url(&self) -> String {
        self.processes
            .as_ref()
            .map(|running| running.simulator.base_url())
            .unwrap_or_default()
    }

    /// The API key the simulator accepts: the one given to the builder, else a random one.
    pub fn api_key(&self) -> &SecretString {
        &self.api_key
    }

    /// The simulator, for its fault knobs ([`Simulator::set_faults`]) and to look at pods.
    pub fn simulator(&self) -> &Simulator {
        &self.running().simulator
    }

    /// The SSH user's private key (ed25519, no passphrase), authorized on the local sshd.
    pub fn ssh_identity_file(&self) -> &Path {
        &self.paths.client_key
    }

    /// The SSH user's public key as an OpenSSH line, to register on the simulated account
    /// (`add_ssh_key`), as a real account must have one for `startSsh`.
    pub fn ssh_public_key(&self) -> &str {
        &self.public_key
    }

    /// The user to log in as: the current user, since the local sshd runs as this user. Use it
    /// instead of the API's `root`.
    pub fn ssh_user(&self) -> &str {
        &self.user
    }

    /// The host's public key as an OpenSSH line; the same for every boot of every pod.
    pub fn host_public_key(&self) -> &str {
        &self.host_public_key
    }

    /// The host key's `SHA256:…` fingerprint, as `ssh-keygen -l` prints it.
    pub fn host_key_fingerprint(&self) -> &str {
        &self.host_key_fingerprint
    }

    /// The pod root, which stands in for a real pod's `/runpod` volume: a symlink to the
    /// volume of the pod that booted last, the machine's own disk (shared by every pod without
    /// a network volume) or a network volume's folder ([`LocalPod::volume_dir`]).
    pub fn pod_root(&self) -> &Path {
        &self.paths.pod_root
    }

    /// The folder that holds network volume `volume_id`'s files, as every pod that mounts it
    /// sees them at its pod root. It lives on a tmpfs when one is at hand, and is removed
    /// with the local pod, as the simulator's volumes are.
    ///
    /// # Errors
    ///
    /// [`Error::Prepare`] when the id is not a plain name or the folder cannot be made.
    pub fn volume_dir(&self, volume_id: &str) -> Result<PathBuf> {
        self.paths
            .volume_dir(volume_id)
            .map_err(|source| Error::Prepare {
                path: self.paths.volumes.join(volume_id),
                source,
            })
    }

    /// The state directory (pod root, sshd keys and config, logs, assets).
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// This crate's pod-side files ([`assets::write_to`]), written at start.
    pub fn assets_dir(&self) -> &Path {
        &self.paths.assets
    }

    /// The folder of the local pod's own logs (`sshd.log`, `container.log`). The session's
    /// logs are under the pod root, as on a real pod.
    pub fn log_dir(&self) -> &Path {
        &self.paths.logs
    }

    /// The environment the pod-side scripts need to run on this machine instead of on a real
    /// pod. sshd sets it in every SSH session too; give it explicitly to scripts run locally.
    ///
    /// | variable | value |
    /// |---|---|
    /// | `RPB_POD_ROOT` | [`LocalPod::pod_root`] |
    /// | `RPB_HOME` | `RPB_POD_ROOT/rpb` |
    /// | `RPB_MCP_PORT`, `RPB_CONTROL_PORT`, `RPB_VNC_PORT`, `RPB_NOVNC_PORT` | free ports of this machine, never the defaults 9876/9877/5900/6080 (the local tunnel binds those here) |
    /// | `RPB_DISPLAY` | a free X display number |
    /// | `RPB_SCREEN` | `1280x720x24` |
    /// | `BLENDER_BIN` | [`BLENDER`] (no download in setup) |
    /// | `RPB_NOVNC_WEB` | [`NOVNC_WEB`] |
    /// | `RPB_PACKAGES` | `xvfb x11vnc novnc websockify` (installed here; nothing is installed) |
    /// | `RPB_DEB_SOURCE` | an empty `.deb` folder in the state directory: setup's package cache stays offline |
    /// | `RPB_DOWNLOAD_CACHE` | `~/.cache/rpb/local-pod-downloads` (or `$XDG_CACHE_HOME/rpb/...`), shared by this user's local pods: setup downloads the MCP addon's release (hash-checked) once per machine |
    /// | `RPB_SSH_DIR` | the folder of the local sshd's host key, which setup persists (not `/etc/ssh`) |
    /// | `RPB_CONTAINER_DISK` | the state directory: what stands for the container disk, which a network volume is not |
    /// | `HOME` | an empty folder in the state directory, as a pod's `/root`: SSH sessions do not run this machine user's shell startup files (a `~/.bashrc` that takes a lock, such as `pyenv init`, stalls every later session once a fault test kills a shell inside it), and Blender keeps its preferences there |
    pub fn pod_env(&self) -> &BTreeMap<String, String> {
        &self.env
    }

    /// The session's ports on the pod side (MCP, VNC, noVNC), all on 127.0.0.1; the tunnel's
    /// remote ends. The same as in [`LocalPod::pod_env`].
    pub fn remote_ports(&self) -> SessionPorts {
        self.ports
    }

    /// A `runpod_api` client for this pod's simulator, with short retry backoffs.
    ///
    /// # Errors
    ///
    /// When the client cannot be built (it always can for a running local pod).
    pub fn client(&self) -> runpod_api::Result<runpod_api::Client> {
        runpod_api::Client::builder()
            .base_url(self.api_url())
            .api_key(self.api_key().clone())
            .retry_policy(
                runpod_api::RetryPolicy::default()
                    .with_backoff(Duration::from_millis(50), Duration::from_millis(500)),
            )
            .build()
    }

    /// Session settings that run the pod-side scripts on this machine: the pod root, the
    /// scripts' environment and the pod-side ports of this local pod, local tunnel ports picked
    /// freely, short polls. Adjust them before building the orchestrator if needed.
    pub fn session_settings(&self, vnc_password: SecretString) -> crate::SessionSettings {
        let mut settings = crate::SessionSettings::new(vnc_password);
        settings.pod_root = self.pod_root().display().to_string();
        settings.pod_env = self.pod_env().clone();
        let remote = self.remote_ports();
        settings.remote_ports = crate::seams::TunnelPorts {
            mcp: remote.mcp,
            control: remote.control,
            vnc: remote.vnc,
            novnc: remote.novnc,
        };
        settings.local_ports = crate::seams::TunnelPorts {
            mcp: 0,
            control: 0,
            vnc: 0,
            novnc: 0,
        };
        settings.poll_interval = Duration::from_millis(100);
        settings.ready_timeout = Duration::from_secs(60);
        settings.ssh_timeout = Duration::from_secs(60);
        settings.stop_timeout = Duration::from_secs(60);
        settings.session_timeout = Duration::from_secs(240);
        settings
    }

    /// An orchestrator wired to this local pod: its simulator as the provider (logging in as
    /// [`LocalPod::ssh_user`]), SSH with its client key, host keys pinned in `known_hosts`.
    ///
    /// # Errors
    ///
    /// As [`LocalPod::client`].
    pub fn orchestrator(
        &self,
        known_hosts: impl Into<PathBuf>,
        settings: crate::SessionSettings,
    ) -> runpod_api::Result<crate::Orchestrator> {
        let provider =
            crate::adapters::RunpodProvider::new(self.client()?).with_ssh_user(self.ssh_user());
        let connector = crate::adapters::SshConnector::new(self.ssh_identity_file(), known_hosts);
        Ok(crate::Orchestrator::new(
            Arc::new(provider),
            Arc::new(connector),
            settings,
        ))
    }

    /// The session's X display number (`RPB_DISPLAY`).
    pub fn display(&self) -> u32 {
        self.display
    }

    /// sshd's own address, bypassing the relays (it never changes).
    pub fn sshd_address(&self) -> SocketAddr {
        self.processes
            .as_ref()
            .map_or(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), |running| {
                running.sshd_address
            })
    }

    /// The listening sshd's PID, while it runs.
    pub fn sshd_pid(&self) -> Option<u32> {
        self.processes
            .as_ref()
            .map(|running| running.sshd_pid.load(Ordering::SeqCst))
            .filter(|pid| *pid != 0)
    }

    /// The PIDs of sshd and every process it forked (the SSH connections and sessions), for
    /// harnesses that pause or end them.
    pub fn sshd_pids(&self) -> Vec<u32> {
        self.sshd_pid().map_or_else(Vec::new, |pid| {
            std::iter::once(pid).chain(descendants(pid)).collect()
        })
    }

    /// Kills sshd and its connections (SIGKILL, by PID) and leaves it down, as when a pod's
    /// sshd dies: connections to the pod's SSH port fail until [`LocalPod::restart_sshd`].
    pub async fn kill_sshd(&mut self) {
        if let Some(running) = self.processes.as_mut() {
            running.sshd_pid.store(0, Ordering::SeqCst);
            sshd::stop(&running.sshd).await;
        }
    }

    /// Kills sshd and its connections (SIGKILL, by PID) and starts it again on the same
    /// address, as when a pod's sshd dies and is restarted inside the container: every SSH
    /// connection breaks, the pod and its Blender session keep running.
    ///
    /// # Errors
    /// [`Error::Sshd`] when sshd does not answer again within the start timeout.
    pub async fn restart_sshd(&mut self) -> Result<()> {
        self.kill_sshd().await;
        let Some(running) = self.processes.as_mut() else {
            return Ok(());
        };
        let pid = sshd::restart(&running.sshd, running.sshd_address, &self.paths).await?;
        running.sshd_pid.store(pid, Ordering::SeqCst);
        Ok(())
    }

    /// Moves pod `pod_id`'s SSH service to another relay port within the same boot, as when
    /// sshd is restarted on another port inside the container: the API reports the new port
    /// at once, the old port refuses (its connections are cut within one watcher interval) and
    /// the new one answers. The Blender session keeps running. Returns the new endpoint, or
    /// `None` when the pod is not running.
    pub fn move_ssh_endpoint(&self, pod_id: &str) -> Option<SocketAddr> {
        self.processes
            .as_ref()
            .and_then(|running| running.simulator.move_ssh_endpoint(pod_id))
    }

    /// The relay ports the pod boots cycle through.
    pub fn relay_ports(&self) -> Vec<u16> {
        self.processes
            .as_ref()
            .map(|running| running.relay_ports.clone())
            .unwrap_or_default()
    }

    /// Stops everything it started, by PID, in the order a container ends: the watcher, the
    /// relays, sshd and its connection processes (SIGKILL to each), then the session
    /// (`session.sh stop` with [`LocalPod::pod_env`], then SIGKILL to anything its PID files
    /// still name), and the simulator. A temporary state directory is removed; a given one is
    /// kept.
    ///
    /// # Errors
    /// [`Error::SessionStop`] when `session.sh stop` fails or times out (90 s); every other
    /// step is still done.
    #[tracing::instrument(level = "debug", skip(self), fields(state_dir = %self.state_dir.display()))]
    pub async fn shutdown(mut self) -> Result<()> {
        let Some(processes) = self.processes.take() else {
            return Ok(());
        };
        processes.shutdown(&self.paths, &self.env).await
    }
}

impl Drop for LocalPod {
    fn drop(&mut self) {
        if let Some(processes) = self.processes.take() {
            processes.kill_now(&self.paths);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_what_to_do_and_keep_their_source() {
        let error = Error::Sshd {
            address: "127.0.0.1:1".parse().unwrap(),
            log: "/s/logs/sshd.log".into(),
            source: io::Error::new(io::ErrorKind::TimedOut, "no SSH banner"),
        };
        assert_eq!(
            error.to_string(),
            "sshd did not start on 127.0.0.1:1; see its log /s/logs/sshd.log"
        );
        assert_eq!(
            std::error::Error::source(&error).map(ToString::to_string),
            Some("no SSH banner".to_owned())
        );
        let missing = Error::MissingPackages {
            missing: "/usr/bin/blender (Debian package blender)".into(),
            packages: "blender".into(),
        };
        assert!(
            missing
                .to_string()
                .contains("apt-get install -y --no-install-recommends blender")
        );
    }

    #[test]
    fn random_api_keys_differ_and_the_builder_debug_hides_them() {
        let one = random_api_key();
        assert_ne!(one.expose_secret(), random_api_key().expose_secret());
        let builder = LocalPod::builder().api_key(SecretString::from("hunter2-secret"));
        assert!(!format!("{builder:?}").contains("hunter2"));
    }
}
