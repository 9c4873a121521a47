//! Empirical bias correction for `rsim quantize` (Nagel et al. 2019, "Data-Free Quantization Through
//! Weight Equalization and Bias Correction", sec. 4.2, the data-driven variant). Rounding int8 weights
//! shifts each output channel's mean; on small depthwise kernels the shift is a sizeable part of the
//! activation range. Running the float and the int8 graph on the same calibration images gives the
//! shift per channel, which is folded back into the bias before quantizing again.

use super::images::U8Image;
use rsim_edge::Engine;
use rsim_model::graph::Op;
use rsim_model::{DType, Model, Quant};
use std::collections::BTreeMap;

/// Per-channel sums of one tensor over every image and position.
struct ChannelMeans {
    sums: Vec<f64>,
    count: u64,
}

impl ChannelMeans {
    fn add(&mut self, vals: impl Iterator<Item = f32>) {
        let c = self.sums.len();
        for (i, v) in vals.enumerate() {
            self.sums[i % c] += v as f64;
            if i % c == 0 {
                self.count += 1;
            }
        }
    }
    fn means(&self) -> impl Iterator<Item = f64> + '_ {
        self.sums.iter().map(|s| s / self.count.max(1) as f64)
    }
}

/// Conv/FC outputs of the int8 graph in op order: (id, channels).
fn targets(int8: &[u8]) -> Result<Vec<(u16, usize)>, String> {
    let m = Model::parse(int8).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for op in m.ops() {
        let op = op.map_err(|e| e.to_string())?;
        if let Op::Conv2d { output, bias: Some(_), .. } | Op::FullyConnected { output, bias: Some(_), .. } = &op {
            if let (DType::I8, Quant::PerTensor { .. }) = (output.dtype, output.quant) {
                out.push((output.id, *output.shape.dims().last().unwrap_or(&1) as usize));
            }
        }
    }
    Ok(out)
}

/// Mean of every target tensor per channel over the images, run through `model` (f32 or int8 outputs).
fn channel_means(
    model: &[u8],
    want: &[(u16, usize)],
    images: &[U8Image],
    bands: u32,
) -> Result<BTreeMap<u16, Vec<f64>>, String> {
    let (_, mut buf) = super::quantize::arena(model)?;
    let mut engine = Engine::new(model, &mut buf).map_err(|e| e.to_string())?;
    let mut acc: BTreeMap<u16, ChannelMeans> =
        want.iter().map(|&(id, c)| (id, ChannelMeans { sums: vec![0.0; c.max(1)], count: 0 })).collect();
    for im in images {
        engine.set_input_image_u8(&im.pixels, im.width, im.height, bands).map_err(|e| e.to_string())?;
        engine
            .invoke_observed(&mut |_, op, bytes| {
                let t = op.output();
                let Some(a) = acc.get_mut(&t.id) else { return };
                match (t.dtype, t.quant) {
                    (DType::F32, _) => {
                        a.add(bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])))
                    }
                    (DType::I8, Quant::PerTensor { scale, zero_point }) => {
                        a.add(bytes.iter().map(|&b| (b as i8 as i32 - zero_point) as f32 * scale))
                    }
                    _ => {}
                }
            })
            .map_err(|e| e.to_string())?;
    }
    Ok(acc.into_iter().map(|(id, a)| (id, a.means().collect())).collect())
}

/// Sequential bias correction: layer by layer in graph order, each layer's shift is measured with
/// every earlier layer already corrected (correcting all at once over-corrects: a later layer's
/// shift partly comes from the earlier layers' shifts). `quantize` maps shifts to int8 model bytes;
/// `float` is the calibration graph (same tensor ids as the int8 graph). Returns the final int8 bytes.
pub fn correct(
    float: &[u8],
    images: &[U8Image],
    bands: u32,
    quiet: bool,
    quantize: impl Fn(&BTreeMap<u16, Vec<f32>>) -> Result<Vec<u8>, String>,
) -> Result<Vec<u8>, String> {
    let mut shifts: BTreeMap<u16, Vec<f32>> = BTreeMap::new();
    let mut int8 = quantize(&shifts)?;
    if images.is_empty() {
        return Ok(int8);
    }
    let order = targets(&int8)?;
    let reference = channel_means(float, &order, images, bands)?;
    let bar = if quiet { indicatif::ProgressBar::hidden() } else { indicatif::ProgressBar::new(order.len() as u64) };
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("bias correction {bar:30} {pos}/{len} layers  [{elapsed_precise}]")
    {
        bar.set_style(style);
    }
    for &(id, c) in &order {
        let got = channel_means(&int8, &[(id, c)], images, bands)?;
        if let (Some(q), Some(f)) = (got.get(&id), reference.get(&id)) {
            shifts.insert(id, q.iter().zip(f).map(|(q, f)| (q - f) as f32).collect());
            int8 = quantize(&shifts)?;
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(int8)
}
