//! The workspace's `.env` on the [`Store`]: reading the configuration and the raw document,
//! and changing one setting in place under its lock.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::Path;

use secrecy::{ExposeSecret, SecretString};

use super::{MAX_ENV_FILE_BYTES, Store};
use crate::config::{self, Config, ConfigKey};
use crate::dotenv::Document;
use crate::error::{Error, Result};
use crate::fsutil::{self, PRIVATE_FILE_MODE};

impl Store {
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
}
