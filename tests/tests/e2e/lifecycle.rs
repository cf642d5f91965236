//! The whole lifecycle on the local pod, and its failure modes.

use std::time::Duration;

use blender_session::Error;
use blender_session::orchestrator::WaitForGpu;
use blender_session::seams::PodStatus;
use runpod_api::PodId;
use test_support::browser::{Browser, Image, NOVNC_CONNECTED, save_artifact};

use secrecy::ExposeSecret as _;

use crate::faults::{all_pids, scan_tree};
use crate::summary::{Summary, no_secret};
use crate::support::{Rig, VNC_PASSWORD, alive, serial};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_start_work_save_open_stop_and_see_blender_in_a_browser() -> anyhow::Result<()> {
    let _serial = serial().await;
    let rig = Rig::start().await?;
    let sink = rig.sink();

    // Create: the key is registered, the pod id lands in .env, setup runs over SSH.
    let pod_id = rig.create().await?;
    assert_eq!(rig.pod.simulator().ssh_keys(), [rig.pod.ssh_public_key()]);
    let config = rig.store.load_config()?;
    assert_eq!(config.pod_id.as_deref(), Some(pod_id.as_str()));

    // Start: Blender answers through the tunnel.
    let session = rig.orchestrator.start(&pod_id, &sink).await?;
    let mut blender = session.mcp().await?;
    let scene = blender.scene_info().await?;
    let names: Vec<&str> = scene.object_names().collect();
    for expected in ["Cube", "Light", "Camera"] {
        assert!(
            names.contains(&expected),
            "default scene has {expected}: {names:?}"
        );
    }
    let printed = blender
        .execute_code("import bpy\nbpy.ops.mesh.primitive_monkey_add()\nprint('added', bpy.context.object.name)")
        .await?;
    assert!(printed.contains("added Suzanne"), "{printed:?}");

    // A person's view: noVNC in a real browser, connected, showing Blender's UI.
    let browser = Browser::launch().await?;
    let page = browser
        .open(&format!("{}&password={VNC_PASSWORD}", session.novnc_url()))
        .await?;
    page.wait_for(NOVNC_CONNECTED, Duration::from_secs(60))
        .await?;
    // The first full frame arrives some time after the connection: screenshot until the
    // canvas shows more than one colour (bounded), instead of sleeping a guessed time.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let (png, image) = loop {
        let png = page.screenshot_png().await?;
        let image = Image::from_png(&png)?;
        if !image.is_essentially_single_colour() || tokio::time::Instant::now() >= deadline {
            break (png, image);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let artifact = save_artifact("e2e-novnc-blender.png", &png)?;
    assert!(
        !image.is_essentially_single_colour(),
        "the screenshot {} is blank: {:?}",
        artifact.display(),
        image.summary()
    );
    // While Blender, the VNC stack and Chromium run: no secret in any process's arguments.
    let mut summary = Summary::default();
    let api_key = rig.pod.api_key().expose_secret().to_owned();
    let secrets = [api_key.as_str(), VNC_PASSWORD];
    let arguments: Vec<Result<(), String>> = all_pids()
        .iter()
        .filter_map(|pid| {
            let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let text = String::from_utf8_lossy(&raw).replace('\0', " ");
            Some(no_secret(&text, &secrets).map_err(|why| format!("pid {pid}: {why}")))
        })
        .collect();
    summary.record(
        "secrets in /proc/*/cmdline with Blender, x11vnc, noVNC and Chromium running",
        &format!(
            "{} processes (Chromium pid {})",
            arguments.len(),
            browser.pid()
        ),
        arguments,
    );
    browser.close().await?;

    // Save: the scene comes home as a verified version.
    let project = project_store::ProjectName::new("chair")?;
    rig.store
        .create_project(&project, project_store::OnExisting::Reuse)?;
    let saved = rig
        .orchestrator
        .save(&session, &rig.store, &project, "scene")
        .await?;
    let local = rig.store.project(&project)?.path_of(&saved);
    let bytes = std::fs::read(&local)?;
    assert!(bytes.starts_with(b"BLENDER"), "a .blend file");
    let manifest = rig.store.project(&project)?;
    assert_eq!(
        manifest.latest().map(|entry| entry.sha256.clone()),
        Some(saved.sha256.clone())
    );
    assert_eq!(saved.source.pod_id.as_deref(), Some(pod_id.as_str()));

    // Open: the saved version loads back (after changing the scene).
    blender
        .execute_code("import bpy\nbpy.ops.mesh.primitive_cube_add(location=(5, 0, 0))")
        .await?;
    let remote = rig
        .orchestrator
        .open(&session, &rig.store, &project, "latest")
        .await?;
    assert!(remote.ends_with(&saved.name), "{remote}");
    let mut blender = session.mcp().await?;
    let reopened: Vec<String> = blender
        .scene_info()
        .await?
        .object_names()
        .map(str::to_owned)
        .collect();
    assert!(
        reopened.iter().any(|name| name == "Suzanne"),
        "{reopened:?}"
    );
    assert!(
        !reopened.iter().any(|name| name == "Cube.001"),
        "{reopened:?}"
    );

    // Status: one call.
    let status = rig.orchestrator.status(&pod_id, Some(&session)).await?;
    assert_eq!(status.pod.status, PodStatus::Running);
    assert!(status.mcp_answers && status.novnc_answers);
    assert!(status.pod.cost_per_hour > 0.0);

    // Stop: tunnel closed, pod EXITED at $0/h, no session process left.
    let pids = rig.session_pids();
    assert!(!pids.is_empty(), "the session wrote PID files");
    let ports = session.ports;
    let stopped = rig.orchestrator.stop(&pod_id, Some(session), &sink).await?;
    assert_eq!(stopped.status, PodStatus::Exited);
    assert!(stopped.cost_per_hour.abs() < f64::EPSILON);
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", ports.mcp))
            .await
            .is_err(),
        "the tunnel's listeners are closed"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while pids.iter().any(|pid| alive(*pid)) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let left: Vec<u32> = pids.iter().copied().filter(|pid| alive(*pid)).collect();
    assert!(left.is_empty(), "processes left after stop: {left:?}");

    // Everything the lifecycle reported and wrote.
    let events: Vec<String> = rig
        .events
        .lock()
        .expect("events")
        .iter()
        .map(|event| format!("{} {} {:?}", event.step, event.detail, event))
        .collect();
    summary.record(
        "secrets in the lifecycle's progress events",
        &format!("{} events, Display and Debug", events.len()),
        events.iter().map(|text| no_secret(text, &secrets)),
    );
    let env_file = rig.store.env_file().to_path_buf();
    let files: Vec<Result<(), String>> = scan_tree(rig.pod.log_dir(), &secrets, &[])
        .into_iter()
        .chain(scan_tree(rig.pod.pod_root(), &secrets, &[]))
        .chain(scan_tree(rig.store.root(), &secrets, &[env_file]))
        .collect();
    summary.record(
        "secrets in logs, the pod root and the workspace after the lifecycle",
        &format!("{} files (.env excluded)", files.len()),
        files,
    );
    rig.shutdown().await?;
    summary.finish("secrets over the whole lifecycle");
    Ok(())
}

/// No trust on first use: the host key `create` made is pinned before the first connection and
/// served by the pod from its first boot, so that first contact is verified. A pod that serves
/// another key at its first contact (a man in the middle) is refused, and the new pod is
/// stopped again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_contact_with_a_created_pod_is_verified_and_a_mitm_is_refused()
-> anyhow::Result<()> {
    let _serial = serial().await;
    let rig = Rig::start().await?;
    let pod_id = rig.create().await?;
    let pod = rig.client.get_pod(&PodId::new(&pod_id)).await?;
    let public = pod
        .env
        .get(blender_session::assets::HOST_PUBLIC_KEY_ENV)
        .expect("the pod carries its host public key");
    let (_, blob) = pod_tunnel::parse_public_key(public).expect("a valid public key");
    let fingerprint = pod_tunnel::fingerprint(&blob);
    let known_hosts = rig.store.state_dir().join("known_hosts");
    let pin = pod_tunnel::known_host(&known_hosts, &pod_id)?.expect("pinned");
    assert_eq!(pin.fingerprint, fingerprint);
    assert_ne!(
        fingerprint,
        rig.pod.host_key_fingerprint(),
        "the pod serves the key rpb made for it, not the machine's own"
    );
    {
        let events = rig.events.lock().expect("events");
        assert!(
            events
                .iter()
                .any(|e| e.detail.contains("pinned the ssh host key made for pod"))
        );
        assert!(!events.iter().any(|e| e.detail.contains("first contact")));
    }
    // The key stays across a restart (the start command installs it at every boot).
    let sink = rig.sink();
    let session = rig.orchestrator.start(&pod_id, &sink).await?;
    rig.orchestrator.stop(&pod_id, Some(session), &sink).await?;
    let session = rig.orchestrator.start(&pod_id, &sink).await?;

    // The private key travels only in the pod's environment: never in a file of the
    // workspace or the pod (but the key file sshd reads), a log, or a process's arguments.
    let private = pod
        .env
        .get(blender_session::assets::HOST_KEY_ENV)
        .expect("the pod carries its host key")
        .clone();
    let secrets = [private.as_str()];
    let key_file = rig
        .pod
        .state_dir()
        .join("sshd/host-keys/ssh_host_ed25519_key");
    let mut outcomes = scan_tree(rig.store.root(), &secrets, &[]);
    outcomes.extend(scan_tree(rig.pod.state_dir(), &secrets, &[key_file]));
    for pid in all_pids() {
        if let Ok(arguments) = std::fs::read(format!("/proc/{pid}/cmdline")) {
            outcomes.push(no_secret(&String::from_utf8_lossy(&arguments), &secrets));
        }
    }
    let leaks: Vec<String> = outcomes.into_iter().filter_map(Result::err).collect();
    assert!(leaks.is_empty(), "the host key leaked: {leaks:?}");
    rig.orchestrator.stop(&pod_id, Some(session), &sink).await?;
    rig.shutdown().await?;

    let rig = Rig::start_on(
        blender_session::local_pod::LocalPod::builder().pod_host_keys(false),
        |_| {},
    )
    .await?;
    let error = rig
        .create()
        .await
        .expect_err("the man in the middle is refused");
    let error = error
        .downcast_ref::<Error>()
        .expect("an orchestrator error");
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
    let pods = rig
        .client
        .list_pods(&runpod_api::params::ListPodsParams::default())
        .await?;
    assert_eq!(pods.len(), 1);
    assert_eq!(
        pods[0].status,
        PodStatus::Exited,
        "the new pod was stopped again"
    );
    let text = std::fs::read_to_string(rig.store.state_dir().join("known_hosts"))?;
    assert_eq!(
        text.lines().count(),
        1,
        "only the pin, never the other key: {text}"
    );
    rig.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_survive_stale_ports_and_a_host_without_gpus() -> anyhow::Result<()> {
    let _serial = serial().await;
    let rig = Rig::start_with(|settings| {
        settings.wait_for_gpu = Some(WaitForGpu {
            interval: Duration::from_millis(300),
            deadline: Duration::from_secs(20),
        });
    })
    .await?;
    let sink = rig.sink();
    let pod_id = rig.create().await?;
    let first = rig.orchestrator.start(&pod_id, &sink).await?;
    let first_port = first.endpoint.port;
    rig.orchestrator.stop(&pod_id, Some(first), &sink).await?;

    // The API keeps reporting the old port for a while after the restart; the host has no free
    // GPU for the first two tries.
    rig.pod.simulator().set_faults(|faults| {
        faults.stale_ssh_port_for = Duration::from_secs(3);
        faults.no_free_gpu_next_start = 2;
    });
    let second = rig.orchestrator.start(&pod_id, &sink).await?;
    assert_ne!(
        second.endpoint.port, first_port,
        "a new endpoint after the restart"
    );
    let mut blender = second.mcp().await?;
    blender.ping().await?;
    let waits = rig
        .events
        .lock()
        .expect("events")
        .iter()
        .filter(|event| event.step == blender_session::Step::WaitForGpu)
        .count();
    assert_eq!(waits, 2, "retried while the host had no free GPU");
    rig.orchestrator.stop(&pod_id, Some(second), &sink).await?;
    rig.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_mid_start_stop_the_pod_again() -> anyhow::Result<()> {
    let _serial = serial().await;
    let rig = Rig::start().await?;
    let sink = rig.sink();
    let pod_id = rig.create().await?;
    let ready = rig.orchestrator.start(&pod_id, &sink).await?;
    rig.orchestrator.stop(&pod_id, Some(ready), &sink).await?;

    // Without a free GPU and without waiting: the typed error, and the pod stays stopped.
    rig.pod
        .simulator()
        .set_faults(|faults| faults.no_free_gpu_next_start = 1);
    let error = rig
        .orchestrator
        .start(&pod_id, &sink)
        .await
        .expect_err("no gpu on the host");
    assert!(matches!(error, Error::NoGpuOnHost { .. }), "{error:?}");

    // A session script that fails (Blender cannot run): the pod this call started is stopped.
    let broken = rig.orchestrator_with(|settings| {
        settings
            .pod_env
            .insert("BLENDER_BIN".into(), "/nonexistent/blender".into());
    })?;
    let error = broken
        .start(&pod_id, &sink)
        .await
        .expect_err("the session script fails");
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
    let pod = rig.client.get_pod(&PodId::new(&pod_id)).await?;
    assert_eq!(
        pod.status,
        runpod_api::PodStatus::Exited,
        "nothing left billing"
    );
    rig.shutdown().await
}
