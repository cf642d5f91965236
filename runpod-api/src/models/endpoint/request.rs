//! The bodies of `POST /v2/serverless` and `PATCH /v2/serverless/{id}`, and the spec's rules
//! checked on them before sending.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::super::common::{EnvVars, is_major_minor};
use super::super::pod::CpuRequest;
use super::{EndpointScaling, EndpointType, FlashBoot, MAX_IDLE_TIMEOUT_SECONDS};

/// Worker bounds in a create or update body; unset fields take the API's defaults on create
/// (min 0, max 3, idle timeout 10 s) and stay unchanged on update.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[non_exhaustive]
pub struct WorkersConfig {
    /// Fewest workers kept running (billed while idle).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<u32>,
    /// Most workers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<u32>,
    /// Seconds before an idle worker scales down (1 to 3600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<u32>,
}

impl WorkersConfig {
    /// Between `min` and `max` workers.
    pub fn new(min: u32, max: u32) -> Self {
        Self {
            min: Some(min),
            max: Some(max),
            idle_timeout: None,
        }
    }

    /// Sets the idle timeout in seconds.
    #[must_use]
    pub fn idle_timeout(mut self, seconds: u32) -> Self {
        self.idle_timeout = Some(seconds);
        self
    }

    /// `defaults` are the (min, max) the API assumes for unset bounds, if known.
    fn check(&self, defaults: Option<(u32, u32)>) -> Result<(), String> {
        if let Some(idle) = self.idle_timeout
            && !(1..=MAX_IDLE_TIMEOUT_SECONDS).contains(&idle)
        {
            return Err(format!(
                "workers.idleTimeout must be 1 to {MAX_IDLE_TIMEOUT_SECONDS} seconds, not {idle}"
            ));
        }
        let (min, max) = match (self.min, self.max, defaults) {
            (Some(min), Some(max), _) => (min, max),
            (min, max, Some((default_min, default_max))) => {
                (min.unwrap_or(default_min), max.unwrap_or(default_max))
            }
            _ => return Ok(()),
        };
        if min > max {
            return Err(format!(
                "workers.min ({min}) is above workers.max ({max}); workers scale between them"
            ));
        }
        Ok(())
    }
}

/// GPU selection of a create body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[non_exhaustive]
pub struct EndpointGpuRequest {
    /// Serverless GPU pool ids (the catalog's `pool`), at least one.
    pub pools: Vec<String>,
    /// GPU type ids to subtract from the pools.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded_types: Vec<String>,
    /// GPUs per worker; the API defaults to 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    /// Acceptable CUDA versions (`major.minor`), matched exactly.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_cuda_versions: Vec<String>,
    /// Lowest acceptable CUDA version (`major.minor`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_cuda_version: Option<String>,
}

impl EndpointGpuRequest {
    /// Workers on any of `pools`.
    pub fn new(pools: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self {
            pools: pools.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }

    /// Subtracts a GPU type from the pools.
    #[must_use]
    pub fn exclude_type(mut self, gpu_type_id: impl Into<String>) -> Self {
        self.excluded_types.push(gpu_type_id.into());
        self
    }

    /// Sets the GPUs per worker.
    #[must_use]
    pub fn count(mut self, count: u32) -> Self {
        self.count = Some(count);
        self
    }

    /// Adds an acceptable CUDA version.
    #[must_use]
    pub fn allowed_cuda_version(mut self, version: impl Into<String>) -> Self {
        self.allowed_cuda_versions.push(version.into());
        self
    }

    /// Sets the lowest acceptable CUDA version.
    #[must_use]
    pub fn min_cuda_version(mut self, version: impl Into<String>) -> Self {
        self.min_cuda_version = Some(version.into());
        self
    }

    fn check(&self) -> Result<(), String> {
        check_gpu_selection(Some(&self.pools), Some(&self.excluded_types), self.count)?;
        check_cuda(
            Some(&self.allowed_cuda_versions),
            self.min_cuda_version.as_deref(),
            false,
        )
    }
}

/// GPU part of an update body: unset fields stay unchanged.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[non_exhaustive]
pub struct EndpointGpuUpdate {
    /// New pool selection; replaces the pools and the exclusions together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pools: Option<Vec<String>>,
    /// New exclusions; needs `pools` in the same update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub excluded_types: Option<Vec<String>>,
    /// New GPUs per worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    /// New CUDA set; `Some(vec![])` clears it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_cuda_versions: Option<Vec<String>>,
    /// New CUDA floor; `Some("")` clears it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_cuda_version: Option<String>,
}

impl EndpointGpuUpdate {
    /// A GPU update that changes nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the pool selection (clearing exclusions unless [`Self::exclude_type`] restates
    /// them).
    #[must_use]
    pub fn pools(mut self, pools: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.pools = Some(pools.into_iter().map(Into::into).collect());
        self
    }

    /// Subtracts a GPU type from the new pool selection.
    #[must_use]
    pub fn exclude_type(mut self, gpu_type_id: impl Into<String>) -> Self {
        self.excluded_types
            .get_or_insert_with(Vec::new)
            .push(gpu_type_id.into());
        self
    }

    /// Sets the GPUs per worker.
    #[must_use]
    pub fn count(mut self, count: u32) -> Self {
        self.count = Some(count);
        self
    }

    /// Replaces the acceptable CUDA versions.
    #[must_use]
    pub fn allowed_cuda_versions(
        mut self,
        versions: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        self.allowed_cuda_versions = Some(versions.into_iter().map(Into::into).collect());
        self
    }

    /// Clears the CUDA version set (sends `[]`).
    #[must_use]
    pub fn clear_allowed_cuda_versions(mut self) -> Self {
        self.allowed_cuda_versions = Some(Vec::new());
        self
    }

    /// Sets the CUDA floor.
    #[must_use]
    pub fn min_cuda_version(mut self, version: impl Into<String>) -> Self {
        self.min_cuda_version = Some(version.into());
        self
    }

    /// Clears the CUDA floor (sends `""`).
    #[must_use]
    pub fn clear_min_cuda_version(mut self) -> Self {
        self.min_cuda_version = Some(String::new());
        self
    }

    fn check(&self) -> Result<(), String> {
        if self.excluded_types.is_some() && self.pools.is_none() {
            return Err(
                "gpu.excludedTypes needs gpu.pools in the same update: the two are one \
                        selection"
                    .into(),
            );
        }
        check_gpu_selection(
            self.pools.as_ref(),
            self.excluded_types.as_ref(),
            self.count,
        )?;
        check_cuda(
            self.allowed_cuda_versions.as_ref(),
            self.min_cuda_version.as_deref(),
            true,
        )
    }
}

fn check_gpu_selection(
    pools: Option<&Vec<String>>,
    excluded: Option<&Vec<String>>,
    count: Option<u32>,
) -> Result<(), String> {
    if let Some(pools) = pools {
        if pools.is_empty() {
            return Err("gpu.pools is empty; list at least one serverless GPU pool".into());
        }
        if pools.iter().any(|pool| pool.trim().is_empty()) {
            return Err("gpu.pools has an empty pool id".into());
        }
    }
    if let Some(excluded) = excluded {
        let mut seen = BTreeSet::new();
        for gpu_type in excluded {
            let trimmed = gpu_type.trim();
            if trimmed.is_empty() || trimmed.starts_with('-') {
                return Err(format!(
                    "gpu.excludedTypes entry {gpu_type:?} is not a GPU type id"
                ));
            }
            if !seen.insert(trimmed) {
                return Err(format!("gpu.excludedTypes lists {trimmed:?} twice"));
            }
        }
    }
    if count == Some(0) {
        return Err("gpu.count must be at least 1".into());
    }
    Ok(())
}

/// The CUDA rules: `major.minor` values, and a non-empty set excludes a floor. On update an
/// empty floor (`""`) means "clear" and is allowed.
fn check_cuda(
    allowed: Option<&Vec<String>>,
    min: Option<&str>,
    update: bool,
) -> Result<(), String> {
    if let Some(bad) = allowed
        .into_iter()
        .flatten()
        .find(|version| !is_major_minor(version))
    {
        return Err(format!(
            "gpu.allowedCudaVersions entry {bad:?} is not major.minor (such as 12.8)"
        ));
    }
    let floor = min.filter(|min| !(update && min.is_empty()));
    if let Some(min) = floor
        && !is_major_minor(min)
    {
        return Err(format!(
            "gpu.minCudaVersion {min:?} is not major.minor (such as 12.1)"
        ));
    }
    if floor.is_some() && allowed.is_some_and(|allowed| !allowed.is_empty()) {
        return Err(
            "gpu.allowedCudaVersions and gpu.minCudaVersion exclude each other; use a \
                    set or a floor"
                .into(),
        );
    }
    Ok(())
}

fn check_cpus(cpus: &[CpuRequest]) -> Result<(), String> {
    for (index, cpu) in cpus.iter().enumerate() {
        if cpu.id.trim().is_empty() {
            return Err(format!("cpu[{index}].id is empty"));
        }
        if cpu.vcpu_count < 2 || !cpu.vcpu_count.is_power_of_two() {
            return Err(format!(
                "cpu[{index}].vcpuCount must be a power of two, at least 2, not {}",
                cpu.vcpu_count
            ));
        }
        if cpus[..index].contains(cpu) {
            return Err(format!(
                "cpu lists {} with {} vCPUs twice",
                cpu.id, cpu.vcpu_count
            ));
        }
    }
    Ok(())
}

fn check_flashboot(flashboot: Option<&FlashBoot>) -> Result<(), String> {
    match flashboot {
        Some(FlashBoot::Unknown(other)) => Err(format!(
            "flashboot {other:?} is not one of OFF, FLASHBOOT, PRIORITY_FLASHBOOT"
        )),
        _ => Ok(()),
    }
}

/// Body of `POST /v2/serverless`. Set exactly one of [`Self::gpu`] and [`Self::cpu`], and an
/// image unless a template provides it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[non_exhaustive]
pub struct CreateEndpointRequest {
    /// Name (not empty).
    pub name: String,
    /// Request routing; it decides the valid scalers and the request URLs.
    #[serde(rename = "type")]
    pub kind: EndpointType,
    /// Autoscaling signal (load-balancing endpoints need [`EndpointScaling::RequestCount`]).
    pub scaling: EndpointScaling,
    /// Serverless template to take container settings from (body fields win).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_id: Option<String>,
    /// Container image; required without a template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Arguments for the container entrypoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<String>,
    /// Container disk in GB (at least 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<u32>,
    /// Exposed ports such as `8000/http`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<String>,
    /// Environment variables (values are redacted from `Debug`).
    #[serde(default, skip_serializing_if = "EnvVars::is_empty")]
    pub env: EnvVars,
    /// Container registry credential id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<String>,
    /// GPU selection (excludes `cpu`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<EndpointGpuRequest>,
    /// Eligible CPU configurations (excludes `gpu`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cpu: Vec<CpuRequest>,
    /// Worker bounds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workers: Option<WorkersConfig>,
    /// Preferred data centers; empty lets the scheduler choose.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub data_center_ids: Vec<String>,
    /// Network volume ids to attach.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub network_volumes: Vec<String>,
    /// Per-request execution timeout in milliseconds; the API defaults to 300000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
    /// `flashboot` mode; the API defaults to `OFF`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flashboot: Option<FlashBoot>,
}

impl CreateEndpointRequest {
    /// An endpoint named `name` with routing `kind` and scaler `scaling`; add the image and
    /// compute with the other methods.
    pub fn new(name: impl Into<String>, kind: EndpointType, scaling: EndpointScaling) -> Self {
        Self {
            name: name.into(),
            kind,
            scaling,
            template_id: None,
            image: None,
            args: None,
            disk: None,
            ports: Vec::new(),
            env: EnvVars::new(),
            registry: None,
            gpu: None,
            cpu: Vec::new(),
            workers: None,
            data_center_ids: Vec::new(),
            network_volumes: Vec::new(),
            timeout: None,
            flashboot: None,
        }
    }

    /// Sets the container image.
    #[must_use]
    pub fn image(mut self, image: impl Into<String>) -> Self {
        self.image = Some(image.into());
        self
    }

    /// Bases the endpoint on a serverless template.
    #[must_use]
    pub fn template_id(mut self, template_id: impl Into<String>) -> Self {
        self.template_id = Some(template_id.into());
        self
    }

    /// Sets the container arguments.
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

    /// Exposes a port such as `8000/http`.
    #[must_use]
    pub fn port(mut self, port: impl Into<String>) -> Self {
        self.ports.push(port.into());
        self
    }

    /// Sets an environment variable.
    #[must_use]
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.insert(key, value);
        self
    }

    /// Sets the registry credential id.
    #[must_use]
    pub fn registry(mut self, registry: impl Into<String>) -> Self {
        self.registry = Some(registry.into());
        self
    }

    /// Runs workers on GPUs (and clears any CPU configurations).
    #[must_use]
    pub fn gpu(mut self, gpu: EndpointGpuRequest) -> Self {
        self.gpu = Some(gpu);
        self.cpu.clear();
        self
    }

    /// Adds an eligible CPU configuration (and clears any GPU selection).
    #[must_use]
    pub fn cpu(mut self, cpu: CpuRequest) -> Self {
        self.cpu.push(cpu);
        self.gpu = None;
        self
    }

    /// Sets the worker bounds.
    #[must_use]
    pub fn workers(mut self, workers: WorkersConfig) -> Self {
        self.workers = Some(workers);
        self
    }

    /// Adds a preferred data center.
    #[must_use]
    pub fn data_center(mut self, id: impl Into<String>) -> Self {
        self.data_center_ids.push(id.into());
        self
    }

    /// Attaches a network volume.
    #[must_use]
    pub fn network_volume(mut self, volume_id: impl Into<String>) -> Self {
        self.network_volumes.push(volume_id.into());
        self
    }

    /// Sets the per-request timeout in milliseconds.
    #[must_use]
    pub fn timeout_ms(mut self, milliseconds: u64) -> Self {
        self.timeout = Some(milliseconds);
        self
    }

    /// Sets the `flashboot` mode.
    #[must_use]
    pub fn flashboot(mut self, flashboot: FlashBoot) -> Self {
        self.flashboot = Some(flashboot);
        self
    }

    /// Checks the spec's rules that hold without a round trip; returns the first violation.
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.name.trim().is_empty() {
            return Err("name is empty".into());
        }
        match &self.template_id {
            Some(template) if template.is_empty() => return Err("templateId is empty".into()),
            None if self.image.is_none() => {
                return Err("set an image or a templateId".into());
            }
            _ => {}
        }
        match (&self.gpu, self.cpu.is_empty()) {
            (None, true) => {
                return Err(
                    "choose the compute: either gpu (pools) or cpu (configurations)".into(),
                );
            }
            (Some(_), false) => return Err("gpu and cpu exclude each other; choose one".into()),
            (Some(gpu), true) => gpu.check()?,
            (None, false) => check_cpus(&self.cpu)?,
        }
        self.scaling.check()?;
        match (&self.kind, &self.scaling) {
            (EndpointType::Unknown(other), _) => {
                return Err(format!("type {other:?} is not one of QUEUE, LOAD_BALANCER"));
            }
            (EndpointType::LoadBalancer, EndpointScaling::QueueDelay { .. }) => {
                return Err(
                    "a LOAD_BALANCER endpoint scales on REQUEST_COUNT, not QUEUE_DELAY \
                            (that scaler is for queue endpoints only)"
                        .into(),
                );
            }
            (EndpointType::Queue, EndpointScaling::RequestCount { .. })
                if self
                    .workers
                    .as_ref()
                    .is_some_and(|workers| workers.idle_timeout.is_some()) =>
            {
                return Err(
                    "workers.idleTimeout does not apply to a QUEUE endpoint scaling on \
                            REQUEST_COUNT; leave it unset"
                        .into(),
                );
            }
            _ => {}
        }
        if let Some(workers) = &self.workers {
            // The API's create defaults: min 0, max 3.
            workers.check(Some((0, 3)))?;
        }
        if self.disk == Some(0) {
            return Err("disk must be at least 1 GB".into());
        }
        check_flashboot(self.flashboot.as_ref())
    }
}

/// Body of `PATCH /v2/serverless/{id}`: only the fields set are changed. Scaling and worker
/// settings apply promptly; container changes roll out as a new release.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[non_exhaustive]
pub struct UpdateEndpointRequest {
    /// New name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Apply a serverless template's container settings once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_id: Option<String>,
    /// New image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// New container arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<String>,
    /// New container disk in GB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<u32>,
    /// New port list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<String>>,
    /// New environment (replaces the old one; values are redacted from `Debug`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<EnvVars>,
    /// New registry credential id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<String>,
    /// GPU changes (GPU endpoints only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<EndpointGpuUpdate>,
    /// Replacement CPU configurations (CPU endpoints only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Vec<CpuRequest>>,
    /// New worker bounds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workers: Option<WorkersConfig>,
    /// New scaler.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaling: Option<EndpointScaling>,
    /// New preferred data centers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_center_ids: Option<Vec<String>>,
    /// New network volume ids.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_volumes: Option<Vec<String>>,
    /// New per-request timeout in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
    /// New `flashboot` mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flashboot: Option<FlashBoot>,
}

impl UpdateEndpointRequest {
    /// An update that changes nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Renames the endpoint.
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Applies a serverless template's container settings.
    #[must_use]
    pub fn template_id(mut self, template_id: impl Into<String>) -> Self {
        self.template_id = Some(template_id.into());
        self
    }

    /// Changes the image (rolls out as a new release).
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

    /// Replaces the port list.
    #[must_use]
    pub fn ports(mut self, ports: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.ports = Some(ports.into_iter().map(Into::into).collect());
        self
    }

    /// Replaces the environment.
    #[must_use]
    pub fn env(mut self, env: EnvVars) -> Self {
        self.env = Some(env);
        self
    }

    /// Changes the registry credential id.
    #[must_use]
    pub fn registry(mut self, registry: impl Into<String>) -> Self {
        self.registry = Some(registry.into());
        self
    }

    /// Changes the GPU selection of a GPU endpoint.
    #[must_use]
    pub fn gpu(mut self, gpu: EndpointGpuUpdate) -> Self {
        self.gpu = Some(gpu);
        self
    }

    /// Replaces the CPU configurations of a CPU endpoint.
    #[must_use]
    pub fn cpu(mut self, cpus: impl IntoIterator<Item = CpuRequest>) -> Self {
        self.cpu = Some(cpus.into_iter().collect());
        self
    }

    /// Changes the worker bounds.
    #[must_use]
    pub fn workers(mut self, workers: WorkersConfig) -> Self {
        self.workers = Some(workers);
        self
    }

    /// Changes the scaler.
    #[must_use]
    pub fn scaling(mut self, scaling: EndpointScaling) -> Self {
        self.scaling = Some(scaling);
        self
    }

    /// Replaces the preferred data centers.
    #[must_use]
    pub fn data_center_ids(mut self, ids: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.data_center_ids = Some(ids.into_iter().map(Into::into).collect());
        self
    }

    /// Replaces the attached network volumes.
    #[must_use]
    pub fn network_volumes(mut self, ids: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.network_volumes = Some(ids.into_iter().map(Into::into).collect());
        self
    }

    /// Changes the per-request timeout in milliseconds.
    #[must_use]
    pub fn timeout_ms(mut self, milliseconds: u64) -> Self {
        self.timeout = Some(milliseconds);
        self
    }

    /// Changes the `flashboot` mode.
    #[must_use]
    pub fn flashboot(mut self, flashboot: FlashBoot) -> Self {
        self.flashboot = Some(flashboot);
        self
    }

    /// Checks the spec's rules that hold without knowing the endpoint; returns the first
    /// violation.
    pub(crate) fn check(&self) -> Result<(), String> {
        if self == &Self::default() {
            return Err("the update changes nothing; set a field".into());
        }
        if self
            .name
            .as_deref()
            .is_some_and(|name| name.trim().is_empty())
        {
            return Err("name is empty".into());
        }
        match (&self.gpu, &self.cpu) {
            (Some(_), Some(_)) => {
                return Err("gpu and cpu exclude each other; the compute family is fixed".into());
            }
            (Some(gpu), None) => gpu.check()?,
            (None, Some(cpus)) if cpus.is_empty() => {
                return Err("cpu is empty; list at least one configuration".into());
            }
            (None, Some(cpus)) => check_cpus(cpus)?,
            (None, None) => {}
        }
        if let Some(scaling) = &self.scaling {
            scaling.check()?;
        }
        if let Some(workers) = &self.workers {
            workers.check(None)?;
        }
        if self.disk == Some(0) {
            return Err("disk must be at least 1 GB".into());
        }
        check_flashboot(self.flashboot.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpu_request() -> CreateEndpointRequest {
        CreateEndpointRequest::new(
            "gen",
            EndpointType::Queue,
            EndpointScaling::queue_delay(4.0),
        )
        .image("img")
        .gpu(EndpointGpuRequest::new(["ADA_24"]))
    }

    #[test]
    fn create_checks_follow_the_spec() {
        assert_eq!(gpu_request().check(), Ok(()));
        let lb = CreateEndpointRequest {
            kind: EndpointType::LoadBalancer,
            ..gpu_request()
        };
        assert!(lb.check().expect_err("lb").contains("REQUEST_COUNT"));
        let idle = CreateEndpointRequest {
            scaling: EndpointScaling::request_count(2),
            ..gpu_request()
        }
        .workers(WorkersConfig::new(0, 2).idle_timeout(5));
        assert!(idle.check().expect_err("idle").contains("idleTimeout"));
        let min_above_default_max = gpu_request().workers(WorkersConfig {
            min: Some(5),
            ..WorkersConfig::default()
        });
        assert!(min_above_default_max.check().is_err());
        let both_cuda = gpu_request().gpu(
            EndpointGpuRequest::new(["ADA_24"])
                .allowed_cuda_version("12.8")
                .min_cuda_version("12.1"),
        );
        assert!(both_cuda.check().expect_err("cuda").contains("exclude"));
        let cpu = gpu_request()
            .cpu(CpuRequest::new("cpu5c", 4))
            .cpu(CpuRequest::new("cpu5c", 4));
        assert!(cpu.check().expect_err("dup").contains("twice"));
        assert!(
            gpu_request()
                .gpu(EndpointGpuRequest::new(["ADA_24"]).exclude_type("-x"))
                .check()
                .is_err()
        );
        let slow = CreateEndpointRequest {
            scaling: EndpointScaling::queue_delay(0.25),
            ..gpu_request()
        };
        assert!(slow.check().expect_err("delay").contains("queueDelay"));
    }

    #[test]
    fn update_checks_follow_the_spec() {
        assert!(UpdateEndpointRequest::new().check().is_err());
        let excluded_alone =
            UpdateEndpointRequest::new().gpu(EndpointGpuUpdate::new().exclude_type("NVIDIA L40"));
        assert!(excluded_alone.check().expect_err("pools").contains("pools"));
        let switch_to_set = UpdateEndpointRequest::new().gpu(
            EndpointGpuUpdate::new()
                .allowed_cuda_versions(["12.8"])
                .clear_min_cuda_version(),
        );
        assert_eq!(switch_to_set.check(), Ok(()));
        let both = UpdateEndpointRequest::new()
            .gpu(EndpointGpuUpdate::new())
            .cpu([CpuRequest::new("cpu5c", 4)]);
        assert!(both.check().is_err());
        let idle = UpdateEndpointRequest::new().workers(WorkersConfig::default().idle_timeout(0));
        assert!(idle.check().is_err());
    }
}
