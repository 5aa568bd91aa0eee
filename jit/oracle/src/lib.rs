//! The differential oracle: one place where a program is run at every tier and compared
//! with revm, for every test layer (mainnet, state tests, fuzzing, regressions), for
//! `prescient diff` and for the block executor's shadow verification.
//!
//! ```text
//!   Program ──prepare──▶ Prepared { tier → program }      (verify, text round trip, optimize)
//!                            │
//!   state, block ──check──▶ evaluate at every tier ──▶ tiers agree? (same hit, or same miss)
//!                            │ hit
//!                            └──▶ revm on the same state and block ──▶ first_difference
//!   ⇒ Checked { hit, miss, problems }                      (a problem is a bug: a wrong hit,
//!                                                          a verifier failure, tiers that disagree)
//! ```
//!
//! **The equivalence rules** are [`ir::TxOutcome`]'s (`ir/src/outcome.rs`): every comparison
//! goes through [`ir::TxOutcome::first_difference`]. **The fuel rule** is [`ir::interp::FUEL`],
//! the import's own.
//!
//! **Adding a tier** (the JIT, the merged program, a compact evaluator): a variant of [`Tier`],
//! one entry in [`Tier::ALL`], how [`prepare`] builds it and how [`evaluate_at`] runs it.
//! Every layer then checks it on every case. Block-level executors (the program-first import,
//! a parallel executor) are compared with sequential revm through [`compare_block`].

use ir::{
    TxOutcome,
    backend::AccountRead,
    compact::{Compiled, PrecompileMemo},
    interp::{Evaluation, FUEL, MissReason, evaluate},
    passes::optimize,
    program::Program,
    readset::ReadSet,
    text,
    verify::verify,
};
use jit::{JitError, Limits, Native};
use revm::{
    DatabaseRef,
    context::{BlockEnv, CfgEnv, TxEnv},
    database_interface::DBErrorMarker,
};
use std::sync::Arc;

/// A way of running a program. Every tier must agree with every other and, on a hit, with
/// revm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Tier {
    /// The program as the tracer lowered it, run by the reference interpreter.
    Recorded,
    /// After `passes::optimize` (what production stores), run by the reference interpreter.
    Optimized,
    /// The optimized program compiled to the compact evaluator (`ir::compact`), what import
    /// runs, with precompile results from a memo shared by every case this thread checks
    /// (so a memo hit is checked against revm as often as a fresh call).
    Compact,
    /// The compact program compiled to native code by Cranelift (`jit::Native`), what import
    /// runs once the background compiler is done; a program past the compiler's limits is
    /// served by the compact evaluator, as at import.
    Native,
    /// [`Tier::Native`] with constants read from the register file instead of inline, so that
    /// no constant path of the lowering (immediates, limb-wise compares and masks) can hide a
    /// bug of its general path, and with every segment native however short (import leaves
    /// short ones to the host: `jit::Limits::min_segment`), so that inline code is tested on
    /// every instruction it can lower.
    NativeOpaque,
}

impl Tier {
    /// Every tier, in the order they are run and reported.
    pub const ALL: &'static [Tier] =
        &[Tier::Recorded, Tier::Optimized, Tier::Compact, Tier::Native, Tier::NativeOpaque];

    /// Short name for reports.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Recorded => "recorded",
            Self::Optimized => "optimized",
            Self::Compact => "compact",
            Self::Native => "native",
            Self::NativeOpaque => "native-opaque",
        }
    }
}

/// A program prepared at every tier: the work done once per program (optimization, later
/// merging and compilation), apart from the work done once per evaluation.
#[derive(Clone, Debug)]
pub struct Prepared {
    /// One program per tier of [`Tier::ALL`], in that order.
    pub tiers: Vec<(Tier, Program)>,
    /// What went wrong while preparing (each a bug): a verifier failure, a text round trip
    /// that changed the program.
    pub problems: Vec<String>,
    /// The read-set memo of the program's own recording ([`Prepared::record_reads`]): when
    /// present, [`check`] also checks it on every case.
    pub reads: Option<ReadSet>,
    /// The optimized program in compact form, compiled once for every case.
    pub compiled: Option<Arc<Compiled>>,
    /// Its native code ([`Tier::Native`]), when it is within the compiler's limits.
    pub native: Option<Arc<Native>>,
    /// Its native code with opaque constants ([`Tier::NativeOpaque`]).
    pub opaque: Option<Arc<Native>>,
}

impl Prepared {
    /// The program of `tier`.
    pub fn at(&self, tier: Tier) -> Option<&Program> {
        self.tiers.iter().find(|(t, _)| *t == tier).map(|(_, p)| p)
    }

    /// Captures the read set of the compact tier's program on the state and block it was
    /// recorded on (as pre-execution does), so that [`check`] also checks the read-set memo.
    /// A program that does not hit its own recording is a problem.
    pub fn record_reads<D: AccountRead>(&mut self, db: &D, cfg: &CfgEnv, block: &BlockEnv) {
        let Some(program) = self.at(Tier::Compact).cloned() else { return };
        let captured =
            Compiled::new(&program).ok().and_then(|c| MEMO.with(|memo| c.capture_reads(db, cfg, block, Some(memo))));
        match captured {
            Some((outcome, reads)) => self.reads = Some(ReadSet::new(&program, reads, outcome)),
            None => self.problems.push("the program misses on the state it was recorded on".into()),
        }
    }
}

/// Prepares `program` at every tier, checking what every program must satisfy: it verifies,
/// survives the text format, and still verifies after optimization.
pub fn prepare(program: &Program) -> Prepared {
    prepare_native(program, true)
}

/// In debug builds, the mainnet layer checks native code on one case in this many (see
/// [`native_case`]); release builds check every case.
pub const DEBUG_NATIVE_SAMPLE: usize = 4;

/// Whether the mainnet layer checks native code on case `i`: always in a release build (or
/// with `PRESCIENT_ORACLE_NATIVE_ALL` set), one case in [`DEBUG_NATIVE_SAMPLE`] in a debug
/// build, where compiling every program twice would take the suite past CI's time.
pub fn native_case(i: usize) -> bool {
    !cfg!(debug_assertions)
        || i.is_multiple_of(DEBUG_NATIVE_SAMPLE)
        || std::env::var_os("PRESCIENT_ORACLE_NATIVE_ALL").is_some()
}

/// The compiler's limits at [`Tier::Native`] (`opaque_constants` false) or
/// [`Tier::NativeOpaque`]: programs of any size.
fn tier_limits(opaque_constants: bool) -> Limits {
    let min_segment = if opaque_constants { 1 } else { Limits::default().min_segment };
    Limits { opaque_constants, min_segment, ..Limits::any_size() }
}

/// [`prepare`], with the native tiers only when `native` (they are then served by the compact
/// evaluator, as a program past the compiler's limits is).
pub fn prepare_native(program: &Program, native: bool) -> Prepared {
    let mut problems = Vec::new();
    if let Err(e) = verify(program) {
        problems.push(format!("verifier: {e}"));
    }
    if text::parse(&text::print(program)).as_ref() != Ok(program) {
        problems.push("text round trip changed the program".into());
    }
    let optimized = optimize(program);
    if let Err(e) = verify(&optimized) {
        problems.push(format!("verifier after optimize: {e}"));
    }
    let compiled = match Compiled::new(&optimized) {
        Ok(c) => Some(Arc::new(c)),
        Err(e) => {
            problems.push(format!("compact compile: {e}"));
            None
        }
    };
    let mut native = |opaque_constants: bool| {
        if !native {
            return None;
        }
        let limits = tier_limits(opaque_constants);
        match Native::compile(compiled.clone()?, &limits) {
            Ok(native) => Some(Arc::new(native)),
            // Served by the compact evaluator, as at import.
            Err(JitError::TooLarge(_)) => None,
            Err(e) => {
                problems.push(format!("native compile: {e}"));
                None
            }
        }
    };
    let (native, opaque) = (native(false), native(true));
    let tiers = Tier::ALL
        .iter()
        .map(|tier| {
            let p = match tier {
                Tier::Recorded => program.clone(),
                Tier::Optimized | Tier::Compact | Tier::Native | Tier::NativeOpaque => optimized.clone(),
            };
            (*tier, p)
        })
        .collect();
    Prepared { tiers, problems, reads: None, compiled, native, opaque }
}

thread_local! {
    /// The compact tier's precompile memo: shared by the cases one thread checks.
    static MEMO: PrecompileMemo = PrecompileMemo::new(64 << 20);
}

/// Runs the program of one tier of `prepared`.
pub fn evaluate_at<D: AccountRead>(
    prepared: &Prepared,
    tier: Tier,
    program: &Program,
    db: &D,
    cfg: &CfgEnv,
    block: &BlockEnv,
) -> Evaluation {
    let native = match tier {
        Tier::Recorded | Tier::Optimized => return evaluate(program, db, cfg, block, FUEL),
        Tier::Compact => None,
        Tier::Native => prepared.native.as_ref(),
        Tier::NativeOpaque => prepared.opaque.as_ref(),
    };
    let Some(compiled) = &prepared.compiled else {
        // `prepare` reported it; the tiers then disagree unless the program is malformed.
        return Evaluation::Miss(ir::interp::Miss { reason: MissReason::Malformed, at: ir::program::Value(0) });
    };
    MEMO.with(|memo| match native {
        Some(native) => native.evaluate_merged(db, cfg, block, Some(memo)).0,
        None => compiled.evaluate(db, cfg, block, Some(memo)),
    })
}

/// What checking one case found.
#[derive(Clone, Debug, Default)]
pub struct Checked {
    /// The outcome every tier agreed on, when they hit (equal to revm's unless `problems`
    /// says otherwise).
    pub hit: Option<TxOutcome>,
    /// Why the first tier missed, when every tier missed.
    pub miss: Option<MissReason>,
    /// Whether the read-set memo hit (only checked when the case has one): every input was
    /// the recorded one, and its outcome is `hit`.
    pub read_set_hit: bool,
    /// Every bug found, in words (empty when the case is sound).
    pub problems: Vec<String>,
}

impl Checked {
    /// Whether no bug was found.
    pub fn is_sound(&self) -> bool {
        self.problems.is_empty()
    }
}

/// The reference for one case: revm's outcome for `tx` on the same state and block, or why
/// revm rejects the transaction there.
pub fn reference<D>(db: &D, cfg: &CfgEnv, block: &BlockEnv, tx: &TxEnv) -> Result<TxOutcome, String>
where
    D: DatabaseRef,
    D::Error: DBErrorMarker,
{
    ir::execute_tx(db, cfg, block, tx).map(|(outcome, _)| outcome).map_err(|e| e.to_string())
}

/// Runs `prepared` at every tier on `db` / `cfg` / `block` and checks it: the tiers agree
/// (all hit with equal outcomes, or all miss for the same reason), and a hit equals
/// `expected()`, revm's outcome on the same inputs (asked for only on a hit; see
/// [`reference()`]). `what` names the case in problems.
pub fn check<D: AccountRead>(
    prepared: &Prepared,
    db: &D,
    cfg: &CfgEnv,
    block: &BlockEnv,
    expected: impl FnOnce() -> Result<TxOutcome, String>,
    what: &str,
) -> Checked {
    let mut checked =
        Checked { problems: prepared.problems.iter().map(|p| format!("{what}: {p}")).collect(), ..Default::default() };
    let mut first: Option<(Tier, Evaluation)> = None;
    let mut compact: Option<Evaluation> = None;
    for (tier, program) in &prepared.tiers {
        let evaluation = evaluate_at(prepared, *tier, program, db, cfg, block);
        match tier {
            Tier::Compact => compact = Some(evaluation.clone()),
            // Native code runs the compact program: it must miss at the same instruction too.
            Tier::Native | Tier::NativeOpaque => {
                if let Some(expected) = compact.as_ref().filter(|c| **c != evaluation) {
                    checked.problems.push(format!(
                        "{what}: native code disagrees with the compact evaluator: {} vs {}",
                        summary(expected),
                        summary(&evaluation)
                    ));
                }
            }
            _ => {}
        }
        match &first {
            None => first = Some((*tier, evaluation)),
            Some((first_tier, seen)) => {
                let agree = match (seen, &evaluation) {
                    (Evaluation::Hit(a), Evaluation::Hit(b)) => a == b,
                    (Evaluation::Miss(a), Evaluation::Miss(b)) => a.reason == b.reason,
                    _ => false,
                };
                if !agree {
                    checked.problems.push(format!(
                        "{what}: tiers disagree: {} {} vs {} {}",
                        first_tier.name(),
                        summary(seen),
                        tier.name(),
                        summary(&evaluation)
                    ));
                }
            }
        }
    }
    // The read-set memo hits only where the program hits, with the same outcome (which is
    // then compared with revm below).
    if let Some(memo_hit) = prepared.reads.as_ref().and_then(|r| r.check(db, cfg, block)) {
        checked.read_set_hit = true;
        match &first {
            Some((_, Evaluation::Hit(got))) if *got == memo_hit => {}
            Some((_, Evaluation::Hit(got))) => checked.problems.push(format!(
                "{what}: the read-set memo hit with another outcome than the program: {}",
                memo_hit.first_difference(got).map_or_else(String::new, |d| d.to_string())
            )),
            Some((_, seen)) => {
                checked
                    .problems
                    .push(format!("{what}: the read-set memo hit where the program gives {}", summary(seen)));
                checked.problems.extend(wrong_hit(&memo_hit, expected, &format!("{what} (read set)")));
                return checked;
            }
            None => {}
        }
    }
    match first {
        Some((_, Evaluation::Hit(got))) => {
            checked.problems.extend(wrong_hit(&got, expected, what));
            checked.hit = Some(got);
        }
        Some((_, Evaluation::Miss(m))) => checked.miss = Some(m.reason),
        None => {}
    }
    checked
}

/// Checks the programs of one transaction merged into one tree (`ir::compact::Compiled::merge`,
/// what import runs; with `native`, also its native code at both native tiers) on `db` / `cfg` / `block`: the tree hits exactly when one of the
/// programs alone hits, with that program's outcome (the reference interpreter's), and a hit
/// equals `expected()`, revm's outcome. The programs are optimized first, as the store holds
/// them.
pub fn check_merged<D: AccountRead>(
    programs: &[&Program],
    native: bool,
    db: &D,
    cfg: &CfgEnv,
    block: &BlockEnv,
    expected: impl FnOnce() -> Result<TxOutcome, String>,
    what: &str,
) -> Checked {
    let mut checked = Checked::default();
    let optimized: Vec<Program> = programs.iter().map(|p| optimize(p)).collect();
    let refs: Vec<&Program> = optimized.iter().collect();
    let merged = match Compiled::merge(&refs) {
        Ok(m) => m,
        Err(e) => {
            checked.problems.push(format!("{what}: merged compile: {e}"));
            return checked;
        }
    };
    let (evaluation, which) = MEMO.with(|memo| merged.evaluate_merged(db, cfg, block, Some(memo)));
    // The tree's native code walks it the same way: the same program, or the same miss.
    let merged = Arc::new(merged);
    for opaque_constants in [false, true].into_iter().filter(|_| native) {
        match Native::compile(merged.clone(), &tier_limits(opaque_constants)) {
            Ok(native) => {
                let (native_evaluation, native_which) =
                    MEMO.with(|memo| native.evaluate_merged(db, cfg, block, Some(memo)));
                if (&native_evaluation, native_which) != (&evaluation, which) {
                    checked.problems.push(format!(
                        "{what}: merged native code (opaque constants: {opaque_constants}) gives {} as {native_which:?}, the compact evaluator {} as {which:?}",
                        summary(&native_evaluation),
                        summary(&evaluation)
                    ));
                }
            }
            Err(JitError::TooLarge(_)) => {}
            Err(e) => checked.problems.push(format!("{what}: merged native compile: {e}")),
        }
    }
    // Each program alone; `None` for one the tree leaves out (other chain rules than the first).
    let alone: Vec<Option<Evaluation>> =
        optimized.iter().map(|p| (p.env == optimized[0].env).then(|| evaluate(p, db, cfg, block, FUEL))).collect();
    match (&evaluation, which) {
        (Evaluation::Hit(got), Some(i)) => {
            let single = alone.get(i).and_then(Option::as_ref);
            if single != Some(&evaluation) {
                checked.problems.push(format!(
                    "{what}: merged hit as program {i}, which alone gives {}",
                    single.map_or("nothing".into(), summary)
                ));
            }
            checked.problems.extend(wrong_hit(got, expected, &format!("{what} (merged)")));
            checked.hit = Some(got.clone());
        }
        (Evaluation::Hit(_), None) => checked.problems.push(format!("{what}: merged hit without a program")),
        (Evaluation::Miss(m), _) => {
            if let Some(i) = alone.iter().position(|e| matches!(e, Some(Evaluation::Hit(_)))) {
                checked.problems.push(format!("{what}: merged missed ({:?}) where program {i} alone hits", m.reason));
            }
            checked.miss = Some(m.reason);
        }
    }
    checked
}

/// Why a hit is wrong, when it is: revm rejects the transaction, or its outcome differs.
fn wrong_hit(got: &TxOutcome, expected: impl FnOnce() -> Result<TxOutcome, String>, what: &str) -> Option<String> {
    match expected() {
        Err(e) => Some(format!("{what}: WRONG HIT: revm rejects the transaction ({e})")),
        Ok(expected) => got.first_difference(&expected).map(|d| format!("{what}: WRONG HIT: {d}")),
    }
}

fn summary(e: &Evaluation) -> String {
    match e {
        Evaluation::Hit(o) => format!("hit ({:?}, {} gas)", o.status, o.gas_used),
        Evaluation::Miss(m) => format!("miss ({:?} at {})", m.reason, m.at),
    }
}

/// Compares a block's outcomes from an executor under test with sequential revm's, in
/// full: the index and first difference of every transaction that differs, and a
/// difference in count.
pub fn compare_block(ours: &[TxOutcome], reference: &[TxOutcome]) -> Vec<(usize, String)> {
    let mut differences: Vec<(usize, String)> = ours
        .iter()
        .zip(reference)
        .enumerate()
        .filter_map(|(i, (a, b))| a.first_difference(b).map(|d| (i, d.to_string())))
        .collect();
    if ours.len() != reference.len() {
        let n = ours.len().min(reference.len());
        differences.push((n, format!("{} outcomes where sequential revm has {}", ours.len(), reference.len())));
    }
    differences
}

#[cfg(test)]
mod tests {
    use super::*;
    use ir::{
        record::{RecordConfig, record},
        synthetic::{SENDER, synthetic_call, synthetic_env},
    };
    use revm::{
        database::InMemoryDB,
        primitives::{Address, Bytes, U256, hardfork::SpecId},
        state::{AccountInfo, Bytecode},
    };

    fn case() -> (InMemoryDB, CfgEnv, BlockEnv, TxEnv, Program) {
        let contract = Address::with_last_byte(0x44);
        let mut db = InMemoryDB::default();
        db.insert_account_info(SENDER, AccountInfo::from_balance(U256::from(10u64.pow(18))));
        // PUSH1 1 PUSH1 0 SSTORE STOP
        let code = Bytecode::new_raw(Bytes::from_static(&[0x60, 1, 0x60, 0, 0x55, 0]));
        db.insert_account_info(contract, AccountInfo::new(U256::ZERO, 1, code.hash_slow(), code));
        let (cfg, block) = synthetic_env(SpecId::OSAKA);
        let tx = synthetic_call(contract, Bytes::new());
        let program =
            record(&db, &cfg, &block, &tx, RecordConfig::default()).expect("runs").program.expect("a program");
        (db, cfg, block, tx, program)
    }

    #[test]
    fn a_sound_program_hits_at_every_tier() {
        let (db, cfg, block, tx, program) = case();
        let checked = check(&prepare(&program), &db, &cfg, &block, || reference(&db, &cfg, &block, &tx), "sound");
        assert!(checked.is_sound(), "{:?}", checked.problems);
        assert!(checked.hit.is_some());
    }

    #[test]
    fn a_wrong_program_is_caught() {
        // A program whose recorded gas is off by one is wrong on any state.
        let (db, cfg, block, tx, mut program) = case();
        program.gas_used += 1;
        let checked = check(&prepare(&program), &db, &cfg, &block, || reference(&db, &cfg, &block, &tx), "broken");
        assert!(checked.problems.iter().any(|p| p.contains("WRONG HIT")), "{:?}", checked.problems);
    }

    #[test]
    fn tiers_that_disagree_are_caught() {
        let (db, cfg, block, tx, program) = case();
        let mut prepared = prepare(&program);
        prepared.tiers[1].1.gas_used += 1;
        let checked = check(&prepared, &db, &cfg, &block, || reference(&db, &cfg, &block, &tx), "split");
        assert!(checked.problems.iter().any(|p| p.contains("tiers disagree")), "{:?}", checked.problems);
    }

    #[test]
    fn block_comparison_names_each_difference() {
        let (db, cfg, block, tx, _) = case();
        let good = reference(&db, &cfg, &block, &tx).expect("valid");
        let mut bad = good.clone();
        bad.gas_used += 1;
        assert!(compare_block(std::slice::from_ref(&good), std::slice::from_ref(&good)).is_empty());
        let d = compare_block(&[good.clone(), bad], &[good.clone(), good]);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].0, 1);
        assert!(compare_block(&[], &[reference(&db, &cfg, &block, &tx).expect("valid")])[0].1.contains("0 outcomes"));
    }
}
