//! LXD lifecycle events (§9.1): `ContainerShutdown` reports and USB bookkeeping on deletion.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crostini_lxd::{Client, EventStream, EventType, LifecycleEvent};
use crostini_proto::vm_tools::tremplin::ContainerShutdownInfo;
use tokio::sync::mpsc;

use crate::daemon::Daemon;

/// What a lifecycle event means for tremplin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LifecycleAction {
    /// `instance-shutdown` / `instance-stopped`: report `ContainerShutdown`.
    Shutdown(String),
    /// `instance-deleted`: forget USB attachments.
    Deleted(String),
}

/// Classifies a lifecycle event (pure).
pub fn classify(event: &LifecycleEvent) -> Option<LifecycleAction> {
    let name = event.instance_name()?.to_string();
    match event.action.as_str() {
        "instance-shutdown" | "instance-stopped" => Some(LifecycleAction::Shutdown(name)),
        "instance-deleted" => Some(LifecycleAction::Deleted(name)),
        _ => None,
    }
}

/// The last lifecycle event seen for each container (`"<action> at <timestamp>"`).
#[derive(Debug, Default, Clone)]
pub struct LastLifecycle(Arc<Mutex<HashMap<String, String>>>);

/// Containers remembered by [`LastLifecycle`]; past this the map starts over.
const MAX_REMEMBERED: usize = 1024;

impl LastLifecycle {
    pub fn record(&self, name: &str, event: &LifecycleEvent, timestamp: &str) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_REMEMBERED && !map.contains_key(name) {
            map.clear();
        }
        let when = if timestamp.is_empty() {
            "an unknown time"
        } else {
            timestamp
        };
        map.insert(name.to_string(), format!("{} at {when}", event.action));
    }

    pub fn get(&self, name: &str) -> Option<String> {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.get(name).cloned()
    }
}

impl Daemon {
    /// Subscribes to lifecycle events (before returning, so nothing after StartLxd is missed)
    /// and starts the event and listening-port loops.
    pub(crate) async fn start_watchers(self: &Arc<Self>, client: Client) {
        let first = match client.events(&[EventType::Lifecycle]).await {
            Ok(stream) => Some(stream),
            Err(e) => {
                tracing::warn!("cannot subscribe to LXD lifecycle events yet: {e}");
                None
            }
        };
        let (tx, mut rx) = mpsc::unbounded_channel::<LifecycleAction>();
        let daemon = self.clone();
        // Reports are sent in order by one task, so the event reader never waits on the host.
        self.keep_task(tokio::spawn(async move {
            while let Some(action) = rx.recv().await {
                daemon.handle_lifecycle(action).await;
            }
        }));
        let reader_client = client.clone();
        let last = self.last_lifecycle.clone();
        self.keep_task(tokio::spawn(event_loop(reader_client, first, tx, last)));
        let daemon = self.clone();
        self.keep_task(tokio::spawn(async move { daemon.ports_loop().await }));
        self.start_usb();
    }

    async fn handle_lifecycle(&self, action: LifecycleAction) {
        match action {
            LifecycleAction::Shutdown(name) => {
                tracing::info!("container {name} shut down");
                let _ = self
                    .listener
                    .container_shutdown(ContainerShutdownInfo {
                        container_name: name,
                    })
                    .await;
            }
            LifecycleAction::Deleted(name) => {
                self.usb_container_deleted(&name).await;
            }
        }
    }
}

/// Reads events forever, resubscribing (every second) when the stream ends.
async fn event_loop(
    client: Client,
    mut stream: Option<EventStream>,
    tx: mpsc::UnboundedSender<LifecycleAction>,
    last: LastLifecycle,
) {
    loop {
        let Some(events) = stream.as_mut() else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            stream = client.events(&[EventType::Lifecycle]).await.ok();
            if stream.is_some() {
                tracing::info!("subscribed to LXD lifecycle events");
            }
            continue;
        };
        match events.next().await {
            Some(Ok(event)) => {
                let lifecycle = event.lifecycle();
                if let Some((l, name)) = lifecycle
                    .as_ref()
                    .and_then(|l| Some((l, l.instance_name()?)))
                {
                    last.record(name, l, &event.timestamp);
                }
                if let Some(action) = lifecycle.as_ref().and_then(classify) {
                    if tx.send(action).is_err() {
                        return;
                    }
                }
            }
            Some(Err(e)) => tracing::debug!("undecodable LXD event: {e}"),
            None => {
                tracing::warn!("LXD event stream ended; resubscribing");
                stream = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(action: &str, source: &str) -> LifecycleEvent {
        LifecycleEvent {
            action: action.into(),
            source: source.into(),
            ..Default::default()
        }
    }

    #[test]
    fn classification_follows_spec() {
        assert_eq!(
            classify(&ev("instance-shutdown", "/1.0/instances/penguin")),
            Some(LifecycleAction::Shutdown("penguin".into()))
        );
        assert_eq!(
            classify(&ev(
                "instance-stopped",
                "/1.0/containers/penguin?project=default"
            )),
            Some(LifecycleAction::Shutdown("penguin".into()))
        );
        assert_eq!(
            classify(&ev("instance-deleted", "/1.0/instances/x")),
            Some(LifecycleAction::Deleted("x".into()))
        );
        assert_eq!(classify(&ev("instance-started", "/1.0/instances/x")), None);
        assert_eq!(
            classify(&ev("instance-stopped", "/1.0/instances/x/snapshots/s")),
            None
        );
    }
}

#[cfg(test)]
mod liveness_tests {
    use super::*;
    use crostini_lxd::Liveness;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Defect 12c: an LXD that accepts the events websocket and then hangs without closing
    /// it is noticed by the ping deadline, and the loop subscribes again.
    #[tokio::test]
    async fn event_loop_resubscribes_after_a_silent_lxd() {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("unix.socket");
        let listener = tokio::net::UnixListener::bind(&socket).expect("bind");
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = connections.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let Ok(ws) = tokio_tungstenite::accept_async(s).await else {
                        return;
                    };
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    drop(ws.into_inner());
                });
            }
        });
        let client = Client::new(&socket).with_event_liveness(Liveness {
            ping_after: Duration::from_millis(100),
            deadline: Duration::from_millis(300),
        });
        let first = client.events(&[EventType::Lifecycle]).await.ok();
        assert!(first.is_some());
        let (tx, _rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(event_loop(client, first, tx, LastLifecycle::default()));
        // Each round: 300 ms deadline + 1 s resubscribe pause.
        let mut reconnected = false;
        for _ in 0..60 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if connections.load(Ordering::SeqCst) >= 3 {
                reconnected = true;
                break;
            }
        }
        task.abort();
        assert!(
            reconnected,
            "only {} subscriptions in 6 s",
            connections.load(Ordering::SeqCst)
        );
    }
}
