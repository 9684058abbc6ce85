//! Defect 12c: an `/1.0/events` subscription notices an LXD that accepts and then goes
//! silent without closing the socket (ping + deadline), and a live but idle LXD that answers
//! pings keeps its subscription.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crostini_lxd::{Client, EventType, Liveness};
use futures::StreamExt;
use tokio::net::UnixListener;

const LIVENESS: Liveness = Liveness {
    ping_after: Duration::from_millis(200),
    deadline: Duration::from_millis(700),
};

/// Accepts websocket subscriptions and counts them; `answer_pings` decides whether the
/// server reads (tungstenite then answers pings) or goes silent after the handshake.
fn fake_events_server(socket: &Path, answer_pings: bool) -> Arc<AtomicUsize> {
    let listener = UnixListener::bind(socket).expect("bind");
    let count = Arc::new(AtomicUsize::new(0));
    let counter = count.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(s).await else {
                    return;
                };
                if answer_pings {
                    while let Some(Ok(_)) = ws.next().await {}
                } else {
                    // Hung LXD: keeps the socket open, never reads or writes again.
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    drop(ws);
                }
            });
        }
    });
    count
}

#[tokio::test]
async fn silent_lxd_is_detected_within_the_deadline_and_resubscribed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("unix.socket");
    let connections = fake_events_server(&socket, false);
    let client = Client::new(&socket).with_event_liveness(LIVENESS);
    for round in 1..=3 {
        let mut events = client
            .events(&[EventType::Lifecycle])
            .await
            .expect("subscribe");
        let started = Instant::now();
        let next = tokio::time::timeout(Duration::from_secs(5), events.next())
            .await
            .expect("a silent stream must end, not hang");
        assert!(next.is_none(), "round {round}: {next:?}");
        let took = started.elapsed();
        assert!(
            took >= LIVENESS.ping_after,
            "round {round}: gave up too early ({took:?})"
        );
        assert!(
            took < LIVENESS.deadline + Duration::from_millis(500),
            "round {round}: noticed only after {took:?}"
        );
        assert!(events.next().await.is_none(), "a dead stream stays dead");
        assert_eq!(connections.load(Ordering::SeqCst), round);
    }
}

#[tokio::test]
async fn idle_lxd_answering_pings_keeps_the_subscription() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("unix.socket");
    let connections = fake_events_server(&socket, true);
    let client = Client::new(&socket).with_event_liveness(LIVENESS);
    let mut events = client
        .events(&[EventType::Lifecycle])
        .await
        .expect("subscribe");
    let idle = tokio::time::timeout(LIVENESS.deadline * 4, events.next()).await;
    assert!(
        idle.is_err(),
        "stream ended although pongs arrived: {idle:?}"
    );
    assert_eq!(connections.load(Ordering::SeqCst), 1);
}
