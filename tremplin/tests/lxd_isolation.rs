//! The real-LXD tests never use the machine's LXD (issue 9 #13: after `./demo.sh`, the test run
//! stopped the demo's containers). The socket the harness hands the tests
//! (`tests/lxd/ensure-lxd.sh --tests`) is not the machine's, and the daemon answering on it runs
//! with the tests' LXD_DIR in a network namespace of its own, so its lxdbr0, dnsmasq and firewall
//! rules never meet the machine's.

mod common;

use std::os::unix::net::UnixStream;
use std::path::Path;

use common::test_lxd;
use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};

/// The pid of the process listening on a unix socket (SO_PEERCRED of a connection to it).
fn listener_pid(socket: &Path) -> Option<i32> {
    let stream = UnixStream::connect(socket).ok()?;
    getsockopt(&stream, PeerCredentials).ok().map(|c| c.pid())
}

fn netns(pid: &str) -> std::path::PathBuf {
    std::fs::read_link(format!("/proc/{pid}/ns/net")).expect("read /proc/<pid>/ns/net")
}

#[test]
fn the_tests_lxd_is_not_the_machines_lxd() {
    assert!(
        nix::unistd::getuid().is_root(),
        "the real-LXD tests must run as root"
    );
    let socket = test_lxd::socket();
    assert_ne!(socket, Path::new(test_lxd::SYSTEM_LXD_SOCKET));
    test_lxd::assert_not_system_socket(&socket);
    assert_ne!(test_lxd::lxd_dir(), Path::new("/var/lib/lxd"));

    let pid = listener_pid(&socket).expect("the tests' LXD answers on its socket");
    assert!(
        test_lxd::is_tests_process(pid),
        "pid {pid} on {} runs with LXD_DIR {:?}, not the tests' {:?}",
        socket.display(),
        test_lxd::pid_lxd_dir(pid),
        test_lxd::lxd_dir()
    );
    assert_ne!(
        netns(&pid.to_string()),
        netns("self"),
        "the tests' LXD shares the machine's network namespace (its lxdbr0 would be the machine's)"
    );
    // The machine's LXD, when one runs, is another process, and not one of the tests'.
    if let Some(system) = listener_pid(Path::new(test_lxd::SYSTEM_LXD_SOCKET)) {
        assert_ne!(system, pid, "one daemon answers on both sockets");
        assert!(!test_lxd::is_tests_process(system));
    }
}
