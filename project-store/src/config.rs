//! The typed view of the workspace `.env` file.
//!
//! | key | meaning | default |
//! |---|---|---|
//! | `RUNPOD_API_KEY` | the `RunPod` API key (secret) | none |
//! | `RUNPOD_POD_ID` | the pod rpb manages; written back after a pod is created | none |
//! | `RUNPOD_NETWORK_VOLUME_ID` | the network volume the workspace uses; written by `rpb volume create --use` | none |
//! | `VNC_PASSWORD` | password of the VNC desktop (secret) | none |
//! | `RUNPOD_SSH_KEY` | SSH private key; `~/` and paths relative to the `.env` directory work | `~/.runpod/ssh/RunPod-Key-Go` |
//! | `RUNPOD_GPU_TYPE` | GPU type id for new pods, e.g. `NVIDIA GeForce RTX 4090` | chosen by the caller |
//! | `RUNPOD_GPU_COUNT` | GPUs per new pod | chosen by the caller |
//! | `RUNPOD_CLOUD_TYPE` | `SECURE` or `COMMUNITY` | chosen by the caller |
//! | `RUNPOD_VOLUME_GB` | size of the persistent `/runpod` volume of new pods, in GB | chosen by the caller |
//! | `RUNPOD_CONTAINER_DISK_GB` | container disk of new pods, in GB | chosen by the caller |
//! | `RUNPOD_IMAGE` | container image of new pods | chosen by the caller |
//! | `RPB_MCP_PORT` | local port of the tunnel to Blender's MCP socket | `9876` |
//! | `RPB_CONTROL_PORT` | local port of the tunnel to rpb's own command socket in Blender | `9877` |
//! | `RPB_VNC_PORT` | local port of the tunnel to the VNC server | `5900` |
//! | `RPB_NOVNC_PORT` | local port of the tunnel to noVNC (the browser view) | `6080` |
//!
//! Other keys are allowed and kept untouched. Empty values count as unset.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use secrecy::{ExposeSecret, SecretString};

use crate::dotenv::{Document, Issue};
use crate::error::{Error, Result};

/// The keys of the `.env` file that this crate understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConfigKey {
    /// `RUNPOD_API_KEY` (secret).
    ApiKey,
    /// `RUNPOD_POD_ID`.
    PodId,
    /// `RUNPOD_NETWORK_VOLUME_ID`.
    NetworkVolumeId,
    /// `VNC_PASSWORD` (secret).
    VncPassword,
    /// `RUNPOD_SSH_KEY`.
    SshKey,
    /// `RUNPOD_GPU_TYPE`.
    GpuType,
    /// `RUNPOD_GPU_COUNT`.
    GpuCount,
    /// `RUNPOD_CLOUD_TYPE`.
    CloudType,
    /// `RUNPOD_VOLUME_GB`.
    VolumeGb,
    /// `RUNPOD_CONTAINER_DISK_GB`.
    ContainerDiskGb,
    /// `RUNPOD_IMAGE`.
    Image,
    /// `RPB_MCP_PORT`.
    McpPort,
    /// `RPB_CONTROL_PORT`.
    ControlPort,
    /// `RPB_VNC_PORT`.
    VncPort,
    /// `RPB_NOVNC_PORT`.
    NoVncPort,
}

impl ConfigKey {
    /// Every key, in the order the template lists them.
    pub const ALL: [ConfigKey; 15] = [
        Self::ApiKey,
        Self::PodId,
        Self::NetworkVolumeId,
        Self::VncPassword,
        Self::SshKey,
        Self::GpuType,
        Self::GpuCount,
        Self::CloudType,
        Self::VolumeGb,
        Self::ContainerDiskGb,
        Self::Image,
        Self::McpPort,
        Self::ControlPort,
        Self::VncPort,
        Self::NoVncPort,
    ];

    /// The name used in the file.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ApiKey => "RUNPOD_API_KEY",
            Self::PodId => "RUNPOD_POD_ID",
            Self::NetworkVolumeId => "RUNPOD_NETWORK_VOLUME_ID",
            Self::VncPassword => "VNC_PASSWORD",
            Self::SshKey => "RUNPOD_SSH_KEY",
            Self::GpuType => "RUNPOD_GPU_TYPE",
            Self::GpuCount => "RUNPOD_GPU_COUNT",
            Self::CloudType => "RUNPOD_CLOUD_TYPE",
            Self::VolumeGb => "RUNPOD_VOLUME_GB",
            Self::ContainerDiskGb => "RUNPOD_CONTAINER_DISK_GB",
            Self::Image => "RUNPOD_IMAGE",
            Self::McpPort => "RPB_MCP_PORT",
            Self::ControlPort => "RPB_CONTROL_PORT",
            Self::VncPort => "RPB_VNC_PORT",
            Self::NoVncPort => "RPB_NOVNC_PORT",
        }
    }

    /// Whether the value is a secret (never logged, held as [`SecretString`]).
    pub const fn is_secret(self) -> bool {
        matches!(self, Self::ApiKey | Self::VncPassword)
    }

    /// Checks that `value` is acceptable for this key (empty always is: it means unset).
    /// Returns a description of the expected form, without the value.
    fn validate(self, value: &str) -> Result<(), String> {
        if value.is_empty() {
            return Ok(());
        }
        match self {
            Self::GpuCount | Self::VolumeGb | Self::ContainerDiskGb => {
                parse_positive(value).map(drop)
            }
            Self::McpPort | Self::ControlPort | Self::VncPort | Self::NoVncPort => {
                parse_port(value).map(drop)
            }
            Self::CloudType => value.parse::<CloudType>().map(drop),
            Self::PodId | Self::NetworkVolumeId => {
                let what = if self == Self::PodId {
                    "a pod id"
                } else {
                    "a network volume id"
                };
                if value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                {
                    Ok(())
                } else {
                    Err(format!("{what} is made of letters, digits, `-` and `_`"))
                }
            }
            Self::ApiKey | Self::VncPassword | Self::SshKey | Self::GpuType | Self::Image => {
                if value.contains(['\n', '\r']) {
                    Err("the value must be a single line".to_owned())
                } else {
                    Ok(())
                }
            }
        }
    }
}

impl fmt::Display for ConfigKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ConfigKey {
    type Err = UnknownConfigKey;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|key| key.as_str() == s)
            .ok_or_else(|| UnknownConfigKey { key: s.to_owned() })
    }
}

/// A string that names none of the [`ConfigKey`]s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key:?} is not a known rpb setting")]
pub struct UnknownConfigKey {
    /// The string that was given.
    pub key: String,
}

fn parse_positive(value: &str) -> Result<u32, String> {
    match value.parse::<u32>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err("expected a whole number greater than 0".to_owned()),
    }
}

fn parse_port(value: &str) -> Result<u16, String> {
    match value.parse::<u16>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err("expected a port number from 1 to 65535".to_owned()),
    }
}

/// The cloud types of new pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloudType {
    /// `SECURE`: the provider's own data centers.
    Secure,
    /// `COMMUNITY`: community hosts.
    Community,
}

impl CloudType {
    /// The name used by the API and in `.env` (`SECURE`, `COMMUNITY`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Secure => "SECURE",
            Self::Community => "COMMUNITY",
        }
    }
}

impl fmt::Display for CloudType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CloudType {
    type Err = String;

    /// Case-insensitive `SECURE` or `COMMUNITY`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("secure") {
            Ok(Self::Secure)
        } else if s.eq_ignore_ascii_case("community") {
            Ok(Self::Community)
        } else {
            Err("expected SECURE or COMMUNITY".to_owned())
        }
    }
}

/// Local ports of the tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Ports {
    /// Blender's MCP socket (`RPB_MCP_PORT`, default 9876).
    pub mcp: u16,
    /// rpb's own commands to Blender (`RPB_CONTROL_PORT`, default 9877).
    pub control: u16,
    /// The VNC server (`RPB_VNC_PORT`, default 5900).
    pub vnc: u16,
    /// noVNC, the browser view (`RPB_NOVNC_PORT`, default 6080).
    pub novnc: u16,
}

impl Default for Ports {
    fn default() -> Self {
        Self {
            mcp: 9876,
            control: 9877,
            vnc: 5900,
            novnc: 6080,
        }
    }
}

/// Something worth telling the user about the workspace that does not stop the operation.
///
/// Every warning is also logged with `tracing::warn!` when it is found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Warning {
    /// A `.env` line was not understood (it is kept verbatim and otherwise ignored), or a key
    /// is defined more than once.
    Line {
        /// The `.env` file.
        path: PathBuf,
        /// The problem and its line number.
        issue: Issue,
    },
    /// A known key has a value of the wrong form; the default is used instead.
    InvalidValue {
        /// The `.env` file.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
        /// The key.
        key: ConfigKey,
        /// What the value should look like (never the value itself).
        expected: String,
    },
    /// The `.env` file holds a secret and can be read by group or others.
    InsecurePermissions {
        /// The `.env` file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// `git` is not installed, so the workspace was not made a git repository.
    GitNotFound {
        /// The workspace root.
        path: PathBuf,
    },
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Line { path, issue } => write!(
                f,
                "{}:{}: {}; the line is ignored",
                path.display(),
                issue.line,
                issue.kind
            ),
            Self::InvalidValue {
                path,
                line,
                key,
                expected,
            } => write!(
                f,
                "{}:{line}: invalid value for {key}: {expected}; using the default",
                path.display()
            ),
            Self::InsecurePermissions { path, mode } => write!(
                f,
                "{path} holds secrets but can be read by other users (mode {mode:04o}); \
                 run `chmod 600 {path}`",
                path = path.display()
            ),
            Self::GitNotFound { path } => write!(
                f,
                "git is not installed, so {} was not made a git repository; install git \
                 and run init again to track your projects",
                path.display()
            ),
        }
    }
}

impl Warning {
    pub(crate) fn log(&self) {
        tracing::warn!(warning = %self, "workspace warning");
    }
}

/// The settings read from a `.env` file.
///
/// Secrets are [`SecretString`]s, so `Debug` output never shows them.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// The file the settings were read from.
    pub env_file: PathBuf,
    /// `RUNPOD_API_KEY`.
    pub api_key: Option<SecretString>,
    /// `RUNPOD_POD_ID`.
    pub pod_id: Option<String>,
    /// `RUNPOD_NETWORK_VOLUME_ID`.
    pub network_volume_id: Option<String>,
    /// `VNC_PASSWORD`.
    pub vnc_password: Option<SecretString>,
    /// `RUNPOD_SSH_KEY`, with `~/` expanded and relative paths resolved against the directory
    /// of the `.env` file; defaults to `~/.runpod/ssh/RunPod-Key-Go`. `None` only when it is
    /// unset and no home directory is known.
    pub ssh_key: Option<PathBuf>,
    /// `RUNPOD_GPU_TYPE`.
    pub gpu_type: Option<String>,
    /// `RUNPOD_GPU_COUNT`.
    pub gpu_count: Option<u32>,
    /// `RUNPOD_CLOUD_TYPE`.
    pub cloud_type: Option<CloudType>,
    /// `RUNPOD_VOLUME_GB`.
    pub volume_gb: Option<u32>,
    /// `RUNPOD_CONTAINER_DISK_GB`.
    pub container_disk_gb: Option<u32>,
    /// `RUNPOD_IMAGE`.
    pub image: Option<String>,
    /// `RPB_MCP_PORT`, `RPB_CONTROL_PORT`, `RPB_VNC_PORT`, `RPB_NOVNC_PORT`.
    pub ports: Ports,
    /// Problems found while reading (also logged with `tracing`).
    pub warnings: Vec<Warning>,
}

/// The default SSH key location, relative to the home directory, as in the manual workflow.
pub const DEFAULT_SSH_KEY: &str = ".runpod/ssh/RunPod-Key-Go";

impl Config {
    /// Builds the typed view of a parsed document. Pure: `mode` is the file's permission bits
    /// (if known) and `home` the home directory used for `~/` and the default SSH key.
    pub fn from_document(
        document: &Document,
        env_file: impl Into<PathBuf>,
        mode: Option<u32>,
        home: Option<&Path>,
    ) -> Self {
        let env_file = env_file.into();
        let mut warnings: Vec<Warning> = document
            .issues()
            .into_iter()
            .map(|issue| Warning::Line {
                path: env_file.clone(),
                issue,
            })
            .collect();
        let mut config = Self {
            env_file: env_file.clone(),
            api_key: None,
            pod_id: None,
            network_volume_id: None,
            vnc_password: None,
            ssh_key: home.map(|home| home.join(DEFAULT_SSH_KEY)),
            gpu_type: None,
            gpu_count: None,
            cloud_type: None,
            volume_gb: None,
            container_disk_gb: None,
            image: None,
            ports: Ports::default(),
            warnings: Vec::new(),
        };
        for entry in document.effective_entries() {
            let Ok(key) = entry.key().parse::<ConfigKey>() else {
                continue;
            };
            // Unquoted values are already trimmed; quoted ones are kept exactly as written.
            let value = entry.value();
            if value.is_empty() {
                continue;
            }
            if let Err(expected) = config.apply(key, value, home) {
                warnings.push(Warning::InvalidValue {
                    path: env_file.clone(),
                    line: entry.line(),
                    key,
                    expected,
                });
            }
        }
        if let Some(mode) = mode
            && mode & 0o077 != 0
            && (config.api_key.is_some() || config.vnc_password.is_some())
        {
            warnings.push(Warning::InsecurePermissions {
                path: env_file,
                mode,
            });
        }
        config.warnings = warnings;
        config
    }

    fn apply(&mut self, key: ConfigKey, value: &str, home: Option<&Path>) -> Result<(), String> {
        key.validate(value)?;
        match key {
            ConfigKey::ApiKey => self.api_key = Some(value.into()),
            ConfigKey::PodId => self.pod_id = Some(value.to_owned()),
            ConfigKey::NetworkVolumeId => self.network_volume_id = Some(value.to_owned()),
            ConfigKey::VncPassword => self.vnc_password = Some(value.into()),
            ConfigKey::SshKey => {
                self.ssh_key = Some(resolve_user_path(value, home, &self.env_file)?);
            }
            ConfigKey::GpuType => self.gpu_type = Some(value.to_owned()),
            ConfigKey::GpuCount => self.gpu_count = Some(parse_positive(value)?),
            ConfigKey::CloudType => self.cloud_type = Some(value.parse()?),
            ConfigKey::VolumeGb => self.volume_gb = Some(parse_positive(value)?),
            ConfigKey::ContainerDiskGb => self.container_disk_gb = Some(parse_positive(value)?),
            ConfigKey::Image => self.image = Some(value.to_owned()),
            ConfigKey::McpPort => self.ports.mcp = parse_port(value)?,
            ConfigKey::ControlPort => self.ports.control = parse_port(value)?,
            ConfigKey::VncPort => self.ports.vnc = parse_port(value)?,
            ConfigKey::NoVncPort => self.ports.novnc = parse_port(value)?,
        }
        Ok(())
    }

    /// The API key.
    ///
    /// # Errors
    ///
    /// [`Error::MissingSetting`] when `RUNPOD_API_KEY` is unset or empty.
    pub fn require_api_key(&self) -> Result<&SecretString> {
        self.api_key
            .as_ref()
            .ok_or_else(|| self.missing(ConfigKey::ApiKey))
    }

    /// The pod id.
    ///
    /// # Errors
    ///
    /// [`Error::MissingSetting`] when `RUNPOD_POD_ID` is unset or empty.
    pub fn require_pod_id(&self) -> Result<&str> {
        self.pod_id
            .as_deref()
            .ok_or_else(|| self.missing(ConfigKey::PodId))
    }

    /// The VNC password.
    ///
    /// # Errors
    ///
    /// [`Error::MissingSetting`] when `VNC_PASSWORD` is unset or empty.
    pub fn require_vnc_password(&self) -> Result<&SecretString> {
        self.vnc_password
            .as_ref()
            .ok_or_else(|| self.missing(ConfigKey::VncPassword))
    }

    /// The SSH private key path.
    ///
    /// # Errors
    ///
    /// [`Error::MissingSetting`] when `RUNPOD_SSH_KEY` is unset and no home directory is known.
    pub fn require_ssh_key(&self) -> Result<&Path> {
        self.ssh_key
            .as_deref()
            .ok_or_else(|| self.missing(ConfigKey::SshKey))
    }

    fn missing(&self, key: ConfigKey) -> Error {
        Error::MissingSetting {
            key: key.as_str(),
            path: self.env_file.clone(),
        }
    }

    /// Whether any secret is set (used for the permission check).
    pub fn has_secrets(&self) -> bool {
        self.api_key
            .as_ref()
            .is_some_and(|s| !s.expose_secret().is_empty())
            || self
                .vnc_password
                .as_ref()
                .is_some_and(|s| !s.expose_secret().is_empty())
    }
}

/// Expands `~/` with `home` and resolves a relative path against the `.env` directory.
fn resolve_user_path(value: &str, home: Option<&Path>, env_file: &Path) -> Result<PathBuf, String> {
    if let Some(rest) = value.strip_prefix("~/") {
        return home
            .map(|home| home.join(rest))
            .ok_or_else(|| "`~/` cannot be expanded: no home directory is known".to_owned());
    }
    let path = Path::new(value);
    if path.is_absolute() {
        Ok(path.to_path_buf())
    } else {
        Ok(crate::fsutil::parent_dir(env_file).join(path))
    }
}

/// Validates `value` for `key` before writing it.
pub(crate) fn validate_for_write(key: &str, value: &str, path: &Path) -> Result<()> {
    let reject = |reason: String| Error::InvalidConfigValue {
        key: key.to_owned(),
        path: path.to_path_buf(),
        reason,
    };
    if let Ok(known) = key.parse::<ConfigKey>() {
        known.validate(value).map_err(reject)?;
    }
    Ok(())
}

/// The `.env` written by [`crate::Store::init`] when none exists.
pub const ENV_TEMPLATE: &str = "\
# rpb workspace settings. This file holds secrets: keep it private (mode 0600),
# never commit it (it is git-ignored). Lines are KEY=VALUE; quote values with
# spaces or special characters: KEY='two words'. Lines starting with # are comments.

# Your RunPod API key (RunPod console > Settings > API Keys).
RUNPOD_API_KEY=
# The pod rpb manages; filled in when rpb creates a pod.
RUNPOD_POD_ID=
# Password of the VNC desktop you open in the browser.
VNC_PASSWORD=

# Optional settings (remove the leading # to use one):
# RUNPOD_NETWORK_VOLUME_ID=
# RUNPOD_SSH_KEY=~/.runpod/ssh/RunPod-Key-Go
# RUNPOD_GPU_TYPE='NVIDIA GeForce RTX 4090'
# RUNPOD_GPU_COUNT=1
# RUNPOD_CLOUD_TYPE=SECURE
# RUNPOD_VOLUME_GB=50
# RUNPOD_CONTAINER_DISK_GB=20
# RUNPOD_IMAGE=
# RPB_MCP_PORT=9876
# RPB_CONTROL_PORT=9877
# RPB_VNC_PORT=5900
# RPB_NOVNC_PORT=6080
";

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    fn config(text: &str, mode: Option<u32>) -> Config {
        Config::from_document(
            &Document::parse(text.as_bytes()),
            "/w/.env",
            mode,
            Some(Path::new("/home/u")),
        )
    }

    #[test]
    fn template_lists_every_key_and_parses_clean() {
        for key in ConfigKey::ALL {
            assert!(
                ENV_TEMPLATE.contains(key.as_str()),
                "{key} missing from the template"
            );
        }
        let config = config(ENV_TEMPLATE, Some(0o600));
        assert!(config.warnings.is_empty(), "{:?}", config.warnings);
        assert!(config.api_key.is_none() && config.pod_id.is_none());
        assert_eq!(
            config.ssh_key.as_deref(),
            Some(Path::new("/home/u/.runpod/ssh/RunPod-Key-Go"))
        );
        assert_eq!(config.ports, Ports::default());
    }

    #[test]
    fn typed_values() {
        let config = config(
            "RUNPOD_API_KEY=rpa_x\nRUNPOD_POD_ID=abc123\nVNC_PASSWORD=\"p w\"\n\
             RUNPOD_SSH_KEY=keys/id\nRUNPOD_GPU_TYPE='NVIDIA A40'\nRUNPOD_GPU_COUNT=2\n\
             RUNPOD_CLOUD_TYPE=community\nRUNPOD_VOLUME_GB=40\nRUNPOD_CONTAINER_DISK_GB=10\n\
             RUNPOD_IMAGE=runpod/base:1\nRPB_MCP_PORT=19876\nRPB_VNC_PORT=15900\n\
             RPB_NOVNC_PORT=16080\nOTHER=1\n",
            Some(0o600),
        );
        assert!(config.warnings.is_empty(), "{:?}", config.warnings);
        assert_eq!(config.api_key.as_ref().unwrap().expose_secret(), "rpa_x");
        assert_eq!(config.require_pod_id().unwrap(), "abc123");
        assert_eq!(config.vnc_password.as_ref().unwrap().expose_secret(), "p w");
        assert_eq!(config.ssh_key.as_deref(), Some(Path::new("/w/keys/id")));
        assert_eq!(config.gpu_type.as_deref(), Some("NVIDIA A40"));
        assert_eq!(config.gpu_count, Some(2));
        assert_eq!(config.cloud_type, Some(CloudType::Community));
        assert_eq!(
            (config.volume_gb, config.container_disk_gb),
            (Some(40), Some(10))
        );
        assert_eq!(config.image.as_deref(), Some("runpod/base:1"));
        assert_eq!(
            config.ports,
            Ports {
                mcp: 19876,
                control: 9877,
                vnc: 15900,
                novnc: 16080
            }
        );
        let shown = format!("{config:?}");
        assert!(
            !shown.contains("rpa_x") && !shown.contains("p w"),
            "{shown}"
        );
    }

    #[test]
    fn invalid_values_warn_and_fall_back() {
        let config = config(
            "RPB_MCP_PORT=0\nRUNPOD_CLOUD_TYPE=moon\nRUNPOD_SSH_KEY=~/k\n",
            None,
        );
        assert_eq!(config.ports.mcp, 9876);
        assert_eq!(config.cloud_type, None);
        assert_eq!(config.ssh_key.as_deref(), Some(Path::new("/home/u/k")));
        let lines: Vec<_> = config
            .warnings
            .iter()
            .map(|w| match w {
                Warning::InvalidValue { line, key, .. } => (*line, *key),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(
            lines,
            vec![(1, ConfigKey::McpPort), (2, ConfigKey::CloudType)]
        );
        assert_eq!(
            config.warnings[0].to_string(),
            "/w/.env:1: invalid value for RPB_MCP_PORT: expected a port number from 1 to 65535; \
             using the default"
        );
    }

    #[test]
    fn permission_warning_only_with_secrets_and_loose_mode() {
        let insecure = |text: &str, mode| {
            config(text, Some(mode))
                .warnings
                .iter()
                .any(|w| matches!(w, Warning::InsecurePermissions { .. }))
        };
        assert!(insecure("RUNPOD_API_KEY=x\n", 0o644));
        assert!(insecure("VNC_PASSWORD=x\n", 0o640));
        assert!(!insecure("RUNPOD_API_KEY=x\n", 0o600));
        assert!(!insecure("RUNPOD_API_KEY=\nRUNPOD_POD_ID=x\n", 0o644));
        let warning = Warning::InsecurePermissions {
            path: "/w/.env".into(),
            mode: 0o644,
        };
        assert_eq!(
            warning.to_string(),
            "/w/.env holds secrets but can be read by other users (mode 0644); \
             run `chmod 600 /w/.env`"
        );
    }

    #[test]
    fn require_reports_the_key_and_file() {
        let err = config("", None).require_api_key().unwrap_err();
        assert_eq!(
            err.to_string(),
            "RUNPOD_API_KEY is not set in /w/.env; add a line `RUNPOD_API_KEY=...` to that file"
        );
    }

    #[test]
    fn validate_for_write_rejects_bad_typed_values() {
        let path = Path::new("/w/.env");
        assert!(validate_for_write("RPB_NOVNC_PORT", "70000", path).is_err());
        assert!(validate_for_write("RUNPOD_POD_ID", "a b", path).is_err());
        assert!(validate_for_write("RUNPOD_POD_ID", "", path).is_ok());
        assert!(validate_for_write("ANYTHING", "a\nb", path).is_ok());
    }
}
