//! The `rsim` command line. Field and data commands are always there; the training commands come
//! with the `train` feature (libtorch), so a ground-station laptop can build `rsim` without PyTorch:
//! `cargo install --path host-trainer --no-default-features`.
use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};
use rsim_boards::field::{
    run_confirm, run_flash, run_ground, run_keygen, run_sign, run_verify, ConfirmArgs, FlashArgs, GroundArgs,
    KeygenArgs, SignArgs, VerifyArgs,
};

#[derive(Parser, Debug)]
#[command(
    name = "rsim",
    version,
    about = "rsim: from unlabeled remote-sensing imagery to verified int8 scene classifiers on boards",
    long_about = "rsim: self-supervised pretraining and few-label evaluation (with the `train` feature), \
                  model conversion, flashing and ground-station tools for remote-sensing scene classifiers."
)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand, Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "parsed once per process; boxing clap's flattened training commands buys nothing"
)]
pub enum Cmd {
    #[cfg(feature = "train")]
    #[command(flatten)]
    Train(crate::cli::Cmd),
    /// Datasets: download and verify the ones rsim knows.
    #[command(subcommand)]
    Data(DataCmd),
    /// Convert a full-int8 .tflite model to .rsm (TFLite Micro's exact int8 arithmetic).
    Convert(ConvertArgs),
    /// Flash a .rsm model to a board over a serial port or TCP (resumable; the board verifies, then swaps).
    Flash(FlashArgs),
    /// Confirm the model on trial on a board (it then survives resets; unconfirmed, a reset reverts it).
    Confirm(ConfirmArgs),
    /// Ground station: decode board telemetry live into a table; write CSV and a class-map PNG.
    Ground(GroundArgs),
    /// Generate an Ed25519 key pair for signing models (secret file mode 0600; never printed).
    Keygen(KeygenArgs),
    /// Sign a .rsm with a monotonic model version; boards with keys accept only signed models.
    Sign(SignArgs),
    /// Check a signed model's signature, version and model as a board would.
    Verify(VerifyArgs),
    /// Quantize a float .rsm: int8 post-training (calibrated on train-split images) or f16 weights.
    Quantize(crate::field::quantize::QuantizeArgs),
    /// Score a .rsm with the edge runtime on a dataset split: OA, AA, kappa, confusion PNG, bytes, latency.
    Eval(crate::field::eval::EvalArgs),
}

#[derive(Subcommand, Debug)]
pub enum DataCmd {
    /// Download a dataset with progress and resume, check its hash, extract it into --dest.
    Fetch(FetchArgs),
    /// List the datasets `fetch` knows, with their source URLs.
    List,
}

#[derive(Args, Debug)]
pub struct FetchArgs {
    /// Dataset name (see `rsim data list`), e.g. eurosat-rgb.
    pub name: String,
    /// Folder that receives the dataset (a subfolder named after it is created).
    #[arg(long, default_value = "data")]
    pub dest: PathBuf,
    /// Hide the progress bar (for logs).
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct ConvertArgs {
    /// Input .tflite flatbuffer (full-int8; the first subgraph is converted).
    pub input: PathBuf,
    /// Output .rsm path (written to a temporary file, then renamed).
    pub output: PathBuf,
    /// Model name stored in the metadata.
    #[arg(long)]
    pub name: Option<String>,
    /// Class names in output order, comma separated.
    #[arg(long, value_delimiter = ',')]
    pub classes: Vec<String>,
    /// File with class names, one per line (empty lines ignored).
    #[arg(long, conflicts_with = "classes")]
    pub classes_file: Option<PathBuf>,
    /// Reference outputs to check the converted model against: a folder with `inputs/NNN.bin` and
    /// `outputs/NNN.bin` (raw int8 tensors, e.g. TFLite Micro's). Every input is run on the edge
    /// runtime and its output must match byte for byte; any difference fails the command.
    #[arg(long, value_name = "DIR")]
    pub reference: Option<PathBuf>,
    /// Refuse a model whose one inference needs more multiply-accumulates than this (a board's
    /// compute budget); nothing is written.
    #[arg(long)]
    pub max_macs: Option<u64>,
}

fn convert(a: &ConvertArgs) -> Result<(), String> {
    use rsim_model::tflite::{convert, ConvertOptions};
    let mut opts = ConvertOptions { name: a.name.clone(), class_names: a.classes.clone(), ..Default::default() };
    if let Some(f) = &a.classes_file {
        let text =
            std::fs::read_to_string(f).map_err(|e| format!("cannot read class names from {}: {e}", f.display()))?;
        opts.class_names = text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect();
    }
    let bytes = std::fs::read(&a.input).map_err(|e| format!("cannot read {}: {e}", a.input.display()))?;
    opts.source = a.input.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let c = convert(&bytes, &opts).map_err(|e| format!("{}: {e}", a.input.display()))?;
    let parsed = rsim_model::Model::parse(&c.bytes).map_err(|e| format!("{}: {e}", a.input.display()))?;
    let macs = crate::field::check_macs(&parsed, a.max_macs, &a.input.display().to_string())?;
    rsim_model::write::write_atomic(&a.output, &c.bytes)
        .map_err(|e| format!("cannot write {}: {e}", a.output.display()))?;
    println!(
        "{} -> {}: {} ops, {} bytes, arena {} bytes (liveness lower bound {}), {macs} MACs per inference",
        a.input.display(),
        a.output.display(),
        c.op_count,
        c.bytes.len(),
        c.arena_size,
        c.arena_lower_bound
    );
    match &a.reference {
        Some(dir) => check_reference(&c.bytes, dir),
        None => Ok(()),
    }
}

/// Runs every `inputs/NNN.bin` of `dir` through the runtime and compares with `outputs/NNN.bin`.
fn check_reference(model: &[u8], dir: &Path) -> Result<(), String> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir.join("inputs"))
        .map_err(|e| format!("cannot read {}: {e}", dir.join("inputs").display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "bin"))
        .collect();
    names.sort();
    if names.is_empty() {
        return Err(format!("no inputs/*.bin under {}", dir.display()));
    }
    let need = rsim_edge::required_arena(model).map_err(|e| e.to_string())?;
    let mut arena = vec![0u8; need + 16];
    let mut engine = rsim_edge::Engine::new(model, &mut arena).map_err(|e| e.to_string())?;
    let mut differ = Vec::new();
    for input in &names {
        let file = input.file_name().unwrap_or_default();
        let want_path = dir.join("outputs").join(file);
        let read = |p: &Path| std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()));
        let (x, want) = (read(input)?, read(&want_path)?);
        let slot = engine.input_mut();
        if slot.len() != x.len() {
            return Err(format!("{}: {} bytes, the model takes {}", input.display(), x.len(), slot.len()));
        }
        slot.copy_from_slice(&x);
        engine.invoke().map_err(|e| format!("{}: {e}", input.display()))?;
        if engine.output() != want.as_slice() {
            differ.push(file.to_string_lossy().into_owned());
        }
    }
    let same = names.len() - differ.len();
    println!("reference check: {same}/{} outputs byte-identical to {}", names.len(), dir.join("outputs").display());
    if differ.is_empty() {
        Ok(())
    } else {
        Err(format!("{} outputs differ from the reference: {}", differ.len(), differ.join(", ")))
    }
}

fn data(c: &DataCmd) -> Result<(), String> {
    match c {
        DataCmd::List => {
            for d in crate::fetch::known_datasets() {
                println!("{:<14} {}\n{:<14} {}", d.name, d.description, "", d.url);
            }
            Ok(())
        }
        DataCmd::Fetch(a) => {
            let path = crate::fetch::download_dataset(&a.name, &a.dest, !a.quiet).map_err(|e| e.to_string())?;
            println!("{} ready at {}", a.name, path.display());
            Ok(())
        }
    }
}

pub fn main() -> i32 {
    let cli = Cli::parse();
    let r = match &cli.cmd {
        #[cfg(feature = "train")]
        Cmd::Train(c) => crate::cli::run(c),
        Cmd::Data(c) => data(c),
        Cmd::Convert(a) => convert(a),
        Cmd::Flash(a) => run_flash(a).map(|_| ()),
        Cmd::Confirm(a) => run_confirm(a).map(|_| ()),
        Cmd::Ground(a) => run_ground(a).map(|_| ()),
        Cmd::Keygen(a) => run_keygen(a).map(|_| ()),
        Cmd::Sign(a) => run_sign(a).map(|_| ()),
        Cmd::Verify(a) => run_verify(a).map(|_| ()),
        Cmd::Quantize(a) => crate::field::quantize::run(a).map(|_| ()),
        Cmd::Eval(a) => crate::field::eval::run(a).map(|_| ()),
    };
    match r {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("rsim: error: {e}");
            1
        }
    }
}
