//! Tests of the container rootfs access (reads, writes, skel copy, id shifting).
use super::*;

#[test]
fn shift_rules() {
    let s = IdShift::from_rootfs_owner(1_000_000);
    assert_eq!(s.to_disk(0), 1_000_000);
    assert_eq!(s.to_disk(42), 1_000_042);
    for id in IDENTITY_IDS {
        assert_eq!(s.to_disk(id), id);
        assert_eq!(s.to_container(id), id);
    }
    assert_eq!(s.to_container(1_000_042), 42);
    assert_eq!(s.to_container(5), 5);
    let none = IdShift::from_rootfs_owner(0);
    assert_eq!(none.to_disk(42), 42);
    assert_eq!(none.to_container(1_000_042), 1_000_042);
}

#[test]
fn host_path_rejects_dotdot_and_resolve_follows_links_inside_root() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("rootfs");
    std::fs::create_dir_all(root.join("usr/lib")).expect("mkdir");
    std::fs::create_dir_all(root.join("etc")).expect("mkdir");
    std::fs::write(root.join("usr/lib/os-release"), "ID=debian\n").expect("write");
    std::os::unix::fs::symlink("../usr/lib/os-release", root.join("etc/os-release")).expect("link");
    std::os::unix::fs::symlink("/etc/os-release", root.join("etc/abs")).expect("link");
    std::os::unix::fs::symlink("loop", root.join("etc/loop")).expect("link");
    let fs = ContainerFs::at("c", root).expect("open");
    assert!(fs.host_path("/../x").is_err());
    assert_eq!(
        fs.read("/etc/os-release").expect("relative link"),
        b"ID=debian\n"
    );
    assert_eq!(
        fs.read("/etc/abs").expect("absolute link stays in root"),
        b"ID=debian\n"
    );
    assert!(fs.read("/etc/loop").is_err(), "link loop ends");
}

/// Issue 9 #5: container files are read non-blocking, regular only, capped, and no
/// symlink (final or intermediate, absolute or relative) reaches a host file.
#[test]
fn reads_refuse_fifos_big_files_and_links_out_of_the_root() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("rootfs");
    std::fs::create_dir_all(root.join("etc")).expect("mkdir");
    let outside = dir.path().join("host-secret");
    std::fs::create_dir_all(&outside).expect("mkdir");
    std::fs::write(outside.join("shadow"), "root:host-hash").expect("write");
    nix::unistd::mkfifo(&root.join("etc/passwd"), nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
    std::fs::write(root.join("etc/group"), vec![b'x'; 64]).expect("write");
    std::os::unix::fs::symlink(outside.join("shadow"), root.join("etc/shadow")).expect("link");
    std::os::unix::fs::symlink(&outside, root.join("etc/hostdir")).expect("link");
    let fs = ContainerFs::at("c", root).expect("open");
    let started = std::time::Instant::now();
    let err = fs.read("/etc/passwd").expect_err("FIFO refused");
    assert!(err.to_string().contains("FIFO"), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
    let err = fs.read_regular("/etc/group", 10).expect_err("over the cap");
    assert!(err.to_string().contains("limit"), "{err}");
    assert_eq!(
        fs.read_regular("/etc/group", 64)
            .expect("at the cap")
            .0
            .len(),
        64
    );
    // Absolute links are resolved inside the container, where these targets do not exist.
    assert!(fs.read("/etc/shadow").is_err());
    assert!(fs.read("/etc/hostdir/shadow").is_err());
}

#[test]
fn copy_tree_never_copies_host_files_or_fifos() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("rootfs");
    std::fs::create_dir_all(root.join("etc/skel")).expect("mkdir");
    std::fs::create_dir_all(root.join("home/u")).expect("mkdir");
    let secret = dir.path().join("host-secret");
    std::fs::write(&secret, "host data").expect("write");
    std::os::unix::fs::symlink(&secret, root.join("etc/skel/evil")).expect("link");
    nix::unistd::mkfifo(&root.join("etc/skel/fifo"), nix::sys::stat::Mode::S_IRWXU)
        .expect("mkfifo");
    std::fs::write(root.join("etc/skel/ok"), "fine").expect("write");
    let fs = ContainerFs::at("c", root.clone()).expect("open");
    let me = nix::unistd::getuid().as_raw();
    let my_gid = nix::unistd::getgid().as_raw();
    fs.copy_tree("/etc/skel", "/home/u", me, my_gid)
        .expect("copy");
    assert_eq!(std::fs::read(root.join("home/u/ok")).expect("ok"), b"fine");
    assert!(!root.join("home/u/evil").exists(), "host file copied in");
    assert!(!root.join("home/u/fifo").exists());
}

#[test]
fn write_mkdir_touch_copy_tree() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("rootfs");
    std::fs::create_dir_all(root.join("etc/skel/sub")).expect("mkdir");
    std::fs::write(root.join("etc/skel/.bashrc"), "x").expect("write");
    std::fs::write(root.join("etc/skel/sub/f"), "y").expect("write");
    std::os::unix::fs::symlink(".bashrc", root.join("etc/skel/link")).expect("link");
    let fs = ContainerFs::at("c", root.clone()).expect("open");
    let me = nix::unistd::getuid().as_raw();
    let my_gid = nix::unistd::getgid().as_raw();
    fs.mkdir("/home/u", 0o755, me, my_gid).expect("mkdir");
    fs.copy_tree("/etc/skel", "/home/u", me, my_gid)
        .expect("copy");
    assert_eq!(
        std::fs::read_to_string(root.join("home/u/sub/f")).expect("read"),
        "y"
    );
    let link = std::fs::symlink_metadata(root.join("home/u/link")).expect("stat");
    assert!(link.is_file(), "symlink copied as a regular file");
    fs.write("/etc/x", b"abc", 0o640, me, my_gid)
        .expect("write");
    assert_eq!(
        std::fs::metadata(root.join("etc/x")).expect("stat").mode() & 0o777,
        0o640
    );
    fs.touch("/etc/x", 0o644, me, my_gid).expect("touch");
    assert_eq!(
        fs.read("/etc/x").expect("read"),
        b"abc",
        "touch keeps content"
    );
    fs.remove("/home/u").expect("remove");
    assert!(!fs.exists("/home/u"));
}

/// A container link can make no write, chown or creation land on a host file, and a FIFO
/// target is refused without blocking.
#[test]
fn writes_stay_in_the_root_and_refuse_fifos() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("rootfs");
    let host = dir.path().join("host");
    std::fs::create_dir_all(root.join("etc")).expect("mkdir");
    std::fs::create_dir_all(&host).expect("mkdir");
    std::fs::write(host.join("passwd"), "host").expect("write");
    std::os::unix::fs::symlink(host.join("passwd"), root.join("etc/passwd")).expect("ln");
    std::os::unix::fs::symlink(&host, root.join("var")).expect("ln");
    nix::unistd::mkfifo(&root.join("etc/hostname"), nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
    let fs = ContainerFs::at("c", root.clone()).expect("open");
    let me = nix::unistd::getuid().as_raw();
    let my_gid = nix::unistd::getgid().as_raw();
    assert!(fs
        .write("/etc/passwd", b"container", 0o644, me, my_gid)
        .is_err());
    assert_eq!(std::fs::read(host.join("passwd")).expect("read"), b"host");
    assert!(fs.touch("/var/linger", 0o644, me, my_gid).is_err());
    assert!(fs.mkdir("/var/lib/x", 0o755, me, my_gid).is_err());
    assert!(!host.join("linger").exists() && !host.join("lib").exists());
    let started = std::time::Instant::now();
    let err = fs
        .write("/etc/hostname", b"c\n", 0o644, me, my_gid)
        .expect_err("FIFO refused");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(1),
        "{err}"
    );
    fs.write("/etc/new", b"ok", 0o640, me, my_gid)
        .expect("plain write");
    let meta = std::fs::metadata(root.join("etc/new")).expect("stat");
    assert_eq!(meta.mode() & 0o7777, 0o640);
    assert_eq!(std::fs::read(root.join("etc/new")).expect("read"), b"ok");
}
