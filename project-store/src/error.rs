//! The crate's error type.

use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use crate::name::InvalidName;

/// Everything that can go wrong in `project-store`.
///
/// Filesystem failures carry the path they concern; the underlying cause is available through
/// [`std::error::Error::source`] and is never repeated in the message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No workspace root could be chosen: no explicit path, no `RPB_HOME`, no home directory.
    #[error(
        "cannot locate the rpb workspace: no home directory is known; \
         set RPB_HOME or pass a workspace path"
    )]
    NoWorkspaceRoot,

    /// The current directory could not be read (needed to resolve relative paths).
    #[error("failed to read the current directory; pass absolute paths instead")]
    CurrentDir {
        /// The underlying IO error.
        #[source]
        source: io::Error,
    },

    /// A directory of the workspace could not be created.
    #[error("failed to create directory {path}; check that its parent exists and is writable")]
    CreateDirectory {
        /// The directory.
        path: PathBuf,
        /// The underlying IO error.
        #[source]
        source: io::Error,
    },

    /// The `.env` file does not exist.
    #[error("config file {path} does not exist; initialize the workspace first (`rpb init`)")]
    ConfigNotFound {
        /// Where it was expected.
        path: PathBuf,
    },

    /// The `.env` file could not be read.
    #[error("failed to read config file {path}; check that it exists and that you can read it")]
    ReadConfig {
        /// The `.env` file.
        path: PathBuf,
        /// The underlying IO error.
        #[source]
        source: io::Error,
    },

    /// The `.env` path is not a regular file (a directory, a FIFO, a device, ...).
    #[error(
        "config file {path} is not a regular file; replace it with a plain text file of \
         KEY=value lines"
    )]
    ConfigNotAFile {
        /// The `.env` file.
        path: PathBuf,
    },

    /// The `.env` file is larger than any settings file should be.
    #[error(
        "config file {path} is larger than {max} bytes, so it is not a settings file; check \
         that the path is right and remove whatever was written there"
    )]
    ConfigTooLarge {
        /// The `.env` file.
        path: PathBuf,
        /// The limit in bytes.
        max: u64,
    },

    /// The `.env` file could not be written (created, replaced or synced).
    #[error(
        "failed to write config file {path}; check that its directory is writable and the disk \
         is not full (the previous file was left untouched)"
    )]
    WriteConfig {
        /// The `.env` file.
        path: PathBuf,
        /// The underlying IO error.
        #[source]
        source: io::Error,
    },

    /// A key given for an update is not a valid `.env` key.
    #[error(transparent)]
    InvalidConfigKey(#[from] crate::dotenv::InvalidKey),

    /// A value given for a typed setting does not parse, so it was not written.
    #[error("refusing to set {key} in {path}: {reason}")]
    InvalidConfigValue {
        /// The key, e.g. `RPB_MCP_PORT`.
        key: String,
        /// The `.env` file that was left unchanged.
        path: PathBuf,
        /// What the value should look like (never the value itself).
        reason: String,
    },

    /// A setting the caller requires is absent or empty.
    #[error("{key} is not set in {path}; add a line `{key}=...` to that file")]
    MissingSetting {
        /// The key, e.g. `RUNPOD_API_KEY`.
        key: &'static str,
        /// The `.env` file that was read.
        path: PathBuf,
    },

    /// A lock file could not be opened or locked.
    #[error("failed to lock {path}; check that its directory is writable")]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// The underlying IO error.
        #[source]
        source: io::Error,
    },

    /// Another process held a lock for too long.
    #[error(
        "timed out after {timeout:?} waiting for the lock {path}; another rpb process is \
         updating the workspace, wait for it to finish or stop it"
    )]
    LockTimeout {
        /// The lock file.
        path: PathBuf,
        /// How long we waited.
        timeout: Duration,
    },

    /// The workspace `.gitignore` could not be read or written.
    #[error("failed to update {path}; check that you can read and write it")]
    UpdateGitignore {
        /// The `.gitignore` file.
        path: PathBuf,
        /// The underlying IO error.
        #[source]
        source: io::Error,
    },

    /// `git init` could not be run (other than git being absent, which is not an error).
    #[error("failed to run `git init` in {path}")]
    GitInit {
        /// The workspace root.
        path: PathBuf,
        /// The underlying IO error.
        #[source]
        source: io::Error,
    },

    /// `git init` ran and failed.
    #[error("`git init` in {path} failed ({status}): {stderr}")]
    GitInitFailed {
        /// The workspace root.
        path: PathBuf,
        /// Its exit status.
        status: ExitStatus,
        /// What git printed on stderr, trimmed.
        stderr: String,
    },

    /// `git init` did not finish in time.
    #[error("`git init` in {path} did not finish within {timeout:?}; it was stopped")]
    GitInitTimeout {
        /// The workspace root.
        path: PathBuf,
        /// How long we waited.
        timeout: Duration,
    },

    /// A project name was rejected.
    #[error("invalid project name {name:?}")]
    InvalidProjectName {
        /// The rejected name.
        name: String,
        /// Why.
        #[source]
        source: InvalidName,
    },

    /// A version stem (the `scene` in `scene-20261130-141502.blend`) was rejected.
    #[error("invalid version name {stem:?}")]
    InvalidStem {
        /// The rejected stem.
        stem: String,
        /// Why.
        #[source]
        source: InvalidName,
    },

    /// The project does not exist.
    #[error("project {name} does not exist at {path}; create it first (`rpb project new {name}`)")]
    ProjectNotFound {
        /// The project name.
        name: String,
        /// Where it was expected.
        path: PathBuf,
    },

    /// The project exists and the caller asked for [`crate::OnExisting::Fail`].
    #[error("project {name} already exists at {path}; pick another name or reuse it")]
    ProjectExists {
        /// The project name.
        name: String,
        /// Its directory.
        path: PathBuf,
    },

    /// The projects directory could not be listed.
    #[error("failed to list projects in {path}; check that you can read it")]
    ListProjects {
        /// The `projects/` directory.
        path: PathBuf,
        /// The underlying IO error.
        #[source]
        source: io::Error,
    },

    /// A manifest could not be read.
    #[error("failed to read manifest {path}; check that you can read it")]
    ReadManifest {
        /// The manifest file.
        path: PathBuf,
        /// The underlying IO error.
        #[source]
        source: io::Error,
    },

    /// A manifest is not valid JSON (for example truncated). It is never reset automatically.
    #[error(
        "manifest {path} is corrupt or truncated; restore it (for example with \
         `git checkout -- {path}`) or move it aside, it is never reset automatically"
    )]
    ParseManifest {
        /// The manifest file.
        path: PathBuf,
        /// The JSON error, with line and column.
        #[source]
        source: serde_json::Error,
    },

    /// A manifest was written by a newer version of this crate.
    #[error("manifest {path} has format version {version}, newer than this rpb; upgrade rpb")]
    UnsupportedManifest {
        /// The manifest file.
        path: PathBuf,
        /// The format version found.
        version: u32,
    },

    /// A manifest could not be written.
    #[error(
        "failed to write manifest {path}; check that the project directory is writable and the \
         disk is not full (the previous manifest was left untouched)"
    )]
    WriteManifest {
        /// The manifest file.
        path: PathBuf,
        /// The underlying IO error.
        #[source]
        source: io::Error,
    },

    /// Reading the content of a version to save failed (the caller's reader returned an error).
    #[error("failed to read the data of the new version of project {project}; nothing was saved")]
    ReadVersionSource {
        /// The project name.
        project: String,
        /// The underlying IO error.
        #[source]
        source: io::Error,
    },

    /// Writing a file into a project failed.
    #[error(
        "failed to write {path}; check that the project directory is writable and the disk \
         is not full (no partial file was left in place)"
    )]
    WriteProjectFile {
        /// The file (or, before it got its final name, the project directory).
        path: PathBuf,
        /// The underlying IO error.
        #[source]
        source: io::Error,
    },

    /// Reading a project file (to hash it) failed.
    #[error("failed to read {path}; check that it exists and that you can read it")]
    ReadProjectFile {
        /// The file.
        path: PathBuf,
        /// The underlying IO error.
        #[source]
        source: io::Error,
    },

    /// A file to track is not a relative path inside the project.
    #[error(
        "{path} is not a path inside the project; give a relative path without `..` \
         (for example `renders/frame-001.png`)"
    )]
    InvalidTrackedPath {
        /// The rejected path.
        path: PathBuf,
    },

    /// The data written did not match the expected SHA-256.
    #[error(
        "checksum mismatch for the new version of project {project}: expected {expected}, got \
         {actual}; the transfer was corrupted, nothing was saved, try again"
    )]
    ChecksumMismatch {
        /// The project name.
        project: String,
        /// The expected SHA-256 (lowercase hex).
        expected: String,
        /// The SHA-256 of the data received.
        actual: String,
    },

    /// No version matches the request.
    #[error(
        "project {project} has no version matching {spec:?}; list the versions to see \
         what exists"
    )]
    VersionNotFound {
        /// The project name.
        project: String,
        /// What was asked for (`latest`, a stem or a file name).
        spec: String,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn public_types_are_thread_safe() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<Error>();
        assert_send_sync::<crate::Store>();
        assert_send_sync::<crate::Config>();
        assert_send_sync::<crate::Project>();
    }

    #[test]
    fn error_sanity() {
        let err = Error::WriteConfig {
            path: "/w/.env".into(),
            source: io::Error::new(io::ErrorKind::PermissionDenied, "denied"),
        };
        let message = err.to_string();
        assert!(
            message.starts_with("failed to write config file /w/.env"),
            "{message}"
        );
        assert!(
            !message.contains("denied"),
            "the source is not repeated: {message}"
        );
        assert_eq!(
            err.source().map(ToString::to_string).as_deref(),
            Some("denied")
        );

        let err = Error::InvalidProjectName {
            name: "a/b".into(),
            source: InvalidName::Empty,
        };
        assert!(err.source().is_some());
        assert!(Error::NoWorkspaceRoot.source().is_none());
    }

    #[test]
    fn messages_are_lowercase_without_trailing_period() {
        let errors = [
            Error::NoWorkspaceRoot,
            Error::ConfigNotFound {
                path: "/w/.env".into(),
            },
            Error::LockTimeout {
                path: "/w/.env.lock".into(),
                timeout: Duration::from_secs(1),
            },
            Error::ProjectNotFound {
                name: "p".into(),
                path: "/w/projects/p".into(),
            },
        ];
        for err in errors {
            let message = err.to_string();
            assert!(
                message.chars().next().is_some_and(|c| !c.is_uppercase()),
                "{message}"
            );
            assert!(!message.ends_with('.'), "{message}");
        }
    }
}
