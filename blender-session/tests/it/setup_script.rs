//! The setup script and the boot hook, offline: `BLENDER_BIN` set, a local `.deb` folder, a
//! temporary SSH folder. No Blender is started.

use std::os::unix::fs::PermissionsExt as _;
use std::time::Duration;

use blender_session::assets::{self, SetupReport};

use crate::pod::{Pod, require_peers, which};

const LIMIT: Duration = Duration::from_secs(60);

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).expect("stat").permissions().mode() & 0o777
}

#[tokio::test]
async fn setup_completes_offline_is_idempotent_and_the_boot_hook_restores_host_keys() {
    let blender = require_peers();
    let pod = Pod::new().unwrap();
    let debs = pod.dir.path().join("debs");
    let ssh = pod.dir.path().join("ssh");
    std::fs::create_dir_all(&debs).unwrap();
    std::fs::create_dir_all(&ssh).unwrap();
    std::fs::write(
        debs.join("x11vnc_0.9.16-9_amd64.deb"),
        b"!<arch>\nnot really a deb",
    )
    .unwrap();
    std::fs::write(ssh.join("ssh_host_ed25519_key"), b"PRIVATE KEY 1").unwrap();
    std::fs::write(
        ssh.join("ssh_host_ed25519_key.pub"),
        b"ssh-ed25519 AAAA one",
    )
    .unwrap();
    let blender = blender.display().to_string();
    let debs_str = debs.display().to_string();
    let ssh_str = ssh.display().to_string();
    let env = [
        ("BLENDER_BIN", blender.as_str()),
        ("RPB_DEB_SOURCE", debs_str.as_str()),
        ("RPB_SSH_DIR", ssh_str.as_str()),
    ];
    let setup = pod.assets().join("setup.sh");

    let first = pod.run_ok(&setup, &[], &env, "", LIMIT).await.unwrap();
    let first = SetupReport::parse(&first).unwrap();
    assert_eq!(first.assets_version, assets::version());
    assert_eq!(first.blender_bin, blender);
    assert_eq!(first.cached_debs, 1);
    assert_eq!(first.host_keys, "persisted");
    for expected in [
        "bin/session.sh",
        "blender-scripts/addons/rpb_mcp.py",
        "assets-version",
    ] {
        assert!(
            first.changed.iter().any(|c| c == expected),
            "{expected} in {:?}",
            first.changed
        );
    }
    let home = pod.home();
    assert_eq!(
        std::fs::read_to_string(home.join("assets-version"))
            .unwrap()
            .trim(),
        assets::version()
    );
    assert_eq!(
        std::fs::read_to_string(home.join("blender-scripts/addons/rpb_mcp.py")).unwrap(),
        assets::ADDON.contents
    );
    assert_eq!(mode(&home.join("bin/session.sh")), 0o755);
    assert_eq!(mode(&home.join("ssh-host-keys")), 0o700);
    assert_eq!(
        mode(&home.join("ssh-host-keys/ssh_host_ed25519_key")),
        0o600
    );
    assert!(home.join("debs/x11vnc_0.9.16-9_amd64.deb").is_file());

    let second = pod.run_ok(&setup, &[], &env, "", LIMIT).await.unwrap();
    let second = SetupReport::parse(&second).unwrap();
    assert_eq!(
        second.changed,
        Vec::<String>::new(),
        "a re-run changes nothing"
    );
    assert_eq!(second.host_keys, "kept");

    // The container restarts: the image brings new host keys; the hook puts ours back, then
    // runs the image's start command.
    std::fs::write(ssh.join("ssh_host_ed25519_key"), b"NEW IMAGE KEY").unwrap();
    std::fs::remove_file(ssh.join("ssh_host_ed25519_key.pub")).unwrap();
    let marker = pod.dir.path().join("booted");
    let marker_str = marker.display().to_string();
    let hook = home.join("bin/boot-hook.sh");
    pod.run_ok(
        &hook,
        &["sh", "-c", "echo \"$0\" > \"$1\"", "started", &marker_str],
        &[("RPB_SSH_DIR", ssh_str.as_str())],
        "",
        LIMIT,
    )
    .await
    .unwrap();
    assert_eq!(
        std::fs::read(ssh.join("ssh_host_ed25519_key")).unwrap(),
        b"PRIVATE KEY 1"
    );
    assert_eq!(
        std::fs::read(ssh.join("ssh_host_ed25519_key.pub")).unwrap(),
        b"ssh-ed25519 AAAA one"
    );
    assert_eq!(mode(&ssh.join("ssh_host_ed25519_key")), 0o600);
    assert_eq!(mode(&ssh.join("ssh_host_ed25519_key.pub")), 0o644);
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "started\n");
}

#[tokio::test]
async fn the_boot_hook_still_boots_when_nothing_was_persisted() {
    let pod = Pod::new().unwrap();
    let marker = pod.dir.path().join("booted");
    let marker_str = marker.display().to_string();
    let ssh = pod.dir.path().join("ssh");
    let ssh_str = ssh.display().to_string();
    let output = pod
        .run(
            &pod.assets().join("boot-hook.sh"),
            &["touch", &marker_str],
            &[("RPB_SSH_DIR", ssh_str.as_str())],
            "",
            LIMIT,
        )
        .await
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert!(marker.is_file());
    assert!(String::from_utf8_lossy(&output.stderr).contains("no persisted host keys"));
}

#[tokio::test]
async fn setup_refuses_a_blender_bin_that_does_not_exist() {
    let pod = Pod::new().unwrap();
    let output = pod
        .run(
            &pod.assets().join("setup.sh"),
            &[],
            &[
                ("BLENDER_BIN", "/nonexistent/blender"),
                ("RPB_DEB_SOURCE", "/nonexistent"),
            ],
            "",
            LIMIT,
        )
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("BLENDER_BIN /nonexistent/blender is not an executable file"),
        "{stderr}"
    );
    assert!(
        !pod.home().join("assets-version").exists(),
        "a failed setup records no version"
    );
}

async fn command_output(program: &str, args: &[&str], dir: &std::path::Path) -> String {
    let run = tokio::process::Command::new(program)
        .args(args)
        .current_dir(dir)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(LIMIT, run)
        .await
        .expect("in time")
        .expect("spawn");
    assert!(output.status.success(), "{program} {args:?}: {output:?}");
    String::from_utf8(output.stdout).expect("utf-8")
}

#[tokio::test]
async fn setup_installs_blender_from_a_configured_url_verifies_it_and_downloads_once() {
    assert!(
        which("curl").is_some() || which("wget").is_some(),
        "setup.sh downloads with curl or wget: install the Debian package curl"
    );
    assert!(
        which("xz").is_some(),
        "unpacking Blender needs xz: install the Debian package xz-utils"
    );
    let pod = Pod::new().unwrap();
    let work = pod.dir.path().join("tarball");
    let top = work.join("blender-9.9.9-linux-x64");
    std::fs::create_dir_all(&top).unwrap();
    std::fs::write(top.join("blender"), "#!/bin/sh\necho 'Blender 9.9.9'\n").unwrap();
    std::fs::set_permissions(top.join("blender"), std::fs::Permissions::from_mode(0o755)).unwrap();
    command_output(
        "tar",
        &["-cJf", "blender.tar.xz", "blender-9.9.9-linux-x64"],
        &work,
    )
    .await;
    let sum = command_output("sha256sum", &["blender.tar.xz"], &work).await;
    let sum = sum.split_whitespace().next().unwrap().to_owned();
    let url = format!("file://{}", work.join("blender.tar.xz").display());
    let debs = pod.dir.path().join("debs");
    std::fs::create_dir_all(&debs).unwrap();
    let debs = debs.display().to_string();
    let setup = pod.assets().join("setup.sh");
    let wrong = "0".repeat(64);
    let mut env = vec![
        ("RPB_BLENDER_VERSION", "9.9.9"),
        ("RPB_BLENDER_URL", url.as_str()),
        ("RPB_BLENDER_SHA256", wrong.as_str()),
        ("RPB_DEB_SOURCE", debs.as_str()),
        ("RPB_SSH_DIR", "/nonexistent"),
    ];

    let refused = pod.run(&setup, &[], &env, "", LIMIT).await.unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("does not match RPB_BLENDER_SHA256"),
        "{stderr}"
    );
    assert!(!pod.home().join("blender/blender-9.9.9").exists());
    assert!(!pod.home().join("assets-version").exists());

    env[2].1 = sum.as_str();
    let first = pod.run_ok(&setup, &[], &env, "", LIMIT).await.unwrap();
    let first = SetupReport::parse(&first).unwrap();
    let installed = pod.home().join("blender/blender-9.9.9/blender");
    assert_eq!(first.blender_bin, installed.display().to_string());
    assert_eq!(first.host_keys, "none");
    assert_eq!(mode(&installed), 0o755);
    let leftovers: Vec<_> = std::fs::read_dir(pod.home().join("blender"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        leftovers,
        ["blender-9.9.9"],
        "no partial download or staging folder left"
    );

    // The tarball is gone: a re-run must not download again.
    std::fs::remove_file(work.join("blender.tar.xz")).unwrap();
    let second = pod.run_ok(&setup, &[], &env, "", LIMIT).await.unwrap();
    assert_eq!(
        SetupReport::parse(&second).unwrap().changed,
        Vec::<String>::new()
    );
}
