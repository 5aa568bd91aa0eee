//! The indexed layout (shared `mainnet/`, and prescient recordings).

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
};

use alloy::{
    consensus::{TxEnvelope, proofs::calculate_transaction_root},
    eips::Encodable2718,
    rpc::types::{Block as RpcBlock, Transaction as RpcTransaction},
};
use revm::{
    primitives::{Address, B256, Bytes, KECCAK_EMPTY, U256, keccak256},
    state::Bytecode,
};
use serde::Deserialize;

use super::{
    Arrival, BlockRef, BlockSource, BlockSystemInputs, HeaderChecks, PostAccount, PostState, PreAccount, PreState,
    RecordedBlock, RecordedTx, RecordingManifest,
    chain::{ChainRules, cfg_for, tx_env},
    error::{LoadError, LoadErrorKind},
    fork::parse_fork,
    json,
};

/// One record of `index.json`. Fields the loader does not need are ignored.
#[derive(Debug, Deserialize)]
struct IndexEntry {
    number: u64,
    fork: String,
    dir: String,
    #[serde(default = "yes")]
    complete: bool,
    #[serde(default)]
    tx_count: Option<usize>,
    #[serde(default)]
    missing_code_hashes: Vec<B256>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
struct RawPreAccount {
    balance: U256,
    nonce: u64,
    #[serde(default)]
    code_hash: Option<B256>,
    #[serde(default)]
    storage: BTreeMap<U256, U256>,
}

#[derive(Debug, Deserialize)]
struct RawPostAccount {
    balance: U256,
    nonce: u64,
    #[serde(default)]
    code_hash: Option<B256>,
    #[serde(default)]
    exists: Option<bool>,
    #[serde(default)]
    storage: BTreeMap<U256, U256>,
}

/// An opened indexed folder: its index, block-hash table and (for recordings) manifest.
#[derive(Debug)]
pub(super) struct IndexedSet {
    /// The folder holding `index.json`.
    root: PathBuf,
    entries: Vec<IndexEntry>,
    block_hashes: BTreeMap<u64, B256>,
    pub(super) manifest: Option<RecordingManifest>,
}

impl IndexedSet {
    pub(super) fn open(root: &Path) -> Result<Self, LoadError> {
        let entries: Vec<IndexEntry> = json::read(&root.join("index.json"))?;
        let hashes_path = root.join("block_hashes.json");
        let raw_hashes: BTreeMap<String, B256> =
            if hashes_path.is_file() { json::read(&hashes_path)? } else { BTreeMap::new() };
        let mut block_hashes = BTreeMap::new();
        for (number, hash) in raw_hashes {
            let parsed = number.parse::<u64>().map_err(|e| {
                LoadError::at(&hashes_path, number.clone(), LoadErrorKind::Invalid(format!("not a block number: {e}")))
            })?;
            block_hashes.insert(parsed, hash);
        }
        let manifest_path = root.join("recording.json");
        let manifest: Option<RecordingManifest> =
            if manifest_path.is_file() { Some(json::read(&manifest_path)?) } else { None };
        if let Some(m) = &manifest
            && (m.format != "prescient-recording" || m.version != 1)
        {
            let kind = LoadErrorKind::Invalid(format!("unsupported format {} version {}", m.format, m.version));
            return Err(LoadError::at(&manifest_path, "format", kind));
        }
        Ok(Self { root: root.to_path_buf(), entries, block_hashes, manifest })
    }

    /// Resolves an index `dir`: against this folder, then against its parent (the shared
    /// layout writes `mainnet/blocks/<N>`, relative to `bench-data/`).
    fn resolve(&self, dir: &str) -> PathBuf {
        let here = self.root.join(dir);
        match self.root.parent() {
            Some(parent) if !here.exists() && parent.join(dir).exists() => parent.join(dir),
            _ => here,
        }
    }

    pub(super) fn block_refs(&self) -> Result<Vec<BlockRef>, LoadError> {
        let source = if self.manifest.is_some() { BlockSource::Recording } else { BlockSource::Mainnet };
        let refs = self
            .entries
            .iter()
            .map(|e| BlockRef {
                number: e.number,
                source,
                fork: e.fork.clone(),
                tx_count: e.tx_count,
                // An entry marked incomplete without a list still counts as incomplete.
                missing_code: if e.complete { 0 } else { e.missing_code_hashes.len().max(1) },
                dir: self.resolve(&e.dir),
            })
            .collect();
        Ok(refs)
    }

    pub(super) fn read_bytecodes(&self) -> Result<HashMap<B256, Bytes>, LoadError> {
        let path = self.root.join("bytecodes.json.gz");
        if !path.exists() && self.entries.is_empty() {
            return Ok(HashMap::new());
        }
        json::read(&path)
    }

    pub(super) fn arrivals(&self) -> Result<Vec<Arrival>, LoadError> {
        let path = ["arrivals.jsonl", "arrivals.jsonl.gz"].iter().map(|f| self.root.join(f)).find(|p| p.is_file());
        let Some(path) = path else {
            return Ok(Vec::new());
        };
        let bytes = json::read_bytes(&path)?;
        let mut arrivals = Vec::new();
        for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let arrival: Arrival = json::parse(&path, line).map_err(|mut e| {
                e.field = Some(format!("line {}{}", i + 1, e.field.map(|f| format!(": {f}")).unwrap_or_default()));
                e
            })?;
            arrivals.push(arrival);
        }
        arrivals.sort_by_key(|a| a.t_ms);
        Ok(arrivals)
    }

    pub(super) fn load(&self, block: &BlockRef, code: &HashMap<B256, Bytes>) -> Result<RecordedBlock, LoadError> {
        let spec = parse_fork(&block.fork).ok_or_else(|| {
            let at = format!("[number={}].fork", block.number);
            LoadError::at(self.root.join("index.json"), at, LoadErrorKind::UnknownFork(block.fork.clone()))
        })?;
        let chain_id = self.manifest.as_ref().map_or(1, |m| m.chain_id);
        let block_path = block.dir.join("block.json.gz");
        let rpc = read_block(&block_path)?;
        let header = &rpc.header;
        if header.number != block.number {
            let kind = LoadErrorKind::Invalid(format!("block {} listed as {}", header.number, block.number));
            return Err(LoadError::at(&block_path, "number", kind));
        }
        let computed = header.inner.hash_slow();
        if computed != header.hash {
            let kind = LoadErrorKind::HashMismatch { what: "header", recorded: header.hash, computed };
            return Err(LoadError::at(&block_path, "hash", kind));
        }
        let Some(rpc_txs) = rpc.transactions.as_transactions() else {
            let kind = LoadErrorKind::Invalid("transactions are hashes; full transaction objects are needed".into());
            return Err(LoadError::at(&block_path, "transactions", kind));
        };
        let mut txs = Vec::with_capacity(rpc_txs.len());
        let mut envelopes = Vec::with_capacity(rpc_txs.len());
        for (i, tx) in rpc_txs.iter().enumerate() {
            let envelope: &TxEnvelope = tx.inner.inner();
            let computed = keccak256(envelope.encoded_2718());
            let recorded = *envelope.tx_hash();
            if computed != recorded {
                let kind = LoadErrorKind::HashMismatch { what: "transaction", recorded, computed };
                return Err(LoadError::at(&block_path, format!("transactions[{i}].hash"), kind));
            }
            txs.push(RecordedTx { hash: Some(recorded), env: tx_env(tx.inner.signer(), envelope) });
            envelopes.push(envelope.clone());
        }
        let computed = calculate_transaction_root(&envelopes);
        if computed != header.transactions_root {
            let kind =
                LoadErrorKind::HashMismatch { what: "transaction list", recorded: header.transactions_root, computed };
            return Err(LoadError::at(&block_path, "transactionsRoot", kind));
        }

        // Mainnet follows its schedule; a recorded devnet runs the fork its index names.
        let rules = if chain_id == 1 { ChainRules::MAINNET } else { ChainRules { chain_id, fixed: Some(spec) } };
        let env = rules.block_env(header, spec);

        let pre_path = block.dir.join("pre_state.json.gz");
        let raw_pre: BTreeMap<Address, RawPreAccount> = json::read(&pre_path)?;
        let mut pre_state = PreState::new();
        for (address, raw) in raw_pre {
            let code = match raw.code_hash {
                None => None,
                Some(hash) if hash == KECCAK_EMPTY => None,
                Some(hash) => Some(
                    self.bytecode(code, hash)
                        .map_err(|kind| LoadError::at(&pre_path, format!("{address:#x}.code_hash"), kind))?,
                ),
            };
            pre_state
                .insert(address, PreAccount { balance: raw.balance, nonce: raw.nonce, code, storage: raw.storage });
        }

        let post_path = block.dir.join("post_state.json.gz");
        let post_state = if post_path.is_file() {
            let raw: BTreeMap<Address, RawPostAccount> = json::read(&post_path)?;
            let post = raw
                .into_iter()
                .map(|(address, a)| {
                    // Older geth proofs say "no account" with a zero code hash.
                    let exists = a.exists.unwrap_or(a.code_hash.is_some_and(|h| h != B256::ZERO));
                    (address, PostAccount { balance: a.balance, nonce: a.nonce, exists, storage: a.storage })
                })
                .collect::<PostState>();
            Some(post)
        } else {
            None
        };

        let mut block_hashes = self.block_hashes.clone();
        if header.number > 0 {
            block_hashes.insert(header.number - 1, header.parent_hash);
        }
        Ok(RecordedBlock {
            number: block.number,
            source: block.source,
            fork: block.fork.clone(),
            spec,
            cfg: cfg_for(spec, chain_id),
            env,
            txs,
            header: Some(HeaderChecks {
                hash: header.hash,
                gas_used: header.gas_used,
                receipts_root: header.receipts_root,
                logs_bloom: header.logs_bloom,
            }),
            parent_hash: Some(header.parent_hash),
            pre_state,
            block_hashes,
            post_state,
            system: BlockSystemInputs {
                recorded: true,
                parent_beacon_block_root: header.parent_beacon_block_root,
                withdrawals: rpc.withdrawals.as_ref().map(|w| w.to_vec()),
                ommer_hashes: rpc.uncles.clone(),
            },
        })
    }

    /// Looks up and checks one bytecode: its keccak256 must equal the key it is stored under.
    fn bytecode(&self, code: &HashMap<B256, Bytes>, hash: B256) -> Result<Bytecode, LoadErrorKind> {
        let bytes = code.get(&hash).ok_or(LoadErrorKind::MissingBytecode(hash))?;
        let computed = keccak256(bytes);
        if computed != hash {
            return Err(LoadErrorKind::HashMismatch { what: "bytecode", recorded: hash, computed });
        }
        Ok(Bytecode::new_raw(bytes.clone()))
    }
}

/// Reads `eth_getBlockByNumber(N, true)` JSON.
///
/// The header and each transaction are parsed separately: alloy's block type holds the
/// transactions in an untagged enum, which would hide which transaction and field is bad.
pub(crate) fn read_block(path: &Path) -> Result<RpcBlock<RpcTransaction>, LoadError> {
    let mut value: serde_json::Value = json::read(path)?;
    let Some(object) = value.as_object_mut() else {
        return Err(LoadError::new(path, LoadErrorKind::Json("expected a block object".into())));
    };
    let txs = match object.remove("transactions") {
        Some(serde_json::Value::Array(txs)) => txs,
        _ => {
            let kind = LoadErrorKind::Json("expected an array of transaction objects".into());
            return Err(LoadError::at(path, "transactions", kind));
        }
    };
    let mut parsed = Vec::with_capacity(txs.len());
    for (i, tx) in txs.into_iter().enumerate() {
        let tx: RpcTransaction = serde_path_to_error::deserialize(tx).map_err(|e| {
            let inner = e.path().to_string();
            let field = if inner == "." { format!("transactions[{i}]") } else { format!("transactions[{i}].{inner}") };
            LoadError::at(path, field, LoadErrorKind::Json(e.into_inner().to_string()))
        })?;
        parsed.push(tx);
    }
    // The block's own fields beside its header: uncles (hashes) and withdrawals.
    let field = |name: &str, e: serde_path_to_error::Error<serde_json::Error>| {
        let inner = e.path().to_string();
        let at = if inner == "." { name.to_string() } else { format!("{name}.{inner}") };
        LoadError::at(path, at, LoadErrorKind::Json(e.into_inner().to_string()))
    };
    let uncles: Vec<B256> = match object.remove("uncles") {
        Some(uncles) => serde_path_to_error::deserialize(uncles).map_err(|e| field("uncles", e))?,
        None => Vec::new(),
    };
    let withdrawals: Option<alloy::eips::eip4895::Withdrawals> = match object.remove("withdrawals") {
        Some(serde_json::Value::Null) | None => None,
        Some(w) => Some(serde_path_to_error::deserialize(w).map_err(|e| field("withdrawals", e))?),
    };
    let header = serde_path_to_error::deserialize(value)
        .map_err(|e| LoadError::at(path, e.path().to_string(), LoadErrorKind::Json(e.into_inner().to_string())))?;
    let mut block = RpcBlock::new(header, alloy::rpc::types::BlockTransactions::Full(parsed));
    block.uncles = uncles;
    block.withdrawals = withdrawals;
    Ok(block)
}
