//! The sshd fixture itself (`pod_tunnel::fixture`, feature `sshd-fixture`): keys, environment,
//! restarts on the same port, state kept in a given directory, signals by PID.

use std::path::Path;
use std::time::{Duration, Instant};

use pod_tunnel::fixture::LocalSshd;
use pod_tunnel::{Endpoint, Error, HostKeyPolicy, Session};

async fn connect(sshd: &LocalSshd, key: &Path, fingerprint: &str) -> pod_tunnel::Result<Session> {
    Session::builder()
        .endpoint(Endpoint::new("127.0.0.1", sshd.port()))
        .user(sshd.user())
        .identity_file(key)
        .host_key_policy(HostKeyPolicy::pinned(fingerprint))
        .connect_timeout(Duration::from_secs(5))
        .io_timeout(Duration::from_secs(10))
        .build()?
        .connect()
        .await
}

/// Whether every PID is gone (or a zombie) within 5 s.
async fn gone(pids: &[u32]) -> bool {
    all_within(pids, |state| matches!(state, None | Some('Z' | 'X'))).await
}

/// Whether every PID's state letter passes `check` within 5 s (signals arrive asynchronously).
async fn all_within(pids: &[u32], check: impl Fn(Option<char>) -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if pids.iter().all(|pid| check(state(*pid))) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..].trim_start().chars().next()
}

#[tokio::test]
async fn sessions_get_the_environment_and_the_fingerprint_is_ssh_keygen_s() {
    let scratch = tempfile::tempdir().unwrap();
    let sshd = LocalSshd::builder()
        .dir(scratch.path().join("state"))
        .set_env("GREETING", "hello from the fixture")
        .start()
        .unwrap();
    let fingerprint = sshd.host_key_fingerprint().unwrap();
    let listed = std::process::Command::new("ssh-keygen")
        .args(["-l", "-E", "sha256", "-f"])
        .arg(format!("{}.pub", sshd.host_key().display()))
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert_eq!(listed.split_whitespace().nth(1), Some(fingerprint.as_str()));
    assert!(
        sshd.known_hosts_line()
            .unwrap()
            .starts_with(&format!("[127.0.0.1]:{} ssh-ed25519 AAAA", sshd.port()))
    );

    let key = sshd.client_key().unwrap();
    let session = connect(&sshd, key, &fingerprint).await.unwrap();
    let out = session.exec("echo \"$GREETING|$HOME\"").await.unwrap();
    let home = sshd.dir().join("home");
    assert_eq!(
        out.stdout_lossy().trim(),
        format!("hello from the fixture|{}", home.display())
    );
    assert!(home.is_dir());
    session.close().await.unwrap();
    assert!(sshd.log().contains("Accepted publickey"), "{}", sshd.log());
}

#[tokio::test]
async fn restart_keeps_port_and_host_key_and_a_regenerated_key_breaks_the_pin() {
    let mut sshd = LocalSshd::start().unwrap();
    let (port, pid) = (sshd.port(), sshd.pid().unwrap());
    let fingerprint = sshd.host_key_fingerprint().unwrap();
    let key = sshd.client_key().unwrap().to_path_buf();

    sshd.stop();
    assert_eq!(sshd.pid(), None);
    assert!(sshd.pids().is_empty());
    assert!(matches!(
        sshd.pause(),
        Err(pod_tunnel::fixture::Error::NotRunning { .. })
    ));
    assert!(connect(&sshd, &key, &fingerprint).await.is_err());

    sshd.restart().unwrap();
    assert_eq!(sshd.port(), port);
    assert_ne!(sshd.pid(), Some(pid));
    connect(&sshd, &key, &fingerprint).await.unwrap();

    sshd.regenerate_host_key().unwrap();
    sshd.restart().unwrap();
    assert_ne!(sshd.host_key_fingerprint().unwrap(), fingerprint);
    let error = connect(&sshd, &key, &fingerprint).await.unwrap_err();
    assert!(matches!(error, Error::HostKeyMismatch { .. }), "{error:?}");
}

#[tokio::test]
async fn a_given_directory_keeps_the_keys_for_the_next_fixture() {
    let scratch = tempfile::tempdir().unwrap();
    let state = scratch.path().join("state");
    let host_key = state.join("host-keys").join("ssh_host_ed25519_key");
    let client_key = state.join("client").join("id_ed25519");
    let start = || {
        LocalSshd::builder()
            .dir(&state)
            .host_key(&host_key)
            .client_key(&client_key)
            .log(scratch.path().join("logs").join("sshd.log"))
            .key_comment("it-fixture")
            .start()
            .unwrap()
    };
    let first = start();
    let fingerprint = first.host_key_fingerprint().unwrap();
    let client = std::fs::read_to_string(format!("{}.pub", client_key.display())).unwrap();
    assert!(
        first
            .host_public_key()
            .unwrap()
            .ends_with(" it-fixture-host")
    );
    assert_eq!(
        std::fs::read_to_string(first.authorized_keys()).unwrap(),
        client
    );
    drop(first);
    assert!(
        state.join("sshd_config").is_file(),
        "a given directory is kept"
    );

    let second = start();
    assert_eq!(second.host_key_fingerprint().unwrap(), fingerprint);
    assert_eq!(
        std::fs::read_to_string(format!("{}.pub", client_key.display())).unwrap(),
        client
    );
    connect(&second, &client_key, &fingerprint).await.unwrap();
    assert!(scratch.path().join("logs").join("sshd.log").is_file());
}

#[tokio::test]
async fn a_given_authorized_keys_file_is_used_as_it_is() {
    let keys = LocalSshd::start().unwrap();
    let sshd = LocalSshd::builder()
        .authorized_keys(keys.authorized_keys())
        .start()
        .unwrap();
    assert_eq!(sshd.client_key(), None);
    assert_eq!(sshd.authorized_keys(), keys.authorized_keys());
    let fingerprint = sshd.host_key_fingerprint().unwrap();
    connect(&sshd, keys.client_key().unwrap(), &fingerprint)
        .await
        .unwrap();
}

#[test]
fn extra_lines_override_the_defaults() {
    let sshd = LocalSshd::builder()
        .config_line("AllowTcpForwarding no")
        .start()
        .unwrap();
    let effective = std::process::Command::new(pod_tunnel::fixture::SSHD)
        .arg("-T")
        .arg("-f")
        .arg(sshd.config_file())
        .output()
        .unwrap();
    let effective = String::from_utf8_lossy(&effective.stdout).into_owned();
    assert!(
        effective
            .lines()
            .any(|line| line == "allowtcpforwarding no"),
        "{effective}"
    );
}

#[tokio::test]
async fn pause_stop_and_drop_reach_every_connection_process() {
    let mut sshd = LocalSshd::start().unwrap();
    let fingerprint = sshd.host_key_fingerprint().unwrap();
    let key = sshd.client_key().unwrap().to_path_buf();
    let session = connect(&sshd, &key, &fingerprint).await.unwrap();
    let pids = sshd.pids();
    assert!(
        pids.len() >= 2,
        "listener and connection processes: {pids:?}"
    );
    assert_eq!(pids.first().copied(), sshd.pid());

    // A short-lived helper of the connection may have exited meanwhile: gone, or a zombie its
    // stopped parent cannot reap.
    sshd.pause().unwrap();
    assert!(
        all_within(&pids, |state| matches!(state, None | Some('T' | 'Z' | 'X'))).await,
        "not all stopped: {:?}",
        pids.iter()
            .map(|pid| (pid, state(*pid)))
            .collect::<Vec<_>>()
    );
    sshd.resume().unwrap();
    assert!(
        all_within(&pids, |state| state != Some('T')).await,
        "still stopped: {:?}",
        pids.iter()
            .map(|pid| (pid, state(*pid)))
            .collect::<Vec<_>>()
    );
    session.exec("true").await.unwrap();

    sshd.stop();
    assert!(gone(&pids).await, "left running after stop: {pids:?}");

    sshd.restart().unwrap();
    let _session = connect(&sshd, &key, &fingerprint).await.unwrap();
    let pids = sshd.pids();
    let dir = sshd.dir().to_path_buf();
    drop(sshd);
    assert!(gone(&pids).await, "left running after drop: {pids:?}");
    assert!(!dir.exists(), "the temporary directory is removed");
}

/// A host key made by `HostKeyPair` is what `ssh-keygen` and `sshd` read, and pinning it before
/// the first connection verifies that first contact: a server with another key at the same
/// name (a man in the middle) is refused, under the strict and the accept-new policy alike.
#[tokio::test]
async fn a_host_key_made_here_is_pinned_before_first_contact_and_a_mitm_is_refused() {
    use std::os::unix::fs::OpenOptionsExt as _;
    use std::process::Command;

    use secrecy::ExposeSecret as _;

    let scratch = tempfile::tempdir().unwrap();
    let pair = pod_tunnel::HostKeyPair::generate_ed25519("rpb-it-host").unwrap();
    let host_key = scratch.path().join("host").join("ssh_host_ed25519_key");
    std::fs::create_dir_all(host_key.parent().unwrap()).unwrap();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&host_key)
        .unwrap();
    std::io::Write::write_all(&mut file, pair.private_key().expose_secret().as_bytes()).unwrap();
    drop(file);
    std::fs::write(
        format!("{}.pub", host_key.display()),
        format!("{}\n", pair.public_key()),
    )
    .unwrap();

    let derived = Command::new("ssh-keygen")
        .arg("-y")
        .arg("-f")
        .arg(&host_key)
        .output()
        .expect("ssh-keygen (Debian package openssh-client)");
    let derived = String::from_utf8_lossy(&derived.stdout);
    let mut public_fields = pair.public_key().split_whitespace();
    let expected_prefix = format!(
        "{} {}",
        public_fields.next().unwrap(),
        public_fields.next().unwrap()
    );
    assert!(
        derived.starts_with(&expected_prefix),
        "ssh-keygen -y reads the private key: {derived:?}"
    );

    let server = LocalSshd::builder()
        .dir(scratch.path().join("server"))
        .host_key(&host_key)
        .start()
        .unwrap();
    assert_eq!(server.host_key_fingerprint().unwrap(), pair.fingerprint());
    let known_hosts = scratch.path().join("known_hosts");
    pod_tunnel::pin_host_key(&known_hosts, &["pod-made-here"], pair.public_key()).unwrap();
    let strict = HostKeyPolicy::strict(&known_hosts).with_alias("pod-made-here");
    let connect_with = |sshd: &LocalSshd, policy: HostKeyPolicy| {
        let key = sshd.client_key().unwrap().to_owned();
        let builder = Session::builder()
            .endpoint(Endpoint::new("127.0.0.1", sshd.port()))
            .user(sshd.user())
            .identity_file(key)
            .host_key_policy(policy)
            .connect_timeout(Duration::from_secs(5))
            .io_timeout(Duration::from_secs(10));
        async move { builder.build()?.connect().await }
    };
    let session = connect_with(&server, strict.clone()).await.unwrap();
    assert_eq!(session.host_key_fingerprint(), pair.fingerprint());

    let mitm = LocalSshd::builder()
        .dir(scratch.path().join("mitm"))
        .start()
        .unwrap();
    for policy in [
        strict,
        HostKeyPolicy::accept_new(&known_hosts).with_alias("pod-made-here"),
    ] {
        let error = connect_with(&mitm, policy).await.unwrap_err();
        assert!(
            matches!(error, Error::HostKeyMismatch { .. }),
            "the man in the middle is refused: {error}"
        );
        assert!(error.to_string().contains(&pair.fingerprint()), "{error}");
    }
    let text = std::fs::read_to_string(&known_hosts).unwrap();
    assert_eq!(text.lines().count(), 1, "nothing was recorded: {text}");
}
