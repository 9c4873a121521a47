//! Prepared ops: every op decoded, validated and given its kernel once, in `Engine::new`, into the
//! arena's persistent part, so `invoke` only runs kernels.
//!
//! Arena layout (from its 16-byte-aligned start):
//! `[activations: info.arena_size][records: op_count x PreparedOp][kernel data: packed weights, ...]`,
//! each part starting 16-byte aligned. [`layout`] computes the sizes from the model alone (the same on
//! every run of the same build), so [`crate::required_arena`] is known before any engine exists.
//! An arena with room for the activations only still runs: ops are then decoded on each invoke and
//! every op uses its reference kernel (the microcontroller trade: RAM over speed).

use crate::kernels::fast::{self, Kernel};
use crate::EngineError;
use core::mem::size_of;
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
    /// Bytes in all; saturates (an arena that large is never given, so it ends as `ArenaTooSmall`).
    pub fn total(&self) -> usize {
        let records = self.records.checked_next_multiple_of(16).unwrap_or(usize::MAX);
        self.records_at.saturating_add(records).saturating_add(self.data)
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
    // u32 arena sizes near u32::MAX must not wrap a 32-bit usize.
    let records_at = (model.info.arena_size as usize).checked_next_multiple_of(16).unwrap_or(usize::MAX);
    Ok(Layout { records_at, records: n.saturating_mul(size_of::<PreparedOp>()), data: data as usize })
}

/// Writes `count` records produced by `make(i)` at the start of `bytes` and returns them; `None` when
/// `bytes` is misaligned or too short, or `make`'s first error (`rsim_edge_simd::records`).
pub fn write_records<E>(
    bytes: &mut [u8],
    count: usize,
    make: impl FnMut(usize) -> Result<PreparedOp, E>,
) -> Option<Result<&[PreparedOp], E>> {
    rsim_edge_simd::records::write_records(bytes, count, make)
}
