use super::*;
use crate::apps::{build_application_list, FilterContext, PackageLookupConfig};
use crate::desktop::DesktopEntry;
use crostini_proto::container::application::{localized_string::StringWithLocale, LocalizedString};
use crostini_proto::container::UpdateApplicationListRequest;
use prost::Message;
use std::fs;
use std::path::Path;

const TOKEN: &str = "aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa";

/// The encoded request as the host receives it (with a full-length token).
fn request_len(apps: &[Application]) -> usize {
    UpdateApplicationListRequest {
        token: TOKEN.into(),
        application: apps.to_vec(),
    }
    .encoded_len()
}

fn write_app(dir: &Path, id: &str, extra: &str) {
    fs::write(
        dir.join(format!("{id}.desktop")),
        format!("[Desktop Entry]\nType=Application\nName={id}\nExec={id}\n{extra}"),
    )
    .unwrap();
}

fn ids(apps: &[Application]) -> Vec<&str> {
    apps.iter().map(|a| a.desktop_file_id.as_str()).collect()
}

async fn build(dir: &Path) -> Vec<Application> {
    build_application_list(
        vec![dir.to_path_buf()],
        FilterContext::default(),
        &PackageLookupConfig::default(),
    )
    .await
    .unwrap()
    .0
}

/// An application whose comment makes it about `bytes` long.
fn sized(id: &str, bytes: usize) -> (PathBuf, Application) {
    let app = Application {
        desktop_file_id: id.into(),
        comment: Some(LocalizedString {
            values: vec![StringWithLocale {
                locale: String::new(),
                value: "c".repeat(bytes),
            }],
        }),
        ..Default::default()
    };
    (PathBuf::from(format!("/apps/{id}.desktop")), app)
}

/// issue 9 #5: one oversized entry (900 locales x 1 KiB names, under the reader's file cap)
/// and one with a 5 MB `Exec` no longer hide the normal entries from the host.
#[tokio::test]
async fn oversized_desktop_files_are_left_out_and_the_rest_is_published() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("applications");
    fs::create_dir(&dir).unwrap();
    write_app(&dir, "a-normal", "Comment=fine\n");
    let names: String = (0..900)
        .map(|i| format!("Name[l{i:03}]={}\n", "n".repeat(1024)))
        .collect();
    write_app(&dir, "b-locales", &names);
    write_app(&dir, "c-exec", &format!("Exec={}\n", "x".repeat(5_000_000)));
    write_app(&dir, "d-normal", "");
    let apps = build(&dir).await;
    let mut got = ids(&apps);
    got.sort();
    assert_eq!(got, ["a-normal", "d-normal"]);
    assert!(request_len(&apps) <= HOST_MESSAGE_LIMIT);
}

/// issue 9 #5: a 5 MB entry that reached the list stage is dropped; the request fits.
#[test]
fn a_five_megabyte_entry_is_dropped_and_the_normal_ones_kept() {
    let apps = vec![
        sized("first", 100),
        sized("huge", 5_000_000),
        sized("last", 100),
    ];
    assert!(
        request_len(&apps.iter().map(|a| a.1.clone()).collect::<Vec<_>>()) > HOST_MESSAGE_LIMIT
    );
    let fitted = fit_list(apps);
    assert_eq!(ids(&fitted), ["first", "last"]);
    assert!(request_len(&fitted) <= HOST_MESSAGE_LIMIT);
}

/// issue 9 #5: a list of entries each under the entry cap but together over the limit loses
/// its largest entries, deterministically, and keeps scan order.
#[test]
fn an_over_limit_list_drops_its_largest_entries_first() {
    // 40 entries of 150-189 KiB: ~6.7 MiB in all.
    let apps: Vec<(PathBuf, Application)> = (0..40)
        .map(|i| sized(&format!("app{i:02}"), (150 + (i * 17) % 40) * 1024))
        .collect();
    let fitted = fit_list(apps.clone());
    let len = request_len(&fitted);
    assert!(len <= HOST_MESSAGE_LIMIT, "{len} bytes");
    let size = |id: &str| {
        apps.iter()
            .find(|a| a.1.desktop_file_id == id)
            .map(|a| entry_encoded_len(&a.1))
            .unwrap()
    };
    let kept: Vec<&str> = ids(&fitted);
    let smallest_dropped = apps
        .iter()
        .filter(|a| !kept.contains(&a.1.desktop_file_id.as_str()))
        .map(|a| entry_encoded_len(&a.1))
        .min()
        .unwrap();
    assert!(kept.iter().all(|id| size(id) <= smallest_dropped));
    // Greedy: one more (the smallest dropped) would not fit.
    assert!(len + smallest_dropped > LIST_BUDGET + TOKEN_FIELD_RESERVE - 38);
    let mut sorted = kept.clone();
    sorted.sort();
    assert_eq!(kept, sorted, "scan order kept");
    let mut reversed = apps;
    reversed.reverse();
    let mut again: Vec<String> = fit_list(reversed)
        .into_iter()
        .map(|a| a.desktop_file_id)
        .collect();
    again.sort();
    assert_eq!(again, sorted, "the same entries whatever the order");
}

fn app_entry(text: &str) -> AppEntry {
    AppEntry {
        path: PathBuf::from("/apps/x.desktop"),
        desktop_file_id: "x".into(),
        entry: DesktopEntry::parse(text.as_bytes()).unwrap(),
    }
}

#[test]
fn localized_fields_keep_the_first_locales_and_cut_values_at_a_character() {
    let mut text = String::from("[Desktop Entry]\nType=Application\nExec=x\n");
    text.push_str(&format!("Name={}\n", "é".repeat(MAX_NAME_BYTES)));
    for i in 0..MAX_LOCALES + 10 {
        text.push_str(&format!("Name[l{i:04}]=n\nComment[l{i:04}]=c\n"));
    }
    text.push_str(&format!(
        "Name[{}]=long locale\n",
        "z".repeat(MAX_LOCALE_BYTES + 1)
    ));
    let mut app = app_entry(&text);
    assert_eq!(cap_fields(&mut app), Ok(vec!["Name", "Comment"]));
    let name = &app.entry.name;
    assert_eq!(name.len(), MAX_LOCALES);
    assert_eq!(
        name[""].len(),
        MAX_NAME_BYTES,
        "é is 2 bytes: cut at a boundary"
    );
    assert!(name.contains_key("l0000") && !name.contains_key(&format!("l{:04}", MAX_LOCALES)));
    assert_eq!(app.entry.comment.len(), MAX_LOCALES);
}

#[test]
fn keyword_and_mime_lists_are_capped() {
    let keywords: Vec<String> = (0..MAX_KEYWORDS + 5).map(|i| format!("k{i}")).collect();
    let mimes: Vec<String> = (0..MAX_MIME_TYPES + 5).map(|i| format!("x/m{i}")).collect();
    let text = format!(
        "[Desktop Entry]\nType=Application\nName=x\nExec=x\nKeywords={};{};\nMimeType={};\n",
        "k".repeat(MAX_KEYWORD_BYTES + 1),
        keywords.join(";"),
        mimes.join(";")
    );
    let mut app = app_entry(&text);
    assert_eq!(cap_fields(&mut app), Ok(vec!["Keywords", "MimeType"]));
    assert_eq!(app.entry.keywords[""], keywords[..MAX_KEYWORDS]);
    assert_eq!(app.entry.mime_types, mimes[..MAX_MIME_TYPES]);
}

#[test]
fn an_exec_or_wm_class_over_its_cap_refuses_the_entry_and_normal_entries_pass_untouched() {
    let base = "[Desktop Entry]\nType=Application\nName=x\n";
    let mut long_exec = app_entry(&format!("{base}Exec={}\n", "x".repeat(MAX_EXEC_BYTES + 1)));
    assert!(matches!(
        cap_fields(&mut long_exec),
        Err(Refused::FieldTooLong { field: "Exec", .. })
    ));
    let mut long_class = app_entry(&format!(
        "{base}Exec=x\nStartupWMClass={}\n",
        "w".repeat(MAX_WM_CLASS_BYTES + 1)
    ));
    assert!(matches!(
        cap_fields(&mut long_class),
        Err(Refused::FieldTooLong {
            field: "StartupWMClass",
            ..
        })
    ));
    let normal = app_entry(&format!(
        "{base}Exec=x\nName[fr]=y\nKeywords=a;b;\nMimeType=text/plain;\n"
    ));
    let mut capped = normal.clone();
    assert_eq!(cap_fields(&mut capped), Ok(vec![]));
    assert_eq!(capped, normal);
    assert_eq!(cap_entries(vec![long_exec, normal.clone()]), vec![normal]);
}
