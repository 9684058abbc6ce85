//! Size limits of the application list (issue 9 #5).
//!
//! The host takes one `UpdateApplicationListRequest` of at most [`HOST_MESSAGE_LIMIT`] bytes
//! (cicerone's gRPC server keeps the default 4 MiB receive limit and counts the encoded message,
//! garcon-host §4.2); a larger list is refused whole, so one hostile desktop file would stop
//! every update. Three layers keep the list under it:
//!
//! 1. Per-field caps on a parsed entry ([`cap_entries`]): localized `Name`/`Comment`/`Keywords`
//!    keep at most [`MAX_LOCALES`] locales (in locale order, so the plain value comes first),
//!    locales longer than [`MAX_LOCALE_BYTES`] are dropped, values are cut (at a character
//!    boundary) to [`MAX_NAME_BYTES`] / [`MAX_COMMENT_BYTES`], keyword lists to
//!    [`MAX_KEYWORDS`] of at most [`MAX_KEYWORD_BYTES`] each, `MimeType` to [`MAX_MIME_TYPES`] of
//!    at most [`MAX_MIME_TYPE_BYTES`] each (a warning names the file). `Exec` over
//!    [`MAX_EXEC_BYTES`] or `StartupWMClass` over [`MAX_WM_CLASS_BYTES`] cannot be shortened
//!    without changing their meaning: the entry is dropped with a warning naming the file.
//! 2. A per-entry cap ([`fit_list`]): an `Application` encoding to more than
//!    [`MAX_ENTRY_BYTES`] is dropped with a warning naming the file.
//! 3. The list budget ([`LIST_BUDGET`]: the host limit less room for the token field): while the
//!    list is over it, the largest entry is dropped (ties: greater desktop-file ID first, then
//!    path), each with a warning naming the file. The survivors keep their scan order.
//!
//! Real entries are far below these caps (a desktop file with 150 translations encodes to
//! some 20 KB).

use std::collections::BTreeMap;
use std::path::PathBuf;

use crostini_proto::container::Application;

use super::AppEntry;

/// The host's receive limit for one encoded message.
pub const HOST_MESSAGE_LIMIT: usize = 4 * 1024 * 1024;
/// Room kept for the request's `token` field: key, length and at most
/// [`crate::token::TOKEN_MAX_BYTES`] bytes, rounded up.
pub const TOKEN_FIELD_RESERVE: usize = 64;
// Key (1 byte) + length (1 byte) + the longest token.
const _: () = assert!(TOKEN_FIELD_RESERVE >= 2 + crate::token::TOKEN_MAX_BYTES);
/// Encoded bytes the `application` entries of one request may take.
pub const LIST_BUDGET: usize = HOST_MESSAGE_LIMIT - TOKEN_FIELD_RESERVE;
/// Encoded bytes one entry may take (as a field of the request).
pub const MAX_ENTRY_BYTES: usize = 256 * 1024;
/// Locales kept per localized field.
pub const MAX_LOCALES: usize = 512;
/// Longest locale kept (`sr_RS@latin` is 11).
pub const MAX_LOCALE_BYTES: usize = 64;
/// Longest `Name` value.
pub const MAX_NAME_BYTES: usize = 1024;
/// Longest `Comment` value.
pub const MAX_COMMENT_BYTES: usize = 4096;
/// Keywords kept per locale.
pub const MAX_KEYWORDS: usize = 64;
/// Longest keyword kept.
pub const MAX_KEYWORD_BYTES: usize = 256;
/// MIME types kept per entry.
pub const MAX_MIME_TYPES: usize = 1024;
/// Longest MIME type kept (RFC 6838: 127 + `/` + 127).
pub const MAX_MIME_TYPE_BYTES: usize = 255;
/// Longest `Exec`.
pub const MAX_EXEC_BYTES: usize = 8 * 1024;
/// Longest `StartupWMClass`.
pub const MAX_WM_CLASS_BYTES: usize = 1024;

/// Why an entry is left out of the list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// A field that cannot be shortened is over its cap.
    #[error("{field} is {len} bytes (cap {cap})")]
    FieldTooLong {
        /// The desktop-file key.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The cap.
        cap: usize,
    },
    /// The whole entry is over [`MAX_ENTRY_BYTES`].
    #[error("the entry encodes to {len} bytes (cap {cap})")]
    EntryTooLarge {
        /// Its encoded length.
        len: usize,
        /// The cap.
        cap: usize,
    },
}

/// Applies the per-field caps to every entry, dropping (with a warning) those that cannot be
/// shortened; order is kept.
pub fn cap_entries(apps: Vec<AppEntry>) -> Vec<AppEntry> {
    apps.into_iter()
        .filter_map(|mut app| match cap_fields(&mut app) {
            Ok(trimmed) => {
                if !trimmed.is_empty() {
                    tracing::warn!(
                        path = %app.path.display(),
                        "desktop entry trimmed to the app-list caps: {}",
                        trimmed.join(", ")
                    );
                }
                Some(app)
            }
            Err(err) => {
                tracing::warn!(path = %app.path.display(), "desktop entry left out of the app list: {err}");
                None
            }
        })
        .collect()
}

/// The per-field caps of one entry; returns the keys that were shortened.
pub fn cap_fields(app: &mut AppEntry) -> Result<Vec<&'static str>, Refused> {
    let e = &mut app.entry;
    refuse_over("Exec", &e.exec, MAX_EXEC_BYTES)?;
    refuse_over("StartupWMClass", &e.startup_wm_class, MAX_WM_CLASS_BYTES)?;
    let mut trimmed = Vec::new();
    if cap_localized(&mut e.name, MAX_NAME_BYTES) {
        trimmed.push("Name");
    }
    if cap_localized(&mut e.comment, MAX_COMMENT_BYTES) {
        trimmed.push("Comment");
    }
    let mut keywords_cut = cap_locales(&mut e.keywords);
    for list in e.keywords.values_mut() {
        keywords_cut |= cap_list(list, MAX_KEYWORDS, MAX_KEYWORD_BYTES);
    }
    if keywords_cut {
        trimmed.push("Keywords");
    }
    if cap_list(&mut e.mime_types, MAX_MIME_TYPES, MAX_MIME_TYPE_BYTES) {
        trimmed.push("MimeType");
    }
    Ok(trimmed)
}

fn refuse_over(field: &'static str, value: &str, cap: usize) -> Result<(), Refused> {
    if value.len() > cap {
        return Err(Refused::FieldTooLong {
            field,
            len: value.len(),
            cap,
        });
    }
    Ok(())
}

/// Drops over-long locales and all beyond [`MAX_LOCALES`]; whether anything was dropped.
fn cap_locales<V>(map: &mut BTreeMap<String, V>) -> bool {
    let before = map.len();
    map.retain(|locale, _| locale.len() <= MAX_LOCALE_BYTES);
    if map.len() > MAX_LOCALES {
        *map = std::mem::take(map).into_iter().take(MAX_LOCALES).collect();
    }
    map.len() != before
}

fn cap_localized(map: &mut BTreeMap<String, String>, value_cap: usize) -> bool {
    let mut cut = cap_locales(map);
    for value in map.values_mut() {
        cut |= truncate_at_char(value, value_cap);
    }
    cut
}

/// Drops items over `item_cap` bytes, then keeps the first `count`; whether anything went.
fn cap_list(list: &mut Vec<String>, count: usize, item_cap: usize) -> bool {
    let before = list.len();
    list.retain(|item| item.len() <= item_cap);
    list.truncate(count);
    list.len() != before
}

/// Cuts `value` to at most `cap` bytes at a character boundary; whether it was cut.
fn truncate_at_char(value: &mut String, cap: usize) -> bool {
    if value.len() <= cap {
        return false;
    }
    let mut end = cap;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    value.truncate(end);
    true
}

/// Encoded bytes `app` takes as an `application` field of the request (key, length, body).
pub fn entry_encoded_len(app: &Application) -> usize {
    prost::encoding::message::encoded_len(2, app)
}

/// Applies the per-entry cap and the list budget to `(desktop file, application)` pairs in
/// scan order (module documentation); the survivors keep that order.
pub fn fit_list(apps: Vec<(PathBuf, Application)>) -> Vec<Application> {
    let sizes: Vec<usize> = apps.iter().map(|(_, app)| entry_encoded_len(app)).collect();
    let mut keep = vec![true; apps.len()];
    let mut total = 0usize;
    for (i, (path, _)) in apps.iter().enumerate() {
        if sizes[i] > MAX_ENTRY_BYTES {
            keep[i] = false;
            let err = Refused::EntryTooLarge {
                len: sizes[i],
                cap: MAX_ENTRY_BYTES,
            };
            tracing::warn!(path = %path.display(), "desktop entry left out of the app list: {err}");
        } else {
            total += sizes[i];
        }
    }
    if total > LIST_BUDGET {
        let mut largest: Vec<usize> = (0..apps.len()).filter(|&i| keep[i]).collect();
        largest.sort_by(|&a, &b| {
            let key = |i: usize| (sizes[i], &apps[i].1.desktop_file_id, &apps[i].0);
            key(b).cmp(&key(a))
        });
        for i in largest {
            if total <= LIST_BUDGET {
                break;
            }
            keep[i] = false;
            total -= sizes[i];
            tracing::warn!(
                path = %apps[i].0.display(),
                bytes = sizes[i],
                "desktop entry left out: the app list would exceed the host's {HOST_MESSAGE_LIMIT}-byte limit"
            );
        }
    }
    apps.into_iter()
        .zip(keep)
        .filter_map(|((_, app), keep)| keep.then_some(app))
        .collect()
}

#[cfg(test)]
mod tests;
