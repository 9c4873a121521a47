//! `rsim quantize`: float `.rsm` -> int8 (post-training, calibrated on train-split images run through
//! rsim-edge) or f16 weights. Prints what changed and how closely int8 follows f32.

use super::images::{load_u8, round_robin, select, Part, U8Image};
use clap::Args;
use rsim_edge::Engine;
use rsim_model::calib::{Calibrator, Observer};
use rsim_model::ptq::{calibration_model, quantize_model, to_f16, PtqOptions, Ranges};
use rsim_model::{Model, Quant};
use std::path::PathBuf;

#[derive(Args, Debug, Clone)]
pub struct QuantizeArgs {
    /// Float .rsm model (f32 or f16 weights), e.g. from `rsim export`.
    #[arg(long)]
    pub model: PathBuf,
    /// Calibration images: a folder with one subfolder per class (its train split is used, see
    /// --train-share) or a CSV split file (used whole: give the train CSV). Not needed with --f16.
    #[arg(long, required_unless_present = "f16")]
    pub calib: Option<PathBuf>,
    /// Number of calibration images, taken round-robin over the classes.
    #[arg(long, default_value_t = 256)]
    pub images: usize,
    /// Activation range calibrator: minmax, percentile (clip at --percentile) or mse (clip range
    /// minimising the expected int8 error over a histogram). percentile and mse run two passes.
    #[arg(long, default_value = "percentile")]
    pub calibrator: String,
    /// Percentile for --calibrator percentile (both tails: p and 100 - p).
    #[arg(long, default_value_t = 99.99)]
    pub percentile: f64,
    /// Share of each class (sorted file names) that is the train split of a --calib folder.
    #[arg(long, default_value_t = 0.8)]
    pub train_share: f64,
    /// Calibration images for empirical bias correction (0: off; at most --images): layer by layer,
    /// each conv/FC bias absorbs its channels' mean int8-minus-float output shift on these images.
    #[arg(long, default_value_t = 128)]
    pub bias_correction: usize,
    /// Write f16 weights instead of int8 (same float graph; no calibration).
    #[arg(long)]
    pub f16: bool,
    /// Model name stored in the output (default: the float name + "-int8" / "-f16").
    #[arg(long)]
    pub name: Option<String>,
    /// Print one line per int8 op output: observed range, scale and zero point.
    #[arg(long)]
    pub layers: bool,
    /// Refuse a model whose one inference needs more multiply-accumulates than this (a board's
    /// compute budget; quantization keeps the count), before any calibration; nothing is written.
    #[arg(long)]
    pub max_macs: Option<u64>,
    /// Hide the progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Output .rsm path (written to a temporary file, then renamed; nothing is written on error).
    #[arg(short = 'o', long)]
    pub output: PathBuf,
}

/// What `run` did, for callers and tests.
#[derive(Clone, Debug)]
pub struct QuantizeSummary {
    pub float_bytes: usize,
    pub out_bytes: usize,
    pub float_arena: u32,
    pub out_arena: u32,
    pub images: usize,
    /// Top-1 agreement f32 vs int8 on the calibration images (None for f16 or no class head).
    pub top1_agreement: Option<f64>,
    /// Mean |f32 - int8| over the outputs on the calibration images.
    pub mean_abs_delta: Option<f64>,
    /// Largest |mean int8 - mean f32| of one output over the calibration images: the systematic
    /// part of the int8 error, which bias correction removes.
    pub max_mean_shift: Option<f64>,
}

/// The model's planned activation arena and a buffer for the engine (prepared ops and fast-kernel
/// data included, with room for the engine's alignment).
pub(super) fn arena(bytes: &[u8]) -> Result<(u32, Vec<u8>), String> {
    let n = Model::parse(bytes).map_err(|e| e.to_string())?.info.arena_size;
    let need = rsim_edge::required_arena(bytes).map_err(|e| e.to_string())?;
    Ok((n, vec![0u8; need + 16]))
}

/// Dequantized outputs of `model` on every image.
fn outputs(model: &[u8], images: &[U8Image], bands: u32) -> Result<Vec<Vec<f32>>, String> {
    let (_, mut buf) = arena(model)?;
    let mut e = Engine::new(model, &mut buf).map_err(|e| e.to_string())?;
    let mut all = Vec::with_capacity(images.len());
    for im in images {
        e.run_image_u8(&im.pixels, im.width, im.height, bands).map_err(|e| e.to_string())?;
        let mut o = vec![0f32; e.output_len()];
        e.output_f32(&mut o).map_err(|e| e.to_string())?;
        all.push(o);
    }
    Ok(all)
}

fn argmax(v: &[f32]) -> usize {
    v.iter().enumerate().fold(0, |b, (i, &x)| if x > v[b] { i } else { b })
}

/// Runs the calibration model over the images (twice for histogram calibrators) and returns the ranges.
fn calibrate(calib: &[u8], images: &[U8Image], bands: u32, cal: Calibrator, quiet: bool) -> Result<Ranges, String> {
    let (_, mut buf) = arena(calib)?;
    let mut engine = Engine::new(calib, &mut buf).map_err(|e| e.to_string())?;
    let mut obs = Observer::new(cal);
    let passes = if obs.needs_second_pass() { 2 } else { 1 };
    let bar = if quiet {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new((passes * images.len()) as u64)
    };
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("calibrating {bar:30} {pos}/{len} images  {msg}  [{elapsed_precise}]")
    {
        bar.set_style(style);
    }
    for pass in 0..passes {
        if pass == 1 {
            obs.start_second_pass();
        }
        bar.set_message(if pass == 0 { "min/max" } else { "histograms" });
        for im in images {
            engine.set_input_image_u8(&im.pixels, im.width, im.height, bands).map_err(|e| e.to_string())?;
            engine
                .invoke_observed(&mut |_, op, out| obs.observe_le_f32(op.output().id, out))
                .map_err(|e| e.to_string())?;
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    Ok(obs.ranges())
}

pub fn run(a: &QuantizeArgs) -> Result<QuantizeSummary, String> {
    let float = std::fs::read(&a.model).map_err(|e| format!("cannot read {}: {e}", a.model.display()))?;
    let fm = Model::parse(&float).map_err(|e| format!("{}: {e}", a.model.display()))?;
    super::check_macs(&fm, a.max_macs, &a.model.display().to_string())?;
    let bands = fm.info.input_spec.channels;
    let write = |bytes: &[u8]| {
        rsim_model::write::write_atomic(&a.output, bytes)
            .map_err(|e| format!("cannot write {}: {e}", a.output.display()))
    };

    if a.f16 {
        let mut half = to_f16(&float).map_err(|e| format!("{}: {e}", a.model.display()))?;
        if let Some(n) = &a.name {
            half = rename(&half, n)?;
        }
        write(&half)?;
        println!("f16: {} -> {}: {} -> {} bytes", a.model.display(), a.output.display(), float.len(), half.len());
        let arena = fm.info.arena_size;
        return Ok(QuantizeSummary {
            float_bytes: float.len(),
            out_bytes: half.len(),
            float_arena: arena,
            out_arena: arena,
            images: 0,
            top1_agreement: None,
            mean_abs_delta: None,
            max_mean_shift: None,
        });
    }

    let cal = Calibrator::parse(&a.calibrator, a.percentile)?;
    if a.images == 0 {
        return Err("--images must be at least 1".into());
    }
    let calib_path = a.calib.as_ref().ok_or("--calib is required for int8 (or pass --f16)")?;
    let ds =
        select(calib_path, None, Part::parse("train", a.train_share)?).map_err(|e| format!("calibration data: {e}"))?;
    let picked = round_robin(&ds, a.images);
    let mut images = Vec::with_capacity(picked.len());
    for &i in &picked {
        images.push(load_u8(&ds.samples[i].path, bands as usize)?);
    }
    let calib = calibration_model(&float).map_err(|e| format!("{}: {e}", a.model.display()))?;
    let ranges = calibrate(&calib, &images, bands, cal, a.quiet)?;
    let source =
        format!("{} train split ({} images, train share {})", calib_path.display(), images.len(), a.train_share);
    let label = if a.bias_correction > 0 { format!("{}+bc", cal.label()) } else { cal.label() };
    let opts = PtqOptions { name: a.name.clone(), calibrator: label, data: Some(source), ..Default::default() };
    let corr_images = &images[..a.bias_correction.min(images.len())];
    let int8 = super::bias_correct::correct(&calib, corr_images, bands, a.quiet, |shifts| {
        let o = PtqOptions { bias_correction: shifts.clone(), ..opts.clone() };
        quantize_model(&float, &ranges, &o).map_err(|e| format!("{}: {e}", a.model.display()))
    })?;

    // Agreement on the calibration images (the test split stays for `rsim eval`).
    let (f, q) = (outputs(&float, &images, bands)?, outputs(&int8, &images, bands)?);
    let classes = fm.info.class_count();
    let agree =
        (classes > 1).then(|| f.iter().zip(&q).filter(|(x, y)| argmax(x) == argmax(y)).count() as f64 / f.len() as f64);
    let n: usize = f.iter().map(Vec::len).sum();
    let delta = f.iter().zip(&q).flat_map(|(x, y)| x.iter().zip(y).map(|(a, b)| (a - b).abs() as f64)).sum::<f64>()
        / n.max(1) as f64;
    let outs = f.first().map_or(0, Vec::len);
    let shift = (0..outs)
        .map(|j| f.iter().zip(&q).map(|(x, y)| (y[j] - x[j]) as f64).sum::<f64>().abs() / f.len().max(1) as f64)
        .fold(0.0, f64::max);
    write(&int8)?;

    let im = Model::parse(&int8).map_err(|e| e.to_string())?;
    if a.layers {
        print_layers(&im, &ranges);
    }
    println!("calibrator        {}", opts.calibrator);
    println!("images            {} (train split of {})", images.len(), calib_path.display());
    println!("model bytes       {} (f32) -> {} (int8)", float.len(), int8.len());
    println!("arena bytes       {} (f32) -> {} (int8)", fm.info.arena_size, im.info.arena_size);
    match agree {
        Some(a) => println!("top-1 agreement   {:.2}% (f32 vs int8 on the calibration images)", a * 100.0),
        None => println!("top-1 agreement   n/a (model has no class head)"),
    }
    println!("mean |delta out|  {delta:.5}");
    println!("max mean shift    {shift:.5} (largest systematic int8 - f32 output offset)");
    println!("wrote {}", a.output.display());
    Ok(QuantizeSummary {
        float_bytes: float.len(),
        out_bytes: int8.len(),
        float_arena: fm.info.arena_size,
        out_arena: im.info.arena_size,
        images: images.len(),
        top1_agreement: agree,
        mean_abs_delta: Some(delta),
        max_mean_shift: Some(shift),
    })
}

fn rename(bytes: &[u8], name: &str) -> Result<Vec<u8>, String> {
    let m = Model::parse(bytes).map_err(|e| e.to_string())?;
    let ops: Vec<_> = m.ops().collect::<Result<_, _>>().map_err(|e| e.to_string())?;
    let info = rsim_model::ModelInfo { name, ..m.info };
    Ok(rsim_model::write::encode(&info, &ops, m.weights, m.test_vector))
}

fn print_layers(m: &Model<'_>, ranges: &Ranges) {
    println!("{:>4}  {:<15} {:>6}  {:>22}  {:>10} {:>5}", "op", "kind", "tensor", "observed range", "scale", "zp");
    for (i, op) in m.ops().enumerate() {
        let Ok(op) = op else { continue };
        let t = op.output();
        let (scale, zp) = match t.quant {
            Quant::PerTensor { scale, zero_point } => (scale, zero_point),
            _ => (f32::NAN, 0),
        };
        let r =
            ranges.get(&t.id).map(|(lo, hi)| format!("[{lo:.4}, {hi:.4}]")).unwrap_or_else(|| "(from input)".into());
        println!("{i:>4}  {:<15} {:>6}  {r:>22}  {scale:>10.6} {zp:>5}", op.name(), t.id);
    }
}
