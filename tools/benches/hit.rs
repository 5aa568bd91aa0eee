//! Criterion groups `{fixture}/{stage}/{variant}` for one hit: what revm, the compact
//! evaluator, native code and the read-set memo cost on the same transaction and state, and
//! what compiling its program costs.
//!
//! The fixtures are chosen by property, never by number, from the newest block of the shared
//! data's sample by fork (`Dataset::sample_by_fork(1, 100)`: a block of 100 transactions or
//! more per fork, in block order): among its transactions whose program recorded on their
//! real pre-state hits there,
//!
//! - `transfer`: the first plain value transfer;
//! - `median`: the median program by evaluator instructions;
//! - `largest`: the largest program the compiler takes (`jit::Limits::default`).
//!
//! Stages and variants: `hit/revm` (revm's `transact`, no commit), `hit/evaluator`,
//! `hit/native` (both with the precompile and hash memo pre-execution filled, as at import),
//! `hit/read_set` (the perfect-hit check and copy, `ReadSet::check_into`; only where the read
//! set holds) and `compile/cranelift`. Every hit is
//! checked against revm's result before it is timed. `cargo bench -p prescient-tools --bench
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
    DatabaseCommit, ExecuteEvm,
    context::{BlockEnv, CfgEnv, TxEnv},
    database::{CacheDB, InMemoryDB},
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

/// The block's transactions whose program hits on their real pre-state, with that state;
/// `memo` gets their precompile results and hashes, as pre-execution leaves them for import.
fn candidates(cfg: &CfgEnv, block: &BlockEnv, pre: InMemoryDB, txs: &[TxEnv], memo: &PrecompileMemo) -> Vec<Fixture> {
    let mut state = CacheDB::new(pre);
    let mut out = Vec::new();
    for tx in txs {
        if let PreExecution::Program(program, reads) =
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

/// The fixtures (see the module docs), each checked: its evaluation hits and equals revm.
fn fixtures() -> Option<(CfgEnv, BlockEnv, Vec<Fixture>, PrecompileMemo)> {
    let dir = shared_data_for_tests("bench hit")?;
    let dataset = Dataset::open(&dir).expect("the shared data opens");
    let newest = *dataset.sample_by_fork(1, 100).last().expect("a block of 100 transactions or more");
    let block = dataset.load(newest).expect("the sample block loads");
    let memo = PrecompileMemo::new(64 << 20);
    let mut all = candidates(&block.cfg, &block.env, block.state_db(), &block.tx_envs(), &memo);
    let limits = jit::Limits::default();
    let transfer = all.iter().position(|f| f.tx.data.is_empty() && f.tx.kind.is_call());
    let mut by_size: Vec<usize> = (0..all.len()).collect();
    by_size.sort_by_key(|&i| all[i].compiled.code_len());
    let median = by_size.get(by_size.len() / 2).copied();
    let largest = by_size.iter().rev().copied().find(|&i| all[i].compiled.code_len() <= limits.max_instructions);
    let mut chosen = Vec::new();
    for (name, index) in [("transfer", transfer), ("median", median), ("largest", largest)] {
        let Some(index) = index else {
            eprintln!("bench hit: block {} has no `{name}` fixture", block.number);
            continue;
        };
        let fixture = &all[index];
        let mut evm = ir::reference::evm(CacheDB::new(&fixture.state), &block.cfg, &block.env);
        let expected = evm.transact(fixture.tx.clone()).expect("revm runs it");
        let (applied, _) = fixture
            .compiled
            .evaluate_applied(&fixture.state, &block.cfg, &block.env, Some(&memo))
            .expect("its program hits on the state it was recorded on");
        assert_eq!(
            applied.outcome(),
            TxOutcome::from_revm(&expected.result, &expected.state),
            "{name}: the hit equals revm"
        );
        chosen.push((name, index));
    }
    // Moved out by index, highest first, so that the indexes stay valid.
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
        let native = jit::Native::compile(f.compiled.clone(), &jit::Limits::any_size()).ok();
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
        if let Some(native) = &native {
            group.bench_function("native", |b| {
                b.iter(|| black_box(native.evaluate_into(&f.state, &cfg, &block, memo, &mut out).is_ok()))
            });
        }
        if let Some(reads) = f.reads.as_ref().filter(|r| r.check_into(&f.state, &cfg, &block, &mut Applied::new())) {
            group.bench_function("read_set", |b| {
                b.iter(|| black_box(reads.check_into(&f.state, &cfg, &block, &mut out)))
            });
        }
        group.finish();
        let mut group = c.benchmark_group(format!("{}/compile", f.name));
        group.sample_size(10).measurement_time(Duration::from_secs(3));
        group.bench_function("cranelift", |b| {
            b.iter(|| black_box(jit::Native::compile(f.compiled.clone(), &jit::Limits::any_size()).is_ok()))
        });
        group.finish();
    }
}

criterion_group!(benches, hit);
criterion_main!(benches);
