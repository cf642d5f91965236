//! The session's types: [`Session`] and [`SessionStatus`], the [`SessionSettings`], and the
//! progress reports ([`Step`], [`Event`]).

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::sync::Arc;
use std::time::Duration;

use pod_tunnel::shell;
use secrecy::SecretString;

use crate::assets::{BlenderRelease, SessionReport};
use crate::costs::StoragePrices;
use crate::seams::{PodView, RemoteHost, SshAddr, TunnelHandle, TunnelPorts, TunnelState};
use crate::{Error, Result, mcp};

/// A step of the lifecycle, for progress display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Step {
    /// Making sure the account has the SSH key registered.
    RegisterKey,
    /// Creating the pod.
    CreatePod,
    /// Asking the pod to start.
    StartPod,
    /// Waiting for a GPU on the pod's host.
    WaitForGpu,
    /// Waiting for `RUNNING` with an SSH endpoint.
    WaitRunning,
    /// Waiting for the SSH banner.
    WaitSsh,
    /// Connecting and verifying the host key.
    Connect,
    /// Pinning the pod's SSH host key, or trusting it on a first contact: worth a line of its
    /// own (a fingerprint the user may want to compare).
    HostKey,
    /// Running the setup script.
    Setup,
    /// Running the session script.
    Session,
    /// Opening the tunnel.
    Tunnel,
    /// Waiting for Blender's MCP socket and noVNC through the tunnel.
    WaitServices,
    /// Everything is ready.
    Ready,
    /// Closing the tunnel.
    CloseTunnel,
    /// Asking the pod to stop.
    StopPod,
    /// Waiting for `EXITED` with cost 0.
    WaitStopped,
    /// Saving or opening a scene, moving files.
    Transfer,
    /// Replacing a pod that cannot start with a new pod on another host that mounts the same
    /// network volume.
    Move,
    /// Terminating a pod whose work is on a network volume.
    Terminate,
    /// Bringing up, checking or taking down a render farm.
    Farm,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::RegisterKey => "register ssh key",
            Self::CreatePod => "create pod",
            Self::StartPod => "start pod",
            Self::WaitForGpu => "wait for a free gpu",
            Self::WaitRunning => "wait for the pod to run",
            Self::WaitSsh => "wait for ssh",
            Self::Connect => "connect",
            Self::Setup => "set up the pod",
            Self::Session => "start blender",
            Self::Tunnel => "open the tunnel",
            Self::WaitServices => "wait for blender and novnc",
            Self::Ready => "ready",
            Self::CloseTunnel => "close the tunnel",
            Self::StopPod => "stop pod",
            Self::WaitStopped => "wait for the pod to stop",
            Self::Transfer => "transfer",
            Self::HostKey => "host key",
            Self::Move => "move to another host",
            Self::Terminate => "terminate pod",
            Self::Farm => "render farm",
        })
    }
}

/// A progress report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The step.
    pub step: Step,
    /// Time since the operation began.
    pub elapsed: Duration,
    /// A short human-readable detail.
    pub detail: String,
}

/// Receives progress events.
pub type Events<'a> = &'a (dyn Fn(&Event) + Send + Sync);

/// Retrying a start while the pod's host has no free GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitForGpu {
    /// Pause between attempts.
    pub interval: Duration,
    /// Give up after this long.
    pub deadline: Duration,
}

/// How sessions are set up and run. Defaults match a RunPod pod.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SessionSettings {
    /// The persistent volume on the pod. Default: `/runpod`.
    pub pod_root: String,
    /// Extra environment for the pod-side scripts (the local pod sets paths and ports here).
    pub pod_env: BTreeMap<String, String>,
    /// The Blender the setup script downloads when the pod has none, with the checksum its
    /// archive must match (`RPB_BLENDER_VERSION`, `RPB_BLENDER_SHA256`). Default:
    /// [`DEFAULT_BLENDER_VERSION`](crate::assets::DEFAULT_BLENDER_VERSION) with its embedded
    /// SHA-256.
    pub blender: BlenderRelease,
    /// Which addon serves the MCP port (`RPB_MCP_ADDON`). Default: the upstream blender-mcp
    /// addon of the pinned release ([`mcp::UPSTREAM_VERSION`]).
    pub mcp_addon: mcp::McpAddon,
    /// Pod-side ports of the MCP socket, rpb's control socket, VNC and noVNC. Default: 9876,
    /// 9877, 5900, 6080.
    pub remote_ports: TunnelPorts,
    /// Local ports of the tunnel (0 picks a free one). Default: 9876, 9877, 5900, 6080.
    pub local_ports: TunnelPorts,
    /// The VNC password, sent to the pod over SSH standard input only.
    pub vnc_password: SecretString,
    /// Leave a pod this call started running when a later step fails. Default: `false`.
    pub keep_pod_on_failure: bool,
    /// Deadline for `RUNNING` with an SSH endpoint. Default: 10 min.
    pub ready_timeout: Duration,
    /// Deadline for an SSH banner once the API says running (stale ports). Default: 3 min.
    pub ssh_timeout: Duration,
    /// Deadline for Blender and noVNC to answer through the tunnel. Default: 3 min.
    pub services_timeout: Duration,
    /// Deadline of the setup script (it may download Blender). Default: 30 min.
    pub setup_timeout: Duration,
    /// Deadline of the session script. Default: 5 min.
    pub session_timeout: Duration,
    /// Deadline for `EXITED` after a stop. Default: 5 min.
    pub stop_timeout: Duration,
    /// First pause between status polls; it grows to 5 s. Default: 1 s.
    pub poll_interval: Duration,
    /// Retry starts while the host has no free GPU. Default: off.
    pub wait_for_gpu: Option<WaitForGpu>,
    /// Storage prices, to tell what a stopped pod still costs. Default: [`StoragePrices::default`].
    pub storage_prices: StoragePrices,
    /// The workspace's network volume (`RUNPOD_NETWORK_VOLUME_ID`): a pod that cannot start
    /// (its host has no free GPU, or it is gone) is replaced by a new pod on another host of
    /// the volume's data center, mounting the same volume. Default: none (a pod that cannot
    /// start is an error).
    pub network_volume: Option<String>,
    /// The GPU types a replacement pod may have, in order of preference (`RUNPOD_GPU_TYPES`);
    /// the catalog's available ones are tried first. Empty: the old pod's type.
    pub gpu_types: Vec<String>,
    /// What a replacement pod is made from when the old pod is gone (image, cloud, disk,
    /// start command). Default: [`PodSpec::new`](crate::seams::PodSpec::new) at the pod root.
    pub replacement: Option<crate::seams::PodSpec>,
}

impl SessionSettings {
    /// Settings with the given VNC password and every other value at its default.
    pub fn new(vnc_password: SecretString) -> Self {
        Self {
            pod_root: "/runpod".into(),
            pod_env: BTreeMap::new(),
            blender: BlenderRelease::default(),
            mcp_addon: mcp::McpAddon::default(),
            remote_ports: TunnelPorts {
                mcp: 9876,
                control: 9877,
                vnc: 5900,
                novnc: 6080,
            },
            local_ports: TunnelPorts {
                mcp: 9876,
                control: 9877,
                vnc: 5900,
                novnc: 6080,
            },
            vnc_password,
            keep_pod_on_failure: false,
            ready_timeout: Duration::from_secs(600),
            ssh_timeout: Duration::from_secs(180),
            services_timeout: Duration::from_secs(180),
            setup_timeout: Duration::from_secs(1800),
            session_timeout: Duration::from_secs(300),
            stop_timeout: Duration::from_secs(300),
            poll_interval: Duration::from_secs(1),
            wait_for_gpu: None,
            storage_prices: StoragePrices::default(),
            network_volume: None,
            gpu_types: Vec::new(),
            replacement: None,
        }
    }

    pub(crate) fn rpb_home(&self) -> String {
        format!("{}/rpb", self.pod_root.trim_end_matches('/'))
    }

    /// The command line that runs the installed `session.sh` with this environment; its
    /// subcommand and arguments follow.
    pub(crate) fn session_script(&self) -> String {
        format!(
            "{} bash {}",
            self.env_prefix(),
            shell::quote(&format!("{}/bin/session.sh", self.rpb_home()))
        )
    }

    /// The environment prefix for pod-side commands (no secrets: those go through stdin).
    pub(super) fn env_prefix(&self) -> String {
        self.env_prefix_with(&[])
    }

    /// The environment prefix for the setup script: [`Self::env_prefix`] plus the Blender
    /// release and its checksum, the pinned MCP server release and its wheel's hash, and the
    /// setup stamp, on every pod.
    pub(super) fn setup_env_prefix(&self) -> String {
        let stamp = self.setup_stamp();
        let mut extra = self.setup_inputs();
        extra.push(("RPB_SETUP_STAMP", &stamp));
        self.env_prefix_with(&extra)
    }

    /// What the setup script installs besides the assets.
    fn setup_inputs(&self) -> Vec<(&str, &str)> {
        let mut inputs = self.blender.env().to_vec();
        inputs.push(("RPB_MCP_SERVER_VERSION", mcp::UPSTREAM_VERSION));
        inputs.push(("RPB_MCP_SERVER_SHA256", mcp::UPSTREAM_WHEEL_SHA256));
        inputs
    }

    /// The assets version and a digest of everything else setup installs (the Blender release,
    /// the MCP addon and its release): the setup script records it last, and a pod whose
    /// record differs is set up again, so changing `RPB_BLENDER_VERSION` or `RPB_MCP_ADDON`
    /// takes effect at the next start.
    pub fn setup_stamp(&self) -> String {
        // FNV-1a: a change detector, not a security check (the checksums it covers are).
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        let mcp_addon = [(mcp::MCP_ADDON_KEY, self.mcp_addon.as_str())];
        for (key, value) in self.setup_inputs().into_iter().chain(mcp_addon) {
            for byte in key
                .bytes()
                .chain([b'='])
                .chain(value.bytes())
                .chain([b'\n'])
            {
                hash = (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
        format!("{}-{hash:016x}", crate::assets::version())
    }

    fn env_prefix_with(&self, extra: &[(&str, &str)]) -> String {
        let mut env = self.pod_env.clone();
        env.insert("RPB_POD_ROOT".into(), self.pod_root.clone());
        env.insert(mcp::MCP_ADDON_KEY.into(), self.mcp_addon.as_str().into());
        env.insert("RPB_MCP_PORT".into(), self.remote_ports.mcp.to_string());
        env.insert(
            "RPB_CONTROL_PORT".into(),
            self.remote_ports.control.to_string(),
        );
        env.insert("RPB_VNC_PORT".into(), self.remote_ports.vnc.to_string());
        env.insert("RPB_NOVNC_PORT".into(), self.remote_ports.novnc.to_string());
        for (key, value) in extra {
            env.insert((*key).to_owned(), (*value).to_owned());
        }
        let mut prefix = String::from("env");
        for (key, value) in env {
            prefix.push(' ');
            // Arguments of `env`, never assignments: the two halves are quoted on their own.
            let _ = write!(prefix, "{}={}", shell::quote(&key), shell::quote(&value));
        }
        prefix
    }
}

/// How a session moved to another host ([`Session::moved`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Moved {
    /// The pod that could not start.
    pub from_pod: String,
    /// Why it was replaced (`its host has no free GPU`, `it was terminated`).
    pub reason: String,
    /// The network volume both mount.
    pub volume_id: String,
    /// The data center of the volume, where the new pod runs.
    pub data_center: String,
    /// The new pod's GPU type.
    pub gpu_type: String,
    /// The GPU types tried before, each with why it failed.
    pub tried: Vec<String>,
    /// `None` when the old pod was terminated (or was already gone); else why terminating it
    /// failed (it is stopped and bills only its disk; terminate it by hand).
    pub old_pod_left: Option<String>,
}

/// A running session: the tunnel and what the session script reported.
pub struct Session {
    /// The pod.
    pub pod_id: String,
    /// The SSH endpoint in use.
    pub endpoint: SshAddr,
    /// The local tunnel ports.
    pub ports: TunnelPorts,
    /// What the session script reported.
    pub report: SessionReport,
    /// Whether this start started the pod.
    pub started_pod: bool,
    /// Set when the pod could not start and a new pod on another host took over its network
    /// volume: `pod_id` is then the new pod's.
    pub moved: Option<Moved>,
    pub(super) host: Arc<dyn RemoteHost>,
    pub(super) tunnel: Option<Box<dyn TunnelHandle>>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("pod_id", &self.pod_id)
            .field("endpoint", &self.endpoint)
            .field("ports", &self.ports)
            .field("started_pod", &self.started_pod)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// A connection to a pod that runs no Blender session (a render farm's node): SSH only,
    /// no tunnel, an empty report.
    pub(crate) fn without_blender(
        pod_id: &str,
        endpoint: SshAddr,
        host: Arc<dyn RemoteHost>,
    ) -> Self {
        let no_ports = crate::assets::SessionPorts {
            mcp: 0,
            control: 0,
            vnc: 0,
            novnc: 0,
        };
        Self {
            pod_id: pod_id.to_owned(),
            endpoint,
            ports: TunnelPorts {
                mcp: 0,
                control: 0,
                vnc: 0,
                novnc: 0,
            },
            report: SessionReport {
                state: crate::assets::SessionState::Stopped,
                assets_version: String::new(),
                display: 0,
                ports: no_ports,
                mcp_addon: String::new(),
                pids: crate::assets::SessionPids {
                    xvfb: 0,
                    x11vnc: 0,
                    websockify: 0,
                    blender: 0,
                },
                started: Vec::new(),
                down: Vec::new(),
                addon: None,
                log_dir: String::new(),
            },
            started_pod: false,
            moved: None,
            host,
            tunnel: None,
        }
    }

    /// The noVNC page through the tunnel (the password is typed in the page, never put in the
    /// URL).
    pub fn novnc_url(&self) -> String {
        format!(
            "http://127.0.0.1:{}/vnc.html?autoconnect=1&resize=scale",
            self.ports.novnc
        )
    }

    /// The MCP address through the tunnel: the AI client's (its MCP server connects here).
    pub fn mcp_address(&self) -> String {
        format!("127.0.0.1:{}", self.ports.mcp)
    }

    /// The address of rpb's command socket in Blender through the tunnel.
    pub fn control_address(&self) -> String {
        format!("127.0.0.1:{}", self.ports.control)
    }

    /// A client of rpb's addon through the tunnel, on the control port, so rpb's commands never
    /// wait behind the AI client's connection on the MCP port.
    ///
    /// # Errors
    ///
    /// [`Error::NoTunnel`] for a session attached without a tunnel to this pod, or to a tunnel
    /// of an rpb without a control port (port 0: never whatever else listens on a default
    /// port); an MCP error when Blender's socket does not answer.
    pub async fn mcp(&self) -> Result<mcp::Client> {
        if self.ports.control == 0 {
            return Err(Error::NoTunnel {
                pod_id: self.pod_id.clone(),
            });
        }
        Ok(mcp::Client::connect(self.control_address()).await?)
    }

    /// The tunnel's state (`Closed` for a session opened without a tunnel).
    pub fn tunnel_state(&self) -> TunnelState {
        self.tunnel
            .as_ref()
            .map_or(TunnelState::Closed { error: None }, |tunnel| tunnel.state())
    }

    /// A receiver of the tunnel's state changes; `None` for a session opened without a tunnel.
    pub fn tunnel_state_changes(&self) -> Option<tokio::sync::watch::Receiver<TunnelState>> {
        self.tunnel.as_ref().map(|tunnel| tunnel.state_changes())
    }

    /// Bytes moved through this session's tunnel so far (0 without a tunnel).
    pub fn traffic_bytes(&self) -> u64 {
        self.tunnel
            .as_ref()
            .map_or(0, |tunnel| tunnel.traffic_bytes())
    }

    /// The SSH connection to the pod, for commands and transfers.
    pub fn host(&self) -> &Arc<dyn RemoteHost> {
        &self.host
    }

    /// Closes the tunnel.
    ///
    /// # Errors
    ///
    /// When the tunnel reports an error while closing.
    pub async fn close(mut self) -> Result<()> {
        match self.tunnel.take() {
            Some(tunnel) => tunnel.close().await,
            None => Ok(()),
        }
    }
}

/// The state of a pod and its session, from one API request and local probes.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SessionStatus {
    /// The pod as the API reports it.
    pub pod: PodView,
    /// Estimated cost since the container started, in USD (uptime × cost per hour).
    pub cost_since_start: f64,
    /// The tunnel's state, when a session is open.
    pub tunnel: Option<TunnelState>,
    /// Whether rpb's addon answers on its control socket through the tunnel.
    pub control_answers: bool,
    /// Whether Blender's MCP socket answers through the tunnel.
    pub mcp_answers: bool,
    /// Whether noVNC answers through the tunnel.
    pub novnc_answers: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_env_prefix_holds_paths_and_ports_but_never_the_password() {
        let mut settings = SessionSettings::new(SecretString::from("hunter22"));
        settings.pod_env.insert("RPB_DISPLAY".into(), "201".into());
        let prefix = settings.env_prefix();
        assert!(
            prefix.starts_with(
                "env RPB_CONTROL_PORT=9877 RPB_DISPLAY=201 RPB_MCP_ADDON=upstream RPB_MCP_PORT=9876"
            ),
            "{prefix}"
        );
        assert!(prefix.contains("RPB_POD_ROOT=/runpod"));
        assert!(!prefix.contains("hunter22"));
    }

    #[test]
    fn env_prefix_values_are_quoted_for_the_shell() {
        let mut settings = SessionSettings::new(SecretString::from("hunter22"));
        settings
            .pod_env
            .insert("RPB_NOTE".into(), "it's $(two) words".into());
        let prefix = settings.env_prefix();
        assert!(
            prefix.contains(r"RPB_NOTE='it'\''s $(two) words'"),
            "{prefix}"
        );
    }
    #[test]
    fn the_setup_script_gets_the_blender_release_and_its_checksum() {
        let mut settings = SessionSettings::new(SecretString::from("hunter22"));
        let prefix = settings.setup_env_prefix();
        assert!(
            prefix.starts_with(&format!(
                "env RPB_BLENDER_SHA256={} RPB_BLENDER_VERSION={} ",
                crate::assets::DEFAULT_BLENDER_SHA256,
                crate::assets::DEFAULT_BLENDER_VERSION
            )),
            "{prefix}"
        );
        assert!(prefix.contains("RPB_POD_ROOT=/runpod"));
        // The settings win over a stray pod_env entry.
        settings
            .pod_env
            .insert("RPB_BLENDER_SHA256".into(), "unverified".into());
        settings.blender =
            BlenderRelease::from_settings(Some("4.5.2"), Some(&"ab".repeat(32))).expect("release");
        let prefix = settings.setup_env_prefix();
        assert!(
            prefix.contains(&format!("RPB_BLENDER_SHA256={}", "ab".repeat(32)))
                && prefix.contains("RPB_BLENDER_VERSION=4.5.2")
                && !prefix.contains("unverified"),
            "{prefix}"
        );
        // Sessions do not need it.
        assert!(!settings.env_prefix().contains("RPB_BLENDER_VERSION"));
    }
}
