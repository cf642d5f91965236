//! Connect, authenticate, host keys, exec.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pod_tunnel::{Error, HostKeyPolicy, OutputStream};

use crate::common::{Fixture, builder_for, chain};

#[tokio::test]
async fn connects_and_runs_a_command() {
    let fx = Fixture::start();
    let session = fx.session().await;
    let out = session
        .exec("echo hello; echo oops >&2; exit 3")
        .await
        .unwrap();
    assert_eq!(out.stdout_lossy(), "hello\n");
    assert_eq!(out.stderr_lossy(), "oops\n");
    assert_eq!(out.status.code(), Some(3));
    assert!(!out.status.success());
    let ok = session.exec("true").await.unwrap();
    assert!(ok.status.success());
    assert_eq!(
        session.host_key_fingerprint(),
        fx.sshd.host_key_fingerprint().unwrap()
    );
    session.close().await.unwrap();
}

#[tokio::test]
async fn checked_commands_turn_failure_into_an_error() {
    let fx = Fixture::start();
    let session = fx.session().await;
    let err = session
        .command("echo first >&2; echo 'disk full' >&2; exit 7")
        .checked()
        .output()
        .await
        .unwrap_err();
    match &err {
        Error::ExitStatus {
            status,
            stderr_tail,
            ..
        } => {
            assert_eq!(status.code(), Some(7));
            assert_eq!(stderr_tail, "disk full");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(err.to_string().contains("exit code 7"), "{err}");
}

#[tokio::test]
async fn stdin_is_piped_and_output_streams_and_is_bounded() {
    let fx = Fixture::start();
    let session = fx.session().await;
    // Like `ssh host sh -s < setup.sh`.
    let script =
        "echo from-script; printf 'x%.0s' $(seq 1 5000) >&2; head -c 300000 /dev/zero | tr '\\0' y";
    let chunks = Arc::new(Mutex::new(Vec::<(OutputStream, usize)>::new()));
    let seen = Arc::clone(&chunks);
    let out = session
        .command("sh -s")
        .stdin(script)
        .max_output(1000)
        .on_output(move |stream, data| seen.lock().unwrap().push((stream, data.len())))
        .output()
        .await
        .unwrap();
    assert!(out.status.success());
    assert_eq!(out.stdout.len(), 1000);
    assert!(out.stdout.starts_with(b"from-script\nyyy"));
    assert!(out.stdout_truncated);
    assert_eq!(out.stderr.len(), 1000);
    assert!(out.stderr_truncated);
    let chunks = chunks.lock().unwrap().clone();
    let streamed: usize = chunks
        .iter()
        .filter(|(s, _)| *s == OutputStream::Stdout)
        .map(|(_, n)| n)
        .sum();
    assert_eq!(streamed, "from-script\n".len() + 300_000);
    assert!(chunks.iter().any(|(s, _)| *s == OutputStream::Stderr));

    // Big stdin through cat comes back intact.
    let data = crate::common::pattern(3 << 20, 9);
    let out = session
        .command("cat")
        .stdin(data.clone())
        .output()
        .await
        .unwrap();
    assert_eq!(out.stdout.len(), data.len());
    assert!(out.stdout == data);
}

#[tokio::test]
async fn commands_time_out() {
    let fx = Fixture::start();
    let session = fx.session().await;
    let started = Instant::now();
    let err = session
        .command("sleep 30")
        .timeout(Duration::from_millis(700))
        .output()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ExecTimeout { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    // The session is still usable afterwards.
    assert!(session.exec("true").await.unwrap().status.success());
}

#[tokio::test]
async fn a_wrong_key_is_rejected() {
    let fx = Fixture::start();
    let other = fx.path("other_key");
    let status = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other)
        .status()
        .unwrap();
    assert!(status.success());
    let err = fx
        .builder()
        .identity_file(&other)
        .connect()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Authenticate { .. }), "{err:?}");
    let text = chain(&err);
    assert!(text.contains("authentication as"), "{text}");
    assert!(text.contains("other_key"), "{text}");

    let missing = fx
        .builder()
        .identity_file(fx.path("nope"))
        .connect()
        .await
        .unwrap_err();
    assert!(matches!(missing, Error::LocalIo { .. }), "{missing:?}");
}

#[tokio::test]
async fn a_passphrase_protected_key_works() {
    let fx = Fixture::start();
    let key = fx.path("locked_key");
    let status = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ecdsa", "-N", "s3cret-pass", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(status.success());
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let authorized = fx.sshd.dir().join("authorized_keys");
    let mut keys = std::fs::read_to_string(&authorized).unwrap();
    keys.push_str(&public);
    std::fs::write(&authorized, keys).unwrap();

    let session = fx
        .builder()
        .identity_file(&key)
        .passphrase("s3cret-pass".to_owned().into())
        .connect()
        .await
        .unwrap();
    assert!(session.exec("true").await.unwrap().status.success());
    assert!(!format!("{session:?}").contains("s3cret"));

    let err = fx
        .builder()
        .identity_file(&key)
        .passphrase("wrong".to_owned().into())
        .connect()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Authenticate { .. }), "{err:?}");
}

#[tokio::test]
async fn host_keys_strict_accept_new_pinned_and_mismatch() {
    let mut fx = Fixture::start();
    let known = fx.known_hosts();

    // Strict on an empty file refuses and says how to proceed.
    let err = builder_for(&fx.sshd, HostKeyPolicy::strict(&known))
        .connect()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::HostKeyUnknown { .. }), "{err:?}");
    assert!(err.to_string().contains("accept-new"), "{err}");

    // Accept-new records `[127.0.0.1]:PORT`, in OpenSSH's format.
    fx.session().await;
    let text = std::fs::read_to_string(&known).unwrap();
    assert_eq!(text.trim(), fx.sshd.known_hosts_line().unwrap());

    // Strict now accepts, and so does a pinned fingerprint.
    builder_for(&fx.sshd, HostKeyPolicy::strict(&known))
        .connect()
        .await
        .unwrap();
    let fingerprint = fx.sshd.host_key_fingerprint().unwrap();
    builder_for(&fx.sshd, HostKeyPolicy::pinned(&fingerprint))
        .connect()
        .await
        .unwrap();

    // A new host key on the same address is a mismatch naming both fingerprints.
    fx.sshd.regenerate_host_key().unwrap();
    fx.sshd.restart().unwrap();
    let new_fingerprint = fx.sshd.host_key_fingerprint().unwrap();
    for policy in [
        HostKeyPolicy::accept_new(&known),
        HostKeyPolicy::strict(&known),
        HostKeyPolicy::pinned(&fingerprint),
    ] {
        let err = builder_for(&fx.sshd, policy).connect().await.unwrap_err();
        assert!(matches!(err, Error::HostKeyMismatch { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains(&fingerprint), "{text}");
        assert!(text.contains(&new_fingerprint), "{text}");
    }
    let err = builder_for(&fx.sshd, HostKeyPolicy::strict(&known))
        .connect()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("line 1 of"), "{err}");
    // The file was not changed by the refused connects.
    assert_eq!(std::fs::read_to_string(&known).unwrap(), text);

    // Insecure connects anyway (and logs a warning).
    builder_for(&fx.sshd, HostKeyPolicy::Insecure)
        .connect()
        .await
        .unwrap();
}

#[tokio::test]
async fn connect_errors_are_clear_and_bounded() {
    let port = test_support::sshd::free_port().unwrap();
    let fx = Fixture::start();
    let started = Instant::now();
    let err = fx
        .builder()
        .endpoint(pod_tunnel::Endpoint::new("127.0.0.1", port))
        .connect()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );

    // A port that accepts but never speaks SSH: the handshake times out.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let err = fx
        .builder()
        .endpoint(pod_tunnel::Endpoint::new("127.0.0.1", silent_port))
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Handshake { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(8));
}
