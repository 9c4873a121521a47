//! `cargo xtask demo`: the README's main job, end to end on what rsim has today.
//!
//! 1. set-up if needed (.venv with torch, trainer build);
//! 2. SimCLR pretraining of a compact backbone on EuroSAT RGB (RSIM_DATA) for a few minutes;
//! 3. few-label linear probes of that backbone vs the same backbone random and frozen;
//! 4. edge side: an existing int8 model (MLPerf Tiny ResNet-8 .tflite, RSIM_MODELS) converted to
//!    `.rsm` and run by the no_std runtime, checked byte for byte against TFLite Micro.
//! Distillation, quantization of our own students and export come with the compression issue.
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::setup::{repo_root, torch_env};

const HELP: &str = "usage: cargo xtask demo [--minutes M] [--data DIR]

  --minutes M   pretraining budget in minutes (default 10)
  --data DIR    image folder with class subfolders (default $RSIM_DATA/eurosat-rgb,
                else $RSIM_DATA/eurosat-rgb-ci20; RSIM_DATA defaults to ../shared/datasets)
Writes everything under runs/demo/.";

fn shared(var: &str, leaf: &str) -> PathBuf {
    std::env::var(var).map(PathBuf::from).unwrap_or_else(|_| repo_root().join("..").join("shared").join(leaf))
}

fn run(cmd: &mut Command, what: &str) -> Result<(), String> {
    eprintln!("\n== {what}");
    let st = cmd.status().map_err(|e| format!("{what}: {e}"))?;
    if st.success() {
        Ok(())
    } else {
        Err(format!("{what} failed ({st})"))
    }
}

fn rsim(bin: &Path) -> Command {
    let mut c = Command::new(bin);
    c.envs(torch_env());
    c
}

pub fn run_demo(args: &[String]) -> Result<(), String> {
    let (mut minutes, mut data) = ("10".to_string(), None);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--minutes" => minutes = it.next().ok_or("--minutes needs a value")?.clone(),
            "--data" => data = Some(PathBuf::from(it.next().ok_or("--data needs a value")?)),
            "-h" | "--help" => {
                println!("{HELP}");
                return Ok(());
            }
            other => return Err(format!("unknown flag `{other}`\n\n{HELP}")),
        }
    }
    let datasets = shared("RSIM_DATA", "datasets");
    let data = data.unwrap_or_else(|| {
        let full = datasets.join("eurosat-rgb");
        if full.exists() { full } else { datasets.join("eurosat-rgb-ci20") }
    });
    if !data.exists() {
        return Err(format!(
            "no data at {}: set RSIM_DATA, or download EuroSAT with `rsim data fetch eurosat-rgb --dest data` and pass --data data/eurosat-rgb",
            data.display()
        ));
    }
    let root = repo_root();
    if !root.join(".venv").exists() {
        crate::setup::run(&[])?;
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // The dev profile (opt-level 1, dependencies 2) is what setup and the tests build; the heavy
    // lifting is libtorch's, so a separate 20-minute release build would not pay for itself here.
    run(Command::new(&cargo).current_dir(&root).args(["build", "-p", "rsim-train"]).envs(torch_env()), "building rsim")?;
    let target = std::env::var("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|_| root.join("target"));
    let bin = target.join("debug").join("rsim");
    let out = root.join("runs").join("demo");
    let d = data.to_string_lossy().into_owned();
    let common = ["--data", &d, "--train-share", "0.8", "--arch", "resnet8", "--size", "32"];
    // Batch 256 on EuroSAT; small folders (the 200-tile CI subset) get a batch their train split can fill.
    let images: usize = std::fs::read_dir(&data)
        .map_err(|e| format!("reading {}: {e}", data.display()))?
        .filter_map(Result::ok)
        .filter(|c| c.path().is_dir())
        .map(|c| std::fs::read_dir(c.path()).map(|f| f.count()).unwrap_or(0))
        .sum();
    let batch = (images * 8 / 10 / 2).clamp(8, 256).to_string();
    let pre = out.join("pretrain");
    run(
        rsim(&bin).args(["pretrain"]).args(common).args(["--method", "simclr", "--batch", &batch, "--lr", "0.3", "--tau", "0.2"])
            .args(["--epochs", "6", "--warmup-epochs", "0.5", "--minutes", &minutes, "--ckpt-every", "100", "--out"]).arg(&pre),
        "SimCLR pretraining (ResNet-8 @ 32x32, train split only)",
    )?;
    let backbone = pre.join("backbone.safetensors");
    run(
        rsim(&bin).args(["probe"]).args(common).arg("--backbone").arg(&backbone)
            .args(["--labels", "5,20", "--eval", "linear,knn", "--out"]).arg(out.join("probe-ssl")),
        "few-label probes of the SSL backbone (test split)",
    )?;
    run(
        rsim(&bin).args(["probe"]).args(common).args(["--random", "--labels", "5,20", "--eval", "linear,knn", "--out"]).arg(out.join("probe-random")),
        "the same probes on the random, frozen backbone (baseline)",
    )?;

    let peer = shared("RSIM_MODELS", "models").join("mlperf-tiny-ic");
    if peer.exists() {
        let rsm = out.join("resnet8-int8.rsm");
        run(rsim(&bin).arg("convert").arg(peer.join("pretrainedResnet_quant.tflite")).arg(&rsm), "int8 .tflite -> .rsm")?;
        let model = std::fs::read(&rsm).map_err(|e| e.to_string())?;
        let mut same = 0;
        for i in 0..50 {
            let input = std::fs::read(peer.join(format!("inputs/{i:03}.bin"))).map_err(|e| e.to_string())?;
            let want = std::fs::read(peer.join(format!("outputs/{i:03}.bin"))).map_err(|e| e.to_string())?;
            let mut arena = vec![0u8; rsim_edge::engine::required_arena(&model).map_err(|e| e.to_string())? + 16];
            let mut e = rsim_edge::Engine::new(&model, &mut arena).map_err(|e| e.to_string())?;
            e.input_mut().copy_from_slice(&input);
            e.invoke().map_err(|e| e.to_string())?;
            same += usize::from(e.output() == want.as_slice());
        }
        println!("\nedge runtime: MLPerf Tiny ResNet-8 int8, {same}/50 outputs byte-identical to TFLite Micro");
    } else {
        eprintln!("(skipping the int8 edge step: no peer model at {}; set RSIM_MODELS)", peer.display());
    }
    println!("\nresults: {} (probe tables above; results.json and confusion PNGs there)", out.display());
    Ok(())
}
