//! Helpers: temporary workspaces, child processes (the test binary re-running one of its own
//! tests), and running a test body as an unprivileged user when the suite runs as root.

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use project_store::Store;

/// Set in a child process to the role it plays; unset in normal runs.
pub(crate) const ROLE_VAR: &str = "PROJECT_STORE_IT_ROLE";
/// Set in a child process that runs a test body unprivileged.
pub(crate) const UNPRIVILEGED_VAR: &str = "PROJECT_STORE_IT_UNPRIVILEGED";

/// A store on `<dir>/ws` that ignores the process environment.
pub(crate) fn store_in(dir: &Path) -> Store {
    Store::builder()
        .root(dir.join("ws"))
        .current_dir(dir)
        .home_dir(dir.join("home"))
        .ignore_environment()
        .build()
        .unwrap()
}

pub(crate) fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

pub(crate) fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

pub(crate) fn is_root() -> bool {
    fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// The role of this process, if it is a child started by [`spawn_child`].
pub(crate) fn child_role() -> Option<String> {
    std::env::var(ROLE_VAR).ok()
}

#[expect(
    clippy::disallowed_methods,
    reason = "test helper: bounded polling of a child process"
)]
fn pause(duration: Duration) {
    std::thread::sleep(duration);
}

/// Waits (bounded) until `path` exists.
pub(crate) fn wait_for_file(path: &Path, timeout: Duration) {
    let started = Instant::now();
    while !path.exists() {
        assert!(
            started.elapsed() < timeout,
            "{} did not appear within {timeout:?}",
            path.display()
        );
        pause(Duration::from_millis(5));
    }
}

/// A running child process whose output goes to files.
pub(crate) struct Child {
    process: std::process::Child,
    stdout: PathBuf,
    stderr: PathBuf,
    what: String,
}

impl Child {
    /// Waits at most `timeout`, killing the child (by its PID) if it takes longer, and
    /// asserts that it ran exactly one test, successfully.
    pub(crate) fn expect_success(mut self, timeout: Duration) {
        let started = Instant::now();
        let status: ExitStatus = loop {
            if let Some(status) = self.process.try_wait().unwrap() {
                break status;
            }
            if started.elapsed() > timeout {
                let _ = self.process.kill();
                let _ = self.process.wait();
                panic!(
                    "{} did not finish within {timeout:?}; it was killed",
                    self.what
                );
            }
            pause(Duration::from_millis(10));
        };
        let stdout = fs::read_to_string(&self.stdout).unwrap_or_default();
        let stderr = fs::read_to_string(&self.stderr).unwrap_or_default();
        assert!(
            status.success() && stdout.contains("1 passed"),
            "{} failed ({status}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
            self.what
        );
    }
}

/// Starts `program` running the single test `test` of this binary, with `envs`.
fn spawn(
    mut command: Command,
    test: &str,
    envs: &[(&str, OsString)],
    logs: &Path,
    what: String,
) -> Child {
    let test = test.split_once("::").map_or(test, |(_, rest)| rest);
    let tag = test.replace("::", "-");
    let id = logs.read_dir().map_or(0, Iterator::count);
    let stdout = logs.join(format!("{tag}-{id}.out"));
    let stderr = logs.join(format!("{tag}-{id}.err"));
    command
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .stdin(Stdio::null())
        .stdout(fs::File::create(&stdout).unwrap())
        .stderr(fs::File::create(&stderr).unwrap());
    for (key, value) in envs {
        command.env(key, value);
    }
    let child = command
        .spawn()
        .unwrap_or_else(|e| panic!("failed to start {what}: {e}"));
    Child {
        process: child,
        stdout,
        stderr,
        what,
    }
}

/// Re-runs the test named `test` (as given by `module_path!()`) of this binary in a child
/// process with `role` and `envs`; logs go to `logs`.
pub(crate) fn spawn_child(test: &str, role: &str, envs: &[(&str, OsString)], logs: &Path) -> Child {
    let exe = std::env::current_exe().unwrap();
    let mut all = vec![(ROLE_VAR, OsString::from(role))];
    all.extend(envs.iter().cloned());
    spawn(
        Command::new(exe),
        test,
        &all,
        logs,
        format!("child `{role}`"),
    )
}

/// When the suite runs as root (for whom permission bits do not apply), re-runs `test` as
/// user `nobody` through `setpriv` and returns `true`: the caller returns at once. Otherwise
/// returns `false` and the caller runs its body itself.
pub(crate) fn rerun_unprivileged(test: &str) -> bool {
    if !is_root() || std::env::var_os(UNPRIVILEGED_VAR).is_some() {
        return false;
    }
    let setpriv = ["/usr/bin/setpriv", "/bin/setpriv"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.exists());
    let setpriv = setpriv.unwrap_or_else(|| {
        panic!(
            "setpriv not found: install the Debian package util-linux (it runs this test as nobody)"
        )
    });
    // Copy the test binary where `nobody` can run it, with a scratch dir it can write.
    let place = tempfile::tempdir().unwrap();
    chmod(place.path(), 0o755);
    let exe = place.path().join("it");
    fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
    chmod(&exe, 0o755);
    let scratch = place.path().join("tmp");
    fs::create_dir(&scratch).unwrap();
    chmod(&scratch, 0o1777);
    let logs = place.path().join("logs");
    fs::create_dir(&logs).unwrap();
    let mut command = Command::new(setpriv);
    command
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(&exe);
    command.env("TMPDIR", &scratch).env("HOME", &scratch);
    let envs = [(UNPRIVILEGED_VAR, OsString::from("1"))];
    spawn(command, test, &envs, &logs, format!("{test} as nobody"))
        .expect_success(Duration::from_secs(60));
    true
}
