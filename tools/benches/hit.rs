//! Criterion groups `{fixture}/{stage}/{variant}` for one hit: what revm, the compact
//! evaluator, native code and the read-set memo cost on the same transaction and state, and
//! what compiling its program costs.
//!
//! The fixtures are chosen by property, never by number, from the newest block of the shared
//! data's sample by fork (`Dataset::sample_by_fork(1, 100)`: a block of 100 transactions or
//! more per fork, in block order): among its transactions whose program recorded on their
//! real pre-state hits there,
//!
//! - `transfer`: the first plain value transfer (no calldata, to an account without code);
//! - `median`: the median program by evaluator instructions;
//! - `largest`: the largest program import compiles (`jit::Limits::default`).
//!
//! (`transfer` and `median` are smaller than import compiles: their `native` figures are for
//! code import leaves to the evaluator.) A set with no block of 100 transactions gives its
//! largest complete block.
//!
//! Stages and variants: `hit/revm` (revm's `transact`, no commit), `hit/evaluator`,
//! `hit/native` (both with the precompile and hash memo pre-execution filled, as at import),
//! `hit/read_set` (the perfect-hit check and copy, `ReadSet::check_into`; only where the read
//! set holds) and `compile/cranelift`. The evaluator's, native code's and the read set's
//! results are each checked equal to revm's before anything is timed. `cargo bench -p prescient-tools --bench
//! hit`; the data is found as the tests find it (`PRESCIENT_DATA`, then `../shared/bench-data`),
//! and its absence skips the bench loudly (fails under `CI`).

// criterion's macros define the undocumented `benches` and `main`.
#![allow(missing_docs)]

use std::{hint::black_box, sync::Arc, time::Duration};

use accelerator::predictor::{PreExecution, pre_execute};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use ir::{
    TxOutcome,
    compact::{Compiled, PrecompileMemo},
    outcome::Applied,
    readset::ReadSet,
};
use mempool_tap::{Dataset, recorded::shared_data_for_tests};
use revm::{
    DatabaseCommit, DatabaseRef, ExecuteEvm,
    context::{BlockEnv, CfgEnv, TxEnv},
    database::{CacheDB, InMemoryDB},
    primitives::{KECCAK_EMPTY, TxKind},
};

/// One transaction of the block, on the state before it, with its program.
struct Fixture {
    name: &'static str,
    tx: TxEnv,
    /// The block's pre-state with every earlier transaction committed.
    state: CacheDB<InMemoryDB>,
    compiled: Arc<Compiled>,
    reads: Option<Box<ReadSet>>,
}

/// The block's transactions whose program hits on their real pre-state (its recording's read
/// set was captured: a self-miss has none), with that state; `memo` gets their precompile
/// results and hashes, as pre-execution leaves them for import.
fn candidates(cfg: &CfgEnv, block: &BlockEnv, pre: InMemoryDB, txs: &[TxEnv], memo: &PrecompileMemo) -> Vec<Fixture> {
    let mut state = CacheDB::new(pre);
    let mut out = Vec::new();
    for tx in txs {
        if let PreExecution::Program(program, reads @ Some(_)) =
            pre_execute(&state, cfg, block, &[], tx, Default::default(), Some(memo))
            && let Ok(compiled) = Compiled::new(&program)
        {
            out.push(Fixture { name: "", tx: tx.clone(), state: state.clone(), compiled: Arc::new(compiled), reads });
        }
        let Ok(result) = ir::reference::evm(&mut state, cfg, block).transact(tx.clone()) else { break };
        state.commit(result.state);
    }
    out
}

/// Whether `f` is a plain value transfer: no calldata, to an account without code.
fn is_transfer(f: &Fixture) -> bool {
    let to = match f.tx.kind {
        TxKind::Call(to) if f.tx.data.is_empty() => to,
        _ => return false,
    };
    f.state.basic_ref(to).ok().flatten().is_none_or(|account| account.code_hash == KECCAK_EMPTY)
}

/// The fixtures (see the module docs), each checked: its evaluation, its native code and its
/// read set hit and equal revm.
fn fixtures() -> Option<(CfgEnv, BlockEnv, Vec<Fixture>, PrecompileMemo)> {
    let dir = shared_data_for_tests("bench hit")?;
    let dataset = Dataset::open(&dir).expect("the shared data opens");
    // The newest block of the sample by fork; in a set with no block of 100 transactions, its
    // largest complete block.
    let chosen = dataset.sample_by_fork(1, 100).last().copied();
    let Some(chosen) = chosen.or_else(|| dataset.complete_blocks().max_by_key(|b| b.tx_count)) else {
        eprintln!("bench hit: {} has no complete block", dir.display());
        return None;
    };
    let block = dataset.load(chosen).expect("the block loads");
    let memo = PrecompileMemo::new(64 << 20);
    let mut all = candidates(&block.cfg, &block.env, block.state_db(), &block.tx_envs(), &memo);
    let limits = jit::Limits::default();
    let compilable = |f: &Fixture| {
        (limits.min_instructions..=limits.max_instructions).contains(&f.compiled.code_len())
            && f.compiled.nodes() <= limits.max_nodes
    };
    let transfer = all.iter().position(is_transfer);
    let mut by_size: Vec<usize> = (0..all.len()).collect();
    by_size.sort_by_key(|&i| all[i].compiled.code_len());
    let median = by_size.get(by_size.len() / 2).copied();
    let largest = by_size.iter().rev().copied().find(|&i| compilable(&all[i]));
    let mut chosen: Vec<(&'static str, usize)> = Vec::new();
    for (name, index) in [("transfer", transfer), ("median", median), ("largest", largest)] {
        match index {
            None => eprintln!("bench hit: block {} has no `{name}` fixture", block.number),
            Some(index) if chosen.iter().any(|(_, i)| *i == index) => {
                eprintln!("bench hit: block {}: `{name}` is the same transaction as another fixture", block.number)
            }
            Some(index) => chosen.push((name, index)),
        }
    }
    for &(name, index) in &chosen {
        let f = &all[index];
        let mut evm = ir::reference::evm(CacheDB::new(&f.state), &block.cfg, &block.env);
        let expected = evm.transact(f.tx.clone()).expect("revm runs it");
        let expected = TxOutcome::from_revm(&expected.result, &expected.state);
        let memo = Some(&memo);
        let evaluated = f.compiled.evaluate_applied(&f.state, &block.cfg, &block.env, memo);
        let (applied, _) = evaluated.expect("its program hits on the state it was recorded on");
        assert_eq!(applied.outcome(), expected, "{name}: the evaluator's hit equals revm");
        let native = jit::Native::compile(f.compiled.clone(), &jit::Limits::any_size()).expect("it compiles");
        let (applied, _) = native.evaluate_applied(&f.state, &block.cfg, &block.env, memo).expect("native code hits");
        assert_eq!(applied.outcome(), expected, "{name}: native code's hit equals revm");
        if let Some(reads) = &f.reads {
            let mut out = Applied::new();
            if reads.check_into(&f.state, &block.cfg, &block.env, &mut out) {
                assert_eq!(out.outcome(), expected, "{name}: the read set's hit equals revm");
            }
        }
    }
    // Moved out by index, highest first, so that the indexes stay valid (they are distinct).
    chosen.sort_by_key(|&(_, index)| std::cmp::Reverse(index));
    let mut out: Vec<Fixture> =
        chosen.into_iter().map(|(name, index)| Fixture { name, ..all.swap_remove(index) }).collect();
    out.reverse();
    let sizes: Vec<String> = out.iter().map(|f| format!("{} {} instructions", f.name, f.compiled.code_len())).collect();
    eprintln!("bench hit: block {}, {}", block.number, sizes.join(", "));
    Some((block.cfg, block.env, out, memo))
}

fn hit(c: &mut Criterion) {
    let Some((cfg, block, fixtures, memo)) = fixtures() else { return };
    let memo = Some(&memo);
    for f in &fixtures {
        // Checked in `fixtures`: it compiles and hits.
        let native = jit::Native::compile(f.compiled.clone(), &jit::Limits::any_size()).expect("it compiles");
        let mut group = c.benchmark_group(format!("{}/hit", f.name));
        group.bench_function("revm", |b| {
            b.iter_batched_ref(
                || ir::reference::evm(CacheDB::new(&f.state), &cfg, &block),
                |evm| black_box(evm.transact(f.tx.clone()).is_ok()),
                BatchSize::SmallInput,
            )
        });
        let mut out = Applied::new();
        group.bench_function("evaluator", |b| {
            b.iter(|| black_box(f.compiled.evaluate_into(&f.state, &cfg, &block, memo, &mut out).is_ok()))
        });
        group.bench_function("native", |b| {
            b.iter(|| black_box(native.evaluate_into(&f.state, &cfg, &block, memo, &mut out).is_ok()))
        });
        if let Some(reads) = f.reads.as_ref().filter(|r| r.check_into(&f.state, &cfg, &block, &mut Applied::new())) {
            group.bench_function("read_set", |b| {
                b.iter(|| black_box(reads.check_into(&f.state, &cfg, &block, &mut out)))
            });
        }
        group.finish();
        let mut group = c.benchmark_group(format!("{}/compile", f.name));
        group.sample_size(10).measurement_time(Duration::from_secs(3));
        group.bench_function("cranelift", |b| {
            b.iter(|| {
                black_box(jit::Native::compile(f.compiled.clone(), &jit::Limits::any_size()).map(|n| n.code_bytes()))
            })
        });
        group.finish();
    }
}

criterion_group!(benches, hit);
criterion_main!(benches);
