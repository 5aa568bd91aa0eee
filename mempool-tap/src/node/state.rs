//! The node's state at a block, read over JSON-RPC, as a revm [`DatabaseRef`].
//!
//! ```text
//!   StateView(block) ── basic_ref / storage_ref / block_hash_ref ──▶ RpcState caches (LRU)
//!        │ (sync: call from a blocking thread)                          │ miss
//!        └─ prefetch(accounts, slots) ── one JSON-RPC batch ──────────▶ NodeClient
//! ```
//!
//! - **Caches.** Accounts and slots are cached per (block, key) and block hashes per number,
//!   in bounded LRUs. A cache entry is a once-cell: concurrent readers of the same key wait
//!   for one request instead of sending their own (deduplication).
//! - **Batching.** An account is one batch of `eth_getBalance`, `eth_getTransactionCount` and
//!   `eth_getCode`; [`RpcState::prefetch`] loads many accounts and slots in batches of
//!   [`PREFETCH_BATCH`] calls.
//! - **Existence.** JSON-RPC cannot tell an existing empty account from an absent one; both
//!   read as absent. That is exact from EIP-161 (Spurious Dragon) on, where every rule that
//!   looks at existence treats empty accounts as absent; the view is not meant for older rules.
//! - **Reorgs.** Entries are keyed by block number: call [`RpcState::clear`] when the chain
//!   under a number changes.

use std::{
    collections::BTreeMap,
    num::NonZeroUsize,
    sync::{Arc, Mutex, MutexGuard},
};

use alloy::primitives::U64;
use jsonrpsee::rpc_params;
use lru::LruCache;
use revm::{
    DatabaseRef,
    database_interface::DBErrorMarker,
    primitives::{Address, B256, Bytes, KECCAK_EMPTY, U256, keccak256},
    state::{AccountInfo, Bytecode},
};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::{runtime::Handle, sync::OnceCell};

use super::client::{NodeClient, NodeError};
use crate::recorded::{PreAccount, PreState};

/// Calls per prefetch batch.
pub const PREFETCH_BATCH: usize = 300;

/// A state read that failed: the node's error, rendered (revm needs `Clone`-free errors).
#[derive(Debug, Clone, thiserror::Error)]
#[error("state read failed: {0}")]
pub struct StateError(pub NodeError);

impl DBErrorMarker for StateError {}

type Cell<T> = Arc<OnceCell<T>>;
/// Accounts by (block, address).
type AccountCache = Mutex<LruCache<(u64, Address), Cell<Option<AccountInfo>>>>;

/// Cache sizes, in entries.
#[derive(Clone, Copy, Debug)]
pub struct CacheSizes {
    /// Accounts (balance, nonce, code).
    pub accounts: usize,
    /// Storage slots.
    pub slots: usize,
    /// Block hashes.
    pub block_hashes: usize,
}

impl Default for CacheSizes {
    fn default() -> Self {
        Self { accounts: 100_000, slots: 1_000_000, block_hashes: 8_192 }
    }
}

/// Shared caches over one node connection; hand out [`StateView`]s at given blocks.
pub struct RpcState {
    client: Arc<NodeClient>,
    handle: Handle,
    accounts: AccountCache,
    slots: Mutex<LruCache<(u64, Address, U256), Cell<U256>>>,
    hashes: Mutex<LruCache<u64, Cell<B256>>>,
}

impl std::fmt::Debug for RpcState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcState").field("node", &self.client.url()).finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn cell<K: std::hash::Hash + Eq, T>(cache: &Mutex<LruCache<K, Cell<T>>>, key: K) -> Cell<T> {
    lock(cache).get_or_insert(key, || Arc::new(OnceCell::new())).clone()
}

fn nonzero(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n.max(1)).expect("max(1) is not zero")
}

fn decode<T: DeserializeOwned>(method: &str, v: Value) -> Result<T, StateError> {
    serde_json::from_value(v)
        .map_err(|e| StateError(NodeError::Decode { method: method.to_string(), message: e.to_string() }))
}

fn block_tag(block: u64) -> String {
    format!("{block:#x}")
}

fn account_from(balance: U256, nonce: u64, code: Bytes) -> Option<AccountInfo> {
    if code.is_empty() {
        // Empty and absent read the same over JSON-RPC (see the module docs).
        (balance != U256::ZERO || nonce != 0).then(|| AccountInfo {
            balance,
            nonce,
            code_hash: KECCAK_EMPTY,
            ..Default::default()
        })
    } else {
        let hash = keccak256(&code);
        Some(AccountInfo::new(balance, nonce, hash, Bytecode::new_raw(code)))
    }
}

impl RpcState {
    /// Caches over `client`; `handle` runs the requests of the synchronous [`StateView`].
    pub fn new(client: Arc<NodeClient>, handle: Handle, sizes: CacheSizes) -> Arc<Self> {
        Arc::new(Self {
            client,
            handle,
            accounts: Mutex::new(LruCache::new(nonzero(sizes.accounts))),
            slots: Mutex::new(LruCache::new(nonzero(sizes.slots))),
            hashes: Mutex::new(LruCache::new(nonzero(sizes.block_hashes))),
        })
    }

    /// The node connection.
    pub fn client(&self) -> &Arc<NodeClient> {
        &self.client
    }

    /// A read-only view of the state after block `block`.
    pub fn view(self: &Arc<Self>, block: u64) -> StateView {
        StateView { state: self.clone(), block, log: None }
    }

    /// Forgets everything (the chain was reorganized or the node restarted).
    pub fn clear(&self) {
        lock(&self.accounts).clear();
        lock(&self.slots).clear();
        lock(&self.hashes).clear();
    }

    /// Entries cached: accounts, slots, block hashes.
    pub fn cached(&self) -> (usize, usize, usize) {
        (lock(&self.accounts).len(), lock(&self.slots).len(), lock(&self.hashes).len())
    }

    /// The account at `address` after `block`; `None` when it is absent or empty.
    pub async fn account(&self, block: u64, address: Address) -> Result<Option<AccountInfo>, StateError> {
        let cell = cell(&self.accounts, (block, address));
        let got = cell
            .get_or_try_init(|| async {
                metrics::counter!(crate::metrics::STATE_FETCHES, "kind" => "account").increment(1);
                let tag = block_tag(block);
                let answers = self
                    .client
                    .batch(vec![
                        ("eth_getBalance", rpc_params![address, tag.clone()]),
                        ("eth_getTransactionCount", rpc_params![address, tag.clone()]),
                        ("eth_getCode", rpc_params![address, tag]),
                    ])
                    .await
                    .map_err(StateError)?;
                let mut it = answers.into_iter();
                let mut next = |method: &str| -> Result<Value, StateError> {
                    it.next()
                        .ok_or_else(|| {
                            StateError(NodeError::Decode { method: method.into(), message: "missing answer".into() })
                        })?
                        .map_err(StateError)
                };
                let balance: U256 = decode("eth_getBalance", next("eth_getBalance")?)?;
                let nonce: U64 = decode("eth_getTransactionCount", next("eth_getTransactionCount")?)?;
                let code: Bytes = decode("eth_getCode", next("eth_getCode")?)?;
                Ok::<_, StateError>(account_from(balance, nonce.to(), code))
            })
            .await?;
        Ok(got.clone())
    }

    /// The value of `slot` of `address` after `block`.
    pub async fn storage(&self, block: u64, address: Address, slot: U256) -> Result<U256, StateError> {
        let cell = cell(&self.slots, (block, address, slot));
        let got = cell
            .get_or_try_init(|| async {
                metrics::counter!(crate::metrics::STATE_FETCHES, "kind" => "slot").increment(1);
                let value: U256 = self
                    .client
                    .call("eth_getStorageAt", rpc_params![address, B256::from(slot), block_tag(block)])
                    .await
                    .map_err(StateError)?;
                Ok::<_, StateError>(value)
            })
            .await?;
        Ok(*got)
    }

    /// The hash of block `number`.
    pub async fn block_hash(&self, number: u64) -> Result<B256, StateError> {
        let cell = cell(&self.hashes, number);
        let got = cell
            .get_or_try_init(|| async {
                metrics::counter!(crate::metrics::STATE_FETCHES, "kind" => "block_hash").increment(1);
                let block: Value = self
                    .client
                    .call("eth_getBlockByNumber", rpc_params![block_tag(number), false])
                    .await
                    .map_err(StateError)?;
                let hash = block.get("hash").cloned().ok_or_else(|| {
                    StateError(NodeError::Decode {
                        method: "eth_getBlockByNumber".into(),
                        message: format!("no block {number}"),
                    })
                })?;
                decode::<B256>("eth_getBlockByNumber", hash)
            })
            .await?;
        Ok(*got)
    }

    /// Loads what is not cached yet of `accounts` and `slots` after `block`, in batches.
    /// Returns how many entries were fetched. Keys repeated in the input are fetched once.
    pub async fn prefetch(
        &self,
        block: u64,
        accounts: &[Address],
        slots: &[(Address, U256)],
    ) -> Result<usize, StateError> {
        enum Want {
            Account(Cell<Option<AccountInfo>>),
            Slot(Cell<U256>),
        }
        let mut wants = Vec::new();
        let mut seen_accounts = std::collections::HashSet::new();
        for &address in accounts {
            let c = cell(&self.accounts, (block, address));
            if !c.initialized() && seen_accounts.insert(address) {
                wants.push((Want::Account(c), address, None));
            }
        }
        let mut seen_slots = std::collections::HashSet::new();
        for &(address, slot) in slots {
            let c = cell(&self.slots, (block, address, slot));
            if !c.initialized() && seen_slots.insert((address, slot)) {
                wants.push((Want::Slot(c), address, Some(slot)));
            }
        }
        let fetched = wants.len();
        let tag = block_tag(block);
        // An account is three calls; keep each batch near PREFETCH_BATCH calls.
        for chunk in wants.chunks(PREFETCH_BATCH / 3) {
            let mut calls = Vec::with_capacity(chunk.len() * 3);
            for (want, address, slot) in chunk {
                match want {
                    Want::Account(..) => {
                        calls.push(("eth_getBalance", rpc_params![address, tag.clone()]));
                        calls.push(("eth_getTransactionCount", rpc_params![address, tag.clone()]));
                        calls.push(("eth_getCode", rpc_params![address, tag.clone()]));
                    }
                    Want::Slot(_) => {
                        let slot = B256::from(slot.unwrap_or_default());
                        calls.push(("eth_getStorageAt", rpc_params![address, slot, tag.clone()]));
                    }
                }
            }
            metrics::counter!(crate::metrics::STATE_PREFETCHED).increment(chunk.len() as u64);
            let mut answers = self.client.batch(calls).await.map_err(StateError)?.into_iter();
            for (want, ..) in chunk {
                match want {
                    Want::Account(c) => {
                        let (Some(b), Some(n), Some(code)) = (answers.next(), answers.next(), answers.next()) else {
                            break;
                        };
                        // A failed entry is left for the read that needs it to retry.
                        if let (Ok(b), Ok(n), Ok(code)) = (b, n, code) {
                            let balance: U256 = decode("eth_getBalance", b)?;
                            let nonce: U64 = decode("eth_getTransactionCount", n)?;
                            let code: Bytes = decode("eth_getCode", code)?;
                            let _already = c.set(account_from(balance, nonce.to(), code));
                        }
                    }
                    Want::Slot(c) => {
                        if let Some(Ok(v)) = answers.next() {
                            let _already = c.set(decode::<U256>("eth_getStorageAt", v)?);
                        }
                    }
                }
            }
        }
        Ok(fetched)
    }
}

/// What a view read, with the values it got: the pre-state of whatever ran on it.
#[derive(Clone, Debug, Default)]
pub struct ReadLog {
    /// Accounts read, `None` for absent ones.
    pub accounts: BTreeMap<Address, Option<AccountInfo>>,
    /// Slots read, by account.
    pub storage: BTreeMap<Address, BTreeMap<U256, U256>>,
    /// Block hashes read.
    pub block_hashes: BTreeMap<u64, B256>,
}

impl ReadLog {
    /// The reads as a recording's pre-state (absent accounts left out; slots of an absent
    /// account dropped, as they read zero).
    pub fn to_pre_state(&self) -> PreState {
        let mut pre = PreState::new();
        for (address, info) in &self.accounts {
            let Some(info) = info else { continue };
            let code = info.code.clone().filter(|c| !c.is_empty());
            let storage = self.storage.get(address).cloned().unwrap_or_default();
            pre.insert(*address, PreAccount { balance: info.balance, nonce: info.nonce, code, storage });
        }
        pre
    }

    /// Accounts and slots read, as prefetch keys.
    pub fn keys(&self) -> (Vec<Address>, Vec<(Address, U256)>) {
        let accounts = self.accounts.keys().copied().collect();
        let slots = self.storage.iter().flat_map(|(a, s)| s.keys().map(move |k| (*a, *k))).collect();
        (accounts, slots)
    }
}

/// The state after one block, read through [`RpcState`]. Synchronous: use it from a
/// blocking thread (`spawn_blocking`), never from an async task.
#[derive(Clone)]
pub struct StateView {
    state: Arc<RpcState>,
    block: u64,
    log: Option<Arc<Mutex<ReadLog>>>,
}

impl std::fmt::Debug for StateView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateView").field("block", &self.block).finish_non_exhaustive()
    }
}

impl StateView {
    /// The block whose post-state this view reads.
    pub fn block(&self) -> u64 {
        self.block
    }

    /// The same view, also logging every value it reads.
    pub fn logging(mut self) -> (Self, Arc<Mutex<ReadLog>>) {
        let log = Arc::new(Mutex::new(ReadLog::default()));
        self.log = Some(log.clone());
        (self, log)
    }

    fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.state.handle.block_on(f)
    }
}

impl DatabaseRef for StateView {
    type Error = StateError;

    fn basic_ref(&self, address: Address) -> Result<Option<AccountInfo>, Self::Error> {
        let info = self.block_on(self.state.account(self.block, address))?;
        if let Some(log) = &self.log {
            lock(log).accounts.insert(address, info.clone());
        }
        Ok(info)
    }

    fn code_by_hash_ref(&self, code_hash: B256) -> Result<Bytecode, Self::Error> {
        // Accounts carry their code, so revm asks for code by hash only for the empty hash.
        if code_hash == KECCAK_EMPTY {
            return Ok(Bytecode::default());
        }
        Err(StateError(NodeError::Decode {
            method: "code_by_hash".into(),
            message: format!("code {code_hash} was not loaded with its account"),
        }))
    }

    fn storage_ref(&self, address: Address, index: U256) -> Result<U256, Self::Error> {
        let value = self.block_on(self.state.storage(self.block, address, index))?;
        if let Some(log) = &self.log {
            lock(log).storage.entry(address).or_default().insert(index, value);
        }
        Ok(value)
    }

    fn block_hash_ref(&self, number: u64) -> Result<B256, Self::Error> {
        let hash = self.block_on(self.state.block_hash(number))?;
        if let Some(log) = &self.log {
            lock(log).block_hashes.insert(number, hash);
        }
        Ok(hash)
    }
}
