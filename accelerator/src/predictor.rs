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
//! - **order flips**: when another pending transaction `U` wrote what `T` read in their
//!   pre-executions (their [`Footprint`]s overlap), `T`'s path may depend on which goes
//!   first, and the predicted order may have it wrong: a builder orders equal tips as it
//!   likes, bundles go where they pay, and arrival times are noisy. The predicted block with
//!   `U` moved to the other side of `T` is one more future ([`PendingPool::flip_futures`]). A
//!   back-running bot reading its target's balance, or contracts created by one factory,
//!   whose addresses count its creations, are such pairs.
//!
//! - **races**: pending transactions of several senders making the same call (contract and
//!   calldata: a bot's swarm, a mint) race: the builder puts one first, it acts, and the
//!   others find the race run. The fee-greedy order puts them as they were heard, and the
//!   victim a back-running swarm reacts to may be predicted after all of them (arrival times
//!   are noisy). Two more futures ([`PendingPool::race_futures`]): the predicted block without
//!   the rivals and with the writers of what `T` read that are predicted after it moved before
//!   it (each before the first predecessor that read what it wrote: another back-runner of
//!   the same victim goes after it), where `T` wins; and the same with the first rival just
//!   before `T`, where it loses.
//!
//! - **same-block touch**: a contract that keeps the time (or block number) of its last
//!   update beside its data (a Uniswap-V2-style pair's `blockTimestampLast`, a lending
//!   market's accrual block) takes another path when a transaction earlier in the same block
//!   touched it: the price accumulators are not updated twice, interest is not accrued twice.
//!   That transaction is often one prescient never heard (a private order flow's, a bundle's).
//!   When a pre-execution writes such a field ([`same_block_touches`]), the same future with
//!   the field already at this block's clock is one more pre-execution
//!   ([`pre_execute_touched`]): the path the transaction takes behind an unheard toucher,
//!   whose data stays free like any other input's.
//!
//! Identical futures are pre-executed once. Each pre-execution records a program (see
//! [`ir::record`]), optimized and verified before it is stored; a program is only a
//! shortcut under its guards, so a wrong prediction costs a miss, never a wrong result.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    ops::Bound,
};

use alloy::primitives::map::B256Map;
use ir::{
    compact::{Compiled, PrecompileMemo},
    ops::Op,
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
    primitives::{Address, B256, Bytes, U256},
};

/// A piece of state a program reads or writes: an account (balance, nonce, code) or a slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StateKey {
    /// An account.
    Account(Address),
    /// A storage slot of an account.
    Slot(Address, U256),
}

/// The state a pre-executed transaction read and wrote at constant addresses and slots (what
/// its program loads and stores; a key the program computes from its inputs is not in it, nor
/// is the fee recipient, which every transaction writes).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Footprint {
    /// Keys read.
    pub reads: HashSet<StateKey>,
    /// Keys written.
    pub writes: HashSet<StateKey>,
}

impl Footprint {
    /// The footprint of `program`.
    pub fn of(program: &Program) -> Self {
        let address = |v| program.as_const(v).map(|w| Address::from_word(w.into()));
        let mut f = Self::default();
        for inst in &program.insts {
            let (set, key) = match (inst.op, inst.args.as_slice()) {
                (Op::Balance | Op::Nonce | Op::CodeHash | Op::Exists, [a]) => {
                    (&mut f.reads, address(*a).map(StateKey::Account))
                }
                (Op::Storage, [a, k]) => {
                    (&mut f.reads, address(*a).zip(program.as_const(*k)).map(|(a, k)| StateKey::Slot(a, k)))
                }
                (Op::StoreAccount, [a, ..]) => (&mut f.writes, address(*a).map(StateKey::Account)),
                (Op::StoreSlot, [a, k, _]) => {
                    (&mut f.writes, address(*a).zip(program.as_const(*k)).map(|(a, k)| StateKey::Slot(a, k)))
                }
                _ => continue,
            };
            set.extend(key);
        }
        f
    }

    /// Adds `other`'s keys (another path of the same transaction).
    pub fn extend(&mut self, other: &Self) {
        self.reads.extend(other.reads.iter().copied());
        self.writes.extend(other.writes.iter().copied());
    }
}

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
    /// Same-block-touch pre-executions run for it (see [`PendingPool::take_touch`]).
    touched: usize,
}

/// The pending transactions prescient knows, by hash and by sender and nonce.
#[derive(Debug)]
pub struct PendingPool {
    by_hash: B256Map<PoolTx>,
    by_sender: BTreeMap<Address, BTreeMap<u64, B256>>,
    /// What each transaction's pre-executions read and wrote, once it has a program.
    footprints: B256Map<Footprint>,
    /// The pending transactions that wrote each key (the index of `footprints`' writes).
    writers: HashMap<StateKey, HashSet<B256>>,
    /// The pending transactions of each call (contract and calldata of at least
    /// [`RACE_MIN_INPUT`] bytes): the index of [`PendingPool::race_futures`].
    by_input: HashMap<RaceKey, HashSet<B256>>,
    seq: u64,
    capacity: usize,
    /// The last predicted order ([`PendingPool::order`]), until a transaction enters or leaves
    /// the pool: a refresh asks for it several times per transaction (its futures, flips and
    /// races), and computing it is O(n log n) in the pool's size, under the pool's lock.
    order: std::sync::Mutex<Option<std::sync::Arc<PredictedOrder>>>,
}

/// The pool ordered as a fee-greedy builder would order it for one base fee
/// ([`PendingPool::order`]), with each transaction's position.
#[derive(Debug)]
pub struct PredictedOrder {
    basefee: u64,
    hashes: Vec<B256>,
    positions: B256Map<usize>,
}

impl PredictedOrder {
    /// The pool's hashes in predicted block order.
    pub fn hashes(&self) -> &[B256] {
        &self.hashes
    }

    /// Where `hash` is in the order, if pending.
    pub fn position(&self, hash: &B256) -> Option<usize> {
        self.positions.get(hash).copied()
    }
}

/// The effective tip per gas a transaction pays above `basefee` (0 when it cannot pay it).
pub fn effective_tip(tx: &TxEnv, basefee: u64) -> u128 {
    let max_fee = tx.gas_price;
    let headroom = max_fee.saturating_sub(basefee as u128);
    tx.gas_priority_fee.map_or(headroom, |tip| tip.min(headroom))
}

/// Most fee recipients [`targeted_recipients`] gives a transaction.
pub const TARGETED_RECIPIENTS: usize = 2;

/// Fee recipients a transaction itself points at, most likely first (at most
/// [`TARGETED_RECIPIENTS`]), from what the pending pool shows and the base fee a parent header
/// gives, never the block:
/// - a plain transfer that tips nothing at `basefee` is one only a block that profits
///   otherwise includes: its sender's own (a builder paying the proposer, a pool paying out, a
///   miner's zero-price transaction before EIP-1559), or the block whose fee recipient it pays
///   (a builder moving funds to its fee-recipient address). A call that tips nothing is most
///   often a bundle's (the searcher pays the builder inside the call): that alone points at
///   nobody;
/// - a call whose calldata holds the address of a known fee recipient (`known`), at any
///   offset (ABI-encoded, packed, or nested in an inner call), targets that recipient's
///   blocks: MEV payments check `block.coinbase` against the miner or builder they were sent
///   to.
pub fn targeted_recipients(tx: &TxEnv, basefee: u64, known: impl Fn(&Address) -> bool) -> Vec<Address> {
    let mut out: Vec<Address> = Vec::new();
    let mut add = |a: Address| {
        if a != Address::ZERO && !out.contains(&a) && out.len() < TARGETED_RECIPIENTS {
            out.push(a);
        }
    };
    let plain = tx.data.is_empty() && tx.kind.is_call();
    if plain && tx.gas_price >= u128::from(basefee) && effective_tip(tx, basefee) == 0 {
        add(tx.caller);
        if let Some(to) = tx.kind.to().filter(|to| **to != tx.caller) {
            add(*to);
        }
    }
    for window in tx.data.windows(20).take(MAX_SCANNED_CALLDATA) {
        // An address is 20 bytes, few of them zero: skip the padding quickly.
        if window[0] != 0 || window[19] != 0 {
            let named = Address::from_slice(window);
            if known(&named) {
                add(named);
            }
        }
    }
    out
}

/// The race futures of a transaction that races others ([`PendingPool::race_futures`]): it
/// wins, it loses.
pub const RACE_FUTURES: usize = 2;

/// What marks transactions of one race: the contract called and the calldata.
type RaceKey = (Option<Address>, Bytes);

fn race_key(tx: &TxEnv) -> RaceKey {
    (tx.kind.to().copied(), tx.data.clone())
}

/// Most transactions of one [`RaceKey`] for a race ([`PendingPool::race_futures`]).
pub const MAX_RIVALS: usize = 32;

/// The shortest calldata that marks a race ([`PendingPool::race_futures`]): a selector.
pub const RACE_MIN_INPUT: usize = 4;

/// Calldata bytes [`targeted_recipients`] scans for a known fee recipient.
pub const MAX_SCANNED_CALLDATA: usize = 4096;

impl PendingPool {
    /// A pool of at most `capacity` transactions.
    pub fn new(capacity: usize) -> Self {
        Self {
            by_hash: B256Map::default(),
            by_sender: BTreeMap::new(),
            footprints: B256Map::default(),
            writers: HashMap::new(),
            by_input: HashMap::new(),
            seq: 0,
            capacity: capacity.max(1),
            order: Default::default(),
        }
    }

    /// Drops the cached order: a transaction entered or left the pool.
    fn reordered(&mut self) {
        *self.order.get_mut().unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
    }

    /// Adds a transaction; false when it is known, or the pool is full. A transaction
    /// replacing another of the same sender and nonce takes its place.
    pub fn insert(&mut self, hash: B256, env: TxEnv, seen_ms: u64) -> bool {
        if self.by_hash.contains_key(&hash) {
            return false;
        }
        let replaced = self.by_sender.get(&env.caller).and_then(|n| n.get(&env.nonce)).copied();
        if let Some(old) = replaced {
            self.forget(&old);
        } else if self.by_hash.len() >= self.capacity {
            metrics::counter!(crate::metrics::POOL_REJECTED).increment(1);
            return false;
        }
        self.seq += 1;
        self.reordered();
        self.by_sender.entry(env.caller).or_default().insert(env.nonce, hash);
        if env.data.len() >= RACE_MIN_INPUT {
            self.by_input.entry(race_key(&env)).or_default().insert(hash);
        }
        self.by_hash.insert(hash, PoolTx { hash, env, seen_ms, seq: self.seq, touched: 0 });
        true
    }

    /// The transaction with `hash`.
    pub fn get(&self, hash: &B256) -> Option<&PoolTx> {
        self.by_hash.get(hash)
    }

    /// Whether pending `hash` may have one more same-block-touch pre-execution, at most `limit`
    /// in all (counted when it may).
    pub fn take_touch(&mut self, hash: &B256, limit: usize) -> bool {
        match self.by_hash.get_mut(hash) {
            Some(tx) if tx.touched < limit => {
                tx.touched += 1;
                true
            }
            _ => false,
        }
    }

    /// Adds what a pre-execution of pending `hash` read and wrote to its footprint.
    pub fn note_footprint(&mut self, hash: &B256, footprint: &Footprint) {
        if self.by_hash.contains_key(hash) {
            for key in &footprint.writes {
                self.writers.entry(*key).or_default().insert(*hash);
            }
            self.footprints.entry(*hash).or_default().extend(footprint);
        }
    }

    /// Removes `hash` from `by_hash` and the indexes built on it (not from `by_sender`).
    fn forget(&mut self, hash: &B256) -> Option<PoolTx> {
        let tx = self.by_hash.remove(hash);
        if let Some(tx) = &tx {
            self.reordered();
            let key = race_key(&tx.env);
            if let Some(same) = self.by_input.get_mut(&key) {
                same.remove(hash);
                if same.is_empty() {
                    self.by_input.remove(&key);
                }
            }
        }
        self.forget_footprint(hash);
        tx
    }

    fn forget_footprint(&mut self, hash: &B256) {
        for key in self.footprints.remove(hash).into_iter().flat_map(|f| f.writes) {
            if let Some(writers) = self.writers.get_mut(&key) {
                writers.remove(hash);
                if writers.is_empty() {
                    self.writers.remove(&key);
                }
            }
        }
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
            if let Some(t) = self.forget(hash) {
                removed.push(t.hash);
            }
            let stale: Vec<B256> = match self.by_sender.get_mut(sender) {
                Some(nonces) => {
                    let stale: Vec<u64> = nonces.range(..=*nonce).map(|(n, _)| *n).collect();
                    let hashes = stale.iter().filter_map(|n| nonces.remove(n)).collect();
                    if nonces.is_empty() {
                        self.by_sender.remove(sender);
                    }
                    hashes
                }
                None => Vec::new(),
            };
            for h in stale {
                if self.forget(&h).is_some() {
                    removed.push(h);
                }
            }
        }
        removed
    }

    /// The predicted block order of the whole pool for a block with `basefee`, computed once
    /// until a transaction enters or leaves the pool (or the base fee differs).
    pub fn order(&self, basefee: u64) -> std::sync::Arc<PredictedOrder> {
        let mut cached = self.order.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(order) = cached.as_ref().filter(|o| o.basefee == basefee) {
            return order.clone();
        }
        let order = std::sync::Arc::new(self.compute_order(basefee));
        *cached = Some(order.clone());
        order
    }

    fn compute_order(&self, basefee: u64) -> PredictedOrder {
        // Each sender contributes its lowest-nonce transaction; the best head goes next
        // (highest tip, then earliest heard). A heap of the heads: O(n log n), each sender's
        // transactions walked in place (a queue of each sender's, then a std-hashed lookup of
        // each transaction, took 100 ms for a pool of 50,000: `benches/futures.rs`).
        use std::{cmp::Reverse, collections::BinaryHeap};
        let mut senders: Vec<_> = self.by_sender.values().map(|nonces| nonces.values()).collect();
        let mut next = |i: usize| senders[i].by_ref().find_map(|h| self.by_hash.get(h));
        let head = |i: usize, t: &PoolTx| (effective_tip(&t.env, basefee), Reverse(t.seq), i);
        let mut heads: BinaryHeap<(u128, Reverse<u64>, usize)> = BinaryHeap::with_capacity(self.by_sender.len());
        let mut hashes = Vec::with_capacity(self.by_hash.len());
        let mut current: Vec<Option<&PoolTx>> = (0..self.by_sender.len()).map(&mut next).collect();
        heads.extend(current.iter().enumerate().filter_map(|(i, t)| t.map(|t| head(i, t))));
        while let Some((_, _, i)) = heads.pop() {
            let Some(t) = current[i] else { continue };
            hashes.push(t.hash);
            current[i] = next(i);
            if let Some(t) = current[i] {
                heads.push(head(i, t));
            }
        }
        let mut positions = B256Map::with_capacity_and_hasher(hashes.len(), Default::default());
        positions.extend(hashes.iter().enumerate().map(|(i, h)| (*h, i)));
        PredictedOrder { basefee, hashes, positions }
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
        let order = self.order(basefee);
        let position = order.position(hash).unwrap_or(0);
        let order = order.hashes();
        let start = position.saturating_sub(max_predecessors);
        let block: Vec<TxEnv> =
            order[start..position].iter().filter_map(|h| self.by_hash.get(h)).map(|t| t.env.clone()).collect();
        let mut futures = vec![chain];
        if !block.iter().map(|t| (t.caller, t.nonce)).eq(futures[0].iter().map(|t| (t.caller, t.nonce))) {
            futures.push(block);
        }
        futures
    }

    /// The order flips of `hash` (see the module docs): for each pending transaction `U` of
    /// another sender that wrote a key `hash` read (their footprints), the predicted block
    /// (`futures`' last) with `U` on the other side: removed with its sender's later
    /// transactions when it is predicted before, appended with its sender's pending earlier
    /// ones when after. At most `limit`, the most telling first: those whose overlapping key
    /// fewest pending transactions write (from the pool's index of writers: the cost is the
    /// keys read and their writers, not the pool's size) (a key one transaction alone writes is a signal; one
    /// that many write is contention, where moving one of many changes little), then those of
    /// `hash`'s tip (whose order a builder chooses freely), then the nearest in arrival.
    pub fn flip_futures(&self, hash: &B256, basefee: u64, max_predecessors: usize, limit: usize) -> Vec<Vec<TxEnv>> {
        let (Some(tx), Some(own)) = (self.by_hash.get(hash), self.footprints.get(hash)) else { return Vec::new() };
        if limit == 0 {
            return Vec::new();
        }
        let tip = effective_tip(&tx.env, basefee);
        // Each writer of a key this one read, with the fewest writers of any such key.
        let mut rarest: HashMap<B256, usize> = HashMap::new();
        for key in &own.reads {
            let Some(writers) = self.writers.get(key) else { continue };
            for writer in writers {
                let r = rarest.entry(*writer).or_insert(usize::MAX);
                *r = (*r).min(writers.len());
            }
        }
        let mut flips: Vec<(usize, bool, u64, &PoolTx)> = rarest
            .into_iter()
            .filter_map(|(h, rarest)| self.by_hash.get(&h).map(|u| (rarest, u)))
            .filter(|(_, u)| u.env.caller != tx.env.caller)
            .map(|(rarest, u)| (rarest, effective_tip(&u.env, basefee) != tip, u.seq.abs_diff(tx.seq), u))
            .collect();
        flips.sort_by_key(|(rarest, untied, distance, u)| (*rarest, *untied, *distance, u.hash));
        let order = self.order(basefee);
        let position = order.position(hash).unwrap_or(0);
        let order = order.hashes();
        let before = &order[position.saturating_sub(max_predecessors)..position];
        let env = |h: &B256| self.by_hash.get(h).map(|t| t.env.clone());
        let mut futures = Vec::new();
        for (_, _, _, u) in flips.into_iter().take(limit) {
            let (sender, nonce) = (u.env.caller, u.env.nonce);
            let future: Vec<TxEnv> = if before.contains(&u.hash) {
                let later = |t: &TxEnv| t.caller == sender && t.nonce >= nonce;
                before.iter().filter_map(env).filter(|t| !later(t)).collect()
            } else {
                let mut future: Vec<TxEnv> = before.iter().filter_map(env).collect();
                let chain = self.by_sender.get(&sender).into_iter().flat_map(|n| n.range(..=nonce));
                let missing: Vec<TxEnv> =
                    chain.filter(|(_, h)| !before.contains(h)).filter_map(|(_, h)| env(h)).collect();
                future.extend(missing);
                future
            };
            futures.push(future);
        }
        futures
    }

    /// The race futures of `hash` (see the module docs): when pending transactions of other
    /// senders make the same call (contract and calldata: a bot's swarm, a mint race), a
    /// builder puts one of them first and the others find the race run. Two futures: the
    /// predicted block without any of them before `hash` (nor their senders' later
    /// transactions), with the writers of what `hash` read that are predicted after it moved
    /// before it, so that `hash` wins; and the same with the first of them in the predicted
    /// order, and its sender's earlier pending transactions, just before `hash`, so that
    /// `hash` loses to it. At most `max_predecessors` each, the nearest, and none whose
    /// sender's earlier pending transaction is not before it. Empty when `hash` races nobody,
    /// or more than [`MAX_RIVALS`] make the call (contention, not a race).
    pub fn race_futures(&self, hash: &B256, basefee: u64, max_predecessors: usize) -> Vec<Vec<TxEnv>> {
        let Some(tx) = self.by_hash.get(hash) else { return Vec::new() };
        let Some(same) = self.by_input.get(&race_key(&tx.env)) else { return Vec::new() };
        // Many senders with one call to one contract (a wrapped-ether deposit) is contention,
        // not a race: no one of them decides the others' paths.
        if same.len() > MAX_RIVALS {
            return Vec::new();
        }
        // Each rival sender's first racing transaction: it and its sender's later ones race.
        let mut rivals: HashMap<Address, u64> = HashMap::new();
        for u in same.iter().filter_map(|h| self.by_hash.get(h)).filter(|u| u.env.caller != tx.env.caller) {
            rivals.entry(u.env.caller).and_modify(|n| *n = (*n).min(u.env.nonce)).or_insert(u.env.nonce);
        }
        if rivals.is_empty() {
            return Vec::new();
        }
        let racing = |t: &PoolTx| rivals.get(&t.env.caller).is_some_and(|nonce| t.env.nonce >= *nonce);
        let order = self.order(basefee);
        let position = order.position(hash).unwrap_or(0);
        let before = |h: &B256| order.position(h).is_some_and(|p| p < position);
        let order = order.hashes();
        let mut wins: Vec<&PoolTx> = order[..position]
            .iter()
            .rev()
            .filter_map(|h| self.by_hash.get(h))
            .filter(|t| !racing(t))
            .take(max_predecessors)
            .collect();
        wins.reverse();
        let mut held: HashSet<B256> = wins.iter().map(|t| t.hash).collect();
        // A transaction predicted after `hash` that wrote what it read (its victim, for a
        // back-runner) goes before it too, with its sender's earlier transactions: before the
        // first predecessor that read what it wrote (another back-runner of the same victim,
        // which its author sent after seeing it).
        let feeds = |reader: &PoolTx, writer: &PoolTx| match (
            self.footprints.get(&reader.hash),
            self.footprints.get(&writer.hash),
        ) {
            (Some(reader), Some(writer)) => !reader.reads.is_disjoint(&writer.writes),
            _ => false,
        };
        let victims = self.writers_of_reads(tx).into_iter().filter(|u| !racing(u) && !before(&u.hash));
        for writer in victims.take(max_predecessors) {
            let chain: Vec<&PoolTx> = self
                .chain(&writer.env.caller, Bound::Included(writer.env.nonce))
                .into_iter()
                .filter(|t| t.hash != *hash && !held.contains(&t.hash))
                .collect();
            let after_own = wins.iter().rposition(|p| p.env.caller == writer.env.caller).map_or(0, |i| i + 1);
            let first_reader = wins.iter().position(|p| chain.iter().any(|v| feeds(p, v))).unwrap_or(wins.len());
            let at = first_reader.max(after_own);
            held.extend(chain.iter().map(|t| t.hash));
            wins.splice(at..at, chain);
        }
        // The rival a fee-greedy builder would put first (the pool's first in its order).
        let first = order.iter().filter_map(|h| self.by_hash.get(h)).find(|t| racing(t) && t.hash != *hash);
        let mut loses = wins.clone();
        if let Some(first) = first {
            loses.extend(
                self.chain(&first.env.caller, Bound::Included(first.env.nonce))
                    .into_iter()
                    .filter(|t| !held.contains(&t.hash)),
            );
        }
        [wins, loses].into_iter().map(|future| self.nearest_valid(future, max_predecessors)).collect()
    }

    /// The last `max` of `future`, without a transaction whose sender's earlier pending one is
    /// not before it (trimming cut it, or it was never there): it would fail on its nonce.
    fn nearest_valid(&self, mut future: Vec<&PoolTx>, max: usize) -> Vec<TxEnv> {
        future.drain(..future.len().saturating_sub(max));
        let mut next: HashMap<Address, u64> = HashMap::new();
        future
            .into_iter()
            .filter(|t| {
                let lowest = || self.by_sender.get(&t.env.caller).and_then(|n| n.keys().next().copied());
                let expected = next.entry(t.env.caller).or_insert_with(|| lowest().unwrap_or(t.env.nonce));
                let valid = t.env.nonce == *expected;
                *expected += u64::from(valid);
                valid
            })
            .map(|t| t.env.clone())
            .collect()
    }

    /// The pending transactions of other senders that wrote a key `tx` read (their
    /// footprints), in the order they were heard.
    fn writers_of_reads(&self, tx: &PoolTx) -> Vec<&PoolTx> {
        let Some(own) = self.footprints.get(&tx.hash) else { return Vec::new() };
        let mut writers: Vec<&PoolTx> = own
            .reads
            .iter()
            .filter_map(|key| self.writers.get(key))
            .flatten()
            .filter_map(|h| self.by_hash.get(h))
            .filter(|u| u.env.caller != tx.env.caller)
            .collect();
        writers.sort_by_key(|u| (u.seq, u.hash));
        writers.dedup_by_key(|u| u.hash);
        writers
    }

    /// `sender`'s pending transactions up to `to`, in nonce order.
    fn chain(&self, sender: &Address, to: Bound<u64>) -> Vec<&PoolTx> {
        self.by_sender
            .get(sender)
            .into_iter()
            .flat_map(|nonces| nonces.range((Bound::Unbounded, to)))
            .filter_map(|(_, h)| self.by_hash.get(h))
            .collect()
    }

    /// The dependency future of `hash`: only the pending transactions of other senders that
    /// wrote a key `hash` read (their footprints), each after its sender's earlier pending
    /// ones, in the order they were heard, after `hash`'s own earlier transactions; at most
    /// `max_predecessors`. A bundle a builder puts at the top of its block is this shape: the
    /// transactions it depends on, and none of the fee-ordered rest. `None` when no other
    /// sender wrote what it read.
    pub fn dependency_future(&self, hash: &B256, max_predecessors: usize) -> Option<Vec<TxEnv>> {
        let tx = self.by_hash.get(hash)?;
        let writers = self.writers_of_reads(tx);
        if writers.is_empty() {
            return None;
        }
        let mut future: Vec<&PoolTx> = self.chain(&tx.env.caller, Bound::Excluded(tx.env.nonce));
        for u in writers {
            for t in self.chain(&u.env.caller, Bound::Included(u.env.nonce)) {
                if !future.iter().any(|held| held.hash == t.hash) {
                    future.push(t);
                }
            }
        }
        future.truncate(max_predecessors);
        Some(future.into_iter().map(|t| t.env.clone()).collect())
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
    pre_execute_touched(db, cfg, block, predecessors, tx, config, memo, |_| Vec::new()).0
}

/// A storage slot set to a value before a pre-execution: `(address, key, value)`.
pub type SlotOverride = (Address, U256, U256);

/// [`pre_execute`], then the same-block-touch variants of the module docs: `variants` gets the
/// same-block touches of the pre-execution ([`same_block_touches`], when it gave a program)
/// and returns the sets of them to pre-execute under; each runs on the state the predecessors
/// left (executed once), with its slots set, and comes back in its order.
#[allow(clippy::too_many_arguments)]
pub fn pre_execute_touched<D>(
    db: &D,
    cfg: &CfgEnv,
    block: &BlockEnv,
    predecessors: &[TxEnv],
    tx: &TxEnv,
    config: RecordConfig,
    memo: Option<&PrecompileMemo>,
    variants: impl FnOnce(Vec<SlotOverride>) -> Vec<Vec<SlotOverride>>,
) -> (PreExecution, Vec<PreExecution>)
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
        Err(e) => return (PreExecution::StateFailed(e.to_string()), Vec::new()),
    }
    let (base, touches) = record_on(&cache, cfg, block, tx, config, memo);
    let mut touched = Vec::new();
    if matches!(base, PreExecution::Program(..)) && !touches.is_empty() {
        for set in variants(touches) {
            // Each variant on the predecessors' state: its slots set, then set back.
            let mut was = Vec::with_capacity(set.len());
            for (address, key, value) in &set {
                let done = revm::Database::storage(&mut cache, *address, *key)
                    .map(|old| was.push((*address, *key, old)))
                    .and_then(|()| cache.insert_account_storage(*address, *key, *value));
                if let Err(e) = done {
                    touched.push(PreExecution::StateFailed(e.to_string()));
                    return (base, touched);
                }
            }
            touched.push(record_on(&cache, cfg, block, tx, config, memo).0);
            // In reverse: a slot set twice gets its first value back.
            for (address, key, old) in was.into_iter().rev() {
                if let Err(e) = cache.insert_account_storage(address, key, old) {
                    touched.push(PreExecution::StateFailed(e.to_string()));
                    return (base, touched);
                }
            }
        }
    }
    (base, touched)
}

/// Records `tx` on `cache` (see [`pre_execute`]) and returns the pre-execution with its
/// same-block touches ([`same_block_touches`], when it gave a program).
fn record_on<D>(
    cache: &CacheDB<D>,
    cfg: &CfgEnv,
    block: &BlockEnv,
    tx: &TxEnv,
    config: RecordConfig,
    memo: Option<&PrecompileMemo>,
) -> (PreExecution, Vec<SlotOverride>)
where
    D: DatabaseRef,
    D::Error: DBErrorMarker,
{
    let started = std::time::Instant::now();
    let recording = match record(cache, cfg, block, tx, config) {
        Ok(r) => r,
        Err(RecordError::Rejected(why)) => return (PreExecution::Invalid(why), Vec::new()),
        Err(RecordError::Database(why)) => return (PreExecution::StateFailed(why), Vec::new()),
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
                return (PreExecution::NoProgram(NoApReason::Unmodelled), Vec::new());
            };
            // The program once on the state it was recorded on: its read set, and the memo
            // filled with its precompile results. A program that misses there is a bug.
            let reads = memo.and_then(|memo| {
                let compiled = Compiled::new(&program).ok()?;
                let captured = compiled.capture_reads(cache, cfg, block, Some(memo));
                if captured.is_none() {
                    metrics::counter!(crate::metrics::SELF_MISSES).increment(1);
                }
                captured.map(|(outcome, reads)| {
                    // The logs it will emit: their bloom hashes, ready for import.
                    ir::bloom::MEMO.learn(&outcome.logs);
                    Box::new(ReadSet::new(&program, reads, outcome))
                })
            });
            (PreExecution::Program(program, reads), same_block_touches(&recording.state, block))
        }
        Err(reason) => (PreExecution::NoProgram(reason), Vec::new()),
    }
}

/// Widths, in bits, of the clock fields [`same_block_touches`] looks for, narrowest first
/// (Solidity packs a `uint32` timestamp beside two `uint112` reserves; `uint40` and `uint64`
/// are the other usual widths, and a whole slot holding the clock matches the narrowest).
const CLOCK_WIDTHS: [usize; 3] = [32, 40, 64];

/// How far behind the block's clock a field's old value may be and still be taken for the time
/// of a last update: about a year, in seconds and in blocks of 12 s.
const MAX_CLOCK_AGE: [u64; 2] = [366 * 24 * 3600, 366 * 24 * 300];

/// The slots `state` (a transaction's writes) moved a byte-aligned field of to the block's
/// clock (its timestamp or number, masked to the field's width) from an earlier, non-zero
/// value at most [`MAX_CLOCK_AGE`] behind: a contract recording the time of its last update.
/// For each, the slot's value before the transaction with that field already at the clock:
/// the state a transaction earlier in the block that touched it would have left (see the
/// module docs). One field per slot, the lowest. A hypothesis of the predictor only: the
/// program of a pre-execution on it guards every input like any other.
pub fn same_block_touches(state: &revm::state::EvmState, block: &BlockEnv) -> Vec<SlotOverride> {
    let clocks = [block.timestamp, U256::from(block.number)];
    let mut touches = Vec::new();
    for (address, account) in state {
        'slots: for (key, slot) in &account.storage {
            let (old, new) = (slot.original_value, slot.present_value);
            if old == new {
                continue;
            }
            for offset in (0..256).step_by(8) {
                for width in CLOCK_WIDTHS.into_iter().filter(|w| offset + w <= 256) {
                    let mask = U256::MAX >> (256 - width);
                    let (was, now) = ((old >> offset) & mask, (new >> offset) & mask);
                    let to_clock = clocks.iter().zip(MAX_CLOCK_AGE).any(|(clock, age)| {
                        now == *clock & mask && !was.is_zero() && was < now && now - was <= U256::from(age)
                    });
                    if to_clock {
                        touches.push((*address, *key, (old & !(mask << offset)) | (now << offset)));
                        continue 'slots;
                    }
                }
            }
        }
    }
    touches.sort_unstable();
    touches
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
    fn targeted_recipients_are_what_a_transaction_points_at() {
        let a = Address::with_last_byte;
        let none = |_: &Address| false;
        let pay = |tx: &mut TxEnv| tx.kind = revm::primitives::TxKind::Call(a(9));
        // A tipping transfer points at nobody.
        let (_, mut tipping) = tx(1, 0, 5);
        pay(&mut tipping);
        assert!(targeted_recipients(&tipping, 100, none).is_empty());
        // No tip at the base fee: its sender, and the account it pays.
        let (_, mut zero) = tx(1, 0, 0);
        pay(&mut zero);
        assert_eq!(targeted_recipients(&zero, 100, none), vec![a(1), a(9)]);
        // Not below the base fee (it cannot be included at all).
        assert!(targeted_recipients(&zero, 101, none).is_empty());
        // A call that tips nothing (a bundle's) points at nobody; nor does a creation.
        zero.data = revm::primitives::Bytes::from(vec![0xab; 4]);
        assert!(targeted_recipients(&zero, 100, none).is_empty());
        let (_, mut create) = tx(1, 0, 0);
        create.kind = revm::primitives::TxKind::Create;
        assert!(targeted_recipients(&create, 100, none).is_empty());
        // Before EIP-1559 (no base fee), a zero gas price is a miner's own transaction.
        let legacy = TxEnv {
            caller: a(3),
            gas_price: 0,
            tx_type: 0,
            kind: revm::primitives::TxKind::Call(a(3)),
            ..Default::default()
        };
        assert_eq!(targeted_recipients(&legacy, 0, none), vec![a(3)]);
        // A known fee recipient named anywhere in a tipping call's calldata: ABI-encoded,
        // then packed at an odd offset; an unknown one is not a recipient.
        let miner = Address::repeat_byte(0xea);
        let other = Address::repeat_byte(0x77);
        let mut data = vec![0x1c, 0xff, 0x79, 0xcd];
        data.extend_from_slice(&[0u8; 12]);
        data.extend_from_slice(other.as_slice());
        data.extend_from_slice(&[0x01, 0x62, 0x02]);
        data.extend_from_slice(miner.as_slice());
        let (_, mut call) = tx(2, 0, 5);
        pay(&mut call);
        call.data = revm::primitives::Bytes::from(data);
        assert_eq!(targeted_recipients(&call, 100, |x: &Address| *x == miner), vec![miner]);
        assert!(targeted_recipients(&call, 100, none).is_empty());
    }

    #[test]
    fn order_is_fee_greedy_within_nonce_order() {
        let mut pool = PendingPool::new(100);
        for (c, n, tip) in [(1, 0, 1), (1, 1, 50), (2, 0, 10), (3, 5, 5)] {
            let (h, env) = tx(c, n, tip);
            assert!(pool.insert(h, env, 0));
        }
        let order = pool.order(100);
        let names: Vec<_> = order.hashes().iter().map(|h| U256::from_be_bytes(h.0).to::<u64>()).collect();
        // Sender 1's tip-50 transaction waits for its nonce-0 transaction (tip 1).
        assert_eq!(names, vec![2000, 3005, 1000, 1001]);
        let (h, _) = tx(1, 1, 50);
        let futures = pool.futures(&h, 100, 16);
        assert_eq!(futures.len(), 2);
        assert_eq!(futures[0].len(), 1, "nonce chain: sender 1 nonce 0");
        assert_eq!(futures[1].len(), 3, "predicted block: everything before it");
    }

    #[test]
    fn a_footprint_is_the_constant_keys_loaded_and_stored() {
        let text = "env Cancun chain 1\nstatus {\"Success\":\"Stop\"}\ngas 21000 refund 0\n\
            v0 = const 0x1\nv1 = const 0x2\nv2 = ctx.coinbase\nv3 = load.balance v0\n\
            v4 = load.storage v1, v0\nv5 = load.balance v2\n    store.slot v1, v0, v3\n\
            store.account v0, v3, v4, v4\n    store.account v2, v5, v4, v4\n";
        let program = ir::text::parse(text).expect("parses");
        let f = Footprint::of(&program);
        let (one, two) = (Address::with_last_byte(1), Address::with_last_byte(2));
        let slot = StateKey::Slot(two, U256::from(1));
        assert_eq!(f.reads, HashSet::from([StateKey::Account(one), slot]), "the fee recipient is not a key");
        assert_eq!(f.writes, HashSet::from([StateKey::Account(one), slot]));
    }

    #[test]
    fn order_flips_move_a_writer_of_what_was_read_across() {
        let mut pool = PendingPool::new(100);
        let (t, t_env) = tx(1, 0, 10);
        let (before, before_env) = tx(2, 0, 10); // same tip, heard first: predicted before
        let (rich, rich_env) = tx(3, 0, 20); // predicted before, writes nothing read
        let (after, after_env) = tx(4, 0, 5); // predicted after
        let (unknown, unknown_env) = tx(5, 0, 5); // no pre-execution yet
        for (h, env) in [(before, before_env.clone()), (t, t_env), (rich, rich_env.clone()), (after, after_env.clone())]
        {
            assert!(pool.insert(h, env, 0));
        }
        assert!(pool.insert(unknown, unknown_env, 0));
        let key = StateKey::Slot(Address::with_last_byte(9), U256::from(1));
        let reads = |keys: &[StateKey]| Footprint { reads: keys.iter().copied().collect(), writes: HashSet::new() };
        let writes = |keys: &[StateKey]| Footprint { reads: HashSet::new(), writes: keys.iter().copied().collect() };
        assert!(pool.flip_futures(&t, 100, 16, 4).is_empty(), "no footprint yet: nothing to flip");
        pool.note_footprint(&t, &reads(&[key]));
        pool.note_footprint(&before, &writes(&[key]));
        pool.note_footprint(&after, &writes(&[key]));
        pool.note_footprint(&rich, &writes(&[StateKey::Account(Address::with_last_byte(7))]));
        let shape = |f: &Vec<TxEnv>| f.iter().map(|t| t.caller).collect::<Vec<_>>();
        let flips: Vec<_> = pool.flip_futures(&t, 100, 16, 4).iter().map(shape).collect();
        assert_eq!(
            flips,
            vec![vec![rich_env.caller], vec![rich_env.caller, before_env.caller, after_env.caller]],
            "the tied writer first (taken out), then the later one (put in)"
        );
        assert_eq!(pool.flip_futures(&t, 100, 16, 1).len(), 1, "the limit holds");
        pool.remove_included(&[(before_env.caller, 0, before)]);
        assert_eq!(pool.flip_futures(&t, 100, 16, 4).len(), 1, "an included writer's footprint is gone");
    }

    #[test]
    fn the_dependency_future_holds_only_the_writers_of_what_was_read_and_their_chains() {
        let mut pool = PendingPool::new(100);
        let (own_first, own_first_env) = tx(1, 0, 1);
        let (t, t_env) = tx(1, 1, 50); // the best tip: predicted first of all but its chain
        let (rich, rich_env) = tx(3, 0, 90); // predicted before, writes nothing read
        let (w0, w0_env) = tx(2, 0, 1);
        let (w1, w1_env) = tx(2, 1, 1); // writes what `t` read, after its sender's nonce 0
        let (late, late_env) = tx(4, 0, 1); // writes it too, heard last
        for (h, env) in [(w0, w0_env), (own_first, own_first_env), (rich, rich_env), (w1, w1_env), (late, late_env)] {
            assert!(pool.insert(h, env, 0));
        }
        assert!(pool.insert(t, t_env, 0));
        let key = StateKey::Slot(Address::with_last_byte(9), U256::from(1));
        assert_eq!(pool.dependency_future(&t, 16), None, "no footprint yet");
        pool.note_footprint(&t, &Footprint { reads: HashSet::from([key]), writes: HashSet::new() });
        assert_eq!(pool.dependency_future(&t, 16), None, "no writer yet");
        for writer in [w1, late] {
            pool.note_footprint(&writer, &Footprint { reads: HashSet::new(), writes: HashSet::from([key]) });
        }
        pool.note_footprint(
            &rich,
            &Footprint { reads: HashSet::new(), writes: HashSet::from([StateKey::Account(Address::ZERO)]) },
        );
        let shape = |f: Vec<TxEnv>| f.iter().map(|t| (t.caller.0[19], t.nonce)).collect::<Vec<_>>();
        assert_eq!(
            pool.dependency_future(&t, 16).map(shape),
            Some(vec![(1, 0), (2, 0), (2, 1), (4, 0)]),
            "its own chain, then each writer after its sender's earlier ones, in arrival order"
        );
        assert_eq!(pool.dependency_future(&t, 2).map(shape), Some(vec![(1, 0), (2, 0)]), "at most the bound");
    }

    #[test]
    fn a_race_has_a_future_where_it_wins_behind_its_victim_and_one_where_it_loses() {
        let mut pool = PendingPool::new(100);
        let call = |(h, mut env): (B256, TxEnv), data: &[u8]| {
            env.data = Bytes::copy_from_slice(data);
            (h, env)
        };
        let race = [0xc8, 0x9e, 0x43, 0x61, 7];
        // All of one tip, so predicted in the order heard: F, P, R1, R1', B, T, R2, V.
        let (f, f_env) = tx(7, 0, 10);
        let (p, p_env) = tx(2, 0, 10); // a rival's sender's earlier transaction
        let (r1, r1_env) = call(tx(2, 1, 10), &race); // a rival predicted first
        let (r1_later, r1_later_env) = tx(2, 2, 10); // and its sender's next transaction
        let (b, b_env) = call(tx(3, 0, 10), &[0xc8, 0x9e, 0x43, 0x61, 8]); // another back-runner of V
        let (t, t_env) = call(tx(1, 0, 10), &race);
        let (r2, r2_env) = call(tx(4, 0, 10), &race); // a rival predicted after
        let (v, v_env) = tx(5, 0, 10); // the victim, heard last
        for (h, env) in [
            (f, f_env),
            (p, p_env),
            (r1, r1_env),
            (r1_later, r1_later_env),
            (b, b_env),
            (t, t_env),
            (r2, r2_env),
            (v, v_env),
        ] {
            assert!(pool.insert(h, env, 0));
        }
        let shape = |f: &Vec<TxEnv>| f.iter().map(|t| (t.caller.0[19], t.nonce)).collect::<Vec<_>>();
        let races = |pool: &PendingPool, max| pool.race_futures(&t, 100, max).iter().map(shape).collect::<Vec<_>>();
        assert_eq!(
            races(&pool, 16),
            vec![vec![(7, 0), (2, 0), (3, 0)], vec![(7, 0), (2, 0), (3, 0), (2, 1)]],
            "without footprints: the predicted block without its rivals, and with the first of them (once)"
        );
        let key = StateKey::Account(Address::with_last_byte(5));
        let reads = Footprint { reads: HashSet::from([key]), writes: HashSet::new() };
        pool.note_footprint(&t, &reads);
        pool.note_footprint(&b, &reads);
        pool.note_footprint(&v, &Footprint { reads: HashSet::new(), writes: HashSet::from([key]) });
        assert_eq!(
            races(&pool, 16),
            vec![vec![(7, 0), (2, 0), (5, 0), (3, 0)], vec![(7, 0), (2, 0), (5, 0), (3, 0), (2, 1)]],
            "the victim before the first predecessor that read what it wrote"
        );
        assert_eq!(
            races(&pool, 2),
            vec![vec![(5, 0), (3, 0)], vec![(3, 0)]],
            "the nearest, at most the bound, and never a transaction whose sender's earlier one was cut"
        );
        let mut elsewhere = pool.get(&t).expect("pending").env.clone();
        elsewhere.caller = Address::with_last_byte(8);
        elsewhere.kind = revm::primitives::TxKind::Call(Address::with_last_byte(9));
        assert!(pool.insert(B256::repeat_byte(8), elsewhere, 0));
        assert!(
            pool.race_futures(&B256::repeat_byte(8), 100, 16).is_empty(),
            "the same calldata to another contract is no rival"
        );
        let (_, plain) = tx(4, 0, 10);
        assert!(pool.insert(B256::repeat_byte(4), plain, 0), "a replacement");
        assert!(pool.by_input.values().all(|same| !same.contains(&r2)), "the replaced rival left the index");
        assert!(pool.race_futures(&v, 100, 16).is_empty(), "no calldata of its own kind: no race");
        pool.remove_included(&[(Address::with_last_byte(2), 2, r1_later)]);
        assert!(pool.race_futures(&t, 100, 16).is_empty(), "the rivals left the pool, and its index");
        assert!(pool.by_input.values().all(|same| same.len() == 1), "{:?}", pool.by_input);
    }

    #[test]
    fn a_clock_field_moved_to_the_blocks_is_a_same_block_touch() {
        use revm::state::{Account, EvmState, EvmStorageSlot};
        let block =
            BlockEnv { number: U256::from(20_000_000), timestamp: U256::from(1_700_000_000), ..Default::default() };
        let (ts, number) = (block.timestamp, block.number);
        // (old, new, expected override)
        let cases: [(U256, U256, Option<U256>); 7] = [
            // A pair: reserves below, the timestamp in the high 32 bits, an hour old.
            (
                ((ts - U256::from(3_600)) << 224) | U256::from(7),
                (ts << 224) | U256::from(9),
                Some((ts << 224) | U256::from(7)),
            ),
            // A whole slot holding the block number of the last accrual, 100 blocks old.
            (number - U256::from(100), number, Some(number)),
            // A uint40 timestamp at byte 4, beside other fields.
            (
                ((ts - U256::from(10_000)) << 32) | U256::from(3),
                (ts << 32) | U256::from(4),
                Some((ts << 32) | U256::from(3)),
            ),
            // Never set before (zero): a first update, not a later one.
            (U256::from(1), (ts << 224) | U256::from(1), None),
            // More than a year behind: not a clock.
            (ts - U256::from(400u64 * 24 * 3600), ts, None),
            // Ahead of the clock: not a last update.
            (ts + U256::from(5), ts, None),
            // Not moved to the clock at all.
            (U256::from(1), U256::from(2), None),
        ];
        for (i, (old, new, expected)) in cases.into_iter().enumerate() {
            let address = Address::with_last_byte(i as u8 + 1);
            let mut account = Account::default();
            account.storage.insert(U256::from(8), EvmStorageSlot::new_changed(old, new, Default::default()));
            let state: EvmState = [(address, account)].into_iter().collect();
            let touches = same_block_touches(&state, &block);
            let expected: Vec<SlotOverride> = expected.map(|v| (address, U256::from(8), v)).into_iter().collect();
            assert_eq!(touches, expected, "case {i}");
        }
    }

    #[test]
    fn the_order_is_computed_once_until_the_pool_changes() {
        let mut pool = PendingPool::new(16);
        let names = |order: &[B256]| order.iter().map(|h| U256::from_be_bytes(h.0).to::<u64>()).collect::<Vec<_>>();
        let check = |pool: &PendingPool, basefee: u64, expected: &[u64]| {
            let order = pool.order(basefee);
            assert_eq!(names(order.hashes()), expected);
            assert_eq!(names(order.hashes()), names(&pool.compute_order(basefee).hashes), "the cache is current");
            for (i, h) in order.hashes().iter().enumerate() {
                assert_eq!(order.position(h), Some(i));
            }
        };
        for (c, n, tip) in [(1, 0, 1), (1, 1, 50), (2, 0, 10)] {
            let (h, env) = tx(c, n, tip);
            assert!(pool.insert(h, env, 0));
        }
        check(&pool, 100, &[2000, 1000, 1001]);
        assert!(std::sync::Arc::ptr_eq(&pool.order(100), &pool.order(100)), "computed once");
        // Another base fee is another order: sender 2 pays a tip of 10 over a fee of 100 only.
        let (_, mut capped) = tx(3, 0, 40);
        capped.gas_price = 105;
        assert!(pool.insert(B256::from(U256::from(3000u64)), capped, 0), "a transaction entering");
        check(&pool, 100, &[2000, 3000, 1000, 1001]);
        check(&pool, 60, &[3000, 2000, 1000, 1001]);
        // A footprint moves nothing.
        let before = pool.order(60);
        pool.note_footprint(&B256::from(U256::from(2000u64)), &Footprint::default());
        assert!(std::sync::Arc::ptr_eq(&before, &pool.order(60)));
        // A replacement, and an inclusion.
        let (_, replacing) = tx(2, 0, 0);
        assert!(pool.insert(B256::from(U256::from(2999u64)), replacing, 0));
        check(&pool, 100, &[3000, 1000, 1001, 2999]);
        pool.remove_included(&[(Address::with_last_byte(1), 0, B256::from(U256::from(1000u64)))]);
        check(&pool, 100, &[1001, 3000, 2999]);
        assert_eq!(pool.order(100).position(&B256::from(U256::from(1000u64))), None, "included: gone");
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
