//! `cargo xtask demo`: the README's main job, end to end on the embedded default data.
//!
//! 1. set-up if needed (.venv with torch, trainer build); data from RSIM_DATA, else downloaded;
//! 2. SimCLR pretraining of a ResNet-18 teacher backbone (32x32 tiles, train split only);
//! 3. few-label linear probes of that backbone vs the same backbone random and frozen;
//! 4. a teacher head on 20 labels per class, then distillation into a MobileNetV2-0.35 student at
//!    64x64 (the tiles' own size; the teacher sees the same view at 32x32) on every train image;
//! 5. export (f32), int8 post-training quantization calibrated on train images, f16;
//! 6. the edge runtime classifies the held-back test tiles with each model, and one summary table;
//! 7. a peer int8 model (MLPerf Tiny ResNet-8 .tflite) checked byte for byte against TFLite Micro.
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::setup::{repo_root, torch_env};

const HELP: &str = "usage: cargo xtask demo [--minutes M] [--distill-minutes M] [--data DIR]

  --minutes M          pretraining budget in minutes (default 4)
  --distill-minutes M  distillation budget in minutes (default 3)
  --data DIR           image folder with class subfolders (default $RSIM_DATA/eurosat-rgb, else
                       $RSIM_DATA/eurosat-rgb-ci20; RSIM_DATA defaults to ../shared/datasets; when
                       neither exists, EuroSAT RGB is downloaded into data/ with `rsim data fetch`)
Writes everything under runs/demo/ and ends with one summary table.";

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
    let (mut minutes, mut distill_minutes, mut data) = ("4".to_string(), "3".to_string(), None);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--minutes" => minutes = it.next().ok_or("--minutes needs a value")?.clone(),
            "--distill-minutes" => distill_minutes = it.next().ok_or("--distill-minutes needs a value")?.clone(),
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
        if full.exists() {
            full
        } else {
            datasets.join("eurosat-rgb-ci20")
        }
    });
    let root = repo_root();
    // Say what is coming before the first long step (the torch download, the first build).
    eprintln!(
        "xtask demo: {} -> runs/demo/\n  steps: set-up (.venv with torch {}, once) · build rsim · SimCLR pretraining ({minutes} min) · \
         few-label probes · teacher head · distillation ({distill_minutes} min) · export · int8/f16 quantization · \
         edge-runtime evaluation · peer int8 check",
        data.display(),
        crate::setup::TORCH_VERSION
    );
    if !root.join(".venv").exists() {
        eprintln!("\n== set-up: no .venv yet, creating it with torch (a few minutes of download, once)");
        crate::setup::run(&["--no-build".to_string()])?;
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // The dev profile (opt-level 1, dependencies 2) is what setup and the tests build; the heavy
    // lifting is libtorch's, so a separate 20-minute release build would not pay for itself here.
    run(
        Command::new(&cargo).current_dir(&root).args(["build", "-p", "rsim-train"]).envs(torch_env()),
        "building rsim",
    )?;
    let target = std::env::var("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|_| root.join("target"));
    let bin = target.join("debug").join("rsim");
    let data = if data.exists() {
        data
    } else {
        let dest = root.join("data");
        eprintln!(
            "no data at {}: downloading EuroSAT RGB into {} (set RSIM_DATA to use a copy you have)",
            data.display(),
            dest.display()
        );
        run(rsim(&bin).args(["data", "fetch", "eurosat-rgb", "--dest"]).arg(&dest), "downloading EuroSAT RGB")?;
        dest.join("eurosat-rgb")
    };
    let out = root.join("runs").join("demo");
    let d = data.to_string_lossy().into_owned();
    let split = ["--data", &d, "--train-share", "0.8", "--size", "32"];
    // Batch 256 on EuroSAT; small folders (the 200-tile CI subset) get a batch their train split can fill.
    let images: usize = std::fs::read_dir(&data)
        .map_err(|e| format!("reading {}: {e}", data.display()))?
        .filter_map(Result::ok)
        .filter(|c| c.path().is_dir())
        .map(|c| std::fs::read_dir(c.path()).map(|f| f.count()).unwrap_or(0))
        .sum();
    let batch = (images * 8 / 10 / 2).clamp(8, 256).to_string();
    let small_batch = (images * 8 / 10 / 2).clamp(8, 128).to_string();
    let pre = out.join("pretrain");
    run(
        rsim(&bin)
            .args(["pretrain"])
            .args(split)
            .args(["--arch", "resnet18", "--method", "simclr", "--batch", &batch])
            .args(["--lr", "0.3", "--tau", "0.2", "--epochs", "6", "--warmup-epochs", "0.5", "--minutes", &minutes])
            .args(["--ckpt-every", "100", "--out"])
            .arg(&pre),
        "SimCLR pretraining of the teacher backbone (ResNet-18 @ 32x32, train split only)",
    )?;
    let backbone = pre.join("backbone.safetensors");
    run(
        rsim(&bin)
            .args(["probe"])
            .args(split)
            .args(["--arch", "resnet18", "--backbone"])
            .arg(&backbone)
            .args(["--labels", "5,20", "--eval", "linear", "--out"])
            .arg(out.join("probe-ssl")),
        "few-label linear probes of the SSL backbone (test split)",
    )?;
    run(
        rsim(&bin)
            .args(["probe"])
            .args(split)
            .args(["--arch", "resnet18", "--random", "--labels", "5,20", "--eval", "linear", "--out"])
            .arg(out.join("probe-random")),
        "the same probes on the random, frozen backbone (baseline)",
    )?;
    let teacher = out.join("teacher");
    run(
        rsim(&bin)
            .args(["finetune"])
            .args(split)
            .args(["--arch", "resnet18", "--backbone"])
            .arg(&backbone)
            .args(["--labels", "20", "--mode", "linear", "--steps", "300", "--out"])
            .arg(&teacher),
        "teacher head: linear classifier on 20 labels per class",
    )?;
    let student = out.join("student");
    run(
        rsim(&bin)
            .args(["distill", "--teacher"])
            .arg(&teacher)
            .args(["--student", "mobilenet_v2_0.35"])
            .args(["--data", &d, "--train-share", "0.8", "--size", "64", "--labels", "20", "--epochs", "4"])
            .args(["--batch", &small_batch, "--minutes", &distill_minutes, "--out"])
            .arg(&student),
        "distilling the teacher into MobileNetV2-0.35 on every train image (teacher logits, + CE on the 20 labels)",
    )?;
    let models = [
        ("teacher ResNet-18 f32", out.join("teacher-f32.rsm")),
        ("student MobileNetV2-0.35 f32", out.join("student-f32.rsm")),
        ("student int8 (PTQ)", out.join("student-int8.rsm")),
        ("student f16", out.join("student-f16.rsm")),
    ];
    run(
        rsim(&bin).args(["export", "--ckpt"]).arg(&teacher).arg("-o").arg(&models[0].1),
        "export the teacher (.rsm f32)",
    )?;
    run(
        rsim(&bin).args(["export", "--ckpt"]).arg(&student).arg("-o").arg(&models[1].1),
        "export the student (.rsm f32)",
    )?;
    run(
        rsim(&bin)
            .args(["quantize", "--model"])
            .arg(&models[1].1)
            .args(["--calib", &d, "--train-share", "0.8", "--images", "256"])
            .args(["--calibrator", "mse", "-o"])
            .arg(&models[2].1),
        "int8 post-training quantization (calibrated on 256 train images)",
    )?;
    run(
        rsim(&bin).args(["quantize", "--model"]).arg(&models[1].1).args(["--f16", "-o"]).arg(&models[3].1),
        "f16 weights",
    )?;
    let mut rows = Vec::new();
    for (i, (label, m)) in models.iter().enumerate() {
        let dir = out.join(format!("eval-{i}"));
        run(
            rsim(&bin)
                .args(["eval", "--model"])
                .arg(m)
                .args(["--data", &d, "--split", "test", "--train-share", "0.8", "--quiet", "--out"])
                .arg(&dir),
            &format!("edge runtime on the held-back test tiles: {label}"),
        )?;
        rows.push((*label, eval_row(&dir.join("results.json"))?));
    }

    let peer = shared("RSIM_MODELS", "models").join("mlperf-tiny-ic");
    let peer_line = if peer.exists() {
        let rsm = out.join("resnet8-int8.rsm");
        eprintln!("\n== int8 .tflite -> .rsm, checked against TFLite Micro's outputs on the edge runtime");
        let done = rsim(&bin)
            .arg("convert")
            .arg(peer.join("pretrainedResnet_quant.tflite"))
            .arg(&rsm)
            .arg("--reference")
            .arg(&peer)
            .output()
            .map_err(|e| format!("rsim convert: {e}"))?;
        let text = String::from_utf8_lossy(&done.stdout);
        eprint!("{text}{}", String::from_utf8_lossy(&done.stderr));
        let check = text.lines().find_map(|l| l.strip_prefix("reference check: ")).unwrap_or("no result").to_string();
        if !done.status.success() {
            return Err(format!("peer check failed: {check}"));
        }
        format!("peer check: MLPerf Tiny ResNet-8 int8 on the edge runtime, {check}")
    } else {
        format!("peer check skipped: no peer model at {} (set RSIM_MODELS)", peer.display())
    };

    println!(
        "
== summary ({} test tiles of {})",
        rows.first().map(|r| r.1.images).unwrap_or(0),
        data.display()
    );
    println!(
        "{:<30} {:>7} {:>12} {:>12} {:>12}",
        "model (edge runtime)", "OA %", "model bytes", "arena bytes", "median ms"
    );
    for (label, r) in &rows {
        println!("{label:<30} {:>7.2} {:>12} {:>12} {:>12.3}", r.oa, r.model_bytes, r.arena_bytes, r.median_ms);
    }
    for (name, dir) in [("SSL", "probe-ssl"), ("random-frozen", "probe-random")] {
        if let Some(line) = probe_line(&out.join(dir).join("results.json")) {
            println!("linear probe, {name:<14} {line}");
        }
    }
    println!("{peer_line}");
    println!("\nall outputs under {} (loss curves, confusion matrices, results.json)", out.display());
    Ok(())
}

struct Row {
    images: u64,
    oa: f64,
    model_bytes: u64,
    arena_bytes: u64,
    median_ms: f64,
}

fn eval_row(path: &Path) -> Result<Row, String> {
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?)
            .map_err(|e| e.to_string())?;
    let f = |k: &str| v.get(k).and_then(|x| x.as_f64()).unwrap_or(f64::NAN);
    let u = |k: &str| v.get(k).and_then(|x| x.as_u64()).unwrap_or(0);
    // Accuracy as a fraction or a percentage, whichever eval wrote.
    let oa = f("oa");
    Ok(Row {
        images: u("images"),
        oa: if oa <= 1.0 { oa * 100.0 } else { oa },
        model_bytes: u("model_bytes"),
        arena_bytes: u("arena_bytes"),
        median_ms: v.pointer("/invoke/median_ms").and_then(|x| x.as_f64()).unwrap_or(f64::NAN),
    })
}

/// "OA at 5 / 20 labels per class" from a probe's results.json.
fn probe_line(path: &Path) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    let parts: Vec<String> = v
        .get("results")?
        .as_array()?
        .iter()
        .filter(|r| r.get("eval").and_then(|e| e.as_str()) == Some("linear"))
        .filter_map(|r| {
            Some(format!("{:.2} % OA at {} labels/class", r.get("oa")?.as_f64()? * 100.0, r.get("labels")?.as_f64()?))
        })
        .collect();
    (!parts.is_empty()).then(|| parts.join(", "))
}
