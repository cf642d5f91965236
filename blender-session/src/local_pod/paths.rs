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
    pub(super) pod_root: PathBuf,
    pub(super) rpb_home: PathBuf,
    pub(super) sshd_dir: PathBuf,
    pub(super) host_keys: PathBuf,
    pub(super) client_key: PathBuf,
    pub(super) debs: PathBuf,
    pub(super) assets: PathBuf,
    pub(super) logs: PathBuf,
    /// The sessions' home folder (`HOME`), as a pod's `/root`.
    pub(super) home: PathBuf,
}

impl Paths {
    pub(super) fn new(state: &Path) -> Self {
        let sshd_dir = state.join("sshd");
        let pod_root = state.join("runpod");
        Self {
            rpb_home: pod_root.join("rpb"),
            pod_root,
            host_keys: sshd_dir.join("host-keys"),
            client_key: sshd_dir.join("client").join("id_ed25519"),
            sshd_dir,
            debs: state.join("debs"),
            assets: state.join("assets"),
            logs: state.join("logs"),
            home: state.join("home"),
        }
    }

    pub(super) fn create(&self) -> Result<()> {
        for dir in [
            &self.pod_root,
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
        Ok(())
    }

    pub(super) fn session_script(&self) -> PathBuf {
        self.assets.join(assets::SESSION_SCRIPT.name)
    }

    pub(super) fn run_dir(&self) -> PathBuf {
        self.rpb_home.join("run")
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
        ("RPB_VNC_PORT", ports.vnc.to_string()),
        ("RPB_NOVNC_PORT", ports.novnc.to_string()),
        ("RPB_DISPLAY", display.to_string()),
        ("RPB_SCREEN", "1280x720x24".to_owned()),
        ("BLENDER_BIN", BLENDER.to_owned()),
        ("RPB_NOVNC_WEB", NOVNC_WEB.to_owned()),
        ("RPB_PACKAGES", SESSION_PACKAGES.to_owned()),
        ("RPB_DEB_SOURCE", path(&paths.debs)),
        ("RPB_SSH_DIR", path(&paths.host_keys)),
        ("HOME", path(&paths.home)),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value))
    .collect()
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
            vnc: 21_002,
            novnc: 21_003,
        };
        let env = pod_env(&paths, ports, 321);
        assert_eq!(env["RPB_POD_ROOT"], "/state/runpod");
        assert_eq!(env["RPB_HOME"], "/state/runpod/rpb");
        assert_eq!(env["RPB_DISPLAY"], "321");
        assert_eq!(env["RPB_SSH_DIR"], "/state/sshd/host-keys");
        assert_eq!(env["BLENDER_BIN"], BLENDER);
        assert_eq!(env["RPB_PACKAGES"], "xvfb x11vnc novnc websockify");
        assert_eq!(env["RPB_MCP_PORT"], "21001");
        assert_eq!(env["HOME"], "/state/home");
    }
}
