//! tremplin's `/proc/net/tcp{,6}` reader (listening-port reports, tremplin §9.3). Input: one or
//! two tables, NUL-separated.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tremplin::ports::{is_reportable, listening_ports, parse_proc_net_tcp};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let tables: Vec<&str> = text.splitn(2, '\0').collect();
    let ports = listening_ports(&tables);
    // Sorted, deduplicated, and each one a reportable LISTEN socket of some table.
    assert!(ports.windows(2).all(|w| w[0] < w[1]));
    let sockets: Vec<_> = tables.iter().flat_map(|t| parse_proc_net_tcp(t)).collect();
    for port in &ports {
        assert!(sockets
            .iter()
            .any(|s| u32::from(s.port) == *port && s.state == 0x0A && is_reportable(&s.local)));
    }
});
