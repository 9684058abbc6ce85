use super::*;

fn parse(text: &str) -> DesktopEntry {
    DesktopEntry::parse(text.as_bytes()).unwrap()
}

fn strs(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn locmap(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(l, v)| (l.to_string(), v.to_string()))
        .collect()
}

fn loclists(pairs: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
    pairs
        .iter()
        .map(|(l, v)| (l.to_string(), strs(v)))
        .collect()
}

const FULL: &str = "# leading comment\n\
[Desktop Entry]\n\
Type=Application\n\
Name=Full App\n\
Name[fr]=Appli complète\n\
\n\
  # indented comment\n\
Comment=Does everything\n\
Comment[es]=Hace todo\n\
Keywords=one;two;\n\
Keywords[fr]=un;deux;\n\
NoDisplay=false\n\
Icon=full\\sicon\n\
Hidden=false\n\
OnlyShowIn=KDE;Gnome;\n\
NotShowIn=XFCE;\n\
TryExec=/usr/bin/full\n\
Exec=/usr/bin/full --flag %U\n\
Path=/tmp/work\\sdir\n\
Terminal=true\n\
MimeType=text/plain;foo/x-java\n\
Categories=Utility;\n\
StartupWMClass=Full\\tClass\n\
StartupNotify=true\n\
X-Steam-AppID=440\n\
X-Unknown-Key=whatever\n\
GenericName=Generic\n";

#[test]
fn full_entry_reads_every_recognized_key() {
    let want = DesktopEntry {
        entry_type: "Application".into(),
        name: locmap(&[("", "Full App"), ("fr", "Appli complète")]),
        comment: locmap(&[("", "Does everything"), ("es", "Hace todo")]),
        keywords: loclists(&[("", &["one", "two"]), ("fr", &["un", "deux"])]),
        no_display: false,
        icon: "full\\sicon".into(),
        hidden: false,
        only_show_in: strs(&["KDE", "Gnome"]),
        not_show_in: strs(&["XFCE"]),
        try_exec: "/usr/bin/full".into(),
        exec: "/usr/bin/full --flag %U".into(),
        path: "/tmp/work dir".into(),
        terminal: true,
        mime_types: strs(&["text/plain", "foo/x-java"]),
        categories: strs(&["Utility"]),
        startup_wm_class: "Full\tClass".into(),
        startup_notify: true,
        steam_app_id: 440,
    };
    assert_eq!(parse(FULL), want);
}

#[test]
fn every_non_empty_locale_is_kept_verbatim() {
    let e = parse(
        "[Desktop Entry]\nType=Application\nName=N\nName[sr]=a\nName[sr_YU]=b\n\
         Name[sr_YU@Latn]=c\nName[sr@Latn]=d\nName[]=e\nName[xx=f\n",
    );
    assert_eq!(
        e.name,
        locmap(&[
            ("", "N"),
            ("sr", "a"),
            ("sr@Latn", "d"),
            ("sr_YU", "b"),
            ("sr_YU@Latn", "c"),
        ])
    );
}

#[test]
fn localized_comment_and_keywords_need_no_unlocalized_counterpart() {
    let e = parse("[Desktop Entry]\nType=Application\nName=N\nComment[de]=K\nKeywords[de]=x;y;\n");
    assert_eq!(e.comment, locmap(&[("de", "K")]));
    assert_eq!(e.keywords, loclists(&[("de", &["x", "y"])]));
}

#[test]
fn string_escapes_decode_and_unknown_escapes_yield_the_character() {
    let e = parse(
        "[Desktop Entry]\nType=Application\nName=Say \\\"hi\\\" \\t \\s \\r \\n \\\\ end\n\
         StartupWMClass=trailing\\\n",
    );
    assert_eq!(e.unlocalized_name(), "Say \"hi\" \t   \r \n \\ end");
    assert_eq!(e.startup_wm_class, "trailing");
}

#[test]
fn list_values_split_on_unescaped_semicolons() {
    let cases: [(&str, &[&str]); 5] = [
        ("a\\;;;b;c\\;d;", &["a;", "", "b", "c;d"]),
        ("a;b;", &["a", "b"]),
        ("a;;b", &["a", "", "b"]),
        ("a;b;;", &["a", "b", ""]),
        ("x\\;y;z", &["x;y", "z"]),
    ];
    for (raw, want) in cases {
        assert_eq!(split_list(raw), strs(want), "{raw}");
    }
    let e = parse("[Desktop Entry]\nType=Application\nName=N\nOnlyShowIn=a\\;;;b;c\\;d;\n");
    assert_eq!(e.only_show_in, strs(&["a;", "", "b", "c;d"]));
}

#[test]
fn icon_and_type_are_not_unescaped() {
    let e = parse("[Desktop Entry]\nType=Application\nName=N\nIcon=a\\sb\n");
    assert_eq!(e.icon, "a\\sb");
}

#[test]
fn whitespace_around_keys_values_and_crlf_is_trimmed() {
    let e = parse("[Desktop Entry]\r\nType =Application \r\nName = X  \r\nExec=\tapp\r\n");
    assert_eq!(e.entry_type, "Application");
    assert_eq!(e.unlocalized_name(), "X");
    assert_eq!(e.exec, "app");
}

#[test]
fn empty_values_and_lines_without_equals_are_ignored() {
    let e = parse("[Desktop Entry]\nType=Application\nName=N\nExec=\nno equals here\nIcon=  \n");
    assert_eq!(e.exec, "");
    assert_eq!(e.icon, "");
}

#[test]
fn booleans_are_true_only_for_exact_true() {
    for (raw, want) in [
        ("true", true),
        ("True", false),
        ("1", false),
        ("yes", false),
    ] {
        let e = parse(&format!(
            "[Desktop Entry]\nType=Application\nName=N\nNoDisplay={raw}\n"
        ));
        assert_eq!(e.no_display, want, "{raw}");
    }
}

#[test]
fn later_groups_end_parsing_and_earlier_groups_are_skipped() {
    let e = parse(
        "[Other]\nName=Other\n[Desktop Entry]\nType=Application\nName=Main\nExec=main\n\
         [Desktop Action new]\nExec=action\nMimeType=x/y\n[Desktop Entry]\nName=Second\n",
    );
    assert_eq!(e.unlocalized_name(), "Main");
    assert_eq!(e.exec, "main");
    assert!(e.mime_types.is_empty());
}

#[test]
fn a_malformed_group_header_inside_the_entry_also_ends_parsing() {
    let e = parse("[Desktop Entry]\nType=Application\nName=N\n[broken\nExec=late\n");
    assert_eq!(e.exec, "");
}

#[test]
fn duplicate_list_keys_append_and_scalar_keys_take_the_last() {
    let e = parse(
        "[Desktop Entry]\nType=Application\nName=First\nName=Last\nMimeType=a/b;\n\
         MimeType=c/d;\nKeywords[fr]=x;\nKeywords[fr]=y;\n",
    );
    assert_eq!(e.unlocalized_name(), "Last");
    assert_eq!(e.mime_types, strs(&["a/b", "c/d"]));
    assert_eq!(e.keywords, loclists(&[("fr", &["x", "y"])]));
}

#[test]
fn invalid_type_or_missing_name_is_rejected() {
    let cases = [
        (
            "[Desktop Entry]\nType=Bogus\nName=N\n",
            InvalidEntry::BadType(Some("Bogus".into())),
        ),
        ("[Desktop Entry]\nName=N\n", InvalidEntry::BadType(None)),
        (
            "[Desktop Entry]\nType=Application\nName[fr]=N\n",
            InvalidEntry::MissingName,
        ),
        ("Type=Application\nName=N\n", InvalidEntry::BadType(None)),
    ];
    for (text, want) in cases {
        assert_eq!(DesktopEntry::parse(text.as_bytes()), Err(want), "{text}");
    }
}

#[test]
fn link_and_directory_types_are_valid() {
    for t in ["Link", "Directory"] {
        let e = parse(&format!("[Desktop Entry]\nType={t}\nName=N\n"));
        assert_eq!(e.entry_type, t);
    }
}

#[test]
fn invalid_utf8_is_decoded_lossily_without_rejecting_the_file() {
    let bytes = b"[Desktop Entry]\nType=Application\nName=Bad \xff\xfe name\nExec=app\n";
    let e = DesktopEntry::parse(bytes).unwrap();
    assert_eq!(e.unlocalized_name(), "Bad \u{fffd}\u{fffd} name");
    assert_eq!(e.exec, "app");
}

#[test]
fn steam_app_id_parses_unsigned_decimal_only() {
    for (raw, want) in [
        ("570", 570),
        ("-1", 0),
        ("+5", 0),
        ("12x", 0),
        ("99999999999999999999", 0),
    ] {
        let e = parse(&format!(
            "[Desktop Entry]\nType=Application\nName=N\nX-Steam-AppID={raw}\n"
        ));
        assert_eq!(e.steam_app_id, want, "{raw}");
    }
}

mod files {
    use super::*;

    fn mkfifo(path: &Path) {
        use std::os::unix::ffi::OsStrExt;
        let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
        // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    }

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn from_file_requires_the_desktop_extension() {
        let t = tempfile::tempdir().unwrap();
        let path = write(t.path(), "a.notdesktop", FULL.as_bytes());
        let err = DesktopEntry::from_file(&path).unwrap_err();
        assert!(
            matches!(err, DesktopEntryError::NotDesktopFile { .. }),
            "{err}"
        );
    }

    #[test]
    fn from_file_rejects_a_directory_named_desktop() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("d.desktop");
        std::fs::create_dir(&path).unwrap();
        let err = DesktopEntry::from_file(&path).unwrap_err();
        assert!(matches!(err, DesktopEntryError::Read { .. }), "{err}");
    }

    #[test]
    fn from_file_rejects_files_over_the_cap_and_accepts_exactly_the_cap() {
        let t = tempfile::tempdir().unwrap();
        let mut body = b"[Desktop Entry]\nType=Application\nName=Big\n".to_vec();
        body.resize(MAX_DESKTOP_FILE_SIZE as usize, b'#');
        let ok = write(t.path(), "ok.desktop", &body);
        assert_eq!(
            DesktopEntry::from_file(&ok).unwrap().unlocalized_name(),
            "Big"
        );
        body.push(b'\n');
        let big = write(t.path(), "big.desktop", &body);
        let err = DesktopEntry::from_file(&big).unwrap_err();
        assert!(matches!(err, DesktopEntryError::TooLarge { .. }), "{err}");
        assert!(err.to_string().contains("big.desktop"), "{err}");
    }

    #[test]
    fn a_five_megabyte_file_is_refused_naming_it() {
        let t = tempfile::tempdir().unwrap();
        let mut body = b"[Desktop Entry]\nType=Application\nName=".to_vec();
        body.resize(5_000_000, b'x');
        let path = write(t.path(), "huge.desktop", &body);
        let err = DesktopEntry::from_file(&path).unwrap_err();
        assert!(matches!(err, DesktopEntryError::TooLarge { .. }), "{err}");
        assert!(err.to_string().contains("huge.desktop"), "{err}");
    }

    #[test]
    fn from_file_refuses_a_fifo_at_once() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("x.desktop");
        mkfifo(&path);
        let started = std::time::Instant::now();
        let err = DesktopEntry::from_file(&path).unwrap_err();
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        assert!(matches!(err, DesktopEntryError::Read { .. }), "{err}");
        assert!(err.to_string().contains("FIFO"), "{err}");
        assert!(err.to_string().contains("x.desktop"), "{err}");
    }

    #[test]
    fn from_file_reads_a_valid_file() {
        let t = tempfile::tempdir().unwrap();
        let path = write(t.path(), "full.desktop", FULL.as_bytes());
        assert_eq!(DesktopEntry::from_file(&path).unwrap(), parse(FULL));
    }
}

/// Each test pins one way `freedesktop-desktop-entry` 0.8 differs from garcon
/// (garcon-service §4.9): the crate's result is asserted next to ours, so if a future crate
/// version changes behavior the test tells us the difference is gone.
mod crate_differences {
    use super::*;
    use freedesktop_desktop_entry as fde;

    const PATH: &str = "/usr/share/applications/x.desktop";

    fn crate_parse(text: &str) -> Result<fde::DesktopEntry, fde::DecodeError> {
        fde::DesktopEntry::from_str(PATH, text, None::<&[&str]>)
    }

    #[test]
    fn clean_file_agrees_with_the_crate() {
        let text = "[Desktop Entry]\nType=Application\nName=App\nName[fr]=Appli\n\
                    Exec=app %U\nIcon=app\nMimeType=a/b;c/d;\nStartupWMClass=App\nTerminal=true\n";
        let theirs = crate_parse(text).unwrap();
        let ours = parse(text);
        assert_eq!(theirs.name(&["fr"]).unwrap(), ours.name["fr"]);
        assert_eq!(theirs.name(&[] as &[&str]).unwrap(), ours.name[""]);
        assert_eq!(theirs.exec().unwrap(), ours.exec);
        assert_eq!(theirs.icon().unwrap(), ours.icon);
        assert_eq!(theirs.mime_type().unwrap(), ["a/b", "c/d", ""]);
        assert_eq!(ours.mime_types, strs(&["a/b", "c/d"]));
        assert_eq!(theirs.startup_wm_class().unwrap(), ours.startup_wm_class);
        assert_eq!(theirs.terminal(), ours.terminal);
    }

    #[test]
    fn line_without_equals_fails_the_crate_but_is_ignored_by_us() {
        let text = "[Desktop Entry]\nType=Application\nName=N\njunk line\n";
        assert!(crate_parse(text).is_err());
        assert_eq!(parse(text).unlocalized_name(), "N");
    }

    #[test]
    fn unknown_escapes_fail_the_crate_but_yield_the_character_for_us() {
        let text = "[Desktop Entry]\nType=Application\nName=a \\\"b\\\" c\\;d\n";
        assert!(crate_parse(text).is_err());
        assert_eq!(parse(text).unlocalized_name(), "a \"b\" c;d");
    }

    #[test]
    fn trailing_backslash_fails_the_crate_but_is_dropped_by_us() {
        let text = "[Desktop Entry]\nType=Application\nName=abc\\\n";
        assert!(crate_parse(text).is_err());
        assert_eq!(parse(text).unlocalized_name(), "abc");
    }

    #[test]
    fn indented_group_header_fails_the_crate_but_is_trimmed_by_us() {
        let text = "  [Desktop Entry]\nType=Application\nName=N\n";
        assert!(crate_parse(text).is_err());
        assert_eq!(parse(text).unlocalized_name(), "N");
    }

    #[test]
    fn keys_before_any_group_fail_the_crate_but_are_ignored_by_us() {
        let text = "Stray=1\n[Desktop Entry]\nType=Application\nName=N\n";
        assert!(crate_parse(text).is_err());
        assert_eq!(parse(text).unlocalized_name(), "N");
    }

    #[test]
    fn localized_key_without_base_key_fails_the_crate_but_is_kept_by_us() {
        let text = "[Desktop Entry]\nType=Application\nName=N\nKeywords[fr]=a;b;\n";
        assert!(crate_parse(text).is_err());
        assert_eq!(parse(text).keywords, loclists(&[("fr", &["a", "b"])]));
    }

    #[test]
    fn errors_in_action_groups_fail_the_crate_but_later_groups_are_never_read_by_us() {
        let text = "[Desktop Entry]\nType=Application\nName=N\n[Desktop Action a]\nName=x\\\n";
        assert!(crate_parse(text).is_err());
        assert_eq!(parse(text).unlocalized_name(), "N");
    }

    #[test]
    fn duplicate_list_keys_overwrite_in_the_crate_but_append_for_us() {
        let text = "[Desktop Entry]\nType=Application\nName=N\nMimeType=a/b;\nMimeType=c/d;\n";
        assert_eq!(crate_parse(text).unwrap().mime_type().unwrap(), ["c/d", ""]);
        assert_eq!(parse(text).mime_types, strs(&["a/b", "c/d"]));
    }

    #[test]
    fn trailing_whitespace_is_kept_by_the_crate_but_trimmed_by_us() {
        let text = "[Desktop Entry]\nType=Application\nName=N\nExec=app  \n";
        assert_eq!(crate_parse(text).unwrap().exec().unwrap(), "app  ");
        assert_eq!(parse(text).exec, "app");
    }

    #[test]
    fn crate_appid_uses_the_last_applications_component_ours_the_first() {
        let path = "/home/u/applications/share/applications/kde4/foo.desktop";
        let text = "[Desktop Entry]\nType=Application\nName=N\n";
        let theirs = fde::DesktopEntry::from_str(path, text, None::<&[&str]>).unwrap();
        assert_eq!(theirs.id(), "kde4-foo");
        assert_eq!(
            crate::desktop::desktop_file_id(Path::new(path)),
            "share-applications-kde4-foo"
        );
    }

    #[test]
    fn crate_from_path_requires_utf8_ours_decodes_lossily() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("bad.desktop");
        std::fs::write(&path, b"[Desktop Entry]\nType=Application\nName=\xff\n").unwrap();
        assert!(fde::DesktopEntry::from_path(&path, None::<&[&str]>).is_err());
        let ours = DesktopEntry::from_file(&path).unwrap();
        assert_eq!(ours.unlocalized_name(), "\u{fffd}");
    }
}

/// Deterministic fuzz smoke test: random and mutated inputs never panic, and every accepted
/// entry satisfies the validity rules.
#[test]
fn fuzz_smoke_parse_never_panics() {
    let mut rng = crate::test_support::XorShift64::new(0x9e37_79b9_7f4a_7c15);
    let mut next = move || rng.next_u64();
    let alphabet = b"[]=;\\#\n\r \tNameTypeApplicationExec%\"sntr\xff\xc3\xa9";
    for round in 0..5_000 {
        let mut bytes = if round % 2 == 0 {
            FULL.as_bytes().to_vec()
        } else {
            b"[Desktop Entry]\nType=Application\nName=x\n".to_vec()
        };
        for _ in 0..(next() % 16 + 1) {
            let pos = (next() as usize) % (bytes.len() + 1);
            let byte = alphabet[(next() as usize) % alphabet.len()];
            match next() % 3 {
                0 => bytes.insert(pos, byte),
                1 if pos < bytes.len() => bytes[pos] = byte,
                _ if pos < bytes.len() => {
                    bytes.remove(pos);
                }
                _ => {}
            }
        }
        if let Ok(entry) = DesktopEntry::parse(&bytes) {
            assert!(VALID_TYPES.contains(&entry.entry_type.as_str()));
            assert!(entry.name.contains_key(""));
        }
    }
}
