//! Checks JSON documents against the component schemas of RunPod's official REST v2 OpenAPI
//! document. The document is not part of this repository: its path comes from the
//! `RPB_RUNPOD_OPENAPI` environment variable (`.ci/run` sets it).

use std::path::PathBuf;

use anyhow::{Context, bail};
use serde_json::{Value, json};

/// Environment variable naming the OpenAPI document.
pub const SPEC_ENV: &str = "RPB_RUNPOD_OPENAPI";

/// The loaded OpenAPI document.
#[derive(Debug)]
pub struct Contract {
    path: PathBuf,
    components: Value,
}

impl Contract {
    /// Loads the document named by `RPB_RUNPOD_OPENAPI`.
    ///
    /// # Errors
    ///
    /// When the variable is unset, the file is unreadable, or it is not an OpenAPI 3.1 document
    /// with component schemas.
    pub fn from_env() -> anyhow::Result<Self> {
        let path = std::env::var_os(SPEC_ENV).with_context(|| {
            format!(
                "{SPEC_ENV} is not set: point it at RunPod's REST v2 OpenAPI document \
                 (runpod-rest-v2-openapi.json) to run the contract check"
            )
        })?;
        Self::load(PathBuf::from(path))
    }

    /// Loads the document at `path`.
    ///
    /// # Errors
    ///
    /// When the file is unreadable or not an OpenAPI 3.1 document with component schemas.
    pub fn load(path: PathBuf) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("failed to read the OpenAPI document {}", path.display()))?;
        let document: Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not JSON", path.display()))?;
        let version = document["openapi"].as_str().unwrap_or_default();
        if !version.starts_with("3.1") {
            bail!(
                "{} is OpenAPI {version:?}, not 3.1: is it the retired v1 document?",
                path.display()
            );
        }
        let components = document
            .get("components")
            .filter(|components| components.get("schemas").is_some())
            .cloned()
            .with_context(|| format!("{} has no components.schemas", path.display()))?;
        Ok(Self { path, components })
    }

    /// Names of all component schemas.
    pub fn schema_names(&self) -> Vec<String> {
        self.components["schemas"]
            .as_object()
            .map(|schemas| schemas.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Validates `instance` against `#/components/schemas/{schema}`; the error lists every
    /// violation with its JSON pointer.
    ///
    /// # Errors
    ///
    /// When the schema is unknown or the instance violates it.
    pub fn validate(&self, schema: &str, instance: &Value) -> anyhow::Result<()> {
        if self.components["schemas"].get(schema).is_none() {
            bail!("{} has no schema {schema:?}", self.path.display());
        }
        let root = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$ref": format!("#/components/schemas/{schema}"),
            "components": self.components,
        });
        let validator = jsonschema::draft202012::new(&root)
            .map_err(|error| anyhow::anyhow!("schema {schema} does not compile: {error}"))?;
        let violations: Vec<String> = validator
            .iter_errors(instance)
            .map(|error| format!("at {:?}: {error}", error.instance_path().to_string()))
            .collect();
        if violations.is_empty() {
            Ok(())
        } else {
            bail!(
                "document violates {schema}:\n  {}\ndocument: {instance}",
                violations.join("\n  ")
            )
        }
    }
}
