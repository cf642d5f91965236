//! `runpod-sim`: the embedded RunPod REST v2 simulator as a standalone server, for curl, other
//! SDKs, or the `rpb` CLI through `RUNPOD_API_URL`.
//!
//! Prints its base URL on the first line of stdout and serves until interrupted (SIGINT or
//! SIGTERM). Fault knobs: `PUT /_sim/faults` with a JSON object such as
//! `{"rateLimitNext": 2, "retryAfterSecs": 1}`; SSH endpoints: `PUT /_sim/ssh-endpoints` with
//! `{"endpoints": ["127.0.0.1:2222"]}`. Both need the same bearer token as the API.

#![expect(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a command-line program reports on its standard streams"
)]

use std::io::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use runpod_api::sim::{DEFAULT_API_KEY, Simulator, SshEndpoints, Timings};

const USAGE: &str = "usage: runpod-sim [--listen 127.0.0.1:PORT] [--ssh-endpoint HOST:PORT]... \
[--api-key KEY] [--timings fast|realistic] [--stale-ssh-port-secs N]

  --listen ADDR            loopback address to serve on (default 127.0.0.1:0, a free port)
  --ssh-endpoint HOST:PORT SSH endpoint running pods report; repeat it to rotate per start
                           (default: fake public addresses that change on every start)
  --api-key KEY            bearer token to accept (default: the RUNPOD_SIM_API_KEY environment
                           variable, else sim-api-key); prefer the variable: arguments show in ps
  --timings fast|realistic phase durations: 30 ms each, or 20 s provisioning + 40 s starting
  --stale-ssh-port-secs N  after a restart, report the old SSH port for N seconds";

struct Options {
    listen: SocketAddr,
    endpoints: Vec<SocketAddr>,
    api_key: String,
    timings: Timings,
    stale_ssh_port: Duration,
}

fn parse(args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut options = Options {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        endpoints: Vec::new(),
        api_key: std::env::var("RUNPOD_SIM_API_KEY")
            .ok()
            .filter(|key| !key.is_empty())
            .unwrap_or_else(|| DEFAULT_API_KEY.to_owned()),
        timings: Timings::default(),
        stale_ssh_port: Duration::ZERO,
    };
    let mut args = args.peekable();
    while let Some(flag) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .ok_or_else(|| format!("{name} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "--listen" => {
                let raw = value("--listen")?;
                options.listen = raw
                    .parse()
                    .map_err(|_| format!("--listen {raw:?} is not IP:PORT"))?;
            }
            "--ssh-endpoint" => {
                let raw = value("--ssh-endpoint")?;
                options.endpoints.push(
                    raw.parse()
                        .map_err(|_| format!("--ssh-endpoint {raw:?} is not IP:PORT"))?,
                );
            }
            "--api-key" => options.api_key = value("--api-key")?,
            "--timings" => {
                options.timings = match value("--timings")?.as_str() {
                    "fast" => Timings::default(),
                    "realistic" => Timings::realistic(),
                    other => return Err(format!("--timings {other:?}: use fast or realistic")),
                };
            }
            "--stale-ssh-port-secs" => {
                let raw = value("--stale-ssh-port-secs")?;
                let seconds: u64 = raw
                    .parse()
                    .map_err(|_| format!("--stale-ssh-port-secs {raw:?} is not a number"))?;
                options.stale_ssh_port = Duration::from_secs(seconds);
            }
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok(options)
}

#[tokio::main(flavor = "current_thread")]
#[expect(
    clippy::disallowed_methods,
    reason = "the binary owns its runtime; #[tokio::main] blocks on it"
)]
async fn main() -> ExitCode {
    let options = match parse(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let endpoints = match options.endpoints.len() {
        0 => SshEndpoints::Fake,
        1 => SshEndpoints::Fixed(options.endpoints[0]),
        _ => SshEndpoints::Rotating(options.endpoints),
    };
    let simulator = match Simulator::builder()
        .listen(options.listen)
        .api_key(options.api_key)
        .timings(options.timings)
        .ssh_endpoints(endpoints)
        .start()
        .await
    {
        Ok(simulator) => simulator,
        Err(error) => {
            eprintln!("runpod-sim: {error}");
            return ExitCode::from(1);
        }
    };
    simulator.set_faults(|faults| faults.stale_ssh_port_for = options.stale_ssh_port);
    println!("{}", simulator.base_url());
    // The URL line must reach a parent reading our stdout through a pipe right away.
    let _ = std::io::stdout().flush();

    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(error) => {
                eprintln!("runpod-sim: cannot watch SIGTERM: {error}");
                return ExitCode::from(1);
            }
        };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    simulator.shutdown().await;
    ExitCode::SUCCESS
}
