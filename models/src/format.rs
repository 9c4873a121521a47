//! The `.rsm` container: decode and validate in place (see `docs/FORMAT.md`).
//!
//! Layout (all integers little-endian):
//! ```text
//! 0   magic "RSIM"            4   version u16       6   header_len u16 (= 32)
//! 8   file_len u32            12  crc32 u32 of bytes [32, file_len)
//! 16  section_count u32       20  reserved, 12 zero bytes
//! 32  section table: section_count x { kind u32, offset u32, len u32, reserved u32 }
//! ..  sections (META postcard ModelInfo, GRAPH postcard ops, WEIGHTS 16-aligned blob, ...)
//! ```

use crate::error::{ModelError, SectionKind};
use crate::graph::*;
use serde::{Deserialize, Serialize};

pub const MAGIC: [u8; 4] = *b"RSIM";
pub const FORMAT_VERSION: u16 = 1;
pub const HEADER_LEN: usize = 32;
pub const SECTION_ENTRY_LEN: usize = 16;
pub const WEIGHTS_ALIGN: usize = 16;
/// More sections than this is certainly a corrupt table (v1 writes at most 4).
pub const MAX_SECTIONS: u32 = 64;

pub const SECTION_META: u32 = 1;
pub const SECTION_GRAPH: u32 = 2;
pub const SECTION_WEIGHTS: u32 = 3;
pub const SECTION_TEST_VECTOR: u32 = 4;
/// Kinds at or above this are optional: a reader that does not know them skips them.
pub const SECTION_OPTIONAL_BASE: u32 = 0x8000;

/// An input and the output the writer's own runtime produced for it; boards run it as a boot self-test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestVector<'a> {
    /// Raw bytes of the graph input tensor.
    pub input: &'a [u8],
    /// Raw bytes of the graph output tensor.
    pub output: &'a [u8],
}

/// A validated model borrowing its bytes (e.g. straight from flash).
#[derive(Clone, Copy, Debug)]
pub struct Model<'a> {
    pub bytes: &'a [u8],
    pub info: ModelInfo<'a>,
    pub graph: &'a [u8],
    pub weights: &'a [u8],
    pub test_vector: Option<TestVector<'a>>,
}

fn rd_u32(b: &[u8], at: usize) -> u32 {
    // Callers check bounds first; a short slice reads as zero rather than panicking.
    match b.get(at..at + 4) {
        Some(s) => u32::from_le_bytes([s[0], s[1], s[2], s[3]]),
        None => 0,
    }
}

fn kind_of(k: u32) -> SectionKind {
    match k {
        SECTION_META => SectionKind::Meta,
        SECTION_GRAPH => SectionKind::Graph,
        SECTION_WEIGHTS => SectionKind::Weights,
        SECTION_TEST_VECTOR => SectionKind::TestVector,
        other => SectionKind::Other(other),
    }
}

impl<'a> Model<'a> {
    /// Decodes and validates every header field, section, op and tensor reference.
    pub fn parse(bytes: &'a [u8]) -> Result<Model<'a>, ModelError> {
        if bytes.len() < HEADER_LEN {
            return Err(ModelError::TooShort { len: bytes.len() });
        }
        if bytes[0..4] != MAGIC {
            return Err(ModelError::BadMagic);
        }
        let version = u16::from_le_bytes([bytes[4], bytes[5]]);
        if version != FORMAT_VERSION {
            return Err(ModelError::UnsupportedVersion { found: version, supported: FORMAT_VERSION });
        }
        if u16::from_le_bytes([bytes[6], bytes[7]]) as usize != HEADER_LEN {
            return Err(ModelError::BadHeader { reason: "header length is not 32" });
        }
        let file_len = rd_u32(bytes, 8);
        if file_len as usize != bytes.len() {
            return Err(ModelError::LengthMismatch { header: file_len, actual: bytes.len() });
        }
        let stored = rd_u32(bytes, 12);
        let computed = crc32fast::hash(&bytes[HEADER_LEN..]);
        if stored != computed {
            return Err(ModelError::CrcMismatch { stored, computed });
        }
        if bytes[20..32].iter().any(|&b| b != 0) {
            return Err(ModelError::BadHeader { reason: "reserved bytes are not zero" });
        }
        let count = rd_u32(bytes, 16);
        if count > MAX_SECTIONS {
            return Err(ModelError::BadHeader { reason: "too many sections" });
        }
        let table_end = HEADER_LEN + count as usize * SECTION_ENTRY_LEN;
        if table_end > bytes.len() {
            return Err(ModelError::BadHeader { reason: "section table runs past the end of the file" });
        }

        let (mut meta, mut graph, mut weights, mut tv): (
            Option<&[u8]>,
            Option<&[u8]>,
            Option<(u32, &[u8])>,
            Option<&[u8]>,
        ) = (None, None, None, None);
        for i in 0..count as usize {
            let e = HEADER_LEN + i * SECTION_ENTRY_LEN;
            let (kind, off, len) = (rd_u32(bytes, e), rd_u32(bytes, e + 4), rd_u32(bytes, e + 8));
            if rd_u32(bytes, e + 12) != 0 {
                return Err(ModelError::BadHeader { reason: "reserved section field is not zero" });
            }
            let sk = kind_of(kind);
            let end = (off as usize).checked_add(len as usize).ok_or(ModelError::SectionOutOfBounds { section: sk })?;
            if (off as usize) < table_end || end > bytes.len() {
                return Err(ModelError::SectionOutOfBounds { section: sk });
            }
            let body = &bytes[off as usize..end];
            let slot = match kind {
                SECTION_META => &mut meta,
                SECTION_GRAPH => &mut graph,
                SECTION_TEST_VECTOR => &mut tv,
                SECTION_WEIGHTS => {
                    if weights.is_some() {
                        return Err(ModelError::DuplicateSection { section: sk });
                    }
                    if !(off as usize).is_multiple_of(WEIGHTS_ALIGN) {
                        return Err(ModelError::MisalignedWeights { offset: off });
                    }
                    weights = Some((off, body));
                    continue;
                }
                k if k >= SECTION_OPTIONAL_BASE => continue,
                _ => return Err(ModelError::BadHeader { reason: "unknown required section kind" }),
            };
            if slot.is_some() {
                return Err(ModelError::DuplicateSection { section: sk });
            }
            *slot = Some(body);
        }
        let meta = meta.ok_or(ModelError::MissingSection { section: SectionKind::Meta })?;
        let graph = graph.ok_or(ModelError::MissingSection { section: SectionKind::Graph })?;
        let weights = weights.map(|(_, w)| w).unwrap_or(&[]);

        let info: ModelInfo<'a> =
            postcard::from_bytes(meta).map_err(|_| ModelError::Decode { section: SectionKind::Meta })?;
        let test_vector = match tv {
            Some(t) => Some(
                postcard::from_bytes::<TestVector<'a>>(t)
                    .map_err(|_| ModelError::Decode { section: SectionKind::TestVector })?,
            ),
            None => None,
        };
        let model = Model { bytes, info, graph, weights, test_vector };
        model.validate()?;
        Ok(model)
    }

    /// Iterates the ops in execution order. Each item decodes one op; `parse` already proved they all decode.
    pub fn ops(&self) -> OpIter<'a> {
        OpIter { rest: self.graph, index: 0, remaining: self.info.op_count }
    }

    /// Bytes of a blob in the weights section, if in bounds.
    pub fn blob(&self, b: Blob) -> Option<&'a [u8]> {
        let start = b.offset as usize;
        self.weights.get(start..start.checked_add(b.len as usize)?)
    }

    /// Bytes of a constant tensor, if it is one and in bounds.
    pub fn const_bytes(&self, t: &Tensor) -> Option<&'a [u8]> {
        match t.storage {
            Storage::Weights { offset } => self.blob(Blob { offset, len: u32::try_from(t.byte_len()?).ok()? }),
            Storage::Arena { .. } => None,
        }
    }

    fn validate(&self) -> Result<(), ModelError> {
        let info = &self.info;
        let spec = &info.input_spec;
        if spec.channels == 0 || spec.channels as usize > MAX_BANDS || spec.height == 0 || spec.width == 0 {
            return Err(ModelError::BadMeta { reason: "input spec has a zero size or more than 16 channels" });
        }
        if spec.std[..spec.channels as usize].iter().any(|s| !s.is_finite() || *s == 0.0)
            || spec.mean[..spec.channels as usize].iter().any(|m| !m.is_finite())
        {
            return Err(ModelError::BadMeta { reason: "input mean/std must be finite and std non-zero" });
        }
        for (t, what) in [(&info.input, "graph input"), (&info.output, "graph output")] {
            self.check_tensor(u32::MAX, t).map_err(|_| ModelError::BadMeta {
                reason: if what == "graph input" {
                    "graph input tensor is invalid"
                } else {
                    "graph output tensor is invalid"
                },
            })?;
            if !matches!(t.storage, Storage::Arena { .. }) {
                return Err(ModelError::BadMeta { reason: "graph input/output must live in the arena" });
            }
        }
        if info.op_count == 0 {
            return Err(ModelError::BadMeta { reason: "graph has no ops" });
        }
        let mut n = 0u32;
        for op in self.ops() {
            let op = op?;
            let mut err = Ok(());
            op.for_each_tensor(|t| {
                if err.is_ok() {
                    err = self.check_tensor(n, t);
                }
            });
            err?;
            self.check_op_params(n, &op)?;
            if !matches!(op.output().storage, Storage::Arena { .. }) {
                return Err(ModelError::BadOp { op: n, reason: "output must be in the arena" });
            }
            n += 1;
        }
        if n != info.op_count {
            return Err(ModelError::Decode { section: SectionKind::Graph });
        }
        if let Some(tv) = &self.test_vector {
            if Some(tv.input.len()) != info.input.byte_len() || Some(tv.output.len()) != info.output.byte_len() {
                return Err(ModelError::BadMeta { reason: "test vector size does not match the graph input/output" });
            }
        }
        Ok(())
    }

    fn check_tensor(&self, op: u32, t: &Tensor) -> Result<(), ModelError> {
        let bad = |reason| ModelError::BadOp { op, reason };
        if t.shape.rank > 4 {
            return Err(bad("tensor rank above 4"));
        }
        let len = t.byte_len().ok_or(bad("tensor size overflows"))?;
        match t.storage {
            Storage::Arena { offset } => {
                let end = (offset as usize).checked_add(len);
                if end.is_none_or(|e| e > self.info.arena_size as usize) {
                    return Err(ModelError::TensorOutOfBounds { op, tensor: t.id });
                }
            }
            Storage::Weights { .. } => {
                if self.const_bytes(t).is_none() {
                    return Err(ModelError::TensorOutOfBounds { op, tensor: t.id });
                }
            }
        }
        match t.quant {
            Quant::None => {}
            Quant::PerTensor { scale, .. } => {
                if !(scale.is_finite() && scale > 0.0) {
                    return Err(bad("quantization scale must be finite and positive"));
                }
            }
            Quant::PerChannel { axis, scales } => {
                let dim = *t.shape.dims().get(axis as usize).ok_or(bad("per-channel axis out of range"))?;
                if scales.len as u64 != dim as u64 * 4 || self.blob(scales).is_none() {
                    return Err(bad("per-channel scales blob has the wrong size or lies outside the weights"));
                }
            }
        }
        Ok(())
    }

    fn check_op_params(&self, op: u32, o: &Op) -> Result<(), ModelError> {
        let bad = |reason| ModelError::BadOp { op, reason };
        let check_mult = |r: &Option<Requant>, channels: u32| -> Result<(), ModelError> {
            if let Some(Requant { multiplier: Multiplier::PerChannel { mult, shift }, .. }) = r {
                for b in [mult, shift] {
                    if b.len as u64 != channels as u64 * 4 || self.blob(*b).is_none() {
                        return Err(bad("per-channel multiplier blob has the wrong size"));
                    }
                }
            }
            Ok(())
        };
        match o {
            Op::Conv2d { output, requant, params, .. } => {
                if params.stride.contains(&0) || params.dilation.contains(&0) || params.groups == 0 {
                    return Err(bad("conv stride, dilation and groups must be non-zero"));
                }
                check_mult(requant, output.shape.nhwc()[3] as u32)?;
            }
            Op::FullyConnected { output, requant, .. } => {
                let d = output.shape.dims();
                check_mult(requant, d.last().copied().unwrap_or(1))?;
            }
            Op::GlobalAvgPool { requant: Some(Requant { multiplier: Multiplier::PerChannel { .. }, .. }), .. } => {
                return Err(bad("global pool multiplier must be per-tensor"));
            }
            Op::GlobalAvgPool { .. } => {}
            Op::AvgPool2d { params, .. } | Op::MaxPool2d { params, .. } => {
                if params.kernel.contains(&0) || params.stride.contains(&0) {
                    return Err(bad("pool kernel and stride must be non-zero"));
                }
            }
            Op::Concat { inputs, axis, .. } => {
                if inputs[0].is_none() || *axis > 3 {
                    return Err(bad("concat needs a first input and an axis below 4"));
                }
            }
            Op::Transpose { perm, input, .. } => {
                let r = input.shape.rank as usize;
                let mut seen = [false; 4];
                for &p in &perm[..r] {
                    if p as usize >= r || core::mem::replace(&mut seen[p as usize], true) {
                        return Err(bad("transpose permutation is not a permutation"));
                    }
                }
            }
            Op::Lut { table, .. } => {
                if table.len != 256 || self.blob(*table).is_none() {
                    return Err(bad("lookup table must be 256 bytes inside the weights"));
                }
            }
            Op::Softmax { beta, .. } => {
                if !beta.is_finite() {
                    return Err(bad("softmax beta must be finite"));
                }
            }
            Op::LayerNorm { eps, .. } => {
                if !(eps.is_finite() && *eps >= 0.0) {
                    return Err(bad("layer norm eps must be finite and non-negative"));
                }
            }
            // No parameters beyond their tensors (the runtime's prepare checks shapes and dtypes).
            // Listed, not `_`: a new op must decide what it validates here.
            Op::Add { .. }
            | Op::Mul { .. }
            | Op::Reshape { .. }
            | Op::MatMul { .. }
            | Op::Activation { .. }
            | Op::Quantize { .. }
            | Op::Dequantize { .. } => {}
        }
        Ok(())
    }
}

/// Decodes the first op of `bytes` (the GRAPH section's encoding), returning it and the rest.
pub fn decode_op(bytes: &[u8]) -> Result<(Op, &[u8]), ModelError> {
    postcard::take_from_bytes::<Op>(bytes).map_err(|_| ModelError::Decode { section: SectionKind::Graph })
}

/// Iterator over the ops of the graph section.
#[derive(Clone, Debug)]
pub struct OpIter<'a> {
    rest: &'a [u8],
    index: u32,
    remaining: u32,
}

impl Iterator for OpIter<'_> {
    type Item = Result<Op, ModelError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        match decode_op(self.rest) {
            Ok((op, rest)) => {
                self.rest = rest;
                self.index += 1;
                self.remaining -= 1;
                Some(Ok(op))
            }
            Err(e) => {
                self.remaining = 0;
                Some(Err(e))
            }
        }
    }
}
