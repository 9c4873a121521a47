//! Checkpoints: `<run>/ckpt/step-NNNNNNN/{model,optim}.safetensors + state.json`, written into a
//! temporary directory, fsynced and renamed into place, with `<run>/ckpt/LATEST` naming the newest
//! one. A crash or power cut mid-write leaves the previous checkpoint intact; a model with NaN or
//! infinite values is never written; loading a run falls back to the newest older checkpoint that
//! reads when the one LATEST names does not.
use std::path::{Path, PathBuf};

use tch::{Device, Kind, Tensor};

/// Flushes a file's or directory's contents and metadata to the storage (a rename is durable only
/// once its directory is synced).
fn sync(path: &Path) -> Result<(), String> {
    std::fs::File::open(path).and_then(|f| f.sync_all()).map_err(|e| format!("syncing {}: {e}", path.display()))
}

fn to_cpu(v: &[(String, Tensor)]) -> Vec<(String, Tensor)> {
    v.iter().map(|(k, t)| (k.clone(), t.detach().to_device(Device::Cpu).contiguous())).collect()
}

/// Writes named tensors as safetensors through a temp file + rename.
pub fn save_tensors(path: &Path, tensors: &[(String, Tensor)]) -> Result<(), String> {
    let tmp = path.with_extension("safetensors.tmp");
    Tensor::write_safetensors(&to_cpu(tensors), &tmp).map_err(|e| format!("writing {}: {e}", tmp.display()))?;
    sync(&tmp)?;
    std::fs::rename(&tmp, path).map_err(|e| format!("renaming {} into place: {e}", tmp.display()))?;
    sync(path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")))
}

/// The first tensor holding a NaN or an infinity, by name.
fn first_non_finite(tensors: &[(String, Tensor)]) -> Option<&str> {
    tensors.iter().find_map(|(name, t)| {
        let float = matches!(t.kind(), Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16);
        (float && t.numel() > 0 && t.isfinite().all().int64_value(&[]) == 0).then_some(name.as_str())
    })
}

pub fn load_tensors(path: &Path) -> Result<Vec<(String, Tensor)>, String> {
    Tensor::read_safetensors(path).map_err(|e| format!("reading {}: {e}", path.display()))
}

pub struct Checkpoint {
    pub dir: PathBuf,
    pub model: Vec<(String, Tensor)>,
    pub optim: Vec<(String, Tensor)>,
    pub state: serde_json::Value,
}

/// Saves one checkpoint and points LATEST at it.
pub fn save(
    run: &Path,
    step: u64,
    model: &[(String, Tensor)],
    optim: &[(String, Tensor)],
    state: &serde_json::Value,
) -> Result<PathBuf, String> {
    if let Some(bad) = first_non_finite(model) {
        return Err(format!("refusing to checkpoint step {step}: `{bad}` holds NaN or infinite values"));
    }
    let root = run.join("ckpt");
    let name = format!("step-{step:07}");
    let tmp = root.join(format!(".{name}.tmp"));
    let dir = root.join(&name);
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| format!("creating {}: {e}", tmp.display()))?;
    save_tensors(&tmp.join("model.safetensors"), model)?;
    save_tensors(&tmp.join("optim.safetensors"), optim)?;
    let json = serde_json::to_vec_pretty(state).map_err(|e| e.to_string())?;
    rsim_model::write::write_atomic(&tmp.join("state.json"), &json).map_err(|e| format!("writing state.json: {e}"))?;
    sync(&tmp)?;
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(&tmp, &dir).map_err(|e| format!("renaming {} into place: {e}", dir.display()))?;
    sync(&root)?;
    rsim_model::write::write_atomic(&root.join("LATEST"), name.as_bytes())
        .map_err(|e| format!("writing LATEST: {e}"))?;
    sync(&root)?;
    Ok(dir)
}

/// Loads `path`: a checkpoint directory, or a run directory whose LATEST is followed. When that
/// checkpoint cannot be read (torn by a crash, a missing file), the newest older `step-*` of the run
/// that reads is loaded instead, with a warning naming both.
pub fn load(path: &Path) -> Result<Checkpoint, String> {
    if path.join("state.json").exists() {
        return load_dir(path);
    }
    let root = path.join("ckpt");
    let latest = root.join("LATEST");
    let name = std::fs::read_to_string(&latest).map_err(|e| {
        format!("{} is neither a checkpoint directory nor a run with ckpt/LATEST ({e})", path.display())
    })?;
    let first = root.join(name.trim());
    let err = match load_dir(&first) {
        Ok(ck) => return Ok(ck),
        Err(e) => e,
    };
    for dir in step_dirs(&root).into_iter().rev().filter(|d| *d < first) {
        if let Ok(ck) = load_dir(&dir) {
            eprintln!("warning: {err}; resuming from the previous checkpoint {}", dir.display());
            return Ok(ck);
        }
    }
    Err(format!("{err} (and no older checkpoint of {} reads)", path.display()))
}

fn load_dir(dir: &Path) -> Result<Checkpoint, String> {
    let state: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.join("state.json")).map_err(|e| format!("reading {}/state.json: {e}", dir.display()))?,
    )
    .map_err(|e| format!("{}/state.json is not valid JSON: {e}", dir.display()))?;
    Ok(Checkpoint {
        model: load_tensors(&dir.join("model.safetensors"))?,
        optim: load_tensors(&dir.join("optim.safetensors"))?,
        state,
        dir: dir.to_path_buf(),
    })
}

/// The run's `step-*` checkpoint directories, oldest first (names are zero-padded step numbers).
fn step_dirs(root: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(root) else { return Vec::new() };
    let mut dirs: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("step-")))
        .collect();
    dirs.sort();
    dirs
}

/// Keeps only the newest `keep` step directories.
pub fn prune(run: &Path, keep: usize) {
    let dirs = step_dirs(&run.join("ckpt"));
    let n = dirs.len().saturating_sub(keep);
    for d in dirs.into_iter().take(n) {
        let _ = std::fs::remove_dir_all(d);
    }
}
