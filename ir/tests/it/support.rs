//! Helpers shared by the integration tests: a small synthetic chain, and golden files.

use std::{fs, path::Path};

use revm::{
    context::{BlockEnv, CfgEnv, TxEnv},
    primitives::{Address, B256, Bytes, TxKind, U256, address, eip4844, hardfork::SpecId},
};

/// The funded sender of synthetic transactions.
pub(crate) const SENDER: Address = address!("0x1000000000000000000000000000000000000001");

/// Chain rules and a block for a synthetic transaction under `spec` (base fee 7).
pub(crate) fn synthetic_env(spec: SpecId) -> (CfgEnv, BlockEnv) {
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
pub(crate) fn synthetic_call(to: Address, data: Bytes) -> TxEnv {
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

/// Compares `printed` with the expectation after `marker` in the golden file `path` (as `; `
/// comments). With `BLESS` set, rewrites the file instead; otherwise returns the mismatch.
pub(crate) fn check_golden(path: &Path, input: &str, expected: &str, printed: &str, marker: &str) -> Option<String> {
    let expected: String = expected
        .lines()
        .filter_map(|l| l.strip_prefix("; ").or_else(|| l.strip_prefix(";")))
        .map(|l| format!("{l}\n"))
        .collect();
    if printed.trim() == expected.trim() {
        return None;
    }
    if std::env::var_os("BLESS").is_some() {
        let commented: String = printed.lines().map(|l| format!("; {l}\n")).collect();
        fs::write(path, format!("{}\n{marker}\n{commented}", input.trim_end())).expect("write");
        return None;
    }
    Some(format!("{}:\n--- expected\n{expected}--- got\n{printed}", path.display()))
}
