//! Waiting for pod conditions under paused time: progress, backoff, early failure, deadline.

use std::time::Duration;

use runpod_api::{Error, PodId, PodStatus, RetryPolicy, WaitEvent, WaitFor, WaitOptions};
use tokio::time::Instant;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer};

use crate::{fixture, json_response, paused_client, problem, server};

async fn sequence(server: &MockServer, fixtures: &[&str]) {
    for (index, name) in fixtures.iter().enumerate() {
        let mock = Mock::given(method("GET"))
            .and(path("/v2/pods/7h9k2m4n6p"))
            .respond_with(json_response(200, fixture(name)));
        // The last answer repeats; the others are used once each, in order.
        let mock = if index + 1 < fixtures.len() {
            mock.up_to_n_times(1)
        } else {
            mock
        };
        mock.mount(server).await;
    }
}

#[tokio::test(start_paused = true)]
async fn waits_through_provisioning_until_ssh_is_ready() {
    let server = server().await;
    sequence(
        &server,
        &[
            "pod_provisioning.json",
            "pod_starting.json",
            "pod_running_no_ssh.json",
            "pod_running.json",
        ],
    )
    .await;
    let mut events = Vec::new();
    let started = Instant::now();
    let pod = paused_client(&server, RetryPolicy::none())
        .wait_for_pod(
            &PodId::new("7h9k2m4n6p"),
            WaitFor::SshReady,
            &WaitOptions::default(),
            |event| events.push(event.clone()),
        )
        .await
        .expect("ready");
    assert!(pod.ssh_endpoint().is_some());
    // Pauses of 1 s, 1.5 s and 2.25 s between the four polls.
    assert_eq!(started.elapsed(), Duration::from_millis(4750));
    let changes: Vec<_> = events
        .iter()
        .filter_map(|event| match event {
            WaitEvent::StatusChanged { to, .. } => Some(to.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        changes,
        [
            PodStatus::Provisioning,
            PodStatus::Starting,
            PodStatus::Running
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn poll_intervals_grow_to_the_cap() {
    let server = server().await;
    let mut fixtures = vec!["pod_starting.json"; 8];
    fixtures.push("pod_running.json");
    sequence(&server, &fixtures).await;
    let started = Instant::now();
    paused_client(&server, RetryPolicy::none())
        .wait_for_pod(
            &PodId::new("7h9k2m4n6p"),
            WaitFor::Running,
            &WaitOptions::default(),
            |_| {},
        )
        .await
        .expect("running");
    // 1 + 1.5 + 2.25 + 3.375 + 5 + 5 + 5 + 5 seconds.
    assert_eq!(started.elapsed(), Duration::from_millis(28_125));
}

#[tokio::test(start_paused = true)]
async fn an_error_status_ends_the_wait_early() {
    let server = server().await;
    sequence(&server, &["pod_starting.json", "pod_error.json"]).await;
    let error = paused_client(&server, RetryPolicy::none())
        .wait_for_pod(
            &PodId::new("7h9k2m4n6p"),
            WaitFor::Running,
            &WaitOptions::default(),
            |_| {},
        )
        .await
        .expect_err("aborted");
    assert!(
        matches!(
            &error,
            Error::WaitAborted {
                status: PodStatus::Error,
                ..
            }
        ),
        "{error:?}"
    );
    insta::assert_snapshot!("wait_aborted_error", error.to_string());
}

#[tokio::test(start_paused = true)]
async fn a_pod_that_stops_while_starting_ends_the_wait() {
    let server = server().await;
    sequence(&server, &["pod_starting.json", "pod_exited.json"]).await;
    let error = paused_client(&server, RetryPolicy::none())
        .wait_for_pod(
            &PodId::new("7h9k2m4n6p"),
            WaitFor::SshReady,
            &WaitOptions::default(),
            |_| {},
        )
        .await
        .expect_err("stopped");
    assert!(
        matches!(
            &error,
            Error::WaitAborted {
                status: PodStatus::Exited,
                ..
            }
        ),
        "{error:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn the_deadline_ends_the_wait_with_the_last_status() {
    let server = server().await;
    sequence(&server, &["pod_provisioning.json"]).await;
    let started = Instant::now();
    let error = paused_client(&server, RetryPolicy::none())
        .wait_for_pod(
            &PodId::new("7h9k2m4n6p"),
            WaitFor::Running,
            &WaitOptions::default().timeout(Duration::from_secs(60)),
            |_| {},
        )
        .await
        .expect_err("deadline");
    assert_eq!(started.elapsed(), Duration::from_secs(60));
    insta::assert_snapshot!("wait_timeout", error.to_string());
}

#[tokio::test(start_paused = true)]
async fn transient_poll_failures_are_reported_and_the_wait_goes_on() {
    let server = server().await;
    Mock::given(method("GET"))
        .and(path("/v2/pods/7h9k2m4n6p"))
        .respond_with(problem(503, "Service Unavailable", "busy"))
        .up_to_n_times(2)
        .mount(&server)
        .await;
    sequence(&server, &["pod_exited.json"]).await;
    let mut failures = 0;
    let pod = paused_client(&server, RetryPolicy::none())
        .wait_for_pod(
            &PodId::new("7h9k2m4n6p"),
            WaitFor::Stopped,
            &WaitOptions::default(),
            |event| {
                if matches!(event, WaitEvent::PollFailed { .. }) {
                    failures += 1;
                }
            },
        )
        .await
        .expect("stopped");
    assert_eq!(pod.status, PodStatus::Exited);
    assert_eq!(failures, 2);
}

#[tokio::test(start_paused = true)]
async fn a_vanished_pod_fails_the_wait_with_not_found() {
    let server = server().await;
    Mock::given(method("GET"))
        .and(path("/v2/pods/7h9k2m4n6p"))
        .respond_with(problem(404, "Not Found", "pod not found"))
        .mount(&server)
        .await;
    let error = paused_client(&server, RetryPolicy::none())
        .wait_for_pod(
            &PodId::new("7h9k2m4n6p"),
            WaitFor::Running,
            &WaitOptions::default(),
            |_| {},
        )
        .await
        .expect_err("gone");
    assert!(error.is_not_found());
}
