//! The crate's errors keep the lower layers' typed errors as their sources: callers can ask
//! `is_not_found()` and walk the chain to `runpod_api::Error`, `pod_tunnel::Error` and
//! `project_store::Error`, and the outer message names the operation and the pod.

use std::error::Error as _;

use blender_session::adapters::{RunpodProvider, SshConnector};
use blender_session::seams::{HostConnector as _, PodProvider as _, SshAddr};

/// The first error of type `T` in `error`'s source chain.
fn in_chain<'a, T: std::error::Error + 'static>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut next = Some(error);
    while let Some(current) = next {
        if let Some(found) = current.downcast_ref::<T>() {
            return Some(found);
        }
        next = current.source();
    }
    None
}

#[tokio::test]
async fn a_missing_pod_is_typed_all_the_way_down() {
    let simulator = runpod_api::sim::Simulator::start()
        .await
        .expect("simulator");
    let provider = RunpodProvider::new(simulator.client().expect("client"));
    let error = provider.pod("nosuchpod1").await.expect_err("no such pod");
    assert!(error.is_not_found(), "{error:?}");
    let api = error.runpod().expect("runpod_api::Error kept");
    assert!(api.is_not_found());
    assert!(
        error.to_string().contains("nosuchpod1"),
        "names the pod: {error}"
    );
    let source = error.source().expect("a source");
    assert!(
        in_chain::<runpod_api::Error>(source).is_some(),
        "the chain reaches runpod_api::Error"
    );
    assert!(error.ssh().is_none() && error.store_error().is_none());
    simulator.shutdown().await;
}

#[tokio::test]
async fn an_ssh_failure_keeps_pod_tunnels_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A port nothing listens on: bind, read the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("free port")
        .port();
    let connector = SshConnector::new(dir.path().join("no-key"), dir.path().join("known_hosts"));
    let addr = SshAddr {
        host: "127.0.0.1".into(),
        port,
        user: "root".into(),
    };
    let Err(error) = connector.connect(&addr, "pod7").await else {
        panic!("nothing listens on {port}");
    };
    assert!(error.to_string().contains("pod7"), "names the pod: {error}");
    assert!(error.ssh().is_some(), "pod_tunnel::Error kept: {error:?}");
    assert!(in_chain::<pod_tunnel::Error>(&error).is_some());
    assert!(!error.is_not_found());
}

#[test]
fn a_store_failure_names_the_operation_and_keeps_the_store_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = project_store::Store::open(dir.path()).expect("store");
    let profile =
        blender_session::profile::Profile::resolve(&store, &[], |_| None).expect("profile");
    let error = profile.client().expect_err("no API key anywhere");
    assert!(
        error.to_string().contains("creating the RunPod API client"),
        "names the operation: {error}"
    );
    let source = error.source().expect("the store's error").to_string();
    assert!(
        source.contains("RUNPOD_API_KEY"),
        "names the setting: {source}"
    );
    assert!(error.store_error().is_some(), "{error:?}");
    assert!(in_chain::<project_store::Error>(&error).is_some());
}
