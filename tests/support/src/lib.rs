//! Test support shared by every suite in the workspace (rsim-tests, rsim-edge, rsim-boards,
//! rsim-train): data locations, [`require`] (a loud skip locally, a failure under `CI`), the one
//! seeded generator ([`Rng`], re-exported from rsim-model so no_std firmware draws the same
//! numbers), and the QEMU runner ([`emulator`]).
use std::path::PathBuf;

pub mod emulator;

pub use rsim_model::rng::SplitMix64 as Rng;

/// Whether this run is CI (`CI` set and not `0`/`false`): missing data, peers and tools fail there.
pub fn in_ci() -> bool {
    let on = |v: &str| std::env::var(v).is_ok_and(|s| !s.is_empty() && s != "0" && s != "false");
    on("CI")
}

/// The workspace root.
pub fn workspace() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    // tests/support -> the workspace root two levels up.
    here.parent().and_then(|p| p.parent()).map(PathBuf::from).unwrap_or(here)
}

/// Root of the shared datasets and peer models: `RSIM_SHARED`, else `../shared` beside the workspace.
pub fn shared_root() -> PathBuf {
    if let Ok(d) = std::env::var("RSIM_SHARED") {
        return PathBuf::from(d);
    }
    workspace().join("../shared")
}

/// Directory of the peer int8 models (`RSIM_MODELS`, else `<shared>/models`).
pub fn peer_models_dir() -> PathBuf {
    std::env::var("RSIM_MODELS").map(PathBuf::from).unwrap_or_else(|_| shared_root().join("models"))
}

/// Directory of the datasets (`RSIM_DATA`, else `<shared>/datasets`).
pub fn datasets_dir() -> PathBuf {
    std::env::var("RSIM_DATA").map(PathBuf::from).unwrap_or_else(|_| shared_root().join("datasets"))
}

/// `path` if it exists. Otherwise: under CI this panics (a test must never pass having checked
/// nothing); locally it prints a loud skip message and returns `None`.
#[track_caller]
pub fn require(path: PathBuf, what: &str) -> Option<PathBuf> {
    if path.exists() {
        return Some(path);
    }
    let msg = format!(
        "{what} not found at {}. Set RSIM_DATA (datasets) or RSIM_MODELS (peer models); see README.md \"Data\"",
        path.display()
    );
    if in_ci() {
        panic!("{msg} (required because CI is set)");
    }
    eprintln!("\n*** SKIPPED: {msg}.\n");
    None
}

/// A dataset folder under [`datasets_dir`], through [`require`].
#[track_caller]
pub fn dataset(name: &str) -> Option<PathBuf> {
    require(datasets_dir().join(name), &format!("dataset {name}"))
}

/// A peer model folder under [`peer_models_dir`], through [`require`].
#[track_caller]
pub fn peer_model(name: &str) -> Option<PathBuf> {
    require(peer_models_dir().join(name), &format!("peer model {name}"))
}
