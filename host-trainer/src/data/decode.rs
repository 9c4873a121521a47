//! File -> `Tile`. JPEG/PNG go through `image`; TIFF goes through `tiff` directly because
//! `image`'s pixel types hold at most 4 channels and GeoTIFFs have any band count.
//!
//! Conversion rules (documented for users in `Tile::to_img`):
//! - alpha channels of PNG/JPEG (LumaA, RGBA) are dropped here, never composited;
//! - 8-bit stays u8, 16-bit stays u16, float stays f32 (scaled later by `Scaling`);
//! - TIFF: u8/u16/f32 samples kept; i8/i16/u32/f64 converted to f32; planar files are interleaved.
use super::error::DataError;
use super::tile::{Tile, TileData};
use std::path::Path;

/// Decodes one image file, choosing the decoder by extension (tif/tiff -> TIFF, else `image`).
pub fn decode_file(path: &Path) -> Result<Tile, DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::decode(path, e.to_string()))?;
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    let tile = if ext == "tif" || ext == "tiff" { decode_tiff(&bytes) } else { decode_image(&bytes) }
        .map_err(|r| DataError::decode(path, r))?;
    if tile.height == 0 || tile.width == 0 || tile.bands == 0 {
        return Err(DataError::decode(path, "image has zero size"));
    }
    Ok(tile)
}

/// Decodes JPEG/PNG (or anything `image` was built for) from memory.
pub fn decode_image(bytes: &[u8]) -> Result<Tile, String> {
    use image::DynamicImage as D;
    let img = image::load_from_memory(bytes).map_err(|e| e.to_string())?;
    let (w, h) = (img.width() as usize, img.height() as usize);
    let (bands, data) = match img {
        D::ImageLuma8(b) => (1, TileData::U8(b.into_raw())),
        D::ImageRgb8(b) => (3, TileData::U8(b.into_raw())),
        D::ImageLumaA8(_) => (1, TileData::U8(img.to_luma8().into_raw())),
        D::ImageRgba8(_) => (3, TileData::U8(img.to_rgb8().into_raw())),
        D::ImageLuma16(b) => (1, TileData::U16(b.into_raw())),
        D::ImageRgb16(b) => (3, TileData::U16(b.into_raw())),
        D::ImageLumaA16(_) => (1, TileData::U16(img.to_luma16().into_raw())),
        D::ImageRgba16(_) => (3, TileData::U16(img.to_rgb16().into_raw())),
        other => (3, TileData::F32(other.to_rgb32f().into_raw())),
    };
    Ok(Tile { height: h, width: w, bands, data })
}

/// Decodes a (Geo)TIFF with any number of bands.
pub fn decode_tiff(bytes: &[u8]) -> Result<Tile, String> {
    use tiff::decoder::{Decoder, DecodingResult as R};
    use tiff::tags::Tag;
    let mut dec = Decoder::new(std::io::Cursor::new(bytes)).map_err(|e| e.to_string())?;
    let (w, h) = dec.dimensions().map_err(|e| e.to_string())?;
    let bands = dec.colortype().map_err(|e| e.to_string())?.num_samples() as usize;
    let planar = dec.find_tag_unsigned::<u32>(Tag::PlanarConfiguration).ok().flatten() == Some(2);
    let mut buf = R::U8(Vec::new());
    dec.read_image_to_buffer(&mut buf).map_err(|e| e.to_string())?;
    let to_f32 = |v: Vec<f32>| TileData::F32(v);
    let data = match buf {
        R::U8(v) => TileData::U8(v),
        R::U16(v) => TileData::U16(v),
        R::F32(v) => TileData::F32(v),
        R::I8(v) => to_f32(v.into_iter().map(|x| x as f32).collect()),
        R::I16(v) => to_f32(v.into_iter().map(|x| x as f32).collect()),
        R::U32(v) => to_f32(v.into_iter().map(|x| x as f32).collect()),
        R::I32(v) => to_f32(v.into_iter().map(|x| x as f32).collect()),
        R::F64(v) => to_f32(v.into_iter().map(|x| x as f32).collect()),
        _ => return Err("unsupported TIFF sample type (use u8, u16, i16, u32, f32 or f64)".into()),
    };
    let (w, h) = (w as usize, h as usize);
    let expected = w.checked_mul(h).and_then(|n| n.checked_mul(bands)).ok_or("TIFF size overflows")?;
    let got = match &data {
        TileData::U8(v) => v.len(),
        TileData::U16(v) => v.len(),
        TileData::F32(v) => v.len(),
    };
    if got < expected {
        return Err(format!("TIFF holds {got} samples, expected {w}x{h}x{bands} = {expected}"));
    }
    let data = if planar && bands > 1 { interleave(data, w * h, bands) } else { data };
    Ok(Tile { height: h, width: w, bands, data })
}

/// Planar (band after band) -> interleaved (HWC).
fn interleave(data: TileData, plane: usize, bands: usize) -> TileData {
    fn go<T: Copy + Default>(v: &[T], plane: usize, bands: usize) -> Vec<T> {
        let mut out = vec![T::default(); plane * bands];
        for b in 0..bands {
            for p in 0..plane {
                out[p * bands + b] = v[b * plane + p];
            }
        }
        out
    }
    match data {
        TileData::U8(v) => TileData::U8(go(&v, plane, bands)),
        TileData::U16(v) => TileData::U16(go(&v, plane, bands)),
        TileData::F32(v) => TileData::F32(go(&v, plane, bands)),
    }
}
