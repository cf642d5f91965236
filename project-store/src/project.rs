//! Projects, their names, and their manifests of saved versions and tracked files.
//!
//! A project is a directory `projects/<name>/` holding `.blend` files, renders and assets, and
//! a manifest, `rpb-manifest.json`, that records each saved `.blend` version and each other
//! tracked file with its size, SHA-256, save time and where it came from:
//!
//! ```json
//! {
//!   "format_version": 1,
//!   "project": "robot-arm",
//!   "latest": "scene-20261130-141502.blend",
//!   "files": [
//!     {
//!       "name": "scene-20261130-141502.blend",
//!       "kind": "version",
//!       "stem": "scene",
//!       "size": 1048576,
//!       "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
//!       "saved_at": "2026-11-30T14:15:02.123Z",
//!       "source": { "pod_id": "abc123", "remote_path": "/runpod/projects/robot-arm/scene.blend" }
//!     }
//!   ]
//! }
//! ```

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization as _;

/// The manifest's file name inside a project directory.
pub const MANIFEST_FILE: &str = "rpb-manifest.json";

/// The manifest format this crate writes (and the newest it reads).
pub const MANIFEST_FORMAT: u32 = 1;

pub use crate::name::{InvalidName, MAX_NAME_LEN, validate_name};

/// A validated project name: safe as one path component here and on the pod.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct ProjectName(String);

impl ProjectName {
    /// Validates `name` after composing it (Unicode NFC), so `café` typed with a combining
    /// accent names the same project as `café` typed with the composed letter.
    ///
    /// # Errors
    ///
    /// [`crate::Error::InvalidProjectName`], whose source says which rule was broken.
    pub fn new(name: impl Into<String>) -> crate::Result<Self> {
        let name = name.into();
        let composed: String = name.nfc().collect();
        match validate_name(&composed) {
            Ok(()) => Ok(Self(composed)),
            Err(source) => Err(crate::Error::InvalidProjectName { name, source }),
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ProjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for ProjectName {
    type Err = crate::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl AsRef<str> for ProjectName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for ProjectName {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        validate_name(&name).map_err(serde::de::Error::custom)?;
        Ok(Self(name))
    }
}

/// Where a saved file came from.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Source {
    /// The pod it was downloaded from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_id: Option<String>,
    /// Its path on the pod (or wherever it came from).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_path: Option<String>,
}

impl Source {
    /// A file downloaded from `remote_path` on pod `pod_id`.
    pub fn pod(pod_id: impl Into<String>, remote_path: impl Into<String>) -> Self {
        Self {
            pod_id: Some(pod_id.into()),
            remote_path: Some(remote_path.into()),
        }
    }

    /// A file of unknown or local origin.
    pub fn local() -> Self {
        Self::default()
    }
}

/// What a manifest entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum FileKind {
    /// A saved `.blend` version.
    Version,
    /// Any other tracked file (render, asset, script).
    File,
    /// A kind written by a newer version of this crate.
    #[serde(other)]
    Unknown,
}

/// One file recorded in a project manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct FileEntry {
    /// Path relative to the project directory, with `/` separators.
    pub name: String,
    /// Version or other file.
    pub kind: FileKind,
    /// For versions, the stem (`scene` for `scene-20261130-141502.blend`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stem: Option<String>,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the content, lowercase hex.
    pub sha256: String,
    /// When it was saved (UTC).
    pub saved_at: Timestamp,
    /// Where it came from.
    #[serde(default)]
    pub source: Source,
    /// Fields written by newer versions, kept as they are.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// A project's manifest: the versions and tracked files, and the latest version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Manifest {
    /// The manifest format version ([`MANIFEST_FORMAT`]).
    pub format_version: u32,
    /// The project's name.
    pub project: ProjectName,
    /// The file name of the most recently saved version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest: Option<String>,
    /// Every recorded file, oldest first.
    #[serde(default)]
    pub files: Vec<FileEntry>,
    /// Fields written by newer versions, kept as they are.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Manifest {
    /// An empty manifest for `project`.
    pub fn new(project: ProjectName) -> Self {
        Self {
            format_version: MANIFEST_FORMAT,
            project,
            latest: None,
            files: Vec::new(),
            extra: serde_json::Map::new(),
        }
    }

    /// The saved versions, oldest first.
    pub fn versions(&self) -> impl Iterator<Item = &FileEntry> {
        self.files.iter().filter(|f| f.kind == FileKind::Version)
    }

    /// The latest version (the "latest" pointer).
    pub fn latest(&self) -> Option<&FileEntry> {
        let name = self.latest.as_deref()?;
        self.versions().find(|f| f.name == name)
    }

    /// The most recently saved version of `stem`.
    pub fn latest_of(&self, stem: &str) -> Option<&FileEntry> {
        self.versions()
            .filter(|f| f.stem.as_deref() == Some(stem))
            .max_by_key(|f| f.saved_at)
    }

    /// Resolves `spec`: `latest`, a version's file name, a stem (its latest version), or the
    /// name of a recorded `.blend` file. `latest` in a project without versions (a hand-made
    /// one whose `.blend` files were recorded as they are) is its newest recorded `.blend`.
    pub fn resolve(&self, spec: &str) -> Option<&FileEntry> {
        if spec == "latest" {
            return self.latest().or_else(|| {
                self.loose_blends().max_by(|a, b| {
                    a.saved_at
                        .cmp(&b.saved_at)
                        .then_with(|| a.name.cmp(&b.name))
                })
            });
        }
        self.versions()
            .find(|f| f.name == spec)
            .or_else(|| self.latest_of(spec))
            // A recorded `.blend` that is not a version (found in a hand-made project), by name.
            .or_else(|| self.loose_blends().find(|f| f.name == spec))
    }

    /// Recorded `.blend` files that are not versions (found in a hand-made project).
    fn loose_blends(&self) -> impl Iterator<Item = &FileEntry> {
        self.files.iter().filter(|f| {
            f.kind != FileKind::Version
                && Path::new(&f.name)
                    .extension()
                    .is_some_and(|extension| extension.eq_ignore_ascii_case("blend"))
        })
    }

    /// The entry for a tracked file or version named `name`.
    pub fn file(&self, name: &str) -> Option<&FileEntry> {
        self.files.iter().find(|f| f.name == name)
    }

    /// Adds or replaces (by name) an entry; a version becomes the latest.
    pub(crate) fn record(&mut self, entry: FileEntry) {
        if entry.kind == FileKind::Version {
            self.latest = Some(entry.name.clone());
        }
        if let Some(existing) = self.files.iter_mut().find(|f| f.name == entry.name) {
            *existing = entry;
        } else {
            self.files.push(entry);
        }
    }
}

/// A project: its name, directory and manifest.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Project {
    /// The name.
    pub name: ProjectName,
    /// Its directory, `<workspace>/projects/<name>`.
    pub dir: PathBuf,
    /// Its manifest (empty when none was written yet).
    pub manifest: Manifest,
}

impl Project {
    /// The path of the manifest file.
    pub fn manifest_path(&self) -> PathBuf {
        self.dir.join(MANIFEST_FILE)
    }

    /// The path of a recorded file.
    pub fn path_of(&self, entry: &FileEntry) -> PathBuf {
        self.dir.join(Path::new(&entry.name))
    }

    /// The saved versions, oldest first.
    pub fn versions(&self) -> impl Iterator<Item = &FileEntry> {
        self.manifest.versions()
    }

    /// The latest version.
    pub fn latest(&self) -> Option<&FileEntry> {
        self.manifest.latest()
    }

    /// Resolves `latest`, a version file name, or a stem; see [`Manifest::resolve`].
    ///
    /// # Errors
    ///
    /// [`crate::Error::VersionNotFound`] when nothing matches.
    pub fn resolve(&self, spec: &str) -> crate::Result<&FileEntry> {
        self.manifest
            .resolve(spec)
            .ok_or_else(|| crate::Error::VersionNotFound {
                project: self.name.to_string(),
                spec: spec.to_owned(),
            })
    }
}

/// Picks the versioned file name for `stem` saved at `at` (UTC):
/// `<stem>-YYYYMMDD-HHMMSS.blend`, with `-2`, `-3`, ... appended when that name is `taken`.
/// `None` only if [`MAX_SAME_SECOND_VERSIONS`] names for that second are all taken.
pub fn version_file_name(
    stem: &str,
    at: Timestamp,
    taken: impl Fn(&str) -> bool,
) -> Option<String> {
    let base = format!("{stem}-{}", at.strftime("%Y%m%d-%H%M%S"));
    let first = format!("{base}.blend");
    if !taken(&first) {
        return Some(first);
    }
    (2..=MAX_SAME_SECOND_VERSIONS)
        .map(|n| format!("{base}-{n}.blend"))
        .find(|name| !taken(name))
}

/// How many versions of one stem can be saved within the same second.
pub const MAX_SAME_SECOND_VERSIONS: u32 = 10_000;

/// Normalizes a stem: strips a trailing `.blend` and validates the rest.
pub(crate) fn normalize_stem(stem: &str) -> crate::Result<String> {
    let composed: String = stem.nfc().collect();
    let trimmed = composed.strip_suffix(".blend").unwrap_or(&composed);
    validate_name(trimmed)
        .map(|()| trimmed.to_owned())
        .map_err(|source| crate::Error::InvalidStem {
            stem: stem.to_owned(),
            source,
        })
}

/// Checks that `path` is a relative path inside a project (no `..`, no root, no prefix) and
/// returns its `/`-separated form.
pub(crate) fn tracked_name(path: &Path) -> Option<String> {
    use std::path::Component;
    let mut parts = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => parts.push(part.to_str()?.to_owned()),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    if parts.is_empty() || parts.first().is_some_and(|p| p == MANIFEST_FILE) {
        return None;
    }
    Some(parts.join("/"))
}

/// The names already used by a manifest, for [`version_file_name`].
pub(crate) fn used_names(manifest: &Manifest) -> BTreeSet<String> {
    manifest.files.iter().map(|f| f.name.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated_with_distinct_errors() {
        let long = "a".repeat(MAX_NAME_LEN + 1);
        let cases: Vec<(&str, InvalidName)> = vec![
            ("", InvalidName::Empty),
            (
                &long,
                InvalidName::TooLong {
                    len: MAX_NAME_LEN + 1,
                    max: MAX_NAME_LEN,
                },
            ),
            ("a/b", InvalidName::PathSeparator { separator: '/' }),
            ("a\\b", InvalidName::PathSeparator { separator: '\\' }),
            ("..", InvalidName::ParentDirectory),
            (".", InvalidName::LeadingDot),
            (".hidden", InvalidName::LeadingDot),
            ("-rf", InvalidName::LeadingDash),
            (" a", InvalidName::SurroundingWhitespace),
            ("a\t", InvalidName::SurroundingWhitespace),
            ("a\nb", InvalidName::ControlCharacter { position: 1 }),
            ("a\0", InvalidName::ControlCharacter { position: 1 }),
            (
                "ch\u{200B}air",
                InvalidName::InvisibleCharacter {
                    position: 2,
                    code: 0x200B,
                },
            ),
            (
                "a\u{202E}gpj.exe",
                InvalidName::InvisibleCharacter {
                    position: 1,
                    code: 0x202E,
                },
            ),
            (
                "\u{0441}hair",
                InvalidName::Confusable {
                    position: 0,
                    code: 0x0441,
                },
            ),
            (
                "\u{FF43}hair",
                InvalidName::Confusable {
                    position: 0,
                    code: 0xFF43,
                },
            ),
            (
                "\u{FB01}le",
                InvalidName::Confusable {
                    position: 0,
                    code: 0xFB01,
                },
            ),
            (
                "scene\u{00B2}",
                InvalidName::Confusable {
                    position: 5,
                    code: 0xB2,
                },
            ),
            (
                "cafe\u{0301}",
                InvalidName::NotComposed {
                    position: 4,
                    code: 0x0301,
                },
            ),
        ];
        for (name, expected) in cases {
            assert_eq!(validate_name(name), Err(expected), "{name:?}");
        }
        for ok in [
            "robot-arm",
            "Szene Über",
            "Стул",
            "καρέκλα",
            "a..b",
            "v1.2",
            &"x".repeat(MAX_NAME_LEN),
        ] {
            assert_eq!(validate_name(ok), Ok(()), "{ok:?}");
        }
    }

    #[test]
    fn names_are_composed_so_look_alike_spellings_are_one_project() {
        let decomposed = ProjectName::new("cafe\u{0301}").unwrap();
        let composed = ProjectName::new("caf\u{00E9}").unwrap();
        assert_eq!(decomposed, composed);
        assert_eq!(decomposed.as_str(), "caf\u{00E9}");
        assert_eq!(normalize_stem("cafe\u{0301}.blend").unwrap(), "caf\u{00E9}");
        // The Ångström sign is its own look-alike of `Å`, and composition alone replaces it.
        assert_eq!(
            validate_name("\u{212B}ngstrom"),
            Err(InvalidName::NotComposed {
                position: 0,
                code: 0x212B
            })
        );
        assert_eq!(
            ProjectName::new("\u{212B}ngstrom").unwrap().as_str(),
            "\u{00C5}ngstrom"
        );
        // Taken as they are, folder and manifest names are checked, not changed.
        let manifest: Result<ProjectName, _> = serde_json::from_str(r#""cafe\u0301""#);
        assert!(manifest.is_err());
    }

    #[test]
    fn version_names_are_utc_and_unique() {
        let at: Timestamp = "2026-11-30T14:15:02.5Z".parse().unwrap();
        assert_eq!(
            version_file_name("scene", at, |_| false).unwrap(),
            "scene-20261130-141502.blend"
        );
        let taken = [
            "scene-20261130-141502.blend",
            "scene-20261130-141502-2.blend",
        ];
        assert_eq!(
            version_file_name("scene", at, |n| taken.contains(&n)).as_deref(),
            Some("scene-20261130-141502-3.blend")
        );
        assert_eq!(version_file_name("scene", at, |_| true), None);
    }

    #[test]
    fn stems_and_tracked_paths() {
        assert_eq!(normalize_stem("scene.blend").unwrap(), "scene");
        assert!(normalize_stem("../x").is_err());
        assert_eq!(
            tracked_name(Path::new("./renders/f1.png")).as_deref(),
            Some("renders/f1.png")
        );
        assert_eq!(tracked_name(Path::new("../x")), None);
        assert_eq!(tracked_name(Path::new("/etc/passwd")), None);
        assert_eq!(tracked_name(Path::new(MANIFEST_FILE)), None);
        assert_eq!(tracked_name(Path::new(".")), None);
    }

    #[test]
    fn manifest_round_trips_and_keeps_unknown_fields() {
        let text = r#"{"format_version":1,"project":"p","latest":"s-1.blend","future":true,
            "files":[{"name":"s-1.blend","kind":"version","stem":"s","size":3,"sha256":"ab",
            "saved_at":"2026-11-30T14:15:02Z","source":{"pod_id":"x"},"extra_field":[1]},
            {"name":"r.png","kind":"hologram","size":1,"sha256":"cd",
            "saved_at":"2026-11-30T14:15:03Z"}]}"#;
        let manifest: Manifest = serde_json::from_str(text).unwrap();
        assert_eq!(manifest.latest().unwrap().stem.as_deref(), Some("s"));
        assert_eq!(manifest.files[1].kind, FileKind::Unknown);
        assert_eq!(manifest.resolve("s").unwrap().name, "s-1.blend");
        assert!(manifest.resolve("nope").is_none());
        let again = serde_json::to_value(&manifest).unwrap();
        assert_eq!(again["future"], true);
        assert_eq!(again["files"][0]["extra_field"][0], 1);
    }

    #[test]
    fn manifest_rejects_invalid_project_names() {
        let text = r#"{"format_version":1,"project":"../etc","files":[]}"#;
        assert!(serde_json::from_str::<Manifest>(text).is_err());
    }
}
