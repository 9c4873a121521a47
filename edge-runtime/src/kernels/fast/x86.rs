//! x86_64 AVX2 paths: the generic GEMM and f32 depthwise drivers compiled with AVX2 (`Avx2::vectorize`),
//! so that rsim-edge-simd's micro-kernel (`vpmaddwd` on i16 pairs, 4 rows x 16 channels in registers),
//! widening, 8-lane requantization and the f32 micro-kernel (`vfmadd`) inline into them; the depthwise
//! and ADD sweeps are rsim-edge-simd's whole.
//!
//! No `unsafe` here: the [`Avx2`] token (from `Isa::detect`) proves the CPU has AVX2 and FMA, and the
//! token's functions check every length they rely on.

use super::depthwise::DwPlan;
use super::gemm::{gather_whole_generic, GemmPlan, Micro, MR};
use super::gemm_f32::{GemmF32Plan, MicroF32};
use super::ChannelData;
use crate::kernels::int8::KResult;
use rsim_edge_simd::Avx2;

/// The GEMM driver compiled for AVX2, so the micro-kernel, widening and requantization inline into it.
// An `#[inline(always)]` closure, not the function item: the item was called, not inlined, into the
// AVX2 function (compiling the driver without AVX2).
#[allow(clippy::redundant_closure)]
pub fn rows(
    t: Avx2,
    p: &GemmPlan,
    first: usize,
    x: &[u8],
    packed: &[u8],
    ch: &ChannelData<'_>,
    out: &mut [u8],
) -> KResult<()> {
    t.vectorize(
        p,
        first,
        x,
        packed,
        ch,
        out,
        #[inline(always)]
        |t, p, first, x, packed, ch, out| super::gemm::rows_with(t, p, first, x, packed, ch, out),
    )
}

impl Micro for Avx2 {
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
        self.requant16(acc, ch, c0, n, out)
    }

    #[inline(always)]
    fn gather_whole(self, p: &GemmPlan, p0: usize, nr: usize, x: &[u8], a: &mut [i16]) -> KResult<()> {
        // Every tap widened with no per-tap bounds checks once the sizes are checked; anything that
        // does not fit goes the generic way (which reports it).
        if Avx2::gather_whole(self, &p.geom, p.kp as usize, p.in_offset, p0, nr, x, a) {
            return Ok(());
        }
        gather_whole_generic(self, p, p0, nr, x, a)
    }

    #[inline(always)]
    fn widen(self, src: &[u8], off: i16, dst: &mut [i16]) {
        Avx2::widen(self, src, off, dst)
    }

    #[inline(always)]
    fn pad(self, _off: i32) -> i16 {
        0
    }
}

/// Depthwise (multiplier 1): 16 channels x 2 taps per `vpmaddwd` against the packed weight pairs, then
/// 8-channel vectors, then scalar channels (rsim-edge-simd's sweep).
pub fn depthwise(
    t: Avx2,
    p: &DwPlan,
    x: &[u8],
    w: &[u8],
    pairs: &[u8],
    ch: &ChannelData<'_>,
    out: &mut [u8],
) -> KResult<()> {
    t.depthwise(&p.geom(), x, w, pairs, ch, out)
}

/// The f32 GEMM driver compiled for AVX2 + FMA.
// An `#[inline(always)]` closure, not the function item: the item was called, not inlined, into the
// AVX2 function (compiling the driver without AVX2).
#[allow(clippy::redundant_closure)]
pub fn rows_f32(
    t: Avx2,
    p: &GemmF32Plan,
    first: usize,
    x: &[f32],
    packed: &[f32],
    bias: &[f32],
    out: &mut [f32],
) -> KResult<()> {
    t.vectorize_fma(
        p,
        first,
        x,
        packed,
        bias,
        out,
        #[inline(always)]
        |t, p, first, x, packed, bias, out| super::gemm_f32::rows_with(t, p, first, x, packed, bias, out),
    )
}

impl MicroF32 for Avx2 {
    #[inline(always)]
    fn micro(
        self,
        a: &[f32],
        lda: usize,
        kc: usize,
        w: &[f32],
        bstride: usize,
        nb: usize,
        acc: &mut [[f32; 16]; MR],
    ) -> KResult<()> {
        self.gemm_f32_micro(a, lda, kc, w, bstride, nb, acc)
    }
}

/// f32 depthwise (multiplier 1) compiled for AVX2 + FMA (the loop vectorised 8 lanes wide).
pub fn depthwise_f32(
    t: Avx2,
    p: &super::depthwise_f32::DwF32Plan,
    x: &[f32],
    w: &[f32],
    b: &[f32],
    out: &mut [f32],
) -> KResult<()> {
    t.vectorize_fma(
        p,
        0,
        x,
        w,
        b,
        out,
        #[inline(always)]
        |_, p, _, x, w, b, out| super::depthwise_f32::pixels(p, x, w, b, out),
    )
}
