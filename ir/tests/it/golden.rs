//! Golden tests of the passes (Cranelift filetests style).
//!
//! Each `tests/golden/*.ir` file holds a program, then a `; --- optimized` line and the
//! expected output of `passes::optimize` as comments. `BLESS=1 cargo test` rewrites the
//! expectations in place. Every input and output must also pass the verifier and round-trip
//! through the text format.

use std::{fs, path::Path};

use crate::{
    ir::{
        passes::optimize,
        text,
        verify::{verify, verify_structure},
    },
    support::check_golden,
};

const MARKER: &str = "; --- optimized";

#[test]
fn golden_pass_outputs() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
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
        failures.extend(check_golden(path, input, expected, &printed, MARKER));
        checked += 1;
    }
    assert!(checked >= 3, "expected golden files in {}", dir.display());
    assert!(failures.is_empty(), "run with BLESS=1 to accept:\n{}", failures.join("\n"));
}

/// Golden tests of lowering: each `tests/golden/evm/*.evm` file gives runtime code and
/// calldata; the code runs as a contract called by a funded account (Cancun, base fee 7),
/// and the expected program (recorded, then optimized) follows `; --- lowered`.
#[test]
fn golden_evm_lowering() {
    use revm::{
        database::InMemoryDB,
        primitives::{Bytes, U256, address, hardfork::SpecId},
        state::{AccountInfo, Bytecode},
    };

    use crate::{
        ir::record::{RecordConfig, record},
        ir::synthetic::{SENDER, synthetic_call, synthetic_env},
    };

    const LOWERED: &str = "; --- lowered";
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/evm");
    let mut files: Vec<_> = fs::read_dir(&dir).expect("golden dir").map(|e| e.expect("entry").path()).collect();
    files.sort();
    let contract = address!("0x2000000000000000000000000000000000000002");
    let mut failures = Vec::new();
    let mut checked = 0;
    for path in files.iter().filter(|p| p.extension().is_some_and(|e| e == "evm")) {
        let content = fs::read_to_string(path).expect("readable");
        let (input, expected) = content.split_once(LOWERED).unwrap_or((&content, ""));
        let field = |name: &str| {
            input
                .lines()
                .find_map(|l| l.strip_prefix(name).map(str::trim))
                .unwrap_or_else(|| panic!("{}: no `{name}` line", path.display()))
        };
        let code: Bytes = field("code ").parse().expect("hex code");
        let calldata: Bytes = field("calldata ").parse().expect("hex calldata");
        let mut db = InMemoryDB::default();
        db.insert_account_info(SENDER, AccountInfo::from_balance(U256::from(10u64.pow(18))));
        let code = Bytecode::new_raw(code);
        db.insert_account_info(contract, AccountInfo::new(U256::ZERO, 1, code.hash_slow(), code));
        db.insert_account_storage(contract, U256::ZERO, U256::from(5)).expect("in memory");
        let (cfg, block) = synthetic_env(SpecId::CANCUN);
        let tx = synthetic_call(contract, calldata);
        let rec = record(&db, &cfg, &block, &tx, RecordConfig::default()).expect("runs");
        let program = rec.program.unwrap_or_else(|r| panic!("{}: no program: {r:?}", path.display()));
        verify(&program).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let printed = text::print(&optimize(&program));
        failures.extend(check_golden(path, input, expected, &printed, LOWERED));
        checked += 1;
    }
    assert!(checked >= 4, "expected golden EVM files in {}", dir.display());
    assert!(failures.is_empty(), "run with BLESS=1 to accept:\n{}", failures.join("\n"));
}
