//! Typed decode/validation errors. Every malformed input maps to one of these; none panics.

use core::fmt;

/// Which section of the container an error concerns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SectionKind {
    Meta,
    Graph,
    Weights,
    TestVector,
    Other(u32),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ModelError {
    /// Fewer bytes than the fixed header.
    TooShort {
        len: usize,
    },
    /// The first four bytes are not `RSIM`.
    BadMagic,
    /// A format version this reader does not know (written by a newer rsim).
    UnsupportedVersion {
        found: u16,
        supported: u16,
    },
    /// The header's length field disagrees with the bytes given (truncated or padded file).
    LengthMismatch {
        header: u32,
        actual: usize,
    },
    /// CRC32 of the body does not match the header (corrupted file).
    CrcMismatch {
        stored: u32,
        computed: u32,
    },
    /// Reserved header bytes are not zero, or the section table is malformed.
    BadHeader {
        reason: &'static str,
    },
    SectionOutOfBounds {
        section: SectionKind,
    },
    MissingSection {
        section: SectionKind,
    },
    DuplicateSection {
        section: SectionKind,
    },
    /// The weights section must start on a 16-byte boundary so constants can be read in place.
    MisalignedWeights {
        offset: u32,
    },
    /// A postcard-encoded section did not decode.
    Decode {
        section: SectionKind,
    },
    /// Op `op` references tensor `tensor` whose bytes fall outside the arena or weights blob.
    TensorOutOfBounds {
        op: u32,
        tensor: u16,
    },
    /// Op `op` is structurally invalid (arity, dtype, rank, parameter).
    BadOp {
        op: u32,
        reason: &'static str,
    },
    /// The metadata is inconsistent (input/output tensors, input spec, arena size).
    BadMeta {
        reason: &'static str,
    },
}

impl fmt::Display for SectionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SectionKind::Meta => f.write_str("metadata"),
            SectionKind::Graph => f.write_str("graph"),
            SectionKind::Weights => f.write_str("weights"),
            SectionKind::TestVector => f.write_str("test vector"),
            SectionKind::Other(k) => write!(f, "kind {k:#x}"),
        }
    }
}

impl fmt::Display for ModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ModelError::*;
        match self {
            TooShort { len } => write!(f, "model is {len} bytes, shorter than the 32-byte .rsm header"),
            BadMagic => f.write_str("not an .rsm model (magic bytes are not RSIM)"),
            UnsupportedVersion { found, supported } => write!(
                f,
                ".rsm format version {found} is not supported by this reader (supports up to {supported}); upgrade rsim"
            ),
            LengthMismatch { header, actual } => {
                write!(f, "header says the model is {header} bytes but {actual} bytes were given (truncated?)")
            }
            CrcMismatch { stored, computed } => {
                write!(f, "model is corrupted: CRC32 {computed:#010x} does not match the stored {stored:#010x}")
            }
            BadHeader { reason } => write!(f, "bad .rsm header: {reason}"),
            SectionOutOfBounds { section } => write!(f, "{section} section lies outside the file"),
            MissingSection { section } => write!(f, "required {section} section is missing"),
            DuplicateSection { section } => write!(f, "{section} section appears twice"),
            MisalignedWeights { offset } => write!(f, "weights section at offset {offset} is not 16-byte aligned"),
            Decode { section } => write!(f, "{section} section does not decode"),
            TensorOutOfBounds { op, tensor } => {
                write!(f, "op #{op}: tensor {tensor} lies outside the arena or weights")
            }
            BadOp { op, reason } => write!(f, "op #{op} is invalid: {reason}"),
            BadMeta { reason } => write!(f, "bad model metadata: {reason}"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for ModelError {}
