//! Plain data the kernels take: convolution geometries, the ADD parameters, and the im2col pixel walk.
//! rsim-edge's planners fill them (and re-export [`GemmGeom`] and [`AddPlan`] where its plans name
//! them); any values are safe to pass, the kernels check them against the buffers they get.

/// Convolution geometry in the fast kernels' terms (u32 so the record is the same on every target).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GemmGeom {
    pub batch: u32,
    pub in_h: u32,
    pub in_w: u32,
    pub in_c: u32,
    pub out_h: u32,
    pub out_w: u32,
    pub out_c: u32,
    pub k_h: u32,
    pub k_w: u32,
    pub stride: [u32; 2],
    pub dilation: [u32; 2],
    pub pad: [u32; 2],
}

impl GemmGeom {
    /// Output pixels `batch * out_h * out_w` (saturating: an overflowing geometry fits no buffer).
    #[inline]
    pub fn pixels(&self) -> usize {
        (self.batch as usize).saturating_mul(self.out_h as usize).saturating_mul(self.out_w as usize)
    }

    /// Input elements `batch * in_h * in_w * in_c` (saturating).
    #[inline]
    pub fn input_len(&self) -> usize {
        (self.batch as usize)
            .saturating_mul(self.in_h as usize)
            .saturating_mul(self.in_w as usize)
            .saturating_mul(self.in_c as usize)
    }

    /// Reduction length `k_h * k_w * in_c` (saturating).
    #[inline]
    pub fn k(&self) -> usize {
        (self.k_h as usize).saturating_mul(self.k_w as usize).saturating_mul(self.in_c as usize)
    }
}

/// Most taps a depthwise kernel takes (the AVX2 sweep keeps one pixel's tap offsets on the stack).
pub const MAX_TAPS: usize = 64;

/// Geometry of a depthwise convolution with multiplier 1, channels innermost, and its input offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DwGeom {
    pub batch: u32,
    pub in_h: u32,
    pub in_w: u32,
    pub channels: u32,
    pub out_h: u32,
    pub out_w: u32,
    pub k_h: u32,
    pub k_w: u32,
    pub stride: [u32; 2],
    pub dilation: [u32; 2],
    pub pad: [u32; 2],
    pub in_offset: i32,
}

impl DwGeom {
    /// Input index of tap (`ky`, `kx`) for output (`b`, `oy`, `ox`), channel 0, if inside the image.
    /// For `b < batch` the run of `channels` elements from it lies inside an input of
    /// `batch * in_h * in_w * channels` elements (when that product does not overflow).
    #[inline]
    pub fn tap(&self, b: usize, oy: usize, ox: usize, ky: usize, kx: usize) -> Option<usize> {
        let iy = (oy.wrapping_mul(self.stride[0] as usize))
            .wrapping_add(ky.wrapping_mul(self.dilation[0] as usize))
            .checked_sub(self.pad[0] as usize)?;
        let ix = (ox.wrapping_mul(self.stride[1] as usize))
            .wrapping_add(kx.wrapping_mul(self.dilation[1] as usize))
            .checked_sub(self.pad[1] as usize)?;
        if iy >= self.in_h as usize || ix >= self.in_w as usize {
            return None;
        }
        Some(
            (b.wrapping_mul(self.in_h as usize).wrapping_add(iy))
                .wrapping_mul(self.in_w as usize)
                .wrapping_add(ix)
                .wrapping_mul(self.channels as usize),
        )
    }

    /// `(input, weights, output)` element counts, `None` when one overflows.
    pub fn lens(&self) -> Option<(usize, usize, usize)> {
        let (n, c) = (self.batch as usize, self.channels as usize);
        let input = n.checked_mul(self.in_h as usize)?.checked_mul(self.in_w as usize)?.checked_mul(c)?;
        let weights = (self.k_h as usize).checked_mul(self.k_w as usize)?.checked_mul(c)?;
        let output = n.checked_mul(self.out_h as usize)?.checked_mul(self.out_w as usize)?.checked_mul(c)?;
        Some((input, weights, output))
    }
}

/// Parameters of an int8 ADD of same-shape tensors (TFLM's `AddElementwise`), shifts pre-split as the
/// reference applies them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddPlan {
    pub len: u32,
    pub zp: [i32; 3],
    pub left: i32,
    /// (multiplier, right shift) for input a, input b and the output.
    pub a: (i32, i32),
    pub b: (i32, i32),
    pub out: (i32, i32),
    pub act_min: i32,
    pub act_max: i32,
}

/// `(batch, oy, ox)` of the pixel `r` rows after the one at `first` (`oh * ow` pixels per image),
/// stepping instead of dividing (`r` is below the micro-kernel's row count).
#[inline(always)]
pub fn pixel_at(first: (usize, usize, usize), r: usize, oh: usize, ow: usize) -> (usize, usize, usize) {
    let (mut b, mut oy, mut ox) = first;
    let (oh, ow) = (oh.max(1), ow.max(1));
    ox = ox.wrapping_add(r);
    while ox >= ow {
        ox -= ow;
        oy = oy.wrapping_add(1);
        if oy >= oh {
            oy = 0;
            b = b.wrapping_add(1);
        }
    }
    (b, oy, ox)
}
