//! The GPU catalog as decisions: which GPU types to offer first ([`rank_gpus`]: cheapest
//! available first) and which data center to put a network volume in ([`choose_data_center`]:
//! where the wanted GPU type is most available). Both are pure over the catalog the API
//! returns; [`gpu_catalog`] fetches it, with availability per data center.
//!
//! ```no_run
//! # async fn demo(client: runpod_api::Client) -> blender_session::Result<()> {
//! use blender_session::catalog::{self, GpuFilter};
//! use runpod_api::models::Cloud;
//!
//! let gpus = catalog::gpu_catalog(&client).await?;
//! let ranked = catalog::rank_gpus(&gpus, &GpuFilter::default().min_vram_gb(24), &Cloud::Secure);
//! if let Some(first) = ranked.iter().find(|offer| offer.is_available()) {
//!     println!("cheapest free: {} at ${:.2}/h", first.id, first.price_per_hour.unwrap_or(0.0));
//! }
//! let choice = catalog::choose_data_center(&gpus, "NVIDIA GeForce RTX 4090")?;
//! println!("{}: {}", choice.data_center, choice.reason);
//! # Ok(())
//! # }
//! ```

use std::cmp::Ordering;

use runpod_api::models::{Availability, Cloud, GpuType, Product};
use runpod_api::params::GpuCatalogParams;
use serde::Serialize;

use crate::{Error, Result};

/// Which GPU types [`rank_gpus`] keeps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct GpuFilter {
    /// Only availability in this data center counts (and only types listed there are kept).
    pub data_center: Option<String>,
    /// Only types with at least this much VRAM, in GB.
    pub min_vram_gb: Option<u64>,
}

impl GpuFilter {
    /// Counts availability in `id` only.
    #[must_use]
    pub fn data_center(mut self, id: impl Into<String>) -> Self {
        self.data_center = Some(id.into());
        self
    }

    /// Keeps types with at least `gb` GB of VRAM.
    #[must_use]
    pub fn min_vram_gb(mut self, gb: u64) -> Self {
        self.min_vram_gb = Some(gb);
        self
    }
}

/// One GPU type as ranked: its prices, VRAM and availability.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct GpuOffer {
    /// The id to create pods with (`NVIDIA GeForce RTX 4090`).
    pub id: String,
    /// Display name.
    pub name: String,
    /// VRAM in GB.
    pub vram_gb: u64,
    /// Secure-cloud price per GPU per hour in USD, when offered there.
    pub secure_price: Option<f64>,
    /// Community-cloud price per GPU per hour in USD, when offered there.
    pub community_price: Option<f64>,
    /// The price on the cloud ranked for; `None`: not offered on that cloud (ranked last).
    pub price_per_hour: Option<f64>,
    /// Stock level counted for the ranking: in the filter's data center, else the best of any.
    pub availability: Availability,
    /// Stock level per data center, as the catalog says.
    pub data_centers: Vec<DataCenterStock>,
}

impl GpuOffer {
    /// Whether a pod of this type can be created now (on the ranked cloud).
    pub fn is_available(&self) -> bool {
        self.price_per_hour.is_some() && rank_of(&self.availability) > 0
    }
}

/// A GPU type's stock in one data center.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct DataCenterStock {
    /// Data center id.
    pub id: String,
    /// Stock level.
    pub availability: Availability,
}

/// Higher is better: NONE (and unknown values) 0, LOW 1, MEDIUM 2, HIGH 3.
fn rank_of(availability: &Availability) -> u8 {
    match availability {
        Availability::High => 3,
        Availability::Medium => 2,
        Availability::Low => 1,
        _ => 0,
    }
}

fn price_on(gpu: &GpuType, cloud: &Cloud) -> Option<f64> {
    let offered = match cloud {
        Cloud::Secure => gpu.secure,
        Cloud::Community => gpu.community,
        _ => false,
    };
    offered.then(|| gpu.price_on(cloud)).flatten()
}

fn stock_of(gpu: &GpuType) -> Vec<DataCenterStock> {
    gpu.data_centers
        .iter()
        .flatten()
        .map(|center| DataCenterStock {
            id: center.id.clone(),
            availability: center.availability.clone(),
        })
        .collect()
}

/// The GPU types that pass `filter`, available ones first (cheapest on `cloud` first, then the
/// better stocked, then by id), then the unavailable ones (not offered on `cloud`, or out of
/// stock) in the same order. Pure: `gpus` is the catalog with availability
/// ([`gpu_catalog`]); a type without availability data counts as unavailable.
pub fn rank_gpus(gpus: &[GpuType], filter: &GpuFilter, cloud: &Cloud) -> Vec<GpuOffer> {
    let mut offers: Vec<GpuOffer> = gpus
        .iter()
        .filter(|gpu| filter.min_vram_gb.is_none_or(|min| gpu.memory >= min))
        .filter_map(|gpu| {
            let data_centers = stock_of(gpu);
            let availability = match &filter.data_center {
                Some(wanted) => data_centers
                    .iter()
                    .find(|center| &center.id == wanted)?
                    .availability
                    .clone(),
                None => data_centers
                    .iter()
                    .map(|center| center.availability.clone())
                    .max_by_key(rank_of)
                    .unwrap_or(Availability::None),
            };
            Some(GpuOffer {
                id: gpu.id.clone(),
                name: gpu.name.clone(),
                vram_gb: gpu.memory,
                secure_price: price_on(gpu, &Cloud::Secure),
                community_price: price_on(gpu, &Cloud::Community),
                price_per_hour: price_on(gpu, cloud),
                availability,
                data_centers,
            })
        })
        .collect();
    offers.sort_by(|a, b| {
        b.is_available()
            .cmp(&a.is_available())
            .then_with(|| {
                let price = |offer: &GpuOffer| offer.price_per_hour.unwrap_or(f64::INFINITY);
                price(a).partial_cmp(&price(b)).unwrap_or(Ordering::Equal)
            })
            .then_with(|| rank_of(&b.availability).cmp(&rank_of(&a.availability)))
            .then_with(|| a.id.cmp(&b.id))
    });
    offers
}

/// Where a network volume should go, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct DataCenterChoice {
    /// The data center id.
    pub data_center: String,
    /// The wanted GPU type's stock there.
    pub availability: Availability,
    /// One sentence saying why, for the user.
    pub reason: String,
}

/// The data center where `gpu_type` is best stocked (ties: the catalog's order), so pods of
/// that type can mount a volume there. Pure over the catalog with availability.
///
/// # Errors
///
/// [`Error::Refused`] when the catalog does not list `gpu_type`, or no data center has one
/// free now (both say to pass a data center explicitly).
pub fn choose_data_center(gpus: &[GpuType], gpu_type: &str) -> Result<DataCenterChoice> {
    let Some(gpu) = gpus.iter().find(|gpu| gpu.id == gpu_type) else {
        return Err(Error::Refused {
            operation: format!("choosing a data center for gpu type {gpu_type:?}"),
            reason: "the GPU catalog has no such type (RUNPOD_GPU_TYPE); see `rpb gpus`, or \
                     pass --datacenter"
                .into(),
        });
    };
    let stock = stock_of(gpu);
    let mut best: Option<&DataCenterStock> = None;
    for center in &stock {
        if best.is_none_or(|best| rank_of(&center.availability) > rank_of(&best.availability)) {
            best = Some(center);
        }
    }
    match best.filter(|center| rank_of(&center.availability) > 0) {
        Some(center) => Ok(DataCenterChoice {
            data_center: center.id.clone(),
            availability: center.availability.clone(),
            reason: format!(
                "{gpu_type} (the workspace's GPU type) is {} there, the best stock of the {} \
                 data centers in the catalog; a pod mounts only a volume in its own data center",
                center.availability.as_str(),
                stock.len(),
            ),
        }),
        None => Err(Error::Refused {
            operation: format!("choosing a data center for gpu type {gpu_type:?}"),
            reason: "no data center has one free now (RUNPOD_GPU_TYPE); pass --datacenter to \
                     choose one anyway (see `rpb gpus`)"
                .into(),
        }),
    }
}

/// The GPU type ids the catalog shows in stock (LOW or better) in `data_center`, on any cloud.
pub fn available_in(gpus: &[GpuType], data_center: &str) -> Vec<String> {
    gpus.iter()
        .filter(|gpu| {
            stock_of(gpu)
                .iter()
                .any(|stock| stock.id == data_center && rank_of(&stock.availability) > 0)
        })
        .map(|gpu| gpu.id.clone())
        .collect()
}

/// The GPU catalog with availability for pods, per data center (`GET /v2/catalog/gpus`).
///
/// # Errors
///
/// [`Error::Provider`] when the API call fails.
pub async fn gpu_catalog(client: &runpod_api::Client) -> Result<Vec<GpuType>> {
    let params = GpuCatalogParams::default().availability([Product::Pod]);
    client
        .list_gpu_types(&params)
        .await
        .map_err(|source| Error::Provider {
            operation: "listing the gpu catalog".into(),
            source: Box::new(source),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpu(id: &str, memory: u64, secure: f64, community: Option<f64>, stock: &[&str]) -> GpuType {
        let centers: Vec<_> = stock
            .iter()
            .enumerate()
            .map(|(n, level)| {
                serde_json::json!({"id": format!("DC-{}", n + 1), "name": "dc", "availability": level})
            })
            .collect();
        serde_json::from_value(serde_json::json!({
            "id": id, "name": id, "manufacturer": "NVIDIA", "memory": memory,
            "secure": true, "community": community.is_some(),
            "price": {"secure": secure, "community": community.unwrap_or(0.0)},
            "maxCount": {"secure": 8, "community": 8},
            "dataCenters": centers,
        }))
        .expect("a catalog entry")
    }

    fn ids(offers: &[GpuOffer]) -> Vec<&str> {
        offers.iter().map(|offer| offer.id.as_str()).collect()
    }

    #[test]
    fn cheapest_available_first_unavailable_last() {
        let gpus = [
            gpu("dear", 48, 0.90, None, &["HIGH", "LOW"]),
            gpu("cheap-gone", 24, 0.10, Some(0.05), &["NONE", "NONE"]),
            gpu("cheap", 24, 0.30, Some(0.20), &["LOW", "NONE"]),
            gpu("mid", 24, 0.50, Some(0.25), &["NONE", "MEDIUM"]),
        ];
        let ranked = rank_gpus(&gpus, &GpuFilter::default(), &Cloud::Secure);
        assert_eq!(ids(&ranked), ["cheap", "mid", "dear", "cheap-gone"]);
        assert!(!ranked[3].is_available());
        assert_eq!(ranked[1].availability, Availability::Medium);

        // Community: a type not offered there is unavailable, whatever its stock.
        let ranked = rank_gpus(&gpus, &GpuFilter::default(), &Cloud::Community);
        assert_eq!(ids(&ranked), ["cheap", "mid", "cheap-gone", "dear"]);
        assert_eq!(ranked[0].price_per_hour, Some(0.20));
        assert_eq!(ranked[3].community_price, None);
    }

    #[test]
    fn filters_by_data_center_and_vram() {
        let gpus = [
            gpu("a", 24, 0.30, None, &["LOW", "NONE"]),
            gpu("b", 48, 0.50, None, &["NONE", "HIGH"]),
        ];
        let in_second = rank_gpus(
            &gpus,
            &GpuFilter::default().data_center("DC-2"),
            &Cloud::Secure,
        );
        assert_eq!(ids(&in_second), ["b", "a"]);
        let big = rank_gpus(&gpus, &GpuFilter::default().min_vram_gb(32), &Cloud::Secure);
        assert_eq!(ids(&big), ["b"]);
        let nowhere = rank_gpus(
            &gpus,
            &GpuFilter::default().data_center("X"),
            &Cloud::Secure,
        );
        assert!(nowhere.is_empty());
    }

    #[test]
    fn ties_go_to_the_better_stock() {
        let gpus = [
            gpu("low", 24, 0.30, None, &["LOW"]),
            gpu("high", 24, 0.30, None, &["HIGH"]),
        ];
        let ranked = rank_gpus(&gpus, &GpuFilter::default(), &Cloud::Secure);
        assert_eq!(ids(&ranked), ["high", "low"]);
    }

    #[test]
    fn data_center_goes_where_the_gpu_is() {
        let gpus = [gpu("g", 24, 0.3, None, &["LOW", "HIGH", "HIGH"])];
        let choice = choose_data_center(&gpus, "g").unwrap();
        assert_eq!(choice.data_center, "DC-2");
        assert!(choice.reason.contains("is HIGH there"), "{}", choice.reason);
        assert!(choice.reason.contains("of the 3 data"), "{}", choice.reason);
        let gone = [gpu("g", 24, 0.3, None, &["NONE", "NONE"])];
        let error = choose_data_center(&gone, "g").unwrap_err().to_string();
        assert!(error.contains("--datacenter"), "{error}");
        let error = choose_data_center(&gpus, "other").unwrap_err().to_string();
        assert!(error.contains("\"other\""), "{error}");
    }
}
