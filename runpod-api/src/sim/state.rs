//! The simulator's in-memory world: pods and their lifecycle, the catalogs, SSH keys, billing and
//! the fault knobs. Pure: time comes in as an argument, so every rule is testable without HTTP.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;

use super::hosts::{DATA_CENTERS, Host, default_hosts, free_on};
use super::knobs::{
    Faults, NO_CAPACITY, NO_FREE_GPU, Refusal, SshEndpoints, Timings, base36_id, format_rfc3339,
};
use super::templates::Templates;
use super::volumes::Volumes;
use crate::models::{
    Cloud, CreatePodRequest, GlobalNetworking, GpuType, LogLine, LogSource, Pod, PodAction, PodCpu,
    PodGpu, PodRuntime, PodStatus, RuntimePort, SshEndpoint, UpdatePodRequest, Utilization,
};

/// A pod as the simulator keeps it.
#[derive(Debug, Clone)]
pub(crate) struct SimPod {
    pub(crate) pod: Pod,
    /// The state the pod is heading to and since when.
    phase: Phase,
    phase_since: Instant,
    /// Whether this boot still passes through `PROVISIONING`.
    provisioning: bool,
    /// The endpoint of the current boot, and of the previous one (for stale reports).
    endpoint: Option<SocketAddr>,
    previous_endpoint: Option<SocketAddr>,
    /// When the current boot reached `RUNNING`, for the stale-port window.
    running_since: Option<Instant>,
    /// Seconds of billable time accumulated before the current boot, with the hourly price.
    billed_seconds: f64,
    price_per_hour: f64,
    pub(crate) logs: Vec<LogLine>,
    boot_fails: bool,
    /// How many boots the pod has had (its create is the first).
    boots: u64,
    /// The host a GPU pod is placed on (kept while stopped), its GPUs, and its data center.
    pub(crate) host: Option<String>,
    gpu_count: u32,
    data_center: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Booting,
    Stopped,
    Failed,
}

/// The whole simulated account.
#[derive(Debug)]
pub(crate) struct World {
    pub(crate) pods: BTreeMap<String, SimPod>,
    pub(crate) gpus: Vec<GpuType>,
    pub(crate) ssh_keys: Vec<String>,
    pub(crate) timings: Timings,
    pub(crate) endpoints: SshEndpoints,
    rotation: usize,
    pub(crate) faults: Faults,
    next_id: u64,
    next_port: u16,
    /// Requests answered in the current minute, for the `RateLimit` header.
    pub(crate) minute_requests: VecDeque<Instant>,
    pub(crate) hosts: Vec<Host>,
    pub(crate) volumes: Volumes,
    pub(crate) templates: Templates,
    clock_origin: Instant,
    wall_origin: i64,
}

impl World {
    pub(crate) fn new(timings: Timings, endpoints: SshEndpoints, gpus: Vec<GpuType>) -> Self {
        let wall_origin = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| i64::try_from(since.as_secs()).unwrap_or(0));
        Self {
            pods: BTreeMap::new(),
            hosts: default_hosts(&gpus),
            volumes: Volumes::default(),
            templates: Templates::default(),
            gpus,
            ssh_keys: Vec::new(),
            timings,
            endpoints,
            rotation: 0,
            faults: Faults {
                server_error_status: 503,
                retry_after_secs: 1,
                ..Faults::default()
            },
            next_id: 0,
            next_port: 20_000,
            minute_requests: VecDeque::new(),
            clock_origin: Instant::now(),
            wall_origin,
        }
    }

    /// RFC 3339 time of `at` on the simulator's clock.
    pub(crate) fn timestamp(&self, at: Instant) -> String {
        let offset = at.saturating_duration_since(self.clock_origin).as_secs();
        format_rfc3339(self.wall_origin + i64::try_from(offset).unwrap_or(0))
    }

    fn new_id(&mut self) -> String {
        self.next_id += 1;
        base36_id("sim", self.next_id)
    }

    fn next_endpoint(&mut self) -> SocketAddr {
        match &self.endpoints {
            SshEndpoints::Fixed(address) => *address,
            SshEndpoints::Rotating(list) if !list.is_empty() => {
                let address = list[self.rotation % list.len()];
                self.rotation += 1;
                address
            }
            SshEndpoints::Fake | SshEndpoints::Rotating(_) => {
                self.next_port = if self.next_port >= 60_000 {
                    20_000
                } else {
                    self.next_port + 1_237
                };
                SocketAddr::from(([203, 0, 113, 7], self.next_port))
            }
        }
    }

    pub(crate) fn price(&self, gpu_id: &str, cloud: &Cloud, count: u32) -> Option<f64> {
        let gpu = self.gpus.iter().find(|gpu| gpu.id == gpu_id)?;
        Some(gpu.price_on(cloud)? * f64::from(count))
    }

    pub(crate) fn create(
        &mut self,
        request: &CreatePodRequest,
        now: Instant,
    ) -> Result<Pod, Refusal> {
        if let Err(reason) = request.check() {
            return Err(Refusal::new(400, "Bad Request", reason));
        }
        let request = &self.templates.resolve(request)?;
        if self.faults.insufficient_balance {
            return Err(Refusal::new(
                402,
                "Payment Required",
                "insufficient balance",
            ));
        }
        let cloud = request.cloud.clone().unwrap_or(Cloud::Secure);
        let (price, gpu, cpu) = if let Some(gpu) = &request.gpu {
            let count = gpu.count.unwrap_or(1);
            let Some(price) = self.price(&gpu.id, &cloud, count) else {
                return Err(Refusal::new(
                    400,
                    "Bad Request",
                    format!("gpu type {:?} is not offered on {cloud} cloud", gpu.id),
                ));
            };
            let pod_gpu = serde_json::from_value::<PodGpu>(serde_json::json!({
                "id": gpu.id, "count": count
            }))
            .map_err(|error| Refusal::new(500, "Internal Server Error", error.to_string()))?;
            (price, Some(pod_gpu), None)
        } else {
            let cpu = request.cpu.as_ref().map(|cpu| {
                serde_json::from_value::<PodCpu>(serde_json::json!({
                    "id": cpu.id, "vcpuCount": cpu.vcpu_count,
                    "memory": cpu.vcpu_count.saturating_mul(2)
                }))
            });
            let cpu = cpu
                .transpose()
                .map_err(|error| Refusal::new(500, "Internal Server Error", error.to_string()))?;
            (0.06, None, cpu)
        };
        self.create_storm()?;
        let (host, data_center) = self.place(request)?;
        if self.faults.no_capacity_next_create > 0 {
            self.faults.no_capacity_next_create -= 1;
            return Err(Refusal::new(400, "Bad Request", NO_CAPACITY));
        }
        let id = self.new_id();
        let pod_value = serde_json::json!({
            "id": id,
            "name": request.name,
            "status": "PROVISIONING",
            "actions": ["stop", "terminate"],
            "image": request.image.clone().unwrap_or_default(),
            "args": request.args.clone().unwrap_or_default(),
            "disk": request.disk.unwrap_or(20),
            "mounts": request.mounts.clone().unwrap_or_default(),
            "ports": request.ports,
            "env": request.env,
            "registry": request.registry,
            "cloud": cloud,
            "dataCenterId": null,
            "cudaVersion": null,
            "ssh": {"proxy": null, "direct": null},
            // A template is a one-time source of settings; the pod keeps no link to it.
            "template": null,
            "cost": price,
            "locked": false,
            "runtime": null,
            "createdAt": self.timestamp(now),
            "startedAt": null,
            "globalNetworking": {"enabled": request.global_networking.unwrap_or(false)},
        });
        let mut pod: Pod = serde_json::from_value(pod_value)
            .map_err(|error| Refusal::new(500, "Internal Server Error", error.to_string()))?;
        pod.gpu = gpu;
        pod.cpu = cpu;
        let mut sim = SimPod {
            pod,
            phase: Phase::Booting,
            phase_since: now,
            provisioning: true,
            endpoint: None,
            previous_endpoint: None,
            running_since: None,
            billed_seconds: 0.0,
            price_per_hour: price,
            logs: Vec::new(),
            boot_fails: false,
            boots: 0,
            host,
            gpu_count: request.gpu.as_ref().map_or(0, |gpu| gpu.count.unwrap_or(1)),
            data_center,
        };
        self.boot(&mut sim, now, true);
        self.log(
            &mut sim,
            now,
            LogSource::System,
            "pod created, pulling image",
        );
        self.pods.insert(id.clone(), sim);
        self.refresh(&id, now);
        Ok(self.pods[&id].pod.clone())
    }

    /// The [`Faults::server_error_next_create`] knob: a 503 before anything is created.
    fn create_storm(&mut self) -> Result<(), Refusal> {
        if self.faults.server_error_next_create == 0 {
            return Ok(());
        }
        self.faults.server_error_next_create -= 1;
        Err(Refusal::new(
            503,
            "Service Unavailable",
            "the pod service is unavailable; try again later",
        ))
    }

    /// GPUs the account's pods hold on a host: those of pods that are up (stopped and failed
    /// pods hold none, but stay bound to the host).
    pub(crate) fn used_on(&self, host_id: &str) -> u32 {
        self.pods
            .values()
            .filter(|sim| sim.phase == Phase::Booting && sim.host.as_deref() == Some(host_id))
            .map(|sim| sim.gpu_count)
            .sum()
    }

    /// Picks a host (GPU pods) and data center for a new pod: the requested data centers, or
    /// all, narrowed to the network volume's; the first host there with enough free GPUs.
    fn place(&self, request: &CreatePodRequest) -> Result<(Option<String>, String), Refusal> {
        let mut centers: Vec<String> = if request.data_center_ids.is_empty() {
            DATA_CENTERS
                .iter()
                .map(|center| center.id.to_owned())
                .collect()
        } else {
            request.data_center_ids.clone()
        };
        if let Some(mount) = request.mounts.as_ref().and_then(|m| m.network.first()) {
            centers = vec![
                self.volumes
                    .data_center_for(&mount.volume_id, &request.data_center_ids)?,
            ];
        }
        let no_capacity = || Refusal::new(400, "Bad Request", NO_CAPACITY);
        let Some(gpu) = &request.gpu else {
            let center = centers
                .into_iter()
                .find(|id| super::hosts::data_center(id).is_some())
                .ok_or_else(no_capacity)?;
            return Ok((None, center));
        };
        let count = gpu.count.unwrap_or(1);
        self.hosts
            .iter()
            .filter(|host| host.gpu_type == gpu.id && centers.iter().any(|c| c == host.data_center))
            .find(|host| free_on(host, self.used_on(&host.id)) >= count)
            .map(|host| (Some(host.id.clone()), host.data_center.to_owned()))
            .ok_or_else(no_capacity)
    }

    fn log(&self, pod: &mut SimPod, at: Instant, source: LogSource, line: &str) {
        pod.logs.push(LogLine {
            source,
            line: line.to_owned(),
            ts: self.timestamp(at),
            event_id: None,
        });
    }

    /// Brings one pod's observed state up to `now`.
    pub(crate) fn refresh(&mut self, id: &str, now: Instant) {
        let Some(mut sim) = self.pods.remove(id) else {
            return;
        };
        let previous = sim.pod.status.clone();
        let status = match sim.phase {
            Phase::Stopped => PodStatus::Exited,
            Phase::Failed => PodStatus::Error,
            Phase::Booting => {
                let elapsed = now.saturating_duration_since(sim.phase_since);
                let provisioning = if sim.provisioning {
                    self.timings.provisioning
                } else {
                    Duration::ZERO
                };
                if elapsed < provisioning {
                    PodStatus::Provisioning
                } else if elapsed < provisioning + self.timings.starting {
                    PodStatus::Starting
                } else if sim.boot_fails {
                    sim.phase = Phase::Failed;
                    PodStatus::Error
                } else {
                    PodStatus::Running
                }
            }
        };
        if status != previous {
            let at = now;
            match status {
                PodStatus::Starting => {
                    sim.pod.data_center_id = Some(sim.data_center.clone());
                    sim.pod.cuda_version = Some("12.8".into());
                    self.log(
                        &mut sim,
                        at,
                        LogSource::System,
                        "image ready, starting container",
                    );
                }
                PodStatus::Running => {
                    sim.running_since = Some(at);
                    sim.pod.started_at = Some(self.timestamp(at));
                    self.log(
                        &mut sim,
                        at,
                        LogSource::Container,
                        "container started; sshd listening",
                    );
                }
                PodStatus::Error => {
                    self.log(
                        &mut sim,
                        at,
                        LogSource::Container,
                        "container exited with code 1",
                    );
                }
                _ => {}
            }
        }
        if previous == PodStatus::Provisioning && status != PodStatus::Provisioning {
            sim.pod.ssh.proxy = Some(SshEndpoint::new(
                "ssh.runpod.io",
                22,
                format!("{}-64411eb2", sim.pod.id),
            ));
        }
        sim.pod.actions = status.allowed_actions().to_vec();
        sim.pod.cost = if matches!(status, PodStatus::Exited | PodStatus::Terminated) {
            0.0
        } else {
            sim.price_per_hour
        };
        sim.pod.runtime = None;
        sim.pod.ssh.direct = None;
        if status == PodStatus::Running {
            self.observe_running(&mut sim, now);
        }
        sim.pod.status = status;
        self.pods.insert(id.to_owned(), sim);
    }

    /// Fills the runtime block and `ssh.direct` of a running pod; within the stale window after
    /// a restart the previous boot's endpoint is reported, as the real API does.
    fn observe_running(&self, sim: &mut SimPod, now: Instant) {
        let exposes_ssh = sim.pod.ports.iter().any(|port| port == "22/tcp");
        let reported = match (sim.running_since, sim.previous_endpoint) {
            (Some(since), Some(old))
                if now.saturating_duration_since(since) < self.faults.stale_ssh_port_for =>
            {
                Some(old)
            }
            _ => sim.endpoint,
        };
        let uptime = sim
            .running_since
            .map_or(0, |since| now.saturating_duration_since(since).as_secs());
        let mut runtime = PodRuntime {
            uptime: Some(uptime),
            cpu: Some(Utilization::default()),
            memory: Some(Utilization::default()),
            ..PodRuntime::default()
        };
        if let (true, Some(address)) = (exposes_ssh, reported) {
            let host = address.ip().to_string();
            sim.pod.ssh.direct = Some(SshEndpoint::new(host.clone(), address.port(), "root"));
            runtime.ports.push(RuntimePort {
                private: Some(22),
                public: Some(address.port()),
                kind: Some("tcp".into()),
                ip: Some(host),
            });
        }
        sim.pod.runtime = Some(runtime);
    }

    pub(crate) fn refresh_all(&mut self, now: Instant) {
        let ids: Vec<String> = self.pods.keys().cloned().collect();
        for id in ids {
            self.refresh(&id, now);
        }
    }

    pub(crate) fn get(&mut self, id: &str, now: Instant) -> Result<Pod, Refusal> {
        self.refresh(id, now);
        self.pods
            .get(id)
            .map(|sim| sim.pod.clone())
            .ok_or_else(|| Refusal::new(404, "Not Found", format!("pod {id} not found")))
    }

    /// Starts a new boot: `STARTING` (and `PROVISIONING` on create) toward `RUNNING`, on a new
    /// SSH endpoint.
    fn boot(&mut self, sim: &mut SimPod, now: Instant, provisioning: bool) {
        Self::bill_until(sim, now);
        sim.phase = Phase::Booting;
        sim.phase_since = now;
        sim.provisioning = provisioning;
        sim.previous_endpoint = sim.endpoint;
        sim.endpoint = Some(self.next_endpoint());
        sim.running_since = None;
        sim.boot_fails = false;
        sim.boots += 1;
        if self.faults.error_next_boot > 0 {
            self.faults.error_next_boot -= 1;
            sim.boot_fails = true;
        }
    }

    fn bill_until(sim: &mut SimPod, now: Instant) {
        if sim.phase == Phase::Booting {
            let seconds = now.saturating_duration_since(sim.phase_since).as_secs_f64();
            sim.billed_seconds += seconds;
            sim.phase_since = now;
        }
    }

    pub(crate) fn action(
        &mut self,
        id: &str,
        action: &PodAction,
        now: Instant,
    ) -> Result<Option<Pod>, Refusal> {
        self.refresh(id, now);
        let Some(mut sim) = self.pods.remove(id) else {
            return Err(Refusal::new(
                404,
                "Not Found",
                format!("pod {id} not found"),
            ));
        };
        let allowed = sim.pod.status.allowed_actions().contains(action);
        let outcome = if allowed {
            self.apply_action(&mut sim, action, now)
        } else {
            Err(Refusal::new(
                409,
                "Conflict",
                format!(
                    "action {action} is not valid for pod status {}",
                    sim.pod.status
                ),
            ))
        };
        let terminated = matches!(outcome, Ok(()) if *action == PodAction::Terminate);
        if !terminated {
            self.pods.insert(id.to_owned(), sim);
        }
        outcome?;
        if terminated {
            return Ok(None);
        }
        self.refresh(id, now);
        Ok(Some(self.pods[id].pod.clone()))
    }

    fn apply_action(
        &mut self,
        sim: &mut SimPod,
        action: &PodAction,
        now: Instant,
    ) -> Result<(), Refusal> {
        match action {
            PodAction::Start => {
                if self.faults.insufficient_balance {
                    return Err(Refusal::new(
                        402,
                        "Payment Required",
                        "insufficient balance",
                    ));
                }
                if self.faults.no_free_gpu_next_start > 0 {
                    self.faults.no_free_gpu_next_start -= 1;
                    return Err(Refusal::new(400, "Bad Request", NO_FREE_GPU));
                }
                // A stopped pod can start only on its own host.
                if let Some(host) = sim.host.as_deref().and_then(|id| self.host(id))
                    && free_on(host, self.used_on(&host.id)) < sim.gpu_count
                {
                    return Err(Refusal::new(400, "Bad Request", NO_FREE_GPU));
                }
                self.boot(sim, now, false);
                self.log(sim, now, LogSource::System, "start requested");
            }
            PodAction::Restart => {
                self.boot(sim, now, false);
                self.log(sim, now, LogSource::System, "restart requested");
            }
            PodAction::Stop => {
                Self::bill_until(sim, now);
                sim.phase = Phase::Stopped;
                sim.phase_since = now;
                self.log(sim, now, LogSource::System, "pod stopped");
            }
            PodAction::Terminate => {
                if self.faults.terminate_refused_next > 0 {
                    self.faults.terminate_refused_next -= 1;
                    return Err(Refusal::new(
                        409,
                        "Conflict",
                        format!(
                            "pod {} cannot be terminated now (simulated fault)",
                            sim.pod.id
                        ),
                    ));
                }
            }
            PodAction::Unknown(other) => {
                return Err(Refusal::new(
                    422,
                    "Unprocessable Entity",
                    format!("unknown action {other:?}"),
                ));
            }
        }
        // Forget the old observed status so the caller's refresh logs the new phase.
        sim.pod.status = PodStatus::Unknown(String::new());
        Ok(())
    }

    pub(crate) fn update(
        &mut self,
        id: &str,
        request: &UpdatePodRequest,
        now: Instant,
    ) -> Result<Pod, Refusal> {
        self.refresh(id, now);
        let Some(sim) = self.pods.get_mut(id) else {
            return Err(Refusal::new(
                404,
                "Not Found",
                format!("pod {id} not found"),
            ));
        };
        if let Err(reason) = request.check() {
            return Err(Refusal::new(400, "Bad Request", reason));
        }
        let pod = &mut sim.pod;
        if let Some(name) = &request.name {
            pod.name.clone_from(name);
        }
        if let Some(image) = &request.image {
            pod.image.clone_from(image);
        }
        if let Some(args) = &request.args {
            pod.args.clone_from(args);
        }
        if let Some(disk) = request.disk {
            pod.disk = Some(u64::from(disk));
        }
        if let Some(ports) = &request.ports {
            pod.ports.clone_from(ports);
        }
        if let Some(env) = &request.env {
            pod.env.clone_from(env);
        }
        if let Some(registry) = &request.registry {
            pod.registry = Some(registry.clone());
        }
        if let Some(mounts) = &request.mounts {
            let volume_changed = match (&pod.mounts.persistent, &mounts.persistent) {
                (Some(old), Some(new)) => old.size != new.size,
                _ => {
                    pod.mounts.network.first().map(|m| &m.volume_id)
                        != mounts.network.first().map(|m| &m.volume_id)
                }
            };
            if volume_changed {
                return Err(Refusal::new(
                    400,
                    "Bad Request",
                    "volumes cannot change; only mount paths can",
                ));
            }
            pod.mounts = mounts.clone();
        }
        if let Some(locked) = request.locked {
            pod.locked = locked;
        }
        if let Some(enabled) = request.global_networking {
            pod.global_networking = GlobalNetworking::default();
            pod.global_networking.enabled = enabled;
        }
        if let Some(template) = &request.template_id {
            pod.template = Some(template.clone());
        }
        Ok(pod.clone())
    }

    pub(crate) fn delete(&mut self, id: &str) -> Result<(), Refusal> {
        if self.pods.contains_key(id) && self.faults.terminate_refused_next > 0 {
            self.faults.terminate_refused_next -= 1;
            return Err(Refusal::new(
                409,
                "Conflict",
                format!("pod {id} cannot be terminated now (simulated fault)"),
            ));
        }
        self.pods
            .remove(id)
            .map(drop)
            .ok_or_else(|| Refusal::new(404, "Not Found", format!("pod {id} not found")))
    }

    /// Total billed USD of a pod up to `now`.
    pub(crate) fn billed(&mut self, id: &str, now: Instant) -> Option<(f64, f64)> {
        let sim = self.pods.get_mut(id)?;
        let running = if sim.phase == Phase::Booting {
            now.saturating_duration_since(sim.phase_since).as_secs_f64()
        } else {
            0.0
        };
        let hours = (sim.billed_seconds + running) / 3600.0;
        let disk = sim.pod.mounts.persistent.as_ref().map_or(0.0, |mount| {
            f64::from(mount.size) * 0.10 / 730.0 * hours.max(1.0 / 3600.0)
        });
        Some((sim.price_per_hour * hours, disk))
    }

    /// The SSH endpoint the pod's current boot really serves, whatever the API reports (the
    /// stale-port fault changes only the report): `Some` while the pod is `RUNNING` and exposes
    /// `22/tcp`.
    pub(crate) fn current_endpoint(&mut self, id: &str, now: Instant) -> Option<SocketAddr> {
        self.refresh(id, now);
        let sim = self.pods.get(id)?;
        let exposes_ssh = sim.pod.ports.iter().any(|port| port == "22/tcp");
        if sim.pod.status == PodStatus::Running && exposes_ssh {
            sim.endpoint
        } else {
            None
        }
    }

    /// The number of the pod's current boot (1 for the boot its create began), while it is up.
    pub(crate) fn current_boot(&mut self, id: &str, now: Instant) -> Option<u64> {
        self.refresh(id, now);
        let sim = self.pods.get(id)?;
        (sim.phase == Phase::Booting).then_some(sim.boots)
    }

    /// Moves a running pod's SSH service to the next endpoint within the same boot, as when
    /// sshd is restarted on another port inside the container; the API reports it at once.
    pub(crate) fn move_endpoint(&mut self, id: &str, now: Instant) -> Option<SocketAddr> {
        self.refresh(id, now);
        let running = self
            .pods
            .get(id)
            .is_some_and(|sim| sim.pod.status == PodStatus::Running);
        if !running {
            return None;
        }
        let endpoint = self.next_endpoint();
        let sim = self.pods.get_mut(id)?;
        sim.endpoint = Some(endpoint);
        // No stale report: the move is not a restart.
        sim.previous_endpoint = None;
        let mut sim = sim.clone();
        self.observe_running(&mut sim, now);
        self.pods.insert(id.to_owned(), sim);
        Some(endpoint)
    }

    /// Pods (in any state but terminated) that mount a network volume.
    pub(crate) fn pods_using(&self, volume_id: &str) -> Vec<String> {
        self.pods
            .iter()
            .filter(|(_, sim)| {
                sim.pod
                    .mounts
                    .network
                    .iter()
                    .any(|mount| mount.volume_id == volume_id)
            })
            .map(|(id, _)| id.clone())
            .collect()
    }

    pub(crate) fn host(&self, id: &str) -> Option<&Host> {
        self.hosts.iter().find(|host| host.id == id)
    }

    /// Lets other customers rent a host's GPUs until `free` are left (never fewer than the
    /// account's own pods use).
    pub(crate) fn set_free_gpus(&mut self, host_id: &str, free: u32) -> bool {
        let used = self.used_on(host_id);
        let Some(host) = self.hosts.iter_mut().find(|host| host.id == host_id) else {
            return false;
        };
        host.taken_by_others = host.gpus.saturating_sub(used).saturating_sub(free);
        true
    }

    /// Endpoint changes take effect at the next boot.
    pub(crate) fn set_endpoints(&mut self, endpoints: SshEndpoints) {
        self.endpoints = endpoints;
        self.rotation = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::GpuRequest;
    use crate::sim::knobs::default_gpus;

    fn world() -> World {
        World::new(
            Timings::new(Duration::from_secs(10), Duration::from_secs(20)),
            SshEndpoints::Rotating(vec![
                "127.0.0.1:2201".parse().expect("addr"),
                "127.0.0.1:2202".parse().expect("addr"),
            ]),
            default_gpus(),
        )
    }

    fn request() -> CreatePodRequest {
        CreatePodRequest::new("p")
            .image("img")
            .gpu(GpuRequest::new("NVIDIA RTX A5000"))
            .port("22/tcp")
    }

    #[test]
    fn lifecycle_follows_the_timings_and_the_action_table() {
        let mut world = world();
        let start = Instant::now();
        let pod = world.create(&request(), start).expect("created");
        assert_eq!(pod.status, PodStatus::Provisioning);
        assert_eq!(pod.actions, [PodAction::Stop, PodAction::Terminate]);
        assert!(pod.ssh.direct.is_none() && pod.runtime.is_none());
        let id = pod.id.to_string();
        let at = |secs| start + Duration::from_secs(secs);
        assert_eq!(
            world.get(&id, at(15)).expect("pod").status,
            PodStatus::Starting
        );
        let running = world.get(&id, at(31)).expect("pod");
        assert_eq!(running.status, PodStatus::Running);
        assert_eq!(running.ssh.direct.as_ref().map(|ssh| ssh.port), Some(2201));
        assert!((running.cost - 0.27).abs() < 1e-9);

        let refused = world
            .action(&id, &PodAction::Start, at(32))
            .expect_err("running");
        assert_eq!(refused.status, 409);

        let stopped = world
            .action(&id, &PodAction::Stop, at(40))
            .expect("stop")
            .expect("pod");
        assert_eq!(stopped.status, PodStatus::Exited);
        assert!(stopped.cost.abs() < f64::EPSILON);
        assert!(stopped.ssh.direct.is_none());

        let starting = world
            .action(&id, &PodAction::Start, at(50))
            .expect("start")
            .expect("pod");
        assert_eq!(starting.status, PodStatus::Starting);
        let again = world.get(&id, at(71)).expect("pod");
        assert_eq!(again.ssh.direct.as_ref().map(|ssh| ssh.port), Some(2202));

        assert_eq!(
            world
                .action(&id, &PodAction::Terminate, at(72))
                .expect("terminate"),
            None
        );
        assert_eq!(world.get(&id, at(73)).expect_err("gone").status, 404);
    }

    #[test]
    fn stale_port_window_and_boot_failures() {
        let mut world = world();
        world.faults.stale_ssh_port_for = Duration::from_secs(90);
        let start = Instant::now();
        let id = world
            .create(&request(), start)
            .expect("created")
            .id
            .to_string();
        let at = |secs| start + Duration::from_secs(secs);
        world.get(&id, at(31)).expect("running");
        world
            .action(&id, &PodAction::Restart, at(40))
            .expect("restart");
        let stale = world.get(&id, at(61)).expect("running again");
        assert_eq!(
            stale.ssh.direct.as_ref().map(|ssh| ssh.port),
            Some(2201),
            "old port"
        );
        let fresh = world.get(&id, at(60 + 91)).expect("later");
        assert_eq!(fresh.ssh.direct.as_ref().map(|ssh| ssh.port), Some(2202));

        world.faults.error_next_boot = 1;
        world
            .action(&id, &PodAction::Restart, at(200))
            .expect("restart");
        assert_eq!(
            world.get(&id, at(230)).expect("pod").status,
            PodStatus::Error
        );
        assert_eq!(
            world.get(&id, at(231)).expect("pod").actions,
            [PodAction::Start, PodAction::Terminate]
        );
    }

    #[test]
    fn a_moved_endpoint_is_reported_at_once_within_the_same_boot() {
        let mut world = world();
        world.faults.stale_ssh_port_for = Duration::from_secs(90);
        let start = Instant::now();
        let id = world
            .create(&request(), start)
            .expect("created")
            .id
            .to_string();
        let at = |secs| start + Duration::from_secs(secs);
        assert_eq!(world.move_endpoint(&id, at(15)), None, "not running yet");
        assert_eq!(world.current_boot(&id, at(15)), Some(1), "booting counts");
        assert_eq!(
            world.current_endpoint(&id, at(31)).map(|a| a.port()),
            Some(2201)
        );
        let moved = world.move_endpoint(&id, at(32)).expect("running");
        assert_eq!(moved.port(), 2202);
        let reported = world.get(&id, at(33)).expect("pod");
        assert_eq!(reported.ssh.direct.as_ref().map(|ssh| ssh.port), Some(2202));
        assert_eq!(world.current_endpoint(&id, at(33)), Some(moved));
        assert_eq!(world.current_boot(&id, at(33)), Some(1), "same boot");
        world
            .action(&id, &PodAction::Restart, at(40))
            .expect("restart");
        assert_eq!(world.current_boot(&id, at(41)), Some(2));
        world.action(&id, &PodAction::Stop, at(80)).expect("stop");
        assert_eq!(world.current_boot(&id, at(81)), None, "down");
        assert_eq!(world.move_endpoint(&id, at(81)), None, "stopped");
    }

    #[test]
    fn current_endpoint_is_the_boot_s_own_even_when_a_stale_one_is_reported() {
        let mut world = world();
        world.faults.stale_ssh_port_for = Duration::from_secs(90);
        let start = Instant::now();
        let id = world
            .create(&request(), start)
            .expect("created")
            .id
            .to_string();
        let at = |secs| start + Duration::from_secs(secs);
        assert_eq!(world.current_endpoint(&id, at(15)), None, "starting");
        let first = world.current_endpoint(&id, at(31)).expect("running");
        assert_eq!(first.port(), 2201);
        world
            .action(&id, &PodAction::Restart, at(40))
            .expect("restart");
        assert_eq!(world.current_endpoint(&id, at(45)), None, "restarting");
        let reported = world.get(&id, at(61)).expect("running again");
        assert_eq!(reported.ssh.direct.as_ref().map(|ssh| ssh.port), Some(2201));
        assert_eq!(
            world.current_endpoint(&id, at(61)).map(|a| a.port()),
            Some(2202),
            "the new boot's port, not the stale report"
        );
        world.action(&id, &PodAction::Stop, at(70)).expect("stop");
        assert_eq!(world.current_endpoint(&id, at(71)), None, "stopped");
        assert_eq!(world.current_endpoint("nope", at(71)), None, "unknown pod");

        let no_ssh = CreatePodRequest::new("q")
            .image("img")
            .gpu(GpuRequest::new("NVIDIA RTX A5000"));
        let other = world
            .create(&no_ssh, at(80))
            .expect("created")
            .id
            .to_string();
        world.get(&other, at(111)).expect("running");
        assert_eq!(world.current_endpoint(&other, at(112)), None, "no 22/tcp");
    }

    #[test]
    fn capacity_faults_are_consumed() {
        let mut world = world();
        world.faults.no_capacity_next_create = 1;
        let now = Instant::now();
        let refused = world.create(&request(), now).expect_err("no capacity");
        assert_eq!(
            (refused.status, refused.detail.as_str()),
            (400, NO_CAPACITY)
        );
        let id = world
            .create(&request(), now)
            .expect("second works")
            .id
            .to_string();
        world.action(&id, &PodAction::Stop, now).expect("stop");
        world.faults.no_free_gpu_next_start = 1;
        let refused = world
            .action(&id, &PodAction::Start, now)
            .expect_err("no gpu");
        assert_eq!(refused.detail, NO_FREE_GPU);
        world
            .action(&id, &PodAction::Start, now)
            .expect("then it starts");
    }

    #[test]
    fn rfc3339_formatting() {
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_rfc3339(1_780_315_200), "2026-06-01T12:00:00Z");
        assert_eq!(format_rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
