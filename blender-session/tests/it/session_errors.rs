//! The session script refuses bad starts before starting anything (no Blender is run here).

use std::time::Duration;

use crate::pod::Pod;

const LIMIT: Duration = Duration::from_secs(60);

async fn failing_start(pod: &Pod, extra: &[(&str, &str)], args: &[&str]) -> String {
    let output = pod
        .run(&pod.assets().join("session.sh"), args, extra, "", LIMIT)
        .await
        .expect("run session.sh");
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let run = pod.home().join("run");
    let pid_files = std::fs::read_dir(&run).map_or(0, |entries| {
        entries
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".pid"))
            .count()
    });
    assert_eq!(pid_files, 0, "nothing was started");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
async fn a_start_without_a_vnc_password_says_which_variable_to_set() {
    let pod = Pod::new().unwrap();
    let stderr = failing_start(&pod, &[], &["start"]).await;
    assert!(
        stderr.contains("no VNC password: set VNC_PASSWORD"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_start_on_a_taken_port_fails_fast_naming_the_variable() {
    let pod = Pod::new().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let stderr = failing_start(
        &pod,
        &[("RPB_MCP_PORT", &port), ("VNC_PASSWORD", "pw")],
        &["start"],
    )
    .await;
    assert!(
        stderr.contains(&format!("port {port} (for blender) is in use")),
        "{stderr}"
    );
    assert!(stderr.contains("RPB_MCP_PORT"), "{stderr}");
    drop(taken);
}

/// A port held by a program rpb did not start (the original `start_session.sh`'s x11vnc, say)
/// is reported with the program's name and PID, and the program is left running.
#[tokio::test]
async fn a_port_held_by_another_program_names_it_and_leaves_it_running() {
    use std::io::BufRead as _;

    let pod = Pod::new().unwrap();
    let mut holder = std::process::Command::new("python3")
        .args([
            "-c",
            "import socket, time\n\
             s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()\n\
             print(s.getsockname()[1], flush=True); time.sleep(120)",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    let mut line = String::new();
    std::io::BufReader::new(holder.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line.trim().to_owned();
    let stderr = failing_start(
        &pod,
        &[("RPB_VNC_PORT", &port), ("VNC_PASSWORD", "pw")],
        &["start"],
    )
    .await;
    let still_running = holder.try_wait().unwrap().is_none();
    let _ = holder.kill();
    let _ = holder.wait();
    assert!(
        stderr.contains(&format!(
            "port {port} (for x11vnc) is in use by python3 (pid {})",
            holder.id()
        )),
        "the holder is named (ss from iproute2): {stderr}"
    );
    assert!(
        stderr.contains("rpb did not start and leaves running"),
        "{stderr}"
    );
    assert!(stderr.contains("RPB_VNC_PORT"), "{stderr}");
    assert!(still_running, "the holder was not stopped");
}

#[tokio::test]
async fn bad_settings_and_arguments_are_refused() {
    let pod = Pod::new().unwrap();
    let stderr = failing_start(&pod, &[("RPB_DISPLAY", ":1")], &["start"]).await;
    assert!(
        stderr.contains("RPB_DISPLAY must be a number, got ':1'"),
        "{stderr}"
    );
    let stderr = failing_start(&pod, &[], &["restart"]).await;
    assert!(stderr.contains("unknown command 'restart'"), "{stderr}");
    let stderr = failing_start(&pod, &[], &["start", "--password=x"]).await;
    assert!(
        stderr.contains("unknown argument '--password=x'"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_blender_that_never_answers_is_stopped_after_its_timeout() {
    crate::pod::require_peers();
    let pod = Pod::new().unwrap();
    let fake = pod.dir.path().join("fake-blender");
    std::fs::write(&fake, "#!/bin/sh\nexec sleep 120\n").unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let fake = fake.display().to_string();
    let debs = pod.dir.path().join("debs");
    std::fs::create_dir_all(&debs).unwrap();
    let debs = debs.display().to_string();
    let env = [
        ("BLENDER_BIN", fake.as_str()),
        ("RPB_DEB_SOURCE", debs.as_str()),
        ("RPB_SSH_DIR", "/nonexistent"),
        ("RPB_BLENDER_TIMEOUT", "3"),
        ("VNC_PASSWORD", "pw"),
    ];
    pod.run_ok(&pod.assets().join("setup.sh"), &[], &env, "", LIMIT)
        .await
        .unwrap();
    let script = pod.home().join("bin/session.sh");
    let started = std::time::Instant::now();
    let output = pod.run(&script, &["start"], &env, "", LIMIT).await.unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let stopped = pod.run_ok(&script, &["stop"], &env, "", LIMIT).await;
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(40),
        "{:?}",
        started.elapsed()
    );
    assert!(
        stderr.contains("blender did not answer within 3s and was stopped"),
        "{stderr}"
    );
    assert!(!pod.home().join("run/blender.pid").exists());
    let stopped = stopped.unwrap();
    assert!(
        stopped.contains(r#"{"rpb_stopped":["websockify","x11vnc","xvfb"]}"#),
        "{stopped}"
    );
}
