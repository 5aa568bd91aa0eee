//! The parallel fallback: optimistic execution of a block's transactions on several threads,
//! validated and committed in block order (the Block-STM family).
//!
//! ```text
//!   first 0.5 ms: transactions run in order on the calling thread (a small block ends here)
//!   then workers: claim the next index i ─▶ (wait for the same sender's previous tx) ─▶ execute tx i on a
//!                 speculative view ─▶ slot[i] = the values it read, its result and state
//!       (view: the latest write of a lower, executed, uncommitted tx, found through a per-account
//!        index of writers; else the committed state; a hot location, read stale by several
//!        transactions in a row, only once every lower transaction is committed: `Shared::hot`)
//!   committer (whoever holds the lock), for k = next to commit, in block order:
//!     slot[k] ready ─▶ every value tx k read still equals the committed state?
//!                        yes ─▶ commit its state; its fee joins the pending fee-recipient credit
//!                        no  ─▶ execute tx k again on the committed state (exact), commit
//!     no claims left and slot[k] unclaimed ─▶ execute it on the committed state, commit
//!     each commit queues tx k's receipt; a thread between executions adds queued receipts to
//!     the receipts trie (the trie's hashing is not the committer's serial work)
//!   speculation stops (conflicts pile up, or the first transactions are too cheap to pay for
//!   coordination) ─▶ the rest runs in order, one EVM, on the committed state
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
//! `reward_beneficiary` a no-op). The committer sums the fees of committed transactions and
//! credits them (touching the account as the journal's credit does) before anything reads the
//! fee recipient: validating a transaction that read it, an exact execution, the in-order
//! rest, the end of the block. A transaction that reads the fee recipient (a builder payment)
//! is validated like any other read.
//!
//! **Nor does the recipient of plain transfers.** A plain value transfer to an account without
//! code does not depend on the recipient's balance, so its recipient is validated without it
//! and committed as a credit to what lower transactions left ([`credited`]): deposits of many
//! senders into one exchange address do not conflict (pevm's lazy updates do the same).
//!
//! **A transaction executed again does not pay twice for its precompiles**: one
//! [`PrecompileCache`] per block serves every execution once the threads start (speculative,
//! again after a conflict, in order after a stop). A sequential block, and the prefix before
//! the threads, run plain revm.
//!
//! **When it does not pay, it does not run** (a 2-core machine has little to spare):
//! - by the block's shape, before executing: fewer than [`ParallelConfig::min_txs`]
//!   transactions run sequentially; with more than a third of them in nonce chains
//!   ([`worth_parallel`]), nothing is speculated, and past the prefix one thread runs the
//!   block in order while the others build the receipts trie;
//! - by time: the first [`ParallelConfig::sequential_for`] runs sequentially, and nothing is
//!   speculated when the rest, estimated at the prefix's pace, would take less than
//!   [`ParallelConfig::min_rest`] (waking a thread costs a good part of what two threads could
//!   save on it) or less than [`ParallelConfig::min_tx_time`] a transaction (coordination costs
//!   more than such a transaction; the threads build receipts beside the in-order run);
//! - by what happens: more than [`ParallelConfig::max_reexecuted`] of the transactions
//!   committed in parallel had to run again, the first 16 took less than
//!   [`ParallelConfig::min_tx_time`] each, or a window of 64 commits took more wall time than
//!   [`ParallelConfig::max_wall_per_executed`] of the threads' executing time (the threads
//!   spend the rest in serial work: commits, receipts), or the threads waited for hot
//!   locations more than [`ParallelConfig::max_waited_per_executed`] of it. The rest then
//!   runs in order on one thread, the others building the receipts trie beside it.
//!
//! Why our own: no crate offers a parallel executor on revm 43 (pevm is on revm 38 with its own
//! storage trait; grevm on revm 40), see `../shared/research/crates.md`. Worker threads are
//! rayon's, kept between blocks.

use alloy::primitives::map::{AddressHashMap, HashSet};
use std::{
    fmt,
    marker::PhantomData,
    sync::{
        Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard, TryLockError,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use super::precompiles::{CachedEvm, PrecompileCache, cached_evm};
use alloy::primitives::{Bloom, Log};
use ir::{
    Receipts,
    receipts::{ReceiptBuilder, ReceiptInput},
    reference::ReferenceError,
};
use revm::{
    Database, DatabaseCommit, DatabaseRef, ExecuteEvm,
    context::{BlockEnv, CfgEnv, ContextSetters, ContextTr, Evm, JournalTr, TxEnv, result::EVMError},
    context_interface::{Block, Transaction, result::ExecutionResult},
    database::CacheDB,
    database_interface::DBErrorMarker,
    handler::{
        EthFrame, EvmTr, EvmTrError, FrameResult, FrameTr, Handler, MainnetContext, PrecompileProvider,
        instructions::EthInstructions,
    },
    interpreter::{InterpreterResult, interpreter::EthInterpreter, interpreter_action::FrameInit},
    primitives::{Address, B256, StorageKey, StorageValue, U256, hardfork::SpecId},
    state::{Account, AccountInfo, Bytecode, EvmState},
};

/// After how many commits the cost of the first transactions is checked against
/// [`ParallelConfig::min_tx_time`].
const CHEAP_CHECK_AT: usize = 16;

/// How far past the last committed transaction speculation may run, per thread. At 32, one
/// long transaction early in a block stopped the other thread 64 transactions on (18,988,207,
/// whose transaction 23 takes half its time: 1.19x at 32, 1.29x-1.33x at 128); 1,024 measured
/// the same as 128.
const WINDOW_PER_THREAD: usize = 128;

/// Every this many commits, the wall time they took is compared with the time the threads
/// spent executing ([`ParallelConfig::max_wall_per_executed`]).
const PAYOFF_EVERY: usize = 64;

/// How close in the block two transactions that read a location stale must be to make it hot
/// (see `Shared::hot`).
const HOT_WITHIN: usize = 1;

/// How many transactions in a row (see [`HOT_WITHIN`]) must read a location stale to make it
/// hot (see `Shared::hot`).
const HOT_AFTER: usize = 3;

/// Once speculation stopped, the in-order loop hands receipts to the other threads this many
/// commits at a time.
const IN_ORDER_BATCH: usize = 16;

/// How the parallel fallback runs.
#[derive(Clone, Debug)]
pub struct ParallelConfig {
    /// Threads executing (the calling thread is one of them).
    pub threads: usize,
    /// Blocks with fewer transactions run sequentially: threads cost more than they save (the
    /// helper takes 0.1–0.3 ms to wake, and a small block has little left to share after the
    /// sequential prefix: blocks of 22 to 30 measured 0.74x to 1.1x from run to run).
    pub min_txs: usize,
    /// Whether to choose sequential execution from the block's shape (see [`worth_parallel`]);
    /// `false` runs every block of `min_txs` or more in parallel (tests).
    pub by_shape: bool,
    /// Once at least 8 transactions are committed, speculation stops when more than this share
    /// of them had to be executed again (conflicts pile up: the block is a chain).
    pub max_reexecuted: f64,
    /// Nothing is speculated when the transactions left after the sequential prefix would take
    /// less than this each at the prefix's pace (see [`ParallelConfig::min_rest`]), and
    /// speculation stops when the first 16 took less than this each, wall time: they are too
    /// cheap for coordination to pay.
    pub min_tx_time: Duration,
    /// The first transactions run sequentially for this long before threads join: a block
    /// finished by then runs as sequential revm does.
    pub sequential_for: Duration,
    /// Speculation stops when the wall time of the last [`PAYOFF_EVERY`] commits exceeds this
    /// share of the time the threads spent executing meanwhile: they spend the rest
    /// committing and building receipts, which is serial, and speculation costs more than it
    /// runs in parallel. Blocks of cheap transactions get there (1,346 mostly transfers:
    /// 1.14x-1.17x late in the block, where a block at 1.09x measured 0.8x-0.85x and one
    /// at 1.3x 0.6x).
    pub max_wall_per_executed: f64,
    /// Speculation stops once views have waited idle for hot locations (see `Shared::hot`), or
    /// for lower writers whose writes were not known (`View::lower`), more than this share of
    /// the time the threads executed: such waits serialize the block, and one thread does as
    /// well.
    pub max_waited_per_executed: f64,
    /// Nothing is speculated when the transactions left after the sequential prefix would
    /// take less than this at the prefix's pace (its time per unit of gas limit): two threads
    /// save at most half of it, and waking one costs 0.1–0.3 ms, conflicts more. A block of
    /// 60 with about 0.5 ms left measured 0.83x-0.90x speculating, and one of 108 with 8 left
    /// 0.84x. Without a prefix (`sequential_for` zero, or spent before the first transaction)
    /// nothing is estimated.
    pub min_rest: Duration,
    /// How long the committer waits for a claimed transaction between two readings of its
    /// thread's CPU clock (see [`Watch`]).
    pub watch_window: Duration,
    /// Tests: a claimed transaction is taken over once the committer waited a window for it,
    /// whether its thread runs or not (the exactness of a takeover does not depend on why).
    pub take_over_running: bool,
}

/// The machine's cores, read once per process: `available_parallelism` reads the cgroup's
/// files at every call, and a node builds a configuration per block (also when it sets
/// `threads` itself, through `..Default::default()`).
fn machine_threads() -> usize {
    static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *THREADS.get_or_init(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
}

impl Default for ParallelConfig {
    fn default() -> Self {
        Self {
            threads: machine_threads(),
            min_txs: 32,
            by_shape: true,
            max_reexecuted: 0.5,
            min_tx_time: Duration::from_micros(3),
            sequential_for: Duration::from_micros(500),
            max_wall_per_executed: 0.9,
            max_waited_per_executed: 0.5,
            min_rest: Duration::from_millis(1),
            watch_window: Duration::from_micros(100),
            take_over_running: false,
        }
    }
}

/// What the parallel fallback did with one block.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ParallelStats {
    /// Whether the block ran sequentially throughout, on one thread: chosen so (one thread,
    /// too few transactions, its rules), or done within the sequential prefix.
    pub sequential: bool,
    /// Transactions committed from their speculative execution.
    pub speculative: usize,
    /// Transactions executed again on the committed state after their speculative execution
    /// read a value that changed (or failed on its view).
    pub reexecuted: usize,
    /// Transactions executed once, in order, on the committed state (a small block, after
    /// speculation stopped, or taken over).
    pub in_order: usize,
    /// Transactions whose claiming thread was descheduled while the committer waited for them
    /// (see [`Watch`]): executed on the committed state by the committer, the claimer's result
    /// discarded. Counted in `in_order` too.
    pub taken_over: usize,
    /// The index from which speculation was stopped, if it was (the end of the sequential
    /// prefix when the block's shape or a short rest ruled it out).
    pub stopped_at: Option<usize>,
    /// How many times an account or slot turned hot: read stale by consecutive transactions,
    /// so that views wait for the lower transactions to commit before reading it (one that
    /// cooled and turned hot again counts twice).
    pub hot: usize,
    /// Reads of a hot location whose wait for the lower transactions to commit changed the
    /// value read (each would have been executed again without it).
    pub waits: usize,
    /// Reads that waited for the commit of a lower transaction that wrote the account and
    /// whose writes were not known: in the committer's hands, or its speculative run failed
    /// (see `View::lower`).
    pub unknown_waits: usize,
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
    let pool =
        (threads >= 2 && fee_deferrable(cfg) && txs.len() >= config.min_txs).then(|| pool(threads - 1)).flatten();
    // The first transactions run sequentially, on this thread alone, for `sequential_for` (all
    // of them when the block runs sequentially): a block done by then never pays for waking the
    // workers (a sleeping thread takes 0.1–0.3 ms to start on this kind of machine, more than a
    // small block's whole execution).
    let mut results = Vec::with_capacity(txs.len());
    let until = pool.as_ref().map(|_| started + config.sequential_for);
    // Plain revm here: a sequential block is exactly the baseline, and the prefix is never
    // executed again, so it has nothing to gain from the precompile cache.
    let mut evm = ir::reference::evm(&mut *db, cfg, block);
    let prefix_started = Instant::now();
    run_in_order(&mut evm, txs, &mut results, until, |_, _| {})?;
    let prefix = prefix_started.elapsed();
    let first = results.len();
    let left = txs.len() - first;
    // The block's shape is looked at only now, when threads may join: a block done within the
    // prefix, or one that runs sequentially, does no work sequential revm does not do (a map
    // of every sender). A block whose shape does not pay for speculation still takes the
    // threads (past the prefix): one runs it in order while the others build the receipts
    // trie.
    let same_sender = if pool.is_some() && left > 0 { same_sender(txs) } else { Vec::new() };
    let limits = |txs: &[TxEnv]| txs.iter().fold(0u64, |sum, tx| sum.saturating_add(tx.gas_limit));
    // Estimated only when threads may join (a sequential block sums nothing).
    let estimate = if pool.is_some() && left > 0 {
        rest_estimate(prefix, limits(&txs[..first]), limits(&txs[first..]))
    } else {
        None
    };
    let speculate = pool.is_some()
        && worth_parallel(txs, &same_sender, config)
        && estimate.is_none_or(|rest| rest_worth_speculating(rest, left, config));
    let pool = pool.filter(|_| left > 0 && (speculate || rest_worth_threads(estimate, left, config)));
    if pool.is_none() {
        run_in_order(&mut evm, txs, &mut results, None, |_, _| {})?;
    }
    drop(evm);
    let Some(pool) = pool else {
        let receipts = receipts(txs, &results);
        let stats = ParallelStats { sequential: true, in_order: results.len(), ..Default::default() };
        return Ok(ParallelBlock { results, receipts, stats, time: started.elapsed() });
    };
    let shared = Shared {
        cfg,
        block,
        txs,
        state: RwLock::new(db),
        slots: (0..txs.len()).map(|_| Mutex::new(None)).collect(),
        writers: Mutex::new(AddressHashMap::default()),
        hot: RwLock::new(HashSet::default()),
        stale: Mutex::new(Default::default()),
        waits: Mutex::new(Default::default()),
        hot_version: AtomicUsize::new(0),
        next: AtomicUsize::new(first),
        same_sender,
        done: AtomicUsize::new(first),
        speculate: AtomicBool::new(speculate),
        failed: AtomicBool::new(false),
        receipts: ReceiptStage::new(txs, &results),
        committer: Mutex::new(Committer::new(results, first, speculate)),
        max_reexecuted: config.max_reexecuted,
        window: WINDOW_PER_THREAD * threads,
        started: Instant::now(),
        first,
        min_tx_time: config.min_tx_time,
        max_wall_per_executed: config.max_wall_per_executed,
        max_waited_per_executed: config.max_waited_per_executed,
        executed_ns: AtomicU64::new(0),
        waited_ns: AtomicU64::new(0),
        turned_hot: AtomicUsize::new(0),
        useful_waits: AtomicUsize::new(0),
        unknown_waits: AtomicUsize::new(0),
        precompiles: PrecompileCache::default(),
        joined: AtomicUsize::new(0),
        executing: (0..threads).map(|_| AtomicUsize::new(usize::MAX)).collect(),
        clocks: (0..threads).map(|_| std::sync::OnceLock::new()).collect(),
        watch_window: config.watch_window,
        take_over_running: config.take_over_running,
    };
    // Worker threads are kept between blocks (a thread started per block costs more than a
    // small block's whole execution: its start and its allocator arena's first pages).
    pool.in_place_scope(|scope| {
        for _ in 1..threads {
            scope.spawn(|_| shared.work());
        }
        shared.work();
    });
    let (hot, waits) = (shared.turned_hot.load(Ordering::Acquire), shared.useful_waits.load(Ordering::Acquire));
    let mut committer = shared.committer.into_inner().unwrap_or_else(|poisoned| poisoned.into_inner());
    committer.stats.hot = hot;
    committer.stats.waits = waits;
    committer.stats.unknown_waits = shared.unknown_waits.load(Ordering::Acquire);
    if let Some(error) = committer.error {
        return Err(error);
    }
    let db = shared.state.into_inner().unwrap_or_else(|poisoned| poisoned.into_inner());
    committer.flush_fees(db, block.beneficiary).map_err(|e| ReferenceError {
        index: txs.len(),
        is_database: true,
        message: e.to_string(),
    })?;
    let receipts = shared.receipts.finish().expect("every committed transaction pushed its receipt");
    Ok(ParallelBlock { results: committer.results, receipts, stats: committer.stats, time: started.elapsed() })
}

/// The kept worker threads for `workers` helpers of the calling thread; `None` when no thread
/// can be started (the block then runs sequentially).
fn pool(workers: usize) -> Option<Arc<rayon::ThreadPool>> {
    static POOLS: Mutex<Vec<(usize, Arc<rayon::ThreadPool>)>> = Mutex::new(Vec::new());
    let mut pools = lock(&POOLS);
    if let Some((_, pool)) = pools.iter().find(|(n, _)| *n == workers) {
        return Some(pool.clone());
    }
    let built = rayon::ThreadPoolBuilder::new()
        .num_threads(workers.max(1))
        .thread_name(|i| format!("prescient-parallel-{i}"))
        .build();
    match built {
        Ok(pool) => {
            let pool = Arc::new(pool);
            pools.push((workers, pool.clone()));
            Some(pool)
        }
        Err(e) => {
            tracing::warn!(error = %e, "parallel fallback: no worker threads, running sequentially");
            None
        }
    }
}

/// Sequential revm on `txs[results.len()..]`, one transaction after another, each committed,
/// until every one ran or `until` passed; `committed(k, result)` after transaction `k`. The one
/// in-order loop of this module: a sequential block, the prefix before the threads start, and
/// the rest once speculation stopped.
fn run_in_order<'db, D, P>(
    evm: &mut Evm<MainnetContext<&'db mut CacheDB<D>>, (), MainnetInstructions<'db, D>, P, EthFrame>,
    txs: &[TxEnv],
    results: &mut Vec<ExecutionResult>,
    until: Option<Instant>,
    mut committed: impl FnMut(usize, &ExecutionResult),
) -> Result<(), ReferenceError>
where
    D: DatabaseRef,
    D::Error: DBErrorMarker + fmt::Display,
    P: PrecompileProvider<MainnetContext<&'db mut CacheDB<D>>, Output = InterpreterResult>,
{
    // The clock is read once the transactions since the last reading used `CLOCK_EVERY_GAS`
    // (about every third plain transfer, after every call of some weight): with a reading per
    // transaction (and the senders' map before the prefix) blocks that end up sequential
    // measured 0.984x-0.988x, 0.990x-1.004x without; one every fourth transaction, whatever
    // it cost, let the prefix run up to three expensive transactions late.
    let mut unclocked = CLOCK_EVERY_GAS;
    while results.len() < txs.len() {
        if let Some(until) = until
            && unclocked >= CLOCK_EVERY_GAS
        {
            if Instant::now() >= until {
                break;
            }
            unclocked = 0;
        }
        let index = results.len();
        let res = evm.transact(txs[index].clone()).map_err(|e| rejected(index, e))?;
        evm.ctx.db_mut().commit(res.state);
        unclocked = unclocked.saturating_add(res.result.tx_gas_used());
        committed(index, &res.result);
        results.push(res.result);
    }
    Ok(())
}

/// Gas used between two readings of the clock in [`run_in_order`] while a deadline is set.
const CLOCK_EVERY_GAS: u64 = 60_000;

/// How long, in seconds, the transactions after a sequential prefix that took `prefix` would
/// take at the prefix's pace per unit of gas limit (`done` the prefix's gas limits, `rest`
/// theirs). Gas limits, not counts: a block's first transactions are often its heaviest (a
/// prefix of 18 with one of 3.9 M gas measured 28 µs per transaction, the 42 after it of
/// 100 k each about half that). Without a prefix there is no pace to go by: `None`.
fn rest_estimate(prefix: Duration, done: u64, rest: u64) -> Option<f64> {
    (done > 0).then(|| prefix.as_secs_f64() * rest as f64 / done as f64)
}

/// Whether the `left` transactions after the prefix, estimated at `estimate` seconds
/// ([`rest_estimate`]) and not speculated on, are worth waking the threads for, to build the
/// receipts beside them. A short rest is not: it runs on the calling thread. A block of 579
/// with 33 left measured 0.90x-0.97x with the threads, and with 67 left (estimated at a few
/// hundred µs) 0.84x, against 0.98x-1.01x without: the rest must be [`PAYOFF_EVERY`]
/// transactions or more, estimated at [`ParallelConfig::sequential_for`] or more (waking a
/// thread alone costs 0.1-0.3 ms on this kind of machine).
fn rest_worth_threads(estimate: Option<f64>, left: usize, config: &ParallelConfig) -> bool {
    left >= PAYOFF_EVERY && estimate.is_none_or(|rest| rest >= config.sequential_for.as_secs_f64())
}

/// Whether the `left` transactions after the prefix, estimated at `estimate` seconds
/// ([`rest_estimate`]), are worth speculating on: whether they would take
/// [`ParallelConfig::min_rest`] or more, and [`ParallelConfig::min_tx_time`] or more each on
/// average. A rest of plain transfers estimated at 1 µs each (14,396,881: 1,252 of its last
/// 1,266) measured 1.02x-1.10x speculated on and 1.20x-1.24x in order with its receipts
/// built beside it.
fn rest_worth_speculating(estimate: f64, left: usize, config: &ParallelConfig) -> bool {
    estimate >= config.min_rest.as_secs_f64() && estimate >= config.min_tx_time.as_secs_f64() * left as f64
}

/// Whether a block is worth speculating on, from what is known before executing it (a block
/// that is not runs in order, its receipts built beside it). Not when it has fewer than
/// [`ParallelConfig::min_txs`] transactions, or when more than a third of them, or of their
/// gas limits, follow an earlier transaction of the same sender (nonce chains: one after
/// another whatever the threads, and a chain member executed again dooms the speculative runs
/// of the members after it).
/// - By count: at a half, the old bound, a block of 97 with a 32-long chain into one contract
///   measured 0.87x.
/// - By gas limit: a few heavy members weigh as much as many light ones. 9,069,000's seven
///   calls of about 190 µs from one sender are a fifth of its 56 transactions but 36% of their
///   gas limits and a third of its time; a thread claiming the next member waits for the
///   previous, so both threads took turns on the chain (twelve full replays: 0.81x-1.09x,
///   median 0.92x; in order now, 0.96x-1.00x). Running the chain's members elsewhere while
///   the waiting thread claims on (parking them behind their predecessor) measured worse there
///   and on 10,760,440: the free thread ran ahead on stale state, and more was executed again
///   in order.
///
/// Plain transfers count like calls: their recipients do not conflict ([`credited`]), and with
/// receipts built beside the commits a block of transfers from many senders gains from threads
/// (measured with `prescient replay --mode parallel`).
fn worth_parallel(txs: &[TxEnv], same_sender: &[Option<usize>], config: &ParallelConfig) -> bool {
    if !config.by_shape {
        return txs.len() >= config.min_txs;
    }
    let (mut chained, mut chained_gas, mut gas) = (0usize, 0u128, 0u128);
    for (tx, previous) in txs.iter().zip(same_sender) {
        gas += u128::from(tx.gas_limit);
        if previous.is_some() {
            chained += 1;
            chained_gas += u128::from(tx.gas_limit);
        }
    }
    txs.len() >= config.min_txs && chained * 3 <= txs.len() && chained_gas * 3 <= gas
}

/// Whether this module's fee credit ([`fee_of`]) and its recipients' credits ([`credited`])
/// are revm's for these rules: not when fees are not charged at all, nor under Amsterdam's gas
/// rules, by fork or by flag (EIP-8037's reservoir changes the gas credited; EIP-2780 charges a
/// transfer into an empty account).
pub(crate) fn fee_deferrable(cfg: &CfgEnv) -> bool {
    use revm::context_interface::Cfg;
    !cfg.is_fee_charge_disabled()
        && !cfg.spec.is_enabled_in(SpecId::AMSTERDAM)
        // The same rules switched on early by flag: the reservoir (EIP-8037), and new-account
        // gas for a value transfer into an empty account (EIP-2780), which makes a plain
        // transfer depend on its recipient's balance (see `credited`).
        && !cfg.is_amsterdam_eip8037_enabled()
        && !cfg.is_amsterdam_eip2780_enabled()
}

/// For each transaction, the previous one of the same sender.
fn same_sender(txs: &[TxEnv]) -> Vec<Option<usize>> {
    // Sized up front: growing it was half of its 40-55 µs on a block of 1,346.
    let mut last: AddressHashMap<usize> = AddressHashMap::with_capacity_and_hasher(txs.len(), Default::default());
    txs.iter().enumerate().map(|(i, tx)| last.insert(tx.caller, i)).collect()
}

fn rejected<E: fmt::Display>(index: usize, e: EVMError<E>) -> ReferenceError {
    ReferenceError { index, is_database: matches!(e, EVMError::Database(_)), message: e.to_string() }
}

/// The mainnet instruction table of an EVM on `&mut CacheDB<D>`.
type MainnetInstructions<'db, D> = EthInstructions<EthInterpreter, MainnetContext<&'db mut CacheDB<D>>>;

/// How receipts compute a bloom: alloy's.
type BloomOf = fn(&[Log]) -> Bloom;

fn receipt_builder(len: usize) -> ReceiptBuilder<BloomOf> {
    fn bloom_of(logs: &[Log]) -> Bloom {
        alloy::primitives::logs_bloom(logs)
    }
    ReceiptBuilder::new(len, bloom_of)
}

/// Transaction `tx`'s receipt input; `logs_bloom` its logs' bloom if known.
fn receipt_input(tx: &TxEnv, result: &ExecutionResult, logs_bloom: Option<Bloom>) -> ReceiptInput {
    ReceiptInput {
        ty: tx.tx_type,
        success: result.is_success(),
        gas_used: result.tx_gas_used(),
        logs: result.logs().to_vec(),
        logs_bloom: logs_bloom.map(Box::new),
    }
}

fn receipts(txs: &[TxEnv], results: &[ExecutionResult]) -> Receipts {
    ReceiptStage::new(txs, results).finish().expect("every transaction pushed its receipt")
}

/// One value a speculative execution read.
#[derive(Debug)]
enum Read {
    Account(Address, Option<AccountInfo>),
    Slot(Address, StorageKey, StorageValue),
}

/// An account (`None`) or one of its slots.
type Location = (Address, Option<StorageKey>);

/// What a view reads at a [`Location`], compared before and after a wait for it: an account's
/// balance, nonce and code hash, or a slot's value.
#[derive(PartialEq, Eq)]
enum Seen {
    Account(Option<(U256, u64, B256)>),
    Slot(StorageValue),
}

impl Read {
    fn location(&self) -> Location {
        match self {
            Read::Account(address, _) => (*address, None),
            Read::Slot(address, key, _) => (*address, Some(*key)),
        }
    }
}

/// One transaction's speculative execution.
#[derive(Debug)]
struct Speculative {
    /// The result and state (without the fee credit); `None` if it failed on its view.
    outcome: Option<(ExecutionResult, EvmState)>,
    /// The bloom of the result's logs, computed by the thread that executed it (the receipt
    /// then costs the committer only its trie leaf).
    bloom: Bloom,
    /// The recipient of a plain value transfer and what it was credited ([`credited`]): its
    /// balance is validated and committed as a credit, not as the value it read.
    credited: Option<(Address, U256)>,
    reads: Vec<Read>,
}

impl Speculative {
    /// The account as this transaction left it, if it wrote it: `Some(None)` when destroyed.
    fn account(&self, address: &Address) -> Option<Option<AccountInfo>> {
        let account = self.outcome.as_ref()?.1.get(address).filter(|a| a.is_touched())?;
        Some((!account.is_selfdestructed()).then(|| account.info.clone()))
    }

    /// The slot as this transaction left it, if it wrote it or wiped the account's storage.
    fn slot(&self, address: &Address, key: &StorageKey) -> Option<StorageValue> {
        let account = self.outcome.as_ref()?.1.get(address).filter(|a| a.is_touched())?;
        if account.is_selfdestructed() {
            return Some(U256::ZERO);
        }
        match account.storage.get(key) {
            Some(slot) if slot.is_changed() || account.is_created() => Some(slot.present_value()),
            None if account.is_created() => Some(U256::ZERO),
            _ => None,
        }
    }
}

struct Committer {
    results: Vec<ExecutionResult>,
    stats: ParallelStats,
    error: Option<ReferenceError>,
    /// Fees of committed transactions not yet credited to the fee recipient.
    pending_fee: U256,
    /// Whether a committed transaction touched the fee recipient through its fee since the
    /// last flush (a zero fee still touches it, as the journal's credit does).
    fee_touched: bool,
    /// When the current payoff window started, and the executing time then (see
    /// [`ParallelConfig::max_wall_per_executed`]).
    window: (Instant, u64),
    /// The claimed transaction the committer is waiting for, if it waited last time.
    watch: Option<Watch>,
}

impl Committer {
    /// The committer of a block whose first `results` ran in order before the threads started.
    fn new(results: Vec<ExecutionResult>, first: usize, speculate: bool) -> Self {
        Self {
            results,
            stats: ParallelStats { in_order: first, stopped_at: (!speculate).then_some(first), ..Default::default() },
            error: None,
            pending_fee: U256::ZERO,
            fee_touched: false,
            window: (Instant::now(), 0),
            watch: None,
        }
    }

    /// Credits the pending fees to the fee recipient (the sum of what each transaction's
    /// journal would have credited: the same state, since nothing read it in between).
    fn flush_fees<D>(&mut self, db: &mut CacheDB<D>, coinbase: Address) -> Result<(), D::Error>
    where
        D: DatabaseRef,
    {
        if self.fee_touched {
            credit(db, coinbase, self.pending_fee)?;
            self.pending_fee = U256::ZERO;
            self.fee_touched = false;
        }
        Ok(())
    }
}

struct Shared<'a, D> {
    cfg: &'a CfgEnv,
    block: &'a BlockEnv,
    txs: &'a [TxEnv],
    /// The committed state: every transaction below `done`, in order.
    state: RwLock<&'a mut CacheDB<D>>,
    /// Speculative executions not yet committed.
    slots: Vec<Mutex<Option<Arc<Speculative>>>>,
    /// For each account, the transactions whose speculative execution wrote it, ascending
    /// (committed ones are skipped by readers).
    writers: Mutex<AddressHashMap<Vec<usize>>>,
    /// Hot accounts and slots: read stale by the speculative executions of [`HOT_AFTER`]
    /// transactions in a row (a lower transaction executing beside each wrote it). A view
    /// reading one first waits until every lower transaction is committed, committing what is
    /// ready meanwhile, and reads the committed value, which no later commit changes (but for
    /// a takeover of the waiting transaction, whose result is then dropped; learnt
    /// from the block's conflicts, as Block-STM's estimates are from earlier incarnations).
    /// Waiting only for the lower executions to end is not enough: their writes are stale too
    /// until validated. Deposits of many senders into one token balance otherwise conflict
    /// one after another, each executed twice: 12,522,062 has runs of 11 and 18 consecutive
    /// USDT transfers into one address, and speculation stopped at the first (paired runs,
    /// four rounds: 0.96x-1.14x; 0.90x-1.35x with the waits, which most runs reach without
    /// stopping; a run still stops on conflicts before the first deposit now and then).
    ///
    /// Waiting serializes, so a location is hot only while it pays:
    /// - a location read stale once, or by transactions further apart, is not hot. With two
    ///   stale reads at most two apart making it hot, blocks whose conflicts are sporadic lost
    ///   more than the deposits gained (19,933,612: 1.28x-1.31x against 1.43x-1.53x
    ///   re-executing them);
    /// - a location whose waits mostly change nothing it reads is hot no more
    ///   ([`Shared::judge_wait`]; 19,426,586 lost 1.35x-1.66x to 1.18x-1.44x without it);
    /// - speculation stops once the threads wait more than
    ///   [`ParallelConfig::max_waited_per_executed`] of the time they execute.
    ///
    /// Giving up the execution at such a read instead of waiting (the committer executing it
    /// at its turn) deferred more than the deposits and measured no better on 12,522,062.
    hot: RwLock<HashSet<Location>>,
    /// For each hot location, how many waits for it changed the value read, and how many did
    /// not (see [`Shared::judge_wait`]).
    waits: Mutex<alloy::primitives::map::HashMap<Location, (usize, usize)>>,
    /// For each location read stale, the last transaction that read it so, and how many in a
    /// row did (each within [`HOT_WITHIN`] of the one before).
    stale: Mutex<alloy::primitives::map::HashMap<Location, (usize, usize)>>,
    /// How many times `hot` changed: views keep a copy of it and take it again when this did (a
    /// lock per read, its line bouncing between the threads, cost every read).
    hot_version: AtomicUsize,
    /// The next index to claim for speculative execution.
    next: AtomicUsize,
    /// For each transaction, the previous one of the same sender, if any.
    same_sender: Vec<Option<usize>>,
    /// How many transactions are committed.
    done: AtomicUsize,
    speculate: AtomicBool,
    failed: AtomicBool,
    committer: Mutex<Committer>,
    receipts: ReceiptStage,
    max_reexecuted: f64,
    window: usize,
    /// When, and from which transaction, the threads started.
    started: Instant,
    first: usize,
    min_tx_time: Duration,
    /// See [`ParallelConfig::max_wall_per_executed`].
    max_wall_per_executed: f64,
    /// See [`ParallelConfig::max_waited_per_executed`].
    max_waited_per_executed: f64,
    /// Nanoseconds the threads spent in speculative executions (waits for hot locations
    /// excepted).
    executed_ns: AtomicU64,
    /// Nanoseconds views spent waiting idle for lower transactions to commit (see
    /// [`Shared::hot`]; the commits and receipts they did meanwhile excepted).
    waited_ns: AtomicU64,
    /// How many locations turned hot (a location cooled and hot again counts twice).
    turned_hot: AtomicUsize,
    /// How many reads of a hot location read a value other than they would have without
    /// waiting.
    useful_waits: AtomicUsize,
    /// How many reads waited for a lower writer whose writes were not known (`View::lower`).
    unknown_waits: AtomicUsize,
    /// Precompile results of this block's executions: an execution again (after a conflict,
    /// or in order after speculation stopped) reuses what its speculative run computed.
    precompiles: PrecompileCache,
    /// How many threads started working (each takes the next number).
    joined: AtomicUsize,
    /// For each thread, the transaction it claimed and has not finished (`usize::MAX`: none).
    executing: Vec<AtomicUsize>,
    /// For each thread, its CPU clock (see [`Watch`]).
    clocks: Vec<std::sync::OnceLock<CpuClock>>,
    watch_window: Duration,
    take_over_running: bool,
}

impl<D> Shared<'_, D> {
    /// Records that the speculative execution of transaction `index` read `location` stale;
    /// it turns hot once [`HOT_AFTER`] transactions in a row did, each within [`HOT_WITHIN`]
    /// of the one before (see [`Shared::hot`]). Never the fee recipient: the committed state
    /// lacks the fees not yet credited, so a wait for it would not help.
    fn read_stale(&self, location: Location, index: usize) {
        if location.0 == self.block.beneficiary {
            return;
        }
        let streak = {
            let mut stale = lock(&self.stale);
            let (last, streak) = stale.entry(location).or_insert((index, 0));
            *streak = if index.abs_diff(*last) <= HOT_WITHIN { *streak + 1 } else { 1 };
            *last = index;
            *streak
        };
        if streak >= HOT_AFTER && write(&self.hot).insert(location) {
            self.hot_version.fetch_add(1, Ordering::AcqRel);
            self.turned_hot.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records whether a view's wait for `location` changed the value it reads there; a
    /// location whose waits mostly change nothing is hot no more (its conflicts are sporadic:
    /// re-executing them costs less than waiting).
    fn judge_wait(&self, location: Location, changed: bool) {
        let needless = {
            let mut waits = lock(&self.waits);
            let (useful, needless) = waits.entry(location).or_default();
            if changed {
                *useful += 1;
                self.useful_waits.fetch_add(1, Ordering::Relaxed);
            } else {
                *needless += 1;
            }
            *needless > 2 * *useful + 2
        };
        if needless && write(&self.hot).remove(&location) {
            self.hot_version.fetch_add(1, Ordering::AcqRel);
            // It starts afresh: a streak of stale reads makes it hot again, judged anew.
            lock(&self.waits).remove(&location);
            lock(&self.stale).remove(&location);
        }
    }
}

impl<D> Shared<'_, D>
where
    D: DatabaseRef + Send + Sync,
    D::Error: DBErrorMarker + fmt::Display,
{
    /// One thread's work: claim and execute transactions while speculation pays, committing
    /// what is ready between them; then help commit the rest.
    fn work(&self) {
        // A panic on this thread (a bug in an execution) stops the others, which would
        // otherwise wait for its commits forever and keep the scope from passing the panic on.
        let _fail_on_panic = FailOnPanic(&self.failed);
        let me = self.joined.fetch_add(1, Ordering::AcqRel).min(self.executing.len() - 1);
        if let Some(clock) = CpuClock::of_this_thread() {
            let _ = self.clocks[me].set(clock);
        }
        let n = self.txs.len();
        let view =
            View { shared: self, index: 0, reads: Vec::new(), waited: Default::default(), hot: Default::default() };
        let mut evm = cached_evm(view, self.cfg, self.block, &self.precompiles);
        while self.speculate.load(Ordering::Acquire) && !self.failed.load(Ordering::Acquire) {
            self.commit_ready(Commit::IfFree);
            self.receipts.build();
            // Run at most `window` transactions ahead of the last commit: further ahead, reads
            // are staler, and a conflict wastes more.
            while self.next.load(Ordering::Acquire).saturating_sub(self.done.load(Ordering::Acquire)) >= self.window
                && !self.failed.load(Ordering::Acquire)
            {
                if !self.commit_ready(Commit::Wait) && !self.receipts.build() {
                    std::thread::yield_now();
                }
            }
            let index = self.next.fetch_add(1, Ordering::AcqRel);
            if index >= n {
                break;
            }
            if index < self.done.load(Ordering::Acquire) {
                continue;
            }
            self.executing[me].store(index, Ordering::Release);
            // A sender's earlier transaction still executing decides this one's nonce and
            // balance: wait for its writes rather than read stale ones.
            if let Some(previous) = self.same_sender[index] {
                while previous >= self.done.load(Ordering::Acquire)
                    && lock(&self.slots[previous]).is_none()
                    && !self.failed.load(Ordering::Acquire)
                {
                    if !self.receipts.build() {
                        std::thread::yield_now();
                    }
                }
            }
            let started = Instant::now();
            let speculative = Arc::new(self.speculate_one(&mut evm, index));
            // Time a view waited for lower commits is not time executing (the payoff check).
            let executing = started.elapsed().saturating_sub(evm.ctx.db_mut().waited.get());
            self.executed_ns.fetch_add(executing.as_nanos() as u64, Ordering::Relaxed);
            *lock(&self.slots[index]) = Some(speculative.clone());
            self.executing[me].store(usize::MAX, Ordering::Release);
            // A failed run's writes are not known, but its sender's account is written when it
            // runs again (its nonce at least): a view reading that account waits for it
            // (`View::lower`).
            let touched = speculative
                .outcome
                .iter()
                .flat_map(|(_, state)| state.iter().filter(|(_, a)| a.is_touched()).map(|(address, _)| address));
            let failed = speculative.outcome.is_none().then_some(&self.txs[index].caller);
            let mut writers = lock(&self.writers);
            for address in touched.chain(failed) {
                let list = writers.entry(*address).or_default();
                let at = list.partition_point(|j| *j < index);
                list.insert(at, index);
            }
            drop(writers);
        }
        while self.done.load(Ordering::Acquire) < n && !self.failed.load(Ordering::Acquire) {
            if !self.commit_ready(Commit::Finish) && !self.receipts.build() {
                std::thread::yield_now();
            }
        }
    }

    /// Executes transaction `index` on the speculative view, without the fee credit.
    fn speculate_one<'s>(&'s self, evm: &mut CachedEvm<View<'s, '_, D>>, index: usize) -> Speculative {
        {
            let view = evm.ctx.db_mut();
            view.index = index;
            view.reads.clear();
            view.waited.set(Duration::ZERO);
        }
        evm.ctx.set_tx(self.txs[index].clone());
        let run = DeferFee::<_, EVMError<ViewError>, revm::handler::EthFrame>::default().run(evm);
        let state = evm.finalize();
        let reads = std::mem::take(&mut evm.ctx.db_mut().reads);
        match run {
            Ok(result) => {
                let bloom = alloy::primitives::logs_bloom(result.logs());
                let tx = &self.txs[index];
                let precompile = tx.kind.to().is_some_and(|to| evm.precompiles.is_precompile(to));
                let credited =
                    (!precompile).then(|| credited(tx, self.block.beneficiary, &result, &state, &reads)).flatten();
                Speculative { outcome: Some((result, state)), bloom, credited, reads }
            }
            Err(_) => Speculative { outcome: None, bloom: Bloom::ZERO, credited: None, reads },
        }
    }

    /// Commits transactions in order while they are ready (see [`Commit`]). Returns whether it
    /// made progress.
    fn commit_ready(&self, how: Commit) -> bool {
        // Once speculation stopped, the thread holding the lock runs the rest in order: the
        // others build receipts meanwhile rather than wait for it.
        let blocking = matches!(how, Commit::Wait | Commit::Finish) && self.speculate.load(Ordering::Acquire);
        let mut committer = if blocking {
            lock(&self.committer)
        } else {
            match taken(self.committer.try_lock()) {
                Some(guard) => guard,
                None => return false,
            }
        };
        let n = self.txs.len();
        let mut progressed = false;
        loop {
            let k = self.done.load(Ordering::Acquire);
            if k >= n || committer.error.is_some() {
                break;
            }
            if !self.speculate.load(Ordering::Acquire) {
                if how == Commit::Nested {
                    break;
                }
                // Stopped (here or by another thread): the speculative executions left are of
                // a stretch where conflicts piled up; one EVM in order is cheaper than
                // validating them and executing most again one EVM each.
                return self.run_rest_in_order(&mut committer) || progressed;
            }
            let speculative = lock(&self.slots[k]).take();
            let (outcome, conflict) = match speculative {
                Some(speculative) => (self.commit_speculative(speculative, k, &mut committer), true),
                None => {
                    let claimed = k < self.next.load(Ordering::Acquire);
                    if claimed && self.descheduled(k, &mut committer.watch) {
                        // Its thread is descheduled (or the estimate far off): the block
                        // would wait for it; run it here, its late result is never taken.
                        committer.stats.taken_over += 1;
                    } else if how != Commit::Finish || claimed {
                        // Claimed by a worker still executing it, or not claimed yet while
                        // workers still claim: leave it to them.
                        break;
                    } else {
                        // Nobody will: keep workers off it and run it here.
                        self.next.fetch_max(k + 1, Ordering::AcqRel);
                    }
                    (None, false)
                }
            };
            let (result, bloom) = match outcome {
                Some(committed) => {
                    committer.stats.speculative += 1;
                    committed
                }
                None => match self.execute_committed(k, &mut committer) {
                    Ok(result) => {
                        if conflict {
                            committer.stats.reexecuted += 1;
                        } else {
                            committer.stats.in_order += 1;
                        }
                        (result, None)
                    }
                    Err(error) => {
                        committer.error = Some(error);
                        self.failed.store(true, Ordering::Release);
                        break;
                    }
                },
            };
            self.receipts.queue(std::iter::once(receipt_input(&self.txs[k], &result, bloom)));
            committer.results.push(result);
            self.done.store(k + 1, Ordering::Release);
            progressed = true;
            let committed = k + 1;
            // Conflicts pile up, or the first transactions are too cheap for coordination to
            // pay (about 2 µs of it per transaction): the rest runs in order.
            let too_cheap = committed == self.first + CHEAP_CHECK_AT
                && self.started.elapsed() < self.min_tx_time * CHEAP_CHECK_AT as u32;
            let in_parallel = committed - self.first;
            // The first window holds the threads' start: it only starts the next.
            let serial = in_parallel.is_multiple_of(PAYOFF_EVERY)
                && self.serial_window(&mut committer)
                && in_parallel > PAYOFF_EVERY;
            // Hot locations serialize (see `ParallelConfig::max_waited_per_executed`).
            let waiting = self.waited_ns.load(Ordering::Relaxed) as f64
                > self.max_waited_per_executed * self.executed_ns.load(Ordering::Relaxed) as f64;
            if in_parallel >= 8
                && (too_cheap
                    || serial
                    || waiting
                    || committer.stats.reexecuted as f64 > self.max_reexecuted * in_parallel as f64)
            {
                self.speculate.store(false, Ordering::Release);
                committer.stats.stopped_at = Some(committed);
            }
        }
        progressed
    }

    /// Waits until every transaction below `index` is committed (see [`Shared::hot`]),
    /// committing what is ready and building receipts meanwhile. Only lower transactions are
    /// waited for, so two views never wait for each other. An error once speculation stopped
    /// (this execution is discarded then) or the block failed. The time it spent idle (neither
    /// committing nor building receipts) goes to `waited_ns`.
    fn wait_for_lower(&self, index: usize) -> Result<(), ViewError> {
        let mut spins = 0u32;
        let mut idle = Duration::ZERO;
        let mut idle_since: Option<Instant> = None;
        let result = loop {
            if !self.speculate.load(Ordering::Acquire) || self.failed.load(Ordering::Acquire) {
                break Err(ViewError(STOPPED.into()));
            }
            if self.done.load(Ordering::Acquire) >= index {
                break Ok(());
            }
            if self.commit_ready(Commit::Nested) || self.receipts.build() {
                idle += idle_since.take().map_or(Duration::ZERO, |since| since.elapsed());
            } else {
                idle_since.get_or_insert_with(Instant::now);
                spins = spins.wrapping_add(1);
                if spins.is_multiple_of(YIELD_EVERY) {
                    std::thread::yield_now();
                } else {
                    std::hint::spin_loop();
                }
            }
        };
        idle += idle_since.map_or(Duration::ZERO, |since| since.elapsed());
        self.waited_ns.fetch_add(idle.as_nanos() as u64, Ordering::Relaxed);
        result
    }

    /// Whether the thread executing claimed transaction `k` is descheduled (see [`Watch`]),
    /// watched across calls through `watch`.
    fn descheduled(&self, k: usize, watch: &mut Option<Watch>) -> bool {
        let Some(thread) = self.executing.iter().position(|e| e.load(Ordering::Acquire) == k) else {
            // Between its claim and recording it, or done and storing its result.
            *watch = None;
            return false;
        };
        let now = Instant::now();
        let same = watch.as_ref().filter(|w| w.k == k && w.thread == thread);
        let Some(w) = same else {
            *watch = Some(Watch { k, thread, since: now, cpu: None });
            return false;
        };
        if now.duration_since(w.since) < self.watch_window {
            return false;
        }
        if self.take_over_running {
            return true;
        }
        let Some(clock) = self.clocks[thread].get() else { return false };
        let Some(cpu) = clock.now() else { return false };
        let descheduled = w.cpu.is_some_and(|before| {
            // Less than a quarter of the window on a core, and ready to run: waiting for a
            // core, not for a disk or a lock.
            cpu.saturating_sub(before).as_nanos() * 4 < now.duration_since(w.since).as_nanos() && clock.runnable()
        });
        *watch = Some(Watch { k, thread, since: now, cpu: Some(cpu) });
        descheduled
    }

    /// Whether the window of commits ending now took more wall time than
    /// [`ParallelConfig::max_wall_per_executed`] of the time executed meanwhile; starts the
    /// next window.
    fn serial_window(&self, committer: &mut Committer) -> bool {
        let now = Instant::now();
        let executed = self.executed_ns.load(Ordering::Relaxed);
        let (since, before) = std::mem::replace(&mut committer.window, (now, executed));
        let wall = now.duration_since(since).as_nanos() as f64;
        wall > self.max_wall_per_executed * executed.saturating_sub(before) as f64
    }

    /// Once speculation stopped: executes every transaction not committed yet, in order, with
    /// one EVM on the committed state, as sequential revm does. Returns whether any ran.
    fn run_rest_in_order(&self, committer: &mut Committer) -> bool {
        let n = self.txs.len();
        self.next.store(n, Ordering::Release);
        let start = self.done.load(Ordering::Acquire);
        if start >= n || committer.error.is_some() {
            return false;
        }
        let mut db = write(&self.state);
        if let Err(e) = committer.flush_fees(&mut db, self.block.beneficiary) {
            committer.error = Some(ReferenceError { index: start, is_database: true, message: e.to_string() });
            self.failed.store(true, Ordering::Release);
            return false;
        }
        let before = committer.results.len();
        let mut evm = cached_evm(&mut **db, self.cfg, self.block, &self.precompiles);
        // Receipts are queued every few commits (with the count of commits, which the other
        // threads poll): they build the receipts trie meanwhile, and a handover per commit
        // cost the in-order loop a cache miss or two per transaction.
        let mut batch = Vec::with_capacity(IN_ORDER_BATCH);
        let ran = run_in_order(&mut evm, self.txs, &mut committer.results, None, |k, result| {
            batch.push(receipt_input(&self.txs[k], result, None));
            if batch.len() == IN_ORDER_BATCH {
                self.receipts.queue(batch.drain(..));
                self.done.store(k + 1, Ordering::Release);
            }
        });
        self.receipts.queue(batch.drain(..));
        self.done.store(committer.results.len(), Ordering::Release);
        committer.stats.in_order += committer.results.len() - before;
        if let Err(error) = ran {
            committer.error = Some(error);
            self.failed.store(true, Ordering::Release);
        }
        true
    }

    /// Commits a speculative execution if every value it read still holds (its result and
    /// its logs' bloom); `None` if not.
    fn commit_speculative(
        &self,
        speculative: Arc<Speculative>,
        index: usize,
        committer: &mut Committer,
    ) -> Option<(ExecutionResult, Option<Bloom>)> {
        let (result, state) = speculative.outcome.as_ref()?;
        let fee = fee_of(self.cfg, self.block, &self.txs[index], result)?;
        let coinbase = self.block.beneficiary;
        // A destroyed fee recipient would have burnt this transaction's fee: run it as
        // sequential revm does.
        if state.get(&coinbase).is_some_and(|a| a.is_selfdestructed()) {
            return None;
        }
        // Fees are credited lazily: before anything that reads the fee recipient.
        if speculative.reads.iter().any(|r| matches!(r, Read::Account(a, _) if *a == coinbase)) {
            let mut db = write(&self.state);
            committer.flush_fees(&mut db, coinbase).ok()?;
        }
        // Only the committer writes the state, so what it validates under the read lock still
        // holds when it takes the write lock to commit.
        let db = read(&self.state);
        // A credited recipient's balance as it commits: what lower transactions left, plus the
        // credit (its other fields are validated as any read).
        let mut credited_balance = None;
        let stale = speculative.reads.iter().find(|read| match read {
            Read::Account(address, seen) => !db.basic_ref(*address).is_ok_and(|now| {
                account_read_holds(*address, seen.as_ref(), now.as_ref(), speculative.credited, &mut credited_balance)
            }),
            Read::Slot(address, key, seen) => !db.storage_ref(*address, *key).is_ok_and(|now| now == *seen),
        });
        if let Some(read) = stale {
            drop(db);
            self.read_stale(read.location(), index);
            return None;
        }
        drop(db);
        // Views may still hold the execution for a moment: then its state is copied.
        let bloom = speculative.bloom;
        let credited = speculative.credited;
        let (result, mut state) = match Arc::try_unwrap(speculative) {
            Ok(Speculative { outcome, .. }) => outcome?,
            Err(shared) => shared.outcome.clone()?,
        };
        if let (Some((to, _)), Some(balance)) = (credited, credited_balance) {
            state.get_mut(&to)?.info.balance = balance;
        }
        write(&self.state).commit(state);
        committer.pending_fee = committer.pending_fee.saturating_add(fee);
        committer.fee_touched = true;
        Some((result, Some(bloom)))
    }

    /// Executes transaction `index` on the committed state (every lower transaction is
    /// committed), with the mainnet handler, and commits it.
    fn execute_committed(&self, index: usize, committer: &mut Committer) -> Result<ExecutionResult, ReferenceError> {
        {
            let mut db = write(&self.state);
            committer.flush_fees(&mut db, self.block.beneficiary).map_err(|e| ReferenceError {
                index,
                is_database: true,
                message: e.to_string(),
            })?;
        }
        let res = {
            let db = read(&self.state);
            let mut evm = cached_evm(revm::database::WrapDatabaseRef(&**db), self.cfg, self.block, &self.precompiles);
            evm.transact(self.txs[index].clone()).map_err(|e| rejected(index, e))?
        };
        let mut db = write(&self.state);
        db.commit(res.state);
        Ok(res.result)
    }
}

/// The block's receipts, built in commit order beside the commits, so that the trie's hashing
/// is not part of the committer's serial work: the committer queues each committed
/// transaction's receipt input, and a thread between executions (or waiting) that finds the
/// builder free adds what is queued.
///
/// The queue's lock is taken only when something was queued (`queued`, read first): a thread
/// waiting for work polls `build` in a loop, and a lock taken on every poll pulled the queue's
/// cache line away from the committer before each push (a miss of 150-400 ns on this kind of
/// VM, against about 2 µs of a plain transfer's execution).
struct ReceiptStage {
    queue: Mutex<Vec<ReceiptInput>>,
    /// How many inputs were ever queued; written by the committer, read by pollers.
    queued: AtomicUsize,
    builder: Mutex<Building>,
}

/// The builder's side of [`ReceiptStage`].
struct Building {
    builder: ReceiptBuilder<BloomOf>,
    /// A spare queue swapped with the stage's (both keep their capacity).
    spare: Vec<ReceiptInput>,
    /// How many inputs the builder took from the queue.
    taken: usize,
}

impl ReceiptStage {
    /// The stage of a block whose first `results` ran in order before the threads started.
    /// Their receipts are queued, not built here: the threads add them as they start, beside
    /// the first commits (a prefix of 500 transfers is about 0.2 ms of receipts, which this
    /// thread, the committer, used to build before anything else).
    fn new(txs: &[TxEnv], results: &[ExecutionResult]) -> Self {
        let mut queue = Vec::with_capacity(txs.len());
        queue.extend(txs.iter().zip(results).map(|(tx, result)| receipt_input(tx, result, None)));
        Self {
            queued: AtomicUsize::new(queue.len()),
            queue: Mutex::new(queue),
            builder: Mutex::new(Building { builder: receipt_builder(txs.len()), spare: Vec::new(), taken: 0 }),
        }
    }

    /// Queues the next committed transactions' receipts (the caller commits in block order).
    fn queue(&self, inputs: impl ExactSizeIterator<Item = ReceiptInput>) {
        let n = inputs.len();
        if n > 0 {
            lock(&self.queue).extend(inputs);
            self.queued.fetch_add(n, Ordering::Release);
        }
    }

    /// Adds what is queued, unless nothing is or another thread is at it. Returns whether it
    /// added any.
    fn build(&self) -> bool {
        let Some(mut guard) = taken(self.builder.try_lock()) else { return false };
        let Building { builder, spare, taken } = &mut *guard;
        if self.queued.load(Ordering::Acquire) == *taken {
            return false;
        }
        // Taken while holding the builder: batches are added in the order they were queued.
        std::mem::swap(&mut *lock(&self.queue), spare);
        *taken += spare.len();
        let built = !spare.is_empty();
        for input in spare.drain(..) {
            builder.push(input);
        }
        built
    }

    /// The receipts, once every transaction is committed.
    fn finish(self) -> Option<Receipts> {
        let Building { mut builder, .. } = self.builder.into_inner().unwrap_or_else(|poisoned| poisoned.into_inner());
        for input in self.queue.into_inner().unwrap_or_else(|poisoned| poisoned.into_inner()) {
            builder.push(input);
        }
        builder.finish()
    }
}

/// A committer's watch on the thread executing the transaction it waits for.
///
/// A thread descheduled mid-execution (a machine with other work, such as a node's own
/// threads, takes its core for a scheduler slice of milliseconds) would hold the whole block
/// up: every later commit waits for its transaction. The committer tells a descheduled thread
/// from a busy one by the thread's CPU clock: when, over a window
/// ([`ParallelConfig::watch_window`]) or more of waiting, the thread ran for less than a
/// quarter of it and is runnable (waiting for a core, not sleeping on a disk read), the
/// committer executes the transaction itself on the committed state (exact, as after a
/// conflict) and the claimer's result, when it comes, is never taken (readers skip committed
/// transactions). A busy thread, however long its transaction, is never taken over; the clock
/// is read only once a wait has lasted a window (a system call, about a microsecond), the
/// thread's state only when its clock stood still.
#[derive(Debug)]
struct Watch {
    k: usize,
    thread: usize,
    since: Instant,
    /// The thread's CPU time at `since`; `None` on the first look.
    cpu: Option<Duration>,
}

/// A thread's CPU clock (time it ran on a core) and its scheduler state.
#[derive(Clone, Copy, Debug)]
struct CpuClock {
    #[cfg(target_os = "linux")]
    id: libc::clockid_t,
    #[cfg(target_os = "linux")]
    tid: libc::pid_t,
}

impl CpuClock {
    /// The calling thread's clock, where the platform has one.
    fn of_this_thread() -> Option<Self> {
        #[cfg(target_os = "linux")]
        {
            let mut id: libc::clockid_t = 0;
            // SAFETY: `pthread_self` is the calling thread, alive; `id` is a valid out pointer.
            let ok = unsafe { libc::pthread_getcpuclockid(libc::pthread_self(), &mut id) } == 0;
            // SAFETY: no preconditions.
            let tid = unsafe { libc::gettid() };
            ok.then_some(Self { id, tid })
        }
        #[cfg(not(target_os = "linux"))]
        None
    }

    /// The time the thread ran so far; `None` if the clock cannot be read (the thread ended).
    fn now(self) -> Option<Duration> {
        #[cfg(target_os = "linux")]
        {
            let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
            // SAFETY: `ts` is a valid out pointer; an id of an ended thread fails with EINVAL.
            let ok = unsafe { libc::clock_gettime(self.id, &mut ts) } == 0;
            ok.then(|| Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
        }
        #[cfg(not(target_os = "linux"))]
        None
    }

    /// Whether the thread is running or ready to run (`R` in `/proc`), not sleeping or
    /// waiting for a disk; `false` if that cannot be read.
    fn runnable(self) -> bool {
        #[cfg(target_os = "linux")]
        {
            std::fs::read(format!("/proc/self/task/{}/stat", self.tid))
                .is_ok_and(|stat| proc_state(&stat) == Some(b'R'))
        }
        #[cfg(not(target_os = "linux"))]
        false
    }
}

/// The state letter of a `/proc/<pid>/stat` line: the field after the command, which is in
/// parentheses and may itself hold spaces and parentheses.
fn proc_state(stat: &[u8]) -> Option<u8> {
    let after = stat.iter().rposition(|b| *b == b')')?;
    stat[after + 1..].iter().copied().find(|b| !b.is_ascii_whitespace())
}

/// Sets the flag when dropped while its thread unwinds.
struct FailOnPanic<'a>(&'a AtomicBool);

impl Drop for FailOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.store(true, Ordering::Release);
        }
    }
}

/// How a thread takes part in committing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Commit {
    /// Between its own executions: commit what is ready if nobody else is committing.
    IfFree,
    /// Waiting for room ahead: wait for the lock, commit what is ready.
    Wait,
    /// No claims are left: also execute, in order, what nobody claimed.
    Finish,
    /// Inside a speculative execution, waiting for the lower ones to commit: as `IfFree`, but
    /// once speculation stopped the rest in order is left to a thread between executions.
    Nested,
}

// The executor's locks are taken by spinning on `try_*`, never by sleeping in the lock.
// Every lock here is held for microseconds (a commit, a lookup), except the committer's while
// its holder runs the rest of a stopped block in order (a waiter then spins, yielding, until
// that ends, as it slept before), and the threads are at most the machine's cores: a thread that slept on a lock (std's locks spin only briefly) had to be
// woken by a system call in the holder's unlock, and ran again tens of microseconds later on
// a VM. A profile of a 150-transaction block without conflicts that ran at 0.7x sequential
// put the committer's wake-ups at 5% of the threads' time, and the readers' sleeps behind
// them.

/// Spins until `take` gives a guard, yielding the core now and then (a holder descheduled
/// by an oversubscribed machine gets to run).
fn spin_for<G>(mut take: impl FnMut() -> Option<G>) -> G {
    let mut spins = 0u32;
    loop {
        if let Some(guard) = take() {
            return guard;
        }
        spins = spins.wrapping_add(1);
        if spins.is_multiple_of(YIELD_EVERY) {
            std::thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
    }
}

/// Failed attempts at a lock between two yields of the core.
const YIELD_EVERY: u32 = 256;

/// A lock's guard, or `None` while another thread holds it (a poisoned lock is taken: the
/// panic that poisoned it fails the block anyway).
fn taken<G>(attempt: Result<G, TryLockError<G>>) -> Option<G> {
    match attempt {
        Ok(guard) => Some(guard),
        Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
        Err(TryLockError::WouldBlock) => None,
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    spin_for(|| taken(mutex.try_lock()))
}

fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    spin_for(|| taken(lock.try_read()))
}

/// The write lock: spun for like the others at first, then queued for as std queues a
/// writer, which holds new readers back (std's futex lock fails a `try_read` while a writer
/// waits). With many threads reading, a writer that only spun could find no moment without a
/// reader.
fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    for _ in 0..YIELD_EVERY {
        if let Some(guard) = taken(lock.try_write()) {
            return guard;
        }
        std::hint::spin_loop();
    }
    lock.write().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Whether two reads of an account are the same to an execution: existence, balance, nonce,
/// code.
fn same_account(a: Option<&AccountInfo>, b: Option<&AccountInfo>) -> bool {
    same_but_balance(a, b) && a.map(|a| a.balance) == b.map(|b| b.balance)
}

/// [`same_account`] without the balance: what a credited recipient's execution depended on.
fn same_but_balance(a: Option<&AccountInfo>, b: Option<&AccountInfo>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => a.nonce == b.nonce && a.code_hash == b.code_hash,
        _ => false,
    }
}

/// The recipient of `tx` whose balance its execution only credited, and the credit: a plain
/// value transfer (no input, no authorizations, a value) that succeeded, to an account other
/// than its sender and the fee recipient that has no code after it (the caller checks it is not
/// a precompile). Nothing in such an execution reads the recipient's balance (status, gas,
/// logs and every other write are the same whatever it holds), so the transaction does not
/// conflict with lower transactions that change it, the way pevm's lazy updates treat
/// transfers: validation compares the recipient's existence, nonce and code, and the commit
/// adds the credit to the balance lower transactions left. The value is non-zero, so the
/// recipient is not empty after it and no clearing rule (EIP-161) depends on its balance.
fn credited(
    tx: &TxEnv,
    coinbase: Address,
    result: &ExecutionResult,
    state: &EvmState,
    reads: &[Read],
) -> Option<(Address, U256)> {
    credit_of(tx, coinbase, result, state, |to| {
        reads.iter().find_map(|read| match read {
            Read::Account(address, seen) if *address == to => Some(seen.as_ref()),
            _ => None,
        })
    })
}

/// [`credited`], with the recipient's account as the execution read it given by `seen` (`None`
/// when it did not read it; `Some(None)` when it did not exist): shared with the executions
/// ahead of an import ([`super::ahead`]).
pub(crate) fn credit_of<'r>(
    tx: &TxEnv,
    coinbase: Address,
    result: &ExecutionResult,
    state: &EvmState,
    seen: impl FnOnce(Address) -> Option<Option<&'r AccountInfo>>,
) -> Option<(Address, U256)> {
    let to = tx.kind.to().copied()?;
    if !tx.data.is_empty()
        || tx.value.is_zero()
        || !tx.authorization_list.is_empty()
        || to == tx.caller
        || to == coinbase
        || !result.is_success()
    {
        return None;
    }
    let account = state.get(&to).filter(|a| a.is_touched() && !a.is_selfdestructed())?;
    if account.info.code_hash != revm::primitives::KECCAK_EMPTY {
        return None;
    }
    let seen = seen(to)?.map_or(U256::ZERO, |s| s.balance);
    account.info.balance.checked_sub(seen).map(|credit| (to, credit))
}

/// Whether an execution's read of `address` (`seen`) still holds now: the whole account, or for
/// the recipient `credited` credits ([`credited`]) its existence, nonce and code, and a balance
/// that takes the credit without overflow, which goes to `credited_balance` (the recipient's
/// balance as the transaction commits: what lower transactions left, plus the credit). Shared
/// with the executions ahead of an import ([`super::ahead`]).
pub(crate) fn account_read_holds(
    address: Address,
    seen: Option<&AccountInfo>,
    now: Option<&AccountInfo>,
    credited: Option<(Address, U256)>,
    credited_balance: &mut Option<U256>,
) -> bool {
    match credited {
        Some((to, credit)) if to == address => {
            *credited_balance = same_but_balance(seen, now)
                .then(|| now.map_or(Some(credit), |now| now.balance.checked_add(credit)))
                .flatten();
            credited_balance.is_some()
        }
        _ => same_account(seen, now),
    }
}

/// The fee recipient's credit for one transaction, as revm's `reward_beneficiary` computes it
/// (in its `u128` arithmetic); `None` when that product would overflow, where the transaction
/// is executed exactly instead.
pub(crate) fn fee_of(cfg: &CfgEnv, block: &BlockEnv, tx: &TxEnv, result: &ExecutionResult) -> Option<U256> {
    let basefee = block.basefee() as u128;
    let effective = tx.effective_gas_price(basefee);
    let price = if cfg.spec.is_enabled_in(SpecId::LONDON) { effective.saturating_sub(basefee) } else { effective };
    price.checked_mul(u128::from(result.tx_gas_used())).map(U256::from)
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
    /// How long this execution waited for lower ones to commit (see [`Shared::hot`] and
    /// [`View::lower`]).
    waited: std::cell::Cell<Duration>,
    /// The hot locations as of a `hot_version` (see [`Shared::hot`]).
    hot: (usize, HashSet<Location>),
}

/// A state backend's error, rendered (the view's reads are re-done on the committed state if
/// they fail).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ViewError(String);

impl DBErrorMarker for ViewError {}

/// A view's read after speculation stopped.
const STOPPED: &str = "speculation stopped";

impl<'a, D> View<'_, 'a, D> {
    /// The committed state, read-locked; an error once speculation stopped. The thread that
    /// stopped it holds the write lock for the whole in-order rest, and nothing speculative is
    /// committed after the stop: an execution that waited for the lock here kept its thread
    /// spinning until the block ended instead of building receipts beside the in-order run
    /// (on eight blocks that stop speculating, no difference measured: 1.390x against 1.388x).
    fn state(&self) -> Result<RwLockReadGuard<'_, &'a mut CacheDB<D>>, ViewError> {
        spin_for(|| match taken(self.shared.state.try_read()) {
            Some(guard) => Some(Ok(guard)),
            None => (!self.shared.speculate.load(Ordering::Acquire)).then(|| Err(ViewError(STOPPED.into()))),
        })
    }

    /// Before reading `location`: if it is hot (see [`Shared::hot`]), waits until every lower
    /// transaction is committed.
    fn settle(&mut self, location: Location) -> Result<(), ViewError>
    where
        D: DatabaseRef + Send + Sync,
        D::Error: DBErrorMarker + fmt::Display,
    {
        let version = self.shared.hot_version.load(Ordering::Acquire);
        if version != self.hot.0 {
            self.hot = (version, read(&self.shared.hot).clone());
        }
        // Every lower transaction committed already: nothing to wait for, nor to judge.
        let waits = self.shared.done.load(Ordering::Acquire) < self.index;
        if waits && self.hot.1.contains(&location) {
            let before = self.now(location)?;
            let started = Instant::now();
            let waited = self.shared.wait_for_lower(self.index);
            self.waited.set(self.waited.get() + started.elapsed());
            waited?;
            self.shared.judge_wait(location, self.now(location)? != before);
        }
        Ok(())
    }

    /// What this view reads at `location` now (its balance, nonce and code hash for an
    /// account).
    fn now(&self, (address, key): Location) -> Result<Seen, ViewError>
    where
        D: DatabaseRef + Send + Sync,
        D::Error: DBErrorMarker + fmt::Display,
    {
        Ok(match key {
            None => Seen::Account(self.account_now(address)?.map(|info| (info.balance, info.nonce, info.code_hash))),
            Some(key) => Seen::Slot(self.slot_now(address, key)?),
        })
    }

    /// The account as the latest lower uncommitted transaction that wrote it left it, else as
    /// committed.
    fn account_now(&self, address: Address) -> Result<Option<AccountInfo>, ViewError>
    where
        D: DatabaseRef + Send + Sync,
        D::Error: DBErrorMarker + fmt::Display,
    {
        match self.lower(&address, |s| s.account(&address))? {
            Some(info) => Ok(info),
            None => self.state()?.basic_ref(address).map_err(|e| ViewError(e.to_string())),
        }
    }

    /// The slot as the latest lower uncommitted transaction that wrote it left it, else as
    /// committed.
    fn slot_now(&self, address: Address, key: StorageKey) -> Result<StorageValue, ViewError>
    where
        D: DatabaseRef + Send + Sync,
        D::Error: DBErrorMarker + fmt::Display,
    {
        match self.lower(&address, |s| s.slot(&address, &key))? {
            Some(value) => Ok(value),
            None => self.state()?.storage_ref(address, key).map_err(|e| ViewError(e.to_string())),
        }
    }

    /// Calls `f` on the speculative executions of lower uncommitted transactions that wrote
    /// `address`, highest first, until it returns a value.
    ///
    /// A writer whose writes are not known waits for its commit first, as Block-STM's
    /// estimates do: one in the committer's hands (its slot taken to be validated, committed
    /// or executed again), or whose speculative execution failed (it runs again on the
    /// committed state). Reading past it reads what it is about to change: a sender's next
    /// transaction read the nonce its previous one had not yet spent, failed on it, and so did
    /// every transaction of the chain after it, each then executed again in order (9,069,000,
    /// seven transactions of one sender: 0.88x-0.93x).
    fn lower<T>(&self, address: &Address, mut f: impl FnMut(&Speculative) -> Option<T>) -> Result<Option<T>, ViewError>
    where
        D: DatabaseRef + Send + Sync,
        D::Error: DBErrorMarker + fmt::Display,
    {
        loop {
            let done = self.shared.done.load(Ordering::Acquire);
            let unknown = {
                // Lock order: `writers`, then a slot (a slot's lock is never held while taking
                // `writers`).
                let writers = lock(&self.shared.writers);
                let Some(list) = writers.get(address) else { return Ok(None) };
                let below = list.partition_point(|j| *j < self.index);
                let mut unknown = None;
                for j in list[..below].iter().rev().take_while(|j| **j >= done) {
                    // The slot's lock is released before `f` looks into the execution.
                    let speculative = lock(&self.shared.slots[*j]).clone();
                    match speculative {
                        Some(speculative) if speculative.outcome.is_some() => {
                            if let Some(value) = f(&speculative) {
                                return Ok(Some(value));
                            }
                        }
                        _ => {
                            unknown = Some(*j);
                            break;
                        }
                    }
                }
                unknown
            };
            let Some(j) = unknown else { return Ok(None) };
            // (Not when it was committed since `done` was read: no wait then.)
            if self.shared.done.load(Ordering::Acquire) <= j {
                self.shared.unknown_waits.fetch_add(1, Ordering::Relaxed);
            }
            let started = Instant::now();
            let waited = self.shared.wait_for_lower(j + 1);
            self.waited.set(self.waited.get() + started.elapsed());
            waited?;
        }
    }
}

impl<D> Database for View<'_, '_, D>
where
    D: DatabaseRef + Send + Sync,
    D::Error: DBErrorMarker + fmt::Display,
{
    type Error = ViewError;

    fn basic(&mut self, address: Address) -> Result<Option<AccountInfo>, Self::Error> {
        self.settle((address, None))?;
        let info = self.account_now(address)?;
        self.reads.push(Read::Account(address, info.clone()));
        Ok(info)
    }

    fn code_by_hash(&mut self, code_hash: B256) -> Result<Bytecode, Self::Error> {
        let db = self.state()?;
        db.code_by_hash_ref(code_hash).map_err(|e| ViewError(e.to_string()))
    }

    fn storage(&mut self, address: Address, key: StorageKey) -> Result<StorageValue, Self::Error> {
        self.settle((address, Some(key)))?;
        let value = self.slot_now(address, key)?;
        self.reads.push(Read::Slot(address, key, value));
        Ok(value)
    }

    fn block_hash(&mut self, number: u64) -> Result<B256, Self::Error> {
        let db = self.state()?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use revm::primitives::{Bytes, TxKind};

    fn tx(from: u8, nonce: u64, data: &[u8]) -> TxEnv {
        TxEnv {
            caller: Address::with_last_byte(from),
            kind: TxKind::Call(Address::with_last_byte(0xee)),
            data: Bytes::copy_from_slice(data),
            nonce,
            ..Default::default()
        }
    }

    #[test]
    fn a_thread_that_panics_fails_the_block_for_the_others() {
        let failed = AtomicBool::new(false);
        let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _guard = FailOnPanic(&failed);
            panic!("a bug in an execution");
        }));
        assert!(unwound.is_err());
        assert!(failed.load(Ordering::Acquire));
        // A thread that ends normally leaves the flag alone.
        let failed = AtomicBool::new(false);
        drop(FailOnPanic(&failed));
        assert!(!failed.load(Ordering::Acquire));
    }

    #[test]
    fn a_proc_stat_line_gives_its_state_past_a_command_with_parentheses() {
        assert_eq!(proc_state(b"4242 (prescient-par) R 1 2 3"), Some(b'R'));
        assert_eq!(proc_state(b"4242 (a) b) (c)  S 1 2"), Some(b'S'));
        assert_eq!(proc_state(b"4242 (no state)"), None);
        assert_eq!(proc_state(b"garbage"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_thread_clock_runs_while_it_works_and_stands_while_it_sleeps() {
        let clock = CpuClock::of_this_thread().expect("linux has thread CPU clocks");
        assert!(clock.runnable(), "the calling thread is running");
        // Spins until the clock has advanced 2 ms: it runs while the thread works.
        let (before, deadline) = (clock.now().expect("readable"), Instant::now() + Duration::from_secs(30));
        while clock.now().expect("readable") < before + Duration::from_millis(2) {
            assert!(Instant::now() < deadline, "the clock of a spinning thread stood still");
            std::hint::spin_loop();
        }
        // A sleeping thread, seen from another: its clock stands still and it is not runnable.
        let (tx, rx) = std::sync::mpsc::channel();
        let sleeper = std::thread::spawn(move || {
            tx.send(CpuClock::of_this_thread().expect("clock")).expect("send");
            std::thread::sleep(Duration::from_millis(300));
        });
        let clock = rx.recv().expect("the sleeper's clock");
        std::thread::sleep(Duration::from_millis(50));
        let (a, runnable) = (clock.now().expect("alive"), clock.runnable());
        std::thread::sleep(Duration::from_millis(50));
        let b = clock.now().expect("alive");
        assert!(!runnable, "a sleeping thread is not runnable");
        assert!(b - a < Duration::from_millis(5), "{a:?} to {b:?} while asleep");
        sleeper.join().expect("sleeper");
    }

    #[test]
    fn a_short_or_cheap_rest_is_not_speculated_on() {
        let ms = Duration::from_millis;
        let us = Duration::from_micros;
        let config = |min_rest, min_tx_time| ParallelConfig { min_rest, min_tx_time, ..Default::default() };
        let bars = config(ms(1), us(3));
        let rest_worth_speculating = |prefix, done, rest, left, config: &ParallelConfig| {
            rest_estimate(prefix, done, rest).is_none_or(|estimate| rest_worth_speculating(estimate, left, config))
        };
        // 3 M gas of limits in 0.5 ms: 3 M more take about 0.5 ms, 9 M more 1.5 ms.
        assert!(!rest_worth_speculating(ms(1) / 2, 3_000_000, 3_000_000, 10, &bars));
        assert!(rest_worth_speculating(ms(1) / 2, 3_000_000, 9_000_000, 10, &bars));
        // 1.5 ms for 499 transactions is just over 3 µs each; for 501, just under (the bar
        // itself is checked below with values that are exact in floating point).
        assert!(rest_worth_speculating(ms(1) / 2, 3_000_000, 9_000_000, 499, &bars));
        assert!(!rest_worth_speculating(ms(1) / 2, 3_000_000, 9_000_000, 501, &bars));
        // At the bars exactly, and with nothing left.
        assert!(rest_worth_speculating(ms(1), 21_000, 21_000, 1, &config(ms(1), ms(1))));
        assert!(!rest_worth_speculating(ms(1), 21_000, 0, 0, &bars));
        // Without a prefix there is no pace to estimate from; without bars, always.
        assert!(rest_worth_speculating(Duration::ZERO, 0, 21_000, 1_000_000, &bars));
        assert!(rest_worth_speculating(ms(1), 21_000, 1, 1_000, &config(Duration::ZERO, Duration::ZERO)));
    }

    /// A rest not speculated on takes the threads (to build receipts beside it) only when it is
    /// long: `PAYOFF_EVERY` transactions estimated at `sequential_for` or more.
    #[test]
    fn a_short_rest_in_order_does_not_wake_the_threads() {
        let config = ParallelConfig { sequential_for: Duration::from_micros(500), ..Default::default() };
        // 3 M gas of limits in 0.5 ms: 3 M more take about 0.5 ms, 2 M more about 0.33 ms.
        let estimate = |rest| rest_estimate(Duration::from_micros(500), 3_000_000, rest);
        assert!(rest_worth_threads(estimate(3_000_000), PAYOFF_EVERY, &config));
        assert!(!rest_worth_threads(estimate(2_000_000), 1_000, &config), "too short a time");
        assert!(!rest_worth_threads(estimate(30_000_000), PAYOFF_EVERY - 1, &config), "too few");
        // Without a prefix there is no pace to estimate from: by count alone.
        assert!(rest_worth_threads(rest_estimate(Duration::ZERO, 0, 21_000), PAYOFF_EVERY, &config));
    }

    #[test]
    fn the_block_shape_chooses_sequential_where_threads_cannot_pay() {
        let config = ParallelConfig::default();
        let worth = |txs: &[TxEnv], config: &ParallelConfig| worth_parallel(txs, &same_sender(txs), config);
        // Contract calls from distinct senders: parallel.
        let calls: Vec<TxEnv> = (0..40).map(|i| tx(i, 0, &[1])).collect();
        assert!(worth(&calls, &config));
        // Too few transactions.
        assert!(!worth(&calls[..config.min_txs - 1], &config));
        // Plain transfers of distinct senders: parallel, as calls.
        let transfers: Vec<TxEnv> = (0..40).map(|i| tx(i, 0, if i < 8 { &[1] } else { &[] })).collect();
        assert!(worth(&transfers, &config));
        // One sender's nonce chain.
        let chain: Vec<TxEnv> = (0..40).map(|n| tx(1, n, &[1])).collect();
        assert!(!worth(&chain, &config));
        assert_eq!(same_sender(&chain)[5], Some(4));
        // Up to a third of the transactions may follow their sender's earlier one.
        let with_chain = |chained: u8| -> Vec<TxEnv> {
            (0..40u8).map(|i| if i <= chained { tx(1, u64::from(i), &[1]) } else { tx(i, 0, &[1]) }).collect()
        };
        assert!(worth(&with_chain(13), &config));
        assert!(!worth(&with_chain(14), &config));
        // Nor when more than a third of their gas limits are: four chained members of 4 each
        // are 16 of 52 (a tenth of the transactions, under a third of the gas), of 5 each 20
        // of 56 (over).
        let with_heavy_chain = |heavy: u64| -> Vec<TxEnv> {
            let mut txs = with_chain(4);
            for tx in &mut txs {
                tx.gas_limit = if tx.caller == Address::with_last_byte(1) && tx.nonce > 0 { heavy } else { 1 };
            }
            txs
        };
        assert_eq!(with_heavy_chain(4).iter().map(|t| t.gas_limit).sum::<u64>(), 52);
        assert!(worth(&with_heavy_chain(4), &config));
        assert!(!worth(&with_heavy_chain(5), &config));
        // Without the shape rule, only the size counts.
        let forced = ParallelConfig { by_shape: false, ..config };
        assert!(worth(&chain, &forced));
    }

    #[test]
    fn only_a_plain_transfer_into_an_account_without_code_is_a_credit() {
        use revm::context_interface::result::{Output, ResultGas, SuccessReason};
        let coinbase = Address::with_last_byte(0xcb);
        let to = Address::with_last_byte(0xee);
        let success = ExecutionResult::Success {
            reason: SuccessReason::Stop,
            gas: ResultGas::default().with_total_gas_spent(21_000),
            logs: Vec::new(),
            output: Output::Call(Bytes::new()),
        };
        let transfer = TxEnv { value: U256::from(7), ..tx(1, 0, &[]) };
        // The recipient held 100 when read and 107 after: a credit of 7.
        let state_with = |info: AccountInfo| {
            let mut account = Account::from(info);
            account.mark_touch();
            EvmState::from_iter([(to, account)])
        };
        let state = state_with(AccountInfo::from_balance(U256::from(107)));
        let reads = [Read::Account(to, Some(AccountInfo::from_balance(U256::from(100))))];
        assert_eq!(credited(&transfer, coinbase, &success, &state, &reads), Some((to, U256::from(7))));
        // A recipient that did not exist: credited from zero.
        let fresh = [Read::Account(to, None)];
        assert_eq!(credited(&transfer, coinbase, &success, &state, &fresh), Some((to, U256::from(107))));
        // Not a credit: input, no value, the sender itself, the fee recipient, a failure, code at
        // the recipient, a recipient never read or left untouched.
        let call = TxEnv { value: U256::from(7), ..tx(1, 0, &[1]) };
        assert_eq!(credited(&call, coinbase, &success, &state, &reads), None);
        assert_eq!(credited(&tx(1, 0, &[]), coinbase, &success, &state, &reads), None);
        let to_self = TxEnv { caller: to, ..transfer.clone() };
        assert_eq!(credited(&to_self, coinbase, &success, &state, &reads), None);
        assert_eq!(credited(&transfer, to, &success, &state, &reads), None);
        let failed = ExecutionResult::Revert { gas: ResultGas::default(), logs: Vec::new(), output: Bytes::new() };
        assert_eq!(credited(&transfer, coinbase, &failed, &state, &reads), None);
        let code = Bytecode::new_raw(Bytes::from_static(&[0x00]));
        let with_code = state_with(AccountInfo::new(U256::from(107), 0, code.hash_slow(), code));
        assert_eq!(credited(&transfer, coinbase, &success, &with_code, &reads), None);
        assert_eq!(credited(&transfer, coinbase, &success, &state, &[]), None);
        let mut untouched = state.clone();
        untouched.get_mut(&to).expect("present").unmark_touch();
        assert_eq!(credited(&transfer, coinbase, &success, &untouched, &reads), None);
    }

    #[test]
    fn the_fee_credit_is_deferred_only_where_it_is_revms() {
        let mut cfg = CfgEnv::new_with_spec(SpecId::CANCUN);
        assert!(fee_deferrable(&cfg));
        cfg.spec = SpecId::AMSTERDAM;
        assert!(!fee_deferrable(&cfg));
        // Nor before it with Amsterdam's gas rules switched on by flag.
        let mut early = CfgEnv::new_with_spec(SpecId::CANCUN);
        early.enable_amsterdam_eip2780 = true;
        assert!(!fee_deferrable(&early));
        let mut early = CfgEnv::new_with_spec(SpecId::CANCUN);
        early.enable_amsterdam_eip8037 = true;
        assert!(!fee_deferrable(&early));
        // A fee whose product overflows revm's u128 arithmetic is not deferred.
        let cfg = CfgEnv::new_with_spec(SpecId::CANCUN);
        let block = BlockEnv { basefee: 0, ..Default::default() };
        let mut tx = tx(1, 0, &[]);
        tx.gas_price = u128::MAX / 1000;
        let result = ExecutionResult::Success {
            reason: revm::context_interface::result::SuccessReason::Stop,
            gas: revm::context_interface::result::ResultGas::default().with_total_gas_spent(21_000),
            logs: Vec::new(),
            output: revm::context_interface::result::Output::Call(Bytes::new()),
        };
        assert_eq!(fee_of(&cfg, &block, &tx, &result), None);
        tx.gas_price = 7;
        assert_eq!(fee_of(&cfg, &block, &tx, &result), Some(U256::from(7 * 21_000)));
    }
}
