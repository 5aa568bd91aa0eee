//! Finding the shared data folder: `--data`, then `PRESCIENT_DATA`, then `../shared/bench-data`.

use std::{
    fmt,
    path::{Path, PathBuf},
};

/// The environment variable naming the shared data folder.
pub const DATA_ENV: &str = "PRESCIENT_DATA";

/// The default, relative to the working directory (the repository root).
pub const DEFAULT_DATA_DIR: &str = "../shared/bench-data";

/// No data folder was found; lists every place looked at and why each was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDirNotFound {
    /// `(place, what was found there)`, in the order tried.
    pub looked_at: Vec<(String, String)>,
}

impl fmt::Display for DataDirNotFound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "no recorded-traffic folder found; looked at:")?;
        for (place, why) in &self.looked_at {
            writeln!(f, "  - {place}: {why}")?;
        }
        write!(f, "pass --data DIR or set {DATA_ENV}")
    }
}

impl std::error::Error for DataDirNotFound {}

/// Resolves the data folder: an explicit path wins (and must exist), then `PRESCIENT_DATA`,
/// then [`DEFAULT_DATA_DIR`] under the working directory, then the same default relative to
/// this source tree (so tests find it from any working directory).
pub fn locate_data_dir(explicit: Option<&Path>) -> Result<PathBuf, DataDirNotFound> {
    let mut looked_at = Vec::new();
    let mut candidates: Vec<(String, PathBuf)> = Vec::new();
    match explicit {
        Some(path) => candidates.push(("--data".into(), path.to_path_buf())),
        None => {
            match std::env::var_os(DATA_ENV) {
                Some(v) if !v.is_empty() => candidates.push((format!("${DATA_ENV}"), PathBuf::from(v))),
                _ => looked_at.push((format!("${DATA_ENV}"), "not set".into())),
            }
            candidates.push(("default".into(), PathBuf::from(DEFAULT_DATA_DIR)));
            let from_source = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(DEFAULT_DATA_DIR);
            candidates.push(("default, from the source tree".into(), from_source));
        }
    }
    for (label, path) in candidates {
        if path.is_dir() {
            return Ok(path);
        }
        let shown = std::path::absolute(&path).unwrap_or_else(|_| path.clone());
        let why = if path.exists() { "not a folder" } else { "does not exist" };
        looked_at.push((format!("{label} {}", shown.display()), why.into()));
        // An explicit path that is wrong is an error, not a reason to guess elsewhere.
        if explicit.is_some() {
            break;
        }
    }
    Err(DataDirNotFound { looked_at })
}

/// The shared data folder for a test, or `None` (with a loud message) when it is absent.
///
/// # Panics
/// When the `CI` environment variable is set and the folder is absent: CI must run the
/// data-backed tests, never skip them silently.
pub fn shared_data_for_tests(test: &str) -> Option<PathBuf> {
    match locate_data_dir(None) {
        Ok(dir) => Some(dir),
        Err(e) if std::env::var_os("CI").is_some() => {
            panic!("{test}: the shared bench data is required in CI.\n{e}")
        }
        Err(e) => {
            eprintln!("\n!!! SKIPPING {test}: the shared bench data is absent.\n!!! {e}\n");
            None
        }
    }
}
