//! EIP-7702: a call into a delegated account runs the delegate's code, so a program must
//! pin the delegate's code, not only the designator.

use revm::{
    context::{BlockEnv, CfgEnv, TxEnv},
    database::InMemoryDB,
    primitives::{B256, Bytes, TxKind, U256, address, hardfork::SpecId},
    state::{AccountInfo, Bytecode},
};

use crate::ir::{
    interp::{Evaluation, evaluate},
    record::{RecordConfig, record},
};

#[test]
fn a_changed_delegate_code_misses() {
    let sender = address!("0x1000000000000000000000000000000000000001");
    let eoa = address!("0x2000000000000000000000000000000000000002");
    let delegate = address!("0x4000000000000000000000000000000000000004");
    let code = |bytes: &'static [u8]| Bytecode::new_raw(Bytes::from_static(bytes));
    // PUSH1 1 PUSH1 0 SSTORE STOP, and PUSH1 2 PUSH1 0 SSTORE STOP.
    let (writes_one, writes_two) = (code(&[0x60, 1, 0x60, 0, 0x55, 0]), code(&[0x60, 2, 0x60, 0, 0x55, 0]));
    let mut designator = vec![0xef, 0x01, 0x00];
    designator.extend_from_slice(delegate.as_slice());
    let designator = Bytecode::new_raw_checked(designator.into()).expect("a delegation designator");

    let mut db = InMemoryDB::default();
    db.insert_account_info(sender, AccountInfo::from_balance(U256::from(10u64.pow(18))));
    db.insert_account_info(eoa, AccountInfo::new(U256::ZERO, 1, designator.hash_slow(), designator));
    db.insert_account_info(delegate, AccountInfo::new(U256::ZERO, 1, writes_one.hash_slow(), writes_one));
    let mut cfg = CfgEnv::new();
    cfg.chain_id = 1;
    cfg.set_spec_and_mainnet_gas_params(SpecId::PRAGUE);
    let mut block = BlockEnv {
        number: U256::from(1),
        timestamp: U256::from(1_750_000_000u64),
        basefee: 7,
        gas_limit: 30_000_000,
        prevrandao: Some(B256::ZERO),
        ..Default::default()
    };
    block.set_blob_excess_gas_and_price(0, revm::primitives::eip4844::BLOB_BASE_FEE_UPDATE_FRACTION_PRAGUE);
    let tx = TxEnv {
        tx_type: 2,
        caller: sender,
        gas_limit: 100_000,
        gas_price: 10,
        gas_priority_fee: Some(1),
        kind: TxKind::Call(eoa),
        chain_id: Some(1),
        ..Default::default()
    };
    let rec = record(&db, &cfg, &block, &tx, RecordConfig::default()).expect("runs");
    let program = rec.program.expect("a delegated call gets a program");
    assert!(matches!(evaluate(&program, &db, &cfg, &block, 1 << 20), Evaluation::Hit(_)), "self-hit");

    // The same designator, but the delegate now holds other code: the program must miss.
    db.insert_account_info(delegate, AccountInfo::new(U256::ZERO, 1, writes_two.hash_slow(), writes_two));
    let (expected, _) = crate::ir::execute_tx(&db, &cfg, &block, &tx).expect("valid");
    match evaluate(&program, &db, &cfg, &block, 1 << 20) {
        Evaluation::Miss(_) => {}
        Evaluation::Hit(got) => panic!("hit with the delegate's code changed: {:?}", got.first_difference(&expected)),
    }
}
