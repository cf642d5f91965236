//! The `.env` file through a real [`Store`]: lossless updates, modes, warnings, hostile files.

use std::error::Error as _;
use std::fs;
use std::io;

use project_store::secrecy::{ExposeSecret, SecretString};
use project_store::{ConfigKey, Error, Store, Warning};

use crate::support::{chmod, mode, rerun_unprivileged, store_in};

const HAND_WRITTEN: &[u8] = b"# my RunPod settings\r\n\
export RUNPOD_API_KEY=\"rpa_secret\" # from the console\r\n\
\r\n\
RUNPOD_POD_ID=old-pod   # set by rpb\r\n\
VNC_PASSWORD='blender 123'\r\n\
CUSTOM=keep=me";

fn workspace_with_env(bytes: &[u8]) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path());
    fs::create_dir_all(store.root()).unwrap();
    fs::write(store.env_file(), bytes).unwrap();
    chmod(store.env_file(), 0o600);
    (dir, store)
}

#[test]
fn updating_one_key_keeps_every_other_byte() {
    let (_dir, store) = workspace_with_env(HAND_WRITTEN);
    let config = store.set_config(ConfigKey::PodId, "abc123").unwrap();
    assert_eq!(config.pod_id.as_deref(), Some("abc123"));
    let expected = b"# my RunPod settings\r\n\
export RUNPOD_API_KEY=\"rpa_secret\" # from the console\r\n\
\r\n\
RUNPOD_POD_ID=abc123   # set by rpb\r\n\
VNC_PASSWORD='blender 123'\r\n\
CUSTOM=keep=me";
    assert_eq!(fs::read(store.env_file()).unwrap(), expected);

    // An absent key is appended with the file's line ending.
    store.set_config(ConfigKey::McpPort, "19876").unwrap();
    let mut expected = expected.to_vec();
    expected.extend_from_slice(b"\r\nRPB_MCP_PORT=19876\r\n");
    assert_eq!(fs::read(store.env_file()).unwrap(), expected);

    let config = store.load_config().unwrap();
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    assert_eq!(config.api_key.unwrap().expose_secret(), "rpa_secret");
    assert_eq!(config.vnc_password.unwrap().expose_secret(), "blender 123");
    assert_eq!(config.ports.mcp, 19876);
    // No temporary file is left behind.
    let names: Vec<String> = fs::read_dir(store.root())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().all(|n| n == ".env" || n == ".env.lock"),
        "{names:?}"
    );
}

#[test]
fn secrets_are_written_and_never_shown() {
    let (_dir, store) = workspace_with_env(b"");
    let key = SecretString::from("rpa_new 'quoted' \\ value");
    let config = store.set_secret(ConfigKey::ApiKey, &key).unwrap();
    assert_eq!(
        config.api_key.as_ref().unwrap().expose_secret(),
        key.expose_secret()
    );
    assert!(!format!("{config:?}").contains("rpa_new"));
    let reread = store.load_config().unwrap();
    assert_eq!(reread.api_key.unwrap().expose_secret(), key.expose_secret());
}

#[test]
fn writes_keep_mode_0600_even_when_it_was_looser() {
    let (_dir, store) = workspace_with_env(b"RUNPOD_API_KEY=x\n");
    chmod(store.env_file(), 0o644);
    store.set_config(ConfigKey::PodId, "p1").unwrap();
    assert_eq!(mode(store.env_file()), 0o600);
}

#[test]
fn a_missing_env_is_created_private_by_an_update() {
    let (_dir, store) = workspace_with_env(b"");
    fs::remove_file(store.env_file()).unwrap();
    let err = store.load_config().unwrap_err();
    assert!(
        matches!(&err, Error::ConfigNotFound { path } if path == store.env_file()),
        "{err:?}"
    );
    store.set_config(ConfigKey::PodId, "p1").unwrap();
    assert_eq!(fs::read(store.env_file()).unwrap(), b"RUNPOD_POD_ID=p1\n");
    assert_eq!(mode(store.env_file()), 0o600);
}

#[test]
fn loose_permissions_with_a_secret_warn_naming_the_file_and_fix() {
    let (_dir, store) = workspace_with_env(b"RUNPOD_API_KEY=rpa_x\n");
    chmod(store.env_file(), 0o644);
    let config = store.load_config().unwrap();
    let warning = config
        .warnings
        .iter()
        .find(|w| matches!(w, Warning::InsecurePermissions { .. }))
        .expect("a permission warning");
    let text = warning.to_string();
    let path = store.env_file().display().to_string();
    assert!(
        text.contains(&path) && text.contains(&format!("chmod 600 {path}")),
        "{text}"
    );
    assert!(text.contains("0644"), "{text}");

    chmod(store.env_file(), 0o600);
    assert!(store.load_config().unwrap().warnings.is_empty());
    // Loose mode without secrets is fine.
    let (_dir2, store2) = workspace_with_env(b"RUNPOD_POD_ID=x\n");
    chmod(store2.env_file(), 0o644);
    assert!(store2.load_config().unwrap().warnings.is_empty());
}

#[test]
fn a_token_pasted_alone_on_a_line_is_not_echoed_in_warnings() {
    let token = "rpa_Z8K2M4N6P8Q1R3S5T7";
    let (_dir, store) =
        workspace_with_env(format!("RUNPOD_POD_ID=p1\n{token}\nVNC_PASSWORD=v\n").as_bytes());
    let config = store.load_config().unwrap();
    assert_eq!(config.warnings.len(), 1, "{:?}", config.warnings);
    let shown = config.warnings[0].to_string();
    assert!(!shown.contains(token), "{shown}");
    assert!(!format!("{:?}", config.warnings[0]).contains(token));
    assert!(
        shown.ends_with(
            "/.env:2: not KEY=VALUE; if it is a token, put it after RUNPOD_API_KEY=, or start \
             the line with `#` to make it a comment; the line is ignored"
        ),
        "{shown}"
    );
}

#[test]
fn malformed_lines_are_reported_with_line_numbers_and_the_rest_is_used() {
    let (_dir, store) = workspace_with_env(
        b"RUNPOD_POD_ID=good\nthis is not a setting\nVNC_PASSWORD=\"unterminated\nRPB_NOVNC_PORT=http\n\
          RUNPOD_API_KEY=rpa_ok\n\xff\xfe\n",
    );
    let config = store.load_config().unwrap();
    assert_eq!(config.pod_id.as_deref(), Some("good"));
    assert_eq!(config.api_key.as_ref().unwrap().expose_secret(), "rpa_ok");
    assert!(config.vnc_password.is_none());
    assert_eq!(config.ports.novnc, 6080);
    let lines: Vec<usize> = config
        .warnings
        .iter()
        .map(|w| match w {
            Warning::Line { issue, path } => {
                assert_eq!(path, store.env_file());
                issue.line
            }
            Warning::InvalidValue { line, .. } => *line,
            other => panic!("unexpected warning {other}"),
        })
        .collect();
    assert_eq!(lines, vec![2, 3, 6, 4]);
    let all = config
        .warnings
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        !all.contains("unterminated") && !all.contains("rpa_ok"),
        "no values in warnings: {all}"
    );
    assert!(all.contains(":2: not KEY=VALUE"), "{all}");
    assert!(!all.contains("this is"), "no text of the line: {all}");

    // Updating still works and keeps the malformed lines as they are.
    store.set_config(ConfigKey::PodId, "new").unwrap();
    let bytes = fs::read(store.env_file()).unwrap();
    assert!(
        bytes.starts_with(
            b"RUNPOD_POD_ID=new\nthis is not a setting\nVNC_PASSWORD=\"unterminated\n"
        )
    );
    assert!(bytes.ends_with(b"\xff\xfe\n"));
}

#[test]
fn invalid_keys_and_values_are_refused_without_writing() {
    let (_dir, store) = workspace_with_env(HAND_WRITTEN);
    let err = store.set_env_var("BAD KEY", "x").unwrap_err();
    assert!(matches!(err, Error::InvalidConfigKey(_)), "{err:?}");
    let err = store
        .set_config(ConfigKey::McpPort, "s3cr3t-not-a-port")
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("RPB_MCP_PORT") && text.contains(&store.env_file().display().to_string()),
        "{text}"
    );
    assert!(
        !text.contains("s3cr3t"),
        "the value is never echoed: {text}"
    );
    let err = store
        .set_config(ConfigKey::VncPassword, "two\nlines")
        .unwrap_err();
    assert!(matches!(err, Error::InvalidConfigValue { .. }), "{err:?}");
    assert_eq!(fs::read(store.env_file()).unwrap(), HAND_WRITTEN);
}

#[test]
fn a_symlinked_env_is_updated_at_its_target() {
    let (dir, store) = workspace_with_env(b"");
    let real = dir.path().join("dotfiles.env");
    fs::write(&real, b"# kept\nRUNPOD_POD_ID=a\n").unwrap();
    fs::remove_file(store.env_file()).unwrap();
    std::os::unix::fs::symlink(&real, store.env_file()).unwrap();
    store.set_config(ConfigKey::PodId, "b").unwrap();
    assert!(
        fs::symlink_metadata(store.env_file())
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(fs::read(&real).unwrap(), b"# kept\nRUNPOD_POD_ID=b\n");
}

#[test]
fn env_discovery_is_explicit_else_the_workspace_never_the_current_dir() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path().join("cwd");
    fs::create_dir_all(&cwd).unwrap();
    let build = |explicit: Option<&str>| {
        let mut builder = Store::builder()
            .root(dir.path().join("ws"))
            .current_dir(&cwd)
            .ignore_environment();
        if let Some(path) = explicit {
            builder = builder.env_file(dir.path().join(path));
        }
        builder.build().unwrap()
    };
    assert_eq!(build(None).env_file(), dir.path().join("ws/.env"));
    assert_eq!(build(None).ignored_env_file(), None);
    // A repository's .env in the current folder is not read, only reported.
    fs::write(
        cwd.join(".env"),
        b"RUNPOD_POD_ID=local\nRUNPOD_API_URL=http://attacker.example\n",
    )
    .unwrap();
    let store = build(None);
    assert_eq!(store.env_file(), dir.path().join("ws/.env"));
    assert_eq!(store.ignored_env_file(), Some(cwd.join(".env")));
    assert!(matches!(
        store.load_config(),
        Err(Error::ConfigNotFound { .. })
    ));
    // Given explicitly, it is read.
    let store = build(Some("cwd/.env"));
    assert_eq!(store.env_file(), cwd.join(".env"));
    assert_eq!(store.ignored_env_file(), None);
    assert_eq!(
        store.load_config().unwrap().pod_id.as_deref(),
        Some("local")
    );
    assert_eq!(
        build(Some("other.env")).env_file(),
        dir.path().join("other.env")
    );
}

#[test]
fn relative_roots_are_resolved_against_the_current_dir() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::builder()
        .root("ws")
        .current_dir(dir.path())
        .ignore_environment()
        .build()
        .unwrap();
    assert_eq!(store.root(), dir.path().join("ws"));
    let err = Store::builder().ignore_environment().build().unwrap_err();
    assert!(matches!(err, Error::NoWorkspaceRoot), "{err:?}");
}

#[test]
fn unreadable_env_file_is_an_error_naming_it() {
    if rerun_unprivileged(concat!(
        module_path!(),
        "::unreadable_env_file_is_an_error_naming_it"
    )) {
        return;
    }
    let (_dir, store) = workspace_with_env(b"RUNPOD_POD_ID=x\n");
    chmod(store.env_file(), 0o000);
    let err = store.load_config().unwrap_err();
    match &err {
        Error::ReadConfig { path, source } => {
            assert_eq!(path, store.env_file());
            assert_eq!(source.kind(), io::ErrorKind::PermissionDenied);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(
        err.to_string()
            .contains(&store.env_file().display().to_string())
    );
    assert!(err.source().is_some());
    // An update cannot read it either, and leaves it alone.
    let err = store.set_config(ConfigKey::PodId, "y").unwrap_err();
    assert!(matches!(err, Error::ReadConfig { .. }), "{err:?}");
    chmod(store.env_file(), 0o600);
    assert_eq!(fs::read(store.env_file()).unwrap(), b"RUNPOD_POD_ID=x\n");
}

#[test]
fn read_only_workspace_refuses_updates_and_keeps_the_file() {
    if rerun_unprivileged(concat!(
        module_path!(),
        "::read_only_workspace_refuses_updates_and_keeps_the_file"
    )) {
        return;
    }
    let (_dir, store) = workspace_with_env(b"RUNPOD_POD_ID=x\n");
    store.set_config(ConfigKey::PodId, "y").unwrap(); // creates the lock file
    chmod(store.root(), 0o555);
    let err = store.set_config(ConfigKey::PodId, "z").unwrap_err();
    chmod(store.root(), 0o755);
    match &err {
        Error::WriteConfig { path, source } => {
            assert_eq!(path, store.env_file());
            assert_eq!(source.kind(), io::ErrorKind::PermissionDenied);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(fs::read(store.env_file()).unwrap(), b"RUNPOD_POD_ID=y\n");
}
