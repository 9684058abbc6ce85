use super::*;
use std::fs;
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

fn start(targets: Vec<WatchTarget<Tag>>) -> (WatcherHandle, UnboundedReceiver<Tag>) {
    let (tx, rx) = unbounded_channel();
    (spawn_watcher(targets, tx).unwrap(), rx)
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
    let (_w, mut rx) = start(vec![apps(dir.clone())]);
    fs::write(dir.join("new.desktop"), "x").unwrap();
    assert_eq!(next_tag(&mut rx, WITHIN).await, Some(Tag::Apps));
}

#[tokio::test]
async fn directory_created_after_start_is_reported_and_then_watched() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("home/.local/share/applications");
    let (_w, mut rx) = start(vec![apps(dir.clone())]);
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
    let (_w, mut rx) = start(vec![apps(dir.clone())]);
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
    let (_w, mut rx) = start(vec![apps(dir.clone())]);
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
    let (_w, mut rx) = start(vec![apps(dir.clone())]);
    fs::write(dir.join("a/b/deep.desktop"), "x").unwrap();
    assert_eq!(next_tag(&mut rx, WITHIN).await, Some(Tag::Apps));
}

#[tokio::test]
async fn non_recursive_targets_ignore_files_in_subdirectories() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("mime");
    fs::create_dir_all(dir.join("packages")).unwrap();
    let (_w, mut rx) = start(vec![mime(dir.clone())]);
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
    let (_w, mut rx) = start(vec![apps(a.clone()), mime(m.clone())]);
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
    let (_w, mut rx) = start(vec![apps(dir.clone())]);
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
    let (_w, mut rx) = start(vec![apps(dir.clone())]);
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
fn nearest_existing_ancestor_names_the_missing_child() {
    let t = tempfile::tempdir().unwrap();
    let (dir, next) = nearest_existing_ancestor(&t.path().join("x/y/z")).unwrap();
    assert_eq!(dir, t.path());
    assert_eq!(next, "x");
}
