//! Signed images: a `.rsm` followed by an 80-byte signature envelope (docs/FORMAT.md "Signed
//! images"). The board checks the Ed25519 signature (ed25519-dalek, `verify_strict`) against the
//! public keys it was built or configured with, and the signed model version against its security
//! counter, before an image can become active.
//!
//! ```text
//! image    = rsm || envelope
//! envelope = 0 magic "RSIG" | 4 envelope version u16 = 1 | 6 flags u16 | 8 model_version u32 |
//!            12 rsm_len u32 | 16 signature [64]          (little-endian, 80 bytes)
//! signed   = image[0 .. len - 64]   (the whole .rsm and the envelope's first 16 bytes)
//! ```

use ed25519_dalek::{Signature, VerifyingKey};

/// Bytes the envelope adds after the `.rsm`.
pub const ENVELOPE_LEN: usize = 80;
/// Envelope bytes before the signature (they are signed).
pub const ENVELOPE_HEAD: usize = 16;
/// First bytes of an envelope.
pub const ENVELOPE_MAGIC: [u8; 4] = *b"RSIG";
/// Envelope layout version this build reads and writes.
pub const ENVELOPE_VERSION: u16 = 1;
/// Flag bit: the signer allows this image to be installed below the board's security counter
/// (honoured only where the board's config allows signed downgrades).
pub const FLAG_DOWNGRADE: u16 = 1;

/// The signed facts about an image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Envelope {
    /// Monotonic model version (the anti-rollback counter compares against it).
    pub version: u32,
    /// [`FLAG_DOWNGRADE`] or 0.
    pub flags: u16,
    pub signature: [u8; 64],
}

/// An image split into its model and (if present) its envelope.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Image<'a> {
    /// A bare `.rsm` (its header's `file_len` is the whole image).
    Unsigned(&'a [u8]),
    /// `.rsm` plus envelope; `signed` is what the signature covers.
    Signed { rsm: &'a [u8], signed: &'a [u8], envelope: Envelope },
}

impl<'a> Image<'a> {
    /// The `.rsm` bytes.
    pub fn rsm(&self) -> &'a [u8] {
        match *self {
            Image::Unsigned(r) => r,
            Image::Signed { rsm, .. } => rsm,
        }
    }
}

/// Why an image's signature or version was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignError {
    /// The board holds public keys and the image carries no signature envelope.
    Unsigned,
    /// The image is shorter than its `.rsm` header says (cut off in storage or before signing).
    Truncated { len: u32, needed: u64 },
    /// The envelope is malformed (the reason says how).
    BadEnvelope(&'static str),
    /// No configured public key verifies the signature (wrong key, or a changed byte).
    BadSignature,
    /// The signed model version is below the board's security counter (an old image replayed).
    Rollback { version: u32, counter: u32 },
}

impl core::fmt::Display for SignError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SignError::Unsigned => f.write_str("image is not signed and this board accepts only signed models"),
            SignError::Truncated { len, needed } => {
                write!(f, "image is truncated: {len} bytes, its header needs at least {needed}")
            }
            SignError::BadEnvelope(r) => write!(f, "malformed signature envelope: {r}"),
            SignError::BadSignature => {
                f.write_str("signature does not verify with any of the board's keys (wrong key or modified image)")
            }
            SignError::Rollback { version, counter } => {
                write!(f, "model version {version} is below the board's security counter {counter} (rollback refused)")
            }
        }
    }
}

fn le_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Splits `image` into `.rsm` and envelope by the `.rsm` header's `file_len` (bytes 8..12): equal to
/// the image length means unsigned; `file_len + 80` with the envelope magic means signed.
pub fn split(image: &[u8]) -> Result<Image<'_>, SignError> {
    let Some(file_len) = le_u32(image, 8) else {
        return Ok(Image::Unsigned(image)); // too short for a header: the model decoder says why
    };
    let len = image.len() as u64;
    if file_len as u64 == len {
        return Ok(Image::Unsigned(image));
    }
    if (file_len as u64) > len {
        return Err(SignError::Truncated { len: len as u32, needed: file_len as u64 });
    }
    let full = file_len as u64 + ENVELOPE_LEN as u64;
    if len < full {
        return Err(SignError::Truncated { len: len as u32, needed: full });
    }
    if len > full {
        return Err(SignError::BadEnvelope("bytes after the 80-byte envelope"));
    }
    let (rsm, env) = image.split_at(file_len as usize);
    if env.get(..4) != Some(&ENVELOPE_MAGIC[..]) {
        return Err(SignError::BadEnvelope("no RSIG magic after the model"));
    }
    let ver = u16::from_le_bytes([env[4], env[5]]);
    if ver != ENVELOPE_VERSION {
        return Err(SignError::BadEnvelope("unsupported envelope version (this build reads version 1)"));
    }
    let flags = u16::from_le_bytes([env[6], env[7]]);
    if flags & !FLAG_DOWNGRADE != 0 {
        return Err(SignError::BadEnvelope("unknown flag bits set"));
    }
    let version = le_u32(env, 8).ok_or(SignError::BadEnvelope("short"))?;
    if le_u32(env, 12) != Some(file_len) {
        return Err(SignError::BadEnvelope("rsm_len differs from the model header's file_len"));
    }
    let mut signature = [0u8; 64];
    signature.copy_from_slice(env.get(ENVELOPE_HEAD..ENVELOPE_LEN).ok_or(SignError::BadEnvelope("short"))?);
    let signed = image.get(..image.len() - 64).ok_or(SignError::BadEnvelope("short"))?;
    Ok(Image::Signed { rsm, signed, envelope: Envelope { version, flags, signature } })
}

/// The 16 signed envelope bytes before the signature.
pub fn envelope_head(rsm_len: u32, version: u32, flags: u16) -> [u8; ENVELOPE_HEAD] {
    let mut h = [0u8; ENVELOPE_HEAD];
    h[0..4].copy_from_slice(&ENVELOPE_MAGIC);
    h[4..6].copy_from_slice(&ENVELOPE_VERSION.to_le_bytes());
    h[6..8].copy_from_slice(&flags.to_le_bytes());
    h[8..12].copy_from_slice(&version.to_le_bytes());
    h[12..16].copy_from_slice(&rsm_len.to_le_bytes());
    h
}

/// What a board trusts: its public keys and whether signed downgrades are allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct TrustPolicy {
    /// Ed25519 public keys (32 bytes each). Empty: the board accepts unsigned images and does not
    /// check signatures at all (development boards, the existing demos); any key: every image must
    /// carry a signature that one of them verifies.
    pub keys: &'static [[u8; 32]],
    /// Accept a signed image below the security counter when its signer set [`FLAG_DOWNGRADE`].
    pub allow_downgrade: bool,
}

/// What a trusted image says about itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checked<'a> {
    /// The `.rsm` to decode and self-test.
    pub rsm: &'a [u8],
    /// Signed model version (0 when the board checks no signatures).
    pub version: u32,
    /// Index of the key that verified the signature (`None` on a board without keys).
    pub key: Option<usize>,
}

/// Checks `image` against `keys` and the security `counter`: the signature (when the board has
/// keys) and anti-rollback. Does not decode the model.
pub fn check<'a>(
    image: &'a [u8],
    keys: &[[u8; 32]],
    counter: u32,
    allow_downgrade: bool,
) -> Result<Checked<'a>, SignError> {
    if keys.is_empty() {
        // No keys: nothing is authenticated, so the version means nothing and the counter stays put.
        // Bytes that split as no image are handed to the model decoder whole, which says why.
        let rsm = split(image).map_or(image, |i| i.rsm());
        return Ok(Checked { rsm, version: 0, key: None });
    }
    let img = split(image)?;
    let Image::Signed { rsm, signed, envelope } = img else {
        return Err(SignError::Unsigned);
    };
    let sig = Signature::from_bytes(&envelope.signature);
    let key = keys
        .iter()
        .position(|k| VerifyingKey::from_bytes(k).is_ok_and(|vk| vk.verify_strict(signed, &sig).is_ok()))
        .ok_or(SignError::BadSignature)?;
    if envelope.version < counter && !(allow_downgrade && envelope.flags & FLAG_DOWNGRADE != 0) {
        return Err(SignError::Rollback { version: envelope.version, counter });
    }
    Ok(Checked { rsm, version: envelope.version, key: Some(key) })
}
