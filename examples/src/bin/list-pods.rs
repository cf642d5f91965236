//! Lists the pods of a RunPod account with their status, cost and SSH endpoint.
//!
//! ```text
//! RUNPOD_API_KEY=... cargo run -p rpb-examples --bin list-pods
//! ```
//!
//! `RUNPOD_API_URL` points it elsewhere, such as the embedded simulator.

#![expect(
    clippy::print_stdout,
    clippy::disallowed_methods,
    reason = "an example binary owns its runtime and prints its results"
)]

use runpod_api::Client;
use runpod_api::params::ListPodsParams;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let client = Client::from_env()?;
    let pods = client.list_pods(&ListPodsParams::default()).await?;
    if pods.is_empty() {
        println!("no pods");
    }
    for pod in pods {
        let ssh = pod
            .ssh_endpoint()
            .map_or_else(|| "-".to_owned(), |target| target.to_string());
        println!(
            "{:<16} {:<24} {:<12} ${:>6.3}/h  ssh {}",
            pod.id,
            pod.name,
            pod.status,
            pod.cost_per_hour(),
            ssh
        );
    }
    Ok(())
}
