//! The pod image: the default is pinned by digest, and a digest-pinned reference
//! (`image@sha256:…`) goes through the settings, the spec and the create request unchanged.

use blender_session::adapters::RunpodProvider;
use blender_session::profile::Profile;
use blender_session::seams::{DEFAULT_IMAGE, PodProvider as _};
use project_store::ConfigKey;

#[tokio::test]
async fn a_digest_pinned_image_reaches_the_created_pod_unchanged() {
    let (name, digest) = DEFAULT_IMAGE
        .split_once("@sha256:")
        .expect("the default image is pinned by digest");
    assert!(name.contains(':') && !name.ends_with(":latest"), "{name}");
    assert!(
        digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()),
        "{digest}"
    );
    assert_eq!(
        blender_session::seams::PodSpec::new("default").image,
        DEFAULT_IMAGE
    );
    let pinned = format!("{name}@sha256:{}", "0123456789abcdef".repeat(4));
    let dir = tempfile::tempdir().expect("tempdir");
    let store = project_store::Store::open(dir.path()).expect("store");
    // As `rpb setup --image` writes it: accepted by the .env validation.
    store
        .set_config(ConfigKey::Image, &pinned)
        .expect("a digest-pinned image is a valid RUNPOD_IMAGE");
    let profile = Profile::resolve(&store, &[], |_| None).expect("profile");
    let spec = profile.pod_spec("digest-pinned");
    assert_eq!(spec.image, pinned);

    let simulator = runpod_api::sim::Simulator::start()
        .await
        .expect("simulator");
    let client = simulator.client().expect("client");
    let pod = RunpodProvider::new(client.clone())
        .create(&spec)
        .await
        .expect("created");
    let created = client.get_pod(&pod.id).await.expect("read back");
    assert_eq!(created.image, pinned);
    simulator.shutdown().await;
}
