//! Projects on the [`Store`]: creating, listing and describing them, saving `.blend` versions
//! ([`SaveVersion`]), tracking and verifying files, and the manifest under its lock.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::Path;

use jiff::Timestamp;
use sha2::{Digest, Sha256};

use super::{OnExisting, Store};
use crate::error::{Error, Result};
use crate::fsutil::{self, PRIVATE_DIR_MODE, PUBLIC_FILE_MODE};
use crate::project::{
    self, FileEntry, FileKind, MANIFEST_FILE, MANIFEST_FORMAT, Manifest, Project, ProjectName,
    Source,
};

const COPY_BUFFER: usize = 64 * 1024;

impl Store {
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
        self.track_file_saved(name, relative.as_ref(), source, false)
    }

    /// [`Store::track_file`]; with `at_mtime`, the entry's `saved_at` is the file's
    /// modification time (a file saved by hand before rpb knew it) instead of now.
    fn track_file_saved(
        &self,
        name: &ProjectName,
        relative: &Path,
        source: Source,
        at_mtime: bool,
    ) -> Result<FileEntry> {
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
        let modified = file.metadata().and_then(|meta| meta.modified()).ok();
        let (size, sha256) = hash_copy(&mut file, &mut io::sink()).map_err(|e| match e {
            CopyError::Read(source) | CopyError::Write(source) => map(source),
        })?;
        let saved_at = modified
            .filter(|_| at_mtime)
            .and_then(|time| Timestamp::try_from(time).ok())
            .unwrap_or_else(Timestamp::now);
        let entry = FileEntry {
            name: entry_name,
            kind: FileKind::File,
            stem: None,
            size,
            sha256,
            saved_at,
            source,
            extra: serde_json::Map::new(),
        };
        self.update_manifest(name, &project.dir, |manifest| {
            manifest.record(entry.clone());
        })?;
        Ok(entry)
    }

    /// Records the `.blend` files directly in project `name`'s folder that its manifest does
    /// not list yet (a workspace made by hand or by the original scripts), with their size and
    /// SHA-256, without moving or renaming them. Symbolic links and other files are left alone.
    /// Returns the new entries, sorted by name; a second run finds none.
    ///
    /// # Errors
    ///
    /// [`Error::ListProjects`] when the folder cannot be read, and the errors of
    /// [`Store::track_file`].
    pub fn track_loose_blends(&self, name: &ProjectName) -> Result<Vec<FileEntry>> {
        let project = self.project(name)?;
        let map = |source| Error::ListProjects {
            path: project.dir.clone(),
            source,
        };
        let mut loose = Vec::new();
        for entry in fs::read_dir(&project.dir).map_err(map)? {
            let entry = entry.map_err(map)?;
            let Some(file_name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let is_file = entry.file_type().map_err(map)?.is_file();
            let known = project.manifest.files.iter().any(|f| f.name == file_name);
            let is_blend = Path::new(&file_name)
                .extension()
                .is_some_and(|extension| extension.eq_ignore_ascii_case("blend"));
            if is_file && !known && is_blend {
                loose.push(file_name);
            }
        }
        loose.sort();
        loose
            .iter()
            .map(|file_name| {
                self.track_file_saved(name, Path::new(file_name), Source::local(), true)
            })
            .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

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
