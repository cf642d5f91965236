//! SCP and SFTP transfers through a real sshd (the "remote" side is this machine's filesystem).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pod_tunnel::{Error, Protocol};

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
        if !upload {
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
