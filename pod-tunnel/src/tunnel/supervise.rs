//! The worker's life: the first connection, reconnecting with backoff (asking the resolver
//! where the server went) while the listeners stay bound, and the final close.

use std::io;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags};
use tokio::sync::oneshot;

use crate::connect::{Endpoint, Link};
use crate::error::{Error, Result, error_chain};
use crate::link::{poll, probe_round_trip, window_for_round_trip};

use super::actor::{Actor, Step};
use super::conn::MAX_WINDOW;
use super::pool::{Active, Pool};
use super::state::TunnelState;

/// Runs `actor` on a thread of its own; `ready` gets the outcome of the first connection.
///
/// # Errors
/// The thread could not be started.
pub(super) fn spawn(actor: Actor, ready: oneshot::Sender<Result<()>>) -> io::Result<()> {
    std::thread::Builder::new()
        .name("pod-tunnel".into())
        .spawn(move || actor.run(ready))
        .map(drop)
}

impl Actor {
    fn run(mut self, ready: oneshot::Sender<Result<()>>) {
        let first = self
            .options
            .connect_blocking(&self.endpoint)
            .and_then(|link| self.activate(link));
        let mut active = match first {
            Ok(active) => {
                let _ = ready.send(Ok(()));
                Some(active)
            }
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        let mut last_error = String::new();
        loop {
            let step = match active.as_mut() {
                Some(a) => self.step(a),
                None => match self.reconnect(&last_error) {
                    Ok(a) => {
                        active = Some(a);
                        Step::Continue
                    }
                    Err(step) => step,
                },
            };
            match step {
                Step::Continue => {}
                Step::Reconnect(reason) => {
                    tracing::warn!(endpoint = %self.endpoint, reason = %reason, "ssh session lost; reconnecting");
                    if let Some(a) = active.take() {
                        self.drop_session(a);
                    }
                    last_error = reason;
                }
                Step::Close(reply) => {
                    if let Some(a) = active.take() {
                        self.shutdown(a);
                    }
                    self.listeners.clear();
                    self.conns.clear();
                    self.counters.open.store(0, Ordering::Relaxed);
                    let error = self
                        .failure
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .as_ref()
                        .map(ToString::to_string);
                    let _ = self.state.send(TunnelState::Closed { error });
                    if let Some(reply) = reply {
                        let _ = reply.send(());
                    }
                    return;
                }
            }
        }
    }

    /// Switches a fresh link to non-blocking mode, with its control channel: the first session
    /// of a new pool.
    fn activate(&mut self, link: Link) -> Result<Pool> {
        // Opening a channel takes one round trip with next to no work on the server: it tells
        // whether this is a long link (where bigger windows pay) or a short one (where they only
        // make libssh2 queue more).
        let started = Instant::now();
        let control = link
            .session
            .channel_session()
            .map_err(|source| Error::Exec {
                endpoint: link.endpoint.to_string(),
                source: source.into(),
            })?;
        let round_trip = started.elapsed().min(probe_round_trip(&link.session));
        tracing::debug!(endpoint = %link.endpoint, ?round_trip, "tunnel session ready");
        link.session.set_blocking(false);
        self.endpoint = link.endpoint.clone();
        let _ = self.state.send(TunnelState::Connected {
            endpoint: link.endpoint.clone(),
        });
        let max_window = window_for_round_trip(round_trip, MAX_WINDOW);
        let first = Active::new(link, control, max_window, self.options.keepalive_interval);
        let pool = Pool::new(first)?;
        self.counters.sessions.store(1, Ordering::Relaxed);
        Ok(pool)
    }

    /// Drops dead sessions: every connection that had a channel is lost, waiting ones (including
    /// those whose open was in flight) are kept for the next session.
    fn drop_session(&mut self, p: Pool) {
        self.counters.sessions.store(0, Ordering::Relaxed);
        for slot in &p.slots {
            let _ = slot.link.socket.shutdown(std::net::Shutdown::Both);
            if let Some(id) = slot.opening {
                self.pending.push_front(id);
            }
        }
        let lost: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, c)| c.channel.is_some())
            .map(|(id, _)| *id)
            .collect();
        for id in lost {
            self.remove(id);
        }
        drop(p);
    }

    /// Graceful close: EOF and close every channel, then disconnect (bounded by short timeouts).
    fn shutdown(&mut self, p: Pool) {
        self.counters.sessions.store(0, Ordering::Relaxed);
        for slot in &p.slots {
            slot.link.session.set_blocking(true);
            slot.link.session.set_timeout(1000);
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        for conn in self.conns.values_mut() {
            if Instant::now() >= deadline {
                break;
            }
            if let Some(channel) = conn.channel.as_mut() {
                let _ = channel.send_eof();
                let _ = channel.close();
            }
        }
        self.conns.clear();
        for slot in p.slots {
            drop(slot.control);
            slot.link.disconnect();
        }
    }

    fn reconnect(&mut self, last_error: &str) -> std::result::Result<Pool, Step> {
        let mut backoff = self.backoff_initial;
        let mut last_error = last_error.to_owned();
        let mut last: Option<Error> = None;
        for attempt in 1..=self.reconnect_attempts {
            let _ = self.state.send(TunnelState::Reconnecting {
                attempt,
                last_error: last_error.clone(),
            });
            if let Some(step) = self.wait_commands(backoff) {
                return Err(step);
            }
            backoff = (backoff * 2).min(self.backoff_max);
            let endpoint = match self.resolve() {
                Ok(e) => e,
                Err(e) => {
                    last_error = error_chain(&e);
                    last = Some(e);
                    continue;
                }
            };
            match self
                .options
                .connect_blocking(&endpoint)
                .and_then(|link| self.activate(link))
            {
                Ok(active) => {
                    self.counters.reconnects.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(endpoint = %endpoint, attempt, "ssh tunnel reconnected");
                    return Ok(active);
                }
                Err(e) => {
                    last_error = error_chain(&e);
                    tracing::warn!(endpoint = %endpoint, attempt, error = %last_error, "reconnect failed");
                    let fatal = matches!(
                        e,
                        Error::HostKeyMismatch { .. }
                            | Error::HostKeyUnknown { .. }
                            | Error::Authenticate { .. }
                    );
                    if fatal {
                        self.set_failure(e);
                        return Err(Step::Close(None));
                    }
                    self.endpoint = endpoint;
                    last = Some(e);
                }
            }
        }
        let source = last.unwrap_or(Error::SessionClosed);
        self.set_failure(Error::ReconnectExhausted {
            endpoint: self.endpoint.to_string(),
            attempts: self.reconnect_attempts,
            source: Box::new(source),
        });
        Err(Step::Close(None))
    }

    fn set_failure(&self, error: Error) {
        *self
            .failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(error);
    }

    fn resolve(&self) -> Result<Endpoint> {
        let Some(resolver) = &self.resolver else {
            return Ok(self.endpoint.clone());
        };
        let fut = resolver();
        let limit = self.options.io_timeout;
        self.runtime
            .block_on(async move { tokio::time::timeout(limit, fut).await })
            .map_err(|elapsed| Error::Resolve {
                source: Box::new(elapsed),
            })?
            .map_err(|source| Error::Resolve { source })
    }

    /// Waits up to `timeout` for a command (listeners stay bound; clients wait in the backlog).
    fn wait_commands(&mut self, timeout: Duration) -> Option<Step> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(step) = self.commands() {
                return match step {
                    Step::Reconnect(_) => None,
                    other => Some(other),
                };
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            let mut fds = [PollFd::new(&self.wake, PollFlags::IN)];
            let _ = poll(&mut fds, left);
        }
    }
}
