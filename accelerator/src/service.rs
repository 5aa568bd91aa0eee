//! The live pipeline behind `prescient serve`.
//!
//! ```text
//!   MempoolTap ──Pending──▶ PendingPool ──hash──▶ job queue ──▶ workers (blocking threads)
//!       │                                                        │ prefetch (learned read sets)
//!       │                                                        │ futures ─▶ pre_execute ─▶ ApStore
//!       └──Head──▶ prune pool, re-predict pending, shadow import (import ∥ sequential revm, compare)
//!   JSON-RPC ──▶ execute_block / status / fast_path / submit  (rpc.rs)
//! ```
//!
//! Pre-execution reads the node's state at the head through [`RpcState`]; imports read the
//! parent of the imported block. Nothing here blocks the async runtime: revm runs on
//! blocking threads, node reads go through the shared caches.

use std::{
    collections::BTreeMap,
    num::NonZeroUsize,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use alloy::{
    consensus::{Transaction as _, TxEnvelope, transaction::SignerRecoverable},
    eips::{Decodable2718, Encodable2718},
    rpc::types::{Block as RpcBlock, Header, Transaction as RpcTransaction},
};
use ir::{AccountChange, program::Program};
use jsonrpsee::rpc_params;
use lru::LruCache;
use mempool_tap::{
    MempoolTap, NodeClient, NodeError, RpcState, TapEvent,
    node::CacheSizes,
    recorded::{ChainRules, tx_env},
};
use revm::{
    context::{BlockEnv, CfgEnv},
    primitives::{Address, B256, Bytes, U256, hardfork::SpecId, keccak256},
};
use serde::Serialize;
use tokio::sync::{mpsc, watch};

use crate::{
    executor::{Divergence, Import, ImportTx, TxPath},
    pipeline::{ImportMode, Pipeline, PipelineConfig, lock},
};

/// Accounts and slots a call into a contract was seen to read (prefetched next time).
type ReadSet = (Vec<Address>, Vec<(Address, U256)>);

/// How the service runs.
#[derive(Clone, Debug)]
pub struct ServiceConfig {
    /// The spec of a devnet that runs one hardfork; `None` follows mainnet's schedule.
    pub hardfork: Option<SpecId>,
    /// Pre-execution workers (blocking threads).
    pub workers: usize,
    /// Pre-execution jobs queued before new ones are dropped (they are retried on the next head).
    pub queue_capacity: usize,
    /// Import every new head in shadow mode and compare with sequential revm.
    pub shadow: bool,
    /// The pipeline core's configuration (shared with `prescient eval`).
    pub pipeline: PipelineConfig,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self { hardfork: None, workers: 2, queue_capacity: 100_000, shadow: true, pipeline: PipelineConfig::default() }
    }
}

/// A failure serving a request.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The node failed or is unreachable.
    #[error(transparent)]
    Node(#[from] NodeError),
    /// The node has no such block.
    #[error("the node has no block {0}")]
    UnknownBlock(String),
    /// The node's block does not parse or check.
    #[error("block {number}: {message}")]
    BadBlock {
        /// Which block.
        number: String,
        /// What is wrong.
        message: String,
    },
    /// A transaction of the block could not be imported.
    #[error(transparent)]
    Import(#[from] crate::executor::ImportError),
    /// A blocking task failed.
    #[error("internal: {0}")]
    Internal(String),
}

#[derive(Debug, Default)]
struct Counters {
    shadow_blocks: AtomicU64,
    shadow_txs: AtomicU64,
    shadow_hits: AtomicU64,
    shadow_divergences: AtomicU64,
}

/// The live service.
pub struct Service {
    config: ServiceConfig,
    client: Arc<NodeClient>,
    state: Arc<RpcState>,
    rules: ChainRules,
    pipeline: Arc<Pipeline>,
    head: Mutex<Option<Header>>,
    jobs: mpsc::Sender<B256>,
    job_rx: tokio::sync::Mutex<mpsc::Receiver<B256>>,
    queued: AtomicUsize,
    in_flight: AtomicUsize,
    connected: AtomicBool,
    read_sets: Mutex<LruCache<Address, ReadSet>>,
    counters: Counters,
    started: Instant,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service").field("node", &self.client.url()).finish_non_exhaustive()
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// A pending transaction checked and mapped for revm.
fn checked(envelope: &TxEnvelope, sender: Address) -> (B256, revm::context::TxEnv) {
    (keccak256(envelope.encoded_2718()), tx_env(sender, envelope))
}

/// Which block a request names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockSelector {
    /// The node's latest block.
    Latest,
    /// A block number.
    Number(u64),
    /// A block hash.
    Hash(B256),
}

impl std::fmt::Display for BlockSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Latest => f.write_str("latest"),
            Self::Number(n) => write!(f, "{n}"),
            Self::Hash(h) => write!(f, "{h}"),
        }
    }
}

/// One receipt as `prescient_executeBlock` reports it.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TxReport {
    /// Transaction hash.
    pub hash: B256,
    /// How it was imported.
    #[serde(flatten)]
    pub path: TxPath,
    /// Receipt status (true = 1).
    pub status: bool,
    /// Gas used by this transaction.
    pub gas_used: u64,
    /// Cumulative gas used in the block up to and including it.
    pub cumulative_gas_used: u64,
    /// Logs emitted.
    pub logs: Vec<revm::primitives::Log>,
    /// Address a top-level creation deployed to.
    pub contract_address: Option<Address>,
}

/// An account's state after the block, for the accounts the block changed.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountReport {
    /// Balance after the block.
    pub balance: U256,
    /// Nonce after the block.
    pub nonce: u64,
    /// Code hash after the block.
    pub code_hash: B256,
    /// Whether the account was destroyed (then it reads as empty).
    pub destroyed: bool,
    /// Slots the block changed, with their values after the block.
    pub storage: BTreeMap<U256, U256>,
}

/// What `prescient_executeBlock` returns.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockReport {
    /// Block number.
    pub number: u64,
    /// Block hash.
    pub hash: B256,
    /// Gas used by the imported transactions.
    pub gas_used: u64,
    /// Receipts root of the import.
    pub receipts_root: B256,
    /// Whether gas used and receipts root equal the node's header.
    pub matches_header: bool,
    /// The node header's gas used.
    pub header_gas_used: u64,
    /// The node header's receipts root.
    pub header_receipts_root: B256,
    /// Transactions imported through a program.
    pub hits: usize,
    /// Transactions in the block.
    pub tx_count: usize,
    /// Misses by reason.
    pub misses: BTreeMap<String, usize>,
    /// Per transaction.
    pub transactions: Vec<TxReport>,
    /// Final state of every account the block changed.
    pub state: BTreeMap<Address, AccountReport>,
    /// Import wall time, in microseconds.
    pub import_micros: u64,
    /// Sequential revm's wall time on the same block, when verified.
    pub reference_micros: Option<u64>,
    /// Transactions whose outcome differs from sequential revm's (when verified; must be empty).
    pub divergences: Option<Vec<Divergence>>,
}

/// What `prescient_status` returns.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// prescient's version.
    pub version: &'static str,
    /// The node URL.
    pub node: String,
    /// Whether the tap is connected.
    pub connected: bool,
    /// Reconnections so far.
    pub reconnects: u64,
    /// Chain id.
    pub chain_id: u64,
    /// The head pre-execution works on.
    pub head: Option<u64>,
    /// Pending transactions held.
    pub pending: usize,
    /// Pre-execution jobs queued.
    pub queued: usize,
    /// Pre-execution jobs running.
    pub in_flight: usize,
    /// Transactions with programs.
    pub ap_txs: usize,
    /// Programs held.
    pub ap_programs: usize,
    /// Bytes held by programs (estimate).
    pub ap_bytes: usize,
    /// Pre-executions run.
    pub pre_executions: u64,
    /// Pre-executions that produced a new program.
    pub programs_recorded: u64,
    /// Pre-executions without a program (tracer refused).
    pub no_program: u64,
    /// Pre-executions where the transaction was invalid in its future.
    pub invalid: u64,
    /// Blocks imported in shadow mode.
    pub shadow_blocks: u64,
    /// Transactions imported in shadow mode.
    pub shadow_txs: u64,
    /// Of which hits.
    pub shadow_hits: u64,
    /// Shadow-mode divergences from sequential revm (must be 0).
    pub shadow_divergences: u64,
    /// Seconds since start.
    pub uptime_secs: u64,
}

/// One entry of `prescient_submitTransactions`' answer.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SubmitResult {
    /// The transaction hash, when it decoded.
    pub hash: Option<B256>,
    /// Whether it entered the pool (false: known already, or rejected).
    pub accepted: bool,
    /// Why it was rejected.
    pub error: Option<String>,
}

impl Service {
    /// Connects the service to `client`'s chain (reads the chain id).
    pub async fn new(client: Arc<NodeClient>, config: ServiceConfig) -> Result<Arc<Self>, ServiceError> {
        let chain_id: alloy::primitives::U64 = client.call("eth_chainId", rpc_params![]).await?;
        let chain_id = chain_id.to::<u64>();
        let rules = ChainRules {
            chain_id,
            fixed: if chain_id == 1 { config.hardfork } else { config.hardfork.or(Some(SpecId::OSAKA)) },
        };
        let state = RpcState::new(client.clone(), tokio::runtime::Handle::current(), CacheSizes::default());
        let (jobs, job_rx) = mpsc::channel(config.queue_capacity.max(1));
        Ok(Arc::new(Self {
            pipeline: Arc::new(Pipeline::new(config.pipeline)),
            read_sets: Mutex::new(LruCache::new(NonZeroUsize::new(4096).expect("nonzero"))),
            config,
            client,
            state,
            rules,
            head: Mutex::new(None),
            jobs,
            job_rx: tokio::sync::Mutex::new(job_rx),
            queued: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            connected: AtomicBool::new(false),
            counters: Counters::default(),
            started: Instant::now(),
        }))
    }

    /// The chain rules in force.
    pub fn rules(&self) -> ChainRules {
        self.rules
    }

    /// Runs the pipeline on `tap` until `shutdown` turns true or the tap ends; then waits
    /// (at most `drain`) for running pre-executions to finish.
    pub async fn run<T: MempoolTap>(self: Arc<Self>, mut tap: T, mut shutdown: watch::Receiver<bool>, drain: Duration) {
        let workers: Vec<_> = (0..self.config.workers.max(1)).map(|_| tokio::spawn(self.clone().worker())).collect();
        loop {
            tokio::select! {
                _ = shutdown.changed() => if *shutdown.borrow() { break },
                event = tap.next_event() => match event {
                    Some(event) => self.on_event(event).await,
                    None => {
                        tracing::info!("mempool tap ended; serving requests only");
                        let _ = shutdown.wait_for(|stop| *stop).await;
                        break;
                    }
                },
            }
        }
        for w in &workers {
            w.abort();
        }
        let deadline = Instant::now() + drain;
        while self.in_flight.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tracing::info!(
            pending = self.pipeline.pending_len(),
            in_flight = self.in_flight.load(Ordering::Relaxed),
            "pipeline stopped"
        );
    }

    async fn on_event(self: &Arc<Self>, event: TapEvent) {
        match event {
            TapEvent::Pending(p) => {
                let sender = p.tx.inner.signer();
                let envelope: &TxEnvelope = p.tx.inner.inner();
                let (hash, env) = checked(envelope, sender);
                if hash != *envelope.tx_hash() {
                    metrics::counter!(mempool_tap::metrics::TAP_MALFORMED).increment(1);
                    tracing::warn!(reported = %envelope.tx_hash(), computed = %hash, "pending transaction hash does not match its body");
                    return;
                }
                self.admit(hash, env, p.seen_ms);
            }
            TapEvent::Head(header) => self.on_head(*header).await,
            TapEvent::Connected { reconnect } => {
                self.connected.store(true, Ordering::Relaxed);
                if reconnect {
                    // The node may have restarted with another chain under the same numbers.
                    self.state.clear();
                }
            }
            TapEvent::Disconnected(reason) => {
                self.connected.store(false, Ordering::Relaxed);
                tracing::warn!(%reason, pending = self.pipeline.pending_len(), "node disconnected; keeping the pending pool");
            }
        }
    }

    fn admit(&self, hash: B256, env: revm::context::TxEnv, seen_ms: u64) -> bool {
        let new = self.pipeline.admit(hash, env, seen_ms);
        if new {
            self.enqueue(hash);
        }
        new
    }

    fn enqueue(&self, hash: B256) {
        // Counted before it is sent, so that a worker never sees the count below its job.
        let q = self.queued.fetch_add(1, Ordering::Relaxed).saturating_add(1);
        match self.jobs.try_send(hash) {
            Ok(()) => metrics::gauge!(crate::metrics::QUEUE_DEPTH).set(q as f64),
            Err(_) => {
                self.queued.fetch_sub(1, Ordering::Relaxed);
                metrics::counter!(crate::metrics::QUEUE_DROPPED).increment(1);
            }
        }
    }

    async fn on_head(self: &Arc<Self>, header: Header) {
        let reorg = {
            let head = lock(&self.head);
            head.as_ref().is_some_and(|h| {
                header.number <= h.number && header.hash != h.hash
                    || header.number == h.number + 1 && header.parent_hash != h.hash
            })
        };
        if reorg {
            tracing::warn!(number = header.number, hash = %header.hash, "chain reorganized under prescient; caches cleared");
            self.state.clear();
        }
        metrics::gauge!(crate::metrics::HEAD).set(header.number as f64);
        // Prune what the block included.
        match self.fetch_block(BlockSelector::Hash(header.hash)).await {
            Ok(block) => {
                let included: Vec<(Address, u64, B256)> = block
                    .transactions
                    .as_transactions()
                    .unwrap_or_default()
                    .iter()
                    .map(|t| (t.inner.signer(), t.inner.inner().nonce(), *t.inner.inner().tx_hash()))
                    .collect();
                let removed = self.pipeline.remove_included(&included);
                tracing::debug!(number = header.number, removed = removed.len(), "pruned included transactions");
            }
            Err(e) => tracing::warn!(number = header.number, error = %e, "could not read the new head's transactions"),
        }
        let number = header.number;
        *lock(&self.head) = Some(header);
        // The pending transactions now run on a new state: predict again.
        let pending = self.pipeline.pending();
        for hash in pending {
            self.enqueue(hash);
        }
        if self.config.shadow && number > 0 {
            let service = self.clone();
            tokio::spawn(async move { service.shadow_import(number).await });
        }
    }

    async fn shadow_import(&self, number: u64) {
        match self.execute_block(BlockSelector::Number(number), true).await {
            Ok(report) => {
                let divergences = report.divergences.as_ref().map_or(0, Vec::len);
                self.counters.shadow_blocks.fetch_add(1, Ordering::Relaxed);
                self.counters.shadow_txs.fetch_add(report.tx_count as u64, Ordering::Relaxed);
                self.counters.shadow_hits.fetch_add(report.hits as u64, Ordering::Relaxed);
                self.counters.shadow_divergences.fetch_add(divergences as u64, Ordering::Relaxed);
                metrics::counter!(crate::metrics::SHADOW_BLOCKS).increment(1);
                metrics::counter!(crate::metrics::SHADOW_DIVERGENCES).increment(divergences as u64);
                let rate = if report.tx_count == 0 { 0.0 } else { 100.0 * report.hits as f64 / report.tx_count as f64 };
                if divergences > 0 || !report.matches_header {
                    tracing::error!(
                        number,
                        divergences,
                        gas_used = report.gas_used,
                        header_gas_used = report.header_gas_used,
                        receipts_root = %report.receipts_root,
                        header_receipts_root = %report.header_receipts_root,
                        details = ?report.divergences,
                        paths = ?report.transactions.iter().map(|t| (t.hash, t.path.kind(), t.gas_used)).collect::<Vec<_>>(),
                        "shadow import diverged"
                    );
                } else {
                    tracing::info!(number, txs = report.tx_count, hits = report.hits, hit_rate = format!("{rate:.1}%"), misses = ?report.misses, import_us = report.import_micros, revm_us = report.reference_micros, "shadow import");
                }
            }
            Err(e) => tracing::warn!(number, error = %e, "shadow import failed"),
        }
    }

    async fn worker(self: Arc<Self>) {
        loop {
            let job = { self.job_rx.lock().await.recv().await };
            let Some(hash) = job else { return };
            let q = self.queued.fetch_sub(1, Ordering::Relaxed).saturating_sub(1);
            metrics::gauge!(crate::metrics::QUEUE_DEPTH).set(q as f64);
            self.in_flight.fetch_add(1, Ordering::Relaxed);
            let service = self.clone();
            let result = tokio::task::spawn_blocking(move || service.pre_execute_pending(hash)).await;
            self.in_flight.fetch_sub(1, Ordering::Relaxed);
            if let Err(e) = result {
                tracing::error!(%hash, error = %e, "pre-execution task failed");
            }
        }
    }

    /// The context of the block after `head`, as far as it can be predicted.
    fn next_block(&self, head: &Header) -> (CfgEnv, BlockEnv) {
        crate::pipeline::next_block_context(&self.rules, head, now_ms() / 1000)
    }

    /// Pre-executes one pending transaction under each of its futures (blocking).
    fn pre_execute_pending(&self, hash: B256) {
        let Some(head) = lock(&self.head).clone() else { return };
        let (cfg, block) = self.next_block(&head);
        let Some((tx, mut futures)) = self.pipeline.futures(&hash, block.basefee) else { return };
        // The predicted block (the last future): also run in the context of each fee recipient
        // a zero-tip transfer points at (a builder's payment). (The head's fee recipient is the
        // only one the service knows: it is the context already.)
        let main = futures.last().cloned();
        let targeted: Vec<BlockEnv> = crate::predictor::targeted_recipients(&tx.env, block.basefee, |_| false)
            .into_iter()
            .filter(|r| *r != block.beneficiary)
            .map(|beneficiary| BlockEnv { beneficiary, ..block.clone() })
            .collect();
        // Order flips need footprints: other pending transactions' programs, and this one's
        // from an earlier pre-execution (a transaction is pre-executed again at each head).
        futures.extend(self.pipeline.flip_futures(&hash, block.basefee));
        // Prefetch what this transaction and its futures will read, in a few batches.
        let mut accounts: Vec<Address> = vec![tx.env.caller, block.beneficiary];
        let mut slots: Vec<(Address, U256)> = Vec::new();
        for t in futures.iter().flatten().chain(std::iter::once(&tx.env)) {
            accounts.push(t.caller);
            if let Some(to) = t.kind.to() {
                accounts.push(*to);
                if let Some((a, s)) = lock(&self.read_sets).get(to) {
                    accounts.extend(a);
                    slots.extend(s);
                }
            }
            for item in t.access_list.iter() {
                accounts.push(item.address);
                slots.extend(item.storage_keys.iter().map(|k| (item.address, U256::from_be_bytes(k.0))));
            }
        }
        let handle = tokio::runtime::Handle::current();
        if let Err(e) = handle.block_on(self.state.prefetch(head.number, &accounts, &slots)) {
            tracing::debug!(%hash, error = %e, "prefetch failed; reads will fetch one by one");
        }
        let (view, log) = self.state.view(head.number).logging();
        self.pipeline.pre_execute(&tx, &futures, &view, &cfg, &block);
        if let Some(main) = main {
            for block in &targeted {
                self.pipeline.pre_execute(&tx, std::slice::from_ref(&main), &view, &cfg, block);
            }
        }
        if let Some(to) = tx.env.kind.to() {
            let keys = lock(&log).keys();
            lock(&self.read_sets).put(*to, keys);
        }
    }

    async fn fetch_block(&self, which: BlockSelector) -> Result<RpcBlock<RpcTransaction>, ServiceError> {
        let value: serde_json::Value = match which {
            BlockSelector::Latest => self.client.call("eth_getBlockByNumber", rpc_params!["latest", true]).await?,
            BlockSelector::Number(n) => {
                self.client.call("eth_getBlockByNumber", rpc_params![format!("{n:#x}"), true]).await?
            }
            BlockSelector::Hash(h) => self.client.call("eth_getBlockByHash", rpc_params![h, true]).await?,
        };
        if value.is_null() {
            return Err(ServiceError::UnknownBlock(which.to_string()));
        }
        serde_json::from_value(value)
            .map_err(|e| ServiceError::BadBlock { number: which.to_string(), message: e.to_string() })
    }

    /// Imports a block of the node through the fast path on its parent's state; with
    /// `verify`, also runs sequential revm and compares every transaction in full.
    pub async fn execute_block(&self, which: BlockSelector, verify: bool) -> Result<BlockReport, ServiceError> {
        let block = self.fetch_block(which).await?;
        let header = block.header.clone();
        let number = header.number;
        let bad = |message: String| ServiceError::BadBlock { number: number.to_string(), message };
        if number == 0 {
            return Err(bad("the genesis block has no transactions to import".into()));
        }
        let Some(rpc_txs) = block.transactions.as_transactions() else {
            return Err(bad("the node returned transaction hashes, not bodies".into()));
        };
        let mut txs = Vec::with_capacity(rpc_txs.len());
        for (i, t) in rpc_txs.iter().enumerate() {
            let envelope: &TxEnvelope = t.inner.inner();
            let (hash, env) = checked(envelope, t.inner.signer());
            if hash != *envelope.tx_hash() {
                return Err(bad(format!(
                    "transaction {i}: hash {} does not match its body ({hash})",
                    envelope.tx_hash()
                )));
            }
            txs.push(ImportTx { hash, env });
        }
        let spec = self.rules.spec(number, header.timestamp);
        let cfg = self.rules.cfg(spec);
        let env = self.rules.block_env(&header, spec);
        // Prefetch everything the block's transactions were seen to read, in batches.
        let mut accounts = vec![env.beneficiary];
        let mut slots = Vec::new();
        for t in &txs {
            accounts.push(t.env.caller);
            if let Some(to) = t.env.kind.to() {
                accounts.push(*to);
                if let Some((a, s)) = lock(&self.read_sets).get(to) {
                    accounts.extend(a);
                    slots.extend(s);
                }
            }
        }
        if let Err(e) = self.state.prefetch(number - 1, &accounts, &slots).await {
            tracing::debug!(number, error = %e, "prefetch before import failed");
        }
        let view = self.state.view(number - 1);
        let pipeline = self.pipeline.clone();
        let (imported, txs) = tokio::task::spawn_blocking(move || {
            let imported = pipeline.import(
                &view,
                &cfg,
                &env,
                &txs,
                if verify { ImportMode::Verified } else { ImportMode::Outcomes },
            )?;
            Ok::<_, ServiceError>((imported, txs))
        })
        .await
        .map_err(|e| ServiceError::Internal(e.to_string()))??;
        let (import, checked) = (imported.import, imported.checked);
        Ok(report(&header, &txs, &import, checked))
    }

    /// The programs held for a transaction.
    pub fn fast_path(&self, hash: &B256) -> Vec<Arc<Program>> {
        self.pipeline.programs(hash)
    }

    /// Admits raw signed transactions pushed by a node (EIP-2718 bytes).
    pub fn submit(&self, raw: &[Bytes]) -> Vec<SubmitResult> {
        raw.iter()
            .map(|bytes| {
                let envelope = match TxEnvelope::decode_2718(&mut bytes.as_ref()) {
                    Ok(e) => e,
                    Err(e) => {
                        return SubmitResult {
                            hash: None,
                            accepted: false,
                            error: Some(format!("not a signed transaction: {e}")),
                        };
                    }
                };
                let hash = keccak256(envelope.encoded_2718());
                let sender = match envelope.recover_signer() {
                    Ok(s) => s,
                    Err(e) => {
                        return SubmitResult {
                            hash: Some(hash),
                            accepted: false,
                            error: Some(format!("bad signature: {e}")),
                        };
                    }
                };
                let (_, env) = checked(&envelope, sender);
                let accepted = self.admit(hash, env, now_ms());
                SubmitResult { hash: Some(hash), accepted, error: None }
            })
            .collect()
    }

    /// The service's state, for `prescient_status`.
    pub async fn status(&self) -> Status {
        let (ap_txs, ap_programs, ap_bytes) = self.pipeline.store().stats();
        let c = &self.counters;
        let p = &self.pipeline.counters;
        Status {
            version: env!("CARGO_PKG_VERSION"),
            node: self.client.url().to_string(),
            connected: self.connected.load(Ordering::Relaxed),
            reconnects: self.client.reconnects(),
            chain_id: self.rules.chain_id,
            head: lock(&self.head).as_ref().map(|h| h.number),
            pending: self.pipeline.pending_len(),
            queued: self.queued.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            ap_txs,
            ap_programs,
            ap_bytes,
            pre_executions: p.pre_executions.load(Ordering::Relaxed),
            programs_recorded: p.programs.load(Ordering::Relaxed),
            no_program: p.no_program.load(Ordering::Relaxed),
            invalid: p.invalid.load(Ordering::Relaxed),
            shadow_blocks: c.shadow_blocks.load(Ordering::Relaxed),
            shadow_txs: c.shadow_txs.load(Ordering::Relaxed),
            shadow_hits: c.shadow_hits.load(Ordering::Relaxed),
            shadow_divergences: c.shadow_divergences.load(Ordering::Relaxed),
            uptime_secs: self.started.elapsed().as_secs(),
        }
    }
}

/// Folds the transactions' state changes into the block's final state per account.
pub fn final_state<'a>(
    changes: impl IntoIterator<Item = &'a BTreeMap<Address, AccountChange>>,
) -> BTreeMap<Address, AccountReport> {
    let mut state: BTreeMap<Address, AccountReport> = BTreeMap::new();
    for tx in changes {
        for (address, change) in tx {
            let entry = state.entry(*address).or_default();
            if change.created || change.selfdestructed {
                entry.storage.clear();
            }
            entry.balance = change.balance;
            entry.nonce = change.nonce;
            entry.code_hash = change.code_hash;
            entry.destroyed = change.selfdestructed;
            entry.storage.extend(change.storage.iter().map(|(k, v)| (*k, *v)));
        }
    }
    state
}

fn report(
    header: &Header,
    txs: &[ImportTx],
    import: &Import,
    checked: Option<(Vec<Divergence>, Duration)>,
) -> BlockReport {
    let transactions = txs
        .iter()
        .zip(&import.outcomes)
        .zip(&import.paths)
        .zip(&import.receipts.receipts)
        .map(|(((tx, outcome), path), receipt)| TxReport {
            hash: tx.hash,
            path: path.clone(),
            status: outcome.status.is_success(),
            gas_used: outcome.gas_used,
            cumulative_gas_used: receipt.cumulative_gas_used(),
            logs: outcome.logs.clone(),
            contract_address: outcome.created_address,
        })
        .collect();
    let matches_header =
        import.receipts.gas_used == header.gas_used && import.receipts.receipts_root == header.receipts_root;
    let (divergences, reference_micros) = match checked {
        Some((d, t)) => (Some(d), Some(t.as_micros() as u64)),
        None => (None, None),
    };
    BlockReport {
        number: header.number,
        hash: header.hash,
        gas_used: import.receipts.gas_used,
        receipts_root: import.receipts.receipts_root,
        matches_header,
        header_gas_used: header.gas_used,
        header_receipts_root: header.receipts_root,
        hits: import.hits(),
        tx_count: txs.len(),
        misses: import.misses(),
        transactions,
        state: final_state(import.outcomes.iter().map(|o| &o.state)),
        import_micros: import.time.as_micros() as u64,
        reference_micros,
        divergences,
    }
}
