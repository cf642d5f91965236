//! Where tests keep what they want a person (or CI) to look at afterwards.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

/// Environment variable that overrides the artifact folder.
pub const ARTIFACT_DIR_ENV: &str = "RPB_TEST_ARTIFACTS";

/// The folder for test artifacts, created if needed.
///
/// In order: `$RPB_TEST_ARTIFACTS`; `test-artifacts/` in the Cargo target folder the running
/// test binary was built in (found by its `CACHEDIR.TAG`); `test-artifacts/` under an absolute
/// `$CARGO_TARGET_DIR`; `target/test-artifacts/` in the workspace.
///
/// # Errors
/// Fails when the folder cannot be created.
pub fn artifact_dir() -> anyhow::Result<PathBuf> {
    let dir = if let Some(dir) = std::env::var_os(ARTIFACT_DIR_ENV) {
        PathBuf::from(dir)
    } else {
        target_dir().join("test-artifacts")
    };
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("failed to create the artifact folder {}", dir.display()))?;
    Ok(dir)
}

/// Writes `bytes` to `name` in [`artifact_dir`] (replacing an older file atomically) and returns
/// the path.
///
/// # Errors
/// Fails when `name` is not a plain file name or the file cannot be written.
pub fn save_artifact(name: &str, bytes: &[u8]) -> anyhow::Result<PathBuf> {
    if !is_plain_file_name(name) {
        bail!("artifact name {name:?} must be a plain file name (no folders, not empty)");
    }
    let dir = artifact_dir()?;
    let path = dir.join(name);
    let temporary = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    std::fs::write(&temporary, bytes)
        .with_context(|| format!("failed to write the artifact {}", temporary.display()))?;
    std::fs::rename(&temporary, &path).with_context(|| {
        let _ = std::fs::remove_file(&temporary);
        format!(
            "failed to move the artifact into place at {}",
            path.display()
        )
    })?;
    Ok(path)
}

fn is_plain_file_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\', '\0'])
        && Path::new(name).file_name().is_some_and(|file| file == name)
}

fn target_dir() -> PathBuf {
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe
            .ancestors()
            .skip(1)
            .find(|dir| dir.join("CACHEDIR.TAG").is_file())
    {
        return dir.to_path_buf();
    }
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from)
        && dir.is_absolute()
    {
        return dir;
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).join("target")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_file_names_are_accepted() {
        assert!(is_plain_file_name("novnc.png"));
        assert!(is_plain_file_name(".hidden"));
        for bad in [
            "",
            ".",
            "..",
            "a/b.png",
            "../x",
            "/etc/passwd",
            "a\\b",
            "nul\0",
        ] {
            assert!(!is_plain_file_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn the_target_folder_is_where_cargo_builds() {
        // Unit tests run from target/<profile>/deps, under the folder holding CACHEDIR.TAG.
        assert!(
            target_dir().join("CACHEDIR.TAG").is_file(),
            "{}",
            target_dir().display()
        );
    }
}
