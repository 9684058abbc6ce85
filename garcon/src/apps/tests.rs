use super::*;
use std::fs;
use std::os::unix::fs::symlink;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/apps");

fn fixture_dirs() -> Vec<PathBuf> {
    ["user", "system"]
        .iter()
        .map(|d| Path::new(FIXTURES).join(d).join("applications"))
        .collect()
}

fn fixture_filter() -> FilterContext {
    FilterContext {
        path_env: Some(Path::new(FIXTURES).join("bin").into_os_string()),
    }
}

fn strs(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn localized(pairs: &[(&str, &str)]) -> Option<LocalizedString> {
    Some(LocalizedString {
        values: pairs
            .iter()
            .map(|(locale, value)| StringWithLocale {
                locale: locale.to_string(),
                value: value.to_string(),
            })
            .collect(),
    })
}

fn keywords(pairs: &[(&str, &[&str])]) -> Option<LocaleStrings> {
    Some(LocaleStrings {
        values: pairs
            .iter()
            .map(|(locale, value)| StringsWithLocale {
                locale: locale.to_string(),
                value: strs(value),
            })
            .collect(),
    })
}

/// The expected `Application` for the common case: only an unlocalized Name and an Exec.
fn app(id: &str, name: &str, exec: &str, executable: &str) -> Application {
    Application {
        desktop_file_id: id.into(),
        name: localized(&[("", name)]),
        exec: exec.into(),
        executable_file_name: executable.into(),
        ..Default::default()
    }
}

fn entry(text: &str) -> DesktopEntry {
    DesktopEntry::parse(text.as_bytes()).unwrap()
}

fn fixture_package_lookup() -> PackageLookupConfig {
    PackageLookupConfig {
        lookup: Arc::new(|p: &Path| {
            p.ends_with("system/applications/basic.desktop")
                .then(|| "basic;1.0;all;fixture".to_owned())
        }),
        ..Default::default()
    }
}

#[tokio::test]
async fn fixture_tree_yields_exactly_the_expected_list() {
    let (mut apps, steam) =
        build_application_list(fixture_dirs(), fixture_filter(), &fixture_package_lookup())
            .await
            .unwrap();
    apps.sort_by(|a, b| a.desktop_file_id.cmp(&b.desktop_file_id));
    let want = vec![
        app(".dotfile", "Dot file", "dotfile", "dotfile"),
        app("a-b", "A-B (user flat)", "ab --flat", "ab"),
        Application {
            package_id: "basic;1.0;all;fixture".into(),
            ..app("basic", "Basic", "basic", "basic")
        },
        app("crlf", "CRLF", "crlf --x", "crlf"),
        Application {
            startup_wm_class: "My App".into(),
            startup_notify: true,
            mime_types: strs(&["x-scheme/a;b", "text/x-c"]),
            ..app(
                "escapes",
                "Say \"hi\" and\tgo\\",
                "\"/opt/My App/app\" --flag %U",
                "app",
            )
        },
        app(
            "fallback",
            "Fallback (system)",
            "fallback --system",
            "fallback",
        ),
        Application {
            comment: localized(&[("", "still \u{fffd} here")]),
            ..app(
                "invalid-utf8",
                "Bad \u{fffd}\u{fffd} bytes",
                "badutf8",
                "badutf8",
            )
        },
        app("kde4-deep-nested", "Nested", "nested", "nested"),
        app("kde4-sub", "KDE4 Sub", "sub", "sub"),
        Application {
            name: localized(&[
                ("", "Localized"),
                ("fr", "Localisé"),
                ("sr@Latn", "Lokalizovan"),
            ]),
            comment: localized(&[("", "A comment"), ("de", "Ein Kommentar")]),
            keywords: keywords(&[("", &["one", "two"]), ("de", &["x", "y"])]),
            ..app("localized", "", "localized %U", "localized")
        },
        app("malformed", "Malformed", "malformed", "malformed"),
        Application {
            no_display: true,
            mime_types: strs(&["text/plain"]),
            ..app("nodisplay-mime", "Handler", "handler %f", "handler")
        },
        app("notshowin-kde", "Not in KDE", "notkde", "notkde"),
        app("onlyshowin-gnome", "GNOME and KDE", "gnomekde", "gnomekde"),
        app("override", "Override (user)", "override --user", "override"),
        Application {
            terminal: true,
            ..app("terminal", "Terminal app", "vim %F", "vim")
        },
        app(
            "tryexec-path",
            "TryExec in PATH",
            "fixture-tool",
            "fixture-tool",
        ),
    ];
    assert_eq!(apps, want);
    assert!(steam.is_empty());
}

#[test]
fn earlier_directories_are_scanned_first() {
    let scanned = scan(&fixture_dirs(), &fixture_filter());
    let ids: Vec<&str> = scanned
        .apps
        .iter()
        .map(|a| a.desktop_file_id.as_str())
        .collect();
    let first_system = ids.iter().position(|id| *id == "basic").unwrap();
    for user_id in ["a-b", "override"] {
        let pos = ids.iter().position(|id| id == &user_id).unwrap();
        assert!(
            pos < first_system,
            "{user_id} should come from the first dir: {ids:?}"
        );
    }
}

#[test]
fn files_of_a_directory_come_before_its_subdirectories() {
    let t = tempfile::tempdir().unwrap();
    let apps = t.path().join("applications");
    fs::create_dir_all(apps.join("x")).unwrap();
    let body = "[Desktop Entry]\nType=Application\nName=N\nExec=e\n";
    fs::write(apps.join("x/y.desktop"), body).unwrap();
    fs::write(
        apps.join("x-y.desktop"),
        body.replace("Name=N", "Name=Flat"),
    )
    .unwrap();
    let scanned = scan(&[apps], &FilterContext::default());
    assert_eq!(scanned.apps.len(), 1);
    assert_eq!(scanned.apps[0].entry.unlocalized_name(), "Flat");
}

#[test]
fn symlinked_directories_are_followed_once_and_loops_terminate() {
    let t = tempfile::tempdir().unwrap();
    let apps = t.path().join("applications");
    let real = t.path().join("elsewhere");
    fs::create_dir_all(&apps).unwrap();
    fs::create_dir_all(&real).unwrap();
    fs::write(
        real.join("linked.desktop"),
        "[Desktop Entry]\nType=Application\nName=L\nExec=l\n",
    )
    .unwrap();
    symlink(&real, apps.join("vendor")).unwrap();
    symlink(&apps, apps.join("loop")).unwrap();
    symlink(&real, real.join("self")).unwrap();
    let scanned = scan(&[apps], &FilterContext::default());
    let ids: Vec<&str> = scanned
        .apps
        .iter()
        .map(|a| a.desktop_file_id.as_str())
        .collect();
    assert_eq!(ids, ["vendor-linked"]);
}

#[test]
fn missing_directories_and_no_files_give_an_empty_list() {
    let t = tempfile::tempdir().unwrap();
    let scanned = scan(
        &[t.path().join("nope/applications")],
        &FilterContext::default(),
    );
    assert_eq!(scanned, ScanResult::default());
}

#[test]
fn steam_app_ids_are_collected_from_every_parsed_file_even_masked_ones() {
    let t = tempfile::tempdir().unwrap();
    let d1 = t.path().join("d1/applications");
    let d2 = t.path().join("d2/applications");
    fs::create_dir_all(&d1).unwrap();
    fs::create_dir_all(&d2).unwrap();
    let steam = |id: u32, hidden: bool| {
        format!("[Desktop Entry]\nType=Application\nName=S\nExec=steam\nX-Steam-AppID={id}\nHidden={hidden}\n")
    };
    fs::write(d1.join("game.desktop"), steam(10, true)).unwrap();
    fs::write(d2.join("game.desktop"), steam(20, false)).unwrap();
    let scanned = scan(&[d1, d2], &FilterContext::default());
    assert!(scanned.apps.is_empty());
    assert_eq!(scanned.steam_app_ids, BTreeSet::from([10, 20]));
}

mod filter {
    use super::*;

    const BASE: &str = "[Desktop Entry]\nType=Application\nName=N\nExec=app\n";

    fn passes(extra: &str, filter: &FilterContext) -> bool {
        should_pass_to_host(&entry(&format!("{BASE}{extra}")), filter)
    }

    #[test]
    fn keys_that_drop_an_entry() {
        let f = FilterContext::default();
        let cases = [
            ("", true),
            ("Hidden=true\n", false),
            ("NoDisplay=true\n", false),
            ("NoDisplay=true\nMimeType=text/plain;\n", true),
            ("Categories=Settings;\n", false),
            ("Categories=Utility;SettingsX;\n", true),
            ("OnlyShowIn=KDE;\n", false),
            ("OnlyShowIn=GNOME;KDE;\n", true),
            ("OnlyShowIn=Gnome;\n", false),
            ("NotShowIn=GNOME;\n", false),
            ("NotShowIn=KDE;\n", true),
            ("Terminal=true\n", true),
            ("TryExec=/nonexistent\n", false),
        ];
        for (extra, want) in cases {
            assert_eq!(passes(extra, &f), want, "{extra:?}");
        }
    }

    #[test]
    fn non_applications_and_empty_exec_are_dropped() {
        let f = FilterContext::default();
        let link = entry("[Desktop Entry]\nType=Link\nName=N\nExec=app\n");
        let no_exec = entry("[Desktop Entry]\nType=Application\nName=N\nExec=\n");
        assert!(!should_pass_to_host(&link, &f));
        assert!(!should_pass_to_host(&no_exec, &f));
    }

    #[test]
    fn absolute_try_exec_needs_the_owner_execute_bit() {
        let t = tempfile::tempdir().unwrap();
        let bin = t.path().join("tool");
        fs::write(&bin, "#!/bin/sh\n").unwrap();
        let extra = format!("TryExec={}\n", bin.display());
        let f = FilterContext::default();
        fs::set_permissions(&bin, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(!passes(&extra, &f));
        fs::set_permissions(&bin, fs::Permissions::from_mode(0o744)).unwrap();
        assert!(passes(&extra, &f));
        fs::set_permissions(&bin, fs::Permissions::from_mode(0o655)).unwrap();
        assert!(!passes(&extra, &f), "group/other execute bits do not count");
    }

    #[test]
    fn relative_try_exec_searches_path_and_unset_path_drops() {
        let t = tempfile::tempdir().unwrap();
        let bin = t.path().join("bin");
        fs::create_dir_all(&bin).unwrap();
        fs::write(bin.join("tool"), "#!/bin/sh\n").unwrap();
        fs::set_permissions(bin.join("tool"), fs::Permissions::from_mode(0o755)).unwrap();
        let path_env = std::env::join_paths([t.path().join("empty"), bin]).unwrap();
        let with_path = FilterContext {
            path_env: Some(path_env),
        };
        assert!(passes("TryExec=tool\n", &with_path));
        assert!(!passes("TryExec=other\n", &with_path));
        assert!(!passes("TryExec=tool\n", &FilterContext { path_env: None }));
    }
}

mod executable {
    use super::*;
    use freedesktop_desktop_entry as fde;

    fn exe(exec: &str, icon: &str) -> String {
        let text =
            format!("[Desktop Entry]\nType=Application\nName=Nm\nIcon={icon}\nExec={exec}\n");
        executable_file_name(&entry(&text), Path::new("/d/applications/x.desktop"))
    }

    #[test]
    fn argv0_base_name_vectors() {
        let cases = [
            ("\"/opt/My App/app\" --flag %U", "", "app"),
            ("/usr/bin/gedit %U", "", "gedit"),
            ("env FOO=1 app", "", "env"),
            ("%U", "", ""),
            ("%U app", "", "app"),
            ("%i app", "ic", "--icon"),
            ("%i app", "", "app"),
            ("a%ib", "ic", "a"),
            ("%%x", "", "%x"),
            ("\"\" real", "", "real"),
            ("pre\"fix mid\" tail", "", "prefix mid"),
            ("\"x\"y", "", "x"),
            ("my/path/ --x", "", "path"),
            ("app\tx %f", "", "app\tx"),
            ("/usr/bin/é", "", ""),
            ("\"unterminated arg", "", "unterminated arg"),
            ("%c-run", "", "Nm-run"),
            ("%k", "", "x.desktop"),
            ("/ --x", "", "/"),
        ];
        for (exec, icon, want) in cases {
            assert_eq!(exe(exec, icon), want, "Exec={exec}");
        }
    }

    #[test]
    fn crate_exec_parser_rejects_what_we_accept() {
        // garcon-service §4.9: the crate rejects a first argument containing `=` and an
        // unterminated quote; garcon reports the base name of argv[0] regardless.
        for (exec, ours) in [("FOO=1 app", "FOO=1"), ("app \"unterminated", "app")] {
            let text = format!("[Desktop Entry]\nType=Application\nName=N\nExec={exec}\n");
            let theirs =
                fde::DesktopEntry::from_str("/a/applications/x.desktop", &text, None::<&[&str]>)
                    .unwrap();
            assert!(theirs.parse_exec().is_err(), "{exec}");
            assert_eq!(exe(exec, ""), ours);
        }
    }
}

#[tokio::test]
async fn package_ids_keep_scan_order_with_parallel_slow_lookups() {
    struct Slow;
    impl PackageIdLookup for Slow {
        fn package_id<'a>(&'a self, p: &'a Path) -> BoxFuture<'a, Option<String>> {
            Box::pin(async move {
                let name = p.file_stem()?.to_string_lossy().into_owned();
                // Later entries finish first.
                let delay = if name == "a" { 60 } else { 5 };
                tokio::time::sleep(Duration::from_millis(delay)).await;
                Some(format!("{name};1;all;x"))
            })
        }
    }
    let apps: Vec<AppEntry> = ["a", "b", "c"]
        .iter()
        .map(|n| AppEntry {
            path: PathBuf::from(format!("/x/applications/{n}.desktop")),
            desktop_file_id: n.to_string(),
            entry: entry("[Desktop Entry]\nType=Application\nName=N\nExec=e\n"),
        })
        .collect();
    let config = PackageLookupConfig {
        lookup: Arc::new(Slow),
        concurrency: 3,
        timeout: Duration::from_secs(5),
    };
    let got: Vec<(String, String)> = with_package_ids(apps, &config)
        .await
        .into_iter()
        .map(|a| (a.desktop_file_id, a.package_id))
        .collect();
    let want: Vec<(String, String)> = ["a", "b", "c"]
        .iter()
        .map(|n| (n.to_string(), format!("{n};1;all;x")))
        .collect();
    assert_eq!(got, want);
}

#[tokio::test]
async fn a_hanging_lookup_times_out_to_an_empty_package_id() {
    struct Hang;
    impl PackageIdLookup for Hang {
        fn package_id<'a>(&'a self, _p: &'a Path) -> BoxFuture<'a, Option<String>> {
            Box::pin(futures::future::pending())
        }
    }
    let apps = vec![AppEntry {
        path: PathBuf::from("/x/applications/a.desktop"),
        desktop_file_id: "a".into(),
        entry: entry("[Desktop Entry]\nType=Application\nName=N\nExec=e\n"),
    }];
    let config = PackageLookupConfig {
        lookup: Arc::new(Hang),
        concurrency: 1,
        timeout: Duration::from_millis(20),
    };
    let got = with_package_ids(apps, &config).await;
    assert_eq!(got, vec![app("a", "N", "e", "e")]);
}

/// issue 9 #1: the scan follows the watcher's depth cap: an entry 5 levels down is listed, one
/// 40 levels down is not.
#[test]
fn entries_below_the_depth_cap_are_not_listed() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("applications");
    let level = |n: usize| (0..n).fold(root.clone(), |p, _| p.join("d"));
    fs::create_dir_all(level(40)).unwrap();
    for n in [5, crate::watch::MAX_DEPTH, crate::watch::MAX_DEPTH + 1, 40] {
        fs::write(level(n).join(format!("at{n}.desktop")), "x").unwrap();
    }
    let names: Vec<String> = desktop_files_under(&root)
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["at5.desktop", "at32.desktop"]);
}
