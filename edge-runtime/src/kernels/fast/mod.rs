//! Fast int8 kernels beside the TFLM-exact reference (`kernels::int8`), chosen once per op in
//! `Engine::new` and bit-identical to the reference (property tests in `tests`).
//!
//! - [`plan`] decides, per op, whether a fast kernel applies and how many persistent bytes it needs
//!   (packed weights + per-channel requantization arrays); [`pack`] fills them once.
//! - [`gemm`]: dense convolution (any kernel, stride, padding, dilation; groups 1) and fully connected
//!   as one packed int8 GEMM over im2col rows widened to i16 with the input offset applied.
//! - [`depthwise`]: depthwise convolution with multiplier 1, channels innermost.
//! - [`requant`]: TFLM's double-rounding requantization on arrays of accumulators.
//! - `x86` (x86_64): AVX2 micro-kernels and requantization (runtime-detected in std builds).
//! - `neon` (aarch64): the GEMM micro-kernels: `smlal` (NEON), `sdot` (dot-product extension,
//!   runtime-detected in std builds).
//!
//! The instruction-set code itself (intrinsics, assembly) is in the rsim-edge-simd crate, behind safe
//! functions of the tokens [`Avx2`], [`Neon`] and [`NeonDot`], which exist only where the CPU has that
//! instruction set; `x86` and `neon` here are the safe glue between those and the generic drivers.
//!
//! The fast paths exist for 64-bit application processors (x86_64, aarch64), where packing weights
//! into RAM pays; microcontrollers keep reading weights in place from flash through the reference.

pub mod add;
#[cfg(rsim_arm_dsp)]
pub mod cortex_m;
pub mod depthwise;
pub mod depthwise_f32;
pub mod gemm;
pub mod gemm_f32;
pub mod im2col;
#[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
pub mod neon;
pub mod requant;
#[cfg(target_arch = "x86_64")]
pub mod x86;

use crate::kernels::int8::{get_i32, KResult, Mults, OutStage};
pub use rsim_edge_simd::{Avx2, ChannelData, Neon, NeonDot};
use rsim_model::{Model, Multiplier, Op, Quant, Requant, Tensor};

/// Instruction set a fast kernel runs with, detected once per engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    /// Plain Rust (the compiler's baseline vectorisation for the target).
    Portable,
    /// aarch64 NEON (`smlal` int8 GEMM on i16 pairs); the token proves NEON is there.
    Neon(Neon),
    /// aarch64 NEON with the dot-product extension (`sdot` int8 GEMM on raw bytes, its own weight
    /// layout and bias: `gemm`); the token proves the CPU has it. Other kernels run as on [`Isa::Neon`].
    NeonDot(NeonDot),
    /// x86_64 AVX2 with FMA (`vpmaddwd` int8 dot products on i16 pairs, vector requantization,
    /// `vfmadd` f32); the token proves the CPU has both.
    Avx2(Avx2),
}

impl Isa {
    /// The best instruction set this CPU offers to the fast kernels: AVX2 + FMA on x86_64 (detected at
    /// run time in std builds, else when the target enables them); on aarch64 NEON with the dot-product
    /// extension (detected at run time in std builds, else when the target enables it), else NEON.
    pub fn detect() -> Isa {
        Self::detect_with(true)
    }

    /// As [`detect`](Self::detect); `dot: false` never takes [`Isa::NeonDot`] (the `smlal` kernels
    /// even on a CPU with the dot-product extension: how tests and benchmarks reach that path).
    pub fn detect_with(dot: bool) -> Isa {
        if let Some(t) = Avx2::detect() {
            return Isa::Avx2(t);
        }
        if let Some(t) = NeonDot::detect().filter(|_| dot) {
            return Isa::NeonDot(t);
        }
        if let Some(t) = Neon::detect() {
            return Isa::Neon(t);
        }
        Isa::Portable
    }

    pub fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            Isa::Neon(_) => "neon",
            Isa::NeonDot(_) => "neon-dotprod",
            Isa::Avx2(_) => "avx2",
        }
    }

    /// Whether the int8 GEMM runs the dot-product kernel (its packed weights and bias differ: `gemm`).
    pub fn gemm_dot(self) -> bool {
        matches!(self, Isa::NeonDot(_))
    }
}

/// Whether this build packs weights for fast kernels at all (64-bit application processors).
pub const FAST_PATHS: bool = cfg!(any(target_arch = "x86_64", target_arch = "aarch64"));

/// Which kernel runs an op, decided in `Engine::new`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// The reference kernel of `kernels::int8` or `kernels::float`.
    Reference,
    /// Packed int8 GEMM: dense conv (groups 1) or fully connected.
    Gemm(gemm::GemmPlan),
    /// Packed f32 GEMM: dense conv (groups 1) or fully connected on f32 activations.
    GemmF32(gemm_f32::GemmF32Plan),
    /// int8 depthwise conv with multiplier 1.
    Depthwise(depthwise::DwPlan),
    /// f32 depthwise conv with multiplier 1.
    DepthwiseF32(depthwise_f32::DwF32Plan),
    /// int8 add of same-shape tensors.
    Add(add::AddPlan),
    /// Cortex-M4/M7 DSP (`SMLAD`) dense conv or fully connected, weights read in place.
    #[cfg(rsim_arm_dsp)]
    Dsp(cortex_m::DspPlan),
}

impl Kernel {
    pub fn name(&self) -> &'static str {
        match self {
            Kernel::Reference => "reference",
            Kernel::Gemm(_) => "int8 gemm",
            Kernel::GemmF32(_) => "f32 gemm",
            Kernel::Depthwise(_) => "int8 depthwise",
            Kernel::DepthwiseF32(_) => "f32 depthwise",
            Kernel::Add(_) => "int8 add",
            #[cfg(rsim_arm_dsp)]
            Kernel::Dsp(_) => "int8 dsp",
        }
    }
}

/// A byte range of the engine's persistent area.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Span {
    pub start: u32,
    pub len: u32,
}

impl Span {
    pub fn get(self, bytes: &[u8]) -> KResult<&[u8]> {
        let s = self.start as usize;
        bytes
            .get(s..s.checked_add(self.len as usize).ok_or("span overflows")?)
            .ok_or("prepared data lies outside the persistent area")
    }
    pub fn get_mut(self, bytes: &mut [u8]) -> KResult<&mut [u8]> {
        let s = self.start as usize;
        bytes
            .get_mut(s..s.checked_add(self.len as usize).ok_or("span overflows")?)
            .ok_or("prepared data lies outside the persistent area")
    }
}

/// Per-channel requantization data, padded to a multiple of 8 channels so vector code reads whole
/// lanes: bias, multiplier, left shift, right shift (4 little-endian i32 arrays of `padded` each).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Channels {
    pub span: Span,
    pub count: u32,
    pub padded: u32,
    pub out_zp: i32,
    pub act_min: i32,
    pub act_max: i32,
    /// Every multiplier is >= 0 (all a converter writes): requantization may take the shorter exact
    /// form for non-negative multipliers.
    pub nonneg: bool,
}

impl Channels {
    fn plan(count: usize, stage: &OutStage<'_>, at: &mut u32) -> KResult<Channels> {
        let padded = count.div_ceil(8).checked_mul(8).ok_or("channel count overflows")?;
        let len = u32::try_from(padded.checked_mul(16).ok_or("channel count overflows")?)
            .map_err(|_| "channel data too large")?;
        let span = Span { start: *at, len };
        *at = at.checked_add(len).ok_or("persistent area overflows")?;
        let mut nonneg = true;
        for c in 0..count {
            nonneg &= stage.multiplier(c)?.0 >= 0;
        }
        Ok(Channels {
            span,
            count: count as u32,
            padded: padded as u32,
            out_zp: stage.out_zp,
            act_min: stage.act_min,
            act_max: stage.act_max,
            nonneg,
        })
    }

    /// Writes the four arrays: `bias[c] + extra(c)` (wrapping), `mult[c]`, `left[c]`, `right[c]`
    /// (TFLM's shift split).
    fn fill(
        &self,
        bias: Option<&[u8]>,
        stage: &OutStage<'_>,
        persistent: &mut [u8],
        extra: impl Fn(usize) -> i32,
    ) -> KResult<()> {
        let dst = self.span.get_mut(persistent)?;
        let p = self.padded as usize;
        for c in 0..p {
            let (b, m, s) = if c < self.count as usize {
                let b = match bias {
                    Some(bias) => get_i32(bias, c)?,
                    None => 0,
                };
                let (m, s) = stage.multiplier(c)?;
                (b.wrapping_add(extra(c)), m, s)
            } else {
                (0, 0, 0)
            };
            let (left, right) = requant::split_shift(s);
            for (k, v) in [b, m, left, right].into_iter().enumerate() {
                let at = (k * p + c) * 4;
                dst.get_mut(at..at + 4).ok_or("channel data short")?.copy_from_slice(&v.to_le_bytes());
            }
        }
        Ok(())
    }
}

impl Channels {
    /// Read view of the data as i32 arrays ([`ChannelData`]).
    pub fn view<'a>(&self, persistent: &'a [u8]) -> KResult<ChannelData<'a>> {
        let d = self.span.get(persistent)?;
        let p = self.padded as usize * 4;
        let part = |k: usize| d.get(k * p..(k + 1) * p).ok_or("channel data short");
        Ok(ChannelData {
            bias: part(0)?,
            mult: part(1)?,
            left: part(2)?,
            right: part(3)?,
            out_zp: self.out_zp,
            act_min: self.act_min,
            act_max: self.act_max,
            nonneg: self.nonneg,
        })
    }
}

/// An f32 or f16 constant (weights, bias) of the float fast kernels.
fn is_float_const(t: &Tensor) -> bool {
    matches!(t.storage, rsim_model::Storage::Weights { .. })
        && matches!(t.dtype, rsim_model::DType::F32 | rsim_model::DType::F16)
}

/// A float constant's values, read through the float kernels' own [`Operand`](crate::kernels::float::Operand).
fn float_const<'w>(t: &Tensor, model: &Model<'w>) -> KResult<crate::kernels::float::Operand<'w>> {
    crate::kernels::float::operand(t, model.const_bytes(t).ok_or("constant lies outside the weights blob")?)
}

fn per_tensor_zp(t: &Tensor) -> Option<i32> {
    match t.quant {
        Quant::PerTensor { zero_point, .. } if (-128..=127).contains(&zero_point) => Some(zero_point),
        _ => None,
    }
}

fn out_stage<'w>(r: &Option<Requant>, out: &Tensor, weights: &'w [u8]) -> Option<OutStage<'w>> {
    let r = r.as_ref()?;
    let mult = match r.multiplier {
        Multiplier::PerTensor { mult, shift } => Mults::PerTensor(mult, shift),
        Multiplier::PerChannel { mult, shift } => {
            let blob =
                |b: rsim_model::Blob| weights.get(b.offset as usize..(b.offset as usize).checked_add(b.len as usize)?);
            Mults::PerChannel { mult: blob(mult)?, shift: blob(shift)? }
        }
    };
    let (act_min, act_max) = (r.act_min.max(-128), r.act_max.min(127));
    (act_min <= act_max).then_some(OutStage { mult, out_zp: per_tensor_zp(out)?, act_min, act_max })
}

/// Chooses the kernel for an (already validated) op and reserves its persistent bytes from `at`.
/// Returns `Kernel::Reference` whenever no fast kernel applies; never fails the engine.
pub fn plan(op: &Op, model: &Model<'_>, at: &mut u32) -> Kernel {
    #[cfg(rsim_arm_dsp)]
    if let Some(p) = cortex_m::plan(op, model) {
        return Kernel::Dsp(p);
    }
    if !FAST_PATHS {
        return Kernel::Reference;
    }
    let start = *at;
    let k = match op {
        Op::Conv2d { .. } | Op::FullyConnected { .. } if !crate::exec::is_int8(op) => {
            gemm_f32::plan(op, at).map(Kernel::GemmF32).or_else(|| {
                *at = start;
                depthwise_f32::plan(op, at).map(Kernel::DepthwiseF32)
            })
        }
        Op::Conv2d { .. } | Op::FullyConnected { .. } => gemm::plan(op, model, at).map(Kernel::Gemm).or_else(|| {
            *at = start;
            depthwise::plan(op, model, at).map(Kernel::Depthwise)
        }),
        Op::Add { .. } => add::plan(op).map(Kernel::Add),
        // The reference kernel. Listed, not `_`: a new op must decide whether a fast kernel applies.
        Op::Mul { .. }
        | Op::AvgPool2d { .. }
        | Op::MaxPool2d { .. }
        | Op::GlobalAvgPool { .. }
        | Op::Reshape { .. }
        | Op::Softmax { .. }
        | Op::Concat { .. }
        | Op::LayerNorm { .. }
        | Op::MatMul { .. }
        | Op::Transpose { .. }
        | Op::Activation { .. }
        | Op::Lut { .. }
        | Op::Quantize { .. }
        | Op::Dequantize { .. } => None,
    };
    match k {
        Some(k) => k,
        None => {
            *at = start;
            Kernel::Reference
        }
    }
}

/// The kernel for an op in lean mode (no persistent part): one needing no persistent bytes (the
/// Cortex-M DSP conv/FC), else the reference.
pub fn plan_lean(op: &Op, model: &Model<'_>) -> Kernel {
    #[cfg(rsim_arm_dsp)]
    if let Some(p) = cortex_m::plan(op, model) {
        return Kernel::Dsp(p);
    }
    let _ = (op, model);
    Kernel::Reference
}

/// Fills the persistent bytes of a planned kernel (packed weights, channel arrays) for the kernels
/// `isa` runs (the int8 GEMM's layout depends on it: the same size either way).
pub fn pack(kernel: &Kernel, op: &Op, model: &Model<'_>, persistent: &mut [u8], isa: Isa) -> KResult<()> {
    match kernel {
        Kernel::Reference => Ok(()),
        Kernel::Gemm(p) => gemm::pack(p, op, model, persistent, isa),
        Kernel::GemmF32(p) => gemm_f32::pack(p, op, model, persistent),
        Kernel::DepthwiseF32(p) => depthwise_f32::pack(p, op, model, persistent),
        Kernel::Depthwise(p) => depthwise::pack(p, op, model, persistent),
        Kernel::Add(_) => Ok(()),
        #[cfg(rsim_arm_dsp)]
        Kernel::Dsp(_) => Ok(()),
    }
}

/// Runs a fast kernel. `inputs` as for `kernels::int8::eval` (activation first); `weights` is the
/// model's constant blob (the DSP kernel's per-channel multipliers).
pub fn run(
    kernel: &Kernel,
    isa: Isa,
    threads: usize,
    inputs: &[&[u8]],
    persistent: &[u8],
    weights: &[u8],
    out: &mut [u8],
) -> KResult<()> {
    let x = inputs.first().copied().ok_or("fewer input buffers than the op reads")?;
    let _ = weights;
    match kernel {
        Kernel::Reference => Err("reference op routed to the fast kernels"),
        Kernel::Gemm(p) => gemm::run(p, isa, threads, x, persistent, out),
        Kernel::GemmF32(p) => gemm_f32::run(p, isa, threads, x, persistent, out),
        Kernel::DepthwiseF32(p) => depthwise_f32::run(p, isa, x, persistent, out),
        Kernel::Depthwise(p) => {
            let w = inputs.get(1).copied().ok_or("fewer input buffers than the op reads")?;
            depthwise::run(p, isa, x, w, persistent, out)
        }
        Kernel::Add(p) => {
            add::run(p, isa, x, inputs.get(1).copied().ok_or("fewer input buffers than the op reads")?, out)
        }
        #[cfg(rsim_arm_dsp)]
        Kernel::Dsp(p) => cortex_m::run(p, inputs, weights, out),
    }
}
