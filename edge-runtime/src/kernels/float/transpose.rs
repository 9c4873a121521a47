//! Axis permutation of a rank <= 4 tensor: `out.dims[i] = in.dims[perm[i]]`.

use super::{dims4, Elem};
use rsim_model::Shape;

/// Output dims (4-D) and, for each output axis, the input stride it walks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TransposeGeom {
    pub out: [usize; 4],
    pub in_strides: [usize; 4],
}

pub fn transpose_geom(input: &Shape, output: &Shape, perm: &[u8; 4]) -> Result<TransposeGeom, &'static str> {
    let r = input.rank as usize;
    if output.rank as usize != r || r > 4 {
        return Err("transpose input and output ranks differ");
    }
    let lead = 4 - r;
    let din = dims4(input);
    let mut stride = [0usize; 4];
    let mut acc = 1usize;
    for i in (0..4).rev() {
        stride[i] = acc;
        acc = acc.checked_mul(din[i]).ok_or("transpose size overflows")?;
    }
    let mut seen = [false; 4];
    let mut out = [1usize; 4];
    let mut in_strides = [0usize; 4];
    for i in 0..4 {
        let src = if i < lead { i } else { perm[i - lead] as usize + lead };
        if src >= 4 || seen[src] || (i >= lead && src < lead) {
            return Err("transpose permutation is not a permutation of the input axes");
        }
        seen[src] = true;
        out[i] = din[src];
        in_strides[i] = stride[src];
    }
    if out != dims4(output) {
        return Err("transpose output shape is not the permuted input shape");
    }
    Ok(TransposeGeom { out, in_strides })
}

pub fn transpose<E: Elem>(g: &TransposeGeom, input: &[E], output: &mut [f32]) -> Result<(), &'static str> {
    let [d0, d1, d2, d3] = g.out;
    let total = d0 * d1 * d2 * d3;
    if input.len() != total || output.len() != total {
        return Err("transpose tensor sizes do not match the geometry");
    }
    let s = g.in_strides;
    let mut o = output.iter_mut();
    for i0 in 0..d0 {
        for i1 in 0..d1 {
            for i2 in 0..d2 {
                let base = i0 * s[0] + i1 * s[1] + i2 * s[2];
                for i3 in 0..d3 {
                    let v = input.get(base + i3 * s[3]).ok_or("transpose index out of range")?;
                    *o.next().ok_or("transpose output too short")? = v.f32();
                }
            }
        }
    }
    Ok(())
}
