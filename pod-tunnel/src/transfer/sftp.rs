//! Sending and receiving one file over SFTP, and SFTP directory helpers.

use std::fs;
use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::error::Result;

use super::job::{Job, Names, hex};

/// SFTP write size: a multiple of libssh2's 30 000-byte packets, so one call keeps 64 requests
/// in flight.
const SFTP_WRITE_CHUNK: usize = 30_000 * 64;
/// SFTP read size: libssh2 reads ahead four times this (capped at 8 MiB).
pub(super) const SFTP_READ_CHUNK: usize = 2 << 20;

impl Job<'_> {
    /// Sends the file over SFTP into `tmp` (created here), telling `verify` what was
    /// acknowledged; the hash of what was sent, and whether the server must hash the whole file
    /// again (an extra connection failed midway).
    pub(super) fn sftp_send(
        &self,
        names: &Names,
        sftp: Option<&ssh2::Sftp>,
        file: &fs::File,
        tmp: &Path,
        attributes: &Attributes,
        verify: &mut ssh2::Channel,
    ) -> Result<(String, bool)> {
        let own;
        let sftp = if let Some(sftp) = sftp {
            sftp
        } else {
            own = self.sftp(names)?;
            &own
        };
        let mut remote = self.create_temp(names, sftp, tmp)?;
        self.tell(names, verify, "go\n")?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0_u8; SFTP_WRITE_CHUNK];
        loop {
            let n = read_full(file, &mut buf)
                .map_err(|e| self.transfer_err(names, "reading the local file", e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            remote
                .write_all(&buf[..n])
                .map_err(|e| self.fail(names, "sending data", e))?;
            // Acknowledged: the server may hash it.
            self.tell(names, verify, &format!("{n}\n"))?;
            self.advance(n);
        }
        self.set_attributes(names, remote, attributes)?;
        Ok((hex(&hasher.finalize()), false))
    }

    /// Creates the temporary file (exclusively: it is ours).
    pub(super) fn create_temp(
        &self,
        names: &Names,
        sftp: &ssh2::Sftp,
        tmp: &Path,
    ) -> Result<ssh2::File> {
        sftp.open_mode(
            tmp,
            ssh2::OpenFlags::WRITE
                | ssh2::OpenFlags::CREATE
                | ssh2::OpenFlags::TRUNCATE
                | ssh2::OpenFlags::EXCLUSIVE,
            0o600,
            ssh2::OpenType::File,
        )
        .map_err(|e| self.fail(names, "creating the temporary file", e.into()))
    }

    /// Sets mode and times on the written file and closes it.
    pub(super) fn set_attributes(
        &self,
        names: &Names,
        mut remote: ssh2::File,
        attributes: &Attributes,
    ) -> Result<()> {
        let step = "setting mode and modification time";
        remote
            .setstat(ssh2::FileStat {
                size: None,
                uid: None,
                gid: None,
                perm: Some(attributes.mode),
                atime: Some(attributes.atime),
                mtime: Some(attributes.mtime),
            })
            .map_err(|e| self.fail(names, step, e.into()))?;
        remote
            .close()
            .map_err(|e| self.fail(names, "closing the temporary file", e.into()))
    }

    pub(super) fn sftp_receive(
        &self,
        names: &Names,
        sftp: &ssh2::Sftp,
        remote: &Path,
        file: &mut fs::File,
    ) -> Result<(String, u64)> {
        let mut source = sftp
            .open(remote)
            .map_err(|e| self.fail(names, "opening the remote file", e.into()))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0_u8; SFTP_READ_CHUNK];
        let mut got = 0_u64;
        loop {
            let n = source
                .read(&mut buf)
                .map_err(|e| self.fail(names, "receiving data", e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            file.write_all(&buf[..n])
                .map_err(|e| self.transfer_err(names, "writing the local copy", e))?;
            self.advance(n);
            got += n as u64;
        }
        Ok((hex(&hasher.finalize()), got))
    }
}

/// Mode and times an upload gives its file.
pub(super) struct Attributes {
    pub(super) mode: u32,
    pub(super) mtime: u64,
    pub(super) atime: u64,
}

fn read_full(mut file: impl io::Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

pub(super) fn walk_remote(
    sftp: &ssh2::Sftp,
    root: &Path,
    rel: &Path,
    dirs: &mut Vec<PathBuf>,
    files: &mut Vec<(PathBuf, u64)>,
) -> io::Result<()> {
    let mut entries = sftp.readdir(root.join(rel)).map_err(io::Error::from)?;
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    for (path, stat) in entries {
        let Some(name) = path.file_name() else {
            continue;
        };
        let child = rel.join(name);
        if stat.is_dir() {
            dirs.push(child.clone());
            walk_remote(sftp, root, &child, dirs, files)?;
        } else if stat.is_file() {
            files.push((child, stat.size.unwrap_or(0)));
        } else {
            tracing::warn!(path = %path.display(), "skipping a remote symbolic link or special file");
        }
    }
    Ok(())
}

pub(super) fn make_remote_dir(sftp: &ssh2::Sftp, path: &Path) -> io::Result<()> {
    match sftp.mkdir(path, 0o755) {
        Ok(()) => Ok(()),
        Err(e) => match sftp.stat(path) {
            Ok(stat) if stat.is_dir() => Ok(()),
            _ => Err(e.into()),
        },
    }
}
