//! Holds local port forwards open, like `ssh -N -L …`, with host-key checking and reconnects.
//!
//! ```text
//! forward --ssh root@203.0.113.7:40022 --identity ~/.ssh/id_ed25519 \
//!         --known-hosts ~/.local/state/rpb/known_hosts --accept-new \
//!         -L 9876:127.0.0.1:9876 -L 5900:127.0.0.1:5900 -L 6080:127.0.0.1:6080
//! ```
//!
//! Prints `ready` on stdout once every listener is bound and the session is up, then runs until
//! interrupted. Local port 0 picks a free port; the chosen ports are printed on stderr.

#![expect(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::disallowed_methods,
    reason = "an example binary owns its runtime and prints its results"
)]

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use pod_tunnel::{Endpoint, Forward, HostKeyPolicy, Session, TunnelState};

/// Local port forwards over SSH.
#[derive(Parser, Debug)]
struct Args {
    /// The server, as USER@HOST:PORT.
    #[arg(long)]
    ssh: String,
    /// Private key file.
    #[arg(long)]
    identity: PathBuf,
    /// Our own known-hosts file (strict checking unless --accept-new or --insecure).
    #[arg(long)]
    known_hosts: PathBuf,
    /// Record an unknown host key on first use.
    #[arg(long, conflicts_with = "insecure")]
    accept_new: bool,
    /// Do not check the host key at all (throwaway test servers only).
    #[arg(long)]
    insecure: bool,
    /// A forward, LOCALPORT:HOST:PORT (HOST:PORT as seen from the server). Repeatable.
    #[arg(short = 'L', value_name = "LOCALPORT:HOST:PORT", required = true)]
    forwards: Vec<String>,
}

/// Splits `USER@HOST:PORT`.
fn parse_target(text: &str) -> anyhow::Result<(String, Endpoint)> {
    let (user, rest) = text
        .split_once('@')
        .with_context(|| format!("--ssh {text:?} is not USER@HOST:PORT"))?;
    Ok((user.to_owned(), rest.parse()?))
}

async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (user, endpoint) = parse_target(&args.ssh)?;
    let policy = if args.insecure {
        HostKeyPolicy::Insecure
    } else if args.accept_new {
        HostKeyPolicy::accept_new(&args.known_hosts)
    } else {
        HostKeyPolicy::strict(&args.known_hosts)
    };
    let connector = Session::builder()
        .endpoint(endpoint)
        .user(user)
        .identity_file(&args.identity)
        .host_key_policy(policy)
        .build()?;
    let mut builder = connector.tunnel();
    for text in &args.forwards {
        builder = builder.forward(text.parse::<Forward>()?);
    }
    let tunnel = builder.open().await.context("failed to open the tunnel")?;
    for forward in tunnel.forwards() {
        eprintln!(
            "forwarding {} -> {}:{}",
            forward.local, forward.remote_host, forward.remote_port
        );
    }
    println!("ready");
    let mut states = tunnel.state_changes();
    loop {
        if states.changed().await.is_err() {
            break;
        }
        let state = states.borrow_and_update().clone();
        match state {
            TunnelState::Connected { endpoint } => eprintln!("connected to {endpoint}"),
            TunnelState::Reconnecting {
                attempt,
                last_error,
            } => {
                eprintln!("reconnecting (attempt {attempt}): {last_error}");
            }
            TunnelState::Closed { .. } => break,
            _ => {}
        }
    }
    tunnel.close().await.context("the tunnel stopped")?;
    Ok(ExitCode::SUCCESS)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}
