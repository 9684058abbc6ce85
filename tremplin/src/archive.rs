//! Container image tarballs (§8.9, §8.10): writing the unified image (`metadata.yaml`,
//! `rootfs/...`, `templates/...` as tar → gzip) from a snapshot directory with progress
//! counters and id unshifting, and the pre-import checks (architecture, space).

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use tar::{EntryType, Header};

/// The inputs of an export, in order (missing ones are skipped).
pub const EXPORT_INPUTS: [&str; 3] = ["metadata.yaml", "rootfs", "templates"];
/// Write buffer between gzip and the file.
const BUFFER: usize = 16 * 1024 * 1024;

/// Host → container id mapping for unshifting (from `volatile.last_state.idmap`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Unshift {
    /// (host start, ns start, range) for uids.
    pub uids: Vec<(u64, u64, u64)>,
    pub gids: Vec<(u64, u64, u64)>,
}

impl Unshift {
    fn map(ranges: &[(u64, u64, u64)], id: u64) -> u64 {
        for (host, ns, range) in ranges {
            if id >= *host && id < host + range {
                return ns + (id - host);
            }
        }
        id
    }

    pub fn uid(&self, id: u64) -> u64 {
        Self::map(&self.uids, id)
    }

    pub fn gid(&self, id: u64) -> u64 {
        Self::map(&self.gids, id)
    }
}

/// Totals of the pre-walk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub files: u32,
    pub bytes: u64,
}

/// Counters while streaming.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Streamed {
    pub files: u32,
    pub bytes: u64,
    /// Compressed bytes produced so far.
    pub exported: u64,
}

/// What the progress callback decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// Stop writing further entries (cancel).
    Stop,
}

/// How the stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Done(Streamed),
    Stopped(Streamed),
}

/// Depth-first list of every entry below the inputs (roots included), lstat only.
fn walk(root: &Path) -> io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for input in EXPORT_INPUTS {
        let start = root.join(input);
        if std::fs::symlink_metadata(&start).is_err() {
            continue;
        }
        let mut stack = vec![start];
        while let Some(path) = stack.pop() {
            let meta = std::fs::symlink_metadata(&path)?;
            out.push(path.clone());
            if meta.is_dir() {
                let mut children: Vec<PathBuf> = std::fs::read_dir(&path)?
                    .map(|e| e.map(|e| e.path()))
                    .collect::<io::Result<_>>()?;
                children.sort();
                // Reverse so the stack pops them in sorted order.
                stack.extend(children.into_iter().rev());
            }
        }
    }
    Ok(out)
}

/// Pre-walk (§8.9 step 6): entries (files, directories, links; roots included) and the sum
/// of their sizes.
pub fn totals(root: &Path) -> io::Result<(Vec<PathBuf>, Totals)> {
    let paths = walk(root)?;
    let mut t = Totals::default();
    for p in &paths {
        let meta = std::fs::symlink_metadata(p)?;
        t.files = t.files.saturating_add(1);
        t.bytes = t.bytes.saturating_add(meta.len());
    }
    Ok((paths, t))
}

/// Counts bytes written through it.
struct Counting<W> {
    inner: W,
    count: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn xattrs(path: &Path) -> Vec<(String, Vec<u8>)> {
    let Ok(names) = xattr::list(path) else {
        return Vec::new();
    };
    names
        .filter_map(|n| {
            let value = xattr::get(path, &n).ok().flatten()?;
            Some((format!("SCHILY.xattr.{}", n.to_string_lossy()), value))
        })
        .collect()
}

/// Streams `paths` (from [`totals`]) below `root` as tar → gzip into `out`. `progress` is
/// called after every entry with the counters; returning [`Flow::Stop`] ends the stream early
/// (the archive is still closed properly).
pub fn write_image<F>(
    root: &Path,
    paths: &[PathBuf],
    unshift: &Unshift,
    out: File,
    mut progress: F,
) -> io::Result<Outcome>
where
    F: FnMut(&Streamed) -> io::Result<Flow>,
{
    let count = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let writer = BufWriter::with_capacity(BUFFER, out);
    let gz = GzEncoder::new(
        Counting {
            inner: writer,
            count: count.clone(),
        },
        Compression::default(),
    );
    let mut builder = tar::Builder::new(gz);
    builder.follow_symlinks(false);
    let mut links: HashMap<(u64, u64), PathBuf> = HashMap::new();
    let mut streamed = Streamed::default();
    let mut stopped = false;
    for path in paths {
        let meta = std::fs::symlink_metadata(path)?;
        let rel = path
            .strip_prefix(root)
            .map_err(|e| io::Error::other(format!("{}: {e}", path.display())))?;
        let ft = meta.file_type();
        let mut header = Header::new_gnu();
        header.set_mode(meta.mode() & 0o7777);
        header.set_uid(unshift.uid(u64::from(meta.uid())));
        header.set_gid(unshift.gid(u64::from(meta.gid())));
        header.set_mtime(u64::try_from(meta.mtime()).unwrap_or(0));
        header.set_size(0);
        if !ft.is_symlink() {
            let attrs = xattrs(path);
            if !attrs.is_empty() {
                builder
                    .append_pax_extensions(attrs.iter().map(|(k, v)| (k.as_str(), v.as_slice())))?;
            }
        }
        if ft.is_dir() {
            header.set_entry_type(EntryType::Directory);
            builder.append_data(&mut header, rel, io::empty())?;
        } else if ft.is_symlink() {
            header.set_entry_type(EntryType::Symlink);
            let target = std::fs::read_link(path)?;
            builder.append_link(&mut header, rel, target)?;
        } else if ft.is_file() {
            let key = (meta.dev(), meta.ino());
            match links.get(&key) {
                Some(first) if meta.nlink() > 1 => {
                    header.set_entry_type(EntryType::Link);
                    builder.append_link(&mut header, rel, first)?;
                }
                _ => {
                    if meta.nlink() > 1 {
                        links.insert(key, rel.to_path_buf());
                    }
                    header.set_entry_type(EntryType::Regular);
                    header.set_size(meta.len());
                    // Container-controlled tree: non-blocking, regular files only (issue 9 #5).
                    let (file, _) = crostini_common::untrusted_file::open_regular(path)?;
                    // Never write more than the header announced, even if the file grows.
                    builder.append_data(&mut header, rel, file.take(meta.len()))?;
                }
            }
        } else if ft.is_char_device() || ft.is_block_device() {
            header.set_entry_type(if ft.is_char_device() {
                EntryType::Char
            } else {
                EntryType::Block
            });
            let rdev = meta.rdev();
            header.set_device_major(nix::sys::stat::major(rdev) as u32)?;
            header.set_device_minor(nix::sys::stat::minor(rdev) as u32)?;
            builder.append_data(&mut header, rel, io::empty())?;
        } else if ft.is_fifo() {
            header.set_entry_type(EntryType::Fifo);
            builder.append_data(&mut header, rel, io::empty())?;
        } else {
            // Sockets cannot be archived.
            continue;
        }
        streamed.files = streamed.files.saturating_add(1);
        if meta.len() > 0 {
            streamed.bytes = streamed.bytes.saturating_add(meta.len());
        }
        streamed.exported = count.load(std::sync::atomic::Ordering::Relaxed);
        if progress(&streamed)? == Flow::Stop {
            stopped = true;
            break;
        }
    }
    let gz = builder.into_inner()?;
    let counting = gz.finish()?;
    let mut writer = counting.inner;
    writer.flush()?;
    writer
        .into_inner()
        .map_err(|e| e.into_error())?
        .sync_all()?;
    streamed.exported = count.load(std::sync::atomic::Ordering::Relaxed);
    Ok(if stopped {
        Outcome::Stopped(streamed)
    } else {
        Outcome::Done(streamed)
    })
}

/// Architecture of the image: the `architecture` of `metadata.yaml` when it is the first tar
/// entry of the gzip stream; `None` when that cannot be read (the check is then skipped).
pub fn image_architecture(path: &Path) -> Option<String> {
    let file = File::open(path).ok()?;
    let mut archive = tar::Archive::new(GzDecoder::new(file));
    let mut entries = archive.entries().ok()?;
    let mut first = entries.next()?.ok()?;
    let name = first
        .path()
        .ok()?
        .to_string_lossy()
        .trim_start_matches("./")
        .to_string();
    if name != "metadata.yaml" {
        return None;
    }
    let mut text = String::new();
    first
        .by_ref()
        .take(1 << 20)
        .read_to_string(&mut text)
        .ok()?;
    crate::yaml::top_value(&text, "architecture")
}

/// Architectures this machine runs (the local one and its personalities).
pub fn accepted_architectures(local: &str) -> Vec<&'static str> {
    match local {
        "x86_64" => vec!["x86_64", "i686"],
        "aarch64" => vec!["aarch64", "armv7l"],
        "arm" | "armv7l" => vec!["armv7l"],
        "x86" | "i686" => vec!["i686"],
        _ => vec![],
    }
}

/// Space needed to import a gzip file of `compressed` bytes whose trailer says `isize`
/// (§8.10 step 3).
pub fn required_space(compressed: u64, isize: u32) -> u64 {
    let mut uncompressed = (compressed & !0xFFFF_FFFF) | u64::from(isize);
    if uncompressed < compressed {
        uncompressed += 1 << 32;
    }
    uncompressed.saturating_add(compressed)
}

/// Size and gzip ISIZE (last 4 bytes, little-endian) of a file.
pub fn gzip_isize(path: &Path) -> io::Result<(u64, u32)> {
    let mut f = File::open(path)?;
    let len = f.metadata()?.len();
    if len < 4 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} is too small to be a gzip file ({len} bytes)",
                path.display()
            ),
        ));
    }
    f.seek(SeekFrom::End(-4))?;
    let mut b = [0u8; 4];
    f.read_exact(&mut b)?;
    Ok((len, u32::from_le_bytes(b)))
}

/// Resolves a path relative to the shared directory. `..` that escapes `shared` is rejected
/// ([deviation] §14), as is an empty path.
pub fn shared_path(shared: &Path, relative: &str) -> Result<PathBuf, String> {
    let mut parts: Vec<&str> = Vec::new();
    for p in relative.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(format!("path {relative:?} leaves {}", shared.display()));
                }
            }
            other => parts.push(other),
        }
    }
    if parts.is_empty() {
        return Err(format!(
            "path {relative:?} names {} itself, not a file",
            shared.display()
        ));
    }
    Ok(parts
        .iter()
        .fold(shared.to_path_buf(), |acc, p| acc.join(p)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_path_cleans_and_rejects_escapes() {
        let s = Path::new("/mnt/shared");
        assert_eq!(
            shared_path(s, "a/b.tar.gz"),
            Ok(PathBuf::from("/mnt/shared/a/b.tar.gz"))
        );
        assert_eq!(
            shared_path(s, "/a/./c/../b"),
            Ok(PathBuf::from("/mnt/shared/a/b"))
        );
        assert!(shared_path(s, "../etc/passwd").is_err());
        assert!(shared_path(s, "a/../../x").is_err());
        assert!(shared_path(s, "").is_err());
        assert!(shared_path(s, "a/..").is_err());
    }

    #[test]
    fn required_space_follows_spec_formula() {
        assert_eq!(required_space(100, 1000), 1100);
        // Uncompressed smaller than compressed in the low 32 bits → add 4 GiB.
        assert_eq!(
            required_space(5_000_000_000, 10),
            (2 << 32) + 10 + 5_000_000_000
        );
        assert_eq!(
            required_space((1 << 32) + 10, 20),
            (1 << 32) + 20 + (1 << 32) + 10
        );
    }

    #[test]
    fn architectures() {
        assert_eq!(accepted_architectures("x86_64"), vec!["x86_64", "i686"]);
        assert_eq!(accepted_architectures("aarch64"), vec!["aarch64", "armv7l"]);
        assert!(accepted_architectures("mips").is_empty());
    }

    #[test]
    fn unshift_maps_ranges_and_leaves_others() {
        let u = Unshift {
            uids: vec![(1_000_000, 0, 1000), (1000, 1000, 1)],
            gids: vec![(1_000_000, 0, 1000)],
        };
        assert_eq!(u.uid(1_000_000), 0);
        assert_eq!(u.uid(1_000_042), 42);
        assert_eq!(u.uid(1000), 1000);
        assert_eq!(u.uid(5), 5);
        assert_eq!(u.gid(1_000_005), 5);
    }

    #[test]
    fn image_round_trip_with_counters_links_and_arch() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("snap");
        std::fs::create_dir_all(root.join("rootfs/etc")).expect("mkdir");
        std::fs::create_dir_all(root.join("templates")).expect("mkdir");
        std::fs::write(
            root.join("metadata.yaml"),
            "architecture: x86_64\ncreation_date: 1\n",
        )
        .expect("write");
        std::fs::write(root.join("rootfs/etc/hostname"), "penguin\n").expect("write");
        std::fs::hard_link(
            root.join("rootfs/etc/hostname"),
            root.join("rootfs/etc/hardlink"),
        )
        .expect("link");
        std::os::unix::fs::symlink("hostname", root.join("rootfs/etc/symlink")).expect("symlink");
        std::fs::write(root.join("backup.yaml"), "not exported").expect("write");
        let (paths, t) = totals(&root).expect("walk");
        // metadata.yaml, rootfs, rootfs/etc, 3 files in etc, templates.
        assert_eq!(t.files, 7);
        let out_path = dir.path().join("out.tar.gz");
        let mut seen = Vec::new();
        let outcome = write_image(
            &root,
            &paths,
            &Unshift::default(),
            File::create(&out_path).expect("create"),
            |s| {
                seen.push(*s);
                Ok(Flow::Continue)
            },
        )
        .expect("write");
        let Outcome::Done(done) = outcome else {
            panic!("stopped")
        };
        assert_eq!(done.files, 7);
        assert!(seen.windows(2).all(|w| w[0].files < w[1].files
            && w[0].bytes <= w[1].bytes
            && w[0].exported <= w[1].exported));
        assert_eq!(
            std::fs::metadata(&out_path).expect("stat").len(),
            done.exported
        );
        assert_eq!(image_architecture(&out_path).as_deref(), Some("x86_64"));
        let mut archive = tar::Archive::new(GzDecoder::new(File::open(&out_path).expect("open")));
        let mut names = Vec::new();
        let mut links = Vec::new();
        for e in archive.entries().expect("entries") {
            let e = e.expect("entry");
            let name = e.path().expect("path").to_string_lossy().into_owned();
            if e.header().entry_type() == EntryType::Link {
                let target = e
                    .link_name()
                    .expect("link")
                    .expect("target")
                    .to_string_lossy()
                    .into_owned();
                links.push((name.clone(), target));
            }
            if name.ends_with("symlink") {
                assert_eq!(
                    e.link_name()
                        .expect("link")
                        .expect("target")
                        .to_string_lossy(),
                    "hostname"
                );
            }
            names.push(name);
        }
        // The second name of the hard-linked pair (sorted) is a link to the first.
        assert_eq!(
            links,
            vec![(
                "rootfs/etc/hostname".to_string(),
                "rootfs/etc/hardlink".to_string()
            )]
        );
        assert_eq!(names[0], "metadata.yaml");
        assert!(names.iter().any(|n| n == "rootfs/etc/hostname"));
        assert!(!names.iter().any(|n| n.contains("backup.yaml")));
        let (len, isize) = gzip_isize(&out_path).expect("isize");
        assert!(
            u64::from(isize) > len / 2,
            "uncompressed tar larger than half the gzip"
        );
    }

    #[test]
    fn stop_ends_stream_with_valid_archive() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("snap");
        std::fs::create_dir_all(root.join("rootfs")).expect("mkdir");
        for i in 0..10 {
            std::fs::write(root.join(format!("rootfs/f{i}")), "x").expect("write");
        }
        let (paths, _) = totals(&root).expect("walk");
        let out = dir.path().join("o.tar.gz");
        let outcome = write_image(
            &root,
            &paths,
            &Unshift::default(),
            File::create(&out).expect("create"),
            |s| {
                Ok(if s.files >= 3 {
                    Flow::Stop
                } else {
                    Flow::Continue
                })
            },
        )
        .expect("write");
        assert!(matches!(outcome, Outcome::Stopped(s) if s.files == 3));
    }

    #[test]
    fn not_a_gzip_has_no_architecture_and_tiny_file_has_no_isize() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("x");
        std::fs::write(&p, "abc").expect("write");
        assert_eq!(image_architecture(&p), None);
        assert!(gzip_isize(&p).is_err());
    }
}
