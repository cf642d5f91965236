//! Connection faults during transfers: a TCP relay between pod-tunnel and a real sshd cuts the
//! connection after a number of bytes (mid-upload, mid-download) or stalls it (as a paused sshd
//! would). Afterwards the destination is unchanged, the error is clear, and a retry completes
//! with a matching hash.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pod_tunnel::{Endpoint, HostKeyPolicy, Protocol, Session};
use test_support::sshd::Sshd;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::summary::{Summary, chain};

const NEVER: u64 = u64::MAX;

/// What the relay does to the next connections.
#[derive(Default)]
struct Knobs {
    /// Cut after this many bytes client → server (`NEVER`: pass).
    cut_up: AtomicU64,
    /// Cut after this many bytes server → client.
    cut_down: AtomicU64,
    /// Stall once for `stall_ms` after this many bytes client → server.
    stall_up: AtomicU64,
    stall_ms: AtomicU64,
}

impl Knobs {
    fn set(&self, cut_up: u64, cut_down: u64, stall_up: u64, stall_ms: u64) {
        self.cut_up.store(cut_up, Ordering::SeqCst);
        self.cut_down.store(cut_down, Ordering::SeqCst);
        self.stall_up.store(stall_up, Ordering::SeqCst);
        self.stall_ms.store(stall_ms, Ordering::SeqCst);
    }
}

/// A relay on 127.0.0.1 to `target`, applying `knobs` to each connection.
async fn relay(
    target: u16,
    knobs: Arc<Knobs>,
) -> anyhow::Result<(u16, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let task = tokio::spawn(async move {
        for _ in 0..100 {
            let Ok((client, _)) = listener.accept().await else {
                return;
            };
            let Ok(server) = TcpStream::connect(("127.0.0.1", target)).await else {
                continue;
            };
            let knobs = knobs.clone();
            tokio::spawn(async move {
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                let up = pump(
                    client_read,
                    server_write,
                    knobs.cut_up.load(Ordering::SeqCst),
                    knobs.stall_up.load(Ordering::SeqCst),
                    Duration::from_millis(knobs.stall_ms.load(Ordering::SeqCst)),
                );
                let down = pump(
                    server_read,
                    client_write,
                    knobs.cut_down.load(Ordering::SeqCst),
                    NEVER,
                    Duration::ZERO,
                );
                // Whichever side ends (or is cut) ends the connection both ways.
                tokio::select! {
                    () = up => {}
                    () = down => {}
                }
            });
        }
    });
    Ok((port, task))
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    cut_after: u64,
    stall_after: u64,
    stall: Duration,
) {
    let mut buf = vec![0_u8; 32 * 1024];
    let mut total = 0_u64;
    let mut stalled = false;
    loop {
        let Ok(n) = from.read(&mut buf).await else {
            return;
        };
        if n == 0 {
            let _ = to.shutdown().await;
            return;
        }
        total += n as u64;
        if total > cut_after {
            return;
        }
        if !stalled && total > stall_after {
            stalled = true;
            tokio::time::sleep(stall).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

async fn connect(
    sshd: &Sshd,
    port: u16,
    known_hosts: &Path,
    io: Duration,
) -> anyhow::Result<Session> {
    Ok(Session::builder()
        .endpoint(Endpoint::new("127.0.0.1", port))
        .user(sshd.user())
        .identity_file(sshd.client_key())
        .host_key_policy(HostKeyPolicy::accept_new(known_hosts).with_alias("cut-test"))
        .connect_timeout(Duration::from_secs(5))
        .io_timeout(io)
        .build()?
        .connect()
        .await?)
}

fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn sha256(path: &Path) -> String {
    std::process::Command::new("sha256sum")
        .arg(path)
        .output()
        .map(|out| {
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned()
        })
        .unwrap_or_default()
}

fn leftovers(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .filter_map(Result::ok)
            .filter(|entry| entry.file_name().to_string_lossy().contains("rpb-part-"))
            .count()
    })
}

#[allow(
    clippy::too_many_lines,
    reason = "one scenario per fault kind and protocol, read top to bottom"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfers_cut_or_stalled_mid_way_leave_the_destination_and_a_retry_completes()
-> anyhow::Result<()> {
    let sshd = Sshd::start()
        .map_err(|e| anyhow::anyhow!("start sshd (Debian package openssh-server): {e:#}"))?;
    let scratch = tempfile::tempdir()?;
    let known_hosts = scratch.path().join("known_hosts");
    let knobs = Arc::new(Knobs::default());
    knobs.set(NEVER, NEVER, NEVER, 0);
    let (port, relay_task) = relay(sshd.port(), knobs.clone()).await?;
    let mut summary = Summary::default();
    let size = 8 << 20;
    let new = scratch.path().join("new.blend");
    std::fs::write(&new, pattern(size, 7))?;
    let new_hash = sha256(&new);
    let old_bytes = pattern(100_000, 3);

    for protocol in [Protocol::Sftp, Protocol::Scp] {
        let tag = format!("{protocol:?}").to_lowercase();
        let remote_dir = scratch.path().join(format!("remote-{tag}"));
        let local_dir = scratch.path().join(format!("local-{tag}"));
        std::fs::create_dir(&remote_dir)?;
        std::fs::create_dir(&local_dir)?;
        let remote = remote_dir.join("scene.blend");
        let local = local_dir.join("scene.blend");

        // Upload cut after 2 MiB: the remote keeps its old file; a retry completes.
        std::fs::write(&remote, &old_bytes)?;
        knobs.set(2 << 20, NEVER, NEVER, 0);
        let session = connect(&sshd, port, &known_hosts, Duration::from_secs(10)).await?;
        let cut = tokio::time::timeout(
            Duration::from_secs(60),
            session.upload(&new, &remote).protocol(protocol).send(),
        )
        .await;
        drop(session);
        knobs.set(NEVER, NEVER, NEVER, 0);
        let mut outcome = match cut {
            Err(_) => Err("the cut upload hung".to_owned()),
            Ok(Ok(_)) => Err("the cut upload reported success".to_owned()),
            Ok(Err(error)) => {
                let text = chain(&error);
                eprintln!("{tag} upload cut: {text}");
                if std::fs::read(&remote)? != old_bytes {
                    Err(format!("the remote file changed: {text}"))
                } else if !text.contains(&remote.display().to_string()) {
                    Err(format!("the error does not name the destination: {text}"))
                } else if leftovers(&remote_dir) > 0 && !text.contains("rpb-part-") {
                    Err(format!(
                        "a partial file is left on the pod, unnamed: {text}"
                    ))
                } else {
                    Ok(())
                }
            }
        };
        if outcome.is_ok() {
            let session = connect(&sshd, port, &known_hosts, Duration::from_secs(10)).await?;
            outcome = match session
                .upload(&new, &remote)
                .protocol(protocol)
                .send()
                .await
            {
                Ok(report)
                    if report.sha256.as_deref() == Some(new_hash.as_str())
                        && sha256(&remote) == new_hash =>
                {
                    Ok(())
                }
                Ok(report) => Err(format!("retry hash mismatch {report:?}")),
                Err(error) => Err(format!("retry failed: {}", chain(&error))),
            };
        }
        let stray = leftovers(&remote_dir);
        if outcome.is_ok() && stray > 0 {
            outcome = Err(format!(
                "{stray} partial file(s) left on the pod after the retry"
            ));
        }
        summary.record_one(
            &format!("connection cut mid-upload ({tag}, after 2 of 8 MiB)"),
            "remote old file intact; the error names the destination; retry sha256 matches; no partial file left on the pod",
            outcome,
        );

        // Download cut after 2 MiB: the local file keeps its old bytes, no partial file.
        std::fs::write(&local, &old_bytes)?;
        knobs.set(NEVER, 2 << 20, NEVER, 0);
        let session = connect(&sshd, port, &known_hosts, Duration::from_secs(10)).await?;
        let cut = tokio::time::timeout(
            Duration::from_secs(60),
            session.download(&remote, &local).protocol(protocol).send(),
        )
        .await;
        drop(session);
        knobs.set(NEVER, NEVER, NEVER, 0);
        let mut outcome = match cut {
            Err(_) => Err("the cut download hung".to_owned()),
            Ok(Ok(_)) => Err("the cut download reported success".to_owned()),
            Ok(Err(error)) => {
                let text = chain(&error);
                eprintln!("{tag} download cut: {text}");
                if std::fs::read(&local)? != old_bytes {
                    Err(format!("the local file changed: {text}"))
                } else if leftovers(&local_dir) > 0 {
                    Err("a partial file was left locally".to_owned())
                } else {
                    Ok(())
                }
            }
        };
        if outcome.is_ok() {
            let session = connect(&sshd, port, &known_hosts, Duration::from_secs(10)).await?;
            outcome = match session
                .download(&remote, &local)
                .protocol(protocol)
                .send()
                .await
            {
                Ok(_) if sha256(&local) == new_hash => Ok(()),
                Ok(report) => Err(format!("retry hash mismatch {report:?}")),
                Err(error) => Err(format!("retry failed: {}", chain(&error))),
            };
        }
        summary.record_one(
            &format!("connection cut mid-download ({tag}, after 2 of 8 MiB)"),
            "local old file intact, no partial file; retry sha256 matches",
            outcome,
        );

        // A stall of 3 s mid-upload (a paused sshd, shorter than the I/O timeout): survives.
        knobs.set(NEVER, NEVER, 1 << 20, 3000);
        let session = connect(&sshd, port, &known_hosts, Duration::from_secs(15)).await?;
        let started = Instant::now();
        let stalled = tokio::time::timeout(
            Duration::from_secs(60),
            session.upload(&new, &remote).protocol(protocol).send(),
        )
        .await;
        knobs.set(NEVER, NEVER, NEVER, 0);
        let took = started.elapsed();
        summary.record_one(
            &format!("3 s stall mid-upload ({tag}; I/O timeout 15 s)"),
            &format!("completed in {took:.1?}; sha256 matches"),
            match stalled {
                Err(_) => Err("the stalled upload hung".to_owned()),
                Ok(Ok(_)) if sha256(&remote) == new_hash => Ok(()),
                Ok(Ok(_)) => Err("hash mismatch after the stall".to_owned()),
                Ok(Err(error)) => Err(format!("failed: {}", chain(&error))),
            },
        );

        // A stall longer than the I/O timeout: a clear error in bounded time, file intact.
        std::fs::write(&remote, &old_bytes)?;
        knobs.set(NEVER, NEVER, 1 << 20, 30_000);
        let session = connect(&sshd, port, &known_hosts, Duration::from_secs(3)).await?;
        let started = Instant::now();
        let stalled = tokio::time::timeout(
            Duration::from_secs(45),
            session.upload(&new, &remote).protocol(protocol).send(),
        )
        .await;
        let took = started.elapsed();
        drop(session);
        knobs.set(NEVER, NEVER, NEVER, 0);
        summary.record_one(
            &format!("30 s stall mid-upload ({tag}; I/O timeout 3 s)"),
            &format!(
                "clear error after {took:.1?} (limit 1.5 x 3 s + 2 s); remote old file intact"
            ),
            match stalled {
                Err(_) => Err("no answer within 45 s".to_owned()),
                Ok(Ok(_)) => Err("reported success through a 30 s stall".to_owned()),
                Ok(Err(error)) => {
                    eprintln!("{tag} long stall: {}", chain(&error));
                    if std::fs::read(&remote)? != old_bytes {
                        Err("the remote file changed".to_owned())
                    } else if took > Duration::from_millis(6_500) {
                        Err(format!(
                            "the stall took {took:.1?} to fail with a 3 s I/O timeout"
                        ))
                    } else {
                        Ok(())
                    }
                }
            },
        );
    }
    relay_task.abort();

    // The real thing: the sshd processes serving the session paused with SIGSTOP while a
    // transfer runs, resumed 3 s later.
    let mut outcomes = Vec::new();
    for protocol in [Protocol::Sftp, Protocol::Scp] {
        let remote = scratch.path().join(format!("paused-{protocol:?}.blend"));
        let session = Session::builder()
            .endpoint(Endpoint::new("127.0.0.1", sshd.port()))
            .user(sshd.user())
            .identity_file(sshd.client_key())
            .host_key_policy(HostKeyPolicy::accept_new(&known_hosts))
            .connect_timeout(Duration::from_secs(5))
            .io_timeout(Duration::from_secs(15))
            .build()?
            .connect()
            .await?;
        let listener = sshd
            .pid()
            .ok_or_else(|| anyhow::anyhow!("sshd has no pid"))?;
        let serving = test_support::process::descendants(listener);
        signal(&serving, "-STOP");
        let upload = session.upload(&new, &remote).protocol(protocol).send();
        let resume = async {
            tokio::time::sleep(Duration::from_secs(3)).await;
            // Children forked while paused are none: a stopped process forks nothing.
            signal(&serving, "-CONT");
        };
        let started = Instant::now();
        let (sent, ()) = tokio::time::timeout(Duration::from_secs(60), async {
            tokio::join!(upload, resume)
        })
        .await
        .map_err(|_| anyhow::anyhow!("the paused upload hung"))?;
        signal(&serving, "-CONT");
        let took = started.elapsed();
        outcomes.push(match sent {
            Ok(_) if sha256(&remote) == new_hash && took >= Duration::from_secs(3) => Ok(()),
            Ok(_) => Err(format!(
                "{protocol:?}: hash mismatch or no pause ({took:?})"
            )),
            Err(error) => Err(format!("{protocol:?}: {}", chain(&error))),
        });
        eprintln!(
            "{protocol:?} upload with sshd paused 3 s ({} processes): {took:.1?}",
            serving.len()
        );
    }
    summary.record(
        "sshd session processes SIGSTOPped 3 s during an upload (sftp, scp)",
        "upload completes after SIGCONT; sha256 matches",
        outcomes,
    );

    // The local disk fills up during a download (a 4 MiB tmpfs, an 8 MiB file): a clear
    // error, the old file intact, no partial file; the same download then fits elsewhere.
    let full = scratch.path().join("full");
    std::fs::create_dir(&full)?;
    let mount = Tmpfs::mount(&full, "4m")?;
    let remote = scratch.path().join("paused-Sftp.blend");
    let mut outcomes = Vec::new();
    for protocol in [Protocol::Sftp, Protocol::Scp] {
        let local = full.join(format!("scene-{protocol:?}.blend"));
        std::fs::write(&local, &old_bytes)?;
        let session = connect(&sshd, sshd.port(), &known_hosts, Duration::from_secs(15)).await?;
        let sent = tokio::time::timeout(
            Duration::from_secs(60),
            session.download(&remote, &local).protocol(protocol).send(),
        )
        .await;
        outcomes.push(match sent {
            Err(_) => Err(format!("{protocol:?}: the download hung on a full disk")),
            Ok(Ok(_)) => Err(format!("{protocol:?}: 8 MiB fit in 4 MiB")),
            Ok(Err(error)) => {
                let text = chain(&error);
                eprintln!("{protocol:?} download to a full disk: {text}");
                if std::fs::read(&local)? != old_bytes {
                    Err(format!("{protocol:?}: the old file changed"))
                } else if leftovers(&full) > 0 {
                    Err(format!("{protocol:?}: a partial file fills the disk"))
                } else {
                    Ok(())
                }
            }
        });
    }
    drop(mount);
    summary.record(
        "local disk full during a download (4 MiB tmpfs, 8 MiB file; sftp, scp)",
        "clear error; old file intact; no partial file left",
        outcomes,
    );
    summary.finish("network faults during transfers");
    Ok(())
}

/// Sends `signal` (`-STOP`, `-CONT`) to `pids`, all processes this test started.
pub(crate) fn signal(pids: &[u32], signal: &str) {
    for pid in pids {
        let _ = std::process::Command::new("kill")
            .args([signal, &pid.to_string()])
            .status();
    }
}

/// A small tmpfs mounted for the test (CI runs as root), unmounted on drop.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> anyhow::Result<Self> {
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .map_err(|e| anyhow::anyhow!("run mount (Debian package mount): {e}"))?;
        anyhow::ensure!(
            status.success(),
            "mounting a tmpfs at {} failed ({status}); the disk-full test needs root",
            dir.display()
        );
        Ok(Self(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}
