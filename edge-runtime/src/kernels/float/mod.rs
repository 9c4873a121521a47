//! f32 reference kernels. Activations are f32; constants (weights, bias, gamma, ...) are f32 or f16,
//! widened on the fly (no conversion buffer). Each kernel is a pure function over slices with a small
//! geometry struct computed by a checked `*_geom` function, which the engine's prepare pass calls once
//! and the eval path calls again (it is cheap) so no per-op state has to be stored.
//! Kernels never index out of bounds: slice lengths are checked against the geometry on entry and
//! inner loops use `get`, `chunks_exact` and `zip`.

pub mod act;
pub mod binary;
pub mod concat;
pub mod conv;
pub mod fc;
pub mod matmul;
pub mod norm;
pub mod pool;
pub mod transpose;

mod dispatch;
pub(crate) use dispatch::{eval, operand, prepare};

/// An element a kernel can read as f32: f32 itself, an f16 bit pattern (`u16`), or the same as
/// little-endian bytes (`[u8; 4]`, `[u8; 2]`) for constants in model bytes that are not aligned in
/// memory (e.g. a bare `include_bytes!`): weights are always read in place, never copied.
pub trait Elem: Copy {
    fn f32(self) -> f32;
}

impl Elem for f32 {
    #[inline(always)]
    fn f32(self) -> f32 {
        self
    }
}

impl Elem for u16 {
    #[inline(always)]
    fn f32(self) -> f32 {
        half::f16::from_bits(self).to_f32()
    }
}

impl Elem for [u8; 4] {
    #[inline(always)]
    fn f32(self) -> f32 {
        f32::from_le_bytes(self)
    }
}

impl Elem for [u8; 2] {
    #[inline(always)]
    fn f32(self) -> f32 {
        half::f16::from_le_bytes(self).to_f32()
    }
}

/// A read-only tensor for the float kernels.
#[derive(Clone, Copy, Debug)]
pub enum Operand<'a> {
    F32(&'a [f32]),
    /// f16 bit patterns.
    F16(&'a [u16]),
    /// Little-endian f32 bytes at any alignment.
    F32Le(&'a [[u8; 4]]),
    /// Little-endian f16 bytes at any alignment.
    F16Le(&'a [[u8; 2]]),
}

impl Operand<'_> {
    pub fn len(&self) -> usize {
        match self {
            Operand::F32(s) => s.len(),
            Operand::F16(s) => s.len(),
            Operand::F32Le(s) => s.len(),
            Operand::F16Le(s) => s.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Element `i` as f32, `None` past the end.
    #[inline]
    pub fn get(&self, i: usize) -> Option<f32> {
        match self {
            Operand::F32(s) => s.get(i).copied(),
            Operand::F16(s) => s.get(i).map(|&b| b.f32()),
            Operand::F32Le(s) => s.get(i).map(|&b| b.f32()),
            Operand::F16Le(s) => s.get(i).map(|&b| b.f32()),
        }
    }
}

/// Calls a generic kernel with the operand's concrete element slice.
macro_rules! with_elems {
    ($operand:expr, |$s:ident| $body:expr) => {
        match $operand {
            $crate::kernels::float::Operand::F32($s) => $body,
            $crate::kernels::float::Operand::F16($s) => $body,
            $crate::kernels::float::Operand::F32Le($s) => $body,
            $crate::kernels::float::Operand::F16Le($s) => $body,
        }
    };
}
pub(crate) use with_elems;

/// Dot product with four partial sums (independent chains, so a scalar core can overlap them).
#[inline]
pub fn dot<A: Elem, B: Elem>(a: &[A], b: &[B]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f32; 4];
    let (ac, bc) = (a.chunks_exact(4), b.chunks_exact(4));
    let (ar, br) = (ac.remainder(), bc.remainder());
    for (x, y) in ac.zip(bc) {
        for k in 0..4 {
            acc[k] += x[k].f32() * y[k].f32();
        }
    }
    let mut tail = 0.0;
    for (x, y) in ar.iter().zip(br) {
        tail += x.f32() * y.f32();
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

/// The dims of a rank <= 4 shape right-aligned into 4 (numpy broadcasting alignment).
pub fn dims4(shape: &rsim_model::Shape) -> [usize; 4] {
    let d = shape.dims();
    let mut out = [1usize; 4];
    let skip = 4 - d.len();
    for (o, &v) in out[skip..].iter_mut().zip(d) {
        *o = v as usize;
    }
    out
}

/// Element count of a shape, as an error rather than a wrap on overflow.
pub fn count(shape: &rsim_model::Shape) -> Result<usize, &'static str> {
    shape.checked_len().ok_or("tensor size overflows")
}
