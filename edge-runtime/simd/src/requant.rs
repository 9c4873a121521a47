//! TFLM's requantization (`MultiplyByQuantizedMultiplier`, double rounding) split into the two shifts
//! that prepared per-channel arrays store, so vector code does no branching per lane; the per-channel
//! arrays' read view ([`ChannelData`]) and the scalar form the vector kernels fall back to.

use crate::fixedpoint::{rounding_divide_by_pot, srdhm};
use crate::KResult;

/// `(left, right)` shifts of a TFLM multiplier exponent, as `multiply_by_quantized_multiplier` uses them.
#[inline]
pub fn split_shift(shift: i32) -> (i32, i32) {
    let left = shift.clamp(0, 31);
    let right = if shift > 0 { 0 } else { -shift.max(-31) };
    (left, right)
}

/// `multiply_by_quantized_multiplier(acc, m, shift)` with the shift pre-split; then zero point and clamp.
#[inline]
pub fn requant_one(acc: i32, m: i32, left: i32, right: i32, out_zp: i32, act_min: i32, act_max: i32) -> i8 {
    let x = acc.wrapping_mul(1i32.wrapping_shl(left as u32));
    let v = rounding_divide_by_pot(srdhm(x, m), right).wrapping_add(out_zp);
    v.clamp(act_min, act_max) as i8
}

/// Read view of a prepared op's per-channel requantization data: four little-endian i32 arrays
/// (bias, multiplier, left shift, right shift; rsim-edge pads them to a multiple of 8 channels so
/// vector code reads whole lanes) and the output stage. Any lengths are accepted: a channel the
/// arrays do not hold is an error (scalar) or goes the scalar way (vector). Vector and scalar forms
/// give the same bytes for shifts in 0..=31 (what [`split_shift`] gives); other shifts give
/// unspecified bytes (never unsoundness).
#[derive(Clone, Copy, Debug)]
pub struct ChannelData<'a> {
    pub bias: &'a [u8],
    pub mult: &'a [u8],
    pub left: &'a [u8],
    pub right: &'a [u8],
    pub out_zp: i32,
    pub act_min: i32,
    pub act_max: i32,
    /// Every multiplier is >= 0 (all a converter writes): requantization may take the shorter exact
    /// form for non-negative multipliers. A wrong `true` gives wrong bytes, never unsoundness.
    pub nonneg: bool,
}

impl ChannelData<'_> {
    /// Whether all four arrays hold the 8 channels `c .. c + 8`.
    #[inline(always)]
    pub fn has8(&self, c: usize) -> bool {
        let end = c.saturating_add(8).saturating_mul(4);
        self.bias.len() >= end && self.mult.len() >= end && self.left.len() >= end && self.right.len() >= end
    }

    /// Channels all four arrays hold.
    #[inline]
    pub fn len(&self) -> usize {
        self.bias.len().min(self.mult.len()).min(self.left.len()).min(self.right.len()) / 4
    }

    /// Whether the arrays hold no channel.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Element `i` of a little-endian i32 array.
#[inline(always)]
fn get_i32(bytes: &[u8], i: usize) -> KResult<i32> {
    const E: &str = "int32 array shorter than the channel count";
    let at = i.checked_mul(4).ok_or(E)?;
    let b = bytes.get(at..).and_then(|b| b.first_chunk::<4>()).ok_or(E)?;
    Ok(i32::from_le_bytes(*b))
}

/// Scalar requantization of `n` lanes (at most `acc.len()` and `out.len()`) of `acc` for channels
/// `c0 ..` from the channel arrays, into `out`.
pub fn requant_scalar(acc: &[i32], ch: &ChannelData<'_>, c0: usize, n: usize, out: &mut [u8]) -> KResult<()> {
    for (i, (o, &a)) in out.iter_mut().zip(acc).take(n).enumerate() {
        let c = c0.checked_add(i).ok_or("channel index overflows")?;
        let v = a.wrapping_add(get_i32(ch.bias, c)?);
        *o = requant_one(
            v,
            get_i32(ch.mult, c)?,
            get_i32(ch.left, c)?,
            get_i32(ch.right, c)?,
            ch.out_zp,
            ch.act_min,
            ch.act_max,
        ) as u8;
    }
    Ok(())
}
