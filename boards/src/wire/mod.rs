//! Link messages (telemetry, heartbeats, flashing) and their framing. Spec: `docs/WIRE.md`.
//!
//! Evolution rules (see WIRE.md "Stability"): variants of [`Msg`] are only ever appended; an existing
//! variant's fields never change; a change that breaks either rule bumps [`WIRE_VERSION`], and a
//! receiver refuses frames of another version with [`WireError::Version`].

mod frame;

pub use frame::{encode, FrameReader, WireError, MAX_FRAME, MAX_PAYLOAD};

use serde::{Deserialize, Serialize};

/// Version byte leading every frame payload.
pub const WIRE_VERSION: u8 = 1;
/// Most classes a telemetry frame reports.
pub const TOP_K_MAX: usize = 5;
/// Largest flash chunk a frame carries.
pub const MAX_CHUNK: usize = 1024;
/// Largest raw output tensor a [`Msg::RawOutput`] carries.
pub const MAX_RAW_OUTPUT: usize = 256;

/// One class in a top-k list.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Score {
    /// Index into the model's class names.
    pub class: u16,
    /// Raw int8 output value for int8 models (0 for float outputs), so the ground can compare bytes.
    pub q: i8,
    /// Softmax probability (or dequantized score) in 0..1; temporally smoothed when `smoothed` is set.
    pub confidence: f32,
}

/// What the board saw in one tile of one frame.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Telemetry {
    /// Camera frame counter (wraps).
    pub frame_id: u32,
    /// Tile index in row-major tile order within the frame.
    pub tile_index: u16,
    /// Tile's top-left pixel in the frame, and its side length.
    pub tile_x: u16,
    pub tile_y: u16,
    pub tile_size: u16,
    /// How many entries of `top` are used (best first).
    pub count: u8,
    pub top: [Score; TOP_K_MAX],
    /// Preprocess + inference time of this tile.
    pub latency_us: u32,
    /// Most arena bytes in use at any point so far.
    pub arena_hwm: u32,
    /// True when `confidence` values are temporally smoothed.
    pub smoothed: bool,
}

/// Periodic liveness and drop counters (all counters since boot, wrapping).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub uptime_ms: u32,
    /// Frames taken from the source.
    pub frames: u32,
    /// Tiles classified.
    pub tiles: u32,
    /// Frames that missed their deadline.
    pub frames_late: u32,
    /// Tiles skipped because their frame missed its deadline.
    pub tiles_dropped: u32,
    /// Telemetry frames the link refused.
    pub tx_errors: u32,
    /// Received frames discarded as corrupt.
    pub rx_bad_frames: u32,
    /// Boot record sequence number of the running model (0 = none).
    pub model_seq: u32,
    /// Active slot (0 = A, 1 = B, 255 = none).
    pub active_slot: u8,
}

/// Start (or resume) a transfer of an image of `size` bytes with the given SHA-256.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlashBegin {
    pub size: u32,
    pub sha256: [u8; 32],
}

/// Why the device refused a flash request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum FlashErrorCode {
    /// The image is bigger than a slot.
    TooLarge,
    /// A chunk or commit arrived with no transfer in progress.
    NoTransfer,
    /// The received image's SHA-256 differs from the one announced.
    HashMismatch,
    /// The image is not a valid `.rsm` model.
    BadModel,
    /// The model needs more arena, input or classes than the board has.
    WrongBoard,
    /// The model's embedded test vector gave a different output on the board.
    SelfTestFailed,
    /// Flash storage failed.
    Storage,
    /// Commit before all bytes arrived.
    Incomplete,
    /// The board holds public keys and the image is not signed.
    Unsigned,
    /// The signature does not verify with the board's keys, or the envelope is malformed or cut off.
    BadSignature,
    /// The signed model version is below the board's security counter.
    Rollback,
    /// A model is on trial: confirm it (or reset the board, which reverts it) before flashing another.
    TrialPending,
    /// A confirm named an image that is not the active one.
    NotActive,
}

/// Every message on the link. Host-to-device: `FlashBegin`, `FlashChunk`, `FlashCommit`,
/// `FlashAbort`. Device-to-host: everything else. Variant order is the wire tag: append only.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Msg<'a> {
    Heartbeat(Heartbeat),
    Telemetry(Telemetry),
    FlashBegin(FlashBegin),
    /// Image bytes at `offset`; the frame CRC is the chunk's CRC.
    FlashChunk {
        offset: u32,
        data: &'a [u8],
    },
    /// Verify the received image and activate it.
    FlashCommit,
    /// Drop the transfer; the inactive slot is left unused.
    FlashAbort,
    /// Bytes `[0, next)` are stored; send from `next`.
    FlashAck {
        next: u32,
    },
    /// The image verified and is now active in `slot` under boot record `seq`.
    FlashDone {
        slot: u8,
        seq: u32,
    },
    /// A refusal; `next` is the resume offset (0 when the transfer was dropped).
    FlashNack {
        code: FlashErrorCode,
        next: u32,
    },
    /// The full output tensor of a tile (int8 bytes), for byte-exact checks on the ground.
    RawOutput {
        frame_id: u32,
        tile_index: u16,
        data: &'a [u8],
    },
    /// Confirm the image on trial (host → board): it stays active across resets and the security
    /// counter rises to its version. Answered with `FlashDone` (also when it was already confirmed)
    /// or `FlashNack { NotActive }` when `sha256` is not the active image's.
    FlashConfirm {
        sha256: [u8; 32],
    },
}
