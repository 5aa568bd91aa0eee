//! The second baseline of `prescient evaluate`: revm with a precompile-result cache, as reth
//! runs it (reth's `CachedPrecompile`: results kept by precompile, rules and input, filled by
//! earlier executions of the same calls, e.g. its prewarming of a payload's transactions).
//!
//! A call is served from the cache when the same precompile was called under the same rules
//! with the same input and the same gas (so the interpreter result, gas left included, is
//! the one a fresh call returns). Only successful results are kept: a failing call sets
//! error context on the frame, which a cached result would not. Not a product path; a
//! measurement of what a node gets today without prescient.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use revm::{
    Database, MainBuilder, MainContext,
    context::{BlockEnv, Cfg, CfgEnv, Context, ContextTr, Evm},
    handler::{EthFrame, EthPrecompiles, PrecompileProvider, instructions::EthInstructions},
    interpreter::{CallInputs, InterpreterResult, interpreter::EthInterpreter},
    primitives::{Address, AddressSet, Bytes, hardfork::SpecId},
};

/// The most results kept; the cache is emptied when it is full (a bound, not a policy).
const MAX_ENTRIES: usize = 1 << 16;

type Key = (Address, SpecId, u64, u64, Bytes);

/// Precompile results shared by every EVM built with it.
#[derive(Clone, Debug, Default)]
pub struct PrecompileCache {
    results: Arc<Mutex<HashMap<Key, InterpreterResult>>>,
}

impl PrecompileCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, InterpreterResult>> {
        self.results.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// revm's precompiles behind a [`PrecompileCache`].
#[derive(Debug)]
pub struct CachedPrecompiles {
    inner: EthPrecompiles,
    cache: PrecompileCache,
}

impl<CTX: ContextTr> PrecompileProvider<CTX> for CachedPrecompiles {
    type Output = InterpreterResult;

    fn set_spec(&mut self, spec: <CTX::Cfg as Cfg>::Spec) -> bool {
        <EthPrecompiles as PrecompileProvider<CTX>>::set_spec(&mut self.inner, spec)
    }

    fn run(&mut self, context: &mut CTX, inputs: &CallInputs) -> Result<Option<InterpreterResult>, String> {
        if !self.inner.contains(&inputs.bytecode_address) {
            return Ok(None);
        }
        let input = Bytes::copy_from_slice(&inputs.input.as_bytes(context));
        let key = (inputs.bytecode_address, self.inner.spec, inputs.gas_limit, inputs.reservoir, input);
        if let Some(hit) = self.cache.lock().get(&key) {
            return Ok(Some(hit.clone()));
        }
        let result = <EthPrecompiles as PrecompileProvider<CTX>>::run(&mut self.inner, context, inputs)?;
        if let Some(r) = result.as_ref().filter(|r| r.result.is_ok()) {
            let mut results = self.cache.lock();
            if results.len() >= MAX_ENTRIES {
                results.clear();
            }
            results.insert(key, r.clone());
        }
        Ok(result)
    }

    fn warm_addresses(&self) -> &AddressSet {
        self.inner.warm_addresses()
    }

    fn contains(&self, address: &Address) -> bool {
        self.inner.contains(address)
    }
}

/// The EVM of [`ir::reference::evm`] with its precompiles behind `cache`.
pub fn cached_evm<DB: Database>(
    db: DB,
    cfg: &CfgEnv,
    block: &BlockEnv,
    cache: &PrecompileCache,
) -> Evm<
    revm::handler::MainnetContext<DB>,
    (),
    EthInstructions<EthInterpreter, revm::handler::MainnetContext<DB>>,
    CachedPrecompiles,
    EthFrame,
> {
    let evm = Context::mainnet().with_db(db).with_cfg(cfg.clone()).with_block(block.clone()).build_mainnet();
    let spec = cfg.spec;
    evm.with_precompiles(CachedPrecompiles { inner: EthPrecompiles::new(spec), cache: cache.clone() })
}

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
    use revm::ExecuteEvm;
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
