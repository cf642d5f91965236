//! `rpb`: remote Blender on RunPod GPU pods. Argument parsing and output only; the logic lives in
//! the library crates.

use std::process::ExitCode;

use clap::Parser;

/// Remote Blender on RunPod GPU pods, one command per job.
#[derive(Debug, Parser)]
#[command(name = "rpb", version, about)]
struct Cli {}

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(error) => {
            #[expect(clippy::print_stderr, reason = "the CLI reports its errors on stderr")]
            {
                eprintln!("error: {error:#}");
            }
            ExitCode::from(2)
        }
    }
}

#[expect(
    clippy::unnecessary_wraps,
    reason = "the skeleton has no fallible command yet; the CLI issue adds them"
)]
fn run() -> anyhow::Result<ExitCode> {
    let Cli {} = Cli::parse();
    Ok(ExitCode::SUCCESS)
}
