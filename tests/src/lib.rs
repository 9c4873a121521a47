//! Shared helpers for the workspace integration tests (data locations, loud skips, emulators).
use std::path::PathBuf;

pub mod emulator;

/// Root of the shared datasets and peer models: `RSIM_DATA` (datasets) defaults to `../shared/datasets`.
pub fn shared_root() -> PathBuf {
    if let Ok(d) = std::env::var("RSIM_SHARED") {
        return PathBuf::from(d);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared")
}

/// Directory of the peer int8 models (`RSIM_MODELS`, else `<shared>/models`).
pub fn peer_models_dir() -> PathBuf {
    std::env::var("RSIM_MODELS").map(PathBuf::from).unwrap_or_else(|_| shared_root().join("models"))
}

/// Directory of the datasets (`RSIM_DATA`, else `<shared>/datasets`).
pub fn datasets_dir() -> PathBuf {
    std::env::var("RSIM_DATA").map(PathBuf::from).unwrap_or_else(|_| shared_root().join("datasets"))
}

/// Returns the path if it exists; otherwise prints a loud skip message and returns None.
pub fn require(path: PathBuf, what: &str) -> Option<PathBuf> {
    if path.exists() {
        Some(path)
    } else {
        eprintln!(
            "\n*** SKIPPED: {what} not found at {}.\n*** Set RSIM_DATA (datasets) or RSIM_MODELS (peer models); see README.md \"Data\".\n",
            path.display()
        );
        None
    }
}
