//! Typed identifiers of templates, network volumes, registry credentials and ECR delegations,
//! made like [`PodId`](super::PodId) so one kind of id cannot be passed where another is meant.

use std::fmt;

/// Declares a string newtype id with the same surface as `PodId`.
macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize,
            serde::Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Wraps an identifier.
            pub fn new(id: impl Into<String>) -> Self {
                Self(id.into())
            }

            /// The identifier as a string.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(id: &str) -> Self {
                Self(id.to_owned())
            }
        }

        impl From<String> for $name {
            fn from(id: String) -> Self {
                Self(id)
            }
        }

        /// So the id can be passed where a plain id string is taken, such as
        /// `CreatePodRequest::template_id`.
        impl From<$name> for String {
            fn from(id: $name) -> Self {
                id.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

id_type! {
    /// A template's identifier, such as `9x4m2p7v`.
    TemplateId
}

id_type! {
    /// A network volume's identifier, such as `agv6w2qcg7`.
    NetworkVolumeId
}

id_type! {
    /// A container registry credential's identifier, such as `6n2k8v4d`.
    RegistryId
}

id_type! {
    /// An ECR delegation's identifier, such as `deleg_abc123`.
    DelegationId
}
