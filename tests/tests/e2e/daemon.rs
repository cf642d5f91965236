//! The `rpb` CLI and its background tunnel process on the local pod, under faults: sshd paused
//! and resumed, killed and restarted on the same port, and restarted on a new port that only
//! the API knows (the daemon must find it there); then 429 and 5xx storms on every command
//! that talks to the API; and a secret scan over everything the CLI printed and wrote.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use test_support::process::free_port;

use blender_session::daemon;
use blender_session::local_pod::LocalPod;
use blender_session::mcp;
use secrecy::ExposeSecret as _;
use tokio::sync::OnceCell;
use tokio::time::Instant;

use crate::cuts::signal;
use crate::faults::{all_pids, is_loopback, listeners, scan_tree};
use crate::summary::{Summary, no_secret};
use crate::support::{alive, serial};

const VNC_PASSWORD: &str = "daemon-e2e-vnc-4q";
/// The longest any one command may take (a start boots Blender).
const SLOW: Duration = Duration::from_secs(400);
/// How long the tunnel may take to serve again after a fault.
const RECOVERY: Duration = Duration::from_secs(90);

/// The `rpb` binary, built once with the same cargo that runs this test.
async fn rpb_binary() -> anyhow::Result<PathBuf> {
    static BINARY: OnceCell<PathBuf> = OnceCell::const_new();
    BINARY
        .get_or_try_init(|| async {
            if let Some(path) = std::env::var_os("RPB_BIN") {
                return Ok(PathBuf::from(path));
            }
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .expect("invariant: tests/ is in the workspace")
                .to_path_buf();
            let output = tokio::time::timeout(
                Duration::from_secs(1200),
                tokio::process::Command::new(cargo)
                    .args(["build", "--quiet", "-p", "rpb-cli", "--bin", "rpb"])
                    .arg("--message-format=json")
                    .current_dir(&workspace)
                    .stdin(Stdio::null())
                    .kill_on_drop(true)
                    .output(),
            )
            .await
            .map_err(|_| anyhow::anyhow!("building rpb took over 20 minutes"))??;
            anyhow::ensure!(
                output.status.success(),
                "`cargo build -p rpb-cli` failed:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
                .filter(|message| message["target"]["name"] == "rpb")
                .find_map(|message| message["executable"].as_str().map(PathBuf::from))
                .ok_or_else(|| anyhow::anyhow!("cargo did not report the rpb executable"))
        })
        .await
        .cloned()
}

/// One `rpb` run.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
    took: Duration,
}

impl Run {
    fn json(&self) -> Result<serde_json::Value, String> {
        serde_json::from_str(&self.stdout).map_err(|error| {
            format!(
                "stdout is not JSON ({error}): {}; stderr: {}",
                self.stdout, self.stderr
            )
        })
    }

    fn ok(&self) -> Result<&Self, String> {
        if self.code == 0 {
            Ok(self)
        } else {
            Err(format!("exit {}: {}", self.code, self.stderr.trim()))
        }
    }
}

/// A workspace, the environment `rpb` runs with, and everything it printed.
struct Cli {
    binary: PathBuf,
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
    printed: Vec<String>,
}

impl Cli {
    fn root(&self) -> PathBuf {
        self.dir.path().join("ws")
    }

    fn state_dir(&self) -> PathBuf {
        self.root().join(".rpb")
    }

    async fn run(&mut self, limit: Duration, args: &[&str]) -> Run {
        let mut command = tokio::process::Command::new(&self.binary);
        // Verbose: the log lines are diagnostics on failure, and more text for the secret scan.
        command
            .arg("-v")
            .arg("--workspace")
            .arg(self.root())
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.dir.path().join("home"))
            .env("LANG", "C.UTF-8")
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (key, value) in &self.env {
            command.env(key, value);
        }
        let started = Instant::now();
        let run = match tokio::time::timeout(limit, command.output()).await {
            Ok(Ok(output)) => Run {
                code: output.status.code().unwrap_or(-1),
                stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
                took: started.elapsed(),
            },
            Ok(Err(error)) => Run {
                code: -1,
                stdout: String::new(),
                stderr: format!("could not run rpb: {error}"),
                took: started.elapsed(),
            },
            Err(_) => Run {
                code: -1,
                stdout: String::new(),
                stderr: format!("did not finish within {limit:?}"),
                took: limit,
            },
        };
        eprintln!(
            "$ rpb {} → {} in {:.1}s\n{}{}",
            args.join(" "),
            run.code,
            run.took.as_secs_f64(),
            run.stdout,
            run.stderr
        );
        self.printed.push(run.stdout.clone());
        self.printed.push(run.stderr.clone());
        run
    }
}

impl Drop for Cli {
    /// A scenario that fails half-way must not leave our background tunnel running: it is
    /// ended by its recorded PID, once the record shows it is still our process.
    fn drop(&mut self) {
        let path = daemon::record_path(&self.state_dir());
        if let Ok(Some(record)) = daemon::TunnelRecord::read(&path)
            && record.liveness() == daemon::Liveness::Running
        {
            signal(&[record.pid], "-TERM");
        }
    }
}

/// One MCP command through the tunnel's local port, checked for its answer.
async fn blender_answers(port: u16) -> Result<(), String> {
    let mut client = mcp::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .command_timeout(Duration::from_secs(15))
        .connect(format!("127.0.0.1:{port}"))
        .await
        .map_err(|error| error.to_string())?;
    let output = client
        .execute_code("print(sum(range(1000)))")
        .await
        .map_err(|error| error.to_string())?;
    client.close().await;
    if output.trim() == "499500" {
        Ok(())
    } else {
        Err(format!("unexpected answer {output:?}"))
    }
}

/// Waits until Blender answers through the tunnel; returns how long that took.
async fn recovers(port: u16, limit: Duration) -> Result<Duration, String> {
    let started = Instant::now();
    let mut last = String::new();
    for _ in 0..400 {
        match blender_answers(port).await {
            Ok(()) => return Ok(started.elapsed()),
            Err(why) => last = why,
        }
        if started.elapsed() >= limit {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Err(format!(
        "Blender did not answer through 127.0.0.1:{port} within {limit:?}: {last}"
    ))
}

fn tunnel_log(cli: &Cli) -> String {
    std::fs::read_to_string(cli.state_dir().join("tunnel.log")).unwrap_or_default()
}

/// The same background process, still ours, still serving.
fn same_daemon(pid: u64) -> Result<(), String> {
    if alive(u32::try_from(pid).unwrap_or(u32::MAX)) {
        Ok(())
    } else {
        Err(format!("the tunnel process {pid} is gone"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(
    clippy::too_many_lines,
    reason = "one scenario on one pod boot, told in order"
)]
async fn the_background_tunnel_survives_sshd_faults_and_the_cli_rides_out_api_storms()
-> anyhow::Result<()> {
    let _serial = serial().await;
    let binary = rpb_binary().await?;
    let mut pod = LocalPod::builder().start().await?;
    let api_key = pod.api_key().expose_secret().to_owned();
    let secrets = [api_key.as_str(), VNC_PASSWORD];
    let remote = pod.remote_ports();
    let (mcp_port, vnc_port, novnc_port) = (free_port()?, free_port()?, free_port()?);
    let dir = tempfile::tempdir()?;
    std::fs::create_dir_all(dir.path().join("home"))?;
    let mut cli = Cli {
        binary,
        dir,
        env: vec![("RUNPOD_API_KEY".into(), api_key.clone())],
        printed: Vec::new(),
    };
    let settings = [
        ("RUNPOD_API_URL", pod.api_url()),
        ("RPB_SSH_USER", pod.ssh_user().to_owned()),
        (
            "RUNPOD_SSH_KEY",
            pod.ssh_identity_file().display().to_string(),
        ),
        ("RPB_POD_ROOT", pod.pod_root().display().to_string()),
        ("RPB_POD_MCP_PORT", remote.mcp.to_string()),
        ("RPB_POD_CONTROL_PORT", remote.control.to_string()),
        ("RPB_CONTROL_PORT", free_port()?.to_string()),
        ("RPB_POD_VNC_PORT", remote.vnc.to_string()),
        ("RPB_POD_NOVNC_PORT", remote.novnc.to_string()),
        ("RPB_MCP_PORT", mcp_port.to_string()),
        ("RPB_VNC_PORT", vnc_port.to_string()),
        ("RPB_NOVNC_PORT", novnc_port.to_string()),
        ("VNC_PASSWORD", VNC_PASSWORD.to_owned()),
    ];
    std::fs::create_dir_all(cli.state_dir())?;
    let env_text = settings
        .iter()
        .fold(String::new(), |mut text, (key, value)| {
            let _ = writeln!(text, "{key}={value}");
            text
        });
    let env_file = cli.root().join(".env");
    std::fs::write(&env_file, env_text)?;
    std::fs::set_permissions(
        &env_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )?;

    let mut summary = Summary::default();
    // The create meets a storm too: 429s (nothing created, retried) and then a 503 whose
    // request may have created a pod (settled by looking the pod up by name): one pod results.
    pod.simulator().set_faults(|faults| {
        faults.rate_limit_next = 2;
        faults.retry_after_secs = 1;
        faults.server_error_next = 1;
        faults.server_error_status = 503;
    });
    let created = cli.run(SLOW, &["create", "--json"]).await;
    created.ok().map_err(anyhow::Error::msg)?;
    let left = pod.simulator().faults();
    let pods = pod.simulator().pods().len();
    summary.record_one(
        "429,429,503 during `rpb create`",
        "the create succeeds, the storm was consumed, exactly one pod exists",
        if left.rate_limit_next == 0 && left.server_error_next == 0 && pods == 1 {
            Ok(())
        } else {
            Err(format!("{pods} pods; storm left {left:?}"))
        },
    );
    let started = cli.run(SLOW, &["start", "--json"]).await;
    started.ok().map_err(anyhow::Error::msg)?;
    let started = started.json().map_err(anyhow::Error::msg)?;
    let pod_id = started["pod_id"].as_str().unwrap_or_default().to_owned();
    let daemon = started["tunnel"]["pid"]
        .as_u64()
        .ok_or_else(|| anyhow::anyhow!("no tunnel pid in {started}"))?;
    recovers(mcp_port, RECOVERY)
        .await
        .map_err(anyhow::Error::msg)?;

    // sshd and its connections paused, then resumed: the tunnel goes on; a command sent
    // during the pause is answered after it.
    let outcome = async {
        let serving = pod.sshd_pids();
        signal(&serving, "-STOP");
        let during = tokio::spawn(recovers(mcp_port, RECOVERY));
        tokio::time::sleep(Duration::from_secs(4)).await;
        signal(&serving, "-CONT");
        let took = during.await.map_err(|error| error.to_string())??;
        same_daemon(daemon)?;
        eprintln!(
            "paused 4 s: answered {:.1}s after the pause began",
            took.as_secs_f64()
        );
        Ok(())
    }
    .await;
    summary.record_one(
        "sshd SIGSTOPped 4 s during a background tunnel session",
        "an MCP command sent during the pause is answered after it, same tunnel process",
        outcome,
    );

    // sshd killed and restarted on the same port: the tunnel reconnects by itself.
    let outcome = async {
        pod.restart_sshd()
            .await
            .map_err(|error| error.to_string())?;
        let took = recovers(mcp_port, RECOVERY).await?;
        same_daemon(daemon)?;
        let log = tunnel_log(&cli);
        if !log.contains("reconnecting") {
            return Err(format!(
                "the tunnel log does not show the reconnect:\n{log}"
            ));
        }
        eprintln!(
            "sshd restarted: Blender answers again after {:.1}s",
            took.as_secs_f64()
        );
        Ok(())
    }
    .await;
    summary.record_one(
        "sshd killed and restarted on the same port",
        "Blender answers through the same local port, same tunnel process, reconnect logged",
        outcome,
    );

    // sshd restarted on a new port that only the API reports, while the API answers 429 to
    // the first lookups: the daemon finds the new endpoint through the API.
    let outcome = async {
        pod.restart_sshd()
            .await
            .map_err(|error| error.to_string())?;
        pod.simulator().set_faults(|faults| {
            faults.rate_limit_next = 2;
            faults.retry_after_secs = 1;
        });
        let moved = pod
            .move_ssh_endpoint(&pod_id)
            .ok_or("the pod does not run")?;
        let took = recovers(mcp_port, RECOVERY).await?;
        same_daemon(daemon)?;
        let log = tunnel_log(&cli);
        if !log.contains(&format!("reconnected endpoint={moved}")) {
            return Err(format!(
                "the tunnel log does not show the new endpoint {moved}:\n{log}"
            ));
        }
        eprintln!(
            "sshd moved to {moved}: Blender answers again after {:.1}s",
            took.as_secs_f64()
        );
        Ok(())
    }
    .await;
    pod.simulator()
        .set_faults(|faults| faults.rate_limit_next = 0);
    summary.record_one(
        "sshd restarted on a new port (known only to the API, which answers 429 at first)",
        "the daemon re-resolves through the API; Blender answers through the same local port",
        outcome,
    );

    // A tunnel that cannot reconnect gives up after RPB_TUNNEL_RECONNECTS attempts (unlimited
    // by default for the background tunnel): the process ends, says why in its log, removes
    // its record and frees the ports; `tunnel up` works again once sshd is back.
    let outcome = async {
        cli.run(SLOW, &["tunnel", "down", "--json"]).await.ok()?;
        cli.env.push(("RPB_TUNNEL_RECONNECTS".into(), "2".into()));
        let up = cli.run(SLOW, &["tunnel", "up", "--json"]).await;
        cli.env.pop();
        up.ok()?;
        let pid = up.json()?["tunnel"]["pid"]
            .as_u64()
            .ok_or("no tunnel pid")?;
        pod.kill_sshd().await;
        let started = Instant::now();
        while alive(u32::try_from(pid).unwrap_or(u32::MAX))
            && started.elapsed() < Duration::from_secs(90)
        {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let gone_after = started.elapsed();
        pod.restart_sshd()
            .await
            .map_err(|error| error.to_string())?;
        if alive(u32::try_from(pid).unwrap_or(u32::MAX)) {
            return Err("the tunnel process still runs 90 s after sshd died".into());
        }
        let log = tunnel_log(&cli);
        if !log.contains("gave up") {
            return Err(format!("the log does not say the tunnel gave up:\n{log}"));
        }
        let status = cli.run(SLOW, &["tunnel", "status", "--json"]).await;
        if status.json()?["state"] != "none" {
            return Err(format!(
                "tunnel status after the give-up: {}",
                status.stdout
            ));
        }
        if std::net::TcpStream::connect(("127.0.0.1", mcp_port)).is_ok() {
            return Err(format!("127.0.0.1:{mcp_port} still accepts connections"));
        }
        let again = cli.run(SLOW, &["tunnel", "up", "--json"]).await;
        again.ok()?;
        let took = recovers(mcp_port, RECOVERY).await?;
        eprintln!(
            "the tunnel gave up {:.1}s after sshd died; up again, Blender answers after {:.1}s",
            gone_after.as_secs_f64(),
            took.as_secs_f64()
        );
        Ok::<(), String>(())
    }
    .await;
    summary.record_one(
        "sshd dead for good under a tunnel limited to 2 reconnects",
        "the tunnel process ends, logs why, removes its record, frees its ports; `tunnel up` works again",
        outcome,
    );

    // Storms: every command that reads or changes the pod through the API rides out two 429s
    // and a 503 (the client's retry budget is 4 attempts), and the storm is really consumed.
    let scratch = cli.dir.path().join("storm.txt");
    std::fs::write(&scratch, b"through the storm\n")?;
    let scratch_text = scratch.display().to_string();
    let back = cli.dir.path().join("storm-back.txt").display().to_string();
    let remote_copy = format!("{}/storm.txt", pod.pod_root().display());
    // `py` talks to Blender through the running tunnel and `tunnel down` ends our own process:
    // neither asks the API anything, so they run without a storm.
    let commands: Vec<(Vec<&str>, bool)> = vec![
        (vec!["status", "--json"], true),
        (vec!["ssh-info", "--json"], true),
        (vec!["doctor", "--json"], true),
        (vec!["exec", "--json", "--", "true"], true),
        (vec!["py", "print(6 * 7)", "--json"], false),
        (vec!["push", &scratch_text, &remote_copy, "--json"], true),
        (vec!["pull", &remote_copy, &back, "--json"], true),
        (vec!["save", "--project", "storm", "--json"], true),
        (vec!["tunnel", "down", "--json"], false),
        (vec!["tunnel", "up", "--json"], true),
        (vec!["stop", "--json"], true),
        (vec!["start", "--json"], true),
    ];
    let mut outcomes = Vec::new();
    for (args, storm) in &commands {
        if *storm {
            pod.simulator().set_faults(|faults| {
                faults.rate_limit_next = 2;
                faults.retry_after_secs = 1;
                faults.server_error_next = 1;
                faults.server_error_status = 503;
            });
        }
        let run = cli.run(SLOW, args).await;
        let left = pod.simulator().faults();
        let outcome = run.ok().map(|_| ()).and_then(|()| {
            if left.rate_limit_next == 0 && left.server_error_next == 0 {
                Ok(())
            } else {
                Err("the storm was not consumed: the command never met it".to_owned())
            }
        });
        if *storm {
            outcomes.push(outcome.map_err(|why| format!("rpb {}: {why}", args.join(" "))));
        } else if let Err(why) = outcome {
            outcomes.push(Err(format!("rpb {}: {why}", args.join(" "))));
        }
    }
    pod.simulator().set_faults(|faults| {
        faults.rate_limit_next = 0;
        faults.server_error_next = 0;
    });
    let data = std::fs::read(cli.dir.path().join("storm-back.txt")).unwrap_or_default();
    outcomes.push(if data == b"through the storm\n" {
        Ok(())
    } else {
        Err("the file pulled during the storm differs".into())
    });
    outcomes.push(recovers(mcp_port, RECOVERY).await.map(|_| ()));
    summary.record(
        "429,429,503 before each API-using command (status, ssh-info, doctor, exec, push, pull, save, tunnel up, stop, start)",
        "each command succeeds and consumed the storm; pulled bytes equal; Blender answers after the restart",
        outcomes,
    );

    // A storm longer than the retry budget: a clear error in bounded time, and the stop it
    // interrupted can be done again; nothing left billing.
    let outcome = async {
        pod.simulator().set_faults(|faults| {
            faults.server_error_next = 1_000;
            faults.server_error_status = 502;
        });
        let failed = cli.run(SLOW, &["stop", "--json"]).await;
        pod.simulator()
            .set_faults(|faults| faults.server_error_next = 0);
        if failed.code == 0 {
            return Err("stop reported success through an endless 502 storm".to_owned());
        }
        if failed.took > Duration::from_secs(120) {
            return Err(format!("stop took {:?} to give up", failed.took));
        }
        let text = failed.stderr.to_lowercase();
        if !(text.contains("502") || text.contains("server error")) {
            return Err(format!(
                "the error does not say what failed: {}",
                failed.stderr
            ));
        }
        cli.run(SLOW, &["stop", "--json"]).await.ok().map(|_| ())?;
        let running: Vec<String> = pod
            .simulator()
            .pods()
            .iter()
            .filter(|pod| pod.status == runpod_api::PodStatus::Running)
            .map(|pod| pod.id.to_string())
            .collect();
        if running.is_empty() {
            Ok(())
        } else {
            Err(format!("pods still running: {running:?}"))
        }
    }
    .await;
    summary.record_one(
        "an endless 502 storm during `rpb stop`",
        "a clear error within 2 min, exit code non-zero; a second stop succeeds; no pod RUNNING",
        outcome,
    );

    // Secrets: everything the CLI printed, the tunnel log and state files, every process's
    // arguments; listeners loopback only.
    let printed: Vec<Result<(), String>> = cli
        .printed
        .iter()
        .map(|text| no_secret(text, &secrets))
        .collect();
    summary.record(
        "secrets in everything rpb printed (stdout and stderr of every run)",
        &format!("{} outputs", printed.len()),
        printed,
    );
    let files = scan_tree(&cli.root(), &secrets, std::slice::from_ref(&env_file));
    summary.record(
        "secrets in the workspace (tunnel log, state, projects) except .env",
        &format!("{} files", files.len()),
        files,
    );
    let arguments: Vec<Result<(), String>> = all_pids()
        .iter()
        .filter_map(|pid| {
            let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let text = String::from_utf8_lossy(&raw).replace('\0', " ");
            Some(no_secret(&text, &secrets).map_err(|why| format!("pid {pid}: {why}")))
        })
        .collect();
    summary.record(
        "secrets in /proc/*/cmdline after the CLI runs",
        &format!("{} processes", arguments.len()),
        arguments,
    );
    let listening = listeners();
    let ports = [mcp_port, vnc_port, novnc_port];
    summary.record(
        "tunnel listeners bind loopback only",
        "the three local ports of the restarted tunnel, in /proc/net/tcp{,6}",
        ports.iter().map(|port| {
            let rows: Vec<_> = listening.iter().filter(|(_, p)| p == port).collect();
            match rows.iter().find(|(addr, _)| !is_loopback(addr)) {
                Some((addr, _)) => Err(format!("port {port} listens on {addr}")),
                None => Ok(()),
            }
        }),
    );

    let _ = cli.run(SLOW, &["tunnel", "down", "--json"]).await;
    pod.shutdown().await?;
    summary.finish("the CLI and its background tunnel under sshd and API faults");
    Ok(())
}
