//! Per-op execution. Each op's tensors are resolved to bytes (weights blob or arena) with the arena
//! split around the output, so the output is the only mutable borrow and can never alias an input
//! (Reshape excepted: it is a byte copy, or nothing when planned in place).

use crate::kernels::fast::{self, Isa, Kernel};
use crate::kernels::{float, int8};
use crate::EngineError;
use rsim_model::{DType, Model, Op, Storage, Tensor};

/// Most tensors an op touches (Concat: four inputs and the output).
const MAX_TENSORS: usize = 5;

/// Byte range of an arena tensor, `None` for constants or on overflow.
pub(crate) fn arena_span(t: &Tensor) -> Option<(usize, usize)> {
    match t.storage {
        Storage::Arena { offset } => {
            let start = offset as usize;
            Some((start, start.checked_add(t.byte_len()?)?))
        }
        Storage::Weights { .. } => None,
    }
}

/// The op's tensors in `for_each_tensor` order; the output is the last.
fn tensors(op: &Op) -> ([Option<Tensor>; MAX_TENSORS], usize) {
    let mut ts = [None; MAX_TENSORS];
    let mut n = 0;
    op.for_each_tensor(|t| {
        if let Some(slot) = ts.get_mut(n) {
            *slot = Some(*t);
            n += 1;
        }
    });
    (ts, n)
}

/// An op runs on the int8 path when any of its activations is int8 (TFLM's type switch).
pub(crate) fn is_int8(op: &Op) -> bool {
    let mut any = false;
    op.for_each_tensor(|t| any |= matches!(t.storage, Storage::Arena { .. }) && t.dtype == DType::I8);
    any
}

fn overlaps(a: (usize, usize), b: (usize, usize)) -> bool {
    a.0 < b.1 && b.0 < a.1 && a.0 < a.1 && b.0 < b.1
}

/// Checks one op before any run: placement, alignment, aliasing, then the kernel's own prepare.
/// Returns the highest arena byte the op touches.
pub(crate) fn prepare_op(op_index: u32, op: &Op, model: &Model<'_>, arena_len: usize) -> Result<usize, EngineError> {
    let bad = |reason| EngineError::Unsupported { op: op_index, name: op.name(), reason };
    let (ts, n) = tensors(op);
    let out_span = arena_span(op.output()).ok_or(bad("output must be an arena tensor"))?;
    let mut high = 0usize;
    for t in ts.iter().take(n).flatten() {
        // A zero-sized dim makes the tensor empty whatever the other dims say, so they could be
        // anything (u32::MAX) and loops over them would run for years doing nothing.
        if t.shape.dims().contains(&0) {
            return Err(bad("tensor has a zero-sized dim"));
        }
        match arena_span(t) {
            Some(span) => {
                if span.1 > arena_len {
                    return Err(bad("tensor lies outside the planned arena"));
                }
                // The arena start is 16-byte aligned; element alignment then follows from the offset.
                if span.0 % t.dtype.size() != 0 {
                    return Err(bad("arena tensor offset is not a multiple of its element size"));
                }
                high = high.max(span.1);
            }
            None => {
                if model.const_bytes(t).is_none() {
                    return Err(bad("constant tensor lies outside the weights"));
                }
            }
        }
    }
    if let Op::Reshape { input, output } = op {
        // Handled here for every dtype: a byte copy, or nothing when planned in place.
        if input.byte_len() != output.byte_len() || input.dtype != output.dtype {
            return Err(bad("reshape must keep the dtype and the byte size"));
        }
        return Ok(high);
    }
    for t in ts.iter().take(n.saturating_sub(1)).flatten() {
        if arena_span(t).is_some_and(|s| overlaps(s, out_span)) {
            return Err(EngineError::Aliasing { op: op_index });
        }
    }
    if is_int8(op) {
        int8::prepare(op_index, op, model)?;
    } else {
        float::prepare(op_index, op)?;
    }
    Ok(high)
}

/// Resolves a read-only tensor: a constant, or an arena tensor left or right of the output.
fn resolve<'x>(
    op_index: u32,
    name: &'static str,
    t: &Tensor,
    weights: &'x [u8],
    left: &'x [u8],
    right: &'x [u8],
    out_end: usize,
) -> Result<&'x [u8], EngineError> {
    let bad = |reason| EngineError::Unsupported { op: op_index, name, reason };
    let len = t.byte_len().ok_or(bad("tensor size overflows"))?;
    match t.storage {
        Storage::Weights { offset } => {
            weights.get(offset as usize..).and_then(|w| w.get(..len)).ok_or(bad("constant lies outside the weights"))
        }
        Storage::Arena { offset } => {
            let (s, e) = (offset as usize, (offset as usize).checked_add(len).ok_or(bad("tensor size overflows"))?);
            if len == 0 {
                Ok(&[])
            } else if e <= left.len() {
                left.get(s..e).ok_or(bad("tensor lies outside the arena"))
            } else if s >= out_end {
                right.get(s - out_end..e - out_end).ok_or(bad("tensor lies outside the arena"))
            } else {
                Err(EngineError::Aliasing { op: op_index })
            }
        }
    }
}

/// What every op run shares: constants, the fast kernels' persistent data, instruction set, threads.
pub(crate) struct RunCtx<'x> {
    pub weights: &'x [u8],
    pub persistent: &'x [u8],
    pub isa: Isa,
    pub threads: usize,
}

/// Runs one op over the arena with the kernel chosen for it. Returns the output's byte range.
pub(crate) fn run_op(
    op_index: u32,
    op: &Op,
    kernel: &Kernel,
    ctx: &RunCtx<'_>,
    arena: &mut [u8],
) -> Result<(usize, usize), EngineError> {
    let weights = ctx.weights;
    let bad = |reason| EngineError::Unsupported { op: op_index, name: op.name(), reason };
    let (o0, o1) = arena_span(op.output()).ok_or(bad("output must be an arena tensor"))?;
    if o1 > arena.len() {
        return Err(bad("output lies outside the arena"));
    }
    if let Op::Reshape { input, .. } = op {
        reshape(op_index, input, (o0, o1), weights, arena)?;
        return Ok((o0, o1));
    }
    let (left, rest) = arena.split_at_mut(o0);
    let (out, right) = rest.split_at_mut(o1 - o0);
    let (ts, n) = tensors(op);
    let mut ins: [&[u8]; MAX_TENSORS - 1] = [&[]; MAX_TENSORS - 1];
    let reads = n.saturating_sub(1);
    for (slot, t) in ins.iter_mut().zip(ts.iter().take(reads).flatten()) {
        *slot = resolve(op_index, op.name(), t, weights, left, right, o1)?;
    }
    let ins = ins.get(..reads).ok_or(bad("too many input tensors"))?;
    if *kernel != Kernel::Reference {
        fast::run(kernel, ctx.isa, ctx.threads, ins, ctx.persistent, weights, out)
            .map_err(|reason| EngineError::Unsupported { op: op_index, name: op.name(), reason })?;
    } else if is_int8(op) {
        int8::eval(op_index, op, weights, ins, out)?;
    } else {
        float::eval(op_index, op, ins, out)?;
    }
    Ok((o0, o1))
}

fn reshape(
    op_index: u32,
    input: &Tensor,
    (o0, o1): (usize, usize),
    weights: &[u8],
    arena: &mut [u8],
) -> Result<(), EngineError> {
    let bad = |reason| EngineError::Unsupported { op: op_index, name: "Reshape", reason };
    match arena_span(input) {
        Some((i0, i1)) => {
            if i1 - i0 != o1 - o0 || i1 > arena.len() {
                return Err(bad("reshape input and output sizes differ"));
            }
            if i0 != o0 {
                arena.copy_within(i0..i1, o0);
            }
        }
        None => {
            let src = resolve(op_index, "Reshape", input, weights, &[], &[], 0)?;
            let dst = arena.get_mut(o0..o1).ok_or(bad("output lies outside the arena"))?;
            if src.len() != dst.len() {
                return Err(bad("reshape input and output sizes differ"));
            }
            dst.copy_from_slice(src);
        }
    }
    Ok(())
}
