//! Checkpoints: `<run>/ckpt/step-NNNNNNN/{model,optim}.safetensors + state.json`, written into a
//! temporary directory and renamed into place, with `<run>/ckpt/LATEST` naming the newest one.
//! A crash mid-write leaves the previous checkpoint intact.
use std::path::{Path, PathBuf};

use tch::{Device, Tensor};

fn to_cpu(v: &[(String, Tensor)]) -> Vec<(String, Tensor)> {
    v.iter().map(|(k, t)| (k.clone(), t.detach().to_device(Device::Cpu).contiguous())).collect()
}

/// Writes named tensors as safetensors through a temp file + rename.
pub fn save_tensors(path: &Path, tensors: &[(String, Tensor)]) -> Result<(), String> {
    let tmp = path.with_extension("safetensors.tmp");
    Tensor::write_safetensors(&to_cpu(tensors), &tmp).map_err(|e| format!("writing {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("renaming {} into place: {e}", tmp.display()))
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
    let root = run.join("ckpt");
    let name = format!("step-{step:07}");
    let tmp = root.join(format!(".{name}.tmp"));
    let dir = root.join(&name);
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| format!("creating {}: {e}", tmp.display()))?;
    save_tensors(&tmp.join("model.safetensors"), model)?;
    save_tensors(&tmp.join("optim.safetensors"), optim)?;
    let json = serde_json::to_vec_pretty(state).map_err(|e| e.to_string())?;
    std::fs::write(tmp.join("state.json"), json).map_err(|e| format!("writing state.json: {e}"))?;
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(&tmp, &dir).map_err(|e| format!("renaming {} into place: {e}", dir.display()))?;
    rsim_model::write::write_atomic(&root.join("LATEST"), name.as_bytes())
        .map_err(|e| format!("writing LATEST: {e}"))?;
    Ok(dir)
}

/// Loads `path` (a checkpoint directory, or a run directory whose LATEST is followed).
pub fn load(path: &Path) -> Result<Checkpoint, String> {
    let dir = if path.join("state.json").exists() {
        path.to_path_buf()
    } else {
        let latest = path.join("ckpt").join("LATEST");
        let name = std::fs::read_to_string(&latest).map_err(|e| {
            format!("{} is neither a checkpoint directory nor a run with ckpt/LATEST ({e})", path.display())
        })?;
        path.join("ckpt").join(name.trim())
    };
    let state: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.join("state.json")).map_err(|e| format!("reading {}/state.json: {e}", dir.display()))?,
    )
    .map_err(|e| format!("{}/state.json is not valid JSON: {e}", dir.display()))?;
    Ok(Checkpoint {
        model: load_tensors(&dir.join("model.safetensors"))?,
        optim: load_tensors(&dir.join("optim.safetensors"))?,
        state,
        dir,
    })
}

/// Keeps only the newest `keep` step directories.
pub fn prune(run: &Path, keep: usize) {
    let root = run.join("ckpt");
    let Ok(rd) = std::fs::read_dir(&root) else { return };
    let mut dirs: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("step-")))
        .collect();
    dirs.sort();
    let n = dirs.len().saturating_sub(keep);
    for d in dirs.into_iter().take(n) {
        let _ = std::fs::remove_dir_all(d);
    }
}
