//! The options every command takes (a leaf: `main`, `ctx` and `output` read it).

use std::path::PathBuf;

use clap::Args;

/// Options every command takes.
#[derive(Debug, Clone, Args)]
pub(crate) struct Global {
    /// The workspace folder [env: RPB_HOME; default: ~/blender-files/runpod].
    #[arg(long, global = true, value_name = "DIR")]
    pub(crate) workspace: Option<PathBuf>,
    /// The .env file to use [default: .env in the workspace, never ./.env unless given here].
    #[arg(long, global = true, value_name = "FILE")]
    pub(crate) env_file: Option<PathBuf>,
    /// Print one JSON document on stdout instead of text.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// More log output on stderr (-v info, -vv debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub(crate) verbose: u8,
    /// Only errors on stderr; no progress display.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub(crate) quiet: bool,
}
