//! garcon's command-line grammar (garcon-host §15.1), the invocation/client-mode checks built on
//! it (§15.2, §6-§14) and the address syntax of its switches. Input: NUL-separated argv.
#![no_main]

use std::path::Path;
use std::str::FromStr;

use crostini_common::Address;
use garcon::cli::{parse_invocation, Invocation, VALUE_SWITCHES};
use garcon::client::{parse_metrics, ClientCommand};
use garcon::cmdline::CommandLine;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let argv: Vec<&str> = std::iter::once("garcon")
        .chain(text.split('\0').take(64))
        .collect();
    let line = CommandLine::parse(&argv, VALUE_SWITCHES);
    // Positional arguments are trimmed and never more than the elements given.
    assert!(line.args().len() < argv.len());
    for arg in line.args() {
        assert_eq!(arg.trim_matches(|c: char| c.is_ascii_whitespace()), arg);
    }
    // A switch-free argv is all positional (a first bare `--` is dropped).
    if argv[1..].iter().all(|a| !a.trim().starts_with('-')) {
        let trimmed: Vec<&str> = argv[1..]
            .iter()
            .map(|a| a.trim_matches(|c: char| c.is_ascii_whitespace()))
            .collect();
        assert_eq!(line.args(), trimmed.as_slice());
    }
    // The cwd does not exist, so `--url` rewriting never depends on this machine's files.
    let cwd = Path::new("/nonexistent-crostini-fuzz-cwd");
    if let Ok(ClientCommand::Metrics(metrics)) = ClientCommand::from_command_line(&line, cwd) {
        assert!(!metrics.is_empty());
    }
    if let Ok(Invocation::Client(options)) = parse_invocation(&argv) {
        assert!(options.line.has("client"));
    }
    for element in &argv[1..] {
        if let Ok(address) = Address::from_str(element) {
            // What parses prints as something that parses, and printing is then stable
            // (`tcp://[::0]:1` prints as `tcp://[::]:1`).
            let shown = address.to_string();
            let again = Address::from_str(&shown).expect("display reparses");
            assert_eq!(again.to_string(), shown);
        }
        let _ = parse_metrics(element);
    }
});
