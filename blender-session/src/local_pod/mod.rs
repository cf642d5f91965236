//! The embedded local pod: a faithful stand-in for a RunPod pod on this machine, for tests and
//! `rpb demo`, with no account and no cloud.
//!
//! [`LocalPod::start`] brings up, all on 127.0.0.1:
//!
//! - the `runpod-api` [`Simulator`], which keeps the pods and answers the REST v2 API;
//! - a private OpenSSH `sshd`, run as the current user from generated keys (the host key is
//!   made once per state directory, so it never changes across pod restarts, like a pod whose
//!   boot hook restores its persisted keys);
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

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt::{self, Write as _};
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use runpod_api::models::PodStatus;
use runpod_api::sim::{Simulator, SshEndpoints, Timings};
use secrecy::{ExposeSecret as _, SecretString};
use tokio::io::AsyncReadExt as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{Instant, sleep, timeout};

use crate::assets::{self, SessionPorts};

/// The OpenSSH server binary (sshd refuses to run from a relative path).
pub const SSHD: &str = "/usr/sbin/sshd";
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

    /// How long sshd gets to answer. Default: [`DEFAULT_START_TIMEOUT`] (15 s).
    pub fn start_timeout(mut self, limit: Duration) -> Self {
        self.start_timeout = limit;
        self
    }

    /// Prepares the state directory and starts sshd, the relays, the simulator and the
    /// watcher, on the current tokio runtime.
    ///
    /// # Errors
    /// [`Error::MissingPackages`] naming the Debian packages to install; [`Error::Prepare`],
    /// [`Error::UnsupportedPath`], [`Error::Assets`] and [`Error::Keygen`] for the state
    /// directory; [`Error::UnknownUser`]; [`Error::NoFree`] and [`Error::Bind`] for ports and
    /// the display; [`Error::Sshd`] when sshd does not answer in time; [`Error::Simulator`].
    /// Whatever was started before the failure is stopped again.
    #[tracing::instrument(level = "debug", skip(self), fields(state_dir = ?self.state_dir))]
    pub async fn start(mut self) -> Result<LocalPod> {
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
        check_config_safe(&state_dir)?;
        let paths = Paths::new(&state_dir);
        paths.create()?;
        assets::write_to(&paths.assets).map_err(|error| Error::Assets(Box::new(error)))?;
        let host_key = paths.host_keys.join("ssh_host_ed25519_key");
        ensure_key(&host_key, "rpb-local-pod-host").await?;
        ensure_key(&paths.client_key, "rpb-local-pod-client").await?;
        let public_key = read_trimmed(&paths.client_key.with_extension("pub"))?;
        let host_public_key = read_trimmed(&host_key.with_extension("pub"))?;
        write_file(&paths.authorized_keys, &format!("{public_key}\n"), 0o600)?;
        let host_key_fingerprint = fingerprint(&host_key.with_extension("pub")).await?;
        let user = current_user()?;

        let display = free_display()?;
        let ports = SessionPorts {
            mcp: free_port()?,
            vnc: free_port()?,
            novnc: free_port()?,
        };
        let env = pod_env(&paths, ports, display);
        if has_pid_files(&paths.run_dir()) {
            // A reused state directory whose last run did not shut down: end what its session
            // left running (recorded by PID and start time, so only our own processes).
            if let Err(error) = stop_session(&paths, &env).await {
                tracing::warn!(error = %error, "stopping the previous run's session failed");
            }
            kill_recorded(&paths.run_dir());
        }
        write_file(&paths.sshd_config, &sshd_config(&paths, &env), 0o600)?;
        if rustix::process::geteuid().is_root() {
            // sshd's privilege separation needs this folder when it runs as root.
            std::fs::create_dir_all("/run/sshd").map_err(|source| Error::Prepare {
                path: "/run/sshd".into(),
                source,
            })?;
        }

        let api_key = self.api_key.take().unwrap_or_else(random_api_key);
        // From here on, `LocalPod`'s Drop cleans up whatever was started if a step fails.
        let mut pod = LocalPod {
            api_key,
            user,
            public_key,
            host_public_key,
            host_key_fingerprint,
            env,
            ports,
            display,
            paths,
            state_dir,
            start_timeout: self.start_timeout,
            processes: None,
            _temporary: temporary,
        };
        pod.processes =
            Some(Processes::start(&pod.paths, &pod.env, pod.api_key.expose_secret(), &self).await?);
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
    start_timeout: Duration,
    processes: Option<Processes>,
    /// Declared last: removed after everything else is dropped.
    _temporary: Option<tempfile::TempDir>,
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

    /// The pod root, which stands in for a real pod's `/runpod` volume.
    pub fn pod_root(&self) -> &Path {
        &self.paths.pod_root
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
    /// | `RPB_MCP_PORT`, `RPB_VNC_PORT`, `RPB_NOVNC_PORT` | free ports of this machine, never the defaults 9876/5900/6080 (the local tunnel binds those here) |
    /// | `RPB_DISPLAY` | a free X display number |
    /// | `RPB_SCREEN` | `1280x720x24` |
    /// | `BLENDER_BIN` | [`BLENDER`] (no download in setup) |
    /// | `RPB_NOVNC_WEB` | [`NOVNC_WEB`] |
    /// | `RPB_PACKAGES` | `xvfb x11vnc novnc websockify` (installed here; nothing is installed) |
    /// | `RPB_DEB_SOURCE` | an empty `.deb` folder in the state directory: setup's package cache stays offline |
    /// | `RPB_SSH_DIR` | the folder of the local sshd's host key, which setup persists (not `/etc/ssh`) |
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
            vnc: remote.vnc,
            novnc: remote.novnc,
        };
        settings.local_ports = crate::seams::TunnelPorts {
            mcp: 0,
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
                running.sshd.address
            })
    }

    /// The listening sshd's PID, while it runs.
    pub fn sshd_pid(&self) -> Option<u32> {
        self.processes
            .as_ref()
            .and_then(|running| running.sshd.child.id())
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
            running.sshd.stop().await;
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
        let address = running.sshd.address;
        let log = self.paths.logs.join("sshd.log");
        let sshd = Sshd::spawn(&self.paths, address, &log, self.start_timeout)
            .await
            .map_err(|source| Error::Sshd {
                address,
                log,
                source,
            })?;
        running
            .sshd_pid
            .store(sshd.child.id().unwrap_or(0), Ordering::SeqCst);
        running.sshd = sshd;
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

/// Where everything lives in the state directory.
#[derive(Debug, Clone)]
struct Paths {
    pod_root: PathBuf,
    rpb_home: PathBuf,
    sshd_dir: PathBuf,
    host_keys: PathBuf,
    client_key: PathBuf,
    authorized_keys: PathBuf,
    sshd_config: PathBuf,
    sshd_pid: PathBuf,
    debs: PathBuf,
    assets: PathBuf,
    logs: PathBuf,
    /// The sessions' home folder (`HOME`), as a pod's `/root`.
    home: PathBuf,
}

impl Paths {
    fn new(state: &Path) -> Self {
        let sshd_dir = state.join("sshd");
        let pod_root = state.join("runpod");
        Self {
            rpb_home: pod_root.join("rpb"),
            pod_root,
            host_keys: sshd_dir.join("host-keys"),
            client_key: sshd_dir.join("client").join("id_ed25519"),
            authorized_keys: sshd_dir.join("authorized_keys"),
            sshd_config: sshd_dir.join("sshd_config"),
            sshd_pid: sshd_dir.join("sshd.pid"),
            sshd_dir,
            debs: state.join("debs"),
            assets: state.join("assets"),
            logs: state.join("logs"),
            home: state.join("home"),
        }
    }

    fn create(&self) -> Result<()> {
        for dir in [
            &self.pod_root,
            &self.debs,
            &self.assets,
            &self.logs,
            &self.home,
        ] {
            std::fs::create_dir_all(dir).map_err(|source| Error::Prepare {
                path: dir.clone(),
                source,
            })?;
        }
        let client_dir = self
            .client_key
            .parent()
            .expect("invariant: the client key is in a folder");
        for dir in [&self.sshd_dir, &self.host_keys, &client_dir.to_path_buf()] {
            create_private_dir(dir)?;
        }
        Ok(())
    }

    fn session_script(&self) -> PathBuf {
        self.assets.join(assets::SESSION_SCRIPT.name)
    }

    fn run_dir(&self) -> PathBuf {
        self.rpb_home.join("run")
    }
}

/// The pod-side environment (see [`LocalPod::pod_env`]).
fn pod_env(paths: &Paths, ports: SessionPorts, display: u32) -> BTreeMap<String, String> {
    let path = |p: &Path| p.display().to_string();
    [
        ("RPB_POD_ROOT", path(&paths.pod_root)),
        ("RPB_HOME", path(&paths.rpb_home)),
        ("RPB_MCP_PORT", ports.mcp.to_string()),
        ("RPB_VNC_PORT", ports.vnc.to_string()),
        ("RPB_NOVNC_PORT", ports.novnc.to_string()),
        ("RPB_DISPLAY", display.to_string()),
        ("RPB_SCREEN", "1280x720x24".to_owned()),
        ("BLENDER_BIN", BLENDER.to_owned()),
        ("RPB_NOVNC_WEB", NOVNC_WEB.to_owned()),
        ("RPB_PACKAGES", SESSION_PACKAGES.to_owned()),
        ("RPB_DEB_SOURCE", path(&paths.debs)),
        ("RPB_SSH_DIR", path(&paths.host_keys)),
        ("HOME", path(&paths.home)),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value))
    .collect()
}

/// The sshd configuration: loopback only, keys only, forwarding and SFTP on, the pod
/// environment set in every session. Paths were checked by [`check_config_safe`].
fn sshd_config(paths: &Paths, env: &BTreeMap<String, String>) -> String {
    let set_env = env
        .iter()
        .map(|(name, value)| format!("{name}=\"{value}\""))
        .collect::<Vec<_>>()
        .join(" ");
    format!(
        "# Written by rpb's local pod; regenerated at every start.\n\
         ListenAddress 127.0.0.1\n\
         HostKey \"{host_key}\"\n\
         PidFile \"{pid}\"\n\
         AuthorizedKeysFile \"{authorized}\"\n\
         PubkeyAuthentication yes\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         PermitRootLogin prohibit-password\n\
         UsePAM no\n\
         StrictModes no\n\
         AllowTcpForwarding yes\n\
         X11Forwarding no\n\
         Subsystem sftp internal-sftp\n\
         MaxSessions 64\n\
         MaxStartups 64\n\
         PrintMotd no\n\
         LogLevel INFO\n\
         SetEnv {set_env}\n",
        host_key = paths.host_keys.join("ssh_host_ed25519_key").display(),
        pid = paths.sshd_pid.display(),
        authorized = paths.authorized_keys.display(),
    )
}

/// Refuses paths that an `sshd_config` line (or its `SetEnv` quoting) cannot hold.
fn check_config_safe(path: &Path) -> Result<()> {
    let ok = path.is_absolute()
        && path.to_str().is_some_and(|text| {
            !text.chars().any(|c| {
                c.is_whitespace() || c.is_control() || matches!(c, '"' | '\'' | '\\' | '%')
            })
        });
    if ok {
        Ok(())
    } else {
        Err(Error::UnsupportedPath {
            path: path.to_path_buf(),
        })
    }
}

/// Fails, naming every missing program's Debian package, unless all are installed.
fn require_programs() -> Result<()> {
    let checks: [(&str, bool, &str); 9] = [
        (SSHD, is_executable(Path::new(SSHD)), "openssh-server"),
        ("ssh-keygen", which("ssh-keygen"), "openssh-client"),
        (BLENDER, is_executable(Path::new(BLENDER)), "blender"),
        ("Xvfb", which("Xvfb"), "xvfb"),
        ("x11vnc", which("x11vnc"), "x11vnc"),
        ("websockify", which("websockify"), "websockify"),
        (
            "/usr/share/novnc/vnc.html",
            Path::new(NOVNC_WEB).join("vnc.html").is_file(),
            "novnc",
        ),
        ("setsid", which("setsid"), "util-linux"),
        ("flock", which("flock"), "util-linux"),
    ];
    let missing: Vec<_> = checks.iter().filter(|(_, found, _)| !found).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let mut packages: Vec<&str> = missing.iter().map(|(_, _, package)| *package).collect();
    packages.dedup();
    Err(Error::MissingPackages {
        missing: missing
            .iter()
            .map(|(program, _, package)| format!("{program} (Debian package {package})"))
            .collect::<Vec<_>>()
            .join(", "),
        packages: packages.join(" "),
    })
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path)
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| is_executable(&dir.join(program)))
    })
}

fn create_private_dir(dir: &Path) -> Result<()> {
    let prepare = || -> io::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
    };
    prepare().map_err(|source| Error::Prepare {
        path: dir.to_path_buf(),
        source,
    })
}

fn write_file(path: &Path, contents: &str, mode: u32) -> Result<()> {
    let write = || -> io::Result<()> {
        let temporary = path.with_extension("rpb-tmp");
        std::fs::write(&temporary, contents)?;
        std::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(mode))?;
        std::fs::rename(&temporary, path)
    };
    write().map_err(|source| Error::Prepare {
        path: path.to_path_buf(),
        source,
    })
}

fn read_trimmed(path: &Path) -> Result<String> {
    std::fs::read_to_string(path)
        .map(|text| text.trim().to_owned())
        .map_err(|source| Error::Prepare {
            path: path.to_path_buf(),
            source,
        })
}

/// Generates an ed25519 key pair at `path` (no passphrase) unless one is there already.
async fn ensure_key(path: &Path, comment: &str) -> Result<()> {
    if path.is_file() && path.with_extension("pub").is_file() {
        return Ok(());
    }
    let _ = std::fs::remove_file(path);
    let _ = std::fs::remove_file(path.with_extension("pub"));
    let output = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = timeout(Duration::from_secs(30), output)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "ssh-keygen took over 30 s"))
        .and_then(|result| result)
        .map_err(|source| Error::Keygen {
            path: path.to_path_buf(),
            source,
        })?;
    if output.status.success() {
        Ok(())
    } else {
        Err(Error::Keygen {
            path: path.to_path_buf(),
            source: io::Error::other(format!(
                "ssh-keygen exited with {}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            )),
        })
    }
}

/// The `SHA256:…` fingerprint of a public key file, from `ssh-keygen -l`.
async fn fingerprint(public_key: &Path) -> Result<String> {
    let keygen_error = |source| Error::Keygen {
        path: public_key.to_path_buf(),
        source,
    };
    let output = timeout(
        Duration::from_secs(30),
        Command::new("ssh-keygen")
            .args(["-l", "-E", "sha256", "-f"])
            .arg(public_key)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .map_err(|_| {
        keygen_error(io::Error::new(
            io::ErrorKind::TimedOut,
            "ssh-keygen -l took over 30 s",
        ))
    })?
    .map_err(keygen_error)?;
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .nth(1)
        .filter(|field| field.starts_with("SHA256:"))
        .map(str::to_owned)
        .ok_or_else(|| keygen_error(io::Error::other("ssh-keygen -l printed no fingerprint")))
}

/// The current user's login name: the effective uid's entry in `/etc/passwd`, else `USER` or
/// `LOGNAME`.
fn current_user() -> Result<String> {
    let uid = rustix::process::geteuid().as_raw();
    let from_passwd = std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|text| user_from_passwd(&text, uid));
    from_passwd
        .or_else(|| std::env::var("USER").ok().filter(|name| !name.is_empty()))
        .or_else(|| {
            std::env::var("LOGNAME")
                .ok()
                .filter(|name| !name.is_empty())
        })
        .ok_or(Error::UnknownUser { uid })
}

fn user_from_passwd(passwd: &str, uid: u32) -> Option<String> {
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let entry_uid = fields.nth(1)?.parse::<u32>().ok()?;
        (entry_uid == uid && !name.is_empty()).then(|| name.to_owned())
    })
}

fn random_api_key() -> SecretString {
    let bytes: [u8; 24] = rand::random();
    let key = bytes
        .iter()
        .fold(String::with_capacity(48), |mut key, byte| {
            let _ = write!(key, "{byte:02x}");
            key
        });
    SecretString::from(format!("rpb-local-{key}"))
}

/// Ports and displays handed out by this process, so two local pods never share one.
static TAKEN: Mutex<Option<HashSet<u32>>> = Mutex::new(None);

fn take(value: u32) -> bool {
    let mut taken = TAKEN.lock().unwrap_or_else(PoisonError::into_inner);
    taken.get_or_insert_with(HashSet::new).insert(value)
}

/// A free loopback port for a session part, below the kernel's ephemeral range (so no
/// outgoing connection takes it before the session starts), never 9876/5900/6080.
fn free_port() -> Result<u16> {
    for _ in 0..500 {
        let port: u16 = rand::random_range(20_000..32_000);
        let key = u32::from(port) | 0x1_0000;
        if std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() && take(key) {
            return Ok(port);
        }
    }
    Err(Error::NoFree {
        what: "loopback port between 20000 and 32000",
    })
}

/// An X display number with neither a lock file nor a socket.
fn free_display() -> Result<u32> {
    for _ in 0..500 {
        let display: u32 = rand::random_range(100..1_000);
        if !Path::new(&format!("/tmp/.X{display}-lock")).exists()
            && !Path::new(&format!("/tmp/.X11-unix/X{display}")).exists()
            && take(display)
        {
            return Ok(display);
        }
    }
    Err(Error::NoFree {
        what: "X display number between 100 and 1000",
    })
}

// --- processes -------------------------------------------------------------------------------

/// Everything running: simulator, sshd, relays, watcher.
struct Processes {
    simulator: Arc<Simulator>,
    sshd: Sshd,
    /// sshd's PID for the container task, which outlives a restart of sshd.
    sshd_pid: Arc<AtomicU32>,
    relay_ports: Vec<u16>,
    relays: Vec<JoinHandle<()>>,
    /// The watcher's end flag; dropping it also ends the watcher.
    stop_watcher: watch::Sender<bool>,
    watcher: JoinHandle<()>,
    container: JoinHandle<()>,
}

impl Processes {
    async fn start(
        paths: &Paths,
        env: &BTreeMap<String, String>,
        api_key: &str,
        options: &LocalPodBuilder,
    ) -> Result<Self> {
        let sshd = Sshd::start(paths, options.start_timeout).await?;
        let mut reserved = Vec::with_capacity(options.relays);
        for _ in 0..options.relays {
            reserved.push(reserve(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?);
        }
        let relay_ports = reserved
            .iter()
            .map(|socket| {
                socket
                    .local_addr()
                    .ok()
                    .and_then(|address| address.as_socket())
                    .map_or(0, |address| address.port())
            })
            .collect::<Vec<_>>();
        let endpoints = relay_ports
            .iter()
            .map(|port| SocketAddr::from((Ipv4Addr::LOCALHOST, *port)))
            .collect();
        let simulator = Simulator::builder()
            .api_key(api_key)
            .timings(options.timings.clone())
            .ssh_endpoints(SshEndpoints::Rotating(endpoints))
            .start()
            .await
            .map_err(Error::Simulator)?;
        let simulator = Arc::new(simulator);

        let (live_tx, live_rx) = watch::channel(BTreeSet::new());
        let relays = reserved
            .into_iter()
            .zip(&relay_ports)
            .map(|(socket, port)| {
                tokio::spawn(relay(Relay {
                    port: *port,
                    reserved: Some(socket),
                    target: sshd.address,
                    live: live_rx.clone(),
                    simulator: simulator.clone(),
                }))
            })
            .collect();
        let (container_tx, container_rx) = mpsc::channel(1);
        let sshd_pid = Arc::new(AtomicU32::new(sshd.child.id().unwrap_or(0)));
        let container = tokio::spawn(container_life(
            container_rx,
            simulator.clone(),
            sshd_pid.clone(),
            paths.clone(),
            env.clone(),
        ));
        let (stop_watcher, stop_rx) = watch::channel(false);
        let watcher = tokio::spawn(watch_pods(
            simulator.clone(),
            live_tx,
            container_tx,
            options.poll_interval,
            stop_rx,
        ));
        Ok(Self {
            simulator,
            sshd,
            sshd_pid,
            relay_ports,
            relays,
            stop_watcher,
            watcher,
            container,
        })
    }

    async fn shutdown(self, paths: &Paths, env: &BTreeMap<String, String>) -> Result<()> {
        let Self {
            simulator,
            mut sshd,
            relays,
            stop_watcher,
            watcher,
            container,
            ..
        } = self;
        let _ = stop_watcher.send(true);
        // The watcher ends at once (closing the container channel, which ends that task once
        // any `session.sh stop` it runs is done).
        let _ = timeout(Duration::from_secs(5), watcher).await;
        let container_abort = container.abort_handle();
        if timeout(SESSION_STOP_TIMEOUT, container).await.is_err() {
            container_abort.abort();
        }
        // As when a container ends: the connections and SSH sessions first (a `session.sh
        // start` running over SSH would hold the session lock), then the session by its PID
        // files. The relays' live-port channel closed with the watcher; make sure they are gone.
        for relay in relays {
            relay.abort();
            let _ = relay.await;
        }
        sshd.stop().await;
        let result = stop_session(paths, env).await;
        kill_recorded(&paths.run_dir());
        match Arc::try_unwrap(simulator) {
            Ok(simulator) => simulator.shutdown().await,
            Err(shared) => drop(shared),
        }
        result
    }

    /// Best effort, without waiting: what Drop can do.
    fn kill_now(self, paths: &Paths) {
        let _ = self.stop_watcher.send(true);
        self.watcher.abort();
        self.container.abort();
        for relay in &self.relays {
            relay.abort();
        }
        kill_recorded(&paths.run_dir());
        let mut sshd = self.sshd;
        sshd.kill_now();
    }
}

/// The private sshd.
struct Sshd {
    child: Child,
    address: SocketAddr,
}

impl Sshd {
    async fn start(paths: &Paths, limit: Duration) -> Result<Self> {
        let log = paths.logs.join("sshd.log");
        let mut last_error = None;
        // A free port may be taken between the check and sshd's bind: try a few.
        for _ in 0..5 {
            let probe =
                std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|source| {
                    Error::Bind {
                        address: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
                        source,
                    }
                })?;
            let address = probe.local_addr().map_err(|source| Error::Bind {
                address: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
                source,
            })?;
            drop(probe);
            match Self::spawn(paths, address, &log, limit).await {
                Ok(sshd) => return Ok(sshd),
                Err(source) => {
                    tracing::debug!(%address, error = %source, "sshd did not start; trying another port");
                    last_error = Some((address, source));
                }
            }
        }
        let (address, source) = last_error.expect("invariant: the loop ran at least once");
        Err(Error::Sshd {
            address,
            log,
            source,
        })
    }

    async fn spawn(
        paths: &Paths,
        address: SocketAddr,
        log: &Path,
        limit: Duration,
    ) -> io::Result<Self> {
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?;
        let child = Command::new(SSHD)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&paths.sshd_config)
            .arg("-p")
            .arg(address.port().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            // Its own process group: a terminal's Ctrl-C reaches the program, which then
            // stops sshd in order.
            .process_group(0)
            .kill_on_drop(true)
            .spawn()?;
        let mut sshd = Self { child, address };
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = sshd.child.try_wait()? {
                return Err(io::Error::other(format!(
                    "sshd exited at once with {status}"
                )));
            }
            if banner_answers(address).await {
                tracing::debug!(%address, pid = ?sshd.child.id(), "sshd answers");
                return Ok(sshd);
            }
            if Instant::now() >= deadline {
                sshd.stop().await;
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no SSH banner within {limit:?}"),
                ));
            }
            sleep(Duration::from_millis(25)).await;
        }
    }

    /// SIGKILL to the listener and every process it forked (connection processes call
    /// `setsid`, so a process group does not reach them), by PID; then reaps the listener.
    async fn stop(&mut self) {
        self.kill_now();
        let _ = timeout(Duration::from_secs(5), self.child.wait()).await;
    }

    fn kill_now(&mut self) {
        if let Some(pid) = self.child.id() {
            let family = descendants(pid);
            kill(pid);
            for child in family {
                kill(child);
            }
        }
        let _ = self.child.start_kill();
    }
}

/// Whether an SSH server answers at `address` with its banner.
async fn banner_answers(address: SocketAddr) -> bool {
    let Ok(Ok(mut stream)) = timeout(Duration::from_millis(500), TcpStream::connect(address)).await
    else {
        return false;
    };
    let mut banner = [0_u8; 8];
    matches!(
        timeout(Duration::from_secs(2), stream.read_exact(&mut banner)).await,
        Ok(Ok(_))
    ) && banner.starts_with(b"SSH-2.0-")
}

fn kill(pid: u32) {
    if let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
}

/// `(pid, parent pid, start time)` of every process, from `/proc/PID/stat`.
fn process_table() -> Vec<(u32, u32, u64)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            let (parent, started) = parse_stat(&stat)?;
            Some((pid, parent, started))
        })
        .collect()
}

/// Parent PID and start time (fields 4 and 22) of a `/proc/PID/stat` line. The command name
/// (field 2) may hold spaces and parentheses: fields are counted after the last `)`.
fn parse_stat(stat: &str) -> Option<(u32, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some((fields.get(1)?.parse().ok()?, fields.get(19)?.parse().ok()?))
}

/// Every live process descended from `root`.
fn descendants(root: u32) -> Vec<u32> {
    let table = process_table();
    let mut found = Vec::new();
    let mut frontier = vec![root];
    while let Some(parent) = frontier.pop() {
        for &(pid, ppid, _) in &table {
            if ppid == parent && pid != root && !found.contains(&pid) {
                found.push(pid);
                frontier.push(pid);
            }
        }
    }
    found
}

/// SIGKILL to each process a session PID file names (`PID STARTTIME`, as `session.sh` writes
/// them) when that PID still has that start time, and to its descendants.
fn kill_recorded(run_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(run_dir) else {
        return;
    };
    let table = process_table();
    for entry in entries.flatten() {
        if entry.path().extension().is_none_or(|ext| ext != "pid") {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        let mut fields = text.split_whitespace();
        let (Some(Ok(pid)), Some(Ok(started))) = (
            fields.next().map(str::parse::<u32>),
            fields.next().map(str::parse::<u64>),
        ) else {
            continue;
        };
        if table.iter().any(|&(p, _, s)| p == pid && s == started) {
            let family = descendants(pid);
            kill(pid);
            for child in family {
                kill(child);
            }
            tracing::warn!(pid, file = %entry.path().display(), "killed a session process left running");
        }
    }
}

/// Whether any session PID file exists.
fn has_pid_files(run_dir: &Path) -> bool {
    std::fs::read_dir(run_dir).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|entry| entry.path().extension().is_some_and(|ext| ext == "pid"))
    })
}

/// Whether a render job was ever started here (`jobs/<id>/job.pid`): `session.sh stop` ends
/// the running ones, as a container's end does.
fn has_render_jobs(rpb_home: &Path) -> bool {
    std::fs::read_dir(rpb_home.join("jobs")).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|entry| entry.path().join("job.pid").is_file())
    })
}

/// Runs this crate's `session.sh stop` against the pod root, bounded, with its output in
/// `logs/container.log`. Does nothing when no PID file exists.
async fn stop_session(paths: &Paths, env: &BTreeMap<String, String>) -> Result<()> {
    if !has_pid_files(&paths.run_dir()) && !has_render_jobs(&paths.rpb_home) {
        return Ok(());
    }
    let log = paths.logs.join("container.log");
    let fail = |source| Error::SessionStop {
        log: log.clone(),
        source,
    };
    let open_log = || {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
    };
    let stdout = open_log().map_err(fail)?;
    let stderr = open_log().map_err(fail)?;
    let mut child = Command::new("bash")
        .arg(paths.session_script())
        .arg("stop")
        .env_remove("VNC_PASSWORD")
        .env_remove("VNC_PASSWORD_FILE")
        .envs(env)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .kill_on_drop(true)
        .spawn()
        .map_err(fail)?;
    let Ok(status) = timeout(SESSION_STOP_TIMEOUT, child.wait()).await else {
        let _ = child.start_kill();
        return Err(fail(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("session.sh stop did not finish within {SESSION_STOP_TIMEOUT:?}"),
        )));
    };
    let status = status.map_err(fail)?;
    if status.success() {
        Ok(())
    } else {
        Err(fail(io::Error::other(format!(
            "session.sh stop exited with {status}"
        ))))
    }
}

// --- relays ----------------------------------------------------------------------------------

/// A loopback socket bound to `address` but not listening: it holds the port, and connections
/// to it are refused.
fn reserve(address: SocketAddr) -> Result<socket2::Socket> {
    let bind = || -> io::Result<socket2::Socket> {
        let socket = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )?;
        // Rebinding right after closing the listener must not trip over TIME_WAIT.
        socket.set_reuse_address(true)?;
        socket.bind(&address.into())?;
        Ok(socket)
    };
    bind().map_err(|source| Error::Bind { address, source })
}

struct Relay {
    port: u16,
    reserved: Option<socket2::Socket>,
    target: SocketAddr,
    live: watch::Receiver<BTreeSet<u16>>,
    simulator: Arc<Simulator>,
}

/// One relay port: refuses while its port is not a current boot's endpoint; listens and
/// forwards to sshd while it is; closes its connections the moment it stops being one.
async fn relay(mut relay: Relay) {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, relay.port));
    loop {
        if relay
            .live
            .wait_for(|live| live.contains(&relay.port))
            .await
            .is_err()
        {
            return;
        }
        let listener = match listen(relay.reserved.take(), address) {
            Ok(listener) => listener,
            Err(error) => {
                tracing::warn!(%address, %error, "an SSH relay could not listen; retrying");
                sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        tracing::debug!(%address, "relay listening");
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                changed = relay.live.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    if !relay.live.borrow_and_update().contains(&relay.port) {
                        break;
                    }
                }
                accepted = listener.accept() => {
                    let Ok((inbound, _)) = accepted else {
                        // Out of descriptors, say: don't spin.
                        sleep(Duration::from_millis(50)).await;
                        continue;
                    };
                    // Decide on the simulator's state now, not at the last poll: a port whose
                    // boot just ended never shows an SSH banner.
                    if !live_ports(&relay.simulator).contains(&relay.port) {
                        drop(inbound);
                        continue;
                    }
                    connections.spawn(forward(inbound, relay.target));
                }
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
        // The boot ended: refuse from now on, and cut what was connected.
        drop(listener);
        connections.shutdown().await;
        tracing::debug!(%address, "relay closed");
        relay.reserved = reserve(address).ok();
    }
}

fn listen(reserved: Option<socket2::Socket>, address: SocketAddr) -> io::Result<TcpListener> {
    let socket = match reserved {
        Some(socket) => socket,
        None => reserve(address).map_err(|error| match error {
            Error::Bind { source, .. } => source,
            other => io::Error::other(other.to_string()),
        })?,
    };
    socket.listen(128)?;
    socket.set_nonblocking(true)?;
    TcpListener::from_std(socket.into())
}

async fn forward(mut inbound: TcpStream, target: SocketAddr) {
    let Ok(Ok(mut outbound)) = timeout(Duration::from_secs(5), TcpStream::connect(target)).await
    else {
        tracing::warn!(%target, "a relay could not reach sshd");
        return;
    };
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    let _ = tokio::io::copy_bidirectional_with_sizes(
        &mut inbound,
        &mut outbound,
        RELAY_BUFFER,
        RELAY_BUFFER,
    )
    .await;
}

// --- the container's life --------------------------------------------------------------------

/// A pod's boot as the watcher sees it, with the boot's number (a restart is a new boot; an
/// SSH service moved to another port is the same one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Boot {
    /// Provisioning or starting (or running without `22/tcp`): the container is coming up.
    Booting(u64),
    /// Running, serving SSH at this endpoint.
    Running(u64, SocketAddr),
}

impl Boot {
    fn number(self) -> u64 {
        match self {
            Self::Booting(number) | Self::Running(number, _) => number,
        }
    }
}

/// The boots of all pods that are up (pods that are down are absent).
fn observe(simulator: &Simulator) -> BTreeMap<String, Boot> {
    simulator
        .pods()
        .into_iter()
        .filter_map(|pod| {
            let id = pod.id.as_str().to_owned();
            let number = simulator.current_boot(&id)?;
            let boot = match simulator.current_ssh_endpoint(&id) {
                Some(endpoint) => Boot::Running(number, endpoint),
                None if matches!(
                    pod.status,
                    PodStatus::Provisioning | PodStatus::Starting | PodStatus::Running
                ) =>
                {
                    Boot::Booting(number)
                }
                None => return None,
            };
            Some((id, boot))
        })
        .collect()
}

/// The relay ports that are some pod's current boot's endpoint.
fn live_ports(simulator: &Simulator) -> BTreeSet<u16> {
    ports_of(&observe(simulator))
}

fn ports_of(boots: &BTreeMap<String, Boot>) -> BTreeSet<u16> {
    boots
        .values()
        .filter_map(|boot| match boot {
            Boot::Running(_, endpoint) => Some(endpoint.port()),
            Boot::Booting(_) => None,
        })
        .collect()
}

/// Whether the change from `before` to `now` ends the machine's container: some pod's boot
/// ended (the pod went down, or booted again) and no pod's boot went on.
fn container_ended(before: &BTreeMap<String, Boot>, now: &BTreeMap<String, Boot>) -> bool {
    let mut ended = false;
    let mut went_on = false;
    for (id, previous) in before {
        match (previous, now.get(id)) {
            (_, None) => ended = true,
            (previous, Some(current)) if current.number() != previous.number() => ended = true,
            (_, Some(_)) => went_on = true,
        }
    }
    ended && !went_on
}

/// Reads the pods every `interval`, publishes the live relay ports, and signals the container
/// task when the container ends.
async fn watch_pods(
    simulator: Arc<Simulator>,
    live: watch::Sender<BTreeSet<u16>>,
    container: mpsc::Sender<()>,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut before = BTreeMap::new();
    loop {
        let now = observe(&simulator);
        let ports = ports_of(&now);
        live.send_if_modified(|current| {
            let changed = *current != ports;
            if changed {
                current.clone_from(&ports);
            }
            changed
        });
        if container_ended(&before, &now) {
            tracing::debug!("the local pod's container ended");
            // A full channel already holds a pending stop: one run covers both.
            let _ = container.try_send(());
        }
        before = now;
        tokio::select! {
            () = sleep(interval) => {}
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
    }
}

/// Does what a container's end does to its processes: ends the SSH sessions (when no pod runs
/// any more) and stops the Blender session by its PID files.
async fn container_life(
    mut ended: mpsc::Receiver<()>,
    simulator: Arc<Simulator>,
    sshd_pid: Arc<AtomicU32>,
    paths: Paths,
    env: BTreeMap<String, String>,
) {
    while ended.recv().await.is_some() {
        let nothing_runs = observe(&simulator)
            .values()
            .all(|boot| matches!(boot, Boot::Booting(_)));
        let sshd_pid = sshd_pid.load(Ordering::SeqCst);
        if nothing_runs && sshd_pid != 0 {
            let pid = sshd_pid;
            let sessions = descendants(pid);
            for session in &sessions {
                kill(*session);
            }
            if !sessions.is_empty() {
                tracing::debug!(
                    count = sessions.len(),
                    "ended the SSH sessions of the stopped pod"
                );
            }
        }
        if let Err(error) = stop_session(&paths, &env).await {
            tracing::warn!(error = %error, "stopping the session of a stopped local pod failed");
            kill_recorded(&paths.run_dir());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddrV4;

    use super::*;

    fn up(boot: u64, port: u16) -> Boot {
        Boot::Running(
            boot,
            SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)),
        )
    }

    fn boots(list: &[(&str, Boot)]) -> BTreeMap<String, Boot> {
        list.iter()
            .map(|(id, boot)| ((*id).to_owned(), *boot))
            .collect()
    }

    #[test]
    fn the_container_ends_when_the_only_boot_ends() {
        let running = boots(&[("a", up(1, 1))]);
        assert!(
            container_ended(&running, &boots(&[])),
            "stopped or terminated"
        );
        assert!(
            container_ended(&running, &boots(&[("a", Boot::Booting(2))])),
            "restarting"
        );
        assert!(
            container_ended(&running, &boots(&[("a", up(2, 2))])),
            "restarted"
        );
        assert!(
            !container_ended(&running, &boots(&[("a", up(1, 2))])),
            "sshd moved to another port within the boot"
        );
        assert!(!container_ended(&running, &running), "still running");
        let booting = boots(&[("a", Boot::Booting(1))]);
        assert!(!container_ended(&booting, &running), "came up");
        assert!(
            container_ended(&booting, &boots(&[])),
            "stopped while booting"
        );
        assert!(!container_ended(&boots(&[]), &running), "a new pod");
    }

    #[test]
    fn another_pod_s_boot_keeps_the_container() {
        let two = boots(&[("a", up(1, 1)), ("b", up(1, 2))]);
        assert!(!container_ended(&two, &boots(&[("b", up(1, 2))])));
        assert!(
            container_ended(&two, &boots(&[("b", up(2, 3))])),
            "both ended"
        );
        assert_eq!(ports_of(&two), BTreeSet::from([1, 2]));
        assert!(ports_of(&boots(&[("a", Boot::Booting(1))])).is_empty());
    }

    #[test]
    fn stat_lines_with_odd_command_names_parse() {
        let stat = "4242 (my (odd) prog) S 17 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 \
                    987654 1000 100 18446744073709551615";
        assert_eq!(parse_stat(stat), Some((17, 987_654)));
        assert_eq!(parse_stat("garbage"), None);
        let own = std::fs::read_to_string("/proc/self/stat").unwrap();
        let (parent, _) = parse_stat(&own).unwrap();
        assert_eq!(parent, std::os::unix::process::parent_id());
    }

    #[test]
    fn users_come_from_passwd() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\nme:x:1000:1000::/home/me:/bin/sh\nbad\n";
        assert_eq!(user_from_passwd(passwd, 0).as_deref(), Some("root"));
        assert_eq!(user_from_passwd(passwd, 1000).as_deref(), Some("me"));
        assert_eq!(user_from_passwd(passwd, 7), None);
    }

    #[test]
    fn paths_sshd_config_cannot_hold_are_refused() {
        assert!(check_config_safe(Path::new("/tmp/rpb-local-pod-x1")).is_ok());
        for bad in [
            "relative/dir",
            "/tmp/with space",
            "/tmp/q\"uote",
            "/tmp/100%",
            "/tmp/a\\b",
        ] {
            assert!(
                matches!(
                    check_config_safe(Path::new(bad)),
                    Err(Error::UnsupportedPath { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_sshd_config_is_private_and_sets_the_pod_env() {
        let paths = Paths::new(Path::new("/state"));
        let ports = SessionPorts {
            mcp: 21_001,
            vnc: 21_002,
            novnc: 21_003,
        };
        let env = pod_env(&paths, ports, 321);
        assert_eq!(env["RPB_POD_ROOT"], "/state/runpod");
        assert_eq!(env["RPB_HOME"], "/state/runpod/rpb");
        assert_eq!(env["RPB_DISPLAY"], "321");
        assert_eq!(env["RPB_SSH_DIR"], "/state/sshd/host-keys");
        assert_eq!(env["BLENDER_BIN"], BLENDER);
        let config = sshd_config(&paths, &env);
        for line in [
            "ListenAddress 127.0.0.1\n",
            "PasswordAuthentication no\n",
            "UsePAM no\n",
            "StrictModes no\n",
            "AllowTcpForwarding yes\n",
            "Subsystem sftp internal-sftp\n",
            "HostKey \"/state/sshd/host-keys/ssh_host_ed25519_key\"\n",
            "PidFile \"/state/sshd/sshd.pid\"\n",
        ] {
            assert!(config.contains(line), "{line:?} in\n{config}");
        }
        assert!(config.contains(" RPB_PACKAGES=\"xvfb x11vnc novnc websockify\""));
        assert!(config.contains(" RPB_MCP_PORT=\"21001\""));
    }

    #[test]
    fn free_ports_and_displays_are_never_handed_out_twice() {
        let ports: HashSet<u16> = (0..20).map(|_| free_port().unwrap()).collect();
        assert_eq!(ports.len(), 20);
        assert!(ports.iter().all(|port| (20_000..32_000).contains(port)));
        let displays: HashSet<u32> = (0..10).map(|_| free_display().unwrap()).collect();
        assert_eq!(displays.len(), 10);
    }

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
