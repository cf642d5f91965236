//! Portable pods on the embedded local pod: a workspace on a network volume outlives a host
//! without a free GPU (a new pod on another host takes over the volume), and `stop` terminates
//! such a pod once the volume provably holds the pod root.

use std::time::Duration;

use blender_session::local_pod::LocalPod;

use crate::support::{Workspace, local_pod_workspace, path_string, serial};

const SLOW: Duration = Duration::from_secs(400);

fn sha256_of(path: &std::path::Path) -> String {
    let output = std::process::Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum (coreutils) runs");
    assert!(
        output.status.success(),
        "sha256sum {}: {output:?}",
        path.display()
    );
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .next()
        .expect("a digest")
        .to_owned()
}

fn env_pod_id(ws: &Workspace) -> String {
    let env = std::fs::read_to_string(ws.root().join(".env")).expect(".env");
    env.lines()
        .find_map(|line| line.strip_prefix("RUNPOD_POD_ID="))
        .expect("RUNPOD_POD_ID in .env")
        .to_owned()
}

/// The index of the first stderr line containing `needle`.
fn line_of(stderr: &str, needle: &str) -> usize {
    stderr
        .lines()
        .position(|line| line.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} in:\n{stderr}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_on_a_network_volume_moves_off_a_full_host_and_stop_terminates() {
    let _serial = serial().await;
    let pod = LocalPod::builder()
        .start()
        .await
        .expect("the local pod starts (openssh-server, blender, xvfb, x11vnc, novnc, websockify)");
    let sim = pod.simulator();
    let ws = local_pod_workspace(&pod, "portable-vnc");
    let known_hosts = ws.state_dir().join("known_hosts");

    let volume = ws
        .rpb(&[
            "volume",
            "create",
            "--size",
            "10",
            "--datacenter",
            "SIM-LOCAL-1",
            "--use",
            "--json",
        ])
        .await
        .success()
        .json()["volume"]["id"]
        .as_str()
        .expect("volume id")
        .to_owned();
    let created = ws.rpb_within(SLOW, &["create", "--json"]).await.success();
    assert_eq!(created.json()["network_volume"], volume.as_str());
    let first = env_pod_id(&ws);
    let mounts = sim.pod(&first).expect("pod").mounts;
    assert_eq!(mounts.network.len(), 1, "{mounts:?}");
    assert_eq!(mounts.network[0].volume_id, volume);
    assert!(mounts.persistent.is_none(), "no volume disk: {mounts:?}");

    // Work saved on the first pod lands on the volume, not on the machine's disk.
    ws.rpb_within(SLOW, &["start", "--json"]).await.success();
    let saved = ws
        .rpb_within(SLOW, &["save", "--project", "chair", "--json"])
        .await
        .success()
        .json();
    let sha = saved["sha256"].as_str().expect("sha256").to_owned();
    // Blender saved it on the pod as projects/chair/scene.blend (the local copy is a version).
    let name = "scene.blend";
    let on_volume = pod
        .volume_dir(&volume)
        .expect("volume dir")
        .join("projects/chair")
        .join(name);
    assert_eq!(sha256_of(&on_volume), sha);
    assert!(
        !pod.state_dir()
            .join("runpod/projects/chair")
            .join(name)
            .exists(),
        "the machine's disk holds no copy"
    );
    let pin = pod_tunnel::known_host(&known_hosts, &first)
        .expect("known_hosts")
        .expect("pinned at create");

    // Stopped (kept), then other customers rent every GPU of its host: the next start moves.
    let kept = ws
        .rpb_within(SLOW, &["stop", "--keep", "--json"])
        .await
        .success()
        .json();
    assert_eq!(kept["status"], "EXITED");
    let full_host = sim.fill_host(&first).expect("the pod has a host");
    let moved = ws.rpb_within(SLOW, &["start", "--json"]).await.success();
    let json = moved.json();
    let second = json["pod_id"].as_str().expect("pod_id").to_owned();
    assert_ne!(second, first);
    assert_eq!(env_pod_id(&ws), second);
    assert_eq!(json["moved"]["from_pod"], first.as_str(), "{json}");
    assert_eq!(json["moved"]["reason"], "its host has no free GPU");
    assert_eq!(json["moved"]["volume_id"], volume.as_str());
    assert_eq!(json["moved"]["data_center"], "SIM-LOCAL-1");
    assert_eq!(json["moved"]["old_pod_terminated"], true, "{json}");
    assert!(sim.pod(&first).is_none(), "the old pod is terminated");
    assert_ne!(sim.host_of(&second), Some(full_host));
    // The host key is the volume's, verified without a first contact; the old pod went only
    // after the new one answered.
    assert!(!moved.stderr.contains("first contact"), "{}", moved.stderr);
    let second_pin = pod_tunnel::known_host(&known_hosts, &second)
        .expect("known_hosts")
        .expect("pinned before the first connection");
    assert_eq!(second_pin.fingerprint, pin.fingerprint);
    assert!(
        line_of(
            &moved.stderr,
            &format!("pod {second} answers and runs Blender")
        ) < line_of(&moved.stderr, &format!("terminated the old pod {first}")),
        "{}",
        moved.stderr
    );

    // Blender on the new pod opens the scene saved before the move, from the volume: a file
    // that is no local version (the local copy has a versioned name) opens where it is.
    let remote = format!("{}/projects/chair/{name}", path_string(pod.pod_root()));
    let opened = ws
        .rpb_within(SLOW, &["open", "--project", "chair", name, "--json"])
        .await
        .success()
        .json();
    assert_eq!(opened["remote"], remote.as_str());
    let code = "import bpy, hashlib\n\
                print(bpy.data.filepath)\n\
                print(hashlib.sha256(open(bpy.data.filepath, 'rb').read()).hexdigest())";
    let open_now = ws.rpb_within(SLOW, &["py", code]).await.success();
    assert!(open_now.stdout.contains(&remote), "{}", open_now.stdout);
    assert!(open_now.stdout.contains(&sha), "{}", open_now.stdout);
    let missing = ws
        .rpb_within(SLOW, &["open", "--project", "chair", "nothing-here.blend"])
        .await;
    assert_eq!(missing.code, 1, "{missing:?}");
    assert!(
        missing.stderr.contains("nothing-here.blend"),
        "{}",
        missing.stderr
    );

    // A terminate the API refuses is reported, and never makes a second replacement.
    ws.rpb_within(SLOW, &["stop", "--keep"]).await.success();
    sim.fill_host(&second).expect("host");
    sim.set_faults(|faults| faults.terminate_refused_next = 1);
    // Both RTX 4090 hosts of the data center are full now: another allowed type takes over.
    let moved = ws
        .rpb_within(
            SLOW,
            &[
                "start",
                "--gpu-type",
                "NVIDIA GeForce RTX 4090",
                "--gpu-type",
                "NVIDIA RTX A5000",
                "--json",
            ],
        )
        .await
        .success();
    let json = moved.json();
    let third = json["pod_id"].as_str().expect("pod_id").to_owned();
    assert_eq!(json["moved"]["gpu_type"], "NVIDIA RTX A5000", "{json}");
    // The catalog shows no free 4090 there, so the A5000 is tried first, and succeeds.
    assert_eq!(json["moved"]["tried"], serde_json::json!([]), "{json}");
    assert_eq!(json["moved"]["old_pod_terminated"], false, "{json}");
    assert!(
        json["moved"]["old_pod_error"]
            .as_str()
            .is_some_and(|error| error.contains("cannot be terminated now")),
        "{json}"
    );
    assert!(
        moved
            .stderr
            .contains(&format!("could not terminate the old pod {second}")),
        "{}",
        moved.stderr
    );
    let pods = sim.pods();
    assert_eq!(pods.len(), 2, "the old pod and one new pod: {pods:?}");
    assert_eq!(
        sim.pod(&second).map(|pod| pod.status),
        Some(runpod_api::PodStatus::Exited)
    );

    // stop terminates a pod on a volume, after checking the volume holds the pod root; the
    // files stay; the next start makes a new pod for the volume.
    let stopped = ws
        .rpb_within(SLOW, &["stop", "--json"])
        .await
        .success()
        .json();
    assert_eq!(stopped["status"], "TERMINATED", "{stopped}");
    assert_eq!(
        stopped["checked_on_pod"], true,
        "checked on the running pod"
    );
    assert!(sim.pod(&third).is_none());
    assert_eq!(sha256_of(&on_volume), sha);
    let again = ws
        .rpb_within(SLOW, &["start", "--gpu-type", "NVIDIA RTX A5000", "--json"])
        .await
        .success();
    let json = again.json();
    assert_eq!(json["moved"]["reason"], "it no longer exists", "{json}");
    let fourth = json["pod_id"].as_str().expect("pod_id").to_owned();
    let listed = ws
        .rpb(&["project", "list", "--remote", "--json"])
        .await
        .success();
    assert!(listed.stdout.contains(name), "{}", listed.stdout);
    let stopped = ws
        .rpb_within(SLOW, &["stop", "--json"])
        .await
        .success()
        .json();
    assert_eq!(stopped["pod_id"], fourth.as_str());
    assert_eq!(stopped["status"], "TERMINATED");
    pod.shutdown().await.expect("shutdown");
}

/// A pod with its own volume disk, stuck on a full host: `start` says how to move to a network
/// volume; `volume migrate` (once the pod can run) copies its pod root to a new pod on a new
/// volume, every file checked by SHA-256 and links kept, and switches the workspace, whose next
/// `start` runs on the volume.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_with_its_own_disk_migrates_onto_a_network_volume() {
    let _serial = serial().await;
    let pod = LocalPod::builder()
        .start()
        .await
        .expect("the local pod starts (openssh-server, blender, xvfb, x11vnc, novnc, websockify)");
    let sim = pod.simulator();
    let ws = local_pod_workspace(&pod, "portable-vnc");
    ws.rpb_within(SLOW, &["create", "--json"]).await.success();
    let first = env_pod_id(&ws);
    ws.rpb_within(SLOW, &["start", "--json"]).await.success();
    let saved = ws
        .rpb_within(SLOW, &["save", "--project", "chair", "--json"])
        .await
        .success()
        .json();
    let sha = saved["sha256"].as_str().expect("sha256").to_owned();
    // The pod's own disk (the local pod's machine disk), with a file and a link of the user's.
    let disk = pod.state_dir().join("runpod/projects/chair");
    assert_eq!(sha256_of(&disk.join("scene.blend")), sha);
    std::fs::write(disk.join("notes, take 2.txt"), b"keep me\n").expect("write");
    std::os::unix::fs::symlink("scene.blend", disk.join("current.blend")).expect("symlink");

    let stopped = ws
        .rpb_within(SLOW, &["stop", "--json"])
        .await
        .success()
        .json();
    assert_eq!(
        stopped["status"], "EXITED",
        "a pod with its own disk only stops"
    );
    let host = sim.fill_host(&first).expect("host");
    let stuck = ws.rpb_within(SLOW, &["start"]).await;
    assert_eq!(stuck.code, 4, "{stuck:?}");
    assert!(stuck.stderr.contains("network volume"), "{}", stuck.stderr);

    // The host has a GPU again: the migration can run the old pod.
    assert!(sim.set_free_gpus(&host, 8));
    let migrated = ws
        .rpb_within(SLOW, &["volume", "migrate", "--size", "10", "--json"])
        .await
        .success();
    let json = migrated.json();
    let second = json["pod_id"].as_str().expect("pod_id").to_owned();
    let volume = json["volume_id"].as_str().expect("volume_id").to_owned();
    assert_eq!(json["from_pod"], first.as_str());
    assert_eq!(json["volume_created"], true);
    assert_eq!(json["links"], 1, "{json}");
    assert!(
        json["files"].as_u64().is_some_and(|files| files >= 3),
        "{json}"
    );
    assert_eq!(env_pod_id(&ws), second);
    let env = std::fs::read_to_string(ws.root().join(".env")).expect(".env");
    assert!(
        env.contains(&format!("RUNPOD_NETWORK_VOLUME_ID={volume}")),
        "{env}"
    );
    let on_volume = pod
        .volume_dir(&volume)
        .expect("volume dir")
        .join("projects/chair");
    assert_eq!(sha256_of(&on_volume.join("scene.blend")), sha);
    assert_eq!(
        std::fs::read(on_volume.join("notes, take 2.txt")).expect("notes"),
        b"keep me\n"
    );
    assert_eq!(
        std::fs::read_link(on_volume.join("current.blend")).expect("link"),
        std::path::Path::new("scene.blend")
    );
    for (id, status) in [(&first, "EXITED"), (&second, "EXITED")] {
        assert_eq!(
            sim.pod(id).map(|pod| pod.status.to_string()),
            Some(status.to_owned()),
            "{id}"
        );
    }
    assert_eq!(
        sim.pod(&second).expect("new pod").mounts.network[0].volume_id,
        volume
    );
    // Still unchanged: the old pod's own disk.
    assert_eq!(sha256_of(&disk.join("scene.blend")), sha);

    // Nothing to do for a pod already on a volume.
    let again = ws.rpb(&["volume", "migrate"]).await;
    assert_eq!(again.code, 1, "{again:?}");
    assert!(
        again.stderr.contains(&format!(
            "pod {second} already keeps its work on network volume {volume}"
        )),
        "{}",
        again.stderr
    );

    // The workspace runs on the volume now, with the new pod's pinned key.
    let started = ws.rpb_within(SLOW, &["start", "--json"]).await.success();
    assert_eq!(started.json()["pod_id"], second.as_str());
    assert!(started.json()["moved"].is_null(), "{}", started.stdout);
    assert!(
        !started.stderr.contains("first contact"),
        "{}",
        started.stderr
    );
    let stopped = ws
        .rpb_within(SLOW, &["stop", "--json"])
        .await
        .success()
        .json();
    assert_eq!(stopped["status"], "TERMINATED");
    pod.shutdown().await.expect("shutdown");
}
