//! The models the benchmarks run: random-weight builder models, their int8 PTQ form, converted
//! `.tflite` peers, and the multiply-accumulate count of any `.rsm`.

use rsim_edge::Engine;
use rsim_model::arch::Arch;
use rsim_model::calib::{Calibrator, Observer};
use rsim_model::graph_builder::{export, ExportOptions, Rng};
use rsim_model::ptq::{calibration_model, quantize_model, PtqOptions};
use rsim_model::{Model, Op};

/// Model bytes copied to a 16-byte-aligned spot (the runtime then reads f32 weights in place).
pub struct Aligned {
    buf: Vec<u8>,
    off: usize,
    len: usize,
}

impl Aligned {
    pub fn new(bytes: &[u8]) -> Aligned {
        let mut buf = vec![0u8; bytes.len() + 16];
        let off = buf.as_ptr().align_offset(16);
        buf[off..off + bytes.len()].copy_from_slice(bytes);
        Aligned { buf, off, len: bytes.len() }
    }
    pub fn bytes(&self) -> &[u8] {
        &self.buf[self.off..self.off + self.len]
    }
}

/// An arena big enough for `model` at any alignment.
pub fn arena_for(model: &[u8]) -> Result<Vec<u8>, String> {
    Ok(vec![0u8; rsim_edge::required_arena(model).map_err(|e| e.to_string())? + 16])
}

/// A float `.rsm` of `arch` with random weights (3 bands).
pub fn random_f32(arch: Arch, size: usize, classes: usize, seed: u64) -> Result<Vec<u8>, String> {
    Ok(export(&ExportOptions::random(arch, 3, size, Some(classes), seed))
        .map_err(|e| format!("{}: {e}", arch.name()))?
        .bytes)
}

/// Random u8 RGB images of `size` x `size` (what a camera would hand the runtime).
pub fn random_images(count: usize, size: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut rng = Rng::new(seed);
    (0..count).map(|_| (0..size * size * 3).map(|_| (rng.next_u64() >> 56) as u8).collect()).collect()
}

/// int8 PTQ of a float model: min/max ranges of the calibration model over `images`.
pub fn ptq_int8(float_rsm: &[u8], images: &[Vec<u8>], size: usize) -> Result<Vec<u8>, String> {
    let calib = Aligned::new(&calibration_model(float_rsm).map_err(|e| e.to_string())?);
    let mut arena = arena_for(calib.bytes())?;
    let mut engine = Engine::new(calib.bytes(), &mut arena).map_err(|e| e.to_string())?;
    let mut obs = Observer::new(Calibrator::MinMax);
    for img in images {
        engine.set_input_image_u8(img, size as u32, size as u32, 3).map_err(|e| e.to_string())?;
        engine.invoke_observed(&mut |_, op, out| obs.observe_le_f32(op.output().id, out)).map_err(|e| e.to_string())?;
    }
    quantize_model(float_rsm, &obs.ranges(), &PtqOptions { calibrator: "minmax".into(), ..Default::default() })
        .map_err(|e| e.to_string())
}

/// The graph input's raw bytes after preprocessing `image` (f32 LE or int8, as the model takes).
pub fn input_bytes(model: &[u8], image: &[u8], size: usize) -> Result<Vec<u8>, String> {
    let m = Aligned::new(model);
    let mut arena = arena_for(m.bytes())?;
    let mut engine = Engine::new(m.bytes(), &mut arena).map_err(|e| e.to_string())?;
    engine.set_input_image_u8(image, size as u32, size as u32, 3).map_err(|e| e.to_string())?;
    Ok(engine.input_mut().to_vec())
}

/// Random bytes, e.g. an int8 input tensor.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    (0..len).map(|_| (rng.next_u64() >> 56) as u8).collect()
}

/// Byte length of the model's graph input.
pub fn input_len(model: &[u8]) -> Result<usize, String> {
    let m = Model::parse(model).map_err(|e| e.to_string())?;
    m.info.input.byte_len().ok_or_else(|| "input size overflows".into())
}

/// Multiply-accumulates of one inference: for every Conv2d (dense, grouped or depthwise) output
/// elements x kernel taps x input channels per group, for every FullyConnected output elements x
/// input features. Other ops (adds, pools, softmax, ...) are not counted.
pub fn macs(model: &[u8]) -> Result<u64, String> {
    let m = Model::parse(model).map_err(|e| e.to_string())?;
    let mut total = 0u64;
    for op in m.ops() {
        let op = op.map_err(|e| e.to_string())?;
        total += match op {
            Op::Conv2d { input, weights, output, params, .. } => {
                let out = output.shape.checked_len().unwrap_or(0) as u64;
                // OHWI (dense, grouped) or 1HW(C*M) (depthwise): taps are dims 1 and 2 either way.
                let w = weights.shape.nhwc();
                let taps = (w[1] * w[2]) as u64;
                let cin = input.shape.nhwc()[3] as u64;
                out * taps * (cin / u64::from(params.groups.max(1)))
            }
            Op::FullyConnected { weights, output, .. } => {
                let out = output.shape.checked_len().unwrap_or(0) as u64;
                let wl = weights.shape.checked_len().unwrap_or(0) as u64;
                let units = u64::from(weights.shape.dims[0]).max(1);
                out * (wl / units)
            }
            // Not counted (see above). Listed, not `_`: a new op with MACs must be counted here.
            Op::Add { .. }
            | Op::Mul { .. }
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
            | Op::Dequantize { .. } => 0,
        };
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resnet18_at_224_has_its_textbook_mac_count() {
        // torchvision's ResNet-18: 1.814 GMACs at 224x224 with 1000 classes.
        let m = random_f32(Arch::ResNet18, 224, 1000, 1).unwrap();
        let g = macs(&m).unwrap() as f64 / 1e9;
        assert!((g - 1.814).abs() < 0.01, "{g} GMACs");
    }

    #[test]
    fn mobilenet_v2_at_224_has_its_textbook_mac_count() {
        // MobileNetV2 1.0 at 224: ~300 M multiply-adds (paper: 300 M; torchvision 0.30 G).
        let m = random_f32(Arch::MobileNetV2 { width: 1.0 }, 224, 1000, 1).unwrap();
        let g = macs(&m).unwrap() as f64 / 1e9;
        assert!((g - 0.30).abs() < 0.01, "{g} GMACs");
    }

    #[test]
    fn int8_ptq_keeps_the_mac_count() {
        let f = random_f32(Arch::MobileNetV2 { width: 0.35 }, 32, 10, 1).unwrap();
        let q = ptq_int8(&f, &random_images(2, 32, 3), 32).unwrap();
        assert_eq!(macs(&f).unwrap(), macs(&q).unwrap());
    }
}
