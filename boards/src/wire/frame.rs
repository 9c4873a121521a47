//! Framing: `COBS(version || postcard(msg) || crc32_le(version || postcard(msg))) || 0x00`.

use super::{Msg, MAX_CHUNK, TOP_K_MAX, WIRE_VERSION};
use crate::error::{Error, ErrorKind};
use core::fmt;

/// Largest unframed payload (version byte + postcard message), with room for a full chunk.
pub const MAX_PAYLOAD: usize = MAX_CHUNK + 64;
/// Largest frame on the wire, delimiter included.
pub const MAX_FRAME: usize = cobs::max_encoding_length(MAX_PAYLOAD + 4) + 1;

/// A frame that could not be encoded or decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WireError {
    /// The output buffer cannot hold the frame.
    BufferTooSmall,
    /// A received frame exceeded the reader's buffer before its delimiter.
    Overflow,
    /// The COBS encoding is invalid.
    Cobs,
    /// Shorter than a version byte plus a CRC.
    TooShort,
    /// CRC32 over the payload does not match.
    Crc { stored: u32, computed: u32 },
    /// A wire version this build does not speak.
    Version { found: u8 },
    /// postcard could not decode the message (unknown variant from a newer peer, or garbage).
    Decode,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::BufferTooSmall => f.write_str("frame does not fit the output buffer"),
            WireError::Overflow => write!(f, "received frame longer than {MAX_FRAME} bytes before a delimiter"),
            WireError::Cobs => f.write_str("invalid COBS encoding"),
            WireError::TooShort => f.write_str("frame shorter than version byte + CRC32"),
            WireError::Crc { stored, computed } => {
                write!(f, "frame CRC32 mismatch: stored {stored:#010x}, computed {computed:#010x}")
            }
            WireError::Version { found } => {
                write!(f, "wire version {found} is not supported (this build speaks {WIRE_VERSION})")
            }
            WireError::Decode => f.write_str("message did not decode (unknown message type or garbage)"),
        }
    }
}

impl Error for WireError {
    fn kind(&self) -> ErrorKind {
        match self {
            WireError::BufferTooSmall => ErrorKind::Other,
            _ => ErrorKind::Framing,
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for WireError {}

/// Encodes `msg` as one frame (delimiter included) into `out`; returns the frame length.
pub fn encode(msg: &Msg<'_>, out: &mut [u8]) -> Result<usize, WireError> {
    let mut payload = [0u8; MAX_PAYLOAD + 4];
    payload[0] = WIRE_VERSION;
    let body = postcard::to_slice(msg, &mut payload[1..MAX_PAYLOAD]).map_err(|_| WireError::BufferTooSmall)?;
    let n = 1 + body.len();
    let crc = crc32fast::hash(&payload[..n]);
    payload[n..n + 4].copy_from_slice(&crc.to_le_bytes());
    let len = cobs::try_encode(&payload[..n + 4], out).map_err(|_| WireError::BufferTooSmall)?;
    let end = out.get_mut(len).ok_or(WireError::BufferTooSmall)?;
    *end = 0;
    Ok(len + 1)
}

/// Checks and decodes one COBS-decoded body (version || postcard || crc).
fn decode_body(body: &[u8]) -> Result<Msg<'_>, WireError> {
    if body.len() < 5 {
        return Err(WireError::TooShort);
    }
    let (payload, crc) = body.split_at(body.len() - 4);
    let stored = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    let computed = crc32fast::hash(payload);
    if stored != computed {
        return Err(WireError::Crc { stored, computed });
    }
    if payload[0] != WIRE_VERSION {
        return Err(WireError::Version { found: payload[0] });
    }
    match postcard::take_from_bytes::<Msg<'_>>(&payload[1..]) {
        // A top-k list longer than the array it sits in is not a telemetry frame: receivers slice
        // `top[..count]`, so it must never reach them (it panicked `rsim ground`).
        Ok((Msg::Telemetry(t), [])) if t.count as usize > TOP_K_MAX => Err(WireError::Decode),
        Ok((msg, [])) => Ok(msg),
        _ => Err(WireError::Decode),
    }
}

/// Collects bytes from a link until a `0x00` delimiter, then decodes the frame in place.
///
/// Garbage, partial and oversized frames are discarded at the next delimiter and counted in
/// `bad_frames`, so the reader resynchronises by itself after any corruption.
#[derive(Debug)]
pub struct FrameReader<const N: usize = MAX_FRAME> {
    buf: [u8; N],
    len: usize,
    overflow: bool,
    /// Frames discarded because they did not decode.
    pub bad_frames: u32,
    /// Frames decoded.
    pub good_frames: u32,
}

impl<const N: usize> Default for FrameReader<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> FrameReader<N> {
    pub const fn new() -> Self {
        FrameReader { buf: [0; N], len: 0, overflow: false, bad_frames: 0, good_frames: 0 }
    }

    /// Feeds one byte. Returns a message (or why the frame was bad) when `byte` ends a frame.
    pub fn push(&mut self, byte: u8) -> Option<Result<Msg<'_>, WireError>> {
        if byte != 0 {
            match self.buf.get_mut(self.len) {
                Some(slot) if !self.overflow => {
                    *slot = byte;
                    self.len += 1;
                }
                _ => self.overflow = true,
            }
            return None;
        }
        let (len, overflow) = (self.len, self.overflow);
        self.len = 0;
        self.overflow = false;
        if overflow {
            self.bad_frames = self.bad_frames.wrapping_add(1);
            return Some(Err(WireError::Overflow));
        }
        if len == 0 {
            return None; // back-to-back delimiters: senders may lead with one to resync
        }
        let res = match cobs::decode_in_place(&mut self.buf[..len]) {
            Ok(n) => decode_body(&self.buf[..n]),
            Err(_) => Err(WireError::Cobs),
        };
        match res {
            Ok(_) => self.good_frames = self.good_frames.wrapping_add(1),
            Err(_) => self.bad_frames = self.bad_frames.wrapping_add(1),
        }
        Some(res)
    }

    /// Drops any partial frame (e.g. after a link reset).
    pub fn reset(&mut self) {
        self.len = 0;
        self.overflow = false;
    }
}
