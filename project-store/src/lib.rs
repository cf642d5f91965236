//! The local side of [rpb](https://github.com/rpb-dev/rpb): the workspace directory, its
//! `.env` configuration, and Blender projects with their saved `.blend` versions.
//!
//! This crate knows the local layout and nothing about networks. Its main handle is
//! [`Store`]; everything is synchronous and touches only local files.
//!
//! ```no_run
//! use project_store::{ConfigKey, OnExisting, ProjectName, Source, Store};
//!
//! # fn main() -> project_store::Result<()> {
//! // ~/blender-files/runpod, or $RPB_HOME; its `.env` (never one in the current folder).
//! let store = Store::builder().build()?;
//! let report = store.init()?; // idempotent: creates only what is missing
//! for warning in &report.warnings {
//!     eprintln!("warning: {warning}");
//! }
//!
//! // Typed settings; secrets stay `SecretString`s. Writing one key keeps every other byte.
//! let config = store.set_config(ConfigKey::PodId, "abc123")?;
//! assert_eq!(config.pod_id.as_deref(), Some("abc123"));
//!
//! // Projects and versioned saves with a manifest (size, SHA-256, time, source).
//! let name = ProjectName::new("robot-arm")?;
//! store.create_project(&name, OnExisting::Reuse)?;
//! let saved = store
//!     .save_version(&name, "scene")
//!     .source(Source::pod("abc123", "/runpod/projects/robot-arm/scene.blend"))
//!     .copy_from_file("/tmp/scene.blend")?;
//! println!("saved {} ({} bytes, sha256 {})", saved.name, saved.size, saved.sha256);
//! let latest = store.latest_version(&name)?.expect("just saved");
//! assert_eq!(latest.name, saved.name);
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//!
//! ```text
//! ~/blender-files/runpod/          the root: Store::builder().root(..), else $RPB_HOME
//! ├── .env                         settings and secrets, mode 0600, git-ignored
//! ├── .env.lock                    serializes concurrent updates of .env
//! ├── .gitignore                   .env, .env.lock, .DS_Store, *.blend1, __pycache__/, .rpb/
//! ├── .git/                        `git init` when git is installed
//! ├── .rpb/                        the tool's private state (locks, tunnel state), 0700
//! └── projects/<name>/             one directory per project
//!     ├── rpb-manifest.json        saved versions and tracked files (see [`project`])
//!     └── scene-20261130-141502.blend
//! ```
//!
//! The `.env` file is an explicit path ([`StoreBuilder::env_file`]), else `<root>/.env`. A
//! `.env` in the current directory is never read implicitly (a cloned repository's `.env` could
//! send the API key elsewhere); [`Store::ignored_env_file`] finds one to tell the user about,
//! and [`Store::env_file_source`] says why the file in use was chosen.
//!
//! # Settings
//!
//! The keys a user can set in `.env` are listed in the [`config`] module docs (API key, pod
//! id, VNC password, SSH key, GPU type and count, cloud type, volume and disk sizes, image,
//! local tunnel ports). The syntax is the usual dotenv one, described in [`dotenv`].
//! Problems that do not stop the work (a malformed line, an invalid value, a `.env` with
//! secrets readable by others) are returned as [`Warning`]s and logged with
//! `tracing::warn!`.
//!
//! # Errors
//!
//! Every fallible call returns [`Error`], whose variants carry the path concerned and whose
//! messages say how to fix the problem; the underlying IO or JSON error is its `source()`.
//! A damaged manifest is reported, never silently reset.

pub mod config;
pub mod dotenv;
mod error;
mod fsutil;
mod name;
pub mod project;
mod store;

pub use config::{CloudType, Config, ConfigKey, Ports, Warning};
pub use error::{Error, Result};
pub use project::{FileEntry, FileKind, InvalidName, Manifest, Project, ProjectName, Source};
pub use store::{
    DEFAULT_LOCK_TIMEOUT, DEFAULT_ROOT, ENV_FILE, EnvFileSource, GITIGNORE_ENTRIES, GitStatus,
    InitReport, MAX_ENV_FILE_BYTES, OnExisting, PROJECTS_DIR, RPB_HOME, STATE_DIR, SaveVersion,
    Store, StoreBuilder, discover_env_file, resolve_root,
};

/// Re-exported so callers use the same `Timestamp` as [`FileEntry::saved_at`].
pub use jiff;
/// Re-exported so callers use the same `SecretString` as [`Config`].
pub use secrecy;
