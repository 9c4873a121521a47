//! The onboard loop: frame → tiles → classify → telemetry, with a per-frame deadline, counted
//! drops, optional temporal smoothing and heartbeats. Generic over a [`FrameSource`], a
//! [`Classifier`], an `embedded_io::Write` link and a [`Clock`]; no heap.

mod engine;
mod scores;

#[cfg(feature = "std")]
pub use engine::OwnedSelfTest;
pub use engine::{EngineClassifier, EngineSelfTest};

pub use scores::{confidences, smooth, top_k, Output, MAX_CLASSES};

use crate::clock::Clock;
use crate::error::{Error, ErrorKind};
use crate::wire::{encode, Heartbeat, Msg, Score, Telemetry, MAX_FRAME, MAX_RAW_OUTPUT, TOP_K_MAX};
use core::fmt;

/// Size of a frame the source delivered (u8 pixels, HWC, `channels` bands).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameInfo {
    pub width: u32,
    pub height: u32,
    pub channels: u32,
}

/// A camera or any other producer of frames.
pub trait FrameSource {
    type Error: fmt::Debug;
    /// Writes the next frame into `buf` (HWC u8). `Ok(None)`: no frame available (or the end).
    fn next_frame(&mut self, buf: &mut [u8]) -> Result<Option<FrameInfo>, Self::Error>;
}

/// Runs the model on one tile (implemented over `rsim_edge::Engine` by firmware and agent).
pub trait Classifier {
    type Error: fmt::Debug;
    /// Preprocesses `pixels` (HWC u8) per the model's input spec and runs the model.
    fn classify(&mut self, pixels: &[u8], width: u32, height: u32, channels: u32) -> Result<(), Self::Error>;
    /// The output tensor of the last run.
    fn output(&self) -> Output<'_>;
    /// Most arena bytes in use so far.
    fn arena_high_water(&self) -> u32;
}

/// Loop settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LoopConfig {
    /// Tile side in pixels (a frame smaller than this is classified whole).
    pub tile: u32,
    /// Step between tiles (= `tile` for no overlap).
    pub stride: u32,
    /// Classes reported per tile (≤ [`TOP_K_MAX`]).
    pub top_k: u8,
    /// A frame still being tiled after this long drops its remaining tiles.
    pub deadline_us: u64,
    /// Heartbeat period.
    pub heartbeat_us: u64,
    /// EMA weight of the newest frame (needs a smoothing buffer); `None` = off.
    pub smoothing: Option<f32>,
    /// Also send each tile's full int8 output ([`Msg::RawOutput`]).
    pub send_raw_output: bool,
}

/// Counters reported in heartbeats.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoopStats {
    pub frames: u32,
    pub tiles: u32,
    pub frames_late: u32,
    pub tiles_dropped: u32,
    pub tx_errors: u32,
    pub classify_errors: u32,
}

/// A loop failure that stops the frame (link errors are only counted).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LoopError {
    /// The frame source failed.
    Source,
    /// The frame does not fit the frame buffer, or its size is zero.
    BadFrame,
    /// The tile buffer is smaller than tile × tile × channels.
    TileBuffer { needed: usize, given: usize },
    /// The model has more classes than [`MAX_CLASSES`].
    TooManyClasses { classes: usize },
    /// The smoothing buffer cannot hold tiles × classes.
    SmoothingBuffer { needed: usize, given: usize },
}

impl fmt::Display for LoopError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoopError::Source => f.write_str("frame source failed"),
            LoopError::BadFrame => f.write_str("frame is empty or larger than the frame buffer"),
            LoopError::TileBuffer { needed, given } => write!(f, "tile buffer of {given} bytes, {needed} needed"),
            LoopError::TooManyClasses { classes } => {
                write!(f, "model has {classes} classes, the loop handles {MAX_CLASSES}")
            }
            LoopError::SmoothingBuffer { needed, given } => {
                write!(f, "smoothing buffer of {given} floats, {needed} needed")
            }
        }
    }
}

impl Error for LoopError {
    fn kind(&self) -> ErrorKind {
        match self {
            LoopError::Source => ErrorKind::Other,
            _ => ErrorKind::Protocol,
        }
    }
}

/// Loop state: config, counters, caller-owned buffers.
pub struct OnboardLoop<'b, C> {
    pub cfg: LoopConfig,
    clock: C,
    pub stats: LoopStats,
    tile_buf: &'b mut [u8],
    smooth_buf: &'b mut [f32],
    frame_id: u32,
    last_heartbeat: Option<u64>,
    /// Reported in heartbeats: boot record sequence and active slot of the running model.
    pub model_seq: u32,
    pub active_slot: u8,
    /// Received frames the caller discarded (reported in heartbeats).
    pub rx_bad_frames: u32,
}

impl<'b, C: Clock> OnboardLoop<'b, C> {
    /// `tile_buf` holds one tile (tile × tile × channels bytes); `smooth_buf` holds tiles per
    /// frame × classes floats when smoothing is on (may be empty otherwise).
    pub fn new(cfg: LoopConfig, clock: C, tile_buf: &'b mut [u8], smooth_buf: &'b mut [f32]) -> Self {
        smooth_buf.iter_mut().for_each(|s| *s = 0.0);
        OnboardLoop {
            cfg,
            clock,
            stats: LoopStats::default(),
            tile_buf,
            smooth_buf,
            frame_id: 0,
            last_heartbeat: None,
            model_seq: 0,
            active_slot: 255,
            rx_bad_frames: 0,
        }
    }

    fn send<W: embedded_io::Write>(&mut self, link: &mut W, msg: &Msg<'_>) {
        let mut buf = [0u8; MAX_FRAME];
        let ok = match encode(msg, &mut buf) {
            Ok(n) => link.write_all(&buf[..n]).is_ok(),
            Err(_) => false,
        };
        if !ok {
            self.stats.tx_errors = self.stats.tx_errors.wrapping_add(1);
        }
    }

    /// Sends a heartbeat if one is due (call it also while idle).
    pub fn heartbeat_if_due<W: embedded_io::Write>(&mut self, link: &mut W) {
        let now = self.clock.now_us();
        if self.last_heartbeat.is_some_and(|t| now.saturating_sub(t) < self.cfg.heartbeat_us) {
            return;
        }
        self.send_heartbeat(link);
    }

    /// Sends a heartbeat now (e.g. the final counters before a board stops or reboots).
    pub fn send_heartbeat<W: embedded_io::Write>(&mut self, link: &mut W) {
        let now = self.clock.now_us();
        self.last_heartbeat = Some(now);
        let s = self.stats;
        let hb = Heartbeat {
            uptime_ms: (now / 1000) as u32,
            frames: s.frames,
            tiles: s.tiles,
            frames_late: s.frames_late,
            tiles_dropped: s.tiles_dropped,
            tx_errors: s.tx_errors,
            rx_bad_frames: self.rx_bad_frames,
            model_seq: self.model_seq,
            active_slot: self.active_slot,
        };
        self.send(link, &Msg::Heartbeat(hb));
    }

    /// Takes one frame from `source` and processes it. `Ok(false)` when the source had none.
    pub fn step<S: FrameSource, K: Classifier, W: embedded_io::Write>(
        &mut self,
        source: &mut S,
        frame_buf: &mut [u8],
        clf: &mut K,
        link: &mut W,
    ) -> Result<bool, LoopError> {
        let Some(info) = source.next_frame(frame_buf).map_err(|_| LoopError::Source)? else {
            self.heartbeat_if_due(link);
            return Ok(false);
        };
        let start = self.clock.now_us();
        let len =
            (info.width as usize).checked_mul(info.height as usize).and_then(|p| p.checked_mul(info.channels as usize));
        let frame = match len {
            Some(n) if n > 0 => frame_buf.get(..n).ok_or(LoopError::BadFrame)?,
            _ => return Err(LoopError::BadFrame),
        };
        self.frame_id = self.frame_id.wrapping_add(1);
        self.stats.frames = self.stats.frames.wrapping_add(1);
        let (tile, stride) = (self.cfg.tile.max(1), self.cfg.stride.max(1));
        let whole = info.width < tile || info.height < tile;
        let (tw, th) = if whole { (info.width, info.height) } else { (tile, tile) };
        let nx = if whole { 1 } else { (info.width - tile) / stride + 1 };
        let ny = if whole { 1 } else { (info.height - tile) / stride + 1 };
        let need = tw as usize * th as usize * info.channels as usize;
        if !whole && self.tile_buf.len() < need {
            return Err(LoopError::TileBuffer { needed: need, given: self.tile_buf.len() });
        }
        let mut late = false;
        for ty in 0..ny {
            for tx in 0..nx {
                let index = ty * nx + tx;
                if self.clock.now_us().saturating_sub(start) > self.cfg.deadline_us {
                    late = true;
                    self.stats.tiles_dropped = self.stats.tiles_dropped.wrapping_add(nx * ny - index);
                    break;
                }
                let (x, y) = (tx * stride, ty * stride);
                self.tile(frame, &info, x, y, tw, th, index, clf, link)?;
            }
            if late {
                break;
            }
        }
        if late {
            self.stats.frames_late = self.stats.frames_late.wrapping_add(1);
        }
        self.heartbeat_if_due(link);
        Ok(true)
    }

    #[allow(clippy::too_many_arguments)]
    fn tile<K: Classifier, W: embedded_io::Write>(
        &mut self,
        frame: &[u8],
        info: &FrameInfo,
        x: u32,
        y: u32,
        tw: u32,
        th: u32,
        index: u32,
        clf: &mut K,
        link: &mut W,
    ) -> Result<(), LoopError> {
        let c = info.channels as usize;
        let t0 = self.clock.now_us();
        let pixels: &[u8] = if tw == info.width && th == info.height {
            frame
        } else {
            let row = tw as usize * c;
            for r in 0..th as usize {
                let src = ((y as usize + r) * info.width as usize + x as usize) * c;
                let (Some(s), Some(d)) = (frame.get(src..src + row), self.tile_buf.get_mut(r * row..(r + 1) * row))
                else {
                    return Err(LoopError::BadFrame);
                };
                d.copy_from_slice(s);
            }
            &self.tile_buf[..th as usize * tw as usize * c]
        };
        if clf.classify(pixels, tw, th, info.channels).is_err() {
            self.stats.classify_errors = self.stats.classify_errors.wrapping_add(1);
            return Ok(());
        }
        let out = clf.output();
        if out.len() > MAX_CLASSES {
            return Err(LoopError::TooManyClasses { classes: out.len() });
        }
        let mut conf = [0f32; MAX_CLASSES];
        let n = confidences(&out, &mut conf);
        let smoothed = if let Some(alpha) = self.cfg.smoothing {
            let at = index as usize * n;
            let given = self.smooth_buf.len();
            let state =
                self.smooth_buf.get_mut(at..at + n).ok_or(LoopError::SmoothingBuffer { needed: at + n, given })?;
            smooth(state, &mut conf[..n], alpha);
            true
        } else {
            false
        };
        let mut top = [Score::default(); TOP_K_MAX];
        let count = top_k(&conf[..n], &out, self.cfg.top_k as usize, &mut top);
        let latency = self.clock.now_us().saturating_sub(t0);
        self.stats.tiles = self.stats.tiles.wrapping_add(1);
        let t = Telemetry {
            frame_id: self.frame_id,
            tile_index: index as u16,
            tile_x: x as u16,
            tile_y: y as u16,
            tile_size: tw as u16,
            count,
            top,
            latency_us: latency.min(u32::MAX as u64) as u32,
            arena_hwm: clf.arena_high_water(),
            smoothed,
        };
        let raw = match out {
            Output::I8 { data, .. } if self.cfg.send_raw_output && data.len() <= MAX_RAW_OUTPUT => Some(data),
            _ => None,
        };
        let mut raw_copy = [0u8; MAX_RAW_OUTPUT];
        let raw = raw.map(|d| {
            raw_copy[..d.len()].copy_from_slice(d);
            d.len()
        });
        self.send(link, &Msg::Telemetry(t));
        if let Some(len) = raw {
            let msg = Msg::RawOutput { frame_id: self.frame_id, tile_index: index as u16, data: &raw_copy[..len] };
            self.send(link, &msg);
        }
        Ok(())
    }
}
