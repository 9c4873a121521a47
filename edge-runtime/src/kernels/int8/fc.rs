//! int8 FULLY_CONNECTED: TFLite `reference_integer_ops::FullyConnected`.

use super::fixedpoint::multiply_by_quantized_multiplier;
use super::{get_i32, KResult, OutStage};

const E: &str = "tensor bytes shorter than its shape";

/// `out[b, o] = requant(sum_d (w[o, d] - w_zp) * (x[b, d] - in_zp) + bias[o])` for `batches` rows of
/// `depth` inputs and `units` outputs.
#[allow(clippy::too_many_arguments)]
pub fn fully_connected(
    batches: usize,
    depth: usize,
    units: usize,
    input: &[u8],
    in_zp: i32,
    weights: &[u8],
    w_zp: i32,
    bias: Option<&[u8]>,
    stage: &OutStage<'_>,
    out: &mut [u8],
) -> KResult<()> {
    let (in_offset, w_offset) = (in_zp.wrapping_neg(), w_zp.wrapping_neg());
    for b in 0..batches {
        let xs = input.get(b * depth..(b + 1) * depth).ok_or(E)?;
        for o in 0..units {
            let ws = weights.get(o * depth..(o + 1) * depth).ok_or(E)?;
            let mut acc: i32 = 0;
            for (&x, &w) in xs.iter().zip(ws) {
                acc = acc.wrapping_add(
                    (w as i8 as i32).wrapping_add(w_offset).wrapping_mul((x as i8 as i32).wrapping_add(in_offset)),
                );
            }
            if let Some(bias) = bias {
                acc = acc.wrapping_add(get_i32(bias, o)?);
            }
            let (m, s) = stage.multiplier(o)?;
            let v = multiply_by_quantized_multiplier(acc, m, s).wrapping_add(stage.out_zp);
            *out.get_mut(b * units + o).ok_or(E)? = v.clamp(stage.act_min, stage.act_max) as i8 as u8;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::Mults;
    use super::*;

    #[test]
    fn matches_hand_computation() {
        // x - zp = [1, 2, 3], rows [1,1,1] and [-1,0,2] -> 6 and 5; + bias [10, -3] -> 16, 2; * 0.25 -> 4, 0.5->1
        let x = [3u8, 4, 5];
        let w = [1u8, 1, 1, (-1i8) as u8, 0, 2];
        let bias: Vec<u8> = [10i32, -3].iter().flat_map(|v| v.to_le_bytes()).collect();
        let stage = OutStage { mult: Mults::PerTensor(1 << 30, -1), out_zp: -5, act_min: -128, act_max: 127 };
        let mut out = [0u8; 2];
        fully_connected(1, 3, 2, &x, 2, &w, 0, Some(&bias), &stage, &mut out).unwrap();
        assert_eq!(out.map(|v| v as i8), [4 - 5, 1 - 5]);
        // clamp
        let stage = OutStage { act_max: -4, ..stage };
        fully_connected(1, 3, 2, &x, 2, &w, 0, Some(&bias), &stage, &mut out).unwrap();
        assert_eq!(out.map(|v| v as i8), [-4, -4]);
        assert!(fully_connected(1, 3, 2, &x[..2], 2, &w, 0, None, &stage, &mut out).is_err());
    }
}
