//! Cross-crate truths (the integration tests under `tests/tests/`). What they share with the other
//! suites (data locations, CI-aware skips, the seeded generator, the QEMU runner) is in
//! `rsim-test-support` (`tests/support`).
