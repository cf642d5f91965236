//! Uploads or downloads a file or directory tree, verified and written atomically.
//!
//! ```text
//! transfer --ssh root@203.0.113.7:40022 --identity ~/.ssh/id_ed25519 \
//!          --known-hosts ~/.local/state/rpb/known_hosts [--accept-new] [--protocol scp|sftp] \
//!          upload scene.blend /runpod/projects/demo/scene.blend
//! ```
//!
//! Exits non-zero with a clear message on any failure; the destination is then left untouched.

#![expect(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::disallowed_methods,
    reason = "an example binary owns its runtime and prints its results"
)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use pod_tunnel::{Endpoint, HostKeyPolicy, Protocol, Session};

/// File transfer over SSH (SCP or SFTP).
#[derive(Parser, Debug)]
struct Args {
    /// The server, as USER@HOST:PORT.
    #[arg(long)]
    ssh: String,
    /// Private key file.
    #[arg(long)]
    identity: PathBuf,
    /// Our own known-hosts file (strict checking unless --accept-new).
    #[arg(long)]
    known_hosts: PathBuf,
    /// Record an unknown host key on first use.
    #[arg(long)]
    accept_new: bool,
    /// Transfer protocol.
    #[arg(long, default_value = "sftp", value_parser = ["scp", "sftp"])]
    protocol: String,
    #[command(subcommand)]
    direction: Direction,
}

#[derive(Subcommand, Debug)]
enum Direction {
    /// Copy LOCAL (file or directory) to REMOTE.
    Upload {
        /// Local source.
        local: PathBuf,
        /// Remote destination path.
        remote: PathBuf,
    },
    /// Copy REMOTE (file or directory) to LOCAL.
    Download {
        /// Remote source.
        remote: PathBuf,
        /// Local destination path.
        local: PathBuf,
    },
}

fn parse_target(text: &str) -> anyhow::Result<(String, Endpoint)> {
    let (user, rest) = text
        .split_once('@')
        .with_context(|| format!("--ssh {text:?} is not USER@HOST:PORT"))?;
    Ok((user.to_owned(), rest.parse()?))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let (user, endpoint) = parse_target(&args.ssh)?;
    let policy = if args.accept_new {
        HostKeyPolicy::accept_new(&args.known_hosts)
    } else {
        HostKeyPolicy::strict(&args.known_hosts)
    };
    let protocol: Protocol = args.protocol.parse()?;
    let session = Session::builder()
        .endpoint(endpoint)
        .user(user)
        .identity_file(&args.identity)
        .host_key_policy(policy)
        .connect()
        .await?;
    let transfer = match &args.direction {
        Direction::Upload { local, remote } => session.upload(local, remote),
        Direction::Download { remote, local } => session.download(remote, local),
    };
    let last_percent = AtomicU64::new(u64::MAX);
    let report = transfer
        .protocol(protocol)
        .progress(move |p| {
            let percent = (p.done * 100).checked_div(p.total).unwrap_or(100);
            if last_percent.swap(percent, Ordering::Relaxed) != percent && percent % 10 == 0 {
                eprintln!("{percent:3}% ({} of {} bytes)", p.done, p.total);
            }
        })
        .send()
        .await?;
    let seconds = report.elapsed.as_secs_f64().max(1e-9);
    #[expect(clippy::cast_precision_loss, reason = "display only")]
    let rate = report.bytes as f64 / seconds / 1e6;
    println!(
        "{} file(s), {} bytes in {:.2} s ({rate:.1} MB/s){}",
        report.files,
        report.bytes,
        seconds,
        report
            .sha256
            .map(|h| format!(", sha256 {h}"))
            .unwrap_or_default()
    );
    session.close().await?;
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}
