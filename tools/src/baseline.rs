//! The baselines of `prescient evaluate`: sequential revm as a node runs it, and revm with a
//! precompile-result cache, as reth runs it (reth's `CachedPrecompile`: results kept by
//! precompile, rules and input, filled by earlier executions of the same calls, e.g. its
//! prewarming of a payload's transactions). The cache is the parallel fallback's
//! ([`accelerator::executor::precompiles`]). Not a product path; a measurement of what a node
//! gets today without prescient.

pub use accelerator::executor::precompiles::{PrecompileCache, cached_evm};
use revm::{
    Database,
    context::{BlockEnv, CfgEnv},
};

/// Sequential revm over a block as a node without prescient runs it: each transaction
/// transacted and committed, its receipt built from revm's result (alloy's bloom), then the
/// receipts root. The block-time baseline of `prescient evaluate`. Unlike
/// [`ir::execute_block`], which also converts every result into the oracle's
/// [`ir::TxOutcome`] for comparison, nothing is built that a node would not build. Returns
/// the receipts, or the index of a transaction revm refused.
pub fn node_block<DB: Database + revm::DatabaseCommit>(
    db: DB,
    cfg: &CfgEnv,
    block: &BlockEnv,
    txs: &[revm::context::TxEnv],
) -> Result<ir::Receipts, usize> {
    use revm::{ExecuteEvm, context::ContextTr};
    let mut evm = ir::reference::evm(db, cfg, block);
    let mut receipts = ir::receipts::ReceiptBuilder::new(txs.len(), |logs: &[alloy::primitives::Log]| {
        alloy::primitives::logs_bloom(logs)
    });
    for (index, tx) in txs.iter().enumerate() {
        let result = evm.transact(tx.clone()).map_err(|_| index)?;
        receipts.push(ir::receipts::ReceiptInput {
            ty: tx.tx_type,
            success: result.result.is_success(),
            gas_used: result.result.tx_gas_used(),
            logs: result.result.into_logs(),
            logs_bloom: None,
        });
        revm::DatabaseCommit::commit(evm.ctx.db_mut(), result.state);
    }
    receipts.finish().ok_or(txs.len())
}
