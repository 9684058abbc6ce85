//! Integration tests against a REAL LXD daemon: the test suite's own, which the tests start or
//! adopt with `tests/lxd/ensure-lxd.sh --tests` (own LXD_DIR /var/lib/crostini-tests/lxd, socket,
//! pool `default`, bridge `lxdbr0` in its own network namespace); never the machine's LXD.
//! Everything created is named `lxdtest-*` and removed again (also when a test panics).
//!
//! The instance tests need an image: `$CROSTINI_LXD_TEST_IMAGE` (a unified image tarball) or the
//! one built by `tests/make-test-image.sh` (debootstrap minbase, cached; built on first use).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crostini_lxd::progress::{self, ProgressThrottle};
use crostini_lxd::*;

#[path = "../../../tests/support/test_lxd.rs"]
mod test_lxd;

const IMAGE_ALIAS: &str = "lxdtest-image";
const WAIT: Duration = Duration::from_secs(180);

fn socket() -> PathBuf {
    test_lxd::socket()
}

async fn lxd() -> Client {
    let client = Client::new(socket()).with_timeout(Duration::from_secs(60));
    if let Err(e) = client.ready().await {
        panic!(
            "LXD is not running or not ready at {} ({e}). Start it with `sudo tests/lxd/ensure-lxd.sh --tests` \
             before running the crostini-lxd tests.",
            socket().display()
        );
    }
    client
}

/// Serializes tests that use the shared test image (upload / delete).
static IMAGE_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn image_tarball() -> PathBuf {
    if let Some(p) = std::env::var_os("CROSTINI_LXD_TEST_IMAGE") {
        return PathBuf::from(p);
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/make-test-image.sh");
    let out = Command::new("bash")
        .arg(&script)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "{} failed: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let path = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .to_string();
    PathBuf::from(path)
}

/// Deletes an instance if it exists (stopping it first).
async fn remove_instance(lxd: &Client, name: &str) {
    match lxd.instance(name).await {
        Err(e) if e.is_not_found() => {}
        Err(e) => panic!("looking up {name} for cleanup: {e}"),
        Ok((inst, _)) => {
            if inst.status_code != 0 && inst.status_code != status_code::STOPPED {
                let op = lxd
                    .stop_instance(name, true)
                    .await
                    .expect("stop for cleanup");
                lxd.wait(&op, WAIT).await.expect("wait stop for cleanup");
            }
            // A just-failed start or stop can keep the instance "busy" for a moment.
            let mut last_err = None;
            for _ in 0..20 {
                let res = match lxd.delete_instance(name).await {
                    Ok(op) => lxd.wait(&op, WAIT).await.map(|_| ()),
                    Err(e) => Err(e),
                };
                match res {
                    Ok(()) => return,
                    Err(e) if e.is_not_found() => return,
                    Err(e) => last_err = Some(e),
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            panic!("deleting {name} for cleanup: {last_err:?}");
        }
    }
}

async fn remove_image_alias(lxd: &Client, alias: &str) {
    if let Ok(a) = lxd.image_alias(alias).await {
        if let Ok(op) = lxd.delete_image(&a.target).await {
            let _ = lxd.wait(&op, WAIT).await;
        }
        let _ = lxd.delete_image_alias(alias).await;
    }
}

/// Removes the named instances (and optionally the test image) when dropped, even on panic.
struct Cleanup {
    instances: Vec<String>,
    image_alias: Option<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let instances = std::mem::take(&mut self.instances);
        let alias = self.image_alias.take();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().expect("cleanup runtime");
            rt.block_on(async {
                let lxd = Client::new(socket());
                for name in &instances {
                    remove_instance(&lxd, name).await;
                }
                if let Some(alias) = alias {
                    remove_image_alias(&lxd, &alias).await;
                }
            });
        })
        .join();
    }
}

/// Uploads the test image through the images API (checking progress) and aliases it.
async fn upload_test_image(lxd: &Client) -> String {
    let tarball = image_tarball();
    let size = std::fs::metadata(&tarball)
        .unwrap_or_else(|e| panic!("image tarball {}: {e}", tarball.display()))
        .len();
    remove_image_alias(lxd, IMAGE_ALIAS).await;
    let seen = Mutex::new(Vec::<Transfer>::new());
    let op = lxd
        .upload_image(
            &tarball,
            &ImageUpload::default(),
            |t| seen.lock().unwrap().push(t),
            &CancelToken::new(),
        )
        .await
        .expect("POST /1.0/images");
    let seen = seen.into_inner().unwrap();
    assert!(!seen.is_empty(), "upload progress must be reported");
    assert!(
        seen.windows(2).all(|w| w[0].done <= w[1].done),
        "bytes sent monotonic"
    );
    assert_eq!(seen.last().unwrap().done, size, "all bytes reported");
    assert!(seen.iter().all(|t| t.total == Some(size)));
    let done = match lxd.wait(&op, WAIT).await {
        Ok(done) => done,
        // An identical image may still exist without the alias (earlier crashed run).
        Err(e) => lxd
            .wait_final(&op.id, WAIT)
            .await
            .unwrap_or_else(|_| panic!("image upload failed: {e}")),
    };
    let fp = done
        .metadata_str("fingerprint")
        .unwrap_or_else(|| panic!("no fingerprint in {:?}", done.metadata))
        .to_string();
    lxd.create_image_alias(IMAGE_ALIAS, &fp, "crostini-lxd tests")
        .await
        .expect("create alias");
    fp
}

#[tokio::test]
async fn not_running_socket_is_reported_as_not_running() {
    let dir = tempfile::tempdir().unwrap();
    let lxd = Client::new(dir.path().join("unix.socket"));
    let err = lxd.server().await.unwrap_err();
    assert!(err.is_not_running(), "{err}");
    assert!(err.to_string().contains("GET /1.0"), "{err}");
}

#[tokio::test]
async fn server_pool_network_profile() {
    let lxd = lxd().await;
    let (server, etag) = lxd.server().await.expect("GET /1.0");
    assert!(!server.environment.server_version.is_empty());
    assert!(!server.api_extensions.is_empty());
    assert!(etag.is_some(), "GET /1.0 has an ETag");
    // Writing the unchanged config back with the ETag is accepted.
    let put = ServerPut {
        config: server.config.clone(),
    };
    lxd.update_server(&put, etag.as_deref())
        .await
        .expect("PUT /1.0 with ETag");

    let (pool, _) = lxd.storage_pool("default").await.expect("pool default");
    assert_eq!(pool.name, "default");
    assert!(!pool.driver.is_empty());
    assert!(lxd
        .storage_pool("lxdtest-nopool")
        .await
        .unwrap_err()
        .is_not_found());

    let (net, net_etag) = lxd.network("lxdbr0").await.expect("network lxdbr0");
    assert_eq!(net.kind, "bridge");
    assert!(net.managed);
    assert!(net_etag.is_some());

    let (profile, _) = lxd.profile("default").await.expect("profile default");
    assert!(profile.devices.contains_key("root"));

    // Profile create / update with ETag / stale ETag rejected / delete.
    let name = "lxdtest-profile";
    let _ = lxd.delete_profile(name).await;
    lxd.create_profile(&ProfilesPost {
        name: name.into(),
        description: "test".into(),
        ..Default::default()
    })
    .await
    .expect("create profile");
    let (p, etag) = lxd.profile(name).await.expect("get profile");
    let mut put = p.writable();
    put.config.insert("user.lxdtest".into(), "1".into());
    lxd.update_profile(name, &put, etag.as_deref())
        .await
        .expect("put profile");
    let (p2, _) = lxd.profile(name).await.unwrap();
    assert_eq!(p2.config.get("user.lxdtest").map(String::as_str), Some("1"));
    let stale = lxd.update_profile(name, &put, etag.as_deref()).await;
    match stale {
        Err(LxdError::Api { status_code, .. }) => assert_eq!(status_code, 412),
        other => panic!("stale ETag must be rejected with 412, got {other:?}"),
    }
    lxd.delete_profile(name).await.expect("delete profile");
    assert!(lxd.profile(name).await.unwrap_err().is_not_found());

    // Network create / PUT / delete (a bridge without addresses).
    let net_name = "lxdtest-br0";
    let _ = lxd.delete_network(net_name).await;
    let mut config = Config::new();
    config.insert("ipv4.address".into(), "none".into());
    config.insert("ipv6.address".into(), "none".into());
    lxd.create_network(&NetworksPost {
        name: net_name.into(),
        kind: "bridge".into(),
        config,
        ..Default::default()
    })
    .await
    .expect("create network");
    let (n, etag) = lxd.network(net_name).await.unwrap();
    let mut put = n.writable();
    put.description = "lxdtest".into();
    let res = lxd.update_network(net_name, &put, etag.as_deref()).await;
    let del = lxd.delete_network(net_name).await;
    res.expect("put network");
    del.expect("delete network");
}

#[tokio::test]
async fn wait_and_cancel_errors_name_the_operation() {
    let lxd = lxd().await;
    let err = lxd
        .wait_final(
            "00000000-0000-0000-0000-000000000000",
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
    let err = lxd
        .cancel_operation("00000000-0000-0000-0000-000000000000")
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert!(
        lxd.instance("").await.is_err(),
        "empty name never reaches LXD"
    );
    assert!(lxd
        .instance("lxdtest-does-not-exist")
        .await
        .unwrap_err()
        .is_not_found());
}

#[tokio::test]
async fn instance_lifecycle_exec_files_metadata_backup() {
    let lxd = lxd().await;
    let _image_guard = IMAGE_LOCK.lock().await;
    let c1 = "lxdtest-c1";
    let copy = "lxdtest-c1-copy";
    let renamed = "lxdtest-c1-renamed";
    let imported = "lxdtest-c1-import";
    let _cleanup = Cleanup {
        instances: vec![c1.into(), copy.into(), renamed.into(), imported.into()],
        image_alias: Some(IMAGE_ALIAS.into()),
    };
    for n in [c1, copy, renamed, imported] {
        remove_instance(&lxd, n).await;
    }
    let fingerprint = upload_test_image(&lxd).await;
    let image = lxd.image(&fingerprint).await.expect("GET image");
    assert!(image.aliases.iter().any(|a| a.name == IMAGE_ALIAS));
    assert!(lxd
        .images()
        .await
        .unwrap()
        .iter()
        .any(|i| i.fingerprint == fingerprint));

    // --- create, following the operation through the events websocket ---------------------
    let events = lxd.events(&[EventType::Operation]).await.expect("events");
    let op = lxd
        .create_instance(&InstancesPost::new(
            c1,
            InstanceSource::local_fingerprint(&fingerprint),
        ))
        .await
        .expect("create instance");
    assert_eq!(op.instance_resources(), vec![c1.to_string()]);
    let mut updates = lxd.follow_operation(Some(events), op.clone(), WAIT);
    let mut seen = Vec::new();
    let mut unpack = ProgressThrottle::new();
    let mut unpack_reports = 0;
    while let Some(u) = updates.next().await {
        let u = u.expect("create update");
        if let Some(p) = progress::parse_progress_object(&u.metadata) {
            if p.is_unpack()
                && unpack
                    .observe(&p.stage, p.percent, p.speed, Instant::now())
                    .is_some()
            {
                unpack_reports += 1;
            }
        }
        seen.push(u);
    }
    assert!(!seen.is_empty());
    let finals = seen.iter().filter(|o| o.is_final()).count();
    assert_eq!(finals, 1, "final state exactly once: {seen:#?}");
    assert!(seen.last().unwrap().is_final());
    assert_eq!(
        seen.last().unwrap().state(),
        OperationState::Success,
        "{:?}",
        seen.last()
    );
    assert!(seen.iter().all(|o| o.id == op.id));
    println!(
        "create: {} updates, {unpack_reports} unpack progress reports",
        seen.len()
    );

    // --- get with ETag, stale ETag rejected, update, metadata round-trip --------------------
    let (inst, etag) = lxd.instance(c1).await.expect("GET instance");
    assert_eq!(inst.name, c1);
    assert_eq!(inst.status_code, status_code::STOPPED);
    let etag = etag.expect("instance ETag");
    let mut put = inst.writable();
    put.config.insert("user.lxdtest".into(), "yes".into());
    let upd = lxd
        .update_instance(c1, &put, Some(&etag))
        .await
        .expect("PUT instance");
    lxd.wait(&upd, WAIT).await.expect("wait PUT");
    let (inst2, _) = lxd.instance(c1).await.unwrap();
    assert_eq!(
        inst2.config.get("user.lxdtest").map(String::as_str),
        Some("yes")
    );
    match lxd.update_instance(c1, &put, Some(&etag)).await {
        Err(LxdError::Api { status_code, .. }) => assert_eq!(status_code, 412),
        other => panic!("stale ETag must be rejected with 412, got {other:?}"),
    }
    assert!(lxd.instances().await.unwrap().iter().any(|i| i.name == c1));

    lxd.set_instance_metadata_property(c1, "createdByTremplin", "true")
        .await
        .expect("set metadata property");
    let (md, md_etag) = lxd.instance_metadata(c1).await.expect("GET metadata");
    assert_eq!(
        md.properties.get("createdByTremplin").map(String::as_str),
        Some("true")
    );
    assert_eq!(
        md.properties.get("os").map(String::as_str),
        Some("Debian"),
        "image properties kept"
    );
    assert!(md_etag.is_some());

    // --- start; operation + lifecycle events on one raw stream; state ----------------------
    let mut stream = lxd
        .events(&[EventType::Operation, EventType::Lifecycle])
        .await
        .expect("events");
    let start = lxd.start_instance(c1).await.expect("start");
    lxd.wait(&start, WAIT).await.expect("wait start");
    let (mut op_final, mut started) = (false, false);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !(op_final && started) {
        let ev = tokio::time::timeout_at(deadline, stream.next())
            .await
            .unwrap_or_else(|_| panic!("events: op_final={op_final} started={started}"))
            .expect("event stream ended")
            .expect("event decodes");
        if let Some(o) = ev.operation() {
            if o.id == start.id && o.state() == OperationState::Success {
                op_final = true;
            }
        }
        if let Some(lc) = ev.lifecycle() {
            if lc.action == "instance-started" && lc.instance_name() == Some(c1) {
                started = true;
            }
        }
    }
    stream.close().await;
    let state = lxd.instance_state(c1).await.expect("state");
    assert!(state.is_running());
    assert!(state.pid > 0);
    let net = state.network.expect("network state of a running container");
    assert!(net.contains_key("lo"));

    // --- exec ---------------------------------------------------------------------------
    let out = lxd
        .exec(c1, &ExecRequest::new(&["cat", "/etc/os-release"]))
        .await
        .expect("exec cat");
    assert_eq!(out.exit_code, 0, "stderr: {}", out.stderr_str());
    assert!(
        out.stdout_str().contains("bookworm"),
        "{}",
        out.stdout_str()
    );
    let out = lxd
        .exec(
            c1,
            &ExecRequest::new(&["sh", "-c", "echo \"$FOO\"; pwd; echo oops >&2; exit 3"])
                .env("FOO", "bar baz")
                .cwd("/tmp"),
        )
        .await
        .expect("exec sh");
    assert_eq!(out.exit_code, 3);
    assert_eq!(out.stdout_str(), "bar baz\n/tmp\n");
    assert_eq!(out.stderr_str(), "oops\n");
    let timed_out = lxd
        .exec(
            c1,
            &ExecRequest::new(&["sleep", "5"]).timeout(Duration::from_secs(1)),
        )
        .await
        .unwrap_err();
    assert!(matches!(timed_out, LxdError::Timeout { .. }), "{timed_out}");

    // --- files ----------------------------------------------------------------------------
    let meta = FileMeta {
        uid: 1000,
        gid: 1000,
        mode: 0o640,
    };
    lxd.push_file(c1, "/tmp/lxdtest file.txt", b"hello\nworld".to_vec(), meta)
        .await
        .expect("push file");
    match lxd
        .pull_file(c1, "/tmp/lxdtest file.txt")
        .await
        .expect("pull file")
    {
        FileContent::File { content, meta: m } => {
            assert_eq!(content, b"hello\nworld");
            assert_eq!(m, meta);
        }
        other => panic!("expected a file, got {other:?}"),
    }
    lxd.make_directory(
        c1,
        "/tmp/lxdtest-dir",
        FileMeta {
            uid: 0,
            gid: 0,
            mode: 0o755,
        },
    )
    .await
    .expect("mkdir");
    match lxd.pull_file(c1, "/tmp").await.expect("pull dir") {
        FileContent::Directory { entries, .. } => {
            assert!(
                entries.iter().any(|e| e == "lxdtest file.txt"),
                "{entries:?}"
            );
            assert!(entries.iter().any(|e| e == "lxdtest-dir"), "{entries:?}");
        }
        other => panic!("expected a directory, got {other:?}"),
    }
    lxd.delete_file(c1, "/tmp/lxdtest file.txt")
        .await
        .expect("delete file");
    assert!(lxd
        .pull_file(c1, "/tmp/lxdtest file.txt")
        .await
        .unwrap_err()
        .is_not_found());

    // --- snapshots --------------------------------------------------------------------------
    let snap = lxd
        .create_snapshot(c1, "rootfs-backup")
        .await
        .expect("snapshot");
    lxd.wait(&snap, WAIT).await.expect("wait snapshot");
    assert_eq!(
        lxd.snapshot_names(c1).await.unwrap(),
        vec!["rootfs-backup".to_string()]
    );
    let s = lxd
        .snapshot(c1, "rootfs-backup")
        .await
        .expect("GET snapshot");
    assert!(
        s.expanded_config.contains_key("volatile.last_state.idmap"),
        "{:?}",
        s.expanded_config
    );
    let del = lxd
        .delete_snapshot(c1, "rootfs-backup")
        .await
        .expect("delete snapshot");
    lxd.wait(&del, WAIT).await.expect("wait delete snapshot");
    assert!(lxd.snapshot_names(c1).await.unwrap().is_empty());

    // --- stop -------------------------------------------------------------------------------
    let stop = lxd.stop_instance(c1, true).await.expect("stop");
    lxd.wait(&stop, WAIT).await.expect("wait stop");
    assert_eq!(
        lxd.instance_state(c1).await.unwrap().status_code,
        status_code::STOPPED
    );
    assert!(
        lxd.exec(c1, &ExecRequest::new(&["true"])).await.is_err(),
        "exec on stopped fails"
    );
    let log = lxd.instance_log(c1, "lxc.log").await.expect("lxc.log");
    assert!(!log.is_empty());
    // The file API works on stopped containers too.
    match lxd
        .pull_file(c1, "/etc/hostname")
        .await
        .expect("pull on stopped")
    {
        FileContent::File { .. } => {}
        other => panic!("expected file, got {other:?}"),
    }

    // --- copy + rename + delete -------------------------------------------------------------
    let cp = lxd.copy_instance(c1, copy).await.expect("copy");
    lxd.wait(&cp, WAIT).await.expect("wait copy");
    let rn = lxd.rename_instance(copy, renamed).await.expect("rename");
    lxd.wait(&rn, WAIT).await.expect("wait rename");
    assert!(lxd.instance(copy).await.unwrap_err().is_not_found());
    let (r, _) = lxd.instance(renamed).await.expect("renamed exists");
    assert_eq!(
        r.config.get("user.lxdtest").map(String::as_str),
        Some("yes")
    );
    let d = lxd.delete_instance(renamed).await.expect("delete renamed");
    lxd.wait(&d, WAIT).await.expect("wait delete renamed");

    // --- backup export + import ------------------------------------------------------------
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("c1.tar.gz");
    let mut last = 0u64;
    let mut calls = 0;
    let bytes = lxd
        .export_instance(
            c1,
            &dest,
            &ExportOptions {
                backup_name: "lxdtest-backup".into(),
                ..Default::default()
            },
            |t| {
                assert!(t.done >= last);
                last = t.done;
                calls += 1;
            },
            &CancelToken::new(),
        )
        .await
        .expect("export");
    assert!(bytes > 0 && calls > 0);
    assert_eq!(std::fs::metadata(&dest).unwrap().len(), bytes);
    let head = std::fs::read(&dest).unwrap();
    assert_eq!(&head[..2], &[0x1f, 0x8b], "gzip");
    assert!(!partial_path(&dest).exists());
    assert!(
        lxd.backup(c1, "lxdtest-backup")
            .await
            .unwrap_err()
            .is_not_found(),
        "backup deleted"
    );

    // Cancelled export: no file, no partial file, backup removed.
    let dest2 = dir.path().join("cancelled.tar.gz");
    let token = CancelToken::new();
    let t2 = token.clone();
    let err = lxd
        .export_instance(
            c1,
            &dest2,
            &ExportOptions {
                backup_name: "lxdtest-backup2".into(),
                ..Default::default()
            },
            move |t| {
                if t.done > 0 {
                    t2.cancel();
                }
            },
            &token,
        )
        .await
        .unwrap_err();
    assert!(err.is_cancelled(), "{err}");
    assert!(!dest2.exists());
    assert!(!partial_path(&dest2).exists());
    assert!(lxd
        .backup(c1, "lxdtest-backup2")
        .await
        .unwrap_err()
        .is_not_found());

    let mut up = Vec::new();
    let op = lxd
        .import_backup(
            imported,
            &dest,
            None,
            |t| up.push(t.done),
            &CancelToken::new(),
        )
        .await
        .expect("import");
    assert_eq!(up.last().copied(), Some(bytes));
    lxd.wait(&op, WAIT).await.expect("wait import");
    match lxd
        .pull_file(imported, "/usr/lib/os-release")
        .await
        .expect("pull imported")
    {
        FileContent::File { content, .. } => {
            assert!(String::from_utf8_lossy(&content).contains("bookworm"))
        }
        other => panic!("expected file, got {other:?}"),
    }
    let (imp_md, _) = lxd.instance_metadata(imported).await.unwrap();
    assert_eq!(
        imp_md
            .properties
            .get("createdByTremplin")
            .map(String::as_str),
        Some("true")
    );

    // --- delete -----------------------------------------------------------------------------
    for n in [imported, c1] {
        let d = lxd.delete_instance(n).await.expect("delete");
        lxd.wait(&d, WAIT).await.expect("wait delete");
        assert!(lxd.instance(n).await.unwrap_err().is_not_found());
    }
}

/// The harness image server (`tests/lxd/simplestreams.py`), killed and its LXD index cache
/// entry removed on drop.
struct ImageServer {
    child: std::process::Child,
    url: String,
    alias: String,
    fingerprint: String,
}

impl ImageServer {
    /// `None` (with a printed reason) when the harness image or script is not there.
    fn start(extra: &[&str]) -> Option<ImageServer> {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let script = repo.join("tests/lxd/simplestreams.py");
        let cache = std::env::var("CROSTINI_TEST_CACHE")
            .unwrap_or_else(|_| "/var/cache/crostini-tests".to_string());
        let image_json = Path::new(&cache).join("image/image.json");
        if !script.exists() || !image_json.exists() {
            println!(
                "SKIPPED simplestreams part: {} or {} missing (run tests/lxd/build-image.sh)",
                script.display(),
                image_json.display()
            );
            return None;
        }
        use std::io::BufRead;
        let tag = format!("lxdtest-{}-{}", std::process::id(), rand_suffix());
        let mut child = test_lxd::in_netns("python3")
            .arg(&script)
            .args(["--port", "0", "--url-tag", &tag])
            .args(extra)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start simplestreams.py");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut server = ImageServer {
            child,
            url: String::new(),
            alias: String::new(),
            fingerprint: String::new(),
        };
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line.expect("read simplestreams.py stdout");
            if let Some(v) = line.strip_prefix("URL=") {
                server.url = v.to_string();
            } else if let Some(v) = line.strip_prefix("FINGERPRINT=") {
                server.fingerprint = v.to_string();
            } else if let Some(v) = line.strip_prefix("ALIAS=") {
                server.alias = v.to_string();
                break;
            }
        }
        assert!(
            !server.url.is_empty() && !server.alias.is_empty(),
            "simplestreams.py did not print URL/ALIAS"
        );
        Some(server)
    }
}

impl Drop for ImageServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // LXD's cached index for this one-off URL: $LXD_DIR/cache/<sha256(url)>.
        if let Ok(out) = Command::new("sh")
            .arg("-c")
            .arg("printf %s \"$1\" | sha256sum | cut -d' ' -f1")
            .arg("sh")
            .arg(&self.url)
            .output()
        {
            let hash = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if hash.len() == 64 {
                let dir = socket().parent().map(|d| d.join("cache").join(&hash));
                if let Some(dir) = dir {
                    let _ = std::fs::remove_dir_all(dir);
                }
            }
        }
    }
}

fn rand_suffix() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0)
}

#[tokio::test]
async fn create_from_simplestreams_reports_download_progress() {
    let lxd = lxd().await;
    let name = "lxdtest-ss";
    let _cleanup = Cleanup {
        instances: vec![name.into(), "lxdtest-ss-fail".into()],
        image_alias: None,
    };
    remove_instance(&lxd, name).await;
    let Some(server) = ImageServer::start(&["--throttle", "25000000"]) else {
        return;
    };
    let cached = lxd.image(&server.fingerprint).await.is_ok();
    let events = lxd.events(&[EventType::Operation]).await.expect("events");
    let op = lxd
        .create_instance(&InstancesPost::new(
            name,
            InstanceSource::simplestreams(&server.url, &server.alias),
        ))
        .await
        .expect("create from simplestreams");
    let mut updates = lxd.follow_operation(Some(events), op, WAIT);
    let mut percents = Vec::new();
    let mut throttle = ProgressThrottle::new();
    let mut last = None;
    let mut finals = 0;
    while let Some(u) = updates.next().await {
        let u = u.expect("create update");
        if let Some(p) = progress::download_progress(&u.metadata) {
            let pct = u32::try_from(p.reported_percent()).unwrap_or(0);
            if let Some(r) = throttle.observe(&p.stage, pct, 0, Instant::now()) {
                percents.push((r.stage, r.percent));
            }
        }
        finals += usize::from(u.is_final());
        last = Some(u);
    }
    let last = last.expect("at least one update");
    assert_eq!(finals, 1);
    assert_eq!(last.state(), OperationState::Success, "{}", last.err);
    if cached {
        println!(
            "image {} was already cached by LXD: download progress not checked",
            server.fingerprint
        );
    } else {
        assert!(!percents.is_empty(), "download_progress updates expected");
        println!("download progress reports: {percents:?}");
    }
    let (inst, _) = lxd.instance(name).await.expect("created");
    assert_eq!(inst.name, name);
    drop(server);

    // An image server whose index is missing: the creation fails with LXD's error.
    let Some(bad) = ImageServer::start(&["--fail-mode", "404-index"]) else {
        return;
    };
    let res = match lxd
        .create_instance(&InstancesPost::new(
            "lxdtest-ss-fail",
            InstanceSource::simplestreams(&bad.url, &bad.alias),
        ))
        .await
    {
        Ok(op) => lxd.wait(&op, WAIT).await.map(|_| ()),
        Err(e) => Err(e),
    };
    let err = res.expect_err("creation from a broken image server must fail");
    println!("broken image server error: {err}");
    assert!(!err.to_string().is_empty());
}

#[tokio::test]
async fn split_image_upload_and_delete() {
    let lxd = lxd().await;
    if Command::new("mksquashfs").arg("-version").output().is_err() {
        println!("SKIPPED split image upload: mksquashfs not installed (squashfs-tools)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/lxdtest"), format!("{}\n", rand_suffix())).unwrap();
    let rootfs = dir.path().join("rootfs.squashfs");
    let st = Command::new("mksquashfs")
        .arg(&root)
        .arg(&rootfs)
        .args(["-noappend", "-quiet", "-no-progress"])
        .status()
        .expect("mksquashfs");
    assert!(st.success());
    let meta_dir = dir.path().join("meta");
    std::fs::create_dir_all(&meta_dir).unwrap();
    std::fs::write(
        meta_dir.join("metadata.yaml"),
        format!(
            "architecture: {}\ncreation_date: 1700000000\nproperties:\n  description: lxdtest split\n",
            std::env::consts::ARCH
        ),
    )
    .unwrap();
    let meta = dir.path().join("lxd.tar.xz");
    let st = Command::new("tar")
        .arg("-cJf")
        .arg(&meta)
        .arg("-C")
        .arg(&meta_dir)
        .arg("metadata.yaml")
        .status()
        .expect("tar");
    assert!(st.success());
    let total = std::fs::metadata(&meta).unwrap().len() + std::fs::metadata(&rootfs).unwrap().len();
    let mut last = None;
    let op = lxd
        .upload_split_image(
            &meta,
            &rootfs,
            &ImageUpload::default(),
            |t| last = Some(t),
            &CancelToken::new(),
        )
        .await
        .expect("split upload");
    let last = last.expect("progress reported");
    assert_eq!(last.done, last.total.unwrap());
    assert!(last.done > total, "multipart framing counted too");
    let done = lxd.wait(&op, WAIT).await.expect("split image op");
    let fp = done
        .metadata_str("fingerprint")
        .expect("fingerprint")
        .to_string();
    let image = lxd.image(&fp).await.expect("GET image");
    assert_eq!(
        image.properties.get("description").map(String::as_str),
        Some("lxdtest split")
    );
    let del = lxd.delete_image(&fp).await.expect("delete image");
    lxd.wait(&del, WAIT).await.expect("wait delete image");
    assert!(lxd.image(&fp).await.unwrap_err().is_not_found());
}
