//! Adopting a pod rpb did not create: the trap it fixes (a pod whose image makes new host keys
//! at every start is refused by its pin after a restart), and the way out and back.

use blender_session::Error;
use blender_session::local_pod::LocalPod;
use blender_session::orchestrator::AdoptOptions;
use runpod_api::PodId;
use runpod_api::models::{CreatePodRequest, GpuRequest, Mounts};

use crate::support::{Rig, serial};

fn details(rig: &Rig) -> Vec<String> {
    rig.events
        .lock()
        .expect("events")
        .iter()
        .map(|event| event.detail.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_adopted_pod_keeps_its_host_key_across_restarts_and_undo_restores_it()
-> anyhow::Result<()> {
    let _serial = serial().await;
    // An image that makes new host keys at every start, as RunPod's do.
    let rig = Rig::start_on(LocalPod::builder().fresh_host_keys(true), |_| {}).await?;
    let (id, session) = made_by_hand_and_restarted(&rig).await?;
    let known_hosts = rig.store.state_dir().join("known_hosts");
    let sink = rig.sink();
    let pinned = pod_tunnel::known_host(&known_hosts, &id)?
        .expect("pinned")
        .fingerprint;
    let mut options = AdoptOptions::new();
    options.detect_pod_root = false;
    let report = rig.orchestrator.adopt(&id, &options, &sink).await?;
    assert!(!report.already_adopted);
    assert_eq!(report.previous_start_command, "");
    assert_eq!(report.host_key.as_deref(), Some(pinned.as_str()));
    let args = rig.client.get_pod(&PodId::new(&id)).await?.args;
    assert!(args.contains("/rpb/bin/boot-hook.sh"), "{args}");
    assert!(
        rig.pod
            .pod_root()
            .join("rpb/ssh-host-keys/ssh_host_ed25519_key")
            .is_file()
    );
    rig.orchestrator.stop(&id, Some(session), &sink).await?;

    // Restarted twice: the same key, verified strictly, no first contact.
    rig.events.lock().expect("events").clear();
    for _ in 0..2 {
        let session = rig.orchestrator.start(&id, &sink).await?;
        rig.orchestrator.stop(&id, Some(session), &sink).await?;
    }
    let said = details(&rig);
    assert!(
        !said.iter().any(|d| d.contains("first contact")),
        "{said:?}"
    );
    assert!(
        !said
            .iter()
            .any(|d| d.contains("does not run rpb's boot hook")),
        "{said:?}"
    );
    let after = pod_tunnel::known_host(&known_hosts, &id)?
        .expect("pinned")
        .fingerprint;
    assert_eq!(after, pinned);

    // Adopting again changes nothing; undo gives the pod its own command back.
    assert!(
        rig.orchestrator.adopt(&id, &options, &sink).await.is_err(),
        "the pod is stopped"
    );
    let restored = rig.orchestrator.undo_adopt(&id, &sink).await?;
    assert_eq!(restored, "");
    assert_eq!(rig.client.get_pod(&PodId::new(&id)).await?.args, "");
    assert!(
        rig.orchestrator.undo_adopt(&id, &sink).await.is_err(),
        "nothing left to undo"
    );
    rig.shutdown().await?;
    Ok(())
}

/// A pod made in the console (or by the original scripts): no hook, no key from rpb. It is
/// started (a first contact), restarted (its new key refused: the trap), and started again
/// after the user reset the pin, as `rpb trust --reset` does. Returns it running.
async fn made_by_hand_and_restarted(
    rig: &Rig,
) -> anyhow::Result<(String, blender_session::Session)> {
    rig.client.add_ssh_key(rig.pod.ssh_public_key()).await?;
    // A pod made in the console (or by the original scripts): no hook, no key from rpb.
    let pod = rig
        .client
        .create_pod(
            &CreatePodRequest::new("made-by-hand")
                .image("runpod/pytorch:1.0.2-cu1281-torch280-ubuntu2404")
                .gpu(GpuRequest::new("NVIDIA RTX A5000"))
                .mounts(Mounts::persistent(20, "/runpod"))
                .port("22/tcp"),
        )
        .await?;
    let id = pod.id.to_string();
    let known_hosts = rig.store.state_dir().join("known_hosts");
    let sink = rig.sink();

    // First start: a first contact, said aloud, and a note that the pod lacks the hook.
    let session = rig.orchestrator.start(&id, &sink).await?;
    let said = details(rig);
    assert!(
        said.iter()
            .any(|d| d.contains(&format!("first contact with pod {id}"))),
        "{said:?}"
    );
    assert!(
        said.iter()
            .any(|d| d.contains("does not run rpb's boot hook")),
        "{said:?}"
    );
    rig.orchestrator.stop(&id, Some(session), &sink).await?;

    // The trap: after a restart the pod has a new key, which the pin refuses.
    let error = rig
        .orchestrator
        .start(&id, &sink)
        .await
        .expect_err("the restarted pod has a new key");
    assert!(
        matches!(error.ssh(), Some(pod_tunnel::Error::HostKeyMismatch { .. })),
        "{error:?}"
    );
    assert!(
        matches!(
            error,
            Error::StartFailed {
                stopped_again: true,
                ..
            }
        ),
        "{error:?}"
    );

    // The user resets the pin (`rpb trust --reset`) and meets the new key; then adopts.
    pod_tunnel::forget_host(&known_hosts, &id)?;
    let session = rig.orchestrator.start(&id, &sink).await?;
    Ok((id, session))
}
