//! Network volumes for a workspace: create one (checked before any request), list them with
//! their monthly cost, and delete one only when no pod mounts it and it is not the workspace's
//! own (unless forced).
//!
//! ```no_run
//! # async fn demo(client: runpod_api::Client) -> blender_session::Result<()> {
//! use blender_session::costs::StoragePrices;
//! use blender_session::volumes;
//!
//! let volume = volumes::create(&client, "projects", 50, "EU-RO-1").await?;
//! for listed in volumes::list(&client, &StoragePrices::default()).await? {
//!     println!("{} costs about ${:.2}/month", listed.volume.id, listed.cost.per_month);
//! }
//! volumes::delete(&client, volume.id.as_str(), None, volumes::Force::No).await?;
//! # Ok(())
//! # }
//! ```

use runpod_api::models::{
    CreateNetworkVolumeRequest, MAX_NETWORK_VOLUME_GB, MIN_NETWORK_VOLUME_GB, NetworkVolume,
    NetworkVolumeId,
};
use runpod_api::params::ListPodsParams;
use serde::Serialize;

use crate::costs::{StorageCost, StoragePrices};
use crate::{Error, Result};

/// Whether [`delete`] may delete the workspace's own volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Force {
    /// Refuse to delete the volume the workspace uses.
    No,
    /// Delete it anyway.
    Yes,
}

/// Checks a network volume size against the API's limits, before any request.
///
/// # Errors
///
/// [`Error::Refused`] for a size outside 10–4096 GB.
pub fn check_size(gb: u32) -> Result<()> {
    if (MIN_NETWORK_VOLUME_GB..=MAX_NETWORK_VOLUME_GB).contains(&gb) {
        return Ok(());
    }
    Err(Error::Refused {
        operation: format!("creating a network volume of {gb} GB"),
        reason: format!(
            "RunPod makes network volumes of {MIN_NETWORK_VOLUME_GB} to {MAX_NETWORK_VOLUME_GB} \
             GB; choose a size in that range"
        ),
    })
}

fn provider(operation: String) -> impl FnOnce(runpod_api::Error) -> Error {
    move |source| Error::Provider {
        operation,
        source: Box::new(source),
    }
}

/// Creates a network volume named `name` of `gb` GB in `data_center`. It is billed until
/// deleted.
///
/// # Errors
///
/// [`Error::Refused`] for a size out of range (nothing sent), [`Error::Provider`] when the API
/// refuses or fails.
pub async fn create(
    client: &runpod_api::Client,
    name: &str,
    gb: u32,
    data_center: &str,
) -> Result<NetworkVolume> {
    check_size(gb)?;
    let request = CreateNetworkVolumeRequest::new(name, gb, data_center);
    client
        .create_network_volume(&request)
        .await
        .map_err(provider(format!(
            "creating network volume {name:?} in data center {data_center}"
        )))
}

/// A network volume with its estimated monthly cost.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct VolumeCost {
    /// The volume.
    pub volume: NetworkVolume,
    /// What it costs, estimated from the price table.
    pub cost: StorageCost,
    /// What RunPod's billing charged for it over the last 30 days, in USD; `None` when the
    /// billing API did not answer (the estimate still stands).
    pub billed_last_30_days: Option<f64>,
}

/// The account's network volumes with their estimated cost and what RunPod billed for each
/// over the last 30 days (one billing request; when it fails, the bills are `None`).
///
/// # Errors
///
/// [`Error::Provider`] when listing the volumes fails.
pub async fn list(client: &runpod_api::Client, prices: &StoragePrices) -> Result<Vec<VolumeCost>> {
    let volumes = client
        .list_network_volumes()
        .await
        .map_err(provider("listing network volumes".into()))?;
    let bills = billed_last_30_days(client).await;
    Ok(volumes
        .into_iter()
        .map(|volume| VolumeCost {
            cost: prices.network_volume(volume.size),
            billed_last_30_days: bills.as_ref().map(|bills| {
                bills
                    .iter()
                    .filter(|(id, _)| *id == volume.id.as_str())
                    .map(|(_, amount)| amount)
                    .sum()
            }),
            volume,
        })
        .collect())
}

/// Each volume's charges over the last 30 daily buckets, per record; `None` when the billing
/// API fails (logged).
async fn billed_last_30_days(client: &runpod_api::Client) -> Option<Vec<(String, f64)>> {
    let params = runpod_api::params::BillingParams::default().last_n(30);
    match client.network_volume_billing(&params).await {
        Ok(billing) => Some(
            billing
                .records
                .into_iter()
                .map(|record| (record.network_volume_id, record.amounts.total_amount))
                .collect(),
        ),
        Err(error) => {
            tracing::warn!(%error, "reading the network volume billing failed; showing estimates only");
            None
        }
    }
}

/// Deletes network volume `id`. Refuses the workspace's own volume (`workspace_volume`)
/// unless forced; the API refuses while a pod mounts it, and the error then names the pods.
///
/// # Errors
///
/// [`Error::Refused`] for the workspace's volume without [`Force::Yes`],
/// [`Error::VolumeInUse`] when a pod mounts it (the API's 409), [`Error::Provider`] for other
/// API failures (404 for an unknown volume).
pub async fn delete(
    client: &runpod_api::Client,
    id: &str,
    workspace_volume: Option<&str>,
    force: Force,
) -> Result<()> {
    if workspace_volume == Some(id) && force == Force::No {
        return Err(Error::Refused {
            operation: format!("deleting network volume {id}"),
            reason: "it is the workspace's volume (RUNPOD_NETWORK_VOLUME_ID in .env) and its \
                     data would be lost; pass --force to delete it anyway"
                .into(),
        });
    }
    let volume_id = NetworkVolumeId::from(id);
    match client.delete_network_volume(&volume_id).await {
        Ok(()) => Ok(()),
        Err(source) if source.status().is_some_and(|status| status.as_u16() == 409) => {
            let pods = users_of(client, id).await;
            Err(Error::VolumeInUse {
                volume_id: id.to_owned(),
                pods,
                source: Box::new(source),
            })
        }
        Err(source) => Err(provider(format!("deleting network volume {id}"))(source)),
    }
}

/// The pods that mount volume `id`, comma-separated; `unknown` when they cannot be listed.
async fn users_of(client: &runpod_api::Client, id: &str) -> String {
    match client.list_pods(&ListPodsParams::default()).await {
        Ok(pods) => {
            let users: Vec<String> = pods
                .iter()
                .filter(|pod| pod.mounts.network.iter().any(|mount| mount.volume_id == id))
                .map(|pod| pod.id.to_string())
                .collect();
            if users.is_empty() {
                "unknown".into()
            } else {
                users.join(", ")
            }
        }
        Err(error) => {
            tracing::warn!(volume_id = id, error = %error, "listing the pods that mount a volume");
            "unknown".into()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_checked_before_any_request() {
        assert!(check_size(10).is_ok() && check_size(4096).is_ok());
        let error = check_size(9).unwrap_err().to_string();
        assert_eq!(
            error,
            "creating a network volume of 9 GB refused: RunPod makes network volumes of 10 to \
             4096 GB; choose a size in that range"
        );
        assert!(check_size(4097).is_err());
    }
}
