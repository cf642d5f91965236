//! A "pod" on this machine: the embedded assets written to a temporary folder, a temporary pod
//! root, free loopback ports and a free X display, and bounded runs of the scripts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
pub(crate) use test_support::process::alive;

use anyhow::{Context as _, bail};
use tokio::io::AsyncWriteExt as _;

/// The peers the real-session tests need, with the Debian package providing each.
const PEERS: &[(&str, &str)] = &[
    ("blender", "blender"),
    ("Xvfb", "xvfb"),
    ("x11vnc", "x11vnc"),
    ("websockify", "websockify"),
    ("setsid", "util-linux"),
    ("flock", "util-linux"),
];

/// Finds `name` on PATH.
pub(crate) fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| std::fs::metadata(candidate).is_ok_and(|meta| meta.is_file()))
}

/// Fails, naming the Debian package to install, when a peer of the real-session tests is
/// missing. Never skips.
pub(crate) fn require_peers() -> PathBuf {
    let mut missing = Vec::new();
    for (binary, package) in PEERS {
        if which(binary).is_none() {
            missing.push(format!("{binary} (Debian package {package})"));
        }
    }
    if !Path::new("/usr/share/novnc/vnc.html").is_file() {
        missing.push("/usr/share/novnc/vnc.html (Debian package novnc)".to_owned());
    }
    assert!(
        missing.is_empty(),
        "the real-session tests need: {}; install with `apt-get install -y --no-install-recommends \
         blender xvfb x11vnc novnc websockify`",
        missing.join(", ")
    );
    which("blender").expect("checked above")
}

/// A free TCP port on 127.0.0.1, below the kernel's ephemeral range (32768 and up) so that no
/// connection or `bind(0)` elsewhere can take it between this check and the script's start,
/// and never the same twice in this test binary.
pub(crate) fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = 20_000 + (std::process::id() % 1_000) * 10;
    for _ in 0..2_000 {
        let offset = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = u16::try_from(20_000 + (base - 20_000 + offset) % 12_000).expect("below 32768");
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port between 20000 and 32000");
}

/// A display number with neither a lock file nor a socket, never the same twice in this test
/// binary, starting from a PID-derived number so parallel test binaries rarely collide.
pub(crate) fn free_display() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = 200 + std::process::id() % 500;
    for _ in 0..300 {
        let n = base + NEXT.fetch_add(1, Ordering::Relaxed);
        if !Path::new(&format!("/tmp/.X{n}-lock")).exists()
            && !Path::new(&format!("/tmp/.X11-unix/X{n}")).exists()
        {
            return n;
        }
    }
    panic!("no free X display number from {base}");
}

/// The download cache `scripts/install-python-peers.sh` fills with the pinned mcp-for-blender
/// wheel (the local pods' shared one): setup installs the upstream addon from it offline.
pub(crate) fn mcp_download_cache() -> PathBuf {
    test_support::python_peers::local_pod_download(&format!(
        "mcp_for_blender-{}-py3-none-any.whl",
        blender_session::mcp::UPSTREAM_VERSION
    ))
}

/// A temporary pod: assets folder, pod root and the environment the scripts get.
pub(crate) struct Pod {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) env: BTreeMap<String, String>,
}

impl Pod {
    /// Writes the embedded assets and prepares a pod root; ports and display are free ones.
    pub(crate) fn new() -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("rpb-pod-").tempdir()?;
        blender_session::assets::write_to(dir.path().join("assets"))?;
        let mut env = BTreeMap::new();
        let root = dir.path().join("pod");
        env.insert("RPB_POD_ROOT".to_owned(), root.display().to_string());
        env.insert("RPB_DISPLAY".to_owned(), free_display().to_string());
        env.insert("RPB_MCP_PORT".to_owned(), free_port().to_string());
        env.insert("RPB_CONTROL_PORT".to_owned(), free_port().to_string());
        env.insert(
            "RPB_DOWNLOAD_CACHE".to_owned(),
            mcp_download_cache().display().to_string(),
        );
        env.insert("RPB_VNC_PORT".to_owned(), free_port().to_string());
        env.insert("RPB_NOVNC_PORT".to_owned(), free_port().to_string());
        env.insert("RPB_SCREEN".to_owned(), "1280x720x24".to_owned());
        // Packages this machine has; the test never installs any.
        env.insert(
            "RPB_PACKAGES".to_owned(),
            "xvfb x11vnc novnc websockify".to_owned(),
        );
        // Any download attempt fails fast instead of reaching out.
        env.insert(
            "RPB_BLENDER_URL".to_owned(),
            "http://127.0.0.1:9/no-downloads-in-tests".to_owned(),
        );
        env.insert("http_proxy".to_owned(), "http://127.0.0.1:9".to_owned());
        env.insert("https_proxy".to_owned(), "http://127.0.0.1:9".to_owned());
        Ok(Self { dir, env })
    }

    pub(crate) fn assets(&self) -> PathBuf {
        self.dir.path().join("assets")
    }

    pub(crate) fn home(&self) -> PathBuf {
        self.dir.path().join("pod").join("rpb")
    }

    pub(crate) fn port(&self, name: &str) -> u16 {
        self.env[name].parse().expect("ports are numbers")
    }

    /// Runs `bash script args...` with the pod's environment plus `extra`, feeding `stdin`,
    /// killed if it outlives `limit`.
    pub(crate) async fn run(
        &self,
        script: &Path,
        args: &[&str],
        extra: &[(&str, &str)],
        stdin: &str,
        limit: Duration,
    ) -> anyhow::Result<Output> {
        let mut command = tokio::process::Command::new("bash");
        command
            .arg(script)
            .args(args)
            .env_remove("VNC_PASSWORD")
            .envs(&self.env)
            .envs(extra.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .with_context(|| format!("spawn bash {}", script.display()))?;
        let mut input = child.stdin.take().context("stdin")?;
        input.write_all(stdin.as_bytes()).await?;
        drop(input);
        let output = tokio::time::timeout(limit, child.wait_with_output())
            .await
            .with_context(|| {
                format!(
                    "{} {args:?} did not finish within {limit:?}",
                    script.display()
                )
            })??;
        Ok(output)
    }

    /// As [`Pod::run`], failing with the script's stderr unless it exits 0; returns stdout.
    pub(crate) async fn run_ok(
        &self,
        script: &Path,
        args: &[&str],
        extra: &[(&str, &str)],
        stdin: &str,
        limit: Duration,
    ) -> anyhow::Result<String> {
        let output = self.run(script, args, extra, stdin, limit).await?;
        let stdout = String::from_utf8(output.stdout)?;
        if !output.status.success() {
            let listeners = std::process::Command::new("ss")
                .arg("-ltnp")
                .output()
                .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
                .unwrap_or_default();
            let pid_files = std::fs::read_dir(self.home().join("run"))
                .map(|dir| {
                    dir.flatten()
                        .map(|e| {
                            let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                            format!("{}: {}", e.file_name().to_string_lossy(), text.trim())
                        })
                        .collect::<Vec<_>>()
                        .join("\n")
                })
                .unwrap_or_default();
            bail!(
                "{} {args:?} failed ({}):\nstdout:\n{stdout}\nstderr:\n{}\nrun/:\n{pid_files}\nlisteners:\n{listeners}",
                script.display(),
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(stdout)
    }
}
