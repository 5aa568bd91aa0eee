//! `prescient evaluate`: the whole pipeline offline on recorded blocks, honestly.
//!
//! For each block:
//!
//! ```text
//!   mempool   each transaction heard or not, deterministically from its hash (share --heard);
//!             a heard one arrives at a time drawn from its hash, independent of its position
//!   predictor sees a ParentView (what the parent header gives) and the pending pool in
//!             arrival order; never the block's order, timestamp, fee recipient or randomness
//!   pre-exec  at each arrival: the transaction's futures (nonce chain, fee-greedy block order)
//!             × predicted contexts (timestamp slots, fee recipients of other blocks), within
//!             a budget per transaction; one second before the slot and at its start, a
//!             refresh of the futures whose predicted predecessors changed, then order flips
//!             (a pending transaction that wrote what this one read moved across it). A
//!             simulated worker runs them in order at their measured cost, an arrival's first
//!             (`Worker`): a program finished after the block arrived is not used, and a
//!             future holding a transaction not yet heard is never run.
//!   import    the block through the store, verified against sequential revm in full
//!   measure   per transaction, on the state before it, with warm caches: revm and the fast
//!             path alternately; per block, the import and sequential revm alternately
//! ```
//!
//! **The information boundary** is a type: the predictor's functions take a [`ParentView`]
//! and the pool, never a [`RecordedBlock`]. What the view holds and where each field comes
//! from is written on it.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    time::Instant,
};

use accelerator::{
    ImportMode, ImportTx, Pipeline, PipelineConfig, TxPath,
    executor::{apply_accelerated_into, known_code},
    predictor::targeted_recipients,
};
use eyre::Result;
use mempool_tap::{RecordedBlock, recorded::PreAccount};
use revm::{
    DatabaseCommit, ExecuteEvm,
    context::{BlockEnv, CfgEnv, TxEnv},
    context_interface::block::BlobExcessGasAndPrice,
    database::{CacheDB, InMemoryDB},
    primitives::{Address, B256, U256, hardfork::SpecId, keccak256},
};
use serde::Serialize;

/// When a block reaches the node after its timestamp (the slot's start): the pre-execution
/// worker may work until then. Blocks propagate in about a second or more; one is the
/// conservative end.
const BLOCK_ARRIVES_AFTER_MS: u64 = 1000;

/// How `evaluate` runs.
#[derive(Clone, Debug)]
pub struct EvaluateOptions {
    /// Share of transactions heard before their block (0..=1).
    pub heard: f64,
    /// Pre-executions per transaction at its arrival (futures × contexts).
    pub futures_per_tx: usize,
    /// Fee-recipient candidates taken from other blocks.
    pub fee_recipients: usize,
    /// Most predecessors in a predicted-block future.
    pub max_predecessors: usize,
    /// Latest arrival before the block, in ms: arrivals are spread over this window.
    pub window_ms: u64,
    /// Alternating repetitions of each timing.
    pub reps: usize,
    /// Use the read-set memo (off: every hit is evaluated; for measuring what it buys).
    pub read_sets: bool,
    /// Explain every miss of a heard transaction ([`BlockResult::explained`]).
    pub explain: bool,
    /// The fewest instructions a program needs to be compiled to native code
    /// ([`jit::Limits::min_instructions`]).
    pub jit_min_instructions: usize,
    /// Most same-block-touch pre-executions per transaction
    /// ([`PipelineConfig::touched_per_tx`]).
    pub touched_per_tx: usize,
}

impl Default for EvaluateOptions {
    fn default() -> Self {
        Self {
            heard: 0.95,
            futures_per_tx: 4,
            fee_recipients: 3,
            max_predecessors: PipelineConfig::default().max_predecessors,
            window_ms: 24_000,
            reps: 3,
            read_sets: true,
            explain: false,
            jit_min_instructions: jit::MIN_INSTRUCTIONS,
            touched_per_tx: PipelineConfig::default().touched_per_tx,
        }
    }
}

/// What a predictor may know of a block before it exists: what its parent header gives.
///
/// - `number`: the parent's plus one;
/// - `basefee`: EIP-1559's function of the parent's gas used, gas limit and base fee (the
///   recorded block's value is that function's result);
/// - `gas_limit`: the parent's (not recorded; the block's is used, which the rules keep within
///   1/1024 of the parent's);
/// - `blob`: the excess blob gas and price, a function of the parent's blob fields;
/// - `parent_timestamp`: the block's minus 12 s after the Merge, minus 13 s before;
/// - `difficulty` before the Merge: a function of the parent's (the block's is used);
/// - the rules (`cfg`) of the next block.
///
/// Not here, so never seen: the block's order, timestamp, fee recipient, randomness.
#[derive(Clone, Debug)]
pub struct ParentView {
    /// Next block number.
    pub number: u64,
    /// Next base fee.
    pub basefee: u64,
    /// Gas limit.
    pub gas_limit: u64,
    /// Blob fee parameters.
    pub blob: Option<BlobExcessGasAndPrice>,
    /// The parent's timestamp.
    pub parent_timestamp: u64,
    /// Difficulty (before the Merge).
    pub difficulty: U256,
    /// Chain rules.
    pub cfg: CfgEnv,
}

impl ParentView {
    /// The view of `block`'s parent: the one place the evaluation reads a block's context for
    /// the predictor.
    pub fn of(block: &RecordedBlock) -> Self {
        let merged = block.cfg.spec.is_enabled_in(SpecId::MERGE);
        let timestamp = block.env.timestamp.saturating_to::<u64>();
        Self {
            number: block.env.number.saturating_to(),
            basefee: block.env.basefee,
            gas_limit: block.env.gas_limit,
            blob: block.env.blob_excess_gas_and_price,
            parent_timestamp: timestamp.saturating_sub(if merged { 12 } else { 13 }),
            difficulty: if merged { U256::ZERO } else { block.env.difficulty },
            cfg: block.cfg.clone(),
        }
    }

    /// The slot length the rules of this era give (12 s after the Merge; about 13 s before).
    fn slot(&self) -> u64 {
        if self.cfg.spec.is_enabled_in(SpecId::MERGE) { 12 } else { 13 }
    }

    /// The predicted contexts, most likely first: the next slot with the first fee-recipient
    /// candidate, then the other candidates, then a missed slot.
    pub fn contexts(&self, fee_recipients: &[Address]) -> Vec<BlockEnv> {
        let next = self.parent_timestamp + self.slot();
        let first = fee_recipients.first().copied().unwrap_or_default();
        let mut contexts = vec![self.context(next, first)];
        contexts.extend(fee_recipients.iter().skip(1).map(|r| self.context(next, *r)));
        contexts.push(self.context(next + self.slot(), first));
        contexts
    }

    /// The next slot's context with fee recipient `beneficiary`.
    pub fn next_slot_with(&self, beneficiary: Address) -> BlockEnv {
        self.context(self.parent_timestamp + self.slot(), beneficiary)
    }

    fn context(&self, timestamp: u64, beneficiary: Address) -> BlockEnv {
        BlockEnv {
            number: U256::from(self.number),
            beneficiary,
            timestamp: U256::from(timestamp),
            gas_limit: self.gas_limit,
            basefee: self.basefee,
            difficulty: self.difficulty,
            // Unknown before the block: any value; programs guard what depends on it.
            prevrandao: self.cfg.spec.is_enabled_in(SpecId::MERGE).then_some(B256::repeat_byte(0x5a)),
            blob_excess_gas_and_price: self.blob,
            ..Default::default()
        }
    }
}

/// Fee-recipient candidates for block `number`: the recipients of the other blocks nearest in
/// number (the same era), most frequent first; never the block's own.
pub fn fee_recipient_candidates(others: &[(u64, Address)], number: u64, k: usize) -> Vec<Address> {
    let mut near: Vec<&(u64, Address)> = others.iter().filter(|(n, _)| *n != number).collect();
    near.sort_by_key(|(n, _)| n.abs_diff(number));
    let mut counts: Vec<(Address, usize, usize)> = Vec::new();
    for (rank, (_, a)) in near.iter().take(4 * k.max(1)).enumerate() {
        match counts.iter_mut().find(|(c, ..)| c == a) {
            Some(entry) => entry.1 += 1,
            None => counts.push((*a, 1, rank)),
        }
    }
    counts.sort_by(|x, y| y.1.cmp(&x.1).then(x.2.cmp(&y.2)));
    counts.into_iter().take(k).map(|(a, ..)| a).collect()
}

/// A deterministic number in [0, 1) from a transaction hash and a purpose.
fn unit(hash: &B256, purpose: &[u8]) -> f64 {
    let mut input = purpose.to_vec();
    input.extend_from_slice(hash.as_slice());
    let h = keccak256(&input);
    let mut eight = [0u8; 8];
    eight.copy_from_slice(&h[..8]);
    (u64::from_be_bytes(eight) >> 11) as f64 / (1u64 << 53) as f64
}

/// The outcome classes of a transaction, in Forerunner's terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    /// A hit through the read-set memo: every input equal to a pre-execution's (the fee
    /// recipient aside where the program allows it), its outcome applied without computing.
    HitPerfect,
    /// A hit on a state no pre-execution saw.
    HitImperfect,
    /// Pre-executed, but no program held (or none could be made).
    Missed,
    /// Not heard before the block.
    NotHeard,
    /// Heard, but no pre-execution finished before the block.
    NotPreExecuted,
}

impl Class {
    /// Every class, in report order.
    pub const ALL: [Class; 5] =
        [Class::HitPerfect, Class::HitImperfect, Class::Missed, Class::NotPreExecuted, Class::NotHeard];

    /// Name in reports.
    pub const fn name(self) -> &'static str {
        match self {
            Self::HitPerfect => "perfect hit",
            Self::HitImperfect => "imperfect hit",
            Self::Missed => "predicted, missed",
            Self::NotHeard => "not heard",
            Self::NotPreExecuted => "not pre-executed in time",
        }
    }
}

/// One transaction's result.
#[derive(Clone, Debug, Serialize)]
pub struct TxResult {
    /// Position in the block.
    pub index: usize,
    /// Class.
    pub class: Class,
    /// Why it missed, for `missed`.
    pub miss: Option<String>,
    /// revm's time for it alone on the state before it (median), ns.
    pub revm_ns: f64,
    /// The same with a precompile-result cache as reth runs it, warmed by an earlier run of
    /// the transaction ([`crate::baseline`]), ns.
    pub revm_cached_ns: f64,
    /// The fast path's time (evaluation and building the state to commit), ns; for a miss,
    /// the failed evaluation; 0 without a program. The tree runs in the compact evaluator.
    pub fast_ns: f64,
    /// The same with the tree run as native code where it compiled (the evaluator serves
    /// the rest, as at import), ns.
    pub native_ns: f64,
}

impl TxResult {
    /// What importing it cost through prescient: the fast path on a hit, the failed
    /// evaluation plus revm otherwise.
    pub fn cost_ns(&self) -> f64 {
        match self.class {
            Class::HitPerfect | Class::HitImperfect => self.fast_ns,
            _ => self.fast_ns + self.revm_ns,
        }
    }

    /// [`TxResult::cost_ns`] with native code.
    pub fn native_cost_ns(&self) -> f64 {
        match self.class {
            Class::HitPerfect | Class::HitImperfect => self.native_ns,
            _ => self.native_ns + self.revm_ns,
        }
    }

    /// Whether it hit.
    pub fn is_hit(&self) -> bool {
        matches!(self.class, Class::HitPerfect | Class::HitImperfect)
    }
}

/// One block's results.
#[derive(Clone, Debug, Default, Serialize)]
pub struct BlockResult {
    /// Block number.
    pub number: u64,
    /// Per transaction, in block order.
    pub txs: Vec<TxResult>,
    /// Divergences from sequential revm, in words (must be empty).
    pub divergences: Vec<String>,
    /// Pre-executions run.
    pub pre_executions: usize,
    /// Pre-executions by result (`program`, a no-program reason, `invalid`).
    pub pre_execution_results: BTreeMap<String, usize>,
    /// Summed wall time of the pre-executions, ms.
    pub pre_execution_ms: f64,
    /// Programs stored in time, and programs finished after the block arrived (discarded).
    pub programs_ready: usize,
    /// Programs finished too late.
    pub programs_late: usize,
    /// Summed time of merging and compiling programs into the store, ms.
    pub build_ms: f64,
    /// Bytes the store held after the block's pre-executions.
    pub store_bytes: usize,
    /// Whole-block import through prescient (median), ms.
    pub import_ms: f64,
    /// Whole-block sequential revm (median), ms.
    pub revm_ms: f64,
    /// Whole-block import through prescient with native code (median), ms.
    pub import_native_ms: f64,
    /// Sequential revm timed beside it (median), ms.
    pub revm_native_ms: f64,
    /// Compile time of each accelerated program of the block's transactions compiled to
    /// native code, ms.
    pub compile_ms: Vec<f64>,
    /// Machine code bytes of each.
    pub code_bytes: Vec<usize>,
    /// The skeleton of each (`ir::compact::Compiled::skeleton_hash`).
    #[serde(skip)]
    pub skeletons: Vec<u64>,
    /// Accelerated programs left to the evaluator (past the compiler's limits, or an error).
    pub not_compiled: usize,
    /// Native code and the evaluator disagreeing (a different path, or an import through
    /// native code diverging from sequential revm), in words: must be empty.
    pub disagreements: Vec<String>,
    /// The predicted access list against what the block's transactions touched.
    pub access_list: AccessListScore,
    /// With [`EvaluateOptions::explain`]: per missed heard transaction, in Markdown, the
    /// futures it was pre-executed in and where each of its programs misses on the state the
    /// block gave it.
    #[serde(skip)]
    pub explained: Vec<String>,
}

/// A block's predicted access list against the actual one: accounts and storage slots, each
/// an entry. Predicted: what the heard transactions name (sender, target, access list) and
/// everything the pre-executions ready before the block read or wrote (their read sets and
/// their programs' constant keys), what a node could prefetch. Actual: every account and slot sequential
/// revm loaded while executing the block's transactions (reads and writes; the system calls'
/// accesses are not predicted and not counted).
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct AccessListScore {
    /// Entries predicted.
    pub predicted: usize,
    /// Entries the block touched.
    pub actual: usize,
    /// Entries both predicted and touched.
    pub hit: usize,
}

impl AccessListScore {
    /// Compares `predicted` with what `txs` touch executed in order on `db`.
    fn of(
        predicted: (&HashSet<Address>, &HashSet<(Address, U256)>),
        db: &InMemoryDB,
        cfg: &revm::context::CfgEnv,
        env: &revm::context::BlockEnv,
        txs: &[ImportTx],
    ) -> Self {
        use revm::{DatabaseCommit, ExecuteEvm, context::ContextTr};
        let (mut accounts, mut slots) = (HashSet::new(), HashSet::new());
        let mut state = CacheDB::new(db);
        let mut evm = ir::reference::evm(&mut state, cfg, env);
        for tx in txs {
            let Ok(res) = evm.transact(tx.env.clone()) else { break };
            for (address, account) in &res.state {
                accounts.insert(*address);
                slots.extend(account.storage.keys().map(|k| (*address, *k)));
            }
            evm.ctx.db_mut().commit(res.state);
        }
        let hit = accounts.iter().filter(|a| predicted.0.contains(*a)).count()
            + slots.iter().filter(|s| predicted.1.contains(s)).count();
        Self { predicted: predicted.0.len() + predicted.1.len(), actual: accounts.len() + slots.len(), hit }
    }
}

impl BlockResult {
    /// Transactions of `class`.
    pub fn count(&self, class: Class) -> usize {
        self.txs.iter().filter(|t| t.class == class).count()
    }

    /// Heard transactions.
    pub fn heard(&self) -> usize {
        self.txs.iter().filter(|t| t.class != Class::NotHeard).count()
    }

    /// Hits.
    pub fn hits(&self) -> usize {
        self.txs.iter().filter(|t| t.is_hit()).count()
    }

    /// Hits over heard transactions, in percent.
    pub fn hit_percent(&self) -> f64 {
        100.0 * self.hits() as f64 / self.heard().max(1) as f64
    }

    /// Sequential revm's block time over the import's.
    pub fn import_ratio(&self) -> f64 {
        self.revm_ms / self.import_ms.max(1e-9)
    }
}

/// The simulated pre-execution worker: pre-executions run one after another, each for its
/// measured time, never before their event; what finishes after the block arrived is not used.
struct Worker<'a> {
    pipeline: &'a Pipeline,
    db: &'a InMemoryDB,
    view: &'a ParentView,
    /// When the block arrives.
    deadline_ms: f64,
    /// When the worker is free next.
    clock_ms: f64,
    attempted: HashSet<B256>,
    /// The futures (predecessor shapes) each transaction was pre-executed under.
    used_futures: HashMap<B256, Vec<Vec<(Address, u64)>>>,
    /// When each heard transaction (sender, nonce) arrived: the information boundary in time.
    arrivals: HashMap<(Address, u64), u64>,
    /// Every account and slot a pre-execution finished before the block read or wrote, with
    /// the values it ran on (for the predicted access list).
    touched: (HashSet<Address>, HashSet<(Address, U256)>),
    /// Pre-executions refused because a predecessor had not arrived yet when it would have
    /// started (a bug in the simulation, never in the data: [`evaluate_block`] fails on it).
    from_the_future: usize,
}

impl Worker<'_> {
    /// Pre-executes `hash` after `predecessors` in `ctx`, at `now_ms` or when the worker is free.
    fn run(&mut self, hash: B256, predecessors: &[TxEnv], ctx: &BlockEnv, now_ms: f64, r: &mut BlockResult) {
        let start = self.clock_ms.max(now_ms);
        if start >= self.deadline_ms {
            return;
        }
        let Some(tx) = self.pipeline.pending_tx(&hash) else { return };
        let arrived = |t: &TxEnv| self.arrivals.get(&(t.caller, t.nonce)).is_some_and(|ms| *ms as f64 <= start);
        if !arrived(&tx.env) || !predecessors.iter().all(arrived) {
            self.from_the_future += 1;
            return;
        }
        self.attempted.insert(hash);
        let started = Instant::now();
        let run = self.pipeline.pre_execute_future(&tx, predecessors, self.db, &self.view.cfg, ctx);
        *r.pre_execution_results.entry(run.kind.to_string()).or_default() += 1;
        // Same-block-touch pre-executions after it (see `accelerator::predictor`), in its time.
        if run.touched > 0 {
            *r.pre_execution_results.entry("same_block_touch".to_string()).or_default() += run.touched;
        }
        let took = started.elapsed().as_secs_f64() * 1e3;
        r.pre_executions += 1 + run.touched;
        r.pre_execution_ms += took;
        self.clock_ms = start + took;
        for (program, reads) in run.programs {
            if self.clock_ms <= self.deadline_ms {
                if let Some(reads) = &reads {
                    reads.footprint(&mut self.touched.0, &mut self.touched.1);
                }
                let started = Instant::now();
                if self.pipeline.store_program(hash, program, reads) {
                    r.programs_ready += 1;
                }
                r.build_ms += started.elapsed().as_secs_f64() * 1e3;
            } else {
                r.programs_late += 1;
            }
        }
    }

    /// [`Self::run`] for a future not run before for this transaction (`again`: even if it
    /// was, in another context). Returns whether the future was new.
    fn run_new(
        &mut self,
        hash: B256,
        future: &[TxEnv],
        ctx: &BlockEnv,
        now: f64,
        again: bool,
        r: &mut BlockResult,
    ) -> bool {
        let shape: Vec<(Address, u64)> = future.iter().map(|t| (t.caller, t.nonce)).collect();
        let seen = self.used_futures.entry(hash).or_default();
        let new = !seen.contains(&shape);
        if new {
            seen.push(shape);
        }
        if new || again {
            self.run(hash, future, ctx, now, r);
        }
        new
    }
}

/// A heard transaction, as the simulated mempool delivers it.
struct Heard {
    index: usize,
    hash: B256,
    env: TxEnv,
    arrival_ms: u64,
}

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// When each transaction was heard, from a recording's arrival log (ms since the epoch).
pub fn recorded_arrivals(arrivals: &[mempool_tap::recorded::Arrival]) -> HashMap<B256, u64> {
    let mut first = HashMap::new();
    for a in arrivals {
        first.entry(*a.tx.inner.inner().tx_hash()).or_insert(a.t_ms);
    }
    first
}

/// Pending transactions from one sender from which it is taken for a pool paying out.
pub const PAYOUT_BATCH: usize = 8;

/// The senders of at least [`PAYOUT_BATCH`] of `pending` (the pool's senders, one per pending
/// transaction). A mining pool pays its miners in batches from its fee-recipient address,
/// usually at a fee only its own blocks accept; an exchange's hot wallet looks the same
/// and costs one wasted future per transaction.
pub fn payout_senders(pending: impl Iterator<Item = Address>) -> HashSet<Address> {
    let mut counts: HashMap<Address, usize> = HashMap::new();
    for sender in pending {
        *counts.entry(sender).or_default() += 1;
    }
    counts.into_iter().filter(|(_, n)| *n >= PAYOUT_BATCH).map(|(a, _)| a).collect()
}

/// A block's number, its fee recipient, and that account as the block's pre-state recorded it.
pub type RecordedRecipient = (u64, Address, Option<PreAccount>);

/// The fee recipient of every complete block of `dataset` ([`RecordedRecipient`]);
/// `loaded(number)` after each block is read.
pub fn recorded_recipients(
    dataset: &mempool_tap::Dataset,
    mut loaded: impl FnMut(u64),
) -> Result<Vec<RecordedRecipient>> {
    let mut recipients = Vec::new();
    for block_ref in dataset.complete_blocks() {
        let block = dataset.load(block_ref)?;
        let beneficiary = block.env.beneficiary;
        recipients.push((block.number, beneficiary, block.pre_state.get(&beneficiary).cloned()));
        loaded(block.number);
    }
    Ok(recipients)
}

/// The fee recipients the predictor knows: those of other blocks. A transaction sent by one
/// of them is most likely a pool's own (a payout), included by that pool: its sender is then
/// its first fee-recipient candidate.
#[derive(Clone, Debug, Default)]
pub struct KnownRecipients {
    /// Candidates for any transaction, most likely first (see [`fee_recipient_candidates`]).
    pub candidates: Vec<Address>,
    /// Every fee recipient of another block.
    pub all: HashSet<Address>,
    /// Each known recipient's account as recorded with another block it received the fees of
    /// (the nearest such block), never this block's.
    pub accounts: HashMap<Address, PreAccount>,
}

impl KnownRecipients {
    /// What the predictor knows for block `number`, from `others` (number, fee recipient),
    /// never the block's own.
    pub fn for_block(others: &[(u64, Address)], number: u64, k: usize) -> Self {
        Self {
            candidates: fee_recipient_candidates(others, number, k),
            all: others.iter().filter(|(n, _)| *n != number).map(|(_, a)| *a).collect(),
            accounts: HashMap::new(),
        }
    }

    /// What the predictor knows for block `number` from `recorded` ([`recorded_recipients`]):
    /// [`Self::for_block`] with the recipients' accounts.
    pub fn of_recorded(recorded: &[RecordedRecipient], number: u64, k: usize) -> Self {
        let others: Vec<(u64, Address)> = recorded.iter().map(|(n, a, _)| (*n, *a)).collect();
        Self::for_block(&others, number, k).with_accounts(recorded, number)
    }

    /// Adds the recipients' accounts from `recorded` (number, recipient, its account in that
    /// block's pre-state), the nearest other block's first.
    pub fn with_accounts(mut self, recorded: &[RecordedRecipient], number: u64) -> Self {
        let mut near: Vec<_> = recorded
            .iter()
            .filter(|(n, ..)| *n != number)
            .filter_map(|(n, a, acc)| Some((*n, a, acc.as_ref()?)))
            .collect();
        near.sort_by_key(|(n, ..)| n.abs_diff(number));
        for (_, address, account) in near {
            self.accounts.entry(*address).or_insert_with(|| account.clone());
        }
        self
    }

    /// The state pre-executions run on: `db`, plus each known recipient it does not hold, as
    /// recorded with another block. A recording holds only the accounts its block touched, so
    /// a candidate fee recipient absent from it would look empty, which a node, holding the
    /// whole state, would not see (a pool's payout address is never empty). Only absent
    /// accounts are added, so nothing here depends on this block beyond what `db` already
    /// says: the import runs on `db` alone.
    pub fn pre_execution_state(&self, db: &InMemoryDB) -> InMemoryDB {
        let mut state = db.clone();
        for (address, account) in &self.accounts {
            if state.cache.accounts.contains_key(address) {
                continue;
            }
            state.insert_account_info(*address, account.info());
            for (slot, value) in &account.storage {
                // The account was inserted just above: this cannot fail.
                let _ = state.insert_account_storage(*address, *slot, *value);
            }
        }
        state
    }
}

/// A block's predictions: what the simulated mempool and worker left in the pipeline before
/// the block arrived ([`predict_block`]).
pub struct Predicted {
    /// The programs, read sets and memos ready before the block (the memos frozen: the
    /// block's own import learns nothing).
    pub pipeline: Pipeline,
    /// The block's transactions, as the import takes them.
    pub txs: Vec<ImportTx>,
    /// The recorded pre-state.
    pub db: InMemoryDB,
    heard: Vec<Heard>,
    attempted: HashSet<B256>,
    used_futures: HashMap<B256, Vec<Vec<(Address, u64)>>>,
    touched: (HashSet<Address>, HashSet<(Address, U256)>),
    result: BlockResult,
}

impl Predicted {
    /// The predicted access list: every account and slot the pre-executions finished before
    /// the block read or wrote (the keys they ran on, whether their programs were kept or
    /// not), what each heard transaction names (sender, target, access list), and the keys
    /// the kept programs fix themselves (constants after folding).
    pub fn access_list(&self) -> (HashSet<Address>, HashSet<(Address, U256)>) {
        let (mut accounts, mut slots) = self.touched.clone();
        for h in &self.heard {
            accounts.insert(h.env.caller);
            if let revm::primitives::TxKind::Call(to) = h.env.kind {
                accounts.insert(to);
            }
            for item in &h.env.access_list.0 {
                accounts.insert(item.address);
                slots.extend(item.storage_keys.iter().map(|k| (item.address, U256::from_be_bytes(k.0))));
            }
        }
        for accelerated in self.heard.iter().filter_map(|h| self.pipeline.accelerated(&h.hash)) {
            for program in &accelerated.programs {
                let footprint = accelerator::predictor::Footprint::of(program);
                for key in footprint.reads.iter().chain(&footprint.writes) {
                    match key {
                        accelerator::predictor::StateKey::Account(a) => {
                            accounts.insert(*a);
                        }
                        accelerator::predictor::StateKey::Slot(a, k) => {
                            accounts.insert(*a);
                            slots.insert((*a, *k));
                        }
                    }
                }
            }
        }
        (accounts, slots)
    }
}

/// Runs the prediction half of [`evaluate_block`]: the simulated mempool, the predictor and
/// the worker, up to the block's arrival. `recipients` come from other blocks; `arrivals`,
/// when the recording has an arrival log, replace the simulated mempool.
pub fn predict_block(
    block: &RecordedBlock,
    recipients: &KnownRecipients,
    options: &EvaluateOptions,
    arrivals: Option<&HashMap<B256, u64>>,
) -> Result<Predicted> {
    let txs: Vec<ImportTx> = block
        .txs
        .iter()
        .enumerate()
        .map(|(i, t)| ImportTx { hash: t.hash.unwrap_or_else(|| B256::from(U256::from(i))), env: t.env.clone() })
        .collect();
    // The simulated mempool: the block's time is the clock's, never the predictor's.
    let block_ms = block.env.timestamp.saturating_to::<u64>().saturating_mul(1000);
    let arrival = |t: &ImportTx| match arrivals {
        // Recorded: heard when logged by the block's second (timestamps are whole seconds).
        Some(log) => log.get(&t.hash).copied().filter(|ms| *ms < block_ms + 1000),
        None => (unit(&t.hash, b"heard") < options.heard).then(|| {
            let before = (unit(&t.hash, b"arrival") * options.window_ms as f64) as u64;
            block_ms.saturating_sub(before.max(1))
        }),
    };
    let mut heard: Vec<Heard> = txs
        .iter()
        .enumerate()
        .filter_map(|(index, t)| Some(Heard { index, hash: t.hash, env: t.env.clone(), arrival_ms: arrival(t)? }))
        .collect();
    heard.sort_by_key(|h| (h.arrival_ms, h.hash));

    let view = ParentView::of(block);
    let contexts = view.contexts(&recipients.candidates);
    let config = PipelineConfig {
        max_predecessors: options.max_predecessors,
        pool_capacity: heard.len().max(1),
        // The futures at arrival, the two refreshes' and a pool's payout, the order flips and
        // the dependency future, the recipients a transaction points at.
        programs_per_tx: options.futures_per_tx.max(1)
            + 4
            + PipelineConfig::default().flip_futures
            + accelerator::predictor::TARGETED_RECIPIENTS,
        read_sets: options.read_sets,
        touched_per_tx: options.touched_per_tx,
        // Native code is compiled here once the block is known, on this thread and timed
        // (`compile_block`), not by a background thread whose work would share the cores
        // with the measurements.
        jit_code_bytes: None,
        ..PipelineConfig::default()
    };
    let pipeline = Pipeline::new(config);
    let db = block.state_db();
    let pre_db = recipients.pre_execution_state(&db);
    let mut result = BlockResult { number: block.number, ..Default::default() };
    let mut worker = Worker {
        pipeline: &pipeline,
        db: &pre_db,
        view: &view,
        deadline_ms: (block_ms + BLOCK_ARRIVES_AFTER_MS) as f64,
        clock_ms: 0.0,
        attempted: HashSet::new(),
        used_futures: HashMap::new(),
        arrivals: heard.iter().map(|h| ((h.env.caller, h.env.nonce), h.arrival_ms)).collect(),
        touched: Default::default(),
        from_the_future: 0,
    };
    // The contexts of the fee recipients a transaction points at ([`targeted_recipients`]),
    // besides those it gets anyway (the first predicted one, a known recipient's own).
    let targeted = |tx: &TxEnv| -> Vec<BlockEnv> {
        let own = recipients.all.contains(&tx.caller);
        targeted_recipients(tx, view.basefee, |a| recipients.all.contains(a))
            .into_iter()
            .filter(|r| *r != contexts[0].beneficiary && !(own && *r == tx.caller))
            .map(|r| view.next_slot_with(r))
            .collect()
    };
    // The likeliest context of a sender's transaction: its own next slot for a known fee
    // recipient (a pool's payout), the first predicted context otherwise.
    let likeliest = |caller: Address| match recipients.all.contains(&caller) {
        true => view.next_slot_with(caller),
        false => contexts[0].clone(),
    };
    // A transaction's pre-executions when it arrives.
    let arrive = |h: &Heard, worker: &mut Worker<'_>, result: &mut BlockResult| {
        pipeline.admit(h.hash, h.env.clone(), h.arrival_ms);
        let Some((_, futures)) = pipeline.futures(&h.hash, view.basefee) else { return };
        // Futures × contexts, most likely first, within the budget.
        let mut plan: Vec<(&Vec<TxEnv>, &BlockEnv)> = Vec::new();
        let Some(main) = futures.last() else { return };
        let own = (recipients.all.contains(&h.env.caller) && contexts[0].beneficiary != h.env.caller)
            .then(|| view.next_slot_with(h.env.caller));
        if let Some(own) = &own {
            plan.push((main, own));
        }
        for f in &futures {
            plan.push((f, &contexts[0]));
        }
        for ctx in &contexts[1..] {
            plan.push((main, ctx));
        }
        plan.truncate(options.futures_per_tx.max(1));
        let now = h.arrival_ms as f64;
        for (predecessors, ctx) in plan {
            worker.run_new(h.hash, predecessors, ctx, now, true, result);
        }
        // The fee recipients the transaction points at (a zero-tip transfer: a builder's
        // payment; a known recipient named in its calldata: an MEV payment to that miner or
        // builder): one more context each. Rare and near certain, so outside the budget.
        for ctx in targeted(&h.env) {
            worker.run(h.hash, main, &ctx, now, result);
        }
    };
    // Delivers every arrival up to `until_ms` (arrivals go before any refresh work waiting).
    let mut next = 0;
    let mut deliver = |until_ms: f64, worker: &mut Worker<'_>, result: &mut BlockResult| {
        while let Some(h) = heard.get(next).filter(|h| h.arrival_ms as f64 <= until_ms) {
            next += 1;
            arrive(h, worker, result);
        }
        next
    };
    // Refreshes, one second before the slot and at the slot's start (up to a second before
    // the block arrives): the futures whose predecessors changed since, of the transactions
    // heard by then. Each future is computed when the worker gets to it, from the pool as it
    // is then; a transaction arriving meanwhile is pre-executed first.
    let mut paid_out: HashSet<B256> = HashSet::new();
    for refresh_ms in [block_ms.saturating_sub(1000), block_ms] {
        let now = refresh_ms as f64;
        let arrived = &heard[..deliver(now, &mut worker, &mut result)];
        // A sender with a batch of pending transactions in the pool may be a pool paying out,
        // which its own blocks include: such a sender also gets a future where it is the fee
        // recipient (what the pool shows, not the block: `payout_senders`).
        let payouts = payout_senders(arrived.iter().map(|h| h.env.caller));
        for h in arrived {
            deliver(worker.clock_ms, &mut worker, &mut result);
            let Some((_, futures)) = pipeline.futures(&h.hash, view.basefee) else { continue };
            let Some(main) = futures.last() else { continue };
            // The other contexts run again only for a new main future (the payout context
            // also once, when the sender is first seen paying out).
            let new = worker.run_new(h.hash, main, &likeliest(h.env.caller), now, false, &mut result);
            let known = recipients.all.contains(&h.env.caller);
            let payout = !known && payouts.contains(&h.env.caller) && contexts[0].beneficiary != h.env.caller;
            if payout && (new || paid_out.insert(h.hash)) {
                worker.run(h.hash, main, &view.next_slot_with(h.env.caller), now, &mut result);
            }
            for ctx in targeted(&h.env).iter().filter(|_| new) {
                worker.run(h.hash, main, ctx, now, &mut result);
            }
        }
        // Then the order flips, now that the pool's transactions have footprints: the
        // predicted block with a transaction that wrote what this one read moved across it.
        for h in arrived {
            deliver(worker.clock_ms, &mut worker, &mut result);
            let ctx = likeliest(h.env.caller);
            for future in pipeline.flip_futures(&h.hash, view.basefee) {
                worker.run_new(h.hash, &future, &ctx, now, false, &mut result);
            }
        }
    }
    // Arrivals after the slot's start (a recorded log may hold them until the block arrives).
    deliver(f64::INFINITY, &mut worker, &mut result);
    let Worker { attempted, used_futures, from_the_future, touched, .. } = worker;
    eyre::ensure!(
        from_the_future == 0,
        "block {}: {from_the_future} pre-executions would have used a transaction before it arrived",
        block.number
    );
    result.store_bytes = pipeline.store().stats().2;
    // From here on the block is known: the memos answer what pre-execution put in them and
    // learn nothing from the block's own import, which a node runs once (the timings repeat
    // it).
    pipeline.memo().freeze(true);
    Ok(Predicted { pipeline, txs, db, heard, attempted, used_futures, touched, result })
}

/// Evaluates one block (see the module docs): [`predict_block`], then the import, verified,
/// and the timings.
pub fn evaluate_block(
    block: &RecordedBlock,
    recipients: &KnownRecipients,
    options: &EvaluateOptions,
    arrivals: Option<&HashMap<B256, u64>>,
) -> Result<BlockResult> {
    let predicted = predict_block(block, recipients, options, arrivals)?;
    let (accounts, slots) = predicted.access_list();
    let Predicted { pipeline, txs, db, heard, attempted, used_futures, mut result, .. } = predicted;
    result.access_list = AccessListScore::of((&accounts, &slots), &db, &block.cfg, &block.env, &txs);
    // Import in the block's real context, verified in full.
    let imported = pipeline.import(&db, &block.cfg, &block.env, &txs, ImportMode::Verified)?;
    let (divergences, _) = imported.checked.unwrap_or_default();
    result.divergences =
        divergences.iter().map(|d| format!("tx {} {}: {} ({:?})", d.index, d.hash, d.difference, d.path)).collect();
    let heard_set: HashSet<usize> = heard.iter().map(|h| h.index).collect();
    if options.explain {
        let missed: Vec<usize> = imported
            .import
            .paths
            .iter()
            .enumerate()
            .filter(|(i, p)| match p {
                _ if !heard_set.contains(i) => false,
                TxPath::Miss { .. } => true,
                TxPath::NoProgram => attempted.contains(&txs[*i].hash),
                TxPath::Hit { .. } => false,
            })
            .map(|(i, _)| i)
            .collect();
        result.explained = explain_misses(block, &pipeline, &db, &txs, &missed, &used_futures);
    }
    // Native code: each accelerated program of the block compiled now, timed (the
    // background compiler's work at serve time, finished within milliseconds of a program
    // being stored, seconds before its block), then the block imported again through it and
    // verified in full, and its paths compared with the evaluator's.
    let budget = accelerator::tiering::CodeBudget::new(usize::MAX);
    let limits = jit::Limits { min_instructions: options.jit_min_instructions, ..jit::Limits::default() };
    for tx in &txs {
        if let Some(accelerated) = pipeline.accelerated(&tx.hash) {
            match accelerator::tiering::compile(&accelerated, &limits, &budget) {
                Ok((time, bytes)) => {
                    result.compile_ms.push(time.as_secs_f64() * 1e3);
                    result.code_bytes.push(bytes);
                    result.skeletons.extend(accelerated.compiled.as_ref().map(|c| c.skeleton_hash()));
                }
                Err(accelerator::tiering::NotCompiled::NoTree) => {}
                Err(_) => result.not_compiled += 1,
            }
        }
    }
    let natively = pipeline.import(&db, &block.cfg, &block.env, &txs, ImportMode::Verified)?;
    let (native_divergences, _) = natively.checked.unwrap_or_default();
    result.disagreements.extend(
        native_divergences
            .iter()
            .map(|d| format!("native: tx {} {}: {} ({:?})", d.index, d.hash, d.difference, d.path)),
    );
    for (i, (a, b)) in imported.import.paths.iter().zip(&natively.import.paths).enumerate() {
        if a != b {
            result.disagreements.push(format!("native: tx {i} {}: path {b:?}, the evaluator's {a:?}", txs[i].hash));
        }
    }
    let timings = measure_txs(block, &pipeline, &db, &txs, options.reps);
    for (i, path) in imported.import.paths.iter().enumerate() {
        let hash = txs[i].hash;
        let (class, miss) = match path {
            _ if !heard_set.contains(&i) => (Class::NotHeard, None),
            TxPath::Hit { perfect: true, .. } => (Class::HitPerfect, None),
            TxPath::Hit { .. } => (Class::HitImperfect, None),
            TxPath::Miss { reason } => (Class::Missed, Some(reason.name().to_string())),
            TxPath::NoProgram if attempted.contains(&hash) => (Class::Missed, Some("no-program".to_string())),
            TxPath::NoProgram => (Class::NotPreExecuted, None),
        };
        let (revm_ns, revm_cached_ns, fast_ns, native_ns) = timings[i];
        result.txs.push(TxResult { index: i, class, miss, revm_ns, revm_cached_ns, fast_ns, native_ns });
    }
    // Whole-block times, the evaluator's and native code's imports alternating with revm in
    // one loop (so neither is measured on a machine in another state).
    [(result.import_ms, result.import_native_ms), (result.revm_ms, result.revm_native_ms)] =
        time_blocks(block, &pipeline, &db, &txs, options.reps, &mut result.divergences)?;
    Ok(result)
}

/// Whole-block import through `pipeline`, with the trees in the evaluator and as native
/// code, beside the baseline node's sequential revm, alternating `reps` times (the two
/// imports in turn first): the medians, ms, as `[(evaluator, native), (revm beside the
/// evaluator, revm beside native code)]`. A first round whose receipts differ from the
/// baseline's is recorded in `divergences`.
fn time_blocks(
    block: &RecordedBlock,
    pipeline: &Pipeline,
    db: &InMemoryDB,
    txs: &[ImportTx],
    reps: usize,
    divergences: &mut Vec<String>,
) -> Result<[(f64, f64); 2]> {
    let (mut import, mut revm) = ([Vec::new(), Vec::new()], [Vec::new(), Vec::new()]);
    let envs = block.tx_envs();
    for round in 0..reps.max(1) {
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for tier in order {
            let mode = if tier == 0 { ImportMode::TimedEvaluator } else { ImportMode::Timed };
            let started = Instant::now();
            let fast = pipeline.import(db, &block.cfg, &block.env, txs, mode)?;
            import[tier].push(started.elapsed().as_secs_f64() * 1e3);
            let started = Instant::now();
            let node = crate::baseline::node_block(&mut CacheDB::new(db), &block.cfg, &block.env, &envs);
            revm[tier].push(started.elapsed().as_secs_f64() * 1e3);
            // The timed runs must agree too: the baseline's receipts against the import's.
            let agree = node.as_ref().is_ok_and(|r| {
                r.receipts_root == fast.import.receipts.receipts_root && r.logs_bloom == fast.import.receipts.logs_bloom
            });
            if round == 0 && !agree {
                divergences
                    .push(format!("timed import ({mode:?}): receipts root or bloom differs from the baseline's"));
            }
        }
    }
    let [i0, i1] = import.map(median);
    let [r0, r1] = revm.map(median);
    Ok([(i0, i1), (r0, r1)])
}

/// For each of `missed` (block indexes): the futures it was pre-executed in (predecessors by
/// block index, `-` for one the block does not hold) beside the block's real predecessors, and
/// where each of its programs misses in the reference interpreter on the state before it.
fn explain_misses(
    block: &RecordedBlock,
    pipeline: &Pipeline,
    db: &InMemoryDB,
    txs: &[ImportTx],
    missed: &[usize],
    futures: &HashMap<B256, Vec<Vec<(Address, u64)>>>,
) -> Vec<String> {
    use std::fmt::Write;
    let position: HashMap<(Address, u64), usize> =
        txs.iter().enumerate().map(|(i, t)| ((t.env.caller, t.env.nonce), i)).collect();
    let mut state = CacheDB::new(db);
    let mut out = Vec::new();
    for (i, tx) in txs.iter().enumerate() {
        if missed.contains(&i) {
            let mut text = format!("### block {} tx {i} {}\n\n", block.number, tx.hash);
            for shape in futures.get(&tx.hash).into_iter().flatten() {
                let names: Vec<String> =
                    shape.iter().map(|k| position.get(k).map_or("-".to_string(), usize::to_string)).collect();
                let _ = writeln!(text, "- future: [{}]", names.join(" "));
            }
            for (p, program) in pipeline.accelerated(&tx.hash).iter().flat_map(|a| a.programs.iter()).enumerate() {
                match ir::interp::evaluate(program, &state, &block.cfg, &block.env, ir::interp::FUEL) {
                    ir::interp::Evaluation::Hit(_) => {
                        let _ = writeln!(text, "- program {p}: hits");
                    }
                    ir::interp::Evaluation::Miss(miss) => {
                        let _ = writeln!(text, "- program {p}: {} at", miss.reason.name());
                        let _ = writeln!(text, "```");
                        explain_value(&mut text, program, miss.at, 3);
                        let _ = writeln!(text, "```");
                    }
                }
            }
            out.push(text);
        }
        let mut evm = ir::reference::evm(&mut state, &block.cfg, &block.env);
        if let Ok(r) = evm.transact(tx.env.clone()) {
            drop(evm);
            state.commit(r.state);
        }
    }
    out
}

/// Prints `v`'s instruction and, to `depth`, those of its operands.
fn explain_value(text: &mut String, program: &ir::program::Program, v: ir::program::Value, depth: usize) {
    let Some(inst) = program.insts.get(v.0 as usize) else { return };
    text.push_str(&" ".repeat(2 * (3 - depth.min(3))));
    text.push_str(&ir::text::print_inst(v, inst));
    text.push('\n');
    if depth > 0 {
        for a in &inst.args {
            explain_value(text, program, *a, depth - 1);
        }
    }
}

/// Per transaction (block order, on the state before it, caches warm): revm's time and the
/// fast path's, alternating, medians in ns. The state advances by revm's result.
fn measure_txs(
    block: &RecordedBlock,
    pipeline: &Pipeline,
    db: &InMemoryDB,
    txs: &[ImportTx],
    reps: usize,
) -> Vec<(f64, f64, f64, f64)> {
    let mut state = CacheDB::new(db);
    let (cfg, env) = (&block.cfg, &block.env);
    let cache = crate::baseline::PrecompileCache::default();
    let mut out = Vec::with_capacity(txs.len());
    for (position, tx) in txs.iter().enumerate() {
        let accelerated = pipeline.accelerated(&tx.hash);
        let mut applied = ir::Applied::new();
        let (mut revm_times, mut cached_times, mut fast_times, mut native_times) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut result = None;
        // One unmeasured round warms the caches, then `reps` measured rounds.
        for round in 0..=reps.max(1) {
            let envelope = tx.env.clone();
            let mut evm = ir::reference::evm(&mut state, cfg, env);
            let started = Instant::now();
            let r = evm.transact(envelope);
            let revm_ns = started.elapsed().as_nanos() as f64;
            drop(evm);
            let envelope = tx.env.clone();
            let mut evm = crate::baseline::cached_evm(&mut state, cfg, env, &cache);
            let started = Instant::now();
            std::hint::black_box(evm.transact(envelope).is_ok());
            let cached_ns = started.elapsed().as_nanos() as f64;
            drop(evm);
            if round > 0 {
                cached_times.push(cached_ns);
            }
            if let Some(accelerated) = &accelerated {
                // The two tiers in turn first: the second runs on caches the first warmed.
                // With an odd number of rounds one tier is first once more than the other;
                // which one alternates from one transaction to the next, so that neither
                // column carries the colder runs over a block (with the evaluator first in
                // the even rounds only, the native column measured 2-5% slower than the
                // evaluator's on the transactions it does not compile, which run the same
                // code in both).
                let mut tiers = [(false, &mut fast_times), (true, &mut native_times)];
                if (round + position) % 2 == 1 {
                    tiers.reverse();
                }
                for (native, times) in tiers {
                    let started = Instant::now();
                    let path = apply_accelerated_into(
                        accelerated,
                        &state,
                        cfg,
                        env,
                        Some(pipeline.memo()),
                        native,
                        &mut applied,
                    );
                    let commit = matches!(path, TxPath::Hit { .. }).then(|| applied.check_codes(&state, known_code));
                    let fast_ns = started.elapsed().as_nanos() as f64;
                    std::hint::black_box(commit);
                    if round > 0 {
                        times.push(fast_ns);
                    }
                }
            }
            if round > 0 {
                revm_times.push(revm_ns);
            }
            result = Some(r);
        }
        if let Some(Ok(r)) = result {
            state.commit(r.state);
        }
        out.push((median(revm_times), median(cached_times), median(fast_times), median(native_times)));
    }
    out
}

/// Totals over a run, in the JSON summary's terms (documented in the README).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    /// Blocks evaluated.
    pub blocks: usize,
    /// Transactions.
    pub txs: usize,
    /// Heard transactions.
    pub heard: usize,
    /// Hits through the read-set memo.
    pub hits_perfect: usize,
    /// Other hits.
    pub hits_imperfect: usize,
    /// Heard, pre-executed, not hit.
    pub missed: usize,
    /// Not heard.
    pub not_heard: usize,
    /// Heard, not pre-executed before the block.
    pub not_preexecuted: usize,
    /// Divergences from sequential revm (must be 0).
    pub divergences: usize,
    /// Hits among heard transactions.
    pub hit_rate_heard: f64,
    /// Time-weighted speedup over hits.
    pub speedup_hits: f64,
    /// Time-weighted speedup over hits against revm with a precompile-result cache (the
    /// second baseline).
    pub speedup_hits_cached: f64,
    /// Time-weighted speedup over heard transactions.
    pub speedup_heard: f64,
    /// Time-weighted speedup over all transactions.
    pub speedup_all: f64,
    /// Per-transaction speedup on hits: median, p10, p90.
    pub speedup_hits_median: f64,
    /// p10.
    pub speedup_hits_p10: f64,
    /// p90.
    pub speedup_hits_p90: f64,
    /// Whole-block import: sequential revm time over import time, summed over blocks.
    pub block_speedup: f64,
    /// Misses by reason.
    pub miss_reasons: BTreeMap<String, usize>,
    /// Pre-executions run.
    pub pre_executions: usize,
    /// Pre-executions by result (`program`, a no-program reason, `invalid`).
    pub pre_execution_results: BTreeMap<String, usize>,
    /// Mean wall time of one pre-execution, ms.
    pub pre_execution_ms_mean: f64,
    /// Mean time to merge and compile one program into the store, ms.
    pub build_ms_mean: f64,
    /// Mean store bytes per program.
    pub bytes_per_program: f64,
    /// Programs ready before their block, and finished too late.
    pub programs_ready: usize,
    /// Programs finished too late.
    pub programs_late: usize,
    /// The options the run used.
    pub heard_share: f64,
    /// Native code and the evaluator disagreeing, or an import through native code
    /// diverging from sequential revm (must be 0).
    pub disagreements: usize,
    /// Time-weighted speedup over hits with the tree in the compact evaluator (as
    /// `speedup_hits`).
    pub speedup_evaluator: f64,
    /// Time-weighted speedup over the same hits with the tree as native code where it
    /// compiled.
    pub speedup_jit: f64,
    /// Per-hit speedup with native code: median and p10.
    pub speedup_jit_median: f64,
    /// See `speedup_jit_median`.
    pub speedup_jit_p10: f64,
    /// Whole-block import with native code.
    pub block_speedup_jit: f64,
    /// Accelerated programs compiled to native code.
    pub native_programs: usize,
    /// Accelerated programs left to the evaluator (past the compiler's limits, or an error).
    pub not_compiled: usize,
    /// Compile time per program: median and p99, ms.
    pub compile_ms_p50: f64,
    /// See `compile_ms_p50`.
    pub compile_ms_p99: f64,
    /// Median machine code size per program, bytes.
    pub code_bytes_median: f64,
    /// Distinct skeletons among the programs compiled: how many compiles code shared by
    /// skeleton would take.
    pub native_skeletons: usize,
    /// Predicted access list: share of the entries the blocks touched that were predicted.
    pub access_list_recall: f64,
    /// Predicted access list: share of the predicted entries the blocks touched.
    pub access_list_precision: f64,
}

impl Summary {
    /// Sums `blocks`.
    pub fn of(blocks: &[BlockResult], options: &EvaluateOptions) -> Self {
        let all: Vec<&TxResult> = blocks.iter().flat_map(|b| &b.txs).collect();
        let count = |c: Class| all.iter().filter(|t| t.class == c).count();
        // Summed baseline time over summed prescient time, over the transactions `pick` keeps.
        let weighted =
            |pick: &dyn Fn(&TxResult) -> bool, base: &dyn Fn(&TxResult) -> f64, ours: &dyn Fn(&TxResult) -> f64| {
                let (b, o) = all.iter().filter(|t| pick(t)).fold((0.0, 0.0), |(b, o), t| (b + base(t), o + ours(t)));
                if o > 0.0 { b / o } else { 0.0 }
            };
        let ratio = |pick: &dyn Fn(&TxResult) -> bool| weighted(pick, &|t| t.revm_ns, &|t| t.cost_ns());
        let sorted = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v
        };
        // Per-hit speedups with the time `ours` gives, sorted.
        let per_hit = |ours: &dyn Fn(&TxResult) -> f64| {
            sorted(all.iter().filter(|t| t.is_hit() && ours(t) > 0.0).map(|t| t.revm_ns / ours(t)).collect())
        };
        let (evaluator_per_hit, native_per_hit) = (per_hit(&|t| t.fast_ns), per_hit(&|t| t.native_ns));
        let speedup_hits = ratio(&|t| t.is_hit());
        // Summed sequential revm over summed import, for a block's pair of times.
        let block_ratio = |times: &dyn Fn(&BlockResult) -> (f64, f64)| {
            let (import, revm) = blocks.iter().map(times).fold((0.0, 0.0), |(i, r), (bi, br)| (i + bi, r + br));
            if import > 0.0 { revm / import } else { 0.0 }
        };
        let mut miss_reasons = BTreeMap::new();
        for t in &all {
            if let Some(m) = &t.miss {
                *miss_reasons.entry(m.clone()).or_default() += 1;
            }
        }
        let heard = all.iter().filter(|t| t.class != Class::NotHeard).count();
        let hits = all.iter().filter(|t| t.is_hit()).count();
        let pre_executions: usize = blocks.iter().map(|b| b.pre_executions).sum();
        let mut pre_execution_results = BTreeMap::new();
        for (k, v) in blocks.iter().flat_map(|b| &b.pre_execution_results) {
            *pre_execution_results.entry(k.clone()).or_default() += v;
        }
        let ready: usize = blocks.iter().map(|b| b.programs_ready).sum();
        let compile_ms = sorted(blocks.iter().flat_map(|b| b.compile_ms.iter().copied()).collect());
        let code_bytes = sorted(blocks.iter().flat_map(|b| b.code_bytes.iter().map(|&c| c as f64)).collect());
        Self {
            blocks: blocks.len(),
            txs: all.len(),
            heard,
            hits_perfect: count(Class::HitPerfect),
            hits_imperfect: count(Class::HitImperfect),
            missed: count(Class::Missed),
            not_heard: count(Class::NotHeard),
            not_preexecuted: count(Class::NotPreExecuted),
            divergences: blocks.iter().map(|b| b.divergences.len()).sum(),
            hit_rate_heard: if heard == 0 { 0.0 } else { hits as f64 / heard as f64 },
            speedup_hits,
            speedup_hits_cached: weighted(&|t| t.is_hit(), &|t| t.revm_cached_ns, &|t| t.cost_ns()),
            speedup_heard: ratio(&|t| t.class != Class::NotHeard),
            speedup_all: ratio(&|_| true),
            speedup_hits_median: percentile(&evaluator_per_hit, 0.5),
            speedup_hits_p10: percentile(&evaluator_per_hit, 0.1),
            speedup_hits_p90: percentile(&evaluator_per_hit, 0.9),
            block_speedup: block_ratio(&|b| (b.import_ms, b.revm_ms)),
            miss_reasons,
            pre_executions,
            pre_execution_results,
            pre_execution_ms_mean: blocks.iter().map(|b| b.pre_execution_ms).sum::<f64>()
                / pre_executions.max(1) as f64,
            build_ms_mean: blocks.iter().map(|b| b.build_ms).sum::<f64>() / ready.max(1) as f64,
            bytes_per_program: blocks.iter().map(|b| b.store_bytes).sum::<usize>() as f64 / ready.max(1) as f64,
            programs_ready: ready,
            programs_late: blocks.iter().map(|b| b.programs_late).sum(),
            heard_share: options.heard,
            disagreements: blocks.iter().map(|b| b.disagreements.len()).sum(),
            speedup_evaluator: speedup_hits,
            speedup_jit: weighted(&|t| t.is_hit(), &|t| t.revm_ns, &|t| t.native_cost_ns()),
            speedup_jit_median: percentile(&native_per_hit, 0.5),
            speedup_jit_p10: percentile(&native_per_hit, 0.1),
            block_speedup_jit: block_ratio(&|b| (b.import_native_ms, b.revm_native_ms)),
            native_programs: compile_ms.len(),
            not_compiled: blocks.iter().map(|b| b.not_compiled).sum(),
            compile_ms_p50: percentile(&compile_ms, 0.5),
            compile_ms_p99: percentile(&compile_ms, 0.99),
            code_bytes_median: percentile(&code_bytes, 0.5),
            native_skeletons: blocks
                .iter()
                .flat_map(|b| b.skeletons.iter())
                .collect::<std::collections::HashSet<_>>()
                .len(),
            access_list_recall: {
                let (hit, actual) =
                    blocks.iter().fold((0, 0), |(h, a), b| (h + b.access_list.hit, a + b.access_list.actual));
                hit as f64 / actual.max(1) as f64
            },
            access_list_precision: {
                let (hit, predicted) =
                    blocks.iter().fold((0, 0), |(h, p), b| (h + b.access_list.hit, p + b.access_list.predicted));
                hit as f64 / predicted.max(1) as f64
            },
        }
    }
}

/// The `p` quantile of `sorted` (nearest rank; 0 when empty).
fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted.get(((sorted.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or(0.0)
}

/// Writes the report into `dir`: `summary.json`, `blocks.json`, `report.md` and its plots.
pub fn write_report(dir: &std::path::Path, summary: &Summary, blocks: &[BlockResult]) -> Result<()> {
    use std::fmt::Write as _;
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("summary.json"), serde_json::to_string_pretty(summary)?)?;
    std::fs::write(dir.join("blocks.json"), serde_json::to_string(blocks)?)?;
    let explained: Vec<&String> = blocks.iter().flat_map(|b| &b.explained).collect();
    if !explained.is_empty() {
        let text = explained.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n");
        std::fs::write(dir.join("misses.md"), format!("# Misses of heard transactions\n\n{text}"))?;
    }
    // Speedup CDF over hits, time-weighted (each hit weighs its revm time).
    let points: Vec<(f64, f64)> = blocks
        .iter()
        .flat_map(|b| &b.txs)
        .filter(|t| t.is_hit() && t.fast_ns > 0.0)
        .map(|t| (t.revm_ns / t.fast_ns, t.revm_ns))
        .collect();
    let unweighted: Vec<(f64, f64)> = points.iter().map(|(x, _)| (*x, 1.0)).collect();
    let series = [
        crate::plot::Series { name: "weighted by revm time", points },
        crate::plot::Series { name: "per transaction", points: unweighted },
    ];
    std::fs::write(
        dir.join("speedup-cdf.svg"),
        crate::plot::cdf("Per-transaction speedup on hits (revm time / fast-path time)", "speedup", &series, true),
    )?;
    let categories: Vec<&str> = Class::ALL.iter().map(|c| c.name()).collect();
    let rows: Vec<(String, Vec<f64>)> = blocks
        .iter()
        .map(|b| (b.number.to_string(), Class::ALL.iter().map(|c| b.count(*c) as f64).collect()))
        .collect();
    std::fs::write(
        dir.join("outcomes.svg"),
        crate::plot::stacked_bars("Outcome shares per block", &categories, &rows),
    )?;
    let txs: Vec<&TxResult> = blocks.iter().flat_map(|b| &b.txs).collect();
    let sum = |f: &dyn Fn(&TxResult) -> f64| txs.iter().map(|t| f(t)).sum::<f64>() / 1e6;
    let time = vec![
        ("revm: every transaction".to_string(), sum(&|t| t.revm_ns)),
        ("prescient: hits (evaluation)".to_string(), sum(&|t| if t.is_hit() { t.fast_ns } else { 0.0 })),
        ("prescient: misses (failed evaluation)".to_string(), sum(&|t| if t.is_hit() { 0.0 } else { t.fast_ns })),
        ("prescient: misses and unheard (revm)".to_string(), sum(&|t| if t.is_hit() { 0.0 } else { t.revm_ns })),
    ];
    std::fs::write(
        dir.join("time.svg"),
        crate::plot::hbars("Where the time goes (per-transaction sums)", "ms", &time),
    )?;

    let mut md = String::new();
    let _ = writeln!(md, "# prescient evaluate\n");
    let _ = writeln!(
        md,
        "{} blocks, {} transactions, {:.0}% heard (simulated share {}). Divergences from sequential revm: **{}**.\n",
        summary.blocks,
        summary.txs,
        100.0 * summary.heard as f64 / summary.txs.max(1) as f64,
        summary.heard_share,
        summary.divergences
    );
    let _ = writeln!(md, "| outcome | transactions | share |\n|---|---:|---:|");
    for (name, n) in [
        ("perfect hit", summary.hits_perfect),
        ("imperfect hit", summary.hits_imperfect),
        ("predicted, missed", summary.missed),
        ("not pre-executed in time", summary.not_preexecuted),
        ("not heard", summary.not_heard),
    ] {
        let _ = writeln!(md, "| {name} | {n} | {:.2}% |", 100.0 * n as f64 / summary.txs.max(1) as f64);
    }
    let _ = writeln!(
        md,
        "\nHits among heard transactions: **{:.2}%**.\n\n| speedup (time-weighted, vs sequential revm) | |\n|---|---:|\n| on hits | {:.2}x |\n| on hits, against revm with a precompile cache | {:.2}x |\n| on heard transactions | {:.2}x |\n| on all transactions | {:.2}x |\n| whole-block import | {:.2}x |\n| per hit: median / p10 / p90 | {:.2}x / {:.2}x / {:.2}x |\n",
        100.0 * summary.hit_rate_heard,
        summary.speedup_hits,
        summary.speedup_hits_cached,
        summary.speedup_heard,
        summary.speedup_all,
        summary.block_speedup,
        summary.speedup_hits_median,
        summary.speedup_hits_p10,
        summary.speedup_hits_p90
    );
    let _ = writeln!(
        md,
        "Pre-executions: {} ({:.3} ms each on average); programs ready before their block: {}, finished too late: {}; merge and compile {:.3} ms per program; {:.0} store bytes per program.\n",
        summary.pre_executions,
        summary.pre_execution_ms_mean,
        summary.programs_ready,
        summary.programs_late,
        summary.build_ms_mean,
        summary.bytes_per_program
    );
    let _ = writeln!(
        md,
        "Native code (Cranelift): {} programs compiled ({} distinct skeletons), {} left to the evaluator; compile p50 {:.2} ms, p99 {:.2} ms; median code {:.0} bytes; disagreements with the evaluator or revm: **{}**.\n\n| speedup with native code (time-weighted, vs sequential revm) | evaluator | native |\n|---|---:|---:|\n| on hits | {:.2}x | {:.2}x |\n| whole-block import | {:.2}x | {:.2}x |\n| per hit: median / p10 | {:.2}x / {:.2}x | {:.2}x / {:.2}x |\n",
        summary.native_programs,
        summary.native_skeletons,
        summary.not_compiled,
        summary.compile_ms_p50,
        summary.compile_ms_p99,
        summary.code_bytes_median,
        summary.disagreements,
        summary.speedup_evaluator,
        summary.speedup_jit,
        summary.block_speedup,
        summary.block_speedup_jit,
        summary.speedup_hits_median,
        summary.speedup_hits_p10,
        summary.speedup_jit_median,
        summary.speedup_jit_p10
    );
    let _ = writeln!(
        md,
        "Predicted access list (accounts and slots the ready programs read or wrote, against what the transactions touched): recall {:.1}%, precision {:.1}%.\n",
        summary.access_list_recall * 100.0,
        summary.access_list_precision * 100.0
    );
    let _ = writeln!(md, "Misses by reason: {:?}\n", summary.miss_reasons);
    let _ = writeln!(md, "Pre-executions by result: {:?}\n", summary.pre_execution_results);
    let _ = writeln!(md, "![speedup CDF](speedup-cdf.svg)\n\n![outcomes](outcomes.svg)\n\n![time](time.svg)\n");
    let _ = writeln!(
        md,
        "| block | txs | heard | hits | hit % of heard | import ms | revm ms | ratio |\n|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for b in blocks {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {:.1}% | {:.3} | {:.3} | {:.2}x |",
            b.number,
            b.txs.len(),
            b.heard(),
            b.hits(),
            b.hit_percent(),
            b.import_ms,
            b.revm_ms,
            b.import_ratio()
        );
    }
    std::fs::write(dir.join("report.md"), md)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use revm::state::AccountInfo;

    use super::*;

    /// A Cancun parent view: block 20,000,000, base fee 7.
    fn cancun_view() -> ParentView {
        ParentView {
            number: 20_000_000,
            basefee: 7,
            gas_limit: 30_000_000,
            blob: None,
            parent_timestamp: 1_700_000_000,
            difficulty: U256::ZERO,
            cfg: mempool_tap::recorded::chain::cfg_for(SpecId::CANCUN, 1),
        }
    }

    #[test]
    fn heard_shares_follow_the_option_and_do_not_depend_on_position() {
        let hashes: Vec<B256> = (0..20_000u32).map(|i| keccak256(i.to_be_bytes())).collect();
        for share in [0.6, 0.95] {
            let heard = hashes.iter().filter(|h| unit(h, b"heard") < share).count() as f64 / hashes.len() as f64;
            assert!((heard - share).abs() < 0.02, "{heard} vs {share}");
        }
        // Arrival order is unrelated to position: the first half of the list arrives as often
        // first as the second half.
        let early = |range: std::ops::Range<usize>| {
            hashes[range].iter().filter(|h| unit(h, b"arrival") > 0.5).count() as f64 / 10_000.0
        };
        assert!((early(0..10_000) - early(10_000..20_000)).abs() < 0.03);
    }

    #[test]
    fn predicted_contexts_come_from_the_parent_view_alone() {
        let view = cancun_view();
        let candidates = [Address::with_last_byte(1), Address::with_last_byte(2)];
        let contexts = view.contexts(&candidates);
        // Next slot with each candidate, then a missed slot.
        let times: Vec<u64> = contexts.iter().map(|c| c.timestamp.to::<u64>()).collect();
        assert_eq!(times, vec![1_700_000_012, 1_700_000_012, 1_700_000_024]);
        let recipients: Vec<Address> = contexts.iter().map(|c| c.beneficiary).collect();
        assert_eq!(recipients, vec![candidates[0], candidates[1], candidates[0]]);
        for c in &contexts {
            assert_eq!((c.number, c.basefee, c.gas_limit), (U256::from(20_000_000), 7, 30_000_000));
            // Randomness is unknown before the block: one fixed stand-in.
            assert_eq!(c.prevrandao, Some(B256::repeat_byte(0x5a)));
        }
        assert_eq!(view.next_slot_with(Address::with_last_byte(9)).beneficiary, Address::with_last_byte(9));
    }

    #[test]
    fn fee_recipients_never_include_the_blocks_own() {
        let a = |b: u8| Address::with_last_byte(b);
        let others = [(100, a(1)), (101, a(2)), (102, a(1)), (5_000_000, a(9))];
        let candidates = fee_recipient_candidates(&others, 101, 2);
        assert_eq!(candidates, vec![a(1), a(9)], "most frequent near ones; the block's own (2) left out");
        assert!(fee_recipient_candidates(&[(7, a(3))], 7, 3).is_empty());
    }

    #[test]
    fn a_candidate_absent_from_the_recording_gets_its_account_from_another_block_never_this_ones() {
        let a = |b: u8| Address::with_last_byte(b);
        let account = |balance: u64| PreAccount { balance: U256::from(balance), nonce: 1, ..Default::default() };
        // Recipient 1 received the fees of blocks 100 and 102; recipient 2 of block 101 alone.
        let recorded = [(100, a(1), Some(account(10))), (101, a(2), Some(account(20))), (102, a(1), Some(account(12)))];
        let others: Vec<(u64, Address)> = recorded.iter().map(|(n, r, _)| (*n, *r)).collect();
        let known = KnownRecipients::for_block(&others, 101, 3).with_accounts(&recorded, 101);
        assert!(!known.accounts.contains_key(&a(2)), "the block's own recipient, as its own block recorded it");
        assert_eq!(known.accounts[&a(1)].balance, U256::from(10), "the nearest other block's first (100 before 102)");

        // Recipient 1 is absent from this block's recording: added. One the block holds keeps
        // the block's own account.
        let mut db = InMemoryDB::default();
        db.insert_account_info(a(3), AccountInfo { balance: U256::from(7), ..Default::default() });
        let mut known = known;
        known.accounts.insert(a(3), account(99));
        let state = known.pre_execution_state(&db);
        let balance = |db: &InMemoryDB, who| db.cache.accounts.get(&who).map(|acc| acc.info.balance);
        assert_eq!(balance(&state, a(1)), Some(U256::from(10)));
        assert_eq!(balance(&state, a(3)), Some(U256::from(7)));
        assert_eq!(balance(&db, a(1)), None, "the import's state is left alone");
    }

    #[test]
    fn the_worker_never_pre_executes_with_a_transaction_before_it_arrived() {
        let view = cancun_view();
        let (alice, bob) = (Address::with_last_byte(0xa), Address::with_last_byte(0xb));
        let transfer = |caller: Address| TxEnv {
            caller,
            kind: revm::primitives::TxKind::Call(Address::with_last_byte(0xc)),
            gas_limit: 21_000,
            gas_price: 10,
            chain_id: Some(1),
            ..Default::default()
        };
        let (a, b) = (transfer(alice), transfer(bob));
        let (ha, hb) = (B256::repeat_byte(1), B256::repeat_byte(2));
        let pipeline = Pipeline::new(PipelineConfig::default());
        pipeline.admit(ha, a.clone(), 100);
        pipeline.admit(hb, b.clone(), 500);
        let mut db = InMemoryDB::default();
        for who in [alice, bob] {
            db.insert_account_info(who, AccountInfo { balance: U256::from(10u64.pow(18)), ..Default::default() });
        }
        let mut worker = Worker {
            pipeline: &pipeline,
            db: &db,
            view: &view,
            deadline_ms: 10_000.0,
            clock_ms: 0.0,
            attempted: HashSet::new(),
            used_futures: HashMap::new(),
            arrivals: HashMap::from([((alice, 0), 100), ((bob, 0), 500)]),
            touched: Default::default(),
            from_the_future: 0,
        };
        let mut result = BlockResult::default();
        let ctx = view.next_slot_with(Address::with_last_byte(0xf));
        // At 200 ms Bob's transaction is not heard yet: a future holding it is refused.
        worker.run(ha, std::slice::from_ref(&b), &ctx, 200.0, &mut result);
        assert_eq!((worker.from_the_future, result.pre_executions), (1, 0));
        assert!(!worker.attempted.contains(&ha));
        // Once it has arrived, the same future runs.
        worker.run(ha, std::slice::from_ref(&b), &ctx, 600.0, &mut result);
        assert_eq!((worker.from_the_future, result.pre_executions), (1, 1));
        assert!(worker.attempted.contains(&ha));
        assert!(worker.clock_ms >= 600.0, "never before its event");
    }

    #[test]
    fn payout_senders_are_the_pools_batch_senders() {
        let a = |b: u8| Address::with_last_byte(b);
        let mut pending = vec![a(1); PAYOUT_BATCH];
        pending.extend(vec![a(2); PAYOUT_BATCH - 1]);
        pending.push(a(3));
        let payouts = payout_senders(pending.into_iter());
        assert_eq!(payouts, HashSet::from([a(1)]));
        assert!(payout_senders(std::iter::empty()).is_empty());
    }
}
