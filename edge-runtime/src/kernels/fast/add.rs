//! int8 ADD of two same-shape tensors (residual connections): TFLM's `AddElementwise` arithmetic,
//! without the broadcast index walk of the reference. Broadcasting adds stay on the reference.

use super::Isa;
use crate::kernels::int8::fixedpoint::{rounding_divide_by_pot, srdhm};
use crate::kernels::int8::KResult;
use rsim_model::{DType, Op, Quant};

/// Parameters of a planned add, shifts pre-split as the reference applies them.
pub use rsim_edge_simd::AddPlan;

/// Right shift of `MultiplyByQuantizedMultiplierSmallerThanOneExp` (exponent negated, clamped).
fn right(shift: i32) -> i32 {
    shift.wrapping_neg().clamp(0, 31)
}

pub fn plan(op: &Op) -> Option<AddPlan> {
    let Op::Add { a, b, output, quant, .. } = op else { return None };
    let q = quant.as_ref()?;
    let zp = |t: &rsim_model::Tensor| match t.quant {
        Quant::PerTensor { zero_point, .. } if t.dtype == DType::I8 && (-128..=127).contains(&zero_point) => {
            Some(zero_point)
        }
        _ => None,
    };
    if a.shape.nhwc() != output.shape.nhwc() || b.shape.nhwc() != output.shape.nhwc() {
        return None;
    }
    // The reference clamps to the stored range and then truncates to i8: only int8 ranges here.
    if q.act_min < -128 || q.act_max > 127 || q.act_min > q.act_max {
        return None;
    }
    Some(AddPlan {
        len: u32::try_from(output.shape.checked_len()?).ok()?,
        zp: [zp(a)?, zp(b)?, zp(output)?],
        left: q.left_shift.clamp(0, 30),
        a: (q.a_mult, right(q.a_shift)),
        b: (q.b_mult, right(q.b_shift)),
        out: (q.out_mult, right(q.out_shift)),
        act_min: q.act_min,
        act_max: q.act_max,
    })
}

/// One element, exactly as the reference's `add`.
#[inline]
pub fn one(p: &AddPlan, x: i32, y: i32) -> i8 {
    let xa = x.wrapping_sub(p.zp[0]).wrapping_shl(p.left as u32);
    let ya = y.wrapping_sub(p.zp[1]).wrapping_shl(p.left as u32);
    let xs = rounding_divide_by_pot(srdhm(xa, p.a.0), p.a.1);
    let ys = rounding_divide_by_pot(srdhm(ya, p.b.0), p.b.1);
    let raw = rounding_divide_by_pot(srdhm(xs.wrapping_add(ys), p.out.0), p.out.1).wrapping_add(p.zp[2]);
    raw.clamp(p.act_min, p.act_max) as i8
}

pub fn run(p: &AddPlan, isa: Isa, a: &[u8], b: &[u8], out: &mut [u8]) -> KResult<()> {
    let n = p.len as usize;
    let (a, b, out) = match (a.get(..n), b.get(..n), out.get_mut(..n)) {
        (Some(a), Some(b), Some(o)) => (a, b, o),
        _ => return Err("add tensors shorter than their shapes"),
    };
    let done = match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2(t) => t.add(p, a, b, out),
        _ => 0,
    };
    for ((o, &x), &y) in out.iter_mut().zip(a).zip(b).skip(done) {
        *o = one(p, x as i8 as i32, y as i8 as i32) as u8;
    }
    Ok(())
}
