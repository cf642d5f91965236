//! `farm up`: the farm's pods, each set up, slurm.conf from the node list, and the daemons.

use std::collections::BTreeMap;
use std::time::Duration;

use pod_tunnel::shell;
use tokio::time::Instant;

use super::{
    FarmEnv, FarmPod, FarmRecord, FarmSpec, FarmUp, NODES_UP_TIMEOUT, NodeUp, SLURM_TIMEOUT,
    SLURMCTLD_PORT, SLURMD_PORT, farm_error, is_dead, last_json_line, unix_now,
};
use crate::farm::{self, SlurmConf, SlurmNode};
use crate::orchestrator::session::{Events, Session, Step};
use crate::orchestrator::{Clock, Orchestrator};
use crate::seams::PodStatus;
use crate::{Error, Result};
use secrecy::ExposeSecret as _;

impl Orchestrator {
    /// Brings the farm up, or repairs it (idempotent): keeps the nodes that run, starts the
    /// stopped ones, drops the dead ones (terminated, failed, gone) and creates pods until
    /// there are `spec.nodes`, each mounting the network volume with global networking; sets
    /// each up; writes slurm.conf from the node list; starts what is not running of munged,
    /// slurmctld (first node) and each slurmd, with the munge key on standard input; and waits
    /// until Slurm sees every node. When a step fails, the pods this call created are
    /// terminated and those it started are stopped again.
    ///
    /// # Errors
    ///
    /// [`Error::Farm`] for a bad spec or a farm that does not come up, provider, SSH and
    /// pod-side failures.
    pub async fn farm_up(
        &self,
        spec: &FarmSpec,
        public_key: &str,
        events: Events<'_>,
    ) -> Result<FarmUp> {
        let clock = Clock {
            started: Instant::now(),
            events,
        };
        if spec.nodes == 0 || spec.nodes > 64 {
            return Err(farm_error(
                "bringing up the farm",
                format!("--nodes must be 1 to 64, got {}", spec.nodes),
            ));
        }
        let existing = self.farm_record()?;
        if let Some(record) = &existing
            && record.volume_id != spec.volume_id
        {
            return Err(farm_error(
                "bringing up the farm",
                format!(
                    "this workspace's farm uses network volume {}, not {}; `rpb farm down` it first",
                    record.volume_id, spec.volume_id
                ),
            ));
        }
        let mut created = Vec::new();
        let mut started = Vec::new();
        let result = Box::pin(self.farm_up_inner(
            spec,
            public_key,
            existing,
            &mut created,
            &mut started,
            &clock,
        ))
        .await;
        match result {
            Ok(up) => Ok(up),
            Err(error) => {
                // Nothing this call brought up keeps billing.
                for pod_id in &created {
                    if let Err(undo) = self.provider.terminate(pod_id).await {
                        tracing::error!(pod_id, error = %undo, "terminating a new farm pod after a failed farm up failed");
                    }
                }
                for pod_id in &started {
                    if let Err(undo) = self.provider.stop(pod_id).await {
                        tracing::error!(pod_id, error = %undo, "stopping a farm pod after a failed farm up failed");
                    }
                }
                // The record forgets the pods terminated here (a pod whose termination failed
                // stays in it, so the next `farm up` or `farm down` deals with it).
                if !created.is_empty()
                    && let Ok(Some(mut record)) = self.farm_record()
                {
                    for pod_id in &created {
                        if self
                            .provider
                            .pod(pod_id)
                            .await
                            .is_ok_and(|pod| is_dead(&pod.status))
                            || self
                                .provider
                                .pod(pod_id)
                                .await
                                .is_err_and(|e| crate::orchestrator::portable::is_gone(&e))
                        {
                            record.nodes.retain(|node| &node.pod_id != pod_id);
                        }
                    }
                    let _ = self.save_farm_record(&record);
                }
                Err(error)
            }
        }
    }

    async fn farm_up_inner(
        &self,
        spec: &FarmSpec,
        public_key: &str,
        existing: Option<FarmRecord>,
        created: &mut Vec<String>,
        started: &mut Vec<String>,
        clock: &Clock<'_>,
    ) -> Result<FarmUp> {
        let mut record = existing.unwrap_or_else(|| FarmRecord {
            volume_id: spec.volume_id.clone(),
            data_center: None,
            gpu_type: spec.pod.gpu_type.clone(),
            nodes: Vec::new(),
            controller_port: 0,
            max_hours: None,
            max_cost: None,
            replace_dead: false,
            created_at: unix_now(),
            image: None,
            gpu_count: None,
            cloud: None,
            disk_gb: None,
        });
        record.image = Some(spec.pod.image.clone());
        record.gpu_count = Some(spec.pod.gpu_count);
        record.cloud = Some(spec.pod.cloud.as_str().to_owned());
        record.disk_gb = Some(spec.pod.disk_gb);
        record.max_hours = spec.max_hours.or(record.max_hours);
        record.max_cost = spec.max_cost.or(record.max_cost);
        record.replace_dead = spec.replace_dead || record.replace_dead;
        record.gpu_type.clone_from(&spec.pod.gpu_type);
        if record.data_center.is_none() {
            record.data_center = Some(self.provider.volume_data_center(&spec.volume_id).await?);
        }
        let replaced = self
            .keep_live_nodes(&mut record, spec, started, clock)
            .await?;
        self.add_nodes(&mut record, spec, public_key, created, clock)
            .await?;
        // Each node up, set up (the volume is shared: the first one installs), connected.
        let mut hosts = Vec::new();
        for node in &record.nodes {
            hosts.push(self.farm_host(&node.pod_id, clock).await?);
        }
        let controller = &hosts[0];
        let conf_changed = self.write_slurm_conf(&mut record, &hosts, clock).await?;
        self.save_farm_record(&record)?;
        let daemons = self.start_daemons(&hosts, clock).await?;
        self.wait_nodes_up(controller, &record, clock).await?;
        let status = self.status_of(record, Some(controller)).await?;
        Ok(FarmUp {
            created: created.clone(),
            started: started.clone(),
            replaced,
            conf_changed,
            daemons,
            status,
        })
    }

    /// Keeps the record's nodes that are still there (starting the stopped ones), and drops
    /// the dead ones (terminated, failed, gone) and those beyond `spec.nodes`; says which
    /// left and why.
    async fn keep_live_nodes(
        &self,
        record: &mut FarmRecord,
        spec: &FarmSpec,
        started: &mut Vec<String>,
        clock: &Clock<'_>,
    ) -> Result<Vec<(String, String)>> {
        let mut replaced = Vec::new();
        let mut kept = Vec::new();
        for node in std::mem::take(&mut record.nodes) {
            match self.provider.pod(&node.pod_id).await {
                Ok(pod) if is_dead(&pod.status) => {
                    replaced.push((node.pod_id.clone(), format!("the pod is {}", pod.status)));
                    if pod.status == PodStatus::Error {
                        // A failed pod bills nothing but still holds its GPU slot.
                        let _ = self.provider.terminate(&node.pod_id).await;
                    }
                }
                Ok(pod) => {
                    if matches!(pod.status, PodStatus::Exited) {
                        self.start_pod(&node.pod_id, clock).await?;
                        started.push(node.pod_id.clone());
                    }
                    kept.push(node);
                }
                Err(error) if crate::orchestrator::portable::is_gone(&error) => {
                    replaced.push((node.pod_id.clone(), "the pod no longer exists".into()));
                }
                Err(error) => {
                    record.nodes = kept;
                    return Err(error);
                }
            }
        }
        // A farm smaller than asked keeps its first nodes (the controller among them).
        while kept.len() > spec.nodes as usize {
            let Some(extra) = kept.pop() else { break };
            clock.emit(
                Step::Farm,
                format!("terminating node {} (the farm shrinks)", extra.pod_id),
            );
            self.provider.terminate(&extra.pod_id).await?;
            replaced.push((extra.pod_id, "the farm shrank".into()));
        }
        for (pod_id, why) in &replaced {
            clock.emit(Step::Farm, format!("node {pod_id} leaves the farm: {why}"));
        }
        record.nodes = kept;
        self.save_farm_record(record)?;
        Ok(replaced)
    }

    /// Creates pods until the farm has `spec.nodes`: the volume at the pod root, in its data
    /// center, global networking on; each is recorded at once.
    async fn add_nodes(
        &self,
        record: &mut FarmRecord,
        spec: &FarmSpec,
        public_key: &str,
        created: &mut Vec<String>,
        clock: &Clock<'_>,
    ) -> Result<()> {
        while record.nodes.len() < spec.nodes as usize {
            let mut pod_spec = spec.pod.clone();
            pod_spec.name = format!("{}-{}", spec.pod.name, record.nodes.len() + 1);
            pod_spec.network_volume = Some(spec.volume_id.clone());
            pod_spec.data_center.clone_from(&record.data_center);
            pod_spec.global_networking = true;
            pod_spec.host_key = None;
            clock.emit(
                Step::Farm,
                format!(
                    "creating node {} of {} ({})",
                    record.nodes.len() + 1,
                    spec.nodes,
                    pod_spec.gpu_type
                ),
            );
            let pod = match self
                .create_pod(&pod_spec, public_key, clock.events, false)
                .await
            {
                Ok(pod) => pod,
                Err(error) => {
                    // A pod that was made but did not come up is this call's to take back.
                    if let Error::StartFailed { pod_id, .. } = &error {
                        created.push(pod_id.clone());
                    }
                    return Err(error);
                }
            };
            created.push(pod.id.as_str().to_owned());
            record.nodes.push(FarmPod {
                pod_id: pod.id.as_str().to_owned(),
                port: 0,
                joined_at: unix_now(),
                gpus: 0,
            });
            // Recorded at once: a failure later must not lose track of a pod that bills.
            self.save_farm_record(record)?;
        }
        Ok(())
    }

    /// Writes slurm.conf for the record's nodes onto the volume (through the controller), with
    /// the addresses and ports of the place: on RunPod each pod has its own internal name and
    /// Slurm's own ports; on a local pod all nodes share one address and get ports of their
    /// own (`RPB_FARM_NODE_ADDR`, `RPB_FARM_PORTS`). Says whether the file changed.
    async fn write_slurm_conf(
        &self,
        record: &mut FarmRecord,
        hosts: &[Session],
        clock: &Clock<'_>,
    ) -> Result<bool> {
        let controller = &hosts[0];
        let env = self.farm_env(controller).await?;
        // Each node's GPUs (the other facts are the controller's, the same on every pod).
        for (node, host) in record.nodes.iter_mut().zip(hosts) {
            node.gpus = if host.pod_id == controller.pod_id {
                env.gpus
            } else {
                self.farm_env(host).await?.gpus
            };
        }
        if !env.missing.trim().is_empty() {
            clock.emit(
                Step::Farm,
                format!(
                    "Slurm and munge are not on the pods yet ({}): each node installs them, from the volume's package cache after the first",
                    env.missing.trim()
                ),
            );
        }
        let local = !env.addr.is_empty();
        if local {
            assign_local_ports(record, &env.ports)?;
        } else {
            record.controller_port = SLURMCTLD_PORT;
            for node in &mut record.nodes {
                node.port = SLURMD_PORT;
            }
        }
        let address = |pod_id: &str| {
            if local {
                env.addr.clone()
            } else {
                format!("{pod_id}.runpod.internal")
            }
        };
        let mut conf = SlurmConf::new(
            "rpbfarm",
            env.hostname.clone(),
            record.controller_port,
            format!("{}/farm/state", self.settings.rpb_home()),
        );
        conf.controller_addr = Some(address(&controller.pod_id));
        // The local pod's nodes share this machine: its daemons listen on loopback only.
        conf.bind_to_addresses = local;
        conf.munge_socket = Some(format!("{}/munge.socket", env.run.trim_end_matches('/')));
        conf.nodes = record
            .nodes
            .iter()
            .map(|node| {
                SlurmNode::new(node.pod_id.clone(), address(&node.pod_id), node.port)
                    .with_gpus(node.gpus)
            })
            .collect();
        let mut text = conf.render()?;
        if let Some(gres) = conf.gres_conf() {
            text.push_str("# --- gres.conf ---\n");
            text.push_str(&gres);
        }
        let written = self
            .run_checked(
                &controller.pod_id,
                controller.host.as_ref(),
                "writing slurm.conf on the volume",
                &format!("{} farm-conf", self.settings.session_script()),
                Some(text.into_bytes()),
                SLURM_TIMEOUT,
            )
            .await?;
        let changed = written.contains("\"written\"");
        clock.emit(
            Step::Farm,
            if changed {
                "wrote slurm.conf for the farm's nodes"
            } else {
                "slurm.conf is up to date"
            },
        );
        Ok(changed)
    }

    /// What `session.sh farm-env` says on a pod.
    async fn farm_env(&self, host: &Session) -> Result<FarmEnv> {
        let out = self
            .run_checked(
                &host.pod_id,
                host.host.as_ref(),
                "reading the farm environment",
                &format!("{} farm-env", self.settings.session_script()),
                None,
                SLURM_TIMEOUT,
            )
            .await?;
        last_json_line(&out, "{\"rpb_farm_env\"")
            .and_then(|line| serde_json::from_str(line).ok())
            .ok_or_else(|| {
                farm_error(
                    format!("reading the farm environment of pod {}", host.pod_id),
                    format!("no report in its answer: {out:.300}"),
                )
            })
    }

    /// Starts what is not running of each node's daemons (the first node's controller too),
    /// the munge key on standard input; the daemons started, per node.
    async fn start_daemons(
        &self,
        hosts: &[Session],
        clock: &Clock<'_>,
    ) -> Result<BTreeMap<String, Vec<String>>> {
        let key = self.farm_key()?;
        let mut daemons = BTreeMap::new();
        for (index, host) in hosts.iter().enumerate() {
            let role = if index == 0 { "controller" } else { "worker" };
            let command = format!(
                "{} farm-node-up {} {role}",
                self.settings.session_script(),
                shell::quote(&host.pod_id)
            );
            let out = self
                .run_checked(
                    &host.pod_id,
                    host.host.as_ref(),
                    "starting the farm's daemons",
                    &command,
                    Some(key.expose_secret().to_vec()),
                    Duration::from_secs(600),
                )
                .await?;
            let up: NodeUp = last_json_line(&out, "{\"rpb_farm_node\"")
                .and_then(|line| serde_json::from_str(line).ok())
                .ok_or_else(|| {
                    farm_error(
                        format!("starting the farm's daemons on pod {}", host.pod_id),
                        format!("no report in its answer: {out:.300}"),
                    )
                })?;
            clock.emit(
                Step::Farm,
                if up.started.is_empty() {
                    format!("node {}: {role}, running", host.pod_id)
                } else {
                    format!(
                        "node {}: {role}, started {}",
                        host.pod_id,
                        up.started.join(", ")
                    )
                },
            );
            daemons.insert(host.pod_id.clone(), up.started);
        }
        Ok(daemons)
    }

    /// Waits until Slurm has every node of the record up (bounded).
    async fn wait_nodes_up(
        &self,
        controller: &Session,
        record: &FarmRecord,
        clock: &Clock<'_>,
    ) -> Result<()> {
        let started = Instant::now();
        let mut last;
        loop {
            match self
                .slurm(controller, &["sinfo".into(), "--json".into()])
                .await
                .and_then(|json| farm::parse_sinfo(&json))
            {
                Ok(nodes) => {
                    // A node rpb marked lost whose pod runs again is put back in service.
                    for node in nodes.iter().filter(|node| farm::marked_lost_by_rpb(node)) {
                        if record.nodes.iter().any(|n| n.pod_id == node.name) {
                            self.slurm(controller, &farm::resume_node(&node.name))
                                .await?;
                        }
                    }
                    let waiting: Vec<String> = record
                        .nodes
                        .iter()
                        .filter(|node| {
                            !nodes.iter().any(|seen| {
                                seen.name == node.pod_id
                                    && seen.is_up()
                                    && !seen.state.contains("unknown")
                                    && !seen.flags.iter().any(|flag| flag == "NOT_RESPONDING")
                            })
                        })
                        .map(|node| node.pod_id.clone())
                        .collect();
                    if waiting.is_empty() {
                        clock.emit(
                            Step::Farm,
                            format!("all {} nodes are up in Slurm", record.nodes.len()),
                        );
                        return Ok(());
                    }
                    last = format!("waiting for {}", waiting.join(", "));
                }
                Err(error) => last = error.to_string(),
            }
            if started.elapsed() > NODES_UP_TIMEOUT {
                return Err(farm_error(
                    "bringing up the farm",
                    format!(
                        "Slurm did not see every node up within {NODES_UP_TIMEOUT:?} ({last}); see {}/farm/state on the volume and the pods' {}",
                        self.settings.rpb_home(),
                        "farm logs"
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// The local pod's ports for the farm (`RPB_FARM_PORTS`: the controller's, then the nodes'):
/// the controller gets the first, each node keeps its port or gets a free one.
fn assign_local_ports(record: &mut FarmRecord, ports: &str) -> Result<()> {
    let ports: Vec<u16> = ports
        .split_whitespace()
        .filter_map(|port| port.parse().ok())
        .collect();
    let Some((&controller_port, node_ports)) = ports.split_first() else {
        return Err(farm_error(
            "bringing up the farm",
            "the pods share one address (RPB_FARM_NODE_ADDR) but RPB_FARM_PORTS names no ports",
        ));
    };
    record.controller_port = controller_port;
    let taken: Vec<u16> = record.nodes.iter().map(|node| node.port).collect();
    let mut free = node_ports
        .iter()
        .copied()
        .filter(|port| !taken.contains(port));
    let count = record.nodes.len();
    for node in &mut record.nodes {
        if !node_ports.contains(&node.port) {
            node.port = free.next().ok_or_else(|| {
                farm_error(
                    "bringing up the farm",
                    format!(
                        "RPB_FARM_PORTS has {} node ports, fewer than the {count} nodes",
                        node_ports.len()
                    ),
                )
            })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(ports: &[u16]) -> FarmRecord {
        FarmRecord {
            volume_id: "vol".into(),
            data_center: None,
            gpu_type: "gpu".into(),
            nodes: ports
                .iter()
                .enumerate()
                .map(|(index, port)| FarmPod {
                    pod_id: format!("pod{index}"),
                    port: *port,
                    joined_at: 0,
                    gpus: 0,
                })
                .collect(),
            controller_port: 0,
            max_hours: None,
            max_cost: None,
            replace_dead: false,
            created_at: 0,
            image: None,
            gpu_count: None,
            cloud: None,
            disk_gb: None,
        }
    }

    #[test]
    fn local_ports_keep_each_node_s_port_and_give_new_nodes_free_ones() {
        // pod0 keeps 7002; pod1 (new, port 0) and pod2 (a port no longer offered) get free ones.
        let mut farm = record(&[7002, 0, 9999]);
        assign_local_ports(&mut farm, "7000 7001 7002 7003").unwrap();
        assert_eq!(farm.controller_port, 7000);
        let ports: Vec<u16> = farm.nodes.iter().map(|node| node.port).collect();
        assert_eq!(ports, [7002, 7001, 7003]);
        // Run again, nothing moves (slurm.conf stays the same).
        assign_local_ports(&mut farm, "7000 7001 7002 7003").unwrap();
        let again: Vec<u16> = farm.nodes.iter().map(|node| node.port).collect();
        assert_eq!(again, ports);
    }

    #[test]
    fn too_few_local_ports_is_a_clear_error() {
        let mut farm = record(&[0, 0, 0]);
        let error = assign_local_ports(&mut farm, "7000 7001 7002")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("2 node ports, fewer than the 3 nodes"),
            "{error}"
        );
        let error = assign_local_ports(&mut farm, "").unwrap_err().to_string();
        assert!(error.contains("RPB_FARM_PORTS names no ports"), "{error}");
    }
}
