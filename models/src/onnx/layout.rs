//! `.rsm` conv weight layouts to ONNX's OIHW, for any element type (f32 weights of float graphs,
//! int8 weights of QDQ graphs).

use super::lower::Writer;
use super::proto::tensor_f32;
use super::OnnxError;
use crate::conv::{ConvGeometry, ConvKind};
use crate::graph::{DType, Tensor};

impl Writer<'_, '_> {
    /// OIHW conv weights: an f32 initializer, or int8 with its per-channel DequantizeLinear.
    pub(super) fn conv_weights(&mut self, weights: &Tensor, g: &ConvGeometry) -> Result<String, OnnxError> {
        let shape = weights.shape.nhwc();
        let bad = || {
            self.err(format!(
                "conv with {} groups over {} channels (weights {:?}) is neither dense nor depthwise, or its \
                 weights do not fill their shape",
                g.groups,
                g.in_c,
                weights.shape.dims()
            ))
        };
        let name = format!("w{}", weights.id);
        if weights.dtype == DType::I8 {
            let (dims, data) = conv_oihw(&self.const_i8(weights)?, shape, g.kind).ok_or_else(bad)?;
            let dims: Vec<i64> = dims.iter().map(|&d| d as i64).collect();
            return self.int8_const(&name, &dims, &data, weights, 0);
        }
        let (dims, data) = conv_oihw(&self.const_f32(weights)?, shape, g.kind).ok_or_else(bad)?;
        let dims: Vec<i64> = dims.iter().map(|&d| d as i64).collect();
        self.inits.push(tensor_f32(&name, &dims, &data));
        Ok(name)
    }
}

/// Dense OHWI or depthwise 1HW(C*M) weights (`wshape` = the `.rsm` dims, `kind` from the conv's
/// [`ConvGeometry`]) as OIHW: `Some((dims, values))`, or `None` for a grouped conv (not exported) or
/// data that does not fill the shape.
pub fn conv_oihw<T: Copy + Default>(w: &[T], wshape: [usize; 4], kind: ConvKind) -> Option<([usize; 4], Vec<T>)> {
    let [wo, kh, kw, wi] = wshape;
    if w.len() != wo.checked_mul(kh)?.checked_mul(kw)?.checked_mul(wi)? {
        return None;
    }
    let mut v = vec![T::default(); w.len()];
    if kind == ConvKind::Dense {
        // OHWI -> OIHW
        for o in 0..wo {
            for y in 0..kh {
                for x in 0..kw {
                    for i in 0..wi {
                        v[((o * wi + i) * kh + y) * kw + x] = w[((o * kh + y) * kw + x) * wi + i];
                    }
                }
            }
        }
        Some(([wo, wi, kh, kw], v))
    } else if let ConvKind::Depthwise { .. } = kind {
        // 1HW(C*M) -> (C*M)1HW
        let oc = wi;
        for c in 0..oc {
            for y in 0..kh {
                for x in 0..kw {
                    v[(c * kh + y) * kw + x] = w[(y * kw + x) * oc + c];
                }
            }
        }
        Some(([oc, 1, kh, kw], v))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::conv_oihw;
    use crate::conv::ConvKind;

    #[test]
    fn dense_and_depthwise_by_hand() {
        // O=2, H=1, W=2, I=2: w[o][x][i] = 100 o + 10 x + i -> OIHW w[o][i][0][x].
        let w: Vec<i32> =
            (0..2).flat_map(|o| (0..2).flat_map(move |x| (0..2).map(move |i| 100 * o + 10 * x + i))).collect();
        let (dims, v) = conv_oihw(&w, [2, 1, 2, 2], ConvKind::Dense).unwrap();
        assert_eq!(dims, [2, 2, 1, 2]);
        assert_eq!(v, [0, 10, 1, 11, 100, 110, 101, 111]);
        // Depthwise 1x1x2x3 (H=1, W=2, C=3): w[x][c] = 10 x + c -> w[c][0][0][x].
        let w: Vec<i32> = (0..2).flat_map(|x| (0..3).map(move |c| 10 * x + c)).collect();
        let (dims, v) = conv_oihw(&w, [1, 1, 2, 3], ConvKind::Depthwise { multiplier: 1 }).unwrap();
        assert_eq!(dims, [3, 1, 1, 2]);
        assert_eq!(v, [0, 10, 1, 11, 2, 12]);
        assert!(conv_oihw(&w, [1, 1, 2, 3], ConvKind::Grouped { groups: 2 }).is_none(), "grouped conv is neither");
        assert!(conv_oihw(&w[..5], [1, 1, 2, 3], ConvKind::Depthwise { multiplier: 1 }).is_none(), "short data");
    }
}
