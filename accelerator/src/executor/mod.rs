//! The block executor: imports a block through the fast path, transaction by transaction.
//!
//! ```text
//!   for tx in block:
//!     accelerated(tx.hash) ── walk the merged tree on the current state ──▶ Hit(outcome) ─▶ apply outcome
//!                                                                        └▶ Miss         ─▶ revm transact ─▶ commit
//!   ⇒ outcomes, receipts (as sequential revm builds them), per-transaction path
//! ```
//!
//! A hit is applied exactly as revm's commit would apply the same state (an [`Applied`]
//! holds every touched account's final info and every changed slot as flat lists, and
//! [`Applied::commit_to`] writes them into the `CacheDB` as `CacheDB::commit` writes revm's
//! `EvmState`, with the code of touched accounts, which a node's state knows only through
//! the account), so the state after a hit is the state after
//! executing the transaction, for a later miss as much as for a later hit. The oracle's
//! [`TxOutcome`] of each transaction is built only when the caller keeps outcomes (to verify
//! or report them): a node's import builds nothing a node would not build. Misses run in revm, one
//! after another. [`verify_against_reference`] re-runs the block in sequential revm and
//! compares every transaction's outcome in full: the shadow import and the tests use it.

//! **The executors' home.** Three executors import a block, and all three are reached from
//! here:
//! - the **reference**, sequential revm ([`execute_block`], [`execute_tx`]), which lives in
//!   `ir::reference` because the oracle, below every tier, needs it;
//! - the **program-first import** ([`import_block`]), here;
//! - the **parallel fallback** (Block-STM family, [`parallel`]); its tests and the shadow
//!   import compare it with the reference through `oracle::compare_block`.
//!
//! Every executor builds its EVM with `ir::reference::evm`, and commits a hit with
//! `Applied::commit_to`.

mod ahead;
pub mod latency;
pub mod parallel;
pub mod precompiles;
pub mod system;

pub use ir::reference::{execute_block, execute_tx};

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use ir::{
    Applied, Receipts, TxOutcome,
    backend::AccountRead,
    compact::PrecompileMemo,
    interp::{Evaluation, FUEL, MissReason, evaluate},
};

pub use crate::store::{Accelerated, BlockPrograms};
use revm::{
    DatabaseRef, ExecuteCommitEvm, ExecuteEvm,
    context::{BlockEnv, CfgEnv, ContextTr, TxEnv, result::EVMError},
    database::CacheDB,
    database_interface::DBErrorMarker,
    handler::{MainnetContext, MainnetEvm},
    primitives::{Address, B256, U256},
    state::{AccountInfo, Bytecode},
};
use serde::Serialize;

/// One transaction to import.
#[derive(Clone, Debug)]
pub struct ImportTx {
    /// The transaction hash (the key of its programs). It must be the hash of the
    /// transaction `env` was built from: the import trusts it, and uses the programs
    /// predicted for this hash, whose outcome is that transaction's. A caller that cannot
    /// vouch for it derives it from the signed body, as `prescient_executeBlock` does (and
    /// refuses a block whose given hash differs).
    pub hash: B256,
    /// The transaction as revm executes it.
    pub env: TxEnv,
}

/// How a transaction was imported.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "path")]
pub enum TxPath {
    /// A program's guards held: its outcome was applied.
    Hit {
        /// Which of the transaction's programs hit.
        program: usize,
        /// Through the read-set memo: every input equalled a pre-execution's, whose outcome
        /// was applied with no computation (Forerunner's perfect hit).
        perfect: bool,
    },
    /// Programs existed but none held; revm executed the transaction.
    Miss {
        /// Why the last program tried missed.
        reason: ImportMiss,
    },
    /// No program for the transaction; revm executed it.
    NoProgram,
}

impl TxPath {
    /// Short name for metrics: `perfect_hit` (through the read-set memo), `hit`, `miss` or
    /// `no_program`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Hit { perfect: true, .. } => "perfect_hit",
            Self::Hit { .. } => "hit",
            Self::Miss { .. } => "miss",
            Self::NoProgram => "no_program",
        }
    }
}

/// Why a transaction with programs ran in revm. A value to the edge: reports and metrics
/// use its [`name`](ImportMiss::name).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ImportMiss {
    /// The program missed (a guard failed, or it could not run).
    Program(MissReason),
    /// The program hit, but the code of an account it touched was not to be found, so its
    /// outcome could not be committed as revm would: discarded.
    CodeUnknown,
}

impl ImportMiss {
    /// Short name for reports and metrics (`guard:alias`, `code-unknown`, …).
    pub const fn name(self) -> &'static str {
        match self {
            Self::Program(reason) => reason.name(),
            Self::CodeUnknown => "code-unknown",
        }
    }
}

impl Serialize for ImportMiss {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

/// What importing a block produced.
#[derive(Clone, Debug)]
pub struct Import {
    /// One outcome per transaction, in block order, when the import was asked to keep them
    /// (empty otherwise).
    pub outcomes: Vec<TxOutcome>,
    /// One path per transaction, in block order.
    pub paths: Vec<TxPath>,
    /// Receipts, gas, bloom and receipts root.
    pub receipts: Receipts,
    /// Transactions without a program committed from their execution ahead on the receipts
    /// thread (see [`import_block_ahead`]; their path is [`TxPath::NoProgram`]).
    pub ahead: usize,
    /// Wall time of the whole import (evaluation, revm for misses, commits).
    pub time: Duration,
}

impl Import {
    /// Transactions imported through a program.
    pub fn hits(&self) -> usize {
        self.paths.iter().filter(|p| matches!(p, TxPath::Hit { .. })).count()
    }

    /// Misses and transactions without a program, by reason.
    pub fn misses(&self) -> BTreeMap<String, usize> {
        let mut by = BTreeMap::new();
        for p in &self.paths {
            match p {
                TxPath::Hit { .. } => {}
                TxPath::Miss { reason } => *by.entry(reason.name().to_string()).or_default() += 1,
                TxPath::NoProgram => *by.entry("no-program".to_string()).or_default() += 1,
            }
        }
        by
    }
}

/// revm refused a transaction of the block, or the state failed.
#[derive(Debug, thiserror::Error)]
#[error("transaction {index} ({hash}): {kind}: {message}")]
pub struct ImportError {
    /// Position in the block.
    pub index: usize,
    /// The transaction's hash.
    pub hash: B256,
    /// Which class of failure.
    pub kind: ImportErrorKind,
    /// What went wrong.
    pub message: String,
}

/// The class of an [`ImportError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImportErrorKind {
    /// revm rejects the transaction on this state: the block is invalid.
    Rejected,
    /// The state backend failed (a node outage, say): nothing is known about the block.
    Database,
    /// The receipts builder failed (a bug): the block's state is imported, its receipts
    /// are not.
    Receipts,
}

impl std::fmt::Display for ImportErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Rejected => "invalid transaction",
            Self::Database => "state",
            Self::Receipts => "receipts",
        })
    }
}

impl ImportError {
    /// Whether the state backend failed rather than the block being invalid: a caller may
    /// retry, and should report a node error, not an invalid block.
    pub fn is_database(&self) -> bool {
        self.kind == ImportErrorKind::Database
    }
}

/// The code `hash` names at `address`, from what `db` already holds or can give through
/// the account: the cached account, the cached contracts, the backend's account, and only
/// then the backend's code-by-hash (which a node's state view refuses). `None` when none of
/// them has it.
pub fn known_code<D: DatabaseRef>(db: &CacheDB<D>, address: &Address, hash: B256) -> Option<Bytecode> {
    let with_hash = |info: &AccountInfo| info.code.clone().filter(|_| info.code_hash == hash);
    if let Some(code) = db.cache.accounts.get(address).and_then(|a| with_hash(&a.info)) {
        return Some(code);
    }
    if let Some(code) = db.cache.contracts.get(&hash) {
        return Some(code.clone());
    }
    if let Some(info) = db.db.basic_ref(*address).ok().flatten().filter(|info| info.code_hash == hash) {
        // The backend's own account names this hash: its code by that hash is what revm
        // would load and run for it, unverified as revm takes it (hashing a 24 KB contract
        // at every first touch in a block cost more than a hit).
        return info.code.or_else(|| db.db.code_by_hash_ref(hash).ok());
    }
    db.db.code_by_hash_ref(hash).ok().filter(|code| code.hash_slow() == hash)
}

/// Imports `txs` on `db` in order: a program's outcome when one holds, revm otherwise.
/// `programs` gives each transaction's accelerated program, by position (looked up before the
/// import, so that the import reads only memory; one looked up for another hash is not used,
/// see [`BlockPrograms`]); `memo` holds
/// precompile results; `keep_outcomes` keeps every transaction's [`TxOutcome`] in the result (to verify
/// or report it; building it is the oracle's bookkeeping, not an import's work); `native`
/// runs trees as native code where compiled ([`apply_accelerated_at`]). On return `db` holds
/// the post-block state (transactions only, as [`ir::execute_block`]).
#[allow(clippy::too_many_arguments)]
pub fn import_block<D>(
    db: &mut CacheDB<D>,
    cfg: &CfgEnv,
    block: &BlockEnv,
    txs: &[ImportTx],
    programs: &BlockPrograms,
    memo: Option<&PrecompileMemo>,
    keep_outcomes: bool,
    native: bool,
) -> Result<Import, ImportError>
where
    D: DatabaseRef,
    D::Error: DBErrorMarker,
{
    import_block_ahead(db, None::<&revm::database::EmptyDB>, cfg, block, txs, programs, memo, keep_outcomes, native)
}

/// [`import_block`], with the transactions that have no program executed ahead on the
/// receipts thread on `pre_block` (a view of the state the block starts from), and committed
/// from there when what they read still holds at their turn ([`ahead`]; `Import::ahead`
/// counts them). The view only decides how often that pays: what is committed is checked
/// against `db`.
#[allow(clippy::too_many_arguments)]
pub fn import_block_ahead<D, S>(
    db: &mut CacheDB<D>,
    pre_block: Option<&S>,
    cfg: &CfgEnv,
    block: &BlockEnv,
    txs: &[ImportTx],
    programs: &BlockPrograms,
    memo: Option<&PrecompileMemo>,
    keep_outcomes: bool,
    native: bool,
) -> Result<Import, ImportError>
where
    D: DatabaseRef,
    D::Error: DBErrorMarker,
    S: DatabaseRef + Sync,
    S::Error: DBErrorMarker,
{
    let started = Instant::now();
    // Most transactions touch two or three accounts the block has not touched yet: room
    // for them now, rather than the cache's table growing (and rehashing) along the block.
    db.cache.accounts.reserve(txs.len() * 2);
    // The programs of the next transactions are prefetched in stages while this one runs
    // (see `Accelerated::prefetch_header`).
    let program = |index: usize| txs.get(index).and_then(|tx| programs.get(index, &tx.hash));
    let ahead = pre_block.and_then(|view| ahead::Ahead::new(cfg, block, txs, view, |i| program(i).is_none()));
    let mut side = ahead.as_ref().map(|ahead| move || ahead.step());
    let mut committed_ahead = 0;
    // Receipts are built beside the import, leaf by leaf (`ir::receipts`), with blooms from the
    // hashes pre-execution remembered (`ir::bloom`): the same bits as building them after.
    let (imported, receipts) = ir::receipts::build_while(
        txs.len(),
        |logs| ir::bloom::MEMO.logs_bloom(logs),
        side.as_mut().map(|side| side as &mut (dyn FnMut() -> bool + Send)),
        |receipt| -> Result<_, ImportError> {
            let mut outcomes = Vec::with_capacity(if keep_outcomes { txs.len() } else { 0 });
            let mut paths = Vec::with_capacity(txs.len());
            // One result, reused by every transaction: a hit fills it in place.
            let mut applied = Applied::new();
            let mut state = ImportState::Plain(&mut *db);
            for (index, tx) in txs.iter().enumerate() {
                if let Some(p) = program(index + 4) {
                    p.prefetch_header();
                }
                if let Some(p) = program(index + 3) {
                    p.prefetch_tree_header();
                }
                if let Some(p) = program(index + 2) {
                    p.prefetch_own();
                }
                if let Some(p) = program(index + 1) {
                    p.prefetch_skeleton();
                }
                let accelerated = program(index);
                let executed = match (&ahead, accelerated) {
                    (Some(ahead), None) => ahead.take(index),
                    _ => None,
                };
                let committed = executed
                    .and_then(|executed| ahead::commit_if_valid(state.db(), cfg, block, tx, executed, keep_outcomes));
                let path = match committed {
                    Some((result, outcome)) => {
                        outcomes.extend(outcome);
                        applied.set_result(result);
                        committed_ahead += 1;
                        TxPath::NoProgram
                    }
                    None => {
                        let keep = keep_outcomes.then_some(&mut outcomes);
                        import_tx(&mut state, cfg, block, index, tx, accelerated, memo, keep, native, &mut applied)?
                    }
                };
                receipt(ir::receipts::ReceiptInput {
                    ty: tx.env.tx_type,
                    success: applied.status.is_success(),
                    gas_used: applied.gas_used,
                    logs: std::mem::take(&mut applied.logs),
                    logs_bloom: applied.logs_bloom.map(Box::new),
                });
                paths.push(path);
            }
            Ok((outcomes, paths))
        },
    );
    let (outcomes, paths) = imported?;
    // Every transaction pushed its receipt, so the builder has the whole block; `None` means
    // the receipts thread failed, and the kept outcomes (if any) rebuild them here.
    let receipts = match receipts {
        Some(receipts) => receipts,
        None if keep_outcomes => {
            let types: Vec<u8> = txs.iter().map(|t| t.env.tx_type).collect();
            ir::receipts_with(&outcomes, &types, |logs| ir::bloom::MEMO.logs_bloom(logs))
        }
        None => {
            return Err(ImportError {
                index: txs.len(),
                hash: B256::ZERO,
                kind: ImportErrorKind::Receipts,
                message: "the receipts builder failed".into(),
            });
        }
    };
    Ok(Import { outcomes, paths, receipts, ahead: committed_ahead, time: started.elapsed() })
}

/// An import's state, and the EVM its misses and transactions without a program run in: built
/// over the state at the first of them and kept to the block's end. Building one for each
/// (its journal's tables, its instruction table) cost about as much as executing a plain
/// transfer; a block of hits builds none. Between transactions the EVM's journal holds
/// nothing, and the state is reached through it: hits and commits from ahead write to it
/// directly.
enum ImportState<'db, D: DatabaseRef> {
    Plain(&'db mut CacheDB<D>),
    Evm(Box<MainnetEvm<MainnetContext<&'db mut CacheDB<D>>>>),
    /// Only inside [`ImportState::evm`], while the state moves into the EVM.
    Moving,
}

impl<'db, D: DatabaseRef> ImportState<'db, D> {
    /// The state.
    fn db(&mut self) -> &mut CacheDB<D> {
        match self {
            Self::Plain(db) => db,
            Self::Evm(evm) => evm.ctx.db_mut(),
            Self::Moving => unreachable!("the state is moving only inside `evm`"),
        }
    }

    /// The EVM over the state, built at the first call.
    fn evm(&mut self, cfg: &CfgEnv, block: &BlockEnv) -> &mut MainnetEvm<MainnetContext<&'db mut CacheDB<D>>> {
        if let Self::Plain(_) = self {
            let Self::Plain(db) = std::mem::replace(self, Self::Moving) else { unreachable!("matched above") };
            *self = Self::Evm(Box::new(ir::reference::evm(db, cfg, block)));
        }
        match self {
            Self::Evm(evm) => evm,
            Self::Plain(_) | Self::Moving => unreachable!("built above"),
        }
    }
}

/// Imports one transaction on `state`: its program's result when one holds (committed as revm
/// would commit it), revm otherwise. Returns how; `applied` holds the result without its state
/// (moved into the state), and `outcomes`, when given, gets the oracle's outcome of what was
/// committed.
#[allow(clippy::too_many_arguments)]
fn import_tx<D>(
    state: &mut ImportState<'_, D>,
    cfg: &CfgEnv,
    block: &BlockEnv,
    index: usize,
    tx: &ImportTx,
    accelerated: Option<&Accelerated>,
    memo: Option<&PrecompileMemo>,
    outcomes: Option<&mut Vec<TxOutcome>>,
    native: bool,
    applied: &mut Applied,
) -> Result<TxPath, ImportError>
where
    D: DatabaseRef,
    D::Error: DBErrorMarker,
{
    let db = state.db();
    let mut path = match accelerated {
        Some(accelerated) => apply_accelerated_into(accelerated, &*db, cfg, block, memo, native, applied),
        None => TxPath::NoProgram,
    };
    // A hit is committed as revm would commit it, with the code of every account it
    // touched (see `Applied::commit_to`). Code that cannot be found is a miss.
    let mut outcomes = outcomes;
    if matches!(path, TxPath::Hit { .. }) {
        let outcome = outcomes.is_some().then(|| applied.outcome());
        match applied.commit_to(db, known_code) {
            Ok(()) => {
                if let (Some(outcomes), Some(outcome)) = (outcomes, outcome) {
                    outcomes.push(outcome);
                }
                return Ok(path);
            }
            Err(address) => {
                tracing::warn!(%address, tx = %tx.hash, "hit discarded: code of a touched account unknown");
                path = TxPath::Miss { reason: ImportMiss::CodeUnknown };
            }
        }
    }
    let evm = state.evm(cfg, block);
    let res = evm.transact(tx.env.clone()).map_err(|e| {
        let kind = match e {
            EVMError::Database(_) => ImportErrorKind::Database,
            _ => ImportErrorKind::Rejected,
        };
        let message = match e {
            EVMError::Database(e) => e.to_string(),
            other => other.to_string(),
        };
        ImportError { index, hash: tx.hash, kind, message }
    })?;
    if let Some(outcomes) = outcomes.as_mut() {
        outcomes.push(TxOutcome::from_revm(&res.result, &res.state));
    }
    evm.commit(res.state);
    applied.set_result(res.result);
    Ok(path)
}

/// Runs a transaction's accelerated program: its read sets first (a perfect hit applies a
/// pre-execution's outcome without computing), then the merged tree in the compact
/// evaluator, or (when it did not compile, or was merged under other chain rules) each
/// program in the reference interpreter. The oracle's form of [`apply_accelerated`].
pub fn run_accelerated<D: AccountRead>(
    accelerated: &Accelerated,
    db: &D,
    cfg: &CfgEnv,
    block: &BlockEnv,
    memo: Option<&PrecompileMemo>,
) -> (TxPath, Option<TxOutcome>) {
    let (path, applied) = apply_accelerated(accelerated, db, cfg, block, memo);
    (path, applied.map(|a| a.outcome()))
}

/// [`run_accelerated`], the hit in the form a commit takes: what an import runs. The tree
/// runs as native code once the background compiler has built it ([`crate::tiering`]), in
/// the compact evaluator until then.
pub fn apply_accelerated<D: AccountRead>(
    accelerated: &Accelerated,
    db: &D,
    cfg: &CfgEnv,
    block: &BlockEnv,
    memo: Option<&PrecompileMemo>,
) -> (TxPath, Option<Applied>) {
    apply_accelerated_at(accelerated, db, cfg, block, memo, true)
}

/// [`apply_accelerated`], with native code used only when `native` (the evaluator's column
/// of `prescient evaluate` runs the same programs without it).
pub fn apply_accelerated_at<D: AccountRead>(
    accelerated: &Accelerated,
    db: &D,
    cfg: &CfgEnv,
    block: &BlockEnv,
    memo: Option<&PrecompileMemo>,
    native: bool,
) -> (TxPath, Option<Applied>) {
    let mut applied = Applied::new();
    let path = apply_accelerated_into(accelerated, db, cfg, block, memo, native, &mut applied);
    let hit = matches!(path, TxPath::Hit { .. });
    (path, hit.then_some(applied))
}

/// [`apply_accelerated_at`] into `out`, which holds the hit when the path is one (and means
/// nothing otherwise): what an import runs, with one result reused across its transactions.
pub fn apply_accelerated_into<D: AccountRead>(
    accelerated: &Accelerated,
    db: &D,
    cfg: &CfgEnv,
    block: &BlockEnv,
    memo: Option<&PrecompileMemo>,
    native: bool,
    out: &mut Applied,
) -> TxPath {
    if accelerated.programs.is_empty() {
        return TxPath::NoProgram;
    }
    // The read sets, first filtered on what their entries keep inline (their memory is
    // cold at import: touching one that fails costs more than its reads).
    let mut probed: Option<(Address, Option<U256>)> = None;
    for entry in &accelerated.read_sets {
        if entry.recipient.is_some_and(|r| r != block.beneficiary) {
            continue;
        }
        if let Some((address, balance)) = entry.probe {
            if probed.as_ref().is_none_or(|(a, _)| *a != address) {
                probed = Some((
                    address,
                    db.account_fields(address).ok().map(|f| f.map_or(U256::ZERO, |(balance, ..)| balance)),
                ));
            }
            if probed.as_ref().and_then(|(_, b)| *b) != Some(balance) {
                continue;
            }
        }
        if entry.reads.check_into(db, cfg, block, out) {
            return TxPath::Hit { program: entry.program, perfect: true };
        }
    }
    // The tree holds the programs of the newest one's chain rules; programs recorded under
    // other rules (futures across a fork boundary) are interpreted when those rules apply.
    let tree_applies = |c: &ir::compact::Compiled| c.env().spec == cfg.spec && c.env().chain_id == cfg.chain_id;
    if let Some(compiled) = accelerated.compiled.as_ref().filter(|c| tree_applies(c)) {
        // Only looked at when asked for: the slot is an allocation of its own, a cache miss
        // on every hit (6% of an import of transfers in a profile) when read to be dropped.
        let code = if native { accelerated.native.get() } else { None };
        let evaluated = match code {
            Some(code) => code.native().evaluate_into(db, cfg, block, memo, out),
            None => compiled.evaluate_into(db, cfg, block, memo, out),
        };
        return match evaluated {
            Ok(program) => {
                // The tree holds the programs newest first.
                let program = accelerated.programs.len() - 1 - program.min(accelerated.programs.len() - 1);
                TxPath::Hit { program, perfect: false }
            }
            Err(miss) => TxPath::Miss { reason: ImportMiss::Program(miss.reason) },
        };
    }
    let mut path = TxPath::NoProgram;
    for (i, program) in accelerated.programs.iter().enumerate() {
        match evaluate(program, db, cfg, block, FUEL) {
            Evaluation::Hit(outcome) => {
                out.set_outcome(outcome);
                return TxPath::Hit { program: i, perfect: false };
            }
            Evaluation::Miss(miss) => path = TxPath::Miss { reason: ImportMiss::Program(miss.reason) },
        }
    }
    path
}

/// One transaction whose imported outcome differs from sequential revm's.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Divergence {
    /// Position in the block.
    pub index: usize,
    /// The transaction's hash.
    pub hash: B256,
    /// How it was imported.
    pub path: TxPath,
    /// The first differing field, in words.
    pub difference: String,
}

/// Re-runs the block in sequential revm on `db` (the same pre-state the import started from)
/// and compares every transaction's outcome in full. Returns the divergences and how long
/// revm took.
pub fn verify_against_reference<D>(
    db: &mut CacheDB<D>,
    cfg: &CfgEnv,
    block: &BlockEnv,
    txs: &[ImportTx],
    import: &Import,
) -> Result<(Vec<Divergence>, Duration), ImportError>
where
    D: DatabaseRef,
    D::Error: DBErrorMarker,
{
    let envs: Vec<TxEnv> = txs.iter().map(|t| t.env.clone()).collect();
    let started = Instant::now();
    let reference = ir::execute_block(db, cfg, block, &envs).map_err(|e| ImportError {
        index: e.index,
        hash: txs.get(e.index).map(|t| t.hash).unwrap_or_default(),
        kind: if e.is_database { ImportErrorKind::Database } else { ImportErrorKind::Rejected },
        message: e.message,
    })?;
    let time = started.elapsed();
    // The oracle's block comparison: every transaction in full, and the count.
    let mut divergences: Vec<Divergence> = oracle::compare_block(&import.outcomes, &reference.txs)
        .into_iter()
        .map(|(index, difference)| Divergence {
            index,
            hash: txs.get(index).map(|t| t.hash).unwrap_or_default(),
            path: import.paths.get(index).cloned().unwrap_or(TxPath::NoProgram),
            difference,
        })
        .collect();
    let receipts_differ = reference.receipts_root != import.receipts.receipts_root
        || reference.logs_bloom != import.receipts.logs_bloom
        || reference.gas_used != import.receipts.gas_used;
    if receipts_differ && divergences.is_empty() {
        divergences.push(Divergence {
            index: txs.len(),
            hash: B256::ZERO,
            path: TxPath::NoProgram,
            difference: "receipts root, bloom or gas differs while every outcome is equal".into(),
        });
    }
    Ok((divergences, time))
}

/// The first difference between two block states over the same backend, or `None`: every
/// account and slot either one holds must read the same in the other (existence, balance,
/// nonce, code hash, value). This is the whole state change of the block, as a node would
/// write it.
pub fn first_state_difference<A, B>(ours: &CacheDB<A>, theirs: &CacheDB<B>) -> Option<String>
where
    A: DatabaseRef,
    B: DatabaseRef,
    A::Error: std::fmt::Display,
    B::Error: std::fmt::Display,
{
    let info = |i: Option<AccountInfo>| i.map(|i| (i.balance, i.nonce, i.code_hash));
    for address in ours.cache.accounts.keys().chain(theirs.cache.accounts.keys()) {
        let (a, b) = match (ours.basic_ref(*address), theirs.basic_ref(*address)) {
            (Ok(a), Ok(b)) => (info(a), info(b)),
            (Err(e), _) => return Some(format!("account {address}: {e}")),
            (_, Err(e)) => return Some(format!("account {address}: {e}")),
        };
        if a != b {
            return Some(format!("account {address}: {a:?} against {b:?}"));
        }
        let cached = [ours.cache.accounts.get(address), theirs.cache.accounts.get(address)];
        for key in cached.into_iter().flatten().flat_map(|a| a.storage.keys()) {
            match (ours.storage_ref(*address, *key), theirs.storage_ref(*address, *key)) {
                (Ok(a), Ok(b)) if a == b => {}
                (Ok(a), Ok(b)) => return Some(format!("{address} slot {key:#x}: {a:#x} against {b:#x}")),
                (Err(e), _) => return Some(format!("{address} slot {key:#x}: {e}")),
                (_, Err(e)) => return Some(format!("{address} slot {key:#x}: {e}")),
            }
        }
    }
    None
}

/// A whole block executed as a node applies it ([`execute_whole_block`]).
#[derive(Clone, Debug)]
pub struct WholeBlock {
    /// Every transaction's result, in block order.
    pub results: Vec<revm::context_interface::result::ExecutionResult>,
    /// Receipts, gas, bloom and receipts root.
    pub receipts: ir::Receipts,
    /// The EIP-7685 requests the post-block calls returned (Prague on).
    pub requests: alloy::eips::eip7685::Requests,
    /// What the parallel fallback did.
    pub stats: parallel::ParallelStats,
    /// Wall time, system part included.
    pub time: Duration,
}

/// Why a whole block could not be executed.
#[derive(Debug, thiserror::Error)]
pub enum WholeBlockError {
    /// The system part before the transactions failed.
    #[error("before the transactions: {0}")]
    PreBlock(system::SystemError),
    /// A transaction was rejected (the block is invalid) or the state backend failed.
    #[error("{0}")]
    Transaction(ir::reference::ReferenceError),
    /// The import through prescient failed (an invalid transaction, the state backend).
    #[error("{0}")]
    Import(ImportError),
    /// The system part after the transactions failed.
    #[error("after the transactions: {0}")]
    PostBlock(system::SystemError),
}

/// The in-process API for a node that embeds prescient's executors: a block and its parent
/// state in, the block's results, receipts and requests out, and `db` holding the whole state
/// change (read it with `db.cache`, or compare with [`first_state_difference`]). `inputs` is
/// the block's system part (`None`: transactions only); `config.threads == 1` is sequential
/// revm.
pub fn execute_whole_block<D>(
    db: &mut CacheDB<D>,
    cfg: &CfgEnv,
    block: &BlockEnv,
    inputs: Option<&system::BlockInputs<'_>>,
    txs: &[TxEnv],
    config: &parallel::ParallelConfig,
) -> Result<WholeBlock, WholeBlockError>
where
    D: DatabaseRef + Send + Sync,
    D::Error: DBErrorMarker + std::fmt::Display,
{
    let started = Instant::now();
    let (executed, requests) = with_system_part(db, cfg, block, inputs, |db| {
        parallel::execute_parallel(db, cfg, block, txs, config).map_err(WholeBlockError::Transaction)
    })?;
    Ok(WholeBlock {
        results: executed.results,
        receipts: executed.receipts,
        requests,
        stats: executed.stats,
        time: started.elapsed(),
    })
}

/// A whole block imported through prescient ([`import_whole_block`]).
#[derive(Clone, Debug)]
pub struct AcceleratedBlock {
    /// The transactions' import: paths, receipts (outcomes when asked for).
    pub import: Import,
    /// The EIP-7685 requests the post-block calls returned (Prague on).
    pub requests: alloy::eips::eip7685::Requests,
    /// Wall time, system part included.
    pub time: Duration,
}

/// [`execute_whole_block`] with the transactions imported through their accelerated programs
/// ([`import_block`]: a program's outcome where its guards hold, revm otherwise): `programs`
/// by position, `memo` the precompile results, `native` runs compiled trees natively;
/// `pre_block`, a view of the parent state, lets transactions without a program execute ahead
/// ([`import_block_ahead`]).
#[allow(clippy::too_many_arguments)]
pub fn import_whole_block<D, S>(
    db: &mut CacheDB<D>,
    pre_block: Option<&S>,
    cfg: &CfgEnv,
    block: &BlockEnv,
    inputs: Option<&system::BlockInputs<'_>>,
    txs: &[ImportTx],
    programs: &BlockPrograms,
    memo: Option<&PrecompileMemo>,
    native: bool,
) -> Result<AcceleratedBlock, WholeBlockError>
where
    D: DatabaseRef,
    D::Error: DBErrorMarker + std::fmt::Display,
    S: DatabaseRef + Sync,
    S::Error: DBErrorMarker,
{
    let started = Instant::now();
    let (import, requests) = with_system_part(db, cfg, block, inputs, |db| {
        import_block_ahead(db, pre_block, cfg, block, txs, programs, memo, false, native)
            .map_err(WholeBlockError::Import)
    })?;
    Ok(AcceleratedBlock { import, requests, time: started.elapsed() })
}

/// Runs the block's system part before and after `transactions` (none without `inputs`).
fn with_system_part<D, T>(
    db: &mut CacheDB<D>,
    cfg: &CfgEnv,
    block: &BlockEnv,
    inputs: Option<&system::BlockInputs<'_>>,
    transactions: impl FnOnce(&mut CacheDB<D>) -> Result<T, WholeBlockError>,
) -> Result<(T, alloy::eips::eip7685::Requests), WholeBlockError>
where
    D: DatabaseRef,
    D::Error: DBErrorMarker + std::fmt::Display,
{
    if let Some(inputs) = inputs {
        system::apply_pre_block(db, cfg, block, inputs).map_err(WholeBlockError::PreBlock)?;
    }
    let executed = transactions(db)?;
    let requests = match inputs {
        Some(inputs) => system::apply_post_block(db, cfg, block, inputs).map_err(WholeBlockError::PostBlock)?,
        None => Default::default(),
    };
    Ok((executed, requests))
}
