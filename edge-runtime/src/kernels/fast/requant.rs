//! TFLM's requantization (`MultiplyByQuantizedMultiplier`, double rounding) split into the two shifts
//! that prepared per-channel arrays store, so vector code does no branching per lane. Defined in
//! rsim-edge-simd (its vector requantization's scalar tails use them too); the check against the
//! reference stays here.

pub use rsim_edge_simd::requant::{requant_one, split_shift};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::int8::fixedpoint::multiply_by_quantized_multiplier;

    #[test]
    fn split_matches_the_reference_for_every_shift() {
        let xs = [0, 1, -1, 12345, -98765, i32::MAX, i32::MIN, 1 << 20, -(1 << 24) + 3];
        let ms = [0, 1, 1 << 30, i32::MAX, i32::MIN, 1_552_512_760, -7];
        for shift in -40..=40 {
            let (l, r) = split_shift(shift);
            for &x in &xs {
                for &m in &ms {
                    let want = multiply_by_quantized_multiplier(x, m, shift).wrapping_add(3).clamp(-128, 127) as i8;
                    assert_eq!(requant_one(x, m, l, r, 3, -128, 127), want, "x {x} m {m} shift {shift}");
                }
            }
        }
    }
}
