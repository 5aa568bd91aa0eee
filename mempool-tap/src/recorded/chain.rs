//! Which rules a block runs under: chain configuration and block context from a header.
//!
//! Shared by the recorded-data loader and the live node path, so that a block recorded
//! from a node and the same block imported live get the same `CfgEnv` and `BlockEnv`.

use alloy::{consensus::TxEnvelope, rpc::types::Header};
use revm::{
    context::{BlockEnv, CfgEnv, TxEnv},
    context_interface::block::BlobExcessGasAndPrice,
    primitives::{
        Address, U256,
        eip4844::{BLOB_BASE_FEE_UPDATE_FRACTION_CANCUN, BLOB_BASE_FEE_UPDATE_FRACTION_PRAGUE},
        hardfork::SpecId,
    },
};

use super::fork::{mainnet_blob_fee, mainnet_spec};

/// The rules of a chain: its id and either mainnet's fork schedule or one fixed spec (a
/// devnet runs one hardfork from genesis).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChainRules {
    /// The chain id.
    pub chain_id: u64,
    /// The fixed spec; `None` follows mainnet's schedule (chain id 1).
    pub fixed: Option<SpecId>,
}

impl ChainRules {
    /// Mainnet's schedule.
    pub const MAINNET: Self = Self { chain_id: 1, fixed: None };

    /// The spec at a block.
    pub fn spec(&self, number: u64, timestamp: u64) -> SpecId {
        self.fixed.unwrap_or_else(|| mainnet_spec(number, timestamp))
    }

    /// The chain configuration for `spec`.
    pub fn cfg(&self, spec: SpecId) -> CfgEnv {
        cfg_for(spec, self.chain_id)
    }

    /// The blob fee parameters: mainnet's schedule (with its blob-parameter-only forks) on
    /// mainnet, the spec's own fraction elsewhere.
    pub fn blob_fee(&self, spec: SpecId, timestamp: u64, excess_blob_gas: u64) -> Option<BlobExcessGasAndPrice> {
        if self.fixed.is_none() {
            return mainnet_blob_fee(spec, timestamp, excess_blob_gas);
        }
        if !spec.is_enabled_in(SpecId::CANCUN) {
            return None;
        }
        let fraction = if spec.is_enabled_in(SpecId::PRAGUE) {
            BLOB_BASE_FEE_UPDATE_FRACTION_PRAGUE
        } else {
            BLOB_BASE_FEE_UPDATE_FRACTION_CANCUN
        };
        Some(BlobExcessGasAndPrice::new(excess_blob_gas, fraction))
    }

    /// The block context of `header` under `spec`.
    pub fn block_env(&self, header: &Header, spec: SpecId) -> BlockEnv {
        BlockEnv {
            number: U256::from(header.number),
            beneficiary: header.beneficiary,
            timestamp: U256::from(header.timestamp),
            gas_limit: header.gas_limit,
            basefee: header.base_fee_per_gas.unwrap_or(0),
            difficulty: header.difficulty,
            // Before the Merge the field is the PoW mix hash and DIFFICULTY reads `difficulty`.
            prevrandao: spec.is_enabled_in(SpecId::MERGE).then_some(header.mix_hash),
            blob_excess_gas_and_price: self.blob_fee(spec, header.timestamp, header.excess_blob_gas.unwrap_or(0)),
            ..Default::default()
        }
    }
}

/// Builds the chain configuration for a spec and chain id.
pub fn cfg_for(spec: SpecId, chain_id: u64) -> CfgEnv {
    let mut cfg = CfgEnv::new();
    cfg.chain_id = chain_id;
    cfg.set_spec_and_mainnet_gas_params(spec);
    cfg
}

/// Maps a signed transaction to revm's `TxEnv` (the table in the data README).
pub fn tx_env(caller: Address, tx: &TxEnvelope) -> TxEnv {
    use alloy::consensus::Transaction as _;
    use alloy::eips::Typed2718 as _;
    use revm::context::either::Either;
    TxEnv {
        tx_type: tx.ty(),
        caller,
        gas_limit: tx.gas_limit(),
        // `max_fee_per_gas` is `gasPrice` for legacy and EIP-2930 transactions.
        gas_price: tx.max_fee_per_gas(),
        gas_priority_fee: tx.max_priority_fee_per_gas(),
        kind: tx.kind(),
        value: tx.value(),
        data: tx.input().clone(),
        nonce: tx.nonce(),
        chain_id: tx.chain_id(),
        access_list: tx.access_list().cloned().unwrap_or_default(),
        blob_hashes: tx.blob_versioned_hashes().map(<[revm::primitives::B256]>::to_vec).unwrap_or_default(),
        max_fee_per_blob_gas: tx.max_fee_per_blob_gas().unwrap_or(0),
        authorization_list: tx
            .authorization_list()
            .map(|list| list.iter().cloned().map(Either::Left).collect())
            .unwrap_or_default(),
    }
}
