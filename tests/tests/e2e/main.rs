//! End-to-end tests: the whole session lifecycle on the embedded local pod (the RunPod
//! simulator, a private sshd, real Blender under Xvfb, x11vnc, noVNC) through the orchestrator,
//! and noVNC in a real headless Chromium.
//!
//! Each scenario boots real Blender, so they run one at a time (see [`serial`]).

#![allow(
    clippy::disallowed_methods,
    clippy::print_stderr,
    reason = "#[tokio::test] builds its own runtime and blocks on it; progress goes to the test log"
)]

mod adopt;
mod cuts;
mod daemon;
mod faults;
mod hostile;
mod lifecycle;
mod remote_names;
mod render;
mod summary;
mod support;
