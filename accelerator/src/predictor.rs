//! The predictor: which futures a pending transaction may run in, and its pre-execution
//! under each.
//!
//! A **future** is a list of predecessors executed before the transaction on the head
//! state, in the next block's context. For a pending transaction `T` of sender `S`:
//!
//! - **nonce chain**: `S`'s pending transactions with lower nonces, in nonce order (what must
//!   precede `T` for it to be valid at all);
//! - **predicted block**: the pool ordered as a fee-greedy builder would order it (highest
//!   effective tip first, each sender's transactions in nonce order, ties by arrival),
//!   everything before `T` (at most `max_predecessors`, the nearest ones).
//!
//! Identical futures are pre-executed once. Each pre-execution records a program (see
//! [`ir::record`]), optimized and verified before it is stored; a program is only a
//! shortcut under its guards, so a wrong prediction costs a miss, never a wrong result.

use std::collections::{BTreeMap, HashMap};

use ir::{
    compact::{Compiled, PrecompileMemo},
    passes::optimize,
    program::Program,
    readset::ReadSet,
    record::{NoApReason, RecordConfig, RecordError, record},
    verify::verify,
};
use revm::{
    DatabaseRef, ExecuteCommitEvm, ExecuteEvm,
    context::{BlockEnv, CfgEnv, TxEnv},
    database::CacheDB,
    database_interface::DBErrorMarker,
    primitives::{Address, B256},
};

/// A pending transaction in the pool.
#[derive(Clone, Debug)]
pub struct PoolTx {
    /// Its hash.
    pub hash: B256,
    /// The transaction as revm executes it.
    pub env: TxEnv,
    /// When it was heard (ms since the epoch).
    pub seen_ms: u64,
    seq: u64,
}

/// The pending transactions prescient knows, by hash and by sender and nonce.
#[derive(Debug)]
pub struct PendingPool {
    by_hash: HashMap<B256, PoolTx>,
    by_sender: BTreeMap<Address, BTreeMap<u64, B256>>,
    seq: u64,
    capacity: usize,
}

/// The effective tip per gas a transaction pays above `basefee` (0 when it cannot pay it).
pub fn effective_tip(tx: &TxEnv, basefee: u64) -> u128 {
    let max_fee = tx.gas_price;
    let headroom = max_fee.saturating_sub(basefee as u128);
    tx.gas_priority_fee.map_or(headroom, |tip| tip.min(headroom))
}

impl PendingPool {
    /// A pool of at most `capacity` transactions.
    pub fn new(capacity: usize) -> Self {
        Self { by_hash: HashMap::new(), by_sender: BTreeMap::new(), seq: 0, capacity: capacity.max(1) }
    }

    /// Adds a transaction; false when it is known, or the pool is full. A transaction
    /// replacing another of the same sender and nonce takes its place.
    pub fn insert(&mut self, hash: B256, env: TxEnv, seen_ms: u64) -> bool {
        if self.by_hash.contains_key(&hash) {
            return false;
        }
        let replaced = self.by_sender.get(&env.caller).and_then(|n| n.get(&env.nonce)).copied();
        if let Some(old) = replaced {
            self.by_hash.remove(&old);
        } else if self.by_hash.len() >= self.capacity {
            metrics::counter!(crate::metrics::POOL_REJECTED).increment(1);
            return false;
        }
        self.seq += 1;
        self.by_sender.entry(env.caller).or_default().insert(env.nonce, hash);
        self.by_hash.insert(hash, PoolTx { hash, env, seen_ms, seq: self.seq });
        true
    }

    /// The transaction with `hash`.
    pub fn get(&self, hash: &B256) -> Option<&PoolTx> {
        self.by_hash.get(hash)
    }

    /// Number of pending transactions.
    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    /// Whether the pool is empty.
    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    /// Every pending hash, oldest first.
    pub fn hashes(&self) -> Vec<B256> {
        let mut all: Vec<&PoolTx> = self.by_hash.values().collect();
        all.sort_by_key(|t| t.seq);
        all.into_iter().map(|t| t.hash).collect()
    }

    /// Removes transactions a block included, and every transaction of their senders with a
    /// nonce at or below the included one (no longer valid). Returns the hashes removed.
    pub fn remove_included(&mut self, included: &[(Address, u64, B256)]) -> Vec<B256> {
        let mut removed = Vec::new();
        for (sender, nonce, hash) in included {
            if let Some(t) = self.by_hash.remove(hash) {
                removed.push(t.hash);
            }
            if let Some(nonces) = self.by_sender.get_mut(sender) {
                let stale: Vec<u64> = nonces.range(..=*nonce).map(|(n, _)| *n).collect();
                for n in stale {
                    if let Some(h) = nonces.remove(&n)
                        && self.by_hash.remove(&h).is_some()
                    {
                        removed.push(h);
                    }
                }
                if nonces.is_empty() {
                    self.by_sender.remove(sender);
                }
            }
        }
        removed
    }

    /// The predicted block order of the whole pool for a block with `basefee`.
    pub fn predicted_order(&self, basefee: u64) -> Vec<B256> {
        // Each sender contributes its lowest-nonce transaction; the best head goes next
        // (highest tip, then earliest heard). A heap of the heads: O(n log n).
        use std::{cmp::Reverse, collections::BinaryHeap};
        let mut queues: Vec<std::collections::VecDeque<&PoolTx>> = self
            .by_sender
            .values()
            .map(|nonces| nonces.values().filter_map(|h| self.by_hash.get(h)).collect())
            .collect();
        let head = |i: usize, t: &PoolTx| (effective_tip(&t.env, basefee), Reverse(t.seq), i);
        let mut heads: BinaryHeap<(u128, Reverse<u64>, usize)> =
            queues.iter().enumerate().filter_map(|(i, q)| q.front().map(|t| head(i, t))).collect();
        let mut order = Vec::with_capacity(self.by_hash.len());
        while let Some((_, _, i)) = heads.pop() {
            if let Some(t) = queues[i].pop_front() {
                order.push(t.hash);
            }
            if let Some(next) = queues[i].front() {
                heads.push(head(i, next));
            }
        }
        order
    }

    /// The futures of `hash`: lists of predecessors, distinct, nonce chain first.
    pub fn futures(&self, hash: &B256, basefee: u64, max_predecessors: usize) -> Vec<Vec<TxEnv>> {
        let Some(tx) = self.by_hash.get(hash) else { return Vec::new() };
        let chain: Vec<TxEnv> = self
            .by_sender
            .get(&tx.env.caller)
            .map(|nonces| {
                nonces.range(..tx.env.nonce).filter_map(|(_, h)| self.by_hash.get(h)).map(|t| t.env.clone()).collect()
            })
            .unwrap_or_default();
        let order = self.predicted_order(basefee);
        let position = order.iter().position(|h| h == hash).unwrap_or(0);
        let start = position.saturating_sub(max_predecessors);
        let block: Vec<TxEnv> =
            order[start..position].iter().filter_map(|h| self.by_hash.get(h)).map(|t| t.env.clone()).collect();
        let mut futures = vec![chain];
        if !block.iter().map(|t| (t.caller, t.nonce)).eq(futures[0].iter().map(|t| (t.caller, t.nonce))) {
            futures.push(block);
        }
        futures
    }
}

/// What one pre-execution under one future produced.
#[derive(Debug)]
pub enum PreExecution {
    /// A program, optimized and verified, and the read set of its recording (see
    /// [`ir::readset`]; captured when pre-executing with a memo).
    Program(Program, Option<Box<ReadSet>>),
    /// The transaction ran but the tracer gave no program.
    NoProgram(NoApReason),
    /// The transaction is invalid in this future (nonce, balance, fee).
    Invalid(String),
    /// The state backend failed during the pre-execution (a node outage, say): nothing is
    /// known about the transaction.
    StateFailed(String),
}

/// Executes `predecessors` on a cache over `db` (skipping any revm rejects, as a builder
/// would), then records `tx` on the result. With a `memo`, the program is also run once in
/// the compact evaluator on the state it was recorded on, which leaves its precompile
/// results in the memo for import (and must hit: a miss there is counted as a bug).
pub fn pre_execute<D>(
    db: &D,
    cfg: &CfgEnv,
    block: &BlockEnv,
    predecessors: &[TxEnv],
    tx: &TxEnv,
    config: RecordConfig,
    memo: Option<&PrecompileMemo>,
) -> PreExecution
where
    D: DatabaseRef,
    D::Error: DBErrorMarker,
{
    let mut cache = CacheDB::new(revm::database_interface::WrapDatabaseRef(db));
    if !predecessors.is_empty() {
        let mut evm = ir::reference::evm(&mut cache, cfg, block);
        for p in predecessors {
            if let Ok(res) = evm.transact(p.clone()) {
                evm.commit(res.state);
            }
        }
    }
    // A gap in the sender's nonces (an earlier transaction of its not heard, or not yet):
    // the future in which the gap is filled, with effects unknown. The program guards the
    // nonce and the balance it reads like any other input, so this only decides which path
    // is recorded, never whether a hit is right.
    match revm::Database::basic(&mut cache, tx.caller) {
        Ok(Some(mut info)) if info.nonce < tx.nonce => {
            info.nonce = tx.nonce;
            cache.insert_account_info(tx.caller, info);
        }
        Ok(_) => {}
        Err(e) => return PreExecution::StateFailed(e.to_string()),
    }
    let started = std::time::Instant::now();
    let recording = match record(&cache, cfg, block, tx, config) {
        Ok(r) => r,
        Err(RecordError::Rejected(why)) => return PreExecution::Invalid(why),
        Err(RecordError::Database(why)) => return PreExecution::StateFailed(why),
    };
    metrics::histogram!(crate::metrics::RECORD_SECONDS).record(started.elapsed().as_secs_f64());
    match recording.program {
        Ok(program) => {
            let started = std::time::Instant::now();
            let optimized = optimize(&program);
            metrics::histogram!(crate::metrics::OPTIMIZE_SECONDS).record(started.elapsed().as_secs_f64());
            // A program the verifier rejects is a bug upstream; keep the unoptimized one
            // if it verifies, else nothing.
            let program = if verify(&optimized).is_ok() {
                optimized
            } else if verify(&program).is_ok() {
                metrics::counter!(crate::metrics::OPTIMIZER_REJECTS).increment(1);
                program
            } else {
                return PreExecution::NoProgram(NoApReason::Unmodelled);
            };
            // The program once on the state it was recorded on: its read set, and the memo
            // filled with its precompile results. A program that misses there is a bug.
            let reads = memo.and_then(|memo| {
                let compiled = Compiled::new(&program).ok()?;
                let captured = compiled.capture_reads(&cache, cfg, block, Some(memo));
                if captured.is_none() {
                    metrics::counter!(crate::metrics::SELF_MISSES).increment(1);
                }
                captured.map(|(outcome, reads)| {
                    // The logs it will emit: their bloom hashes, ready for import.
                    ir::bloom::MEMO.learn(&outcome.logs);
                    Box::new(ReadSet::new(&program, reads, outcome))
                })
            });
            PreExecution::Program(program, reads)
        }
        Err(reason) => PreExecution::NoProgram(reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use revm::primitives::U256;

    fn tx(caller: u8, nonce: u64, tip: u128) -> (B256, TxEnv) {
        let env = TxEnv {
            caller: Address::with_last_byte(caller),
            nonce,
            gas_price: 100 + tip,
            gas_priority_fee: Some(tip),
            tx_type: 2,
            value: U256::ZERO,
            ..Default::default()
        };
        (B256::from(U256::from(u64::from(caller) * 1000 + nonce)), env)
    }

    #[test]
    fn order_is_fee_greedy_within_nonce_order() {
        let mut pool = PendingPool::new(100);
        for (c, n, tip) in [(1, 0, 1), (1, 1, 50), (2, 0, 10), (3, 5, 5)] {
            let (h, env) = tx(c, n, tip);
            assert!(pool.insert(h, env, 0));
        }
        let order = pool.predicted_order(100);
        let names: Vec<_> = order.iter().map(|h| U256::from_be_bytes(h.0).to::<u64>()).collect();
        // Sender 1's tip-50 transaction waits for its nonce-0 transaction (tip 1).
        assert_eq!(names, vec![2000, 3005, 1000, 1001]);
        let (h, _) = tx(1, 1, 50);
        let futures = pool.futures(&h, 100, 16);
        assert_eq!(futures.len(), 2);
        assert_eq!(futures[0].len(), 1, "nonce chain: sender 1 nonce 0");
        assert_eq!(futures[1].len(), 3, "predicted block: everything before it");
    }

    #[test]
    fn replacement_and_inclusion() {
        let mut pool = PendingPool::new(2);
        let (h0, e0) = tx(1, 0, 1);
        let (h1, e1) = tx(1, 1, 1);
        assert!(pool.insert(h0, e0.clone(), 0));
        assert!(pool.insert(h1, e1, 0));
        let (h2, e2) = tx(2, 0, 1);
        assert!(!pool.insert(h2, e2, 0), "a full pool refuses a new transaction");
        let replacement = B256::repeat_byte(9);
        assert!(pool.insert(replacement, e0, 0), "same sender and nonce replaces");
        assert!(pool.get(&h0).is_none());
        let removed = pool.remove_included(&[(Address::with_last_byte(1), 1, h1)]);
        assert_eq!(removed.len(), 2);
        assert!(pool.is_empty());
    }
}
