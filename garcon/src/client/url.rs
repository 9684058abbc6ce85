//! `--url` argument rewriting (garcon-host.md §6.1).

use std::path::Path;

/// The URL sent for one `--url` argument: an argument without `://` that names an existing path
/// (relative to `cwd`, symlinks resolved) becomes `file://` + the real path, unencoded. Anything
/// else is sent as typed (`mailto:x@y`, `www.example.com`, non-existent paths).
pub fn url_for_argument(arg: &str, cwd: &Path) -> String {
    if arg.contains("://") || arg.is_empty() {
        return arg.to_string();
    }
    match std::fs::canonicalize(cwd.join(arg)) {
        Ok(real) => format!("file://{}", real.to_string_lossy()),
        Err(_) => arg.to_string(),
    }
}
