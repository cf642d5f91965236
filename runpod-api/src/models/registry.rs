//! Container registry credentials (for private images) and ECR delegations.
//!
//! Registry passwords and tokens are write-only: the API never returns them, and this crate
//! holds them as [`SecretString`], keeps them out of `Debug`, errors and logs, and exposes
//! them only while serializing the create request's body.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use serde::ser::SerializeStruct;
use serde::{Deserialize, Serialize};

use super::ids::{DelegationId, RegistryId};
use super::lenient;

/// A stored container registry credential. Only its id and name are readable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Registry {
    /// Identifier; pass it as `registry` when creating a pod or template.
    pub id: RegistryId,
    /// Name.
    pub name: String,
}

/// The answer of `GET /v2/registries`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RegistryList {
    /// The credentials.
    #[serde(default, deserialize_with = "lenient::null_as_default")]
    pub registries: Vec<Registry>,
}

/// Body of `POST /v2/registries`. The password (or access token) is a secret: `Debug` shows
/// `[redacted]`, and only the serialized body carries it.
#[derive(Clone)]
#[non_exhaustive]
pub struct CreateRegistryRequest {
    /// Name (required, non-empty).
    pub name: String,
    /// Registry user name (required, non-empty).
    pub username: String,
    /// Registry password or access token (required, non-empty).
    pub password: SecretString,
}

impl CreateRegistryRequest {
    /// A credential named `name` logging in as `username` with `password`.
    pub fn new(
        name: impl Into<String>,
        username: impl Into<String>,
        password: impl Into<SecretString>,
    ) -> Self {
        Self {
            name: name.into(),
            username: username.into(),
            password: password.into(),
        }
    }

    /// Checks the rules of the spec's `CreateRegistryRequest`: every field present and
    /// non-empty. Messages never quote the password.
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.name.trim().is_empty() {
            return Err("`name` is empty; name the credential".into());
        }
        if self.username.is_empty() {
            return Err("`username` is empty; give the registry user name".into());
        }
        if self.password.expose_secret().is_empty() {
            return Err("`password` is empty; give the registry password or token".into());
        }
        Ok(())
    }
}

impl fmt::Debug for CreateRegistryRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreateRegistryRequest")
            .field("name", &self.name)
            .field("username", &self.username)
            .field("password", &"[redacted]")
            .finish()
    }
}

impl Serialize for CreateRegistryRequest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut body = serializer.serialize_struct("CreateRegistryRequest", 3)?;
        body.serialize_field("name", &self.name)?;
        body.serialize_field("username", &self.username)?;
        body.serialize_field("password", self.password.expose_secret())?;
        body.end()
    }
}

/// A delegation that lets RunPod pull one image from a private Amazon ECR repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct EcrDelegation {
    /// Identifier.
    pub id: DelegationId,
    /// Optional name.
    #[serde(default)]
    pub name: Option<String>,
    /// The RunPod user that created it.
    pub delegator_user_id: String,
    /// The AWS user or role delegated to.
    pub aws_user: String,
    /// ECR repository name.
    pub repository: String,
    /// Image tag.
    pub tag: String,
    /// AWS region.
    pub aws_region: String,
    /// Registry URI for `docker login`, such as `123456789.dkr.ecr.us-east-2.amazonaws.com`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_registry_uri: Option<String>,
    /// Creation time (RFC 3339).
    pub created_at: String,
}

/// The answer of `GET /v2/registries/delegations`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct EcrDelegationList {
    /// The delegations.
    #[serde(default, deserialize_with = "lenient::null_as_default")]
    pub delegations: Vec<EcrDelegation>,
}

/// Body of `POST /v2/registries/delegations`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[non_exhaustive]
pub struct CreateEcrDelegationRequest {
    /// The ECR resource ARN, such as
    /// `arn:aws:ecr:us-east-2:418399314813:repository/runpod/deployment`.
    pub resource: String,
    /// Optional name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl CreateEcrDelegationRequest {
    /// A delegation for the ECR resource `arn`.
    pub fn new(arn: impl Into<String>) -> Self {
        Self {
            resource: arn.into(),
            name: None,
        }
    }

    /// Names the delegation.
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Checks that `resource` is an ECR ARN (`arn:<partition>:ecr:…`), as the spec describes
    /// the field.
    pub(crate) fn check(&self) -> Result<(), String> {
        let mut parts = self.resource.split(':');
        let is_ecr_arn = parts.next() == Some("arn")
            && parts.next().is_some_and(|partition| !partition.is_empty())
            && parts.next() == Some("ecr")
            && parts.clone().count() >= 3;
        if is_ecr_arn {
            Ok(())
        } else {
            Err(format!(
                "`resource` {:?} is not an ECR ARN such as \
                 arn:aws:ecr:us-east-2:123456789012:repository/name",
                self.resource
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_is_only_in_the_body() {
        let request = CreateRegistryRequest::new("hub", "me", "hunter2-secret");
        let debug = format!("{request:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("[redacted]"));
        let body = serde_json::to_value(&request).expect("json");
        assert_eq!(
            body,
            serde_json::json!({"name": "hub", "username": "me", "password": "hunter2-secret"})
        );
        let empty = CreateRegistryRequest::new("hub", "me", "").check();
        assert!(empty.is_err_and(|reason| reason.contains("`password`")));
    }

    #[test]
    fn delegation_resources_are_ecr_arns() {
        let ok = "arn:aws:ecr:us-east-2:418399314813:repository/runpod/deployment";
        assert_eq!(CreateEcrDelegationRequest::new(ok).check(), Ok(()));
        assert_eq!(
            CreateEcrDelegationRequest::new("arn:aws-cn:ecr:cn-north-1:123456789012:repository/x")
                .check(),
            Ok(())
        );
        for bad in [
            "",
            "runpod/deployment",
            "arn:aws:s3:::bucket",
            "arn:aws:ecr:us-east-2",
        ] {
            assert!(
                CreateEcrDelegationRequest::new(bad).check().is_err(),
                "{bad}"
            );
        }
    }
}
