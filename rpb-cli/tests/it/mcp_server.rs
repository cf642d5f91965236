//! The real blender-mcp MCP server (`mcp-for-blender`, the release rpb pins, from the venv
//! `scripts/install-python-peers.sh` makes) driven over MCP stdio by the MCP SDK's own client
//! (`tests/mcp/drive_server.py`), against the embedded local pod through rpb's tunnel, as
//! `rpb mcp-config` configures it: the handshake finds the pod's addon up to date, and every
//! tool that needs no account or internet works; the ones that do fail with the server's own
//! message, not a hang.

use std::path::{Path, PathBuf};
use std::time::Duration;

use blender_session::local_pod::LocalPod;
use blender_session::mcp;

use crate::support::{local_pod_workspace, serial};

const SLOW: Duration = Duration::from_secs(400);

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_path_buf()
}

/// The venv of the pinned server release; its pins must be the library's.
fn server_venv() -> PathBuf {
    let requirements = repo_root().join(format!(
        "scripts/python-peers/mcp-for-blender-{}.txt",
        mcp::UPSTREAM_VERSION
    ));
    let pins = std::fs::read_to_string(&requirements).unwrap_or_else(|error| {
        panic!(
            "{}: {error}; the test venv must pin the release rpb pins ({})",
            requirements.display(),
            mcp::SERVER_REQUIREMENT
        )
    });
    assert!(
        pins.contains(&format!(
            "{} \\\n    --hash=sha256:{}",
            mcp::SERVER_REQUIREMENT,
            mcp::UPSTREAM_WHEEL_SHA256
        )),
        "{} pins {} with the wheel hash rpb pins",
        requirements.display(),
        mcp::SERVER_REQUIREMENT
    );
    test_support::python_peers::venv(
        &format!("mcp-for-blender-{}", mcp::UPSTREAM_VERSION),
        "mcp-for-blender",
        "the pinned mcp-for-blender from PyPI",
    )
}

/// The text of a tool call's result, checking it is neither a timeout nor empty.
fn text_of(result: &serde_json::Value, tool: &str) -> String {
    assert!(result.get("timeout").is_none(), "{tool} hung: {result}");
    let text: Vec<&str> = result["content"]
        .as_array()
        .unwrap_or_else(|| panic!("{tool}: {result}"))
        .iter()
        .filter_map(|part| part["text"].as_str())
        .collect();
    assert!(!text.is_empty(), "{tool} said nothing: {result}");
    text.join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pinned_mcp_server_finds_the_pod_addon_up_to_date_and_its_keyless_tools_work() {
    let venv = server_venv();
    let _serial = serial().await;
    let pod = LocalPod::builder()
        .start()
        .await
        .expect("the local pod starts (openssh-server, blender, xvfb, x11vnc, novnc, websockify)");
    let ws = local_pod_workspace(&pod, "mcp-server-vnc");
    ws.rpb_within(SLOW, &["create", "--json"]).await.success();
    let started = ws.rpb_within(SLOW, &["start", "--json"]).await.success();
    let mcp_port = started.json()["mcp_port"].as_u64().expect("mcp_port");

    // The server exactly as `rpb mcp-config` configures it.
    let config = ws.rpb(&["mcp-config", "--print", "--json"]).await.success();
    let server = &config.json()["mcpServers"]["blender"];
    assert_eq!(server["command"], "uvx");
    assert_eq!(server["args"], serde_json::json!(mcp::UVX_ARGS));
    assert_eq!(server["env"]["BLENDER_PORT"], mcp_port.to_string());
    let home = tempfile::tempdir().expect("a home for the server");
    let mut driver = tokio::process::Command::new(venv.join("bin/python"));
    driver
        .arg(repo_root().join("rpb-cli/tests/mcp/drive_server.py"))
        // What `uvx --from mcp-for-blender==X mcp-for-blender` runs, from the hash-pinned venv.
        .arg(venv.join("bin/mcp-for-blender"))
        .env("HOME", home.path())
        // No telemetry leaves a test machine.
        .env("DISABLE_TELEMETRY", "true")
        .kill_on_drop(true);
    for (key, value) in server["env"].as_object().expect("env") {
        driver.env(key, value.as_str().expect("a string"));
    }
    let output = tokio::time::timeout(SLOW, driver.output())
        .await
        .expect("the MCP session ends within its bound")
        .expect("the venv's python runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the MCP client failed: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|error| {
        panic!("the driver's report: {error}\nstdout:\n{stdout}\nstderr:\n{stderr}")
    });
    eprintln!(
        "{}",
        serde_json::to_string_pretty(&report).unwrap_or_default()
    );

    let tools = report["tools"].as_array().expect("tools");
    for tool in [
        "get_addon_status",
        "get_scene_info",
        "execute_blender_code",
        "look",
        "search_assets",
        "generate_3d",
    ] {
        assert!(tools.iter().any(|t| t == tool), "{tool} in {tools:?}");
    }

    // The handshake: the pod's addon speaks the protocol this server expects.
    let status = text_of(&report["get_addon_status"], "get_addon_status");
    let status: serde_json::Value = serde_json::Deserializer::from_str(&status)
        .into_iter()
        .next()
        .and_then(Result::ok)
        .unwrap_or_else(|| panic!("get_addon_status starts with its JSON: {status}"));
    assert_eq!(status["up_to_date"], true, "{status}");
    assert_eq!(
        status["protocol_version"],
        mcp::UPSTREAM_PROTOCOL,
        "{status}"
    );
    assert_eq!(
        status["expected_protocol_version"],
        mcp::UPSTREAM_PROTOCOL,
        "{status}"
    );
    assert!(
        status["capabilities"]
            .as_array()
            .is_some_and(|caps| caps.iter().any(|c| c == "list_scene_items")),
        "{status}"
    );

    let executed = text_of(&report["execute_blender_code"], "execute_blender_code");
    assert_eq!(
        report["execute_blender_code"]["is_error"], false,
        "{executed}"
    );
    assert!(executed.contains("objects "), "{executed}");
    let scene = text_of(&report["get_scene_info"], "get_scene_info");
    assert!(scene.contains("McpSphere"), "{scene}");
    // The app-only tool behind @-mentions, served by the addon's `list_scene_items`.
    let mentions = report["search_mentions"]["structured"]["items"]
        .as_array()
        .unwrap_or_else(|| panic!("search_mentions items: {}", report["search_mentions"]));
    assert!(
        mentions.iter().any(|item| item["name"] == "McpSphere"),
        "{mentions:?}"
    );
    let images: Vec<&serde_json::Value> = report["look"]["content"]
        .as_array()
        .expect("look content")
        .iter()
        .filter(|part| part["type"] == "image")
        .collect();
    assert!(
        images
            .iter()
            .any(|image| (image["png"] == true || image["jpeg"] == true)
                && image["bytes"].as_u64().is_some_and(|bytes| bytes > 1000)),
        "look returns the viewport as an image: {}",
        report["look"]
    );

    // Tools that need the internet or an account: the server's own words, promptly.
    for tool in ["search_assets", "generate_3d"] {
        let said = text_of(&report[tool], tool);
        let lower = said.to_lowercase();
        assert!(
            !lower.contains("protocol") && !lower.contains("too old"),
            "{tool} blames the addon: {said}"
        );
    }

    ws.rpb_within(SLOW, &["stop", "--json"]).await.success();

    // Another Blender release: the pod is set up again at the next start (here BLENDER_BIN
    // stands for the download), and the release is saved for later commands.
    let sha256 = "0123456789abcdef".repeat(4);
    let restarted = ws
        .rpb_within(
            SLOW,
            &[
                "-v",
                "start",
                "--blender",
                "5.0.1",
                "--blender-sha256",
                &sha256,
            ],
        )
        .await
        .success();
    assert!(
        restarted.stderr.contains("installing assets"),
        "{}",
        restarted.stderr
    );
    let env = std::fs::read_to_string(ws.root().join(".env")).expect(".env");
    assert!(env.contains("RPB_BLENDER_VERSION=5.0.1"), "{env}");
    assert!(
        env.contains(&format!("RPB_BLENDER_SHA256={sha256}")),
        "{env}"
    );
    ws.rpb_within(SLOW, &["stop", "--json"]).await.success();
    let again = ws.rpb_within(SLOW, &["-v", "start"]).await.success();
    assert!(
        again.stderr.contains("already installed"),
        "the same release: no setup: {}",
        again.stderr
    );
    ws.rpb_within(SLOW, &["stop", "--json"]).await.success();
}
