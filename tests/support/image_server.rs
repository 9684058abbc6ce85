//! The local simplestreams server of `tests/lxd` as the Rust real-LXD tests start it. Shared by
//! the tremplin tests and the end-to-end test (included with `#[path]`, so it uses std only).

#[path = "test_lxd.rs"]
pub mod test_lxd;

use std::io::BufRead;
use std::process::{Child, Stdio};

/// `tests/lxd/simplestreams.py` on a free port of 127.0.0.1 of the tests' LXD's network
/// namespace (where that LXD downloads from): killed on drop, and LXD's cached copy of its index
/// (kept an hour under sha256(URL)) removed, since the URL never comes back.
pub struct ImageServer {
    child: Child,
    pub url: String,
    pub fingerprint: String,
    pub alias: String,
}

impl ImageServer {
    /// Starts the server with `extra` flags (e.g. `--throttle N`) and reads the URL, image
    /// fingerprint and alias it prints.
    pub fn start(extra: &[&str]) -> ImageServer {
        let script = test_lxd::script("simplestreams.py");
        let mut child = test_lxd::in_netns("python3")
            .arg(&script)
            .args(["--port", "0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", script.display()));
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = std::io::BufReader::new(stdout).lines();
        let (mut url, mut fingerprint, mut alias) = (String::new(), String::new(), String::new());
        while let Some(Ok(line)) = lines.next() {
            if let Some(v) = line.strip_prefix("URL=") {
                url = v.to_string();
            } else if let Some(v) = line.strip_prefix("FINGERPRINT=") {
                fingerprint = v.to_string();
            } else if let Some(v) = line.strip_prefix("ALIAS=") {
                alias = v.to_string();
                break;
            }
        }
        assert!(
            !url.is_empty() && !fingerprint.is_empty() && !alias.is_empty(),
            "simplestreams.py did not print URL/FINGERPRINT/ALIAS"
        );
        ImageServer {
            child,
            url,
            fingerprint,
            alias,
        }
    }
}

impl Drop for ImageServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        test_lxd::forget_index(&self.url);
    }
}
