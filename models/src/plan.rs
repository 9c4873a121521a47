//! Offline arena planner: every activation tensor gets an offset in one arena, chosen from its
//! lifetime (first write to last read) so tensors that are never live together share bytes.
//!
//! Placement is TFLite Micro's `GreedyMemoryPlanner` idea: buffers in decreasing size, each at the
//! lowest 16-byte-aligned offset that does not collide with an already placed buffer whose lifetime
//! overlaps. A `Reshape` output aliases its input (same bytes, planned once). The report carries the
//! liveness lower bound (the largest sum of sizes live at one op), which no planner can beat.

use crate::graph::*;
use std::collections::HashMap;
use std::fmt;

/// Arena offsets are multiples of this (SIMD loads, and what the runtime asserts).
pub const ARENA_ALIGN: usize = 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArenaPlan {
    /// Bytes of arena the placement needs.
    pub arena_size: usize,
    /// Largest sum of live tensor bytes at any op: no placement can use less.
    pub lower_bound: usize,
    /// Distinct activation buffers placed (after aliasing reshapes).
    pub buffers: usize,
}

impl ArenaPlan {
    /// `arena_size / lower_bound` (1.0 is optimal).
    pub fn ratio(&self) -> f64 {
        self.arena_size as f64 / self.lower_bound.max(1) as f64
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlanError {
    /// Op `op` reads activation `tensor` before any op (or the graph input) wrote it.
    ReadBeforeWrite { op: usize, tensor: u16 },
    /// A tensor's byte size overflows.
    TooLarge { tensor: u16 },
    /// Two ops write the same activation.
    WrittenTwice { op: usize, tensor: u16 },
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlanError::ReadBeforeWrite { op, tensor } => {
                write!(f, "op #{op} reads tensor {tensor} before anything writes it")
            }
            PlanError::TooLarge { tensor } => write!(f, "tensor {tensor} is too large to place in an arena"),
            PlanError::WrittenTwice { op, tensor } => {
                write!(f, "op #{op} writes tensor {tensor}, which an earlier op already wrote")
            }
        }
    }
}

impl std::error::Error for PlanError {}

fn is_arena(t: &Tensor) -> bool {
    matches!(t.storage, Storage::Arena { .. })
}

/// One physical buffer: one tensor, or a chain of reshapes of it.
#[derive(Clone, Debug)]
struct Buffer {
    id: u16,
    size: usize,
    first: usize,
    last: usize,
}

fn align(n: usize) -> usize {
    n.div_ceil(ARENA_ALIGN) * ARENA_ALIGN
}

/// Plans the arena for `ops` with graph `input` (live from the start) and `output` (live to the end),
/// rewriting every arena offset in place, in the ops and in `input`/`output`.
pub fn plan(ops: &mut [Op], input: &mut Tensor, output: &mut Tensor) -> Result<ArenaPlan, PlanError> {
    // Map tensor id -> buffer index; lifetimes in op steps.
    let mut buf_of: HashMap<u16, usize> = HashMap::new();
    let mut bufs: Vec<Buffer> = Vec::new();
    let size_of = |t: &Tensor| t.byte_len().ok_or(PlanError::TooLarge { tensor: t.id });
    buf_of.insert(input.id, 0);
    bufs.push(Buffer { id: input.id, size: size_of(input)?, first: 0, last: 0 });

    for (step, op) in ops.iter().enumerate() {
        let mut reads = Vec::new();
        op.for_each_tensor(|t| reads.push(*t));
        #[allow(clippy::expect_used, reason = "for_each_tensor ends with the op's output for every variant")]
        let out = reads.pop().expect("every op has an output");
        for t in reads.iter().filter(|t| is_arena(t)) {
            let b = *buf_of.get(&t.id).ok_or(PlanError::ReadBeforeWrite { op: step, tensor: t.id })?;
            bufs[b].last = bufs[b].last.max(step);
        }
        if buf_of.contains_key(&out.id) {
            return Err(PlanError::WrittenTwice { op: step, tensor: out.id });
        }
        match op {
            // Same bytes under a new shape: extend the input's buffer instead of placing a new one.
            Op::Reshape { input: i, .. } if is_arena(i) => {
                let b = buf_of[&i.id];
                bufs[b].size = bufs[b].size.max(size_of(&out)?);
                buf_of.insert(out.id, b);
            }
            // Listed, not `_`: a new op that could alias its input must say so here.
            Op::Reshape { .. }
            | Op::Conv2d { .. }
            | Op::FullyConnected { .. }
            | Op::Add { .. }
            | Op::Mul { .. }
            | Op::AvgPool2d { .. }
            | Op::MaxPool2d { .. }
            | Op::GlobalAvgPool { .. }
            | Op::Softmax { .. }
            | Op::Concat { .. }
            | Op::LayerNorm { .. }
            | Op::MatMul { .. }
            | Op::Transpose { .. }
            | Op::Activation { .. }
            | Op::Lut { .. }
            | Op::Quantize { .. }
            | Op::Dequantize { .. } => {
                buf_of.insert(out.id, bufs.len());
                bufs.push(Buffer { id: out.id, size: size_of(&out)?, first: step, last: step });
            }
        }
    }
    let end = ops.len().saturating_sub(1);
    let out_buf = *buf_of.get(&output.id).ok_or(PlanError::ReadBeforeWrite { op: ops.len(), tensor: output.id })?;
    bufs[out_buf].last = end;

    let lower_bound = (0..=end)
        .map(|s| bufs.iter().filter(|b| b.first <= s && s <= b.last).map(|b| b.size).sum::<usize>())
        .max()
        .unwrap_or(0);
    let offsets = place(&bufs)?;
    let arena_size = bufs.iter().zip(&offsets).map(|(b, &o)| o + align(b.size)).max().unwrap_or(0);

    let offset_of = |t: &Tensor| buf_of.get(&t.id).map(|&b| offsets[b]);
    let mut fix = |t: &mut Tensor| {
        let planned = offset_of(t);
        if let (Storage::Arena { offset }, Some(o)) = (&mut t.storage, planned) {
            *offset = o as u32;
        }
    };
    for op in ops.iter_mut() {
        op.for_each_tensor_mut(&mut fix);
    }
    fix(input);
    fix(output);
    Ok(ArenaPlan { arena_size, lower_bound, buffers: bufs.len() })
}

/// Greedy by size: largest first, each at the lowest aligned offset free over its whole lifetime.
fn place(bufs: &[Buffer]) -> Result<Vec<usize>, PlanError> {
    let mut order: Vec<usize> = (0..bufs.len()).collect();
    // Ties by first use keep the result independent of hash order and stable across runs.
    order.sort_by_key(|&i| (std::cmp::Reverse(bufs[i].size), bufs[i].first));
    let mut offsets = vec![0usize; bufs.len()];
    let mut placed: Vec<usize> = Vec::new();
    for &i in &order {
        let b = &bufs[i];
        let mut busy: Vec<(usize, usize)> = placed
            .iter()
            .filter(|&&j| bufs[j].first <= b.last && b.first <= bufs[j].last)
            .map(|&j| (offsets[j], offsets[j] + align(bufs[j].size)))
            .collect();
        busy.sort_unstable();
        let need = align(b.size);
        let mut at = 0usize;
        for (start, stop) in busy {
            if at + need <= start {
                break;
            }
            at = at.max(stop);
        }
        if at.checked_add(need).is_none_or(|e| e > u32::MAX as usize) {
            return Err(PlanError::TooLarge { tensor: b.id });
        }
        offsets[i] = at;
        placed.push(i);
    }
    Ok(offsets)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn act(id: u16, bytes: u32) -> Tensor {
        Tensor {
            id,
            dtype: DType::F32,
            shape: Shape::new(&[bytes / 4]),
            storage: Storage::Arena { offset: 0 },
            quant: Quant::None,
        }
    }
    fn relu(i: Tensor, o: Tensor) -> Op {
        Op::Activation { input: i, output: o, activation: Activation::Relu }
    }
    fn offset(t: &Tensor) -> u32 {
        match t.storage {
            Storage::Arena { offset } => offset,
            Storage::Weights { .. } => panic!("not an activation"),
        }
    }

    #[test]
    fn chain_ping_pongs_two_buffers() {
        // 0 -> 1 -> 2 -> 3, all 64 bytes: two live at a time, so 128 bytes suffice.
        let mut ops = vec![relu(act(0, 64), act(1, 64)), relu(act(1, 64), act(2, 64)), relu(act(2, 64), act(3, 64))];
        let (mut i, mut o) = (act(0, 64), act(3, 64));
        let p = plan(&mut ops, &mut i, &mut o).unwrap();
        assert_eq!((p.arena_size, p.lower_bound, p.buffers), (128, 128, 4));
        for op in &ops {
            let Op::Activation { input, output, .. } = op else { unreachable!() };
            assert_ne!(offset(input), offset(output), "an op's input and output must not overlap");
        }
        let Op::Activation { input, .. } = ops[0] else { unreachable!() };
        assert_eq!(offset(&i), offset(&input), "graph input rewritten with its op");
    }

    #[test]
    fn skip_connection_stays_live_and_offsets_are_aligned() {
        // a(40 B) feeds b and the final add: a must survive b and c.
        let (a, b, c, d) = (act(0, 40), act(1, 100), act(2, 40), act(3, 40));
        let mut ops =
            vec![relu(a, b), relu(b, c), Op::Add { a: c, b: a, output: d, activation: Activation::None, quant: None }];
        let (mut i, mut o) = (a, d);
        let p = plan(&mut ops, &mut i, &mut o).unwrap();
        // Live at step 1: a, b, c = 180 bytes; aligned placement needs 48 + 112 + 48.
        assert_eq!(p.lower_bound, 180);
        assert_eq!(p.arena_size, 208);
        let mut seen = Vec::new();
        for op in &ops {
            op.for_each_tensor(|t| seen.push((t.id, offset(t))));
        }
        assert!(seen.iter().all(|(_, off)| off % ARENA_ALIGN as u32 == 0));
        let off = |id| seen.iter().find(|(i, _)| *i == id).unwrap().1;
        assert!(off(0) != off(1) && off(0) != off(2) && off(1) != off(2));
    }

    #[test]
    fn reshape_aliases_its_input() {
        let (a, b) = (act(0, 64), act(1, 64));
        let c = Tensor { shape: Shape::new(&[2, 8]), ..act(2, 64) };
        let mut ops = vec![relu(a, b), Op::Reshape { input: b, output: c }];
        let (mut i, mut o) = (a, c);
        let p = plan(&mut ops, &mut i, &mut o).unwrap();
        assert_eq!(p.buffers, 2);
        let Op::Reshape { input, output } = ops[1] else { unreachable!() };
        assert_eq!(offset(&input), offset(&output));
        assert_eq!(offset(&o), offset(&output));
    }

    #[test]
    fn read_before_write_and_double_write_are_errors() {
        let mut ops = vec![relu(act(5, 16), act(1, 16))];
        let (mut i, mut o) = (act(0, 16), act(1, 16));
        assert_eq!(plan(&mut ops, &mut i, &mut o), Err(PlanError::ReadBeforeWrite { op: 0, tensor: 5 }));
        let mut ops = vec![relu(act(0, 16), act(1, 16)), relu(act(0, 16), act(1, 16))];
        assert_eq!(plan(&mut ops, &mut i, &mut o), Err(PlanError::WrittenTwice { op: 1, tensor: 1 }));
    }
}
