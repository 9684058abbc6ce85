use super::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tag {
    Apps,
    Mime,
}

const WITHIN: Duration = Duration::from_secs(1);

async fn next_tag(rx: &mut UnboundedReceiver<Tag>, within: Duration) -> Option<Tag> {
    tokio::time::timeout(within, rx.recv()).await.ok().flatten()
}

/// Waits until nothing more arrives for 150 ms.
async fn settle(rx: &mut UnboundedReceiver<Tag>) {
    while next_tag(rx, Duration::from_millis(150)).await.is_some() {}
}

async fn start(targets: Vec<WatchTarget<Tag>>) -> (WatcherHandle, UnboundedReceiver<Tag>) {
    let (tx, rx) = unbounded_channel();
    (spawn_watcher(targets, tx).await.unwrap(), rx)
}

fn apps(path: PathBuf) -> WatchTarget<Tag> {
    WatchTarget {
        path,
        recursive: true,
        tag: Tag::Apps,
    }
}

fn mime(path: PathBuf) -> WatchTarget<Tag> {
    WatchTarget {
        path,
        recursive: false,
        tag: Tag::Mime,
    }
}

#[tokio::test]
async fn new_file_in_existing_directory_is_reported() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("applications");
    fs::create_dir(&dir).unwrap();
    let (_w, mut rx) = start(vec![apps(dir.clone())]).await;
    fs::write(dir.join("new.desktop"), "x").unwrap();
    assert_eq!(next_tag(&mut rx, WITHIN).await, Some(Tag::Apps));
}

#[tokio::test]
async fn directory_created_after_start_is_reported_and_then_watched() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("home/.local/share/applications");
    let (_w, mut rx) = start(vec![apps(dir.clone())]).await;
    fs::create_dir_all(&dir).unwrap();
    assert_eq!(next_tag(&mut rx, WITHIN).await, Some(Tag::Apps));
    settle(&mut rx).await;
    fs::write(dir.join("late.desktop"), "x").unwrap();
    assert_eq!(next_tag(&mut rx, WITHIN).await, Some(Tag::Apps));
}

#[tokio::test]
async fn directory_created_step_by_step_is_followed_down() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("a/b/applications");
    let (_w, mut rx) = start(vec![apps(dir.clone())]).await;
    fs::create_dir(t.path().join("a")).unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    fs::create_dir(t.path().join("a/b")).unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(next_tag(&mut rx, Duration::from_millis(100)).await, None);
    fs::create_dir(&dir).unwrap();
    assert_eq!(next_tag(&mut rx, WITHIN).await, Some(Tag::Apps));
}

#[tokio::test]
async fn new_subdirectory_and_its_files_are_reported_for_recursive_targets() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("applications");
    fs::create_dir(&dir).unwrap();
    let (_w, mut rx) = start(vec![apps(dir.clone())]).await;
    fs::create_dir(dir.join("kde4")).unwrap();
    assert_eq!(next_tag(&mut rx, WITHIN).await, Some(Tag::Apps));
    settle(&mut rx).await;
    fs::write(dir.join("kde4/sub.desktop"), "x").unwrap();
    assert_eq!(next_tag(&mut rx, WITHIN).await, Some(Tag::Apps));
}

#[tokio::test]
async fn existing_subdirectories_are_watched_from_the_start() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("applications");
    fs::create_dir_all(dir.join("a/b")).unwrap();
    let (_w, mut rx) = start(vec![apps(dir.clone())]).await;
    fs::write(dir.join("a/b/deep.desktop"), "x").unwrap();
    assert_eq!(next_tag(&mut rx, WITHIN).await, Some(Tag::Apps));
}

#[tokio::test]
async fn non_recursive_targets_ignore_files_in_subdirectories() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("mime");
    fs::create_dir_all(dir.join("packages")).unwrap();
    let (_w, mut rx) = start(vec![mime(dir.clone())]).await;
    fs::write(dir.join("packages/x.xml"), "x").unwrap();
    assert_eq!(next_tag(&mut rx, Duration::from_millis(300)).await, None);
    fs::write(dir.join("mime.cache"), "x").unwrap();
    assert_eq!(next_tag(&mut rx, WITHIN).await, Some(Tag::Mime));
}

#[tokio::test]
async fn only_the_affected_target_is_reported() {
    let t = tempfile::tempdir().unwrap();
    let a = t.path().join("applications");
    let m = t.path().join("mime");
    fs::create_dir(&a).unwrap();
    fs::create_dir(&m).unwrap();
    let (_w, mut rx) = start(vec![apps(a.clone()), mime(m.clone())]).await;
    fs::write(m.join("mime.cache"), "x").unwrap();
    assert_eq!(next_tag(&mut rx, WITHIN).await, Some(Tag::Mime));
    settle(&mut rx).await;
    fs::write(a.join("x.desktop"), "x").unwrap();
    assert_eq!(next_tag(&mut rx, WITHIN).await, Some(Tag::Apps));
    assert_eq!(next_tag(&mut rx, Duration::from_millis(200)).await, None);
}

#[tokio::test]
async fn deleted_and_recreated_directory_is_reported_both_times() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("applications");
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("a.desktop"), "x").unwrap();
    let (_w, mut rx) = start(vec![apps(dir.clone())]).await;
    fs::remove_dir_all(&dir).unwrap();
    assert_eq!(next_tag(&mut rx, WITHIN).await, Some(Tag::Apps));
    settle(&mut rx).await;
    fs::create_dir(&dir).unwrap();
    assert_eq!(next_tag(&mut rx, WITHIN).await, Some(Tag::Apps));
    settle(&mut rx).await;
    fs::write(dir.join("b.desktop"), "x").unwrap();
    assert_eq!(next_tag(&mut rx, WITHIN).await, Some(Tag::Apps));
}

#[tokio::test]
async fn a_burst_of_changes_is_reported_in_few_messages() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("applications");
    fs::create_dir(&dir).unwrap();
    let (_w, mut rx) = start(vec![apps(dir.clone())]).await;
    for i in 0..500 {
        fs::write(dir.join(format!("{i}.desktop")), "x").unwrap();
    }
    let mut messages = 0;
    while next_tag(&mut rx, Duration::from_millis(300))
        .await
        .is_some()
    {
        messages += 1;
    }
    // 500 files produce >= 1500 kernel events; batching collapses them per read.
    assert!((1..500).contains(&messages), "{messages} messages");
}

#[test]
fn nearest_usable_ancestor_names_the_missing_child() {
    let t = tempfile::tempdir().unwrap();
    let (dir, next) = nearest_usable_ancestor(&t.path().join("x/y/z")).unwrap();
    assert_eq!(dir, t.path());
    assert_eq!(next, "x");
}

/// issue 9 #1: 800 nested directories cost ~8 s per sync with the old quadratic-search walk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tree_of_800_nested_directories_syncs_in_well_under_a_second() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("applications");
    nested(&dir, 800);
    let started = std::time::Instant::now();
    let (_w, mut rx) = start(vec![apps(dir.clone())]).await;
    let elapsed = started.elapsed();
    eprintln!("initial sync of 800 nested directories: {elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "sync took {elapsed:?}");
    fs::write(dir.join("d/d/d/new.desktop"), "x").unwrap();
    assert_eq!(
        next_tag(&mut rx, Duration::from_secs(5)).await,
        Some(Tag::Apps)
    );
}

/// `levels` nested directories `d/d/...` below `root`; returns the deepest.
fn nested(root: &Path, levels: usize) -> PathBuf {
    let mut deep = root.to_path_buf();
    for _ in 0..levels {
        deep.push("d");
    }
    fs::create_dir_all(&deep).unwrap();
    deep
}

/// issue 9 #1: the depth cap holds: level 32 is watched, level 33 and deeper are not.
#[tokio::test]
async fn recursive_watching_stops_at_the_depth_cap() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("applications");
    nested(&dir, 40);
    let (_w, mut rx) = start(vec![apps(dir.clone())]).await;
    let level = |n: usize| dir.join(["d"; 40][..n].join("/"));
    fs::write(level(40).join("deep.desktop"), "x").unwrap();
    fs::write(level(MAX_DEPTH + 1).join("deep.desktop"), "x").unwrap();
    assert_eq!(next_tag(&mut rx, Duration::from_millis(300)).await, None);
    fs::write(level(5).join("five.desktop"), "x").unwrap();
    assert_eq!(next_tag(&mut rx, WITHIN).await, Some(Tag::Apps));
    settle(&mut rx).await;
    fs::write(level(MAX_DEPTH).join("last.desktop"), "x").unwrap();
    assert_eq!(next_tag(&mut rx, WITHIN).await, Some(Tag::Apps));
}

#[test]
fn the_walk_reports_when_the_depth_cap_is_hit() {
    let t = tempfile::tempdir().unwrap();
    nested(t.path(), 4);
    let walk = subdirectories(t.path(), 4);
    assert_eq!((walk.dirs.len(), walk.capped), (5, false));
    let walk = subdirectories(t.path(), 3);
    assert_eq!((walk.dirs.len(), walk.capped), (4, true));
}

/// issue 9 #10, the rescan path itself: `IN_ATTRIB` on a subdirectory (chmod) of a recursive
/// target re-synchronises the watch set (it used to only report a change).
#[tokio::test]
async fn a_permission_change_on_a_subdirectory_triggers_a_resync() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("applications");
    fs::create_dir_all(dir.join("sub")).unwrap();
    let inotify = Inotify::init().unwrap();
    let mut state = WatchState {
        watches: inotify.watches(),
        targets: vec![apps(dir.clone()), mime(t.path().join("mime"))],
        by_wd: HashMap::new(),
        present: vec![false, false],
    };
    state.sync();
    let root_wd = state.watches.add(&dir, CONTENT_MASK).unwrap();
    let attrib = |name: Option<&str>, mask: EventMask| inotify::Event {
        wd: root_wd.clone(),
        mask,
        cookie: 0,
        name: name.map(OsString::from),
    };
    let run = |event: inotify::Event<OsString>| {
        let (mut changed, mut resync) = (Vec::new(), false);
        state.handle(&event, &mut changed, &mut resync);
        (changed, resync)
    };
    let dir_attrib = EventMask::ATTRIB | EventMask::ISDIR;
    assert_eq!(
        run(attrib(Some("sub"), dir_attrib)),
        (vec![Tag::Apps], true)
    );
    assert_eq!(run(attrib(None, dir_attrib)), (vec![Tag::Apps], true));
    // A file's attributes: a change, but the watch set stays.
    assert_eq!(
        run(attrib(Some("a.desktop"), EventMask::ATTRIB)),
        (vec![Tag::Apps], false)
    );
}

/// Root ignores directory permission bits, so a test about unreadable directories means
/// nothing as root: then the test re-runs itself (this test binary, this one test) as uid/gid
/// 65534 and returns `true` after checking that the child passed; unprivileged, it returns
/// `false` and the caller runs the scenario in-process.
fn rerun_unprivileged(test: &str) -> bool {
    if !nix::unistd::geteuid().is_root() {
        return false;
    }
    use std::os::unix::process::CommandExt;
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env("TMPDIR", "/tmp")
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "unprivileged run of {test} failed:\n{stdout}\n{stderr}"
    );
    true
}

/// issue 9 #10: a subdirectory unreadable at start is watched once it becomes readable.
#[tokio::test]
async fn a_subdirectory_unreadable_at_start_is_watched_once_readable() {
    if rerun_unprivileged(
        "watch::tests::a_subdirectory_unreadable_at_start_is_watched_once_readable",
    ) {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("applications");
    let locked = dir.join("locked");
    fs::create_dir_all(&locked).unwrap();
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o000)).unwrap();
    assert!(
        fs::read_dir(&locked).is_err(),
        "the test needs a really unreadable directory"
    );
    let (_w, mut rx) = start(vec![apps(dir.clone())]).await;
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(next_tag(&mut rx, WITHIN).await, Some(Tag::Apps));
    settle(&mut rx).await;
    fs::write(locked.join("new.desktop"), "x").unwrap();
    assert_eq!(next_tag(&mut rx, WITHIN).await, Some(Tag::Apps));
}

/// issue 9 #10: a target directory unreadable at start is reported and watched once readable.
#[tokio::test]
async fn a_target_unreadable_at_start_is_reported_and_watched_once_readable() {
    if rerun_unprivileged(
        "watch::tests::a_target_unreadable_at_start_is_reported_and_watched_once_readable",
    ) {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("applications");
    fs::create_dir_all(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o000)).unwrap();
    let (_w, mut rx) = start(vec![apps(dir.clone())]).await;
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(next_tag(&mut rx, WITHIN).await, Some(Tag::Apps));
    settle(&mut rx).await;
    fs::write(dir.join("new.desktop"), "x").unwrap();
    assert_eq!(next_tag(&mut rx, WITHIN).await, Some(Tag::Apps));
}
