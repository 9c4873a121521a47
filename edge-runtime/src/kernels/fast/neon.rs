//! aarch64 NEON path of the int8 GEMM: rsim-edge-simd's NEON micro-kernel (`smlal` on i16 pairs,
//! behind the [`Neon`] token) under the generic driver; requantization stays scalar.

use super::gemm::{requant_scalar, Micro, MR};
use super::ChannelData;
use crate::kernels::int8::KResult;
use rsim_edge_simd::Neon;

impl Micro for Neon {
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
}
