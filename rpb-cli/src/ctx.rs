//! What every command needs: the global options, the workspace, the settings, and the
//! small helpers that turn them into library calls.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use blender_session::daemon;
use blender_session::profile::Profile;
use blender_session::seams::TunnelPorts;
use blender_session::{Event, Orchestrator, Session};
use clap::Args;
use project_store::{ConfigKey, Store};
use secrecy::{ExposeSecret as _, SecretString};

use crate::global::Global;
use crate::output::{Outcome, Progress};

/// What every command needs: the global options and the workspace.
pub(crate) struct Ctx {
    pub(crate) global: Global,
    pub(crate) store: Store,
}

impl Ctx {
    pub(crate) fn new(global: Global) -> anyhow::Result<Self> {
        let mut builder = Store::builder();
        if let Some(root) = &global.workspace {
            builder = builder.root(root);
        }
        if let Some(env_file) = &global.env_file {
            builder = builder.env_file(env_file);
        }
        let store = builder.build().context("choosing the workspace")?;
        if store.ignored_env_file().is_some() {
            // A cloned repository's .env must not configure rpb; say so, once.
            crate::output::hint(
                &global,
                &format!(
                    "ignoring ./.env in the current folder; rpb reads {} (use --env-file ./.env \
                     to use it)",
                    store.env_file().display(),
                ),
            );
        }
        Ok(Self { global, store })
    }

    /// The settings: `explicit` (flags), then the environment, then `.env`.
    pub(crate) fn profile_with(&self, explicit: &[(&str, String)]) -> anyhow::Result<Profile> {
        Profile::resolve(&self.store, explicit, |key| std::env::var(key).ok())
            .with_context(|| format!("reading the settings ({})", self.store.env_file().display()))
    }

    pub(crate) fn profile(&self) -> anyhow::Result<Profile> {
        self.profile_with(&[])
    }

    pub(crate) fn progress(&self) -> Progress {
        Progress::new(&self.global)
    }

    /// Says on stderr what the command is about to do (not with `-q` or `--json`).
    pub(crate) fn notice(&self, text: &str) {
        crate::output::notice(&self.global, text);
    }

    /// Prints the outcome and returns its exit code.
    #[expect(clippy::print_stdout, reason = "the CLI prints its results on stdout")]
    pub(crate) fn finish(&self, outcome: &Outcome) -> ExitCode {
        if self.global.json {
            if outcome.json.is_null() {
                return ExitCode::from(outcome.code);
            }
            println!(
                "{}",
                serde_json::to_string_pretty(&outcome.json).unwrap_or_default()
            );
        } else if !outcome.human.is_empty() {
            println!("{}", outcome.human.trim_end());
        }
        ExitCode::from(outcome.code)
    }

    pub(crate) fn state_dir(&self) -> anyhow::Result<PathBuf> {
        let dir = self.store.state_dir();
        std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
            .create(&dir)
            .with_context(|| format!("creating the state folder {}", dir.display()))?;
        Ok(dir)
    }
}

/// `--pod-id`, for commands about one pod.
#[derive(Debug, Clone, Args)]
pub(crate) struct PodArgs {
    /// The pod [env: RUNPOD_POD_ID; default: RUNPOD_POD_ID in .env].
    #[arg(long, value_name = "ID")]
    pub(crate) pod_id: Option<String>,
}

impl PodArgs {
    pub(crate) fn explicit(&self) -> Vec<(&'static str, String)> {
        self.pod_id
            .iter()
            .map(|id| (ConfigKey::PodId.as_str(), id.clone()))
            .collect()
    }
}

pub(crate) fn pod_id_of(profile: &Profile) -> anyhow::Result<String> {
    Ok(profile
        .config
        .require_pod_id()
        .context("no pod chosen: pass --pod-id, set RUNPOD_POD_ID, or run `rpb create`")?
        .to_owned())
}

pub(crate) fn sink(progress: &Progress) -> impl Fn(&Event) + Send + Sync + use<> {
    let progress = progress.clone();
    move |event: &Event| progress.event(event)
}

// ---------------------------------------------------------------------------------------------
// init

pub(crate) fn random_secret() -> SecretString {
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzACDEFGHJKLMNPQRTUVWXY34679";
    let text: String = (0..16)
        .map(|_| char::from(ALPHABET[rand::random_range(0..ALPHABET.len())]))
        .collect();
    SecretString::from(text)
}

pub(crate) fn random_password() -> SecretString {
    random_secret()
}

/// The environment handed to a background process: the resolved secrets, never in argv.
pub(crate) fn secret_env(profile: &Profile) -> Vec<(&'static str, String)> {
    let mut env = Vec::new();
    if let Some(key) = &profile.config.api_key {
        env.push(("RUNPOD_API_KEY", key.expose_secret().to_owned()));
    }
    if let Some(password) = &profile.config.vnc_password {
        env.push(("VNC_PASSWORD", password.expose_secret().to_owned()));
    }
    env
}

/// Session settings from the profile that work without a VNC password (for commands that do
/// not start the session).
pub(crate) fn loose_settings(profile: &Profile) -> blender_session::SessionSettings {
    let password = profile
        .vnc_password()
        .cloned()
        .unwrap_or_else(|| SecretString::from(String::new()));
    let mut settings = blender_session::SessionSettings::new(password);
    settings.pod_root.clone_from(&profile.pod_root);
    settings.remote_ports = profile.remote_ports;
    settings.local_ports = profile.local_ports;
    // Commands that re-run setup (new assets) install the configured Blender, not the default.
    settings.blender.clone_from(&profile.blender);
    settings.storage_prices = profile.storage_prices;
    settings
}

/// Attaches to the running session: SSH now, MCP through the background tunnel.
pub(crate) async fn attach(
    ctx: &Ctx,
    pod: &PodArgs,
    progress: &Progress,
) -> anyhow::Result<(Orchestrator, Session)> {
    let profile = ctx.profile_with(&pod.explicit())?;
    let pod_id = pod_id_of(&profile)?;
    // Blender only through this workspace's tunnel to this very pod: never a default port,
    // where another pod's tunnel (or another program) may listen. Without one the session
    // has SSH only, and commands that need Blender fail with `Error::NoTunnel`.
    let ports = match blender_ports(ctx, &pod_id) {
        Ok(ports) => ports,
        Err(why) => {
            tracing::info!("{why:#}");
            TunnelPorts {
                mcp: 0,
                control: 0,
                vnc: 0,
                novnc: 0,
            }
        }
    };
    let orchestrator = profile.orchestrator_with(&ctx.store, loose_settings(&profile))?;
    let session = orchestrator.attach(&pod_id, ports, &sink(progress)).await?;
    Ok((orchestrator, session))
}

/// The local ports of this workspace's background tunnel when it serves `pod_id`; an error
/// saying what to do otherwise (no tunnel, or one to another pod).
pub(crate) fn blender_ports(ctx: &Ctx, pod_id: &str) -> anyhow::Result<TunnelPorts> {
    match daemon::status(&ctx.store.state_dir())? {
        daemon::TunnelStatus::Running(record) if record.pod_id == pod_id => Ok(TunnelPorts {
            mcp: record.mcp_port,
            control: record.control_port,
            vnc: record.vnc_port,
            novnc: record.novnc_port,
        }),
        daemon::TunnelStatus::Running(record) => anyhow::bail!(
            "the background tunnel serves pod {}, not pod {pod_id}; run `rpb tunnel down`, then \
             `rpb tunnel up --pod-id {pod_id}`",
            record.pod_id
        ),
        _ => anyhow::bail!(
            "no background tunnel to pod {pod_id} runs, so its Blender cannot be reached; run \
             `rpb start` or `rpb tunnel up`"
        ),
    }
}

/// The public half of the SSH key `private` (`<private>.pub`), as one line.
pub(crate) fn read_public_key(private: &std::path::Path) -> anyhow::Result<String> {
    let mut public = private.as_os_str().to_owned();
    public.push(".pub");
    let public = std::path::PathBuf::from(public);
    Ok(std::fs::read_to_string(&public)
        .with_context(|| {
            format!(
                "reading the public key {} (run `rpb init`)",
                public.display()
            )
        })?
        .trim()
        .to_owned())
}

/// `--blender VERSION [--blender-sha256 HEX]`: the Blender release setup installs on the pod.
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct BlenderArgs {
    /// The Blender release the pod's setup installs, e.g. 5.0.1; the pod is set up again when
    /// it changes, and it is saved in .env [env: RPB_BLENDER_VERSION; default: 4.5.3, the
    /// tested LTS].
    #[arg(long = "blender", value_name = "VERSION")]
    version: Option<String>,
    /// The SHA-256 of that release's blender-VERSION-linux-x64.tar.xz (from its .sha256 file on
    /// download.blender.org), or `unverified`; required for any release but the default
    /// [env: RPB_BLENDER_SHA256].
    #[arg(long = "blender-sha256", value_name = "HEX", requires = "version")]
    sha256: Option<String>,
}

impl BlenderArgs {
    /// The flags as explicit settings (the profile checks their form). A release's checksum
    /// comes with it, never from `.env`, where it may be another release's.
    pub(crate) fn explicit(&self) -> anyhow::Result<Vec<(&'static str, String)>> {
        use blender_session::assets::{
            BLENDER_SHA256_KEY, BLENDER_VERSION_KEY, DEFAULT_BLENDER_SHA256,
            DEFAULT_BLENDER_VERSION,
        };
        let Some(version) = &self.version else {
            return Ok(Vec::new());
        };
        let sha256 = match &self.sha256 {
            Some(sha256) => sha256.clone(),
            None if version.trim() == DEFAULT_BLENDER_VERSION => DEFAULT_BLENDER_SHA256.to_owned(),
            None => anyhow::bail!(
                "--blender {version} needs --blender-sha256: the SHA-256 of \
                 blender-{version}-linux-x64.tar.xz, listed in blender-{version}.sha256 next to \
                 it on download.blender.org (or `unverified` to install it unchecked); only \
                 {DEFAULT_BLENDER_VERSION} has its checksum built in"
            ),
        };
        Ok(vec![
            (BLENDER_VERSION_KEY, version.trim().to_owned()),
            (BLENDER_SHA256_KEY, sha256),
        ])
    }

    /// Saves the flags in `.env` once the pod has that release, so later commands keep it.
    pub(crate) fn save(&self, store: &Store, pod_id: &str) -> anyhow::Result<()> {
        for (key, value) in self.explicit()? {
            store.set_env_var(key, &value).with_context(|| {
                format!(
                    "pod {pod_id} was set up with Blender {}, but saving {key} in .env failed: \
                     add it by hand",
                    self.version.as_deref().unwrap_or_default()
                )
            })?;
        }
        Ok(())
    }
}
