//! Stub: owned by the data-pipeline engineer.
