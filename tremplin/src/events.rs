//! LXD lifecycle events (§9.1): `ContainerShutdown` reports and USB bookkeeping on deletion.

use std::sync::Arc;
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
        self.keep_task(tokio::spawn(event_loop(reader_client, first, tx)));
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
                if let Some(action) = event.lifecycle().as_ref().and_then(classify) {
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
