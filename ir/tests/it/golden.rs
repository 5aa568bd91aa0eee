//! Golden tests of the passes (Cranelift filetests style).
//!
//! Each `tests/golden/*.ir` file holds a program, then a `; --- optimized` line and the
//! expected output of `passes::optimize` as comments. `BLESS=1 cargo test` rewrites the
//! expectations in place. Every input and output must also pass the verifier and round-trip
//! through the text format.

use std::{fs, path::Path};

use crate::ir::{
    passes::optimize,
    text,
    verify::{verify, verify_structure},
};

const MARKER: &str = "; --- optimized";

#[test]
fn golden_pass_outputs() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let bless = std::env::var_os("BLESS").is_some();
    let mut files: Vec<_> = fs::read_dir(&dir).expect("golden dir").map(|e| e.expect("entry").path()).collect();
    files.sort();
    let mut failures = Vec::new();
    let mut checked = 0;
    for path in files.iter().filter(|p| p.extension().is_some_and(|e| e == "ir")) {
        let content = fs::read_to_string(path).expect("readable");
        let (input, expected) = content.split_once(MARKER).unwrap_or((&content, ""));
        let program = text::parse(input).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        verify_structure(&program).unwrap_or_else(|e| panic!("{}: input fails the verifier: {e}", path.display()));
        assert_eq!(text::parse(&text::print(&program)).as_ref(), Ok(&program), "{}: round trip", path.display());
        let optimized = optimize(&program);
        verify(&optimized).unwrap_or_else(|e| panic!("{}: a pass broke the verifier: {e}", path.display()));
        let printed = text::print(&optimized);
        let expected: String = expected
            .lines()
            .filter_map(|l| l.strip_prefix("; ").or_else(|| l.strip_prefix(";")))
            .map(|l| format!("{l}\n"))
            .collect();
        if printed.trim() != expected.trim() {
            if bless {
                let commented: String = printed.lines().map(|l| format!("; {l}\n")).collect();
                fs::write(path, format!("{}{MARKER}\n{commented}", input.trim_end().to_string() + "\n"))
                    .expect("write");
            } else {
                failures.push(format!("{}:\n--- expected\n{expected}--- got\n{printed}", path.display()));
            }
        }
        checked += 1;
    }
    assert!(checked >= 3, "expected golden files in {}", dir.display());
    assert!(failures.is_empty(), "run with BLESS=1 to accept:\n{}", failures.join("\n"));
}
