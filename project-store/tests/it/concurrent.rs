//! Two real processes updating the same workspace at once: nothing is lost.

use std::ffi::OsString;
use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use project_store::dotenv::Document;
use project_store::{OnExisting, ProjectName, Source};

use crate::support::{child_role, mode, spawn_child, store_in, wait_for_file};

const ROUNDS: usize = 20;
const DIR_VAR: &str = "PROJECT_STORE_IT_DIR";
const TAG_VAR: &str = "PROJECT_STORE_IT_TAG";
const TIMEOUT: Duration = Duration::from_secs(120);

fn child_env() -> (PathBuf, String) {
    let dir = PathBuf::from(std::env::var_os(DIR_VAR).expect("the parent sets the directory"));
    let tag = std::env::var(TAG_VAR).expect("the parent sets the tag");
    (dir, tag)
}

/// Child body, run by `two_processes_update_the_env_at_once` in a child process (as that same test, so a normal
/// run does not count it as a test of its own): updates the pod id and its own keys, many times.
fn env_writer_child() {
    let (dir, tag) = child_env();
    wait_for_file(&dir.join("go"), Duration::from_secs(30));
    let store = store_in(&dir);
    for round in 0..ROUNDS {
        store
            .set_env_var("RUNPOD_POD_ID", &format!("pod-{tag}-{round}"))
            .unwrap();
        store
            .set_env_var(&format!("KEY_{tag}_{round}"), &round.to_string())
            .unwrap();
    }
}

#[test]
fn two_processes_update_the_env_at_once() {
    if child_role().as_deref() == Some("env-writer") {
        return env_writer_child();
    }
    let dir = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let store = store_in(dir.path());
    store.init().unwrap();
    let header = "# hand-written header\nRUNPOD_API_KEY=rpa_x # keep me\n";
    fs::write(store.env_file(), header).unwrap();

    let children: Vec<_> = ["A", "B"]
        .into_iter()
        .map(|tag| {
            let envs = [
                (DIR_VAR, OsString::from(dir.path())),
                (TAG_VAR, OsString::from(tag)),
            ];
            spawn_child(
                concat!(module_path!(), "::two_processes_update_the_env_at_once"),
                "env-writer",
                &envs,
                logs.path(),
            )
        })
        .collect();
    fs::write(dir.path().join("go"), b"").unwrap();
    for child in children {
        child.expect_success(TIMEOUT);
    }

    let bytes = fs::read(store.env_file()).unwrap();
    let text = String::from_utf8(bytes.clone()).unwrap();
    assert!(
        text.starts_with("# hand-written header\nRUNPOD_API_KEY=rpa_x # keep me\n"),
        "{text}"
    );
    let document = Document::parse(&bytes);
    assert!(document.issues().is_empty(), "{:?}", document.issues());
    for tag in ["A", "B"] {
        for round in 0..ROUNDS {
            let key = format!("KEY_{tag}_{round}");
            assert_eq!(
                document.get(&key),
                Some(round.to_string().as_str()),
                "{key} was lost:\n{text}"
            );
        }
    }
    let last = ROUNDS - 1;
    let pod = document.get("RUNPOD_POD_ID").unwrap();
    assert!(
        pod == format!("pod-A-{last}") || pod == format!("pod-B-{last}"),
        "{pod}"
    );
    assert_eq!(text.matches("RUNPOD_POD_ID=").count(), 1, "{text}");
    assert_eq!(mode(store.env_file()), 0o600);
    let leftovers: Vec<_> = fs::read_dir(store.root())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| {
            std::path::Path::new(n)
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("tmp"))
        })
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// Child body, run by `two_processes_save_versions_at_once` in a child process (as that same test, so a normal
/// run does not count it as a test of its own): saves versions of the shared project.
fn version_saver_child() {
    let (dir, tag) = child_env();
    wait_for_file(&dir.join("go"), Duration::from_secs(30));
    let store = store_in(&dir);
    let name = ProjectName::new("shared").unwrap();
    for round in 0..5 {
        let data = format!("{tag}-{round}");
        store
            .save_version(&name, "scene")
            .source(Source::pod(
                format!("pod-{tag}"),
                "/runpod/projects/shared/scene.blend",
            ))
            .write_from(data.as_bytes())
            .unwrap();
    }
}

#[test]
fn two_processes_save_versions_at_once() {
    if child_role().as_deref() == Some("version-saver") {
        return version_saver_child();
    }
    let dir = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let store = store_in(dir.path());
    store.init().unwrap();
    let name = ProjectName::new("shared").unwrap();
    store.create_project(&name, OnExisting::Fail).unwrap();
    let children: Vec<_> = ["A", "B"]
        .into_iter()
        .map(|tag| {
            let envs = [
                (DIR_VAR, OsString::from(dir.path())),
                (TAG_VAR, OsString::from(tag)),
            ];
            spawn_child(
                concat!(module_path!(), "::two_processes_save_versions_at_once"),
                "version-saver",
                &envs,
                logs.path(),
            )
        })
        .collect();
    fs::write(dir.path().join("go"), b"").unwrap();
    for child in children {
        child.expect_success(TIMEOUT);
    }
    let project = store.project(&name).unwrap();
    let versions: Vec<_> = project.versions().collect();
    assert_eq!(versions.len(), 10, "{versions:#?}");
    let mut contents: Vec<String> = versions
        .iter()
        .map(|v| {
            assert!(
                store.verify(&project, v).unwrap(),
                "{} does not match its checksum",
                v.name
            );
            fs::read_to_string(project.path_of(v)).unwrap()
        })
        .collect();
    contents.sort();
    let mut expected: Vec<String> = ["A", "B"]
        .iter()
        .flat_map(|t| (0..5).map(move |r| format!("{t}-{r}")))
        .collect();
    expected.sort();
    assert_eq!(contents, expected);
    assert!(project.latest().is_some());
}
