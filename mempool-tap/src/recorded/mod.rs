//! Recorded traffic: blocks with their pre-state, loaded into revm's types.
//!
//! Three layouts are read, all described in `bench-data/README.md`:
//!
//! - the **indexed layout** of `../shared/bench-data/mainnet` (`index.json`, `bytecodes.json.gz`,
//!   `block_hashes.json`, `blocks/<N>/{block,pre_state,post_state}.json.gz`);
//! - the **prescient recording**, the same layout plus `recording.json` (chain id, node) and
//!   `arrivals.jsonl[.gz]` (pending-transaction arrivals), written by `prescient record`;
//! - the **grevm fixture layout** (`<N>/{block,txs,pre_state}.json.gz`, code inline).
//!
//! ```text
//!   Dataset::open(dir) ─▶ [BlockRef] ─▶ Dataset::load(&BlockRef) ─▶ RecordedBlock
//!                                                                     ├─ cfg, env, txs (revm)
//!                                                                     ├─ pre_state ─▶ state_db()
//!                                                                     └─ header / post-state checks
//! ```
//!
//! Every failure is a [`LoadError`] naming the file and the field; nothing here panics on
//! bad input.

pub mod chain;
mod error;
pub mod fork;
mod grevm;
mod indexed;
pub(crate) mod json;
mod locate;
#[cfg(test)]
mod tests;
mod writer;

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use alloy::{primitives::Bloom, rpc::types::Transaction as RpcTransaction};
pub use chain::{ChainRules, cfg_for, tx_env};
pub use error::{LoadError, LoadErrorKind};
pub use locate::{DATA_ENV, DEFAULT_DATA_DIR, DataDirNotFound, locate_data_dir, shared_data_for_tests};
use revm::{
    context::{BlockEnv, CfgEnv, TxEnv},
    database::InMemoryDB,
    primitives::{Address, B256, Bytes, U256, hardfork::SpecId},
    state::{AccountInfo, Bytecode},
};
use serde::Deserialize;
pub use writer::RecordingWriter;

/// Where a block comes from; decides which checks have ground truth.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockSource {
    /// A mainnet block in the indexed layout, with its header.
    Mainnet,
    /// A block a prescient recording captured from a node, with its header.
    Recording,
    /// A grevm fixture: transactions and pre-state, no header.
    Grevm,
}

/// One block a dataset lists, before loading.
#[derive(Clone, Debug)]
pub struct BlockRef {
    /// Block number.
    pub number: u64,
    /// Which layout it is in.
    pub source: BlockSource,
    /// The fork name as recorded.
    pub fork: String,
    /// Transactions in the block, when the index says.
    pub tx_count: Option<usize>,
    /// Code hashes the pre-state needs that the dataset lacks (0 for a complete block).
    pub missing_code: usize,
    dir: PathBuf,
}

impl BlockRef {
    /// Whether every piece needed to replay the block is present.
    pub fn is_complete(&self) -> bool {
        self.missing_code == 0
    }
}

/// One account of a pre-state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PreAccount {
    /// Balance in wei.
    pub balance: U256,
    /// Nonce.
    pub nonce: u64,
    /// Runtime code, when the account has any.
    pub code: Option<Bytecode>,
    /// Storage slots execution reads; an absent slot reads zero.
    pub storage: BTreeMap<U256, U256>,
}

impl PreAccount {
    /// The account as revm sees it (code hashed here).
    pub fn info(&self) -> AccountInfo {
        match &self.code {
            Some(code) => AccountInfo::new(self.balance, self.nonce, code.hash_slow(), code.clone()),
            None => AccountInfo { balance: self.balance, nonce: self.nonce, ..Default::default() },
        }
    }
}

/// The state before a block, restricted to what its transactions read. An address absent
/// from the map is a non-existent account.
pub type PreState = BTreeMap<Address, PreAccount>;

/// One account of a proven post-state (`eth_getProof` after the block).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostAccount {
    /// Balance in wei.
    pub balance: U256,
    /// Nonce.
    pub nonce: u64,
    /// Whether the proof shows the account exists.
    pub exists: bool,
    /// Proven storage values, by slot.
    pub storage: BTreeMap<U256, U256>,
}

/// The proven state after a block, for the accounts it touched.
pub type PostState = BTreeMap<Address, PostAccount>;

/// Header values a replay of the block's transactions must reproduce.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderChecks {
    /// The block hash (already checked against the header's content by the loader).
    pub hash: B256,
    /// Sum of the transactions' receipt gas.
    pub gas_used: u64,
    /// Root of the receipts trie.
    pub receipts_root: B256,
    /// Union of the receipts' blooms.
    pub logs_bloom: Bloom,
}

/// One transaction of a recorded block.
#[derive(Clone, Debug)]
pub struct RecordedTx {
    /// The transaction hash (checked against its signed encoding), when the layout has one.
    pub hash: Option<B256>,
    /// The transaction as revm executes it.
    pub env: TxEnv,
}

/// A block ready to execute: context, transactions, pre-state and what to check against.
#[derive(Clone, Debug)]
pub struct RecordedBlock {
    /// Block number.
    pub number: u64,
    /// Where the block comes from.
    pub source: BlockSource,
    /// The fork name as recorded.
    pub fork: String,
    /// The revm spec the block executes under.
    pub spec: SpecId,
    /// Chain configuration (chain id, spec, gas table).
    pub cfg: CfgEnv,
    /// Block context.
    pub env: BlockEnv,
    /// Transactions in block order.
    pub txs: Vec<RecordedTx>,
    /// Header values to reproduce (absent for grevm fixtures).
    pub header: Option<HeaderChecks>,
    /// The parent block's hash, when the layout records it.
    pub parent_hash: Option<B256>,
    /// State before the block.
    pub pre_state: PreState,
    /// Known block hashes, for BLOCKHASH.
    pub block_hashes: BTreeMap<u64, B256>,
    /// The proven state after the block, when recorded.
    pub post_state: Option<PostState>,
    /// What a block changes outside its transactions, as far as the layout records it.
    pub system: BlockSystemInputs,
}

/// The inputs of a block's changes outside its transactions: system calls, withdrawals,
/// rewards. A layout that does not record one leaves it `None` (the grevm fixtures record
/// none of them), and the block executor then applies transactions only.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BlockSystemInputs {
    /// Whether the layout records the header fields below at all (the indexed layout does).
    pub recorded: bool,
    /// EIP-4788 parent beacon block root (Cancun on).
    pub parent_beacon_block_root: Option<B256>,
    /// EIP-4895 withdrawals (Shanghai on).
    pub withdrawals: Option<Vec<alloy::eips::eip4895::Withdrawal>>,
    /// Hashes of the block's ommers (uncles). The RPC block carries only their hashes, so an
    /// uncle's own reward (which needs its beneficiary and number) cannot be applied from
    /// recorded data; the miner's 1/32 per uncle can.
    pub ommer_hashes: Vec<B256>,
}

impl RecordedBlock {
    /// An in-memory revm database holding the pre-state and block hashes.
    ///
    /// Absent accounts read as non-existent and absent slots as zero. BLOCKHASH of a number
    /// not in the table falls back to revm's `EmptyDB` rule, `keccak256(number.to_string())`,
    /// as the recorders of the shared data did.
    pub fn state_db(&self) -> InMemoryDB {
        let mut db = InMemoryDB::default();
        for (address, account) in &self.pre_state {
            db.insert_account_info(*address, account.info());
            let cached = db.cache.accounts.get_mut(address).expect("inserted just above");
            cached.storage.extend(account.storage.iter().map(|(k, v)| (*k, *v)));
        }
        for (number, hash) in &self.block_hashes {
            db.cache.block_hashes.insert(U256::from(*number), *hash);
        }
        db
    }

    /// The transactions as revm environments, in block order.
    pub fn tx_envs(&self) -> Vec<TxEnv> {
        self.txs.iter().map(|tx| tx.env.clone()).collect()
    }
}

/// A pending transaction as the recorder heard it.
#[derive(Clone, Debug, Deserialize)]
pub struct Arrival {
    /// When it was heard, in milliseconds since the Unix epoch.
    pub t_ms: u64,
    /// The transaction, as `eth_getTransactionByHash` returns it.
    pub tx: RpcTransaction,
}

/// The manifest of a prescient recording (`recording.json`).
#[derive(Clone, Debug, Deserialize, serde::Serialize)]
pub struct RecordingManifest {
    /// Format name: always `prescient-recording`.
    pub format: String,
    /// Format version: 1.
    pub version: u32,
    /// Chain id of the recorded node.
    pub chain_id: u64,
    /// What the node reported as its client version.
    #[serde(default)]
    pub node: Option<String>,
}

/// Bytecodes by code hash, loaded once per dataset and shared.
type CodeTable = Arc<HashMap<B256, Bytes>>;

/// An opened folder of recorded traffic.
#[derive(Debug)]
pub struct Dataset {
    root: PathBuf,
    blocks: Vec<BlockRef>,
    indexed: Option<indexed::IndexedSet>,
    code: Mutex<Option<CodeTable>>,
}

impl Dataset {
    /// Opens a dataset: the shared `bench-data` root, its `mainnet/` or `grevm-fixtures/`
    /// folder, or a prescient recording. Lists the blocks; loads nothing heavy yet.
    pub fn open(root: impl AsRef<Path>) -> Result<Self, LoadError> {
        let root = root.as_ref().to_path_buf();
        let meta = std::fs::metadata(&root).map_err(|e| LoadError::new(&root, e.into()))?;
        if !meta.is_dir() {
            return Err(LoadError::new(&root, LoadErrorKind::Invalid("not a folder".into())));
        }
        let mut blocks = Vec::new();
        // The indexed layout: here, or under `mainnet/` of the shared root.
        let indexed = if root.join("index.json").is_file() {
            Some(indexed::IndexedSet::open(&root)?)
        } else if root.join("mainnet/index.json").is_file() {
            Some(indexed::IndexedSet::open(&root.join("mainnet"))?)
        } else {
            None
        };
        if let Some(set) = &indexed {
            blocks.extend(set.block_refs()?);
        }
        // grevm fixtures: here, under `mainnet_blocks/`, or under `grevm-fixtures/mainnet_blocks/`.
        for dir in [root.join("grevm-fixtures/mainnet_blocks"), root.join("mainnet_blocks")] {
            if dir.is_dir() {
                blocks.extend(grevm::block_refs(&dir)?);
            }
        }
        if blocks.is_empty() && indexed.is_none() {
            let kind = LoadErrorKind::Invalid(
                "no recorded traffic here: expected index.json, mainnet/index.json or grevm-fixtures/".into(),
            );
            return Err(LoadError::new(&root, kind));
        }
        blocks.sort_by_key(|b| (b.number, b.source as u8));
        Ok(Self { root, blocks, indexed, code: Mutex::new(None) })
    }

    /// The folder the dataset was opened from.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Every block listed, complete or not, by number.
    pub fn blocks(&self) -> &[BlockRef] {
        &self.blocks
    }

    /// The blocks that can be replayed.
    pub fn complete_blocks(&self) -> impl Iterator<Item = &BlockRef> {
        self.blocks.iter().filter(|b| b.is_complete())
    }

    /// A sample chosen by property, never by number: for every fork present, up to `per_fork`
    /// complete blocks with at least `min_txs` transactions, smallest first (fast tests that
    /// still cover every fork's rules), in block order. Works on any set in the same layout.
    /// Blocks whose listing names no fork (grevm fixtures) are each taken.
    pub fn sample_by_fork(&self, per_fork: usize, min_txs: usize) -> Vec<&BlockRef> {
        let mut by_fork: BTreeMap<String, Vec<&BlockRef>> = BTreeMap::new();
        for b in self.complete_blocks().filter(|b| b.tx_count.unwrap_or(usize::MAX) >= min_txs) {
            // A block whose listing does not name its fork (grevm fixtures: known at load
            // time) is a group of its own.
            let key = if b.fork.is_empty() { format!("#{}", b.number) } else { b.fork.clone() };
            by_fork.entry(key).or_default().push(b);
        }
        let mut sample: Vec<&BlockRef> = by_fork
            .into_values()
            .flat_map(|mut blocks| {
                blocks.sort_by_key(|b| (b.tx_count.unwrap_or(usize::MAX), b.number));
                blocks.into_iter().take(per_fork)
            })
            .collect();
        sample.sort_by_key(|b| (b.number, b.source as u8));
        sample
    }

    /// The block with this number (the indexed layout first when both have it).
    pub fn find(&self, number: u64) -> Result<&BlockRef, LoadError> {
        self.blocks
            .iter()
            .find(|b| b.number == number)
            .ok_or_else(|| LoadError::new(&self.root, LoadErrorKind::UnknownBlock(number)))
    }

    /// Loads one block: context, transactions, pre-state, and its checks.
    pub fn load(&self, block: &BlockRef) -> Result<RecordedBlock, LoadError> {
        if !block.is_complete() {
            let kind = LoadErrorKind::Incomplete { number: block.number, missing: block.missing_code };
            return Err(LoadError::new(&block.dir, kind));
        }
        match block.source {
            BlockSource::Grevm => grevm::load(block),
            BlockSource::Mainnet | BlockSource::Recording => {
                let set = self.indexed.as_ref().expect("indexed blocks come from an indexed set");
                let code = self.code_table(set)?;
                set.load(block, &code)
            }
        }
    }

    /// The pending-transaction arrivals of a prescient recording, in arrival order; empty
    /// when the dataset has none (the shared mainnet data has no mempool record).
    pub fn arrivals(&self) -> Result<Vec<Arrival>, LoadError> {
        match &self.indexed {
            Some(set) => set.arrivals(),
            None => Ok(Vec::new()),
        }
    }

    /// The recording manifest, when the dataset is a prescient recording.
    pub fn manifest(&self) -> Option<&RecordingManifest> {
        self.indexed.as_ref().and_then(|set| set.manifest.as_ref())
    }

    fn code_table(&self, set: &indexed::IndexedSet) -> Result<CodeTable, LoadError> {
        let mut slot = self.code.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(table) = slot.as_ref() {
            return Ok(table.clone());
        }
        let table = Arc::new(set.read_bytecodes()?);
        *slot = Some(table.clone());
        Ok(table)
    }
}
