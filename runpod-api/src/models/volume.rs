//! Network volumes (persistent network-attached storage) and the request bodies that create and
//! change them.

use serde::{Deserialize, Serialize};

use super::enums::VolumeType;
use super::ids::NetworkVolumeId;
use super::lenient;

/// Smallest network volume the API creates, in GB (`CreateNetworkVolumeRequest.size.minimum`).
pub const MIN_NETWORK_VOLUME_GB: u32 = 10;
/// Largest network volume the API creates, in GB (`CreateNetworkVolumeRequest.size.maximum`).
pub const MAX_NETWORK_VOLUME_GB: u32 = 4096;

/// A network volume as the API reports it (`GET /v2/network-volumes/{id}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct NetworkVolume {
    /// Identifier; mount it with `Mounts::network`.
    pub id: NetworkVolumeId,
    /// Name (not unique).
    pub name: String,
    /// Allocated storage in GB.
    #[serde(deserialize_with = "lenient::u32_lenient")]
    pub size: u32,
    /// Data center the volume lives in; pods mounting it must run there.
    pub data_center: String,
    /// Storage tier.
    #[serde(rename = "type")]
    pub volume_type: VolumeType,
}

/// The answer of `GET /v2/network-volumes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct NetworkVolumeList {
    /// The volumes.
    #[serde(default, deserialize_with = "lenient::null_as_default")]
    pub network_volumes: Vec<NetworkVolume>,
}

/// Body of `POST /v2/network-volumes`. A network volume is billed until it is deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[non_exhaustive]
pub struct CreateNetworkVolumeRequest {
    /// Name (required, non-empty).
    pub name: String,
    /// Size in GB, from 10 to 4096.
    pub size: u32,
    /// Data center to create the volume in, such as `EU-RO-1`.
    pub data_center: String,
    /// Storage tier; the data center's default when unset. It cannot be changed later.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub volume_type: Option<VolumeType>,
}

impl CreateNetworkVolumeRequest {
    /// A volume named `name` of `size_gb` GB in `data_center_id`.
    pub fn new(name: impl Into<String>, size_gb: u32, data_center_id: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            size: size_gb,
            data_center: data_center_id.into(),
            volume_type: None,
        }
    }

    /// Chooses the storage tier.
    #[must_use]
    pub fn volume_type(mut self, volume_type: VolumeType) -> Self {
        self.volume_type = Some(volume_type);
        self
    }

    /// Checks the rules of the spec's `CreateNetworkVolumeRequest`.
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.name.trim().is_empty() {
            return Err("`name` is empty; give the volume a name".into());
        }
        if self.data_center.trim().is_empty() {
            return Err(
                "`dataCenter` is empty; name a data center such as EU-RO-1 (see the data-center \
                 catalog)"
                    .into(),
            );
        }
        check_size(self.size)?;
        if let Some(VolumeType::Unknown(other)) = &self.volume_type {
            return Err(format!(
                "`type` {other:?} is not one of STANDARD, HIGH_PERFORMANCE"
            ));
        }
        Ok(())
    }
}

/// Body of `PATCH /v2/network-volumes/{id}`: rename, grow, or both. Set at least one field.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[non_exhaustive]
pub struct UpdateNetworkVolumeRequest {
    /// New name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// New size in GB, up to 4096; at least the current size (volumes never shrink).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u32>,
}

impl UpdateNetworkVolumeRequest {
    /// An update that changes nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Renames the volume.
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Grows the volume to `size_gb` GB.
    #[must_use]
    pub fn size(mut self, size_gb: u32) -> Self {
        self.size = Some(size_gb);
        self
    }

    /// Checks the rules of the spec's `UpdateNetworkVolumeRequest` (`minProperties: 1`, name
    /// non-empty, size within bounds). That the size does not shrink is the API's to check.
    pub(crate) fn check(&self) -> Result<(), String> {
        if self == &Self::default() {
            return Err("the update changes nothing; set `name` or `size`".into());
        }
        if self
            .name
            .as_deref()
            .is_some_and(|name| name.trim().is_empty())
        {
            return Err("`name` is empty; give the volume a name".into());
        }
        if let Some(size) = self.size {
            check_size(size)?;
        }
        Ok(())
    }
}

fn check_size(size: u32) -> Result<(), String> {
    if (MIN_NETWORK_VOLUME_GB..=MAX_NETWORK_VOLUME_GB).contains(&size) {
        Ok(())
    } else {
        Err(format!(
            "`size` must be from {MIN_NETWORK_VOLUME_GB} to {MAX_NETWORK_VOLUME_GB} GB, not {size}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_bounds_are_inclusive() {
        for size in [10, 4096] {
            assert_eq!(
                CreateNetworkVolumeRequest::new("v", size, "EU-RO-1").check(),
                Ok(())
            );
        }
        for size in [0, 9, 4097] {
            assert!(
                CreateNetworkVolumeRequest::new("v", size, "EU-RO-1")
                    .check()
                    .is_err()
            );
        }
    }

    #[test]
    fn the_type_is_serialized_as_type() {
        let request = CreateNetworkVolumeRequest::new("v", 50, "US-KS-2")
            .volume_type(VolumeType::HighPerformance);
        assert_eq!(
            serde_json::to_value(&request).expect("json"),
            serde_json::json!({
                "name": "v", "size": 50, "dataCenter": "US-KS-2", "type": "HIGH_PERFORMANCE"
            })
        );
    }
}
