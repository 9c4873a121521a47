//! aarch64 NEON paths of the int8 GEMM: rsim-edge-simd's micro-kernels under the generic driver, with
//! scalar requantization.
//!
//! - [`Neon`]: `smlal` on i16 pairs (`x + offset` widened rows, the pair-packed weights).
//! - [`NeonDot`] (the dot-product extension, detected at run time): `sdot` on raw int8 rows against the
//!   quad-packed weights, the input offset's share folded into the bias at pack time (`gemm`).

use super::gemm::{requant_scalar, widen_scalar, Micro, MR};
use super::ChannelData;
use crate::kernels::int8::KResult;
use rsim_edge_simd::{Neon, NeonDot};

impl Micro for Neon {
    type A = i16;

    #[inline(always)]
    fn micro(
        self,
        a: &[i16],
        lda: usize,
        kc: usize,
        w: &[u8],
        bstride: usize,
        nb: usize,
        first: bool,
        acc: &mut [[i32; 16]; MR],
    ) -> KResult<()> {
        self.gemm_micro(a, lda, kc, w, bstride, nb, first, acc)
    }

    #[inline(always)]
    fn requant(self, acc: &[i32; 16], ch: &ChannelData<'_>, c0: usize, n: usize, out: &mut [u8]) -> KResult<()> {
        requant_scalar(acc, ch, c0, n, out)
    }

    #[inline(always)]
    fn widen(self, src: &[u8], off: i16, dst: &mut [i16]) {
        widen_scalar(src, off, dst)
    }

    #[inline(always)]
    fn pad(self, _off: i32) -> i16 {
        0
    }
}

impl Micro for NeonDot {
    /// The raw int8 input byte.
    type A = u8;

    #[inline(always)]
    fn micro(
        self,
        a: &[u8],
        lda: usize,
        kc: usize,
        w: &[u8],
        bstride: usize,
        nb: usize,
        first: bool,
        acc: &mut [[i32; 16]; MR],
    ) -> KResult<()> {
        self.gemm_micro_dot(a, lda, kc, w, bstride, nb, first, acc)
    }

    #[inline(always)]
    fn requant(self, acc: &[i32; 16], ch: &ChannelData<'_>, c0: usize, n: usize, out: &mut [u8]) -> KResult<()> {
        requant_scalar(acc, ch, c0, n, out)
    }

    /// A copy: the offset is in the bias.
    #[inline(always)]
    fn widen(self, src: &[u8], _off: i16, dst: &mut [u8]) {
        for (d, &v) in dst.iter_mut().zip(src) {
            *d = v;
        }
    }

    /// The input zero point (`-offset`, in -128..=127 for a planned op), whose `x + offset` is 0.
    #[inline(always)]
    fn pad(self, off: i32) -> u8 {
        off.wrapping_neg() as u8
    }
}
