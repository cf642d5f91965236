//! `rpb`: remote Blender on RunPod GPU pods. Argument parsing, output, exit codes and process
//! management only; the logic lives in the library crates.

#![expect(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a command-line program reports on its standard streams"
)]
#![expect(
    clippy::doc_markdown,
    reason = "doc comments are the help text, where backticks would show"
)]

mod commands;
mod ctx;
mod global;
mod output;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::global::Global;
use crate::output::{EXIT_ERROR, EXIT_NO_GPU, EXIT_NOT_READY};

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  error
  2  usage error (bad arguments)
  3  not ready in time (the pod, its sshd, or Blender and noVNC)
  4  no free GPU on the pod's host machine
  5  rpb render: some frames failed every attempt (the others are local)
  6  rpb render: the job did not finish (cancelled, stopped with the pod, or detached)

Configuration: flags, then environment variables, then the workspace .env or --env-file
(RUNPOD_API_KEY, RUNPOD_POD_ID, VNC_PASSWORD, RUNPOD_SSH_KEY, RUNPOD_API_URL, ...).
A .env in the current folder is never read unless given with --env-file.";

/// Remote Blender on RunPod GPU pods, one command per job.
#[derive(Debug, Parser)]
#[command(name = "rpb", version, about, after_help = EXIT_CODES)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Set up the workspace: folders, .env (0600), .gitignore, git, SSH key.
    Init(commands::setup::InitArgs),
    /// Create a pod with a persistent /runpod volume and set it up.
    Create(commands::setup::CreateArgs),
    /// Start the pod and Blender, and keep a tunnel open in the background.
    Start(commands::session::StartArgs),
    /// Close the tunnel and stop the pod (terminate it when its work is on a network volume).
    Stop(commands::session::StopArgs),
    /// The pod, its cost, the tunnel and Blender.
    Status(ctx::PodArgs),
    /// The pod's SSH endpoint and a ready `ssh` command line.
    SshInfo(ctx::PodArgs),
    /// Give a pod rpb did not create rpb's boot hook, so its host key survives restarts.
    Adopt(commands::adopt::AdoptArgs),
    /// The pod's pinned SSH host key, checked against the API; `--reset` forgets it.
    Trust(commands::trust::TrustArgs),
    /// GPU types with prices and availability per data center, cheapest available first.
    Gpus(commands::volume::GpusArgs),
    /// Network volumes: create, list (with their cost), delete.
    #[command(subcommand)]
    Volume(commands::volume::VolumeCommand),
    /// Local projects (and their folders on the pod).
    #[command(subcommand)]
    Project(commands::files::ProjectCommand),
    /// Upload a file to the pod.
    Push(commands::files::PushArgs),
    /// Download a file from the pod.
    Pull(commands::files::PullArgs),
    /// Save the open scene into a project, as a new version.
    Save(commands::files::SaveArgs),
    /// Open a saved version in Blender (uploading it when needed).
    Open(commands::files::OpenArgs),
    /// Run a program on the pod (each argument as given), or a shell line with --shell.
    ///
    /// `rpb exec -- PROGRAM ARG...` runs PROGRAM with exactly these arguments: spaces, quotes,
    /// `$`, `;` and `*` in them reach it literally. `rpb exec --shell -- 'LINE'` runs LINE in the
    /// pod's shell (several arguments are joined with spaces, as ssh does). A single argument
    /// with spaces or shell characters needs --shell, so a command line written for older rpb
    /// versions is never run differently by mistake.
    Exec(commands::blender::ExecArgs),
    /// Run Python inside Blender.
    Py(commands::blender::PyArgs),
    /// The background tunnel on its own.
    #[command(subcommand)]
    Tunnel(commands::tunnel::TunnelCommand),
    /// Write .mcp.json for the blender-mcp server (pinned mcp-for-blender), pointing at the tunnel.
    McpConfig(commands::blender::McpConfigArgs),
    /// Check the setup; every problem comes with its fix.
    Doctor,
    /// Print shell completions.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// A render farm: pods on one network volume run by Slurm (`rpb render --farm` uses it).
    #[command(subcommand)]
    Farm(commands::farm::FarmCommand),
    /// Render frames on the pod: a detached job whose frames land, verified, in the project.
    Render(Box<commands::render::RenderArgs>),
    /// Run the whole flow on the embedded local pod (no account needed).
    Demo(commands::demo::DemoArgs),
    /// The background tunnel process (started by `start` and `tunnel up`).
    #[command(hide = true)]
    TunnelDaemon(commands::tunnel::DaemonArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Exec(args) = &cli.command
        && let Err(message) = args.check()
    {
        <Cli as clap::CommandFactory>::command()
            .error(clap::error::ErrorKind::ValueValidation, message)
            .exit();
    }
    output::install_tracing(&cli.global, matches!(cli.command, Command::TunnelDaemon(_)));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: failed to start the async runtime: {error}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    let json = cli.global.json;
    #[expect(
        clippy::disallowed_methods,
        reason = "the binary owns its runtime; libraries never do"
    )]
    let result = runtime.block_on(run(cli));
    // Background work (a closing tunnel) gets a moment, never forever.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    match result {
        Ok(code) => code,
        Err(error) => {
            let code = exit_code_of(&error);
            let hint = hint_of(&error);
            if json {
                let mut document = serde_json::json!({
                    "error": format!("{error:#}"),
                    "exit_code": code,
                });
                if let Some(hint) = &hint {
                    document["hint"] = serde_json::json!(hint);
                }
                println!("{document}");
            }
            eprintln!("error: {error:#}");
            if let Some(hint) = hint {
                eprintln!("hint: {hint}");
            }
            ExitCode::from(code)
        }
    }
}

/// What to run next, for library errors whose fix is an rpb command.
fn hint_of(error: &anyhow::Error) -> Option<String> {
    error.chain().find_map(
        |cause| match cause.downcast_ref::<blender_session::Error>()? {
            blender_session::Error::NoTunnel { pod_id } => Some(format!(
                "open the tunnel first: `rpb tunnel up --pod-id {pod_id}` (or `rpb start`)"
            )),
            blender_session::Error::Remote { pod_id, .. }
                if matches!(
                    cause.downcast_ref::<blender_session::Error>()?.ssh(),
                    Some(pod_tunnel::Error::HostKeyMismatch { .. })
                ) =>
            {
                Some(format!(
                    "the pod offered another host key than the one pinned for it. \
                     `rpb trust --pod-id {pod_id}` compares the pin with the key the API says the \
                     pod was created with. A pod rpb did not create changes its key at every \
                     start: `rpb adopt --pod-id {pod_id}` once stops that. Only if you know why \
                     the key changed: `rpb trust --pod-id {pod_id} --reset`"
                ))
            }
            _ => None,
        },
    )
}

/// The exit code for an error: distinct codes for "not ready in time" and "no GPU on host".
fn exit_code_of(error: &anyhow::Error) -> u8 {
    for cause in error.chain() {
        if let Some(error) = cause.downcast_ref::<blender_session::Error>() {
            match error {
                blender_session::Error::NoGpuOnHost { .. }
                | blender_session::Error::NoReplacement { .. } => return EXIT_NO_GPU,
                blender_session::Error::NotReady { .. }
                | blender_session::Error::ServiceNotReady { .. }
                | blender_session::Error::SshUnreachable { .. } => return EXIT_NOT_READY,
                _ => {}
            }
        }
    }
    EXIT_ERROR
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let Cli { global, command } = cli;
    let ctx = ctx::Ctx::new(global)?;
    let outcome = match command {
        Command::Init(args) => commands::setup::init(&ctx, args).await?,
        Command::Create(args) => commands::setup::create(&ctx, args).await?,
        Command::Start(args) => commands::session::start(&ctx, args).await?,
        Command::Stop(args) => commands::session::stop(&ctx, args).await?,
        Command::Status(args) => commands::session::status(&ctx, args).await?,
        Command::SshInfo(args) => commands::session::ssh_info(&ctx, args).await?,
        Command::Gpus(args) => commands::volume::gpus(&ctx, args).await?,
        Command::Volume(command) => commands::volume::volume(&ctx, command).await?,
        Command::Project(command) => commands::files::project(&ctx, command).await?,
        Command::Push(args) => commands::files::push(&ctx, args).await?,
        Command::Pull(args) => commands::files::pull(&ctx, args).await?,
        Command::Save(args) => commands::files::save(&ctx, args).await?,
        Command::Open(args) => commands::files::open(&ctx, args).await?,
        Command::Adopt(args) => commands::adopt::adopt(&ctx, args).await?,
        Command::Trust(args) => commands::trust::trust(&ctx, args).await?,
        Command::Exec(args) => commands::blender::exec(&ctx, args).await?,
        Command::Py(args) => commands::blender::py(&ctx, args).await?,
        Command::Tunnel(command) => commands::tunnel::tunnel(&ctx, command).await?,
        Command::McpConfig(args) => commands::blender::mcp_config(&ctx, &args)?,
        Command::Doctor => commands::doctor::doctor(&ctx).await?,
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "rpb", &mut std::io::stdout());
            return Ok(ExitCode::SUCCESS);
        }
        Command::Farm(command) => commands::farm::farm(&ctx, command).await?,
        Command::Render(args) => Box::pin(commands::render::run(&ctx, *args)).await?,
        Command::Demo(args) => commands::demo::run(&ctx, args).await?,
        Command::TunnelDaemon(args) => {
            commands::tunnel::daemon(&ctx, args).await?;
            return Ok(ExitCode::SUCCESS);
        }
    };
    Ok(ctx.finish(&outcome))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cli_definition_is_consistent() {
        <Cli as clap::CommandFactory>::command().debug_assert();
    }
}
