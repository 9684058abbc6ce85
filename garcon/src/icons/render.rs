//! Icon file -> PNG of exactly `target x target` pixels.
//!
//! PNG (and the other raster formats the `image` build knows) and XPM are decoded with size
//! limits, scaled to fit the square preserving the aspect ratio (premultiplied alpha, Lanczos3)
//! and centered; SVG is rendered at the target size with resvg ([`super::svg`]; in a budgeted
//! child process on the daemon's path, [`render_icon_file`]). A PNG that already has the
//! target size is returned byte for byte (after a full decode to prove it is valid), so the
//! common case never re-encodes.
//!
//! Memory budget of one raster decode: the decoded RGBA image, at most [`MAX_DECODED_BYTES`]
//! (checked from the header before anything is allocated), plus the small scaling buffers
//! (premultiplication happens on the fly while sampling, not in a second full-size copy).
//! Callers bound how many decodes run at once ([`super::pool`]).

use std::io::Cursor;
use std::path::{Path, PathBuf};

use crostini_common::untrusted_file::{read_capped, UntrustedReadError};
use image::codecs::png::PngEncoder;
use image::imageops::FilterType;
use image::{GenericImageView, ImageEncoder, ImageFormat, ImageReader, Limits, Rgba, RgbaImage};

use super::sandbox::ChildBudget;
use super::svg::{render_svg, render_svg_isolated, SVG_BUDGET};
use super::xpm::decode_xpm;

/// Largest icon file read (garcon-service §7: 1 MiB; a 1024 px PNG icon is ~100-500 KB).
pub const MAX_ICON_FILE_SIZE: u64 = 1024 * 1024;
/// Largest raster source width/height decoded (also for images embedded in SVG).
pub const MAX_SOURCE_DIMENSION: u32 = 2048;
/// Largest decoded image (`width x height x 4` bytes of RGBA): 16 MiB, a 2048x2048 source.
/// Sources whose header announces more are refused before decoding.
pub const MAX_DECODED_BYTES: u64 = 16 * 1024 * 1024;
/// Most memory a raster decoder may allocate: a 16-bit-per-channel source of the largest
/// size is decoded at 8 bytes per pixel before conversion, so twice [`MAX_DECODED_BYTES`].
pub const MAX_DECODE_ALLOC: u64 = 2 * MAX_DECODED_BYTES;

/// What kind of source an icon file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// PNG or another raster format `image` decodes (chosen by content).
    Raster,
    /// SVG (rendered with resvg).
    Svg,
    /// XPM (our own decoder).
    Xpm,
}

impl SourceKind {
    /// By extension (`.svg`, `.xpm`), else by content (XPM/SVG text), else raster.
    pub fn detect(path: &Path, bytes: &[u8]) -> Self {
        match path.extension().and_then(|e| e.to_str()) {
            Some("svg") => return Self::Svg,
            Some("xpm") => return Self::Xpm,
            _ => {}
        }
        let head = &bytes[..bytes.len().min(256)];
        let text = String::from_utf8_lossy(head);
        let text = text.trim_start();
        if text.starts_with("/* XPM */") {
            Self::Xpm
        } else if text.starts_with("<?xml") || text.starts_with("<svg") {
            Self::Svg
        } else {
            Self::Raster
        }
    }
}

/// Why an icon could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The target size is zero or above the configured maximum.
    #[error("icon target size {0} px is out of range")]
    BadTarget(u32),
    /// Open/read failed (missing file, symlink loop, directory, permissions...).
    #[error("reading icon {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Not a regular file.
    #[error("icon {path} is not a regular file")]
    NotAFile {
        /// The path.
        path: PathBuf,
    },
    /// Larger than the file size limit.
    #[error("icon {path} is larger than {limit} bytes")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The limit.
        limit: u64,
    },
    /// The content could not be decoded.
    #[error("decoding icon {path} as {kind:?}: {message}")]
    Decode {
        /// The file.
        path: PathBuf,
        /// What it was decoded as.
        kind: SourceKind,
        /// The decoder's message.
        message: String,
    },
    /// Every render permit stayed taken for this long (see [`super::pool`]).
    #[error("no render slot became free within {0:?}")]
    Busy(std::time::Duration),
    /// The decoder panicked (caught; the daemon goes on).
    #[error("decoding icon {path} panicked")]
    Panicked {
        /// The file.
        path: PathBuf,
    },
    /// PNG encoding failed.
    #[error("encoding {target}px PNG for {path}: {message}")]
    Encode {
        /// The source file.
        path: PathBuf,
        /// Target size.
        target: u32,
        /// The encoder's message.
        message: String,
    },
}

/// Reads a regular file of at most `max_size` bytes (following symlinks) through
/// [`crostini_common::untrusted_file`]: a FIFO, device or directory is refused without blocking.
pub fn read_icon_file(path: &Path, max_size: u64) -> Result<Vec<u8>, RenderError> {
    read_capped(path, max_size).map_err(|err| match err {
        UntrustedReadError::NotRegular { .. } => RenderError::NotAFile { path: path.into() },
        UntrustedReadError::TooLarge { .. } => RenderError::TooLarge {
            path: path.into(),
            limit: max_size,
        },
        other => RenderError::Read {
            path: path.into(),
            source: other.into(),
        },
    })
}

/// Reads `path` (at most `max_size` bytes) and renders it as a `target`x`target` PNG, SVG in a
/// child process under [`SVG_BUDGET`].
pub fn render_icon_file(path: &Path, target: u32, max_size: u64) -> Result<Vec<u8>, RenderError> {
    render_icon_file_with(path, target, max_size, &SVG_BUDGET)
}

/// [`render_icon_file`] with an explicit SVG budget.
pub fn render_icon_file_with(
    path: &Path,
    target: u32,
    max_size: u64,
    svg_budget: &ChildBudget,
) -> Result<Vec<u8>, RenderError> {
    let bytes = read_icon_file(path, max_size)?;
    render_bytes(path, &bytes, target, Some(svg_budget))
}

/// Renders icon bytes (`path` is used for the kind and for messages) as a PNG, all in this
/// process (SVG complexity-checked but not time-bounded; for fuzzing and tests).
pub fn render_icon_bytes(path: &Path, bytes: &[u8], target: u32) -> Result<Vec<u8>, RenderError> {
    render_bytes(path, bytes, target, None)
}

/// `svg_budget`: render SVG in a child under that budget, or in-process when `None`.
fn render_bytes(
    path: &Path,
    bytes: &[u8],
    target: u32,
    svg_budget: Option<&ChildBudget>,
) -> Result<Vec<u8>, RenderError> {
    if target == 0 {
        return Err(RenderError::BadTarget(target));
    }
    let kind = SourceKind::detect(path, bytes);
    let decode_err = |message: String| RenderError::Decode {
        path: path.into(),
        kind,
        message,
    };
    let image = match kind {
        SourceKind::Svg => match svg_budget {
            Some(budget) => return render_svg_isolated(bytes, target, budget).map_err(decode_err),
            None => render_svg(bytes, target).map_err(decode_err)?,
        },
        SourceKind::Xpm => {
            let image = decode_xpm(bytes).map_err(|e| decode_err(e.to_string()))?;
            fit_to_square(&image, target)
        }
        SourceKind::Raster => {
            let (image, format) = decode_raster(bytes).map_err(decode_err)?;
            if format == ImageFormat::Png && image.dimensions() == (target, target) {
                return Ok(bytes.to_vec());
            }
            fit_to_square(&image, target)
        }
    };
    encode_png(&image).map_err(|message| RenderError::Encode {
        path: path.into(),
        target,
        message,
    })
}

fn raster_limits() -> Limits {
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SOURCE_DIMENSION);
    limits.max_image_height = Some(MAX_SOURCE_DIMENSION);
    limits.max_alloc = Some(MAX_DECODE_ALLOC);
    limits
}

/// Decodes a raster image (PNG, JPEG, GIF, BMP, ICO) within [`MAX_SOURCE_DIMENSION`],
/// [`MAX_DECODED_BYTES`] and [`MAX_DECODE_ALLOC`]; the size is checked from the header first.
pub fn decode_raster(bytes: &[u8]) -> Result<(RgbaImage, ImageFormat), String> {
    let reader = || {
        ImageReader::new(Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|e| e.to_string())
    };
    let (w, h) = reader()?.into_dimensions().map_err(|e| e.to_string())?;
    let decoded = u64::from(w) * u64::from(h) * 4;
    if decoded > MAX_DECODED_BYTES {
        return Err(format!(
            "{w}x{h} decodes to {decoded} bytes, over the {MAX_DECODED_BYTES}-byte budget"
        ));
    }
    let mut reader = reader()?;
    let format = reader
        .format()
        .ok_or_else(|| "unrecognized image format".to_owned())?;
    reader.limits(raster_limits());
    let image = reader.decode().map_err(|e| e.to_string())?;
    Ok((image.into_rgba8(), format))
}

/// Scales `image` to fit a `target` square (aspect ratio kept) and centers it on transparency.
pub fn fit_to_square(image: &RgbaImage, target: u32) -> RgbaImage {
    let (w, h) = image.dimensions();
    if (w, h) == (target, target) {
        return image.clone();
    }
    let longest = u64::from(w.max(h).max(1));
    let scaled = |v: u32| -> u32 {
        let v = (u64::from(v) * u64::from(target) + longest / 2) / longest;
        // v <= target because v/longest <= 1.
        (v as u32).clamp(1, target)
    };
    let (nw, nh) = (scaled(w), scaled(h));
    let resized = if (nw, nh) == (w, h) {
        image.clone()
    } else {
        resize_premultiplied(image, nw, nh)
    };
    let mut canvas = RgbaImage::new(target, target);
    image::imageops::overlay(
        &mut canvas,
        &resized,
        i64::from((target - nw) / 2),
        i64::from((target - nh) / 2),
    );
    canvas
}

/// Resizes with premultiplied alpha in 16-bit (both color and alpha scaled by 255) so that
/// transparent pixels do not bleed dark fringes into the result. The premultiplied source is a
/// view computed while sampling, so no second full-size buffer is allocated.
fn resize_premultiplied(image: &RgbaImage, width: u32, height: u32) -> RgbaImage {
    let resized =
        image::imageops::resize(&Premultiplied(image), width, height, FilterType::Lanczos3);
    RgbaImage::from_fn(width, height, |x, y| {
        let [r, g, b, a] = resized.get_pixel(x, y).0;
        if a == 0 {
            return Rgba([0, 0, 0, 0]);
        }
        let unmultiply =
            |c: u16| ((u32::from(c) * 255 + u32::from(a) / 2) / u32::from(a)).min(255) as u8;
        let alpha = ((u32::from(a) + 127) / 255).min(255) as u8;
        Rgba([unmultiply(r), unmultiply(g), unmultiply(b), alpha])
    })
}

/// An RGBA8 image seen as premultiplied RGBA16 (`c * a`, `a * 255`).
struct Premultiplied<'a>(&'a RgbaImage);

impl GenericImageView for Premultiplied<'_> {
    type Pixel = Rgba<u16>;

    fn dimensions(&self) -> (u32, u32) {
        self.0.dimensions()
    }

    fn get_pixel(&self, x: u32, y: u32) -> Rgba<u16> {
        let [r, g, b, a] = self.0.get_pixel(x, y).0;
        let a16 = u16::from(a);
        Rgba([
            u16::from(r) * a16,
            u16::from(g) * a16,
            u16::from(b) * a16,
            a16 * 255,
        ])
    }
}

/// Encodes RGBA pixels as a PNG.
pub fn encode_png(image: &RgbaImage) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    PngEncoder::new(&mut out)
        .write_image(
            image.as_raw(),
            image.width(),
            image.height(),
            image::ExtendedColorType::Rgba8,
        )
        .map_err(|e| e.to_string())?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::mutations;

    fn solid(w: u32, h: u32, color: [u8; 4]) -> RgbaImage {
        RgbaImage::from_pixel(w, h, Rgba(color))
    }

    fn png_bytes(image: &RgbaImage) -> Vec<u8> {
        encode_png(image).unwrap()
    }

    fn decode(png: &[u8]) -> RgbaImage {
        image::load_from_memory_with_format(png, ImageFormat::Png)
            .unwrap()
            .into_rgba8()
    }

    #[test]
    fn exact_size_png_is_returned_byte_for_byte() {
        let src = png_bytes(&solid(48, 48, [1, 2, 3, 255]));
        let out = render_icon_bytes(Path::new("a.png"), &src, 48).unwrap();
        assert_eq!(out, src);
    }

    #[test]
    fn raster_is_scaled_to_the_target_keeping_color() {
        let src = png_bytes(&solid(256, 256, [200, 100, 50, 255]));
        let out = decode(&render_icon_bytes(Path::new("a.png"), &src, 48).unwrap());
        assert_eq!(out.dimensions(), (48, 48));
        assert_eq!(out.get_pixel(24, 24).0, [200, 100, 50, 255]);
    }

    #[test]
    fn non_square_sources_are_centered_on_transparency() {
        let src = png_bytes(&solid(64, 32, [0, 0, 255, 255]));
        let out = decode(&render_icon_bytes(Path::new("wide.png"), &src, 32).unwrap());
        assert_eq!(out.dimensions(), (32, 32));
        assert_eq!(out.get_pixel(16, 2).0[3], 0, "top band is transparent");
        assert_eq!(out.get_pixel(16, 16).0, [0, 0, 255, 255]);
    }

    #[test]
    fn premultiplied_resize_keeps_edge_color_next_to_transparency() {
        let mut src = solid(64, 64, [0, 0, 0, 0]);
        for y in 0..64 {
            for x in 32..64 {
                src.put_pixel(x, y, Rgba([255, 255, 255, 255]));
            }
        }
        let out = fit_to_square(&src, 16);
        // Every partially transparent pixel keeps the white color (no dark fringe).
        for px in out.pixels().filter(|p| p.0[3] > 16) {
            assert!(px.0[0] >= 250, "{px:?}");
        }
    }

    #[test]
    fn svg_is_rendered_at_the_target_size() {
        let svg = br##"<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16"><rect width="16" height="16" fill="#00ff00"/></svg>"##;
        for target in [16, 48, 96] {
            let out = decode(&render_icon_bytes(Path::new("a.svg"), svg, target).unwrap());
            assert_eq!(out.dimensions(), (target, target));
            assert_eq!(out.get_pixel(target / 2, target / 2).0, [0, 255, 0, 255]);
        }
    }

    #[test]
    fn svg_external_images_are_not_loaded() {
        let t = tempfile::tempdir().unwrap();
        let red = t.path().join("red.png");
        std::fs::write(&red, png_bytes(&solid(8, 8, [255, 0, 0, 255]))).unwrap();
        let svg = format!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="8" height="8"><image width="8" height="8" xlink:href="{}"/></svg>"#,
            red.display()
        );
        let out = decode(&render_icon_bytes(Path::new("x.svg"), svg.as_bytes(), 8).unwrap());
        assert_eq!(
            out.get_pixel(4, 4).0[3],
            0,
            "the external PNG must not be drawn"
        );
    }

    #[test]
    fn corrupt_and_oversized_sources_are_errors_not_panics() {
        let mut corrupt = png_bytes(&solid(48, 48, [1, 1, 1, 255]));
        corrupt.truncate(40);
        assert!(render_icon_bytes(Path::new("c.png"), &corrupt, 48).is_err());
        assert!(render_icon_bytes(Path::new("c.png"), b"\x89PNG\r\n\x1a\nnope", 48).is_err());
        assert!(render_icon_bytes(Path::new("c.svg"), b"<svg", 48).is_err());
        assert!(render_icon_bytes(Path::new("c.xpm"), b"/* XPM */", 48).is_err());
        assert!(render_icon_bytes(Path::new("gz.svg"), b"\x1f\x8b\x08\x00", 48).is_err());
        let huge = png_bytes(&solid(MAX_SOURCE_DIMENSION + 1, 1, [0, 0, 0, 255]));
        assert!(render_icon_bytes(Path::new("h.png"), &huge, 48).is_err());
        let ok = png_bytes(&solid(4, 4, [0, 0, 0, 255]));
        assert!(matches!(
            render_icon_bytes(Path::new("z.png"), &ok, 0),
            Err(RenderError::BadTarget(0))
        ));
    }

    #[test]
    fn read_enforces_the_size_limit_and_regular_files() {
        let t = tempfile::tempdir().unwrap();
        let big = t.path().join("big.png");
        std::fs::write(&big, vec![0u8; 11]).unwrap();
        assert!(matches!(
            read_icon_file(&big, 10),
            Err(RenderError::TooLarge { .. })
        ));
        assert_eq!(read_icon_file(&big, 11).unwrap().len(), 11);
        assert!(matches!(
            read_icon_file(t.path(), 10),
            Err(RenderError::NotAFile { .. })
        ));
        let fifo = t.path().join("fifo.png");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        assert!(matches!(
            read_icon_file(&fifo, 10),
            Err(RenderError::NotAFile { .. })
        ));
        let looped = t.path().join("loop.png");
        std::os::unix::fs::symlink(&looped, &looped).unwrap();
        assert!(matches!(
            read_icon_file(&looped, 10),
            Err(RenderError::Read { .. })
        ));
    }

    #[test]
    fn kind_is_detected_by_extension_then_content() {
        assert_eq!(SourceKind::detect(Path::new("a.svg"), b""), SourceKind::Svg);
        assert_eq!(SourceKind::detect(Path::new("a.xpm"), b""), SourceKind::Xpm);
        assert_eq!(
            SourceKind::detect(Path::new("a.png"), b"/* XPM */\n"),
            SourceKind::Xpm
        );
        assert_eq!(
            SourceKind::detect(Path::new("a"), b"  <?xml version"),
            SourceKind::Svg
        );
        assert_eq!(
            SourceKind::detect(Path::new("a.png"), b"\x89PNG"),
            SourceKind::Raster
        );
    }

    #[test]
    fn mutated_png_and_svg_never_panic() {
        let png = png_bytes(&solid(16, 16, [1, 2, 3, 255]));
        for data in mutations(&png, 300) {
            let _ = render_icon_bytes(Path::new("m.png"), &data, 24);
        }
        let svg = br##"<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16"><circle cx="8" cy="8" r="6" fill="#123456"/></svg>"##;
        for data in mutations(svg, 300) {
            let _ = render_icon_bytes(Path::new("m.svg"), &data, 24);
        }
    }
}
