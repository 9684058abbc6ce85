use super::*;
use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

const MIME_FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/mime");
const WITHIN: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Call {
    /// Desktop-file ids, sorted.
    Update(Vec<String>),
    Pending(u32),
    /// Number of mappings.
    Mime(usize),
}

struct FakeHost {
    calls: UnboundedSender<(Instant, Call)>,
    fail_updates: bool,
}

impl AppListHost for FakeHost {
    fn update_application_list(
        &self,
        applications: Vec<Application>,
    ) -> BoxFuture<'_, Result<(), HostCallError>> {
        let mut ids: Vec<String> = applications
            .into_iter()
            .map(|a| a.desktop_file_id)
            .collect();
        ids.sort();
        let _ = self.calls.send((Instant::now(), Call::Update(ids)));
        let fail = self.fail_updates;
        Box::pin(async move {
            if fail {
                Err("injected failure".into())
            } else {
                Ok(())
            }
        })
    }

    fn pending_update_application_list_calls(
        &self,
        count: u32,
    ) -> BoxFuture<'_, Result<(), HostCallError>> {
        let _ = self.calls.send((Instant::now(), Call::Pending(count)));
        Box::pin(async { Ok(()) })
    }

    fn update_mime_types(&self, m: MimeTypeMap) -> BoxFuture<'_, Result<(), HostCallError>> {
        let _ = self.calls.send((Instant::now(), Call::Mime(m.len())));
        Box::pin(async { Ok(()) })
    }
}

struct Env {
    _root: tempfile::TempDir,
    apps: PathBuf,
    user_apps: PathBuf,
    mime_dir: PathBuf,
}

fn env() -> Env {
    let root = tempfile::tempdir().unwrap();
    let apps = root.path().join("share/applications");
    let user_apps = root.path().join("home/.local/share/applications");
    let mime_dir = root.path().join("share/mime");
    fs::create_dir_all(&apps).unwrap();
    fs::create_dir_all(&mime_dir).unwrap();
    Env {
        apps,
        user_apps,
        mime_dir,
        _root: root,
    }
}

fn write_app(dir: &Path, id: &str) {
    fs::create_dir_all(dir).unwrap();
    fs::write(
        dir.join(format!("{id}.desktop")),
        format!("[Desktop Entry]\nType=Application\nName={id}\nExec={id}\n"),
    )
    .unwrap();
}

fn config(e: &Env) -> PublisherConfig {
    PublisherConfig {
        application_dirs: vec![e.apps.clone(), e.user_apps.clone()],
        filter: FilterContext::default(),
        packages: PackageLookupConfig::default(),
        mime: Some(MimeSources {
            format: crate::mime::MimeFormat::Cache,
            system_file: e.mime_dir.join("mime.cache"),
            user_file: None,
        }),
        debounce: DEFAULT_DEBOUNCE,
        max_wait: DEFAULT_MAX_WAIT,
        rpc_timeout: Duration::from_secs(5),
    }
}

fn install_mime_cache(e: &Env) {
    fs::copy(
        Path::new(MIME_FIXTURES).join("system/mime.cache"),
        e.mime_dir.join("mime.cache"),
    )
    .unwrap();
}

fn ids(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

struct Recorder {
    rx: UnboundedReceiver<(Instant, Call)>,
}

impl Recorder {
    async fn next(&mut self) -> Option<(Instant, Call)> {
        tokio::time::timeout(WITHIN, self.rx.recv())
            .await
            .ok()
            .flatten()
    }

    async fn expect(&mut self, want: Call) -> Instant {
        match self.next().await {
            Some((at, call)) if call == want => at,
            other => panic!("expected {want:?} within {WITHIN:?}, got {other:?}"),
        }
    }

    async fn quiet(&mut self, for_: Duration) -> Option<Call> {
        tokio::time::timeout(for_, self.rx.recv())
            .await
            .ok()
            .flatten()
            .map(|(_, c)| c)
    }
}

fn start(config: PublisherConfig, fail_updates: bool) -> (AppPublisher, Recorder) {
    let (tx, rx) = unbounded_channel();
    let host = Arc::new(FakeHost {
        calls: tx,
        fail_updates,
    });
    (AppPublisher::spawn(config, host), Recorder { rx })
}

const MIME_FIXTURE_LEN: usize = 6;

#[tokio::test]
async fn startup_sends_list_then_pending_zero_then_mime() {
    let e = env();
    for id in ["a", "b", "c"] {
        write_app(&e.apps, id);
    }
    install_mime_cache(&e);
    let (_p, mut calls) = start(config(&e), false);
    calls.expect(Call::Update(ids(&["a", "b", "c"]))).await;
    calls.expect(Call::Pending(0)).await;
    calls.expect(Call::Mime(MIME_FIXTURE_LEN)).await;
    assert_eq!(calls.quiet(Duration::from_millis(300)).await, None);
}

#[tokio::test]
async fn an_empty_tree_sends_an_empty_list() {
    let e = env();
    let (_p, mut calls) = start(config(&e), false);
    calls.expect(Call::Update(vec![])).await;
    calls.expect(Call::Pending(0)).await;
}

#[tokio::test]
async fn new_desktop_file_is_published_within_500_ms() {
    let e = env();
    write_app(&e.apps, "a");
    let (_p, mut calls) = start(config(&e), false);
    calls.expect(Call::Update(ids(&["a"]))).await;
    calls.expect(Call::Pending(0)).await;
    let changed = Instant::now();
    write_app(&e.apps, "b");
    calls.expect(Call::Pending(1)).await;
    let updated = calls.expect(Call::Update(ids(&["a", "b"]))).await;
    calls.expect(Call::Pending(0)).await;
    let latency = updated - changed;
    println!("change-to-update latency: {latency:?}");
    assert!(latency < Duration::from_millis(500), "{latency:?}");
}

#[tokio::test]
async fn directory_created_after_start_is_published_within_one_second() {
    let e = env();
    let (_p, mut calls) = start(config(&e), false);
    calls.expect(Call::Update(vec![])).await;
    calls.expect(Call::Pending(0)).await;
    let changed = Instant::now();
    write_app(&e.user_apps, "late");
    calls.expect(Call::Pending(1)).await;
    // The directory may appear before the file: wait for the list that has the app.
    loop {
        match calls.next().await {
            Some((at, Call::Update(list))) if list == ids(&["late"]) => {
                assert!(at - changed < WITHIN);
                break;
            }
            Some((_, Call::Update(list))) => assert!(list.is_empty(), "{list:?}"),
            Some((_, Call::Pending(_))) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_continuous_burst_still_publishes_during_the_burst_and_right_after_it() {
    let e = env();
    let (_p, mut calls) = start(config(&e), false);
    calls.expect(Call::Update(vec![])).await;
    calls.expect(Call::Pending(0)).await;
    let burst_start = Instant::now();
    let mut last_write = burst_start;
    for i in 0..20 {
        write_app(&e.apps, &format!("app{i:02}"));
        last_write = Instant::now();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let all: Vec<String> = (0..20).map(|i| format!("app{i:02}")).collect();
    let mut updates_during_burst = 0;
    let final_at = loop {
        match calls.next().await {
            Some((at, Call::Update(list))) => {
                if at < last_write {
                    updates_during_burst += 1;
                }
                if list == all {
                    break at;
                }
            }
            Some((_, Call::Pending(_))) => {}
            other => panic!("unexpected {other:?}"),
        }
    };
    // The 300 ms cap forces builds during a 1 s burst; a pure sliding debounce would have none.
    assert!(
        updates_during_burst >= 2,
        "{updates_during_burst} updates during the burst"
    );
    let after = final_at.saturating_duration_since(last_write);
    println!("burst: {updates_during_burst} updates during it, final list {after:?} after the last write");
    assert!(after < Duration::from_millis(500), "{after:?}");
}

struct SlowLookup {
    delay: Duration,
    calls: Arc<AtomicUsize>,
}

impl PackageIdLookup for SlowLookup {
    fn package_id<'a>(&'a self, p: &'a Path) -> BoxFuture<'a, Option<String>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            tokio::time::sleep(self.delay).await;
            let stem = p.file_stem()?.to_string_lossy().into_owned();
            Some(format!("{stem};1.0;all;test"))
        })
    }
}

#[tokio::test]
async fn a_change_during_a_slow_build_counts_two_pending_and_rebuilds_after() {
    let e = env();
    write_app(&e.apps, "a");
    let mut cfg = config(&e);
    cfg.mime = None;
    cfg.packages = PackageLookupConfig {
        lookup: Arc::new(SlowLookup {
            delay: Duration::from_millis(400),
            calls: Arc::default(),
        }),
        concurrency: 1,
        timeout: Duration::from_secs(5),
    };
    let (_p, mut calls) = start(cfg, false);
    tokio::time::sleep(Duration::from_millis(100)).await;
    write_app(&e.apps, "b");
    calls.expect(Call::Pending(2)).await;
    calls.expect(Call::Update(ids(&["a"]))).await;
    calls.expect(Call::Pending(1)).await;
    calls.expect(Call::Update(ids(&["a", "b"]))).await;
    calls.expect(Call::Pending(0)).await;
    assert_eq!(calls.quiet(Duration::from_millis(300)).await, None);
}

#[tokio::test]
async fn package_ids_are_cached_until_the_file_changes() {
    let e = env();
    write_app(&e.apps, "a");
    let lookups = Arc::new(AtomicUsize::new(0));
    let mut cfg = config(&e);
    cfg.mime = None;
    cfg.packages.lookup = Arc::new(SlowLookup {
        delay: Duration::ZERO,
        calls: lookups.clone(),
    });
    let (_p, mut calls) = start(cfg, false);
    calls.expect(Call::Update(ids(&["a"]))).await;
    calls.expect(Call::Pending(0)).await;
    assert_eq!(lookups.load(Ordering::SeqCst), 1);
    fs::write(e.apps.join(".garcon_trigger"), "").unwrap();
    calls.expect(Call::Pending(1)).await;
    calls.expect(Call::Update(ids(&["a"]))).await;
    calls.expect(Call::Pending(0)).await;
    assert_eq!(
        lookups.load(Ordering::SeqCst),
        1,
        "unchanged file looked up again"
    );
    fs::remove_file(e.apps.join("a.desktop")).unwrap();
    write_app(&e.apps, "a");
    calls.expect(Call::Pending(1)).await;
    calls.expect(Call::Update(ids(&["a"]))).await;
    assert_eq!(
        lookups.load(Ordering::SeqCst),
        2,
        "replaced file not looked up"
    );
}

#[tokio::test]
async fn resend_repeats_the_last_list_pending_and_mime() {
    let e = env();
    write_app(&e.apps, "a");
    install_mime_cache(&e);
    let (p, mut calls) = start(config(&e), false);
    calls.expect(Call::Update(ids(&["a"]))).await;
    calls.expect(Call::Pending(0)).await;
    calls.expect(Call::Mime(MIME_FIXTURE_LEN)).await;
    p.resend();
    calls.expect(Call::Update(ids(&["a"]))).await;
    calls.expect(Call::Pending(0)).await;
    calls.expect(Call::Mime(MIME_FIXTURE_LEN)).await;
}

#[tokio::test]
async fn no_system_mime_cache_means_no_mime_call_until_one_appears() {
    let e = env();
    let (_p, mut calls) = start(config(&e), false);
    calls.expect(Call::Update(vec![])).await;
    calls.expect(Call::Pending(0)).await;
    assert_eq!(calls.quiet(Duration::from_millis(300)).await, None);
    install_mime_cache(&e);
    calls.expect(Call::Mime(MIME_FIXTURE_LEN)).await;
}

#[tokio::test]
async fn a_corrupt_system_mime_cache_sends_nothing() {
    let e = env();
    fs::write(e.mime_dir.join("mime.cache"), [0u8; 64]).unwrap();
    let (_p, mut calls) = start(config(&e), false);
    calls.expect(Call::Update(vec![])).await;
    calls.expect(Call::Pending(0)).await;
    assert_eq!(calls.quiet(Duration::from_millis(300)).await, None);
}

#[tokio::test]
async fn host_failures_do_not_stop_the_state_machine() {
    let e = env();
    let (_p, mut calls) = start(config(&e), true);
    calls.expect(Call::Update(vec![])).await;
    calls.expect(Call::Pending(0)).await;
    write_app(&e.apps, "a");
    calls.expect(Call::Pending(1)).await;
    calls.expect(Call::Update(ids(&["a"]))).await;
    calls.expect(Call::Pending(0)).await;
}

#[test]
fn window_extends_with_each_event_but_not_past_the_cap() {
    let t0 = Instant::now();
    let d = Duration::from_millis(100);
    let cap = Duration::from_millis(300);
    let mut w = Window::open(t0, d);
    assert_eq!(w.deadline, t0 + d);
    w.extend(t0 + Duration::from_millis(50), d, cap);
    assert_eq!(w.deadline, t0 + Duration::from_millis(150));
    w.extend(t0 + Duration::from_millis(280), d, cap);
    assert_eq!(w.deadline, t0 + cap);
}

/// A host whose link behaves like `HostClient`'s: a failed call marks it down, a successful
/// one after that marks it up and counts a reconnect.
struct LinkedHost {
    calls: UnboundedSender<(Instant, Call)>,
    fail: Arc<std::sync::atomic::AtomicBool>,
    link: Arc<watch::Sender<LinkStatus>>,
}

impl LinkedHost {
    fn outcome(&self) -> Result<(), HostCallError> {
        if self.fail.load(Ordering::SeqCst) {
            self.link
                .send_if_modified(|s| !std::mem::replace(&mut s.down, true));
            Err("unavailable".into())
        } else {
            self.link.send_if_modified(|s| {
                let was_down = std::mem::replace(&mut s.down, false);
                s.reconnects += u64::from(was_down);
                was_down
            });
            Ok(())
        }
    }
}

impl AppListHost for LinkedHost {
    fn update_application_list(
        &self,
        applications: Vec<Application>,
    ) -> BoxFuture<'_, Result<(), HostCallError>> {
        let mut ids: Vec<String> = applications
            .into_iter()
            .map(|a| a.desktop_file_id)
            .collect();
        ids.sort();
        let _ = self.calls.send((Instant::now(), Call::Update(ids)));
        let outcome = self.outcome();
        Box::pin(async move { outcome })
    }

    fn pending_update_application_list_calls(
        &self,
        count: u32,
    ) -> BoxFuture<'_, Result<(), HostCallError>> {
        let _ = self.calls.send((Instant::now(), Call::Pending(count)));
        let outcome = self.outcome();
        Box::pin(async move { outcome })
    }

    fn update_mime_types(&self, m: MimeTypeMap) -> BoxFuture<'_, Result<(), HostCallError>> {
        let _ = self.calls.send((Instant::now(), Call::Mime(m.len())));
        let outcome = self.outcome();
        Box::pin(async move { outcome })
    }
}

#[tokio::test]
async fn while_the_host_is_down_the_list_is_retried_with_backoff_then_resent_once() {
    let e = env();
    write_app(&e.apps, "a");
    let mut config = config(&e);
    config.mime = None;
    let (tx, rx) = unbounded_channel();
    let fail = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let link = Arc::new(watch::Sender::new(LinkStatus::default()));
    let host = Arc::new(LinkedHost {
        calls: tx,
        fail: fail.clone(),
        link: link.clone(),
    });
    let _p = AppPublisher::spawn_linked(config, host, link.subscribe());
    let mut calls = Recorder { rx };
    calls.expect(Call::Update(ids(&["a"]))).await;
    calls.expect(Call::Pending(0)).await;

    // The connection drops (no call failed yet): retries start, backing off while they fail.
    fail.store(true, Ordering::SeqCst);
    let down = Instant::now();
    link.send_modify(|s| s.down = true);
    let first = calls.expect(Call::Update(ids(&["a"]))).await;
    let second = calls.expect(Call::Update(ids(&["a"]))).await;
    let third = tokio::time::timeout(Duration::from_secs(3), calls.rx.recv())
        .await
        .expect("third retry")
        .expect("call");
    assert_eq!(third.1, Call::Update(ids(&["a"])));
    assert!(first - down >= RETRY_INITIAL, "{:?}", first - down);
    assert!(second - first >= RETRY_INITIAL * 2, "{:?}", second - first);
    assert!(
        third.0 - second >= RETRY_INITIAL * 4,
        "{:?}",
        third.0 - second
    );

    // The host is back: the next retry delivers list then Pending, and the reconnect it caused
    // does not trigger a second resend.
    fail.store(false, Ordering::SeqCst);
    let back = tokio::time::timeout(Duration::from_secs(3), calls.rx.recv())
        .await
        .expect("retry after the host came back")
        .expect("call");
    assert_eq!(back.1, Call::Update(ids(&["a"])));
    calls.expect(Call::Pending(0)).await;
    assert_eq!(calls.quiet(Duration::from_millis(1500)).await, None);
    assert_eq!(
        *link.borrow(),
        LinkStatus {
            down: false,
            reconnects: 1
        }
    );

    // A reconnect seen by another call (the link went down and up in between) resends at once.
    link.send_modify(|s| s.reconnects += 1);
    calls.expect(Call::Update(ids(&["a"]))).await;
    calls.expect(Call::Pending(0)).await;
    assert_eq!(calls.quiet(Duration::from_millis(300)).await, None);
}

#[tokio::test]
async fn without_a_link_nothing_is_retried() {
    let e = env();
    write_app(&e.apps, "a");
    let (_p, mut calls) = start(config(&e), true);
    calls.expect(Call::Update(ids(&["a"]))).await;
    calls.expect(Call::Pending(0)).await;
    // No MIME cache in this tree; a failed list is not retried without a link.
    assert_eq!(calls.quiet(Duration::from_millis(800)).await, None);
}

/// issue 9 #5: desktop files that together push the list past the host's 4 MiB limit (five of
/// ~0.9 MB each) no longer block publishing: the normal apps reach the host.
#[tokio::test]
async fn oversized_entries_do_not_block_the_list() {
    let e = env();
    write_app(&e.apps, "normal");
    let names: String = (0..900)
        .map(|i| format!("Name[l{i:03}]={}\n", "n".repeat(1024)))
        .collect();
    for i in 0..5 {
        fs::write(
            e.apps.join(format!("big{i}.desktop")),
            format!("[Desktop Entry]\nType=Application\nName=big\nExec=big\n{names}"),
        )
        .unwrap();
    }
    let (_p, mut calls) = start(config(&e), false);
    calls.expect(Call::Update(ids(&["normal"]))).await;
}
