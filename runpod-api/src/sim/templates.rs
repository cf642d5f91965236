//! Pod templates: `/v2/templates` as stored state, and their use as a one-time source of
//! settings for a pod create (`templateId`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::knobs::{Refusal, base36_id};
use crate::models::{CreatePodRequest, PersistentMount};

/// `TemplateMounts`: a template carries at most a persistent mount.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TemplateMounts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) persistent: Option<PersistentMount>,
}

/// `Template` of the REST v2 document.
#[expect(
    clippy::struct_excessive_bools,
    reason = "the document's Template has these four flags"
)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Template {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) image: String,
    pub(crate) args: String,
    pub(crate) disk: u32,
    pub(crate) mounts: TemplateMounts,
    pub(crate) ports: Vec<String>,
    pub(crate) env: BTreeMap<String, String>,
    pub(crate) registry: Option<String>,
    pub(crate) serverless: bool,
    pub(crate) public: bool,
    pub(crate) category: String,
    pub(crate) start_ssh: bool,
    pub(crate) start_jupyter: bool,
    pub(crate) allowed_cuda_versions: Vec<String>,
}

/// `CreateTemplateRequest` and `UpdateTemplateRequest` (checked against the document's shapes
/// first; on create `name` and `image` are present).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct TemplateChange {
    name: Option<String>,
    image: Option<String>,
    args: Option<String>,
    disk: Option<u32>,
    mounts: Option<TemplateMounts>,
    ports: Option<Vec<String>>,
    env: Option<BTreeMap<String, String>>,
    #[expect(
        clippy::option_option,
        reason = "an explicit null clears the registry, an absent field keeps it"
    )]
    #[serde(default, deserialize_with = "present")]
    registry: Option<Option<String>>,
    serverless: Option<bool>,
    public: Option<bool>,
    category: Option<String>,
    start_ssh: Option<bool>,
    start_jupyter: Option<bool>,
    allowed_cuda_versions: Option<Vec<String>>,
}

/// Tells an explicit `null` (`Some(None)`) from an absent field (`None`).
#[expect(
    clippy::option_option,
    reason = "an explicit null clears the registry, an absent field keeps it"
)]
fn present<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(deserializer).map(Some)
}

fn not_found(id: &str) -> Refusal {
    Refusal::new(404, "Not Found", format!("template {id} not found"))
}

impl Template {
    fn apply(&mut self, change: &TemplateChange) {
        macro_rules! set {
            ($($field:ident),*) => { $( if let Some(value) = &change.$field { self.$field = value.clone(); } )* };
        }
        set!(
            name,
            image,
            args,
            disk,
            ports,
            env,
            registry,
            serverless,
            public,
            category,
            start_ssh,
            start_jupyter,
            allowed_cuda_versions
        );
        // `{}` leaves the mount as it is.
        if let Some(persistent) = change.mounts.as_ref().and_then(|m| m.persistent.clone()) {
            self.mounts.persistent = Some(persistent);
        }
    }
}

/// The account's templates.
#[derive(Debug, Default)]
pub(crate) struct Templates {
    templates: BTreeMap<String, Template>,
    serial: u64,
}

impl Templates {
    pub(crate) fn list(&self) -> Vec<Template> {
        self.templates.values().cloned().collect()
    }

    pub(crate) fn create(&mut self, change: &TemplateChange) -> Template {
        let mut template = Template {
            id: {
                self.serial += 1;
                base36_id("tpl", self.serial)
            },
            name: String::new(),
            image: String::new(),
            args: String::new(),
            disk: 20,
            mounts: TemplateMounts::default(),
            ports: Vec::new(),
            env: BTreeMap::new(),
            registry: None,
            serverless: false,
            public: false,
            category: "NVIDIA".into(),
            start_ssh: true,
            start_jupyter: true,
            allowed_cuda_versions: Vec::new(),
        };
        template.apply(change);
        self.templates.insert(template.id.clone(), template.clone());
        template
    }

    pub(crate) fn get(&self, id: &str) -> Result<Template, Refusal> {
        self.templates.get(id).cloned().ok_or_else(|| not_found(id))
    }

    pub(crate) fn update(
        &mut self,
        id: &str,
        change: &TemplateChange,
    ) -> Result<Template, Refusal> {
        let template = self.templates.get_mut(id).ok_or_else(|| not_found(id))?;
        template.apply(change);
        Ok(template.clone())
    }

    pub(crate) fn delete(&mut self, id: &str) -> Result<(), Refusal> {
        self.templates
            .remove(id)
            .map(drop)
            .ok_or_else(|| not_found(id))
    }

    /// Spreads a template's settings into a create request: body fields win, `env` merges per
    /// key with the body's values winning, CPU pods skip the persistent mount.
    pub(crate) fn resolve(&self, request: &CreatePodRequest) -> Result<CreatePodRequest, Refusal> {
        let Some(id) = &request.template_id else {
            return Ok(request.clone());
        };
        let template = self.get(id)?;
        if template.serverless {
            return Err(Refusal::new(
                422,
                "Unprocessable Entity",
                format!("template {id} is a serverless template; pods need a pod template"),
            ));
        }
        let mut resolved = request.clone();
        resolved.image = request.image.clone().or(Some(template.image));
        resolved.args = request.args.clone().or(Some(template.args));
        resolved.disk = request.disk.or(Some(template.disk));
        if resolved.ports.is_empty() {
            resolved.ports = template.ports;
        }
        let mut env = template.env;
        env.extend(request.env.clone());
        resolved.env = env;
        if resolved.registry.is_none() {
            resolved.registry = template.registry;
        }
        if resolved.mounts.is_none() && request.cpu.is_none() {
            resolved.mounts = template
                .mounts
                .persistent
                .map(|persistent| crate::models::Mounts {
                    persistent: Some(persistent),
                    network: Vec::new(),
                });
        }
        Ok(resolved)
    }
}
