//! The engine: a parsed model, a prepared op list and one caller-owned arena. Nothing allocates.
//!
//! Arena contract: the caller passes any byte buffer; the engine uses it from its first 16-byte
//! aligned address (skipping up to 15 bytes), and needs [`required_arena`] bytes from there: the
//! planned activations (`info.arena_size`), then the persistent part (decoded ops and the fast
//! kernels' packed data; `prepared.rs`), or `info.arena_size` alone in [`Options::lean`] mode. An
//! unaligned buffer may need up to 15 more bytes, and one byte short is [`EngineError::ArenaTooSmall`].
//!
//! Model bytes: constants are read in place (flash stays flash) at any alignment. When the bytes
//! start 4-byte aligned (the weights section is 16-aligned within the file) f32 weights are read as
//! `&[f32]`; otherwise (e.g. a bare `include_bytes!`) as little-endian byte arrays, same results.

use crate::exec;
use crate::kernels::fast::{self, Isa, Kernel};
use crate::prepared::{self, PreparedOp};
use crate::preprocess;
use crate::EngineError;
use rsim_model::{DType, Model, Op, Quant, Tensor};

/// Alignment of the arena start the engine uses.
pub const ARENA_ALIGN: usize = 16;

/// How an engine runs: kernel choice and threads, fixed at creation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// Which kernels may run (default [`Kernels::Native`]); every choice gives the same int8 bytes.
    pub kernels: Kernels,
    /// Threads a large convolution may split over (std builds; 1 = the calling thread only). Results
    /// are bit-identical for any count.
    pub threads: usize,
    /// Microcontroller mode: no persistent part at all. The arena is only `info.arena_size` bytes, ops
    /// are decoded on every invoke and run with the reference kernels (on Cortex-M4/M7, dense int8 convs
    /// and FCs with the DSP kernel, which reads weights in place: `kernels::fast::cortex_m`).
    pub lean: bool,
    /// Compute budget: refuse (with [`EngineError::OverBudget`]) a model whose inference needs more
    /// multiply-accumulates than this ([`Model::macs`](rsim_model::Model::macs)); `None` = no limit.
    pub max_macs: Option<u64>,
}

impl Default for Options {
    fn default() -> Self {
        Options { kernels: Kernels::Native, threads: 1, lean: false, max_macs: None }
    }
}

/// Kernel families an engine may choose from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernels {
    /// Every op on its TFLM-exact reference kernel (the oracle).
    Reference,
    /// Fast kernels in plain Rust only (what non-x86 64-bit targets run; for tests on x86 too).
    Portable,
    /// The fastest this CPU offers (AVX2 on x86_64 when detected at run time; NEON on aarch64, with the
    /// dot-product extension's `sdot` when detected at run time), else portable.
    Native,
    /// As [`Native`](Self::Native) but never the aarch64 dot-product (`sdot`) kernels: NEON `smlal` on
    /// every aarch64 CPU (to test and measure that fallback on CPUs that have the extension); the same
    /// as `Native` on other targets.
    NativeNoDotProd,
}

/// One model running in one caller-owned arena. Feed it with [`set_input_f32`](Self::set_input_f32),
/// [`set_input_image_u8`](Self::set_input_image_u8) or [`input_mut`](Self::input_mut), run it with
/// [`invoke`](Self::invoke), read [`output`](Self::output), [`output_f32`](Self::output_f32) or
/// [`top_k`](Self::top_k). `run_f32` / `run_image_u8` set the input and invoke in one call.
pub struct Engine<'m, 'a> {
    model: Model<'m>,
    /// Exactly `info.arena_size` bytes, starting 16-byte aligned: the activations.
    arena: &'a mut [u8],
    /// Decoded ops with their kernels (`None` in lean mode).
    prepared: Option<&'a [PreparedOp]>,
    /// Packed weights and per-channel arrays of the fast kernels.
    persistent: &'a [u8],
    isa: Isa,
    threads: usize,
    high_water: usize,
    /// Kernel family (lean mode plans each op on every invoke).
    kernels: Kernels,
    /// Multiply-accumulates of one inference ([`Engine::macs`]).
    macs: u64,
}

/// Bytes of arena a 16-byte-aligned buffer needs for this model with default [`Options`]: the planned
/// activations, then the persistent part (decoded ops and fast-kernel data; see `prepared`).
pub fn required_arena(model: &[u8]) -> Result<usize, EngineError> {
    required_arena_with(model, &Options::default())
}

/// As [`required_arena`] for the given options (`lean`: the planned activations only).
pub fn required_arena_with(model: &[u8], opts: &Options) -> Result<usize, EngineError> {
    let model = Model::parse(model)?;
    if opts.lean {
        return Ok(model.info.arena_size as usize);
    }
    Ok(prepared::layout(&model)?.total())
}

/// What an engine decided at creation, for reports and benchmarks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PreparedReport {
    /// Instruction set of the fast kernels.
    pub isa: &'static str,
    /// Bytes of decoded op records and of packed weights / channel arrays.
    pub record_bytes: usize,
    pub kernel_bytes: usize,
    /// Ops on a fast kernel, of all ops.
    pub fast_ops: usize,
    pub ops: usize,
}

impl<'m, 'a> Engine<'m, 'a> {
    /// Parses and validates the model, checks every op (shapes, dtypes, parameters, arena placement)
    /// and takes the arena. After this, `invoke` fails only on a kernel bug, never on model bytes.
    ///
    /// Errors: [`EngineError::Model`] when the bytes do not decode or validate;
    /// [`EngineError::ArenaTooSmall`] (`needed` includes the bytes skipped to reach 16-byte
    /// alignment); [`EngineError::Unsupported`] naming the first op this runtime cannot run and why;
    /// [`EngineError::Aliasing`] when a plan puts an op's output over one of its inputs;
    /// [`EngineError::OverBudget`] when [`Options::max_macs`] is set and the model needs more.
    pub fn new(model: &'m [u8], arena: &'a mut [u8]) -> Result<Self, EngineError> {
        Self::with_options(model, arena, Options::default())
    }

    /// As [`new`](Self::new) with explicit [`Options`]; the arena needs [`required_arena_with`] bytes.
    pub fn with_options(model: &'m [u8], arena: &'a mut [u8], opts: Options) -> Result<Self, EngineError> {
        let model = Model::parse(model)?;
        let need = model.info.arena_size as usize;
        let layout = if opts.lean { None } else { Some(prepared::layout(&model)?) };
        let total = layout.map_or(need, |l| l.total());
        let addr = arena.as_ptr() as usize;
        let skip = (ARENA_ALIGN - addr % ARENA_ALIGN) % ARENA_ALIGN;
        let given = arena.len();
        let arena = match arena.get_mut(skip..).and_then(|a| a.get_mut(..total)) {
            Some(a) => a,
            None => return Err(EngineError::ArenaTooSmall { needed: total.saturating_add(skip), given }),
        };
        let mut high_water = 0;
        for t in [&model.info.input, &model.info.output] {
            let (_, end) = exec::arena_span(t)
                .ok_or(EngineError::BadInput { reason: "graph input/output must be arena tensors" })?;
            if end > need {
                return Err(EngineError::BadInput { reason: "graph input/output lies outside the arena" });
            }
            high_water = high_water.max(end);
        }
        let mut count = 0usize;
        let mut macs = 0u64;
        for (i, op) in model.ops().enumerate() {
            let op = op?;
            let hw = exec::prepare_op(i as u32, &op, &model, need)?;
            high_water = high_water.max(hw);
            macs = macs.saturating_add(op.macs());
            count += 1;
        }
        if let Some(limit) = opts.max_macs.filter(|&limit| macs > limit) {
            return Err(EngineError::OverBudget { macs, limit });
        }
        let isa = match opts.kernels {
            Kernels::Native => Isa::detect(),
            Kernels::NativeNoDotProd => Isa::detect_with(false),
            Kernels::Reference | Kernels::Portable => Isa::Portable,
        };
        let (arena, rest) = arena.split_at_mut(need);
        let (prepared, persistent): (Option<&'a [PreparedOp]>, &'a [u8]) = match layout {
            None => (None, &[]),
            Some(l) => {
                let rest = rest.get_mut(l.records_at.saturating_sub(need)..).unwrap_or_default();
                let (records, data) =
                    rest.split_at_mut(l.records.checked_next_multiple_of(16).unwrap_or(usize::MAX).min(rest.len()));
                let data = data.get_mut(..l.data).unwrap_or_default();
                let mut ops = model.ops();
                let mut at = 0u32;
                let mut index = 0u32;
                let recs = prepared::write_records(records, count, |_| -> Result<PreparedOp, EngineError> {
                    let op =
                        ops.next().ok_or(EngineError::BadInput { reason: "op count changed while preparing" })??;
                    let kernel = if opts.kernels != Kernels::Reference {
                        fast::plan(&op, &model, &mut at)
                    } else {
                        Kernel::Reference
                    };
                    fast::pack(&kernel, &op, &model, data, isa).map_err(|reason| EngineError::Unsupported {
                        op: index,
                        name: op.name(),
                        reason,
                    })?;
                    index += 1;
                    Ok(PreparedOp { op, kernel })
                })
                .ok_or(EngineError::BadInput { reason: "persistent arena part misaligned or short" })??;
                (Some(recs), &*data)
            }
        };
        Ok(Engine {
            model,
            arena,
            prepared,
            persistent,
            isa,
            threads: opts.threads.max(1),
            high_water,
            kernels: opts.kernels,
            macs,
        })
    }

    /// Kernel choice and persistent bytes decided in `new`.
    pub fn report(&self) -> PreparedReport {
        let recs = self.prepared.unwrap_or_default();
        PreparedReport {
            isa: self.isa.name(),
            record_bytes: core::mem::size_of_val(recs),
            kernel_bytes: self.persistent.len(),
            fast_ops: recs.iter().filter(|p| p.kernel != Kernel::Reference).count(),
            ops: self.model.info.op_count as usize,
        }
    }

    /// Each op's name and the kernel that runs it (empty in lean mode).
    pub fn kernels(&self) -> impl Iterator<Item = (&'static str, &'static str)> + '_ {
        self.prepared.unwrap_or_default().iter().map(|p| (p.op.name(), p.kernel.name()))
    }

    pub fn model(&self) -> &Model<'m> {
        &self.model
    }

    /// Multiply-accumulates of one inference (conv, fully connected, matmul; one per element for other
    /// ops, per tap for pools; saturating): [`rsim_model::Model::macs`], computed once in `new`.
    pub fn macs(&self) -> u64 {
        self.macs
    }

    /// Highest arena byte any tensor occupies (from the aligned start), for board telemetry.
    pub fn arena_used(&self) -> usize {
        self.high_water
    }

    fn span(&self, t: &Tensor) -> (usize, usize) {
        exec::arena_span(t).unwrap_or((0, 0))
    }

    /// Raw bytes of the graph input tensor (fill, then `invoke`).
    pub fn input_mut(&mut self) -> &mut [u8] {
        let (s, e) = self.span(&self.model.info.input);
        self.arena.get_mut(s..e).unwrap_or_default()
    }

    /// Raw bytes of the graph output tensor (valid after `invoke`).
    pub fn output(&self) -> &[u8] {
        let (s, e) = self.span(&self.model.info.output);
        self.arena.get(s..e).unwrap_or_default()
    }

    /// Runs every op in order on whatever the input tensor holds.
    pub fn invoke(&mut self) -> Result<(), EngineError> {
        self.invoke_observed(&mut |_, _, _| {})
    }

    /// As [`invoke`](Self::invoke), calling `f(op_index, op, output_bytes)` after each op, so tests can
    /// compare every intermediate tensor and boards can trace.
    pub fn invoke_observed(&mut self, f: &mut dyn FnMut(u32, &Op, &[u8])) -> Result<(), EngineError> {
        let weights = self.model.weights;
        let ctx = exec::RunCtx { weights, persistent: self.persistent, isa: self.isa, threads: self.threads };
        match self.prepared {
            Some(recs) => {
                for (i, p) in recs.iter().enumerate() {
                    let (s, e) = exec::run_op(i as u32, &p.op, &p.kernel, &ctx, self.arena)?;
                    f(i as u32, &p.op, self.arena.get(s..e).unwrap_or_default());
                }
            }
            None => {
                for (i, op) in self.model.ops().enumerate() {
                    let op = op?;
                    let kernel = if self.kernels != Kernels::Reference {
                        fast::plan_lean(&op, &self.model)
                    } else {
                        Kernel::Reference
                    };
                    let (s, e) = exec::run_op(i as u32, &op, &kernel, &ctx, self.arena)?;
                    f(i as u32, &op, self.arena.get(s..e).unwrap_or_default());
                }
            }
        }
        Ok(())
    }

    /// Writes already-normalized NHWC floats into the graph input (quantized when it is int8).
    /// The input lives in the planned arena, so a run may overwrite it: set it before every run.
    pub fn set_input_f32(&mut self, nhwc: &[f32]) -> Result<(), EngineError> {
        let input = self.model.info.input;
        let q = input_quant(&input)?;
        if Some(nhwc.len()) != input.shape.checked_len() {
            return Err(EngineError::BadInput { reason: "input length does not match the graph input tensor" });
        }
        let dst = self.input_mut();
        match q {
            None => {
                for (d, v) in dst.chunks_exact_mut(4).zip(nhwc) {
                    d.copy_from_slice(&v.to_le_bytes());
                }
            }
            Some((scale, zp)) => {
                for (d, &v) in dst.iter_mut().zip(nhwc) {
                    *d = preprocess::quantize_i8(v, scale, zp) as u8;
                }
            }
        }
        Ok(())
    }

    /// [`set_input_f32`](Self::set_input_f32), then [`invoke`](Self::invoke).
    pub fn run_f32(&mut self, nhwc: &[f32]) -> Result<(), EngineError> {
        self.set_input_f32(nhwc)?;
        self.invoke()
    }

    /// Preprocesses an image of u8 pixels (`channels` bands, in the input spec's layout) into the
    /// graph input: resize, centre crop and normalize per the model's [`InputSpec`](rsim_model::InputSpec)
    /// (see [`preprocess`](mod@crate::preprocess)).
    pub fn set_input_image_u8(
        &mut self,
        pixels: &[u8],
        width: u32,
        height: u32,
        channels: u32,
    ) -> Result<(), EngineError> {
        let info = self.model.info;
        let q = input_quant(&info.input)?;
        let img = preprocess::Image { pixels, width, height, channels, layout: info.input_spec.layout };
        let dst = self.input_mut();
        preprocess::preprocess(&img, &info.input_spec, &info.input.shape, q, dst)
    }

    /// [`set_input_image_u8`](Self::set_input_image_u8), then [`invoke`](Self::invoke).
    pub fn run_image_u8(&mut self, pixels: &[u8], width: u32, height: u32, channels: u32) -> Result<(), EngineError> {
        self.set_input_image_u8(pixels, width, height, channels)?;
        self.invoke()
    }

    /// Number of elements in the graph output.
    pub fn output_len(&self) -> usize {
        self.model.info.output.shape.checked_len().unwrap_or(0)
    }

    /// Output element `i` as f32 (int8 outputs dequantized).
    fn output_value(&self, out: &[u8], i: usize, q: Option<(f32, i32)>) -> Option<f32> {
        match q {
            None => out.get(i * 4..i * 4 + 4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            Some((scale, zp)) => out.get(i).map(|&b| rsim_model::quant::dequantize_i8(b as i8, scale, zp)),
        }
    }

    /// Writes the output as f32 (dequantizing int8) into `out[..output_len()]`; returns the count.
    pub fn output_f32(&self, out: &mut [f32]) -> Result<usize, EngineError> {
        let q = output_quant(&self.model.info.output)?;
        let n = self.output_len();
        let dst = out
            .get_mut(..n)
            .ok_or(EngineError::BadInput { reason: "output buffer is shorter than the graph output" })?;
        let bytes = self.output();
        for (i, d) in dst.iter_mut().enumerate() {
            *d = self.output_value(bytes, i, q).unwrap_or(0.0);
        }
        Ok(n)
    }

    /// The `out.len()` best classes as (index, score), best first; equal scores keep the lower index
    /// first. Returns how many entries were filled (fewer when the output has fewer classes).
    /// Scores are the dequantized outputs; NaN ranks last.
    pub fn top_k(&self, out: &mut [(u16, f32)]) -> usize {
        let Ok(q) = output_quant(&self.model.info.output) else { return 0 };
        let bytes = self.output();
        let n = self.output_len().min(u16::MAX as usize + 1);
        let scores = (0..n).map(|i| self.output_value(bytes, i, q).unwrap_or(f32::NAN));
        top_k_into(scores, out)
    }
}

/// Keeps the best `out.len()` of `scores` in `out`, sorted; see [`Engine::top_k`].
pub fn top_k_into(scores: impl Iterator<Item = f32>, out: &mut [(u16, f32)]) -> usize {
    let key = |s: f32| if s.is_nan() { f32::NEG_INFINITY } else { s };
    let mut filled = 0usize;
    for (i, s) in scores.enumerate().take(u16::MAX as usize + 1) {
        // First slot holding a strictly worse score: later equal scores stay behind earlier ones.
        let pos = out.iter().take(filled).position(|&(_, o)| key(o) < key(s)).unwrap_or(filled);
        if pos >= out.len() {
            continue;
        }
        let end = filled.min(out.len() - 1);
        if let Some(tail) = out.get_mut(pos..=end) {
            tail.rotate_right(1);
        }
        if let Some(slot) = out.get_mut(pos) {
            *slot = (i as u16, s);
        }
        filled = (filled + 1).min(out.len());
    }
    filled
}

/// The graph input's quantization: `None` for f32, `(scale, zero_point)` for per-tensor int8.
fn input_quant(t: &Tensor) -> Result<Option<(f32, i32)>, EngineError> {
    match (t.dtype, t.quant) {
        (DType::F32, _) => Ok(None),
        (DType::I8, Quant::PerTensor { scale, zero_point }) => Ok(Some((scale, zero_point))),
        (DType::I8, _) => Err(EngineError::BadInput { reason: "int8 graph input needs per-tensor quantization" }),
        _ => Err(EngineError::BadInput { reason: "graph input must be f32 or int8" }),
    }
}

fn output_quant(t: &Tensor) -> Result<Option<(f32, i32)>, EngineError> {
    input_quant(t).map_err(|_| EngineError::BadInput { reason: "graph output must be f32 or per-tensor int8" })
}
