use super::*;

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

struct Recorder(UnboundedSender<(std::time::Instant, String)>);

impl FileWatchSink for Recorder {
    fn triggered(&self, path: String) -> BoxFuture<'_, ()> {
        let _ = self.0.send((std::time::Instant::now(), path));
        Box::pin(async {})
    }
}

fn watches(
    home: &Path,
    window: Duration,
) -> (FileWatches, UnboundedReceiver<(std::time::Instant, String)>) {
    let (tx, rx) = unbounded_channel();
    (
        FileWatches::with_window(Some(home.to_path_buf()), Arc::new(Recorder(tx)), window),
        rx,
    )
}

async fn next(
    rx: &mut UnboundedReceiver<(std::time::Instant, String)>,
    within: Duration,
) -> Option<(std::time::Instant, String)> {
    tokio::time::timeout(within, rx.recv()).await.ok().flatten()
}

/// Lets the watcher task install its inotify watches before the test changes files.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(100)).await;
}

#[test]
fn resolve_rejects_absolute_and_parent_components() {
    let home = Path::new("/home/u");
    assert_eq!(resolve(home, "/abs"), Err(FileWatchError::InvalidPath));
    assert_eq!(resolve(home, "a/../b"), Err(FileWatchError::InvalidPath));
    assert_eq!(resolve(home, ".."), Err(FileWatchError::InvalidPath));
    // Lexical only: a name merely containing dots is fine.
    assert!(resolve(home, "a..b").is_ok());
}

#[test]
fn resolve_reports_path_relative_to_home() {
    let home = Path::new("/home/u");
    assert_eq!(
        resolve(home, "Downloads"),
        Ok((PathBuf::from("/home/u/Downloads"), "Downloads".to_string()))
    );
    assert_eq!(
        resolve(home, "./Downloads/"),
        Ok((PathBuf::from("/home/u/Downloads"), "Downloads".to_string()))
    );
    assert_eq!(
        resolve(home, ""),
        Ok((PathBuf::from("/home/u"), String::new()))
    );
    assert_eq!(
        resolve(home, "."),
        Ok((PathBuf::from("/home/u"), String::new()))
    );
}

/// garcon-host.md §19 hint 44: events at 0, 0.5, 1 and 5 s send at 0, 3 and 6 s.
#[test]
fn throttle_matches_the_spec_timeline() {
    let window = Duration::from_secs(3);
    let t0 = Instant::now();
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    let mut throttle = Throttle::default();
    let mut sends = Vec::new();

    assert_eq!(throttle.on_event(at(0), window), ThrottleAction::SendNow);
    sends.push(0);
    assert_eq!(
        throttle.on_event(at(500), window),
        ThrottleAction::ScheduleAt(at(3000))
    );
    assert_eq!(throttle.on_event(at(1000), window), ThrottleAction::Ignore);
    throttle.fired(at(3000));
    sends.push(3000);
    assert_eq!(
        throttle.on_event(at(5000), window),
        ThrottleAction::ScheduleAt(at(6000))
    );
    throttle.fired(at(6000));
    sends.push(6000);
    assert_eq!(sends, [0, 3000, 6000]);
    // Long after the last send, the next event goes out at once again.
    assert_eq!(
        throttle.on_event(at(20_000), window),
        ThrottleAction::SendNow
    );
}

#[tokio::test]
async fn add_and_remove_answer_like_upstream() {
    let home = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(home.path().join("w")).expect("mkdir");
    let (watches, _rx) = watches(home.path(), Duration::from_secs(3));
    assert_eq!(watches.add("w"), Ok(()));
    assert_eq!(watches.add("w"), Err(FileWatchError::AlreadyWatching));
    // A differently spelled key is another watch.
    assert_eq!(watches.add("w/"), Ok(()));
    assert_eq!(watches.add("/abs"), Err(FileWatchError::InvalidPath));
    assert_eq!(watches.add("a/../b"), Err(FileWatchError::InvalidPath));
    assert_eq!(watches.remove("w"), Ok(()));
    assert_eq!(watches.remove("w"), Err(FileWatchError::NotWatching));
    assert_eq!(watches.remove("never"), Err(FileWatchError::NotWatching));
}

#[tokio::test]
async fn no_home_is_a_failure() {
    let (tx, _rx) = unbounded_channel();
    let watches = FileWatches::new(None, Arc::new(Recorder(tx)));
    assert_eq!(watches.add("w"), Err(FileWatchError::NoHome));
}

/// garcon-service.md §8.6 with a 1 s window instead of 3 s.
#[tokio::test]
async fn direct_children_fire_throttled_grandchildren_do_not() {
    let window = Duration::from_secs(1);
    let home = tempfile::tempdir().expect("tempdir");
    let dir = home.path().join("w");
    std::fs::create_dir_all(dir.join("sub")).expect("mkdir");
    let (watches, mut rx) = watches(home.path(), window);
    watches.add("w").expect("add");
    settle().await;

    let start = std::time::Instant::now();
    std::fs::write(dir.join("f"), "x").expect("write");
    let (first_at, path) = next(&mut rx, Duration::from_secs(5)).await.expect("first");
    assert_eq!(path, "w");
    assert!(first_at - start < Duration::from_millis(500), "immediate");

    for i in 0..3 {
        std::fs::write(dir.join(format!("g{i}")), "y").expect("write");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (second_at, path) = next(&mut rx, Duration::from_secs(5)).await.expect("second");
    assert_eq!(path, "w");
    let gap = second_at - first_at;
    assert!(gap >= window - Duration::from_millis(50), "{gap:?}");
    assert!(gap < window + Duration::from_millis(600), "{gap:?}");
    assert!(
        next(&mut rx, window * 2).await.is_none(),
        "exactly one more"
    );

    std::fs::write(dir.join("sub").join("deep"), "z").expect("write deep");
    assert!(
        next(&mut rx, window * 2).await.is_none(),
        "grandchildren must not fire"
    );
}

#[tokio::test]
async fn missing_target_fires_when_created_and_when_deleted() {
    let window = Duration::from_millis(200);
    let home = tempfile::tempdir().expect("tempdir");
    let (watches, mut rx) = watches(home.path(), window);
    watches.add("later/dir").expect("add missing");
    settle().await;

    // An intermediate directory alone does not make the target appear.
    std::fs::create_dir(home.path().join("later")).expect("mkdir later");
    assert!(next(&mut rx, Duration::from_millis(500)).await.is_none());

    std::fs::create_dir(home.path().join("later/dir")).expect("mkdir target");
    let (_, path) = next(&mut rx, Duration::from_secs(5))
        .await
        .expect("created");
    assert_eq!(path, "later/dir");

    tokio::time::sleep(window * 2).await;
    std::fs::write(home.path().join("later/dir/f"), "x").expect("write in target");
    let (_, path) = next(&mut rx, Duration::from_secs(5)).await.expect("child");
    assert_eq!(path, "later/dir");

    tokio::time::sleep(window * 2).await;
    std::fs::remove_dir_all(home.path().join("later/dir")).expect("rm target");
    let (_, path) = next(&mut rx, Duration::from_secs(5))
        .await
        .expect("deleted");
    assert_eq!(path, "later/dir");

    tokio::time::sleep(window * 2).await;
    while next(&mut rx, Duration::from_millis(50)).await.is_some() {}
    std::fs::create_dir(home.path().join("later/dir")).expect("re-create");
    let (_, path) = next(&mut rx, Duration::from_secs(5))
        .await
        .expect("re-created");
    assert_eq!(path, "later/dir");
}

#[tokio::test]
async fn home_itself_reports_empty_path_and_removal_stops_events() {
    let window = Duration::from_millis(200);
    let home = tempfile::tempdir().expect("tempdir");
    let (watches, mut rx) = watches(home.path(), window);
    watches.add("").expect("add home");
    settle().await;
    std::fs::write(home.path().join("f"), "x").expect("write");
    let (_, path) = next(&mut rx, Duration::from_secs(5))
        .await
        .expect("home event");
    assert_eq!(path, "");

    tokio::time::sleep(window * 2).await;
    while next(&mut rx, Duration::from_millis(50)).await.is_some() {}
    watches.remove("").expect("remove");
    settle().await;
    std::fs::write(home.path().join("g"), "y").expect("write");
    assert!(next(&mut rx, Duration::from_millis(600)).await.is_none());
}

#[tokio::test]
async fn a_watched_regular_file_fires_when_written() {
    let home = tempfile::tempdir().expect("tempdir");
    std::fs::write(home.path().join("notes.txt"), "a").expect("write");
    let (watches, mut rx) = watches(home.path(), Duration::from_millis(200));
    watches.add("notes.txt").expect("add file");
    settle().await;
    std::fs::write(home.path().join("notes.txt"), "b").expect("rewrite");
    let (_, path) = next(&mut rx, Duration::from_secs(5))
        .await
        .expect("file event");
    assert_eq!(path, "notes.txt");
}
