//! Class-map PNG of a scene from tile results: each tile painted in its class's colour.

/// One classified tile in scene pixels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TileClass {
    pub x: u32,
    pub y: u32,
    pub size: u32,
    pub class: u16,
}

/// A fixed, distinguishable palette (tab20-like); classes beyond it cycle.
pub const PALETTE: [[u8; 3]; 20] = [
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [214, 39, 40],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
    [127, 127, 127],
    [188, 189, 34],
    [23, 190, 207],
    [174, 199, 232],
    [255, 187, 120],
    [152, 223, 138],
    [255, 152, 150],
    [197, 176, 213],
    [196, 156, 148],
    [247, 182, 210],
    [199, 199, 199],
    [219, 219, 141],
    [158, 218, 229],
];

/// Width and height in pixels of the map of `tiles` at `1/scale` (u64: no overflow for any tile).
pub fn map_size(tiles: &[TileClass], scale: u32) -> (u64, u64) {
    let s = u64::from(scale.max(1));
    let w = tiles.iter().map(|t| (u64::from(t.x) + u64::from(t.size)).div_ceil(s)).max().unwrap_or(0);
    let h = tiles.iter().map(|t| (u64::from(t.y) + u64::from(t.size)).div_ceil(s)).max().unwrap_or(0);
    (w, h)
}

/// RGB pixels of the map at `1/scale` of scene resolution (unclassified area is black).
/// Later tiles paint over earlier ones where they overlap. Allocates `3 x` [`map_size`] bytes:
/// callers with tiles from a link check the size first ([`write_png`] does).
pub fn render(tiles: &[TileClass], scale: u32) -> (u32, u32, Vec<u8>) {
    let s = scale.max(1);
    let (w, h) = map_size(tiles, scale);
    let (w, h) = (u32::try_from(w).unwrap_or(u32::MAX), u32::try_from(h).unwrap_or(u32::MAX));
    let mut px = vec![0u8; w as usize * h as usize * 3];
    for t in tiles {
        let c = PALETTE[t.class as usize % PALETTE.len()];
        for y in t.y / s..t.y.saturating_add(t.size).div_ceil(s) {
            for x in t.x / s..t.x.saturating_add(t.size).div_ceil(s) {
                let i = (y as usize * w as usize + x as usize) * 3;
                if let Some(p) = px.get_mut(i..i + 3) {
                    p.copy_from_slice(&c);
                }
            }
        }
    }
    (w, h, px)
}

/// Encodes RGB pixels as PNG bytes.
pub fn png_bytes(w: u32, h: u32, rgb: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, w.max(1), h.max(1));
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut wr = enc.write_header().map_err(|e| format!("png: {e}"))?;
    let blank;
    let data = if w == 0 || h == 0 {
        blank = vec![0u8; 3];
        &blank
    } else {
        rgb
    };
    wr.write_image_data(data).map_err(|e| format!("png: {e}"))?;
    wr.finish().map_err(|e| format!("png: {e}"))?;
    Ok(out)
}

/// Writes the class map of `tiles` to `path` (atomically); a map wider or taller than `max_side`
/// pixels is an error naming its size, before anything is allocated.
pub fn write_png(path: &std::path::Path, tiles: &[TileClass], scale: u32, max_side: u32) -> Result<(u32, u32), String> {
    let (w, h) = map_size(tiles, scale);
    if w > u64::from(max_side) || h > u64::from(max_side) {
        return Err(format!(
            "class map would be {w}x{h} pixels at scale {scale}, over --map-max-side {max_side}; \
             raise --map-max-side or --map-scale"
        ));
    }
    let (w, h, px) = render(tiles, scale);
    let bytes = png_bytes(w, h, &px)?;
    rsim_model::write::write_atomic(path, &bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok((w, h))
}
