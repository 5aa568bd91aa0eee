//! Precompile results kept across executions: reth's `CachedPrecompile` idea (results keyed
//! by precompile, rules, gas and input).
//!
//! Two users:
//! - the parallel fallback keeps one cache per block, so a transaction executed again after a
//!   conflict (or in order after speculation stopped) does not pay again for the pairings,
//!   modexps and recoveries its speculative execution already computed: on a block whose
//!   cost is a few proof verifications touching one contract, that second execution was the
//!   whole of the block's serial part;
//! - `prescient evaluate`'s second baseline, revm as a node with such a cache runs it.
//!
//! A call is served from the cache when the same precompile was called under the same rules
//! with the same input and the same gas limit (and reservoir), so the interpreter result, gas
//! left included, is the one a fresh call returns: a precompile is a function of those. Only
//! successful results are kept: a failing call sets error context on the frame, which a
//! cached result would not. The identity precompile is never cached: copying its input is
//! its whole cost.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use revm::{
    Database, MainBuilder, MainContext,
    context::{BlockEnv, Cfg, CfgEnv, Context, ContextTr, Evm},
    handler::{EthFrame, EthPrecompiles, MainnetContext, PrecompileProvider, instructions::EthInstructions},
    interpreter::{CallInputs, InterpreterResult, interpreter::EthInterpreter},
    primitives::{Address, AddressSet, Bytes, hardfork::SpecId},
};

/// The most results kept; the cache is emptied when it is full (a bound, not a policy).
const MAX_ENTRIES: usize = 1 << 16;

/// The most input bytes kept, over all entries (emptied past it, as for [`MAX_ENTRIES`]).
const MAX_INPUT_BYTES: usize = 64 << 20;

/// The identity precompile (0x04), never cached.
const IDENTITY: Address = Address::with_last_byte(4);

type Key = (Address, SpecId, u64, u64, Bytes);

#[derive(Debug, Default)]
struct Entries {
    results: HashMap<Key, InterpreterResult>,
    input_bytes: usize,
    hits: u64,
}

/// Precompile results shared by every EVM built with it (cheap to clone: one `Arc`).
#[derive(Clone, Debug, Default)]
pub struct PrecompileCache {
    entries: Arc<Mutex<Entries>>,
}

impl PrecompileCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Calls answered from the cache so far.
    pub fn hits(&self) -> u64 {
        self.lock().hits
    }

    /// Results kept.
    pub fn len(&self) -> usize {
        self.lock().results.len()
    }

    /// Whether no result is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// revm's precompiles behind a [`PrecompileCache`].
#[derive(Debug)]
pub struct CachedPrecompiles {
    inner: EthPrecompiles,
    cache: PrecompileCache,
}

impl CachedPrecompiles {
    /// Whether `address` is a precompile under these rules.
    pub fn is_precompile(&self, address: &Address) -> bool {
        self.inner.contains(address)
    }
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
        if inputs.bytecode_address == IDENTITY {
            return <EthPrecompiles as PrecompileProvider<CTX>>::run(&mut self.inner, context, inputs);
        }
        let input = Bytes::copy_from_slice(&inputs.input.as_bytes(context));
        let key = (inputs.bytecode_address, self.inner.spec, inputs.gas_limit, inputs.reservoir, input);
        {
            let mut entries = self.cache.lock();
            if let Some(hit) = entries.results.get(&key).cloned() {
                entries.hits += 1;
                return Ok(Some(hit));
            }
        }
        let result = <EthPrecompiles as PrecompileProvider<CTX>>::run(&mut self.inner, context, inputs)?;
        if let Some(r) = result.as_ref().filter(|r| r.result.is_ok()) {
            let mut entries = self.cache.lock();
            let bytes = key.4.len();
            if entries.results.len() >= MAX_ENTRIES || entries.input_bytes + bytes > MAX_INPUT_BYTES {
                entries.results.clear();
                entries.input_bytes = 0;
            }
            if bytes <= MAX_INPUT_BYTES && entries.results.insert(key, r.clone()).is_none() {
                entries.input_bytes += bytes;
            }
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

/// The EVM [`cached_evm`] builds: revm's mainnet EVM with [`CachedPrecompiles`].
pub type CachedEvm<DB> =
    Evm<MainnetContext<DB>, (), EthInstructions<EthInterpreter, MainnetContext<DB>>, CachedPrecompiles, EthFrame>;

/// The EVM of [`ir::reference::evm`] with its precompiles behind `cache`.
pub fn cached_evm<DB: Database>(db: DB, cfg: &CfgEnv, block: &BlockEnv, cache: &PrecompileCache) -> CachedEvm<DB> {
    let evm = Context::mainnet().with_db(db).with_cfg(cfg.clone()).with_block(block.clone()).build_mainnet();
    let spec = cfg.spec;
    evm.with_precompiles(CachedPrecompiles { inner: EthPrecompiles::new(spec), cache: cache.clone() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use revm::{
        ExecuteEvm,
        context::TxEnv,
        database::{CacheDB, EmptyDB},
        primitives::{TxKind, U256},
    };

    fn call(to: u8, data: &[u8], gas_limit: u64) -> TxEnv {
        TxEnv {
            caller: Address::with_last_byte(0xaa),
            kind: TxKind::Call(Address::with_last_byte(to)),
            data: Bytes::copy_from_slice(data),
            gas_limit,
            gas_price: 0,
            ..Default::default()
        }
    }

    #[test]
    fn a_repeated_call_is_answered_from_the_cache_with_the_fresh_result() {
        let mut cfg = CfgEnv::new_with_spec(SpecId::CANCUN);
        cfg.disable_nonce_check = true;
        let block = BlockEnv { basefee: 0, ..Default::default() };
        let cache = PrecompileCache::default();
        let mut db = CacheDB::new(EmptyDB::default());
        db.insert_account_info(Address::with_last_byte(0xaa), revm::state::AccountInfo::from_balance(U256::from(1)));
        let mut run = |tx: TxEnv| {
            let mut evm = cached_evm(&mut db, &cfg, &block, &cache);
            evm.transact(tx).expect("valid transaction").result
        };
        // sha256: computed, then served from the cache, with the same output and gas.
        let first = run(call(2, b"prescient", 100_000));
        assert_eq!(cache.hits(), 0);
        assert_eq!(cache.len(), 1);
        let again = run(call(2, b"prescient", 100_000));
        assert_eq!(cache.hits(), 1);
        assert_eq!(first, again);
        // Another input or another gas limit is another key.
        run(call(2, b"prescient!", 100_000));
        run(call(2, b"prescient", 90_000));
        assert_eq!((cache.hits(), cache.len()), (1, 3));
        // The identity precompile is never kept; a failing call is not kept either (ecrecover
        // with too little gas for its fixed cost).
        run(call(4, b"prescient", 100_000));
        run(call(1, &[0; 128], 21_600));
        run(call(1, &[0; 128], 21_600));
        assert_eq!((cache.hits(), cache.len()), (1, 3));
    }
}
