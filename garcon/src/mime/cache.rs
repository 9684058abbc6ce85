//! shared-mime-info binary `mime.cache` parser (garcon-service §6.2, garcon-host §5).
//!
//! Only the reverse suffix tree is read: every leaf whose suffix starts with `.` maps that
//! extension (without the dot) to its MIME type; the highest weight wins, ties keep the first
//! leaf seen in depth-first (stack) order. Every word read is bounds- and alignment-checked;
//! any out-of-range value rejects the whole file.

use std::collections::HashMap;

/// Largest accepted file (10 MiB).
pub const MAX_MIME_CACHE_SIZE: usize = 10 * 1024 * 1024;
/// Header size; also the lowest valid string offset.
const HEADER_SIZE: u32 = 40;
/// More non-leaf nodes than this rejects the file.
const MAX_NODES: usize = 30_000;
/// Node texts longer than this (bytes) are skipped together with their subtree.
const MAX_EXT_SIZE: usize = 100;
/// Largest Unicode code point; also the cap for counts.
const MAX_UNICODE: u32 = 0x10_ffff;
/// Weight used when the leaf's weight byte lies past the end of the file.
const DEFAULT_WEIGHT: u8 = 50;

/// Why a mime.cache was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MimeCacheError {
    /// Larger than [`MAX_MIME_CACHE_SIZE`].
    #[error("mime.cache is {0} bytes, larger than {MAX_MIME_CACHE_SIZE}")]
    TooLarge(usize),
    /// Shorter than the 40-byte header.
    #[error("mime.cache is {0} bytes, shorter than the 40-byte header")]
    TooSmall(usize),
    /// A word offset is misaligned or past the end of the file.
    #[error("mime.cache {field}: offset {offset} misaligned or out of bounds (size {size})")]
    BadOffset {
        /// Which word.
        field: &'static str,
        /// Its offset.
        offset: u64,
        /// File size.
        size: usize,
    },
    /// A word's value is outside its allowed range.
    #[error("mime.cache {field}={value} not in [{min}, {max}]")]
    OutOfRange {
        /// Which word.
        field: &'static str,
        /// Its value.
        value: u32,
        /// Lowest allowed.
        min: u64,
        /// Highest allowed.
        max: u64,
    },
    /// The byte before the alias list is not NUL, so strings could run past it.
    #[error("mime.cache has no NUL before ALIAS_LIST_OFFSET={0}")]
    NoNulBeforeAliasList(u32),
    /// The suffix tree visits more records than the file can hold (shared or cyclic).
    #[error("mime.cache suffix tree revisits records (shared or cyclic subtrees)")]
    SharedRecords,
    /// More than 30,000 tree nodes.
    #[error("mime.cache suffix tree has more than {MAX_NODES} nodes")]
    TooManyNodes,
}

/// Bounds-checked big-endian word reader.
struct Words<'a> {
    buf: &'a [u8],
}

impl Words<'_> {
    /// Reads the word at `offset` and checks `min <= value <= max`.
    fn read(
        &self,
        offset: u64,
        field: &'static str,
        min: u64,
        max: u64,
    ) -> Result<u32, MimeCacheError> {
        let size = self.buf.len();
        let bad = || MimeCacheError::BadOffset {
            field,
            offset,
            size,
        };
        if !offset.is_multiple_of(4) || offset + 4 > size as u64 {
            return Err(bad());
        }
        // In bounds: checked just above (offset + 4 <= size, and size fits usize).
        let start = offset as usize;
        let word: [u8; 4] = self.buf[start..start + 4].try_into().map_err(|_| bad())?;
        let value = u32::from_be_bytes(word);
        if u64::from(value) < min || u64::from(value) > max {
            return Err(MimeCacheError::OutOfRange {
                field,
                value,
                min,
                max,
            });
        }
        Ok(value)
    }
}

/// A tree node still to be expanded.
struct Pending {
    /// The suffix in forward order (each level prepends its character).
    text: String,
    n_children: u32,
    first_child_offset: u32,
}

/// Parses a whole mime.cache file into `extension -> MIME type`.
pub fn parse_mime_cache(buf: &[u8]) -> Result<HashMap<String, String>, MimeCacheError> {
    if buf.len() > MAX_MIME_CACHE_SIZE {
        return Err(MimeCacheError::TooLarge(buf.len()));
    }
    if buf.len() < HEADER_SIZE as usize {
        return Err(MimeCacheError::TooSmall(buf.len()));
    }
    let size = buf.len() as u64;
    let words = Words { buf };
    let header = u64::from(HEADER_SIZE);
    let alias_list_offset = words.read(4, "ALIAS_LIST_OFFSET", header, size)?;
    // alias_list_offset >= 40, so the index is in bounds and does not underflow.
    if buf[alias_list_offset as usize - 1] != 0 {
        return Err(MimeCacheError::NoNulBeforeAliasList(alias_list_offset));
    }
    let tree = words.read(16, "REVERSE_SUFFIX_TREE_OFFSET", header, size)?;
    let tree64 = u64::from(tree);
    let root = Pending {
        text: String::new(),
        n_children: words.read(tree64, "N_ROOTS", 0, u64::from(MAX_UNICODE))?,
        first_child_offset: words.read(tree64 + 4, "FIRST_ROOT_OFFSET", tree64, size)?,
    };

    let mut best: HashMap<String, (String, u8)> = HashMap::new();
    let mut stack = vec![root];
    let mut nodes = 0usize;
    // A real tree stores every 12-byte record once, so a walk reads at most size/12 records.
    // More means records are shared or cyclic; stopping there bounds the work on hostile files
    // (deviation: upstream would keep walking, possibly for billions of steps).
    let record_budget = buf.len() / 12;
    let mut records = 0usize;
    while let Some(node) = stack.pop() {
        let mut p = u64::from(node.first_child_offset);
        for _ in 0..node.n_children {
            records += 1;
            if records > record_budget {
                return Err(MimeCacheError::SharedRecords);
            }
            let c = words.read(p, "CHARACTER", 0, u64::from(MAX_UNICODE))?;
            p += 4;
            if c == 0 {
                let mime_offset = words.read(
                    p,
                    "MIME_TYPE_OFFSET",
                    header,
                    u64::from(alias_list_offset) - 1,
                )?;
                p += 4;
                let weight = buf.get((p + 3) as usize).copied().unwrap_or(DEFAULT_WEIGHT);
                p += 4;
                if let Some(ext) = node.text.strip_prefix('.') {
                    let replace = best.get(ext).is_none_or(|(_, w)| weight > *w);
                    if replace {
                        best.insert(ext.to_owned(), (c_string_at(buf, mime_offset), weight));
                    }
                }
                continue;
            }
            let mut text = String::with_capacity(node.text.len() + 4);
            text.push(char::from_u32(c).unwrap_or(char::REPLACEMENT_CHARACTER));
            text.push_str(&node.text);
            let n_children = words.read(p, "N_CHILDREN", 0, u64::from(MAX_UNICODE))?;
            p += 4;
            let first_child_offset = words.read(p, "FIRST_CHILD_OFFSET", tree64, size)?;
            p += 4;
            nodes += 1;
            if nodes > MAX_NODES {
                return Err(MimeCacheError::TooManyNodes);
            }
            if text.len() > MAX_EXT_SIZE {
                tracing::warn!(len = text.len(), "mime.cache: skipping over-long suffix");
                continue;
            }
            stack.push(Pending {
                text,
                n_children,
                first_child_offset,
            });
        }
    }
    Ok(best
        .into_iter()
        .map(|(ext, (mime, _))| (ext, mime))
        .collect())
}

/// The NUL-terminated string at `offset` (lossy UTF-8). `offset` was range-checked against the
/// alias list offset, and the byte before the alias list is NUL, so the string ends in bounds.
fn c_string_at(buf: &[u8], offset: u32) -> String {
    let tail = buf.get(offset as usize..).unwrap_or_default();
    let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
    String::from_utf8_lossy(&tail[..end]).into_owned()
}

#[cfg(test)]
mod tests;
