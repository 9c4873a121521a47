//! GeoTIFF georeferencing (ModelTiepoint 33922 + ModelPixelScale 33550) and GeoJSON output.

use std::fmt::Write as _;
use std::path::Path;

/// Affine pixel → map mapping of a north-up GeoTIFF.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GeoRef {
    /// Map coordinates of the tiepoint pixel (i, j).
    pub i: f64,
    pub j: f64,
    pub x: f64,
    pub y: f64,
    /// Map units per pixel (x to the east, y to the south).
    pub sx: f64,
    pub sy: f64,
}

impl GeoRef {
    pub fn map(&self, px: f64, py: f64) -> (f64, f64) {
        (self.x + (px - self.i) * self.sx, self.y - (py - self.j) * self.sy)
    }
}

/// Reads the georeferencing tags of a TIFF, if it has them.
pub fn read(path: &Path) -> Option<GeoRef> {
    let f = std::fs::File::open(path).ok()?;
    let mut d = tiff::decoder::Decoder::new(std::io::BufReader::new(f)).ok()?;
    let tie = d.get_tag_f64_vec(tiff::tags::Tag::Unknown(33922)).ok()?;
    let scale = d.get_tag_f64_vec(tiff::tags::Tag::Unknown(33550)).ok()?;
    if tie.len() < 6 || scale.len() < 2 || !scale[0].is_finite() || !scale[1].is_finite() {
        return None;
    }
    Some(GeoRef { i: tie[0], j: tie[1], x: tie[3], y: tie[4], sx: scale[0], sy: scale[1] })
}

/// One classified tile for GeoJSON.
pub struct Feature {
    pub x: u32,
    pub y: u32,
    pub size: u32,
    pub class: String,
    pub confidence: f32,
}

/// `s` as the inside of a JSON string: quotes, backslashes and every control character escaped
/// (class names come from model files; a raw newline or quote would break the document).
pub fn json_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{2028}' || c == '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// A FeatureCollection of tile polygons in the scene's map coordinates.
pub fn geojson(g: &GeoRef, feats: &[Feature]) -> String {
    let mut s = String::from("{\"type\":\"FeatureCollection\",\"features\":[\n");
    for (n, f) in feats.iter().enumerate() {
        let (x0, y0, x1, y1) = (f.x as f64, f.y as f64, (f.x + f.size) as f64, (f.y + f.size) as f64);
        let ring = [g.map(x0, y0), g.map(x1, y0), g.map(x1, y1), g.map(x0, y1), g.map(x0, y0)];
        let coords: Vec<String> = ring.iter().map(|(x, y)| format!("[{x},{y}]")).collect();
        let class = json_escape(&f.class);
        let _ = writeln!(
            s,
            "{{\"type\":\"Feature\",\"properties\":{{\"class\":\"{class}\",\"confidence\":{:.4},\"x\":{},\"y\":{},\"size\":{}}},\"geometry\":{{\"type\":\"Polygon\",\"coordinates\":[[{}]]}}}}{}",
            f.confidence, f.x, f.y, f.size, coords.join(","), if n + 1 < feats.len() { "," } else { "" }
        );
    }
    s.push_str("]}\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_names_are_escaped_into_valid_json() {
        assert_eq!(json_escape("water"), "water");
        assert_eq!(json_escape("a\"b\\c"), "a\\\"b\\\\c");
        assert_eq!(json_escape("two\nlines\u{1}"), "two\\nlines\\u0001");
        let g = GeoRef { i: 0.0, j: 0.0, x: 0.0, y: 0.0, sx: 1.0, sy: 1.0 };
        let f = Feature { x: 0, y: 0, size: 1, class: "evil\",\"x\":\"\n".into(), confidence: 0.5 };
        let doc = geojson(&g, &[f]);
        // One property named class, still one line per feature, the name intact inside it.
        assert_eq!(doc.matches("\"class\":").count(), 1, "{doc}");
        assert!(doc.contains("\"class\":\"evil\\\",\\\"x\\\":\\\"\\n\""), "{doc}");
        assert_eq!(doc.lines().count(), 3, "{doc}");
    }
}
