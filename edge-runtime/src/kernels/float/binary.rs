//! Add and Mul with numpy broadcasting (shapes right-aligned; a dim of 1 repeats), e.g. the
//! squeeze-excite gate `[N,1,1,C] * [N,H,W,C]` or a bias `[C]` added to `[N,T,C]`.

use super::{act, dims4, Elem};
use rsim_model::{Activation, Shape};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryKind {
    Add,
    Mul,
}

/// Output dims (4-D, right-aligned) and the element strides of `a` and `b` (0 on broadcast dims).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BroadcastGeom {
    pub out: [usize; 4],
    pub a_strides: [usize; 4],
    pub b_strides: [usize; 4],
    pub a_len: usize,
    pub b_len: usize,
}

fn strides(d: &[usize; 4], out: &[usize; 4]) -> [usize; 4] {
    let mut s = [0usize; 4];
    let mut acc = 1usize;
    for i in (0..4).rev() {
        s[i] = if d[i] == 1 && out[i] != 1 { 0 } else { acc };
        acc = acc.saturating_mul(d[i]);
    }
    s
}

pub fn broadcast_geom(a: &Shape, b: &Shape, output: &Shape) -> Result<BroadcastGeom, &'static str> {
    let (da, db, dout) = (dims4(a), dims4(b), dims4(output));
    for i in 0..4 {
        let want = if da[i] == 1 { db[i] } else { da[i] };
        if (da[i] != 1 && db[i] != 1 && da[i] != db[i]) || want != dout[i] {
            return Err("binary op shapes do not broadcast to the output shape");
        }
    }
    let a_len = super::count(a)?;
    let b_len = super::count(b)?;
    super::count(output)?;
    Ok(BroadcastGeom { out: dout, a_strides: strides(&da, &dout), b_strides: strides(&db, &dout), a_len, b_len })
}

#[inline(always)]
fn combine(kind: BinaryKind, x: f32, y: f32) -> f32 {
    match kind {
        BinaryKind::Add => x + y,
        BinaryKind::Mul => x * y,
    }
}

/// `output = act(a (+|*) b)` with broadcasting.
pub fn binary<A: Elem, B: Elem>(
    kind: BinaryKind,
    g: &BroadcastGeom,
    a: &[A],
    b: &[B],
    activation: Activation,
    output: &mut [f32],
) -> Result<(), &'static str> {
    let [d0, d1, d2, d3] = g.out;
    if a.len() != g.a_len
        || b.len() != g.b_len
        || Some(output.len()) != d0.checked_mul(d1).and_then(|v| v.checked_mul(d2)?.checked_mul(d3))
    {
        return Err("binary op tensor sizes do not match the geometry");
    }
    let (sa, sb) = (g.a_strides, g.b_strides);
    let mut rows = output.chunks_exact_mut(d3.max(1));
    for i0 in 0..d0 {
        for i1 in 0..d1 {
            for i2 in 0..d2 {
                let row = rows.next().ok_or("binary output too short")?;
                let (ab, bb) = (i0 * sa[0] + i1 * sa[1] + i2 * sa[2], i0 * sb[0] + i1 * sb[1] + i2 * sb[2]);
                // Fast paths for the common inner-dim cases; the general path handles the rest.
                match (sa[3], sb[3]) {
                    (1, 1) => {
                        let x = a.get(ab..ab + d3).ok_or("binary index out of range")?;
                        let y = b.get(bb..bb + d3).ok_or("binary index out of range")?;
                        for ((o, &x), &y) in row.iter_mut().zip(x).zip(y) {
                            *o = combine(kind, x.f32(), y.f32());
                        }
                    }
                    (1, 0) => {
                        let x = a.get(ab..ab + d3).ok_or("binary index out of range")?;
                        let y = b.get(bb).ok_or("binary index out of range")?.f32();
                        for (o, &x) in row.iter_mut().zip(x) {
                            *o = combine(kind, x.f32(), y);
                        }
                    }
                    _ => {
                        for (i3, o) in row.iter_mut().enumerate() {
                            let x = a.get(ab + i3 * sa[3]).ok_or("binary index out of range")?.f32();
                            let y = b.get(bb + i3 * sb[3]).ok_or("binary index out of range")?.f32();
                            *o = combine(kind, x, y);
                        }
                    }
                }
                act::apply_slice(activation, row);
            }
        }
    }
    Ok(())
}
