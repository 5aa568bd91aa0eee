//! The parallel fallback: optimistic execution of a block's transactions on several threads,
//! validated and committed in block order (the Block-STM family).
//!
//! ```text
//!   workers: claim the next index i ─▶ execute tx i on a speculative view ─▶ slot[i] = reads, writes, result
//!              (view: the latest write of a lower, executed, uncommitted tx; else the committed state)
//!   committer (whoever holds the lock), for k = next to commit, in block order:
//!     slot[k] ready ─▶ every value tx k read still equals the committed state?
//!                        yes ─▶ commit its state, then credit the fee recipient with its fee
//!                        no  ─▶ execute tx k again on the committed state (exact), commit
//!     slot[k] not claimed by anyone ─▶ execute it on the committed state, commit
//! ```
//!
//! **Why this is exact.** A transaction's execution is a function of the values it reads. A
//! speculative result is committed only if every account and slot it read holds, at its turn
//! in block order, the value it read (value-based validation against the state all lower
//! transactions committed), so it is the result sequential execution would give. Anything
//! else (a read that changed, a speculative error, the fee recipient destroyed) is executed
//! again on the committed state, which at that point is exactly sequential's.
//!
//! **The fee recipient does not serialize the block.** Speculative runs use a handler that
//! leaves out the fee recipient's credit ([`DeferFee`]: revm's mainnet handler with
//! `reward_beneficiary` a no-op); the committer credits each transaction's fee, in order, after
//! committing its state, as sequential revm's journal would have. A transaction that reads the
//! fee recipient itself (a builder payment) reads it through the view and is validated like
//! any other read.
//!
//! **When it does not pay, it does not run.** Blocks under [`ParallelConfig::min_txs`] run
//! sequentially; when more than [`ParallelConfig::max_reexecuted`] of the transactions
//! committed so far had to run again, speculation stops and the committer executes the rest in
//! order.
//!
//! Why our own: no crate offers a parallel executor on revm 43 (pevm is on revm 38 with its own
//! storage trait; grevm on revm 40), see `../shared/research/crates.md`.

use std::{
    collections::HashMap,
    fmt,
    marker::PhantomData,
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use ir::{Receipts, reference::ReferenceError};
use revm::{
    Database, DatabaseCommit, DatabaseRef, ExecuteEvm,
    context::{BlockEnv, CfgEnv, ContextSetters, ContextTr, JournalTr, TxEnv, result::EVMError},
    context_interface::{Block, Transaction, result::ExecutionResult},
    database::CacheDB,
    database_interface::DBErrorMarker,
    handler::{EvmTr, EvmTrError, FrameResult, FrameTr, Handler},
    interpreter::interpreter_action::FrameInit,
    primitives::{Address, B256, StorageKey, StorageValue, U256, hardfork::SpecId},
    state::{Account, AccountInfo, Bytecode, EvmState},
};

/// How the parallel fallback runs.
#[derive(Clone, Debug)]
pub struct ParallelConfig {
    /// Threads executing (the calling thread is one of them).
    pub threads: usize,
    /// Blocks with fewer transactions run sequentially: threads cost more than they save.
    pub min_txs: usize,
    /// Once at least 8 transactions are committed, speculation stops when more than this share
    /// of them had to be executed again (conflicts pile up: the block is a chain).
    pub max_reexecuted: f64,
}

impl Default for ParallelConfig {
    fn default() -> Self {
        Self { threads: std::thread::available_parallelism().map_or(2, |n| n.get()), min_txs: 16, max_reexecuted: 0.5 }
    }
}

/// What the parallel fallback did with one block.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ParallelStats {
    /// Whether the block ran sequentially from the start (too small, or one thread).
    pub sequential: bool,
    /// Transactions committed from their speculative execution.
    pub speculative: usize,
    /// Transactions executed (again) on the committed state by the committer.
    pub reexecuted: usize,
    /// The index from which speculation was stopped, if it was.
    pub stopped_at: Option<usize>,
}

/// A block executed by the parallel fallback.
#[derive(Clone, Debug)]
pub struct ParallelBlock {
    /// Every transaction's result, in block order.
    pub results: Vec<ExecutionResult>,
    /// Receipts, as sequential revm's.
    pub receipts: Receipts,
    /// How it went.
    pub stats: ParallelStats,
    /// Wall time.
    pub time: Duration,
}

/// Executes `txs` on `db` with the parallel fallback; on return `db` holds the post-block
/// state (transactions only, as `ir::execute_block`). A transaction revm rejects on the
/// committed state stops the block with an error, as sequential execution would.
pub fn execute_parallel<D>(
    db: &mut CacheDB<D>,
    cfg: &CfgEnv,
    block: &BlockEnv,
    txs: &[TxEnv],
    config: &ParallelConfig,
) -> Result<ParallelBlock, ReferenceError>
where
    D: DatabaseRef + Send + Sync,
    D::Error: DBErrorMarker + fmt::Display,
{
    let started = Instant::now();
    let threads = config.threads.max(1).min(txs.len().max(1));
    if threads < 2 || txs.len() < config.min_txs {
        let results = sequential(db, cfg, block, txs)?;
        let receipts = receipts(txs, &results);
        let stats = ParallelStats { sequential: true, reexecuted: txs.len(), ..Default::default() };
        return Ok(ParallelBlock { results, receipts, stats, time: started.elapsed() });
    }
    let shared = Shared {
        cfg,
        block,
        txs,
        state: RwLock::new(db),
        slots: (0..txs.len()).map(|_| Mutex::new(None)).collect(),
        next: AtomicUsize::new(0),
        done: AtomicUsize::new(0),
        speculate: AtomicBool::new(true),
        failed: AtomicBool::new(false),
        committer: Mutex::new(Committer { results: Vec::with_capacity(txs.len()), ..Default::default() }),
        max_reexecuted: config.max_reexecuted,
    };
    std::thread::scope(|scope| {
        for _ in 1..threads {
            scope.spawn(|| shared.work());
        }
        shared.work();
    });
    let committer = shared.committer.into_inner().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(error) = committer.error {
        return Err(error);
    }
    let receipts = receipts(txs, &committer.results);
    Ok(ParallelBlock { results: committer.results, receipts, stats: committer.stats, time: started.elapsed() })
}

/// Sequential revm, one transaction after another, each committed.
fn sequential<D>(
    db: &mut CacheDB<D>,
    cfg: &CfgEnv,
    block: &BlockEnv,
    txs: &[TxEnv],
) -> Result<Vec<ExecutionResult>, ReferenceError>
where
    D: DatabaseRef,
    D::Error: DBErrorMarker + fmt::Display,
{
    let mut evm = ir::reference::evm(&mut *db, cfg, block);
    let mut results = Vec::with_capacity(txs.len());
    for (index, tx) in txs.iter().enumerate() {
        let res = evm.transact(tx.clone()).map_err(|e| rejected(index, e))?;
        evm.ctx.db_mut().commit(res.state);
        results.push(res.result);
    }
    Ok(results)
}

fn rejected<E: fmt::Display>(index: usize, e: EVMError<E>) -> ReferenceError {
    ReferenceError { index, is_database: matches!(e, EVMError::Database(_)), message: e.to_string() }
}

fn receipts(txs: &[TxEnv], results: &[ExecutionResult]) -> Receipts {
    let mut builder = ir::receipts::ReceiptBuilder::new(txs.len(), |logs: &[alloy::primitives::Log]| {
        alloy::primitives::logs_bloom(logs)
    });
    for (tx, result) in txs.iter().zip(results) {
        builder.push(ir::receipts::ReceiptInput {
            ty: tx.tx_type,
            success: result.is_success(),
            gas_used: result.tx_gas_used(),
            logs: result.logs().to_vec(),
        });
    }
    builder.finish().expect("every transaction pushed its receipt")
}

/// One value a speculative execution read.
#[derive(Debug)]
enum Read {
    Account(Address, Option<AccountInfo>),
    Slot(Address, StorageKey, StorageValue),
}

/// What a transaction wrote to one account, as later transactions' views see it.
#[derive(Debug)]
struct Write {
    /// The account afterwards; `None` when destroyed.
    info: Option<AccountInfo>,
    /// Whether its storage was wiped (created or destroyed) before `slots` were written.
    reset: bool,
    slots: HashMap<StorageKey, StorageValue>,
}

/// One transaction's speculative execution.
#[derive(Debug)]
struct Speculative {
    /// The result and state (without the fee credit), or why it failed on this view.
    outcome: Option<(ExecutionResult, EvmState)>,
    reads: Vec<Read>,
    writes: HashMap<Address, Write>,
}

#[derive(Default)]
struct Committer {
    results: Vec<ExecutionResult>,
    stats: ParallelStats,
    error: Option<ReferenceError>,
}

struct Shared<'a, D> {
    cfg: &'a CfgEnv,
    block: &'a BlockEnv,
    txs: &'a [TxEnv],
    /// The committed state: every transaction below `done`, in order.
    state: RwLock<&'a mut CacheDB<D>>,
    /// Speculative executions not yet committed.
    slots: Vec<Mutex<Option<Arc<Speculative>>>>,
    /// The next index to claim for speculative execution.
    next: AtomicUsize,
    /// How many transactions are committed.
    done: AtomicUsize,
    speculate: AtomicBool,
    failed: AtomicBool,
    committer: Mutex<Committer>,
    max_reexecuted: f64,
}

impl<D> Shared<'_, D>
where
    D: DatabaseRef + Send + Sync,
    D::Error: DBErrorMarker + fmt::Display,
{
    /// One thread's work: claim and execute transactions while speculation pays, committing
    /// what is ready between them; then help commit the rest.
    fn work(&self) {
        let n = self.txs.len();
        let mut evm = ir::reference::evm(View { shared: self, index: 0, reads: Vec::new() }, self.cfg, self.block);
        while self.speculate.load(Ordering::Acquire) && !self.failed.load(Ordering::Acquire) {
            self.commit_ready(false);
            let index = self.next.fetch_add(1, Ordering::AcqRel);
            if index >= n {
                break;
            }
            if index < self.done.load(Ordering::Acquire) {
                continue;
            }
            let speculative = self.speculate_one(&mut evm, index);
            *lock(&self.slots[index]) = Some(Arc::new(speculative));
        }
        while self.done.load(Ordering::Acquire) < n && !self.failed.load(Ordering::Acquire) {
            if !self.commit_ready(true) {
                std::thread::yield_now();
            }
        }
    }

    /// Executes transaction `index` on the speculative view, without the fee credit.
    fn speculate_one<'s>(
        &'s self,
        evm: &mut revm::handler::MainnetEvm<revm::handler::MainnetContext<View<'s, '_, D>>>,
        index: usize,
    ) -> Speculative {
        {
            let view = evm.ctx.db_mut();
            view.index = index;
            view.reads.clear();
        }
        evm.ctx.set_tx(self.txs[index].clone());
        let run = DeferFee::<_, EVMError<ViewError>, revm::handler::EthFrame>::default().run(evm);
        let state = evm.finalize();
        let reads = std::mem::take(&mut evm.ctx.db_mut().reads);
        match run {
            Ok(result) => {
                let writes = writes_of(&state);
                Speculative { outcome: Some((result, state)), reads, writes }
            }
            Err(_) => Speculative { outcome: None, reads, writes: HashMap::new() },
        }
    }

    /// Commits transactions in order while they are ready. With `blocking`, waits for the lock
    /// and executes a transaction nobody claimed itself. Returns whether it made progress.
    fn commit_ready(&self, blocking: bool) -> bool {
        let mut committer = if blocking {
            lock(&self.committer)
        } else {
            match self.committer.try_lock() {
                Ok(guard) => guard,
                Err(_) => return false,
            }
        };
        let n = self.txs.len();
        let mut progressed = false;
        loop {
            let k = self.done.load(Ordering::Acquire);
            if k >= n || committer.error.is_some() {
                break;
            }
            let speculative = lock(&self.slots[k]).take();
            let speculating = self.speculate.load(Ordering::Acquire);
            let outcome = match speculative {
                Some(speculative) => self.commit_speculative(&speculative, k),
                // Claimed by a worker still executing it: wait for it.
                None if speculating && k < self.next.load(Ordering::Acquire) => break,
                None => {
                    // Nobody will: keep workers off it and run it here.
                    self.next.fetch_max(k + 1, Ordering::AcqRel);
                    None
                }
            };
            let result = match outcome {
                Some(result) => {
                    committer.stats.speculative += 1;
                    result
                }
                None => match self.execute_committed(k) {
                    Ok(result) => {
                        committer.stats.reexecuted += 1;
                        result
                    }
                    Err(error) => {
                        committer.error = Some(error);
                        self.failed.store(true, Ordering::Release);
                        break;
                    }
                },
            };
            committer.results.push(result);
            self.done.store(k + 1, Ordering::Release);
            progressed = true;
            let committed = k + 1;
            if speculating
                && committed >= 8
                && committer.stats.reexecuted as f64 > self.max_reexecuted * committed as f64
            {
                self.speculate.store(false, Ordering::Release);
                committer.stats.stopped_at = Some(committed);
            }
        }
        progressed
    }

    /// Commits a speculative execution if every value it read still holds; `None` if not.
    fn commit_speculative(&self, speculative: &Speculative, index: usize) -> Option<ExecutionResult> {
        let (result, state) = speculative.outcome.as_ref()?;
        let coinbase = self.block.beneficiary;
        // A destroyed fee recipient would have burnt this transaction's fee: run it as
        // sequential revm does.
        if state.get(&coinbase).is_some_and(|a| a.is_selfdestructed()) {
            return None;
        }
        let mut db = self.state.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        let valid = speculative.reads.iter().all(|read| match read {
            Read::Account(address, seen) => match db.basic_ref(*address) {
                Ok(now) => same_account(seen.as_ref(), now.as_ref()),
                Err(_) => false,
            },
            Read::Slot(address, key, seen) => db.storage_ref(*address, *key).is_ok_and(|now| now == *seen),
        });
        if !valid {
            return None;
        }
        db.commit(state.clone());
        let fee = fee_of(self.cfg, self.block, &self.txs[index], result);
        if credit(&mut **db, coinbase, fee).is_err() {
            // The state backend failed: the committer's exact run will report it.
            return None;
        }
        Some(result.clone())
    }

    /// Executes transaction `index` on the committed state (every lower transaction is
    /// committed), with the mainnet handler, and commits it.
    fn execute_committed(&self, index: usize) -> Result<ExecutionResult, ReferenceError> {
        let res = {
            let db = self.state.read().unwrap_or_else(|poisoned| poisoned.into_inner());
            let mut evm = ir::reference::evm(revm::database::WrapDatabaseRef(&**db), self.cfg, self.block);
            evm.transact(self.txs[index].clone()).map_err(|e| rejected(index, e))?
        };
        let mut db = self.state.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        db.commit(res.state);
        Ok(res.result)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Whether two reads of an account are the same to an execution: existence, balance, nonce,
/// code.
fn same_account(a: Option<&AccountInfo>, b: Option<&AccountInfo>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => a.balance == b.balance && a.nonce == b.nonce && a.code_hash == b.code_hash,
        _ => false,
    }
}

/// What a transaction's state writes, as the view serves it to later transactions.
fn writes_of(state: &EvmState) -> HashMap<Address, Write> {
    state
        .iter()
        .filter(|(_, account)| account.is_touched())
        .map(|(address, account)| {
            let destroyed = account.is_selfdestructed();
            let write = Write {
                info: (!destroyed).then(|| account.info.clone()),
                reset: destroyed || account.is_created(),
                slots: if destroyed {
                    HashMap::new()
                } else {
                    account.storage.iter().map(|(key, slot)| (*key, slot.present_value())).collect()
                },
            };
            (*address, write)
        })
        .collect()
}

/// The fee recipient's credit for one transaction, as revm's `reward_beneficiary` computes it.
fn fee_of(cfg: &CfgEnv, block: &BlockEnv, tx: &TxEnv, result: &ExecutionResult) -> U256 {
    let basefee = block.basefee() as u128;
    let effective = tx.effective_gas_price(basefee);
    let price = if cfg.spec.is_enabled_in(SpecId::LONDON) { effective.saturating_sub(basefee) } else { effective };
    U256::from(price) * U256::from(result.tx_gas_used())
}

/// Credits `amount` to `address` and touches it, as the journal's `incr_balance` does.
fn credit<D>(db: &mut CacheDB<D>, address: Address, amount: U256) -> Result<(), D::Error>
where
    D: DatabaseRef,
{
    let mut account = match db.basic(address)? {
        Some(info) => Account::from(info),
        None => Account::new_not_existing(Default::default()),
    };
    account.info.balance = account.info.balance.saturating_add(amount);
    account.mark_touch();
    db.commit(EvmState::from_iter([(address, account)]));
    Ok(())
}

/// A speculative view of the state for one transaction: the latest write of a lower executed
/// transaction not yet committed, else the committed state; every account and slot read is
/// recorded for validation.
struct View<'s, 'a, D> {
    shared: &'s Shared<'a, D>,
    index: usize,
    reads: Vec<Read>,
}

/// A state backend's error, rendered (the view's reads are re-done on the committed state if
/// they fail).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ViewError(String);

impl DBErrorMarker for ViewError {}

impl<D> View<'_, '_, D> {
    /// Calls `f` on the writes of lower uncommitted transactions, highest first, until it
    /// returns a value.
    fn lower<T>(&self, mut f: impl FnMut(&Speculative) -> Option<T>) -> Option<T> {
        let done = self.shared.done.load(Ordering::Acquire);
        (done..self.index).rev().find_map(|j| {
            let speculative = lock(&self.shared.slots[j]).clone()?;
            f(&speculative)
        })
    }
}

impl<D> Database for View<'_, '_, D>
where
    D: DatabaseRef,
    D::Error: fmt::Display,
{
    type Error = ViewError;

    fn basic(&mut self, address: Address) -> Result<Option<AccountInfo>, Self::Error> {
        let info = match self.lower(|s| s.writes.get(&address).map(|w| w.info.clone())) {
            Some(info) => info,
            None => {
                let db = self.shared.state.read().unwrap_or_else(|poisoned| poisoned.into_inner());
                db.basic_ref(address).map_err(|e| ViewError(e.to_string()))?
            }
        };
        self.reads.push(Read::Account(address, info.clone()));
        Ok(info)
    }

    fn code_by_hash(&mut self, code_hash: B256) -> Result<Bytecode, Self::Error> {
        let db = self.shared.state.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        db.code_by_hash_ref(code_hash).map_err(|e| ViewError(e.to_string()))
    }

    fn storage(&mut self, address: Address, key: StorageKey) -> Result<StorageValue, Self::Error> {
        let lower = self.lower(|s| {
            let write = s.writes.get(&address)?;
            match write.slots.get(&key) {
                Some(value) => Some(*value),
                None if write.reset || write.info.is_none() => Some(U256::ZERO),
                None => None,
            }
        });
        let value = match lower {
            Some(value) => value,
            None => {
                let db = self.shared.state.read().unwrap_or_else(|poisoned| poisoned.into_inner());
                db.storage_ref(address, key).map_err(|e| ViewError(e.to_string()))?
            }
        };
        self.reads.push(Read::Slot(address, key, value));
        Ok(value)
    }

    fn block_hash(&mut self, number: u64) -> Result<B256, Self::Error> {
        let db = self.shared.state.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        db.block_hash_ref(number).map_err(|e| ViewError(e.to_string()))
    }
}

/// revm's mainnet handler without the fee recipient's credit, which the committer applies in
/// block order ([`fee_of`], [`credit`]).
pub struct DeferFee<EVM, ERROR, FRAME>(PhantomData<(EVM, ERROR, FRAME)>);

impl<EVM, ERROR, FRAME> Default for DeferFee<EVM, ERROR, FRAME> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<EVM, ERROR, FRAME> Handler for DeferFee<EVM, ERROR, FRAME>
where
    EVM: EvmTr<Context: ContextTr<Journal: JournalTr<State = EvmState>>, Frame = FRAME>,
    ERROR: EvmTrError<EVM>,
    FRAME: FrameTr<FrameResult = FrameResult, FrameInit = FrameInit>,
{
    type Evm = EVM;
    type Error = ERROR;
    type HaltReason = revm::context::result::HaltReason;

    fn reward_beneficiary(&self, _evm: &mut EVM, _result: &mut FrameResult) -> Result<(), ERROR> {
        Ok(())
    }
}
