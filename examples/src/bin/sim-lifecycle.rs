//! The pod lifecycle against the embedded RunPod simulator, no account needed: create a pod,
//! wait until SSH is ready, stop it (cost drops to 0), start it again (a new SSH port), and
//! terminate it.
//!
//! ```text
//! cargo run -p rpb-examples --bin sim-lifecycle
//! ```

#![expect(
    clippy::print_stdout,
    clippy::disallowed_methods,
    reason = "an example binary owns its runtime and prints its results"
)]

use std::time::Duration;

use runpod_api::models::{Cloud, CreatePodRequest, GpuRequest, Mounts};
use runpod_api::sim::{Simulator, Timings};
use runpod_api::{Pod, WaitEvent, WaitFor, WaitOptions};

fn show(step: &str, pod: &Pod) {
    let ssh = pod
        .ssh_endpoint()
        .map_or_else(|| "-".to_owned(), |target| target.to_string());
    println!(
        "{step:<10} pod {} is {:<12} ${:.2}/h  ssh {ssh}",
        pod.id,
        pod.status,
        pod.cost_per_hour()
    );
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let sim = Simulator::builder()
        .timings(Timings::new(
            Duration::from_millis(800),
            Duration::from_millis(1200),
        ))
        .start()
        .await?;
    println!(
        "simulator at {} (any REST v2 client can use it)",
        sim.base_url()
    );
    let client = sim.client()?;

    let request = CreatePodRequest::new("rpb-demo")
        .image("runpod/pytorch:1.0.2-cu1281-torch280-ubuntu2404")
        .gpu(GpuRequest::new("NVIDIA GeForce RTX 4090"))
        .cloud(Cloud::Community)
        .mounts(Mounts::persistent(50, "/runpod"))
        .port("22/tcp")
        .start_ssh(true);
    let pod = client.create_pod(&request).await?;
    show("created", &pod);

    let options = WaitOptions::default()
        .intervals(Duration::from_millis(200), Duration::from_millis(500))
        .timeout(Duration::from_secs(30));
    let progress = |event: &WaitEvent| {
        if let WaitEvent::StatusChanged { to, elapsed, .. } = event {
            println!("           ... {to} after {:.1}s", elapsed.as_secs_f64());
        }
    };
    let pod = client
        .wait_for_pod(&pod.id, WaitFor::SshReady, &options, progress)
        .await?;
    show("ready", &pod);

    client.stop_pod(&pod.id).await?;
    let stopped = client
        .wait_for_pod(&pod.id, WaitFor::Stopped, &options, |_| {})
        .await?;
    show("stopped", &stopped);

    client.start_pod(&pod.id).await?;
    let again = client
        .wait_for_pod(&pod.id, WaitFor::SshReady, &options, progress)
        .await?;
    show("restarted", &again);
    println!("           (the SSH port changed, as it does on RunPod after every start)");

    client.terminate_pod(&pod.id).await?;
    println!(
        "terminated pod {}; pods left: {}",
        pod.id,
        client
            .list_pods(&runpod_api::params::ListPodsParams::default())
            .await?
            .len()
    );
    sim.shutdown().await;
    Ok(())
}
