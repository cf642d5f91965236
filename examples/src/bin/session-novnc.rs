//! Starts a Blender session on the embedded local pod and prints the noVNC URL and the MCP
//! address, then waits for Ctrl-C (or exits at once with `--exit`) and stops the pod.
//!
//! ```text
//! cargo run -p rpb-examples --bin session-novnc
//! ```

#![expect(
    clippy::print_stdout,
    clippy::disallowed_methods,
    reason = "an example binary owns its runtime and prints its results"
)]

use rpb_examples::start_local_session;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let password = std::env::var("VNC_PASSWORD").unwrap_or_else(|_| "rpb-demo".to_owned());
    let local = start_local_session(&password).await?;
    println!(
        "noVNC: {}  (password from VNC_PASSWORD)",
        local.session.novnc_url()
    );
    println!("MCP:   {}", local.session.mcp_address());
    if !std::env::args().any(|arg| arg == "--exit") {
        println!("press Ctrl-C to stop the pod");
        tokio::signal::ctrl_c().await?;
    }
    local.stop().await
}
