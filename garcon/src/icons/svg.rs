//! SVG icons: parse with usvg (no file or network access), refuse filter graphs above a
//! complexity budget, render with resvg, and, in the daemon, do all of it in a child process
//! under a CPU/memory/wall budget ([`super::sandbox`]).
//!
//! Budget reasoning. resvg's filters cost `region pixels x per-pixel work`, and the per-pixel
//! work of some primitives is unbounded by the file size: `feTurbulence` loops `numOctaves`
//! times per pixel (a 202-byte file with `numOctaves="1000000"` burned 19 s and then panicked
//! inside resvg), and a short chain of large-radius `feMorphology`/`feGaussianBlur` steps keeps
//! a core busy for minutes at 256 px. Two layers bound this:
//! 1. [`check_complexity`], cheap and in-process, refuses what no icon needs: more than
//!    [`MAX_FILTER_PRIMITIVES`] filter primitives in the document, more than
//!    [`MAX_TURBULENCE_OCTAVES`] octaves (each octave halves the noise amplitude, so beyond ~10
//!    nothing changes in 8-bit color), or a morphology radius above [`MAX_MORPHOLOGY_RADIUS`]
//!    user units. It keeps the fuzzers (which call [`render_svg_png`] in-process) out of those
//!    known-slow paths, but it cannot be complete: cost also depends on regions, transforms,
//!    nesting and how often a filter is used.
//! 2. [`render_svg_isolated`], used by the daemon, renders in a forked child limited to
//!    [`SVG_BUDGET`]: 1 s of wall-clock time and 1 s of CPU (a normal icon renders in a few
//!    milliseconds, so this is two orders of magnitude of headroom), and 256 MiB of address
//!    space beyond the inherited one (a 1024 px canvas is 4 MiB; each filter intermediate of its
//!    region is the same again). Past the budget the child is killed: its CPU stops, its memory
//!    is returned, a panic never reaches the daemon, and the icon is simply omitted.

use std::io::Cursor;
use std::sync::Arc;
use std::time::Duration;

use image::{ImageReader, Rgba, RgbaImage};
use resvg::{tiny_skia, usvg};

use super::sandbox::{run_limited, ChildBudget, ChildError};

/// Most filter primitives in one SVG (drop shadows and glows use 3 to 6).
pub const MAX_FILTER_PRIMITIVES: usize = 32;
/// Most `feTurbulence` octaves.
pub const MAX_TURBULENCE_OCTAVES: u32 = 10;
/// Largest `feMorphology` radius (user units; resvg's morphology is `O(r^2)` per pixel).
pub const MAX_MORPHOLOGY_RADIUS: f32 = 32.0;
/// Largest filter region (and primitive subregion) side, in user units. resvg 0.49 panics when a
/// region scaled to pixels overflows an integer rect; no real icon comes near this.
pub const MAX_FILTER_REGION: f32 = 1.0e6;
/// Largest blur standard deviation (feGaussianBlur, feDropShadow), in user units: resvg 0.49
/// overflows an integer box size above about 1e9.
pub const MAX_BLUR_STD_DEV: f32 = 1.0e4;
/// Largest raster width/height embedded in an SVG (same as raster icon sources).
pub const MAX_EMBEDDED_DIMENSION: u32 = super::render::MAX_SOURCE_DIMENSION;
/// The budget of one isolated SVG render (see the module comment).
pub const SVG_BUDGET: ChildBudget = ChildBudget {
    wall: Duration::from_secs(1),
    cpu_seconds: 1,
    extra_memory: 256 * 1024 * 1024,
    // The PNG of a 1024 px icon; a larger one is not a valid answer anyway.
    max_output: 8 * 1024 * 1024,
};

/// Renders `bytes` as a `target`x`target` PNG in a child process under `budget`.
pub fn render_svg_isolated(
    bytes: &[u8],
    target: u32,
    budget: &ChildBudget,
) -> Result<Vec<u8>, String> {
    run_limited(budget, || render_svg_png(bytes, target)).map_err(|e| match e {
        ChildError::Failed(message) => message,
        other => format!("SVG render stopped: {other}"),
    })
}

/// Renders `bytes` as a `target`x`target` PNG in this process (complexity-checked, not
/// time-bounded: the daemon uses [`render_svg_isolated`]; fuzzers call this).
pub fn render_svg_png(bytes: &[u8], target: u32) -> Result<Vec<u8>, String> {
    let image = render_svg(bytes, target)?;
    super::render::encode_png(&image)
}

/// Parses `bytes` (no external references) and refuses trees above the complexity budget.
pub fn parse_svg(bytes: &[u8]) -> Result<usvg::Tree, String> {
    let tree = usvg::Tree::from_data(bytes, &svg_options()).map_err(|e| e.to_string())?;
    check_complexity(&tree)?;
    Ok(tree)
}

/// The in-process pre-check of the module comment.
pub fn check_complexity(tree: &usvg::Tree) -> Result<(), String> {
    use usvg::filter::Kind;
    let mut primitives = 0usize;
    for filter in tree.filters() {
        primitives += filter.primitives().len();
        if primitives > MAX_FILTER_PRIMITIVES {
            return Err(format!(
                "more than {MAX_FILTER_PRIMITIVES} filter primitives"
            ));
        }
        let too_large = |r: usvg::NonZeroRect| {
            !(r.width() <= MAX_FILTER_REGION && r.height() <= MAX_FILTER_REGION)
        };
        if too_large(filter.rect()) || filter.primitives().iter().any(|p| too_large(p.rect())) {
            return Err(format!(
                "filter region larger than {MAX_FILTER_REGION} units"
            ));
        }
        for primitive in filter.primitives() {
            match primitive.kind() {
                Kind::Turbulence(t) if t.num_octaves() > MAX_TURBULENCE_OCTAVES => {
                    return Err(format!(
                        "feTurbulence with {} octaves (limit {MAX_TURBULENCE_OCTAVES})",
                        t.num_octaves()
                    ));
                }
                Kind::GaussianBlur(b)
                    if b.std_dev_x().get() > MAX_BLUR_STD_DEV
                        || b.std_dev_y().get() > MAX_BLUR_STD_DEV =>
                {
                    return Err(format!("blur deviation above {MAX_BLUR_STD_DEV}"));
                }
                Kind::DropShadow(d)
                    if d.std_dev_x().get() > MAX_BLUR_STD_DEV
                        || d.std_dev_y().get() > MAX_BLUR_STD_DEV =>
                {
                    return Err(format!("blur deviation above {MAX_BLUR_STD_DEV}"));
                }
                Kind::Morphology(m)
                    if m.radius_x().get() > MAX_MORPHOLOGY_RADIUS
                        || m.radius_y().get() > MAX_MORPHOLOGY_RADIUS =>
                {
                    return Err(format!("feMorphology radius above {MAX_MORPHOLOGY_RADIUS}"));
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// usvg options that never touch the filesystem and bound embedded raster images.
fn svg_options() -> usvg::Options<'static> {
    let default_data = usvg::ImageHrefResolver::default_data_resolver();
    usvg::Options {
        image_href_resolver: usvg::ImageHrefResolver {
            resolve_data: Box::new(move |mime, data: Arc<Vec<u8>>, options| {
                let kind = default_data(mime, data, options)?;
                match &kind {
                    usvg::ImageKind::SVG(_) => Some(kind),
                    usvg::ImageKind::PNG(d)
                    | usvg::ImageKind::JPEG(d)
                    | usvg::ImageKind::GIF(d)
                    | usvg::ImageKind::WEBP(d) => embedded_raster_ok(d).then_some(kind),
                }
            }),
            // External references (files, URLs) are never followed.
            resolve_string: Box::new(|_, _| None),
        },
        ..usvg::Options::default()
    }
}

/// True when an embedded raster image's header announces an acceptable size.
fn embedded_raster_ok(data: &[u8]) -> bool {
    let dims = ImageReader::new(Cursor::new(data))
        .with_guessed_format()
        .ok()
        .and_then(|r| r.into_dimensions().ok());
    matches!(dims, Some((w, h)) if w <= MAX_EMBEDDED_DIMENSION && h <= MAX_EMBEDDED_DIMENSION)
}

/// Renders `bytes` centered in a `target` square.
pub fn render_svg(bytes: &[u8], target: u32) -> Result<RgbaImage, String> {
    if target == 0 || target > super::MAX_ICON_PIXELS {
        return Err(format!("SVG target {target} px is out of range"));
    }
    let tree = parse_svg(bytes)?;
    let size = tree.size();
    let (w, h) = (size.width(), size.height());
    let side = target as f32;
    let scale = side / w.max(h);
    let transform = tiny_skia::Transform::from_row(
        scale,
        0.0,
        0.0,
        scale,
        (side - w * scale) / 2.0,
        (side - h * scale) / 2.0,
    );
    let mut pixmap = tiny_skia::Pixmap::new(target, target)
        .ok_or_else(|| format!("cannot allocate a {target}x{target} canvas"))?;
    resvg::render(&tree, transform, &mut pixmap.as_mut());
    let mut image = RgbaImage::new(target, target);
    for (out, px) in image.pixels_mut().zip(pixmap.pixels()) {
        let c = px.demultiply();
        *out = Rgba([c.red(), c.green(), c.blue(), c.alpha()]);
    }
    Ok(image)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    const TURBULENCE: &str = r#"<svg xmlns="http://www.w3.org/2000/svg" width="256" height="256"><filter id="t"><feTurbulence baseFrequency="0.05" numOctaves="1000000"/></filter><rect width="256" height="256" filter="url(#t)"/></svg>"#;

    #[test]
    fn complexity_check_refuses_huge_octaves_radii_and_chains() {
        let err = render_svg_png(TURBULENCE.as_bytes(), 48).unwrap_err();
        assert!(err.contains("octaves"), "{err}");
        let morph = r#"<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"><filter id="m"><feMorphology radius="500"/></filter><rect width="8" height="8" filter="url(#m)"/></svg>"#;
        assert!(render_svg_png(morph.as_bytes(), 48)
            .unwrap_err()
            .contains("radius"));
        let chain = format!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"><filter id="c">{}</filter><rect width="8" height="8" filter="url(#c)"/></svg>"#,
            r#"<feOffset dx="1"/>"#.repeat(MAX_FILTER_PRIMITIVES + 1)
        );
        assert!(render_svg_png(chain.as_bytes(), 48)
            .unwrap_err()
            .contains("primitives"));
        let shadow = r##"<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"><filter id="s"><feGaussianBlur stdDeviation="1"/><feOffset dx="1"/><feMerge><feMergeNode/><feMergeNode in="SourceGraphic"/></feMerge></filter><rect width="6" height="6" fill="#123456" filter="url(#s)"/></svg>"##;
        assert!(render_svg_png(shadow.as_bytes(), 48).is_ok());
    }

    #[test]
    fn isolated_render_matches_in_process_and_errors_come_back() {
        let svg = br##"<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16"><rect width="16" height="16" fill="#00ff00"/></svg>"##;
        assert_eq!(
            render_svg_isolated(svg, 48, &SVG_BUDGET).unwrap(),
            render_svg_png(svg, 48).unwrap()
        );
        let err = render_svg_isolated(b"<svg", 48, &SVG_BUDGET).unwrap_err();
        assert!(!err.contains("stopped"), "a parse error, not a kill: {err}");
    }

    #[test]
    fn hostile_filter_chain_is_stopped_within_the_budget() {
        // Passes the pre-check (6 primitives, radius 30) but takes minutes to render.
        let svg = r#"<svg xmlns="http://www.w3.org/2000/svg" width="256" height="256"><filter id="f" x="-1" y="-1" width="3" height="3"><feGaussianBlur stdDeviation="40"/><feMorphology operator="dilate" radius="30"/><feGaussianBlur stdDeviation="40"/><feMorphology operator="erode" radius="30"/><feGaussianBlur stdDeviation="40"/><feMorphology operator="dilate" radius="30"/></filter><rect width="256" height="256" fill="red" filter="url(#f)"/></svg>"#;
        let started = Instant::now();
        let err = render_svg_isolated(svg.as_bytes(), 256, &SVG_BUDGET).unwrap_err();
        let took = started.elapsed();
        println!("hostile blur+morphology chain at 256 px: {err} after {took:?}");
        assert!(err.contains("stopped"), "{err}");
        assert!(took < Duration::from_secs(3), "{took:?}");
    }

    /// Found by fuzz/icon_svg (a libFuzzer timeout in-process at 32 px): `radius="8"` is within
    /// MAX_MORPHOLOGY_RADIUS in user units, but the 1x1 viewBox scales it to a 256 px radius
    /// over a 10x80-unit rect, so the in-process pre-check lets it through and one render ran past
    /// libFuzzer's 10 s timeout. The daemon's budgeted child must stop it.
    #[test]
    fn fuzz_found_scaled_morphology_is_stopped_within_the_budget() {
        let svg = br#"<svg xlins="http://www.w1.org/20/00svg" viewBox="0 00 01 1"><defs><filter id="f"><feGaussianvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvBlur stdDeviation="0"/><feMorphology radius="8"/><feTurbulence numOctaves="1" baseFrequency="0.standalone1"/></filter></defs><rect width="10" height="80" fill="red" filter="url(#f)"/></svg>"#;
        let started = Instant::now();
        let err = render_svg_isolated(svg, 32, &SVG_BUDGET).unwrap_err();
        let took = started.elapsed();
        assert!(err.contains("stopped"), "{err}");
        assert!(took < Duration::from_secs(3), "{took:?}");
    }

    /// Found by fuzz/icon_svg: a huge stdDeviation overflowed resvg 0.49's box blur.
    #[test]
    fn fuzz_found_huge_blur_deviation_is_refused() {
        let svg = b"<svg xmlns=\x22http://www.w3.org/2000/svg\x22 viewBox=\x220 0 10 10\x22><defs><filter id=\x22f\x22><feGaussianBlur stdDeviation=\x2222222222222222222222222222222222222222222222222222222222222222222222222222222222222\x0d\x0d\x0d222222222222222222222222/1\x22/><nfeMorphology radius=\x221\x22/><feTurbulence numOctaves=\x222\x22 baweFrequency=\x220.1\x22/></filter></defs><rect width=\x2210\x22 height=\x2210\x22 fill=\x22red\x22 filter=\x22url(#f)\x22/></svg>";
        let err = render_svg_png(svg, 32).unwrap_err();
        assert!(err.contains("blur deviation"), "{err}");
    }

    /// Found by fuzz/icon_svg: a filter region with a huge height made resvg 0.49 panic
    /// (tiny-skia `to_int_rect` unwraps None). The pre-check refuses it; had it not, the budgeted
    /// child would have reported the panic.
    #[test]
    fn fuzz_found_filter_region_panic_stays_in_the_child() {
        let svg = b"<svg xmlns=\x22http://www.w3.org/2000/svg\x22 viewBox=\x220 0 10 10\x22><defs><filter id=\x22f\x22><feGa8snBlur seviation=\x221\x22/>orphology radius=\x221\x22/><feTurbulence dth=\x2210\x22 height=\x2200000000000000000000000000000000000000000000000000000000000006148914691236517201\x22 fitaves=\x222\x22 baseFrequency=\x220.1\x22/></filter></defs><rect width=\x2210\x22 height=\x2210\x22 fill=\x22red\x22 filter=\x22url(#f)\x22/></svg>";
        let err = render_svg_png(svg, 32).unwrap_err();
        assert!(err.contains("filter region"), "{err}");
        let err = render_svg_isolated(svg, 32, &SVG_BUDGET).unwrap_err();
        assert!(err.contains("filter region"), "{err}");
    }
}
