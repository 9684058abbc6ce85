//! tremplin's listening-port netlink parsers (tremplin §9.3): the sock_diag dump replies
//! (`parse_dump`, `listening_ports`), the netlink message walk, and the audit `SYSCALL`
//! record text (`parse_syscall_record`). Input: raw datagram bytes (also read as record text).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tremplin::ports::audit::{is_listen_success, parse_syscall_record, AUDIT_SYSCALL};
use tremplin::ports::sock_diag::{parse_dump, parse_inet_diag_msg, TCP_LISTEN};
use tremplin::ports::{is_reportable, listening_ports, netlink};

fuzz_target!(|data: &[u8]| {
    if let Ok(messages) = netlink::messages(data) {
        for m in &messages {
            assert!(m.payload.len() <= data.len());
        }
    }
    let sockets = parse_dump(data, 1).map(|p| p.sockets).unwrap_or_default();
    let ports = listening_ports(&sockets);
    // Sorted, deduplicated, and each one a reportable LISTEN socket of the dump.
    assert!(ports.windows(2).all(|w| w[0] < w[1]));
    for port in &ports {
        assert!(sockets.iter().any(|s| u32::from(s.port) == *port
            && s.state == TCP_LISTEN
            && is_reportable(&s.local)));
    }
    let _ = parse_inet_diag_msg(data);
    let text = String::from_utf8_lossy(data);
    if is_listen_success(AUDIT_SYSCALL, &text) {
        assert!(parse_syscall_record(&text).is_some_and(|r| r.success));
    }
});
