//! The events websocket (`/1.0/events`) and per-operation update following.

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::net::UnixStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::client::Client;
use crate::error::{LxdError, Result};
use crate::operation::Operation;

/// Event types to subscribe to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Operation,
    Lifecycle,
    Logging,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Operation => "operation",
            EventType::Lifecycle => "lifecycle",
            EventType::Logging => "logging",
        }
    }
}

/// One event from `/1.0/events`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct Event {
    /// `operation`, `lifecycle`, `logging`.
    #[serde(rename = "type")]
    pub kind: String,
    pub timestamp: String,
    pub metadata: serde_json::Value,
    pub location: String,
    pub project: String,
}

/// Metadata of a `lifecycle` event.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct LifecycleEvent {
    /// e.g. `instance-started`, `instance-shutdown`, `instance-stopped`, `instance-deleted`.
    pub action: String,
    /// e.g. `/1.0/instances/penguin`.
    pub source: String,
    pub context: serde_json::Value,
}

impl LifecycleEvent {
    /// Instance name of `source` when it is `/1.0/instances/<name>` or
    /// `/1.0/containers/<name>` (query ignored; exactly four path components), else `None`.
    pub fn instance_name(&self) -> Option<&str> {
        let path = self.source.split('?').next().unwrap_or("");
        let parts: Vec<&str> = path.split('/').collect();
        match parts.as_slice() {
            ["", "1.0", "instances" | "containers", name] if !name.is_empty() => Some(name),
            _ => None,
        }
    }
}

impl Event {
    /// Parses one websocket text message.
    pub fn parse(text: &str) -> Result<Event> {
        serde_json::from_str(text).map_err(|e| LxdError::Json {
            what: "decoding LXD event".into(),
            source: e,
        })
    }

    /// The operation carried by an `operation` event.
    pub fn operation(&self) -> Option<Operation> {
        if self.kind != "operation" {
            return None;
        }
        serde_json::from_value(self.metadata.clone()).ok()
    }

    /// The lifecycle metadata of a `lifecycle` event.
    pub fn lifecycle(&self) -> Option<LifecycleEvent> {
        if self.kind != "lifecycle" {
            return None;
        }
        serde_json::from_value(self.metadata.clone()).ok()
    }
}

/// A live subscription to `/1.0/events`.
///
/// Liveness: when nothing (event, ping or pong) arrived for the ping interval, a ping is
/// sent; when still nothing arrived by the liveness deadline, the stream counts as dead and
/// [`EventStream::next`] returns `None`, so an LXD that hangs without closing the socket is
/// noticed and the caller re-subscribes. LXD answers pings (and sends its own).
pub struct EventStream {
    ws: WebSocketStream<UnixStream>,
    what: String,
    liveness: Liveness,
    last_seen: tokio::time::Instant,
    ping_sent: bool,
    dead: bool,
}

/// Ping interval and deadline of an event subscription (see [`EventStream`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Liveness {
    /// Silence after which a ping is sent.
    pub ping_after: Duration,
    /// Silence after which the stream is given up.
    pub deadline: Duration,
}

impl Default for Liveness {
    fn default() -> Self {
        Liveness {
            ping_after: Duration::from_secs(10),
            deadline: Duration::from_secs(30),
        }
    }
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream")
            .field("what", &self.what)
            .finish()
    }
}

impl EventStream {
    /// Next event; `None` when the stream ended (LXD stopped or restarted) or went silent
    /// past the liveness deadline. Undecodable messages are returned as `Err` and the stream
    /// stays usable. Cancel-safe (the liveness state lives in the stream).
    pub async fn next(&mut self) -> Option<Result<Event>> {
        loop {
            if self.dead {
                return None;
            }
            let wake = self.last_seen
                + if self.ping_sent {
                    self.liveness.deadline
                } else {
                    self.liveness.ping_after
                };
            let next = tokio::select! {
                next = self.ws.next() => next,
                _ = tokio::time::sleep_until(wake) => {
                    self.on_silence().await;
                    continue;
                }
            };
            let Some(next) = next else {
                self.dead = true;
                return None;
            };
            self.last_seen = tokio::time::Instant::now();
            self.ping_sent = false;
            let msg = match next {
                Ok(m) => m,
                Err(e) => {
                    return Some(Err(LxdError::protocol(
                        &self.what,
                        format!("websocket: {e}"),
                    )))
                }
            };
            match msg {
                Message::Text(t) => return Some(Event::parse(t.as_str())),
                Message::Binary(b) => {
                    return Some(serde_json::from_slice(&b).map_err(|e| LxdError::Json {
                        what: self.what.clone(),
                        source: e,
                    }))
                }
                Message::Close(_) => return None,
                // Pings are answered by tungstenite; nothing else matters.
                _ => continue,
            }
        }
    }

    /// The ping interval or the deadline passed without any message.
    async fn on_silence(&mut self) {
        let silent = self.last_seen.elapsed();
        if self.ping_sent || silent >= self.liveness.deadline {
            tracing::warn!(
                "{}: no message (not even a pong) for {silent:?}; giving the stream up",
                self.what
            );
            self.dead = true;
            return;
        }
        self.ping_sent = true;
        let left = self.liveness.deadline.saturating_sub(silent);
        let ping = self.ws.send(Message::Ping(Vec::new().into()));
        if !matches!(tokio::time::timeout(left, ping).await, Ok(Ok(()))) {
            tracing::warn!("{}: cannot send a ping; giving the stream up", self.what);
            self.dead = true;
        }
    }

    /// Closes the websocket politely (best effort).
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), self.ws.close(None)).await;
    }
}

impl Client {
    /// Subscribes to `/1.0/events?type=...` over a websocket on the Unix socket.
    /// Subscribe BEFORE starting an operation you want to follow.
    pub async fn events(&self, types: &[EventType]) -> Result<EventStream> {
        let list = if types.is_empty() {
            "operation,lifecycle".to_string()
        } else {
            types
                .iter()
                .map(|t| t.as_str())
                .collect::<Vec<_>>()
                .join(",")
        };
        let path = format!("/1.0/events?type={list}");
        let what = format!("GET {path} (websocket)");
        let stream = self.connect_stream(&what).await?;
        let url = format!("ws://lxd{path}");
        let handshake = tokio_tungstenite::client_async(url, stream);
        let (ws, _resp) = match tokio::time::timeout(self.timeout(), handshake).await {
            Err(_) => return Err(LxdError::timeout(what, self.timeout())),
            Ok(Err(e)) => return Err(LxdError::protocol(what, format!("handshake: {e}"))),
            Ok(Ok(v)) => v,
        };
        Ok(EventStream {
            ws,
            what,
            liveness: self.event_liveness(),
            last_seen: tokio::time::Instant::now(),
            ping_sent: false,
            dead: false,
        })
    }

    /// Follows one operation: yields its updates in order and its final state exactly
    /// once, then `None`.
    ///
    /// `events` should have been subscribed (with [`EventType::Operation`]) before the
    /// operation was started; `None` (or a stream that dies) falls back to polling
    /// `GET /1.0/operations/{id}`. `initial` (the operation returned by the request that
    /// started it) is delivered first; when it is already final it is the only update.
    /// After `timeout` a final `Err(Timeout)` is yielded.
    pub fn follow_operation(
        &self,
        events: Option<EventStream>,
        initial: Operation,
        timeout: Duration,
    ) -> OperationUpdates {
        OperationUpdates {
            client: self.clone(),
            events,
            id: initial.id.clone(),
            pending_initial: Some(initial),
            deadline: Instant::now() + timeout,
            timeout,
            last: None,
            last_nanos: None,
            last_activity: Instant::now(),
            poll_interval: Duration::from_secs(1),
            finished: false,
        }
    }
}

/// Ordered updates of one operation (see [`Client::follow_operation`]).
#[derive(Debug)]
pub struct OperationUpdates {
    client: Client,
    events: Option<EventStream>,
    id: String,
    pending_initial: Option<Operation>,
    deadline: Instant,
    timeout: Duration,
    last: Option<Operation>,
    last_nanos: Option<i128>,
    last_activity: Instant,
    poll_interval: Duration,
    finished: bool,
}

enum Step {
    Candidate(Box<Operation>),
    Nothing,
    Poll,
}

impl OperationUpdates {
    /// The operation id followed.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Sets how long to wait without any event before polling (default 1 s).
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Next update; the last `Some` is the final state (or an error), then `None`.
    pub async fn next(&mut self) -> Option<Result<Operation>> {
        if self.finished {
            return None;
        }
        if let Some(initial) = self.pending_initial.take() {
            if let Some(op) = self.accept(initial) {
                return Some(Ok(op));
            }
        }
        loop {
            let now = Instant::now();
            if now >= self.deadline {
                self.finished = true;
                return Some(Err(LxdError::timeout(
                    format!("following operation {}", self.id),
                    self.timeout,
                )));
            }
            let poll_at = (self.last_activity + self.poll_interval).min(self.deadline);
            let step = match self.events.as_mut() {
                Some(events) => {
                    let wait = poll_at.saturating_duration_since(now);
                    match tokio::time::timeout(wait, events.next()).await {
                        Err(_) => Step::Poll,
                        Ok(Some(Ok(ev))) => match ev.operation() {
                            Some(op) if op.id == self.id => Step::Candidate(Box::new(op)),
                            _ => Step::Nothing,
                        },
                        Ok(Some(Err(e))) => {
                            tracing::debug!("ignoring undecodable LXD event: {e}");
                            Step::Nothing
                        }
                        Ok(None) => {
                            tracing::warn!(
                                "LXD event stream ended while following operation {}; polling",
                                self.id
                            );
                            self.events = None;
                            Step::Nothing
                        }
                    }
                }
                None => {
                    tokio::time::sleep_until(poll_at.into()).await;
                    Step::Poll
                }
            };
            match step {
                Step::Nothing => {}
                Step::Candidate(op) => {
                    self.last_activity = Instant::now();
                    if let Some(op) = self.accept(*op) {
                        return Some(Ok(op));
                    }
                }
                Step::Poll => {
                    self.last_activity = Instant::now();
                    match self.client.operation(&self.id).await {
                        Ok(op) => {
                            if let Some(op) = self.accept(op) {
                                return Some(Ok(op));
                            }
                        }
                        Err(e) if e.is_not_found() => {
                            self.finished = true;
                            return Some(Err(LxdError::Operation {
                                id: self.id.clone(),
                                description: self
                                    .last
                                    .as_ref()
                                    .map(|o| o.description.clone())
                                    .unwrap_or_default(),
                                message:
                                    "operation disappeared before its final state was observed"
                                        .into(),
                            }));
                        }
                        Err(e) => {
                            self.finished = true;
                            return Some(Err(e));
                        }
                    }
                }
            }
        }
    }

    /// Applies ordering / dedup rules; returns the update to deliver, if any.
    fn accept(&mut self, op: Operation) -> Option<Operation> {
        let nanos = op.updated_at_nanos();
        if let (Some(prev), Some(new)) = (self.last_nanos, nanos) {
            if new < prev {
                return None;
            }
        }
        if let Some(last) = &self.last {
            if last.status_code == op.status_code
                && last.metadata == op.metadata
                && last.updated_at == op.updated_at
            {
                return None;
            }
            // A final state never follows a non-final one backwards in time, but a
            // non-final one must never follow a final one.
            if last.is_final() {
                return None;
            }
        }
        if nanos.is_some() {
            self.last_nanos = nanos;
        }
        if op.is_final() {
            self.finished = true;
        }
        self.last = Some(op.clone());
        Some(op)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> Client {
        Client::new("/nonexistent/lxd.socket")
    }

    fn op(code: i64, at: &str, progress: &str) -> Operation {
        Operation {
            id: "op1".into(),
            status_code: code,
            updated_at: at.into(),
            metadata: serde_json::json!({ "download_progress": progress }),
            ..Default::default()
        }
    }

    #[test]
    fn lifecycle_instance_name_rules() {
        let ev = |s: &str| LifecycleEvent {
            action: "instance-stopped".into(),
            source: s.into(),
            ..Default::default()
        };
        assert_eq!(
            ev("/1.0/instances/penguin").instance_name(),
            Some("penguin")
        );
        assert_eq!(
            ev("/1.0/containers/penguin?project=default").instance_name(),
            Some("penguin")
        );
        assert_eq!(
            ev("/1.0/instances/penguin/snapshots/s").instance_name(),
            None
        );
        assert_eq!(ev("/1.0/instances/").instance_name(), None);
        assert_eq!(ev("/1.0/images/abc").instance_name(), None);
    }

    #[test]
    fn event_parse_operation_and_lifecycle() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/event_operation.json"
        ))
        .unwrap();
        let ev = Event::parse(&text).unwrap();
        let op = ev.operation().expect("operation event");
        assert_eq!(op.status_code, 103);
        assert_eq!(
            op.metadata_str("download_progress"),
            Some("rootfs: 23% (358.09kB/s)")
        );
        assert!(ev.lifecycle().is_none());
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/event_lifecycle.json"
        ))
        .unwrap();
        let ev = Event::parse(&text).unwrap();
        let lc = ev.lifecycle().expect("lifecycle event");
        assert_eq!(lc.action, "instance-shutdown");
        assert_eq!(lc.instance_name(), Some("penguin"));
        assert!(Event::parse("{not json").is_err());
    }

    #[tokio::test]
    async fn follow_delivers_already_final_initial_once() {
        let c = client();
        let mut f = c.follow_operation(
            None,
            op(200, "2023-01-01T00:00:01Z", ""),
            Duration::from_secs(5),
        );
        let first = f.next().await.unwrap().unwrap();
        assert_eq!(first.status_code, 200);
        assert!(f.next().await.is_none());
        assert!(f.next().await.is_none());
    }

    #[test]
    fn accept_drops_duplicates_older_and_post_final_updates() {
        let c = client();
        let mut f = c.follow_operation(
            None,
            op(103, "2023-01-01T00:00:01Z", "a"),
            Duration::from_secs(5),
        );
        let initial = f.pending_initial.take().unwrap();
        assert!(f.accept(initial.clone()).is_some());
        assert!(f.accept(initial).is_none(), "duplicate");
        assert!(
            f.accept(op(103, "2023-01-01T00:00:00.5Z", "older"))
                .is_none(),
            "older than delivered"
        );
        assert!(f.accept(op(103, "2023-01-01T00:00:02Z", "b")).is_some());
        assert!(f.accept(op(200, "2023-01-01T00:00:03Z", "c")).is_some());
        assert!(f.finished);
        assert!(f.accept(op(200, "2023-01-01T00:00:04Z", "d")).is_none());
    }

    #[tokio::test]
    async fn follow_without_lxd_reports_error_once() {
        let c = client();
        let mut f = c
            .follow_operation(
                None,
                op(103, "2023-01-01T00:00:01Z", "x"),
                Duration::from_secs(5),
            )
            .with_poll_interval(Duration::from_millis(10));
        assert!(f.next().await.unwrap().is_ok());
        let err = f.next().await.unwrap().unwrap_err();
        assert!(err.is_not_running(), "{err}");
        assert!(f.next().await.is_none());
    }
}
