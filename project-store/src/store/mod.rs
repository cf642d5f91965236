//! [`Store`], the handle on one workspace.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use crate::config::{self, Config, ConfigKey, ENV_TEMPLATE, Warning};
use crate::dotenv::Document;
use crate::error::{Error, Result};
use crate::fsutil::{self, PRIVATE_DIR_MODE, PRIVATE_FILE_MODE, PUBLIC_FILE_MODE};
use crate::project::{
    self, FileEntry, FileKind, MANIFEST_FILE, MANIFEST_FORMAT, Manifest, Project, ProjectName,
    Source,
};

/// The environment variable that overrides the workspace root.
pub const RPB_HOME: &str = "RPB_HOME";
/// The workspace root relative to the home directory, as in the manual workflow.
pub const DEFAULT_ROOT: &str = "blender-files/runpod";
/// The name of the `.env` file.
pub const ENV_FILE: &str = ".env";
/// The projects directory inside the workspace.
pub const PROJECTS_DIR: &str = "projects";
/// The tool's private state directory inside the workspace (git-ignored).
pub const STATE_DIR: &str = ".rpb";
/// The lines `init` makes sure the workspace `.gitignore` has.
pub const GITIGNORE_ENTRIES: [&str; 7] = [
    ".env",
    ".env.lock",
    ".env.*.tmp",
    ".DS_Store",
    "*.blend1",
    "__pycache__/",
    ".rpb/",
];

/// The default for [`StoreBuilder::lock_timeout`].
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(10);
const GIT_INIT_TIMEOUT: Duration = Duration::from_secs(30);
const COPY_BUFFER: usize = 64 * 1024;
/// The largest `.env` file read, in bytes: a settings file is a few hundred bytes, so anything
/// this large is a mistake (or a symlink to a device) and is refused rather than loaded.
pub const MAX_ENV_FILE_BYTES: u64 = 1024 * 1024;

/// Chooses the workspace root: `explicit`, else a non-empty `RPB_HOME`, else
/// `<home>/blender-files/runpod`. Pure, so the rule is testable without touching the
/// environment.
///
/// # Errors
///
/// [`Error::NoWorkspaceRoot`] when none of the three is available.
pub fn resolve_root(
    explicit: Option<&Path>,
    rpb_home: Option<OsString>,
    home: Option<&Path>,
) -> Result<PathBuf> {
    if let Some(root) = explicit {
        return Ok(root.to_path_buf());
    }
    if let Some(root) = rpb_home.filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(root));
    }
    home.map(|home| home.join(DEFAULT_ROOT))
        .ok_or(Error::NoWorkspaceRoot)
}

/// Chooses the `.env` file in the original order: `explicit`, else `<current_dir>/.env` if it
/// exists, else `<root>/.env` (which may not exist yet).
pub fn discover_env_file(
    explicit: Option<&Path>,
    current_dir: Option<&Path>,
    root: &Path,
) -> PathBuf {
    if let Some(path) = explicit {
        return path.to_path_buf();
    }
    if let Some(local) = current_dir
        .map(|dir| dir.join(ENV_FILE))
        .filter(|p| p.is_file())
    {
        return local;
    }
    root.join(ENV_FILE)
}

/// What to do when creating something that already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OnExisting {
    /// Use the existing one (idempotent create).
    #[default]
    Reuse,
    /// Fail with an error.
    Fail,
}

/// The outcome of `git init` during [`Store::init`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum GitStatus {
    /// The workspace was made a git repository now.
    Initialized,
    /// It already was one.
    AlreadyRepository,
    /// `git` is not installed (a [`Warning::GitNotFound`] says so).
    GitNotFound,
}

/// What [`Store::init`] did.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct InitReport {
    /// Files and directories created by this call (empty when everything existed).
    pub created: Vec<PathBuf>,
    /// Whether `.gitignore` was created or completed.
    pub gitignore_updated: bool,
    /// The git outcome.
    pub git: GitStatus,
    /// Problems worth telling the user (also logged with `tracing`).
    pub warnings: Vec<Warning>,
}

/// Builds a [`Store`]. See the field docs for defaults.
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct StoreBuilder {
    root: Option<PathBuf>,
    env_file: Option<PathBuf>,
    current_dir: Option<PathBuf>,
    home: Option<PathBuf>,
    ignore_environment: bool,
    lock_timeout: Option<Duration>,
}

impl StoreBuilder {
    /// The workspace root. Default: `$RPB_HOME`, else `~/blender-files/runpod`.
    pub fn root(mut self, root: impl Into<PathBuf>) -> Self {
        self.root = Some(root.into());
        self
    }

    /// An explicit `.env` file. Default: `./.env` if it exists, else `<root>/.env`.
    pub fn env_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.env_file = Some(path.into());
        self
    }

    /// The directory searched for `./.env` and against which relative paths are resolved.
    /// Default: the process's current directory.
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.current_dir = Some(dir.into());
        self
    }

    /// The home directory (for the default root, `~/` in settings and the default SSH key).
    /// Default: [`std::env::home_dir`].
    pub fn home_dir(mut self, home: impl Into<PathBuf>) -> Self {
        self.home = Some(home.into());
        self
    }

    /// Do not read `RPB_HOME`, `HOME` or the current directory from the process; only what
    /// was given to this builder counts. Useful in tests and embedding programs.
    pub fn ignore_environment(mut self) -> Self {
        self.ignore_environment = true;
        self
    }

    /// How long to wait for another process holding a workspace lock. Default: 10 seconds
    /// ([`DEFAULT_LOCK_TIMEOUT`]).
    pub fn lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = Some(timeout);
        self
    }

    /// Resolves the paths. Touches nothing on disk except checking whether `./.env` exists.
    ///
    /// # Errors
    ///
    /// [`Error::NoWorkspaceRoot`] when no root can be chosen, [`Error::CurrentDir`] when a
    /// relative path must be resolved and the current directory cannot be read.
    pub fn build(self) -> Result<Store> {
        let from_env = !self.ignore_environment;
        let home = self
            .home
            .or_else(|| if from_env { std::env::home_dir() } else { None });
        let current_dir = match self.current_dir {
            Some(dir) => Some(dir),
            None if from_env => {
                Some(std::env::current_dir().map_err(|source| Error::CurrentDir { source })?)
            }
            None => None,
        };
        let rpb_home = if from_env {
            std::env::var_os(RPB_HOME)
        } else {
            None
        };
        let absolute = |path: PathBuf| -> Result<PathBuf> {
            if path.is_absolute() {
                return Ok(path);
            }
            match &current_dir {
                Some(dir) => Ok(dir.join(path)),
                None => std::path::absolute(&path).map_err(|source| Error::CurrentDir { source }),
            }
        };
        let root = absolute(resolve_root(
            self.root.as_deref(),
            rpb_home,
            home.as_deref(),
        )?)?;
        let env_file = absolute(discover_env_file(
            self.env_file.as_deref(),
            current_dir.as_deref(),
            &root,
        ))?;
        Ok(Store {
            root,
            env_file,
            home,
            lock_timeout: self.lock_timeout.unwrap_or(DEFAULT_LOCK_TIMEOUT),
        })
    }
}

/// The handle on one rpb workspace: its layout, `.env` configuration and projects.
///
/// ```text
/// ~/blender-files/runpod/          the root (RPB_HOME overrides it)
/// ├── .env                         settings and secrets, mode 0600, git-ignored
/// ├── .gitignore
/// ├── .rpb/                        the tool's private state (locks, tunnel state), git-ignored
/// └── projects/<name>/             one directory per project
///     ├── rpb-manifest.json        saved versions and tracked files
///     └── scene-20261130-141502.blend
/// ```
///
/// All methods are synchronous and only touch local files; from async code call them through
/// `tokio::task::spawn_blocking`.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    env_file: PathBuf,
    home: Option<PathBuf>,
    lock_timeout: Duration,
}

impl Store {
    /// A builder with the defaults.
    pub fn builder() -> StoreBuilder {
        StoreBuilder::default()
    }

    /// A store for the workspace at `root`, with the `.env` discovered as usual.
    ///
    /// # Errors
    ///
    /// As [`StoreBuilder::build`].
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        Self::builder().root(root).build()
    }

    /// The workspace root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The `.env` file in use.
    pub fn env_file(&self) -> &Path {
        &self.env_file
    }

    /// The home directory, when known.
    pub fn home_dir(&self) -> Option<&Path> {
        self.home.as_deref()
    }

    /// `<root>/projects`.
    pub fn projects_dir(&self) -> PathBuf {
        self.root.join(PROJECTS_DIR)
    }

    /// `<root>/.rpb`, the tool's private state directory (created by [`Store::init`]).
    pub fn state_dir(&self) -> PathBuf {
        self.root.join(STATE_DIR)
    }

    /// The directory of project `name` (which may not exist).
    pub fn project_dir(&self, name: &ProjectName) -> PathBuf {
        self.projects_dir().join(name.as_str())
    }

    /// Creates whatever is missing of the workspace, never changing what exists: the root,
    /// `projects/`, `.rpb/` (0700), a `.env` from [`ENV_TEMPLATE`] (0600), a `.gitignore`
    /// excluding [`GITIGNORE_ENTRIES`] (completed if it lacks some), and a git repository
    /// when git is installed. Running it again is harmless.
    ///
    /// # Errors
    ///
    /// [`Error::CreateDirectory`], [`Error::WriteConfig`], [`Error::UpdateGitignore`] when the
    /// workspace is not writable; [`Error::GitInit`], [`Error::GitInitFailed`] or
    /// [`Error::GitInitTimeout`] when git is installed but `git init` fails.
    #[tracing::instrument(skip(self), fields(root = %self.root.display()))]
    pub fn init(&self) -> Result<InitReport> {
        let mut created = Vec::new();
        for (dir, mode) in [
            (self.root.clone(), None),
            (self.projects_dir(), None),
            (self.state_dir(), Some(PRIVATE_DIR_MODE)),
        ] {
            if fsutil::create_dir(&dir, mode)? {
                created.push(dir);
            }
        }
        if self.create_env_from_template()? {
            created.push(self.env_file.clone());
        }
        let gitignore = self.root.join(".gitignore");
        let gitignore_existed = gitignore.exists();
        let gitignore_updated = update_gitignore(&gitignore)?;
        if gitignore_updated && !gitignore_existed {
            created.push(gitignore);
        }
        let mut warnings = Vec::new();
        let git = self.git_init()?;
        if git == GitStatus::GitNotFound {
            let warning = Warning::GitNotFound {
                path: self.root.clone(),
            };
            warning.log();
            warnings.push(warning);
        }
        if self.env_file.exists() {
            // Surface permission and syntax problems of an existing .env now (already logged).
            warnings.extend(self.load_config()?.warnings);
        }
        tracing::debug!(created = created.len(), ?git, "workspace ready");
        Ok(InitReport {
            created,
            gitignore_updated,
            git,
            warnings,
        })
    }

    fn create_env_from_template(&self) -> Result<bool> {
        let path = &self.env_file;
        let map = |source| Error::WriteConfig {
            path: path.clone(),
            source,
        };
        if path.exists() {
            return Ok(false);
        }
        fsutil::create_dir(fsutil::parent_dir(path), None)?;
        let mut file = match fsutil::create_new_options(PRIVATE_FILE_MODE).open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(false),
            Err(e) => return Err(map(e)),
        };
        // The mode given at creation is reduced by the umask; make it exactly 0600.
        fsutil::set_mode(&file, PRIVATE_FILE_MODE).map_err(map)?;
        file.write_all(ENV_TEMPLATE.as_bytes()).map_err(map)?;
        file.sync_all().map_err(map)?;
        fsutil::sync_dir(fsutil::parent_dir(path)).map_err(map)?;
        Ok(true)
    }

    fn git_init(&self) -> Result<GitStatus> {
        if self.root.join(".git").exists() {
            return Ok(GitStatus::AlreadyRepository);
        }
        let spawned = Command::new("git")
            .arg("init")
            .arg("--quiet")
            .arg(&self.root)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(GitStatus::GitNotFound),
            Err(source) => {
                return Err(Error::GitInit {
                    path: self.root.clone(),
                    source,
                });
            }
        };
        let started = Instant::now();
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if started.elapsed() >= GIT_INIT_TIMEOUT => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(Error::GitInitTimeout {
                        path: self.root.clone(),
                        timeout: GIT_INIT_TIMEOUT,
                    });
                }
                Ok(None) => fsutil::pause_for(Duration::from_millis(10)),
                Err(source) => {
                    return Err(Error::GitInit {
                        path: self.root.clone(),
                        source,
                    });
                }
            }
        };
        if status.success() {
            return Ok(GitStatus::Initialized);
        }
        let mut stderr = String::new();
        if let Some(mut pipe) = child.stderr.take() {
            let _ = pipe.read_to_string(&mut stderr);
        }
        Err(Error::GitInitFailed {
            path: self.root.clone(),
            status,
            stderr: stderr.trim().to_owned(),
        })
    }

    /// Reads the `.env` file. Malformed lines, invalid values and loose permissions become
    /// [`Config::warnings`] (and `tracing` warnings); the rest of the file is still used.
    ///
    /// # Errors
    ///
    /// [`Error::ConfigNotFound`] when the file does not exist, [`Error::ReadConfig`] when it
    /// cannot be read.
    pub fn load_config(&self) -> Result<Config> {
        let (document, mode) = self.read_env()?;
        let document = document.ok_or_else(|| Error::ConfigNotFound {
            path: self.env_file.clone(),
        })?;
        let config = Config::from_document(&document, &self.env_file, mode, self.home.as_deref());
        for warning in &config.warnings {
            warning.log();
        }
        Ok(config)
    }

    /// The raw `.env` document, for keys this crate does not know. `Ok(None)` when the file
    /// does not exist.
    ///
    /// # Errors
    ///
    /// [`Error::ReadConfig`] when the file exists but cannot be read.
    pub fn load_env_document(&self) -> Result<Option<Document>> {
        Ok(self.read_env()?.0)
    }

    fn read_env(&self) -> Result<(Option<Document>, Option<u32>)> {
        Ok(match read_env_bytes(&self.env_file)? {
            Some((bytes, mode)) => (Some(Document::parse(&bytes)), mode),
            None => (None, None),
        })
    }

    /// Sets one setting in the `.env` file; see [`Store::set_env_var`]. The value is checked
    /// first (ports are numbers, ...) and nothing is written when it is invalid.
    ///
    /// # Errors
    ///
    /// As [`Store::set_env_var`].
    pub fn set_config(&self, key: ConfigKey, value: &str) -> Result<Config> {
        self.set_env_var(key.as_str(), value)
    }

    /// Sets a secret setting (`RUNPOD_API_KEY`, `VNC_PASSWORD`); see [`Store::set_env_var`].
    ///
    /// # Errors
    ///
    /// As [`Store::set_env_var`].
    pub fn set_secret(&self, key: ConfigKey, value: &SecretString) -> Result<Config> {
        self.set_env_var(key.as_str(), value.expose_secret())
    }

    /// Sets `key` to `value` in the `.env` file, losslessly: only the value of that key's line
    /// changes (its indentation, `export`, inline comment and line ending stay), every other
    /// byte is kept, and the key is appended when absent. The file is created if missing.
    ///
    /// The update holds `<.env>.lock` so concurrent updates from several processes are
    /// serialized and none is lost. The new content is written to a temporary file, fsynced,
    /// given mode 0600 and renamed over the old one, so a crash leaves the old or the new
    /// file, never a half-written one. A symlinked `.env` is updated at its target.
    /// Returns the configuration as re-read under the lock.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfigKey`] / [`Error::InvalidConfigValue`] for a bad key or value,
    /// [`Error::Lock`] / [`Error::LockTimeout`] when the lock cannot be taken,
    /// [`Error::ReadConfig`] / [`Error::WriteConfig`] for IO failures.
    #[tracing::instrument(skip(self, value), fields(env_file = %self.env_file.display()))]
    pub fn set_env_var(&self, key: &str, value: &str) -> Result<Config> {
        let target = fs::canonicalize(&self.env_file).unwrap_or_else(|_| self.env_file.clone());
        if !crate::dotenv::is_valid_key(key) {
            return Err(crate::dotenv::InvalidKey {
                key: key.to_owned(),
            }
            .into());
        }
        config::validate_for_write(key, value, &target)?;
        let _lock = fsutil::lock_exclusive(&fsutil::lock_path_for(&target), self.lock_timeout)?;
        let bytes = read_env_bytes(&target)?
            .map(|(bytes, _)| bytes)
            .unwrap_or_default();
        let mut document = Document::parse(&bytes);
        document.set(key, value)?;
        let new_bytes = document.to_bytes();
        fsutil::write_atomic(&target, &new_bytes, PRIVATE_FILE_MODE).map_err(|source| {
            Error::WriteConfig {
                path: target.clone(),
                source,
            }
        })?;
        tracing::info!(key, "updated setting");
        let config = Config::from_document(
            &document,
            &self.env_file,
            Some(PRIVATE_FILE_MODE),
            self.home.as_deref(),
        );
        for warning in &config.warnings {
            warning.log();
        }
        Ok(config)
    }

    /// Creates project `name` (its directory and an empty manifest).
    ///
    /// # Errors
    ///
    /// [`Error::ProjectExists`] with [`OnExisting::Fail`] when it exists,
    /// [`Error::CreateDirectory`] / [`Error::WriteManifest`] when the workspace is not
    /// writable, and the errors of [`Store::project`] when reusing a project whose manifest
    /// is damaged.
    #[tracing::instrument(skip(self), fields(project = %name))]
    pub fn create_project(&self, name: &ProjectName, on_existing: OnExisting) -> Result<Project> {
        let dir = self.project_dir(name);
        if dir.is_dir() {
            return match on_existing {
                OnExisting::Fail => Err(Error::ProjectExists {
                    name: name.to_string(),
                    path: dir,
                }),
                OnExisting::Reuse => self.project(name),
            };
        }
        fsutil::create_dir(&dir, None)?;
        let _lock = self.lock_manifest(name)?;
        let manifest = if let Some(existing) = self.read_manifest(name, &dir)? {
            existing
        } else {
            let manifest = Manifest::new(name.clone());
            write_manifest(&dir.join(MANIFEST_FILE), &manifest)?;
            manifest
        };
        Ok(Project {
            name: name.clone(),
            dir,
            manifest,
        })
    }

    /// The projects, sorted by name. Entries of `projects/` that are not directories or
    /// whose names are not valid project names (hidden files, ...) are skipped. An absent
    /// `projects/` means no projects.
    ///
    /// # Errors
    ///
    /// [`Error::ListProjects`] when the directory cannot be read.
    pub fn list_projects(&self) -> Result<Vec<ProjectName>> {
        let dir = self.projects_dir();
        let map = |source| Error::ListProjects {
            path: dir.clone(),
            source,
        };
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(map(e)),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(map)?;
            if !entry.path().is_dir() {
                continue;
            }
            if let Some(name) = entry
                .file_name()
                .to_str()
                .and_then(|n| ProjectName::new(n).ok())
            {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    /// Describes project `name`: its directory and manifest (empty if none was written).
    ///
    /// # Errors
    ///
    /// [`Error::ProjectNotFound`] when it does not exist; [`Error::ReadManifest`],
    /// [`Error::ParseManifest`] or [`Error::UnsupportedManifest`] when its manifest cannot be
    /// used (it is never reset).
    pub fn project(&self, name: &ProjectName) -> Result<Project> {
        let dir = self.project_dir(name);
        if !dir.is_dir() {
            return Err(Error::ProjectNotFound {
                name: name.to_string(),
                path: dir,
            });
        }
        let manifest = self
            .read_manifest(name, &dir)?
            .unwrap_or_else(|| Manifest::new(name.clone()));
        Ok(Project {
            name: name.clone(),
            dir,
            manifest,
        })
    }

    /// The saved versions of project `name`, oldest first.
    ///
    /// # Errors
    ///
    /// As [`Store::project`].
    pub fn versions(&self, name: &ProjectName) -> Result<Vec<FileEntry>> {
        Ok(self.project(name)?.versions().cloned().collect())
    }

    /// The latest version of project `name`, if any.
    ///
    /// # Errors
    ///
    /// As [`Store::project`].
    pub fn latest_version(&self, name: &ProjectName) -> Result<Option<FileEntry>> {
        Ok(self.project(name)?.latest().cloned())
    }

    /// Starts saving a new `.blend` version of project `name` under `stem` (`scene` gives
    /// `scene-20261130-141502.blend`); finish with [`SaveVersion::write_from`] or
    /// [`SaveVersion::copy_from_file`].
    pub fn save_version<'a>(&'a self, name: &'a ProjectName, stem: &str) -> SaveVersion<'a> {
        SaveVersion {
            store: self,
            project: name,
            stem: stem.to_owned(),
            source: Source::default(),
            expected_sha256: None,
        }
    }

    /// Records (or refreshes) an existing file of project `name` in its manifest, with its
    /// size and SHA-256. `relative` is a path inside the project directory.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidTrackedPath`] when `relative` leaves the project,
    /// [`Error::ReadProjectFile`] when the file cannot be read, and the manifest errors of
    /// [`Store::project`] and [`Error::WriteManifest`].
    pub fn track_file(
        &self,
        name: &ProjectName,
        relative: impl AsRef<Path>,
        source: Source,
    ) -> Result<FileEntry> {
        let relative = relative.as_ref();
        let entry_name =
            project::tracked_name(relative).ok_or_else(|| Error::InvalidTrackedPath {
                path: relative.to_path_buf(),
            })?;
        let project = self.project(name)?;
        let path = project.dir.join(relative);
        let map = |source| Error::ReadProjectFile {
            path: path.clone(),
            source,
        };
        let mut file = File::open(&path).map_err(map)?;
        let (size, sha256) = hash_copy(&mut file, &mut io::sink()).map_err(|e| match e {
            CopyError::Read(source) | CopyError::Write(source) => map(source),
        })?;
        let entry = FileEntry {
            name: entry_name,
            kind: FileKind::File,
            stem: None,
            size,
            sha256,
            saved_at: Timestamp::now(),
            source,
            extra: serde_json::Map::new(),
        };
        self.update_manifest(name, &project.dir, |manifest| {
            manifest.record(entry.clone());
        })?;
        Ok(entry)
    }

    /// Recomputes the SHA-256 of a recorded file and compares it with the manifest.
    ///
    /// # Errors
    ///
    /// [`Error::ReadProjectFile`] when the file cannot be read.
    pub fn verify(&self, project: &Project, entry: &FileEntry) -> Result<bool> {
        let path = project.path_of(entry);
        let map = |source| Error::ReadProjectFile {
            path: path.clone(),
            source,
        };
        let mut file = File::open(&path).map_err(map)?;
        let (size, sha256) = hash_copy(&mut file, &mut io::sink()).map_err(|e| match e {
            CopyError::Read(source) | CopyError::Write(source) => map(source),
        })?;
        Ok(size == entry.size && sha256 == entry.sha256)
    }

    fn lock_manifest(&self, name: &ProjectName) -> Result<fsutil::LockGuard> {
        // Locks live in the state directory so project folders (which go to git) stay clean.
        let locks = self.state_dir().join("locks");
        fsutil::create_dir(&self.state_dir(), Some(PRIVATE_DIR_MODE))?;
        fsutil::create_dir(&locks, Some(PRIVATE_DIR_MODE))?;
        fsutil::lock_exclusive(
            &locks.join(format!("project-{name}.lock")),
            self.lock_timeout,
        )
    }

    fn read_manifest(&self, name: &ProjectName, dir: &Path) -> Result<Option<Manifest>> {
        let _ = self;
        let path = dir.join(MANIFEST_FILE);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(Error::ReadManifest { path, source }),
        };
        // Check the format version first so a newer layout gets a clear error.
        if let Ok(probe) = serde_json::from_slice::<serde_json::Value>(&bytes)
            && let Some(version) = probe
                .get("format_version")
                .and_then(serde_json::Value::as_u64)
            && version > u64::from(MANIFEST_FORMAT)
        {
            return Err(Error::UnsupportedManifest {
                path,
                version: u32::try_from(version).unwrap_or(u32::MAX),
            });
        }
        let manifest: Manifest =
            serde_json::from_slice(&bytes).map_err(|source| Error::ParseManifest {
                path: path.clone(),
                source,
            })?;
        if manifest.project != *name {
            tracing::warn!(
                path = %path.display(),
                recorded = %manifest.project,
                "manifest names another project; the directory name is used"
            );
        }
        Ok(Some(manifest))
    }

    /// Read-modify-write of a manifest under the project lock.
    fn update_manifest(
        &self,
        name: &ProjectName,
        dir: &Path,
        change: impl FnOnce(&mut Manifest),
    ) -> Result<Manifest> {
        let _lock = self.lock_manifest(name)?;
        let mut manifest = self
            .read_manifest(name, dir)?
            .unwrap_or_else(|| Manifest::new(name.clone()));
        change(&mut manifest);
        write_manifest(&dir.join(MANIFEST_FILE), &manifest)?;
        Ok(manifest)
    }
}

fn update_gitignore(path: &Path) -> Result<bool> {
    let map = |source| Error::UpdateGitignore {
        path: path.to_path_buf(),
        source,
    };
    let (mut content, mode) = match fs::read(path) {
        Ok(bytes) => {
            let mode = fs::metadata(path).ok().and_then(|m| fsutil::mode_of(&m));
            (bytes, mode.unwrap_or(PUBLIC_FILE_MODE))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => (Vec::new(), PUBLIC_FILE_MODE),
        Err(e) => return Err(map(e)),
    };
    let text = String::from_utf8_lossy(&content);
    let present: Vec<&str> = text.lines().map(str::trim).collect();
    let missing: Vec<&str> = GITIGNORE_ENTRIES
        .into_iter()
        .filter(|entry| !present.contains(entry))
        .collect();
    if missing.is_empty() {
        return Ok(false);
    }
    if content.is_empty() {
        content.extend_from_slice(b"# Written by rpb: secrets and local state stay out of git.\n");
    } else if !content.ends_with(b"\n") {
        content.push(b'\n');
    }
    for entry in missing {
        content.extend_from_slice(entry.as_bytes());
        content.push(b'\n');
    }
    fsutil::write_atomic(path, &content, mode).map_err(map)?;
    Ok(true)
}

fn write_manifest(path: &Path, manifest: &Manifest) -> Result<()> {
    let mut bytes = serde_json::to_vec_pretty(manifest)
        .expect("invariant: a manifest always serializes to JSON");
    bytes.push(b'\n');
    let mode = fs::metadata(path)
        .ok()
        .and_then(|m| fsutil::mode_of(&m))
        .unwrap_or(PUBLIC_FILE_MODE);
    fsutil::write_atomic(path, &bytes, mode).map_err(|source| Error::WriteManifest {
        path: path.to_path_buf(),
        source,
    })
}

enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

/// Copies `reader` into `writer`, returning the byte count and the SHA-256 (hex).
fn hash_copy(reader: &mut dyn Read, writer: &mut dyn Write) -> Result<(u64, String), CopyError> {
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; COPY_BUFFER];
    let mut size = 0u64;
    loop {
        let read = match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        hasher.update(&buffer[..read]);
        writer
            .write_all(&buffer[..read])
            .map_err(CopyError::Write)?;
        size += read as u64;
    }
    Ok((size, fsutil::hex(&hasher.finalize())))
}

/// A pending save of a new version; see [`Store::save_version`].
#[derive(Debug)]
#[must_use = "nothing is saved until write_from or copy_from_file is called"]
pub struct SaveVersion<'a> {
    store: &'a Store,
    project: &'a ProjectName,
    stem: String,
    source: Source,
    expected_sha256: Option<String>,
}

impl SaveVersion<'_> {
    /// Where the file came from (pod id and remote path), recorded in the manifest.
    pub fn source(mut self, source: Source) -> Self {
        self.source = source;
        self
    }

    /// The SHA-256 (hex, any case) the data must have; on mismatch nothing is saved.
    pub fn expected_sha256(mut self, sha256: impl Into<String>) -> Self {
        self.expected_sha256 = Some(sha256.into().to_ascii_lowercase());
        self
    }

    /// Saves the version from a file on disk (copied, the original is left alone).
    ///
    /// # Errors
    ///
    /// [`Error::ReadProjectFile`] when `path` cannot be opened, then as
    /// [`SaveVersion::write_from`].
    pub fn copy_from_file(self, path: impl AsRef<Path>) -> Result<FileEntry> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|source| Error::ReadProjectFile {
            path: path.to_path_buf(),
            source,
        })?;
        self.write_from(file)
    }

    /// Streams `reader` into a temporary file in the project directory while hashing it,
    /// fsyncs it, then (under the project lock) gives it its versioned name without ever
    /// replacing an existing file, records it in the manifest and makes it the latest.
    /// On any error no file is left in place and the manifest is unchanged.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidStem`], [`Error::ProjectNotFound`], [`Error::ReadVersionSource`] when
    /// `reader` fails, [`Error::ChecksumMismatch`], [`Error::WriteProjectFile`], and the
    /// manifest errors of [`Store::project`] and [`Error::WriteManifest`].
    #[tracing::instrument(skip(self, reader), fields(project = %self.project, stem = %self.stem))]
    pub fn write_from(self, mut reader: impl Read) -> Result<FileEntry> {
        let stem = project::normalize_stem(&self.stem)?;
        let dir = self.store.project_dir(self.project);
        if !dir.is_dir() {
            return Err(Error::ProjectNotFound {
                name: self.project.to_string(),
                path: dir,
            });
        }
        // Fail early on a damaged manifest, before transferring anything.
        self.store.read_manifest(self.project, &dir)?;
        let write_err = |path: &Path, source| Error::WriteProjectFile {
            path: path.to_path_buf(),
            source,
        };
        let staging_target = dir.join(format!("{stem}.blend"));
        let mut temp = fsutil::temp_file_next_to(&staging_target, PUBLIC_FILE_MODE)
            .map_err(|e| write_err(&dir, e))?;
        let (size, sha256) = hash_copy(&mut reader, temp.as_file_mut()).map_err(|e| match e {
            CopyError::Read(source) => Error::ReadVersionSource {
                project: self.project.to_string(),
                source,
            },
            CopyError::Write(source) => write_err(temp.path(), source),
        })?;
        if let Some(expected) = self.expected_sha256
            && expected != sha256
        {
            return Err(Error::ChecksumMismatch {
                project: self.project.to_string(),
                expected,
                actual: sha256,
            });
        }
        temp.as_file()
            .sync_all()
            .map_err(|e| write_err(temp.path(), e))?;

        let _lock = self.store.lock_manifest(self.project)?;
        let mut manifest = self
            .store
            .read_manifest(self.project, &dir)?
            .unwrap_or_else(|| Manifest::new(self.project.clone()));
        let used = project::used_names(&manifest);
        let saved_at = Timestamp::now();
        let mut temp = temp;
        let mut attempts = 0;
        // Bounded: each failed attempt finds one more name taken on disk.
        let name = loop {
            attempts += 1;
            let Some(name) = project::version_file_name(&stem, saved_at, |candidate| {
                used.contains(candidate) || dir.join(candidate).exists()
            }) else {
                let source = io::Error::new(io::ErrorKind::AlreadyExists, "no free version name");
                return Err(write_err(&dir, source));
            };
            match temp.persist_noclobber(dir.join(&name)) {
                Ok(_) => break name,
                Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists && attempts < 100 => {
                    temp = e.file;
                }
                Err(e) => return Err(write_err(&dir.join(&name), e.error)),
            }
        };
        let path = dir.join(&name);
        fsutil::sync_dir(&dir).map_err(|e| write_err(&path, e))?;
        let entry = FileEntry {
            name,
            kind: FileKind::Version,
            stem: Some(stem),
            size,
            sha256,
            saved_at,
            source: self.source,
            extra: serde_json::Map::new(),
        };
        manifest.record(entry.clone());
        if let Err(e) = write_manifest(&dir.join(MANIFEST_FILE), &manifest) {
            // Keep the invariant "every version file is in the manifest": undo.
            let _ = fs::remove_file(&path);
            return Err(e);
        }
        tracing::info!(file = %entry.name, size, "saved version");
        Ok(entry)
    }
}

/// Reads a `.env` file with its permission bits; `Ok(None)` when it does not exist. Only a
/// regular file (or a symlink to one) of at most [`MAX_ENV_FILE_BYTES`] is read: a FIFO would
/// block forever and `/dev/zero` would never end.
fn read_env_bytes(path: &Path) -> Result<Option<(Vec<u8>, Option<u32>)>> {
    let map = |source| Error::ReadConfig {
        path: path.to_path_buf(),
        source,
    };
    let metadata = match fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(map(e)),
    };
    if !metadata.is_file() {
        return Err(Error::ConfigNotAFile {
            path: path.to_path_buf(),
        });
    }
    let too_large = || Error::ConfigTooLarge {
        path: path.to_path_buf(),
        max: MAX_ENV_FILE_BYTES,
    };
    if metadata.len() > MAX_ENV_FILE_BYTES {
        return Err(too_large());
    }
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(map(e)),
    };
    let mode = file.metadata().ok().and_then(|m| fsutil::mode_of(&m));
    let mut bytes = Vec::new();
    file.take(MAX_ENV_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(map)?;
    if bytes.len() as u64 > MAX_ENV_FILE_BYTES {
        return Err(too_large());
    }
    Ok(Some((bytes, mode)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_resolution_order() {
        let home = Path::new("/home/u");
        assert_eq!(
            resolve_root(Some(Path::new("/x")), Some("/y".into()), Some(home)).unwrap(),
            Path::new("/x")
        );
        assert_eq!(
            resolve_root(None, Some("/y".into()), Some(home)).unwrap(),
            Path::new("/y")
        );
        assert_eq!(
            resolve_root(None, Some(OsString::new()), Some(home)).unwrap(),
            Path::new("/home/u/blender-files/runpod")
        );
        assert!(matches!(
            resolve_root(None, None, None),
            Err(Error::NoWorkspaceRoot)
        ));
    }

    #[test]
    fn only_small_regular_env_files_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let env = dir.path().join(".env");
        assert!(read_env_bytes(&env).unwrap().is_none());
        std::fs::write(&env, b"RUNPOD_POD_ID=abc\n").unwrap();
        let (bytes, _) = read_env_bytes(&env).unwrap().unwrap();
        assert_eq!(bytes, b"RUNPOD_POD_ID=abc\n");
        std::fs::File::create(&env)
            .unwrap()
            .set_len(MAX_ENV_FILE_BYTES + 1)
            .unwrap();
        assert!(matches!(
            read_env_bytes(&env),
            Err(Error::ConfigTooLarge { .. })
        ));
        std::fs::remove_file(&env).unwrap();
        std::os::unix::fs::symlink("/dev/zero", &env).unwrap();
        let error = read_env_bytes(&env).unwrap_err();
        assert!(matches!(error, Error::ConfigNotAFile { .. }), "{error:?}");
        assert!(error.to_string().contains("not a regular file"), "{error}");
    }

    #[test]
    fn env_discovery_order() {
        let cwd = tempfile::tempdir().unwrap();
        let root = Path::new("/w");
        assert_eq!(
            discover_env_file(None, Some(cwd.path()), root),
            Path::new("/w/.env")
        );
        fs::write(cwd.path().join(".env"), "").unwrap();
        assert_eq!(
            discover_env_file(None, Some(cwd.path()), root),
            cwd.path().join(".env")
        );
        assert_eq!(
            discover_env_file(Some(Path::new("/e/my.env")), Some(cwd.path()), root),
            Path::new("/e/my.env")
        );
    }

    #[test]
    fn hash_copy_matches_known_digest() {
        let mut out = Vec::new();
        let (size, sha) = hash_copy(&mut &b"abc"[..], &mut out).ok().unwrap();
        assert_eq!(size, 3);
        assert_eq!(
            sha,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(out, b"abc");
    }
}
