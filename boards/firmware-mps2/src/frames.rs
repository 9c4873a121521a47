//! The embedded frames as the loop's camera, and the classifier the loop drives: the edge runtime,
//! fed either pixels (preprocessed per the model's input spec) or ready input tensors.

use rsim_boards::onboard::{Classifier, EngineClassifier, FrameInfo, FrameSource, Output};
use rsim_edge::EngineError;

/// Hands out `data` in `frame_len` pieces, `repeat` passes over all of them.
pub struct Embedded {
    pub data: &'static [u8],
    pub info: FrameInfo,
    pub frame_len: usize,
    pub repeat: u32,
    next: usize,
    pass: u32,
}

impl Embedded {
    pub fn new(data: &'static [u8], info: FrameInfo, frame_len: usize, repeat: u32) -> Self {
        Embedded { data, info, frame_len, repeat, next: 0, pass: 0 }
    }
}

/// The embedded frames do not fit the frame buffer (a build error the build script rules out).
#[derive(Debug)]
pub struct FrameTooLarge;

impl FrameSource for Embedded {
    type Error = FrameTooLarge;
    fn next_frame(&mut self, buf: &mut [u8]) -> Result<Option<FrameInfo>, FrameTooLarge> {
        let start = self.next.saturating_mul(self.frame_len);
        let Some(frame) = self.data.get(start..start.saturating_add(self.frame_len)) else {
            self.pass += 1;
            if self.pass >= self.repeat || self.next == 0 {
                return Ok(None);
            }
            self.next = 0;
            return self.next_frame(buf);
        };
        buf.get_mut(..frame.len()).ok_or(FrameTooLarge)?.copy_from_slice(frame);
        self.next += 1;
        Ok(Some(self.info))
    }
}

/// [`EngineClassifier`] that takes ready input tensors as they are when `raw` is set.
pub struct Firmware<'m, 'a, F: FnMut(&[u8])> {
    pub inner: EngineClassifier<'m, 'a>,
    pub raw: bool,
    /// Called with each output tensor (semihosting hex lines for the cross-target test).
    pub report: F,
}

impl<F: FnMut(&[u8])> Classifier for Firmware<'_, '_, F> {
    type Error = EngineError;
    fn classify(&mut self, pixels: &[u8], width: u32, height: u32, channels: u32) -> Result<(), EngineError> {
        if self.raw {
            let dst = self.inner.engine.input_mut();
            if dst.len() != pixels.len() {
                return Err(EngineError::BadInput { reason: "embedded tensor size differs from the model input" });
            }
            dst.copy_from_slice(pixels);
            self.inner.engine.invoke()?;
        } else {
            self.inner.classify(pixels, width, height, channels)?;
        }
        (self.report)(self.inner.engine.output());
        Ok(())
    }
    fn output(&self) -> Output<'_> {
        self.inner.output()
    }
    fn arena_high_water(&self) -> u32 {
        self.inner.arena_high_water()
    }
}
