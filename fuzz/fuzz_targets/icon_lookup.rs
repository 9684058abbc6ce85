//! Icon-theme lookup on a small directory tree generated from the input, once per input.
//!
//! Input: text lines. The first line is the query `NAME SIZE SCALE`. Then:
//! - `= PATH` starts the file `PATH`; the following lines, up to the next directive, are its
//!   content (use it for `index.theme` files);
//! - `+ PATH` creates a small icon file, `/ PATH` a directory, `> PATH TARGET` a symlink.
//! PATH is relative to the tree: `0/...` is `$HOME/.icons`, `1/...` a data dir's `icons`, `p/...`
//! its `pixmaps`. At most 48 directives, PATHs of at most 6 components of safe names, and
//! symlink targets of at most 3 `..` components (loops allowed, nothing outside the tree).
//! Invariants: a result lies in a searched directory, is named `NAME.{png,svg,xpm}` and is a
//! regular file; the lookup is deterministic.
#![no_main]

use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;

use garcon::icons::lookup::{IconIndex, SearchPaths, EXTENSIONS};
use libfuzzer_sys::fuzz_target;

const MAX_DIRECTIVES: usize = 48;
const MAX_COMPONENTS: usize = 6;
const MAX_FILE_BYTES: usize = 4096;
const ICON_BYTES: &[u8] = b"\x89PNG\r\n\x1a\n";

fn scratch() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let shm = Path::new("/dev/shm");
        let builder = tempfile::Builder::new()
            .prefix("crostini-fuzz-icons")
            .tempdir_in(shm);
        builder
            .or_else(|_| tempfile::tempdir())
            .expect("scratch dir")
    })
    .path()
}

/// `0/...`, `1/...` or `p/...` with safe components, mapped into `root`.
fn tree_path(root: &Path, rel: &str) -> Option<PathBuf> {
    let rel = Path::new(rel.trim());
    let mut parts = rel.components();
    let top = match parts.next()? {
        Component::Normal(s) if s == "0" => "home/.icons",
        Component::Normal(s) if s == "1" => "data/icons",
        Component::Normal(s) if s == "p" => "data/pixmaps",
        _ => return None,
    };
    let mut path = root.join(top);
    let mut n = 0;
    for part in parts {
        let Component::Normal(name) = part else {
            return None;
        };
        n += 1;
        if n > MAX_COMPONENTS || name.len() > 64 {
            return None;
        }
        path.push(name);
    }
    Some(path)
}

/// A symlink target that stays inside the tree.
fn link_target(target: &str) -> Option<&str> {
    let t = Path::new(target);
    let ups = t
        .components()
        .filter(|c| *c == Component::ParentDir)
        .count();
    let ok = !t.is_absolute() && ups <= 3 && t.components().count() <= MAX_COMPONENTS;
    ok.then_some(target)
}

fn make_parent(path: &Path) {
    if let Some(parent) = path.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
}

fn build_tree(root: &Path, lines: &[&str]) {
    let mut directives = 0;
    let mut i = 0;
    while i < lines.len() && directives < MAX_DIRECTIVES {
        let line = lines[i];
        i += 1;
        let mut chars = line.chars();
        let op = chars.next().unwrap_or(' ');
        let arg = chars.as_str();
        directives += 1;
        match op {
            '=' => {
                let mut content = String::new();
                while i < lines.len() && !lines[i].starts_with(['=', '+', '/', '>']) {
                    if content.len() + lines[i].len() < MAX_FILE_BYTES {
                        content.push_str(lines[i]);
                        content.push('\n');
                    }
                    i += 1;
                }
                if let Some(path) = tree_path(root, arg) {
                    make_parent(&path);
                    let _ = std::fs::write(&path, content);
                }
            }
            '+' => {
                if let Some(path) = tree_path(root, arg) {
                    make_parent(&path);
                    let _ = std::fs::write(&path, ICON_BYTES);
                }
            }
            '/' => {
                if let Some(path) = tree_path(root, arg) {
                    let _ = std::fs::create_dir_all(&path);
                }
            }
            '>' => {
                let mut words = arg.split_whitespace();
                let (Some(from), Some(to)) = (words.next(), words.next()) else {
                    continue;
                };
                if let (Some(path), Some(to)) = (tree_path(root, from), link_target(to)) {
                    make_parent(&path);
                    let _ = std::os::unix::fs::symlink(to, &path);
                }
            }
            _ => {}
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines: Vec<&str> = text.split('\n').collect();
    let query = lines.remove(0);
    let mut q = query.split_whitespace();
    let name = q.next().unwrap_or("app");
    let size = q
        .next()
        .and_then(|v| v.parse::<u32>().ok())
        .unwrap_or(48)
        .clamp(1, 1024);
    let scale = q
        .next()
        .and_then(|v| v.parse::<u32>().ok())
        .unwrap_or(1)
        .clamp(1, 4);
    if name.contains(['/', '\0']) {
        return;
    }

    let root = scratch().join("t");
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(root.join("home/.icons")).expect("scratch tree");
    build_tree(&root, &lines);

    let paths = SearchPaths {
        base_dirs: vec![root.join("home/.icons"), root.join("data/icons")],
        pixmap_dirs: vec![root.join("data/pixmaps")],
        themes: vec!["gnome".to_owned(), "Adwaita".to_owned()],
    };
    let index = IconIndex::scan(&paths);
    assert!(!index.is_stale(), "nothing changed since the scan");
    let found = index.lookup(name, size, scale);
    assert_eq!(found, index.lookup(name, size, scale), "deterministic");
    if let Some(path) = &found {
        let dir_ok = paths
            .base_dirs
            .iter()
            .chain(&paths.pixmap_dirs)
            .any(|d| path.starts_with(d));
        assert!(dir_ok, "{path:?} outside the searched directories");
        let file = path
            .file_name()
            .and_then(|f| f.to_str())
            .expect("UTF-8 name");
        let ok_name = EXTENSIONS.iter().any(|ext| file == format!("{name}.{ext}"));
        assert!(ok_name, "{file:?} is not {name:?} with an icon extension");
        let meta = std::fs::metadata(path).expect("the result exists");
        assert!(meta.is_file(), "{path:?} is not a regular file");
    }
    let _ = std::fs::remove_dir_all(&root);
});
