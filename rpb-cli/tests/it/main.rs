//! Integration tests of the real `rpb` binary: help, JSON shapes, errors and exit codes against
//! the RunPod simulator; the whole flow, the background tunnel, the cost guard and the demo on
//! the embedded local pod (one at a time: each boots real Blender).

#![allow(
    clippy::disallowed_methods,
    clippy::print_stderr,
    clippy::too_many_lines,
    reason = "#[tokio::test] builds its own runtime and blocks on it; each run goes to the test \
              log; a scenario reads best as one story"
)]

mod cli;
mod config;
mod farm;
mod local_pod;
mod mcp_server;
mod portable;
mod support;
mod volumes;
