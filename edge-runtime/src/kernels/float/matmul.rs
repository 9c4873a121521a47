//! Batched matrix product over the last two dims, [.., M, K] x [.., K, N] -> [.., M, N], with numpy
//! broadcasting over the (up to two) batch dims. The inner loop runs along N (contiguous in b and out).

use super::{dims4, Elem};
use rsim_model::Shape;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatMulGeom {
    pub batch: [usize; 2],
    /// Batch strides (in matrices) of a and b; 0 on a broadcast dim.
    pub a_bstride: [usize; 2],
    pub b_bstride: [usize; 2],
    pub m: usize,
    pub k: usize,
    pub n: usize,
}

pub fn matmul_geom(a: &Shape, b: &Shape, output: &Shape) -> Result<MatMulGeom, &'static str> {
    if a.rank < 2 || b.rank < 2 || output.rank < 2 {
        return Err("matmul operands must have rank 2 or more");
    }
    let (da, db, dout) = (dims4(a), dims4(b), dims4(output));
    let (m, k, n) = (da[2], da[3], db[3]);
    if db[2] != k || dout[2] != m || dout[3] != n {
        return Err("matmul needs [.., M, K] x [.., K, N] -> [.., M, N]");
    }
    let mut a_bs = [0usize; 2];
    let mut b_bs = [0usize; 2];
    let (mut sa, mut sb) = (1usize, 1usize);
    for i in (0..2).rev() {
        if (da[i] != dout[i] && da[i] != 1) || (db[i] != dout[i] && db[i] != 1) {
            return Err("matmul batch dims do not broadcast to the output");
        }
        a_bs[i] = if da[i] == 1 { 0 } else { sa };
        b_bs[i] = if db[i] == 1 { 0 } else { sb };
        sa = sa.saturating_mul(da[i]);
        sb = sb.saturating_mul(db[i]);
    }
    super::count(a)?;
    super::count(b)?;
    super::count(output)?;
    Ok(MatMulGeom { batch: [dout[0], dout[1]], a_bstride: a_bs, b_bstride: b_bs, m, k, n })
}

pub fn matmul<A: Elem, B: Elem>(g: &MatMulGeom, a: &[A], b: &[B], output: &mut [f32]) -> Result<(), &'static str> {
    let (m, k, n) = (g.m, g.k, g.n);
    let (mk, kn, mn) = (m * k, k * n, m * n);
    let batches = g.batch[0] * g.batch[1];
    if output.len() != batches * mn {
        return Err("matmul output size does not match the geometry");
    }
    if mn == 0 {
        return Ok(());
    }
    let mut outs = output.chunks_exact_mut(mn);
    for i0 in 0..g.batch[0] {
        for i1 in 0..g.batch[1] {
            let out = outs.next().ok_or("matmul output too short")?;
            let ai = (i0 * g.a_bstride[0] + i1 * g.a_bstride[1]) * mk;
            let bi = (i0 * g.b_bstride[0] + i1 * g.b_bstride[1]) * kn;
            let am = a.get(ai..ai + mk).ok_or("matmul a index out of range")?;
            let bm = b.get(bi..bi + kn).ok_or("matmul b index out of range")?;
            for (o_row, a_row) in out.chunks_exact_mut(n).zip(am.chunks_exact(k.max(1))) {
                o_row.fill(0.0);
                if k == 0 {
                    continue;
                }
                for (&av, b_row) in a_row.iter().zip(bm.chunks_exact(n)) {
                    let av = av.f32();
                    for (o, &bv) in o_row.iter_mut().zip(b_row) {
                        *o += av * bv.f32();
                    }
                }
            }
        }
    }
    Ok(())
}
