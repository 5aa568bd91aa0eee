//! `prescient eval`: the whole fast path, offline, on recorded traffic.
//!
//! For each recorded block:
//!
//! ```text
//!   pending = arrivals heard before the block and not included earlier
//!             (a dataset without arrivals, like the shared mainnet blocks: the block's own
//!              transactions, as if all were heard — Forerunner's upper bound)
//!   predict   futures per pending transaction (nonce chain, predicted block) in a predicted
//!             context (the block's, one second later, unknown randomness)
//!   pre-execute each future on the block's pre-state ─▶ programs ─▶ AP store
//!   import    the block through the store (hits applied, misses in revm)
//!   verify    sequential revm on the same pre-state: every transaction compared in full
//! ```
//!
//! A divergence fails the run. Times are wall clock of one core, import against sequential
//! revm on the same block in the same run.

use std::{
    collections::{BTreeMap, HashSet},
    time::{Duration, Instant},
};

use accelerator::{ImportTx, Pipeline, PipelineConfig, verify_against_reference};
use eyre::Result;
use mempool_tap::{
    Dataset, RecordedBlock,
    recorded::{Arrival, tx_env},
};
use revm::{
    database::CacheDB,
    primitives::{B256, U256},
};

/// What evaluating one block gave.
#[derive(Clone, Debug, Default)]
pub struct BlockEval {
    /// Block number.
    pub number: u64,
    /// Transactions in the block.
    pub txs: usize,
    /// Of which heard before the block (had a chance to be pre-executed).
    pub heard: usize,
    /// Imported through a program.
    pub hits: usize,
    /// Misses and no-program transactions, by reason.
    pub misses: BTreeMap<String, usize>,
    /// Pre-executions run (futures of pending transactions).
    pub pre_executions: usize,
    /// Programs recorded.
    pub programs: usize,
    /// Transactions whose import differs from sequential revm (must be 0).
    pub divergences: Vec<String>,
    /// Import time.
    pub import: Duration,
    /// Sequential revm time on the same block.
    pub reference: Duration,
}

/// Totals over a run.
#[derive(Clone, Debug, Default)]
pub struct EvalSummary {
    /// Blocks evaluated.
    pub blocks: usize,
    /// Transactions.
    pub txs: usize,
    /// Heard transactions.
    pub heard: usize,
    /// Hits.
    pub hits: usize,
    /// Misses by reason.
    pub misses: BTreeMap<String, usize>,
    /// Divergences (must be 0).
    pub divergences: usize,
    /// Import time.
    pub import: Duration,
    /// Sequential revm time.
    pub reference: Duration,
}

impl EvalSummary {
    /// Adds one block.
    pub fn add(&mut self, b: &BlockEval) {
        self.blocks += 1;
        self.txs += b.txs;
        self.heard += b.heard;
        self.hits += b.hits;
        for (k, v) in &b.misses {
            *self.misses.entry(k.clone()).or_default() += v;
        }
        self.divergences += b.divergences.len();
        self.import += b.import;
        self.reference += b.reference;
    }
}

/// The pending set of each block: arrivals heard by the block's time and not included in an
/// earlier block. Without arrivals, `None` (the caller uses the block's own transactions).
pub struct Arrivals {
    arrivals: Vec<Arrival>,
    included: HashSet<B256>,
}

impl Arrivals {
    /// The arrivals of `dataset`, or `None` when it has none.
    pub fn of(dataset: &Dataset) -> Result<Option<Self>> {
        let arrivals = dataset.arrivals()?;
        Ok((!arrivals.is_empty()).then(|| Self { arrivals, included: HashSet::new() }))
    }

    fn pending_for(&mut self, block: &RecordedBlock) -> Vec<(B256, revm::context::TxEnv)> {
        let deadline_ms = (block.env.timestamp.to::<u64>() + 1) * 1000;
        let mut seen = HashSet::new();
        let pending = self
            .arrivals
            .iter()
            .filter(|a| a.t_ms <= deadline_ms)
            .filter_map(|a| {
                let hash = *a.tx.inner.inner().tx_hash();
                (!self.included.contains(&hash) && seen.insert(hash))
                    .then(|| (hash, tx_env(a.tx.inner.signer(), a.tx.inner.inner())))
            })
            .collect();
        self.included.extend(block.txs.iter().filter_map(|t| t.hash));
        pending
    }
}

/// Evaluates one block (see the module docs).
pub fn eval_block(
    block: &RecordedBlock,
    arrivals: Option<&mut Arrivals>,
    max_predecessors: usize,
) -> Result<BlockEval> {
    let txs: Vec<ImportTx> = block
        .txs
        .iter()
        .enumerate()
        .map(|(i, t)| ImportTx { hash: t.hash.unwrap_or_else(|| B256::from(U256::from(i))), env: t.env.clone() })
        .collect();
    let pending = match arrivals {
        Some(a) => a.pending_for(block),
        None => txs.iter().map(|t| (t.hash, t.env.clone())).collect(),
    };
    let in_block: HashSet<B256> = txs.iter().map(|t| t.hash).collect();
    // The same pipeline core `prescient serve` runs, with its defaults.
    let config = PipelineConfig { max_predecessors, pool_capacity: pending.len().max(1), ..PipelineConfig::default() };
    let pipeline = Pipeline::new(config);
    for (hash, env) in &pending {
        pipeline.admit(*hash, env.clone(), 0);
    }
    // The context as predicted before the block existed: its time and randomness unknown.
    let predicted = accelerator::pipeline::recorded_block_context(&block.env);
    let db = block.state_db();
    let mut eval = BlockEval { number: block.number, txs: txs.len(), ..Default::default() };
    for (hash, _) in pending.iter().filter(|(h, _)| in_block.contains(h)) {
        eval.heard += 1;
        let Some((tx, futures)) = pipeline.futures(hash, predicted.basefee) else { continue };
        let done = pipeline.pre_execute(&tx, &futures, &db, &block.cfg, &predicted);
        eval.pre_executions += done.results.len();
        eval.programs += done.stored;
    }
    let started = Instant::now();
    let imported = pipeline.import(&db, &block.cfg, &block.env, &txs, false)?;
    eval.import = started.elapsed();
    let import = imported.import;
    let mut reference_db = CacheDB::new(&db);
    let (divergences, reference) = verify_against_reference(&mut reference_db, &block.cfg, &block.env, &txs, &import)?;
    eval.reference = reference;
    eval.hits = import.hits();
    eval.misses = import.misses();
    eval.divergences =
        divergences.iter().map(|d| format!("tx {} {}: {} ({:?})", d.index, d.hash, d.difference, d.path)).collect();
    Ok(eval)
}
