//! Running the real `rpb` binary with a clean environment, in a temporary workspace.

/// A loopback port nobody listens on right now.
pub(crate) fn free_port() -> u16 {
    test_support::process::free_port().expect("free port")
}

/// Whether a process runs (zombies count as gone).
pub(crate) fn alive(pid: u64) -> bool {
    u32::try_from(pid).is_ok_and(test_support::process::alive)
}

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::sync::{Mutex, MutexGuard};

/// Tests that boot Blender run one at a time (2 cores).
pub(crate) async fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::const_new(());
    LOCK.lock().await
}

/// The result of one `rpb` run.
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Run {
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|error| {
            panic!(
                "stdout is not one JSON document ({error}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    #[track_caller]
    pub(crate) fn success(self) -> Self {
        assert_eq!(
            self.code, 0,
            "rpb failed:\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

/// A temporary workspace and home, and the environment `rpb` runs with.
pub(crate) struct Workspace {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) env: Vec<(String, String)>,
}

impl Workspace {
    pub(crate) fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("home")).expect("home");
        Self {
            dir,
            env: Vec::new(),
        }
    }

    pub(crate) fn root(&self) -> PathBuf {
        self.dir.path().join("ws")
    }

    pub(crate) fn state_dir(&self) -> PathBuf {
        self.root().join(".rpb")
    }

    pub(crate) fn set(&mut self, key: &str, value: impl Into<String>) {
        self.env.push((key.to_owned(), value.into()));
    }

    /// Writes the `.env` (mode 0600) with these lines.
    pub(crate) fn write_env(&self, lines: &[(&str, String)]) {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::create_dir_all(self.state_dir()).expect("state dir");
        let mut text = String::new();
        for (key, value) in lines {
            text.push_str(key);
            text.push('=');
            text.push_str(value);
            text.push('\n');
        }
        let path = self.root().join(".env");
        std::fs::write(&path, text).expect("write .env");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }

    /// Runs `rpb --workspace <root> ARGS` with a clean environment, within `limit`.
    pub(crate) async fn rpb_within(&self, limit: Duration, args: &[&str]) -> Run {
        let mut command = self.command(args);
        let output = tokio::time::timeout(limit, command.output())
            .await
            .unwrap_or_else(|_| panic!("rpb {args:?} did not finish within {limit:?}"))
            .expect("run rpb");
        let run = Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        };
        eprintln!(
            "$ rpb {} → {}\n{}{}",
            args.join(" "),
            run.code,
            run.stdout,
            run.stderr
        );
        run
    }

    /// The command `rpb --workspace <root> ARGS` with a clean environment and piped output.
    pub(crate) fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_rpb"));
        command
            .arg("--workspace")
            .arg(self.root())
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.dir.path().join("home"))
            .env(
                "USER",
                std::env::var("USER").unwrap_or_else(|_| "root".into()),
            )
            .env("LANG", "C.UTF-8")
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (key, value) in &self.env {
            command.env(key, value);
        }
        command
    }

    pub(crate) async fn rpb(&self, args: &[&str]) -> Run {
        self.rpb_within(Duration::from_secs(60), args).await
    }

    /// insta settings that hide this workspace's paths and the varying numbers.
    pub(crate) fn insta(&self) -> insta::Settings {
        let mut settings = insta::Settings::clone_current();
        let base = self.dir.path().display().to_string();
        settings.add_filter(&regex_escape(&base), "[TMP]");
        settings.add_filter(r"127\.0\.0\.1:\d+", "127.0.0.1:[PORT]");
        settings.add_filter(
            r#""(pid|started_at|at|mcp_port|vnc_port|novnc_port|port)": \d+"#,
            "\"$1\": [N]",
        );
        settings.add_filter(r"pid \d+", "pid [N]");
        settings
    }
}

/// Escapes a literal for use in an insta filter (a regex).
pub(crate) fn regex_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// Waits until `check` holds, within `limit`.
pub(crate) async fn eventually(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub(crate) fn path_string(path: &Path) -> String {
    path.display().to_string()
}

/// The regular files under `dir` whose bytes contain `needle` (sockets and the like skipped).
pub(crate) fn files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                pending.push(entry.path());
            } else if kind.is_file()
                && std::fs::read(entry.path()).is_ok_and(|bytes| {
                    bytes
                        .windows(needle.len())
                        .any(|window| window == needle.as_bytes())
                })
            {
                found.push(entry.path());
            }
        }
    }
    found
}

/// A workspace for the local pod `pod`: its API, SSH user and key, pod root and session ports,
/// free local tunnel ports, VNC password `vnc`, and the API key in the environment (which beats
/// the `.env`).
pub(crate) fn local_pod_workspace(
    pod: &blender_session::local_pod::LocalPod,
    vnc: &str,
) -> Workspace {
    let remote = pod.remote_ports();
    let mut ws = Workspace::new();
    ws.write_env(&[
        ("RUNPOD_API_URL", pod.api_url()),
        ("RPB_SSH_USER", pod.ssh_user().to_owned()),
        ("RUNPOD_SSH_KEY", path_string(pod.ssh_identity_file())),
        ("RPB_POD_ROOT", path_string(pod.pod_root())),
        ("RPB_POD_MCP_PORT", remote.mcp.to_string()),
        ("RPB_POD_CONTROL_PORT", remote.control.to_string()),
        ("RPB_CONTROL_PORT", free_port().to_string()),
        ("RPB_POD_VNC_PORT", remote.vnc.to_string()),
        ("RPB_POD_NOVNC_PORT", remote.novnc.to_string()),
        ("RPB_MCP_PORT", free_port().to_string()),
        ("RPB_VNC_PORT", free_port().to_string()),
        ("RPB_NOVNC_PORT", free_port().to_string()),
        ("VNC_PASSWORD", vnc.to_owned()),
    ]);
    ws.set(
        "RUNPOD_API_KEY",
        secrecy::ExposeSecret::expose_secret(pod.api_key()).to_owned(),
    );
    ws
}
