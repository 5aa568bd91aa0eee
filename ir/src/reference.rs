//! The reference executor: plain sequential revm over a block.
//!
//! This is the oracle of the whole project. Every fast path (IR interpreter, JIT, parallel
//! fallback, the block executor) is compared against what this module produces on the same
//! state and context. It therefore does nothing clever: one revm instance, one transaction
//! after another, each committed before the next one runs, exactly as `transact_commit`.
//!
//! ```text
//!   CfgEnv + BlockEnv ─┐
//!   TxEnv₀ … TxEnvₙ ───┼─▶ revm::transact ─▶ TxOutcome ─┬─▶ commit ─▶ next tx
//!   state (Database) ──┘                                └─▶ receipt (cumulative gas, bloom)
//!                                                             │
//!                                       BlockOutcome ◀────────┘ (gas used, receipts root, bloom)
//! ```

use std::time::{Duration, Instant};

use alloy::consensus::{
    Eip658Value, Receipt, ReceiptEnvelope, ReceiptWithBloom, TxType, proofs::calculate_receipt_root,
};
use alloy::primitives::{Bloom, logs_bloom as logs_bloom_of};
use revm::{
    Context, Database, DatabaseCommit, ExecuteEvm, MainBuilder, MainContext,
    context::{BlockEnv, CfgEnv, ContextTr, TxEnv, result::EVMError},
    handler::{MainnetContext, MainnetEvm},
    primitives::B256,
};

use crate::outcome::TxOutcome;

/// The one place that builds a revm EVM (mainnet handler and precompiles) for a state, chain
/// rules and a block: the reference executor, the tracer, pre-execution and the block
/// executor all run this EVM, so they cannot drift apart in configuration.
pub fn evm<DB: Database>(db: DB, cfg: &CfgEnv, block: &BlockEnv) -> MainnetEvm<MainnetContext<DB>> {
    Context::mainnet().with_db(db).with_cfg(cfg.clone()).with_block(block.clone()).build_mainnet()
}

/// [`evm`] with an inspector (the tracer).
pub fn evm_with_inspector<DB: Database, I>(
    db: DB,
    cfg: &CfgEnv,
    block: &BlockEnv,
    inspector: I,
) -> MainnetEvm<MainnetContext<DB>, I> {
    Context::mainnet()
        .with_db(db)
        .with_cfg(cfg.clone())
        .with_block(block.clone())
        .build_mainnet_with_inspector(inspector)
}

/// What sequential revm produced for one block.
#[derive(Clone, Debug)]
pub struct BlockOutcome {
    /// One outcome per transaction, in block order.
    pub txs: Vec<TxOutcome>,
    /// One receipt per transaction, in block order (status receipts, as from Byzantium on).
    pub receipts: Vec<ReceiptEnvelope>,
    /// Sum of the transactions' receipt gas.
    pub gas_used: u64,
    /// Union of the receipts' blooms.
    pub logs_bloom: Bloom,
    /// Root of the receipts trie. Meaningful from Byzantium on: earlier receipts carry an
    /// intermediate state root that a transaction-only replay does not compute.
    pub receipts_root: B256,
    /// Wall time inside revm (`transact` and `commit`), excluding outcome and receipt building.
    pub exec_time: Duration,
}

/// A transaction revm refused to execute (invalid nonce, fee, or a database failure).
#[derive(Debug, thiserror::Error)]
#[error("transaction {index}: {message}")]
pub struct ReferenceError {
    /// Position of the transaction in the block.
    pub index: usize,
    /// revm's error, rendered.
    pub message: String,
    /// Whether the state backend (not the transaction) failed.
    pub is_database: bool,
}

/// Executes `txs` in order on `db`, committing each, and returns their outcomes and receipts.
///
/// On return `db` holds the post-block state (transactions only: no block reward,
/// withdrawals or system calls). A transaction revm rejects stops the block with an error,
/// as a node would reject the block.
pub fn execute_block<DB>(
    db: &mut DB,
    cfg: &CfgEnv,
    block: &BlockEnv,
    txs: &[TxEnv],
) -> Result<BlockOutcome, ReferenceError>
where
    DB: Database + DatabaseCommit,
{
    let mut exec_time = Duration::ZERO;
    let mut evm = evm(&mut *db, cfg, block);
    let mut outcomes = Vec::with_capacity(txs.len());
    for (index, tx) in txs.iter().enumerate() {
        let tx = tx.clone();
        let started = Instant::now();
        let res = evm.transact(tx).map_err(|e| ReferenceError {
            index,
            is_database: matches!(e, EVMError::Database(_)),
            message: e.to_string(),
        })?;
        let transacted = started.elapsed();
        let outcome = TxOutcome::from_revm(&res.result, &res.state);
        let started = Instant::now();
        evm.ctx.db_mut().commit(res.state);
        // Only revm's own work is timed: building the outcome is the oracle's bookkeeping.
        exec_time += transacted + started.elapsed();
        outcomes.push(outcome);
    }
    drop(evm);

    let types: Vec<u8> = txs.iter().map(|tx| tx.tx_type).collect();
    let Receipts { receipts, gas_used, logs_bloom, receipts_root } = receipts(&outcomes, &types);
    Ok(BlockOutcome { txs: outcomes, receipts, gas_used, logs_bloom, receipts_root, exec_time })
}

/// The receipts of a block's outcomes, with what the header commits to.
#[derive(Clone, Debug)]
pub struct Receipts {
    /// One receipt per transaction, in block order.
    pub receipts: Vec<ReceiptEnvelope>,
    /// Sum of the transactions' receipt gas.
    pub gas_used: u64,
    /// Union of the receipts' blooms.
    pub logs_bloom: Bloom,
    /// Root of the receipts trie.
    pub receipts_root: B256,
}

/// Builds the receipts of `outcomes`, whose transactions have the EIP-2718 type bytes `types`.
pub fn receipts(outcomes: &[TxOutcome], types: &[u8]) -> Receipts {
    receipts_with(outcomes, types, logs_bloom_of)
}

/// [`receipts`] with each receipt's bloom from `bloom_of` (which must compute what
/// `alloy::primitives::logs_bloom` does: the block executor passes hashes remembered from
/// pre-execution, [`crate::bloom`]).
pub fn receipts_with<'a>(
    outcomes: &'a [TxOutcome],
    types: &[u8],
    mut bloom_of: impl FnMut(&'a [alloy::primitives::Log]) -> Bloom,
) -> Receipts {
    let mut gas_used = 0u64;
    let mut logs_bloom = Bloom::ZERO;
    let receipts: Vec<ReceiptEnvelope> = outcomes
        .iter()
        .zip(types)
        .map(|(outcome, ty)| {
            gas_used += outcome.gas_used;
            let receipt = Receipt {
                status: Eip658Value::Eip658(outcome.status.is_success()),
                cumulative_gas_used: gas_used,
                logs: outcome.logs.clone(),
            };
            // Each receipt's bloom is computed once (a block may carry ten thousand logs).
            let bloom = bloom_of(&outcome.logs);
            logs_bloom.accrue_bloom(&bloom);
            // revm accepted the transaction, so its type byte is one alloy knows.
            let ty = TxType::try_from(*ty).unwrap_or(TxType::Legacy);
            ReceiptEnvelope::from_typed(ty, ReceiptWithBloom { receipt, logs_bloom: bloom })
        })
        .collect();
    let receipts_root = calculate_receipt_root(&receipts);
    Receipts { receipts, gas_used, logs_bloom, receipts_root }
}

/// Initializes precompile state that revm loads lazily (the KZG trusted setup, about 2 s),
/// so that it is not charged to the first Cancun block that calls the point evaluation.
pub fn warm_up() {
    use revm::precompile::kzg_point_evaluation::{kzg_to_versioned_hash, run};
    // A well-formed input whose versioned hash matches its commitment reaches the proof
    // check, which loads the setup. The proof itself is invalid; the error is expected.
    let mut input = [0u8; 192];
    input[96] = 0xc0; // the compressed point at infinity
    let hash = kzg_to_versioned_hash(&input[96..144]);
    input[..32].copy_from_slice(&hash);
    let _rejected = run(&input, u64::MAX);
}

/// Executes one transaction on `db` without committing: the reference outcome of a single
/// transaction, and the state revm would commit.
pub fn execute_tx<D>(
    db: &D,
    cfg: &CfgEnv,
    block: &BlockEnv,
    tx: &TxEnv,
) -> Result<(TxOutcome, revm::state::EvmState), ReferenceError>
where
    D: revm::DatabaseRef,
    D::Error: revm::database_interface::DBErrorMarker,
{
    let mut evm = evm(revm::database_interface::WrapDatabaseRef(db), cfg, block);
    let res = evm.transact(tx.clone()).map_err(|e| ReferenceError {
        index: 0,
        is_database: matches!(e, EVMError::Database(_)),
        message: e.to_string(),
    })?;
    Ok((TxOutcome::from_revm(&res.result, &res.state), res.state))
}
