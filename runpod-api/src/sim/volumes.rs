//! Network volumes: `/v2/network-volumes` as stored state. A volume lives in one data center,
//! is mounted only by pods there, outlives the pods that used it, and cannot be deleted while a
//! pod (running or stopped) mounts it.

use serde::{Deserialize, Serialize};

use std::collections::BTreeMap;

use super::hosts::data_center;
use super::knobs::{Refusal, base36_id};

/// `NetworkVolume` of the REST v2 document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct NetworkVolume {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) size: u32,
    pub(crate) data_center: String,
    #[serde(rename = "type")]
    pub(crate) kind: String,
}

/// `CreateNetworkVolumeRequest` (already checked against the document's shape).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct CreateNetworkVolume {
    pub(crate) name: String,
    pub(crate) size: u32,
    pub(crate) data_center: String,
    #[serde(default, rename = "type")]
    pub(crate) kind: Option<String>,
}

/// `UpdateNetworkVolumeRequest`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct UpdateNetworkVolume {
    #[serde(default)]
    pub(crate) name: Option<String>,
    #[serde(default)]
    pub(crate) size: Option<u32>,
}

fn not_found(id: &str) -> Refusal {
    Refusal::new(404, "Not Found", format!("network volume {id} not found"))
}

/// USD per GB-month of a network volume by type, as RunPod publishes them (standard below
/// 1 TB; high performance), for the simulated bill.
fn price_per_gb_month(kind: &str) -> f64 {
    if kind == "HIGH_PERFORMANCE" {
        0.14
    } else {
        0.07
    }
}

/// Hours in a billing month (365 × 24 / 12).
const HOURS_PER_MONTH: f64 = 730.0;

/// One volume's bill so far, as `GET /v2/billing/network-volumes` reports it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct VolumeBill {
    pub(crate) id: String,
    pub(crate) kind: String,
    pub(crate) amount: f64,
}

/// The account's network volumes.
#[derive(Debug, Default)]
pub(crate) struct Volumes {
    stored: BTreeMap<String, NetworkVolume>,
    /// When each was created: billing runs from then, pods or not.
    created: BTreeMap<String, std::time::Instant>,
    serial: u64,
}

impl Volumes {
    pub(crate) fn list(&self) -> Vec<NetworkVolume> {
        self.stored.values().cloned().collect()
    }

    pub(crate) fn create(
        &mut self,
        request: &CreateNetworkVolume,
    ) -> Result<NetworkVolume, Refusal> {
        let Some(center) = data_center(&request.data_center) else {
            return Err(Refusal::new(
                400,
                "Bad Request",
                format!("data center {} does not exist", request.data_center),
            ));
        };
        // Omitted: the data center's primary tier.
        let kind = request
            .kind
            .clone()
            .unwrap_or_else(|| center.volume_types[0].to_owned());
        if !center.volume_types.contains(&kind.as_str()) {
            return Err(Refusal::new(
                400,
                "Bad Request",
                format!("data center {} offers no {kind} network volumes", center.id),
            ));
        }
        let volume = NetworkVolume {
            id: {
                self.serial += 1;
                base36_id("vol", self.serial)
            },
            name: request.name.clone(),
            size: request.size,
            data_center: center.id.to_owned(),
            kind,
        };
        self.stored.insert(volume.id.clone(), volume.clone());
        self.created
            .insert(volume.id.clone(), std::time::Instant::now());
        Ok(volume)
    }

    /// Each volume's charge from its creation to `now` (deleted volumes are not kept).
    pub(crate) fn bills(&self, now: std::time::Instant) -> Vec<VolumeBill> {
        self.stored
            .values()
            .map(|volume| {
                let hours = self.created.get(&volume.id).map_or(0.0, |created| {
                    now.saturating_duration_since(*created).as_secs_f64() / 3600.0
                });
                VolumeBill {
                    id: volume.id.clone(),
                    kind: volume.kind.clone(),
                    amount: f64::from(volume.size) * price_per_gb_month(&volume.kind) * hours
                        / HOURS_PER_MONTH,
                }
            })
            .collect()
    }

    pub(crate) fn get(&self, id: &str) -> Result<NetworkVolume, Refusal> {
        self.stored.get(id).cloned().ok_or_else(|| not_found(id))
    }

    pub(crate) fn update(
        &mut self,
        id: &str,
        request: &UpdateNetworkVolume,
    ) -> Result<NetworkVolume, Refusal> {
        let volume = self.stored.get_mut(id).ok_or_else(|| not_found(id))?;
        if let Some(size) = request.size
            && size < volume.size
        {
            return Err(Refusal::new(
                400,
                "Bad Request",
                format!(
                    "network volume {id} cannot shrink from {} GB to {size} GB; storage cannot be reduced",
                    volume.size
                ),
            ));
        }
        if let Some(name) = &request.name {
            volume.name.clone_from(name);
        }
        if let Some(size) = request.size {
            volume.size = size;
        }
        Ok(volume.clone())
    }

    /// Deletes a volume no pod mounts; `users` are the pods that mount it.
    pub(crate) fn delete(&mut self, id: &str, users: &[String]) -> Result<(), Refusal> {
        if !self.stored.contains_key(id) {
            return Err(not_found(id));
        }
        if !users.is_empty() {
            return Err(Refusal::new(
                409,
                "Conflict",
                format!(
                    "network volume {id} is attached to pod {}; terminate the pod before deleting the volume",
                    users.join(", ")
                ),
            ));
        }
        self.stored.remove(id);
        Ok(())
    }

    /// The data center a pod must go to for the network volume it mounts, if any.
    pub(crate) fn data_center_for(
        &self,
        volume_id: &str,
        wanted: &[String],
    ) -> Result<String, Refusal> {
        let volume = self.get(volume_id)?;
        if !wanted.is_empty() && !wanted.contains(&volume.data_center) {
            return Err(Refusal::new(
                400,
                "Bad Request",
                format!(
                    "network volume {volume_id} is in data center {}, not in {}; a pod can mount \
                     only a volume in its own data center",
                    volume.data_center,
                    wanted.join(", ")
                ),
            ));
        }
        Ok(volume.data_center)
    }
}
