//! Where `scripts/install-python-peers.sh` puts the Python programs some tests run as real
//! peers: one venv per `scripts/python-peers/<name>.txt`, and the pinned mcp-for-blender wheel
//! in the download cache local pods share.

use std::path::PathBuf;

/// `${XDG_CACHE_HOME:-$HOME/.cache}/rpb`, as the install script and the local pod use it.
fn cache() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map_or_else(
            || PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache"),
            PathBuf::from,
        )
        .join("rpb")
}

/// The venv `name` (`bpy-4.5.15`, `mcp-for-blender-2.2.4`): under `RPB_PYTHON_PEERS` when
/// set.
///
/// # Panics
///
/// Naming the install script, when its `program` (under `bin/`) is missing.
pub fn venv(name: &str, program: &str, what: &str) -> PathBuf {
    let root = std::env::var_os("RPB_PYTHON_PEERS").map_or_else(cache, PathBuf::from);
    let venv = root.join(name);
    assert!(
        venv.join("bin").join(program).is_file(),
        "{} is missing: run `bash scripts/install-python-peers.sh` ({what}, hash-pinned; \
         CPython 3.11 with python3-venv)",
        venv.join("bin").join(program).display()
    );
    venv
}

/// The download cache local pods share, holding the wheel `file`.
///
/// # Panics
///
/// Naming the install script, when the wheel is missing.
pub fn local_pod_download(file: &str) -> PathBuf {
    let dir = cache().join("local-pod-downloads");
    assert!(
        dir.join(file).is_file(),
        "{} is missing: run `bash scripts/install-python-peers.sh` (it downloads the pinned \
         mcp-for-blender wheel from PyPI, hash-checked)",
        dir.join(file).display()
    );
    dir
}
