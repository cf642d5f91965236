//! Pushes a local file to a pod and pulls it back, both verified by SHA-256 and written
//! atomically, with progress. Uses the embedded local pod, so no account is needed.
//!
//! ```text
//! cargo run -p rpb-examples --bin push-pull
//! ```

#![expect(
    clippy::print_stdout,
    clippy::disallowed_methods,
    reason = "an example binary owns its runtime and prints its results"
)]

use std::sync::Arc;

use rpb_examples::start_local_session;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let local = start_local_session("rpb-demo").await?;
    let scratch = tempfile::tempdir()?;
    let source = scratch.path().join("texture.bin");
    let data: Vec<u8> = (0..8_000_000_u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&source, &data)?;
    let remote = format!(
        "{}/projects/demo/texture.bin",
        local.orchestrator.settings().pod_root
    );
    local
        .session
        .host()
        .run(
            &format!(
                "mkdir -p {}/projects/demo",
                local.orchestrator.settings().pod_root
            ),
            None,
            std::time::Duration::from_secs(30),
        )
        .await?;
    let progress = Arc::new(|done: u64, total: u64| {
        if done == total {
            println!("  {done} of {total} bytes");
        }
    });
    let pushed = local
        .orchestrator
        .push(&local.session, &source, &remote, Some(progress.clone()))
        .await?;
    println!("pushed {} bytes, sha256 {}", pushed.bytes, pushed.sha256);
    let back = scratch.path().join("texture.back.bin");
    let pulled = local
        .orchestrator
        .pull(&local.session, &remote, &back, Some(progress))
        .await?;
    println!("pulled {} bytes, sha256 {}", pulled.bytes, pulled.sha256);
    anyhow::ensure!(
        std::fs::read(&back)? == data,
        "the file came back different"
    );
    println!("identical");
    local.stop().await
}
