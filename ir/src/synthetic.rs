//! A small synthetic chain for tests: a funded sender, chain rules and a block for any
//! spec, and an EIP-1559 call. Public so that every crate's tests share one definition.

use revm::{
    context::{BlockEnv, CfgEnv, TxEnv},
    primitives::{Address, B256, Bytes, TxKind, U256, address, eip4844, hardfork::SpecId},
};

/// The funded sender of synthetic transactions.
pub const SENDER: Address = address!("0x1000000000000000000000000000000000000001");

/// Chain rules and a block for a synthetic transaction under `spec` (base fee 7).
pub fn synthetic_env(spec: SpecId) -> (CfgEnv, BlockEnv) {
    let mut cfg = CfgEnv::new();
    cfg.chain_id = 1;
    cfg.set_spec_and_mainnet_gas_params(spec);
    let mut block = BlockEnv {
        number: U256::from(1),
        timestamp: U256::from(1_700_000_000u64),
        basefee: 7,
        gas_limit: 30_000_000,
        beneficiary: address!("0x3000000000000000000000000000000000000003"),
        prevrandao: Some(B256::ZERO),
        ..Default::default()
    };
    let fraction = if spec.is_enabled_in(SpecId::PRAGUE) {
        eip4844::BLOB_BASE_FEE_UPDATE_FRACTION_PRAGUE
    } else {
        eip4844::BLOB_BASE_FEE_UPDATE_FRACTION_CANCUN
    };
    block.set_blob_excess_gas_and_price(0, fraction);
    (cfg, block)
}

/// An EIP-1559 call from [`SENDER`] to `to` with `data`.
pub fn synthetic_call(to: Address, data: Bytes) -> TxEnv {
    TxEnv {
        tx_type: 2,
        caller: SENDER,
        gas_limit: 100_000,
        gas_price: 10,
        gas_priority_fee: Some(1),
        kind: TxKind::Call(to),
        data,
        nonce: 0,
        chain_id: Some(1),
        ..Default::default()
    }
}
