//! Where the local pod keeps its state, and what it writes there: the pod environment and
//! private folders. (sshd's own files are pod-tunnel's fixture's.)

use std::collections::BTreeMap;
use std::io;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use super::{BLENDER, Error, NOVNC_WEB, Result, SESSION_PACKAGES};
use crate::assets::{self, SessionPorts};

/// Where everything lives in the state directory.
#[derive(Debug, Clone)]
pub(super) struct Paths {
    /// What the pods see as their pod root: a symlink to the volume of the pod that booted
    /// last (`machine_disk`, or a network volume's folder under `volumes`).
    pub(super) pod_root: PathBuf,
    /// The volume disk of pods without a network volume (all of them share it).
    pub(super) machine_disk: PathBuf,
    /// The network volumes' folders, one per volume id; on another file system than the state
    /// directory when one is at hand (a tmpfs), as a network volume is not the container disk.
    pub(super) volumes: PathBuf,
    /// What stands for the container disk (`RPB_CONTAINER_DISK`, `/` on a pod).
    pub(super) container_disk: PathBuf,
    pub(super) rpb_home: PathBuf,
    pub(super) sshd_dir: PathBuf,
    pub(super) host_keys: PathBuf,
    pub(super) client_key: PathBuf,
    pub(super) debs: PathBuf,
    pub(super) assets: PathBuf,
    pub(super) logs: PathBuf,
    /// The sessions' home folder (`HOME`), as a pod's `/root`.
    pub(super) home: PathBuf,
    /// Setup's download cache (`RPB_DOWNLOAD_CACHE`).
    pub(super) downloads: PathBuf,
    /// What `/run/rpb-farm` is on a pod: the farm daemons' PID files, the munge key and
    /// munged's socket (a folder open to all, as munged wants; [`LocalPod`] puts it in `/tmp`).
    ///
    /// [`LocalPod`]: super::LocalPod
    pub(super) farm_run: PathBuf,
}

impl Paths {
    pub(super) fn new(state: &Path) -> Self {
        let sshd_dir = state.join("sshd");
        let pod_root = state.join("pod-root");
        Self {
            rpb_home: pod_root.join("rpb"),
            pod_root,
            machine_disk: state.join("runpod"),
            volumes: state.join("volumes"),
            container_disk: state.to_path_buf(),
            host_keys: sshd_dir.join("host-keys"),
            client_key: sshd_dir.join("client").join("id_ed25519"),
            sshd_dir,
            debs: state.join("debs"),
            assets: state.join("assets"),
            logs: state.join("logs"),
            home: state.join("home"),
            downloads: shared_download_cache().unwrap_or_else(|| state.join("downloads")),
            farm_run: state.join("farm-run"),
        }
    }

    pub(super) fn create(&self) -> Result<()> {
        for dir in [
            &self.machine_disk,
            &self.volumes,
            &self.debs,
            &self.assets,
            &self.logs,
            &self.home,
        ] {
            std::fs::create_dir_all(dir).map_err(|source| Error::Prepare {
                path: dir.clone(),
                source,
            })?;
        }
        let client_dir = self
            .client_key
            .parent()
            .expect("invariant: the client key is in a folder");
        for dir in [&self.sshd_dir, &self.host_keys, &client_dir.to_path_buf()] {
            create_private_dir(dir)?;
        }
        // A run that did not shut down may have left it on a volume: back to the machine's.
        self.point_pod_root_at(&self.machine_disk.clone())
            .map(drop)
            .map_err(|source| Error::Prepare {
                path: self.pod_root.clone(),
                source,
            })
    }

    /// The folder of network volume `volume_id` (made when missing).
    pub(super) fn volume_dir(&self, volume_id: &str) -> io::Result<PathBuf> {
        // Volume ids are the simulator's own; anything else would not be one folder.
        if volume_id.is_empty()
            || !volume_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(io::Error::other(format!(
                "network volume id {volume_id:?} is not a plain name"
            )));
        }
        let dir = self.volumes.join(volume_id);
        std::fs::create_dir_all(&dir)?;
        Ok(dir)
    }

    /// Makes the pod root lead to `target`, replacing the symlink in one rename. Returns
    /// whether it changed.
    pub(super) fn point_pod_root_at(&self, target: &Path) -> io::Result<bool> {
        if std::fs::read_link(&self.pod_root).is_ok_and(|current| current == target) {
            return Ok(false);
        }
        if self
            .pod_root
            .symlink_metadata()
            .is_ok_and(|meta| meta.is_dir())
        {
            return Err(io::Error::other(
                "the pod root is a folder, not the local pod's symlink",
            ));
        }
        let mut name = self.pod_root.as_os_str().to_owned();
        name.push(".rpb-new");
        let temporary = PathBuf::from(name);
        let _ = std::fs::remove_file(&temporary);
        std::os::unix::fs::symlink(target, &temporary)?;
        std::fs::rename(&temporary, &self.pod_root)?;
        Ok(true)
    }

    pub(super) fn session_script(&self) -> PathBuf {
        self.assets.join(assets::SESSION_SCRIPT.name)
    }

    pub(super) fn run_dir(&self) -> PathBuf {
        self.rpb_home.join("run")
    }

    /// The session PID folders of every volume, the one at the pod root or not: the machine's
    /// disk and each network volume's folder (a run that ends abruptly may leave a session on
    /// a volume the pod root no longer leads to).
    pub(super) fn run_dirs(&self) -> Vec<PathBuf> {
        let run = |root: &Path| root.join("rpb").join("run");
        let mut dirs = vec![run(&self.machine_disk)];
        if let Ok(entries) = std::fs::read_dir(&self.volumes) {
            dirs.extend(entries.flatten().map(|entry| run(&entry.path())));
        }
        dirs
    }

    /// The render farm's Slurm state folders: as the pods name it (through the pod root, as
    /// slurm.conf and so the task processes' command lines do), and of every volume (see
    /// `run_dirs`).
    pub(super) fn farm_state_dirs(&self) -> Vec<PathBuf> {
        let state = |root: &Path| root.join("rpb").join("farm").join("state");
        let mut dirs = vec![state(&self.pod_root), state(&self.machine_disk)];
        if let Ok(entries) = std::fs::read_dir(&self.volumes) {
            dirs.extend(entries.flatten().map(|entry| state(&entry.path())));
        }
        dirs
    }
}

/// The pod-side environment (see [`LocalPod::pod_env`](super::LocalPod::pod_env)).
pub(super) fn pod_env(
    paths: &Paths,
    ports: SessionPorts,
    display: u32,
) -> BTreeMap<String, String> {
    let path = |p: &Path| p.display().to_string();
    [
        ("RPB_POD_ROOT", path(&paths.pod_root)),
        ("RPB_HOME", path(&paths.rpb_home)),
        ("RPB_MCP_PORT", ports.mcp.to_string()),
        ("RPB_CONTROL_PORT", ports.control.to_string()),
        ("RPB_VNC_PORT", ports.vnc.to_string()),
        ("RPB_NOVNC_PORT", ports.novnc.to_string()),
        ("RPB_DISPLAY", display.to_string()),
        ("RPB_SCREEN", "1280x720x24".to_owned()),
        ("BLENDER_BIN", BLENDER.to_owned()),
        ("RPB_NOVNC_WEB", NOVNC_WEB.to_owned()),
        ("RPB_PACKAGES", SESSION_PACKAGES.to_owned()),
        ("RPB_DEB_SOURCE", path(&paths.debs)),
        ("RPB_DOWNLOAD_CACHE", path(&paths.downloads)),
        ("RPB_SSH_DIR", path(&paths.host_keys)),
        ("RPB_CONTAINER_DISK", path(&paths.container_disk)),
        ("HOME", path(&paths.home)),
        ("RPB_FARM_RUN", path(&paths.farm_run)),
        // All pods of a local pod share this machine: a farm's nodes meet on loopback.
        ("RPB_FARM_NODE_ADDR", "127.0.0.1".to_owned()),
        // Slurm and munge come from this machine's packages; a farm node never installs them.
        ("RPB_FARM_NO_INSTALL", "1".to_owned()),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value))
    .collect()
}

/// The download cache all local pods of this machine user share (setup checks each file's hash
/// before it uses it), so tests and demos download the MCP addon's release once.
fn shared_download_cache() -> Option<PathBuf> {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|dir| Path::new(dir).is_absolute())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
    cache
        .is_absolute()
        .then(|| cache.join("rpb").join("local-pod-downloads"))
}

pub(super) fn create_private_dir(dir: &Path) -> Result<()> {
    let prepare = || -> io::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
    };
    prepare().map_err(|source| Error::Prepare {
        path: dir.to_path_buf(),
        source,
    })
}

pub(super) fn read_trimmed(path: &Path) -> Result<String> {
    std::fs::read_to_string(path)
        .map(|text| text.trim().to_owned())
        .map_err(|source| Error::Prepare {
            path: path.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pod_env_points_into_the_state_directory() {
        let paths = Paths::new(Path::new("/state"));
        let ports = SessionPorts {
            mcp: 21_001,
            control: 21_004,
            vnc: 21_002,
            novnc: 21_003,
        };
        let env = pod_env(&paths, ports, 321);
        assert_eq!(env["RPB_POD_ROOT"], "/state/pod-root");
        assert_eq!(env["RPB_HOME"], "/state/pod-root/rpb");
        assert_eq!(env["RPB_CONTAINER_DISK"], "/state");
        assert_eq!(env["RPB_DISPLAY"], "321");
        assert_eq!(env["RPB_SSH_DIR"], "/state/sshd/host-keys");
        assert_eq!(env["BLENDER_BIN"], BLENDER);
        assert_eq!(env["RPB_PACKAGES"], "xvfb x11vnc novnc websockify");
        assert_eq!(env["RPB_MCP_PORT"], "21001");
        assert_eq!(env["RPB_CONTROL_PORT"], "21004");
        assert_eq!(env["HOME"], "/state/home");
    }
}

#[cfg(test)]
mod switch_tests {
    use super::*;

    #[test]
    fn the_pod_root_switches_between_disks_in_one_rename() {
        let state = tempfile::tempdir().expect("tempdir");
        let paths = Paths::new(state.path());
        paths.create().expect("create");
        assert_eq!(
            std::fs::read_link(&paths.pod_root).expect("symlink"),
            paths.machine_disk
        );
        std::fs::write(paths.pod_root.join("on-disk"), b"1").expect("write");
        let volume = paths.volume_dir("vol-1").expect("volume dir");
        assert!(paths.point_pod_root_at(&volume).expect("switch"));
        assert!(!paths.point_pod_root_at(&volume).expect("same"));
        assert!(!paths.pod_root.join("on-disk").exists());
        std::fs::write(paths.pod_root.join("on-volume"), b"2").expect("write");
        assert!(volume.join("on-volume").is_file());
        // A new run starts on the machine's disk again.
        paths.create().expect("create again");
        assert!(paths.pod_root.join("on-disk").is_file());
        assert_eq!(
            paths.run_dirs(),
            [
                paths.machine_disk.join("rpb/run"),
                paths.volumes.join("vol-1/rpb/run")
            ]
        );
        assert!(paths.volume_dir("../x").is_err());
    }
}
