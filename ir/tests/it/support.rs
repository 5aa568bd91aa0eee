//! Helpers of the integration tests: golden files.

use std::{fs, path::Path};

/// Compares `printed` with the expectation after `marker` in the golden file `path` (as `; `
/// comments). With `BLESS` set, rewrites the file instead; otherwise returns the mismatch.
pub(crate) fn check_golden(path: &Path, input: &str, expected: &str, printed: &str, marker: &str) -> Option<String> {
    let expected: String = expected
        .lines()
        .filter_map(|l| l.strip_prefix("; ").or_else(|| l.strip_prefix(";")))
        .map(|l| format!("{l}\n"))
        .collect();
    if printed.trim() == expected.trim() {
        return None;
    }
    if std::env::var_os("BLESS").is_some() {
        let commented: String = printed.lines().map(|l| format!("; {l}\n")).collect();
        fs::write(path, format!("{}\n{marker}\n{commented}", input.trim_end())).expect("write");
        return None;
    }
    Some(format!("{}:\n--- expected\n{expected}--- got\n{printed}", path.display()))
}
