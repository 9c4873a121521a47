//! Picking and decoding the images the field tools feed to the runtime: folders split per class by
//! sorted file name (the seeds' protocol, `--train-share`), or CSV split files.

use crate::data::split::split_per_class;
use crate::data::{decode::decode_file, Dataset, Scaling, TileData};
use std::path::Path;

/// Which part of a folder's per-class sorted split to use.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Part {
    /// The first `share` of each class.
    Train(f64),
    /// The rest after the first `share`.
    Test(f64),
    All,
}

impl Part {
    /// `train`, `test` or `all` with the train share.
    pub fn parse(split: &str, train_share: f64) -> Result<Part, String> {
        if !(train_share > 0.0 && train_share <= 1.0) {
            return Err(format!("--train-share must be in (0, 1], got {train_share}"));
        }
        match split {
            "train" => Ok(Part::Train(train_share)),
            "test" if train_share >= 1.0 => Err("--split test needs --train-share below 1".into()),
            "test" => Ok(Part::Test(train_share)),
            "all" => Ok(Part::All),
            other => Err(format!("unknown --split '{other}' (train, test, all)")),
        }
    }
}

/// The samples of `data`: a CSV split file (used whole; paths relative to the CSV's folder, or to
/// `csv_root`), or a folder with one subfolder per class split by `part`.
pub fn select(data: &Path, csv: Option<&Path>, part: Part) -> Result<Dataset, String> {
    if !data.exists() {
        return Err(format!("{} does not exist", data.display()));
    }
    let is_csv = |p: &Path| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    let ds = match csv {
        Some(c) => Dataset::from_csv(c, Some(data)).map_err(|e| e.to_string())?,
        None if data.is_file() && is_csv(data) => Dataset::from_csv(data, None).map_err(|e| e.to_string())?,
        None => {
            let ds = Dataset::from_folder(data).map_err(|e| e.to_string())?;
            let by_class = ds.by_class();
            let idx = match part {
                Part::All => by_class.concat(),
                Part::Train(s) => split_per_class(&by_class, &[s, 1.0 - s]).map_err(|e| e.to_string())?.swap_remove(0),
                Part::Test(s) => split_per_class(&by_class, &[s, 1.0 - s]).map_err(|e| e.to_string())?.swap_remove(1),
            };
            ds.subset(&idx)
        }
    };
    if ds.is_empty() {
        return Err(format!("no images selected from {}", data.display()));
    }
    Ok(ds)
}

/// Up to `n` sample indices taken round-robin over the classes (each class in sorted order), so a
/// small calibration set still covers every class.
pub fn round_robin(ds: &Dataset, n: usize) -> Vec<usize> {
    let by_class = ds.by_class();
    let longest = by_class.iter().map(Vec::len).max().unwrap_or(0);
    let mut out = Vec::new();
    for k in 0..longest {
        for c in &by_class {
            if out.len() < n {
                if let Some(&i) = c.get(k) {
                    out.push(i);
                }
            }
        }
    }
    out
}

/// A decoded image as the runtime's preprocessing takes it: u8, interleaved, `bands` bands.
pub struct U8Image {
    pub pixels: Vec<u8>,
    pub width: u32,
    pub height: u32,
}

/// Decodes `path` into `bands` u8 bands. 8-bit files pass through; 16-bit and float samples are
/// scaled to 0..1 (`Scaling::default()`) and then to 0..255; band rules as `Tile::to_img`.
pub fn load_u8(path: &Path, bands: usize) -> Result<U8Image, String> {
    let tile = decode_file(path).map_err(|e| e.to_string())?;
    let (width, height) = (tile.width as u32, tile.height as u32);
    if let TileData::U8(px) = &tile.data {
        if tile.bands == bands {
            return Ok(U8Image { pixels: px.clone(), width, height });
        }
    }
    let img = tile.to_img(bands, Scaling::default()).map_err(|e| format!("{}: {e}", path.display()))?;
    let pixels = img.data.iter().map(|v| (v * 255.0).round().clamp(0.0, 255.0) as u8).collect();
    Ok(U8Image { pixels, width, height })
}
