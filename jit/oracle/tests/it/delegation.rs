//! EIP-7702: a call into a delegated account runs the delegate's code, so a program must
//! pin the delegate's code, not only the designator.

use revm::{
    database::InMemoryDB,
    primitives::{Bytes, U256, address, hardfork::SpecId},
    state::{AccountInfo, Bytecode},
};

use crate::{
    ir::{
        record::{RecordConfig, record},
        synthetic::{SENDER, synthetic_call, synthetic_env},
    },
    oracle::{check, prepare, reference},
};

#[test]
fn a_changed_delegate_code_misses() {
    let eoa = address!("0x2000000000000000000000000000000000000002");
    let delegate = address!("0x4000000000000000000000000000000000000004");
    let code = |bytes: &'static [u8]| Bytecode::new_raw(Bytes::from_static(bytes));
    // PUSH1 1 PUSH1 0 SSTORE STOP, and PUSH1 2 PUSH1 0 SSTORE STOP.
    let (writes_one, writes_two) = (code(&[0x60, 1, 0x60, 0, 0x55, 0]), code(&[0x60, 2, 0x60, 0, 0x55, 0]));
    let mut designator = vec![0xef, 0x01, 0x00];
    designator.extend_from_slice(delegate.as_slice());
    let designator = Bytecode::new_raw_checked(designator.into()).expect("a delegation designator");

    let mut db = InMemoryDB::default();
    db.insert_account_info(SENDER, AccountInfo::from_balance(U256::from(10u64.pow(18))));
    db.insert_account_info(eoa, AccountInfo::new(U256::ZERO, 1, designator.hash_slow(), designator));
    db.insert_account_info(delegate, AccountInfo::new(U256::ZERO, 1, writes_one.hash_slow(), writes_one));
    let (cfg, block) = synthetic_env(SpecId::PRAGUE);
    let tx = synthetic_call(eoa, Bytes::new());
    let rec = record(&db, &cfg, &block, &tx, RecordConfig::default()).expect("runs");
    let mut prepared = prepare(&rec.program.expect("a delegated call gets a program"));
    prepared.record_reads(&db, &cfg, &block);
    let own = check(&prepared, &db, &cfg, &block, || reference(&db, &cfg, &block, &tx), "own state");
    assert!(own.is_sound() && own.hit.is_some() && own.read_set_hit, "self-hit: {:?}", own.problems);

    // The same designator, but the delegate now holds other code: the program must miss.
    db.insert_account_info(delegate, AccountInfo::new(U256::ZERO, 1, writes_two.hash_slow(), writes_two));
    let changed = check(&prepared, &db, &cfg, &block, || reference(&db, &cfg, &block, &tx), "changed delegate");
    assert!(changed.is_sound(), "{:?}", changed.problems);
    assert!(changed.hit.is_none() && !changed.read_set_hit, "hit with the delegate's code changed");
}
