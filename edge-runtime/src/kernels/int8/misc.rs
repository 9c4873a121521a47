//! Data-movement and table int8 ops: Reshape, Concat (TFLite `ConcatenationWithScaling`), Lut,
//! Quantize (`AffineQuantize`), Dequantize, Transpose.

use super::KResult;
use rsim_model::quant::{dequantize_i8, quantize_i8, round_half_away_f32};

const E: &str = "tensor bytes shorter than its shape";

/// Reshape: the bytes are unchanged.
pub fn copy(input: &[u8], out: &mut [u8]) -> KResult<()> {
    out.copy_from_slice(input.get(..out.len()).ok_or(E)?);
    Ok(())
}

/// One Concat input: its bytes, its size along the axis, its quantization.
pub struct ConcatPart<'a> {
    pub data: &'a [u8],
    pub axis_len: usize,
    pub scale: f32,
    pub zp: i32,
}

/// Concatenation along an axis with `outer` rows before it and `inner` elements after it. Inputs
/// with the output's quantization are copied; others are requantized in f32 as TFLite does.
pub fn concat(
    parts: &[ConcatPart<'_>],
    outer: usize,
    inner: usize,
    out_scale: f32,
    out_zp: i32,
    out: &mut [u8],
) -> KResult<()> {
    let total: usize = parts.iter().map(|p| p.axis_len).sum();
    let inverse_out_scale = 1.0f32 / out_scale;
    let mut o = 0;
    for r in 0..outer {
        for p in parts {
            let n = p.axis_len * inner;
            let src = p.data.get(r * n..(r + 1) * n).ok_or(E)?;
            let dst = out.get_mut(o..o + n).ok_or(E)?;
            if p.scale == out_scale && p.zp == out_zp {
                dst.copy_from_slice(src);
            } else {
                let scale = p.scale * inverse_out_scale;
                let bias = -(p.zp as f32) * scale;
                for (d, &s) in dst.iter_mut().zip(src) {
                    let v = (round_half_away_f32(s as i8 as f32 * scale + bias) as i32).saturating_add(out_zp);
                    *d = v.clamp(-128, 127) as i8 as u8;
                }
            }
            o += n;
        }
    }
    if o != outer * total * inner {
        return Err(E);
    }
    Ok(())
}

/// 256-entry table: output for input `q` is `table[q + 128]`.
pub fn lut(input: &[u8], table: &[u8], out: &mut [u8]) -> KResult<()> {
    let src = input.get(..out.len()).ok_or(E)?;
    for (o, &x) in out.iter_mut().zip(src) {
        *o = *table.get((x as i8 as i32 + 128) as usize).ok_or("lookup table shorter than 256 bytes")?;
    }
    Ok(())
}

/// f32 (little-endian bytes) -> int8.
pub fn quantize(input: &[u8], scale: f32, zp: i32, out: &mut [u8]) -> KResult<()> {
    let src = input.get(..out.len() * 4).ok_or(E)?;
    for (o, c) in out.iter_mut().zip(src.chunks_exact(4)) {
        let x = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        *o = quantize_i8(x, scale, zp) as u8;
    }
    Ok(())
}

/// int8 -> f32 (little-endian bytes).
pub fn dequantize(input: &[u8], scale: f32, zp: i32, out: &mut [u8]) -> KResult<()> {
    let src = input.get(..out.len() / 4).ok_or(E)?;
    for (o, &q) in out.chunks_exact_mut(4).zip(src) {
        o.copy_from_slice(&dequantize_i8(q as i8, scale, zp).to_le_bytes());
    }
    Ok(())
}

/// Axis permutation of a rank-`rank` tensor of `elem`-byte elements: output dim `i` is input dim `perm[i]`.
pub fn transpose(
    in_dims: &[usize; 4],
    rank: usize,
    perm: &[u8; 4],
    elem: usize,
    input: &[u8],
    out: &mut [u8],
) -> KResult<()> {
    if rank == 0 || rank > 4 {
        return Err("transpose rank must be 1..=4");
    }
    // Pad to rank 4 with leading unit dims so one loop nest serves every rank.
    let lead = 4 - rank;
    let mut dims = [1usize; 4];
    let mut p = [0usize, 1, 2, 3];
    for i in 0..rank {
        dims[lead + i] = in_dims[i];
        let axis = *perm.get(i).ok_or(E)? as usize;
        if axis >= rank {
            return Err("transpose permutation names an axis beyond the rank");
        }
        p[lead + i] = lead + axis;
    }
    let mut strides = [0usize; 4];
    let mut s = elem;
    for i in (0..4).rev() {
        strides[i] = s;
        s = s.checked_mul(dims[i]).ok_or(E)?;
    }
    let od = [dims[p[0]], dims[p[1]], dims[p[2]], dims[p[3]]];
    let mut o = 0;
    for a in 0..od[0] {
        for b in 0..od[1] {
            for c in 0..od[2] {
                for d in 0..od[3] {
                    let at = a * strides[p[0]] + b * strides[p[1]] + c * strides[p[2]] + d * strides[p[3]];
                    let src = input.get(at..at + elem).ok_or(E)?;
                    out.get_mut(o..o + elem).ok_or(E)?.copy_from_slice(src);
                    o += elem;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_nhwc_to_nchw() {
        // [1, 2, 3, 2] -> perm [0, 3, 1, 2] -> [1, 2, 2, 3]
        let x: Vec<u8> = (0..12).collect();
        let mut out = [0u8; 12];
        transpose(&[1, 2, 3, 2], 4, &[0, 3, 1, 2], 1, &x, &mut out).unwrap();
        assert_eq!(out, [0, 2, 4, 6, 8, 10, 1, 3, 5, 7, 9, 11]);
        // rank 2 matrix transpose
        let mut out = [0u8; 6];
        transpose(&[2, 3, 1, 1], 2, &[1, 0, 2, 3], 1, &x[..6], &mut out).unwrap();
        assert_eq!(out, [0, 3, 1, 4, 2, 5]);
        assert!(transpose(&[2, 3, 1, 1], 2, &[3, 0, 2, 3], 1, &x[..6], &mut out).is_err());
    }

    #[test]
    fn concat_copies_or_requantizes() {
        let a = [1u8, 2, 3, 4]; // [2 rows, 2]
        let b = [10u8, 20]; // [2 rows, 1], scale 0.5 -> output scale 1.0: 5, 10
        let parts = [
            ConcatPart { data: &a, axis_len: 2, scale: 1.0, zp: 0 },
            ConcatPart { data: &b, axis_len: 1, scale: 0.5, zp: 0 },
        ];
        let mut out = [0u8; 6];
        concat(&parts, 2, 1, 1.0, 0, &mut out).unwrap();
        assert_eq!(out, [1, 2, 5, 3, 4, 10]);
    }

    #[test]
    fn lut_quantize_dequantize() {
        let table: Vec<u8> = (0..256).map(|i| (255 - i) as u8).collect();
        let mut out = [0u8; 2];
        lut(&[(-128i8) as u8, 127], &table, &mut out).unwrap();
        assert_eq!(out, [255, 0]);
        let f: Vec<u8> = [0.26f32, -0.25, 1e9].iter().flat_map(|v| v.to_le_bytes()).collect();
        let mut q = [0u8; 3];
        quantize(&f, 0.5, 1, &mut q).unwrap();
        assert_eq!(q.map(|v| v as i8), [2, 0, 127]);
        let mut d = [0u8; 12];
        dequantize(&q, 0.5, 1, &mut d).unwrap();
        assert_eq!(f32::from_le_bytes([d[0], d[1], d[2], d[3]]), 0.5);
    }
}
