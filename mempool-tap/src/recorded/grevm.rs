//! The grevm fixture layout: `<N>/{block,txs,pre_state}.json.gz`, code inline, no header.

use std::{collections::BTreeMap, path::Path};

use revm::{
    context::{BlockEnv, TxEnv, either::Either},
    context_interface::transaction::{AccessList, AccessListItem, Authorization, SignedAuthorization},
    primitives::{Address, B256, Bytes, TxKind, U256},
    state::Bytecode,
};
use serde::Deserialize;

use super::{
    BlockRef, BlockSource, BlockSystemInputs, PreAccount, PreState, RecordedBlock, RecordedTx,
    chain::cfg_for,
    error::{LoadError, LoadErrorKind},
    fork::{mainnet_blob_fee, mainnet_spec},
    json,
};

#[derive(Debug, Deserialize)]
struct RawBlock {
    number: u64,
    coinbase: Address,
    timestamp: u64,
    gas_limit: u64,
    basefee: u64,
    difficulty: U256,
    prevrandao: B256,
    #[serde(default)]
    excess_blob_gas: u64,
    chain_id: u64,
    spec_id: String,
    #[serde(default)]
    block_hashes: BTreeMap<String, B256>,
}

#[derive(Debug, Deserialize)]
struct RawAccessItem {
    address: Address,
    storage_keys: Vec<B256>,
}

#[derive(Debug, Deserialize)]
struct RawAuthorization {
    chain_id: U256,
    address: Address,
    nonce: u64,
    y_parity: u8,
    r: U256,
    s: U256,
}

#[derive(Debug, Deserialize)]
struct RawTx {
    tx_type: u8,
    caller: Address,
    to: Option<Address>,
    nonce: u64,
    value: U256,
    data: Bytes,
    gas_limit: u64,
    gas_price: u128,
    gas_priority_fee: Option<u128>,
    chain_id: Option<u64>,
    #[serde(default)]
    access_list: Vec<RawAccessItem>,
    #[serde(default)]
    blob_hashes: Vec<B256>,
    #[serde(default)]
    max_fee_per_blob_gas: u128,
    #[serde(default)]
    authorization_list: Vec<RawAuthorization>,
}

#[derive(Debug, Deserialize)]
struct RawAccount {
    balance: U256,
    nonce: u64,
    code: Option<Bytes>,
    #[serde(default)]
    storage: BTreeMap<U256, U256>,
}

/// Lists the fixture folders (numeric names) under `dir`.
pub(super) fn block_refs(dir: &Path) -> Result<Vec<BlockRef>, LoadError> {
    let mut refs = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| LoadError::new(dir, e.into()))? {
        let entry = entry.map_err(|e| LoadError::new(dir, e.into()))?;
        let Some(number) = entry.file_name().to_str().and_then(|n| n.parse::<u64>().ok()) else {
            continue;
        };
        refs.push(BlockRef {
            number,
            source: BlockSource::Grevm,
            // The fixture's own label is read at load time; the spec follows the mainnet schedule.
            fork: String::new(),
            tx_count: None,
            missing_code: 0,
            dir: entry.path(),
        });
    }
    Ok(refs)
}

/// Loads one fixture. The spec follows the mainnet schedule by timestamp rather than the
/// fixture's label: 25,323,281 is labelled "Prague" but mainnet ran it under Osaka.
pub(super) fn load(block: &BlockRef) -> Result<RecordedBlock, LoadError> {
    let block_path = block.dir.join("block.json.gz");
    let raw: RawBlock = json::read(&block_path)?;
    let spec = mainnet_spec(raw.number, raw.timestamp);
    let env = BlockEnv {
        number: U256::from(raw.number),
        beneficiary: raw.coinbase,
        timestamp: U256::from(raw.timestamp),
        gas_limit: raw.gas_limit,
        basefee: raw.basefee,
        difficulty: raw.difficulty,
        prevrandao: Some(raw.prevrandao),
        blob_excess_gas_and_price: mainnet_blob_fee(spec, raw.timestamp, raw.excess_blob_gas),
        ..Default::default()
    };
    let mut block_hashes = BTreeMap::new();
    for (number, hash) in raw.block_hashes {
        let parsed = number.parse::<u64>().map_err(|e| {
            let kind = LoadErrorKind::Invalid(format!("not a block number: {e}"));
            LoadError::at(&block_path, format!("block_hashes.{number}"), kind)
        })?;
        block_hashes.insert(parsed, hash);
    }

    let txs_path = block.dir.join("txs.json.gz");
    let raw_txs: Vec<RawTx> = json::read(&txs_path)?;
    let txs = raw_txs.into_iter().map(|t| RecordedTx { hash: None, env: tx_env(t) }).collect();

    let pre_path = block.dir.join("pre_state.json.gz");
    let raw_pre: BTreeMap<Address, RawAccount> = json::read(&pre_path)?;
    let mut pre_state = PreState::new();
    for (address, a) in raw_pre {
        let code = match a.code.filter(|c| !c.is_empty()) {
            None => None,
            // `new_raw_checked` recognises EIP-7702 delegations (`0xef0100 ‖ address`).
            Some(bytes) => Some(Bytecode::new_raw_checked(bytes).map_err(|e| {
                let kind = LoadErrorKind::Invalid(format!("invalid code: {e:?}"));
                LoadError::at(&pre_path, format!("{address:#x}.code"), kind)
            })?),
        };
        pre_state.insert(address, PreAccount { balance: a.balance, nonce: a.nonce, code, storage: a.storage });
    }

    Ok(RecordedBlock {
        number: raw.number,
        source: BlockSource::Grevm,
        fork: raw.spec_id,
        spec,
        cfg: cfg_for(spec, raw.chain_id),
        env,
        txs,
        header: None,
        parent_hash: None,
        pre_state,
        block_hashes,
        post_state: None,
        // The fixture layout records no withdrawals, beacon root or ommers.
        system: BlockSystemInputs::default(),
    })
}

fn tx_env(t: RawTx) -> TxEnv {
    let access_list = AccessList(
        t.access_list
            .into_iter()
            .map(|item| AccessListItem { address: item.address, storage_keys: item.storage_keys })
            .collect(),
    );
    let authorization_list = t
        .authorization_list
        .into_iter()
        .map(|a| {
            let inner = Authorization { chain_id: a.chain_id, address: a.address, nonce: a.nonce };
            Either::Left(SignedAuthorization::new_unchecked(inner, a.y_parity, a.r, a.s))
        })
        .collect();
    TxEnv {
        tx_type: t.tx_type,
        caller: t.caller,
        gas_limit: t.gas_limit,
        gas_price: t.gas_price,
        gas_priority_fee: t.gas_priority_fee,
        kind: t.to.map_or(TxKind::Create, TxKind::Call),
        value: t.value,
        data: t.data,
        nonce: t.nonce,
        chain_id: t.chain_id,
        access_list,
        blob_hashes: t.blob_hashes,
        max_fee_per_blob_gas: t.max_fee_per_blob_gas,
        authorization_list,
    }
}
