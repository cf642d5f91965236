//! The SSH relays: one loopback port each, listening only while the port is the endpoint of a
//! pod's current boot, forwarding to sshd.

use std::collections::BTreeSet;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use runpod_api::sim::Simulator;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::{sleep, timeout};

use super::boot::live_ports;
use super::{Error, RELAY_BUFFER, Result};

/// A loopback socket bound to `address` but not listening: it holds the port, and connections
/// to it are refused.
pub(super) fn reserve(address: SocketAddr) -> Result<socket2::Socket> {
    let bind = || -> io::Result<socket2::Socket> {
        let socket = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )?;
        // Rebinding right after closing the listener must not trip over TIME_WAIT.
        socket.set_reuse_address(true)?;
        socket.bind(&address.into())?;
        Ok(socket)
    };
    bind().map_err(|source| Error::Bind { address, source })
}

pub(super) struct Relay {
    pub(super) port: u16,
    pub(super) reserved: Option<socket2::Socket>,
    pub(super) target: SocketAddr,
    pub(super) live: watch::Receiver<BTreeSet<u16>>,
    pub(super) simulator: Arc<Simulator>,
}

/// One relay port: refuses while its port is not a current boot's endpoint; listens and
/// forwards to sshd while it is; closes its connections the moment it stops being one.
pub(super) async fn relay(mut relay: Relay) {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, relay.port));
    loop {
        if relay
            .live
            .wait_for(|live| live.contains(&relay.port))
            .await
            .is_err()
        {
            return;
        }
        let listener = match listen(relay.reserved.take(), address) {
            Ok(listener) => listener,
            Err(error) => {
                tracing::warn!(%address, %error, "an SSH relay could not listen; retrying");
                sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        tracing::debug!(%address, "relay listening");
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                changed = relay.live.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    if !relay.live.borrow_and_update().contains(&relay.port) {
                        break;
                    }
                }
                accepted = listener.accept() => {
                    let Ok((inbound, _)) = accepted else {
                        // Out of descriptors, say: don't spin.
                        sleep(Duration::from_millis(50)).await;
                        continue;
                    };
                    // Decide on the simulator's state now, not at the last poll: a port whose
                    // boot just ended never shows an SSH banner.
                    if !live_ports(&relay.simulator).contains(&relay.port) {
                        drop(inbound);
                        continue;
                    }
                    connections.spawn(forward(inbound, relay.target));
                }
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
        // The boot ended: refuse from now on, and cut what was connected.
        drop(listener);
        connections.shutdown().await;
        tracing::debug!(%address, "relay closed");
        relay.reserved = reserve(address).ok();
    }
}

fn listen(reserved: Option<socket2::Socket>, address: SocketAddr) -> io::Result<TcpListener> {
    let socket = match reserved {
        Some(socket) => socket,
        None => reserve(address).map_err(|error| match error {
            Error::Bind { source, .. } => source,
            other => io::Error::other(other.to_string()),
        })?,
    };
    socket.listen(128)?;
    socket.set_nonblocking(true)?;
    TcpListener::from_std(socket.into())
}

async fn forward(mut inbound: TcpStream, target: SocketAddr) {
    let Ok(Ok(mut outbound)) = timeout(Duration::from_secs(5), TcpStream::connect(target)).await
    else {
        tracing::warn!(%target, "a relay could not reach sshd");
        return;
    };
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    let _ = tokio::io::copy_bidirectional_with_sizes(
        &mut inbound,
        &mut outbound,
        RELAY_BUFFER,
        RELAY_BUFFER,
    )
    .await;
}
