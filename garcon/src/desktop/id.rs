//! Desktop-file IDs (garcon-service §4.6) and ID -> file lookup (§4.7).

use std::path::{Component, Path, PathBuf};

/// Above this many hyphens only two candidates per directory are tried.
const MAX_HYPHENS_FOR_VARIANTS: usize = 10;

/// The desktop-file ID of a path: the components after the **first** component named
/// `applications`, joined with `-`, with a trailing `.desktop` removed. Empty when no component
/// is `applications`. `…/applications/kde4/foo.desktop` -> `kde4-foo`.
pub fn desktop_file_id(path: &Path) -> String {
    let text = path.to_string_lossy();
    let stripped = text.strip_suffix(".desktop").unwrap_or(&text);
    let mut components = Path::new(stripped).components().filter_map(|c| match c {
        Component::Normal(name) => Some(name.to_string_lossy()),
        _ => None,
    });
    if !components.any(|c| c == "applications") {
        return String::new();
    }
    components.collect::<Vec<_>>().join("-")
}

/// Finds the file for a desktop-file ID in `application_dirs` (each `<data dir>/applications`,
/// in XDG order). `-` in the ID may stand for `-` or `/`.
///
/// Up to 10 hyphens: variants `v = 0 .. 2^h` (bit 0 = the last hyphen; a set bit keeps `-`,
/// a clear bit makes `/`), variant-major, directory-minor, so the literal ID is tried last.
/// More hyphens: per directory, all-`/` then literal. "Exists" follows symlinks.
///
/// Returns `None` for an empty ID. Deviation (garcon-service §5.1.6 SHOULD): IDs containing
/// NUL, `/` or a `..` component are rejected instead of being joined unchecked.
pub fn find_file_for_desktop_id(id: &str, application_dirs: &[PathBuf]) -> Option<PathBuf> {
    if id.is_empty() || id.contains(['/', '\0']) || id.split('-').any(|part| part == "..") {
        return None;
    }
    let hyphens: Vec<usize> = id.match_indices('-').map(|(i, _)| i).collect();
    let exists = |dir: &PathBuf, name: &str| {
        // A hyphen turned into a slash must not make an empty, `.` or `..` component: a leading
        // `/` would make `join` replace the applications dir (`-tmp-x` → `/tmp/x.desktop`).
        if !is_plain_relative(name) {
            return None;
        }
        let candidate = dir.join(format!("{name}.desktop"));
        // `Path::exists` follows symlinks: dangling links and loops count as absent.
        candidate.exists().then_some(candidate)
    };
    if hyphens.len() > MAX_HYPHENS_FOR_VARIANTS {
        let slashed = id.replace('-', "/");
        return application_dirs
            .iter()
            .find_map(|dir| exists(dir, &slashed).or_else(|| exists(dir, id)));
    }
    let h = hyphens.len();
    (0u32..(1u32 << h)).find_map(|variant| {
        let mut name = id.as_bytes().to_vec();
        for (index_from_right, &pos) in hyphens.iter().rev().enumerate() {
            if variant & (1 << index_from_right) == 0 {
                name[pos] = b'/';
            }
        }
        // Only ASCII '-' bytes were replaced by ASCII '/', so the bytes stay valid UTF-8.
        let name = String::from_utf8_lossy(&name);
        application_dirs.iter().find_map(|dir| exists(dir, &name))
    })
}

/// True when every `/`-separated component of `name` is a real name (not empty, `.` or `..`).
fn is_plain_relative(name: &str) -> bool {
    name.split('/')
        .all(|part| !part.is_empty() && part != "." && part != "..")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn touch(path: &Path) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, "[Desktop Entry]\n").unwrap();
    }

    #[test]
    fn id_joins_components_after_applications() {
        let cases = [
            ("/usr/share/applications/foo.desktop", "foo"),
            ("/usr/share/applications/kde4/foo.desktop", "kde4-foo"),
            (
                "/usr/share/applications/foo/bar_fun/mad.desktop",
                "foo-bar_fun-mad",
            ),
            (
                "/usr/share/applications/foo/applications/bar.desktop",
                "foo-applications-bar",
            ),
            (
                "/applications/u/share/applications/x.desktop",
                "u-share-applications-x",
            ),
            ("/usr/share/other/foo.desktop", ""),
        ];
        for (path, want) in cases {
            assert_eq!(desktop_file_id(Path::new(path)), want, "{path}");
        }
    }

    #[test]
    fn lookup_prefers_slash_variants_and_falls_back_in_order() {
        let t = tempfile::tempdir().unwrap();
        let apps = t.path().join("share/applications");
        let dirs = vec![apps.clone()];
        for rel in [
            "a/b/c.desktop",
            "a/b-c.desktop",
            "a-b/c.desktop",
            "a-b-c.desktop",
        ] {
            touch(&apps.join(rel));
        }
        let order = [
            "a/b/c.desktop",
            "a/b-c.desktop",
            "a-b/c.desktop",
            "a-b-c.desktop",
        ];
        for rel in order {
            assert_eq!(
                find_file_for_desktop_id("a-b-c", &dirs),
                Some(apps.join(rel))
            );
            fs::remove_file(apps.join(rel)).unwrap();
        }
        assert_eq!(find_file_for_desktop_id("a-b-c", &dirs), None);
    }

    #[test]
    fn lookup_is_variant_major_directory_minor() {
        let t = tempfile::tempdir().unwrap();
        let d1 = t.path().join("d1/applications");
        let d2 = t.path().join("d2/applications");
        touch(&d1.join("x-y.desktop"));
        touch(&d2.join("x/y.desktop"));
        let found = find_file_for_desktop_id("x-y", &[d1, d2.clone()]);
        assert_eq!(found, Some(d2.join("x/y.desktop")));
    }

    #[test]
    fn lookup_with_more_than_ten_hyphens_tries_only_two_candidates() {
        let t = tempfile::tempdir().unwrap();
        let apps = t.path().join("applications");
        let id = "a-b-c-d-e-f-g-h-i-j-k-l";
        // A mixed variant is never tried above 10 hyphens.
        touch(&apps.join("a/b/c/d/e/f/g/h/i/j/k-l.desktop"));
        assert_eq!(
            find_file_for_desktop_id(id, std::slice::from_ref(&apps)),
            None
        );
        touch(&apps.join(format!("{id}.desktop")));
        assert_eq!(
            find_file_for_desktop_id(id, std::slice::from_ref(&apps)),
            Some(apps.join(format!("{id}.desktop")))
        );
        touch(&apps.join("a/b/c/d/e/f/g/h/i/j/k/l.desktop"));
        assert_eq!(
            find_file_for_desktop_id(id, std::slice::from_ref(&apps)),
            Some(apps.join("a/b/c/d/e/f/g/h/i/j/k/l.desktop"))
        );
    }

    #[test]
    fn lookup_follows_symlinks_and_treats_dangling_links_as_absent() {
        let t = tempfile::tempdir().unwrap();
        let apps = t.path().join("applications");
        touch(&apps.join("real.desktop"));
        std::os::unix::fs::symlink(apps.join("real.desktop"), apps.join("link.desktop")).unwrap();
        std::os::unix::fs::symlink(apps.join("gone.desktop"), apps.join("dangling.desktop"))
            .unwrap();
        fs::create_dir_all(apps.join("dir.desktop")).unwrap();
        let dirs = [apps.clone()];
        assert_eq!(
            find_file_for_desktop_id("link", &dirs),
            Some(apps.join("link.desktop"))
        );
        assert_eq!(find_file_for_desktop_id("dangling", &dirs), None);
        assert_eq!(
            find_file_for_desktop_id("dir", &dirs),
            Some(apps.join("dir.desktop"))
        );
    }

    #[test]
    fn lookup_rejects_empty_and_escaping_ids() {
        let t = tempfile::tempdir().unwrap();
        let apps = t.path().join("share/applications");
        touch(&t.path().join("share/evil.desktop"));
        let dirs = [apps];
        for id in ["", "..-evil", "../evil", "a\0b"] {
            assert_eq!(find_file_for_desktop_id(id, &dirs), None, "{id:?}");
        }
    }

    #[test]
    fn hyphens_never_make_an_absolute_or_empty_component() {
        let t = tempfile::tempdir().unwrap();
        let apps = t.path().join("share/applications");
        let outside = t.path().join("outside");
        touch(&outside.join("evil.desktop"));
        // `-<tempdir>-outside-evil` would become `/<tempdir>/outside/evil` with every hyphen a slash.
        let absolute_id = format!("{}-outside-evil", t.path().display()).replace('/', "-");
        touch(&apps.join("a/b.desktop"));
        let dirs = [apps.clone()];
        for id in [absolute_id.as_str(), "a--b", "a-b-", "a-.-b"] {
            assert_eq!(find_file_for_desktop_id(id, &dirs), None, "{id:?}");
        }
        assert_eq!(
            find_file_for_desktop_id("a-b", &dirs),
            Some(apps.join("a/b.desktop"))
        );
    }
}
