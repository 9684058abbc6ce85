//! Freedesktop icon-theme lookup over a scanned snapshot of the icon directories.
//!
//! Algorithm (Icon Theme Specification, "Icon Lookup"): the configured themes, each followed
//! depth-first by its `Inherits` parents, then `hicolor`; within one theme first a directory
//! that matches the size and scale (`DirectoryMatchesSize`, listing order, base directories in
//! order, extensions png, svg, xpm), else the closest directory (`DirectorySizeDistance`; ties
//! go to the larger directory, because downscaling looks better than upscaling, then to
//! listing order); then the fallback directories (`<base>/<name>.<ext>` for every base
//! directory and the pixmap directories).
//!
//! [`IconIndex::scan`] lists every theme subdirectory once, so a lookup is a hash lookup plus
//! a `stat` of the chosen file. [`IconIndex::is_stale`] compares the recorded status of every
//! directory that was (or could have been) scanned, so new icon files, new size directories,
//! new themes and edited `index.theme` files are all noticed.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::theme::{
    is_safe_relative_dir, is_safe_theme_name, DirectoryType, IndexTheme, ThemeDirectory,
};
use crate::desktop::XdgDirs;

/// Icon file extensions in preference order.
pub const EXTENSIONS: [&str; 3] = ["png", "svg", "xpm"];
/// The theme every lookup ends with.
pub const FALLBACK_THEME: &str = "hicolor";
/// Themes searched before `hicolor` by default (garcon-service §7).
pub const DEFAULT_THEMES: [&str; 1] = ["gnome"];
/// Pixmap directory searched last (garcon-service §5.2.2 step 6).
pub const SYSTEM_PIXMAPS: &str = "/usr/share/pixmaps";
/// Longest `Inherits` chain followed.
const MAX_THEME_DEPTH: usize = 16;

/// Where icons are searched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchPaths {
    /// Icon base directories: `$HOME/.icons`, then `<data dir>/icons` in XDG order.
    pub base_dirs: Vec<PathBuf>,
    /// Pixmap directories searched after the base directories in the fallback step:
    /// `<data dir>/pixmaps` in XDG order, then `/usr/share/pixmaps`.
    pub pixmap_dirs: Vec<PathBuf>,
    /// Themes searched (with their parents) before `hicolor`.
    pub themes: Vec<String>,
}

impl SearchPaths {
    /// The standard layout for the given XDG directories and home.
    pub fn new(xdg: &XdgDirs, home: Option<&Path>, themes: Vec<String>) -> Self {
        let mut base_dirs: Vec<PathBuf> = home.map(|h| h.join(".icons")).into_iter().collect();
        base_dirs.extend(xdg.data_dirs().iter().map(|d| d.join("icons")));
        let mut pixmap_dirs: Vec<PathBuf> =
            xdg.data_dirs().iter().map(|d| d.join("pixmaps")).collect();
        pixmap_dirs.push(PathBuf::from(SYSTEM_PIXMAPS));
        Self {
            base_dirs,
            pixmap_dirs,
            themes,
        }
    }
}

/// Identity and modification state of a file or directory (`None` = absent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    dev: u64,
    ino: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    size: u64,
}

impl Stamp {
    /// The stamp of `path` (following symlinks), `None` when it cannot be stat'ed.
    pub fn of(path: &Path) -> Option<Self> {
        let m = std::fs::metadata(path).ok()?;
        Some(Self {
            dev: m.dev(),
            ino: m.ino(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
            size: m.size(),
        })
    }
}

/// One icon file found by the scan.
#[derive(Debug, Clone)]
struct Candidate {
    /// Index into the theme's directories.
    dir: usize,
    /// Index into the base directories.
    base: usize,
    /// Index into [`EXTENSIONS`].
    ext: usize,
    /// The scan saw a regular file (not a symlink that still needs following).
    verified: bool,
}

/// A theme as scanned.
#[derive(Debug)]
struct ScannedTheme {
    name: String,
    directories: Vec<ThemeDirectory>,
    /// Icon name -> files, in (directory, base, extension) order.
    icons: HashMap<String, Vec<Candidate>>,
}

/// A scanned snapshot of the icon directories.
#[derive(Debug)]
pub struct IconIndex {
    paths: SearchPaths,
    /// Themes in search order (inheritance flattened depth-first, `hicolor` last).
    themes: Vec<ScannedTheme>,
    /// Fallback directories (base dirs then pixmap dirs) and their files.
    fallback_dirs: Vec<PathBuf>,
    fallback: HashMap<String, Vec<(usize, usize, bool)>>,
    stamps: Vec<(PathBuf, Option<Stamp>)>,
}

impl IconIndex {
    /// Scans every theme reachable from `paths`.
    pub fn scan(paths: &SearchPaths) -> Self {
        let mut stamps: Vec<(PathBuf, Option<Stamp>)> = Vec::new();
        let mut stamp = |path: PathBuf| {
            let s = Stamp::of(&path);
            stamps.push((path, s));
            s.is_some()
        };
        for base in &paths.base_dirs {
            stamp(base.clone());
        }

        // Theme search order: configured themes with their parents (depth-first), then hicolor.
        let mut themes: Vec<ScannedTheme> = Vec::new();
        let mut visited: HashSet<String> = HashSet::new();
        let mut stack: Vec<(String, usize)> = Vec::new();
        let roots = paths
            .themes
            .iter()
            .cloned()
            .chain(std::iter::once(FALLBACK_THEME.to_owned()));
        for root in roots {
            stack.push((root, 0));
            while let Some((name, depth)) = stack.pop() {
                if !is_safe_theme_name(&name) || !visited.insert(name.clone()) {
                    continue;
                }
                let (theme, inherits) = scan_theme(paths, &name, &mut stamp);
                if let Some(theme) = theme {
                    themes.push(theme);
                }
                if depth < MAX_THEME_DEPTH {
                    // Reverse so that the first parent is searched first.
                    for parent in inherits.into_iter().rev() {
                        stack.push((parent, depth + 1));
                    }
                }
            }
        }

        let fallback_dirs: Vec<PathBuf> = paths
            .base_dirs
            .iter()
            .chain(&paths.pixmap_dirs)
            .cloned()
            .collect();
        let mut fallback: HashMap<String, Vec<(usize, usize, bool)>> = HashMap::new();
        for (index, dir) in fallback_dirs.iter().enumerate() {
            if index >= paths.base_dirs.len() && !stamp(dir.clone()) {
                continue;
            }
            for (name, ext, verified) in list_icons(dir) {
                fallback
                    .entry(name)
                    .or_default()
                    .push((index, ext, verified));
            }
        }
        for files in fallback.values_mut() {
            files.sort_by_key(|&(dir, ext, _)| (dir, ext));
        }

        Self {
            paths: paths.clone(),
            themes,
            fallback_dirs,
            fallback,
            stamps,
        }
    }

    /// The search paths this index was built from.
    pub fn paths(&self) -> &SearchPaths {
        &self.paths
    }

    /// Names of the themes found, in search order.
    pub fn theme_names(&self) -> Vec<&str> {
        self.themes.iter().map(|t| t.name.as_str()).collect()
    }

    /// Number of directories whose state is tracked for staleness.
    pub fn tracked_paths(&self) -> usize {
        self.stamps.len()
    }

    /// True when any scanned (or possibly appearing) directory or `index.theme` changed.
    pub fn is_stale(&self) -> bool {
        self.stamps
            .iter()
            .any(|(path, stamp)| Stamp::of(path) != *stamp)
    }

    /// The best file for icon `name` at `size` x `scale` (both at least 1), or `None`.
    pub fn lookup(&self, name: &str, size: u32, scale: u32) -> Option<PathBuf> {
        for theme in &self.themes {
            if let Some(path) = self.lookup_in_theme(theme, name, size, scale) {
                return Some(path);
            }
        }
        self.fallback
            .get(name)?
            .iter()
            .find_map(|&(dir, ext, verified)| {
                let path = self.fallback_dirs[dir].join(format!("{name}.{}", EXTENSIONS[ext]));
                (verified || is_regular_file(&path)).then_some(path)
            })
    }

    fn lookup_in_theme(
        &self,
        theme: &ScannedTheme,
        name: &str,
        size: u32,
        scale: u32,
    ) -> Option<PathBuf> {
        let candidates = theme.icons.get(name)?;
        let path_of = |c: &Candidate| {
            self.paths.base_dirs[c.base]
                .join(&theme.name)
                .join(&theme.directories[c.dir].name)
                .join(format!("{name}.{}", EXTENSIONS[c.ext]))
        };
        let exists = |c: &Candidate, path: &Path| c.verified || is_regular_file(path);
        // Pass 1: the first directory (listing order) that matches exactly.
        for c in candidates {
            if theme.directories[c.dir].matches_size(size, scale) {
                let path = path_of(c);
                if exists(c, &path) {
                    return Some(path);
                }
            }
        }
        // Pass 2: the closest directory; ties to the larger one, then listing order.
        let mut ranked: Vec<(u64, std::cmp::Reverse<u64>, usize)> = candidates
            .iter()
            .enumerate()
            .map(|(order, c)| {
                let dir = &theme.directories[c.dir];
                (
                    dir.size_distance(size, scale),
                    std::cmp::Reverse(dir.pixel_size()),
                    order,
                )
            })
            .collect();
        ranked.sort_unstable();
        ranked.into_iter().find_map(|(_, _, order)| {
            let c = &candidates[order];
            let path = path_of(c);
            exists(c, &path).then_some(path)
        })
    }
}

/// Scans one theme: its index (or a synthesized one) and the icons in every base directory.
/// Returns the theme (if it exists anywhere) and its `Inherits` list.
fn scan_theme(
    paths: &SearchPaths,
    name: &str,
    stamp: &mut impl FnMut(PathBuf) -> bool,
) -> (Option<ScannedTheme>, Vec<String>) {
    let mut exists_anywhere = false;
    let mut index: Option<IndexTheme> = None;
    for base in &paths.base_dirs {
        let theme_dir = base.join(name);
        if !stamp(theme_dir.clone()) {
            continue;
        }
        exists_anywhere = true;
        let index_file = theme_dir.join("index.theme");
        if stamp(index_file.clone()) && index.is_none() {
            // The first index.theme found defines the theme (Icon Theme Specification).
            match IndexTheme::from_file(&index_file) {
                Ok(parsed) => index = Some(parsed),
                Err(e) => tracing::debug!(error = %e, "ignoring unusable index.theme"),
            }
        }
    }
    if !exists_anywhere {
        return (None, Vec::new());
    }
    let (directories, inherits) = match index {
        Some(index) => (index.directories, index.inherits),
        None => (synthesize_directories(paths, name, stamp), Vec::new()),
    };
    let mut icons: HashMap<String, Vec<Candidate>> = HashMap::new();
    for (dir_index, dir) in directories.iter().enumerate() {
        for (base_index, base) in paths.base_dirs.iter().enumerate() {
            let path = base.join(name).join(&dir.name);
            if !stamp(path.clone()) {
                continue;
            }
            for (icon, ext, verified) in list_icons(&path) {
                icons.entry(icon).or_default().push(Candidate {
                    dir: dir_index,
                    base: base_index,
                    ext,
                    verified,
                });
            }
        }
    }
    // Listing order = (directory, base, extension), which pass 1 relies on.
    for list in icons.values_mut() {
        list.sort_by_key(|c| (c.dir, c.base, c.ext));
    }
    let theme = ScannedTheme {
        name: name.to_owned(),
        directories,
        icons,
    };
    (Some(theme), inherits)
}

/// Directories of a theme without a usable `index.theme`: every `<NxN[@K]>/<context>` and
/// `scalable/<context>` found in any base directory. Sized directories come first (by size),
/// scalable ones last, so an exact-size raster beats a vector icon.
fn synthesize_directories(
    paths: &SearchPaths,
    name: &str,
    stamp: &mut impl FnMut(PathBuf) -> bool,
) -> Vec<ThemeDirectory> {
    let mut found: Vec<(u8, u32, u32, ThemeDirectory)> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    for base in &paths.base_dirs {
        let theme_dir = base.join(name);
        for level1 in list_subdirs(&theme_dir) {
            let Some(shape) = parse_size_dir(&level1) else {
                continue;
            };
            stamp(theme_dir.join(&level1));
            for level2 in list_subdirs(&theme_dir.join(&level1)) {
                let rel = format!("{level1}/{level2}");
                if !is_safe_relative_dir(&rel) || !seen.insert(rel.clone()) {
                    continue;
                }
                let dir = match shape {
                    Some((size, scale)) => ThemeDirectory {
                        scale,
                        ..ThemeDirectory::new(rel, size)
                    },
                    None => ThemeDirectory {
                        kind: DirectoryType::Scalable,
                        min_size: 1,
                        max_size: super::theme::MAX_DIRECTORY_VALUE as u32,
                        ..ThemeDirectory::new(rel, 128)
                    },
                };
                let key = match shape {
                    Some((size, scale)) => (0, size, scale),
                    None => (1, 0, 0),
                };
                found.push((key.0, key.1, key.2, dir));
            }
        }
    }
    found.sort_by_key(|(group, size, scale, dir)| (*group, *size, *scale, dir.name.clone()));
    found.into_iter().map(|(_, _, _, dir)| dir).collect()
}

/// `NxN` -> Some(Some((N, 1))), `NxN@K` -> Some(Some((N, K))), `scalable` -> Some(None).
fn parse_size_dir(name: &str) -> Option<Option<(u32, u32)>> {
    if name == "scalable" {
        return Some(None);
    }
    let (dims, scale) = match name.split_once('@') {
        Some((dims, scale)) => (dims, scale.strip_suffix('x').unwrap_or(scale).parse().ok()?),
        None => (name, 1),
    };
    let (w, h) = dims.split_once('x')?;
    let size: u32 = w.parse().ok()?;
    let max = super::theme::MAX_DIRECTORY_VALUE as u32;
    (w == h && (1..=max).contains(&size) && (1..=max).contains(&scale))
        .then_some(Some((size, scale)))
}

/// UTF-8 names of the subdirectories of `dir` (following symlinks).
fn list_subdirs(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect()
}

/// `(icon name, extension index, is a regular file)` for every `<name>.{png,svg,xpm}` entry
/// of `dir` that is a file or a symlink (symlinks are checked at lookup time).
fn list_icons(dir: &Path) -> Vec<(String, usize, bool)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let file_type = entry.file_type().ok()?;
            if !(file_type.is_file() || file_type.is_symlink()) {
                return None;
            }
            let file_name = entry.file_name().into_string().ok()?;
            let (stem, ext) = file_name.rsplit_once('.')?;
            let ext = EXTENSIONS.iter().position(|e| *e == ext)?;
            (!stem.is_empty()).then(|| (stem.to_owned(), ext, file_type.is_file()))
        })
        .collect()
}

/// Follows symlinks; loops, dangling links, directories and special files are not icons.
fn is_regular_file(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_dir_names_parse() {
        assert_eq!(parse_size_dir("48x48"), Some(Some((48, 1))));
        assert_eq!(parse_size_dir("48x48@2"), Some(Some((48, 2))));
        assert_eq!(parse_size_dir("48x48@2x"), Some(Some((48, 2))));
        assert_eq!(parse_size_dir("scalable"), Some(None));
        for bad in [
            "48x32",
            "x48",
            "0x0",
            "48",
            "symbolic",
            "48x48@0",
            "5000x5000",
        ] {
            assert_eq!(parse_size_dir(bad), None, "{bad}");
        }
    }

    #[test]
    fn search_paths_put_home_icons_first_and_system_pixmaps_last() {
        let xdg = XdgDirs::from_data_dirs(vec!["/d1".into(), "/d2".into()]);
        let p = SearchPaths::new(&xdg, Some(Path::new("/h")), vec!["gnome".into()]);
        assert_eq!(
            p.base_dirs,
            [
                PathBuf::from("/h/.icons"),
                PathBuf::from("/d1/icons"),
                PathBuf::from("/d2/icons")
            ]
        );
        assert_eq!(
            p.pixmap_dirs,
            [
                PathBuf::from("/d1/pixmaps"),
                PathBuf::from("/d2/pixmaps"),
                PathBuf::from(SYSTEM_PIXMAPS)
            ]
        );
    }
}
