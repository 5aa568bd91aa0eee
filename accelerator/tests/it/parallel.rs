//! The parallel fallback against sequential revm: every recorded block, and synthetic blocks
//! built to conflict (one sender's nonce chain, one slot everyone increments, the fee
//! recipient read and paid, a contract created then called, a self-destruct). Every result,
//! the receipts and the whole state afterwards are compared.

use crate::accelerator::executor::{
    first_state_difference,
    parallel::{ParallelConfig, ParallelStats, execute_parallel},
};
use ir::execute_block;
use mempool_tap::{Dataset, recorded::shared_data_for_tests};
use revm::{
    context::{BlockEnv, CfgEnv, TxEnv},
    context_interface::transaction::{Authorization, RecoveredAuthority, RecoveredAuthorization},
    database::{CacheDB, InMemoryDB},
    primitives::{Address, Bytes, TxKind, U256, address, hardfork::SpecId, hex},
    state::{AccountInfo, Bytecode},
};

/// Runs `txs` sequentially and in parallel on copies of `db` and compares everything; returns
/// what the parallel run did.
fn compare(
    db: &InMemoryDB,
    cfg: &CfgEnv,
    block: &BlockEnv,
    txs: &[TxEnv],
    config: &ParallelConfig,
    label: &str,
) -> ParallelStats {
    let mut sequential_db = CacheDB::new(db.clone());
    let reference = execute_block(&mut sequential_db, cfg, block, txs).unwrap_or_else(|e| panic!("{label}: {e}"));
    let mut parallel_db = CacheDB::new(db.clone());
    let parallel =
        execute_parallel(&mut parallel_db, cfg, block, txs, config).unwrap_or_else(|e| panic!("{label}: {e}"));
    assert_eq!(parallel.results.len(), txs.len(), "{label}");
    for (i, (ours, theirs)) in parallel.results.iter().zip(&reference.txs).enumerate() {
        let ours = ir::TxOutcome::from_revm(ours, &Default::default());
        let mut theirs = theirs.clone();
        theirs.state = Default::default();
        assert_eq!(ours, theirs, "{label}: transaction {i}");
    }
    assert_eq!(parallel.receipts.receipts_root, reference.receipts_root, "{label}: receipts root");
    assert_eq!(parallel.receipts.gas_used, reference.gas_used, "{label}: gas");
    if let Some(difference) = first_state_difference(&parallel_db, &sequential_db) {
        panic!("{label}: {difference}");
    }
    let stats = &parallel.stats;
    assert_eq!(
        stats.speculative + stats.reexecuted + stats.in_order,
        txs.len(),
        "{label}: every transaction committed once: {stats:?}"
    );
    assert!(stats.taken_over <= stats.in_order, "{label}: a takeover runs in order: {stats:?}");
    parallel.stats
}

/// [`always_parallel`] where the committer takes over every claimed transaction it finds
/// unfinished twice (the path of a descheduled thread, exercised whatever the threads do).
fn taking_over(threads: usize) -> ParallelConfig {
    ParallelConfig { take_over_running: true, watch_window: std::time::Duration::ZERO, ..always_parallel(threads) }
}

/// Every block of any size in parallel from its first transaction: no rule chooses sequential.
fn always_parallel(threads: usize) -> ParallelConfig {
    ParallelConfig {
        threads,
        min_txs: 0,
        by_shape: false,
        sequential_for: std::time::Duration::ZERO,
        max_wall_per_executed: f64::INFINITY,
        max_waited_per_executed: f64::INFINITY,
        min_rest: std::time::Duration::ZERO,
        ..Default::default()
    }
}

#[test]
fn every_recorded_block_in_parallel_equals_sequential() {
    let Some(dir) = shared_data_for_tests("every_recorded_block_in_parallel_equals_sequential") else {
        return;
    };
    let dataset = Dataset::open(&dir).expect("open the shared data");
    ir::warm_up();
    let (mut speculative, mut reexecuted, mut taken_over) = (0, 0, 0);
    let (mut blocks, mut stopped) = (0, 0);
    for block_ref in dataset.complete_blocks() {
        let block = dataset.load(block_ref).unwrap_or_else(|e| panic!("block {}: {e}", block_ref.number));
        let db = block.state_db();
        let txs = block.tx_envs();
        for threads in [2, 4] {
            let config = always_parallel(threads);
            let label = format!("block {} x{threads}", block.number);
            let stats = compare(&db, &block.cfg, &block.env, &txs, &config, &label);
            let (s, r) = (stats.speculative, stats.reexecuted);
            speculative += s;
            reexecuted += r;
        }
        // A thread's late result after the committer took its transaction over is never used.
        let label = format!("block {} taking over", block.number);
        taken_over += compare(&db, &block.cfg, &block.env, &txs, &taking_over(2), &label).taken_over;
        // Where speculation stops because it does not pay (here at once: any wall time is
        // too much), at its first judged window of 64 commits (the second: the first holds
        // the threads' start), the rest runs in order with its receipts built beside it.
        if txs.len() > 2 * 64 {
            let config = ParallelConfig {
                max_wall_per_executed: 0.0,
                min_tx_time: std::time::Duration::ZERO,
                max_reexecuted: 1.0,
                ..always_parallel(2)
            };
            let label = format!("block {} stopped", block.number);
            compare(&db, &block.cfg, &block.env, &txs, &config, &label);
            let run = execute_parallel(&mut CacheDB::new(db.clone()), &block.cfg, &block.env, &txs, &config)
                .unwrap_or_else(|e| panic!("{label}: {e}"));
            // Rules whose fees the fallback cannot defer run sequentially (no threads at all).
            if !run.stats.sequential {
                assert_eq!(run.stats.stopped_at, Some(2 * 64), "{label}: {:?}", run.stats);
                stopped += 1;
            }
        }
        blocks += 1;
    }
    eprintln!(
        "parallel: {blocks} blocks, {speculative} transactions committed from speculation, {reexecuted} executed \
         again, {taken_over} taken over"
    );
    // Both ways of committing, the stop and the takeover must have been exercised for the
    // comparison to mean anything.
    assert!(speculative > 0 && reexecuted > 0 && stopped > 0 && taken_over > 0);
}

const ALICE: Address = address!("0x1000000000000000000000000000000000000001");
const BOB: Address = address!("0x1000000000000000000000000000000000000002");
const CAROL: Address = address!("0x1000000000000000000000000000000000000003");
const COUNTER: Address = address!("0x4000000000000000000000000000000000000004");
const PAYER: Address = address!("0x4000000000000000000000000000000000000005");
const BOMB: Address = address!("0x4000000000000000000000000000000000000006");
const COINBASE: Address = address!("0x00000000000000000000000000000000000000cb");

/// `SSTORE(0, SLOAD(0) + 1)`.
const INCREMENT: &str = "6001600054016000550000";
/// `SSTORE(1, BALANCE(COINBASE))`, then send 1 wei to COINBASE.
const PAY_COINBASE: &str = "4131600155600060006000600060014161fffff100";
/// `SELFDESTRUCT(COINBASE)`.
const DESTRUCT_TO_COINBASE: &str = "41ff";
/// Init code deploying `INCREMENT` (11 bytes) at the created address.
const DEPLOY_INCREMENT: &str = "600b600c600039600b6000f36001600054016000550000";

fn synthetic_state(coinbase_exists: bool) -> InMemoryDB {
    let mut db = InMemoryDB::default();
    for who in [ALICE, BOB, CAROL] {
        db.insert_account_info(who, AccountInfo::from_balance(U256::from(10u128.pow(20))));
    }
    for (address, code) in [(COUNTER, INCREMENT), (PAYER, PAY_COINBASE), (BOMB, DESTRUCT_TO_COINBASE)] {
        let code = Bytecode::new_raw(hex::decode(code).expect("hex").into());
        db.insert_account_info(address, AccountInfo::new(U256::from(1000), 1, code.hash_slow(), code));
    }
    if coinbase_exists {
        db.insert_account_info(COINBASE, AccountInfo::from_balance(U256::from(5)));
    }
    db
}

fn tx(from: Address, to: Option<Address>, data: &str, nonce: u64, tip: u128) -> TxEnv {
    TxEnv {
        tx_type: 2,
        caller: from,
        gas_limit: 200_000,
        gas_price: 1_000,
        gas_priority_fee: Some(tip),
        kind: to.map_or(TxKind::Create, TxKind::Call),
        data: Bytes::from(hex::decode(data).expect("hex")),
        nonce,
        chain_id: Some(1),
        ..Default::default()
    }
}

/// A block where most transactions depend on the one before.
fn conflicting_block() -> Vec<TxEnv> {
    let mut txs = Vec::new();
    let mut nonces = [0u64; 3];
    let mut next = |who: usize| {
        nonces[who] += 1;
        nonces[who] - 1
    };
    let senders = [ALICE, BOB, CAROL];
    for round in 0..12u64 {
        let who = (round % 3) as usize;
        let from = senders[who];
        txs.push(tx(from, Some(COUNTER), "", next(who), 7));
        txs.push(tx(from, Some(PAYER), "", next(who), u128::from(round)));
        if round == 4 {
            txs.push(tx(from, None, DEPLOY_INCREMENT, next(who), 3));
        }
        if round == 6 {
            txs.push(tx(from, Some(BOMB), "", next(who), 2));
        }
        // A zero tip: the fee recipient is touched with nothing.
        txs.push(tx(senders[(who + 1) % 3], Some(COUNTER), "", next((who + 1) % 3), 0));
    }
    txs
}

fn synthetic_block(spec: SpecId) -> (CfgEnv, BlockEnv) {
    let mut cfg = CfgEnv::new_with_spec(spec);
    cfg.chain_id = 1;
    let block = BlockEnv {
        number: U256::from(20_000_000u64),
        beneficiary: COINBASE,
        timestamp: U256::from(1_700_000_000u64),
        gas_limit: 30_000_000,
        basefee: 100,
        prevrandao: Some(Default::default()),
        ..Default::default()
    };
    (cfg, block)
}

#[test]
fn conflicting_synthetic_blocks_in_parallel_equal_sequential() {
    let txs = conflicting_block();
    // Shanghai keeps SELFDESTRUCT's full effect; Cancun only sends the balance.
    for spec in [SpecId::SHANGHAI, SpecId::CANCUN] {
        let (cfg, block) = synthetic_block(spec);
        for coinbase_exists in [true, false] {
            let db = synthetic_state(coinbase_exists);
            for threads in [2, 3, 8] {
                let config = always_parallel(threads);
                let label = format!("{spec:?}, coinbase exists {coinbase_exists}, x{threads}");
                compare(&db, &cfg, &block, &txs, &config, &label);
                let label = format!("{label}, taking over");
                compare(&db, &cfg, &block, &txs, &taking_over(threads), &label);
            }
        }
    }
}

#[test]
fn speculation_stops_and_the_rest_runs_in_order() {
    let txs = conflicting_block();
    let (cfg, block) = synthetic_block(SpecId::CANCUN);
    let db = synthetic_state(true);
    // Any share of re-executions is too many: speculation stops once 8 are committed.
    let config = ParallelConfig { max_reexecuted: -1.0, ..always_parallel(2) };
    let mut parallel_db = CacheDB::new(db.clone());
    let parallel = execute_parallel(&mut parallel_db, &cfg, &block, &txs, &config).expect("valid block");
    assert_eq!(parallel.stats.stopped_at, Some(8), "{:?}", parallel.stats);
    compare(&db, &cfg, &block, &txs, &config, "stopped");
    // A small block runs sequentially from the start.
    let config = ParallelConfig { min_txs: txs.len() + 1, ..always_parallel(2) };
    let small = execute_parallel(&mut CacheDB::new(db.clone()), &cfg, &block, &txs, &config).expect("valid block");
    assert!(small.stats.sequential);
    compare(&db, &cfg, &block, &txs, &config, "sequential");
    // A block done within the sequential prefix never starts the threads.
    let config = ParallelConfig { sequential_for: std::time::Duration::from_secs(60), ..always_parallel(2) };
    let quick = execute_parallel(&mut CacheDB::new(db.clone()), &cfg, &block, &txs, &config).expect("valid block");
    assert!(quick.stats.sequential && quick.stats.in_order == txs.len(), "{:?}", quick.stats);
    compare(&db, &cfg, &block, &txs, &config, "prefix");
    // One sender's nonce chain: its shape rules speculation out, and with the threads one
    // runs it in order while the other builds the receipts.
    let chain: Vec<TxEnv> = (0..80).map(|n| tx(ALICE, Some(COUNTER), "", n, 1)).collect();
    let config = ParallelConfig { by_shape: true, ..always_parallel(2) };
    let piped = execute_parallel(&mut CacheDB::new(db.clone()), &cfg, &block, &chain, &config).expect("valid block");
    let stats = &piped.stats;
    assert!(
        !stats.sequential && stats.speculative == 0 && stats.stopped_at == Some(0) && stats.in_order == chain.len(),
        "{stats:?}"
    );
    compare(&db, &cfg, &block, &chain, &config, "in order, receipts beside");
}

#[test]
fn an_invalid_transaction_fails_the_block_as_sequential_does() {
    let mut txs = conflicting_block();
    // A nonce from the future, in the middle of the block.
    let middle = txs.len() / 2;
    txs[middle].nonce += 100;
    let (cfg, block) = synthetic_block(SpecId::CANCUN);
    let db = synthetic_state(true);
    let sequential = execute_block(&mut CacheDB::new(db.clone()), &cfg, &block, &txs).expect_err("invalid");
    let config = always_parallel(2);
    let parallel = execute_parallel(&mut CacheDB::new(db), &cfg, &block, &txs, &config).expect_err("invalid");
    assert_eq!(parallel.index, sequential.index);
    assert_eq!(parallel.index, middle);
}

const DEPOSIT: Address = address!("0x5000000000000000000000000000000000000007");
/// `SLOW_INCREMENT`'s address.
const SLOW_COUNTER: Address = address!("0x500000000000000000000000000000000000000a");
/// `SLOAD(0)`, a loop of 4,096 rounds, `SSTORE(0, value + 1)`.
const SLOW_INCREMENT: &str = "6000546110005b60019003806006575060010160005500";
const FRESH: Address = address!("0x5000000000000000000000000000000000000008");
const WATCHER: Address = address!("0x4000000000000000000000000000000000000009");

/// A plain value transfer.
fn transfer(from: Address, to: Address, value: u64, nonce: u64) -> TxEnv {
    TxEnv { value: U256::from(value), gas_limit: 21_000, ..tx(from, Some(to), "", nonce, 1) }
}

/// The synthetic state with an exchange address (`DEPOSIT`), `senders` funded depositors, and
/// `WATCHER`: `SSTORE(1, BALANCE(DEPOSIT))`, a contract that reads what the deposits credit.
fn deposits_state(senders: u8) -> (InMemoryDB, Vec<Address>) {
    let watch = format!("73{}3160015500", hex::encode(DEPOSIT));
    let mut db = synthetic_state(true);
    let code = Bytecode::new_raw(hex::decode(&watch).expect("hex").into());
    db.insert_account_info(WATCHER, AccountInfo::new(U256::ZERO, 1, code.hash_slow(), code));
    db.insert_account_info(DEPOSIT, AccountInfo::from_balance(U256::from(10u128.pow(18))));
    let senders: Vec<Address> = (0..senders).map(|i| Address::left_padding_from(&[0x20, i])).collect();
    for sender in &senders {
        db.insert_account_info(*sender, AccountInfo::from_balance(U256::from(10u128.pow(18))));
    }
    (db, senders)
}

#[test]
fn deposits_of_many_senders_into_one_address_in_parallel_equal_sequential() {
    // Which transfers are credits is unit-tested beside `credited`; how many commit from
    // speculation depends on the threads' timing, so only the results are compared here.
    let (db, senders) = deposits_state(48);
    let mut txs = Vec::new();
    let (mut deposit_nonce, mut watcher_calls) = (0, 0);
    for (i, sender) in senders.iter().enumerate() {
        // Into the exchange address, an address that does not exist yet, a precompile (it runs:
        // never a credit) and the fee recipient (its credit is deferred: never a credit).
        let to = match i % 8 {
            3 => FRESH,
            5 => Address::with_last_byte(4),
            7 => COINBASE,
            _ => DEPOSIT,
        };
        txs.push(transfer(*sender, to, 1_000 + i as u64, 0));
        // The credited address reads its own balance (it sends), and a contract reads it.
        if i % 12 == 6 {
            txs.push(transfer(DEPOSIT, ALICE, 5, deposit_nonce));
            deposit_nonce += 1;
        }
        if i % 12 == 9 {
            txs.push(tx(BOB, Some(WATCHER), "", watcher_calls, 1));
            watcher_calls += 1;
        }
    }
    for spec in [SpecId::LONDON, SpecId::CANCUN] {
        let (cfg, block) = synthetic_block(spec);
        for threads in [2, 4] {
            let label = format!("deposits, {spec:?}, x{threads}");
            compare(&db, &cfg, &block, &txs, &always_parallel(threads), &label);
        }
    }
}

/// Deposits into an address that an authorization delegates to code mid-block (EIP-7702): the
/// deposits speculated before the delegation was committed ran on an account without code, as
/// plain credits, where sequential revm runs the delegated code (`SSTORE(1, BALANCE(DEPOSIT))`
/// in the depositee's own storage, with enough gas for it in half of them).
#[test]
fn deposits_into_an_address_delegated_mid_block_equal_sequential() {
    let (db, senders) = deposits_state(40);
    let mut txs = Vec::new();
    for (i, sender) in senders.iter().enumerate() {
        let mut deposit = transfer(*sender, DEPOSIT, 1_000 + i as u64, 0);
        if i % 2 == 0 {
            deposit.gas_limit = 100_000;
        }
        txs.push(deposit);
        if i == 12 {
            let mut delegate = tx(CAROL, Some(CAROL), "", 0, 1);
            delegate.tx_type = 4;
            delegate.set_recovered_authorization(vec![RecoveredAuthorization::new_unchecked(
                Authorization { chain_id: U256::from(1), address: WATCHER, nonce: 0 },
                RecoveredAuthority::Valid(DEPOSIT),
            )]);
            txs.push(delegate);
        }
    }
    let (cfg, block) = synthetic_block(SpecId::PRAGUE);
    // Which deposits were speculated before the delegation committed depends on the threads'
    // timing: a few rounds (a credit committed over the delegation failed two runs in three).
    for round in 0..4 {
        for threads in [2, 4] {
            let label = format!("deposits into a delegated address, x{threads}, round {round}");
            compare(&db, &cfg, &block, &txs, &always_parallel(threads), &label);
            compare(&db, &cfg, &block, &txs, &taking_over(threads), &format!("{label}, taking over"));
        }
    }
}

/// Many senders increment one slot, one after another, between transfers that touch nothing
/// they read (deposits of many senders into one token balance): the slot turns hot, and views
/// reading it wait for every lower transaction to commit. Some of the incrementing calls run
/// out of gas after their read, so that what a waiting view reads depends on a failure below.
#[test]
fn consecutive_increments_of_one_slot_by_many_senders_equal_sequential() {
    let (db, senders) = deposits_state(96);
    let mut txs = Vec::new();
    for (i, sender) in senders.iter().enumerate() {
        if i % 24 < 16 {
            let mut call = tx(*sender, Some(COUNTER), "", 0, 1);
            if i % 7 == 3 {
                // Enough for the intrinsic gas and the slot's read, not for its write.
                call.gas_limit = 23_500;
            }
            txs.push(call);
        } else {
            txs.push(transfer(*sender, FRESH, 1_000 + i as u64, 0));
        }
    }
    let (cfg, block) = synthetic_block(SpecId::CANCUN);
    // Whether and when the slot turns hot depends on the threads' timing: four rounds at
    // least, and more until a view has read, after waiting, a value other than it would have
    // read at once (else this test would not test the waits), up to `MAX_ROUNDS`. On a loaded
    // 2-core machine (the other tests of this binary running beside it) four rounds once
    // saw 1 hot slot and no such wait. Conflicts do not stop speculation here.
    const MAX_ROUNDS: usize = 32;
    let (mut hot, mut waits) = (0, 0);
    let keep_on = |threads| ParallelConfig {
        max_reexecuted: 1.0,
        min_tx_time: std::time::Duration::ZERO,
        ..always_parallel(threads)
    };
    for round in 0..MAX_ROUNDS {
        if round >= 4 && hot > 0 && waits > 0 {
            break;
        }
        for threads in [2, 3, 8] {
            let label = format!("increments, x{threads}, round {round}");
            let stats = compare(&db, &cfg, &block, &txs, &keep_on(threads), &label);
            (hot, waits) = (hot + stats.hot, waits + stats.waits);
            compare(&db, &cfg, &block, &txs, &taking_over(threads), &format!("{label}, taking over"));
        }
    }
    assert!(
        hot > 0 && waits > 0,
        "no run of {MAX_ROUNDS} rounds waited for the incremented slot: {hot} hot, {waits} waits"
    );
    // Speculation stopping on the waits (any is too many) or on conflicts, with views waiting
    // at that moment or not: their executions are dropped, and the rest runs in order.
    let on_waits = ParallelConfig { max_waited_per_executed: 0.0, ..keep_on(2) };
    compare(&db, &cfg, &block, &txs, &on_waits, "increments, stopping on the waits");
    let on_conflicts = ParallelConfig { max_reexecuted: 0.05, ..always_parallel(2) };
    compare(&db, &cfg, &block, &txs, &on_conflicts, "increments, stopping on conflicts");
}

/// Nonce chains whose members conflict (9,069,000's shape): each sender sends a run of
/// increments of the one counter, some running out of gas after the read, with deposits
/// between the runs. A chain member read stale is executed again on the committed state
/// while its sender's next transaction is speculated; that view waits for it (its writes are
/// in the committer's hands, or its speculative run failed: `unknown_waits`) rather than read
/// the nonce it has not spent yet, and everything still equals sequential, also when
/// speculation stops or the committer takes transactions over.
#[test]
fn runs_of_one_senders_conflicting_calls_equal_sequential() {
    let (mut db, senders) = deposits_state(12);
    // Slot 0 read, a loop of 4,096 rounds, slot 0 incremented: a call long enough (about 100
    // µs) that the committer executing it again is seen by the other threads' views.
    let slow = Bytecode::new_raw(hex::decode(SLOW_INCREMENT).expect("hex").into());
    db.insert_account_info(SLOW_COUNTER, AccountInfo::new(U256::ZERO, 1, slow.hash_slow(), slow));
    let mut txs = Vec::new();
    for (i, sender) in senders.iter().enumerate() {
        for nonce in 0..6u64 {
            let mut call = tx(*sender, Some(SLOW_COUNTER), "", nonce, 1);
            if (i as u64 + nonce) % 5 == 4 {
                // Enough for the intrinsic gas and the slot's read, not for its write.
                call.gas_limit = 23_500;
            }
            txs.push(call);
        }
        if i % 3 == 0 {
            // The run's sender deposits last.
            txs.push(transfer(*sender, DEPOSIT, 1_000, 6));
        }
    }
    let (cfg, block) = synthetic_block(SpecId::CANCUN);
    let keep_on = |threads| ParallelConfig {
        max_reexecuted: 1.0,
        min_tx_time: std::time::Duration::ZERO,
        ..always_parallel(threads)
    };
    // Whether a view meets a writer in the committer's hands depends on the threads' timing
    // (the other tests of this binary run beside it): four rounds at least, more until one
    // did, up to `MAX_ROUNDS`.
    const MAX_ROUNDS: usize = 64;
    let (mut unknown_waits, mut rounds) = (0, 0);
    for round in 0..MAX_ROUNDS {
        if round >= 4 && unknown_waits > 0 {
            break;
        }
        rounds += 1;
        for threads in [2, 3, 8] {
            let label = format!("runs, x{threads}, round {round}");
            unknown_waits += compare(&db, &cfg, &block, &txs, &keep_on(threads), &label).unknown_waits;
            let label = format!("{label}, taking over");
            unknown_waits += compare(&db, &cfg, &block, &txs, &taking_over(threads), &label).unknown_waits;
        }
    }
    eprintln!("runs: {unknown_waits} reads waited for unknown writes in {rounds} rounds");
    assert!(unknown_waits > 0, "no view of {MAX_ROUNDS} rounds waited for a writer whose writes were unknown");
    let on_conflicts = ParallelConfig { max_reexecuted: 0.05, ..always_parallel(2) };
    compare(&db, &cfg, &block, &txs, &on_conflicts, "runs, stopping on conflicts");
}
