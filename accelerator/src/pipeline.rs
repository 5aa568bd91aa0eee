//! The pipeline core: pool, futures, pre-execution, store, import and verification, in one
//! synchronous type that both `prescient serve` (driven by the node's mempool tap) and
//! `prescient evaluate` (driven by a simulated mempool or recorded arrivals) run, so that the offline evaluation
//! measures what the live service does.
//!
//! ```text
//!   admit(tx) ─▶ PendingPool ─▶ futures(tx) ─▶ pre_execute on a state ─▶ ApStore
//!                                                                         │
//!   import(block txs, parent state) ─▶ import_block (programs first) ◀────┘
//!                                       └─ verify: sequential revm, the oracle's comparison
//! ```
//!
//! It knows nothing of tokio, the node client or the recording format: state is any revm
//! `DatabaseRef` (the node's RPC view live, an in-memory pre-state offline, a mock in tests),
//! and the block context is given by the driver: live, [`next_block_context`] here; offline,
//! `prescient evaluate`'s prediction from a parent view of the recorded block. Counters are
//! kept here; the driver exports them.

use std::{
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use alloy::{
    eips::eip1559::{BaseFeeParams, calc_next_block_base_fee},
    rpc::types::Header,
};
use ir::{compact::PrecompileMemo, program::Program, readset::ReadSet, record::RecordConfig};
use mempool_tap::recorded::ChainRules;
use revm::{
    DatabaseRef,
    context::{BlockEnv, CfgEnv, TxEnv},
    database::CacheDB,
    database_interface::DBErrorMarker,
    primitives::{Address, B256, U256},
};

use crate::{
    executor::{Accelerated, Divergence, Import, ImportError, ImportTx, import_block_ahead, verify_against_reference},
    predictor::{
        Footprint, PendingPool, PoolTx, PreExecution, RACE_FUTURES, SlotOverride, StateKey, pre_execute_touched,
    },
    store::ApStore,
};

/// How the pipeline core runs: one set of defaults, read by `serve` and `eval` alike.
#[derive(Clone, Copy, Debug)]
pub struct PipelineConfig {
    /// Most predecessors in a predicted-block future.
    pub max_predecessors: usize,
    /// Most order flips per transaction ([`PendingPool::flip_futures`]); zero also turns off the
    /// dependency and race futures that come with them ([`Pipeline::flip_futures`]).
    pub flip_futures: usize,
    /// Memory budget of the AP store, in bytes.
    pub store_bytes: usize,
    /// Programs kept per transaction (and [`PipelineConfig::touched_per_tx`] more for the
    /// same-block-touch variants, [`RACE_FUTURES`] more for a race's futures).
    pub programs_per_tx: usize,
    /// Pending transactions kept.
    pub pool_capacity: usize,
    /// Memory budget of the precompile memo, in bytes.
    pub memo_bytes: usize,
    /// Keep pre-executions' read sets for the read-set memo (perfect hits).
    pub read_sets: bool,
    /// Keep a read set only for programs of at least this many instructions: below, the
    /// evaluation costs about what checking a read set does, and a check that fails is pure
    /// overhead (measured with `prescient evaluate --no-read-sets`).
    pub read_set_min_insts: usize,
    /// Most same-block-touch pre-executions per transaction (see [`crate::predictor`]): a
    /// pre-execution that moved a contract's clock field is run again under the same future
    /// with that field already at the block's clock, up to this many times per transaction.
    /// Each variant is a whole program (a router swap's is large): on the shared blocks one
    /// per transaction grew the store by 10% and three by 18%, for 11 and 13 fewer misses of
    /// 73 at 60% heard.
    pub touched_per_tx: usize,
    /// Tracer limits.
    pub record: RecordConfig,
    /// Compile every accelerated program to native code on a background thread, within
    /// this many bytes of code (`None`: the compact evaluator serves every program).
    pub jit_code_bytes: Option<usize>,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            max_predecessors: 64,
            flip_futures: 2,
            store_bytes: 512 << 20,
            programs_per_tx: 4,
            pool_capacity: 50_000,
            memo_bytes: 64 << 20,
            read_sets: true,
            read_set_min_insts: 256,
            touched_per_tx: 1,
            record: RecordConfig::default(),
            // Off by default: on the shared blocks, whole-block import with native code measured
            // slower than with the evaluator (3.1x against 3.5x; cold code, see the README).
            jit_code_bytes: None,
        }
    }
}

/// What the pipeline has done, for status reports and metrics.
#[derive(Debug, Default)]
pub struct PipelineCounters {
    /// Pre-executions run (one per future).
    pub pre_executions: AtomicU64,
    /// Programs stored.
    pub programs: AtomicU64,
    /// Pre-executions that gave no program.
    pub no_program: AtomicU64,
    /// Pre-executions where the transaction was invalid in that future.
    pub invalid: AtomicU64,
    /// Pre-executions where the state backend failed.
    pub state_failed: AtomicU64,
    /// Same-block-touch pre-executions run (also counted in `pre_executions`; see
    /// [`crate::predictor`]).
    pub touched: AtomicU64,
}

/// What pre-executing one pending transaction under its futures gave.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PreExecuted {
    /// One result name per distinct future, in order: `program`, a no-program reason,
    /// `invalid` or `state_error`.
    pub results: Vec<&'static str>,
    /// Programs that entered the store.
    pub stored: usize,
}

/// What [`Pipeline::pre_execute_future`] ran and gave.
#[derive(Debug)]
pub struct FutureRun {
    /// The future's pre-execution's result name (as [`PreExecuted::results`]).
    pub kind: &'static str,
    /// Same-block-touch pre-executions run after it (see [`crate::predictor`]).
    pub touched: usize,
    /// The programs, with their read sets: the future's, then its variants'.
    pub programs: Vec<(Program, Option<ReadSet>)>,
}

/// What [`Pipeline::import`] does besides importing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImportMode {
    /// Nothing: what a node's import does (the timed runs of `prescient evaluate`).
    Timed,
    /// [`ImportMode::Timed`] with every tree in the compact evaluator, native code or not
    /// (the evaluator's column of `prescient evaluate`).
    TimedEvaluator,
    /// Keeps every transaction's outcome (for a report).
    Outcomes,
    /// Keeps every transaction's outcome and compares it with sequential revm's.
    Verified,
}

/// A block imported through the pipeline, with its verification when asked for.
#[derive(Debug)]
pub struct Imported {
    /// The import.
    pub import: Import,
    /// Divergences from sequential revm and revm's time, when verified.
    pub checked: Option<(Vec<Divergence>, Duration)>,
}

/// The pipeline core (see the module docs). Shared between threads: every method takes
/// `&self`.
#[derive(Debug)]
pub struct Pipeline {
    config: PipelineConfig,
    pool: Mutex<PendingPool>,
    store: ApStore,
    memo: PrecompileMemo,
    /// What the pipeline has done.
    pub counters: PipelineCounters,
}

/// Locks `m`, recovering the data if a thread panicked while holding it (the pool and the
/// service's small tables stay consistent across a panicked pre-execution).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Pipeline {
    /// An empty pipeline.
    pub fn new(config: PipelineConfig) -> Self {
        Self {
            pool: Mutex::new(PendingPool::new(config.pool_capacity)),
            store: {
                // Same-block-touch variants on top, so that they never push out a future's program.
                let store =
                    ApStore::new(config.store_bytes, config.programs_per_tx + config.touched_per_tx + RACE_FUTURES);
                match config.jit_code_bytes.map(|max| crate::tiering::Compiler::spawn(Default::default(), max, 4096)) {
                    Some(Ok(compiler)) => store.with_compiler(compiler),
                    Some(Err(e)) => {
                        tracing::warn!(%e, "no native compiler thread; the evaluator serves every program");
                        store
                    }
                    None => store,
                }
            },
            memo: PrecompileMemo::new(config.memo_bytes),
            config,
            counters: PipelineCounters::default(),
        }
    }

    /// Its configuration.
    pub fn config(&self) -> &PipelineConfig {
        &self.config
    }

    /// Adds a pending transaction; `false` when it was known already (or the pool refused it).
    pub fn admit(&self, hash: B256, env: TxEnv, seen_ms: u64) -> bool {
        let mut pool = lock(&self.pool);
        let new = pool.insert(hash, env, seen_ms);
        metrics::gauge!(crate::metrics::POOL_PENDING).set(pool.len() as f64);
        new
    }

    /// Removes what a block included (by hash, and every transaction of a sender at or below
    /// an included nonce); returns the hashes removed.
    pub fn remove_included(&self, included: &[(Address, u64, B256)]) -> Vec<B256> {
        let mut pool = lock(&self.pool);
        let removed = pool.remove_included(included);
        metrics::gauge!(crate::metrics::POOL_PENDING).set(pool.len() as f64);
        removed
    }

    /// The pending transactions' hashes.
    pub fn pending(&self) -> Vec<B256> {
        lock(&self.pool).hashes()
    }

    /// How many transactions are pending.
    pub fn pending_len(&self) -> usize {
        lock(&self.pool).len()
    }

    /// A pending transaction.
    pub fn pending_tx(&self, hash: &B256) -> Option<PoolTx> {
        lock(&self.pool).get(hash).cloned()
    }

    /// A pending transaction and its futures in a block of base fee `basefee`.
    pub fn futures(&self, hash: &B256, basefee: u64) -> Option<(PoolTx, Vec<Vec<TxEnv>>)> {
        let pool = lock(&self.pool);
        let tx = pool.get(hash)?.clone();
        let futures = pool.futures(hash, basefee, self.config.max_predecessors);
        Some((tx, futures))
    }

    /// The order flips of a pending transaction in a block of base fee `basefee`, at most
    /// [`PipelineConfig::flip_futures`] ([`PendingPool::flip_futures`]).
    /// Then, when it is none of them, the dependency future
    /// ([`PendingPool::dependency_future`]), and the race futures when other senders sent the
    /// same calldata ([`PendingPool::race_futures`]).
    pub fn flip_futures(&self, hash: &B256, basefee: u64) -> Vec<Vec<TxEnv>> {
        let pool = lock(&self.pool);
        let mut futures = pool.flip_futures(hash, basefee, self.config.max_predecessors, self.config.flip_futures);
        let shape = |f: &[TxEnv]| f.iter().map(|t| (t.caller, t.nonce)).collect::<Vec<_>>();
        if self.config.flip_futures > 0
            && let Some(dependency) = pool.dependency_future(hash, self.config.max_predecessors)
            && !futures.iter().any(|f| shape(f) == shape(&dependency))
        {
            futures.push(dependency);
        }
        if self.config.flip_futures > 0 {
            for race in pool.race_futures(hash, basefee, self.config.max_predecessors) {
                if !futures.iter().any(|f| shape(f) == shape(&race)) {
                    futures.push(race);
                }
            }
        }
        futures
    }

    /// Pre-executes `tx` (a pending transaction) under each of `futures` on `state` in the
    /// context `cfg` / `block`, and stores the programs.
    pub fn pre_execute<D>(
        &self,
        tx: &PoolTx,
        futures: &[Vec<TxEnv>],
        state: &D,
        cfg: &CfgEnv,
        block: &BlockEnv,
    ) -> PreExecuted
    where
        D: DatabaseRef,
        D::Error: DBErrorMarker,
    {
        let mut done = PreExecuted::default();
        // A future listed twice (a race's winning future can be the predicted block, and the
        // service lists `futures` and `flip_futures` together) is pre-executed once.
        let shape = |f: &[TxEnv]| f.iter().map(|t| (t.caller, t.nonce)).collect::<Vec<_>>();
        let mut seen: Vec<Vec<(Address, u64)>> = Vec::with_capacity(futures.len());
        for predecessors in futures {
            let this = shape(predecessors);
            if seen.contains(&this) {
                continue;
            }
            seen.push(this);
            let run = self.pre_execute_future(tx, predecessors, state, cfg, block);
            for (program, reads) in run.programs {
                if self.store_program(tx.hash, program, reads) {
                    done.stored += 1;
                }
            }
            done.results.push(run.kind);
        }
        done
    }

    /// Pre-executes `tx` under one future and returns the result's name (as
    /// [`PreExecuted::results`]) and the programs with their read sets, without storing them:
    /// for a driver that decides when a program is ready ([`Pipeline::store_program`]). The
    /// programs are the future's and, when its pre-execution moved a contract's clock field and
    /// `tx` has [`PipelineConfig::touched_per_tx`] left, the same future's with that field
    /// already at the block's clock (see [`crate::predictor`]).
    pub fn pre_execute_future<D>(
        &self,
        tx: &PoolTx,
        predecessors: &[TxEnv],
        state: &D,
        cfg: &CfgEnv,
        block: &BlockEnv,
    ) -> FutureRun
    where
        D: DatabaseRef,
        D::Error: DBErrorMarker,
    {
        let started = Instant::now();
        // Each field alone first (a swap through three pairs behind a transaction that traded
        // on one of them), then all of them, within the transaction's budget.
        let variants = |touches: Vec<SlotOverride>| {
            let alone = touches.iter().filter(|_| touches.len() > 1).map(|t| vec![*t]);
            let mut pool = lock(&self.pool);
            // Lazily: only the sets the budget allows are built.
            alone
                .chain(std::iter::once_with(|| touches.clone()))
                .take_while(|_| pool.take_touch(&tx.hash, self.config.touched_per_tx))
                .collect::<Vec<Vec<SlotOverride>>>()
        };
        let (base, touched) = pre_execute_touched(
            state,
            cfg,
            block,
            predecessors,
            &tx.env,
            self.config.record,
            Some(&self.memo),
            variants,
        );
        metrics::histogram!(crate::metrics::PRE_EXECUTION_SECONDS).record(started.elapsed().as_secs_f64());
        let mut run = FutureRun { kind: "", touched: touched.len(), programs: Vec::new() };
        for (i, result) in std::iter::once(base).chain(touched).enumerate() {
            self.counters.pre_executions.fetch_add(1, Ordering::Relaxed);
            self.counters.touched.fetch_add(u64::from(i > 0), Ordering::Relaxed);
            let (name, program) = self.classify(tx, result);
            metrics::counter!(crate::metrics::PRE_EXECUTIONS, "result" => name).increment(1);
            if i == 0 {
                run.kind = name;
                run.programs.extend(program);
            } else {
                // Without its read set: it recorded the slots as set, which the block gives
                // only if the toucher left the rest of them as they were (a read set that
                // would fail its check at every import, at the cost of the reads up to there).
                run.programs.extend(program.map(|(program, _)| (program, None)));
            }
        }
        run
    }

    /// The name of a pre-execution's result (as [`PreExecuted::results`]) and its program,
    /// counted.
    fn classify(&self, tx: &PoolTx, result: PreExecution) -> (&'static str, Option<(Program, Option<ReadSet>)>) {
        match result {
            PreExecution::Program(program, reads) => ("program", Some((program, reads.map(|r| *r)))),
            PreExecution::NoProgram(reason) => {
                self.counters.no_program.fetch_add(1, Ordering::Relaxed);
                (reason.name(), None)
            }
            PreExecution::Invalid(why) => {
                self.counters.invalid.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(hash = %tx.hash, %why, "invalid in this future");
                // What made it invalid is its sender's account (nonce, balance): that is its
                // footprint, so the order flips put a pending transaction that writes the
                // account (one funding the sender, say) before it.
                let sender = Footprint {
                    reads: [StateKey::Account(tx.env.caller)].into_iter().collect(),
                    writes: Default::default(),
                };
                lock(&self.pool).note_footprint(&tx.hash, &sender);
                ("invalid", None)
            }
            PreExecution::StateFailed(why) => {
                self.counters.state_failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(hash = %tx.hash, %why, "pre-execution: the state failed");
                ("state_error", None)
            }
        }
    }

    /// Stores a program of `hash` (merged into its accelerated program) with the read set of
    /// its recording; false when an equal program is there already (the read set is still
    /// added).
    pub fn store_program(&self, hash: B256, program: Program, reads: Option<ReadSet>) -> bool {
        let footprint = Footprint::of(&program);
        lock(&self.pool).note_footprint(&hash, &footprint);
        let keep = self.config.read_sets && program.insts.len() >= self.config.read_set_min_insts;
        let stored = self.store.insert(hash, program, reads.filter(|_| keep));
        if stored {
            self.counters.programs.fetch_add(1, Ordering::Relaxed);
        }
        stored
    }

    /// The programs held for a transaction.
    pub fn programs(&self, hash: &B256) -> Vec<Arc<Program>> {
        self.store.get(hash)
    }

    /// The precompile memo.
    pub fn memo(&self) -> &PrecompileMemo {
        &self.memo
    }

    fn publish_memo(&self) {
        let stats = self.memo.stats();
        metrics::counter!(crate::metrics::PRECOMPILE_MEMO_HITS).absolute(stats.hits);
        metrics::counter!(crate::metrics::PRECOMPILE_MEMO_MISSES).absolute(stats.misses);
        metrics::gauge!(crate::metrics::PRECOMPILE_MEMO_BYTES).set(stats.bytes as f64);
        let keccak = self.memo.keccak().stats();
        metrics::counter!(crate::metrics::KECCAK_MEMO_HITS).absolute(keccak.hits);
        metrics::counter!(crate::metrics::KECCAK_MEMO_MISSES).absolute(keccak.misses);
        metrics::gauge!(crate::metrics::KECCAK_MEMO_BYTES).set(keccak.bytes as f64);
    }

    /// The accelerated program of a transaction.
    pub fn accelerated(&self, hash: &B256) -> Option<Arc<Accelerated>> {
        self.store.accelerated(hash)
    }

    /// The AP store (entries, bytes, budget).
    pub fn store(&self) -> &ApStore {
        &self.store
    }

    /// Imports `txs` through the store on `parent` (the state before the block), in the
    /// context `cfg` / `block`, as `mode` says: keeping every transaction's outcome or not,
    /// and verifying them against sequential revm on `parent` or not.
    pub fn import<D>(
        &self,
        parent: &D,
        cfg: &CfgEnv,
        block: &BlockEnv,
        txs: &[ImportTx],
        mode: ImportMode,
    ) -> Result<Imported, ImportError>
    where
        D: DatabaseRef + Sync,
        D::Error: DBErrorMarker,
    {
        // The programs are taken before the import (under one lock), so that the import
        // reads only memory.
        let programs = self.store.accelerated_all(txs.iter().map(|t| &t.hash));
        let verify = mode == ImportMode::Verified;
        let keep = !matches!(mode, ImportMode::Timed | ImportMode::TimedEvaluator);
        let native = mode != ImportMode::TimedEvaluator;
        // Transactions without a program execute ahead on `parent` (`import_block_ahead`).
        let import = import_block_ahead(
            &mut CacheDB::new(parent),
            Some(parent),
            cfg,
            block,
            txs,
            &programs,
            Some(&self.memo),
            keep,
            native,
        )?;
        self.publish_memo();
        let checked = if verify {
            Some(verify_against_reference(&mut CacheDB::new(parent), cfg, block, txs, &import)?)
        } else {
            None
        };
        for path in &import.paths {
            metrics::counter!(crate::metrics::IMPORT_TXS, "path" => path.kind()).increment(1);
            if let crate::executor::TxPath::Miss { reason } = path {
                metrics::counter!(crate::metrics::IMPORT_MISSES, "reason" => reason.name()).increment(1);
            }
        }
        Ok(Imported { import, checked })
    }
}

/// The context of the block after `head`, as the live service predicts it for a transaction
/// heard now (`now_s`, seconds since the epoch): the head's child, its fee recipient and
/// randomness, the base fee EIP-1559 gives, the blob fee the rules give.
pub fn next_block_context(rules: &ChainRules, head: &Header, now_s: u64) -> (CfgEnv, BlockEnv) {
    let timestamp = (head.timestamp + 1).max(now_s);
    let spec = rules.spec(head.number + 1, timestamp);
    let basefee = head
        .base_fee_per_gas
        .map(|fee| calc_next_block_base_fee(head.gas_used, head.gas_limit, fee, BaseFeeParams::ethereum()))
        .unwrap_or(0);
    let block = BlockEnv {
        number: U256::from(head.number + 1),
        beneficiary: head.beneficiary,
        timestamp: U256::from(timestamp),
        gas_limit: head.gas_limit,
        basefee,
        difficulty: U256::ZERO,
        prevrandao: Some(head.mix_hash),
        blob_excess_gas_and_price: rules.blob_fee(spec, timestamp, head.excess_blob_gas.unwrap_or(0)),
        ..Default::default()
    };
    (rules.cfg(spec), block)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ir::synthetic::{SENDER, synthetic_call, synthetic_env};
    use revm::{
        database::InMemoryDB,
        primitives::{Bytes, U256, hardfork::SpecId},
        state::{AccountInfo, Bytecode},
    };

    /// A counter contract (`SSTORE(0, SLOAD(0) + 1)`), and two senders calling it.
    fn setup() -> (InMemoryDB, CfgEnv, BlockEnv, Vec<ImportTx>) {
        let contract = Address::with_last_byte(0x44);
        let other = Address::with_last_byte(0x55);
        let mut db = InMemoryDB::default();
        for who in [SENDER, other] {
            db.insert_account_info(who, AccountInfo::from_balance(U256::from(10u64.pow(18))));
        }
        let code = Bytecode::new_raw(Bytes::from_static(&[0x60, 0, 0x54, 0x60, 1, 0x01, 0x60, 0, 0x55, 0]));
        db.insert_account_info(contract, AccountInfo::new(U256::ZERO, 1, code.hash_slow(), code));
        let (cfg, block) = synthetic_env(SpecId::OSAKA);
        let mut second = synthetic_call(contract, Bytes::new());
        second.caller = other;
        second.gas_priority_fee = Some(0);
        let txs = vec![
            ImportTx { hash: B256::with_last_byte(1), env: synthetic_call(contract, Bytes::new()) },
            ImportTx { hash: B256::with_last_byte(2), env: second },
        ];
        (db, cfg, block, txs)
    }

    #[test]
    fn pre_executed_transactions_hit_at_import_and_equal_revm() {
        let (db, cfg, block, txs) = setup();
        let pipeline = Pipeline::new(PipelineConfig::default());
        for t in &txs {
            assert!(pipeline.admit(t.hash, t.env.clone(), 0));
        }
        assert!(!pipeline.admit(txs[0].hash, txs[0].env.clone(), 1), "known already");
        let mut stored = 0;
        for t in &txs {
            let (tx, futures) = pipeline.futures(&t.hash, block.basefee).expect("pending");
            let twice: Vec<Vec<TxEnv>> = futures.iter().chain(&futures).cloned().collect();
            let done = pipeline.pre_execute(&tx, &twice, &db, &cfg, &block);
            assert!(done.stored >= 1, "{:?}", done.results);
            assert_eq!(done.results.len(), futures.len(), "a future listed twice runs once");
            stored += done.stored;
        }
        // The second has two futures: alone (its nonce chain) and after the first.
        assert_eq!(stored, 3);
        let imported = pipeline.import(&db, &cfg, &block, &txs, ImportMode::Verified).expect("imports");
        let (divergences, _) = imported.checked.expect("verified");
        assert!(divergences.is_empty(), "{divergences:?}");
        assert_eq!(imported.import.hits(), 2, "{:?}", imported.import.paths);
        assert_eq!(pipeline.counters.programs.load(Ordering::Relaxed), stored as u64);
    }

    #[test]
    fn a_block_in_another_order_misses_and_still_equals_revm() {
        let (db, cfg, block, mut txs) = setup();
        let pipeline = Pipeline::new(PipelineConfig::default());
        // Each pre-executed alone on the pre-state: the second sees the counter at 0.
        for t in &txs {
            pipeline.admit(t.hash, t.env.clone(), 0);
            let (tx, _) = pipeline.futures(&t.hash, block.basefee).expect("pending");
            pipeline.pre_execute(&tx, &[Vec::new()], &db, &cfg, &block);
        }
        txs.reverse();
        let imported = pipeline.import(&db, &cfg, &block, &txs, ImportMode::Verified).expect("imports");
        assert!(imported.checked.expect("verified").0.is_empty());
        // The first now runs on the pre-state it was recorded on: a hit. The second runs
        // after it, on a counter of 1: its SSTORE is no longer zero to non-zero, a different
        // gas path, so its guard misses and revm runs it.
        let paths = &imported.import.paths;
        assert!(matches!(paths[0], crate::executor::TxPath::Hit { .. }), "{paths:?}");
        assert!(matches!(paths[1], crate::executor::TxPath::Miss { .. }), "{paths:?}");
    }

    #[test]
    fn a_sender_funded_by_another_pending_transaction_is_pre_executed_after_it() {
        // `poor` has nothing: its transaction (the better tip, predicted first) is invalid
        // until the pending transfer that funds it runs.
        let (db, cfg, block, txs) = setup();
        let poor = Address::with_last_byte(0x66);
        let mut funding = synthetic_call(poor, Bytes::new());
        funding.value = U256::from(10u64.pow(17));
        funding.gas_priority_fee = Some(0);
        let mut spending = txs[0].env.clone();
        spending.caller = poor;
        let (funding, spending) = (
            ImportTx { hash: B256::with_last_byte(7), env: funding },
            ImportTx { hash: B256::with_last_byte(8), env: spending },
        );
        let pipeline = Pipeline::new(PipelineConfig::default());
        for t in [&funding, &spending] {
            assert!(pipeline.admit(t.hash, t.env.clone(), 0));
        }
        let (funder, futures) = pipeline.futures(&funding.hash, block.basefee).expect("pending");
        assert!(pipeline.pre_execute(&funder, &futures, &db, &cfg, &block).stored >= 1);
        let (spender, futures) = pipeline.futures(&spending.hash, block.basefee).expect("pending");
        let done = pipeline.pre_execute(&spender, &futures, &db, &cfg, &block);
        assert_eq!(done.stored, 0, "invalid before it is funded: {:?}", done.results);
        // Its invalidity was its sender's account, which the funding transfer writes: the
        // order flip puts the transfer first.
        let flips = pipeline.flip_futures(&spending.hash, block.basefee);
        assert!(flips.iter().any(|f| f.iter().any(|t| t.caller == SENDER)), "{flips:?}");
        assert!(pipeline.pre_execute(&spender, &flips, &db, &cfg, &block).stored >= 1);
        let block_txs = [funding, spending];
        let imported = pipeline.import(&db, &cfg, &block, &block_txs, ImportMode::Verified).expect("imports");
        assert!(imported.checked.expect("verified").0.is_empty());
        assert_eq!(imported.import.hits(), 2, "{:?}", imported.import.paths);
        // In the other order the spender is invalid: the block is refused, as revm refuses it.
        let reversed = [block_txs[1].clone(), block_txs[0].clone()];
        assert!(pipeline.import(&db, &cfg, &block, &reversed, ImportMode::Timed).is_err());
    }

    /// A pair in the manner of Uniswap V2: slot 0 packs a counter (low 224 bits) and the
    /// timestamp of its last update (high 32); an update in a new second first bumps the
    /// accumulator in slot 1, one in the same second does not.
    ///
    /// ```text
    /// slot = SLOAD(0); if (TIMESTAMP - (slot >> 224)) & 0xffffffff != 0 { SSTORE(1, SLOAD(1) + 1) }
    /// SSTORE(0, ((slot + 1) & (2^224 - 1)) | (TIMESTAMP << 224))
    /// ```
    fn pair_setup() -> (InMemoryDB, CfgEnv, BlockEnv, ImportTx, ImportTx) {
        const PAIR_CODE: &[u8] = &[
            0x60, 0x00, 0x54, 0x80, 0x60, 0xe0, 0x1c, 0x42, 0x03, 0x63, 0xff, 0xff, 0xff, 0xff, 0x16, 0x15, 0x60, 0x1c,
            0x57, 0x60, 0x01, 0x54, 0x60, 0x01, 0x01, 0x60, 0x01, 0x55, 0x5b, 0x60, 0x01, 0x01, 0x7b, 0xff, 0xff, 0xff,
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x16, 0x42, 0x60, 0xe0, 0x1b, 0x17, 0x60, 0x00, 0x55, 0x00,
        ];
        let (pair, unheard) = (Address::with_last_byte(0x45), Address::with_last_byte(0x56));
        let (mut db, cfg, block, _) = setup();
        db.insert_account_info(unheard, AccountInfo::from_balance(U256::from(10u64.pow(18))));
        let code = Bytecode::new_raw(Bytes::from_static(PAIR_CODE));
        db.insert_account_info(pair, AccountInfo::new(U256::ZERO, 1, code.hash_slow(), code));
        // Last updated an hour before the block.
        let last = block.timestamp - U256::from(3_600);
        db.insert_account_storage(pair, U256::ZERO, (last << 224) | U256::from(5)).expect("in memory");
        let heard = ImportTx { hash: B256::with_last_byte(0x11), env: synthetic_call(pair, Bytes::new()) };
        let mut other = synthetic_call(pair, Bytes::new());
        other.caller = unheard;
        (db, cfg, block, heard, ImportTx { hash: B256::with_last_byte(0x12), env: other })
    }

    #[test]
    fn a_pair_touched_by_an_unheard_transaction_earlier_in_the_block_hits_through_its_variant() {
        let (db, cfg, block, heard, unheard) = pair_setup();
        let pre_execute = |touched_per_tx| {
            let pipeline = Pipeline::new(PipelineConfig { touched_per_tx, ..Default::default() });
            pipeline.admit(heard.hash, heard.env.clone(), 0);
            let (tx, futures) = pipeline.futures(&heard.hash, block.basefee).expect("pending");
            let done = pipeline.pre_execute(&tx, &futures, &db, &cfg, &block);
            (pipeline, done)
        };
        // With the variant: the future alone (the pair last updated an hour ago) and the same
        // future with the pair's timestamp already at the block's.
        let (pipeline, done) = pre_execute(1);
        assert_eq!(done.results, ["program"]);
        assert_eq!(done.stored, 2, "the pre-execution and its same-block-touch variant");
        assert_eq!(pipeline.counters.touched.load(Ordering::Relaxed), 1);
        assert_eq!(pipeline.counters.pre_executions.load(Ordering::Relaxed), 2);
        for block_txs in [vec![heard.clone()], vec![unheard.clone(), heard.clone()]] {
            let imported = pipeline.import(&db, &cfg, &block, &block_txs, ImportMode::Verified).expect("imports");
            assert!(imported.checked.expect("verified").0.is_empty());
            let paths = &imported.import.paths;
            assert!(matches!(paths.last(), Some(crate::executor::TxPath::Hit { .. })), "{paths:?}");
        }
        // A second pre-execution of the transaction has no budget left for another variant.
        let (tx, futures) = pipeline.futures(&heard.hash, block.basefee).expect("pending");
        assert_eq!(pipeline.pre_execute(&tx, &futures, &db, &cfg, &block).stored, 0, "equal programs");
        assert_eq!(pipeline.counters.touched.load(Ordering::Relaxed), 1);
        // Without it, behind the unheard transaction the accumulator's guard misses (and revm
        // runs it, equal to sequential).
        let (pipeline, done) = pre_execute(0);
        assert_eq!(done.stored, 1);
        assert_eq!(pipeline.counters.touched.load(Ordering::Relaxed), 0);
        let block_txs = [unheard, heard];
        let imported = pipeline.import(&db, &cfg, &block, &block_txs, ImportMode::Verified).expect("imports");
        assert!(imported.checked.expect("verified").0.is_empty());
        assert!(
            matches!(imported.import.paths[1], crate::executor::TxPath::Miss { .. }),
            "{:?}",
            imported.import.paths
        );
    }

    #[test]
    fn a_nonce_gap_is_assumed_filled_and_guarded() {
        // The sender's nonce-0 transaction was never heard: its nonce-1 transaction is
        // pre-executed in the future where the gap is filled.
        let (db, cfg, block, txs) = setup();
        // A plain transfer, which the first transaction (a counter call) does not interact with.
        let mut later = txs[0].clone();
        later.env.nonce = 1;
        later.env.kind = revm::primitives::TxKind::Call(Address::with_last_byte(0x77));
        later.env.value = U256::from(1);
        later.hash = B256::with_last_byte(3);
        let pipeline = Pipeline::new(PipelineConfig::default());
        pipeline.admit(later.hash, later.env.clone(), 0);
        let (tx, futures) = pipeline.futures(&later.hash, block.basefee).expect("pending");
        assert_eq!(pipeline.pre_execute(&tx, &futures, &db, &cfg, &block).stored, 1);
        // On the pre-state (nonce 0) it is invalid: revm rejects the block, nothing hits.
        assert!(pipeline.import(&db, &cfg, &block, std::slice::from_ref(&later), ImportMode::Timed).is_err());
        // After the unheard transaction: a hit, equal to revm.
        let pair = [txs[0].clone(), later];
        let imported = pipeline.import(&db, &cfg, &block, &pair, ImportMode::Verified).expect("imports");
        assert!(imported.checked.expect("verified").0.is_empty());
        let paths = &imported.import.paths;
        assert_eq!(paths[0], crate::executor::TxPath::NoProgram);
        assert!(matches!(paths[1], crate::executor::TxPath::Hit { .. }), "{paths:?}");
    }

    #[test]
    fn the_live_context_is_the_heads_child() {
        let rules = ChainRules { chain_id: 1, fixed: Some(SpecId::OSAKA) };
        let mut head: Header = Header::default();
        head.inner.number = 10;
        head.inner.timestamp = 1_000;
        head.inner.gas_limit = 30_000_000;
        head.inner.gas_used = 30_000_000;
        head.inner.base_fee_per_gas = Some(800);
        let (cfg, block) = next_block_context(&rules, &head, 0);
        assert_eq!(cfg.spec, SpecId::OSAKA);
        assert_eq!(block.number, U256::from(11));
        assert_eq!(block.timestamp, U256::from(1_001), "at least a second after the head");
        assert_eq!(block.basefee, 900, "a full parent raises the base fee by an eighth");
        let (_, later) = next_block_context(&rules, &head, 5_000);
        assert_eq!(later.timestamp, U256::from(5_000), "never before now");
    }

    #[test]
    fn included_transactions_leave_the_pool() {
        let (_, _, _, txs) = setup();
        let pipeline = Pipeline::new(PipelineConfig::default());
        for t in &txs {
            pipeline.admit(t.hash, t.env.clone(), 0);
        }
        let removed = pipeline.remove_included(&[(txs[0].env.caller, txs[0].env.nonce, txs[0].hash)]);
        assert_eq!(removed, vec![txs[0].hash]);
        assert_eq!(pipeline.pending(), vec![txs[1].hash]);
    }
}
