//! Regression tests for soundness holes found by review: each records a transaction in one
//! future and evaluates its program in another where the hole made it hit wrong. Every hit
//! is compared with revm in full; the test fails on a wrong hit.

use revm::{
    context::{BlockEnv, CfgEnv, TxEnv},
    context_interface::transaction::{AccessList, AccessListItem},
    database::InMemoryDB,
    primitives::{Address, B256, Bytes, TxKind, U256, address, hardfork::SpecId},
    state::{AccountInfo, Bytecode},
};

use crate::{
    ir::{
        record::{RecordConfig, record},
        synthetic::{SENDER, synthetic_call, synthetic_env},
    },
    oracle::{check, prepare, reference},
};

const CONTRACT: Address = address!("0x4000000000000000000000000000000000000004");

fn with_code(db: &mut InMemoryDB, address: Address, code: &[u8]) {
    let code = Bytecode::new_raw(Bytes::copy_from_slice(code));
    db.insert_account_info(address, AccountInfo::new(U256::ZERO, 1, code.hash_slow(), code));
}

/// Records `tx` on `recorded`, then checks the program at every tier on `changed` through
/// the oracle (a hit must equal revm there). Returns whether it hit.
fn hits_in(recorded: &InMemoryDB, changed: &InMemoryDB, cfg: &CfgEnv, block: &BlockEnv, tx: &TxEnv) -> bool {
    let rec = record(recorded, cfg, block, tx, RecordConfig::default()).expect("valid");
    let mut prepared = prepare(&rec.program.expect("a program"));
    prepared.record_reads(recorded, cfg, block);
    let own = check(&prepared, recorded, cfg, block, || reference(recorded, cfg, block, tx), "own future");
    assert!(own.is_sound() && own.hit.is_some() && own.read_set_hit, "self-hit: {:?}", own.problems);
    let there = check(&prepared, changed, cfg, block, || reference(changed, cfg, block, tx), "changed future");
    assert!(there.is_sound(), "{:?}", there.problems);
    there.hit.is_some()
}

#[test]
fn duplicate_access_list_entries_warm_every_key() {
    // `SLOAD(SLOAD(0))`: a storage key read from state. The access list names the contract
    // twice, with k1 and with k2; revm warms both. Recorded with slot 0 = k3 (cold), the
    // program must not hit where slot 0 = k1 (warm in revm: other gas).
    let (k1, k2, k3) = (B256::with_last_byte(0x11), B256::with_last_byte(0x22), U256::from(0x33));
    let mut db = InMemoryDB::default();
    db.insert_account_info(SENDER, AccountInfo::from_balance(U256::from(10u64.pow(18))));
    with_code(&mut db, CONTRACT, &[0x60, 0x00, 0x54, 0x54, 0x00]);
    db.insert_account_storage(CONTRACT, U256::ZERO, k3).expect("in memory");
    let (cfg, block) = synthetic_env(SpecId::PRAGUE);
    let mut tx = synthetic_call(CONTRACT, Bytes::new());
    tx.tx_type = 1;
    tx.gas_priority_fee = None;
    tx.access_list = AccessList(vec![
        AccessListItem { address: CONTRACT, storage_keys: vec![k1] },
        AccessListItem { address: CONTRACT, storage_keys: vec![k2] },
    ]);
    let mut changed = db.clone();
    changed.insert_account_storage(CONTRACT, U256::ZERO, k1.into()).expect("in memory");
    assert!(!hits_in(&db, &changed, &cfg, &block, &tx), "the key became a listed one: a miss");
    // Another unlisted key is the same path: the program still hits.
    let mut other = db.clone();
    other.insert_account_storage(CONTRACT, U256::ZERO, U256::from(0x44)).expect("in memory");
    assert!(hits_in(&db, &other, &cfg, &block, &tx));
}

#[test]
fn a_zero_value_call_to_a_missing_account_before_spurious_dragon() {
    // Before EIP-161 a CALL to an account that does not exist pays 25,000 gas whatever the
    // value. Here that charge runs the transaction out of gas; once the target exists, the
    // call costs 40 and succeeds. The program must miss there.
    let target = address!("0x6000000000000000000000000000000000000006");
    // CALL(gas 0, target, value 0, no args, no return data); STOP.
    let mut code = vec![0x60, 0x00, 0x60, 0x00, 0x60, 0x00, 0x60, 0x00, 0x60, 0x00, 0x73];
    code.extend_from_slice(target.as_slice());
    code.extend_from_slice(&[0x60, 0x00, 0xf1, 0x00]);
    for spec in [SpecId::FRONTIER, SpecId::HOMESTEAD, SpecId::TANGERINE] {
        let mut db = InMemoryDB::default();
        db.insert_account_info(SENDER, AccountInfo::from_balance(U256::from(10u64.pow(18))));
        with_code(&mut db, CONTRACT, &code);
        let (cfg, mut block) = synthetic_env(spec);
        block.basefee = 0;
        block.prevrandao = None;
        block.difficulty = U256::from(1);
        let tx = TxEnv {
            tx_type: 0,
            gas_price: 10,
            gas_priority_fee: None,
            gas_limit: 30_000,
            kind: TxKind::Call(CONTRACT),
            ..synthetic_call(CONTRACT, Bytes::new())
        };
        let mut funded = db.clone();
        funded.insert_account_info(target, AccountInfo::from_balance(U256::from(1)));
        assert!(!hits_in(&db, &funded, &cfg, &block, &tx), "{spec:?}: the target now exists: a miss");
        // Recorded where it exists, the program must miss where it does not.
        assert!(!hits_in(&funded, &db, &cfg, &block, &tx), "{spec:?}: the target no longer exists: a miss");
    }
}

#[test]
fn a_step_that_halts_on_memory_pins_every_operand() {
    // CALLDATACOPY(dest = 2^32, offset 0, size = SLOAD(0)). With a non-zero size, the memory
    // expansion costs more gas than exists and the step halts; with size zero, nothing is
    // copied and the transaction succeeds. The size is data read from state: a program
    // recorded on the halting path must miss where the size is zero.
    let code = [0x60, 0x00, 0x54, 0x60, 0x00, 0x64, 0x01, 0x00, 0x00, 0x00, 0x00, 0x37, 0x00];
    let mut db = InMemoryDB::default();
    db.insert_account_info(SENDER, AccountInfo::from_balance(U256::from(10u64.pow(18))));
    with_code(&mut db, CONTRACT, &code);
    db.insert_account_storage(CONTRACT, U256::ZERO, U256::from(5)).expect("in memory");
    let (cfg, block) = synthetic_env(SpecId::OSAKA);
    let tx = synthetic_call(CONTRACT, Bytes::new());
    let mut zero = db.clone();
    zero.insert_account_storage(CONTRACT, U256::ZERO, U256::ZERO).expect("in memory");
    assert!(!hits_in(&db, &zero, &cfg, &block, &tx), "the size became zero: a miss");
    let mut other = db.clone();
    other.insert_account_storage(CONTRACT, U256::ZERO, U256::from(7)).expect("in memory");
    assert!(!hits_in(&db, &other, &cfg, &block, &tx), "every operand of the halting step is pinned");
}

#[test]
fn created_addresses_follow_the_factory_nonce() {
    // CREATE with empty init code, then SSTORE(0, the new address): the address is
    // keccak256(rlp([factory, nonce])), computed from the nonce, whose RLP length class alone
    // is pinned. The same class is the same path (and the oracle compares the new address
    // with revm's); another class is a miss.
    let code = [0x60, 0x00, 0x60, 0x00, 0x60, 0x00, 0xf0, 0x60, 0x00, 0x55, 0x00];
    let at = |nonce: u64| {
        let mut db = InMemoryDB::default();
        db.insert_account_info(SENDER, AccountInfo::from_balance(U256::from(10u64.pow(18))));
        let code = Bytecode::new_raw(Bytes::copy_from_slice(&code));
        db.insert_account_info(CONTRACT, AccountInfo::new(U256::ZERO, nonce, code.hash_slow(), code));
        db
    };
    let (cfg, block) = synthetic_env(SpecId::PRAGUE);
    let tx = synthetic_call(CONTRACT, Bytes::new());
    for (recorded, changed, same_class) in [
        (1, 5, true),
        (1, 0x7f, true),
        (0x7f, 0x80, false),
        (0x80, 0xff, true),
        (0xff, 0x100, false),
        (0x100, 0xffff, true),
        (0xffff, 0x10000, false),
        (1 << 40, (1 << 40) + 7, true),
        (1 << 56, u64::MAX - 1, true),
        (1 << 56, (1 << 56) - 1, false),
    ] {
        let hit = hits_in(&at(recorded), &at(changed), &cfg, &block, &tx);
        assert_eq!(hit, same_class, "recorded at nonce {recorded:#x}, evaluated at {changed:#x}");
    }
}

#[test]
fn a_fee_recipient_before_spurious_dragon_is_pinned_only_when_left_empty() {
    // Before EIP-161 revm keeps a touched account left empty only if it existed (else it is
    // created). A fee recipient that earns a fee is committed alike whether it existed or
    // not; one that earns nothing (gas price 0) is not.
    let mut db = InMemoryDB::default();
    db.insert_account_info(SENDER, AccountInfo::from_balance(U256::from(10u64.pow(18))));
    let (cfg, mut block) = synthetic_env(SpecId::HOMESTEAD);
    block.basefee = 0;
    block.prevrandao = None;
    block.difficulty = U256::from(1);
    let to = address!("0x6000000000000000000000000000000000000006");
    let transfer = |gas_price| TxEnv {
        tx_type: 0,
        gas_price,
        gas_priority_fee: None,
        gas_limit: 21_000,
        value: U256::from(1),
        kind: TxKind::Call(to),
        ..synthetic_call(to, Bytes::new())
    };
    let mut rich = db.clone();
    rich.insert_account_info(block.beneficiary, AccountInfo::from_balance(U256::from(5)));
    let mut empty = db.clone();
    empty.insert_account_info(block.beneficiary, AccountInfo::default());
    assert!(hits_in(&db, &rich, &cfg, &block, &transfer(10)), "paid a fee: existence does not matter");
    assert!(hits_in(&rich, &db, &cfg, &block, &transfer(10)), "paid a fee: existence does not matter");
    assert!(!hits_in(&db, &empty, &cfg, &block, &transfer(0)), "left empty: it now exists, a miss");
    // (Recorded where it exists and is left empty, revm leaves it untouched, which the
    // recorder does not model: no program.)
    assert!(!hits_in(&db, &rich, &cfg, &block, &transfer(0)), "emptiness is pinned: a miss");
}
