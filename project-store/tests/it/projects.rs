//! Projects: names, manifests, versioned saves, the latest pointer, hostile manifests.

use std::error::Error as _;
use std::fs;
use std::io::{self, Read};

use project_store::project::{MANIFEST_FILE, Manifest};
use project_store::{Error, FileKind, InvalidName, OnExisting, ProjectName, Source, Store};

use crate::support::{chmod, rerun_unprivileged, store_in};

const ABC_SHA256: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

fn with_project(name: &str) -> (tempfile::TempDir, Store, ProjectName) {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path());
    store.init().unwrap();
    let name = ProjectName::new(name).unwrap();
    store.create_project(&name, OnExisting::Fail).unwrap();
    (dir, store, name)
}

#[test]
fn invalid_names_each_get_their_own_error() {
    let cases = [
        ("", "empty"),
        ("a/b", "path separator"),
        ("a\\b", "path separator"),
        ("..", "parent directory"),
        (".git", "starts with `.`"),
        ("-rf", "starts with `-`"),
        (" x", "whitespace"),
        ("a\nb", "control character"),
    ];
    for (name, expected) in cases {
        let err = ProjectName::new(name).unwrap_err();
        assert!(err.to_string().contains(&format!("{name:?}")), "{err}");
        let source = err.source().expect("the reason is the source").to_string();
        assert!(source.contains(expected), "{name:?}: {source}");
    }
    let long = "x".repeat(101);
    let err = ProjectName::new(long).unwrap_err();
    assert!(matches!(
        err,
        Error::InvalidProjectName {
            source: InvalidName::TooLong { .. },
            ..
        }
    ));
}

#[test]
fn create_list_and_describe() {
    let (_dir, store, name) = with_project("robot-arm");
    let err = store.create_project(&name, OnExisting::Fail).unwrap_err();
    assert!(matches!(err, Error::ProjectExists { .. }), "{err:?}");
    let reused = store.create_project(&name, OnExisting::Reuse).unwrap();
    assert_eq!(reused.dir, store.projects_dir().join("robot-arm"));
    store
        .create_project(&ProjectName::new("alpha").unwrap(), OnExisting::Reuse)
        .unwrap();
    // Things in projects/ that are not projects are skipped.
    fs::create_dir(store.projects_dir().join(".hidden")).unwrap();
    fs::write(store.projects_dir().join("notes.txt"), "x").unwrap();
    let names: Vec<String> = store
        .list_projects()
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(names, ["alpha", "robot-arm"]);

    let project = store.project(&name).unwrap();
    assert_eq!(project.manifest.project, name);
    assert!(project.latest().is_none());
    assert!(project.manifest_path().is_file());

    let missing = ProjectName::new("nope").unwrap();
    let err = store.project(&missing).unwrap_err();
    assert!(matches!(&err, Error::ProjectNotFound { path, .. } if path.ends_with("projects/nope")));
}

#[test]
fn saving_versions_names_hashes_and_points_latest() {
    let (dir, store, name) = with_project("demo");
    let first = store
        .save_version(&name, "scene")
        .source(Source::pod("pod1", "/runpod/projects/demo/scene.blend"))
        .expected_sha256(ABC_SHA256.to_uppercase())
        .write_from(&b"abc"[..])
        .unwrap();
    assert_eq!(first.sha256, ABC_SHA256);
    assert_eq!(first.size, 3);
    assert_eq!(first.kind, FileKind::Version);
    assert_eq!(first.source.pod_id.as_deref(), Some("pod1"));
    // scene-YYYYMMDD-HHMMSS.blend
    let stamp = first
        .name
        .strip_prefix("scene-")
        .unwrap()
        .strip_suffix(".blend")
        .unwrap();
    assert_eq!(stamp.len(), 15, "{}", first.name);
    assert!(stamp.chars().enumerate().all(|(i, c)| if i == 8 {
        c == '-'
    } else {
        c.is_ascii_digit()
    }));

    // Same stem in the same second gets a distinct name; a file source works too.
    let source_file = dir.path().join("download.blend");
    fs::write(&source_file, b"second").unwrap();
    let second = store
        .save_version(&name, "scene.blend")
        .copy_from_file(&source_file)
        .unwrap();
    assert_ne!(second.name, first.name);
    let other = store
        .save_version(&name, "character")
        .write_from(&b"c"[..])
        .unwrap();

    let project = store.project(&name).unwrap();
    let names: Vec<&str> = project.versions().map(|v| v.name.as_str()).collect();
    assert_eq!(
        names,
        [
            first.name.as_str(),
            second.name.as_str(),
            other.name.as_str()
        ]
    );
    assert_eq!(project.latest().unwrap().name, other.name);
    assert_eq!(project.resolve("latest").unwrap().name, other.name);
    assert_eq!(project.resolve("scene").unwrap().name, second.name);
    assert_eq!(project.resolve(&first.name).unwrap().name, first.name);
    let err = project.resolve("missing").unwrap_err();
    assert!(matches!(err, Error::VersionNotFound { .. }), "{err:?}");
    assert_eq!(
        store.latest_version(&name).unwrap().unwrap().name,
        other.name
    );
    assert_eq!(store.versions(&name).unwrap().len(), 3);
    assert_eq!(fs::read(project.path_of(&first)).unwrap(), b"abc");
    for version in project.versions() {
        assert!(store.verify(&project, version).unwrap());
    }
    fs::write(project.path_of(&first), b"tampered").unwrap();
    assert!(!store.verify(&project, &first).unwrap());

    // The manifest on disk is the JSON documented in the crate.
    let text = fs::read_to_string(project.manifest_path()).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["format_version"], 1);
    assert_eq!(json["latest"], other.name.as_str());
    assert_eq!(
        json["files"][0]["source"]["remote_path"],
        "/runpod/projects/demo/scene.blend"
    );
}

struct Failing;

impl Read for Failing {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        Err(io::Error::new(
            io::ErrorKind::ConnectionReset,
            "connection reset",
        ))
    }
}

fn project_files(store: &Store, name: &ProjectName) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(store.project_dir(name))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn failed_saves_leave_nothing_behind() {
    let (_dir, store, name) = with_project("demo");
    let manifest_before = fs::read(store.project_dir(&name).join(MANIFEST_FILE)).unwrap();

    let err = store
        .save_version(&name, "scene")
        .expected_sha256("00".repeat(32))
        .write_from(&b"abc"[..])
        .unwrap_err();
    assert!(
        matches!(&err, Error::ChecksumMismatch { actual, .. } if actual == ABC_SHA256),
        "{err:?}"
    );

    let err = store
        .save_version(&name, "scene")
        .write_from(Failing)
        .unwrap_err();
    assert!(matches!(err, Error::ReadVersionSource { .. }), "{err:?}");
    assert_eq!(err.source().unwrap().to_string(), "connection reset");

    let err = store
        .save_version(&name, "../escape")
        .write_from(&b"x"[..])
        .unwrap_err();
    assert!(matches!(err, Error::InvalidStem { .. }), "{err:?}");

    assert_eq!(project_files(&store, &name), [MANIFEST_FILE]);
    assert_eq!(
        fs::read(store.project_dir(&name).join(MANIFEST_FILE)).unwrap(),
        manifest_before
    );
}

#[test]
fn damaged_manifests_are_reported_and_never_reset() {
    let (_dir, store, name) = with_project("demo");
    store
        .save_version(&name, "scene")
        .write_from(&b"abc"[..])
        .unwrap();
    let path = store.project_dir(&name).join(MANIFEST_FILE);
    let good = fs::read(&path).unwrap();
    for damaged in [&good[..good.len() / 2], b"not json at all", b""] {
        fs::write(&path, damaged).unwrap();
        let err = store.project(&name).unwrap_err();
        match &err {
            Error::ParseManifest { path: p, .. } => assert_eq!(p, &path),
            other => panic!("unexpected {other:?}"),
        }
        let text = err.to_string();
        assert!(
            text.contains(&path.display().to_string()) && text.contains("never reset"),
            "{text}"
        );
        // Saving refuses too, before writing anything, and the manifest stays as it was.
        let files_before = project_files(&store, &name);
        let err = store
            .save_version(&name, "scene")
            .write_from(&b"new"[..])
            .unwrap_err();
        assert!(matches!(err, Error::ParseManifest { .. }), "{err:?}");
        let err = store
            .track_file(&name, MANIFEST_FILE, Source::local())
            .unwrap_err();
        assert!(matches!(err, Error::InvalidTrackedPath { .. }), "{err:?}");
        assert_eq!(project_files(&store, &name), files_before);
        assert_eq!(fs::read(&path).unwrap(), damaged);
    }

    fs::write(&path, br#"{"format_version": 7, "project": "demo"}"#).unwrap();
    let err = store.project(&name).unwrap_err();
    assert!(
        matches!(err, Error::UnsupportedManifest { version: 7, .. }),
        "{err:?}"
    );
}

#[test]
fn tracking_other_files() {
    let (_dir, store, name) = with_project("demo");
    let renders = store.project_dir(&name).join("renders");
    fs::create_dir(&renders).unwrap();
    fs::write(renders.join("frame-001.png"), b"abc").unwrap();
    let entry = store
        .track_file(&name, "renders/frame-001.png", Source::local())
        .unwrap();
    assert_eq!(
        (entry.kind, entry.sha256.as_str(), entry.size),
        (FileKind::File, ABC_SHA256, 3)
    );
    // Tracking again refreshes the entry instead of duplicating it.
    fs::write(renders.join("frame-001.png"), b"abcd").unwrap();
    store
        .track_file(&name, "./renders/frame-001.png", Source::local())
        .unwrap();
    let project = store.project(&name).unwrap();
    assert_eq!(project.manifest.files.len(), 1);
    assert_eq!(project.manifest.files[0].size, 4);
    assert!(project.latest().is_none(), "tracked files are not versions");

    for bad in ["../outside", "/etc/passwd", ""] {
        let err = store.track_file(&name, bad, Source::local()).unwrap_err();
        assert!(
            matches!(err, Error::InvalidTrackedPath { .. }),
            "{bad}: {err:?}"
        );
    }
    let err = store
        .track_file(&name, "missing.png", Source::local())
        .unwrap_err();
    assert!(matches!(&err, Error::ReadProjectFile { path, .. } if path.ends_with("missing.png")));
}

#[test]
fn manifests_are_plain_json_a_person_can_read() {
    let (_dir, store, name) = with_project("demo");
    store
        .save_version(&name, "scene")
        .write_from(&b"abc"[..])
        .unwrap();
    let text = fs::read_to_string(store.project_dir(&name).join(MANIFEST_FILE)).unwrap();
    assert!(
        text.ends_with("}\n") && text.contains("\n  \"files\""),
        "{text}"
    );
    let manifest: Manifest = serde_json::from_str(&text).unwrap();
    assert_eq!(manifest.versions().count(), 1);
}

#[test]
fn unreadable_manifest_is_an_error_naming_it() {
    if rerun_unprivileged(concat!(
        module_path!(),
        "::unreadable_manifest_is_an_error_naming_it"
    )) {
        return;
    }
    let (_dir, store, name) = with_project("demo");
    let path = store.project_dir(&name).join(MANIFEST_FILE);
    chmod(&path, 0o000);
    let err = store.project(&name).unwrap_err();
    match &err {
        Error::ReadManifest { path: p, source } => {
            assert_eq!(p, &path);
            assert_eq!(source.kind(), io::ErrorKind::PermissionDenied);
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn read_only_project_refuses_saves_cleanly() {
    if rerun_unprivileged(concat!(
        module_path!(),
        "::read_only_project_refuses_saves_cleanly"
    )) {
        return;
    }
    let (_dir, store, name) = with_project("demo");
    chmod(&store.project_dir(&name), 0o555);
    let err = store
        .save_version(&name, "scene")
        .write_from(&b"abc"[..])
        .unwrap_err();
    chmod(&store.project_dir(&name), 0o755);
    match &err {
        Error::WriteProjectFile { path, source } => {
            assert_eq!(path, &store.project_dir(&name));
            assert_eq!(source.kind(), io::ErrorKind::PermissionDenied);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(project_files(&store, &name), [MANIFEST_FILE]);
}

/// A project folder made by hand (the original scripts' `projects/<name>/scene.blend`): its
/// loose `.blend` files get manifest entries, unmoved and unrenamed; other files and links are
/// left alone, and a second run records nothing.
#[test]
fn loose_blend_files_of_a_hand_made_project_are_recorded_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path());
    let project = store.projects_dir().join("robot-arm");
    fs::create_dir_all(&project).unwrap();
    fs::write(project.join("scene.blend"), b"abc").unwrap();
    fs::write(project.join("old take.blend"), b"abc").unwrap();
    fs::write(project.join("notes.txt"), b"n").unwrap();
    fs::write(project.join("scene.blend1"), b"backup").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", project.join("link.blend")).unwrap();
    store.init().unwrap();
    let name = ProjectName::new("robot-arm").unwrap();
    assert_eq!(store.list_projects().unwrap(), std::slice::from_ref(&name));

    let recorded = store.track_loose_blends(&name).unwrap();
    let names: Vec<&str> = recorded.iter().map(|entry| entry.name.as_str()).collect();
    assert_eq!(names, ["old take.blend", "scene.blend"]);
    assert!(
        recorded
            .iter()
            .all(|entry| entry.sha256 == ABC_SHA256 && entry.size == 3)
    );
    assert_eq!(
        fs::read(project.join("scene.blend")).unwrap(),
        b"abc",
        "left in place"
    );
    let manifest = store.project(&name).unwrap().manifest;
    assert_eq!(manifest.files.len(), 2);
    assert!(
        store.track_loose_blends(&name).unwrap().is_empty(),
        "nothing new"
    );
}

/// `latest` of a project without versions is its most recently modified recorded `.blend`
/// (the file's own time, not the time rpb recorded it); a saved version takes over.
#[test]
fn latest_of_a_hand_made_project_is_its_newest_blend_until_a_version_is_saved() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path());
    let project = store.projects_dir().join("robot-arm");
    fs::create_dir_all(&project).unwrap();
    for (file, age_days) in [
        ("b-newest.blend", 1),
        ("a-older.blend", 5),
        ("z-oldest.blend", 30),
    ] {
        let path = project.join(file);
        fs::write(&path, b"abc").unwrap();
        let when = std::time::SystemTime::now() - std::time::Duration::from_secs(age_days * 86_400);
        fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(when)
            .unwrap();
    }
    store.init().unwrap();
    let name = ProjectName::new("robot-arm").unwrap();
    store.track_loose_blends(&name).unwrap();
    let manifest = store.project(&name).unwrap().manifest;
    assert_eq!(manifest.resolve("latest").unwrap().name, "b-newest.blend");
    assert_eq!(
        manifest.resolve("z-oldest.blend").unwrap().name,
        "z-oldest.blend"
    );

    let saved = store
        .save_version(&name, "scene")
        .write_from(&b"version"[..])
        .unwrap();
    let manifest = store.project(&name).unwrap().manifest;
    assert_eq!(manifest.resolve("latest").unwrap().name, saved.name);
}
