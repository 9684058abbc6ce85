//! App-list benchmarks.
//!
//! * `app_list/raw_read_2000` vs `app_list/build_2000`: reading 2,000 generated desktop files
//!   versus a full build (walk, parse, de-duplicate, filter, map to proto) of the same files.
//!   After criterion's report the build/read ratio is printed.
//! * `change_to_update/*`: time from writing a new desktop file to the host receiving the
//!   `UpdateApplicationList` that contains it, through the real inotify watcher and publisher
//!   (default 100 ms debounce), with an empty tree and with the 2,000-file tree.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion};
use crostini_proto::container::Application;
use futures::future::BoxFuture;
use garcon::app_publisher::{AppListHost, AppPublisher, HostCallError, PublisherConfig};
use garcon::apps::{
    build_application_list, desktop_files_under, FilterContext, PackageLookupConfig,
};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

const FILES: usize = 2000;
const LOCALES: [&str; 30] = [
    "ar", "bg", "ca", "cs", "da", "de", "el", "en_GB", "es", "et", "fi", "fr", "he", "hu", "id",
    "it", "ja", "ko", "lt", "nl", "pl", "pt", "pt_BR", "ro", "ru", "sk", "sv", "tr", "uk", "zh_CN",
];

/// A realistic desktop file (~4 KiB: 30 translations of Name, Comment, Keywords).
fn desktop_file(i: usize) -> String {
    let mut s = String::from("[Desktop Entry]\nType=Application\n");
    s.push_str(&format!("Name=Application {i}\n"));
    s.push_str(&format!("Comment=Does useful thing number {i} for you\n"));
    s.push_str("Keywords=tool;utility;generated;\n");
    for l in LOCALES {
        s.push_str(&format!("Name[{l}]=Application {i} ({l})\n"));
        s.push_str(&format!("Comment[{l}]=Localized comment {i} in {l}\n"));
        s.push_str(&format!("Keywords[{l}]=kw-{l};tool-{l};\n"));
    }
    s.push_str(&format!(
        "Exec=/usr/bin/app-{i} --flag %U\nIcon=app-{i}\nTerminal=false\n\
         Categories=Utility;\nMimeType=text/x-app{i};application/x-app{i};\n\
         StartupNotify=true\nStartupWMClass=App{i}\n\n[Desktop Action new]\nName=New\nExec=app-{i} --new\n"
    ));
    s
}

/// Writes `FILES` desktop files (every tenth in a subdirectory) under `root/applications`.
fn generate(root: &Path) -> PathBuf {
    let apps = root.join("applications");
    for i in 0..FILES {
        let dir = if i % 10 == 0 {
            apps.join(format!("vendor{}", i % 7))
        } else {
            apps.clone()
        };
        std::fs::create_dir_all(&dir).expect("create bench dir");
        std::fs::write(dir.join(format!("app{i}.desktop")), desktop_file(i)).expect("write file");
    }
    apps
}

fn read_all(paths: &[PathBuf]) -> usize {
    paths
        .iter()
        .map(|p| std::fs::read(p).expect("read").len())
        .sum()
}

fn build(rt: &tokio::runtime::Runtime, dirs: &[PathBuf]) -> usize {
    let packages = PackageLookupConfig::default();
    rt.block_on(build_application_list(
        dirs.to_vec(),
        FilterContext::default(),
        &packages,
    ))
    .expect("build")
    .0
    .len()
}

fn bench_build(c: &mut Criterion, rt: &tokio::runtime::Runtime, apps: &Path) {
    let paths = desktop_files_under(apps);
    assert_eq!(paths.len(), FILES);
    let dirs = vec![apps.to_path_buf()];
    assert_eq!(build(rt, &dirs), FILES);
    let mut group = c.benchmark_group("app_list");
    group.sample_size(20);
    group.bench_function("raw_read_2000", |b| b.iter(|| read_all(&paths)));
    group.bench_function("build_2000", |b| b.iter(|| build(rt, &dirs)));
    group.finish();
}

/// Median of `runs` timings of `f`.
fn median(runs: usize, mut f: impl FnMut()) -> Duration {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    times.sort();
    times[runs / 2]
}

fn print_ratio(rt: &tokio::runtime::Runtime, apps: &Path) {
    let paths = desktop_files_under(apps);
    let dirs = vec![apps.to_path_buf()];
    let texts: Vec<String> = paths
        .iter()
        .map(|p| std::fs::read_to_string(p).expect("read"))
        .collect();
    let read = median(15, || {
        read_all(&paths);
    });
    let parse = median(15, || {
        for t in &texts {
            let _ = garcon::desktop::DesktopEntry::parse_text(t);
        }
    });
    let built = median(15, || {
        build(rt, &dirs);
    });
    println!(
        "app_list medians for {FILES} files: raw read {read:?}, parse from memory {parse:?}, \
         full build {built:?}; build/read ratio = {:.2}x",
        built.as_secs_f64() / read.as_secs_f64()
    );
}

struct ChannelHost {
    updates: UnboundedSender<Vec<Application>>,
}

impl AppListHost for ChannelHost {
    fn update_application_list(
        &self,
        applications: Vec<Application>,
    ) -> BoxFuture<'_, Result<(), HostCallError>> {
        let _ = self.updates.send(applications);
        Box::pin(async { Ok(()) })
    }
    fn pending_update_application_list_calls(
        &self,
        _count: u32,
    ) -> BoxFuture<'_, Result<(), HostCallError>> {
        Box::pin(async { Ok(()) })
    }
    fn update_mime_types(
        &self,
        _mappings: HashMap<String, String>,
    ) -> BoxFuture<'_, Result<(), HostCallError>> {
        Box::pin(async { Ok(()) })
    }
}

/// Time from writing a new file to the list containing it.
async fn one_change(
    apps: &Path,
    n: usize,
    updates: &mut UnboundedReceiver<Vec<Application>>,
) -> Duration {
    let id = format!("latency{n}");
    let start = Instant::now();
    std::fs::write(apps.join(format!("{id}.desktop")), desktop_file(n)).expect("write");
    loop {
        let list = tokio::time::timeout(Duration::from_secs(5), updates.recv())
            .await
            .expect("update within 5 s")
            .expect("publisher running");
        if list.iter().any(|a| a.desktop_file_id == id) {
            return start.elapsed();
        }
    }
}

fn bench_latency(c: &mut Criterion, rt: &tokio::runtime::Runtime, name: &str, apps: &Path) {
    let (tx, mut updates) = unbounded_channel();
    let mut config = PublisherConfig::from_env(Arc::new(garcon::apps::NoPackageLookup));
    config.application_dirs = vec![apps.to_path_buf()];
    config.mime = None;
    let _publisher = rt.block_on(async {
        let p = AppPublisher::spawn(config, Arc::new(ChannelHost { updates: tx }));
        updates.recv().await.expect("initial list");
        p
    });
    let mut n = 1_000_000;
    let mut group = c.benchmark_group("change_to_update");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(4));
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    n += 1;
                    total += one_change(apps, n, &mut updates).await;
                }
                total
            })
        })
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let big = tempfile::tempdir().expect("tempdir");
    let apps = generate(big.path());
    bench_build(c, &rt, &apps);
    print_ratio(&rt, &apps);
    let small = tempfile::tempdir().expect("tempdir");
    let empty_apps = small.path().join("applications");
    std::fs::create_dir_all(&empty_apps).expect("mkdir");
    bench_latency(c, &rt, "empty_tree", &empty_apps);
    bench_latency(c, &rt, "tree_2000", &apps);
}

criterion_group!(app_list, benches);

fn main() {
    app_list();
    Criterion::default().configure_from_args().final_summary();
}
