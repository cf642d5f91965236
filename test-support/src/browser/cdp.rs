//! One WebSocket connection to Chromium's `DevTools` endpoint: numbered commands with one reply
//! each, and events broadcast to whoever listens.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use super::redact;

/// A `DevTools` event (a message with a `method` and no `id`).
#[derive(Debug, Clone)]
pub(crate) struct Event {
    pub(crate) method: String,
    pub(crate) session_id: Option<String>,
}

type Reply = Result<Value, String>;

#[derive(Default)]
struct State {
    pending: HashMap<u64, oneshot::Sender<Reply>>,
    closed: bool,
}

pub(crate) struct Connection {
    next_id: AtomicU64,
    state: Arc<Mutex<State>>,
    outgoing: mpsc::Sender<String>,
    events: broadcast::Sender<Event>,
    tasks: Vec<JoinHandle<()>>,
}

impl Connection {
    /// Connects to a `ws://127.0.0.1:PORT/devtools/browser/ID` endpoint.
    pub(crate) async fn connect(endpoint: &str, timeout: Duration) -> anyhow::Result<Self> {
        let (socket, _response) =
            tokio::time::timeout(timeout, tokio_tungstenite::connect_async(endpoint))
                .await
                .map_err(|_| anyhow!("connecting to {endpoint} timed out after {timeout:?}"))?
                .with_context(|| format!("failed to connect to {endpoint}"))?;
        let (mut sink, mut stream) = socket.split();
        let state = Arc::new(Mutex::new(State::default()));
        let (outgoing, mut outgoing_rx) = mpsc::channel::<String>(64);
        let (events, _) = broadcast::channel(256);

        let writer = tokio::spawn(async move {
            while let Some(text) = outgoing_rx.recv().await {
                if sink.send(Message::text(text)).await.is_err() {
                    break;
                }
            }
            let _ = sink.close().await;
        });
        let reader_state = Arc::clone(&state);
        let reader_events = events.clone();
        let reader = tokio::spawn(async move {
            while let Some(Ok(message)) = stream.next().await {
                let text = match message {
                    Message::Text(text) => text,
                    Message::Close(_) => break,
                    _ => continue,
                };
                let Ok(value) = serde_json::from_str::<Value>(text.as_str()) else {
                    continue;
                };
                dispatch(value, &reader_state, &reader_events);
            }
            let mut state = lock(&reader_state);
            state.closed = true;
            // Dropping the senders wakes every waiting command with "connection closed".
            state.pending.clear();
        });
        Ok(Self {
            next_id: AtomicU64::new(1),
            state,
            outgoing,
            events,
            tasks: vec![writer, reader],
        })
    }

    /// Listens to events from now on.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Sends one command (to the browser, or to a page when `session` is given) and waits for
    /// its reply.
    pub(crate) async fn call(
        &self,
        session: Option<&str>,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> anyhow::Result<Value> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (reply_tx, reply_rx) = oneshot::channel();
        {
            let mut state = lock(&self.state);
            if state.closed {
                bail!(
                    "cannot send {method}: the devtools connection is closed (did chromium exit?)"
                );
            }
            state.pending.insert(id, reply_tx);
        }
        let mut message = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = session {
            message["sessionId"] = Value::from(session);
        }
        if self.outgoing.send(message.to_string()).await.is_err() {
            lock(&self.state).pending.remove(&id);
            bail!("cannot send {method}: the devtools connection is closed (did chromium exit?)");
        }
        match tokio::time::timeout(timeout, reply_rx).await {
            Err(_) => {
                lock(&self.state).pending.remove(&id);
                bail!("devtools command {method} got no reply within {timeout:?}")
            }
            Ok(Err(_)) => bail!("the devtools connection closed before {method} was answered"),
            Ok(Ok(Err(message))) => {
                bail!("devtools command {method} failed: {}", redact(&message))
            }
            Ok(Ok(Ok(result))) => Ok(result),
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn dispatch(mut value: Value, state: &Mutex<State>, events: &broadcast::Sender<Event>) {
    if let Some(id) = value.get("id").and_then(Value::as_u64) {
        let reply = match value.get("error") {
            Some(error) => Err(error
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("unknown error")
                .to_owned()),
            None => Ok(value.get_mut("result").map_or(Value::Null, Value::take)),
        };
        if let Some(reply_tx) = lock(state).pending.remove(&id) {
            let _ = reply_tx.send(reply);
        }
    } else if let Some(method) = value.get("method").and_then(Value::as_str) {
        let session_id = value
            .get("sessionId")
            .and_then(Value::as_str)
            .map(str::to_owned);
        // Nobody listening is fine: events are only for whoever waits for one.
        let _ = events.send(Event {
            method: method.to_owned(),
            session_id,
        });
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}
