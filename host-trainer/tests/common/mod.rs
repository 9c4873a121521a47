//! Helpers shared by the trainer's integration tests.
use std::path::PathBuf;

/// The 200-tile EuroSAT subset under RSIM_DATA (default ../shared/datasets): `None` with a loud
/// skip locally, a failure under CI.
#[track_caller]
pub fn ci20() -> Option<PathBuf> {
    rsim_test_support::dataset("eurosat-rgb-ci20")
}
