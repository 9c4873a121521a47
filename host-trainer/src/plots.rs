//! PNG plots that need no system fonts: lines and cells go through plotters' bitmap backend,
//! text is drawn from the embedded public-domain 8x8 bitmap font (`font8x8`), so a bare CI box
//! renders the same picture.
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use std::path::Path;

pub type Rgb = (u8, u8, u8);
const BG: Rgb = (255, 255, 255);
const FG: Rgb = (20, 20, 20);
const SERIES: [Rgb; 6] = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75)];

/// An RGB canvas (row-major, 3 bytes per pixel).
pub struct Canvas {
    pub w: usize,
    pub h: usize,
    pub buf: Vec<u8>,
}

impl Canvas {
    pub fn new(w: usize, h: usize) -> Self {
        let mut buf = vec![0u8; w * h * 3];
        for px in buf.chunks_mut(3) {
            px.copy_from_slice(&[BG.0, BG.1, BG.2]);
        }
        Canvas { w, h, buf }
    }

    pub fn set(&mut self, x: i64, y: i64, c: Rgb) {
        if x >= 0 && y >= 0 && (x as usize) < self.w && (y as usize) < self.h {
            let i = (y as usize * self.w + x as usize) * 3;
            self.buf[i..i + 3].copy_from_slice(&[c.0, c.1, c.2]);
        }
    }

    /// Draws `text` with its top-left corner at (x, y); each font pixel becomes `scale x scale`.
    /// Characters outside the font draw as '?'. Returns the width drawn in pixels.
    pub fn text(&mut self, x: i64, y: i64, text: &str, scale: i64, c: Rgb) -> i64 {
        use font8x8::UnicodeFonts;
        let mut cx = x;
        for ch in text.chars() {
            let g = font8x8::BASIC_FONTS.get(ch).or_else(|| font8x8::BASIC_FONTS.get('?')).unwrap_or([0; 8]);
            for (row, bits) in g.iter().enumerate() {
                for col in 0..8 {
                    if bits & (1 << col) != 0 {
                        for dy in 0..scale {
                            for dx in 0..scale {
                                self.set(cx + col * scale + dx, y + row as i64 * scale + dy, c);
                            }
                        }
                    }
                }
            }
            cx += 8 * scale;
        }
        cx - x
    }

    /// Encodes as PNG and writes it atomically.
    pub fn save_png(&self, path: &Path) -> Result<(), String> {
        let mut out = Vec::new();
        image::write_buffer_with_format(
            &mut std::io::Cursor::new(&mut out),
            &self.buf,
            self.w as u32,
            self.h as u32,
            image::ExtendedColorType::Rgb8,
            image::ImageFormat::Png,
        )
        .map_err(|e| format!("PNG encoding failed: {e}"))?;
        rsim_model::write::write_atomic(path, &out).map_err(|e| format!("cannot write {}: {e}", path.display()))
    }
}

/// Width in pixels of `text` at `scale`.
pub fn text_width(text: &str, scale: i64) -> i64 {
    text.chars().count() as i64 * 8 * scale
}

fn fmt_tick(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 1000.0 || v.abs() < 0.01 {
        format!("{v:.1e}")
    } else if v.abs() >= 10.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// Series read from a JSONL metrics file: for each key, (x, y) points. x is the `step` field
/// when present, else the line number. Lines that are not JSON objects, or lack the key, are skipped.
pub fn read_jsonl_series(path: &Path, keys: &[&str]) -> Result<Vec<Vec<(f64, f64)>>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut out = vec![Vec::new(); keys.len()];
    for (n, line) in text.lines().enumerate() {
        let Ok(serde_json::Value::Object(obj)) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        let x = obj.get("step").and_then(|v| v.as_f64()).unwrap_or(n as f64);
        for (k, key) in keys.iter().enumerate() {
            if let Some(y) = obj.get(*key).and_then(|v| v.as_f64()).filter(|y| y.is_finite()) {
                out[k].push((x, y));
            }
        }
    }
    Ok(out)
}

/// Loss (or any metric) curves from a JSONL metrics file to a PNG. `keys` default to `["loss"]`.
/// Returns the number of points plotted per key.
pub fn plot_loss_curve(jsonl: &Path, png: &Path, keys: &[&str], title: &str) -> Result<Vec<usize>, String> {
    let keys: Vec<&str> = if keys.is_empty() { vec!["loss"] } else { keys.to_vec() };
    let series = read_jsonl_series(jsonl, &keys)?;
    if series.iter().all(|s| s.is_empty()) {
        return Err(format!("{} has no numeric {:?} values", jsonl.display(), keys));
    }
    let all = series.iter().flatten();
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in all {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    let pad = ((y1 - y0) * 0.05).max(1e-6);
    let (y0, y1) = (y0 - pad, y1 + pad);
    let (w, h) = (800usize, 500usize);
    let (l, r, t, b) = (80i32, 20i32, 40i32, 50i32);
    let mut cv = Canvas::new(w, h);
    {
        let root = BitMapBackend::with_buffer(&mut cv.buf, (w as u32, h as u32)).into_drawing_area();
        let plot = root.margin(t as u32, b as u32, l as u32, r as u32);
        let plot = plot.apply_coord_spec(Cartesian2d::<RangedCoordf64, RangedCoordf64>::new(
            x0..x1,
            -y1..-y0,
            (l..w as i32 - r, t..h as i32 - b),
        ));
        let e = |e: DrawingAreaErrorKind<_>| format!("plot: {e:?}");
        // Plotters puts the start of the y range at the top, so the chart works in -y.
        plot.draw(&Rectangle::new([(x0, -y1), (x1, -y0)], ShapeStyle::from(&BLACK).stroke_width(1))).map_err(e)?;
        for i in 1..5 {
            let yv = y0 + (y1 - y0) * i as f64 / 5.0;
            plot.draw(&PathElement::new(vec![(x0, -yv), (x1, -yv)], RGBColor(225, 225, 225))).map_err(e)?;
        }
        for (k, s) in series.iter().enumerate() {
            let c = SERIES[k % SERIES.len()];
            plot.draw(&PathElement::new(
                s.iter().map(|&(x, y)| (x, -y)).collect::<Vec<_>>(),
                ShapeStyle::from(&RGBColor(c.0, c.1, c.2)).stroke_width(2),
            ))
            .map_err(e)?;
        }
        root.present().map_err(e)?;
    }
    // Text after plotters has released the buffer.
    cv.text((w as i64 - text_width(title, 2)) / 2, 12, title, 2, FG);
    for i in 0..=5 {
        let yv = y0 + (y1 - y0) * i as f64 / 5.0;
        let py = (h as i64 - b as i64) - ((h as i64 - t as i64 - b as i64) as f64 * i as f64 / 5.0) as i64;
        let s = fmt_tick(yv);
        cv.text(l as i64 - 6 - text_width(&s, 1), py - 4, &s, 1, FG);
        let xv = x0 + (x1 - x0) * i as f64 / 5.0;
        let px = l as i64 + ((w as i64 - l as i64 - r as i64) as f64 * i as f64 / 5.0) as i64;
        let s = fmt_tick(xv);
        cv.text(px - text_width(&s, 1) / 2, h as i64 - b as i64 + 8, &s, 1, FG);
    }
    cv.text((w as i64 - text_width("step", 1)) / 2, h as i64 - 20, "step", 1, FG);
    let mut lx = l as i64 + 10;
    for (k, key) in keys.iter().enumerate() {
        let c = SERIES[k % SERIES.len()];
        for dx in 0..16 {
            for dy in 0..3 {
                cv.set(lx + dx, t as i64 + 12 + dy, c);
            }
        }
        lx += 20;
        lx += cv.text(lx, t as i64 + 9, key, 1, FG) + 16;
    }
    cv.save_png(png)?;
    Ok(series.iter().map(Vec::len).collect())
}

/// Confusion-matrix PNG: cells shaded by row-normalised rate, counts written in the cells, rows
/// (true classes) labelled with names, columns (predictions) with the class index.
pub fn plot_confusion(
    m: &crate::metrics::Confusion,
    class_names: &[String],
    png: &Path,
    title: &str,
) -> Result<(), String> {
    let k = m.classes;
    if k == 0 {
        return Err("confusion matrix has no classes".into());
    }
    let cell = if k <= 12 { 44i64 } else { (600 / k as i64).max(12) };
    let name_w =
        class_names.iter().map(|n| text_width(&format!("{} {n}", class_names.len()), 1)).max().unwrap_or(0) + 16;
    let (left, top) = (name_w.max(60), 70i64);
    // Room for the footer line as well as the grid.
    let w = (left + cell * k as i64 + 20)
        .max(left + text_width("OA 100.00%  AA 100.00%  kappa 1.0000  n=0000000", 1) + 20) as usize;
    let h = (top + cell * k as i64 + 40) as usize;
    let mut cv = Canvas::new(w, h);
    {
        let root = BitMapBackend::with_buffer(&mut cv.buf, (w as u32, h as u32)).into_drawing_area();
        let e = |e: DrawingAreaErrorKind<_>| format!("plot: {e:?}");
        for t in 0..k {
            let row: u64 = (0..k).map(|p| m.get(t, p)).sum();
            for p in 0..k {
                let rate = if row == 0 { 0.0 } else { m.get(t, p) as f64 / row as f64 };
                let shade = |base: u8| (255.0 - (255.0 - base as f64) * rate) as u8;
                let (x, y) = (left + p as i64 * cell, top + t as i64 * cell);
                let fill = RGBColor(shade(8), shade(48), shade(107));
                root.draw(&Rectangle::new(
                    [(x as i32, y as i32), ((x + cell) as i32, (y + cell) as i32)],
                    fill.filled(),
                ))
                .map_err(e)?;
                root.draw(&Rectangle::new(
                    [(x as i32, y as i32), ((x + cell) as i32, (y + cell) as i32)],
                    RGBColor(200, 200, 200),
                ))
                .map_err(e)?;
            }
        }
        root.present().map_err(e)?;
    }
    cv.text(10, 10, title, 2, FG);
    cv.text(left, top - 36, "predicted ->", 1, FG);
    for p in 0..k {
        let s = p.to_string();
        cv.text(left + p as i64 * cell + (cell - text_width(&s, 1)) / 2, top - 14, &s, 1, FG);
    }
    for t in 0..k {
        let name = class_names.get(t).map(String::as_str).unwrap_or("?");
        cv.text(6, top + t as i64 * cell + cell / 2 - 4, &format!("{t} {name}"), 1, FG);
        let row: u64 = (0..k).map(|p| m.get(t, p)).sum();
        for p in 0..k {
            let v = m.get(t, p);
            if cell >= 24 {
                let rate = if row == 0 { 0.0 } else { v as f64 / row as f64 };
                let c = if rate > 0.5 { BG } else { FG };
                let s = v.to_string();
                cv.text(
                    left + p as i64 * cell + (cell - text_width(&s, 1)) / 2,
                    top + t as i64 * cell + cell / 2 - 4,
                    &s,
                    1,
                    c,
                );
            }
        }
    }
    let s = m.scores();
    let foot = format!("OA {:.2}%  AA {:.2}%  kappa {:.4}  n={}", s.oa * 100.0, s.aa * 100.0, s.kappa, s.total);
    cv.text(left, h as i64 - 24, &foot, 1, FG);
    cv.save_png(png)
}
