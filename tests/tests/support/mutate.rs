//! Seeded mutations of valid `.rsm` bytes for the malformed-model test and the fuzz corpus.
//!
//! Two families: raw byte edits (truncation, bit flips, header and section-table fields, splices),
//! and structured edits that decode a valid model, change one field of the IR (a dim, an offset, a
//! quantization or op parameter) and re-encode it, so the result is well-formed postcard that reaches
//! the validator, `Engine::new` (prepare) and `invoke` (eval) instead of stopping at the decoder.
#![allow(dead_code)]

use super::Rng;
use rsim_model::format::*;
use rsim_model::*;

/// Which mutation made a case (reported with the seed when a case panics).
pub const KINDS: [&str; 9] = [
    "truncate",
    "bit-flips",
    "header-field",
    "section-entry",
    "section-table",
    "splice",
    "op-field",
    "meta-field",
    "op-list",
];

/// Edits `bytes` in place with mutation `kind` (an index into [`KINDS`]).
pub fn mutate(kind: usize, bytes: &mut Vec<u8>, rng: &mut Rng) {
    match kind {
        0 => {
            let n = rng.below(bytes.len() as u64) as usize;
            bytes.truncate(n);
            if rng.below(2) == 0 {
                set_u32(bytes, 8, n as u32); // keep the length field consistent so parsing goes further
            }
        }
        1 => {
            for _ in 0..1 + rng.below(8) {
                let at = rng.below(bytes.len() as u64) as usize;
                bytes[at] ^= 1 << rng.below(8);
            }
        }
        2 => {
            // header: version, header_len, file_len, section_count, reserved
            let at = [4, 6, 8, 16, 20, 28][rng.below(6) as usize];
            let v = interesting_u32(rng, bytes.len() as u32);
            if at == 4 || at == 6 {
                set_u16(bytes, at, v as u16);
            } else {
                set_u32(bytes, at, v);
            }
        }
        3 => {
            let count = get_u32(bytes, 16).min(MAX_SECTIONS) as usize;
            let e = HEADER_LEN + rng.below(count.max(1) as u64) as usize * SECTION_ENTRY_LEN;
            let field = e + 4 * rng.below(4) as usize; // kind, offset, len, reserved
            let v = interesting_u32(rng, bytes.len() as u32);
            set_u32(bytes, field, v);
        }
        4 => section_table_edit(bytes, rng),
        5 => {
            // insert or delete a run of bytes somewhere after the header (offsets now point wrong)
            let at = HEADER_LEN + rng.below(bytes.len().saturating_sub(HEADER_LEN).max(1) as u64) as usize;
            let at = at.min(bytes.len());
            let n = 1 + rng.below(64) as usize;
            if rng.below(2) == 0 {
                let end = (at + n).min(bytes.len());
                bytes.drain(at..end);
            } else {
                let ins = rng.bytes(n);
                bytes.splice(at..at, ins);
            }
            if rng.below(2) == 0 {
                let len = bytes.len() as u32;
                set_u32(bytes, 8, len);
            }
        }
        6..=8 => {
            if let Some(v) = structured(kind, bytes, rng) {
                *bytes = v;
            } else {
                let at = rng.below(bytes.len() as u64) as usize;
                bytes[at] ^= 0xff;
            }
        }
        _ => unreachable!("mutation kind {kind} out of range"),
    }
}

/// Recomputes the header CRC so a mutation is judged by the decoder/validator, not the checksum.
pub fn fix_crc(bytes: &mut [u8]) {
    if bytes.len() >= HEADER_LEN {
        let crc = crc32(&bytes[HEADER_LEN..]);
        set_u32(bytes, 12, crc);
    }
}

/// IEEE CRC-32, bitwise (independent of the crc32fast the decoder uses).
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

fn get_u32(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4).map_or(0, |s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}
fn set_u32(b: &mut [u8], at: usize, v: u32) {
    if let Some(s) = b.get_mut(at..at + 4) {
        s.copy_from_slice(&v.to_le_bytes());
    }
}
fn set_u16(b: &mut [u8], at: usize, v: u16) {
    if let Some(s) = b.get_mut(at..at + 2) {
        s.copy_from_slice(&v.to_le_bytes());
    }
}

/// Boundary values that break naive offset and length arithmetic.
fn interesting_u32(rng: &mut Rng, file_len: u32) -> u32 {
    let pick = [
        0,
        1,
        2,
        3,
        15,
        16,
        17,
        31,
        32,
        33,
        64,
        255,
        0x7fff,
        0x8000,
        0xffff,
        0x7fff_ffff,
        0x8000_0000,
        u32::MAX,
        u32::MAX - 3,
        u32::MAX - 15,
    ];
    match rng.below(4) {
        0 => file_len.wrapping_add(rng.below(33) as u32).wrapping_sub(16),
        1 => rng.next_u64() as u32,
        _ => pick[rng.below(pick.len() as u64) as usize],
    }
}

/// Swaps, duplicates or drops section entries, or relabels one as optional/unknown.
fn section_table_edit(bytes: &mut [u8], rng: &mut Rng) {
    let count = get_u32(bytes, 16).min(MAX_SECTIONS) as usize;
    if count == 0 || bytes.len() < HEADER_LEN + count * SECTION_ENTRY_LEN {
        return;
    }
    let entry = |i: usize| HEADER_LEN + i * SECTION_ENTRY_LEN;
    let (i, j) = (rng.below(count as u64) as usize, rng.below(count as u64) as usize);
    match rng.below(5) {
        0 => {
            let (a, b) = (entry(i), entry(j));
            for k in 0..SECTION_ENTRY_LEN {
                bytes.swap(a + k, b + k);
            }
        }
        1 => {
            let src = bytes[entry(i)..entry(i) + SECTION_ENTRY_LEN].to_vec();
            bytes[entry(j)..entry(j) + SECTION_ENTRY_LEN].copy_from_slice(&src);
        }
        2 => set_u32(bytes, 16, (count as u32).saturating_sub(1)), // the last section disappears
        3 => set_u32(bytes, entry(i), SECTION_OPTIONAL_BASE + rng.below(16) as u32), // now skipped
        _ => set_u32(bytes, entry(i), 5 + rng.below(100) as u32),  // unknown required kind
    }
}

/// Decodes `bytes` (which must be a valid model), edits the IR and re-encodes. `None` if it doesn't decode.
fn structured(kind: usize, bytes: &[u8], rng: &mut Rng) -> Option<Vec<u8>> {
    let model = Model::parse(bytes).ok()?;
    let mut info = model.info;
    let mut ops: Vec<Op> = model.ops().collect::<Result<_, _>>().ok()?;
    let weights_len = model.weights.len() as u32;
    match kind {
        6 => {
            let i = rng.below(ops.len() as u64) as usize;
            mutate_op(&mut ops[i], rng, info.arena_size, weights_len);
        }
        7 => match rng.below(6) {
            0 => info.arena_size = interesting_u32(rng, info.arena_size),
            1 => mutate_tensor(&mut info.input, rng, info.arena_size, weights_len),
            2 => mutate_tensor(&mut info.output, rng, info.arena_size, weights_len),
            3 => info.input_spec.channels = interesting_u32(rng, 3),
            4 => {
                info.input_spec.std[rng.below(4) as usize] = [0.0, f32::NAN, -1.0, f32::INFINITY][rng.below(4) as usize]
            }
            _ => info.op_count = info.op_count.wrapping_add(1), // count disagrees with the graph (see below)
        },
        _ => match rng.below(3) {
            0 if ops.len() > 1 => {
                ops.remove(rng.below(ops.len() as u64) as usize);
            }
            1 => {
                let i = rng.below(ops.len() as u64) as usize;
                ops.insert(rng.below(ops.len() as u64 + 1) as usize, ops[i]);
            }
            _ => {
                let (i, j) = (rng.below(ops.len() as u64) as usize, rng.below(ops.len() as u64) as usize);
                ops.swap(i, j);
            }
        },
    }
    let out = rsim_model::write::encode(&info, &ops, model.weights, model.test_vector);
    if kind == 7 && info.op_count != model.info.op_count && !ops.is_empty() {
        // encode() sets op_count from the list; pair this metadata with a graph one op shorter or longer.
        let mut other = ops.clone();
        if rng.below(2) == 0 {
            other.pop();
        } else {
            other.push(ops[0]);
        }
        let graph = raw_sections(&rsim_model::write::encode(&info, &other, model.weights, None))
            .into_iter()
            .find(|s| s.0 == SECTION_GRAPH)?;
        let mut sections = raw_sections(&out);
        for s in sections.iter_mut().filter(|s| s.0 == SECTION_GRAPH) {
            s.1 = graph.1.clone();
        }
        return Some(container(&sections));
    }
    Some(out)
}

/// The (kind, body) pairs of a well-formed container, read straight from its table.
pub fn raw_sections(bytes: &[u8]) -> Vec<(u32, Vec<u8>)> {
    let count = get_u32(bytes, 16).min(MAX_SECTIONS) as usize;
    (0..count)
        .filter_map(|i| {
            let e = HEADER_LEN + i * SECTION_ENTRY_LEN;
            let (off, len) = (get_u32(bytes, e + 4) as usize, get_u32(bytes, e + 8) as usize);
            Some((get_u32(bytes, e), bytes.get(off..off.checked_add(len)?)?.to_vec()))
        })
        .collect()
}

/// Lays out a v1 container from (kind, body) pairs as docs/FORMAT.md specifies: header, table,
/// bodies in order, the weights body 16-byte aligned, CRC32 over everything after the header.
pub fn container(sections: &[(u32, Vec<u8>)]) -> Vec<u8> {
    let mut b = vec![0u8; HEADER_LEN + sections.len() * SECTION_ENTRY_LEN];
    let mut entries = Vec::new();
    for (kind, body) in sections {
        if *kind == SECTION_WEIGHTS {
            b.resize(b.len().div_ceil(WEIGHTS_ALIGN) * WEIGHTS_ALIGN, 0);
        }
        entries.push((*kind, b.len() as u32, body.len() as u32));
        b.extend_from_slice(body);
    }
    b[0..4].copy_from_slice(b"RSIM");
    set_u16(&mut b, 4, 1);
    set_u16(&mut b, 6, HEADER_LEN as u16);
    let len = b.len() as u32;
    set_u32(&mut b, 8, len);
    set_u32(&mut b, 16, sections.len() as u32);
    for (i, (k, o, l)) in entries.into_iter().enumerate() {
        let e = HEADER_LEN + i * SECTION_ENTRY_LEN;
        set_u32(&mut b, e, k);
        set_u32(&mut b, e + 4, o);
        set_u32(&mut b, e + 8, l);
    }
    fix_crc(&mut b);
    b
}

fn tensors_mut(op: &mut Op) -> Vec<&mut Tensor> {
    let mut v = Vec::new();
    op.for_each_tensor_mut(|t| v.push(t));
    v
}

fn mutate_tensor(t: &mut Tensor, rng: &mut Rng, arena: u32, weights: u32) {
    match rng.below(7) {
        0 => t.shape.dims[rng.below(4) as usize] = [0, 1, 2, 3, 7, 0x1_0000, u32::MAX][rng.below(7) as usize],
        1 => t.shape.rank = [0, 1, 2, 3, 4, 5, 255][rng.below(7) as usize],
        2 => t.dtype = [DType::F32, DType::F16, DType::I8, DType::I32, DType::U8][rng.below(5) as usize],
        3 => t.storage = Storage::Arena { offset: interesting_u32(rng, arena) },
        4 => t.storage = Storage::Weights { offset: interesting_u32(rng, weights) },
        5 => {
            let scale = [0.0, -1.0, f32::NAN, f32::INFINITY, 1e-30, 1e30, 0.5][rng.below(7) as usize];
            t.quant = Quant::PerTensor { scale, zero_point: [0, -128, 127, 1000, i32::MIN][rng.below(5) as usize] };
        }
        _ => {
            let blob = Blob { offset: interesting_u32(rng, weights), len: interesting_u32(rng, 64) };
            t.quant = match rng.below(2) {
                0 => Quant::PerChannel { axis: rng.below(6) as u8, scales: blob },
                _ => Quant::None,
            };
        }
    }
}

fn wild_i32(rng: &mut Rng) -> i32 {
    [0, 1, -1, 31, 32, -31, -32, 63, 64, -64, 100, i32::MAX, i32::MIN, 1 << 30][rng.below(14) as usize]
}

fn mutate_requant(r: &mut Option<Requant>, rng: &mut Rng, weights: u32) {
    match r {
        None => {
            *r = Some(Requant {
                multiplier: Multiplier::PerTensor { mult: wild_i32(rng), shift: wild_i32(rng) },
                act_min: -128,
                act_max: 127,
            })
        }
        Some(q) => match rng.below(4) {
            0 => q.multiplier = Multiplier::PerTensor { mult: wild_i32(rng), shift: wild_i32(rng) },
            1 => {
                let b = |rng: &mut Rng| Blob { offset: interesting_u32(rng, weights), len: interesting_u32(rng, 64) };
                q.multiplier = Multiplier::PerChannel { mult: b(rng), shift: b(rng) };
            }
            2 => q.act_min = wild_i32(rng),
            _ => q.act_max = wild_i32(rng),
        },
    }
}

fn mutate_op(op: &mut Op, rng: &mut Rng, arena: u32, weights: u32) {
    if rng.below(2) == 0 {
        let mut ts = tensors_mut(op);
        let i = rng.below(ts.len() as u64) as usize;
        mutate_tensor(ts[i], rng, arena, weights);
        return;
    }
    let small = |rng: &mut Rng| [0u16, 1, 2, 3, 255, u16::MAX][rng.below(6) as usize];
    match op {
        Op::Conv2d { params, requant, bias, .. } => match rng.below(6) {
            0 => params.stride[rng.below(2) as usize] = small(rng),
            1 => params.dilation[rng.below(2) as usize] = small(rng),
            2 => params.groups = interesting_u32(rng, 8),
            3 => params.padding.top = small(rng),
            4 => *bias = None,
            _ => mutate_requant(requant, rng, weights),
        },
        Op::FullyConnected { requant, .. } | Op::GlobalAvgPool { requant, .. } => mutate_requant(requant, rng, weights),
        Op::Add { quant, .. } | Op::Mul { quant, .. } => match quant {
            Some(q) => match rng.below(4) {
                0 => q.left_shift = wild_i32(rng),
                1 => q.a_shift = wild_i32(rng),
                2 => q.out_shift = wild_i32(rng),
                _ => q.act_min = wild_i32(rng),
            },
            None => {
                *quant = Some(BinaryQuant {
                    left_shift: 20,
                    a_mult: 1 << 30,
                    a_shift: 0,
                    b_mult: 1 << 30,
                    b_shift: 0,
                    out_mult: 1 << 30,
                    out_shift: 0,
                    act_min: -128,
                    act_max: 127,
                })
            }
        },
        Op::AvgPool2d { params, act_min, .. } | Op::MaxPool2d { params, act_min, .. } => match rng.below(3) {
            0 => params.kernel[rng.below(2) as usize] = small(rng),
            1 => params.stride[rng.below(2) as usize] = small(rng),
            _ => *act_min = wild_i32(rng),
        },
        Op::Softmax { beta, quant, .. } => match (rng.below(2), quant) {
            (0, _) => *beta = [0.0, -1.0, f32::NAN, 1e30][rng.below(4) as usize],
            (_, Some(q)) => {
                q.input_left_shift = wild_i32(rng);
                q.diff_min = wild_i32(rng);
            }
            (_, q) => {
                *q = Some(SoftmaxQuant {
                    input_multiplier: wild_i32(rng),
                    input_left_shift: wild_i32(rng),
                    diff_min: wild_i32(rng),
                })
            }
        },
        Op::Concat { axis, .. } => *axis = rng.below(6) as u8,
        Op::Transpose { perm, .. } => perm[rng.below(4) as usize] = rng.below(6) as u8,
        Op::Lut { table, .. } => {
            *table = Blob { offset: interesting_u32(rng, weights), len: interesting_u32(rng, 256) }
        }
        Op::LayerNorm { eps, .. } => *eps = [0.0, -1.0, f32::NAN][rng.below(3) as usize],
        // No parameters beyond their tensors. Listed, not `_`: a new op's parameters get mutated here.
        Op::Reshape { .. }
        | Op::MatMul { .. }
        | Op::Activation { .. }
        | Op::Quantize { .. }
        | Op::Dequantize { .. } => {
            let mut ts = tensors_mut(op);
            let i = rng.below(ts.len() as u64) as usize;
            mutate_tensor(ts[i], rng, arena, weights);
        }
    }
}
