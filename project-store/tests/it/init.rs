//! `Store::init`: layout, idempotence, `.gitignore`, git, read-only workspaces.

use std::error::Error as _;
use std::ffi::OsString;
use std::fs;
use std::io;

use project_store::{
    ConfigKey, Error, GITIGNORE_ENTRIES, GitStatus, OnExisting, ProjectName, Warning,
};

use crate::support::{child_role, chmod, mode, rerun_unprivileged, spawn_child, store_in};

fn git_available() -> bool {
    std::process::Command::new("git")
        .arg("--version")
        .output()
        .is_ok()
}

#[test]
fn init_creates_the_layout_once() {
    assert!(
        git_available(),
        "git not found: install the Debian package git"
    );
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path());
    let report = store.init().unwrap();
    assert_eq!(report.git, GitStatus::Initialized);
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    for path in [
        store.root().to_path_buf(),
        store.projects_dir(),
        store.state_dir(),
    ] {
        assert!(path.is_dir(), "{}", path.display());
        assert!(
            report.created.contains(&path),
            "{} not reported",
            path.display()
        );
    }
    assert!(store.root().join(".git").is_dir());
    assert_eq!(mode(&store.state_dir()), 0o700);
    assert_eq!(mode(store.env_file()), 0o600);
    assert_eq!(
        fs::read_to_string(store.env_file()).unwrap(),
        project_store::config::ENV_TEMPLATE
    );
    let gitignore = fs::read_to_string(store.root().join(".gitignore")).unwrap();
    for entry in [".env", ".DS_Store", "*.blend1", "__pycache__/", ".rpb/"] {
        assert!(
            gitignore.lines().any(|l| l == entry),
            "{entry} missing:\n{gitignore}"
        );
    }

    // git really ignores the secrets file and the state folder.
    let ignored = std::process::Command::new("git")
        .arg("-C")
        .arg(store.root())
        .args([
            "check-ignore",
            ".env",
            ".env.lock",
            ".rpb/x",
            "scene.blend1",
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&ignored.stdout).lines().count(), 4);

    // A second run changes nothing and reports nothing created.
    store.set_config(ConfigKey::PodId, "p1").unwrap();
    let env_before = fs::read(store.env_file()).unwrap();
    let again = store.init().unwrap();
    assert!(again.created.is_empty(), "{:?}", again.created);
    assert!(!again.gitignore_updated);
    assert_eq!(again.git, GitStatus::AlreadyRepository);
    assert_eq!(fs::read(store.env_file()).unwrap(), env_before);
    assert_eq!(
        fs::read_to_string(store.root().join(".gitignore")).unwrap(),
        gitignore
    );
}

#[test]
fn init_completes_an_existing_gitignore_and_keeps_user_files() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path());
    fs::create_dir_all(store.root()).unwrap();
    fs::write(store.root().join(".gitignore"), "renders/\n.env").unwrap();
    fs::write(store.env_file(), "RUNPOD_API_KEY=rpa_mine\n").unwrap();
    chmod(store.env_file(), 0o644);
    let report = store.init().unwrap();
    assert!(report.gitignore_updated);
    let gitignore = fs::read_to_string(store.root().join(".gitignore")).unwrap();
    assert!(gitignore.starts_with("renders/\n.env\n"), "{gitignore}");
    assert_eq!(
        gitignore.lines().filter(|l| *l == ".env").count(),
        1,
        "{gitignore}"
    );
    for entry in GITIGNORE_ENTRIES {
        assert!(
            gitignore.lines().any(|l| l == entry),
            "{entry} missing:\n{gitignore}"
        );
    }
    // The user's .env is not replaced, but its loose mode is reported.
    assert_eq!(
        fs::read_to_string(store.env_file()).unwrap(),
        "RUNPOD_API_KEY=rpa_mine\n"
    );
    assert!(
        report
            .warnings
            .iter()
            .any(|w| matches!(w, Warning::InsecurePermissions { .. })),
        "{:?}",
        report.warnings
    );
}

/// Child body, run by `init_without_git_says_so` in a child process (as that same test, so a normal
/// run does not count it as a test of its own): init with no `git` on PATH.
fn init_without_git_child() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path());
    let report = store.init().unwrap();
    assert_eq!(report.git, GitStatus::GitNotFound);
    assert!(!store.root().join(".git").exists());
    let warning = report
        .warnings
        .iter()
        .find(|w| matches!(w, Warning::GitNotFound { .. }))
        .expect("a warning saying git is missing");
    assert!(warning.to_string().contains("install git"), "{warning}");
    assert!(store.env_file().is_file() && store.projects_dir().is_dir());
}

#[test]
fn init_without_git_says_so() {
    if child_role().as_deref() == Some("no-git") {
        return init_without_git_child();
    }
    let empty = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let envs = [("PATH", OsString::from(empty.path()))];
    spawn_child(
        concat!(module_path!(), "::init_without_git_says_so"),
        "no-git",
        &envs,
        logs.path(),
    )
    .expect_success(std::time::Duration::from_secs(60));
}

#[test]
fn read_only_workspace_gives_clear_errors() {
    if rerun_unprivileged(concat!(
        module_path!(),
        "::read_only_workspace_gives_clear_errors"
    )) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path());
    // A root whose parent cannot be written.
    chmod(dir.path(), 0o555);
    let err = store.init().unwrap_err();
    chmod(dir.path(), 0o755);
    match &err {
        Error::CreateDirectory { path, source } => {
            assert_eq!(path, store.root());
            assert_eq!(source.kind(), io::ErrorKind::PermissionDenied);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(
        err.to_string()
            .contains(&store.root().display().to_string()),
        "{err}"
    );

    store.init().unwrap();
    chmod(&store.projects_dir(), 0o555);
    let name = ProjectName::new("blocked").unwrap();
    let err = store.create_project(&name, OnExisting::Reuse).unwrap_err();
    chmod(&store.projects_dir(), 0o755);
    match &err {
        Error::CreateDirectory { path, .. } => assert_eq!(path, &store.project_dir(&name)),
        other => panic!("unexpected {other:?}"),
    }
    assert!(err.source().is_some());
}
