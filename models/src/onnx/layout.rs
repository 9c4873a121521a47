//! `.rsm` conv weight layouts to ONNX's OIHW, for any element type (f32 weights of float graphs,
//! int8 weights of QDQ graphs).

/// Dense OHWI or depthwise 1HW(C*M) weights (`wshape` = the `.rsm` dims, `groups`, input channels
/// `cin`) as OIHW: `Some((dims, values))`, or `None` when the conv is neither dense nor depthwise or
/// the data does not fill the shape.
pub fn conv_oihw<T: Copy + Default>(
    w: &[T],
    wshape: [usize; 4],
    groups: u32,
    cin: usize,
) -> Option<([usize; 4], Vec<T>)> {
    let [wo, kh, kw, wi] = wshape;
    if w.len() != wo.checked_mul(kh)?.checked_mul(kw)?.checked_mul(wi)? {
        return None;
    }
    let mut v = vec![T::default(); w.len()];
    if groups == 1 {
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
    } else if groups as usize == cin && wo == 1 {
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

    #[test]
    fn dense_and_depthwise_by_hand() {
        // O=2, H=1, W=2, I=2: w[o][x][i] = 100 o + 10 x + i -> OIHW w[o][i][0][x].
        let w: Vec<i32> = (0..2)
            .flat_map(|o| (0..2).flat_map(move |x| (0..2).map(move |i| 100 * o + 10 * x + i)))
            .collect();
        let (dims, v) = conv_oihw(&w, [2, 1, 2, 2], 1, 2).unwrap();
        assert_eq!(dims, [2, 2, 1, 2]);
        assert_eq!(v, [0, 10, 1, 11, 100, 110, 101, 111]);
        // Depthwise 1x1x2x3 (H=1, W=2, C=3): w[x][c] = 10 x + c -> w[c][0][0][x].
        let w: Vec<i32> = (0..2)
            .flat_map(|x| (0..3).map(move |c| 10 * x + c))
            .collect();
        let (dims, v) = conv_oihw(&w, [1, 1, 2, 3], 3, 3).unwrap();
        assert_eq!(dims, [3, 1, 1, 2]);
        assert_eq!(v, [0, 10, 1, 11, 2, 12]);
        assert!(
            conv_oihw(&w, [1, 1, 2, 3], 2, 6).is_none(),
            "grouped conv is neither"
        );
        assert!(
            conv_oihw(&w[..5], [1, 1, 2, 3], 3, 3).is_none(),
            "short data"
        );
    }
}
