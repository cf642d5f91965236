//! Pieces shared by the cluster, serverless and billing models: identifier newtypes and
//! environment maps whose values stay out of `Debug` output.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Declares a string identifier newtype (`Display`, `AsRef<str>`, conversions from strings,
/// serialized as the bare string).
macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
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

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

id_type! {
    /// A cluster's identifier, such as `cluster_abc123`.
    ClusterId
}

id_type! {
    /// A serverless endpoint's identifier, such as `4m7x2k9q`.
    EndpointId
}

id_type! {
    /// A serverless worker's identifier, from [`Client::list_endpoint_workers`].
    ///
    /// [`Client::list_endpoint_workers`]: crate::Client::list_endpoint_workers
    WorkerId
}

/// Environment variables of a container, as key-value pairs.
///
/// Values often carry tokens (`HF_TOKEN`, passwords), so `Debug` shows the keys only; read a
/// value with [`EnvVars::get`] or iterate with [`EnvVars::iter`].
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EnvVars(BTreeMap<String, String>);

impl EnvVars {
    /// No variables.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key` to `value`, replacing an earlier value.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.0.insert(key.into(), value.into());
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// Whether there are no variables.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Number of variables.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The variables in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_str()))
    }

    /// The variable names in order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }
}

impl fmt::Debug for EnvVars {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.keys().map(|key| (key, "[redacted]")))
            .finish()
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for EnvVars {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Self(
            iter.into_iter()
                .map(|(key, value)| (key.into(), value.into()))
                .collect(),
        )
    }
}

impl From<BTreeMap<String, String>> for EnvVars {
    fn from(map: BTreeMap<String, String>) -> Self {
        Self(map)
    }
}

impl From<EnvVars> for BTreeMap<String, String> {
    fn from(env: EnvVars) -> Self {
        env.0
    }
}

/// Whether `version` is `major.minor` (digits dot digits), as the API's CUDA fields require.
pub(crate) fn is_major_minor(version: &str) -> bool {
    version.split_once('.').is_some_and(|(major, minor)| {
        !major.is_empty()
            && !minor.is_empty()
            && major.bytes().all(|b| b.is_ascii_digit())
            && minor.bytes().all(|b| b.is_ascii_digit())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_debug_shows_keys_only() {
        let env: EnvVars = [("HF_TOKEN", "hf_secret"), ("MODEL", "sdxl")]
            .into_iter()
            .collect();
        let debug = format!("{env:?}");
        assert!(
            !debug.contains("hf_secret") && !debug.contains("sdxl"),
            "{debug}"
        );
        assert!(debug.contains("HF_TOKEN"), "{debug}");
        assert_eq!(env.get("MODEL"), Some("sdxl"));
        assert_eq!(
            serde_json::to_string(&env).expect("json"),
            r#"{"HF_TOKEN":"hf_secret","MODEL":"sdxl"}"#
        );
    }

    #[test]
    fn cuda_versions() {
        assert!(is_major_minor("12.8"));
        assert!(is_major_minor("12.11"));
        assert!(!is_major_minor("12"));
        assert!(!is_major_minor("12."));
        assert!(!is_major_minor("v12.8"));
        assert!(!is_major_minor("12.8.1"));
    }
}
