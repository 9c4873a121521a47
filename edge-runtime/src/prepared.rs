//! Prepared ops: every op decoded, validated and given its kernel once, in `Engine::new`, into the
//! arena's persistent part, so `invoke` only runs kernels.
//!
//! Arena layout (from its 16-byte-aligned start):
//! `[activations: info.arena_size][records: op_count x PreparedOp][kernel data: packed weights, ...]`,
//! each part starting 16-byte aligned. [`layout`] computes the sizes from the model alone (the same on
//! every run of the same build), so [`crate::required_arena`] is known before any engine exists.
//! An arena with room for the activations only still runs: ops are then decoded on each invoke and
//! every op uses its reference kernel (the microcontroller trade: RAM over speed).
#![allow(unsafe_code)]

use crate::kernels::fast::{self, Kernel};
use crate::EngineError;
use core::mem::{align_of, size_of, MaybeUninit};
use rsim_model::{Model, Op};

/// One decoded op and the kernel chosen for it.
#[derive(Clone, Copy, Debug)]
pub struct PreparedOp {
    pub op: Op,
    pub kernel: Kernel,
}

/// Byte sizes of the persistent part for a model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Where the records start (activations rounded up to 16).
    pub records_at: usize,
    pub records: usize,
    /// Packed weights and per-channel arrays of the fast kernels.
    pub data: usize,
}

impl Layout {
    pub fn total(&self) -> usize {
        self.records_at + self.records.next_multiple_of(16) + self.data
    }
}

/// Plans every op's kernel (no writes): the persistent sizes this build needs for `model`.
pub fn layout(model: &Model<'_>) -> Result<Layout, EngineError> {
    let mut data = 0u32;
    let mut n = 0usize;
    for op in model.ops() {
        let op = op?;
        fast::plan(&op, model, &mut data);
        n += 1;
    }
    let records_at = (model.info.arena_size as usize).next_multiple_of(16);
    Ok(Layout { records_at, records: n * size_of::<PreparedOp>(), data: data as usize })
}

/// Writes `count` records produced by `make(i)` at the start of `bytes` and returns them; `None` when
/// `bytes` is misaligned or too short, or `make`'s first error.
pub fn write_records<'b, E>(
    bytes: &'b mut [u8],
    count: usize,
    mut make: impl FnMut(usize) -> Result<PreparedOp, E>,
) -> Option<Result<&'b [PreparedOp], E>> {
    if bytes.as_ptr() as usize % align_of::<PreparedOp>() != 0
        || bytes.len() < count.checked_mul(size_of::<PreparedOp>())?
    {
        return None;
    }
    // SAFETY: the pointer is aligned for `PreparedOp` and `count` records fit in `bytes` (checked
    // above); `MaybeUninit` has no validity requirement; the exclusive borrow of `bytes` moves here.
    let recs: &'b mut [MaybeUninit<PreparedOp>] =
        unsafe { core::slice::from_raw_parts_mut(bytes.as_mut_ptr() as *mut MaybeUninit<PreparedOp>, count) };
    for (i, r) in recs.iter_mut().enumerate() {
        match make(i) {
            Ok(p) => {
                r.write(p);
            }
            Err(e) => return Some(Err(e)),
        }
    }
    // SAFETY: every one of the `count` records was written just above; `MaybeUninit<T>` has `T`'s layout.
    Some(Ok(unsafe { core::slice::from_raw_parts(recs.as_ptr() as *const PreparedOp, count) }))
}
