//! A small XPM3 decoder (the `image` crate has none).
//!
//! Format: a C array of strings. The first string is `"<width> <height> <ncolors> <cpp> ..."`,
//! then `ncolors` color strings (`<cpp chars> <key> <color> [<key> <color>...]`, keys `c`, `g`,
//! `g4`, `m`, `s`), then `height` pixel strings of `width * cpp` characters. Colors are `None`,
//! `#RGB`/`#RRGGBB`/`#RRRRGGGGBBBB` (any 1-4 hex digits per channel) or an X11 color name
//! from a built-in table of common names. XPM extensions after the pixels are ignored.

use std::collections::HashMap;

use image::RgbaImage;

/// Largest width or height accepted.
pub const MAX_XPM_DIMENSION: u32 = 4096;
/// Most characters per pixel accepted (keys are packed into a u64).
pub const MAX_CHARS_PER_PIXEL: usize = 8;

/// Why XPM data could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XpmError {
    /// The values string is missing or malformed.
    #[error("malformed XPM header: {0}")]
    Header(String),
    /// Width/height/colors/cpp out of range.
    #[error(
        "XPM dimensions out of range: {width}x{height}, {colors} colors, {cpp} chars per pixel"
    )]
    OutOfRange {
        /// Width.
        width: u64,
        /// Height.
        height: u64,
        /// Number of colors.
        colors: u64,
        /// Characters per pixel.
        cpp: u64,
    },
    /// Fewer strings than the header announces.
    #[error("XPM data ends early: expected {expected} strings, found {found}")]
    Truncated {
        /// Strings needed.
        expected: usize,
        /// Strings found.
        found: usize,
    },
    /// A color string is malformed.
    #[error("malformed XPM color line {0}")]
    Color(usize),
    /// A pixel row is shorter than `width * cpp`.
    #[error("XPM pixel row {row} is too short")]
    ShortRow {
        /// Row index.
        row: usize,
    },
}

/// Decodes XPM data into RGBA pixels. Unknown pixel keys decode as transparent and unknown
/// color names as opaque black; anything structurally wrong is an error.
pub fn decode_xpm(data: &[u8]) -> Result<RgbaImage, XpmError> {
    let mut strings = CStrings::new(data);
    let header = strings
        .next()
        .ok_or_else(|| XpmError::Header("no strings".into()))?;
    let values: Vec<u64> = String::from_utf8_lossy(&header)
        .split_ascii_whitespace()
        .take(4)
        .map(|v| v.parse::<u64>())
        .collect::<Result<_, _>>()
        .map_err(|e| XpmError::Header(e.to_string()))?;
    let [width, height, colors, cpp] = values[..] else {
        return Err(XpmError::Header(format!(
            "{} values, expected 4",
            values.len()
        )));
    };
    let max_dim = u64::from(MAX_XPM_DIMENSION);
    // Every color needs its own key, so more colors than keys is malformed.
    if !(1..=max_dim).contains(&width)
        || !(1..=max_dim).contains(&height)
        || !(1..=MAX_CHARS_PER_PIXEL as u64).contains(&cpp)
        || colors == 0
        || colors > 256u64.saturating_pow(cpp as u32)
    {
        return Err(XpmError::OutOfRange {
            width,
            height,
            colors,
            cpp,
        });
    }
    // Bounded above, so the conversions are exact.
    let (width, height, colors, cpp) = (
        width as usize,
        height as usize,
        colors as usize,
        cpp as usize,
    );
    // Memory budget, checked before the pixel buffer is allocated: the decoded image must fit
    // the raster budget, and the data must be long enough to hold every pixel row, so a
    // 40-byte header announcing 4096x4096 pixels costs nothing.
    let pixels = (width as u64) * (height as u64);
    if pixels * 4 > super::render::MAX_DECODED_BYTES || pixels * cpp as u64 > data.len() as u64 {
        return Err(XpmError::OutOfRange {
            width: width as u64,
            height: height as u64,
            colors: colors as u64,
            cpp: cpp as u64,
        });
    }
    let expected = 1 + colors + height;
    let mut found = 1;

    let mut table = ColorTable::new(cpp);
    for index in 0..colors {
        let line = strings
            .next()
            .ok_or(XpmError::Truncated { expected, found })?;
        found += 1;
        if line.len() < cpp {
            return Err(XpmError::Color(index));
        }
        let (key, spec) = line.split_at(cpp);
        let color =
            parse_color_spec(&String::from_utf8_lossy(spec)).ok_or(XpmError::Color(index))?;
        table.insert(key, color);
    }

    let mut image = RgbaImage::new(width as u32, height as u32);
    for row in 0..height {
        let line = strings
            .next()
            .ok_or(XpmError::Truncated { expected, found })?;
        found += 1;
        if line.len() < width * cpp {
            return Err(XpmError::ShortRow { row });
        }
        for (x, key) in line.chunks_exact(cpp).take(width).enumerate() {
            image.put_pixel(x as u32, row as u32, image::Rgba(table.get(key)));
        }
    }
    Ok(image)
}

/// Pixel key -> RGBA.
struct ColorTable {
    single: Option<Box<[Option<[u8; 4]>; 256]>>,
    multi: HashMap<u64, [u8; 4]>,
}

impl ColorTable {
    fn new(cpp: usize) -> Self {
        Self {
            single: (cpp == 1).then(|| Box::new([None; 256])),
            multi: HashMap::new(),
        }
    }

    fn pack(key: &[u8]) -> u64 {
        key.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
    }

    fn insert(&mut self, key: &[u8], color: [u8; 4]) {
        match &mut self.single {
            Some(single) => single[usize::from(key[0])] = Some(color),
            None => {
                self.multi.insert(Self::pack(key), color);
            }
        }
    }

    fn get(&self, key: &[u8]) -> [u8; 4] {
        let found = match &self.single {
            Some(single) => single[usize::from(key[0])],
            None => self.multi.get(&Self::pack(key)).copied(),
        };
        found.unwrap_or([0, 0, 0, 0])
    }
}

/// Picks the best visual from `c <color> g <color> ...`: `c`, then `g`, `g4`, `m`.
fn parse_color_spec(spec: &str) -> Option<[u8; 4]> {
    let mut pairs: Vec<(&str, String)> = Vec::new();
    for token in spec.split_ascii_whitespace() {
        if matches!(token, "c" | "g" | "g4" | "m" | "s") {
            pairs.push((token, String::new()));
        } else if let Some((_, value)) = pairs.last_mut() {
            if !value.is_empty() {
                value.push(' ');
            }
            value.push_str(token);
        } else {
            return None;
        }
    }
    let value = ["c", "g", "g4", "m"]
        .iter()
        .find_map(|key| pairs.iter().find(|(k, v)| k == key && !v.is_empty()))?;
    Some(parse_color(&value.1))
}

/// `None`, `#hex` or a color name; unknown names are opaque black.
fn parse_color(value: &str) -> [u8; 4] {
    if value.eq_ignore_ascii_case("none") {
        return [0, 0, 0, 0];
    }
    if let Some(hex) = value.strip_prefix('#') {
        if let Some(rgb) = parse_hex(hex) {
            return [rgb[0], rgb[1], rgb[2], 255];
        }
    }
    let name: String = value
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    match named_color(&name) {
        Some([r, g, b]) => [r, g, b, 255],
        None => {
            tracing::debug!(color = value, "unknown XPM color name; using black");
            [0, 0, 0, 255]
        }
    }
}

/// `#RGB`, `#RRGGBB`, `#RRRGGGBBB`, `#RRRRGGGGBBBB` -> 8-bit channels (high bits kept).
fn parse_hex(hex: &str) -> Option<[u8; 3]> {
    if hex.is_empty()
        || !hex.len().is_multiple_of(3)
        || hex.len() > 12
        || !hex.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return None;
    }
    let per = hex.len() / 3;
    let mut out = [0u8; 3];
    for (i, channel) in out.iter_mut().enumerate() {
        let digits = &hex[i * per..(i + 1) * per];
        let value = u32::from_str_radix(digits, 16).ok()?;
        // Scale a `per`-digit value to 8 bits.
        let max = (1u32 << (4 * per)) - 1;
        *channel = ((value * 255 + max / 2) / max) as u8;
    }
    Some(out)
}

/// A few X11 color names (lowercase, no spaces) plus `grayN`/`greyN`.
fn named_color(name: &str) -> Option<[u8; 3]> {
    for prefix in ["gray", "grey"] {
        if let Some(n) = name.strip_prefix(prefix) {
            if n.is_empty() {
                return Some([190, 190, 190]);
            }
            if let Ok(percent) = n.parse::<u32>() {
                if percent <= 100 {
                    let v = ((percent * 255 + 50) / 100) as u8;
                    return Some([v, v, v]);
                }
            }
        }
    }
    let rgb = match name {
        "black" => [0, 0, 0],
        "white" => [255, 255, 255],
        "red" => [255, 0, 0],
        "green" => [0, 255, 0],
        "blue" => [0, 0, 255],
        "yellow" => [255, 255, 0],
        "cyan" => [0, 255, 255],
        "magenta" => [255, 0, 255],
        "orange" => [255, 165, 0],
        "purple" => [160, 32, 240],
        "brown" => [165, 42, 42],
        "pink" => [255, 192, 203],
        "navy" | "navyblue" => [0, 0, 128],
        "maroon" => [176, 48, 96],
        "gold" => [255, 215, 0],
        "darkgray" | "darkgrey" => [169, 169, 169],
        "lightgray" | "lightgrey" => [211, 211, 211],
        "dimgray" | "dimgrey" => [105, 105, 105],
        "slategray" | "slategrey" => [112, 128, 144],
        "darkred" => [139, 0, 0],
        "darkgreen" => [0, 100, 0],
        "darkblue" => [0, 0, 139],
        "lightblue" => [173, 216, 230],
        "steelblue" => [70, 130, 180],
        "skyblue" => [135, 206, 235],
        "forestgreen" => [34, 139, 34],
        "khaki" => [240, 230, 140],
        "beige" => [245, 245, 220],
        "tan" => [210, 180, 140],
        "wheat" => [245, 222, 179],
        "salmon" => [250, 128, 114],
        "violet" => [238, 130, 238],
        "orchid" => [218, 112, 214],
        "turquoise" => [64, 224, 208],
        "coral" => [255, 127, 80],
        "tomato" => [255, 99, 71],
        "firebrick" => [178, 34, 34],
        "chocolate" => [210, 105, 30],
        "ivory" => [255, 255, 240],
        "silver" => [192, 192, 192],
        _ => return None,
    };
    Some(rgb)
}

/// Iterates the C string literals of a file, skipping `/* */` and `//` comments.
struct CStrings<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> CStrings<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }
}

impl Iterator for CStrings<'_> {
    type Item = Vec<u8>;

    fn next(&mut self) -> Option<Vec<u8>> {
        let d = self.data;
        while self.pos < d.len() {
            match d[self.pos] {
                b'/' if d.get(self.pos + 1) == Some(&b'*') => {
                    self.pos = find(d, self.pos + 2, b"*/").map_or(d.len(), |end| end + 2);
                }
                b'/' if d.get(self.pos + 1) == Some(&b'/') => {
                    self.pos = find(d, self.pos + 2, b"\n").map_or(d.len(), |end| end + 1);
                }
                b'"' => {
                    let mut out = Vec::new();
                    self.pos += 1;
                    while self.pos < d.len() {
                        match d[self.pos] {
                            b'"' => {
                                self.pos += 1;
                                return Some(out);
                            }
                            b'\\' if self.pos + 1 < d.len() => {
                                out.push(d[self.pos + 1]);
                                self.pos += 2;
                            }
                            b => {
                                out.push(b);
                                self.pos += 1;
                            }
                        }
                    }
                    // Unterminated string: take what is there.
                    return Some(out);
                }
                _ => self.pos += 1,
            }
        }
        None
    }
}

fn find(haystack: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    haystack
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::mutations;

    const SAMPLE: &str = r#"/* XPM */
static char * sample_xpm[] = {
/* width height ncolors cpp */
"4 2 4 1",
"  c None",
". c #FF0000",
"+ c #0f0 m white",
"@ s sym c gray50",
" .+@",
"@+. ",
};"#;

    #[test]
    fn decodes_colors_transparency_and_layout() {
        let img = decode_xpm(SAMPLE.as_bytes()).unwrap();
        assert_eq!(img.dimensions(), (4, 2));
        assert_eq!(img.get_pixel(0, 0).0, [0, 0, 0, 0]);
        assert_eq!(img.get_pixel(1, 0).0, [255, 0, 0, 255]);
        assert_eq!(img.get_pixel(2, 0).0, [0, 255, 0, 255]);
        assert_eq!(img.get_pixel(3, 0).0, [128, 128, 128, 255]);
        assert_eq!(img.get_pixel(0, 1).0, [128, 128, 128, 255]);
        assert_eq!(img.get_pixel(3, 1).0, [0, 0, 0, 0]);
    }

    #[test]
    fn two_chars_per_pixel_and_long_hex() {
        let xpm = "\"2 1 2 2\",\"aa c #FFFF00000000\",\"bb c black\",\"aabb\"";
        let img = decode_xpm(xpm.as_bytes()).unwrap();
        assert_eq!(img.get_pixel(0, 0).0, [255, 0, 0, 255]);
        assert_eq!(img.get_pixel(1, 0).0, [0, 0, 0, 255]);
    }

    #[test]
    fn rejects_malformed_input() {
        let cases: &[(&str, &str)] = &[
            ("", "no strings"),
            ("\"a b c d\"", "non-numeric header"),
            ("\"0 1 1 1\",\"a c red\",\"\"", "zero width"),
            ("\"5000 1 1 1\"", "too wide"),
            ("\"1 1 1 9\"", "cpp too large"),
            ("\"1 1 300 1\"", "more colors than keys"),
            ("\"2 2 1 1\",\"a c red\",\"aa\"", "missing row"),
            ("\"2 1 1 1\",\"a c red\",\"a\"", "short row"),
            ("\"1 1 1 1\",\"a\"", "color line without color"),
        ];
        for (data, why) in cases {
            assert!(decode_xpm(data.as_bytes()).is_err(), "{why}");
        }
    }

    #[test]
    fn announced_pixels_are_checked_against_the_data_before_allocating() {
        // 4096x4096 (64 MiB of RGBA) from a 30-byte file: refused from the header alone.
        let bomb = b"\"4096 4096 1 1\",\"a c red\",\"a\"";
        assert!(matches!(
            decode_xpm(bomb),
            Err(XpmError::OutOfRange { width: 4096, .. })
        ));
        // 2048x2048 is within the memory budget but needs 4 MiB of rows.
        let short = b"\"2048 2048 1 1\",\"a c red\",\"a\"";
        assert!(decode_xpm(short).is_err());
    }

    #[test]
    fn unknown_keys_are_transparent_and_unknown_names_black() {
        let img = decode_xpm(b"\"2 1 1 1\",\"a c nosuchcolor\",\"az\"").unwrap();
        assert_eq!(img.get_pixel(0, 0).0, [0, 0, 0, 255]);
        assert_eq!(img.get_pixel(1, 0).0, [0, 0, 0, 0]);
    }

    #[test]
    fn multiword_color_names_are_joined() {
        let img = decode_xpm(b"\"1 1 1 1\",\"a c light grey\",\"a\"").unwrap();
        assert_eq!(img.get_pixel(0, 0).0, [211, 211, 211, 255]);
    }

    #[test]
    fn mutated_input_never_panics() {
        for data in mutations(SAMPLE.as_bytes(), 5000) {
            let _ = decode_xpm(&data);
        }
    }
}
