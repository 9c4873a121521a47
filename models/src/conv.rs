//! The one checked geometry of a [`Op::Conv2d`](crate::graph::Op::Conv2d): which kind of convolution
//! it is and every size a kernel needs, from the tensors' shapes and the op's parameters.
//!
//! Every reader (float and int8 runtime, fast-kernel planners, PTQ, ONNX export, TFLite import, the
//! trainer) asks this one function, so they cannot disagree about what a conv means. `no_std`, no
//! allocation, no panic: malformed models get a [`ConvError`].

use crate::graph::{Conv2dParams, Shape, Tensor};
use core::fmt;

/// How input channels feed output channels, which also fixes the weights' layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvKind {
    /// `groups == 1`; weights OHWI `[out_c, kh, kw, in_c]`.
    Dense,
    /// `groups == in_c`, weights 1HW(C*M) `[1, kh, kw, in_c * multiplier]` (TFLite's
    /// DEPTHWISE_CONV_2D): output channel `c * multiplier + m` reads input channel `c`.
    Depthwise { multiplier: usize },
    /// `groups > 1`; weights OHWI `[out_c, kh, kw, in_c / groups]`.
    Grouped { groups: usize },
}

/// A validated conv: NHWC sizes, kernel, stride, dilation, padding and channel grouping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeometry {
    pub kind: ConvKind,
    pub batch: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub in_c: usize,
    pub out_h: usize,
    pub out_w: usize,
    pub out_c: usize,
    pub k_h: usize,
    pub k_w: usize,
    pub stride: [usize; 2],
    pub dilation: [usize; 2],
    /// Padding before the first row / column; the after-padding only shapes `out_h` / `out_w`.
    pub pad_top: usize,
    pub pad_left: usize,
    pub pad_bottom: usize,
    pub pad_right: usize,
    /// `params.groups` (1 for dense; `in_c` for depthwise).
    pub groups: usize,
    /// Input channels each output channel reads (1 for depthwise).
    pub in_c_per_group: usize,
    /// Output channels per group (the depth multiplier for depthwise).
    pub out_c_per_group: usize,
}

/// Why a conv's tensors and parameters do not form a convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvError {
    NotRank4,
    ZeroParameter,
    ZeroSize,
    Groups,
    DenseWeights,
    BiasLength,
    KernelTooLarge,
    OutputShape,
    Overflow,
}

impl ConvError {
    /// The message the runtime reports (kept from its float checks).
    pub const fn reason(self) -> &'static str {
        match self {
            ConvError::NotRank4 => "conv input, weights and output must be rank 4 (NHWC, OHWI or 1HWC)",
            ConvError::ZeroParameter => "conv stride, dilation and groups must be non-zero",
            ConvError::ZeroSize => "conv tensors must have no zero-sized dims",
            ConvError::Groups => "conv groups must divide the input and output channels",
            ConvError::DenseWeights => {
                "conv weights must be [out_channels, KH, KW, in_channels / groups], or [1, KH, KW, out_channels] \
                 with groups == in_channels (depthwise)"
            }
            ConvError::BiasLength => "bias must have one value per output channel",
            ConvError::KernelTooLarge => "conv kernel is larger than the padded input",
            ConvError::OutputShape => "conv output shape does not match input, kernel, stride, dilation and padding",
            ConvError::Overflow => "conv tensor sizes overflow",
        }
    }
}

impl fmt::Display for ConvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

#[cfg(feature = "std")]
impl std::error::Error for ConvError {}

/// Output size of one spatial axis, or `None` when the (dilated) kernel does not fit the padded input.
pub fn out_size(
    input: usize,
    pad_a: usize,
    pad_b: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
) -> Option<usize> {
    let extent = dilation.checked_mul(kernel.checked_sub(1)?)?.checked_add(1)?;
    let padded = input.checked_add(pad_a)?.checked_add(pad_b)?;
    let span = padded.checked_sub(extent)?;
    Some(span / stride.max(1) + 1)
}

fn rank4(s: &Shape) -> Result<[usize; 4], ConvError> {
    if s.rank != 4 {
        return Err(ConvError::NotRank4);
    }
    let d = s.nhwc();
    if d.contains(&0) {
        return Err(ConvError::ZeroSize);
    }
    // Element counts must fit usize: kernels index with products of these.
    s.checked_len().ok_or(ConvError::Overflow)?;
    Ok(d)
}

impl ConvGeometry {
    /// The geometry of a Conv2d op from its tensors.
    pub fn new(
        input: &Tensor,
        weights: &Tensor,
        bias: Option<&Tensor>,
        output: &Tensor,
        params: &Conv2dParams,
    ) -> Result<ConvGeometry, ConvError> {
        Self::from_shapes(&input.shape, &weights.shape, bias.map(|b| &b.shape), &output.shape, params)
    }

    /// As [`ConvGeometry::new`] from shapes alone.
    pub fn from_shapes(
        input: &Shape,
        weights: &Shape,
        bias: Option<&Shape>,
        output: &Shape,
        p: &Conv2dParams,
    ) -> Result<ConvGeometry, ConvError> {
        if p.groups == 0 || p.stride.contains(&0) || p.dilation.contains(&0) {
            return Err(ConvError::ZeroParameter);
        }
        let [n, h, w, c] = rank4(input)?;
        let [wo, kh, kw, wi] = rank4(weights)?;
        let [on, oh, ow, oc] = rank4(output)?;
        let groups = usize::try_from(p.groups).map_err(|_| ConvError::Overflow)?;
        // Depthwise is decided by the weights' layout, not by groups alone: with one input channel
        // [oc, kh, kw, 1] is dense and [1, kh, kw, oc] depthwise (TFLite writes both); one channel in
        // and out is the same computation either way and counts as dense.
        let kind = if groups == c && wo == 1 && wi == oc && oc % c == 0 && (c > 1 || oc > 1) {
            ConvKind::Depthwise { multiplier: oc / c }
        } else {
            if c % groups != 0 || oc % groups != 0 {
                return Err(ConvError::Groups);
            }
            if wo != oc || wi != c / groups {
                return Err(ConvError::DenseWeights);
            }
            if groups == 1 {
                ConvKind::Dense
            } else {
                ConvKind::Grouped { groups }
            }
        };
        if bias.is_some_and(|b| b.checked_len() != Some(oc)) {
            return Err(ConvError::BiasLength);
        }
        let pd = p.padding;
        let (pt, pb, pl, pr) = (pd.top as usize, pd.bottom as usize, pd.left as usize, pd.right as usize);
        let [sh, sw] = [p.stride[0] as usize, p.stride[1] as usize];
        let [dh, dw] = [p.dilation[0] as usize, p.dilation[1] as usize];
        let eh = out_size(h, pt, pb, kh, sh, dh).ok_or(ConvError::KernelTooLarge)?;
        let ew = out_size(w, pl, pr, kw, sw, dw).ok_or(ConvError::KernelTooLarge)?;
        if on != n || oh != eh || ow != ew {
            return Err(ConvError::OutputShape);
        }
        let (in_c_per_group, out_c_per_group) = match kind {
            ConvKind::Depthwise { multiplier } => (1, multiplier),
            ConvKind::Dense | ConvKind::Grouped { .. } => (c / groups, oc / groups),
        };
        Ok(ConvGeometry {
            kind,
            batch: n,
            in_h: h,
            in_w: w,
            in_c: c,
            out_h: oh,
            out_w: ow,
            out_c: oc,
            k_h: kh,
            k_w: kw,
            stride: [sh, sw],
            dilation: [dh, dw],
            pad_top: pt,
            pad_left: pl,
            pad_bottom: pb,
            pad_right: pr,
            groups,
            in_c_per_group,
            out_c_per_group,
        })
    }

    pub fn is_depthwise(&self) -> bool {
        matches!(self.kind, ConvKind::Depthwise { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{Activation, Padding};

    fn p(groups: u32, stride: u16, pad: u16) -> Conv2dParams {
        let padding = Padding { top: pad, bottom: pad, left: pad, right: pad };
        Conv2dParams { stride: [stride; 2], dilation: [1, 1], padding, groups, activation: Activation::None }
    }

    fn geom(i: &[u32], w: &[u32], o: &[u32], bias: Option<&[u32]>, p: Conv2dParams) -> Result<ConvGeometry, ConvError> {
        let b = bias.map(Shape::new);
        ConvGeometry::from_shapes(&Shape::new(i), &Shape::new(w), b.as_ref(), &Shape::new(o), &p)
    }

    #[test]
    fn kinds() {
        let dense = geom(&[1, 5, 5, 3], &[4, 3, 3, 3], &[1, 3, 3, 4], Some(&[4]), p(1, 2, 1)).unwrap();
        assert_eq!((dense.kind, dense.in_c_per_group, dense.out_c_per_group), (ConvKind::Dense, 3, 4));
        assert_eq!((dense.out_h, dense.pad_bottom), (3, 1));
        let grouped = geom(&[1, 5, 5, 4], &[6, 3, 3, 2], &[1, 5, 5, 6], None, p(2, 1, 1)).unwrap();
        assert_eq!((grouped.kind, grouped.in_c_per_group), (ConvKind::Grouped { groups: 2 }, 2));
        let dw = geom(&[1, 5, 5, 3], &[1, 3, 3, 6], &[1, 5, 5, 6], Some(&[6]), p(3, 1, 1)).unwrap();
        assert_eq!((dw.kind, dw.out_c_per_group), (ConvKind::Depthwise { multiplier: 2 }, 2));
        // One input channel: the weights' layout decides (TFLite writes both forms).
        let dw1 = geom(&[1, 5, 5, 1], &[1, 3, 3, 4], &[1, 5, 5, 4], None, p(1, 1, 1)).unwrap();
        assert_eq!(dw1.kind, ConvKind::Depthwise { multiplier: 4 });
        let dense1 = geom(&[1, 5, 5, 1], &[4, 3, 3, 1], &[1, 5, 5, 4], None, p(1, 1, 1)).unwrap();
        assert_eq!(dense1.kind, ConvKind::Dense);
        let one = geom(&[1, 5, 5, 1], &[1, 3, 3, 1], &[1, 5, 5, 1], None, p(1, 1, 1)).unwrap();
        assert_eq!(one.kind, ConvKind::Dense, "one channel in and out is the same either way");
        // groups == in_c with OHWI [out_c, kh, kw, 1] weights: grouped, one input channel per group.
        let g = geom(&[1, 5, 5, 3], &[3, 3, 3, 1], &[1, 5, 5, 3], None, p(3, 1, 1)).unwrap();
        assert_eq!(g.kind, ConvKind::Grouped { groups: 3 });
    }

    #[test]
    fn typed_errors() {
        let ok = ([1, 5, 5, 3], [4, 3, 3, 3], [1, 3, 3, 4]);
        let e = |i: &[u32], w: &[u32], o: &[u32], b: Option<&[u32]>, p| geom(i, w, o, b, p).unwrap_err();
        assert_eq!(e(&[5, 5, 3], &ok.1, &ok.2, None, p(1, 1, 0)), ConvError::NotRank4);
        assert_eq!(e(&ok.0, &ok.1, &ok.2, None, p(0, 1, 0)), ConvError::ZeroParameter);
        assert_eq!(e(&ok.0, &ok.1, &ok.2, None, p(1, 0, 0)), ConvError::ZeroParameter);
        assert_eq!(e(&[1, 5, 5, 0], &ok.1, &ok.2, None, p(1, 1, 0)), ConvError::ZeroSize);
        assert_eq!(e(&[0, 5, 5, 3], &ok.1, &[0, 3, 3, 4], None, p(1, 1, 0)), ConvError::ZeroSize);
        assert_eq!(e(&ok.0, &[4, 3, 3, 1], &ok.2, None, p(2, 1, 0)), ConvError::Groups);
        assert_eq!(e(&ok.0, &[4, 3, 3, 2], &ok.2, None, p(1, 1, 0)), ConvError::DenseWeights);
        assert_eq!(e(&ok.0, &ok.1, &ok.2, Some(&[3]), p(1, 1, 0)), ConvError::BiasLength);
        assert_eq!(e(&[1, 2, 2, 3], &ok.1, &[1, 1, 1, 4], None, p(1, 1, 0)), ConvError::KernelTooLarge);
        assert_eq!(e(&ok.0, &ok.1, &[1, 5, 5, 4], None, p(1, 1, 0)), ConvError::OutputShape);
        let big = [u32::MAX; 4];
        assert_eq!(e(&big, &ok.1, &ok.2, None, p(1, 1, 0)), ConvError::Overflow);
    }
}
