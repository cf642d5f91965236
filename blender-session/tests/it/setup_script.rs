//! The setup script and the boot hook, offline: `BLENDER_BIN` set, a local `.deb` folder, a
//! temporary SSH folder. No Blender is started.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

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

/// A fake Blender `version` packed as `<dir>/blender.tar.xz` the way download.blender.org packs
/// it (one top folder holding `blender`); returns the archive and its SHA-256.
async fn fake_blender_archive(dir: &Path, version: &str) -> (PathBuf, String) {
    assert!(
        which("xz").is_some(),
        "unpacking Blender needs xz: install the Debian package xz-utils"
    );
    let name = format!("blender-{version}-linux-x64");
    let top = dir.join(&name);
    std::fs::create_dir_all(&top).expect("archive folder");
    std::fs::write(
        top.join("blender"),
        format!("#!/bin/sh\necho 'Blender {version}'\n"),
    )
    .expect("fake blender");
    std::fs::set_permissions(top.join("blender"), std::fs::Permissions::from_mode(0o755))
        .expect("chmod");
    command_output("tar", &["-cJf", "blender.tar.xz", &name], dir).await;
    let sum = command_output("sha256sum", &["blender.tar.xz"], dir).await;
    let sum = sum.split_whitespace().next().expect("a sum").to_owned();
    (dir.join("blender.tar.xz"), sum)
}

fn require_a_downloader() {
    assert!(
        which("curl").is_some() || which("wget").is_some(),
        "setup.sh downloads with curl or wget: install the Debian package curl"
    );
}

/// What is in the pod's Blender folder (empty when there is none).
fn blender_folder(pod: &Pod) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(pod.home().join("blender"))
        .map(|dir| {
            dir.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// An empty `.deb` folder: the package cache stays offline.
fn empty_debs(pod: &Pod) -> String {
    let debs = pod.dir.path().join("debs");
    std::fs::create_dir_all(&debs).expect("debs folder");
    debs.display().to_string()
}

/// The escape that lets setup.sh read the `file://` and `http://` fixtures below.
const INSECURE_FOR_TESTS: (&str, &str) = ("RPB_ALLOW_INSECURE_DOWNLOAD_FOR_TESTS", "1");

#[tokio::test]
async fn setup_installs_blender_from_a_configured_url_verifies_it_and_downloads_once() {
    require_a_downloader();
    let pod = Pod::new().unwrap();
    let work = pod.dir.path().join("tarball");
    std::fs::create_dir_all(&work).unwrap();
    let (archive, sum) = fake_blender_archive(&work, "9.9.9").await;
    let url = format!("file://{}", archive.display());
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
        INSECURE_FOR_TESTS,
    ];

    let refused = pod.run(&setup, &[], &env, "", LIMIT).await.unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("does not match RPB_BLENDER_SHA256"),
        "{stderr}"
    );
    assert_eq!(
        blender_folder(&pod),
        Vec::<String>::new(),
        "no Blender and no partial download kept"
    );
    assert!(!pod.home().join("assets-version").exists());

    env[2].1 = sum.as_str();
    let first = pod.run_ok(&setup, &[], &env, "", LIMIT).await.unwrap();
    let first = SetupReport::parse(&first).unwrap();
    let installed = pod.home().join("blender/blender-9.9.9/blender");
    assert_eq!(first.blender_bin, installed.display().to_string());
    assert_eq!(first.host_keys, "none");
    assert_eq!(mode(&installed), 0o755);
    assert_eq!(
        blender_folder(&pod),
        ["blender-9.9.9"],
        "no partial download or staging folder left"
    );

    // The tarball is gone: a re-run must not download again.
    std::fs::remove_file(&archive).unwrap();
    let second = pod.run_ok(&setup, &[], &env, "", LIMIT).await.unwrap();
    assert_eq!(
        SetupReport::parse(&second).unwrap().changed,
        Vec::<String>::new()
    );

    // Another version whose download fails the check leaves the installed one in use.
    fake_blender_archive(&work, "9.9.8").await;
    let env_998 = [
        ("RPB_BLENDER_VERSION", "9.9.8"),
        ("RPB_BLENDER_URL", url.as_str()),
        ("RPB_BLENDER_SHA256", wrong.as_str()),
        ("RPB_DEB_SOURCE", debs.as_str()),
        ("RPB_SSH_DIR", "/nonexistent"),
        INSECURE_FOR_TESTS,
    ];
    let refused = pod.run(&setup, &[], &env_998, "", LIMIT).await.unwrap();
    assert!(!refused.status.success(), "{refused:?}");
    assert_eq!(blender_folder(&pod), ["blender-9.9.9"]);
    assert_eq!(
        std::fs::read_to_string(pod.home().join("blender-bin"))
            .unwrap()
            .trim(),
        installed.display().to_string()
    );
}

#[tokio::test]
async fn the_default_blender_is_checked_against_the_embedded_checksum() {
    require_a_downloader();
    let pod = Pod::new().unwrap();
    let work = pod.dir.path().join("tarball");
    std::fs::create_dir_all(&work).unwrap();
    // Served where 4.5.3 is expected, but not 4.5.3's bytes; no checksum is configured.
    let (archive, _) = fake_blender_archive(&work, "4.5.3").await;
    let url = format!("file://{}", archive.display());
    let output = pod
        .run(
            &pod.assets().join("setup.sh"),
            &[],
            &[
                ("RPB_BLENDER_URL", url.as_str()),
                ("RPB_DEB_SOURCE", "/nonexistent"),
                INSECURE_FOR_TESTS,
            ],
            "",
            LIMIT,
        )
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("does not match RPB_BLENDER_SHA256"),
        "{stderr}"
    );
    assert_eq!(blender_folder(&pod), Vec::<String>::new());
}

#[tokio::test]
async fn another_version_without_a_checksum_is_refused_before_any_download() {
    require_a_downloader();
    let pod = Pod::new().unwrap();
    let work = pod.dir.path().join("tarball");
    std::fs::create_dir_all(&work).unwrap();
    let (archive, _) = fake_blender_archive(&work, "9.9.9").await;
    let url = format!("file://{}", archive.display());
    let debs = empty_debs(&pod);
    let mut env = vec![
        ("RPB_BLENDER_VERSION", "9.9.9"),
        ("RPB_BLENDER_URL", url.as_str()),
        ("RPB_DEB_SOURCE", debs.as_str()),
        ("RPB_SSH_DIR", "/nonexistent"),
        INSECURE_FOR_TESTS,
    ];
    let setup = pod.assets().join("setup.sh");
    let refused = pod.run(&setup, &[], &env, "", LIMIT).await.unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("no checksum for Blender 9.9.9: set RPB_BLENDER_SHA256")
            && stderr.contains("'unverified'"),
        "{stderr}"
    );
    assert!(!stderr.contains("downloading"), "{stderr}");
    assert!(!pod.home().join("blender").exists());

    // The explicit opt-out installs it, with a warning.
    env.push(("RPB_BLENDER_SHA256", "unverified"));
    let output = pod.run(&setup, &[], &env, "", LIMIT).await.unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr
            .contains("RPB_BLENDER_SHA256=unverified: Blender 9.9.9 is installed without checking"),
        "{stderr}"
    );
    let report = SetupReport::parse(&String::from_utf8_lossy(&output.stdout)).unwrap();
    assert!(
        report
            .blender_bin
            .ends_with("blender/blender-9.9.9/blender")
    );
}

/// Serves `body` over plain HTTP on loopback; counts the requests.
async fn http_server(body: Vec<u8>) -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&requests);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let body = body.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buffer = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buffer[..n]),
                    }
                }
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(&body).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    (port, requests)
}

#[tokio::test]
async fn downloads_are_https_only_unless_the_test_escape_is_set() {
    require_a_downloader();
    let pod = Pod::new().unwrap();
    let work = pod.dir.path().join("tarball");
    std::fs::create_dir_all(&work).unwrap();
    let (archive, sum) = fake_blender_archive(&work, "9.9.9").await;
    let (port, requests) = http_server(std::fs::read(&archive).unwrap()).await;
    let http = format!("http://127.0.0.1:{port}/blender.tar.xz");
    let file = format!("file://{}", archive.display());
    let setup = pod.assets().join("setup.sh");
    for url in [&http, &file] {
        let env = [
            ("RPB_BLENDER_VERSION", "9.9.9"),
            ("RPB_BLENDER_URL", url.as_str()),
            ("RPB_BLENDER_SHA256", sum.as_str()),
            ("RPB_DEB_SOURCE", "/nonexistent"),
            ("no_proxy", "127.0.0.1"),
        ];
        let refused = pod.run(&setup, &[], &env, "", LIMIT).await.unwrap();
        assert!(!refused.status.success(), "{url}");
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(
            stderr.contains(&format!(
                "refusing to download {url}: only https:// URLs are allowed"
            )),
            "{stderr}"
        );
        assert!(!pod.home().join("blender/blender-9.9.9").exists());
    }
    assert_eq!(requests.load(Ordering::SeqCst), 0, "never contacted");

    // The same plain-http fixture with the escape: downloaded, checked, installed.
    let debs = empty_debs(&pod);
    let env = [
        ("RPB_BLENDER_VERSION", "9.9.9"),
        ("RPB_BLENDER_URL", http.as_str()),
        ("RPB_BLENDER_SHA256", sum.as_str()),
        ("RPB_DEB_SOURCE", debs.as_str()),
        ("RPB_SSH_DIR", "/nonexistent"),
        ("no_proxy", "127.0.0.1"),
        INSECURE_FOR_TESTS,
    ];
    let stdout = pod.run_ok(&setup, &[], &env, "", LIMIT).await.unwrap();
    assert!(
        SetupReport::parse(&stdout)
            .unwrap()
            .blender_bin
            .ends_with("blender/blender-9.9.9/blender")
    );
    assert_eq!(requests.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn curl_may_follow_redirects_to_https_only() {
    // A stand-in curl records its arguments: a redirect from https to http cannot be staged
    // without a TLS server, so this checks what setup.sh asks of curl.
    let pod = Pod::new().unwrap();
    let bin = pod.dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let args = pod.dir.path().join("curl-args");
    std::fs::write(
        bin.join("curl"),
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > '{}'\nexit 22\n",
            args.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(bin.join("curl"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let output = pod
        .run(
            &pod.assets().join("setup.sh"),
            &[],
            &[
                ("PATH", path.as_str()),
                ("RPB_BLENDER_URL", "https://blender.invalid/blender.tar.xz"),
                ("RPB_DEB_SOURCE", "/nonexistent"),
            ],
            "",
            LIMIT,
        )
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("could not download"), "{stderr}");
    let args = std::fs::read_to_string(&args).expect("curl ran");
    assert!(
        args.contains("--proto\n=https\n--proto-redir\n=https\n"),
        "{args}"
    );
    assert!(
        blender_folder(&pod).is_empty(),
        "{:?}",
        blender_folder(&pod)
    );
}

/// A download cache and a pip "index" (a find-links folder) of this test's own.
struct PipSource {
    cache: PathBuf,
    links: PathBuf,
}

impl PipSource {
    fn new(pod: &Pod) -> Self {
        let source = Self {
            cache: pod.dir.path().join("downloads"),
            links: pod.dir.path().join("links"),
        };
        std::fs::create_dir_all(&source.links).expect("the links folder");
        source
    }

    fn wheel_name() -> String {
        format!(
            "mcp_for_blender-{}-py3-none-any.whl",
            blender_session::mcp::UPSTREAM_VERSION
        )
    }

    /// pip downloads from the links folder only (`PIP_NO_INDEX`): offline, same code path.
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("RPB_DOWNLOAD_CACHE", self.cache.display().to_string()),
            ("PIP_NO_INDEX", "1".to_owned()),
            ("PIP_FIND_LINKS", self.links.display().to_string()),
        ]
    }
}

#[tokio::test]
async fn the_mcp_addon_comes_from_the_pinned_wheel_with_its_hash_checked_or_not_at_all() {
    let blender = require_peers().display().to_string();
    let pod = Pod::new().unwrap();
    let source = PipSource::new(&pod);
    let ssh = pod.dir.path().join("ssh");
    let debs = pod.dir.path().join("debs");
    std::fs::create_dir_all(&ssh).unwrap();
    std::fs::create_dir_all(&debs).unwrap();
    let base = [
        ("BLENDER_BIN", blender),
        ("RPB_SSH_DIR", ssh.display().to_string()),
        ("RPB_DEB_SOURCE", debs.display().to_string()),
    ];
    let setup = pod.assets().join("setup.sh");
    let pip = source.env();
    let run = async |extra: &[(&str, String)]| {
        let env: Vec<(&str, &str)> = base
            .iter()
            .chain(pip.iter())
            .chain(extra.iter())
            .map(|(k, v)| (*k, v.as_str()))
            .collect();
        pod.run(&setup, &[], &env, "", LIMIT).await.unwrap()
    };
    let installed = pod.home().join("blender-scripts/addons/blender_mcp.py");
    let real_wheel = crate::pod::mcp_download_cache().join(PipSource::wheel_name());

    // A wheel of the right name with other bytes: pip's hash check refuses it, nothing is
    // installed or cached.
    let mut tampered = std::fs::read(&real_wheel).unwrap();
    tampered.extend_from_slice(b"tampered");
    std::fs::write(source.links.join(PipSource::wheel_name()), &tampered).unwrap();
    let refused = run(&[]).await;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(
        stderr.contains("could not download mcp-for-blender 2.2.4 with its hash checked"),
        "{stderr}"
    );
    assert!(stderr.contains("RPB_MCP_ADDON=rpb"), "{stderr}");
    let log = std::fs::read_to_string(pod.home().join("logs/setup-mcp-addon.log")).unwrap();
    assert!(log.contains("HASHES"), "pip said why: {log}");
    assert!(!installed.exists());
    assert!(!source.cache.join(PipSource::wheel_name()).exists());

    // The real wheel: downloaded by pip, kept in the cache, its addon installed.
    std::fs::copy(&real_wheel, source.links.join(PipSource::wheel_name())).unwrap();
    let done = run(&[]).await;
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let report = SetupReport::parse(&String::from_utf8_lossy(&done.stdout)).unwrap();
    let pinned = format!(
        "mcp-for-blender {} sha256:{}",
        blender_session::mcp::UPSTREAM_VERSION,
        blender_session::mcp::UPSTREAM_WHEEL_SHA256
    );
    assert_eq!(report.mcp_addon, pinned);
    assert!(
        report
            .changed
            .iter()
            .any(|c| c == "blender-scripts/addons/blender_mcp.py"),
        "{:?}",
        report.changed
    );
    let addon = std::fs::read_to_string(&installed).unwrap();
    assert!(
        addon.contains(&format!(
            "ADDON_PROTOCOL_VERSION = {}",
            blender_session::mcp::UPSTREAM_PROTOCOL
        )),
        "the installed addon speaks the pinned server's protocol"
    );
    assert_eq!(mode(&installed), 0o644);
    assert_eq!(
        std::fs::read(source.cache.join(PipSource::wheel_name())).unwrap(),
        std::fs::read(&real_wheel).unwrap()
    );

    // Again, with the links folder gone: the cache serves, nothing changes.
    std::fs::remove_dir_all(&source.links).unwrap();
    let again = run(&[]).await;
    assert!(again.status.success());
    let again = SetupReport::parse(&String::from_utf8_lossy(&again.stdout)).unwrap();
    assert_eq!(again.changed, Vec::<String>::new());

    // Another release needs its hash, before any download.
    let unpinned = run(&[("RPB_MCP_SERVER_VERSION", "2.2.3".to_owned())]).await;
    let stderr = String::from_utf8_lossy(&unpinned.stderr);
    assert!(!unpinned.status.success());
    assert!(stderr.contains("RPB_MCP_SERVER_SHA256"), "{stderr}");

    // A pod without internet: rpb's addon serves the MCP port, the upstream one is removed.
    let offline = run(&[("RPB_MCP_ADDON", "rpb".to_owned())]).await;
    assert!(
        offline.status.success(),
        "{}",
        String::from_utf8_lossy(&offline.stderr)
    );
    let offline = SetupReport::parse(&String::from_utf8_lossy(&offline.stdout)).unwrap();
    assert_eq!(offline.mcp_addon, "rpb");
    assert!(!installed.exists());
    let bad = run(&[("RPB_MCP_ADDON", "both".to_owned())]).await;
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("RPB_MCP_ADDON must be upstream or rpb"));
}
