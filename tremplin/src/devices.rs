//! Character device nodes passed to containers (§6 VM device nodes, §8.4 microphones).

use std::collections::BTreeMap;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// One character device found under the device directory.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct CharDevice {
    /// Path relative to the device directory, e.g. `dri/renderD128`.
    pub relative: String,
    pub major: u64,
    pub minor: u64,
}

impl CharDevice {
    /// The LXD device entry `{path, major, minor, mode: "0666", type: "unix-char"}` with the
    /// container path `/dev/<relative>`.
    pub fn lxd_entry(&self) -> (String, BTreeMap<String, String>) {
        let path = format!("/dev/{}", self.relative);
        let entry = BTreeMap::from([
            ("path".to_string(), path.clone()),
            ("major".to_string(), self.major.to_string()),
            ("minor".to_string(), self.minor.to_string()),
            ("mode".to_string(), "0666".to_string()),
            ("type".to_string(), "unix-char".to_string()),
        ]);
        (path, entry)
    }
}

/// Profile device nodes: `^dri/.*$`, `^snd/[stc].*$`, `^snd/pcm.*p$`, `^kmsg$`, `^kvm$`,
/// `^wl0$`.
pub fn is_vm_device(relative: &str) -> bool {
    if relative.starts_with("dri/") {
        return true;
    }
    if let Some(rest) = relative.strip_prefix("snd/") {
        if rest.starts_with(['s', 't', 'c']) {
            return true;
        }
        if rest.starts_with("pcm") && rest.ends_with('p') {
            return true;
        }
    }
    matches!(relative, "kmsg" | "kvm" | "wl0")
}

/// Capture (microphone) nodes: regex search `snd/pcmC.D.c$` (any one character at each `.`).
pub fn is_capture_device(relative: &str) -> bool {
    let b = relative.as_bytes();
    // "snd/pcmC" + 1 + "D" + 1 + "c" = 12 bytes at the end.
    if b.len() < 12 {
        return false;
    }
    let tail = &b[b.len() - 12..];
    tail.starts_with(b"snd/pcmC") && tail[9] == b'D' && tail[11] == b'c'
}

/// Walks `dev_dir` (not following symlinks) and returns character devices whose relative path
/// satisfies `filter`, sorted by path. Unreadable directories are skipped.
pub fn scan_char_devices(dev_dir: &Path, filter: impl Fn(&str) -> bool) -> Vec<CharDevice> {
    let mut out = Vec::new();
    let mut stack: Vec<PathBuf> = vec![dev_dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            let Ok(relative) = path.strip_prefix(dev_dir) else {
                continue;
            };
            let relative = relative.to_string_lossy().into_owned();
            if meta.is_dir() {
                stack.push(path);
            } else if meta.file_type().is_char_device() && filter(&relative) {
                let rdev = meta.rdev();
                out.push(CharDevice {
                    relative,
                    major: u64::from(nix::sys::stat::major(rdev) as u32),
                    minor: u64::from(nix::sys::stat::minor(rdev) as u32),
                });
            }
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_device_patterns() {
        for yes in [
            "dri/renderD128",
            "dri/card0",
            "snd/seq",
            "snd/timer",
            "snd/controlC0",
            "snd/pcmC0D0p",
            "kmsg",
            "kvm",
            "wl0",
        ] {
            assert!(is_vm_device(yes), "{yes}");
        }
        for no in [
            "snd/pcmC0D0c",
            "snd/hwC0D0",
            "kvm2",
            "null",
            "tty0",
            "xdri/x",
        ] {
            assert!(!is_vm_device(no), "{no}");
        }
    }

    #[test]
    fn capture_device_pattern() {
        assert!(is_capture_device("snd/pcmC0D0c"));
        assert!(is_capture_device("snd/pcmC1D7c"));
        assert!(is_capture_device("x/snd/pcmC1D7c"));
        assert!(!is_capture_device("snd/pcmC0D0p"));
        assert!(!is_capture_device("snd/pcmC10D0c"));
        assert!(!is_capture_device("snd/pcmC0D0"));
    }

    #[test]
    fn scan_finds_char_devices_only() {
        // /dev/null and friends are character devices on every Linux machine.
        let found = scan_char_devices(Path::new("/dev"), |r| r == "null" || r == "zero");
        let names: Vec<&str> = found.iter().map(|d| d.relative.as_str()).collect();
        assert_eq!(names, vec!["null", "zero"]);
        assert_eq!((found[0].major, found[0].minor), (1, 3));
        let (key, entry) = found[0].lxd_entry();
        assert_eq!(key, "/dev/null");
        assert_eq!(entry["type"], "unix-char");
        assert_eq!(entry["mode"], "0666");
        assert_eq!(entry["major"], "1");
    }
}
