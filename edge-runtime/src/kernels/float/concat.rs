//! Concatenation of up to four tensors along any axis: for each of the `outer` positions
//! (product of the dims before the axis), each input contributes one contiguous chunk in turn.

use super::{dims4, Elem};
use rsim_model::Shape;

/// `outer` and each input's chunk length (0 for unused slots).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConcatGeom {
    pub outer: usize,
    pub chunks: [usize; 4],
}

pub fn concat_geom(inputs: &[Option<Shape>; 4], output: &Shape, axis: u8) -> Result<ConcatGeom, &'static str> {
    let rank = output.rank as usize;
    let axis = axis as usize;
    if axis >= rank.max(1) {
        return Err("concat axis is not below the output rank");
    }
    let a4 = axis + 4 - rank.max(1);
    let out = dims4(output);
    let mut axis_sum = 0usize;
    let mut chunks = [0usize; 4];
    for (slot, s) in inputs.iter().enumerate() {
        let Some(s) = s else { continue };
        if s.rank != output.rank {
            return Err("concat inputs must have the output's rank");
        }
        let d = dims4(s);
        for i in 0..4 {
            if i != a4 && d[i] != out[i] {
                return Err("concat inputs must match the output on every dim but the axis");
            }
        }
        axis_sum = axis_sum.checked_add(d[a4]).ok_or("concat size overflows")?;
        chunks[slot] = d[a4..].iter().try_fold(1usize, |acc, &v| acc.checked_mul(v)).ok_or("concat size overflows")?;
    }
    if axis_sum != out[a4] {
        return Err("concat output dim on the axis is not the sum of the inputs'");
    }
    super::count(output)?;
    let outer = out[..a4].iter().product();
    Ok(ConcatGeom { outer, chunks })
}

pub fn concat(
    g: &ConcatGeom,
    inputs: &[super::Operand<'_>],
    slots: &[usize],
    output: &mut [f32],
) -> Result<(), &'static str> {
    let row: usize = g.chunks.iter().sum();
    if Some(output.len()) != g.outer.checked_mul(row) || inputs.len() != slots.len() {
        return Err("concat output size does not match the geometry");
    }
    for (i, (inp, &slot)) in inputs.iter().zip(slots).enumerate() {
        let chunk = *g.chunks.get(slot).ok_or("concat slot out of range")?;
        if Some(inp.len()) != g.outer.checked_mul(chunk) {
            return Err("concat input size does not match the geometry");
        }
        let before: usize = slots[..i].iter().filter_map(|&s| g.chunks.get(s)).sum();
        super::with_elems!(*inp, |s| copy_chunks(s, chunk, before, row, output));
    }
    Ok(())
}

fn copy_chunks<E: Elem>(src: &[E], chunk: usize, before: usize, row: usize, output: &mut [f32]) {
    if chunk == 0 || row == 0 {
        return;
    }
    for (s, o) in src.chunks_exact(chunk).zip(output.chunks_exact_mut(row)) {
        for (d, &v) in o.iter_mut().skip(before).zip(s) {
            *d = v.f32();
        }
    }
}
