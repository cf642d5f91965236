//! String enums of the API, each with an `Unknown` fallback so a value the server adds later never
//! breaks deserialization.

use std::fmt;

/// Declares a string enum with known variants and an `Unknown(String)` fallback, serialized as
/// the wire string.
macro_rules! wire_enum {
    (
        $(#[$meta:meta])*
        $name:ident { $( $(#[$vmeta:meta])* $variant:ident => $wire:literal ),+ $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
            /// A value this version of the crate does not know, kept verbatim.
            Unknown(String),
        }

        impl $name {
            /// The value as the API spells it.
            pub fn as_str(&self) -> &str {
                match self {
                    $( Self::$variant => $wire, )+
                    Self::Unknown(other) => other,
                }
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                match value {
                    $( $wire => Self::$variant, )+
                    other => Self::Unknown(other.to_owned()),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let value = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                Ok(Self::from(value.as_ref()))
            }
        }
    };
}
// The other model files declare their enums with it too.
pub(super) use wire_enum;

wire_enum! {
    /// Observed lifecycle status of a pod.
    PodStatus {
        /// The pod is being allocated to a machine.
        Provisioning => "PROVISIONING",
        /// The container is starting.
        Starting => "STARTING",
        /// The container is healthy.
        Running => "RUNNING",
        /// The container exited (the pod is stopped; its disk is kept).
        Exited => "EXITED",
        /// The container is in an unrecoverable error state.
        Error => "ERROR",
        /// The pod has been permanently deleted.
        Terminated => "TERMINATED",
    }
}

wire_enum! {
    /// A state transition that can be requested on a pod.
    PodAction {
        /// Boot a stopped pod (`EXITED` or `ERROR`) back toward `RUNNING`.
        Start => "start",
        /// Stop a running or provisioning pod, keeping its disk.
        Stop => "stop",
        /// Restart a running pod's container in place.
        Restart => "restart",
        /// Permanently delete the pod.
        Terminate => "terminate",
    }
}

wire_enum! {
    /// Cloud tier.
    Cloud {
        /// RunPod-owned data-center hardware.
        Secure => "SECURE",
        /// Community-hosted hardware.
        Community => "COMMUNITY",
    }
}

wire_enum! {
    /// Log source of a pod log stream.
    LogSource {
        /// The container's stdout and stderr.
        Container => "container",
        /// Host lifecycle logs.
        System => "system",
    }
}

wire_enum! {
    /// GPU manufacturer.
    GpuManufacturer {
        /// NVIDIA.
        Nvidia => "NVIDIA",
        /// AMD.
        Amd => "AMD",
        /// Not known to RunPod either.
        Unspecified => "UNKNOWN",
    }
}

wire_enum! {
    /// Catalog stock level.
    Availability {
        /// None available.
        None => "NONE",
        /// Low stock.
        Low => "LOW",
        /// Medium stock.
        Medium => "MEDIUM",
        /// High stock.
        High => "HIGH",
    }
}

wire_enum! {
    /// Product context of catalog availability.
    Product {
        /// Pods.
        Pod => "POD",
        /// Instant clusters.
        Cluster => "CLUSTER",
        /// Serverless endpoints.
        Serverless => "SERVERLESS",
    }
}

wire_enum! {
    /// Continental region of a data center.
    DataCenterRegion {
        /// North America.
        NorthAmerica => "NORTH_AMERICA",
        /// South America.
        SouthAmerica => "SOUTH_AMERICA",
        /// Europe.
        Europe => "EUROPE",
        /// Asia.
        Asia => "ASIA",
        /// Middle East.
        MiddleEast => "MIDDLE_EAST",
        /// Africa.
        Africa => "AFRICA",
        /// Oceania.
        Oceania => "OCEANIA",
        /// Antarctica.
        Antarctica => "ANTARCTICA",
        /// Not known to RunPod either.
        Unspecified => "UNKNOWN",
    }
}

wire_enum! {
    /// Network volume storage type.
    VolumeType {
        /// Standard storage.
        Standard => "STANDARD",
        /// High-performance storage.
        HighPerformance => "HIGH_PERFORMANCE",
    }
}

wire_enum! {
    /// Compliance certification of a data center.
    Compliance {
        /// GDPR.
        Gdpr => "GDPR",
        /// ISO/IEC 27001.
        IsoIec27001 => "ISO_IEC_27001",
        /// ISO 14001.
        Iso14001 => "ISO_14001",
        /// PCI DSS.
        PciDss => "PCI_DSS",
        /// HITRUST.
        Hitrust => "HITRUST",
        /// SOC 1 Type 2.
        Soc1Type2 => "SOC_1_TYPE_2",
        /// SOC 2 Type 2.
        Soc2Type2 => "SOC_2_TYPE_2",
        /// SOC 3 Type 2.
        Soc3Type2 => "SOC_3_TYPE_2",
        /// ITAR.
        Itar => "ITAR",
        /// FISMA High.
        FismaHigh => "FISMA_HIGH",
        /// HIPAA.
        Hipaa => "HIPAA",
        /// Renewable energy.
        Renewable => "RENEWABLE",
    }
}

wire_enum! {
    /// Optional expansion of the data-center catalog.
    DataCenterInclude {
        /// Per-GPU availability.
        GpuAvailability => "GPU_AVAILABILITY",
        /// Per-CPU-flavor availability.
        CpuAvailability => "CPU_AVAILABILITY",
    }
}

wire_enum! {
    /// Length of one billing bucket.
    BillingBucketSize {
        /// One hour.
        Hour => "hour",
        /// One day (the API's default).
        Day => "day",
        /// One week.
        Week => "week",
        /// One month.
        Month => "month",
        /// One year.
        Year => "year",
    }
}

impl PodStatus {
    /// The actions the API allows in this status (the spec's table). `Unknown` and
    /// `Terminated` allow none.
    pub fn allowed_actions(&self) -> &'static [PodAction] {
        match self {
            Self::Running => &[PodAction::Stop, PodAction::Restart, PodAction::Terminate],
            Self::Exited | Self::Error => &[PodAction::Start, PodAction::Terminate],
            Self::Provisioning | Self::Starting => &[PodAction::Stop, PodAction::Terminate],
            Self::Terminated | Self::Unknown(_) => &[],
        }
    }

    /// Whether the pod is on its way to running (`PROVISIONING` or `STARTING`).
    pub fn is_transitional(&self) -> bool {
        matches!(self, Self::Provisioning | Self::Starting)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_values_round_trip() {
        let status: PodStatus = serde_json::from_str("\"HIBERNATING\"").expect("any string");
        assert_eq!(status, PodStatus::Unknown("HIBERNATING".into()));
        assert_eq!(
            serde_json::to_string(&status).expect("serializes"),
            "\"HIBERNATING\""
        );
        let action: PodAction = serde_json::from_str("\"stop\"").expect("known");
        assert_eq!(action, PodAction::Stop);
        assert_eq!(Cloud::Community.to_string(), "COMMUNITY");
    }

    #[test]
    fn allowed_actions_follow_the_spec_table() {
        assert_eq!(
            PodStatus::Running.allowed_actions(),
            &[PodAction::Stop, PodAction::Restart, PodAction::Terminate]
        );
        assert_eq!(
            PodStatus::Error.allowed_actions(),
            &[PodAction::Start, PodAction::Terminate]
        );
        assert!(PodStatus::Terminated.allowed_actions().is_empty());
    }
}
