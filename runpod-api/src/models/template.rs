//! Templates (reusable container settings for pods and serverless endpoints) and the request
//! bodies that create and change them.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::enums::wire_enum;
use super::ids::{RegistryId, TemplateId};
use super::lenient;
use super::pod::PersistentMount;

wire_enum! {
    /// How the console groups a template. It does not affect hardware, scheduling or billing.
    TemplateCategory {
        /// CPU-only workloads.
        Cpu => "CPU",
        /// NVIDIA GPU workloads (the API's default).
        Nvidia => "NVIDIA",
        /// AMD GPU workloads.
        Amd => "AMD",
    }
}

wire_enum! {
    /// Which slice of the public template catalog to list (`GET /v2/catalog/templates`).
    TemplateSource {
        /// RunPod-curated templates (the API's default).
        Official => "official",
        /// Community templates RunPod has verified.
        Verified => "verified",
        /// Every other publicly shared template.
        Community => "community",
    }
}

#[expect(
    clippy::derivable_impls,
    reason = "wire_enum! writes the enum's derives; #[default] cannot be added to one variant"
)]
impl Default for TemplateSource {
    fn default() -> Self {
        Self::Official
    }
}

/// A template as the API reports it (`GET /v2/templates/{id}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
#[expect(
    clippy::struct_excessive_bools,
    reason = "the API's own flags, one field each as the spec has them"
)]
pub struct Template {
    /// Identifier; pass it as `templateId` when creating a pod.
    pub id: TemplateId,
    /// Name.
    pub name: String,
    /// Container image.
    #[serde(default, deserialize_with = "lenient::null_as_default")]
    pub image: String,
    /// Arguments passed to the container entrypoint.
    #[serde(default, deserialize_with = "lenient::null_as_default")]
    pub args: String,
    /// Container disk in GB.
    #[serde(default, deserialize_with = "lenient::opt_u64_lenient")]
    pub disk: Option<u64>,
    /// Storage mounts.
    #[serde(default, deserialize_with = "lenient::null_as_default")]
    pub mounts: TemplateMounts,
    /// Exposed ports, such as `8888/http`.
    #[serde(default, deserialize_with = "lenient::null_as_default")]
    pub ports: Vec<String>,
    /// Environment variables.
    #[serde(default, deserialize_with = "lenient::null_as_default")]
    pub env: BTreeMap<String, String>,
    /// Container registry credential, for private images; always `None` for templates of
    /// other users.
    #[serde(default)]
    pub registry: Option<RegistryId>,
    /// For serverless workers (`true`) or pods (`false`).
    #[serde(default)]
    pub serverless: bool,
    /// Visible to other RunPod users.
    #[serde(default)]
    pub public: bool,
    /// Console grouping.
    pub category: TemplateCategory,
    /// Containers get SSH set up from the deployer's registered keys.
    #[serde(default)]
    pub start_ssh: bool,
    /// Containers start JupyterLab.
    #[serde(default)]
    pub start_jupyter: bool,
    /// Acceptable CUDA versions (`major.minor`); empty means any.
    #[serde(default, deserialize_with = "lenient::null_as_default")]
    pub allowed_cuda_versions: Vec<String>,
}

/// Storage mounts of a template: a single persistent volume at most (templates cannot mount
/// network volumes).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[non_exhaustive]
pub struct TemplateMounts {
    /// Host-local persistent storage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent: Option<PersistentMount>,
}

impl TemplateMounts {
    /// A persistent volume of `size_gb` GB (at least 10) mounted at `path`.
    pub fn persistent(size_gb: u32, path: impl Into<String>) -> Self {
        Self {
            persistent: Some(PersistentMount {
                size: size_gb,
                path: path.into(),
            }),
        }
    }
}

/// The answer of `GET /v2/templates` and `GET /v2/catalog/templates`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TemplateList {
    /// The templates.
    #[serde(default, deserialize_with = "lenient::null_as_default")]
    pub templates: Vec<Template>,
}

/// Body of `POST /v2/templates`. Start with [`CreateTemplateRequest::new`]; unset fields take
/// the API's defaults (category `NVIDIA`, private, for pods, SSH and JupyterLab started).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[non_exhaustive]
pub struct CreateTemplateRequest {
    /// Name (required, non-empty).
    pub name: String,
    /// Container image (required).
    pub image: String,
    /// Arguments for the container entrypoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<String>,
    /// Container disk in GB (at least 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<u32>,
    /// Environment variables.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Exposed ports such as `22/tcp`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<String>,
    /// Registry credential for a private image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<RegistryId>,
    /// Acceptable CUDA versions (`major.minor`); empty accepts any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_cuda_versions: Vec<String>,
    /// Console grouping; the API defaults to `NVIDIA`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<TemplateCategory>,
    /// Storage mounts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mounts: Option<TemplateMounts>,
    /// Share with other users; the API defaults to `false`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public: Option<bool>,
    /// A serverless template; the API defaults to `false` (a pod template).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serverless: Option<bool>,
    /// Start JupyterLab; the API defaults to `true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_jupyter: Option<bool>,
    /// Set up SSH from the deployer's registered keys; the API defaults to `true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_ssh: Option<bool>,
}

impl CreateTemplateRequest {
    /// A template named `name` running `image`.
    pub fn new(name: impl Into<String>, image: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            image: image.into(),
            args: None,
            disk: None,
            env: BTreeMap::new(),
            ports: Vec::new(),
            registry: None,
            allowed_cuda_versions: Vec::new(),
            category: None,
            mounts: None,
            public: None,
            serverless: None,
            start_jupyter: None,
            start_ssh: None,
        }
    }

    /// Sets the container arguments (they replace the image's default command).
    #[must_use]
    pub fn args(mut self, args: impl Into<String>) -> Self {
        self.args = Some(args.into());
        self
    }

    /// Sets the container disk in GB.
    #[must_use]
    pub fn disk(mut self, gb: u32) -> Self {
        self.disk = Some(gb);
        self
    }

    /// Sets an environment variable.
    #[must_use]
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.insert(key.into(), value.into());
        self
    }

    /// Exposes a port such as `22/tcp`.
    #[must_use]
    pub fn port(mut self, port: impl Into<String>) -> Self {
        self.ports.push(port.into());
        self
    }

    /// Pulls the image with a registry credential.
    #[must_use]
    pub fn registry(mut self, registry: RegistryId) -> Self {
        self.registry = Some(registry);
        self
    }

    /// Adds an acceptable CUDA version (`major.minor`).
    #[must_use]
    pub fn allowed_cuda_version(mut self, version: impl Into<String>) -> Self {
        self.allowed_cuda_versions.push(version.into());
        self
    }

    /// Sets the console grouping.
    #[must_use]
    pub fn category(mut self, category: TemplateCategory) -> Self {
        self.category = Some(category);
        self
    }

    /// Sets the storage mounts.
    #[must_use]
    pub fn mounts(mut self, mounts: TemplateMounts) -> Self {
        self.mounts = Some(mounts);
        self
    }

    /// Shares the template with other users, or keeps it private.
    #[must_use]
    pub fn public(mut self, public: bool) -> Self {
        self.public = Some(public);
        self
    }

    /// Makes it a serverless template, or a pod template.
    #[must_use]
    pub fn serverless(mut self, serverless: bool) -> Self {
        self.serverless = Some(serverless);
        self
    }

    /// Starts JupyterLab in containers (or not).
    #[must_use]
    pub fn start_jupyter(mut self, enabled: bool) -> Self {
        self.start_jupyter = Some(enabled);
        self
    }

    /// Sets up SSH in containers from the deployer's registered keys (or not).
    #[must_use]
    pub fn start_ssh(mut self, enabled: bool) -> Self {
        self.start_ssh = Some(enabled);
        self
    }

    /// Checks the rules of the spec's `CreateTemplateRequest` that hold without the API.
    pub(crate) fn check(&self) -> Result<(), String> {
        check_name(Some(&self.name))?;
        if self.image.trim().is_empty() {
            return Err("`image` is required; name the container image".into());
        }
        check_container(
            self.disk,
            Some(&self.allowed_cuda_versions),
            self.category.as_ref(),
            self.mounts.as_ref(),
        )
    }
}

/// Body of `PATCH /v2/templates/{id}`: only the fields set are changed. Pods and endpoints
/// already created from the template keep their settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[non_exhaustive]
pub struct UpdateTemplateRequest {
    /// New name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// New image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// New container arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<String>,
    /// New container disk in GB (at least 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<u32>,
    /// New environment (replaces the old one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<BTreeMap<String, String>>,
    /// New port list (replaces the old one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<String>>,
    /// New registry credential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<RegistryId>,
    /// New CUDA constraint; `Some(vec![])` clears it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_cuda_versions: Option<Vec<String>>,
    /// New console grouping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<TemplateCategory>,
    /// New mounts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mounts: Option<TemplateMounts>,
    /// Share or unshare.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public: Option<bool>,
    /// Serverless or pod template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serverless: Option<bool>,
    /// Start JupyterLab.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_jupyter: Option<bool>,
    /// Set up SSH.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_ssh: Option<bool>,
}

impl UpdateTemplateRequest {
    /// An update that changes nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Renames the template.
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Changes the image.
    #[must_use]
    pub fn image(mut self, image: impl Into<String>) -> Self {
        self.image = Some(image.into());
        self
    }

    /// Changes the container arguments.
    #[must_use]
    pub fn args(mut self, args: impl Into<String>) -> Self {
        self.args = Some(args.into());
        self
    }

    /// Changes the container disk.
    #[must_use]
    pub fn disk(mut self, gb: u32) -> Self {
        self.disk = Some(gb);
        self
    }

    /// Replaces the environment.
    #[must_use]
    pub fn env(mut self, env: BTreeMap<String, String>) -> Self {
        self.env = Some(env);
        self
    }

    /// Replaces the port list.
    #[must_use]
    pub fn ports(mut self, ports: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.ports = Some(ports.into_iter().map(Into::into).collect());
        self
    }

    /// Changes the registry credential.
    #[must_use]
    pub fn registry(mut self, registry: RegistryId) -> Self {
        self.registry = Some(registry);
        self
    }

    /// Replaces the acceptable CUDA versions; an empty list accepts any version.
    #[must_use]
    pub fn allowed_cuda_versions(
        mut self,
        versions: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        self.allowed_cuda_versions = Some(versions.into_iter().map(Into::into).collect());
        self
    }

    /// Changes the console grouping.
    #[must_use]
    pub fn category(mut self, category: TemplateCategory) -> Self {
        self.category = Some(category);
        self
    }

    /// Changes the mounts.
    #[must_use]
    pub fn mounts(mut self, mounts: TemplateMounts) -> Self {
        self.mounts = Some(mounts);
        self
    }

    /// Shares or unshares the template.
    #[must_use]
    pub fn public(mut self, public: bool) -> Self {
        self.public = Some(public);
        self
    }

    /// Makes it a serverless or a pod template.
    #[must_use]
    pub fn serverless(mut self, serverless: bool) -> Self {
        self.serverless = Some(serverless);
        self
    }

    /// Turns JupyterLab on or off.
    #[must_use]
    pub fn start_jupyter(mut self, enabled: bool) -> Self {
        self.start_jupyter = Some(enabled);
        self
    }

    /// Turns SSH setup on or off.
    #[must_use]
    pub fn start_ssh(mut self, enabled: bool) -> Self {
        self.start_ssh = Some(enabled);
        self
    }

    /// Checks the rules of the spec's `UpdateTemplateRequest` that hold without the API.
    pub(crate) fn check(&self) -> Result<(), String> {
        if self == &Self::default() {
            return Err("the update changes nothing; set a field".into());
        }
        check_name(self.name.as_ref())?;
        if self
            .image
            .as_deref()
            .is_some_and(|image| image.trim().is_empty())
        {
            return Err("`image` is empty; name the container image".into());
        }
        check_container(
            self.disk,
            self.allowed_cuda_versions.as_ref(),
            self.category.as_ref(),
            self.mounts.as_ref(),
        )
    }
}

fn check_name(name: Option<&String>) -> Result<(), String> {
    if name.is_some_and(|name| name.trim().is_empty()) {
        return Err("`name` is empty; give the template a name".into());
    }
    Ok(())
}

/// The container rules shared by create and update: `disk` ≥ 1 (`BaseContainerConfig`),
/// `allowedCudaVersions` items `^\d+\.\d+$`, a known `category`, persistent `size` ≥ 10.
fn check_container(
    disk: Option<u32>,
    cuda_versions: Option<&Vec<String>>,
    category: Option<&TemplateCategory>,
    mounts: Option<&TemplateMounts>,
) -> Result<(), String> {
    if disk == Some(0) {
        return Err("`disk` must be at least 1 GB".into());
    }
    if let Some(bad) = cuda_versions
        .into_iter()
        .flatten()
        .find(|version| !is_major_minor(version))
    {
        return Err(format!(
            "`allowedCudaVersions` entry {bad:?} is not `major.minor` (such as 12.8)"
        ));
    }
    if let Some(TemplateCategory::Unknown(other)) = category {
        return Err(format!(
            "`category` {other:?} is not one of CPU, NVIDIA, AMD"
        ));
    }
    if let Some(persistent) = mounts.and_then(|mounts| mounts.persistent.as_ref())
        && persistent.size < 10
    {
        return Err(format!(
            "`mounts.persistent.size` must be at least 10 GB, not {}",
            persistent.size
        ));
    }
    Ok(())
}

/// Whether `version` is `major.minor` in digits (`^\d+\.\d+$`).
pub(crate) fn is_major_minor(version: &str) -> bool {
    let digits = |part: &str| !part.is_empty() && part.bytes().all(|byte| byte.is_ascii_digit());
    version
        .split_once('.')
        .is_some_and(|(major, minor)| digits(major) && digits(minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuda_versions_are_major_minor() {
        assert!(is_major_minor("12.8"));
        assert!(is_major_minor("11.0"));
        assert!(!is_major_minor("12"));
        assert!(!is_major_minor("12.8.1"));
        assert!(!is_major_minor("v12.8"));
        assert!(!is_major_minor(".8"));
    }

    #[test]
    fn create_checks_name_image_disk_and_mounts() {
        let ok = CreateTemplateRequest::new("t", "img");
        assert_eq!(ok.check(), Ok(()));
        assert!(CreateTemplateRequest::new(" ", "img").check().is_err());
        assert!(CreateTemplateRequest::new("t", "").check().is_err());
        assert!(ok.clone().disk(0).check().is_err());
        assert!(
            ok.clone()
                .mounts(TemplateMounts::persistent(9, "/w"))
                .check()
                .is_err()
        );
        assert!(
            ok.clone()
                .category(TemplateCategory::from("TPU"))
                .check()
                .is_err()
        );
    }

    #[test]
    fn an_empty_update_is_refused_but_clearing_cuda_versions_is_not() {
        assert!(UpdateTemplateRequest::new().check().is_err());
        let clear = UpdateTemplateRequest::new().allowed_cuda_versions(Vec::<String>::new());
        assert_eq!(clear.check(), Ok(()));
        assert_eq!(
            serde_json::to_value(&clear).expect("json"),
            serde_json::json!({"allowedCudaVersions": []})
        );
    }
}
