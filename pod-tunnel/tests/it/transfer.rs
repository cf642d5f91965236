//! SCP and SFTP transfers through a real sshd (the "remote" side is this machine's filesystem).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use test_support::process::alive;

use pod_tunnel::{Error, Protocol};

use test_support::names::hostile_file_names;

use crate::common::{Fixture, chain, pattern, sha256_file};

const PROTOCOLS: [Protocol; 2] = [Protocol::Scp, Protocol::Sftp];

fn write_file(path: &Path, data: &[u8], mode: u32, mtime: u64) {
    std::fs::write(path, data).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    let file = std::fs::File::options().write(true).open(path).unwrap();
    file.set_modified(UNIX_EPOCH + Duration::from_secs(mtime))
        .unwrap();
}

fn mode_and_mtime(path: &Path) -> (u32, u64) {
    let meta = std::fs::metadata(path).unwrap();
    let mtime = meta
        .modified()
        .unwrap()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    (meta.permissions().mode() & 0o7777, mtime)
}

fn leftovers(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .as_bytes()
                .windows(9)
                .any(|w| w == b"rpb-part-")
        })
        .collect()
}

fn odd_name() -> &'static OsStr {
    OsStr::from_bytes(b"caf\xe9 \xff'quote.bin")
}

#[tokio::test]
async fn small_empty_and_non_utf8_files_round_trip_over_both_protocols() {
    let fx = Fixture::start();
    let session = fx.session().await;
    let cases: [(&OsStr, Vec<u8>); 3] = [
        (OsStr::new("empty.bin"), Vec::new()),
        (OsStr::new("small.txt"), b"hello pod\n".to_vec()),
        (odd_name(), pattern(70_001, 3)),
    ];
    for protocol in PROTOCOLS {
        let tag = format!("{protocol:?}");
        let src = fx.path(&format!("src-{tag}"));
        let remote = fx.path(&format!("remote-{tag}"));
        let back = fx.path(&format!("back-{tag}"));
        for dir in [&src, &remote, &back] {
            std::fs::create_dir(dir).unwrap();
        }
        for (i, (name, data)) in cases.iter().enumerate() {
            let local = src.join(name);
            let mode = [0o600, 0o644, 0o750][i];
            let mtime = 1_600_000_000 + i as u64 * 1000;
            write_file(&local, data, mode, mtime);

            let seen = Arc::new(AtomicU64::new(u64::MAX));
            let progress = Arc::clone(&seen);
            let report = session
                .upload(&local, remote.join(name))
                .protocol(protocol)
                .progress(move |p| progress.store(p.done, Ordering::Relaxed))
                .send()
                .await
                .unwrap_or_else(|e| panic!("{tag} upload {name:?}: {}", chain(&e)));
            assert_eq!(report.bytes, data.len() as u64);
            assert_eq!(report.sha256.as_deref(), Some(sha256_file(&local).as_str()));
            if !data.is_empty() {
                assert_eq!(seen.load(Ordering::Relaxed), data.len() as u64);
            }
            assert_eq!(
                std::fs::read(remote.join(name)).unwrap(),
                *data,
                "{tag} {name:?}"
            );
            assert_eq!(
                mode_and_mtime(&remote.join(name)),
                (mode, mtime),
                "{tag} {name:?}"
            );

            session
                .download(remote.join(name), back.join(name))
                .protocol(protocol)
                .send()
                .await
                .unwrap_or_else(|e| panic!("{tag} download {name:?}: {}", chain(&e)));
            assert_eq!(
                std::fs::read(back.join(name)).unwrap(),
                *data,
                "{tag} {name:?}"
            );
            assert_eq!(
                mode_and_mtime(&back.join(name)),
                (mode, mtime),
                "{tag} {name:?}"
            );
        }
        assert!(leftovers(&remote).is_empty(), "{:?}", leftovers(&remote));
        assert!(leftovers(&back).is_empty(), "{:?}", leftovers(&back));

        // Replacing an existing file works (rename over it), both ways.
        let target = remote.join("small.txt");
        write_file(
            &src.join("small.txt"),
            b"second version\n",
            0o644,
            1_700_000_000,
        );
        session
            .upload(src.join("small.txt"), &target)
            .protocol(protocol)
            .send()
            .await
            .unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"second version\n");
        session
            .download(&target, back.join("small.txt"))
            .protocol(protocol)
            .send()
            .await
            .unwrap();
        assert_eq!(
            std::fs::read(back.join("small.txt")).unwrap(),
            b"second version\n"
        );
    }
}

/// The test process's umask (the tests never change it).
fn umask() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|line| line.strip_prefix("Umask:"))
        .map(|value| u32::from_str_radix(value.trim(), 8).unwrap())
        .unwrap()
}

#[tokio::test]
async fn setuid_setgid_and_sticky_bits_never_cross_either_way() {
    let fx = Fixture::start();
    let session = fx.session().await;
    for protocol in PROTOCOLS {
        let tag = format!("{protocol:?}");
        let pod = fx.path(&format!("pod-{tag}"));
        let home = fx.path(&format!("home-{tag}"));
        std::fs::create_dir(&pod).unwrap();
        std::fs::create_dir(&home).unwrap();
        // A hostile pod's files: setuid, setgid and sticky programs.
        for (name, mode) in [("suid", 0o4755), ("sgid", 0o2750), ("sticky", 0o1777)] {
            write_file(&pod.join(name), b"#!/bin/sh\nid\n", mode, 1_650_000_000);
            assert_eq!(mode_and_mtime(&pod.join(name)).0, mode, "fixture {name}");
            session
                .download(pod.join(name), home.join(name))
                .protocol(protocol)
                .send()
                .await
                .unwrap_or_else(|e| panic!("{tag} download {name}: {}", chain(&e)));
            assert_eq!(
                mode_and_mtime(&home.join(name)),
                (mode & 0o777 & !umask(), 1_650_000_000),
                "{tag} {name}: only permission bits, less the umask"
            );
        }
        // And the other way: a local setuid file arrives without its setuid bit.
        let local = home.join("local-suid");
        write_file(&local, b"local\n", 0o4755, 1_650_000_000);
        session
            .upload(&local, pod.join("uploaded"))
            .protocol(protocol)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{tag} upload: {}", chain(&e)));
        let uploaded = mode_and_mtime(&pod.join("uploaded")).0;
        assert_eq!(
            uploaded & 0o7000,
            0,
            "{tag}: the upload kept mode {uploaded:o}"
        );
    }
}

#[tokio::test]
async fn missing_sources_are_clear_errors() {
    let fx = Fixture::start();
    let session = fx.session().await;
    for protocol in PROTOCOLS {
        let err = session
            .download(fx.path("no-such-remote"), fx.path("x"))
            .protocol(protocol)
            .send()
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Transfer { .. }), "{err:?}");
        assert!(err.to_string().contains("no-such-remote"), "{err}");
        assert!(!fx.path("x").exists());

        let err = session
            .upload(fx.path("no-such-local"), fx.path("y"))
            .protocol(protocol)
            .send()
            .await
            .unwrap_err();
        assert!(matches!(err, Error::LocalIo { .. }), "{err:?}");
        assert!(err.to_string().contains("no-such-local"), "{err}");
    }
}

#[tokio::test]
async fn directory_trees_round_trip() {
    let fx = Fixture::start();
    let session = fx.session().await;
    let tree = fx.path("tree");
    std::fs::create_dir_all(tree.join("a/b")).unwrap();
    std::fs::create_dir_all(tree.join("empty")).unwrap();
    write_file(&tree.join("top.txt"), b"top", 0o644, 1_650_000_000);
    write_file(
        &tree.join("a/one.bin"),
        &pattern(10_000, 1),
        0o600,
        1_650_000_001,
    );
    write_file(
        &tree.join("a/b").join(odd_name()),
        &pattern(5, 2),
        0o755,
        1_650_000_002,
    );
    for protocol in PROTOCOLS {
        let remote = fx.path(&format!("remote-tree-{protocol:?}"));
        let back = fx.path(&format!("back-tree-{protocol:?}"));
        let up = session
            .upload(&tree, &remote)
            .protocol(protocol)
            .send()
            .await
            .unwrap();
        assert_eq!(up.files, 3);
        let down = session
            .download(&remote, &back)
            .protocol(protocol)
            .send()
            .await
            .unwrap();
        assert_eq!(down.files, 3);
        assert_eq!(down.bytes, 10_008);
        assert!(back.join("empty").is_dir());
        for rel in [
            PathBuf::from("top.txt"),
            PathBuf::from("a/one.bin"),
            Path::new("a/b").join(odd_name()),
        ] {
            assert_eq!(
                std::fs::read(back.join(&rel)).unwrap(),
                std::fs::read(tree.join(&rel)).unwrap()
            );
            assert_eq!(
                mode_and_mtime(&back.join(&rel)),
                mode_and_mtime(&tree.join(&rel))
            );
        }
    }
}

/// 100 MiB up and down, once per protocol.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_mebibyte_files_round_trip() {
    let fx = Fixture::start();
    let session = fx.session().await;
    let big = fx.path("big.bin");
    write_file(&big, &pattern(100 << 20, 42), 0o644, 1_690_000_000);
    let expected = sha256_file(&big);
    for protocol in PROTOCOLS {
        let remote = fx.path(&format!("big-remote-{protocol:?}.bin"));
        let back = fx.path(&format!("big-back-{protocol:?}.bin"));
        let up = session
            .upload(&big, &remote)
            .protocol(protocol)
            .send()
            .await
            .unwrap();
        let down = session
            .download(&remote, &back)
            .protocol(protocol)
            .send()
            .await
            .unwrap();
        eprintln!(
            "{protocol:?}: 100 MiB up in {:?}, down in {:?} (verified)",
            up.elapsed, down.elapsed
        );
        assert_eq!(sha256_file(&back), expected);
        assert_eq!(down.sha256.as_deref(), Some(expected.as_str()));
        std::fs::remove_file(&remote).unwrap();
        std::fs::remove_file(&back).unwrap();
    }
}

/// Kills sshd a third of the way through; the destination must be untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_transfer_leaves_the_destination_untouched() {
    let mut fx = Fixture::start();
    let source = fx.path("source.bin");
    write_file(&source, &pattern(24 << 20, 5), 0o644, 1_680_000_000);
    for (index, (upload, protocol)) in [
        (true, Protocol::Scp),
        (true, Protocol::Sftp),
        (false, Protocol::Scp),
        (false, Protocol::Sftp),
    ]
    .into_iter()
    .enumerate()
    {
        let session = fx.session().await;
        let local_dir = fx.path(&format!("case-{index}"));
        std::fs::create_dir(&local_dir).unwrap();
        let destination = local_dir.join("dest.bin");
        std::fs::write(&destination, b"the good old version").unwrap();
        let (from, to) = if upload {
            (source.clone(), destination.clone())
        } else {
            // Downloads read from a remote copy.
            let remote = fx.path(&format!("remote-{index}.bin"));
            std::fs::copy(&source, &remote).unwrap();
            (remote, destination.clone())
        };
        let (halfway_tx, halfway_rx) = mpsc::channel::<()>();
        let (killed_tx, killed_rx) = mpsc::channel::<()>();
        let killed_rx = std::sync::Mutex::new(killed_rx);
        let total = 24_u64 << 20;
        let transfer = if upload {
            session.upload(&from, &to)
        } else {
            session.download(&from, &to)
        };
        let task = tokio::spawn(
            transfer
                .protocol(protocol)
                .progress(move |p| {
                    if p.done > total / 3 && halfway_tx.send(()).is_ok() {
                        // Hold the transfer here until the server is dead.
                        let _ = killed_rx
                            .lock()
                            .unwrap()
                            .recv_timeout(Duration::from_secs(10));
                    }
                })
                .send(),
        );
        tokio::task::spawn_blocking(move || halfway_rx.recv_timeout(Duration::from_secs(30)))
            .await
            .unwrap()
            .expect("transfer reached a third");
        fx.sshd.stop();
        killed_tx.send(()).unwrap();
        let err = tokio::time::timeout(Duration::from_secs(60), task)
            .await
            .expect("interrupted transfer fails in bounded time")
            .unwrap()
            .unwrap_err();
        let text = chain(&err);
        eprintln!("interrupted {protocol:?} upload={upload}: {text}");
        assert!(
            matches!(err, Error::Transfer { .. } | Error::Exec { .. }),
            "{err:?}"
        );
        assert_eq!(
            std::fs::read(&destination).unwrap(),
            b"the good old version",
            "{text}"
        );
        assert!(
            !text.contains("rpb-part-") || text.contains("may remain"),
            "{text}"
        );
        if upload {
            // The server is dead, so the partial file cannot be removed: the error names it.
            for left in leftovers(destination.parent().unwrap()) {
                assert!(
                    text.contains(&*left.to_string_lossy()),
                    "{left:?} not in {text}"
                );
            }
        } else {
            assert!(leftovers(destination.parent().unwrap()).is_empty());
        }
        fx.sshd.restart().unwrap();
    }
}

#[tokio::test]
async fn progress_reaches_the_total() {
    let fx = Fixture::start();
    let session = fx.session().await;
    let file = fx.path("p.bin");
    write_file(&file, &pattern(5 << 20, 8), 0o644, 1_600_000_000);
    let last = Arc::new(std::sync::Mutex::new(None));
    let seen = Arc::clone(&last);
    session
        .upload(&file, fx.path("p-remote.bin"))
        .progress(move |p| *seen.lock().unwrap() = Some((p.done, p.total)))
        .send()
        .await
        .unwrap();
    assert_eq!(*last.lock().unwrap(), Some((5 << 20, 5 << 20)));
    let _ = SystemTime::now();
}

fn names_in(dir: &Path) -> Vec<std::ffi::OsString> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    names
}

/// Our SCP staging directories on the "server" (this machine's `/tmp`).
fn staging_dirs() -> Vec<PathBuf> {
    std::fs::read_dir("/tmp")
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.file_name().unwrap().as_bytes().starts_with(b"rpb-scp."))
                .collect()
        })
        .unwrap_or_default()
}

/// Every hostile name arrives under exactly its own name with its bytes, both ways, over both
/// protocols, also inside a directory whose own name SCP cannot carry; nothing else appears on
/// either side and no staging directory stays behind.
#[tokio::test]
async fn hostile_remote_names_round_trip_over_both_protocols() {
    let fx = Fixture::start();
    let session = fx.session().await;
    let staging_before = staging_dirs();
    for protocol in PROTOCOLS {
        let tag = format!("{protocol:?}");
        let src = fx.path(&format!("hostile-src-{tag}"));
        // The remote directory's own name is hostile too (a tab and a newline).
        let remote = fx.path(&format!("hostile-remote\t{tag}\n"));
        let back = fx.path(&format!("hostile-back-{tag}"));
        for dir in [&src, &remote, &back] {
            std::fs::create_dir(dir).unwrap();
        }
        for (index, name) in hostile_file_names().iter().enumerate() {
            let data = format!("scene {index} {name:?}\n").into_bytes();
            write_file(&src.join(name), &data, 0o640, 1_650_000_000 + index as u64);
            session
                .upload(src.join(name), remote.join(name))
                .protocol(protocol)
                .send()
                .await
                .unwrap_or_else(|e| panic!("{tag} upload {name:?}: {}", chain(&e)));
            assert_eq!(
                std::fs::read(remote.join(name)).unwrap(),
                data,
                "{tag} {name:?}"
            );
            session
                .download(remote.join(name), back.join(name))
                .protocol(protocol)
                .send()
                .await
                .unwrap_or_else(|e| panic!("{tag} download {name:?}: {}", chain(&e)));
            assert_eq!(
                std::fs::read(back.join(name)).unwrap(),
                data,
                "{tag} {name:?}"
            );
            assert_eq!(
                mode_and_mtime(&back.join(name)),
                (0o640, 1_650_000_000 + index as u64),
                "{tag} {name:?}"
            );
        }
        let mut expected = hostile_file_names();
        expected.sort();
        assert_eq!(
            names_in(&remote),
            expected,
            "{tag}: stray files on the server"
        );
        assert_eq!(names_in(&back), expected, "{tag}: stray files locally");
    }
    assert!(!fx.path("pwned").exists() && !Path::new("pwned").exists());
    let left: Vec<_> = staging_dirs()
        .into_iter()
        .filter(|d| !staging_before.contains(d))
        .collect();
    assert!(left.is_empty(), "staging directories left behind: {left:?}");
}

/// A loopback relay to `target` that cuts its first connection once `cut_after` bytes went from
/// the client to the server; later connections pass untouched.
async fn cutting_relay(target: u16, cut_after: u64) -> u16 {
    Relay::start(target, 0, cut_after, u64::MAX).await.port
}

/// A loopback relay to `target` that cuts connection number `victim` (0 for the first it
/// accepts) once more than `up_limit` bytes went from the client to the server or more than
/// `down_limit` the other way; other connections pass untouched.
struct Relay {
    port: u16,
    /// Connections accepted so far.
    accepted: Arc<AtomicU64>,
    /// Set when the victim was cut.
    cut: Arc<std::sync::atomic::AtomicBool>,
}

impl Relay {
    async fn start(target: u16, victim: u64, up_limit: u64, down_limit: u64) -> Self {
        use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

        /// Copies until EOF, an error, or (returning true) more than `limit` bytes.
        async fn pump(
            mut from: impl AsyncRead + Unpin,
            mut to: impl AsyncWrite + Unpin,
            limit: u64,
        ) -> bool {
            let mut buf = vec![0_u8; 32 * 1024];
            let mut total = 0_u64;
            loop {
                let n = match from.read(&mut buf).await {
                    Ok(0) | Err(_) => return false,
                    Ok(n) => n,
                };
                total += n as u64;
                if total > limit {
                    return true;
                }
                if to.write_all(&buf[..n]).await.is_err() {
                    return false;
                }
            }
        }

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicU64::new(0));
        let cut = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (count, was_cut) = (Arc::clone(&accepted), Arc::clone(&cut));
        tokio::spawn(async move {
            for index in 0..20 {
                let Ok(Ok((client, _))) =
                    tokio::time::timeout(Duration::from_secs(120), listener.accept()).await
                else {
                    return;
                };
                count.fetch_add(1, Ordering::Relaxed);
                let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await else {
                    continue;
                };
                let (up_limit, down_limit) = if index == victim {
                    (up_limit, down_limit)
                } else {
                    (u64::MAX, u64::MAX)
                };
                let was_cut = Arc::clone(&was_cut);
                tokio::spawn(async move {
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    // Whichever way ends first ends the connection (both sockets drop).
                    let cut = tokio::select! {
                        cut = pump(client_read, server_write, up_limit) => cut,
                        cut = pump(server_read, client_write, down_limit) => cut,
                    };
                    if cut {
                        was_cut.store(true, Ordering::Relaxed);
                    }
                });
            }
        });
        Self {
            port,
            accepted,
            cut,
        }
    }
}

/// Big files go over several connections at once (SFTP, 64 MiB and up); one of the extra
/// connections dies midway through its part: the transfer still completes, verified, both ways,
/// and progress ends at the file's size (the lost part counted once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_transfer_survives_losing_an_extra_connection() {
    let fx = Fixture::start();
    let size = 96_u64 << 20;
    let source = fx.path("split-source.bin");
    write_file(
        &source,
        &pattern(usize::try_from(size).unwrap(), 77),
        0o640,
        1_610_000_000,
    );
    let expected = sha256_file(&source);
    for upload in [true, false] {
        let dir = fx.path(&format!("split-{upload}"));
        std::fs::create_dir(&dir).unwrap();
        let destination = dir.join("scene.blend");
        std::fs::write(&destination, b"old").unwrap();
        // Connection 0 is the session; 1 is the first extra connection, cut 6 MiB into the data
        // it carries (past its handshake, inside its first chunk).
        let relay = if upload {
            Relay::start(fx.sshd.port(), 1, 6 << 20, u64::MAX).await
        } else {
            Relay::start(fx.sshd.port(), 1, u64::MAX, 6 << 20).await
        };
        let session = fx
            .builder()
            .endpoint(pod_tunnel::Endpoint::new("127.0.0.1", relay.port))
            .connect()
            .await
            .unwrap();
        let last = Arc::new(AtomicU64::new(0));
        let seen = Arc::clone(&last);
        let transfer = if upload {
            session.upload(&source, &destination)
        } else {
            // Downloads read a copy with the source's mode and modification time.
            let remote = dir.join("remote.bin");
            std::fs::copy(&source, &remote).unwrap();
            std::fs::File::options()
                .write(true)
                .open(&remote)
                .unwrap()
                .set_modified(UNIX_EPOCH + Duration::from_secs(1_610_000_000))
                .unwrap();
            session.download(remote, &destination)
        };
        let report = tokio::time::timeout(
            Duration::from_secs(120),
            transfer
                .progress(move |p| {
                    assert!(p.done <= p.total, "{p:?}");
                    seen.store(p.done, Ordering::Relaxed);
                })
                .send(),
        )
        .await
        .expect("a split transfer ends")
        .unwrap_or_else(|e| panic!("upload={upload}: {}", chain(&e)));
        assert!(
            relay.cut.load(Ordering::Relaxed),
            "upload={upload}: the extra connection was never cut ({} connections)",
            relay.accepted.load(Ordering::Relaxed)
        );
        assert!(
            relay.accepted.load(Ordering::Relaxed) >= 3,
            "split over several connections"
        );
        assert_eq!(report.bytes, size, "upload={upload}");
        assert_eq!(last.load(Ordering::Relaxed), size, "upload={upload}");
        assert_eq!(report.sha256.as_deref(), Some(expected.as_str()));
        assert_eq!(sha256_file(&destination), expected, "upload={upload}");
        assert_eq!(mode_and_mtime(&destination), (0o640, 1_610_000_000));
        assert!(leftovers(&dir).is_empty(), "{:?}", leftovers(&dir));
    }
}

/// A connection cut mid-upload: the error names the caller's source and destination (never the
/// temporary name), says the destination is untouched, and the partial temporary file is gone
/// (removed over a fresh connection); a retry then works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_upload_names_the_destination_and_leaves_no_partial_file() {
    let fx = Fixture::start();
    let source = fx.path("cut-source.bin");
    write_file(&source, &pattern(8 << 20, 11), 0o644, 1_600_000_000);
    for protocol in PROTOCOLS {
        let dir = fx.path(&format!("cut-{protocol:?}"));
        std::fs::create_dir(&dir).unwrap();
        let destination = dir.join("scene.blend");
        std::fs::write(&destination, b"old").unwrap();
        let port = cutting_relay(fx.sshd.port(), 2 << 20).await;
        let session = fx
            .builder()
            .endpoint(pod_tunnel::Endpoint::new("127.0.0.1", port))
            .connect()
            .await
            .unwrap();
        let err = tokio::time::timeout(
            Duration::from_secs(60),
            session
                .upload(&source, &destination)
                .protocol(protocol)
                .send(),
        )
        .await
        .expect("a cut upload ends")
        .unwrap_err();
        let text = chain(&err);
        eprintln!("{protocol:?} cut: {text}");
        let message = err.to_string();
        assert!(
            matches!(&err, Error::Transfer { leftovers, .. } if leftovers.is_empty()),
            "{text}"
        );
        assert!(
            message.contains(&*destination.to_string_lossy()),
            "{message}"
        );
        assert!(message.contains(&*source.to_string_lossy()), "{message}");
        assert!(message.contains("untouched"), "{message}");
        assert!(!message.contains("rpb-part"), "{message}");
        assert_eq!(std::fs::read(&destination).unwrap(), b"old");
        assert!(leftovers(&dir).is_empty(), "{:?}", leftovers(&dir));

        // The relay passes the next connections: a retry completes.
        let session = fx
            .builder()
            .endpoint(pod_tunnel::Endpoint::new("127.0.0.1", port))
            .connect()
            .await
            .unwrap();
        session
            .upload(&source, &destination)
            .protocol(protocol)
            .send()
            .await
            .unwrap();
        assert_eq!(sha256_file(&destination), sha256_file(&source));
    }
}

/// Waits (at most 10 s) until none of `pids` runs any more.
fn wait_until_gone(pids: &[u32]) {
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while pids.iter().any(|&pid| alive(pid)) && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Processes stopped with SIGSTOP (all started by this test's sshd); continued on drop.
struct Frozen(Vec<u32>);

impl Frozen {
    fn freeze(pids: Vec<u32>) -> Self {
        // The guard first: whatever happens next, the processes are continued.
        let frozen = Self(pids);
        let stopped = send_signal(&frozen.0, "STOP");
        assert!(stopped > 0, "kill -STOP {:?}", frozen.0);
        frozen
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        send_signal(&self.0, "CONT");
    }
}

/// Signals each process; how many were signalled (one may have exited since it was listed,
/// such as a checksum that finished).
fn send_signal(pids: &[u32], signal: &str) -> usize {
    pids.iter()
        .filter(|pid| {
            std::process::Command::new("kill")
                .arg(format!("-{signal}"))
                .arg(pid.to_string())
                .stderr(std::process::Stdio::null())
                .status()
                .expect("run kill (Debian package procps)")
                .success()
        })
        .count()
}

/// The server's processes for a session are frozen (SIGSTOP) mid-transfer: the transfer fails
/// within about one I/O timeout (not once per blocking libssh2 call), with an error naming the
/// stall and the timeout; the destination is untouched and the remote temporary file is removed
/// over a fresh connection (the listening sshd still answers).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_transfer_fails_within_about_one_io_timeout() {
    let fx = Fixture::start();
    let io_timeout = Duration::from_secs(4);
    let limit = io_timeout.mul_f64(1.5) + Duration::from_secs(2);
    let listener = fx.sshd.pid().expect("sshd runs");
    let cases = [
        (true, Protocol::Scp, 32_usize << 20),
        (true, Protocol::Sftp, 32 << 20),
        // Split over several connections (64 MiB and up): every one of them stalls.
        (true, Protocol::Sftp, 72 << 20),
        (false, Protocol::Scp, 32 << 20),
        (false, Protocol::Sftp, 32 << 20),
        (false, Protocol::Sftp, 72 << 20),
    ];
    for (index, (upload, protocol, size)) in cases.into_iter().enumerate() {
        let dir = fx.path(&format!("stall-{index}"));
        std::fs::create_dir(&dir).unwrap();
        let source = fx.path(&format!("stall-source-{index}.bin"));
        write_file(
            &source,
            &pattern(size, index as u64 + 20),
            0o644,
            1_600_000_000,
        );
        let destination = dir.join("scene.blend");
        std::fs::write(&destination, b"the good old version").unwrap();
        let session = fx.builder().io_timeout(io_timeout).connect().await.unwrap();
        let (started_tx, started_rx) = mpsc::channel::<()>();
        let started_tx = std::sync::Mutex::new(Some(started_tx));
        // Once going, the transfer is held here until the server is frozen.
        let frozen_yet = Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
        let hold = Arc::clone(&frozen_yet);
        let transfer = if upload {
            session.upload(&source, &destination)
        } else {
            session.download(&source, &destination)
        };
        let task = tokio::spawn(
            transfer
                .protocol(protocol)
                .progress(move |p| {
                    if p.done > 4 << 20 {
                        if let Some(tx) = started_tx.lock().unwrap().take() {
                            let _ = tx.send(());
                        }
                        let (frozen, signal) = &*hold;
                        let _ = signal
                            .wait_timeout_while(
                                frozen.lock().unwrap(),
                                Duration::from_secs(30),
                                |f| !*f,
                            )
                            .unwrap();
                    }
                })
                .send(),
        );
        tokio::task::spawn_blocking(move || {
            started_rx.recv_timeout(Duration::from_secs(30))?;
            Ok::<_, mpsc::RecvTimeoutError>(())
        })
        .await
        .unwrap()
        .expect("the transfer got going");
        // Everything serving this session (and a split transfer's extra connections) freezes;
        // the listener keeps answering, so the cleanup can connect afresh.
        let frozen = Frozen::freeze(test_support::process::descendants(listener));
        *frozen_yet.0.lock().unwrap() = true;
        frozen_yet.1.notify_all();
        let stalled_at = std::time::Instant::now();
        let result = tokio::time::timeout(Duration::from_secs(60), task)
            .await
            .expect("a stalled transfer ends")
            .unwrap();
        let took = stalled_at.elapsed();
        // Continued, the frozen processes end by themselves (their connections are closed);
        // none is left to be killed halfway by the next case or the fixture.
        let pids = frozen.0.clone();
        drop(frozen);
        wait_until_gone(&pids);
        let err = result.expect_err("a frozen server cannot complete a transfer");
        let text = chain(&err);
        eprintln!("stalled upload={upload} {protocol:?} {size}: failed after {took:.1?}: {text}");
        assert!(took < limit, "took {took:?}, limit {limit:?}: {text}");
        assert!(
            matches!(&err, Error::TransferStalled { timeout, leftovers, .. }
                if *timeout == io_timeout && leftovers.is_empty()),
            "{text}"
        );
        let message = err.to_string();
        assert!(
            message.contains("stalled") && message.contains("4s"),
            "{message}"
        );
        assert!(
            message.contains(&*destination.to_string_lossy()),
            "{message}"
        );
        assert!(message.contains("untouched"), "{message}");
        assert!(!message.contains("rpb-part"), "{message}");
        assert_eq!(
            std::fs::read(&destination).unwrap(),
            b"the good old version"
        );
        assert!(leftovers(&dir).is_empty(), "{:?}", leftovers(&dir));
    }
}
