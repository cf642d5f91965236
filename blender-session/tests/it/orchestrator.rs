//! The orchestrator's every branch, with in-memory fakes of the provider and the SSH side, under
//! paused time.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use blender_session::assets;
use blender_session::orchestrator::{Event, Orchestrator, SessionSettings, Step, WaitForGpu};
use blender_session::seams::{
    CommandOutput, HostConnector, PodProvider, PodSpec, PodStatus, PodView, ProgressFn, RemoteHost,
    Resolver, SshAddr, Transferred, TunnelHandle, TunnelPorts, TunnelState,
};
use blender_session::{Error, Result};
use secrecy::SecretString;

const PASSWORD: &str = "vnc-secret-42";

fn addr(port: u16) -> SshAddr {
    SshAddr {
        host: "203.0.113.7".into(),
        port,
        user: "root".into(),
    }
}

#[derive(Debug, Default)]
struct World {
    status: VecDeque<PodStatus>,
    current: Option<PodStatus>,
    /// Endpoints reported by successive reads once running (the last repeats).
    endpoints: VecDeque<u16>,
    cost: f64,
    starts: u32,
    stops: u32,
    no_gpu_starts: u32,
    boot_fails: bool,
    keys: Vec<String>,
    created: Vec<PodSpec>,
    /// The host public key the API reports in the pod's environment.
    api_host_key: Option<String>,
    /// The pod's start command, and where its volume is mounted (default `/runpod`).
    start_command: String,
    volume_path: Option<String>,
}

#[derive(Clone, Default)]
struct FakeProvider(Arc<Mutex<World>>);

impl FakeProvider {
    fn with(status: PodStatus) -> Self {
        let provider = Self::default();
        provider.world().current = Some(status);
        provider.world().cost = 0.44;
        provider.world().endpoints.push_back(2201);
        provider
    }

    fn world(&self) -> std::sync::MutexGuard<'_, World> {
        self.0.lock().expect("fake lock")
    }
}

#[async_trait]
impl PodProvider for FakeProvider {
    async fn pod(&self, id: &str) -> Result<PodView> {
        let mut world = self.world();
        if let Some(next) = world.status.pop_front() {
            world.current = Some(next);
        }
        let status = world.current.clone().unwrap_or(PodStatus::Provisioning);
        let running = status == PodStatus::Running;
        let port = if running && world.endpoints.len() > 1 {
            world.endpoints.pop_front()
        } else {
            world.endpoints.front().copied()
        };
        Ok(PodView {
            id: id.into(),
            name: "p".into(),
            status: status.clone(),
            ssh: running.then(|| addr(port.unwrap_or(22))),
            cost_per_hour: if matches!(status, PodStatus::Exited) {
                0.0
            } else {
                world.cost
            },
            uptime_seconds: running.then_some(7200),
            gpu: None,
            host_public_key: world.api_host_key.clone(),
            start_command: world.start_command.clone(),
            image: "runpod/pytorch".into(),
            volume_path: Some(
                world
                    .volume_path
                    .clone()
                    .unwrap_or_else(|| "/runpod".into()),
            ),
            volume_gb: Some(50),
            gpu_type: None,
            network_volume: None,
            data_center: None,
        })
    }

    async fn create(&self, spec: &PodSpec) -> Result<PodView> {
        let mut world = self.world();
        world.created.push(spec.clone());
        world.start_command.clone_from(&spec.start_command);
        world.api_host_key = spec
            .host_key
            .as_ref()
            .map(|pair| pair.public_key().to_owned());
        world.current = Some(PodStatus::Provisioning);
        world
            .status
            .extend([PodStatus::Starting, PodStatus::Running]);
        drop(world);
        Ok(PodView {
            id: "new1".into(),
            name: spec.name.clone(),
            status: PodStatus::Provisioning,
            ssh: None,
            cost_per_hour: 0.44,
            uptime_seconds: None,
            gpu: None,
            host_public_key: None,
            start_command: spec.start_command.clone(),
            image: spec.image.clone(),
            volume_path: Some(spec.volume_path.clone()),
            volume_gb: Some(spec.volume_gb),
            gpu_type: None,
            network_volume: None,
            data_center: None,
        })
    }

    async fn start(&self, id: &str) -> Result<()> {
        let mut world = self.world();
        if world.no_gpu_starts > 0 {
            world.no_gpu_starts -= 1;
            return Err(Error::NoGpuOnHost { pod_id: id.into() });
        }
        world.starts += 1;
        world.current = Some(PodStatus::Starting);
        let next = if world.boot_fails {
            PodStatus::Error
        } else {
            PodStatus::Running
        };
        world.status.push_back(next);
        Ok(())
    }

    async fn set_start_command(&self, _id: &str, command: &str) -> Result<()> {
        command.clone_into(&mut self.world().start_command);
        Ok(())
    }

    async fn stop(&self, _id: &str) -> Result<()> {
        let mut world = self.world();
        world.stops += 1;
        world.status.clear();
        world.current = Some(PodStatus::Exited);
        Ok(())
    }

    async fn ensure_ssh_key(&self, public_key: &str) -> Result<bool> {
        let mut world = self.world();
        if world.keys.iter().any(|key| key == public_key) {
            return Ok(false);
        }
        world.keys.push(public_key.into());
        Ok(true)
    }
}

#[derive(Debug, Default)]
struct Remote {
    live_ports: Vec<u16>,
    assets_version: String,
    session_fails: bool,
    services_answer: bool,
    commands: Vec<(String, Option<Vec<u8>>)>,
    uploads: Vec<String>,
    tunnels_open: u32,
    tunnels_closed: u32,
    connected_to: Vec<u16>,
    /// Host-key pins by pod id, and the pin each connection found.
    pins: BTreeMap<String, String>,
    pins_at_connect: Vec<Option<String>>,
    /// The last tunnel's state, for tests that make it give up.
    tunnel_state: Option<tokio::sync::watch::Sender<TunnelState>>,
}

#[derive(Clone, Default)]
struct FakeConnector(Arc<Mutex<Remote>>);

impl FakeConnector {
    fn healthy(assets_version: &str) -> Self {
        let connector = Self::default();
        {
            let mut remote = connector.remote();
            remote.live_ports = vec![2201, 2202];
            remote.assets_version = assets_version.into();
            remote.services_answer = true;
        }
        connector
    }

    fn remote(&self) -> std::sync::MutexGuard<'_, Remote> {
        self.0.lock().expect("fake lock")
    }
}

fn session_report() -> String {
    // The real script prints the report key first; the parser looks for that prefix.
    format!(
        concat!(
            r#"{{"rpb_session":"ready","assets_version":"{}","display":99,"#,
            r#""ports":{{"mcp":9876,"vnc":5900,"novnc":6080}},"#,
            r#""pids":{{"xvfb":10,"x11vnc":11,"websockify":12,"blender":13}},"#,
            r#""started":["xvfb","x11vnc","websockify","blender"],"down":[],"#,
            r#""addon":null,"log_dir":"/runpod/rpb/logs"}}"#
        ),
        assets::version()
    )
}

#[async_trait]
impl RemoteHost for FakeConnector {
    async fn run(
        &self,
        command: &str,
        stdin: Option<Vec<u8>>,
        _timeout: Duration,
    ) -> Result<CommandOutput> {
        let mut remote = self.remote();
        remote.commands.push((command.into(), stdin));
        let ok = |stdout: String| CommandOutput {
            code: Some(0),
            stdout,
            stderr: String::new(),
        };
        if command.starts_with("cat ") {
            return Ok(ok(remote.assets_version.clone()));
        }
        if command.contains("setup.sh") {
            // What the real script records last: the stamp rpb passed.
            let stamp = command
                .split_whitespace()
                .find_map(|word| word.strip_prefix("RPB_SETUP_STAMP="))
                .expect("setup gets RPB_SETUP_STAMP");
            stamp.clone_into(&mut remote.assets_version);
            let report = format!(
                concat!(
                    r#"{{"rpb_setup":"done","assets_version":"{}","#,
                    r#""blender_bin":"/usr/bin/blender","cached_debs":0,"#,
                    r#""host_keys":"persisted","changed":["bin"]}}"#
                ),
                assets::version()
            );
            return Ok(ok(report));
        }
        if command.contains("session.sh") {
            if remote.session_fails {
                return Ok(CommandOutput {
                    code: Some(1),
                    stdout: String::new(),
                    stderr: "rpb-session: error: xvfb did not start\n".into(),
                });
            }
            return Ok(ok(format!("starting\n{}\n", session_report())));
        }
        Ok(ok(String::new()))
    }

    async fn upload(
        &self,
        _local: &Path,
        remote: &str,
        _p: Option<ProgressFn>,
    ) -> Result<Transferred> {
        self.remote().uploads.push(remote.into());
        Ok(Transferred {
            bytes: 1,
            sha256: "00".into(),
        })
    }

    async fn download(
        &self,
        _remote: &str,
        _local: &Path,
        _p: Option<ProgressFn>,
    ) -> Result<Transferred> {
        unreachable!("not used by these tests")
    }
}

struct FakeTunnel(
    FakeConnector,
    TunnelPorts,
    tokio::sync::watch::Sender<TunnelState>,
);

#[async_trait]
impl TunnelHandle for FakeTunnel {
    fn ports(&self) -> TunnelPorts {
        self.1
    }

    fn state_changes(&self) -> tokio::sync::watch::Receiver<TunnelState> {
        self.2.subscribe()
    }

    async fn close(self: Box<Self>) -> Result<()> {
        self.0.remote().tunnels_closed += 1;
        Ok(())
    }
}

#[async_trait]
impl HostConnector for FakeConnector {
    async fn banner(&self, addr: &SshAddr) -> bool {
        self.remote().live_ports.contains(&addr.port)
    }

    async fn connect(&self, addr: &SshAddr, pod_id: &str) -> Result<Arc<dyn RemoteHost>> {
        let mut remote = self.remote();
        remote.connected_to.push(addr.port);
        let pin = remote.pins.get(pod_id).cloned();
        remote.pins_at_connect.push(pin);
        drop(remote);
        Ok(Arc::new(self.clone()))
    }

    async fn pinned_host_key(&self, pod_id: &str) -> Result<Option<String>> {
        Ok(self.remote().pins.get(pod_id).map(|key| {
            let (_, blob) = pod_tunnel::parse_public_key(key).expect("a valid key");
            pod_tunnel::fingerprint(&blob)
        }))
    }

    async fn pin_host_key(&self, pod_id: &str, public_key: &str) -> Result<()> {
        self.remote()
            .pins
            .entry(pod_id.to_owned())
            .or_insert_with(|| public_key.to_owned());
        Ok(())
    }

    async fn tunnel(
        &self,
        _addr: &SshAddr,
        _pod_id: &str,
        local: TunnelPorts,
        _remote: TunnelPorts,
        _resolver: Resolver,
    ) -> Result<Box<dyn TunnelHandle>> {
        self.remote().tunnels_open += 1;
        let bound = TunnelPorts {
            mcp: if local.mcp == 0 { 40001 } else { local.mcp },
            control: if local.control == 0 {
                40004
            } else {
                local.control
            },
            vnc: if local.vnc == 0 { 40002 } else { local.vnc },
            novnc: if local.novnc == 0 { 40003 } else { local.novnc },
        };
        let (state, _) = tokio::sync::watch::channel(TunnelState::Connected {
            endpoint: "fake:22".into(),
        });
        self.remote().tunnel_state = Some(state.clone());
        Ok(Box::new(FakeTunnel(self.clone(), bound, state)))
    }

    async fn mcp_answers(&self, _port: u16) -> bool {
        self.remote().services_answer
    }

    async fn novnc_answers(&self, _port: u16) -> bool {
        self.remote().services_answer
    }
}

/// The setup stamp a pod set up for [`settings`] records.
fn current_stamp() -> String {
    settings().setup_stamp()
}

fn settings() -> SessionSettings {
    let mut settings = SessionSettings::new(SecretString::from(PASSWORD));
    settings.local_ports = TunnelPorts {
        mcp: 0,
        control: 0,
        vnc: 0,
        novnc: 0,
    };
    settings.services_timeout = Duration::from_secs(20);
    settings.ssh_timeout = Duration::from_secs(60);
    settings
}

fn orchestrator(
    provider: &FakeProvider,
    connector: &FakeConnector,
    settings: SessionSettings,
) -> Orchestrator {
    Orchestrator::new(
        Arc::new(provider.clone()),
        Arc::new(connector.clone()),
        settings,
    )
}

fn recorder() -> (Arc<Mutex<Vec<Event>>>, impl Fn(&Event) + Send + Sync) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    (events, move |event: &Event| {
        sink.lock().expect("events").push(event.clone());
    })
}

#[tokio::test(start_paused = true)]
async fn start_from_stopped_sets_up_runs_the_session_and_opens_the_tunnel() {
    let provider = FakeProvider::with(PodStatus::Exited);
    let connector = FakeConnector::healthy("old-version");
    let (events, sink) = recorder();
    let session = orchestrator(&provider, &connector, settings())
        .start("pod1", &sink)
        .await
        .expect("started");
    assert!(session.started_pod);
    assert_eq!(session.ports.novnc, 40003, "port 0 picks a free port");
    assert_eq!(provider.world().starts, 1);
    let remote = connector.remote();
    for asset in assets::all() {
        assert!(
            remote.uploads.iter().any(|path| path.ends_with(asset.name)),
            "{} was staged: {:?}",
            asset.name,
            remote.uploads
        );
    }
    let (session_command, stdin) = remote
        .commands
        .iter()
        .find(|(command, _)| command.contains("session.sh"))
        .expect("session ran");
    assert!(!session_command.contains(PASSWORD), "{session_command}");
    assert_eq!(stdin.as_deref(), Some(format!("{PASSWORD}\n").as_bytes()));
    assert!(session_command.contains("RPB_POD_ROOT=/runpod"));
    drop(remote);
    let steps: Vec<Step> = events
        .lock()
        .expect("events")
        .iter()
        .map(|e| e.step)
        .collect();
    for step in [
        Step::StartPod,
        Step::WaitRunning,
        Step::Connect,
        Step::Setup,
        Step::Session,
        Step::Tunnel,
        Step::Ready,
    ] {
        assert!(steps.contains(&step), "missing {step:?} in {steps:?}");
    }
    assert!(
        session
            .novnc_url()
            .ends_with(":40003/vnc.html?autoconnect=1&resize=scale")
    );
}

#[tokio::test(start_paused = true)]
async fn a_running_pod_with_current_assets_is_not_started_or_set_up_again() {
    let provider = FakeProvider::with(PodStatus::Running);
    let connector = FakeConnector::healthy(&current_stamp());
    let session = orchestrator(&provider, &connector, settings())
        .start("pod1", &|_: &Event| {})
        .await
        .expect("started");
    assert!(!session.started_pod);
    assert_eq!(provider.world().starts, 0);
    let remote = connector.remote();
    assert!(remote.uploads.is_empty());
    assert!(
        !remote
            .commands
            .iter()
            .any(|(command, _)| command.contains("setup.sh"))
    );
}

#[tokio::test(start_paused = true)]
async fn a_stale_endpoint_is_re_read_until_a_banner_answers() {
    let provider = FakeProvider::with(PodStatus::Running);
    {
        let mut world = provider.world();
        world.endpoints = VecDeque::from([1999, 1999, 1999, 2202]);
    }
    let connector = FakeConnector::healthy(&current_stamp());
    let session = orchestrator(&provider, &connector, settings())
        .start("pod1", &|_: &Event| {})
        .await
        .expect("started on the new port");
    assert_eq!(session.endpoint.port, 2202);
    assert_eq!(connector.remote().connected_to, [2202]);
}

#[tokio::test(start_paused = true)]
async fn sshd_that_never_answers_is_a_clear_error_and_the_pod_is_stopped_again() {
    let provider = FakeProvider::with(PodStatus::Exited);
    let connector = FakeConnector::healthy(&current_stamp());
    connector.remote().live_ports.clear();
    let error = orchestrator(&provider, &connector, settings())
        .start("pod1", &|_: &Event| {})
        .await
        .expect_err("no sshd");
    assert!(
        matches!(
            &error,
            Error::StartFailed {
                stopped_again: true,
                ..
            }
        ),
        "{error:?}"
    );
    let chain = format!(
        "{error}: {}",
        std::error::Error::source(&error)
            .map(ToString::to_string)
            .unwrap_or_default()
    );
    assert!(
        chain.contains("sshd did not answer at root@203.0.113.7:2201"),
        "{chain}"
    );
    assert_eq!(provider.world().stops, 1);
}

#[tokio::test(start_paused = true)]
async fn no_free_gpu_is_typed_and_wait_for_gpu_retries_until_it_clears() {
    let provider = FakeProvider::with(PodStatus::Exited);
    provider.world().no_gpu_starts = 1;
    let connector = FakeConnector::healthy(&current_stamp());
    let error = orchestrator(&provider, &connector, settings())
        .start("pod1", &|_: &Event| {})
        .await
        .expect_err("no gpu");
    assert!(matches!(error, Error::NoGpuOnHost { .. }), "{error:?}");
    assert!(error.to_string().contains("wait-for-gpu"), "{error}");
    assert_eq!(
        provider.world().stops,
        0,
        "nothing was started, nothing to stop"
    );

    provider.world().no_gpu_starts = 3;
    let mut patient = settings();
    patient.wait_for_gpu = Some(WaitForGpu {
        interval: Duration::from_secs(30),
        deadline: Duration::from_secs(600),
    });
    let (events, sink) = recorder();
    orchestrator(&provider, &connector, patient)
        .start("pod1", &sink)
        .await
        .expect("starts once a gpu frees up");
    let waits = events
        .lock()
        .expect("events")
        .iter()
        .filter(|event| event.step == Step::WaitForGpu)
        .count();
    assert_eq!(waits, 3);

    provider.world().current = Some(PodStatus::Exited);
    provider.world().no_gpu_starts = 100;
    let mut short = settings();
    short.wait_for_gpu = Some(WaitForGpu {
        interval: Duration::from_secs(30),
        deadline: Duration::from_secs(90),
    });
    let error = orchestrator(&provider, &connector, short)
        .start("pod1", &|_: &Event| {})
        .await
        .expect_err("deadline");
    assert!(matches!(error, Error::NoGpuOnHost { .. }));
}

#[tokio::test(start_paused = true)]
async fn a_failing_session_script_stops_the_pod_again_unless_told_to_keep_it() {
    let provider = FakeProvider::with(PodStatus::Exited);
    let connector = FakeConnector::healthy(&current_stamp());
    connector.remote().session_fails = true;
    let error = orchestrator(&provider, &connector, settings())
        .start("pod1", &|_: &Event| {})
        .await
        .expect_err("session fails");
    let message = error.to_string();
    assert!(message.contains("stopped again"), "{message}");
    let source = std::error::Error::source(&error)
        .map(ToString::to_string)
        .unwrap_or_default();
    assert!(source.contains("xvfb did not start"), "{source}");
    assert_eq!(provider.world().stops, 1);

    provider.world().current = Some(PodStatus::Exited);
    let mut keep = settings();
    keep.keep_pod_on_failure = true;
    let error = orchestrator(&provider, &connector, keep)
        .start("pod1", &|_: &Event| {})
        .await
        .expect_err("session fails");
    assert!(matches!(
        error,
        Error::StartFailed {
            stopped_again: false,
            ..
        }
    ));
    assert_eq!(provider.world().stops, 1, "kept running as asked");
}

#[tokio::test(start_paused = true)]
async fn a_session_script_failure_on_a_pod_we_did_not_start_leaves_it_running() {
    let provider = FakeProvider::with(PodStatus::Running);
    let connector = FakeConnector::healthy(&current_stamp());
    connector.remote().session_fails = true;
    let error = orchestrator(&provider, &connector, settings())
        .start("pod1", &|_: &Event| {})
        .await
        .expect_err("session fails");
    assert!(matches!(error, Error::RemoteCommand { .. }), "{error:?}");
    assert_eq!(provider.world().stops, 0);
}

#[tokio::test(start_paused = true)]
async fn services_that_never_answer_close_the_tunnel_and_stop_the_pod() {
    let provider = FakeProvider::with(PodStatus::Exited);
    let connector = FakeConnector::healthy(&current_stamp());
    connector.remote().services_answer = false;
    let error = orchestrator(&provider, &connector, settings())
        .start("pod1", &|_: &Event| {})
        .await
        .expect_err("services down");
    let source = std::error::Error::source(&error)
        .map(ToString::to_string)
        .unwrap_or_default();
    assert!(
        source.contains("blender (rpb control) did not answer"),
        "{source}"
    );
    let remote = connector.remote();
    assert_eq!((remote.tunnels_open, remote.tunnels_closed), (1, 1));
    assert_eq!(provider.world().stops, 1);
}

#[tokio::test(start_paused = true)]
async fn a_pod_that_errors_while_starting_fails_the_start_and_is_stopped() {
    let provider = FakeProvider::with(PodStatus::Exited);
    provider.world().boot_fails = true;
    let connector = FakeConnector::healthy(&current_stamp());
    let error = orchestrator(&provider, &connector, settings())
        .start("pod1", &|_: &Event| {})
        .await
        .expect_err("errors");
    let source = std::error::Error::source(&error)
        .map(ToString::to_string)
        .unwrap_or_default();
    assert!(source.contains("is ERROR"), "{error}: {source}");
    assert_eq!(provider.world().stops, 1);
}

#[tokio::test(start_paused = true)]
async fn a_terminated_pod_cannot_start() {
    let provider = FakeProvider::with(PodStatus::Terminated);
    let connector = FakeConnector::healthy(&current_stamp());
    let error = orchestrator(&provider, &connector, settings())
        .start("pod1", &|_: &Event| {})
        .await
        .expect_err("terminated");
    assert!(error.to_string().contains("create a new one"), "{error}");
}

#[tokio::test(start_paused = true)]
async fn stop_closes_the_tunnel_and_waits_for_zero_cost() {
    let provider = FakeProvider::with(PodStatus::Running);
    let connector = FakeConnector::healthy(&current_stamp());
    let orchestrator = orchestrator(&provider, &connector, settings());
    let session = orchestrator
        .start("pod1", &|_: &Event| {})
        .await
        .expect("started");
    let status = orchestrator
        .status("pod1", Some(&session))
        .await
        .expect("status");
    assert!(
        (status.cost_since_start - 0.88).abs() < 1e-9,
        "2 h at $0.44/h"
    );
    assert_eq!(
        status.tunnel.map(|state| state.to_string()).as_deref(),
        Some("connected to fake:22")
    );
    assert!(status.mcp_answers && status.novnc_answers);
    let (events, sink) = recorder();
    let pod = orchestrator
        .stop("pod1", Some(session), &sink)
        .await
        .expect("stopped");
    assert_eq!(pod.status, PodStatus::Exited);
    assert!(pod.cost_per_hour.abs() < f64::EPSILON);
    assert_eq!(connector.remote().tunnels_closed, 1);
    assert_eq!(provider.world().stops, 1);
    assert!(
        events
            .lock()
            .expect("events")
            .iter()
            .any(|e| e.detail.contains("$0.00/h"))
    );
}

fn spec() -> PodSpec {
    let mut spec = PodSpec::new("rpb")
        .gpu_type("NVIDIA RTX A5000")
        .cloud(runpod_api::models::Cloud::Community);
    spec.image = "runpod/pytorch".into();
    spec
}

#[tokio::test(start_paused = true)]
async fn create_registers_the_key_once_creates_and_sets_up() {
    let provider = FakeProvider::with(PodStatus::Provisioning);
    provider.world().keys.push("ssh-ed25519 OLD other".into());
    let connector = FakeConnector::healthy("none");
    let orchestrator = orchestrator(&provider, &connector, settings());
    let pod = orchestrator
        .create(&spec(), "ssh-ed25519 NEW me", &|_: &Event| {})
        .await
        .expect("created");
    assert_eq!(pod.status, PodStatus::Running);
    assert_eq!(
        provider.world().keys,
        ["ssh-ed25519 OLD other", "ssh-ed25519 NEW me"]
    );
    assert_eq!(provider.world().created.len(), 1);
    let remote = connector.remote();
    let setup = remote
        .commands
        .iter()
        .map(|(command, _)| command)
        .find(|command| command.contains("setup.sh"))
        .expect("setup ran");
    // A new pod downloads Blender: the script gets the version and the checksum to verify.
    for expected in [
        format!("RPB_BLENDER_VERSION={}", assets::DEFAULT_BLENDER_VERSION),
        format!("RPB_BLENDER_SHA256={}", assets::DEFAULT_BLENDER_SHA256),
    ] {
        assert!(setup.contains(&expected), "{expected} missing in {setup}");
    }
}

#[tokio::test(start_paused = true)]
async fn create_makes_the_host_key_and_pins_it_before_the_first_connection() {
    let provider = FakeProvider::with(PodStatus::Provisioning);
    let connector = FakeConnector::healthy("none");
    let (events, sink) = recorder();
    orchestrator(&provider, &connector, settings())
        .create(&spec(), "ssh-ed25519 NEW me", &sink)
        .await
        .expect("created");
    let created = provider.world().created[0].clone();
    let pair = created.host_key.expect("create made a host key");
    assert!(
        !format!("{pair:?}").contains("PRIVATE"),
        "Debug shows only the public half"
    );
    let remote = connector.remote();
    assert!(!remote.pins_at_connect.is_empty());
    assert!(
        remote
            .pins_at_connect
            .iter()
            .all(|pin| pin.as_deref() == Some(pair.public_key())),
        "every connection, the first included, found the pin: {:?}",
        remote.pins_at_connect
    );
    let events = events.lock().expect("events");
    assert!(
        events
            .iter()
            .any(|e| e.detail.contains(&pair.fingerprint()) && e.detail.contains("pinned")),
        "the pin is reported"
    );
    assert!(!events.iter().any(|e| e.detail.contains("first contact")));
}

#[tokio::test(start_paused = true)]
async fn a_pod_without_a_pin_is_pinned_from_the_api_or_reported_as_a_first_contact() {
    // A pod rpb created, seen from a machine that never met it: the API's key is pinned.
    let provider = FakeProvider::with(PodStatus::Running);
    let pair = pod_tunnel::HostKeyPair::generate_ed25519("api").unwrap();
    provider.world().api_host_key = Some(pair.public_key().to_owned());
    let connector = FakeConnector::healthy(&current_stamp());
    let (events, sink) = recorder();
    orchestrator(&provider, &connector, settings())
        .start("pod1", &sink)
        .await
        .expect("started");
    assert_eq!(
        connector.remote().pins_at_connect[0].as_deref(),
        Some(pair.public_key())
    );
    assert!(
        events.lock().expect("events").iter().any(
            |e| e.detail.contains("was created with") && e.detail.contains(&pair.fingerprint())
        )
    );

    // A pod rpb did not create: no pin, no key in the API; the first contact is said aloud.
    let provider = FakeProvider::with(PodStatus::Running);
    let connector = FakeConnector::healthy(&current_stamp());
    let (events, sink) = recorder();
    orchestrator(&provider, &connector, settings())
        .start("pod1", &sink)
        .await
        .expect("started");
    assert_eq!(connector.remote().pins_at_connect[0], None);
    assert!(
        events
            .lock()
            .expect("events")
            .iter()
            .any(|e| e.detail.contains("first contact with pod pod1")
                && e.detail.contains("rpb trust --pod-id pod1")),
        "the first contact is reported"
    );
}

#[tokio::test(start_paused = true)]
async fn adopt_sets_the_hook_up_on_the_pod_s_own_volume_and_keeps_its_command() {
    use blender_session::orchestrator::AdoptOptions;

    let provider = FakeProvider::with(PodStatus::Running);
    provider.world().volume_path = Some("/workspace".into());
    provider.world().start_command = "bash /start-original.sh --flag".into();
    let connector = FakeConnector::healthy("old-version");
    let orchestrator = orchestrator(&provider, &connector, settings());
    let (events, sink) = recorder();
    // `start` says the pod has no hook.
    orchestrator.start("pod1", &sink).await.expect("started");
    assert!(
        events
            .lock()
            .expect("events")
            .iter()
            .any(|e| e.step == Step::HostKey && e.detail.contains("rpb adopt --pod-id pod1"))
    );
    let report = orchestrator
        .adopt("pod1", &AdoptOptions::new(), &sink)
        .await
        .expect("adopted");
    assert_eq!(report.pod_root, "/workspace");
    assert_eq!(
        report.previous_start_command,
        "bash /start-original.sh --flag"
    );
    let now = provider.world().start_command.clone();
    assert_eq!(now, report.start_command);
    assert!(now.contains("/workspace/rpb/bin/boot-hook.sh"), "{now}");
    assert!(
        now.contains("start-original.sh --flag"),
        "the pod's own command follows: {now}"
    );
    let commands: Vec<String> = connector
        .remote()
        .commands
        .iter()
        .map(|(command, _)| command.clone())
        .collect();
    assert!(
        commands
            .iter()
            .any(|c| c.contains("/workspace/rpb/setup-stamp")),
        "setup was checked on the pod's volume: {commands:?}"
    );
    assert!(
        commands
            .iter()
            .any(|c| c.contains("/workspace/rpb/ssh-host-keys")),
        "the verified host key is persisted: {commands:?}"
    );
    // Again: nothing changes.
    let again = orchestrator
        .adopt("pod1", &AdoptOptions::new(), &sink)
        .await
        .expect("adopted again");
    assert!(again.already_adopted);
    assert_eq!(provider.world().start_command, now);
    // Without a workspace there is no record to undo from.
    let error = orchestrator
        .undo_adopt("pod1", &sink)
        .await
        .expect_err("no store");
    assert!(error.to_string().contains("workspace"), "{error}");
    // A pod id is a file name here: no paths.
    let error = orchestrator
        .adopt("../x", &AdoptOptions::new(), &sink)
        .await
        .expect_err("not a pod id");
    assert!(error.to_string().contains("not a pod id"), "{error}");
}

#[tokio::test(start_paused = true)]
async fn a_create_whose_setup_fails_stops_the_new_pod() {
    let provider = FakeProvider::with(PodStatus::Provisioning);
    let connector = FakeConnector::healthy("none");
    connector.remote().live_ports.clear();
    let mut fast = settings();
    fast.ssh_timeout = Duration::from_secs(5);
    let error = orchestrator(&provider, &connector, fast)
        .create(&spec(), "ssh-ed25519 NEW me", &|_: &Event| {})
        .await
        .expect_err("setup fails");
    assert!(
        matches!(
            error,
            Error::StartFailed {
                stopped_again: true,
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(provider.world().stops, 1);
}

#[tokio::test(start_paused = true)]
async fn every_pod_side_command_gets_the_whole_environment_and_no_secret() {
    let provider = FakeProvider::with(PodStatus::Exited);
    let connector = FakeConnector::healthy("old-version");
    let mut settings = settings();
    settings.pod_env = BTreeMap::from([
        (
            "BLENDER_BIN".to_owned(),
            "/opt/blender 4.5/blender".to_owned(),
        ),
        ("RPB_DISPLAY".to_owned(), "7".to_owned()),
    ]);
    settings.pod_root = "/workspace".into();
    settings.remote_ports = TunnelPorts {
        mcp: 19876,
        control: 19877,
        vnc: 15900,
        novnc: 16080,
    };
    let debug = format!("{settings:?}");
    assert!(!debug.contains(PASSWORD), "redacted in Debug: {debug}");
    orchestrator(&provider, &connector, settings)
        .start("pod1", &|_: &Event| {})
        .await
        .expect("started");
    let remote = connector.remote();
    let scripts: Vec<&String> = remote
        .commands
        .iter()
        .map(|(command, _)| command)
        .filter(|command| command.contains("session.sh") || command.contains("setup.sh"))
        .collect();
    assert!(scripts.len() >= 2, "setup and session ran: {scripts:?}");
    for command in scripts {
        for expected in [
            "BLENDER_BIN='/opt/blender 4.5/blender'",
            "RPB_DISPLAY=7",
            "RPB_POD_ROOT=/workspace",
            "RPB_MCP_PORT=19876",
            "RPB_VNC_PORT=15900",
            "RPB_NOVNC_PORT=16080",
        ] {
            assert!(
                command.contains(expected),
                "{expected} missing in {command}"
            );
        }
        assert!(
            command.contains(" /workspace/rpb/"),
            "runs under the pod root: {command}"
        );
    }
    for (command, _) in &remote.commands {
        assert!(
            !command.contains(PASSWORD),
            "no secret in a command line: {command}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_session_attached_without_a_tunnel_never_reaches_a_default_port() {
    let provider = FakeProvider::with(PodStatus::Running);
    let connector = FakeConnector::healthy(&current_stamp());
    let none = TunnelPorts {
        mcp: 0,
        control: 0,
        vnc: 0,
        novnc: 0,
    };
    let session = orchestrator(&provider, &connector, settings())
        .attach("pod1", none, &|_: &Event| {})
        .await
        .expect("attached over SSH");
    let error = session.mcp().await.expect_err("no tunnel");
    assert!(
        matches!(&error, Error::NoTunnel { pod_id } if pod_id == "pod1"),
        "{error:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_version_name_is_checked_before_it_reaches_any_path() {
    let provider = FakeProvider::with(PodStatus::Running);
    let connector = FakeConnector::healthy(&current_stamp());
    let orchestrator = orchestrator(&provider, &connector, settings());
    let session = orchestrator
        .start("pod1", &|_: &Event| {})
        .await
        .expect("started");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = project_store::Store::open(dir.path()).expect("store");
    let project = project_store::ProjectName::new("chair").expect("name");
    let commands_before = connector.remote().commands.len();
    for name in ["../../escape", "a/b", "", ".hidden"] {
        let error = orchestrator
            .save(&session, &store, &project, name)
            .await
            .expect_err("refused");
        assert!(
            matches!(
                error.store_error(),
                Some(project_store::Error::InvalidStem { stem, .. }) if stem == name
            ),
            "{name:?}: {error:?}"
        );
    }
    assert_eq!(
        connector.remote().commands.len(),
        commands_before,
        "nothing ran on the pod"
    );
    assert!(
        !dir.path().join("projects").exists(),
        "nothing was created locally"
    );
}

mod supervisor {
    //! The background tunnel's supervisor (`daemon::run_background_tunnel`) on the fakes, under
    //! paused time: each way it ends, and what it leaves in the state folder.

    use blender_session::daemon::{
        self, CostGuard, Ending, GuardReason, GuardStop, SupervisorOptions, TunnelStatus,
    };

    use super::*;

    async fn supervise(
        provider: &FakeProvider,
        connector: &FakeConnector,
        guard: CostGuard,
        state_dir: &Path,
        shutdown: impl std::future::Future<Output = String>,
    ) -> Result<Ending> {
        daemon::run_background_tunnel(
            &orchestrator(provider, connector, settings()),
            "pod1",
            guard,
            state_dir,
            SupervisorOptions::default(),
            shutdown,
        )
        .await
    }

    #[tokio::test(start_paused = true)]
    async fn the_hours_limit_records_why_and_stops_the_pod() {
        let provider = FakeProvider::with(PodStatus::Running);
        let connector = FakeConnector::healthy(&current_stamp());
        let dir = tempfile::tempdir().expect("tempdir");
        let started = tokio::time::Instant::now();
        let ending = supervise(
            &provider,
            &connector,
            CostGuard::new(Some(0.5), None),
            dir.path(),
            std::future::pending(),
        )
        .await
        .expect("supervised");
        assert_eq!(ending, Ending::Guard(GuardReason::MaxHours { hours: 0.5 }));
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_secs(1800) && waited < Duration::from_secs(1830),
            "stopped after {waited:?}"
        );
        assert_eq!(provider.world().stops, 1);
        assert_eq!(connector.remote().tunnels_closed, 1);
        let stop = GuardStop::read(&daemon::guard_path(dir.path())).expect("guard stop recorded");
        assert_eq!(stop.pod_id, "pod1");
        assert!(stop.reason.contains("--max-hours 0.5"), "{}", stop.reason);
        assert_eq!(
            daemon::status(dir.path()).expect("status"),
            TunnelStatus::None
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_tunnel_that_gives_up_ends_it_at_once_and_keeps_the_pod() {
        let provider = FakeProvider::with(PodStatus::Running);
        let connector = FakeConnector::healthy(&current_stamp());
        let dir = tempfile::tempdir().expect("tempdir");
        let give_up = {
            let connector = connector.clone();
            let state_dir = dir.path().to_owned();
            async move {
                // Once the record is written the tunnel is up: then it gives up.
                while !matches!(daemon::status(&state_dir), Ok(TunnelStatus::Running(_))) {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                let sender = connector
                    .remote()
                    .tunnel_state
                    .clone()
                    .expect("tunnel opened");
                sender.send_replace(TunnelState::Reconnecting {
                    attempt: 1,
                    last_error: "connection reset".into(),
                });
                tokio::time::sleep(Duration::from_millis(10)).await;
                sender.send_replace(TunnelState::Closed {
                    error: Some("host key changed".into()),
                });
            }
        };
        let started = tokio::time::Instant::now();
        let (ending, ()) = tokio::join!(
            supervise(
                &provider,
                &connector,
                CostGuard::new(Some(10.0), Some(30.0)),
                dir.path(),
                std::future::pending(),
            ),
            give_up
        );
        let ending = ending.expect("supervised");
        assert_eq!(
            ending,
            Ending::TunnelGaveUp {
                error: Some("host key changed".into())
            }
        );
        assert!(ending.is_failure());
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "noticed at once, not by polling: {:?}",
            started.elapsed()
        );
        assert_eq!(provider.world().stops, 0, "the pod is left running");
        assert_eq!(
            daemon::status(dir.path()).expect("status"),
            TunnelStatus::None
        );
    }

    #[tokio::test(start_paused = true)]
    async fn idle_traffic_and_a_pod_stopped_elsewhere_end_it() {
        // Idle: no bytes move through the fake tunnel.
        let provider = FakeProvider::with(PodStatus::Running);
        let connector = FakeConnector::healthy(&current_stamp());
        let dir = tempfile::tempdir().expect("tempdir");
        let ending = supervise(
            &provider,
            &connector,
            CostGuard::new(None, Some(2.0)),
            dir.path(),
            std::future::pending(),
        )
        .await
        .expect("supervised");
        assert_eq!(ending, Ending::Guard(GuardReason::Idle { minutes: 2.0 }));
        assert_eq!(provider.world().stops, 1);

        // Stopped by someone else: seen at the next pod check, the tunnel closed, no stop call.
        let provider = FakeProvider::with(PodStatus::Running);
        let connector = FakeConnector::healthy(&current_stamp());
        let stop_elsewhere = {
            let provider = provider.clone();
            async move {
                tokio::time::sleep(Duration::from_secs(60)).await;
                provider.world().current = Some(PodStatus::Exited);
            }
        };
        let (ending, ()) = tokio::join!(
            supervise(
                &provider,
                &connector,
                CostGuard::default(),
                dir.path(),
                std::future::pending(),
            ),
            stop_elsewhere
        );
        assert_eq!(
            ending.expect("supervised"),
            Ending::PodGone(PodStatus::Exited)
        );
        assert_eq!(provider.world().stops, 0);
        assert_eq!(connector.remote().tunnels_closed, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_shutdown_closes_the_tunnel_and_removes_the_record() {
        let provider = FakeProvider::with(PodStatus::Running);
        let connector = FakeConnector::healthy(&current_stamp());
        let dir = tempfile::tempdir().expect("tempdir");
        let state_dir = dir.path().to_owned();
        let shutdown = async move {
            tokio::time::sleep(Duration::from_secs(30)).await;
            let TunnelStatus::Running(record) = daemon::status(&state_dir).expect("status") else {
                panic!("the record is written while the tunnel runs");
            };
            assert_eq!(record.pid, std::process::id());
            assert_eq!(record.mcp_port, 40001);
            "SIGTERM".to_owned()
        };
        let ending = supervise(
            &provider,
            &connector,
            CostGuard::default(),
            dir.path(),
            shutdown,
        )
        .await
        .expect("supervised");
        assert_eq!(ending, Ending::Shutdown("SIGTERM".into()));
        assert_eq!(connector.remote().tunnels_closed, 1);
        assert_eq!(provider.world().stops, 0);
        assert_eq!(
            daemon::status(dir.path()).expect("status"),
            TunnelStatus::None
        );
    }
}
