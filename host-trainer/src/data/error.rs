//! Errors of the data pipeline. Each names the file or setting at fault.
use std::path::PathBuf;

#[derive(Debug)]
pub enum DataError {
    /// A file could not be read or decoded.
    Decode {
        path: PathBuf,
        reason: String,
    },
    /// A dataset description (folder, CSV, split file) is malformed.
    Layout {
        path: PathBuf,
        reason: String,
    },
    /// A configuration value is out of range.
    Config(String),
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl DataError {
    pub fn decode(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        DataError::Decode { path: path.into(), reason: reason.into() }
    }
    pub fn layout(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        DataError::Layout { path: path.into(), reason: reason.into() }
    }
}

impl std::fmt::Display for DataError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DataError::Decode { path, reason } => write!(f, "cannot decode {}: {reason}", path.display()),
            DataError::Layout { path, reason } => write!(f, "bad dataset layout at {}: {reason}", path.display()),
            DataError::Config(m) => write!(f, "invalid data setting: {m}"),
            DataError::Io { path, source } => write!(f, "I/O error on {}: {source}", path.display()),
        }
    }
}

impl std::error::Error for DataError {}
