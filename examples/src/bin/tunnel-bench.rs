//! Measures pod-tunnel against OpenSSH (`ssh -N -L`, `scp`) side by side, on one private sshd.
//!
//! ```text
//! cargo run --release -p rpb-examples --bin tunnel-bench            # full run (a few minutes)
//! cargo run --release -p rpb-examples --bin tunnel-bench -- --quick # sizes / 8
//! cargo run --release -p rpb-examples --bin tunnel-bench -- --files-only --wan-only
//! ```
//!
//! Every figure, for both tools, is the best of `--repeat` runs (noise only ever slows a run).
//!
//! Two settings: plain loopback (CPU-bound), and a WAN-like link made by a delay proxy of our
//! own between the clients and sshd (25 ms each way, 50 ms round trip). Needs the Debian packages
//! `openssh-server` and `openssh-client`. Everything listens on 127.0.0.1 and stops by itself.

#![expect(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::disallowed_methods,
    clippy::cast_precision_loss,
    reason = "a benchmark binary owns its runtime, prints, and paces its delay proxy with sleeps"
)]

use std::io::{Read as _, Write as _};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use test_support::process::free_port;

use anyhow::{Context as _, bail};
use clap::Parser;
use pod_tunnel::{Endpoint, Forward, HostKeyPolicy, Protocol, Session};
use test_support::sshd::Sshd;

/// pod-tunnel vs OpenSSH benchmark.
#[derive(Parser, Debug)]
#[expect(clippy::struct_excessive_bools, reason = "command-line switches")]
struct Args {
    /// Divide every size by 8 (a quick sanity run).
    #[arg(long)]
    quick: bool,
    /// Skip the WAN-like setting.
    #[arg(long, conflicts_with = "wan_only")]
    loopback_only: bool,
    /// Skip the loopback setting.
    #[arg(long)]
    wan_only: bool,
    /// pod-tunnel's cipher preference (OpenSSH names), instead of its default.
    #[arg(long)]
    ciphers: Option<String>,
    /// Runs of each measurement (forwards and files, both tools); the best is reported.
    #[arg(long, default_value_t = 3)]
    repeat: u32,
    /// Skip the file-transfer rows.
    #[arg(long, conflicts_with = "files_only")]
    no_files: bool,
    /// Only the file-transfer rows (no forwards).
    #[arg(long)]
    files_only: bool,
    /// One-way delay of the WAN-like setting, in milliseconds.
    #[arg(long, default_value_t = 25)]
    delay_ms: u64,
}

const MIB: u64 = 1 << 20;

#[derive(Clone, Copy)]
struct Sizes {
    forward: u64,
    parallel_total: u64,
    file: u64,
    echo_time: Duration,
    repeat: u32,
    files: bool,
    forwards: bool,
}

struct Row {
    setting: &'static str,
    name: String,
    unit: &'static str,
    ours: f64,
    openssh: f64,
}

/// Target servers behind the forwards.
struct Targets {
    /// Reads until EOF, answers with the byte count (8 bytes, big endian).
    sink: u16,
    /// Reads an 8-byte count N, sends N bytes, closes.
    source: u16,
    /// Echoes.
    echo: u16,
}

fn spawn_server(handler: fn(TcpStream)) -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || handler(stream));
        }
    });
    Ok(port)
}

fn sink(mut stream: TcpStream) {
    let mut buf = vec![0_u8; 256 * 1024];
    let mut total = 0_u64;
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    let _ = stream.write_all(&total.to_be_bytes());
}

fn source(mut stream: TcpStream) {
    let mut len = [0_u8; 8];
    if stream.read_exact(&mut len).is_err() {
        return;
    }
    let mut left = u64::from_be_bytes(len);
    let buf = vec![0x5a_u8; 256 * 1024];
    while left > 0 {
        let n = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
        if stream.write_all(&buf[..n]).is_err() {
            return;
        }
        left -= n as u64;
    }
}

fn echo(mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut buf = vec![0_u8; 64 * 1024];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 || stream.write_all(&buf[..n]).is_err() {
            break;
        }
    }
}

/// A TCP proxy that delays every chunk by `delay` in each direction.
fn delay_proxy(upstream: SocketAddr, delay: Duration) -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(server) = TcpStream::connect(upstream) else {
                continue;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            for (from, to) in [(&client, &server), (&server, &client)] {
                let (Ok(from), Ok(to)) = (from.try_clone(), to.try_clone()) else {
                    continue;
                };
                pipe_delayed(from, to, delay);
            }
        }
    });
    Ok(port)
}

fn pipe_delayed(mut from: TcpStream, mut to: TcpStream, delay: Duration) {
    // Bounded queue: at most 1024 chunks of up to 64 KiB in flight per direction.
    let (tx, rx) = mpsc::sync_channel::<(Instant, Vec<u8>)>(1024);
    std::thread::spawn(move || {
        let mut buf = vec![0_u8; 64 * 1024];
        loop {
            let n = from.read(&mut buf).unwrap_or(0);
            let chunk = buf[..n].to_vec();
            if tx.send((Instant::now() + delay, chunk)).is_err() || n == 0 {
                break;
            }
        }
    });
    std::thread::spawn(move || {
        while let Ok((due, chunk)) = rx.recv() {
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            if chunk.is_empty() {
                let _ = to.shutdown(Shutdown::Write);
                break;
            }
            if to.write_all(&chunk).is_err() {
                break;
            }
        }
    });
}

// ----- measurements through a forward (same code for both tools) ---------------------------

fn mb_per_s(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / elapsed.as_secs_f64() / 1e6
}

/// remote → local: ask the source for `bytes` and read them.
fn pull(local: SocketAddr, bytes: u64) -> anyhow::Result<()> {
    let mut stream = TcpStream::connect(local)?;
    stream.set_read_timeout(Some(Duration::from_secs(120)))?;
    stream.write_all(&bytes.to_be_bytes())?;
    let mut buf = vec![0_u8; 256 * 1024];
    let mut got = 0;
    while got < bytes {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            bail!("stream ended after {got} of {bytes} bytes");
        }
        got += n as u64;
    }
    Ok(())
}

/// local → remote: send `bytes` to the sink and wait for its count.
fn push(local: SocketAddr, bytes: u64) -> anyhow::Result<()> {
    let mut stream = TcpStream::connect(local)?;
    stream.set_read_timeout(Some(Duration::from_secs(120)))?;
    let buf = vec![0xa5_u8; 256 * 1024];
    let mut left = bytes;
    while left > 0 {
        let n = usize::try_from(left.min(buf.len() as u64))?;
        stream.write_all(&buf[..n])?;
        left -= n as u64;
    }
    stream.shutdown(Shutdown::Write)?;
    let mut count = [0_u8; 8];
    stream.read_exact(&mut count)?;
    if u64::from_be_bytes(count) != bytes {
        bail!(
            "sink counted {} of {bytes} bytes",
            u64::from_be_bytes(count)
        );
    }
    Ok(())
}

fn echo_rate(local: SocketAddr, duration: Duration) -> anyhow::Result<f64> {
    let mut stream = TcpStream::connect(local)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let msg = [7_u8; 64];
    let mut back = [0_u8; 64];
    // Warm up.
    stream.write_all(&msg)?;
    stream.read_exact(&mut back)?;
    let started = Instant::now();
    let mut count = 0_u64;
    while started.elapsed() < duration {
        stream.write_all(&msg)?;
        stream.read_exact(&mut back)?;
        count += 1;
    }
    Ok(count as f64 / started.elapsed().as_secs_f64())
}

fn parallel_pull(local: SocketAddr, total: u64, streams: u64) -> anyhow::Result<Duration> {
    let each = total / streams;
    let started = Instant::now();
    let handles: Vec<_> = (0..streams)
        .map(|_| std::thread::spawn(move || pull(local, each)))
        .collect();
    for handle in handles {
        handle
            .join()
            .map_err(|_| anyhow::anyhow!("stream thread panicked"))??;
    }
    Ok(started.elapsed())
}

struct ForwardResults {
    pull: f64,
    push: f64,
    echo: f64,
    parallel: f64,
}

fn measure_forwards(
    pull_addr: SocketAddr,
    push_addr: SocketAddr,
    echo_addr: SocketAddr,
    sizes: &Sizes,
) -> anyhow::Result<ForwardResults> {
    pull(pull_addr, MIB)?; // warm up
    // Best of `repeat` runs: the machine may be shared, and noise only ever slows a run down.
    let mut best = ForwardResults {
        pull: 0.0,
        push: 0.0,
        echo: 0.0,
        parallel: 0.0,
    };
    for _ in 0..sizes.repeat {
        let started = Instant::now();
        pull(pull_addr, sizes.forward)?;
        best.pull = best.pull.max(mb_per_s(sizes.forward, started.elapsed()));
        let started = Instant::now();
        push(push_addr, sizes.forward)?;
        best.push = best.push.max(mb_per_s(sizes.forward, started.elapsed()));
        best.echo = best.echo.max(echo_rate(echo_addr, sizes.echo_time)?);
        let elapsed = parallel_pull(pull_addr, sizes.parallel_total, 32)?;
        best.parallel = best.parallel.max(mb_per_s(sizes.parallel_total, elapsed));
    }
    Ok(best)
}

// ----- OpenSSH ------------------------------------------------------------------------------

struct OpenSsh<'a> {
    sshd: &'a Sshd,
    known_hosts: &'a Path,
    port: u16,
}

impl OpenSsh<'_> {
    fn common(&self, command: &mut Command, port_flag: &str) {
        command
            .arg(port_flag)
            .arg(self.port.to_string())
            .arg("-i")
            .arg(self.sshd.client_key())
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", self.known_hosts.display()))
            .args(["-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes"])
            .args(["-o", "ConnectTimeout=10", "-F", "/dev/null"])
            .stdin(Stdio::null());
    }

    fn forward(&self, forwards: &[(u16, u16)]) -> anyhow::Result<Child> {
        let mut command = Command::new("ssh");
        command.args(["-N", "-o", "ExitOnForwardFailure=yes"]);
        self.common(&mut command, "-p");
        for (local, remote) in forwards {
            command.arg("-L").arg(format!("{local}:127.0.0.1:{remote}"));
        }
        command.arg(format!("{}@127.0.0.1", self.sshd.user()));
        let child = command
            .spawn()
            .context("failed to run ssh: install the Debian package openssh-client")?;
        let deadline = Instant::now() + Duration::from_secs(15);
        for (local, _) in forwards {
            while TcpStream::connect(("127.0.0.1", *local)).is_err() {
                if Instant::now() > deadline {
                    bail!("ssh -L did not bind 127.0.0.1:{local} in time");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(child)
    }

    fn scp(&self, legacy: bool, from: &str, to: &str) -> anyhow::Result<Duration> {
        let mut command = Command::new("scp");
        command.arg("-q");
        if legacy {
            command.arg("-O");
        }
        self.common(&mut command, "-P");
        command.arg(from).arg(to);
        let started = Instant::now();
        let status = command
            .status()
            .context("failed to run scp: install the Debian package openssh-client")?;
        let elapsed = started.elapsed();
        if !status.success() {
            bail!("scp {from} {to} failed with {status}");
        }
        Ok(elapsed)
    }
}

fn write_test_file(path: &Path, size: u64) -> anyhow::Result<()> {
    let mut file = std::fs::File::create(path)?;
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    let mut chunk = vec![0_u8; 1 << 20];
    for _ in 0..size / MIB {
        for word in chunk.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            word.copy_from_slice(&x.to_le_bytes());
        }
        file.write_all(&chunk)?;
    }
    file.sync_all()?;
    Ok(())
}

#[expect(
    clippy::too_many_lines,
    clippy::too_many_arguments,
    reason = "one linear benchmark script"
)]
async fn run_setting(
    setting: &'static str,
    sshd: &Sshd,
    port: u16,
    known_hosts: &Path,
    targets: &Targets,
    sizes: &Sizes,
    scratch: &Path,
    rows: &mut Vec<Row>,
    ciphers: Option<&str>,
) -> anyhow::Result<()> {
    let mut builder = Session::builder();
    if let Some(ciphers) = ciphers {
        builder = builder.ciphers(ciphers);
    }
    let connector = builder
        .endpoint(Endpoint::new("127.0.0.1", port))
        .user(sshd.user())
        .identity_file(sshd.client_key())
        .host_key_policy(HostKeyPolicy::strict(known_hosts))
        .build()?;

    let mib = |bytes: u64| bytes / MIB;
    let openssh = OpenSsh {
        sshd,
        known_hosts,
        port,
    };
    if sizes.forwards {
        // Forwards: pod-tunnel.
        eprintln!("[{setting}] pod-tunnel forwards…");
        let tunnel = connector
            .tunnel()
            .forward(Forward::new(0, "127.0.0.1", targets.source))
            .forward(Forward::new(0, "127.0.0.1", targets.sink))
            .forward(Forward::new(0, "127.0.0.1", targets.echo))
            .open()
            .await?;
        let locals: Vec<SocketAddr> = tunnel.forwards().iter().map(|f| f.local).collect();
        let (a, b, c) = (locals[0], locals[1], locals[2]);
        let sizes_ref = *sizes;
        let ours =
            tokio::task::spawn_blocking(move || measure_forwards(a, b, c, &sizes_ref)).await??;
        tunnel.close().await?;

        // Forwards: OpenSSH.
        eprintln!("[{setting}] ssh -N -L forwards…");
        let ports = [free_port()?, free_port()?, free_port()?];
        let mut child = openssh.forward(&[
            (ports[0], targets.source),
            (ports[1], targets.sink),
            (ports[2], targets.echo),
        ])?;
        let addr = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
        let (a, b, c) = (addr(ports[0]), addr(ports[1]), addr(ports[2]));
        let sizes_ref = *sizes;
        let theirs =
            tokio::task::spawn_blocking(move || measure_forwards(a, b, c, &sizes_ref)).await;
        let _ = child.kill();
        let _ = child.wait();
        let theirs = theirs??;

        rows.push(Row {
            setting,
            name: format!("forward remote→local, {} MiB", mib(sizes.forward)),
            unit: "MB/s",
            ours: ours.pull,
            openssh: theirs.pull,
        });
        rows.push(Row {
            setting,
            name: format!("forward local→remote, {} MiB", mib(sizes.forward)),
            unit: "MB/s",
            ours: ours.push,
            openssh: theirs.push,
        });
        rows.push(Row {
            setting,
            name: "64-byte echo round trips".into(),
            unit: "/s",
            ours: ours.echo,
            openssh: theirs.echo,
        });
        rows.push(Row {
            setting,
            name: format!(
                "32 parallel streams, {} MiB total",
                mib(sizes.parallel_total)
            ),
            unit: "MB/s",
            ours: ours.parallel,
            openssh: theirs.parallel,
        });
    }

    if !sizes.files {
        return Ok(());
    }
    // Files.
    let tag: String = setting
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    let local = scratch.join(format!("bench-{tag}.bin"));
    write_test_file(&local, sizes.file)?;
    let remote = scratch.join(format!("bench-{tag}-remote.bin"));
    let back = scratch.join(format!("bench-{tag}-back.bin"));
    let target = format!("{}@127.0.0.1:{}", sshd.user(), remote.display());
    for (protocol, legacy, label) in [
        (Protocol::Sftp, false, "sftp; OpenSSH: scp"),
        (Protocol::Scp, true, "scp; OpenSSH: scp -O"),
    ] {
        eprintln!("[{setting}] file transfers ({label})…");
        // Best of `repeat` runs for each tool, like the forwards.
        let (mut up, mut down) = (Duration::MAX, Duration::MAX);
        let (mut their_up, mut their_down) = (Duration::MAX, Duration::MAX);
        for _ in 0..sizes.repeat {
            // pod-tunnel: connect + transfer + SHA-256 verification, like one scp run.
            let started = Instant::now();
            let session = connector.connect().await?;
            session
                .upload(&local, &remote)
                .protocol(protocol)
                .send()
                .await?;
            up = up.min(started.elapsed());
            session.close().await?;
            let started = Instant::now();
            let session = connector.connect().await?;
            session
                .download(&remote, &back)
                .protocol(protocol)
                .send()
                .await?;
            down = down.min(started.elapsed());
            session.close().await?;
            std::fs::remove_file(&remote)?;
            std::fs::remove_file(&back)?;

            their_up = their_up.min(openssh.scp(legacy, &local.display().to_string(), &target)?);
            their_down =
                their_down.min(openssh.scp(legacy, &target, &back.display().to_string())?);
            std::fs::remove_file(&remote)?;
            std::fs::remove_file(&back)?;
        }
        rows.push(Row {
            setting,
            name: format!("upload {} MiB file ({label})", mib(sizes.file)),
            unit: "MB/s",
            ours: mb_per_s(sizes.file, up),
            openssh: mb_per_s(sizes.file, their_up),
        });
        rows.push(Row {
            setting,
            name: format!("download {} MiB file ({label})", mib(sizes.file)),
            unit: "MB/s",
            ours: mb_per_s(sizes.file, down),
            openssh: mb_per_s(sizes.file, their_down),
        });
    }
    std::fs::remove_file(&local)?;
    Ok(())
}

fn host_line(sshd: &Sshd, port: u16) -> anyhow::Result<String> {
    let key = sshd.host_public_key()?;
    let mut fields = key.split_whitespace();
    let kind = fields.next().unwrap_or_default();
    let blob = fields.next().unwrap_or_default();
    Ok(format!("[127.0.0.1]:{port} {kind} {blob}\n"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let div = if args.quick { 8 } else { 1 };
    let loopback = Sizes {
        forward: 1024 * MIB / div,
        parallel_total: 1024 * MIB / div,
        file: 256 * MIB / div,
        echo_time: Duration::from_secs(2),
        repeat: args.repeat.max(1),
        files: !args.no_files,
        forwards: !args.files_only,
    };
    let wan = Sizes {
        forward: 256 * MIB / div,
        parallel_total: 256 * MIB / div,
        file: 128 * MIB / div,
        echo_time: Duration::from_secs(2),
        repeat: args.repeat.max(1),
        files: !args.no_files,
        forwards: !args.files_only,
    };
    let sshd = Sshd::start()?;
    let scratch = tempfile::tempdir()?;
    let targets = Targets {
        sink: spawn_server(sink)?,
        source: spawn_server(source)?,
        echo: spawn_server(echo)?,
    };
    let proxy = delay_proxy(sshd.addr(), Duration::from_millis(args.delay_ms))?;
    let known_hosts: PathBuf = scratch.path().join("known_hosts");
    std::fs::write(
        &known_hosts,
        host_line(&sshd, sshd.port())? + &host_line(&sshd, proxy)?,
    )?;

    let mut rows = Vec::new();
    if !args.wan_only {
        run_setting(
            "loopback",
            &sshd,
            sshd.port(),
            &known_hosts,
            &targets,
            &loopback,
            scratch.path(),
            &mut rows,
            args.ciphers.as_deref(),
        )
        .await?;
    }
    if !args.loopback_only {
        run_setting(
            "50 ms RTT",
            &sshd,
            proxy,
            &known_hosts,
            &targets,
            &wan,
            scratch.path(),
            &mut rows,
            args.ciphers.as_deref(),
        )
        .await?;
    }

    println!("| setting | measurement | pod-tunnel | OpenSSH | ratio |");
    println!("|---|---|---:|---:|---:|");
    for row in &rows {
        println!(
            "| {} | {} | {:.1} {} | {:.1} {} | {:.2}× |",
            row.setting,
            row.name,
            row.ours,
            row.unit,
            row.openssh,
            row.unit,
            row.ours / row.openssh
        );
    }
    Ok(())
}
