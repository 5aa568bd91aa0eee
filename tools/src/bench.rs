//! `prescient bench merge`: what a merged program costs as the futures merged into it grow.
//!
//! For each transaction of the chosen blocks, up to `max` futures are pre-executed the way
//! the predictor does (the transaction after the first `j` transactions of its block, for `j`
//! spread over the block, in the block's context, with another fee recipient, an hour later), and
//! their distinct programs kept in that order. Then, for `k = 1..=max`, the first `k` are
//! merged and compiled, and the tree is evaluated on the transaction's real state (the state
//! after its real predecessors), `reps` times alternating over `k`; the report gives the mean
//! evaluation time per `k`, over the transactions that have at least `k` distinct programs,
//! beside the same programs evaluated one after another (what import did before merging).
//! Times are per evaluation, in the same process, caches warm.

use std::{sync::Arc, time::Instant};

use accelerator::{PreExecution, pre_execute};
use eyre::Result;
use ir::{compact::Compiled, interp::Evaluation, program::Program};
use mempool_tap::RecordedBlock;
use revm::{DatabaseCommit, database::CacheDB, primitives::Address};

/// Mean times for one merge size.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct MergeRow {
    /// Programs merged.
    pub k: usize,
    /// Transactions with at least `k` distinct programs.
    pub txs: usize,
    /// Mean time of one evaluation of the merged tree, ns.
    pub merged_ns: f64,
    /// Mean time of evaluating the `k` programs one after another until one hits, ns.
    pub sequential_ns: f64,
    /// Mean time of evaluating the real future's program alone, on the same transactions, ns.
    pub single_ns: f64,
    /// Mean compiled instructions of the tree over the sum of the programs' (sharing).
    pub code_share: f64,
}

/// Runs the merge benchmark on `block` (see the module docs).
pub fn merge(block: &RecordedBlock, max: usize, reps: usize) -> Result<Vec<MergeRow>> {
    let db = block.state_db();
    let memo = ir::compact::PrecompileMemo::new(64 << 20);
    let envs = block.tx_envs();
    let mut other = block.env.clone();
    other.beneficiary = Address::repeat_byte(0xc0);
    let mut later = block.env.clone();
    later.timestamp += revm::primitives::U256::from(3600);
    let spread: Vec<usize> = (0..max.div_ceil(2)).map(|i| i * envs.len() / max.div_ceil(2).max(1)).collect();
    let mut state = CacheDB::new(&db);
    let mut cases: Vec<(Vec<Arc<Program>>, CacheDB<&revm::database::InMemoryDB>)> = Vec::new();
    for (index, tx) in envs.iter().enumerate() {
        let mut programs: Vec<Arc<Program>> = Vec::new();
        for &j in &spread {
            for ctx in [&block.env, &other, &later] {
                // The transaction after the first `j` of its block (its own predecessors cut
                // where they reach it).
                let predecessors = &envs[..j.min(index)];
                if let PreExecution::Program(p, _) =
                    pre_execute(&db, &block.cfg, ctx, predecessors, tx, Default::default(), Some(&memo))
                    && !programs.iter().any(|q| **q == p)
                    && programs.len() < max
                {
                    programs.push(Arc::new(p));
                }
            }
        }
        // The most likely future (all real predecessors) last, as the store orders them.
        if let PreExecution::Program(p, _) =
            pre_execute(&state, &block.cfg, &block.env, &[], tx, Default::default(), Some(&memo))
            && !programs.iter().any(|q| **q == p)
        {
            if programs.len() >= max {
                programs.pop();
            }
            programs.push(Arc::new(p));
        }
        if !programs.is_empty() {
            cases.push((programs, state.clone()));
        }
        let mut evm = ir::reference::evm(&mut state, &block.cfg, &block.env);
        if let Ok(r) = revm::ExecuteEvm::transact(&mut evm, tx.clone()) {
            drop(evm);
            state.commit(r.state);
        }
    }
    let mut rows = Vec::new();
    for k in 1..=max {
        let mut row = MergeRow { k, ..Default::default() };
        let (mut merged_total, mut sequential_total, mut single_total, mut share_total) = (0f64, 0f64, 0f64, 0f64);
        for (programs, state) in cases.iter().filter(|(p, _)| p.len() >= k) {
            // The last `k`: the real future is always among them, so the tree can hit.
            let chosen: Vec<&Program> = programs[programs.len() - k..].iter().map(|p| &**p).collect();
            let Ok(tree) = Compiled::merge(&chosen) else { continue };
            let Ok(alone) = Compiled::new(chosen[chosen.len() - 1]) else { continue };
            let singles: Vec<Compiled> = chosen.iter().filter_map(|p| Compiled::new(p).ok()).collect();
            let source: usize = singles.iter().map(Compiled::code_len).sum();
            share_total += tree.code_len() as f64 / source.max(1) as f64;
            row.txs += 1;
            for _ in 0..reps.max(1) {
                let started = Instant::now();
                std::hint::black_box(tree.evaluate(state, &block.cfg, &block.env, Some(&memo)));
                merged_total += started.elapsed().as_nanos() as f64;
                let started = Instant::now();
                for single in &singles {
                    if matches!(single.evaluate(state, &block.cfg, &block.env, Some(&memo)), Evaluation::Hit(_)) {
                        break;
                    }
                }
                sequential_total += started.elapsed().as_nanos() as f64;
                let started = Instant::now();
                std::hint::black_box(alone.evaluate(state, &block.cfg, &block.env, Some(&memo)));
                single_total += started.elapsed().as_nanos() as f64;
            }
        }
        if row.txs == 0 {
            break;
        }
        let n = (row.txs * reps.max(1)) as f64;
        row.merged_ns = merged_total / n;
        row.sequential_ns = sequential_total / n;
        row.single_ns = single_total / n;
        row.code_share = share_total / row.txs as f64;
        rows.push(row);
    }
    Ok(rows)
}

/// Per-stage times of hits on one block, summed over its hits (ns).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct HitRow {
    /// Transactions of the block.
    pub txs: usize,
    /// Transactions whose own program hit (the stages below sum over them).
    pub hits: usize,
    /// revm's `transact` (no commit).
    pub revm_ns: f64,
    /// The compiled program's evaluation, building the outcome.
    pub evaluate_ns: f64,
    /// Turning the outcome into the state a commit receives.
    pub commit_state_ns: f64,
    /// The read-set memo's check (every input read and compared, the outcome cloned): what
    /// a perfect hit costs instead of the evaluation.
    pub read_set_ns: f64,
    /// Hits whose program was also compiled to native code (the native stage sums over
    /// them, beside the evaluator's time and revm's on the same transactions).
    pub native_hits: usize,
    /// Native code's evaluation, on those.
    pub native_ns: f64,
    /// The evaluator's, on those.
    pub native_evaluate_ns: f64,
    /// revm's, on those.
    pub native_revm_ns: f64,
    /// Native evaluations whose result differed from the evaluator's (a bug).
    pub disagreements: usize,
    /// Compile time of each program compiled (ms).
    pub compile_ms: Vec<f64>,
    /// Machine code size of each program compiled.
    pub code_bytes: Vec<usize>,
    /// Programs past the compiler's limits (served by the evaluator).
    pub too_large: usize,
    /// The evaluator's time on hits with warm caches: the same evaluation repeated back to
    /// back ([`WARM_RUNS`] times, averaged), into one reused result as an import does.
    pub warm_ns: f64,
}

/// Back-to-back evaluations averaged in [`HitRow::warm_ns`].
pub const WARM_RUNS: u32 = 64;

/// `prescient bench hit`: for every transaction of `block`, its program pre-executed in the
/// block's own context on the state after its real predecessors (the best case of
/// prediction), then, alternating `reps` times on that state: revm's `transact`, the compiled
/// program's evaluation, building the state to commit from its outcome, and the read-set
/// memo's check of the same pre-execution. Where a hit's time goes, stage by stage. Only
/// transactions where both the program and its read set hit are counted.
pub fn hit(block: &RecordedBlock, reps: usize) -> Result<HitRow> {
    let db = block.state_db();
    let memo = ir::compact::PrecompileMemo::new(64 << 20);
    let mut state = CacheDB::new(&db);
    let mut row = HitRow::default();
    for tx in block.tx_envs() {
        row.txs += 1;
        let (program, reads) =
            match pre_execute(&state, &block.cfg, &block.env, &[], &tx, Default::default(), Some(&memo)) {
                PreExecution::Program(p, reads) => (Compiled::new(&p).ok().map(std::sync::Arc::new), reads),
                _ => (None, None),
            };
        let native = program.as_ref().and_then(|p| match jit::Native::compile(p.clone(), &jit::Limits::any_size()) {
            Ok(native) => {
                row.compile_ms.push(native.compile_time().as_secs_f64() * 1e3);
                row.code_bytes.push(native.code_bytes());
                Some(native)
            }
            Err(jit::JitError::TooLarge(_)) => {
                row.too_large += 1;
                None
            }
            Err(e) => {
                tracing::warn!(%e, "native compile failed");
                row.disagreements += 1;
                None
            }
        });
        let mut native_ns = Vec::new();
        let (mut revm_ns, mut evaluate_ns, mut commit_ns, mut read_set_ns, mut hit) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), false);
        let mut result = None;
        for round in 0..=reps.max(1) {
            let mut evm = ir::reference::evm(&mut state, &block.cfg, &block.env);
            let started = Instant::now();
            let r = revm::ExecuteEvm::transact(&mut evm, tx.clone());
            let elapsed = started.elapsed().as_nanos() as f64;
            drop(evm);
            if let Some(program) = &program {
                // The evaluator and native code in turn first: the second runs on caches the
                // first warmed.
                let native_first = round % 2 == 1;
                let time_native = || {
                    native.as_ref().map(|native| {
                        let started = Instant::now();
                        let natively = native.evaluate_applied(&state, &block.cfg, &block.env, Some(&memo));
                        (natively, started.elapsed().as_nanos() as f64)
                    })
                };
                let early = if native_first { time_native() } else { None };
                let started = Instant::now();
                let evaluation = program.evaluate_applied(&state, &block.cfg, &block.env, Some(&memo));
                let evaluated = started.elapsed().as_nanos() as f64;
                let timed = if native_first { early } else { time_native() };
                if let Some((natively, elapsed)) = timed {
                    let same = match (&natively, &evaluation) {
                        (Ok((a, i)), Ok((b, j))) => i == j && a.outcome() == b.outcome(),
                        (Err(a), Err(b)) => a == b,
                        _ => false,
                    };
                    row.disagreements += usize::from(!same);
                    if round > 0 && natively.is_ok() {
                        native_ns.push(elapsed);
                    }
                }
                if let Ok((applied, _)) = evaluation {
                    let started = Instant::now();
                    std::hint::black_box(applied.check_codes(&state, accelerator::executor::known_code).ok());
                    let committed = started.elapsed().as_nanos() as f64;
                    let started = Instant::now();
                    let perfect = reads.as_ref().and_then(|r| r.check(&state, &block.cfg, &block.env));
                    let checked = started.elapsed().as_nanos() as f64;
                    hit = perfect.is_some();
                    std::hint::black_box(perfect);
                    if round > 0 {
                        evaluate_ns.push(evaluated);
                        commit_ns.push(committed);
                        read_set_ns.push(checked);
                    }
                }
            }
            if round > 0 {
                revm_ns.push(elapsed);
            }
            result = Some(r);
        }
        if hit && evaluate_ns.len() == revm_ns.len() {
            if let Some(program) = &program {
                let mut out = ir::outcome::Applied::new();
                let started = Instant::now();
                for _ in 0..WARM_RUNS {
                    std::hint::black_box(
                        program.evaluate_into(&state, &block.cfg, &block.env, Some(&memo), &mut out).ok(),
                    );
                }
                row.warm_ns += started.elapsed().as_nanos() as f64 / f64::from(WARM_RUNS);
            }
            row.hits += 1;
            row.revm_ns += crate::evaluate::median(revm_ns.clone());
            row.evaluate_ns += crate::evaluate::median(evaluate_ns.clone());
            row.commit_state_ns += crate::evaluate::median(commit_ns);
            row.read_set_ns += crate::evaluate::median(read_set_ns);
            if native_ns.len() == revm_ns.len() {
                row.native_hits += 1;
                row.native_ns += crate::evaluate::median(native_ns);
                row.native_evaluate_ns += crate::evaluate::median(evaluate_ns);
                row.native_revm_ns += crate::evaluate::median(revm_ns);
            }
        }
        if let Some(Ok(r)) = result {
            state.commit(r.state);
        }
    }
    Ok(row)
}
