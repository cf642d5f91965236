//! Everything a session needs to know about where to work, resolved from three layers with a
//! fixed precedence: explicit values (command-line flags), then the process environment, then
//! the workspace's `.env` file.
//!
//! Besides the keys of [`project_store::ConfigKey`], a profile reads:
//!
//! | key | meaning | default |
//! |---|---|---|
//! | `RUNPOD_API_URL` | base URL of a RunPod REST v2 server (the simulator included) | `https://api.runpod.io/v2` |
//! | `RPB_SSH_USER` | log in as this user instead of the one the API reports | the API's (`root`) |
//! | `RPB_POD_ROOT` | the pod's persistent volume: an absolute path needing no shell quoting | `/runpod` |
//! | `RPB_POD_MCP_PORT`, `RPB_POD_CONTROL_PORT`, `RPB_POD_VNC_PORT`, `RPB_POD_NOVNC_PORT` | pod-side ports of the session | 9876, 9877, 5900, 6080 |
//! | `RPB_MCP_ADDON` | who serves the MCP port: `upstream` (the blender-mcp addon of the pinned [`mcp-for-blender`](crate::mcp::UPSTREAM_VERSION) release, downloaded by the pod) or `rpb` (rpb's own addon, for pods without internet) | `upstream` |
//! | `RPB_BLENDER_VERSION` | the Blender setup installs on a new pod | [`DEFAULT_BLENDER_VERSION`](crate::assets::DEFAULT_BLENDER_VERSION) |
//! | `RPB_PRICE_VOLUME_GB_MONTH`, `RPB_PRICE_VOLUME_STOPPED_GB_MONTH`, `RPB_PRICE_NETWORK_VOLUME_GB_MONTH`, `RPB_PRICE_NETWORK_VOLUME_LARGE_GB_MONTH` | storage prices in USD per GB-month, for cost estimates | [`StoragePrices::default`] |
//! | `RPB_BLENDER_SHA256` | the SHA-256 its archive must match, or `unverified`; required with another version | the default version's, embedded |
//!
//! ```no_run
//! # fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use blender_session::profile::Profile;
//!
//! let store = project_store::Store::open("/home/me/blender-files/runpod")?;
//! let profile = Profile::resolve(&store, &[("RUNPOD_POD_ID", "7h9k2m4n6p".into())], |key| {
//!     std::env::var(key).ok()
//! })?;
//! let orchestrator = profile.orchestrator(&store)?;
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use project_store::dotenv::Document;
use project_store::{Config, ConfigKey, Store};
use secrecy::SecretString;

use crate::adapters::{RunpodProvider, SshConnector};
use crate::assets::{BLENDER_SHA256_KEY, BLENDER_VERSION_KEY, BlenderRelease};
use crate::costs::{PRICE_KEYS, StoragePrices};
use crate::seams::TunnelPorts;
use crate::{Error, Orchestrator, Result, SessionSettings};

/// `RUNPOD_API_URL`.
pub const API_URL: &str = "RUNPOD_API_URL";
/// `RPB_SSH_USER`.
pub const SSH_USER: &str = "RPB_SSH_USER";
/// `RPB_POD_ROOT`.
pub const POD_ROOT: &str = "RPB_POD_ROOT";
/// `RPB_POD_MCP_PORT`.
pub const POD_MCP_PORT: &str = "RPB_POD_MCP_PORT";
/// `RPB_POD_CONTROL_PORT`.
pub const POD_CONTROL_PORT: &str = "RPB_POD_CONTROL_PORT";
/// `RPB_POD_VNC_PORT`.
pub const POD_VNC_PORT: &str = "RPB_POD_VNC_PORT";
/// `RPB_POD_NOVNC_PORT`.
pub const POD_NOVNC_PORT: &str = "RPB_POD_NOVNC_PORT";

/// `RPB_TUNNEL_RECONNECTS`: how many times a lost tunnel tries to reconnect before it gives up
/// (a number, or `unlimited`).
pub const TUNNEL_RECONNECTS: &str = "RPB_TUNNEL_RECONNECTS";

/// `RUNPOD_GPU_TYPES`: the GPU types a pod that replaces another on a network volume may have,
/// comma-separated, in order of preference.
pub const GPU_TYPES: &str = "RUNPOD_GPU_TYPES";

/// The keys a profile reads beyond [`ConfigKey`].
pub const EXTRA_KEYS: [&str; 12] = [
    GPU_TYPES,
    API_URL,
    SSH_USER,
    POD_ROOT,
    POD_MCP_PORT,
    POD_CONTROL_PORT,
    crate::mcp::MCP_ADDON_KEY,
    POD_VNC_PORT,
    POD_NOVNC_PORT,
    TUNNEL_RECONNECTS,
    BLENDER_VERSION_KEY,
    BLENDER_SHA256_KEY,
];

/// The resolved settings.
#[derive(Clone)]
#[non_exhaustive]
pub struct Profile {
    /// The typed settings, after precedence (secrets stay [`SecretString`]s).
    pub config: Config,
    /// `RUNPOD_API_URL`, when set.
    pub api_url: Option<String>,
    /// `RPB_SSH_USER`, when set.
    pub ssh_user: Option<String>,
    /// `RPB_POD_ROOT`.
    pub pod_root: String,
    /// Whether `RPB_POD_ROOT` was given (else `pod_root` is the default, and `rpb adopt` takes
    /// the pod's own volume path).
    pub pod_root_set: bool,
    /// The pod-side ports.
    pub remote_ports: TunnelPorts,
    /// The local tunnel ports.
    pub local_ports: TunnelPorts,
    /// `RPB_TUNNEL_RECONNECTS`, when set (`unlimited` is [`u32::MAX`]). Unset, tunnels use
    /// [`SshConnector`]'s default; a caller that keeps a tunnel for hours may raise it.
    pub tunnel_reconnects: Option<u32>,
    /// `RPB_BLENDER_VERSION` and `RPB_BLENDER_SHA256`: the Blender setup installs.
    pub blender: BlenderRelease,
    /// `RPB_MCP_ADDON`: who serves the MCP port on the pod.
    pub mcp_addon: crate::mcp::McpAddon,
    /// `RPB_PRICE_*`: the storage price table, with the workspace's overrides.
    pub storage_prices: StoragePrices,
    /// `RUNPOD_GPU_TYPES`, in order (empty when unset).
    pub gpu_types: Vec<String>,
}

impl fmt::Debug for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Profile")
            .field("config", &self.config)
            .field("api_url", &self.api_url)
            .field("ssh_user", &self.ssh_user)
            .field("pod_root_set", &self.pod_root_set)
            .field("pod_root", &self.pod_root)
            .field("remote_ports", &self.remote_ports)
            .field("local_ports", &self.local_ports)
            .field("tunnel_reconnects", &self.tunnel_reconnects)
            .field("blender", &self.blender)
            .field("mcp_addon", &self.mcp_addon)
            .field("storage_prices", &self.storage_prices)
            .field("gpu_types", &self.gpu_types)
            .finish()
    }
}

impl Profile {
    /// Resolves every key: `explicit` first, then `environment(key)`, then the store's `.env`
    /// (which may be missing). Empty values count as unset.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] when the `.env` exists and cannot be read, [`Error::Settings`] for a
    /// value that does not parse (naming the key), for an `RPB_POD_ROOT` that is not a plain
    /// absolute path, and for an `RPB_BLENDER_VERSION` other than the default without
    /// `RPB_BLENDER_SHA256`.
    pub fn resolve(
        store: &Store,
        explicit: &[(&str, String)],
        environment: impl Fn(&str) -> Option<String>,
    ) -> Result<Self> {
        let mut document = store
            .load_env_document()
            .map_err(Error::store("reading the workspace .env"))?
            .unwrap_or_else(|| Document::parse(b""));
        let keys = ConfigKey::ALL
            .iter()
            .map(|key| key.as_str())
            .chain(EXTRA_KEYS)
            .chain(PRICE_KEYS);
        for key in keys {
            let value = explicit
                .iter()
                .find(|(name, value)| *name == key && !value.is_empty())
                .map(|(_, value)| value.clone())
                .or_else(|| environment(key).filter(|value| !value.is_empty()));
            if let Some(value) = value {
                document
                    .set(key, &value)
                    .map_err(|_| Error::Settings(format!("{key} is not a valid key")))?;
            }
        }
        let mode = std::fs::metadata(store.env_file()).ok().map(|meta| {
            use std::os::unix::fs::PermissionsExt as _;
            meta.permissions().mode() & 0o7777
        });
        let config = Config::from_document(&document, store.env_file(), mode, store.home_dir());
        let text = |key: &str| {
            document
                .get(key)
                .filter(|value| !value.is_empty())
                .map(str::to_owned)
        };
        let port = |key: &str, default: u16| -> Result<u16> {
            text(key).map_or(Ok(default), |value| {
                value
                    .parse()
                    .map_err(|_| Error::Settings(format!("{key} must be a port number (1-65535)")))
            })
        };
        let remote_ports = TunnelPorts {
            mcp: port(POD_MCP_PORT, 9876)?,
            control: port(POD_CONTROL_PORT, 9877)?,
            vnc: port(POD_VNC_PORT, 5900)?,
            novnc: port(POD_NOVNC_PORT, 6080)?,
        };
        let local_ports = TunnelPorts {
            mcp: config.ports.mcp,
            control: config.ports.control,
            vnc: config.ports.vnc,
            novnc: config.ports.novnc,
        };
        let tunnel_reconnects = text(TUNNEL_RECONNECTS)
            .map(|value| match value.trim() {
                "unlimited" => Ok(u32::MAX),
                number => number
                    .parse::<u32>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| {
                        Error::Settings(format!(
                            "{TUNNEL_RECONNECTS} must be a number of attempts (1 or more) or \
                         `unlimited`, not {number:?}"
                        ))
                    }),
            })
            .transpose()?;
        let blender = BlenderRelease::from_settings(
            text(BLENDER_VERSION_KEY).as_deref(),
            text(BLENDER_SHA256_KEY).as_deref(),
        )?;
        let mcp_addon = text(crate::mcp::MCP_ADDON_KEY)
            .map(|value| value.parse().map_err(Error::Settings))
            .transpose()?
            .unwrap_or_default();
        let storage_prices = StoragePrices::from_settings(text)?;
        let gpu_types = text(GPU_TYPES)
            .map(|list| {
                list.split(',')
                    .map(str::trim)
                    .filter(|gpu| !gpu.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        Ok(Self {
            storage_prices,
            gpu_types,
            api_url: text(API_URL),
            ssh_user: text(SSH_USER),
            pod_root: text(POD_ROOT).map_or_else(|| Ok("/runpod".into()), checked_pod_root)?,
            pod_root_set: text(POD_ROOT).is_some(),
            remote_ports,
            local_ports,
            tunnel_reconnects,
            blender,
            mcp_addon,
            config,
        })
    }

    /// A RunPod client for `RUNPOD_API_URL` with `RUNPOD_API_KEY`.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] naming `RUNPOD_API_KEY` and the `.env` when no key is set, and
    /// [`Error::Provider`] when the client cannot be built (a bad URL).
    pub fn client(&self) -> Result<runpod_api::Client> {
        let key = self
            .config
            .require_api_key()
            .map_err(Error::store("creating the RunPod API client"))?
            .clone();
        let mut builder = runpod_api::Client::builder().api_key(key);
        if let Some(url) = &self.api_url {
            builder = builder.base_url(url);
        }
        builder.build().map_err(|source| Error::Provider {
            operation: "configuring the runpod api client".into(),
            source: Box::new(source),
        })
    }

    /// The VNC password, when set.
    pub fn vnc_password(&self) -> Option<&SecretString> {
        self.config.vnc_password.as_ref()
    }

    /// The spec of a new pod named `name` from these settings (`RUNPOD_IMAGE`,
    /// `RUNPOD_GPU_TYPE`, `RUNPOD_GPU_COUNT`, `RUNPOD_CLOUD_TYPE`, `RUNPOD_VOLUME_GB`,
    /// `RUNPOD_CONTAINER_DISK_GB`, the pod root), with [`PodSpec::new`](crate::seams::PodSpec::new)'s defaults for the rest.
    pub fn pod_spec(&self, name: impl Into<String>) -> crate::seams::PodSpec {
        let config = &self.config;
        let defaults = crate::seams::PodSpec::new(name).pod_root(self.pod_root.clone());
        crate::seams::PodSpec {
            image: config.image.clone().unwrap_or(defaults.image.clone()),
            gpu_type: config.gpu_type.clone().unwrap_or(defaults.gpu_type.clone()),
            gpu_count: config.gpu_count.unwrap_or(defaults.gpu_count),
            cloud: match config.cloud_type {
                Some(project_store::CloudType::Community) => runpod_api::models::Cloud::Community,
                _ => runpod_api::models::Cloud::Secure,
            },
            volume_gb: config.volume_gb.unwrap_or(defaults.volume_gb),
            disk_gb: config.container_disk_gb.unwrap_or(defaults.disk_gb),
            network_volume: config.network_volume_id.clone(),
            ..defaults
        }
    }

    /// Session settings from this profile (pod root, ports, VNC password, Blender release).
    ///
    /// # Errors
    ///
    /// [`Error::Store`] naming `VNC_PASSWORD` when it is unset.
    pub fn session_settings(&self) -> Result<SessionSettings> {
        let password = self
            .config
            .require_vnc_password()
            .map_err(Error::store("preparing the session settings"))?;
        let mut settings = SessionSettings::new(password.clone());
        settings.pod_root.clone_from(&self.pod_root);
        settings.remote_ports = self.remote_ports;
        settings.local_ports = self.local_ports;
        settings.blender.clone_from(&self.blender);
        settings.mcp_addon = self.mcp_addon;
        settings.storage_prices = self.storage_prices;
        settings
            .network_volume
            .clone_from(&self.config.network_volume_id);
        settings.gpu_types.clone_from(&self.gpu_types);
        settings.replacement = Some(self.pod_spec("rpb-blender"));
        Ok(settings)
    }

    /// The SSH private key.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] when no key is set and no home directory is known.
    pub fn ssh_key(&self) -> Result<PathBuf> {
        self.config
            .require_ssh_key()
            .map(std::path::Path::to_owned)
            .map_err(Error::store("finding the SSH key"))
    }

    /// An orchestrator over RunPod's API and SSH, pinning host keys in
    /// `<state dir>/known_hosts`, recording created pods in the store's `.env`.
    ///
    /// # Errors
    ///
    /// As [`Profile::client`], [`Profile::session_settings`] and [`Profile::ssh_key`].
    pub fn orchestrator(&self, store: &Store) -> Result<Orchestrator> {
        self.orchestrator_with(store, self.session_settings()?)
    }

    /// As [`Profile::orchestrator`], with explicit settings.
    ///
    /// # Errors
    ///
    /// As [`Profile::client`] and [`Profile::ssh_key`].
    pub fn orchestrator_with(
        &self,
        store: &Store,
        settings: SessionSettings,
    ) -> Result<Orchestrator> {
        let mut provider = RunpodProvider::new(self.client()?);
        if let Some(user) = &self.ssh_user {
            provider = provider.with_ssh_user(user);
        }
        let mut connector =
            SshConnector::new(self.ssh_key()?, store.state_dir().join("known_hosts"));
        if let Some(attempts) = self.tunnel_reconnects {
            connector = connector.with_reconnect_attempts(attempts);
        }
        Ok(
            Orchestrator::new(Arc::new(provider), Arc::new(connector), settings)
                .with_store(store.clone()),
        )
    }
}

/// `RPB_POD_ROOT` ends up in remote command lines, some built as strings (the pod's start
/// command among them), so it must be an absolute path that needs no shell quoting at all.
fn checked_pod_root(value: String) -> Result<String> {
    if value.starts_with('/') && pod_tunnel::shell::quote(&value) == value {
        return Ok(value);
    }
    Err(Error::Settings(format!(
        "{POD_ROOT} must be an absolute path of letters, digits and `_./:@%+=,-` (no spaces, \
         quotes or other shell characters), not {value:?}"
    )))
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret as _;

    use super::*;

    #[test]
    fn tunnel_reconnects_take_a_count_or_unlimited() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::builder()
            .root(dir.path())
            .ignore_environment()
            .build()
            .expect("store");
        let resolve = |value: &str| {
            let value = value.to_owned();
            Profile::resolve(&store, &[], move |key: &str| {
                (key == TUNNEL_RECONNECTS).then(|| value.clone())
            })
        };
        assert_eq!(resolve("3").expect("3").tunnel_reconnects, Some(3));
        assert_eq!(
            resolve("unlimited").expect("unlimited").tunnel_reconnects,
            Some(u32::MAX)
        );
        assert_eq!(resolve("").expect("unset").tunnel_reconnects, None);
        for bad in ["0", "-1", "many"] {
            let error = resolve(bad).expect_err(bad).to_string();
            assert!(
                error.contains(TUNNEL_RECONNECTS) && error.contains("unlimited"),
                "{error}"
            );
        }
    }

    #[test]
    fn flags_beat_the_environment_which_beats_the_env_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::builder()
            .root(dir.path())
            .ignore_environment()
            .build()
            .expect("store");
        std::fs::write(
            store.env_file(),
            "RUNPOD_API_KEY=from-file\nRUNPOD_POD_ID=file-pod\nRPB_POD_ROOT=/file\nRPB_MCP_PORT=1111\n",
        )
        .expect("write");
        let environment = |key: &str| match key {
            "RUNPOD_POD_ID" => Some("env-pod".to_owned()),
            "RPB_POD_ROOT" => Some("/env".to_owned()),
            "RUNPOD_API_URL" => Some(String::new()),
            _ => None,
        };
        let profile = Profile::resolve(&store, &[("RPB_POD_ROOT", "/flag".into())], environment)
            .expect("profile");
        assert_eq!(
            profile
                .config
                .api_key
                .as_ref()
                .map(|key| key.expose_secret().to_owned()),
            Some("from-file".into())
        );
        assert_eq!(profile.config.pod_id.as_deref(), Some("env-pod"));
        assert_eq!(profile.pod_root, "/flag");
        assert_eq!(profile.local_ports.mcp, 1111);
        assert_eq!(profile.remote_ports.mcp, 9876);
        assert_eq!(profile.api_url, None);
    }

    #[test]
    fn the_pod_root_is_an_absolute_path_without_shell_characters() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::builder()
            .root(dir.path())
            .ignore_environment()
            .build()
            .expect("store");
        let resolve = |value: &str| {
            let value = value.to_owned();
            Profile::resolve(&store, &[], move |key: &str| {
                (key == POD_ROOT).then(|| value.clone())
            })
        };
        for good in [
            "/runpod",
            "/workspace/",
            "/tmp/.tmpAb3_x/runpod",
            "/data/v1.2+x",
        ] {
            assert_eq!(resolve(good).expect(good).pod_root, good);
        }
        for bad in [
            "/x'; touch /tmp/pwned; '",
            "/x$(touch /tmp/pwned)",
            "/my volume",
            "/x`id`",
            "/x\nid",
            "/x;id",
            "/x\"",
            "runpod",
            "~/runpod",
        ] {
            let error = resolve(bad).map(|_| ()).expect_err(bad).to_string();
            assert!(
                error.contains("RPB_POD_ROOT must be an absolute path"),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn a_bad_port_names_its_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::builder()
            .root(dir.path())
            .ignore_environment()
            .build()
            .expect("store");
        let error = Profile::resolve(&store, &[(POD_MCP_PORT, "x".into())], |_| None)
            .expect_err("bad port");
        assert!(error.to_string().contains("RPB_POD_MCP_PORT"), "{error}");
    }
    #[test]
    fn the_blender_release_reaches_the_session_settings_and_needs_a_checksum() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::builder()
            .root(dir.path())
            .ignore_environment()
            .build()
            .expect("store");
        let hex = "cd".repeat(32);
        std::fs::write(
            store.env_file(),
            format!("VNC_PASSWORD=pw123456\nRPB_BLENDER_VERSION=4.5.2\nRPB_BLENDER_SHA256={hex}\n"),
        )
        .expect("write");
        let profile = Profile::resolve(&store, &[], |_| None).expect("profile");
        let settings = profile.session_settings().expect("settings");
        assert_eq!(settings.blender.version, "4.5.2");
        assert_eq!(settings.blender.checksum.as_setting(), hex);

        std::fs::write(store.env_file(), "RPB_BLENDER_VERSION=5.0.0\n").expect("write");
        let error = Profile::resolve(&store, &[], |_| None).expect_err("no checksum for 5.0.0");
        assert!(
            error
                .to_string()
                .contains("RPB_BLENDER_VERSION=5.0.0 needs RPB_BLENDER_SHA256"),
            "{error}"
        );
        let unchecked =
            Profile::resolve(&store, &[(BLENDER_SHA256_KEY, "unverified".into())], |_| {
                None
            })
            .expect("explicit opt-out");
        assert_eq!(
            unchecked.blender.checksum,
            crate::assets::Checksum::Unverified
        );
    }
}
