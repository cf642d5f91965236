//! The seams implemented for the real peers: [`runpod_api::Client`] as a [`PodProvider`], and
//! [`SshConnector`] (on `pod_tunnel`) as a [`HostConnector`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pod_tunnel::{Endpoint, Forward, HostKeyPolicy, Protocol, TunnelState};
use runpod_api::models::{CreatePodRequest, GpuRequest, Mounts};
use runpod_api::{ApiErrorKind, PodId};
use secrecy::ExposeSecret as _;
use tokio::io::AsyncReadExt as _;

use crate::seams::{
    CommandOutput, HostConnector, PodProvider, PodSpec, PodView, ProgressFn, RemoteHost, Resolver,
    SshAddr, Transferred, TunnelHandle, TunnelPorts,
};
use crate::{Error, Result};

fn provider_error(operation: String, source: runpod_api::Error) -> Error {
    Error::Provider {
        operation,
        source: Box::new(source),
    }
}

/// The pod as the orchestrator sees it, with an optional SSH user override (a local sshd runs
/// as the current user, not `root`).
pub(crate) fn view(pod: &runpod_api::Pod, user_override: Option<&str>) -> PodView {
    PodView {
        id: pod.id.clone(),
        name: pod.name.clone(),
        status: pod.status.clone(),
        ssh: pod.ssh_endpoint().map(|target| SshAddr {
            host: target.host.clone(),
            port: target.port,
            user: user_override.map_or_else(|| target.username.clone(), str::to_owned),
        }),
        cost_per_hour: pod.cost_per_hour(),
        uptime_seconds: pod.runtime.as_ref().and_then(|runtime| runtime.uptime),
        gpu: pod
            .gpu
            .as_ref()
            .map(|gpu| format!("{} ×{}", gpu.id, gpu.count)),
        host_public_key: pod.env.get(crate::assets::HOST_PUBLIC_KEY_ENV).cloned(),
        start_command: pod.args.clone(),
        image: pod.image.clone(),
        volume_path: pod
            .mounts
            .persistent
            .as_ref()
            .map(|volume| volume.path.clone()),
        volume_gb: pod.mounts.persistent.as_ref().map(|volume| volume.size),
        gpu_type: pod.gpu.as_ref().map(|gpu| gpu.id.clone()),
        network_volume: pod
            .mounts
            .network
            .first()
            .map(|mount| crate::seams::NetworkVolumeMount {
                volume_id: mount.volume_id.clone(),
                path: mount.path.clone(),
            }),
        data_center: pod.data_center_id.clone(),
    }
}

/// A [`runpod_api::Client`] as a pod provider.
#[derive(Debug, Clone)]
pub struct RunpodProvider {
    client: runpod_api::Client,
    ssh_user: Option<String>,
}

impl RunpodProvider {
    /// Wraps a client.
    pub fn new(client: runpod_api::Client) -> Self {
        Self {
            client,
            ssh_user: None,
        }
    }

    /// Connects as `user` instead of the user the API reports (the local pod's sshd runs as the
    /// current user).
    #[must_use]
    pub fn with_ssh_user(mut self, user: impl Into<String>) -> Self {
        self.ssh_user = Some(user.into());
        self
    }

    /// The client.
    pub fn client(&self) -> &runpod_api::Client {
        &self.client
    }
}

#[async_trait]
impl PodProvider for RunpodProvider {
    async fn pod(&self, id: &str) -> Result<PodView> {
        let pod = self
            .client
            .get_pod(&PodId::new(id))
            .await
            .map_err(|source| provider_error(format!("reading pod {id}"), source))?;
        Ok(view(&pod, self.ssh_user.as_deref()))
    }

    async fn create(&self, spec: &PodSpec) -> Result<PodView> {
        let mut request = CreatePodRequest::new(&spec.name)
            .image(&spec.image)
            .gpu(GpuRequest::new(&spec.gpu_type).count(spec.gpu_count))
            .cloud(spec.cloud.clone())
            .disk(spec.disk_gb)
            .mounts(match &spec.network_volume {
                Some(volume) => Mounts::network(volume, &spec.volume_path),
                None => Mounts::persistent(spec.volume_gb, &spec.volume_path),
            })
            .port("22/tcp")
            .args(&spec.start_command)
            .start_ssh(true);
        if let Some(center) = &spec.data_center {
            request = request.data_center(center);
        }
        if spec.global_networking {
            request = request.global_networking(true);
        }
        if let (None, Some(public)) = (&spec.host_key, &spec.known_host_key) {
            request = request.env(crate::assets::HOST_PUBLIC_KEY_ENV, public);
        }
        if let Some(pair) = &spec.host_key {
            let private = base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                pair.private_key().expose_secret(),
            );
            request = request
                .env(crate::assets::HOST_KEY_ENV, private)
                .env(crate::assets::HOST_PUBLIC_KEY_ENV, pair.public_key());
        }
        let pod =
            self.client.create_pod(&request).await.map_err(|source| {
                provider_error(format!("creating pod {:?}", spec.name), source)
            })?;
        Ok(view(&pod, self.ssh_user.as_deref()))
    }

    async fn start(&self, id: &str) -> Result<()> {
        match self.client.start_pod(&PodId::new(id)).await {
            Ok(_) => Ok(()),
            Err(error) if error.kind() == Some(&ApiErrorKind::HostOutOfGpus) => {
                Err(Error::NoGpuOnHost { pod_id: id.into() })
            }
            Err(source) => Err(provider_error(format!("starting pod {id}"), source)),
        }
    }

    async fn stop(&self, id: &str) -> Result<()> {
        self.client
            .stop_pod(&PodId::new(id))
            .await
            .map(drop)
            .map_err(|source| provider_error(format!("stopping pod {id}"), source))
    }

    async fn set_start_command(&self, id: &str, command: &str) -> Result<()> {
        let update = runpod_api::models::UpdatePodRequest::new().args(command);
        self.client
            .update_pod(&PodId::new(id), &update)
            .await
            .map(drop)
            .map_err(|source| {
                provider_error(format!("changing the start command of pod {id}"), source)
            })
    }

    async fn ensure_ssh_key(&self, public_key: &str) -> Result<bool> {
        let before =
            self.client.ssh_keys().await.map_err(|source| {
                provider_error("reading the account's ssh keys".into(), source)
            })?;
        if before.contains(public_key) {
            return Ok(false);
        }
        self.client
            .add_ssh_key(public_key)
            .await
            .map_err(|source| provider_error("registering the ssh key".into(), source))?;
        Ok(true)
    }

    async fn terminate(&self, id: &str) -> Result<()> {
        match self.client.terminate_pod(&PodId::new(id)).await {
            // Already gone: what terminating wants.
            Err(error) if error.kind() == Some(&ApiErrorKind::NotFound) => Ok(()),
            other => {
                other.map_err(|source| provider_error(format!("terminating pod {id}"), source))
            }
        }
    }

    async fn volume_data_center(&self, volume_id: &str) -> Result<String> {
        self.client
            .get_network_volume(&runpod_api::models::NetworkVolumeId::from(volume_id))
            .await
            .map(|volume| volume.data_center)
            .map_err(|source| provider_error(format!("reading network volume {volume_id}"), source))
    }

    async fn available_gpu_types(&self, data_center: &str) -> Result<Vec<String>> {
        let catalog = crate::catalog::gpu_catalog(&self.client).await?;
        Ok(crate::catalog::available_in(&catalog, data_center))
    }
}

/// How many reconnect attempts a tunnel makes by default before it closes (about 8 minutes
/// with the backoff).
pub const DEFAULT_RECONNECT_ATTEMPTS: u32 = 20;

/// Opens SSH sessions and tunnels with `pod_tunnel`, pinning each pod's host key in our own
/// `known_hosts` file under the pod id (so a restart on a new port keeps the pin).
#[derive(Debug, Clone)]
pub struct SshConnector {
    identity_file: PathBuf,
    known_hosts: PathBuf,
    connect_timeout: Duration,
    reconnect_attempts: u32,
}

impl SshConnector {
    /// Connects with the private key `identity_file`, pinning host keys in `known_hosts`.
    pub fn new(identity_file: impl Into<PathBuf>, known_hosts: impl Into<PathBuf>) -> Self {
        Self {
            identity_file: identity_file.into(),
            known_hosts: known_hosts.into(),
            connect_timeout: Duration::from_secs(15),
            reconnect_attempts: DEFAULT_RECONNECT_ATTEMPTS,
        }
    }

    /// How many times a lost tunnel tries to reconnect (with backoff up to 30 s between
    /// attempts) before it closes. Default: [`DEFAULT_RECONNECT_ATTEMPTS`]; [`u32::MAX`] never
    /// gives up.
    #[must_use]
    pub fn with_reconnect_attempts(mut self, attempts: u32) -> Self {
        self.reconnect_attempts = attempts.max(1);
        self
    }

    /// The connector for `pod_id`: strict when its key is pinned, else trust on first use
    /// (the orchestrator pins rpb's own pods before connecting and reports a first contact).
    async fn connector(&self, addr: &SshAddr, pod_id: &str) -> Result<pod_tunnel::Connector> {
        let policy = if self.pinned_host_key(pod_id).await?.is_some() {
            HostKeyPolicy::strict(&self.known_hosts).with_alias(pod_id)
        } else {
            HostKeyPolicy::accept_new(&self.known_hosts).with_alias(pod_id)
        };
        pod_tunnel::Session::builder()
            .endpoint(Endpoint::new(&addr.host, addr.port))
            .user(&addr.user)
            .identity_file(&self.identity_file)
            .host_key_policy(policy)
            .connect_timeout(self.connect_timeout)
            .build()
            .map_err(|source| remote_error("configuring ssh", pod_id, source))
    }
}

fn host_key_error(
    pod_id: &str,
    operation: &str,
    known_hosts: &Path,
    source: Box<pod_tunnel::Error>,
) -> Error {
    Error::HostKey {
        operation: format!("{operation} of pod {pod_id} in {}", known_hosts.display()),
        source,
    }
}

fn remote_error(operation: &str, pod_id: &str, source: pod_tunnel::Error) -> Error {
    Error::Remote {
        operation: operation.into(),
        pod_id: pod_id.into(),
        source: Box::new(source),
    }
}

#[async_trait]
impl HostConnector for SshConnector {
    async fn banner(&self, addr: &SshAddr) -> bool {
        let attempt = async {
            let mut stream = tokio::net::TcpStream::connect((addr.host.as_str(), addr.port))
                .await
                .ok()?;
            let mut buffer = [0_u8; 8];
            stream.read_exact(&mut buffer).await.ok()?;
            Some(buffer.starts_with(b"SSH-"))
        };
        tokio::time::timeout(Duration::from_secs(5), attempt)
            .await
            .ok()
            .flatten()
            .unwrap_or(false)
    }

    async fn connect(&self, addr: &SshAddr, pod_id: &str) -> Result<Arc<dyn RemoteHost>> {
        let session = self
            .connector(addr, pod_id)
            .await?
            .connect()
            .await
            .map_err(|source| remote_error("connecting over ssh", pod_id, source))?;
        Ok(Arc::new(SshHost {
            session,
            pod_id: pod_id.into(),
        }))
    }

    async fn tunnel(
        &self,
        addr: &SshAddr,
        pod_id: &str,
        local: TunnelPorts,
        remote: TunnelPorts,
        resolver: Resolver,
    ) -> Result<Box<dyn TunnelHandle>> {
        let tunnel = self
            .connector(addr, pod_id)
            .await?
            .tunnel()
            .forward(Forward::new(local.mcp, "127.0.0.1", remote.mcp))
            .forward(Forward::new(local.control, "127.0.0.1", remote.control))
            .forward(Forward::new(local.vnc, "127.0.0.1", remote.vnc))
            .forward(Forward::new(local.novnc, "127.0.0.1", remote.novnc))
            .reconnect_attempts(self.reconnect_attempts)
            .resolver(move || {
                let resolve = resolver.clone();
                async move {
                    let addr = resolve().await?;
                    Ok::<_, Error>(Endpoint::new(addr.host, addr.port))
                }
            })
            .open()
            .await
            .map_err(|source| remote_error("opening the tunnel", pod_id, source))?;
        let bound = tunnel.forwards();
        let port = |index: usize| bound.get(index).map_or(0, |forward| forward.local.port());
        let ports = TunnelPorts {
            mcp: port(0),
            control: port(1),
            vnc: port(2),
            novnc: port(3),
        };
        Ok(Box::new(SshTunnel::new(tunnel, ports, pod_id.into())))
    }

    async fn pinned_host_key(&self, pod_id: &str) -> Result<Option<String>> {
        let known_hosts = self.known_hosts.clone();
        let name = pod_id.to_owned();
        let found = tokio::task::spawn_blocking(move || {
            pod_tunnel::known_host(&known_hosts, &name).map_err(Box::new)
        })
        .await
        .map_err(|source| Error::Task {
            operation: format!("reading the host key pin of pod {pod_id}"),
            source,
        })?;
        found
            .map(|entry| entry.map(|entry| entry.fingerprint))
            .map_err(|source| {
                host_key_error(
                    pod_id,
                    "reading the host key pin",
                    &self.known_hosts,
                    source,
                )
            })
    }

    async fn pinned_public_key(&self, name: &str) -> Result<Option<String>> {
        let known_hosts = self.known_hosts.clone();
        let owned = name.to_owned();
        let found = tokio::task::spawn_blocking(move || {
            pod_tunnel::known_host(&known_hosts, &owned).map_err(Box::new)
        })
        .await
        .map_err(|source| Error::Task {
            operation: format!("reading the host key pinned for {name}"),
            source,
        })?;
        found
            .map(|entry| entry.map(|entry| entry.public_key))
            .map_err(|source| {
                host_key_error(name, "reading the host key pin", &self.known_hosts, source)
            })
    }

    async fn pin_host_key(&self, pod_id: &str, public_key: &str) -> Result<()> {
        let known_hosts = self.known_hosts.clone();
        let name = pod_id.to_owned();
        let key = public_key.to_owned();
        let pinned = tokio::task::spawn_blocking(move || {
            pod_tunnel::pin_host_key(&known_hosts, &[name.as_str()], &key).map_err(Box::new)
        })
        .await
        .map_err(|source| Error::Task {
            operation: format!("pinning the host key of pod {pod_id}"),
            source,
        })?;
        pinned.map(drop).map_err(|source| {
            host_key_error(pod_id, "pinning the host key", &self.known_hosts, source)
        })
    }

    async fn mcp_answers(&self, port: u16) -> bool {
        crate::probe::mcp_answers(port).await
    }

    async fn novnc_answers(&self, port: u16) -> bool {
        crate::probe::novnc_answers(port).await
    }
}

struct SshHost {
    session: pod_tunnel::Session,
    pod_id: String,
}

#[async_trait]
impl RemoteHost for SshHost {
    async fn run(
        &self,
        command: &str,
        stdin: Option<Vec<u8>>,
        timeout: Duration,
    ) -> Result<CommandOutput> {
        let mut builder = self.session.command(command).timeout(timeout);
        if let Some(input) = stdin {
            builder = builder.stdin(input);
        }
        let output = builder
            .output()
            .await
            .map_err(|source| remote_error("running a command", &self.pod_id, source))?;
        Ok(CommandOutput {
            code: output.status.code(),
            stdout: output.stdout_lossy(),
            stderr: output.stderr_lossy(),
        })
    }

    async fn upload(
        &self,
        local: &Path,
        remote: &str,
        progress: Option<ProgressFn>,
    ) -> Result<Transferred> {
        let mut transfer = self.session.upload(local, remote).protocol(Protocol::Sftp);
        if let Some(progress) = progress {
            transfer = transfer.progress(move |step| progress(step.done, step.total));
        }
        let report = transfer.send().await.map_err(|source| {
            remote_error(
                &format!("uploading {}", local.display()),
                &self.pod_id,
                source,
            )
        })?;
        Ok(Transferred {
            bytes: report.bytes,
            sha256: report.sha256.clone().unwrap_or_default(),
        })
    }

    async fn download(
        &self,
        remote: &str,
        local: &Path,
        progress: Option<ProgressFn>,
    ) -> Result<Transferred> {
        let mut transfer = self
            .session
            .download(remote, local)
            .protocol(Protocol::Sftp);
        if let Some(progress) = progress {
            transfer = transfer.progress(move |step| progress(step.done, step.total));
        }
        let report = transfer.send().await.map_err(|source| {
            remote_error(&format!("downloading {remote}"), &self.pod_id, source)
        })?;
        Ok(Transferred {
            bytes: report.bytes,
            sha256: report.sha256.clone().unwrap_or_default(),
        })
    }
}

struct SshTunnel {
    tunnel: pod_tunnel::Tunnel,
    ports: TunnelPorts,
    pod_id: String,
    /// `pod_tunnel`'s state changes, mapped onto the seam's type by a small task.
    state: tokio::sync::watch::Receiver<crate::seams::TunnelState>,
}

impl SshTunnel {
    fn new(tunnel: pod_tunnel::Tunnel, ports: TunnelPorts, pod_id: String) -> Self {
        let mut source = tunnel.state_changes();
        let (sender, state) = tokio::sync::watch::channel(seam_state(&source.borrow()));
        tokio::spawn(async move {
            // Ends when the tunnel is gone (its sender dropped) or nobody listens any more.
            while source.changed().await.is_ok() {
                let next = seam_state(&source.borrow_and_update());
                if sender.send(next).is_err() {
                    return;
                }
            }
            sender.send_if_modified(|current| {
                let changed = !current.is_closed();
                if changed {
                    *current = crate::seams::TunnelState::Closed { error: None };
                }
                changed
            });
        });
        Self {
            tunnel,
            ports,
            pod_id,
            state,
        }
    }
}

fn seam_state(state: &TunnelState) -> crate::seams::TunnelState {
    use crate::seams::TunnelState as Seam;
    match state {
        TunnelState::Connected { endpoint } => Seam::Connected {
            endpoint: endpoint.to_string(),
        },
        TunnelState::Reconnecting {
            attempt,
            last_error,
        } => Seam::Reconnecting {
            attempt: *attempt,
            last_error: last_error.clone(),
        },
        TunnelState::Closed { error } => Seam::Closed {
            error: error.clone(),
        },
        // A state added to pod_tunnel later: not closed, so treat it as a reconnect.
        _ => Seam::Reconnecting {
            attempt: 0,
            last_error: format!("{state:?}"),
        },
    }
}

#[async_trait]
impl TunnelHandle for SshTunnel {
    fn ports(&self) -> TunnelPorts {
        self.ports
    }

    fn state_changes(&self) -> tokio::sync::watch::Receiver<crate::seams::TunnelState> {
        self.state.clone()
    }

    fn traffic_bytes(&self) -> u64 {
        let stats = self.tunnel.stats();
        stats
            .bytes_to_remote
            .saturating_add(stats.bytes_from_remote)
    }

    async fn close(self: Box<Self>) -> Result<()> {
        let pod_id = self.pod_id.clone();
        self.tunnel
            .close()
            .await
            .map_err(|source| remote_error("closing the tunnel", &pod_id, source))
    }
}
