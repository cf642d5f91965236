//! Where settings come from: only the workspace `.env` or `--env-file`, never a `./.env` of the
//! current folder; hostile values (plain-http API URL, a token alone on a line) are refused or
//! reported without echoing them.

use std::io::ErrorKind;
use std::net::TcpListener;

use crate::cli::{KEY, pod_in, simulator, workspace_for};
use crate::support::{Workspace, path_string};

/// A loopback listener that must never be contacted.
fn trap() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let url = format!(
        "http://127.0.0.1:{}/v2",
        listener.local_addr().expect("addr").port()
    );
    (listener, url)
}

fn untouched(listener: &TcpListener) -> bool {
    matches!(listener.accept(), Err(error) if error.kind() == ErrorKind::WouldBlock)
}

fn write_local_env(ws: &Workspace, lines: &[(&str, String)]) {
    // `rpb` runs with the workspace's parent folder as its current folder.
    let mut text = String::new();
    for (key, value) in lines {
        text.push_str(key);
        text.push('=');
        text.push_str(value);
        text.push('\n');
    }
    std::fs::write(ws.dir.path().join(".env"), text).expect("write ./.env");
}

#[tokio::test]
async fn a_dotenv_in_the_current_folder_is_never_read_unless_given() {
    let sim = simulator().await;
    let ws = workspace_for(&sim);
    let pod_id = pod_in(&sim, false).await;
    let (listener, trap_url) = trap();
    // A cloned repository's .env: it would send the API key to its own server.
    write_local_env(
        &ws,
        &[
            ("RUNPOD_API_URL", trap_url),
            ("RUNPOD_API_KEY", "attacker-key".into()),
        ],
    );
    let status = ws
        .rpb(&["status", "--pod-id", &pod_id, "--json"])
        .await
        .success();
    assert_eq!(status.json()["status"], "RUNNING");
    assert!(untouched(&listener), "the API key went to ./.env's server");
    assert_eq!(
        status.stderr.matches("hint: ignoring ./.env").count(),
        1,
        "said once: {}",
        status.stderr
    );
    assert!(
        status.stderr.contains(&format!(
            "rpb reads {} (use --env-file ./.env to use it)",
            ws.root().join(".env").display()
        )),
        "{}",
        status.stderr
    );

    // doctor says which file it read and why, in text and JSON.
    let doctor = ws.rpb(&["doctor", "--json"]).await.json();
    assert_eq!(
        doctor["env_file"],
        serde_json::json!({
            "path": path_string(&ws.root().join(".env")),
            "source": "workspace_option",
            "ignored": path_string(&ws.dir.path().join(".env")),
        })
    );
    let text = ws.rpb(&["doctor"]).await;
    assert!(
        text.stdout.contains(&format!(
            "env file      {} (the .env of --workspace {}); ./.env in the current folder is \
             ignored",
            ws.root().join(".env").display(),
            ws.root().display()
        )),
        "{}",
        text.stdout
    );
    assert!(untouched(&listener));

    // Given with --env-file, it is read: here it chooses the pod.
    write_local_env(
        &ws,
        &[
            ("RUNPOD_API_URL", sim.base_url()),
            ("RUNPOD_API_KEY", KEY.into()),
            ("RUNPOD_POD_ID", pod_id.clone()),
        ],
    );
    let explicit = ws
        .rpb(&["--env-file", "./.env", "status", "--json"])
        .await
        .success();
    assert_eq!(explicit.json()["pod_id"], pod_id.as_str());
    assert!(!explicit.stderr.contains("hint:"), "{}", explicit.stderr);
    let doctor = ws
        .rpb(&["--env-file", "./.env", "doctor", "--json"])
        .await
        .json();
    assert_eq!(doctor["env_file"]["source"], "env_file_option");
    assert_eq!(
        doctor["env_file"]["path"],
        path_string(&ws.dir.path().join(".env"))
    );
    assert!(doctor["env_file"]["ignored"].is_null());
    sim.shutdown().await;
}

#[tokio::test]
async fn doctor_names_rpb_home_and_the_default_workspace() {
    let mut ws = Workspace::new();
    ws.write_env(&[]);
    let run = |ws: &Workspace| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_rpb"));
        command
            .args(["doctor", "--json"])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", ws.dir.path().join("home"))
            .current_dir(ws.dir.path());
        for (key, value) in &ws.env {
            command.env(key, value);
        }
        let output = command.output().expect("run rpb");
        serde_json::from_slice::<serde_json::Value>(&output.stdout).expect("json")
    };
    let default = run(&ws);
    assert_eq!(default["env_file"]["source"], "default_workspace");
    assert_eq!(
        default["env_file"]["path"],
        path_string(&ws.dir.path().join("home/blender-files/runpod/.env"))
    );
    ws.set("RPB_HOME", path_string(&ws.root()));
    let home = run(&ws);
    assert_eq!(home["env_file"]["source"], "rpb_home");
    assert_eq!(
        home["env_file"]["path"],
        path_string(&ws.root().join(".env"))
    );
}

#[tokio::test]
async fn a_plain_http_api_url_to_another_machine_is_refused() {
    let mut ws = Workspace::new();
    ws.write_env(&[("RUNPOD_API_URL", "http://attacker.example/v2".into())]);
    ws.set("RUNPOD_API_KEY", "rpa_SECRETKEY123");
    let run = ws.rpb(&["status", "--pod-id", "abc", "--json"]).await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("use https"), "{}", run.stderr);
    assert!(!run.stderr.contains("rpa_SECRETKEY123") && !run.stdout.contains("rpa_SECRETKEY123"));
}

#[tokio::test]
async fn a_token_alone_on_a_dotenv_line_is_not_echoed() {
    let token = "rpa_Q7W3E9R1T5Y8U2I4O6P0";
    let ws = Workspace::new();
    ws.write_env(&[("RUNPOD_POD_ID", "abc".into())]);
    let path = ws.root().join(".env");
    let mut text = std::fs::read_to_string(&path).expect(".env");
    text.push_str(token);
    text.push('\n');
    std::fs::write(&path, text).expect("write .env");
    for args in [&["doctor", "--json"][..], &["doctor"], &["status"]] {
        let run = ws.rpb(args).await;
        assert!(
            !run.stdout.contains(token) && !run.stderr.contains(token),
            "{args:?} echoed the token: {run:?}"
        );
        if args[0] == "doctor" {
            assert!(
                format!("{}{}", run.stdout, run.stderr).contains(".env:2: not KEY=VALUE"),
                "{args:?}: {run:?}"
            );
        }
    }
}
