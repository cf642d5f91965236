//! What the local pod takes from this machine: the programs it needs, free ports and X
//! displays, a random API key.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::sync::{Mutex, PoisonError};

use secrecy::SecretString;

use super::{BLENDER, Error, NOVNC_WEB, Result, SSHD};

/// Fails, naming every missing program's Debian package, unless all are installed.
pub(super) fn require_programs() -> Result<()> {
    let checks: [(&str, bool, &str); 9] = [
        (SSHD, is_executable(Path::new(SSHD)), "openssh-server"),
        ("ssh-keygen", which("ssh-keygen"), "openssh-client"),
        (BLENDER, is_executable(Path::new(BLENDER)), "blender"),
        ("Xvfb", which("Xvfb"), "xvfb"),
        ("x11vnc", which("x11vnc"), "x11vnc"),
        ("websockify", which("websockify"), "websockify"),
        (
            "/usr/share/novnc/vnc.html",
            Path::new(NOVNC_WEB).join("vnc.html").is_file(),
            "novnc",
        ),
        ("setsid", which("setsid"), "util-linux"),
        ("flock", which("flock"), "util-linux"),
    ];
    require(&checks)
}

/// Fails naming each missing program with its Debian package, given `(program, found,
/// package)` checks.
pub(super) fn require(checks: &[(&str, bool, &str)]) -> Result<()> {
    let missing: Vec<_> = checks.iter().filter(|(_, found, _)| !found).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let mut packages: Vec<&str> = missing.iter().map(|(_, _, package)| *package).collect();
    packages.dedup();
    Err(Error::MissingPackages {
        missing: missing
            .iter()
            .map(|(program, _, package)| format!("{program} (Debian package {package})"))
            .collect::<Vec<_>>()
            .join(", "),
        packages: packages.join(" "),
    })
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path)
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

pub(super) fn which(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| is_executable(&dir.join(program)))
    })
}

pub(super) fn random_api_key() -> SecretString {
    let bytes: [u8; 24] = rand::random();
    let key = bytes
        .iter()
        .fold(String::with_capacity(48), |mut key, byte| {
            let _ = write!(key, "{byte:02x}");
            key
        });
    SecretString::from(format!("rpb-local-{key}"))
}

/// Ports and displays handed out by this process, so two local pods never share one.
static TAKEN: Mutex<Option<HashSet<u32>>> = Mutex::new(None);

fn take(value: u32) -> bool {
    let mut taken = TAKEN.lock().unwrap_or_else(PoisonError::into_inner);
    taken.get_or_insert_with(HashSet::new).insert(value)
}

/// A free loopback port for a session part, below the kernel's ephemeral range (so no
/// outgoing connection takes it before the session starts), never 9876/5900/6080.
pub(super) fn free_port() -> Result<u16> {
    for _ in 0..500 {
        let port: u16 = rand::random_range(20_000..32_000);
        let key = u32::from(port) | 0x1_0000;
        if std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() && take(key) {
            return Ok(port);
        }
    }
    Err(Error::NoFree {
        what: "loopback port between 20000 and 32000",
    })
}

/// An X display number with neither a lock file nor a socket.
pub(super) fn free_display() -> Result<u32> {
    for _ in 0..500 {
        let display: u32 = rand::random_range(100..1_000);
        if !Path::new(&format!("/tmp/.X{display}-lock")).exists()
            && !Path::new(&format!("/tmp/.X11-unix/X{display}")).exists()
            && take(display)
        {
            return Ok(display);
        }
    }
    Err(Error::NoFree {
        what: "X display number between 100 and 1000",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_and_displays_are_never_handed_out_twice() {
        let ports: HashSet<u16> = (0..20).map(|_| free_port().unwrap()).collect();
        assert_eq!(ports.len(), 20);
        assert!(ports.iter().all(|port| (20_000..32_000).contains(port)));
        let displays: HashSet<u32> = (0..10).map(|_| free_display().unwrap()).collect();
        assert_eq!(displays.len(), 10);
    }
}
