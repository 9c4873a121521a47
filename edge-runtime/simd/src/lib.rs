//! `rsim-edge-simd`: every line of `unsafe` code the `rsim-edge` runtime needs, behind safe functions,
//! so that `rsim-edge` itself is `#![forbid(unsafe_code)]`.
//!
//! - [`Avx2`] (x86_64): the int8 GEMM micro-kernel, im2col widening, 8-lane requantization,
//!   depthwise and ADD sweeps, the f32 GEMM micro-kernel, and `Avx2::vectorize`, which runs a
//!   caller's (safe) driver loop compiled with AVX2 so these inline into it.
//! - [`Neon`] (aarch64): the int8 GEMM micro-kernel (`smlal` on i16 pairs).
//! - [`NeonDot`] (aarch64 with the dot-product extension, FEAT_DotProd): the int8 GEMM micro-kernel on
//!   raw int8 bytes with `sdot` (4 products per lane per instruction), detected at run time in std builds.
//! - `cortex_m` (Armv7E-M, cfg `rsim_arm_dsp`): the `SXTAB16` im2col widening and the `SMLAD`
//!   2 x 2 micro-kernel of the DSP convolution.
//! - [`records`]: writing `Copy` records into an aligned byte buffer and viewing them as a slice.
//! - The plain data those take ([`GemmGeom`], [`DwGeom`], [`AddPlan`], [`ChannelData`]) and the
//!   scalar arithmetic their tails share with the reference kernels ([`fixedpoint`], [`requant`]).
//!
//! Soundness contract: every public function is sound for any argument. Lengths, strides and
//! geometries are checked on entry (with overflow-checked arithmetic) before any unchecked access,
//! and a call that does not fit returns an error (or `false`, or does only its checked part) instead
//! of reading or writing out of bounds; none panics on caller input. Instruction-set code is reached
//! only through a token ([`Avx2`], [`Neon`]) that exists only when the CPU has that instruction set:
//! its `detect` is the only constructor. Every `unsafe` block carries a `// SAFETY:` comment naming
//! the checks it relies on.
#![no_std]
// A model's bytes or an input must never stop a board: failures are typed errors, not panics (tests may unwrap).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

// Runtime feature detection (std builds) and the unit tests.
#[cfg(any(feature = "std", test))]
extern crate std;

#[cfg(rsim_arm_dsp)]
pub mod cortex_m;
pub mod fixedpoint;
mod geom;
#[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
mod neon;
pub mod records;
pub mod requant;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use geom::{pixel_at, AddPlan, DwGeom, GemmGeom, MAX_TAPS};
pub use requant::ChannelData;

/// Result of the kernels: a static reason on failure (the same type as rsim-edge's `KResult`).
pub type KResult<T> = Result<T, &'static str>;

/// Output pixels (rows of the im2col block) per GEMM micro-kernel call.
pub const MR: usize = 4;

/// Proof that this CPU runs AVX2 and FMA: [`Avx2::detect`] is the only way to get one, so every
/// method taking it may run AVX2 instructions. On other architectures it is never constructed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Avx2 {
    _private: (),
}

impl Avx2 {
    /// `Some` when this CPU has AVX2 and FMA: detected at run time in std builds, else when the target
    /// enables both at compile time (`-C target-feature=+avx2,+fma`); `None` on other architectures.
    pub fn detect() -> Option<Avx2> {
        #[cfg(all(target_arch = "x86_64", any(feature = "std", test)))]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            return Some(Avx2 { _private: () });
        }
        #[cfg(all(
            target_arch = "x86_64",
            not(any(feature = "std", test)),
            target_feature = "avx2",
            target_feature = "fma"
        ))]
        return Some(Avx2 { _private: () });
        #[allow(unreachable_code)]
        None
    }
}

/// Proof that this CPU runs NEON (part of every aarch64 target rsim builds for: a compile-time fact).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Neon {
    _private: (),
}

impl Neon {
    /// `Some` on aarch64 targets with NEON enabled (all aarch64 application-processor targets).
    pub fn detect() -> Option<Neon> {
        #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
        return Some(Neon { _private: () });
        #[allow(unreachable_code)]
        None
    }
}

/// Proof that this CPU runs NEON with the Armv8.2 dot-product instructions (`sdot`, FEAT_DotProd):
/// [`NeonDot::detect`] is the only way to get one. On other architectures it is never constructed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NeonDot {
    _private: (),
}

impl NeonDot {
    /// `Some` on aarch64 when the CPU has the dot-product instructions: detected at run time in std
    /// builds (`is_aarch64_feature_detected!("dotprod")`, the kernel's HWCAP on Linux), else when the
    /// target enables them at compile time (`-C target-feature=+dotprod`); `None` elsewhere.
    pub fn detect() -> Option<NeonDot> {
        #[cfg(all(target_arch = "aarch64", target_feature = "neon", any(feature = "std", test)))]
        if std::arch::is_aarch64_feature_detected!("dotprod") {
            return Some(NeonDot { _private: () });
        }
        #[cfg(all(
            target_arch = "aarch64",
            target_feature = "neon",
            not(any(feature = "std", test)),
            target_feature = "dotprod"
        ))]
        return Some(NeonDot { _private: () });
        #[allow(unreachable_code)]
        None
    }
}

/// The shape check of the SIMD GEMM micro-kernels, done before their unchecked loads: even `kc`, one
/// or two 8-channel blocks, `lda >= kc`, `a` holding [`MR`] rows of `kc` at stride `lda`, and `w`
/// holding `nb` blocks of `kc * 8` bytes at stride `bstride` (overflowing sizes fail too).
#[inline(always)]
pub fn check_micro(a: &[i16], lda: usize, kc: usize, w: &[u8], bstride: usize, nb: usize) -> KResult<()> {
    if !kc.is_multiple_of(2) || !(1..=2).contains(&nb) || lda < kc {
        return Err("gemm micro-kernel called with a bad shape");
    }
    check_operands(a.len(), lda, kc, w.len(), bstride, nb, 8)
}

/// The shape check of the dot-product GEMM micro-kernel ([`NeonDot`]), as [`check_micro`] with rows of
/// raw int8 bytes: even `kc`, one or two 8-channel blocks, `lda >= kc`, `a` holding [`MR`] rows of `kc`
/// bytes at stride `lda`, and `w` holding `nb` blocks of `kc * 8` bytes at stride `bstride`.
#[inline(always)]
pub fn check_micro_dot(a: &[u8], lda: usize, kc: usize, w: &[u8], bstride: usize, nb: usize) -> KResult<()> {
    if !kc.is_multiple_of(2) || !(1..=2).contains(&nb) || lda < kc {
        return Err("gemm micro-kernel called with a bad shape");
    }
    check_operands(a.len(), lda, kc, w.len(), bstride, nb, 8)
}

/// `a_len >= (MR - 1) * lda + kc` and `w_len >= (nb - 1) * bstride + kc * per_k`, without overflow.
#[inline(always)]
fn check_operands(
    a_len: usize,
    lda: usize,
    kc: usize,
    w_len: usize,
    bstride: usize,
    nb: usize,
    per_k: usize,
) -> KResult<()> {
    const E: &str = "gemm operands shorter than planned";
    let a_need = lda.checked_mul(MR - 1).and_then(|v| v.checked_add(kc)).ok_or(E)?;
    let w_need =
        bstride.checked_mul(nb.saturating_sub(1)).and_then(|v| v.checked_add(kc.checked_mul(per_k)?)).ok_or(E)?;
    if a_len < a_need || w_len < w_need {
        return Err(E);
    }
    Ok(())
}
