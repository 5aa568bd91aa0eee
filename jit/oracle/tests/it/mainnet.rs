//! The soundness oracle on recorded mainnet traffic: self-hit and cross-future.
//!
//! For every transaction of every complete block, in block order on the block's actual
//! state: pre-execute it (in its actual future and in other futures), lower the trace,
//! evaluate the program on the actual state and context, and compare every hit in full with
//! revm's outcome there. Zero wrong hits is the invariant; the hit rates are reported.

use std::collections::BTreeMap;

use crate::{
    ir::{
        TxOutcome,
        interp::MissReason,
        record::{NoApReason, RecordConfig, record},
    },
    oracle::{Tier, check as check_case, check_merged, native_case, prepare_native},
};
use mempool_tap::{Dataset, RecordedBlock, recorded::shared_data_for_tests};
use revm::{
    DatabaseCommit,
    context::BlockEnv,
    database::InMemoryDB,
    primitives::{Address, U256, address},
};

/// Counts for one layer of the oracle.
#[derive(Debug, Default)]
struct Tally {
    txs: usize,
    hits: usize,
    /// Hits through the read-set memo of the program's own recording.
    read_set_hits: usize,
    misses: BTreeMap<String, usize>,
    no_ap: BTreeMap<&'static str, usize>,
    invalid_future: usize,
    wrong: Vec<String>,
    insts: usize,
    optimized_insts: usize,
}

impl Tally {
    fn miss(&mut self, reason: MissReason) {
        *self.misses.entry(format!("{reason:?}")).or_default() += 1;
    }

    fn no_ap(&mut self, reason: NoApReason) {
        *self.no_ap.entry(reason.name()).or_default() += 1;
    }

    fn rate(&self) -> f64 {
        if self.txs == 0 { 0.0 } else { 100.0 * self.hits as f64 / self.txs as f64 }
    }

    fn line(&self, name: &str) -> String {
        format!(
            "{name}: {} txs, {} hits ({:.2}%, {} through the read-set memo), misses {:?}, no program {:?}, invalid in that future {}, wrong hits {}, instructions {} -> {} optimized",
            self.txs,
            self.hits,
            self.rate(),
            self.read_set_hits,
            self.misses,
            self.no_ap,
            self.invalid_future,
            self.wrong.len(),
            self.insts,
            self.optimized_insts
        )
    }
}

/// Checks `program` at every tier on the actual state and context through the oracle, with
/// revm's outcome there as the reference; native code too when `native`.
fn check(
    tally: &mut Tally,
    program: &crate::ir::program::Program,
    (recorded, recorded_env): (&InMemoryDB, &BlockEnv),
    db: &InMemoryDB,
    block: &RecordedBlock,
    expected: &TxOutcome,
    (what, native): (&str, bool),
) {
    let mut prepared = prepare_native(program, native);
    prepared.record_reads(recorded, &block.cfg, recorded_env);
    tally.insts += program.insts.len();
    tally.optimized_insts += prepared.at(Tier::Optimized).map_or(0, |p| p.insts.len());
    let checked = check_case(&prepared, db, &block.cfg, &block.env, || Ok(expected.clone()), what);
    match (&checked.hit, checked.miss) {
        (Some(_), _) if checked.is_sound() => tally.hits += 1,
        (None, Some(reason)) => tally.miss(reason),
        _ => {}
    }
    tally.read_set_hits += checked.read_set_hit as usize;
    tally.wrong.extend(checked.problems);
}

/// Another fee recipient, for the perturbed-context future.
const OTHER_COINBASE: Address = address!("0x00000000000000000000000000000000c0ffee01");

fn perturbed(env: &BlockEnv) -> BlockEnv {
    let mut env = env.clone();
    env.timestamp += U256::from(12);
    env.beneficiary = OTHER_COINBASE;
    // The largest base-fee rise EIP-1559 allows from one block to the next.
    env.basefee += env.basefee / 8;
    env
}

#[test]
fn self_hit_and_cross_future_on_mainnet() {
    let Some(dir) = shared_data_for_tests("self_hit_and_cross_future_on_mainnet") else {
        return;
    };
    let dataset = Dataset::open(&dir).expect("open the shared data");
    crate::ir::warm_up();
    let config = RecordConfig::default();
    let (mut own, mut pre_state, mut context) = (Tally::default(), Tally::default(), Tally::default());
    // The three futures' programs of each transaction merged into one tree, as the store
    // holds them, on the real state.
    let mut merged = Tally::default();
    let mut per_block = Vec::new();
    let mut unmodelled: BTreeMap<String, usize> = BTreeMap::new();
    for block_ref in dataset.complete_blocks() {
        let block = dataset.load(block_ref).unwrap_or_else(|e| panic!("block {}: {e}", block_ref.number));
        let pristine = block.state_db();
        let mut db = block.state_db();
        let other_env = perturbed(&block.env);
        let before = (own.hits, pre_state.hits, context.hits);
        for (index, tx) in block.txs.iter().enumerate() {
            let what = format!("block {} tx {index} {:?}", block.number, tx.hash);
            let native = native_case(own.txs);
            // The reference: plain revm on the actual state and context.
            let (expected, state) = crate::ir::execute_tx(&db, &block.cfg, &block.env, &tx.env)
                .unwrap_or_else(|e| panic!("{what}: revm rejects a mainnet transaction: {e}"));

            // Self-hit: pre-executed in the very future it runs in.
            let mut futures = Vec::new();
            own.txs += 1;
            let rec = record(&db, &block.cfg, &block.env, &tx.env, config).expect("valid on its own state");
            assert_eq!(rec.outcome.first_difference(&expected), None, "{what}: traced run differs from revm");
            match &rec.program {
                Ok(p) => {
                    check(&mut own, p, (&db, &block.env), &db, &block, &expected, (&format!("{what} self"), native));
                    futures.push(p.clone());
                }
                Err(r) => {
                    own.no_ap(*r);
                    if let Some(why) = &rec.trace.abort {
                        *unmodelled.entry(format!("{}: {why}", r.name())).or_default() += 1;
                    }
                }
            }

            // Cross-future 1: pre-executed on the block's pre-state, without its predecessors.
            pre_state.txs += 1;
            match record(&pristine, &block.cfg, &block.env, &tx.env, config) {
                Ok(rec) => match &rec.program {
                    Ok(p) => {
                        check(
                            &mut pre_state,
                            p,
                            (&pristine, &block.env),
                            &db,
                            &block,
                            &expected,
                            (&format!("{what} pre-state"), native),
                        );
                        futures.push(p.clone());
                    }
                    Err(r) => pre_state.no_ap(*r),
                },
                Err(_) => pre_state.invalid_future += 1,
            }

            // Cross-future 2: pre-executed on the actual state in a perturbed context.
            context.txs += 1;
            match record(&db, &block.cfg, &other_env, &tx.env, config) {
                Ok(rec) => match &rec.program {
                    Ok(p) => {
                        check(
                            &mut context,
                            p,
                            (&db, &other_env),
                            &db,
                            &block,
                            &expected,
                            (&format!("{what} context"), native),
                        );
                        futures.push(p.clone());
                    }
                    Err(r) => context.no_ap(*r),
                },
                Err(_) => context.invalid_future += 1,
            }

            if !futures.is_empty() {
                // Most likely last, as the store orders them: the tree tries the others first.
                futures.reverse();
                merged.txs += 1;
                let refs: Vec<_> = futures.iter().collect();
                let checked = check_merged(
                    &refs,
                    native,
                    &db,
                    &block.cfg,
                    &block.env,
                    || Ok(expected.clone()),
                    &format!("{what} merged"),
                );
                match (&checked.hit, checked.miss) {
                    (Some(_), _) if checked.is_sound() => merged.hits += 1,
                    (None, Some(reason)) => merged.miss(reason),
                    _ => {}
                }
                merged.wrong.extend(checked.problems);
            }
            db.commit(state);
        }
        per_block.push((
            block.number,
            block.txs.len(),
            own.hits - before.0,
            pre_state.hits - before.1,
            context.hits - before.2,
        ));
    }
    eprintln!("{:>10} {:>5} {:>9} {:>12} {:>12}", "block", "txs", "self-hit", "pre-state", "context");
    for (number, txs, a, b, c) in &per_block {
        let pct = |x: &usize| if *txs == 0 { 0.0 } else { 100.0 * *x as f64 / *txs as f64 };
        eprintln!("{number:>10} {txs:>5} {:>8.1}% {:>11.1}% {:>11.1}%", pct(a), pct(b), pct(c));
    }
    eprintln!("transactions without a program, by what stopped the tracer: {unmodelled:#?}");
    eprintln!("{}", own.line("self-hit"));
    eprintln!("{}", pre_state.line("cross-future, block pre-state"));
    eprintln!("{}", context.line("cross-future, perturbed context"));
    eprintln!("{}", merged.line("merged futures, real state"));

    let wrong: Vec<_> = own.wrong.iter().chain(&pre_state.wrong).chain(&context.wrong).chain(&merged.wrong).collect();
    assert!(
        wrong.is_empty(),
        "{} wrong hits:\n{}",
        wrong.len(),
        wrong.iter().take(20).map(|s| s.as_str()).collect::<Vec<_>>().join("\n")
    );
    // Every program hits in the future it was recorded in.
    assert!(own.misses.is_empty(), "self-misses: {:?}", own.misses);
    // Every program hits its own future, and at least 99.5% of transactions get one.
    let programs = own.txs - own.no_ap.values().sum::<usize>();
    assert_eq!(own.hits, programs);
    assert!(own.rate() >= 99.5, "self-hit rate {:.2}% is below 99.5%", own.rate());
    // The merged tree holds the self-hitting program: it hits wherever that one does.
    assert!(merged.hits >= own.hits, "merged {} hits, self {}", merged.hits, own.hits);
    // On its own state every input is the recorded one: the read-set memo hits wherever the
    // program does.
    assert_eq!(own.read_set_hits, own.hits, "the read-set memo must hit every self-hit");
}
