//! The block executor on small synthetic blocks, on state backends that behave like a node's:
//! hits followed by misses on the same contract, misses followed by hits, a delegation
//! followed by a call into the authority. Every import is compared with sequential revm in
//! full.

use std::sync::Arc;

use crate::accelerator::{
    ImportTx, PreExecution, TxPath,
    executor::{Accelerated, BlockPrograms},
    import_block, import_block_ahead, pre_execute, verify_against_reference,
};
use ir::{AccountCodeOnly, program::Program, record::RecordConfig, synthetic::synthetic_env};
use revm::{
    DatabaseRef,
    context::{BlockEnv, CfgEnv, TxEnv},
    context_interface::transaction::{Authorization, RecoveredAuthority, RecoveredAuthorization},
    database::{CacheDB, InMemoryDB},
    database_interface::DBErrorMarker,
    primitives::{Address, B256, Bytes, TxKind, U256, address, hardfork::SpecId, hex},
    state::{AccountInfo, Bytecode},
};

const ALICE: Address = address!("0x1000000000000000000000000000000000000001");
const BOB: Address = address!("0x1000000000000000000000000000000000000002");
const CONTRACT: Address = address!("0x4000000000000000000000000000000000000004");
const AUTHORITY: Address = address!("0x5000000000000000000000000000000000000005");

/// No calldata: `SSTORE(0, 1)`. With calldata: `SSTORE(1, CLZ(1))` (EIP-7939, Osaka).
const CLZ_OR_STORE: &str = "36600a576001600055005b60011e60015500";

fn state() -> InMemoryDB {
    let mut db = InMemoryDB::default();
    for who in [ALICE, BOB] {
        db.insert_account_info(who, AccountInfo::from_balance(U256::from(10u64.pow(18))));
    }
    let code = Bytecode::new_raw(hex::decode(CLZ_OR_STORE).expect("hex").into());
    db.insert_account_info(CONTRACT, AccountInfo::new(U256::ZERO, 1, code.hash_slow(), code));
    db
}

fn call(from: Address, to: Address, data: &[u8], nonce: u64, tip: u128) -> ImportTx {
    let env = TxEnv {
        tx_type: 2,
        caller: from,
        gas_limit: 100_000,
        gas_price: 100,
        gas_priority_fee: Some(tip),
        kind: TxKind::Call(to),
        data: Bytes::copy_from_slice(data),
        nonce,
        chain_id: Some(1),
        ..Default::default()
    };
    ImportTx { hash: B256::with_last_byte(from.0[19]) ^ B256::left_padding_from(&nonce.to_be_bytes()), env }
}

/// The optimized program of `tx` pre-executed on `db` (as the service stores it).
fn program<D>(db: &D, cfg: &CfgEnv, block: &BlockEnv, tx: &ImportTx) -> Arc<Program>
where
    D: DatabaseRef,
    D::Error: DBErrorMarker,
{
    match pre_execute(db, cfg, block, &[], &tx.env, RecordConfig::default(), None) {
        PreExecution::Program(p, _) => Arc::new(p),
        other => panic!("no program for {}: {other:?}", tx.hash),
    }
}

/// Imports `txs` with the given programs on `backend`, checks every outcome against
/// sequential revm on the same backend, and returns the paths.
fn import_and_verify<D>(
    backend: D,
    cfg: &CfgEnv,
    block: &BlockEnv,
    txs: &[ImportTx],
    programs: &[Option<Arc<Program>>],
) -> Vec<TxPath>
where
    D: DatabaseRef + Clone,
    D::Error: DBErrorMarker,
{
    let lookup = |hash: &B256| -> Option<Arc<Accelerated>> {
        let mine: Vec<Arc<Program>> =
            txs.iter().zip(programs).filter(|(t, _)| t.hash == *hash).filter_map(|(_, p)| p.clone()).collect();
        (!mine.is_empty()).then(|| Arc::new(Accelerated::new(mine)))
    };
    let by_position = BlockPrograms::new(txs.iter().map(|t| (t.hash, lookup(&t.hash))));
    let import = import_block(&mut CacheDB::new(backend.clone()), cfg, block, txs, &by_position, None, true, true)
        .unwrap_or_else(|e| panic!("import failed: {e}"));
    let (divergences, _) = verify_against_reference(&mut CacheDB::new(backend), cfg, block, txs, &import)
        .unwrap_or_else(|e| panic!("reference failed: {e}"));
    assert!(divergences.is_empty(), "divergences: {divergences:#?}");
    import.paths
}

#[test]
fn a_hit_then_a_miss_on_the_same_contract_runs_its_code() {
    // Regression: a hit committed its touched contract without code; the miss after it then
    // asked the node's state for code by hash, which a node refuses.
    let (cfg, block) = synthetic_env(SpecId::OSAKA);
    let db = AccountCodeOnly(state());
    let a = call(ALICE, CONTRACT, &[], 0, 2);
    let b = call(BOB, CONTRACT, &[1], 0, 1);
    let pa = program(&db, &cfg, &block, &a);
    let paths = import_and_verify(db, &cfg, &block, &[a, b], &[Some(pa), None]);
    assert_eq!(paths, vec![TxPath::Hit { program: 0, perfect: false }, TxPath::NoProgram]);
}

#[test]
fn a_miss_then_a_hit_then_a_miss() {
    let (cfg, block) = synthetic_env(SpecId::OSAKA);
    let db = AccountCodeOnly(state());
    let txs = [call(BOB, CONTRACT, &[1], 0, 1), call(ALICE, CONTRACT, &[], 0, 2), call(BOB, CONTRACT, &[], 1, 1)];
    // ALICE's program is recorded after BOB's first call, as a predictor would.
    let mut after_bob = CacheDB::new(db.clone());
    let first = import_block(&mut after_bob, &cfg, &block, &txs[..1], &BlockPrograms::default(), None, true, true)
        .expect("runs");
    assert_eq!(first.paths, vec![TxPath::NoProgram]);
    let pa = program(&after_bob, &cfg, &block, &txs[1]);
    let paths = import_and_verify(db, &cfg, &block, &txs, &[None, Some(pa), None]);
    assert_eq!(paths, vec![TxPath::NoProgram, TxPath::Hit { program: 0, perfect: false }, TxPath::NoProgram]);
}

#[test]
fn a_program_list_that_does_not_line_up_with_the_block_gives_misses() {
    // ALICE's and BOB's calls differ in calldata and sender: applying one's program at the
    // other's position would commit the wrong outcome.
    let (cfg, block) = synthetic_env(SpecId::OSAKA);
    let db = AccountCodeOnly(state());
    let txs = [call(ALICE, CONTRACT, &[], 0, 2), call(BOB, CONTRACT, &[1], 0, 1)];
    let pa = Arc::new(Accelerated::new(vec![program(&db, &cfg, &block, &txs[0])]));
    let pb = Arc::new(Accelerated::new(vec![program(&db, &cfg, &block, &txs[1])]));
    // Each program at the other's position, labelled with the transaction it belongs to.
    let swapped = BlockPrograms::new([(txs[1].hash, Some(pb.clone())), (txs[0].hash, Some(pa.clone()))]);
    let import =
        import_block(&mut CacheDB::new(db.clone()), &cfg, &block, &txs, &swapped, None, true, true).expect("imports");
    assert_eq!(import.paths, vec![TxPath::NoProgram, TxPath::NoProgram]);
    let (divergences, _) =
        verify_against_reference(&mut CacheDB::new(db.clone()), &cfg, &block, &txs, &import).expect("reference");
    assert!(divergences.is_empty(), "divergences: {divergences:#?}");
    // Lined up, the same programs hit.
    let aligned = BlockPrograms::new([(txs[0].hash, Some(pa)), (txs[1].hash, Some(pb))]);
    let import = import_block(&mut CacheDB::new(db), &cfg, &block, &txs, &aligned, None, true, true).expect("imports");
    assert!(import.paths.iter().all(|p| matches!(p, TxPath::Hit { .. })), "{:?}", import.paths);
}

#[test]
fn a_clz_transaction_gets_a_program_that_hits() {
    let (cfg, block) = synthetic_env(SpecId::OSAKA);
    let db = AccountCodeOnly(state());
    let b = call(BOB, CONTRACT, &[1], 0, 1);
    let pb = program(&db, &cfg, &block, &b);
    let paths = import_and_verify(db, &cfg, &block, &[b], &[Some(pb)]);
    assert_eq!(paths, vec![TxPath::Hit { program: 0, perfect: false }]);
}

#[test]
fn a_delegation_hit_then_a_call_into_the_authority() {
    // Regression: a hit that wrote a delegation committed the designator's hash without its
    // bytes; a later miss that called the authority then ran no code.
    let (cfg, block) = synthetic_env(SpecId::PRAGUE);
    for backend_is_node in [false, true] {
        let mut db = state();
        db.insert_account_info(AUTHORITY, AccountInfo::from_balance(U256::from(1)));
        let mut delegate = call(ALICE, ALICE, &[], 0, 2);
        delegate.env.tx_type = 4;
        delegate.env.set_recovered_authorization(vec![RecoveredAuthorization::new_unchecked(
            Authorization { chain_id: U256::from(1), address: CONTRACT, nonce: 0 },
            RecoveredAuthority::Valid(AUTHORITY),
        )]);
        let into_authority = call(BOB, AUTHORITY, &[], 0, 1);
        let txs = [delegate, into_authority];
        let paths = if backend_is_node {
            let db = AccountCodeOnly(db);
            let p = program(&db, &cfg, &block, &txs[0]);
            import_and_verify(db, &cfg, &block, &txs, &[Some(p), None])
        } else {
            let p = program(&db, &cfg, &block, &txs[0]);
            import_and_verify(db, &cfg, &block, &txs, &[Some(p), None])
        };
        assert_eq!(
            paths,
            vec![TxPath::Hit { program: 0, perfect: false }, TxPath::NoProgram],
            "node-like backend: {backend_is_node}"
        );
    }
}

/// A block long enough for the receipts thread (48 transactions from 48 senders): calls into
/// one contract (each reads what the one before wrote) and plain transfers to one account
/// (deposits: their recipient's balance changes under each), every third with
/// a program, the rest executed ahead on the parent state. Whatever ran ahead in time, the
/// import is sequential revm's in full; on a stale parent view nothing ahead holds.
#[test]
fn transactions_executed_ahead_import_as_sequential_revm() {
    let (cfg, block) = synthetic_env(SpecId::OSAKA);
    let mut db = state();
    let senders: Vec<Address> = (0..48u64).map(|i| Address::left_padding_from(&(0x7700 + i).to_be_bytes())).collect();
    for who in &senders {
        db.insert_account_info(*who, AccountInfo::from_balance(U256::from(10u64.pow(18))));
    }
    let txs: Vec<ImportTx> = senders
        .iter()
        .enumerate()
        .map(|(i, who)| {
            if i % 2 == 0 {
                call(*who, CONTRACT, &[], 0, 1)
            } else {
                // Deposits: each commits from ahead as a credit to what the ones before left.
                let mut deposit = call(*who, BOB, &[], 0, 2);
                deposit.env.value = U256::from(1000 + i);
                deposit
            }
        })
        .collect();
    let mut before = CacheDB::new(db.clone());
    let mut programs = Vec::new();
    for (i, tx) in txs.iter().enumerate() {
        programs.push((i % 3 == 0).then(|| Arc::new(Accelerated::new(vec![program(&before, &cfg, &block, tx)]))));
        let mut evm = ir::reference::evm(&mut before, &cfg, &block);
        let res = revm::ExecuteEvm::transact(&mut evm, tx.env.clone()).expect("valid");
        revm::ExecuteCommitEvm::commit(&mut evm, res.state);
    }
    let by_position = BlockPrograms::new(txs.iter().zip(&programs).map(|(t, p)| (t.hash, p.clone())));
    let mut stale = db.clone();
    stale.insert_account_info(BOB, AccountInfo { nonce: 5, ..AccountInfo::from_balance(U256::from(3)) });
    stale.insert_account_storage(CONTRACT, U256::ZERO, U256::from(9)).expect("in memory");
    for view in [&db, &stale] {
        let import = import_block_ahead(
            &mut CacheDB::new(db.clone()),
            Some(view),
            &cfg,
            &block,
            &txs,
            &by_position,
            None,
            true,
            true,
        )
        .expect("imports");
        let (divergences, _) =
            verify_against_reference(&mut CacheDB::new(db.clone()), &cfg, &block, &txs, &import).expect("reference");
        assert!(divergences.is_empty(), "divergences: {divergences:#?}");
        for (i, path) in import.paths.iter().enumerate() {
            assert_eq!(matches!(path, TxPath::NoProgram), i % 3 != 0, "tx {i}: {path:?}");
        }
        if std::ptr::eq(view, &stale) {
            assert_eq!(import.ahead, 0, "a stale view holds for none");
        }
    }
}
