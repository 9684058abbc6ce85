//! OpenUrl on both sides (garcon-host §6): garcon's `--url` argument rewriting and the host's
//! URL check (scheme allow-list, no `..` segment in a `file:` URL).
#![no_main]

use std::path::Path;

use crostini_host::container_listener::url_is_acceptable;
use garcon::client::url_for_argument;
use libfuzzer_sys::fuzz_target;

const SCHEMES: [&str; 6] = ["data", "file", "ftp", "http", "https", "mailto"];

fuzz_target!(|data: &[u8]| {
    let url = String::from_utf8_lossy(data);
    if url_is_acceptable(&url) {
        let (scheme, rest) = url.split_once(':').expect("an accepted URL has a scheme");
        let scheme = scheme.to_ascii_lowercase();
        assert!(SCHEMES.contains(&scheme.as_str()), "{url:?}");
        if scheme == "file" {
            assert!(!rest.split('/').any(|segment| segment == ".."), "{url:?}");
        }
    }
    // Relative arguments against a directory that does not exist are sent as typed (absolute
    // ones would depend on this machine's files, so they are not tried).
    if !url.starts_with('/') && !url.contains('\0') {
        let cwd = Path::new("/nonexistent-crostini-fuzz-cwd");
        assert_eq!(url_for_argument(&url, cwd), url);
    }
});
