//! What storage costs while nothing runs: a stopped pod's volume disk and network volumes.
//! Estimates from a price table, since the API's `costPerHr` of a stopped pod is 0 although
//! RunPod keeps billing its disk.
//!
//! The table ([`StoragePrices::default`]), in USD per GB per month, from RunPod's pricing and
//! billing docs as summarised in this project's research notes (`runpod-api-notes.md`,
//! "Billing", and `render-and-farm-notes.md`, "network volumes", both of 2026):
//!
//! | storage | USD per GB-month | setting |
//! |---|---|---|
//! | pod volume disk, pod running | 0.10 | `RPB_PRICE_VOLUME_GB_MONTH` |
//! | pod volume disk, pod stopped | 0.20 | `RPB_PRICE_VOLUME_STOPPED_GB_MONTH` |
//! | network volume below 1 TB | 0.07 | `RPB_PRICE_NETWORK_VOLUME_GB_MONTH` |
//! | network volume of 1 TB (1000 GB) or more | 0.05 | `RPB_PRICE_NETWORK_VOLUME_LARGE_GB_MONTH` |
//!
//! The container disk is not charged while a pod is stopped. Prices change: set the settings
//! in the workspace `.env` to follow them. A month is [`HOURS_PER_MONTH`] hours.

use serde::Serialize;

use crate::{Error, Result};

/// Hours in an average month (365 × 24 / 12), to turn monthly storage prices into hourly ones.
pub const HOURS_PER_MONTH: f64 = 730.0;

/// `RPB_PRICE_VOLUME_GB_MONTH`: a pod's volume disk while the pod runs.
pub const PRICE_VOLUME_GB_MONTH: &str = "RPB_PRICE_VOLUME_GB_MONTH";
/// `RPB_PRICE_VOLUME_STOPPED_GB_MONTH`: a pod's volume disk while the pod is stopped.
pub const PRICE_VOLUME_STOPPED_GB_MONTH: &str = "RPB_PRICE_VOLUME_STOPPED_GB_MONTH";
/// `RPB_PRICE_NETWORK_VOLUME_GB_MONTH`: a network volume below 1 TB.
pub const PRICE_NETWORK_VOLUME_GB_MONTH: &str = "RPB_PRICE_NETWORK_VOLUME_GB_MONTH";
/// `RPB_PRICE_NETWORK_VOLUME_LARGE_GB_MONTH`: a network volume of 1 TB or more.
pub const PRICE_NETWORK_VOLUME_LARGE_GB_MONTH: &str = "RPB_PRICE_NETWORK_VOLUME_LARGE_GB_MONTH";

/// The settings that override [`StoragePrices::default`].
pub const PRICE_KEYS: [&str; 4] = [
    PRICE_VOLUME_GB_MONTH,
    PRICE_VOLUME_STOPPED_GB_MONTH,
    PRICE_NETWORK_VOLUME_GB_MONTH,
    PRICE_NETWORK_VOLUME_LARGE_GB_MONTH,
];

/// Network volumes from this size on get the large-volume price.
pub const LARGE_NETWORK_VOLUME_GB: u32 = 1000;

/// Storage prices in USD per GB per month (see the module docs for the defaults and sources).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[non_exhaustive]
pub struct StoragePrices {
    /// A pod's volume disk while the pod runs.
    pub volume_running: f64,
    /// A pod's volume disk while the pod is stopped.
    pub volume_stopped: f64,
    /// A network volume below [`LARGE_NETWORK_VOLUME_GB`].
    pub network_volume: f64,
    /// A network volume of [`LARGE_NETWORK_VOLUME_GB`] or more.
    pub network_volume_large: f64,
}

impl Default for StoragePrices {
    /// 0.10 (volume, running), 0.20 (volume, stopped), 0.07 and 0.05 (network volume below and
    /// from 1 TB) USD per GB-month.
    fn default() -> Self {
        Self {
            volume_running: 0.10,
            volume_stopped: 0.20,
            network_volume: 0.07,
            network_volume_large: 0.05,
        }
    }
}

/// A storage cost, per hour and per month, in USD. Always an estimate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[non_exhaustive]
pub struct StorageCost {
    /// Size in GB.
    pub gb: u32,
    /// USD per month.
    pub per_month: f64,
    /// USD per hour.
    pub per_hour: f64,
}

impl StorageCost {
    fn of(gb: u32, price_gb_month: f64) -> Self {
        let per_month = f64::from(gb) * price_gb_month;
        Self {
            gb,
            per_month,
            per_hour: per_month / HOURS_PER_MONTH,
        }
    }
}

impl StoragePrices {
    /// The defaults, with each setting `lookup(key)` answers (a non-negative number) in place.
    ///
    /// # Errors
    ///
    /// [`Error::Settings`] naming the key for a value that is not a non-negative number.
    pub fn from_settings(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let mut prices = Self::default();
        let fields: [(&str, &mut f64); 4] = [
            (PRICE_VOLUME_GB_MONTH, &mut prices.volume_running),
            (PRICE_VOLUME_STOPPED_GB_MONTH, &mut prices.volume_stopped),
            (PRICE_NETWORK_VOLUME_GB_MONTH, &mut prices.network_volume),
            (
                PRICE_NETWORK_VOLUME_LARGE_GB_MONTH,
                &mut prices.network_volume_large,
            ),
        ];
        for (key, field) in fields {
            if let Some(value) = lookup(key) {
                *field = value
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|price| price.is_finite() && *price >= 0.0)
                    .ok_or_else(|| {
                        Error::Settings(format!(
                            "{key} must be a price in USD per GB per month (such as 0.07), not \
                             {value:?}"
                        ))
                    })?;
            }
        }
        Ok(prices)
    }

    /// A stopped pod's volume disk of `gb` GB.
    pub fn stopped_volume(&self, gb: u32) -> StorageCost {
        StorageCost::of(gb, self.volume_stopped)
    }

    /// A running pod's volume disk of `gb` GB.
    pub fn running_volume(&self, gb: u32) -> StorageCost {
        StorageCost::of(gb, self.volume_running)
    }

    /// A network volume of `gb` GB (the large-volume price from [`LARGE_NETWORK_VOLUME_GB`]).
    pub fn network_volume(&self, gb: u32) -> StorageCost {
        let price = if gb >= LARGE_NETWORK_VOLUME_GB {
            self.network_volume_large
        } else {
            self.network_volume
        };
        StorageCost::of(gb, price)
    }
}

/// What a stopped pod still costs, for the user: `$0.00/h for the GPU; its 50 GB volume still
/// costs about $10.00/month ($0.014/h) while stopped (estimate)`.
pub fn stopped_pod_text(volume: Option<StorageCost>) -> String {
    match volume {
        Some(cost) if cost.gb > 0 => format!(
            "$0.00/h for the GPU; its {} GB volume still costs about ${:.2}/month (${:.3}/h) \
             while stopped (estimate)",
            cost.gb, cost.per_month, cost.per_hour
        ),
        _ => "$0.00/h for the GPU, and it has no volume disk billed while stopped".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn storage_arithmetic() {
        let prices = StoragePrices::default();
        let stopped = prices.stopped_volume(50);
        assert!(close(stopped.per_month, 10.0), "{stopped:?}");
        assert!(close(stopped.per_hour, 10.0 / 730.0));
        assert!(close(prices.running_volume(50).per_month, 5.0));
        assert!(close(prices.network_volume(100).per_month, 7.0));
        assert!(close(prices.network_volume(999).per_month, 69.93));
        assert!(close(prices.network_volume(1000).per_month, 50.0));
        assert!(close(prices.network_volume(4096).per_month, 204.8));
    }

    #[test]
    fn settings_override_and_are_checked() {
        let prices = StoragePrices::from_settings(|key| {
            (key == PRICE_NETWORK_VOLUME_GB_MONTH).then(|| "0.1".to_owned())
        })
        .unwrap();
        assert!(close(prices.network_volume(10).per_month, 1.0));
        assert!(close(prices.volume_stopped, 0.20));
        let error = StoragePrices::from_settings(|key| {
            (key == PRICE_VOLUME_STOPPED_GB_MONTH).then(|| "-1".to_owned())
        })
        .unwrap_err()
        .to_string();
        assert!(error.contains(PRICE_VOLUME_STOPPED_GB_MONTH), "{error}");
    }

    #[test]
    fn the_stop_text_tells_the_volume_cost() {
        let text = stopped_pod_text(Some(StoragePrices::default().stopped_volume(50)));
        assert_eq!(
            text,
            "$0.00/h for the GPU; its 50 GB volume still costs about $10.00/month ($0.014/h) \
             while stopped (estimate)"
        );
        assert!(stopped_pod_text(None).contains("no volume disk"));
    }
}
