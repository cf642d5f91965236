//! Where the local pod keeps its state, and the files it writes there: the pod environment,
//! `sshd_config`, private folders and files.

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
    pub(super) authorized_keys: PathBuf,
    pub(super) sshd_config: PathBuf,
    pub(super) sshd_pid: PathBuf,
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
            authorized_keys: sshd_dir.join("authorized_keys"),
            sshd_config: sshd_dir.join("sshd_config"),
            sshd_pid: sshd_dir.join("sshd.pid"),
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

/// The sshd configuration: loopback only, keys only, forwarding and SFTP on, the pod
/// environment set in every session. Paths were checked by [`check_config_safe`].
pub(super) fn sshd_config(paths: &Paths, env: &BTreeMap<String, String>) -> String {
    let set_env = env
        .iter()
        .map(|(name, value)| format!("{name}=\"{value}\""))
        .collect::<Vec<_>>()
        .join(" ");
    format!(
        "# Written by rpb's local pod; regenerated at every start.\n\
         ListenAddress 127.0.0.1\n\
         HostKey \"{host_key}\"\n\
         PidFile \"{pid}\"\n\
         AuthorizedKeysFile \"{authorized}\"\n\
         PubkeyAuthentication yes\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         PermitRootLogin prohibit-password\n\
         UsePAM no\n\
         StrictModes no\n\
         AllowTcpForwarding yes\n\
         X11Forwarding no\n\
         Subsystem sftp internal-sftp\n\
         MaxSessions 64\n\
         MaxStartups 64\n\
         PrintMotd no\n\
         LogLevel INFO\n\
         SetEnv {set_env}\n",
        host_key = paths.host_keys.join("ssh_host_ed25519_key").display(),
        pid = paths.sshd_pid.display(),
        authorized = paths.authorized_keys.display(),
    )
}

/// Refuses paths that an `sshd_config` line (or its `SetEnv` quoting) cannot hold.
pub(super) fn check_config_safe(path: &Path) -> Result<()> {
    let ok = path.is_absolute()
        && path.to_str().is_some_and(|text| {
            !text.chars().any(|c| {
                c.is_whitespace() || c.is_control() || matches!(c, '"' | '\'' | '\\' | '%')
            })
        });
    if ok {
        Ok(())
    } else {
        Err(Error::UnsupportedPath {
            path: path.to_path_buf(),
        })
    }
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

pub(super) fn write_file(path: &Path, contents: &str, mode: u32) -> Result<()> {
    let write = || -> io::Result<()> {
        let temporary = path.with_extension("rpb-tmp");
        std::fs::write(&temporary, contents)?;
        std::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(mode))?;
        std::fs::rename(&temporary, path)
    };
    write().map_err(|source| Error::Prepare {
        path: path.to_path_buf(),
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
    fn paths_sshd_config_cannot_hold_are_refused() {
        assert!(check_config_safe(Path::new("/tmp/rpb-local-pod-x1")).is_ok());
        for bad in [
            "relative/dir",
            "/tmp/with space",
            "/tmp/q\"uote",
            "/tmp/100%",
            "/tmp/a\\b",
        ] {
            assert!(
                matches!(
                    check_config_safe(Path::new(bad)),
                    Err(Error::UnsupportedPath { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_sshd_config_is_private_and_sets_the_pod_env() {
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
        let config = sshd_config(&paths, &env);
        for line in [
            "ListenAddress 127.0.0.1\n",
            "PasswordAuthentication no\n",
            "UsePAM no\n",
            "StrictModes no\n",
            "AllowTcpForwarding yes\n",
            "Subsystem sftp internal-sftp\n",
            "HostKey \"/state/sshd/host-keys/ssh_host_ed25519_key\"\n",
            "PidFile \"/state/sshd/sshd.pid\"\n",
        ] {
            assert!(config.contains(line), "{line:?} in\n{config}");
        }
        assert!(config.contains(" RPB_PACKAGES=\"xvfb x11vnc novnc websockify\""));
        assert!(config.contains(" RPB_MCP_PORT=\"21001\""));
    }
}
