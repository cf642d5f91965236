//! [`Store`], the handle on one workspace: its layout, [`StoreBuilder`] and [`Store::init`]. The
//! `.env` methods are in `env`, the project and version methods in `projects`.

use std::ffi::OsString;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::config::{ENV_TEMPLATE, Warning};
use crate::error::{Error, Result};
use crate::fsutil::{self, PRIVATE_DIR_MODE, PRIVATE_FILE_MODE, PUBLIC_FILE_MODE};
use crate::project::ProjectName;

mod env;
mod projects;

pub use projects::SaveVersion;

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
    resolve_root_with_source(explicit, rpb_home, home).map(|(root, _)| root)
}

fn resolve_root_with_source(
    explicit: Option<&Path>,
    rpb_home: Option<OsString>,
    home: Option<&Path>,
) -> Result<(PathBuf, EnvFileSource)> {
    if let Some(root) = explicit {
        return Ok((root.to_path_buf(), EnvFileSource::ExplicitRoot));
    }
    if let Some(root) = rpb_home.filter(|v| !v.is_empty()) {
        return Ok((PathBuf::from(root), EnvFileSource::RpbHome));
    }
    home.map(|home| (home.join(DEFAULT_ROOT), EnvFileSource::DefaultRoot))
        .ok_or(Error::NoWorkspaceRoot)
}

/// Chooses the `.env` file: `explicit`, else `<root>/.env` (which may not exist yet).
///
/// A `.env` in the current directory is never chosen implicitly: run inside a cloned
/// repository, its `.env` could point `RUNPOD_API_URL` (and so the API key) at another server,
/// register another SSH key or change the pod root. Pass it explicitly to use it; see
/// [`Store::ignored_env_file`] to tell the user about one.
pub fn discover_env_file(explicit: Option<&Path>, root: &Path) -> PathBuf {
    explicit.map_or_else(|| root.join(ENV_FILE), Path::to_path_buf)
}

/// Why a [`Store`] uses its `.env` file (see [`Store::env_file_source`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EnvFileSource {
    /// The path was given explicitly ([`StoreBuilder::env_file`]).
    Explicit,
    /// `<root>/.env` of a root given explicitly ([`StoreBuilder::root`]).
    ExplicitRoot,
    /// `<root>/.env` of the root named by the `RPB_HOME` environment variable.
    RpbHome,
    /// `<root>/.env` of the default root, `~/blender-files/runpod`.
    DefaultRoot,
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

    /// An explicit `.env` file. Default: `<root>/.env`; a `.env` in the current directory is
    /// never read unless it is given here (see [`discover_env_file`]).
    pub fn env_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.env_file = Some(path.into());
        self
    }

    /// The directory against which relative paths are resolved, and where
    /// [`Store::ignored_env_file`] looks for a `.env` that is not read. Default: the process's
    /// current directory.
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

    /// Resolves the paths. Touches nothing on disk.
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
            // `absolute` also drops `.` components, so `--env-file ./.env` shows as `<dir>/.env`.
            let joined = match &current_dir {
                Some(dir) => dir.join(path),
                None => path,
            };
            std::path::absolute(&joined).map_err(|source| Error::CurrentDir { source })
        };
        let (root, root_source) =
            resolve_root_with_source(self.root.as_deref(), rpb_home, home.as_deref())?;
        let root = absolute(root)?;
        let env_file = absolute(discover_env_file(self.env_file.as_deref(), &root))?;
        let env_file_source = if self.env_file.is_some() {
            EnvFileSource::Explicit
        } else {
            root_source
        };
        Ok(Store {
            root,
            env_file,
            env_file_source,
            current_dir,
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
    env_file_source: EnvFileSource,
    current_dir: Option<PathBuf>,
    home: Option<PathBuf>,
    lock_timeout: Duration,
}

impl Store {
    /// A builder with the defaults.
    pub fn builder() -> StoreBuilder {
        StoreBuilder::default()
    }

    /// A store for the workspace at `root`, with its `.env` (`<root>/.env`).
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

    /// Why [`Store::env_file`] is the `.env` in use.
    pub fn env_file_source(&self) -> EnvFileSource {
        self.env_file_source
    }

    /// A `.env` file in the current directory ([`StoreBuilder::current_dir`]) that is not the
    /// one in use, and so is ignored: worth telling the user, who may expect it to be read.
    pub fn ignored_env_file(&self) -> Option<PathBuf> {
        let local = self.current_dir.as_ref()?.join(ENV_FILE);
        if !local.is_file() || local == self.env_file {
            return None;
        }
        let same = match (fs::canonicalize(&local), fs::canonicalize(&self.env_file)) {
            (Ok(local), Ok(used)) => local == used,
            _ => false,
        };
        (!same).then_some(local)
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
    fn env_discovery_never_reads_the_current_directory() {
        let root = Path::new("/w");
        assert_eq!(discover_env_file(None, root), Path::new("/w/.env"));
        assert_eq!(
            discover_env_file(Some(Path::new("/e/my.env")), root),
            Path::new("/e/my.env")
        );
    }

    #[test]
    fn a_local_env_is_ignored_and_reported_and_the_source_is_known() {
        let cwd = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        let local = cwd.path().join(ENV_FILE);
        fs::write(&local, "RUNPOD_API_URL=http://attacker.example\n").unwrap();
        let builder = || {
            Store::builder()
                .ignore_environment()
                .current_dir(cwd.path())
                .home_dir("/home/u")
        };
        let store = builder().root(root.path()).build().unwrap();
        assert_eq!(store.env_file(), root.path().join(ENV_FILE));
        assert_eq!(store.env_file_source(), EnvFileSource::ExplicitRoot);
        assert_eq!(store.ignored_env_file(), Some(local.clone()));

        let store = builder().env_file(".env").build().unwrap();
        assert_eq!(store.env_file(), local);
        assert_eq!(store.env_file_source(), EnvFileSource::Explicit);
        assert_eq!(store.ignored_env_file(), None, "it is the one in use");

        let store = builder().build().unwrap();
        assert_eq!(
            store.env_file(),
            Path::new("/home/u/blender-files/runpod/.env")
        );
        assert_eq!(store.env_file_source(), EnvFileSource::DefaultRoot);

        // The workspace is the current directory: its .env is the one in use.
        let store = builder().root(cwd.path()).build().unwrap();
        assert_eq!(store.env_file(), local);
        assert_eq!(store.ignored_env_file(), None);
    }

    #[test]
    fn rpb_home_is_named_as_the_source() {
        let (root, source) =
            resolve_root_with_source(None, Some("/y".into()), Some(Path::new("/h"))).unwrap();
        assert_eq!(
            (root.as_path(), source),
            (Path::new("/y"), EnvFileSource::RpbHome)
        );
    }
}
