//! API faults through the simulator's knobs during create, start, status and stop on the local
//! pod, with the cost check after every failing scenario (no pod it started left `RUNNING`) and
//! the secret and listener scan while a real session runs.

use std::path::Path;
use std::time::{Duration, Instant};

use blender_session::Error;
use runpod_api::models::{CreatePodRequest, GpuRequest};
use runpod_api::{PodStatus, RetryPolicy};
use secrecy::{ExposeSecret, SecretString};

use crate::summary::{Summary, chain, no_secret};
use crate::support::{Rig, VNC_PASSWORD, serial};

/// Pods `RUNNING` in the simulator other than `allowed`.
fn running_besides(rig: &Rig, allowed: Option<&str>) -> Vec<String> {
    rig.pod
        .simulator()
        .pods()
        .into_iter()
        .filter(|pod| pod.status == PodStatus::Running && Some(pod.id.as_str()) != allowed)
        .map(|pod| pod.id.to_string())
        .collect()
}

fn nothing_billing(rig: &Rig, allowed: Option<&str>) -> Result<(), String> {
    let left = running_besides(rig, allowed);
    if left.is_empty() {
        Ok(())
    } else {
        Err(format!("pods left RUNNING: {left:?}"))
    }
}

fn status_of(rig: &Rig, pod_id: &str) -> Option<PodStatus> {
    rig.pod.simulator().pod(pod_id).map(|pod| pod.status)
}

fn clear_faults(rig: &Rig) {
    rig.pod.simulator().set_faults(|faults| {
        *faults = runpod_api::sim::Faults::default();
    });
}

/// The error a user would read, checked for secrets and for saying something.
fn judged(error: &Error, secrets: &[&str]) -> Result<String, String> {
    let text = chain(error);
    no_secret(&text, secrets)?;
    no_secret(&format!("{error:?}"), secrets)?;
    if text.len() < 20 {
        return Err(format!("terse error {text:?}"));
    }
    Ok(text)
}

#[allow(
    clippy::too_many_lines,
    reason = "one scenario group on one local pod, read top to bottom"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_faults_are_survived_or_fail_clearly_and_nothing_is_left_billing() -> anyhow::Result<()>
{
    let _serial = serial().await;
    let rig = Rig::start().await?;
    let sink = rig.sink();
    let api_key = rig.pod.api_key().expose_secret().to_owned();
    let secrets = [api_key.as_str(), VNC_PASSWORD];
    let mut summary = Summary::default();

    // Insufficient balance: create refuses clearly, and no pod exists.
    rig.pod
        .simulator()
        .set_faults(|faults| faults.insufficient_balance = true);
    let outcome = match rig.create().await {
        Ok(id) => Err(format!("created {id} without balance")),
        Err(error) => {
            let text = chain(&*error);
            no_secret(&text, &secrets).and_then(|()| {
                if rig.pod.simulator().pods().is_empty() && text.contains("balance") {
                    Ok(())
                } else {
                    Err(format!(
                        "pods {:?}, error {text}",
                        rig.pod.simulator().pods()
                    ))
                }
            })
        }
    };
    summary.record_one(
        "insufficient balance on create",
        "clear error naming the balance; no pod exists",
        outcome,
    );
    clear_faults(&rig);

    // A 429 and 5xx storm during create, within the retry budget.
    rig.pod.simulator().set_faults(|faults| {
        faults.rate_limit_next = 2;
        faults.retry_after_secs = 1;
    });
    let pod_id = rig.create().await?;
    let pods = rig.pod.simulator().pods();
    summary.record_one(
        "429 storm (2) during create",
        "one pod created; RUNPOD_POD_ID recorded",
        if pods.len() == 1 && rig.store.load_config()?.pod_id.as_deref() == Some(&pod_id) {
            Ok(())
        } else {
            Err(format!("pods after create: {pods:?}"))
        },
    );
    clear_faults(&rig);
    // Create leaves the pod running; the start scenarios below begin from a stopped pod.
    rig.orchestrator.stop(&pod_id, None, &sink).await?;

    // The create's answer is lost (slower than the client's request timeout): afterwards
    // exactly one pod of that name exists, and the client returned it or a clear error.
    let impatient = runpod_api::Client::builder()
        .base_url(rig.pod.api_url())
        .api_key(SecretString::from(api_key.clone()))
        .request_timeout(Duration::from_secs(1))
        .retry_policy(
            RetryPolicy::default()
                .with_max_attempts(3)
                .with_backoff(Duration::from_millis(200), Duration::from_millis(500))
                .with_max_total(Duration::from_secs(10)),
        )
        .build()?;
    rig.pod
        .simulator()
        .set_faults(|faults| faults.slow = Duration::from_millis(1500));
    let request = CreatePodRequest::new("rpb-lost-answer")
        .image("runpod/pytorch:1.0.2-cu1281-torch280-ubuntu2404")
        .gpu(GpuRequest::new("NVIDIA RTX A5000"));
    let created = tokio::time::timeout(Duration::from_secs(60), impatient.create_pod(&request))
        .await
        .map_err(|_| anyhow::anyhow!("create with a lost answer did not return in 60 s"))?;
    clear_faults(&rig);
    let named: Vec<_> = rig
        .pod
        .simulator()
        .pods()
        .into_iter()
        .filter(|pod| pod.name == "rpb-lost-answer")
        .collect();
    // The simulator delays before it acts, so the cut request may never reach it: zero pods
    // is as good as one, two would be a second bill.
    let outcome = match (&created, named.as_slice()) {
        (Ok(pod), [only]) if pod.id == only.id => Ok(()),
        (Err(error), [] | [_]) => {
            let text = chain(error);
            eprintln!("lost create answer: {text}");
            no_secret(&text, &secrets)
        }
        (_, named) => Err(format!(
            "{} pods named rpb-lost-answer; the client said {created:?}",
            named.len()
        )),
    };
    summary.record_one(
        "create answer lost (1.5 s answers, 1 s timeout)",
        "at most one pod of that name; returned, or a clear error",
        outcome,
    );
    for pod in named {
        rig.client.terminate_pod(&pod.id).await?;
    }

    // A pod that goes to ERROR while starting: the call stops it and says so.
    rig.pod
        .simulator()
        .set_faults(|faults| faults.error_next_boot = 1);
    let outcome = match rig.orchestrator.start(&pod_id, &sink).await {
        Ok(_) => Err("started although the boot failed".to_owned()),
        Err(error) => judged(&error, &secrets).and_then(|text| {
            let stopped = matches!(
                error,
                Error::StartFailed {
                    stopped_again: true,
                    ..
                }
            );
            if stopped && status_of(&rig, &pod_id) != Some(PodStatus::Running) {
                Ok(())
            } else {
                Err(format!("pod {:?} after: {text}", status_of(&rig, &pod_id)))
            }
        }),
    };
    summary.record_one(
        "pod goes to ERROR during start",
        "StartFailed, stopped again; pod not RUNNING",
        outcome.and_then(|()| nothing_billing(&rig, None)),
    );
    clear_faults(&rig);

    // A 5xx storm longer than any retry budget during start: a clear error within the budget,
    // and the pod was never left running.
    rig.pod.simulator().set_faults(|faults| {
        faults.server_error_next = 200;
        faults.server_error_status = 503;
    });
    let started = Instant::now();
    let outcome = match tokio::time::timeout(
        Duration::from_secs(120),
        rig.orchestrator.start(&pod_id, &sink),
    )
    .await
    {
        Err(_) => Err("start under a 503 storm did not end in 120 s".to_owned()),
        Ok(Ok(_)) => Err("started through 200 503s".to_owned()),
        Ok(Err(error)) => judged(&error, &secrets).map(|text| eprintln!("503 storm: {text}")),
    };
    let storm_took = started.elapsed();
    clear_faults(&rig);
    summary.record_one(
        "503 storm (200) during start",
        &format!("clear error after {storm_took:.1?}; pod not RUNNING"),
        outcome.and_then(|()| nothing_billing(&rig, None)),
    );

    // Insufficient balance on start of the existing pod.
    rig.pod
        .simulator()
        .set_faults(|faults| faults.insufficient_balance = true);
    let outcome = match rig.orchestrator.start(&pod_id, &sink).await {
        Ok(_) => Err("started without balance".to_owned()),
        Err(error) => judged(&error, &secrets).and_then(|text| {
            if text.contains("balance") {
                Ok(())
            } else {
                Err(format!("the error does not say why: {text}"))
            }
        }),
    };
    clear_faults(&rig);
    summary.record_one(
        "insufficient balance on start",
        "clear error naming the balance; pod not RUNNING",
        outcome.and_then(|()| nothing_billing(&rig, None)),
    );

    // Storms within the budget during start, status and stop: all survive.
    rig.pod.simulator().set_faults(|faults| {
        faults.rate_limit_next = 2;
        faults.retry_after_secs = 1;
        faults.server_error_next = 0;
    });
    let session = rig.orchestrator.start(&pod_id, &sink).await?;
    summary.record_one(
        "429 storm (2) during start",
        "session up; Blender answers",
        match session.mcp().await {
            Ok(mut blender) => blender.ping().await.map_err(|e| format!("{e:?}")),
            Err(error) => Err(format!("{error:?}")),
        },
    );

    // While the session runs: secrets in process arguments, logs and files; listeners.
    secrets_and_listeners(&rig, &session, &secrets, &mut summary);

    let mut status_outcomes = Vec::new();
    for (rate_limited, server_errors) in [(2, 0), (0, 2), (1, 1)] {
        rig.pod.simulator().set_faults(|faults| {
            faults.rate_limit_next = rate_limited;
            faults.retry_after_secs = 1;
            faults.server_error_next = server_errors;
            faults.server_error_status = 502;
        });
        status_outcomes.push(
            match rig.orchestrator.status(&pod_id, Some(&session)).await {
                Ok(status) if status.pod.status == PodStatus::Running && status.mcp_answers => {
                    Ok(())
                }
                Ok(status) => Err(format!("status read {:?}", status.pod.status)),
                Err(error) => Err(format!("status failed: {error:?}")),
            },
        );
    }
    summary.record(
        "429/502 storms (2 each, mixed) during status",
        "status RUNNING, Blender answers",
        status_outcomes,
    );
    rig.pod.simulator().set_faults(|faults| {
        faults.server_error_next = 50;
        faults.server_error_status = 500;
    });
    let started = Instant::now();
    let outcome = match rig.orchestrator.status(&pod_id, Some(&session)).await {
        Ok(_) => Err("status through 50 500s".to_owned()),
        Err(error) => judged(&error, &secrets).map(|text| eprintln!("500 storm: {text}")),
    };
    let took = started.elapsed();
    clear_faults(&rig);
    summary.record_one(
        "500 storm (50) during status",
        &format!("clear error after {took:.1?}; session still up"),
        outcome.and_then(|()| {
            if session.mcp_address().is_empty() {
                Err("no session".into())
            } else {
                Ok(())
            }
        }),
    );

    summary.record_one(
        "Blender killed (SIGKILL) while a save is in progress",
        "error is clear, or the new version verifies; earlier version and manifest intact; no partial file",
        kill_blender_during_save(&rig, &session, &secrets).await,
    );

    rig.pod.simulator().set_faults(|faults| {
        faults.rate_limit_next = 1;
        faults.retry_after_secs = 1;
        faults.server_error_next = 1;
        faults.server_error_status = 503;
    });
    let outcome = match rig.orchestrator.stop(&pod_id, Some(session), &sink).await {
        Ok(pod) if pod.status == PodStatus::Exited => Ok(()),
        Ok(pod) => Err(format!("stopped as {:?}", pod.status)),
        Err(error) => Err(format!("stop failed: {error:?}")),
    };
    clear_faults(&rig);
    summary.record_one(
        "429 + 503 during stop",
        "pod EXITED at $0/h",
        outcome.and_then(|()| nothing_billing(&rig, None)),
    );

    // Every event the orchestrator reported, for secrets.
    let details: Vec<String> = rig
        .events
        .lock()
        .map_err(|_| anyhow::anyhow!("events lock"))?
        .iter()
        .map(|event| format!("{event:?}"))
        .collect();
    summary.record(
        "secrets in progress events",
        &format!("{} events, Debug form", details.len()),
        details.iter().map(|text| no_secret(text, &secrets)),
    );

    summary.record(
        "secrets in pod logs and state after stop",
        "every file under the pod root and the local pod's state dir",
        scan_tree(rig.pod.pod_root(), &secrets, &[])
            .into_iter()
            .chain(scan_tree(rig.pod.state_dir(), &secrets, &[])),
    );
    rig.shutdown().await?;
    summary.finish("API faults, cost and secrets on the local pod");
    Ok(())
}

fn secrets_and_listeners(
    rig: &Rig,
    session: &blender_session::orchestrator::Session,
    secrets: &[&str],
    summary: &mut Summary,
) {
    // Process arguments of every process visible (the secrets are this test's own, so any
    // hit is a leak), with the session's own processes (Blender, Xvfb, x11vnc, websockify)
    // among them.
    let all = all_pids();
    let session_pids = rig.session_pids();
    let covered = session_pids.iter().filter(|pid| all.contains(pid)).count();
    let outcomes: Vec<Result<(), String>> = all
        .iter()
        .filter_map(|pid| {
            let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let text = String::from_utf8_lossy(&raw).replace('\0', " ");
            Some(no_secret(&text, secrets).map_err(|why| format!("pid {pid}: {why}")))
        })
        .collect();
    summary.record(
        "secrets in /proc/*/cmdline",
        &format!(
            "{} processes while the session runs, {covered} of {} session PIDs",
            outcomes.len(),
            session_pids.len()
        ),
        outcomes,
    );
    let environ: Vec<Result<(), String>> = all
        .iter()
        .filter_map(|pid| {
            let raw = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
            let text = String::from_utf8_lossy(&raw).replace('\0', " ");
            Some(no_secret(&text, &[secrets[0]]).map_err(|why| format!("pid {pid} environ: {why}")))
        })
        .collect();
    summary.record(
        "API key in /proc/*/environ",
        &format!("{} readable processes", environ.len()),
        environ,
    );

    // Files: logs under the local pod and the pod root, the workspace except `.env`.
    let env_file = rig.store.env_file().to_path_buf();
    summary.record(
        "secrets in logs and workspace files",
        "local pod log dir, pod root, workspace except .env",
        scan_tree(rig.pod.log_dir(), secrets, &[])
            .into_iter()
            .chain(scan_tree(rig.pod.pod_root(), secrets, &[]))
            .chain(scan_tree(rig.store.root(), secrets, &[env_file])),
    );

    // Debug forms of what a caller holds.
    let debug = [
        format!("{session:?}"),
        format!("{:?}", rig.orchestrator.settings()),
        format!("{:?}", rig.client),
        session.novnc_url(),
    ];
    summary.record(
        "secrets in Debug of session, settings, client, noVNC URL",
        "4 renderings",
        debug.iter().map(|text| no_secret(text, secrets)),
    );

    // Listeners: every port this scenario knows binds loopback only.
    let ports = session.ports;
    let mut known = vec![
        ports.mcp,
        ports.vnc,
        ports.novnc,
        rig.pod.simulator().address().port(),
        rig.pod.sshd_address().port(),
    ];
    let remote = rig.pod.remote_ports();
    known.extend([remote.mcp, remote.vnc, remote.novnc]);
    known.extend(rig.pod.relay_ports());
    let listening = listeners();
    let found = known
        .iter()
        .filter(|port| listening.iter().any(|(_, p)| p == *port))
        .count();
    let outcomes: Vec<Result<(), String>> = known
        .iter()
        .map(|port| {
            let rows: Vec<&(String, u16)> = listening.iter().filter(|(_, p)| p == port).collect();
            if rows.is_empty() {
                return Ok(());
            }
            match rows.iter().find(|(addr, _)| !is_loopback(addr)) {
                Some((addr, _)) => Err(format!("port {port} listens on {addr}")),
                None => Ok(()),
            }
        })
        .collect();
    summary.record(
        "listeners on known ports bind loopback only",
        &format!(
            "{} known ports (tunnel, simulator, sshd, relays, pod services), {found} listening, in /proc/net/tcp{{,6}}",
            known.len()
        ),
        outcomes,
    );
}

/// Every process id in `/proc`.
pub(crate) fn all_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

pub(crate) use test_support::net::{is_loopback, listeners};

/// Every regular file under `root` (except `skip`) checked for the secrets.
pub(crate) fn scan_tree(
    root: &Path,
    secrets: &[&str],
    skip: &[std::path::PathBuf],
) -> Vec<Result<(), String>> {
    let mut outcomes = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.filter_map(Result::ok) {
            let path = entry.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.is_dir() {
                // Blender's installation and caches hold no secrets and are large.
                if stack.len() < 5_000 {
                    stack.push(path);
                }
            } else if meta.is_file() && meta.len() <= 64 << 20 && !skip.contains(&path) {
                let Ok(bytes) = std::fs::read(&path) else {
                    continue;
                };
                let text = String::from_utf8_lossy(&bytes);
                outcomes.push(
                    no_secret(&text, secrets)
                        .map_err(|_| format!("a secret in {}", path.display())),
                );
            }
        }
    }
    outcomes
}

/// Saves once, then starts a second save and kills Blender 20 ms into it.
async fn kill_blender_during_save(
    rig: &Rig,
    session: &blender_session::Session,
    secrets: &[&str],
) -> Result<(), String> {
    let project = project_store::ProjectName::new("crash").map_err(|e| e.to_string())?;
    rig.store
        .create_project(&project, project_store::OnExisting::Reuse)
        .map_err(|e| e.to_string())?;
    let first = rig
        .orchestrator
        .save(session, &rig.store, &project, "scene")
        .await
        .map_err(|e| format!("first save: {}", chain(&e)))?;
    let clock = Instant::now();
    let pid_file = rig.pod.pod_root().join("rpb/run/blender.pid");
    let pid = std::fs::read_to_string(&pid_file)
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse::<u32>().ok())
        .ok_or_else(|| format!("no Blender PID in {}", pid_file.display()))?;
    let killer = tokio::spawn(async move {
        // The save command is in flight by then (building a scene heavy enough to make the
        // save itself slow costs Blender tens of seconds on a small machine).
        tokio::time::sleep(Duration::from_millis(20)).await;
        std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .map(|status| status.success())
    });
    let second = tokio::time::timeout(
        Duration::from_secs(120),
        rig.orchestrator
            .save(session, &rig.store, &project, "scene"),
    )
    .await
    .map_err(|_| "the save after the kill did not return in 120 s".to_owned())?;
    eprintln!("second save returned after {:.1?}", clock.elapsed());
    let kill_sent = killer.await.map_err(|e| e.to_string())?;
    eprintln!("blender kill sent: {kill_sent:?}");
    let stored = rig
        .store
        .project(&project)
        .map_err(|e| format!("manifest: {}", chain(&e)))?;
    let versions: Vec<_> = stored.versions().cloned().collect();
    match &second {
        Ok(entry) => {
            eprintln!("the save finished before the kill: {}", entry.name);
            if versions.len() != 2 {
                return Err(format!("{} versions after two saves", versions.len()));
            }
        }
        Err(error) => {
            let text = chain(error);
            eprintln!("save with Blender killed: {text}");
            no_secret(&text, secrets)?;
            if versions.len() != 1 || versions[0].sha256 != first.sha256 {
                return Err(format!("versions after a failed save: {versions:?}"));
            }
        }
    }
    for entry in &versions {
        if !rig.store.verify(&stored, entry).map_err(|e| chain(&e))? {
            return Err(format!("version {} does not verify", entry.name));
        }
    }
    let dir = rig.store.project_dir(&project);
    let partial: Vec<String> = std::fs::read_dir(&dir)
        .map_err(|e| e.to_string())?
        .filter_map(Result::ok)
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| {
            name.ends_with(".download") || name.contains(".tmp") || name.contains("part")
        })
        .collect();
    if partial.is_empty() {
        Ok(())
    } else {
        Err(format!("partial files in the project: {partial:?}"))
    }
}
