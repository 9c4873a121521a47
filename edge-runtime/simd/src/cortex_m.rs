//! Cortex-M4/M7 (Armv7E-M DSP extension) pieces of rsim-edge's int8 DSP convolution
//! (`kernels::fast::cortex_m`, which documents the algorithm): the `SXTAB16` widening of 4 input bytes
//! into the im2col block's i16 pairs, and the `SMLAD` 2 pixels x 2 channels micro-kernel over it.
//!
//! The im2col block holds 2 pixels x [`KC`] reduction elements as `[u32; KC]` words of 2 i16 (low half
//! first): for every 4 elements `k0..k3`, pixel 0 then pixel 1, each as the pairs `(k0, k2), (k1, k3)`
//! ([`slot`]). Safety: every `unsafe` block here is either register-only assembly, or memory accesses
//! inside the block and slices whose bounds the safe entry checked.

use crate::KResult;

/// Reduction elements per pixel in the im2col block (a multiple of 4): a `2 * KC` i16 block, 1.25 KiB.
pub const KC: usize = 320;

/// `SXTAB16`: `(off.lo + sext(w[7:0]), off.hi + sext(w[23:16]))`, and the same of `w` rotated by 8
/// (bytes 1 and 3): 4 int8 inputs to the i16 pairs `(x0 + o, x2 + o), (x1 + o, x3 + o)`.
#[inline(always)]
pub fn widen4(w: u32, off2: u32) -> (u32, u32) {
    let (lo, hi): (u32, u32);
    // SAFETY: register-only DSP instructions (Armv7E-M, which this module is compiled for), no memory
    // access, no flags.
    unsafe {
        core::arch::asm!(
            "sxtab16 {lo}, {off}, {w}",
            "sxtab16 {hi}, {off}, {w}, ror #8",
            lo = out(reg) lo,
            hi = out(reg) hi,
            off = in(reg) off2,
            w = in(reg) w,
            options(pure, nomem, nostack, preserves_flags),
        );
    }
    (lo, hi)
}

/// Index (in i16 halves) in the block of reduction element `kk` (relative to the chunk) of pixel `r`.
#[inline(always)]
pub fn slot(kk: usize, r: usize) -> usize {
    const PERM: [usize; 4] = [0, 2, 1, 3];
    ((kk >> 2).wrapping_mul(2).wrapping_add(r)).wrapping_mul(4).wrapping_add(PERM[kk & 3])
}

/// The i16 at half-index `i` of the block.
#[inline(always)]
pub fn get16(a: &[u32; KC], i: usize) -> KResult<i16> {
    let w = *a.get(i >> 1).ok_or("im2col block short")?;
    Ok((w >> ((i & 1) * 16)) as i16)
}

/// Whole groups of 4: writes `src` (`len` bytes, a multiple of 4; zeros when `None`) widened with the
/// offset pair `off2` to reduction elements `d .. d + len` (`d` a multiple of 4) of pixel `r` (0 or
/// 1). Errors (writing nothing) when the groups do not fit the block or `src` is short.
#[inline(always)]
pub fn put_quads(a: &mut [u32; KC], r: usize, d: usize, len: usize, src: Option<&[u8]>, off2: u32) -> KResult<()> {
    const E: &str = "im2col block short";
    let n = len / 4;
    // Group g of pixel r is words `d + 4g + 2r` and `+ 1` (`d` counts elements, 4 per group = 4 words).
    let at = r.checked_mul(2).and_then(|v| v.checked_add(d)).ok_or(E)?;
    if n > 0 && (n - 1).checked_mul(4).and_then(|v| v.checked_add(at)).and_then(|v| v.checked_add(1)).ok_or(E)? >= KC {
        return Err(E);
    }
    let dst = a.as_mut_ptr();
    match src {
        Some(src) => {
            if src.len() / 4 < n {
                return Err("conv input shorter than its shape");
            }
            if n > 0 {
                // SAFETY: reads `4n <= src.len()` bytes (word loads, possibly unaligned: Armv7-M LDR
                // allows it); writes words `at + 4q`, `+ 1` for q < n, all < KC (checked above), with
                // STRD, which needs word alignment only (the block is `[u32; KC]`). Registers only
                // otherwise.
                unsafe {
                    core::arch::asm!(
                        "2:",
                        "ldr {w}, [{sp}], #4",
                        "sxtab16 {lo}, {off}, {w}",
                        "sxtab16 {hi}, {off}, {w}, ror #8",
                        "strd {lo}, {hi}, [{dp}], #16",
                        "subs {n}, {n}, #1",
                        "bne 2b",
                        sp = inout(reg) src.as_ptr() => _,
                        dp = inout(reg) dst.add(at) => _,
                        n = inout(reg) n => _,
                        off = in(reg) off2,
                        w = out(reg) _,
                        lo = out(reg) _,
                        hi = out(reg) _,
                        options(nostack),
                    );
                }
            }
        }
        None => {
            for q in 0..n {
                // SAFETY: words `at + 4q` and `at + 4q + 1` are < KC (checked above).
                unsafe {
                    dst.add(at + 4 * q).write(0);
                    dst.add(at + 4 * q + 1).write(0);
                }
            }
        }
    }
    Ok(())
}

/// The micro-kernel: `acc = [c0 p0, c0 p1, c1 p0, c1 p1]` += the dot products of `groups` groups of 4
/// block elements at `a` (2 pixels, see the module doc) with 4 weight bytes at `w` (channel c0) and at
/// `w + stride` (channel c1) per group. Wrapping i32 accumulation (`SMLAD`).
///
/// # Safety
/// `a` is 4-byte aligned with `groups * 4` readable words; `w` has `groups * 4` readable bytes and so
/// does `w + stride` (stride taken modulo 2^32); `acc` is 4 writable i32; `groups >= 1`.
#[unsafe(naked)]
unsafe extern "C" fn mac_2x2(a: *const u32, w: *const u8, stride: usize, groups: usize, acc: *mut i32) {
    // r0 a, r1 w (c0), r2 stride to c1, r3 group count, r4-r7 accumulators, r8-r11 the block words
    // (p0 (k0,k2) (k1,k3), p1 (k0,k2) (k1,k3)), r12/lr weight words. r4-r11 and lr are saved (r6, r7
    // included: a naked function may use them), and acc's pointer (5th argument) is kept on the stack.
    core::arch::naked_asm!(
        "push {{r4-r11, lr}}",
        "ldr r12, [sp, #36]",
        "push {{r12}}",
        "ldm r12, {{r4-r7}}",
        "2:",
        "ldm r0!, {{r8-r11}}",
        "ldr lr, [r1, r2]",
        "sxtb16 r12, lr",
        "sxtb16 lr, lr, ror #8",
        "smlad r6, r8, r12, r6",
        "smlad r6, r9, lr, r6",
        "smlad r7, r10, r12, r7",
        "smlad r7, r11, lr, r7",
        "ldr lr, [r1], #4",
        "sxtb16 r12, lr",
        "sxtb16 lr, lr, ror #8",
        "smlad r4, r8, r12, r4",
        "smlad r4, r9, lr, r4",
        "smlad r5, r10, r12, r5",
        "smlad r5, r11, lr, r5",
        "subs r3, r3, #1",
        "bne 2b",
        "pop {{r12}}",
        "stm r12, {{r4-r7}}",
        "pop {{r4-r11, pc}}",
    )
}

/// `acc` (`[c0 p0, c0 p1, c1 p0, c1 p1]`) += elements `0 .. kc` of the block (`kc <= KC`) with the
/// weights `w[c0 * k + k0 ..]` and `w[c1 * k + k0 ..]` (OHWI rows of `k` bytes), elements past `k` not
/// counted. The assembly reads whole groups of 4 weight bytes; a group that would read past the
/// weights (the last channel's tail when `k % 4 != 0`) is done in plain Rust. Bytes read past a
/// channel's row otherwise meet zeros in the block. Errors when `kc > KC` or the weights are short.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub fn mac(
    a: &[u32; KC],
    w: &[u8],
    k: usize,
    k0: usize,
    kc: usize,
    c0: usize,
    c1: usize,
    acc: &mut [i32; 4],
) -> KResult<()> {
    const E: &str = "conv weights shorter than their shape";
    if kc > KC {
        return Err("im2col block short");
    }
    // Wrapping: an overflowed start is a wrong start, and the `room` check below still keeps every
    // read inside `w`.
    let (s0, s1) = (c0.wrapping_mul(k).wrapping_add(k0), c1.wrapping_mul(k).wrapping_add(k0));
    let valid = kc.min(k.saturating_sub(k0));
    let room = w.len().checked_sub(s0.max(s1)).ok_or(E)?;
    let groups = if room >= valid.div_ceil(4) * 4 { valid.div_ceil(4) } else { room.min(valid) / 4 };
    if groups > 0 {
        // SAFETY: `groups * 4 <= kc <= KC` (rounded up to a multiple of 4, KC's multiple) elements per
        // pixel: `groups * 4` words of the 4-byte aligned block; `s0 + groups * 4` and `s1 + groups * 4`
        // are at most `w.len()` (`room`, checked above); the stride is `s1 - s0` modulo 2^32.
        unsafe { mac_2x2(a.as_ptr(), w.as_ptr().add(s0), s1.wrapping_sub(s0), groups, acc.as_mut_ptr()) };
    }
    for kk in groups * 4..valid {
        let (x0, x1) = (get16(a, slot(kk, 0))? as i32, get16(a, slot(kk, 1))? as i32);
        let (w0, w1) = (*w.get(s0 + kk).ok_or(E)? as i8 as i32, *w.get(s1 + kk).ok_or(E)? as i8 as i32);
        acc[0] = acc[0].wrapping_add(x0 * w0);
        acc[1] = acc[1].wrapping_add(x1 * w0);
        acc[2] = acc[2].wrapping_add(x0 * w1);
        acc[3] = acc[3].wrapping_add(x1 * w1);
    }
    Ok(())
}
