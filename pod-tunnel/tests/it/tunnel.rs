//! Port forwarding through a real sshd.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pod_tunnel::{Endpoint, Error, Forward, HostKeyPolicy, TunnelState};
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

use crate::common::{Fixture, builder_for, pattern};

/// An echo server on 127.0.0.1 that half-closes after echoing everything.
async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let (mut r, mut w) = stream.into_split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    addr
}

/// Sends `data`, half-closes, reads the echo to EOF; returns what came back.
async fn round_trip(local: SocketAddr, data: Vec<u8>) -> Vec<u8> {
    let stream = TcpStream::connect(local).await.unwrap();
    let (mut r, mut w) = stream.into_split();
    let writer = tokio::spawn(async move {
        w.write_all(&data).await.unwrap();
        w.shutdown().await.unwrap();
    });
    let mut back = Vec::new();
    r.read_to_end(&mut back).await.unwrap();
    writer.await.unwrap();
    back
}

fn digest(data: &[u8]) -> Vec<u8> {
    Sha256::digest(data).to_vec()
}

async fn wait_for_state(
    tunnel: &pod_tunnel::Tunnel,
    limit: Duration,
    want: impl Fn(&TunnelState) -> bool,
) -> TunnelState {
    let mut changes = tunnel.state_changes();
    let result = timeout(limit, async {
        loop {
            let state = changes.borrow_and_update().clone();
            if want(&state) {
                return state;
            }
            if changes.changed().await.is_err() {
                return changes.borrow().clone();
            }
        }
    })
    .await;
    result.unwrap_or_else(|_| panic!("state not reached in {limit:?}; now {:?}", tunnel.state()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_connections_carry_verified_data() {
    let fx = Fixture::start();
    let targets = [
        echo_server().await,
        echo_server().await,
        echo_server().await,
    ];
    let mut builder = fx.connector().tunnel();
    for target in targets {
        builder = builder.forward(Forward::new(0, "127.0.0.1", target.port()));
    }
    let tunnel = builder.open().await.unwrap();
    let locals: Vec<SocketAddr> = tunnel.forwards().iter().map(|f| f.local).collect();
    assert!(locals.iter().all(|a| a.port() != 0 && a.ip().is_loopback()));
    assert!(matches!(tunnel.state(), TunnelState::Connected { .. }));

    let started = Instant::now();
    let mut tasks = Vec::new();
    let mut sent = 0_u64;
    for i in 0..64_u64 {
        // Sizes vary from 1 byte to ~1 MiB; every connection checks its own hash.
        let len = if i == 0 {
            1
        } else {
            usize::try_from((i * 16_411) % (1 << 20)).unwrap() + 1
        };
        sent += len as u64;
        let data = pattern(len, i + 1);
        let local = locals[usize::try_from(i).unwrap() % locals.len()];
        tasks.push(tokio::spawn(async move {
            let expected = digest(&data);
            let back = round_trip(local, data).await;
            assert_eq!(
                digest(&back),
                expected,
                "connection {i} ({len} bytes) corrupted"
            );
        }));
    }
    timeout(Duration::from_secs(60), async {
        for task in tasks {
            task.await.unwrap();
        }
    })
    .await
    .expect("64 connections finish in time");
    eprintln!("64 connections in {:?}", started.elapsed());

    // Counters settle once the last channels are closed.
    let deadline = Instant::now() + Duration::from_secs(5);
    while tunnel.stats().connections_open > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stats = tunnel.stats();
    assert_eq!(stats.connections_total, 64);
    assert_eq!(stats.connections_open, 0);
    assert_eq!(stats.bytes_to_remote, sent);
    assert_eq!(stats.bytes_from_remote, sent);
    assert_eq!(stats.reconnects, 0);
    // 64 connections at once make the tunnel open channels on extra sessions too.
    assert!(
        (2..=4).contains(&stats.sessions),
        "sessions in the pool: {}",
        stats.sessions
    );
    tunnel.close().await.unwrap();
    for local in locals {
        assert!(
            TcpStream::connect(local).await.is_err(),
            "listener {local} still open"
        );
    }
}

#[tokio::test]
async fn half_close_lets_the_response_through() {
    let fx = Fixture::start();
    // A server that reads until EOF, then answers with the byte count.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut all = Vec::new();
        s.read_to_end(&mut all).await.unwrap();
        s.write_all(format!("got {}", all.len()).as_bytes())
            .await
            .unwrap();
    });
    let tunnel = fx
        .connector()
        .tunnel()
        .forward(Forward::new(0, "127.0.0.1", port))
        .open()
        .await
        .unwrap();
    let back = timeout(
        Duration::from_secs(10),
        round_trip(tunnel.forwards()[0].local, vec![7; 100_000]),
    )
    .await
    .unwrap();
    assert_eq!(back, b"got 100000");
    tunnel.close().await.unwrap();
}

#[tokio::test]
async fn a_refused_target_closes_only_that_connection() {
    let fx = Fixture::start();
    let echo = echo_server().await;
    let dead_port = test_support::sshd::free_port().unwrap();
    let tunnel = fx
        .connector()
        .tunnel()
        .forward(Forward::new(0, "127.0.0.1", dead_port))
        .forward(Forward::new(0, "127.0.0.1", echo.port()))
        .open()
        .await
        .unwrap();
    let refused = tunnel.forwards()[0].local;
    let good = tunnel.forwards()[1].local;
    // Keep one good connection open across the failure.
    let mut long = TcpStream::connect(good).await.unwrap();
    long.write_all(b"before").await.unwrap();

    let mut stream = TcpStream::connect(refused).await.unwrap();
    let mut buf = [0_u8; 16];
    let n = timeout(Duration::from_secs(10), stream.read(&mut buf))
        .await
        .expect("refused connection is closed promptly")
        .unwrap_or(0);
    assert_eq!(n, 0);
    assert_eq!(tunnel.stats().connections_refused, 1);

    long.write_all(b" after").await.unwrap();
    long.shutdown().await.unwrap();
    let mut back = Vec::new();
    timeout(Duration::from_secs(10), long.read_to_end(&mut back))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(back, b"before after");
    assert!(matches!(tunnel.state(), TunnelState::Connected { .. }));
    tunnel.close().await.unwrap();
}

#[tokio::test]
async fn a_busy_local_port_is_a_clear_error() {
    let fx = Fixture::start();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let err = fx
        .connector()
        .tunnel()
        .forward(Forward::new(port, "127.0.0.1", 9))
        .open()
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::PortInUse { port: p, .. } if p == port),
        "{err:?}"
    );
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
    assert!(err.to_string().contains("already in use"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_server_is_detected_and_the_tunnel_recovers() {
    let fx = Fixture::start();
    let echo = echo_server().await;
    let connector = fx
        .builder()
        .keepalive_interval(Duration::from_secs(1))
        .keepalive_max(2)
        .build()
        .unwrap();
    let tunnel = connector
        .tunnel()
        .forward(Forward::new(0, "127.0.0.1", echo.port()))
        .reconnect_backoff(Duration::from_millis(200), Duration::from_secs(1))
        .open()
        .await
        .unwrap();
    let local = tunnel.forwards()[0].local;
    assert_eq!(round_trip(local, b"ping".to_vec()).await, b"ping");

    fx.sshd.pause().unwrap();
    let frozen_at = Instant::now();
    let state = wait_for_state(&tunnel, Duration::from_secs(20), |s| {
        matches!(s, TunnelState::Reconnecting { .. })
    })
    .await;
    let detected = frozen_at.elapsed();
    eprintln!("dead peer detected after {detected:?}: {state:?}");
    assert!(detected < Duration::from_secs(12), "{detected:?}");
    if let TunnelState::Reconnecting { last_error, .. } = &state {
        assert!(last_error.contains("keepalive"), "{last_error}");
    }
    // The listener stays bound while the server is away.
    let waiting = TcpStream::connect(local)
        .await
        .expect("listener still bound");
    drop(waiting);

    fx.sshd.resume().unwrap();
    wait_for_state(&tunnel, Duration::from_secs(20), |s| {
        matches!(s, TunnelState::Connected { .. })
    })
    .await;
    assert_eq!(round_trip(local, b"pong".to_vec()).await, b"pong");
    assert!(tunnel.stats().reconnects >= 1);
    tunnel.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_server_is_reconnected_with_the_listener_kept() {
    let mut fx = Fixture::start();
    let echo = echo_server().await;
    let tunnel = fx
        .connector()
        .tunnel()
        .forward(Forward::new(0, "127.0.0.1", echo.port()))
        .reconnect_backoff(Duration::from_millis(100), Duration::from_millis(500))
        .open()
        .await
        .unwrap();
    let local = tunnel.forwards()[0].local;
    assert_eq!(round_trip(local, b"one".to_vec()).await, b"one");

    fx.sshd.stop();
    wait_for_state(&tunnel, Duration::from_secs(10), |s| {
        matches!(s, TunnelState::Reconnecting { .. })
    })
    .await;
    // A client arriving during the outage waits and is served after the reconnect.
    let early = tokio::spawn(round_trip(local, b"during".to_vec()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    fx.sshd.restart().unwrap();
    wait_for_state(&tunnel, Duration::from_secs(15), |s| {
        matches!(s, TunnelState::Connected { .. })
    })
    .await;
    let back = timeout(Duration::from_secs(15), early)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(back, b"during");
    assert_eq!(round_trip(local, b"two".to_vec()).await, b"two");
    assert_eq!(tunnel.forwards()[0].local, local);
    assert_eq!(tunnel.stats().reconnects, 1);
    tunnel.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_follows_the_resolver_to_a_moved_server() {
    let mut first = Fixture::start();
    let second = test_support::sshd::Sshd::start().unwrap();
    // Authorize the first fixture's client key on the second server.
    let public = std::fs::read_to_string(first.sshd.client_key().with_extension("pub")).unwrap();
    let authorized = second.dir().join("authorized_keys");
    let mut keys = std::fs::read_to_string(&authorized).unwrap();
    keys.push_str(&public);
    std::fs::write(&authorized, keys).unwrap();

    let echo = echo_server().await;
    let current = Arc::new(Mutex::new(Endpoint::new("127.0.0.1", first.sshd.port())));
    let resolved = Arc::clone(&current);
    let calls = Arc::new(Mutex::new(0_u32));
    let counted = Arc::clone(&calls);
    let tunnel = builder_for(&first.sshd, HostKeyPolicy::accept_new(first.known_hosts()))
        .build()
        .unwrap()
        .tunnel()
        .forward(Forward::new(0, "127.0.0.1", echo.port()))
        .reconnect_backoff(Duration::from_millis(100), Duration::from_millis(300))
        .resolver(move || {
            let endpoint = resolved.lock().unwrap().clone();
            *counted.lock().unwrap() += 1;
            async move { Ok::<_, std::io::Error>(endpoint) }
        })
        .open()
        .await
        .unwrap();
    let local = tunnel.forwards()[0].local;
    assert_eq!(round_trip(local, b"a".to_vec()).await, b"a");

    *current.lock().unwrap() = Endpoint::new("127.0.0.1", second.port());
    first.sshd.stop();
    let state = wait_for_state(
        &tunnel,
        Duration::from_secs(15),
        |s| matches!(s, TunnelState::Connected { endpoint } if endpoint.port == second.port()),
    )
    .await;
    eprintln!("moved: {state:?}");
    assert!(*calls.lock().unwrap() >= 1);
    assert_eq!(round_trip(local, b"b".to_vec()).await, b"b");
    tunnel.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_host_key_on_reconnect_stops_the_tunnel() {
    let mut fx = Fixture::start();
    let echo = echo_server().await;
    let tunnel = fx
        .connector()
        .tunnel()
        .forward(Forward::new(0, "127.0.0.1", echo.port()))
        .reconnect_backoff(Duration::from_millis(100), Duration::from_millis(300))
        .open()
        .await
        .unwrap();
    let local = tunnel.forwards()[0].local;
    fx.sshd.regenerate_host_key().unwrap();
    fx.sshd.restart().unwrap();
    wait_for_state(&tunnel, Duration::from_secs(15), |s| {
        matches!(s, TunnelState::Closed { .. })
    })
    .await;
    let err = tunnel.close().await.unwrap_err();
    assert!(matches!(err, Error::HostKeyMismatch { .. }), "{err:?}");
    assert!(TcpStream::connect(local).await.is_err());
}

/// One long download-direction stream: its receive window grows past libssh2's 2 MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_stream_with_a_grown_window_stays_intact() {
    let fx = Fixture::start();
    let data = Arc::new(pattern(40 << 20, 77));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let served = Arc::clone(&data);
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        s.write_all(&served).await.unwrap();
        s.shutdown().await.unwrap();
    });
    let tunnel = fx
        .connector()
        .tunnel()
        .forward(Forward::new(0, "127.0.0.1", port))
        .open()
        .await
        .unwrap();
    let mut stream = TcpStream::connect(tunnel.forwards()[0].local)
        .await
        .unwrap();
    let mut back = Vec::with_capacity(data.len());
    timeout(Duration::from_secs(60), stream.read_to_end(&mut back))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(back.len(), data.len());
    assert!(digest(&back) == digest(&data));
    assert_eq!(tunnel.stats().bytes_from_remote, data.len() as u64);
    tunnel.close().await.unwrap();
}
