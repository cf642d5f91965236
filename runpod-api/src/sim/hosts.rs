//! Data centers and the host machines in them. Each GPU pod is placed on a host (a machine with
//! N GPUs of one type) and stays bound to it when stopped, as on RunPod: a start needs free GPUs
//! on that very host, while a new pod can go to any host of the data center. Catalog
//! availability is computed from the hosts' free GPUs.

use serde_json::{Value, json};

use crate::models::GpuType;

/// A simulated data center.
#[derive(Debug, Clone)]
pub(crate) struct DataCenter {
    pub(crate) id: &'static str,
    pub(crate) name: &'static str,
    pub(crate) region: &'static str,
    pub(crate) volume_types: &'static [&'static str],
}

/// The simulator's data centers: the first is where pods go when a request names none.
pub(crate) const DATA_CENTERS: &[DataCenter] = &[
    DataCenter {
        id: "SIM-LOCAL-1",
        name: "Simulator (local)",
        region: "EUROPE",
        volume_types: &["STANDARD"],
    },
    DataCenter {
        id: "SIM-LOCAL-2",
        name: "Simulator (local, second site)",
        region: "NORTH_AMERICA",
        volume_types: &["STANDARD", "HIGH_PERFORMANCE"],
    },
];

pub(crate) fn data_center(id: &str) -> Option<&'static DataCenter> {
    DATA_CENTERS.iter().find(|center| center.id == id)
}

/// How many hosts of each GPU type a data center has, and their GPUs.
const HOSTS_PER_TYPE: usize = 2;
const GPUS_PER_HOST: u32 = 8;

/// A machine in a data center.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Host {
    pub(crate) id: String,
    pub(crate) data_center: &'static str,
    pub(crate) gpu_type: String,
    pub(crate) gpus: u32,
    /// GPUs rented by other RunPod customers (the fault knobs set this).
    pub(crate) taken_by_others: u32,
}

/// A host as [`super::Simulator::hosts`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HostInfo {
    /// The host's id (`sim-host-<data center>-<n>`).
    pub id: String,
    /// The data center it stands in.
    pub data_center: String,
    /// The one GPU type it has.
    pub gpu_type: String,
    /// Its GPUs in all.
    pub gpus: u32,
    /// GPUs neither used by the account's pods nor rented by others.
    pub free: u32,
}

/// Two hosts of eight GPUs per GPU type in every data center.
pub(crate) fn default_hosts(gpus: &[GpuType]) -> Vec<Host> {
    let mut hosts = Vec::new();
    for center in DATA_CENTERS {
        for gpu in gpus {
            for _ in 0..HOSTS_PER_TYPE {
                hosts.push(Host {
                    id: format!("sim-host-{}-{}", center.id.to_lowercase(), hosts.len() + 1),
                    data_center: center.id,
                    gpu_type: gpu.id.clone(),
                    gpus: GPUS_PER_HOST,
                    taken_by_others: 0,
                });
            }
        }
    }
    hosts
}

/// RunPod's stock levels for a number of free GPUs.
pub(crate) fn availability(free: u32) -> &'static str {
    match free {
        0 => "NONE",
        1..=2 => "LOW",
        3..=7 => "MEDIUM",
        _ => "HIGH",
    }
}

/// The free GPUs of one type in one data center, counting hosts that fit `count` GPUs.
pub(crate) fn free_in(
    hosts: &[Host],
    used: impl Fn(&str) -> u32,
    center: &str,
    gpu_type: &str,
    count: u32,
) -> u32 {
    hosts
        .iter()
        .filter(|host| host.data_center == center && host.gpu_type == gpu_type)
        .map(|host| free_on(host, used(&host.id)))
        .filter(|free| *free >= count)
        .sum()
}

pub(crate) fn free_on(host: &Host, used: u32) -> u32 {
    host.gpus
        .saturating_sub(host.taken_by_others)
        .saturating_sub(used)
}

/// A data center as the catalog shows it, with GPU availability when asked for.
pub(crate) fn data_center_json(
    center: &DataCenter,
    gpus: &[GpuType],
    hosts: &[Host],
    used: impl Fn(&str) -> u32,
    include: &[&str],
) -> Value {
    let mut value = json!({
        "id": center.id,
        "name": center.name,
        "region": center.region,
        "globalNetwork": false,
        "networkVolumeTypes": center.volume_types,
        "compliance": [],
    });
    if include.contains(&"GPU_AVAILABILITY") {
        value["gpuAvailability"] = gpus
            .iter()
            .map(|gpu| {
                let free = free_in(hosts, &used, center.id, &gpu.id, 1);
                json!({ "id": gpu.id, "name": gpu.name, "availability": availability(free) })
            })
            .collect();
    }
    if include.contains(&"CPU_AVAILABILITY") {
        value["cpuAvailability"] = json!([]);
    }
    value
}

/// A GPU type as the catalog shows it; with availability, per data center for `count` GPUs.
pub(crate) fn gpu_json(
    gpu: &GpuType,
    hosts: &[Host],
    used: impl Fn(&str) -> u32,
    availability_for: Option<u32>,
) -> Value {
    let mut value = serde_json::to_value(gpu).unwrap_or_default();
    if let Some(count) = availability_for {
        let mut total = 0;
        let centers: Vec<Value> = DATA_CENTERS
            .iter()
            .map(|center| {
                let free = free_in(hosts, &used, center.id, &gpu.id, count);
                total += free;
                json!({ "id": center.id, "name": center.name, "availability": availability(free) })
            })
            .collect();
        value["availability"] = json!(availability(total));
        value["dataCenters"] = json!(centers);
        value["cudaVersions"] = json!([{ "version": "12.8", "available": total > 0 }]);
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::knobs::default_gpus;

    #[test]
    fn hosts_cover_every_data_center_and_gpu_type() {
        let gpus = default_gpus();
        let hosts = default_hosts(&gpus);
        assert_eq!(
            hosts.len(),
            DATA_CENTERS.len() * gpus.len() * HOSTS_PER_TYPE
        );
        let free = free_in(&hosts, |_| 0, "SIM-LOCAL-1", &gpus[0].id, 1);
        assert_eq!((free, availability(free)), (16, "HIGH"));
        let used_up = free_in(&hosts, |_| 7, "SIM-LOCAL-1", &gpus[0].id, 2);
        assert_eq!((used_up, availability(used_up)), (0, "NONE"));
    }
}
