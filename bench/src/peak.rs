//! This CPU's single-core peak, measured: int8 multiply-accumulates per second and f32 FLOP/s.
//!
//! Each kernel runs 12 independent dependency chains (enough to cover the latency of the
//! instruction on current cores) with no memory traffic; every instruction's operand is the
//! previous result of its chain, so nothing can be hoisted out of the loop.
//! - int8, AVX2: `acc = acc + vpmaddwd(acc, w)` (`_mm256_madd_epi16`: 16 i16 x i16 products summed
//!   in pairs, 16 MACs), the instruction pair an exact int8 kernel issues per 16 MACs. The rate of
//!   `vpmaddwd` alone is measured too and reported beside it, not used for % of peak.
//! - int8, AVX-512 VNNI: `acc = vpdpbusd(acc, acc, w)` (`_mm512_dpbusd_epi32`: 64 u8 x i8 MACs).
//! - f32: `acc = fma(acc, m, c)` (`_mm256_fmadd_ps`, 8 lanes x 2 FLOP = 16; `_mm512_fmadd_ps`, 32,
//!   when AVX-512F is there). Other architectures: a portable loop the compiler vectorizes.
//!
//! The best of several timed repetitions is the peak.

use std::hint::black_box;
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct Peak {
    /// int8 multiply-accumulates per second.
    pub int8_macs: f64,
    pub int8_kernel: String,
    /// f32 floating-point operations per second (an FMA counts 2).
    pub f32_flops: f64,
    pub f32_kernel: String,
    /// x86_64 with AVX2: `vpmaddwd` alone (`acc = vpmaddwd(acc, w)`, no add), for reference: the
    /// instruction's own rate, which an accumulating kernel cannot reach when the adds share its ports.
    pub int8_madd_only_macs: Option<f64>,
}

/// x86 features the report lists (all false on other architectures).
pub fn cpu_features() -> Vec<(&'static str, bool)> {
    #[cfg(target_arch = "x86_64")]
    {
        vec![
            ("avx2", is_x86_feature_detected!("avx2")),
            ("fma", is_x86_feature_detected!("fma")),
            ("avx512f", is_x86_feature_detected!("avx512f")),
            ("avx512vnni", is_x86_feature_detected!("avx512vnni")),
            ("avxvnni", is_x86_feature_detected!("avxvnni")),
        ]
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        ["avx2", "fma", "avx512f", "avx512vnni", "avxvnni"].iter().map(|&f| (f, false)).collect()
    }
}

/// Operations per second of `kernel(iters)` (which performs `ops_per_iter` per iteration): the
/// iteration count is doubled until one call takes >= 20 ms, then the best of `reps` calls counts.
fn rate(ops_per_iter: f64, reps: usize, kernel: impl Fn(u64) -> u64) -> f64 {
    let mut iters = 1u64 << 12;
    loop {
        let t = Instant::now();
        black_box(kernel(black_box(iters)));
        if t.elapsed() >= Duration::from_millis(20) || iters >= 1 << 40 {
            break;
        }
        iters *= 2;
    }
    let mut best = f64::INFINITY;
    for _ in 0..reps {
        let t = Instant::now();
        black_box(kernel(black_box(iters)));
        best = best.min(t.elapsed().as_secs_f64());
    }
    iters as f64 * ops_per_iter / best
}

const CHAINS: usize = 12;

/// Measures both peaks (about a second in all).
pub fn measure() -> Peak {
    let mut int8 = ("portable i32 loop".to_string(), rate(64.0, 5, portable_int8));
    let mut f32 = ("portable f32 loop".to_string(), rate(128.0, 5, portable_f32));
    #[allow(unused_mut)]
    let mut madd_only = None;
    #[cfg(target_arch = "x86_64")]
    {
        let consider = |slot: &mut (String, f64), name: &str, r: f64| {
            if r > slot.1 {
                *slot = (name.to_string(), r);
            }
        };
        if is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 is present (checked just above).
            let r = rate((CHAINS * 16) as f64, 7, |n| unsafe { x86::madd_epi16(n) });
            consider(&mut int8, "avx2 vpmaddwd+vpaddd (16 MACs/instr)", r);
            // SAFETY: as above.
            madd_only = Some(rate((CHAINS * 16) as f64, 7, |n| unsafe { x86::madd_only(n) }));
        }
        if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512vnni") {
            // SAFETY: AVX-512F and AVX-512 VNNI are present.
            let r = rate((CHAINS * 64) as f64, 7, |n| unsafe { x86::dpbusd_512(n) });
            consider(&mut int8, "avx512vnni vpdpbusd (64 MACs/instr)", r);
        }
        if is_x86_feature_detected!("avx") && is_x86_feature_detected!("fma") {
            // SAFETY: AVX and FMA are present.
            let r = rate((CHAINS * 16) as f64, 7, |n| unsafe { x86::fmadd_256(n) });
            consider(&mut f32, "fma vfmadd ymm (16 FLOP/instr)", r);
        }
        if is_x86_feature_detected!("avx512f") {
            // SAFETY: AVX-512F is present.
            let r = rate((CHAINS * 32) as f64, 7, |n| unsafe { x86::fmadd_512(n) });
            consider(&mut f32, "avx512f vfmadd zmm (32 FLOP/instr)", r);
        }
    }
    Peak { int8_macs: int8.1, int8_kernel: int8.0, f32_flops: f32.1, f32_kernel: f32.0, int8_madd_only_macs: madd_only }
}

/// 64 i32 multiply-accumulate lanes per iteration, each a dependency chain.
fn portable_int8(iters: u64) -> u64 {
    let w = black_box(3i32);
    let mut acc = black_box([1i32; 64]);
    for _ in 0..iters {
        for a in acc.iter_mut() {
            *a = a.wrapping_add((*a as i16 as i32).wrapping_mul(w));
        }
    }
    acc.iter().map(|&a| a as u64).sum()
}

/// 64 f32 lanes of `acc = acc * m + c` per iteration (2 FLOP each).
fn portable_f32(iters: u64) -> u64 {
    let (m, c) = (black_box(0.5f32), black_box(0.25f32));
    let mut acc = black_box([1f32; 64]);
    for _ in 0..iters {
        for a in acc.iter_mut() {
            *a = a.mul_add(m, c);
        }
    }
    acc.iter().map(|&a| a as u64).sum()
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::CHAINS;
    use std::arch::x86_64::*;
    use std::hint::black_box;

    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    pub unsafe fn madd_epi16(iters: u64) -> u64 {
        let w = _mm256_set1_epi16(black_box(3));
        let mut acc = [_mm256_set1_epi32(black_box(1)); CHAINS];
        for _ in 0..iters {
            for a in acc.iter_mut() {
                *a = _mm256_add_epi32(*a, _mm256_madd_epi16(*a, w));
            }
        }
        let s = acc.iter().fold(_mm256_setzero_si256(), |s, &a| _mm256_add_epi32(s, a));
        _mm256_extract_epi32::<0>(s) as u32 as u64
    }

    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    pub unsafe fn madd_only(iters: u64) -> u64 {
        let w = _mm256_set1_epi16(black_box(3));
        let mut acc = [_mm256_set1_epi32(black_box(1)); CHAINS];
        for _ in 0..iters {
            for a in acc.iter_mut() {
                *a = _mm256_madd_epi16(*a, w);
            }
        }
        let s = acc.iter().fold(_mm256_setzero_si256(), |s, &a| _mm256_add_epi32(s, a));
        _mm256_extract_epi32::<0>(s) as u32 as u64
    }

    /// # Safety
    /// The CPU must support AVX-512F and AVX-512 VNNI.
    #[target_feature(enable = "avx512f,avx512vnni")]
    pub unsafe fn dpbusd_512(iters: u64) -> u64 {
        let w = _mm512_set1_epi8(black_box(3));
        let mut acc = [_mm512_set1_epi32(black_box(1)); CHAINS];
        for _ in 0..iters {
            for a in acc.iter_mut() {
                *a = _mm512_dpbusd_epi32(*a, *a, w);
            }
        }
        let s = acc.iter().fold(_mm512_setzero_si512(), |s, &a| _mm512_add_epi32(s, a));
        _mm512_reduce_add_epi32(s) as u32 as u64
    }

    /// # Safety
    /// The CPU must support AVX and FMA.
    #[target_feature(enable = "avx,fma")]
    pub unsafe fn fmadd_256(iters: u64) -> u64 {
        let m = _mm256_set1_ps(black_box(0.5));
        let c = _mm256_set1_ps(black_box(0.25));
        let mut acc = [_mm256_set1_ps(black_box(1.0)); CHAINS];
        for _ in 0..iters {
            for a in acc.iter_mut() {
                *a = _mm256_fmadd_ps(*a, m, c);
            }
        }
        let s = acc.iter().fold(_mm256_setzero_ps(), |s, &a| _mm256_add_ps(s, a));
        _mm256_cvtss_f32(s) as u64
    }

    /// # Safety
    /// The CPU must support AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn fmadd_512(iters: u64) -> u64 {
        let m = _mm512_set1_ps(black_box(0.5));
        let c = _mm512_set1_ps(black_box(0.25));
        let mut acc = [_mm512_set1_ps(black_box(1.0)); CHAINS];
        for _ in 0..iters {
            for a in acc.iter_mut() {
                *a = _mm512_fmadd_ps(*a, m, c);
            }
        }
        _mm512_reduce_add_ps(acc.iter().fold(_mm512_setzero_ps(), |s, &a| _mm512_add_ps(s, a))) as u64
    }
}
