//! The soundness oracle on the Ethereum GeneralStateTests (`ethereum-tests/`).
//!
//! Every post-state expectation is one case: a transaction (chosen by its data, gas and
//! value indexes) on a pre-state, under one fork. For every case revm runs (it rejects the
//! ones expecting an exception), both checks of the mainnet layer run: self-hit (recorded
//! and evaluated in the same future) and cross-future (recorded in a perturbed context,
//! evaluated in the actual one). Every hit is compared in full with revm.

use std::{collections::BTreeMap, fs::File, io::Read, path::Path};

use flate2::read::GzDecoder;
use mempool_tap::recorded::shared_data_for_tests;
use revm::{
    context::{BlockEnv, CfgEnv},
    database::InMemoryDB,
    primitives::{U256, address},
    state::{AccountInfo, Bytecode},
    statetest_types::{SpecName, TestSuite, TestUnit},
};

use crate::{
    ir::{
        TxOutcome,
        program::Program,
        record::{RecordConfig, record},
    },
    oracle::{check, native_case, prepare_native},
};

/// Long-running tests: the data README's slow directories, the VM performance loops, and
/// the files built to make execution quadratic or to run millions of steps. They run with
/// PRESCIENT_SLOW_STATE_TESTS=1 (each takes seconds to minutes in a debug build).
const SLOW: [&str; 8] = [
    "stTimeConsuming/",
    "stStackTests/",
    "stBadOpcode/",
    "vmPerformance/",
    "stQuadraticComplexityTest/",
    "15_tstoreCannotBeDosd",
    "50000",
    "Call1MB1024Calldepth",
];

#[derive(Debug, Default)]
struct Counts {
    files: usize,
    skipped_slow: usize,
    unparsed: Vec<String>,
    cases: usize,
    rejected_by_revm: usize,
    programs: usize,
    self_hits: usize,
    self_misses: BTreeMap<String, usize>,
    no_program: BTreeMap<&'static str, usize>,
    /// Cases without a program, by (reason, cause in the tracer's words, directory).
    no_program_causes: BTreeMap<(&'static str, String, String), usize>,
    cross_recorded: usize,
    cross_hits: usize,
    wrong: Vec<String>,
}

fn state_db(unit: &TestUnit) -> InMemoryDB {
    let mut db = InMemoryDB::default();
    for (address, account) in &unit.pre {
        let info = if account.code.is_empty() {
            AccountInfo { balance: account.balance, nonce: account.nonce, ..Default::default() }
        } else {
            let code = Bytecode::new_raw_checked(account.code.clone())
                .unwrap_or_else(|_| Bytecode::new_legacy(account.code.clone()));
            AccountInfo::new(account.balance, account.nonce, code.hash_slow(), code)
        };
        db.insert_account_info(*address, info);
        let cached = db.cache.accounts.get_mut(address).expect("inserted just above");
        cached.storage.extend(account.storage.iter().map(|(k, v)| (*k, *v)));
    }
    db
}

/// Another future: a later timestamp and another fee recipient. (The base fee stays: most
/// state tests pay exactly the base fee, so raising it only makes them invalid.)
fn perturbed(env: &BlockEnv) -> BlockEnv {
    let mut env = env.clone();
    env.timestamp += U256::from(12);
    env.beneficiary = address!("0x00000000000000000000000000000000c0ffee01");
    env
}

/// Checks `program` at every tier through the oracle against `expected`; whether it hit.
fn compare(
    counts: &mut Counts,
    program: &Program,
    db: &InMemoryDB,
    cfg: &CfgEnv,
    env: &BlockEnv,
    expected: &TxOutcome,
    what: &str,
) -> Result<bool, String> {
    // Native code on a sample in debug builds, on every case in release (`native_case`).
    let native = native_case(counts.cases);
    let checked = check(&prepare_native(program, native), db, cfg, env, || Ok(expected.clone()), what);
    counts.wrong.extend(checked.problems.iter().cloned());
    match (checked.hit, checked.miss) {
        (Some(_), _) => Ok(checked.problems.is_empty()),
        (None, Some(reason)) => Err(format!("{reason:?}")),
        (None, None) => Err("nothing ran".into()),
    }
}

/// The tracer's reason with numbers removed, so that causes group.
fn cause_class(cause: &str) -> String {
    let mut out = String::new();
    let mut last_digit = false;
    for c in cause.chars() {
        let digit = c.is_ascii_hexdigit() && (last_digit || c.is_ascii_digit());
        if digit {
            if !last_digit {
                out.push('N');
            }
        } else {
            out.push(c);
        }
        last_digit = digit;
    }
    out
}

/// The directory of a state-test file (`stCallCodes/…json` → `stCallCodes`).
fn file_dir(file: &str) -> String {
    let parts: Vec<&str> = file.split('/').collect();
    parts.iter().rev().nth(1).map_or_else(|| file.to_string(), |d| (*d).to_string())
}

fn run_unit(counts: &mut Counts, file: &str, name: &str, unit: &TestUnit) {
    let db = state_db(unit);
    for (spec_name, tests) in &unit.post {
        if matches!(spec_name, SpecName::Constantinople | SpecName::ByzantiumToConstantinopleAt5 | SpecName::Unknown) {
            continue;
        }
        let mut cfg = CfgEnv::new();
        cfg.chain_id = 1;
        cfg.set_spec_and_mainnet_gas_params(spec_name.to_spec_id());
        let env = unit.block_env(&mut cfg);
        for (i, test) in tests.iter().enumerate() {
            counts.cases += 1;
            let what = format!("{name} {spec_name:?} #{i}");
            let Ok(tx) = test.tx_env(unit) else {
                counts.rejected_by_revm += 1;
                continue;
            };
            let Ok((expected, _)) = crate::ir::execute_tx(&db, &cfg, &env, &tx) else {
                counts.rejected_by_revm += 1;
                continue;
            };
            // Self-hit.
            match record(&db, &cfg, &env, &tx, RecordConfig::default()) {
                Ok(rec) => match &rec.program {
                    Ok(program) => {
                        counts.programs += 1;
                        match compare(counts, program, &db, &cfg, &env, &expected, &format!("{what} self")) {
                            Ok(true) => counts.self_hits += 1,
                            Ok(false) => {}
                            Err(reason) => *counts.self_misses.entry(reason).or_default() += 1,
                        }
                    }
                    Err(reason) => {
                        *counts.no_program.entry(reason.name()).or_default() += 1;
                        let cause = rec.trace.abort.clone().unwrap_or_else(|| "at the end (stores, logs)".into());
                        let key = (reason.name(), cause_class(&cause), file_dir(file));
                        *counts.no_program_causes.entry(key).or_default() += 1;
                    }
                },
                Err(e) => counts.wrong.push(format!("{what}: revm ran the case but recording failed: {e}")),
            }
            // Cross-future: recorded in a perturbed context.
            if let Ok(rec) = record(&db, &cfg, &perturbed(&env), &tx, RecordConfig::default())
                && let Ok(program) = &rec.program
            {
                counts.cross_recorded += 1;
                // A miss in another future is what guards are for.
                if compare(counts, program, &db, &cfg, &env, &expected, &format!("{what} cross")) == Ok(true) {
                    counts.cross_hits += 1;
                }
            }
        }
    }
}

#[test]
fn general_state_tests_self_hit_and_cross_future() {
    let Some(dir) = shared_data_for_tests("general_state_tests_self_hit_and_cross_future") else { return };
    let path = Path::new(&dir).join("ethereum-tests/GeneralStateTests.tar.gz");
    let file = File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut archive = tar::Archive::new(GzDecoder::new(file));
    crate::ir::warm_up();
    let mut counts = Counts::default();
    for entry in archive.entries().expect("a tar archive") {
        let mut entry = entry.expect("a tar entry");
        let name = entry.path().expect("a path").to_string_lossy().into_owned();
        if !name.ends_with(".json") {
            continue;
        }
        // The data README's slow directories (and the VM performance loops) run only when
        // asked: PRESCIENT_SLOW_STATE_TESTS=1.
        if let Ok(filter) = std::env::var("PRESCIENT_STATE_TEST_FILTER")
            && !name.contains(&filter)
        {
            continue;
        }
        let slow = SLOW.iter().any(|d| name.contains(d));
        if slow && std::env::var_os("PRESCIENT_SLOW_STATE_TESTS").is_none() {
            counts.skipped_slow += 1;
            continue;
        }
        counts.files += 1;
        let mut text = String::new();
        entry.read_to_string(&mut text).expect("readable");
        let suite: TestSuite = match serde_json::from_str(&text) {
            Ok(s) => s,
            Err(e) => {
                counts.unparsed.push(format!("{name}: {e}"));
                continue;
            }
        };
        let started = std::time::Instant::now();
        for (test_name, unit) in &suite.0 {
            run_unit(&mut counts, &name, test_name, unit);
        }
        if started.elapsed().as_secs_f64() > 2.0 {
            eprintln!("slow state-test file: {name}: {:.1} s", started.elapsed().as_secs_f64());
        }
    }
    let ran = counts.cases - counts.rejected_by_revm;
    eprintln!(
        "state tests: {} files ({} slow files skipped, {} unparsed), {} cases, {} run by revm, {} programs, {} self-hits ({:.2}%), self-misses {:?}, no program {:?}, cross-future {} recorded, {} hits, wrong hits {}",
        counts.files,
        counts.skipped_slow,
        counts.unparsed.len(),
        counts.cases,
        ran,
        counts.programs,
        counts.self_hits,
        100.0 * counts.self_hits as f64 / ran.max(1) as f64,
        counts.self_misses,
        counts.no_program,
        counts.cross_recorded,
        counts.cross_hits,
        counts.wrong.len()
    );
    // Cases without a program, by cause (and the directories they come from), largest first.
    /// (reason, cause) → (cases, cases per directory).
    type ByCause<'a> = BTreeMap<(&'a str, &'a str), (usize, BTreeMap<&'a str, usize>)>;
    let mut causes = ByCause::new();
    for ((reason, cause, dir), n) in &counts.no_program_causes {
        let entry = causes.entry((reason, cause.as_str())).or_default();
        entry.0 += n;
        *entry.1.entry(dir.as_str()).or_default() += n;
    }
    let mut causes: Vec<_> = causes.into_iter().collect();
    causes.sort_by_key(|(_, (n, _))| std::cmp::Reverse(*n));
    for ((reason, cause), (n, dirs)) in &causes {
        let mut dirs: Vec<_> = dirs.iter().collect();
        dirs.sort_by_key(|(_, n)| std::cmp::Reverse(**n));
        let dirs: Vec<String> = dirs.iter().take(4).map(|(d, n)| format!("{d} {n}")).collect();
        eprintln!("  no program: {reason:<12} {n:>5}  {cause}  [{}]", dirs.join(", "));
    }
    let unmodelled = counts.no_program.get("unmodelled").copied().unwrap_or(0);
    assert!(
        unmodelled * 200 < ran,
        "{unmodelled} of {ran} cases have no program for an unmodelled reason (at least 0.5%)"
    );
    assert!(
        counts.wrong.is_empty(),
        "{} wrong:\n{}",
        counts.wrong.len(),
        counts.wrong.iter().take(20).cloned().collect::<Vec<_>>().join("\n")
    );
    // revm's own test types reject one file (ValueOverflowParis writes a value above 2^256
    // as "0x:bigint …"): revm cannot run it, so neither can this layer.
    assert!(counts.unparsed.len() <= 1, "unparsed: {:?}", &counts.unparsed[..counts.unparsed.len().min(5)]);
    assert!(counts.self_misses.is_empty(), "programs that miss their own future: {:?}", counts.self_misses);
    assert!(ran > 10_000, "only {ran} state-test cases ran");
}
