//! The session lifecycle on the [`Orchestrator`]: create and set up a pod, start a session (or
//! attach to one, or open its tunnel), stop it, and read its status.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use pod_tunnel::shell;
use secrecy::ExposeSecret;
use tokio::time::Instant;

use super::session::{Events, Session, SessionStatus, Step};
use super::{Clock, Orchestrator, close_tunnel};
use crate::assets::{self, SessionReport, SetupReport};
use crate::seams::{PodSpec, PodStatus, PodView, RemoteHost, Resolver, SshAddr, TunnelPorts};
use crate::{Error, Result};

impl Orchestrator {
    /// Creates a pod and sets it up: registers `public_key` on the account if needed (keeping
    /// the keys already there), creates the pod with the boot hook as its start command, waits
    /// for SSH and runs the setup script. When a later step fails, the new pod is stopped again
    /// (unless `keep_pod_on_failure`), and the error says so.
    ///
    /// # Errors
    ///
    /// Provider failures (no capacity, balance, ...), readiness timeouts, SSH and setup
    /// failures.
    pub async fn create(
        &self,
        spec: &PodSpec,
        public_key: &str,
        events: Events<'_>,
    ) -> Result<PodView> {
        self.create_pod(spec, public_key, events, true).await
    }

    /// As [`Orchestrator::create`]; `record` says whether the pod becomes the workspace's pod
    /// (`RUNPOD_POD_ID` in `.env`), which a farm's nodes do not.
    pub(super) async fn create_pod(
        &self,
        spec: &PodSpec,
        public_key: &str,
        events: Events<'_>,
        record: bool,
    ) -> Result<PodView> {
        let clock = Clock {
            started: Instant::now(),
            events,
        };
        clock.emit(Step::RegisterKey, "checking the account's ssh keys");
        let added = self.provider.ensure_ssh_key(public_key).await?;
        clock.emit(
            Step::RegisterKey,
            if added {
                "registered the public key"
            } else {
                "the public key is registered"
            },
        );
        clock.emit(
            Step::CreatePod,
            format!("{} on {}", spec.gpu_type, spec.cloud),
        );
        let mut spec = spec.clone();
        if let (Some(volume), None) = (&spec.network_volume, &spec.data_center) {
            // RunPod places a pod that mounts a network volume only in the volume's data center.
            spec.data_center = Some(self.provider.volume_data_center(volume).await?);
        }
        // A pod on a network volume where rpb already made a pod serves the volume's host key
        // (the boot hook restores the key persisted there): pin that one, make none.
        let volume_key = match (&spec.host_key, &spec.network_volume) {
            (None, Some(volume)) => {
                self.connector
                    .pinned_public_key(&super::portable::volume_alias(volume))
                    .await?
            }
            _ => None,
        };
        let (public_key_of_host, fingerprint) = if let Some(key) = volume_key {
            spec.known_host_key = Some(key.clone());
            (key, String::new())
        } else if let Some(pair) = &spec.host_key {
            (pair.public_key().to_owned(), pair.fingerprint())
        } else {
            let pair =
                pod_tunnel::HostKeyPair::generate_ed25519(&format!("rpb-host-key-{}", spec.name))
                    .map_err(|source| Error::HostKey {
                    operation: format!("making an ssh host key for pod {:?}", spec.name),
                    source: Box::new(source),
                })?;
            spec.host_key = Some(pair.clone());
            (pair.public_key().to_owned(), pair.fingerprint())
        };
        let pod = self.provider.create(&spec).await?;
        clock.emit(Step::CreatePod, format!("created pod {}", pod.id));
        // Pinned before anything connects: the first contact is verified too.
        if let Err(error) = self
            .connector
            .pin_host_key(pod.id.as_str(), &public_key_of_host)
            .await
        {
            return Err(self.fail_after_starting(pod.id.as_str(), error).await);
        }
        clock.emit(
            Step::HostKey,
            if fingerprint.is_empty() {
                format!(
                    "pinned the ssh host key of network volume {} (its pods share it) for pod {}",
                    spec.network_volume.as_deref().unwrap_or_default(),
                    pod.id
                )
            } else {
                format!(
                    "pinned the ssh host key made for pod {}: {fingerprint}",
                    pod.id
                )
            },
        );
        // Recorded before anything else can fail, so the pod is never lost track of.
        if record && let Err(error) = self.record_pod_id(pod.id.as_str(), &clock).await {
            return Err(self.fail_after_starting(pod.id.as_str(), error).await);
        }
        if let Some(volume) = &spec.network_volume
            && spec.host_key.is_some()
        {
            self.pin_volume_alias(volume, &public_key_of_host).await;
        }
        match self.set_up(pod.id.as_str(), &clock).await {
            Ok(()) => self.provider.pod(pod.id.as_str()).await,
            Err(error) => Err(self.fail_after_starting(pod.id.as_str(), error).await),
        }
    }

    async fn set_up(&self, pod_id: &str, clock: &Clock<'_>) -> Result<()> {
        let pod = self.wait_running(pod_id, clock).await?;
        let (addr, host) = self.connect(pod_id, pod, clock).await?;
        clock.emit(Step::Connect, format!("connected to {addr}"));
        self.ensure_setup(pod_id, host.as_ref(), clock).await
    }

    /// Starts a session (idempotent): starts the pod if needed, waits until it runs and its
    /// sshd answers (re-reading the endpoint while the API reports a stale port), verifies the
    /// host key, re-runs setup when the assets changed, runs the session script, opens the
    /// tunnel and waits until Blender and noVNC answer through it.
    ///
    /// # Errors
    ///
    /// [`Error::NoGpuOnHost`] (after the wait-for-gpu deadline when set), readiness timeouts,
    /// SSH, script and tunnel failures; when this call started the pod and a later step fails,
    /// [`Error::StartFailed`] says whether the pod was stopped again.
    pub async fn start(&self, pod_id: &str, events: Events<'_>) -> Result<Session> {
        let clock = Clock {
            started: Instant::now(),
            events,
        };
        let pod = match self.provider.pod(pod_id).await {
            Ok(pod) => pod,
            Err(error) if super::portable::is_gone(&error) => {
                let Some(volume) = self.settings.network_volume.clone() else {
                    return Err(error);
                };
                return self
                    .move_to_another_host(pod_id, None, &volume, "it no longer exists", &clock)
                    .await;
            }
            Err(error) => return Err(error),
        };
        if !pod.start_command.contains(assets::BOOT_HOOK_MARKER) && pod.host_public_key.is_none() {
            clock.emit(
                Step::HostKey,
                format!(
                    "pod {pod_id} does not run rpb's boot hook, so its ssh host key changes at \
                     every start and the pin then refuses it; `rpb adopt --pod-id {pod_id}` \
                     installs the hook"
                ),
            );
        }
        // Only a pod that mounts a network volume moves: one with its own volume disk would
        // leave its work behind.
        let volume = pod
            .network_volume
            .as_ref()
            .map(|mount| mount.volume_id.clone());
        let started_pod = match pod.status {
            PodStatus::Exited | PodStatus::Error => {
                match (self.start_pod(pod_id, &clock).await, volume) {
                    (Ok(()), _) => true,
                    (Err(Error::NoGpuOnHost { .. }), Some(volume)) => {
                        return self
                            .move_to_another_host(
                                pod_id,
                                Some(pod),
                                &volume,
                                "its host has no free GPU",
                                &clock,
                            )
                            .await;
                    }
                    (Err(error), _) => return Err(error),
                }
            }
            PodStatus::Terminated => {
                if let Some(volume) = volume.or_else(|| self.settings.network_volume.clone()) {
                    return self
                        .move_to_another_host(
                            pod_id,
                            Some(pod),
                            &volume,
                            "it was terminated",
                            &clock,
                        )
                        .await;
                }
                return Err(Error::PodFailed {
                    pod_id: pod_id.into(),
                    status: pod.status.to_string(),
                    wanted: "running",
                    hint: "the pod was terminated; create a new one",
                });
            }
            _ => {
                clock.emit(Step::StartPod, format!("pod is already {}", pod.status));
                false
            }
        };
        match self.bring_up(pod_id, started_pod, &clock).await {
            Ok(session) => Ok(session),
            Err(error) if started_pod => Err(self.fail_after_starting(pod_id, error).await),
            Err(error) => Err(error),
        }
    }

    async fn fail_after_starting(&self, pod_id: &str, error: Error) -> Error {
        if self.settings.keep_pod_on_failure {
            return Error::StartFailed {
                pod_id: pod_id.into(),
                stopped_again: false,
                source: Box::new(error),
            };
        }
        let stopped_again = match self.provider.stop(pod_id).await {
            Ok(()) => true,
            // A pod that went to ERROR does not run, and the API refuses to stop it: there is
            // nothing left to stop.
            Err(_)
                if self.provider.pod(pod_id).await.is_ok_and(|pod| {
                    matches!(
                        pod.status,
                        PodStatus::Error | PodStatus::Exited | PodStatus::Terminated
                    )
                }) =>
            {
                true
            }
            Err(stop_error) => {
                tracing::error!(pod_id, error = %stop_error, "stopping the pod after a failed start failed too");
                false
            }
        };
        Error::StartFailed {
            pod_id: pod_id.into(),
            stopped_again,
            source: Box::new(error),
        }
    }

    pub(super) async fn start_pod(&self, pod_id: &str, clock: &Clock<'_>) -> Result<()> {
        clock.emit(Step::StartPod, format!("starting pod {pod_id}"));
        let Some(wait) = self.settings.wait_for_gpu else {
            return self.provider.start(pod_id).await;
        };
        let deadline = Instant::now() + wait.deadline;
        loop {
            match self.provider.start(pod_id).await {
                Err(Error::NoGpuOnHost { .. }) if Instant::now() + wait.interval < deadline => {
                    clock.emit(
                        Step::WaitForGpu,
                        format!("no free gpu on the host; retrying in {:?}", wait.interval),
                    );
                    tokio::time::sleep(wait.interval).await;
                }
                other => return other,
            }
        }
    }

    pub(super) async fn bring_up(
        &self,
        pod_id: &str,
        started_pod: bool,
        clock: &Clock<'_>,
    ) -> Result<Session> {
        let pod = self.wait_running(pod_id, clock).await?;
        let (addr, host) = self.connect(pod_id, pod, clock).await?;
        clock.emit(
            Step::Connect,
            format!("connected to {addr}, host key verified"),
        );
        self.ensure_setup(pod_id, host.as_ref(), clock).await?;
        let report = self.run_session(pod_id, host.as_ref(), clock).await?;
        self.tunnel_session(pod_id, addr, host, report, started_pod, clock)
            .await
    }

    /// Opens the tunnel to a connected pod and waits until Blender and noVNC answer through it;
    /// the tunnel is closed again when they do not.
    async fn tunnel_session(
        &self,
        pod_id: &str,
        addr: SshAddr,
        host: Arc<dyn RemoteHost>,
        report: SessionReport,
        started_pod: bool,
        clock: &Clock<'_>,
    ) -> Result<Session> {
        clock.emit(Step::Tunnel, "forwarding mcp, vnc and novnc");
        let tunnel = self
            .connector
            .tunnel(
                &addr,
                pod_id,
                self.settings.local_ports,
                self.settings.remote_ports,
                self.resolver(pod_id),
            )
            .await?;
        let ports = tunnel.ports();
        clock.emit(
            Step::Tunnel,
            format!(
                "127.0.0.1:{} (mcp), :{} (vnc), :{} (novnc)",
                ports.mcp, ports.vnc, ports.novnc
            ),
        );
        let session = Session {
            pod_id: pod_id.into(),
            endpoint: addr,
            ports,
            report,
            started_pod,
            moved: None,
            host,
            tunnel: Some(tunnel),
        };
        if let Err(error) = self.wait_services(ports, clock).await {
            let _ = session.close().await;
            return Err(error);
        }
        clock.emit(Step::Ready, session.novnc_url());
        Ok(session)
    }

    /// Attaches to the session of a pod that already runs, without starting anything: connects
    /// over SSH (host key verified) and reads the session script's status report. The returned
    /// session has no tunnel of its own; its `ports` are `tunnel_ports` (the ports of a tunnel
    /// kept open elsewhere, e.g. by a background process), used for MCP calls.
    ///
    /// # Errors
    ///
    /// [`Error::PodFailed`] when the pod does not run, SSH and provider failures, and a status
    /// report that cannot be read.
    pub async fn attach(
        &self,
        pod_id: &str,
        tunnel_ports: TunnelPorts,
        events: Events<'_>,
    ) -> Result<Session> {
        let clock = Clock {
            started: Instant::now(),
            events,
        };
        let pod = self.require_running(pod_id).await?;
        let (addr, host) = self.connect(pod_id, pod, &clock).await?;
        let report = self.status_report(host.as_ref()).await?;
        Ok(Session {
            pod_id: pod_id.into(),
            endpoint: addr,
            ports: tunnel_ports,
            report,
            started_pod: false,
            moved: None,
            host,
            tunnel: None,
        })
    }

    /// Opens the tunnel to a pod whose session already runs (after [`Orchestrator::start`] in
    /// another process, for example) and waits until Blender and noVNC answer through it. The
    /// tunnel finds the pod's endpoint again through the provider when it moves.
    ///
    /// # Errors
    ///
    /// [`Error::PodFailed`] when the pod does not run, SSH, tunnel and provider failures, and
    /// [`Error::ServiceNotReady`].
    pub async fn open_tunnel(&self, pod_id: &str, events: Events<'_>) -> Result<Session> {
        let clock = Clock {
            started: Instant::now(),
            events,
        };
        let pod = self.require_running(pod_id).await?;
        let (addr, host) = self.connect(pod_id, pod, &clock).await?;
        let report = self.status_report(host.as_ref()).await?;
        self.tunnel_session(pod_id, addr, host, report, false, &clock)
            .await
    }

    /// The session script's status report (what runs on the pod, and its ports).
    async fn status_report(&self, host: &dyn RemoteHost) -> Result<SessionReport> {
        let command = format!("{} status", self.settings.session_script());
        let output = host.run(&command, None, Duration::from_secs(60)).await?;
        SessionReport::parse(&output.stdout)
    }

    async fn require_running(&self, pod_id: &str) -> Result<PodView> {
        let pod = self.provider.pod(pod_id).await?;
        if pod.status == PodStatus::Running {
            return Ok(pod);
        }
        Err(Error::PodFailed {
            pod_id: pod_id.into(),
            status: pod.status.to_string(),
            wanted: "running",
            hint: "start it first (`rpb start`)",
        })
    }

    fn resolver(&self, pod_id: &str) -> Resolver {
        let provider = self.provider.clone();
        let pod_id = pod_id.to_owned();
        Arc::new(move || {
            let provider = provider.clone();
            let pod_id = pod_id.clone();
            Box::pin(async move {
                let pod = provider.pod(&pod_id).await?;
                pod.ssh.ok_or_else(|| Error::NotReady {
                    pod_id: pod_id.clone(),
                    wanted: "reachable over ssh",
                    waited: Duration::ZERO,
                    last_status: pod.status.clone(),
                })
            })
        })
    }

    /// Polls until the pod runs with an SSH endpoint.
    pub(super) async fn wait_running(&self, pod_id: &str, clock: &Clock<'_>) -> Result<PodView> {
        self.poll(
            pod_id,
            Step::WaitRunning,
            self.settings.ready_timeout,
            clock,
            |pod| pod.status == PodStatus::Running && pod.ssh.is_some(),
        )
        .await
    }

    /// Polls the pod until `done` holds; `step` is [`Step::WaitRunning`] or
    /// [`Step::WaitStopped`] and decides which states end the wait early.
    async fn poll(
        &self,
        pod_id: &str,
        step: Step,
        timeout: Duration,
        clock: &Clock<'_>,
        done: impl Fn(&PodView) -> bool,
    ) -> Result<PodView> {
        let stopping = step == Step::WaitStopped;
        let wanted = if stopping {
            "stopped"
        } else {
            "running with ssh"
        };
        let started = Instant::now();
        let mut interval = self.settings.poll_interval;
        let mut last: Option<PodStatus> = None;
        loop {
            let pod = self.provider.pod(pod_id).await?;
            if last.as_ref() != Some(&pod.status) {
                clock.emit(step, format!("pod {pod_id} is {}", pod.status));
            }
            if done(&pod) {
                return Ok(pod);
            }
            let failed = match pod.status {
                PodStatus::Error => Some("the container failed; read the pod's logs"),
                PodStatus::Terminated => Some("the pod was terminated; create a new one"),
                PodStatus::Exited
                    if !stopping && last.as_ref().is_some_and(|s| *s != PodStatus::Exited) =>
                {
                    Some("the pod stopped while starting; start it again")
                }
                _ => None,
            };
            if let Some(hint) = failed {
                return Err(Error::PodFailed {
                    pod_id: pod_id.into(),
                    status: pod.status.to_string(),
                    wanted,
                    hint,
                });
            }
            last = Some(pod.status.clone());
            if started.elapsed() >= timeout {
                return Err(Error::NotReady {
                    pod_id: pod_id.into(),
                    wanted,
                    waited: timeout,
                    last_status: pod.status.clone(),
                });
            }
            tokio::time::sleep(interval.min(timeout.saturating_sub(started.elapsed()))).await;
            interval = interval.mul_f64(1.5).min(Duration::from_secs(5));
        }
    }

    /// Waits for an SSH banner, re-reading the endpoint (it may be stale after a restart), then
    /// connects with host-key verification.
    pub(super) async fn connect(
        &self,
        pod_id: &str,
        mut pod: PodView,
        clock: &Clock<'_>,
    ) -> Result<(SshAddr, Arc<dyn RemoteHost>)> {
        let started = Instant::now();
        let timeout = self.settings.ssh_timeout;
        let mut interval = self.settings.poll_interval.min(Duration::from_millis(500));
        loop {
            if let Some(addr) = pod.ssh.clone() {
                clock.emit(Step::WaitSsh, format!("trying {addr}"));
                if self.connector.banner(&addr).await {
                    clock.emit(Step::Connect, format!("sshd answers at {addr}"));
                    let first_contact = self.ensure_pin(pod_id, &pod, clock).await?;
                    let host = self.connector.connect(&addr, pod_id).await?;
                    if first_contact {
                        let recorded = self.connector.pinned_host_key(pod_id).await?;
                        clock.emit(
                            Step::HostKey,
                            format!(
                                "first contact with pod {pod_id}, which rpb did not create: \
                                 trusted its host key {} and recorded it; from now on only this \
                                 key is accepted (`rpb trust --pod-id {pod_id}` shows or resets it)",
                                recorded.as_deref().unwrap_or("(not recorded)")
                            ),
                        );
                    }
                    return Ok((addr, host));
                }
                if started.elapsed() >= timeout {
                    return Err(Error::SshUnreachable {
                        pod_id: pod_id.into(),
                        endpoint: addr.to_string(),
                        waited: timeout,
                    });
                }
            } else if started.elapsed() >= timeout {
                return Err(Error::NotReady {
                    pod_id: pod_id.into(),
                    wanted: "reachable over ssh",
                    waited: timeout,
                    last_status: pod.status.clone(),
                });
            }
            tokio::time::sleep(interval).await;
            interval = interval.mul_f64(1.5).min(Duration::from_secs(5));
            pod = self.provider.pod(pod_id).await?;
        }
    }

    /// Makes sure the pod's host key is pinned before connecting: a pin already there is
    /// kept; else the public key the pod was created with, read from the API, is pinned (a
    /// machine that never met the pod verifies its first contact too). Returns `true` when
    /// neither exists: a pod rpb did not create, trusted on this first contact.
    async fn ensure_pin(&self, pod_id: &str, pod: &PodView, clock: &Clock<'_>) -> Result<bool> {
        if self.connector.pinned_host_key(pod_id).await?.is_some() {
            return Ok(false);
        }
        let Some(public_key) = &pod.host_public_key else {
            return Ok(true);
        };
        self.connector.pin_host_key(pod_id, public_key).await?;
        let fingerprint = pod_tunnel::parse_public_key(public_key).map_or_else(
            || "(unreadable)".to_owned(),
            |(_, blob)| pod_tunnel::fingerprint(&blob),
        );
        clock.emit(
            Step::HostKey,
            format!("pinned the host key pod {pod_id} was created with: {fingerprint}"),
        );
        Ok(false)
    }

    /// Installs this build's pod-side assets when the pod holds another version (a session
    /// started by an older rpb), so pod-side commands are the ones this code speaks to.
    pub(crate) async fn ensure_assets(&self, session: &Session) -> Result<()> {
        let clock = Clock {
            started: Instant::now(),
            events: &|_| {},
        };
        self.ensure_setup(&session.pod_id, session.host.as_ref(), &clock)
            .await
    }

    /// Runs the setup script when the pod's recorded setup stamp differs from ours (new assets,
    /// another Blender release or MCP addon).
    pub(super) async fn ensure_setup(
        &self,
        pod_id: &str,
        host: &dyn RemoteHost,
        clock: &Clock<'_>,
    ) -> Result<()> {
        let home = self.settings.rpb_home();
        let recorded = host
            .run(
                &format!(
                    "cat {} 2>/dev/null || true",
                    shell::quote(&format!("{home}/{}", assets::SETUP_STAMP_FILE))
                ),
                None,
                Duration::from_secs(30),
            )
            .await?;
        let stamp = self.settings.setup_stamp();
        let wanted = assets::version();
        if recorded.stdout.trim() == stamp {
            clock.emit(Step::Setup, format!("assets {wanted} already installed"));
            return Ok(());
        }
        clock.emit(Step::Setup, format!("installing assets {wanted}"));
        let staging = format!("{home}/staging/{wanted}");
        self.run_checked(
            pod_id,
            host,
            "creating the staging folder",
            &format!("mkdir -p {}", shell::quote(&staging)),
            None,
            Duration::from_secs(30),
        )
        .await?;
        let local = tempfile_dir()?;
        let files = assets::write_to(local.path())?;
        for file in &files {
            let name = file
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_default();
            host.upload(file, &format!("{staging}/{name}"), None)
                .await?;
        }
        let command = format!(
            "{} bash {}",
            self.settings.setup_env_prefix(),
            shell::quote(&format!("{staging}/setup.sh"))
        );
        let stdout = self
            .run_checked(
                pod_id,
                host,
                "the setup script",
                &command,
                None,
                self.settings.setup_timeout,
            )
            .await?;
        let report = SetupReport::parse(&stdout)?;
        clock.emit(
            Step::Setup,
            format!(
                "assets {} installed, blender {}",
                report.assets_version, report.blender_bin
            ),
        );
        Ok(())
    }

    async fn run_session(
        &self,
        pod_id: &str,
        host: &dyn RemoteHost,
        clock: &Clock<'_>,
    ) -> Result<SessionReport> {
        clock.emit(Step::Session, "starting xvfb, x11vnc, novnc and blender");
        let command = format!(
            "{} start --vnc-password-stdin",
            self.settings.session_script()
        );
        let mut password = self
            .settings
            .vnc_password
            .expose_secret()
            .as_bytes()
            .to_vec();
        password.push(b'\n');
        let stdout = self
            .run_checked(
                pod_id,
                host,
                "the session script",
                &command,
                Some(password),
                self.settings.session_timeout,
            )
            .await?;
        let report = SessionReport::parse(&stdout)?;
        clock.emit(
            Step::Session,
            format!(
                "blender {} on display :{} ({})",
                report
                    .addon
                    .as_ref()
                    .map_or_else(|| "?".to_owned(), |addon| addon.blender_version.clone()),
                report.display,
                if report.started.is_empty() {
                    "already running".to_owned()
                } else {
                    format!("started {}", report.started.join(", "))
                }
            ),
        );
        Ok(report)
    }

    async fn wait_services(&self, ports: TunnelPorts, clock: &Clock<'_>) -> Result<()> {
        clock.emit(
            Step::WaitServices,
            "pinging blender and novnc through the tunnel",
        );
        let started = Instant::now();
        let timeout = self.settings.services_timeout;
        let mut control_ok = false;
        let mut mcp_ok = false;
        let mut novnc_ok = false;
        loop {
            if !control_ok {
                control_ok = self.connector.mcp_answers(ports.control).await;
            }
            // Both addons answer a ping: rpb's on the control port, the MCP port's own.
            if !mcp_ok {
                mcp_ok = self.connector.mcp_answers(ports.mcp).await;
            }
            if !novnc_ok {
                novnc_ok = self.connector.novnc_answers(ports.novnc).await;
            }
            if control_ok && mcp_ok && novnc_ok {
                return Ok(());
            }
            if started.elapsed() >= timeout {
                let (which, port) = if !control_ok {
                    ("blender (rpb control)", ports.control)
                } else if !mcp_ok {
                    ("blender (mcp)", ports.mcp)
                } else {
                    ("novnc", ports.novnc)
                };
                return Err(Error::ServiceNotReady {
                    which,
                    port,
                    waited: timeout,
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Stops a session: closes the tunnel, stops the pod, waits until it is `EXITED` with cost
    /// 0, and returns the pod as last read.
    ///
    /// # Errors
    ///
    /// Provider failures and the stop deadline.
    pub async fn stop(
        &self,
        pod_id: &str,
        session: Option<Session>,
        events: Events<'_>,
    ) -> Result<PodView> {
        let clock = Clock {
            started: Instant::now(),
            events,
        };
        close_tunnel(pod_id, session, &clock).await;
        let pod = self.provider.pod(pod_id).await?;
        if !matches!(pod.status, PodStatus::Exited | PodStatus::Terminated) {
            clock.emit(Step::StopPod, format!("stopping pod {pod_id}"));
            self.provider.stop(pod_id).await?;
        }
        let pod = self
            .poll(
                pod_id,
                Step::WaitStopped,
                self.settings.stop_timeout,
                &clock,
                |pod| pod.status == PodStatus::Exited && pod.cost_per_hour <= 0.0,
            )
            .await?;
        let volume = pod
            .volume_gb
            .map(|gb| self.settings.storage_prices.stopped_volume(gb));
        clock.emit(
            Step::WaitStopped,
            format!(
                "pod {pod_id} is stopped: {}",
                crate::costs::stopped_pod_text(volume)
            ),
        );
        Ok(pod)
    }

    /// The pod's state (one API request) and, with a session, the tunnel and the reachability
    /// of Blender and noVNC through it.
    ///
    /// # Errors
    ///
    /// Provider failures.
    pub async fn status(&self, pod_id: &str, session: Option<&Session>) -> Result<SessionStatus> {
        let pod = self.provider.pod(pod_id).await?;
        #[expect(
            clippy::cast_precision_loss,
            reason = "uptimes are far below 2^52 seconds"
        )]
        let cost_since_start = pod
            .uptime_seconds
            .map_or(0.0, |seconds| seconds as f64 / 3600.0)
            * pod.cost_per_hour;
        let (tunnel, control_answers, mcp_answers, novnc_answers) = match session {
            Some(session) => (
                Some(session.tunnel_state()),
                self.connector.mcp_answers(session.ports.control).await,
                self.connector.mcp_answers(session.ports.mcp).await,
                self.connector.novnc_answers(session.ports.novnc).await,
            ),
            None => (None, false, false, false),
        };
        Ok(SessionStatus {
            pod,
            cost_since_start,
            tunnel,
            control_answers,
            mcp_answers,
            novnc_answers,
        })
    }
}

/// A temporary folder for staging the assets before upload.
pub(super) fn tempfile_dir() -> Result<TempDir> {
    let base = std::env::temp_dir();
    for attempt in 0..100_u32 {
        let path = base.join(format!("rpb-assets-{}-{attempt}", std::process::id()));
        match std::fs::create_dir(&path) {
            Ok(()) => return Ok(TempDir(path)),
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(source) => {
                return Err(Error::Io {
                    operation: "create",
                    path,
                    source,
                });
            }
        }
    }
    Err(Error::Settings(
        "no free temporary folder for the pod assets".into(),
    ))
}

pub(super) struct TempDir(PathBuf);

impl TempDir {
    pub(super) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
