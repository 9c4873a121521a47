//! What an inference costs: multiply-accumulates per op and per model, computed from the shapes alone
//! (no geometry check needed, so a board can refuse a model over its compute budget before it builds
//! an engine).
//!
//! Conv2d, FullyConnected and MatMul count their multiply-accumulates (output elements x the inputs
//! each one reads). Every other op counts one per element it produces (pools: per window tap,
//! GlobalAvgPool / Softmax / LayerNorm: per input element), so the sum bounds the inner-loop
//! iterations of one inference, which is what a compute budget must bound. All arithmetic is u64 and
//! saturating: a hostile shape yields `u64::MAX`, which no budget accepts, never a wrap or a panic.

use crate::format::Model;
use crate::graph::{Op, Tensor};
use crate::ModelError;

fn elems(t: &Tensor) -> u64 {
    t.shape.dims().iter().fold(1u64, |acc, &d| acc.saturating_mul(u64::from(d)))
}

impl Op {
    /// Multiply-accumulates (or element operations, see the module docs) of one run of this op.
    pub fn macs(&self) -> u64 {
        match self {
            Op::Conv2d { weights, output, .. } => {
                // OHWI (dense, grouped) or 1HW(C*M) (depthwise): weights / out_c = what one output reads.
                let out_c = u64::from(*output.shape.dims().last().unwrap_or(&1)).max(1);
                elems(output).saturating_mul(elems(weights) / out_c)
            }
            Op::FullyConnected { weights, output, .. } => {
                let units = u64::from(*weights.shape.dims().first().unwrap_or(&1)).max(1);
                elems(output).saturating_mul(elems(weights) / units)
            }
            Op::MatMul { a, output, .. } => {
                let k = u64::from(*a.shape.dims().last().unwrap_or(&1));
                elems(output).saturating_mul(k)
            }
            Op::AvgPool2d { output, params, .. } | Op::MaxPool2d { output, params, .. } => {
                let taps = u64::from(params.kernel[0]).saturating_mul(u64::from(params.kernel[1]));
                elems(output).saturating_mul(taps)
            }
            Op::GlobalAvgPool { input, .. } | Op::Softmax { input, .. } | Op::LayerNorm { input, .. } => elems(input),
            Op::Add { output, .. }
            | Op::Mul { output, .. }
            | Op::Reshape { output, .. }
            | Op::Concat { output, .. }
            | Op::Transpose { output, .. }
            | Op::Activation { output, .. }
            | Op::Lut { output, .. }
            | Op::Quantize { output, .. }
            | Op::Dequantize { output, .. } => elems(output),
        }
    }
}

impl Model<'_> {
    /// Multiply-accumulates of one inference: the sum of [`Op::macs`] over the graph (saturating).
    pub fn macs(&self) -> Result<u64, ModelError> {
        let mut total = 0u64;
        for op in self.ops() {
            total = total.saturating_add(op?.macs());
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use crate::graph::*;

    fn t(dims: &[u32]) -> Tensor {
        Tensor {
            id: 0,
            dtype: DType::I8,
            shape: Shape::new(dims),
            storage: Storage::Arena { offset: 0 },
            quant: Quant::None,
        }
    }

    fn conv(i: &[u32], w: &[u32], o: &[u32], groups: u32) -> Op {
        let padding = Padding { top: 1, bottom: 1, left: 1, right: 1 };
        let params = Conv2dParams { stride: [1, 1], dilation: [1, 1], padding, groups, activation: Activation::None };
        Op::Conv2d { input: t(i), weights: t(w), bias: None, output: t(o), params, requant: None }
    }

    #[test]
    fn conv_fc_pool_counts() {
        // Dense 3x3, 3 -> 4 channels on 5x5: 100 outputs x 27 taps.
        assert_eq!(conv(&[1, 5, 5, 3], &[4, 3, 3, 3], &[1, 5, 5, 4], 1).macs(), 100 * 27);
        // Depthwise multiplier 2: 150 outputs x 9 taps.
        assert_eq!(conv(&[1, 5, 5, 3], &[1, 3, 3, 6], &[1, 5, 5, 6], 3).macs(), 150 * 9);
        // Grouped, 2 groups: each output reads 3x3x2.
        assert_eq!(conv(&[1, 5, 5, 4], &[6, 3, 3, 2], &[1, 5, 5, 6], 2).macs(), 150 * 18);
        let fc = Op::FullyConnected {
            input: t(&[2, 128]),
            weights: t(&[10, 128]),
            bias: None,
            output: t(&[2, 10]),
            activation: Activation::None,
            requant: None,
        };
        assert_eq!(fc.macs(), 20 * 128);
        let padding = Padding { top: 0, bottom: 0, left: 0, right: 0 };
        let pool = Op::MaxPool2d {
            input: t(&[1, 4, 4, 8]),
            output: t(&[1, 2, 2, 8]),
            params: PoolParams { kernel: [2, 3], stride: [2, 2], padding },
            act_min: -128,
            act_max: 127,
        };
        assert_eq!(pool.macs(), 32 * 6);
    }

    #[test]
    fn hostile_shapes_saturate() {
        let big = [u32::MAX; 4];
        assert_eq!(conv(&big, &big, &big, 1).macs(), u64::MAX);
        // A zero dim anywhere in the output: nothing to compute.
        assert_eq!(conv(&big, &big, &[u32::MAX, 0, u32::MAX, u32::MAX], 1).macs(), 0);
    }
}
