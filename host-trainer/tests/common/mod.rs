//! Helpers shared by the trainer's integration tests.
use std::path::PathBuf;

/// The 200-tile EuroSAT subset under RSIM_DATA (default ../shared/datasets), or None with a loud skip.
pub fn ci20() -> Option<PathBuf> {
    let root = std::env::var("RSIM_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/datasets"));
    let p = root.join("eurosat-rgb-ci20");
    if p.is_dir() {
        Some(p)
    } else {
        eprintln!(
            "\n*** SKIPPED: eurosat-rgb-ci20 not found at {}.\n*** Set RSIM_DATA to the shared datasets folder.\n",
            p.display()
        );
        None
    }
}
