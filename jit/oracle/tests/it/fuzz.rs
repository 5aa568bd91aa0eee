//! Perturbation fuzzing: change the state and context between pre-execution and evaluation,
//! and require that every hit equals what revm does in the changed future.
//!
//! A sample of mainnet transactions (blocks chosen by property: one small block per fork,
//! so every fork's rules are in the set, on any data set in this layout) is pre-executed on
//! its actual state. Each case then applies one to four random changes to what the
//! transaction read and to the block context, evaluates the program (as recorded and as
//! optimized, which is what production stores) there, and on a hit runs revm on the same
//! changed state. A hit where revm rejects the transaction, or any field that differs, is a
//! wrong hit. Misses are fine: they are what guards are for.
//!
//! The changes (see [`perturb`]): balances, nonces, storage values and code; accounts
//! deleted, and created at addresses the transaction reached that did not exist; values
//! replaced by keys and addresses the transaction used (so that data-dependent keys and
//! addresses *become* equal: aliasing in that direction, access-list keys included);
//! EIP-7702 delegations pointed elsewhere; the fee recipient set to a fresh address, a
//! precompile, an access-listed address, the sender, the callee or a touched account;
//! timestamp, base fee, gas limit, randomness, blob base fee and block hashes; the block
//! number moved both ways, across the BLOCKHASH window. Some cases also carry a variant of
//! their transaction whose access list repeats addresses and keys (EIP-2930 allows it).
//!
//! The case count is bounded for CI; `PRESCIENT_FUZZ_CASES=1000000` runs longer.

use std::sync::{
    OnceLock,
    atomic::{AtomicUsize, Ordering},
};

/// Cases tried and cases that hit, across the run (a fuzzer that never hits proves little).
static TRIED: AtomicUsize = AtomicUsize::new(0);
/// Cases where the program hit (at every tier: the oracle checks they agree).
static HITS: AtomicUsize = AtomicUsize::new(0);
static READ_SET_HITS: AtomicUsize = AtomicUsize::new(0);

use mempool_tap::{Dataset, recorded::shared_data_for_tests};
use proptest::prelude::*;
use revm::{
    DatabaseCommit, DatabaseRef,
    context::{BlockEnv, CfgEnv, TxEnv},
    context_interface::transaction::{AccessList, AccessListItem},
    database::{DbAccount, InMemoryDB},
    primitives::{Address, B256, Bytes, TxKind, U256, hardfork::SpecId},
    state::{AccountInfo, Bytecode},
};

use crate::{
    ir::record::{RecordConfig, record},
    oracle::{Prepared, check, prepare, reference},
};

/// One pre-executed transaction: its state, context, programs, and what it read.
struct Case {
    what: String,
    db: InMemoryDB,
    cfg: CfgEnv,
    env: BlockEnv,
    tx: TxEnv,
    /// The program at every tier.
    prepared: Prepared,
    /// Accounts revm loaded, and those among them that did not exist.
    accounts: Vec<Address>,
    absent: Vec<Address>,
    slots: Vec<(Address, U256)>,
    codes: Vec<Bytes>,
    /// Words the transaction used as keys or addresses (touched slots' keys, accounts,
    /// access-list entries): planted as values, they make data-dependent keys collide.
    keys: Vec<U256>,
}

/// Every `STRIDE`th transaction with a program, of one small block per fork (and each block
/// whose fork the listing does not name).
const STRIDE: usize = 3;
/// Blocks must have this many transactions to be sampled.
const MIN_TXS: usize = 8;

fn word(a: Address) -> U256 {
    a.into_word().into()
}

/// The transaction with its access list split into one entry per key, each address repeated,
/// plus the callee listed twice: duplicates revm merges. `None` before Berlin or for legacy
/// transactions.
fn duplicated_access_list(spec: SpecId, tx: &TxEnv, touched: &[(Address, U256)]) -> Option<TxEnv> {
    if tx.tx_type == 0 || !spec.is_enabled_in(SpecId::BERLIN) {
        return None;
    }
    let mut items = Vec::new();
    for item in &tx.access_list.0 {
        items.push(AccessListItem { address: item.address, storage_keys: Vec::new() });
        for key in &item.storage_keys {
            items.push(AccessListItem { address: item.address, storage_keys: vec![*key] });
        }
    }
    if let TxKind::Call(to) = tx.kind {
        let keys: Vec<B256> = touched.iter().filter(|(a, _)| *a == to).map(|(_, k)| B256::from(*k)).take(2).collect();
        items.push(AccessListItem { address: to, storage_keys: keys.iter().take(1).copied().collect() });
        items.push(AccessListItem { address: to, storage_keys: keys.iter().skip(1).copied().collect() });
    }
    let mut variant = tx.clone();
    variant.access_list = AccessList(items);
    // Each listed address and key costs intrinsic gas; leave room for it.
    variant.gas_limit = tx.gas_limit.saturating_add(10 * 2_400 + 10 * 1_900);
    Some(variant)
}

/// Records `tx` on `db` and, if it gets a program, adds a case.
fn add_case(cases: &mut Vec<Case>, what: String, db: &InMemoryDB, cfg: &CfgEnv, env: &BlockEnv, tx: &TxEnv) {
    let Ok(rec) = record(db, cfg, env, tx, RecordConfig::default()) else { return };
    let Ok(program) = rec.program else { return };
    let mut prepared = prepare(&program);
    prepared.record_reads(db, cfg, env);
    assert!(prepared.problems.is_empty(), "{what}: {:?}", prepared.problems);
    let accounts: Vec<Address> = rec.state.keys().copied().collect();
    let absent = accounts.iter().copied().filter(|a| db.basic_ref(*a).ok().flatten().is_none()).collect();
    let slots: Vec<(Address, U256)> =
        rec.state.iter().flat_map(|(a, acc)| acc.storage.keys().map(|k| (*a, *k))).collect();
    let codes = rec
        .state
        .values()
        .filter_map(|a| a.info.code.as_ref().map(|c| c.original_bytes()))
        .filter(|c| !c.is_empty())
        .collect();
    let mut keys: Vec<U256> = slots.iter().map(|(_, k)| *k).chain(accounts.iter().map(|a| word(*a))).collect();
    for item in &tx.access_list.0 {
        keys.push(word(item.address));
        keys.extend(item.storage_keys.iter().map(|k| U256::from_be_bytes(k.0)));
    }
    keys.sort_unstable();
    keys.dedup();
    cases.push(Case {
        what,
        db: db.clone(),
        cfg: cfg.clone(),
        env: env.clone(),
        tx: tx.clone(),
        prepared,
        accounts,
        absent,
        slots,
        codes,
        keys,
    });
}

/// The cases, and the specs of the sampled blocks.
type Cases = (Vec<Case>, std::collections::BTreeSet<SpecId>);

fn cases() -> Option<&'static Cases> {
    static CASES: OnceLock<Option<Cases>> = OnceLock::new();
    CASES
        .get_or_init(|| {
            let dir = shared_data_for_tests("perturbation fuzzing")?;
            let dataset = Dataset::open(&dir).expect("open the shared data");
            crate::ir::warm_up();
            let mut cases = Vec::new();
            let mut specs = std::collections::BTreeSet::new();
            for block_ref in dataset.sample_by_fork(1, MIN_TXS) {
                let block = dataset.load(block_ref).expect("load");
                specs.insert(block.spec);
                let mut db = block.state_db();
                let mut with_program = 0;
                for (i, tx) in block.txs.iter().enumerate() {
                    let rec = record(&db, &block.cfg, &block.env, &tx.env, RecordConfig::default()).expect("valid");
                    if rec.program.is_ok() {
                        with_program += 1;
                        if with_program % STRIDE == 1 {
                            let what = format!("block {} tx {i}", block.number);
                            add_case(&mut cases, what.clone(), &db, &block.cfg, &block.env, &tx.env);
                            let touched: Vec<(Address, U256)> =
                                rec.state.iter().flat_map(|(a, acc)| acc.storage.keys().map(|k| (*a, *k))).collect();
                            if let Some(variant) = duplicated_access_list(block.spec, &tx.env, &touched) {
                                let what = format!("{what} (access list with duplicates)");
                                add_case(&mut cases, what, &db, &block.cfg, &block.env, &variant);
                            }
                        }
                    }
                    db.commit(rec.state);
                }
            }
            eprintln!("perturbation fuzzing: {} cases over {} forks: {specs:?}", cases.len(), specs.len());
            Some((cases, specs))
        })
        .as_ref()
}

/// A value near `x`, or a notable one, chosen by `pick`.
fn variant(x: U256, pick: u8, random: U256) -> U256 {
    match pick % 8 {
        0 => U256::ZERO,
        1 => U256::from(1),
        2 => x.wrapping_add(U256::from(1)),
        3 => x.wrapping_sub(U256::from(1)),
        4 => x.wrapping_mul(U256::from(2)),
        5 => U256::MAX - (random >> 200),
        6 => random >> (random.byte(0) as usize),
        _ => random,
    }
}

fn info(db: &InMemoryDB, a: Address) -> AccountInfo {
    db.basic_ref(a).ok().flatten().unwrap_or_default()
}

fn pick<T: Copy>(items: &[T], i: usize) -> Option<T> {
    (!items.is_empty()).then(|| items[i % items.len()])
}

/// Applies one change, chosen by `(kind, index, pick, random)`.
fn perturb(case: &Case, db: &mut InMemoryDB, env: &mut BlockEnv, kind: u8, index: usize, pick_: u8, random: U256) {
    let Some(account) = pick(&case.accounts, index) else { return };
    match kind % 12 {
        0 => {
            let mut i = info(db, account);
            i.balance = variant(i.balance, pick_, random);
            db.insert_account_info(account, i);
        }
        1 => {
            let mut i = info(db, account);
            i.nonce = variant(U256::from(i.nonce), pick_, random).saturating_to::<u64>();
            db.insert_account_info(account, i);
        }
        2 => {
            if let Some((a, k)) = pick(&case.slots, index) {
                let old = db.storage_ref(a, k).unwrap_or_default();
                db.insert_account_storage(a, k, variant(old, pick_, random)).expect("in-memory");
            }
        }
        3 => {
            // Another code at this account: one the transaction ran elsewhere, or none.
            let mut i = info(db, account);
            let code = match case.codes.get(pick_ as usize % (case.codes.len() + 1)) {
                Some(c) => Bytecode::new_raw(c.clone()),
                None => Bytecode::default(),
            };
            i.code_hash = code.hash_slow();
            i.code = Some(code);
            db.insert_account_info(account, i);
        }
        4 => match pick_ % 6 {
            0 => env.timestamp = variant(env.timestamp, random.byte(1), random) % U256::from(1u64 << 40),
            1 => {
                // Across the BLOCKHASH window, both ways, or a step.
                let step = U256::from(random.byte(2)) + if random.bit(8) { U256::from(256) } else { U256::ZERO };
                env.number = if random.bit(9) { env.number + step } else { env.number.saturating_sub(step) };
            }
            2 => env.basefee = variant(U256::from(env.basefee), random.byte(3), random).saturating_to::<u64>(),
            3 => {
                env.prevrandao = env.prevrandao.map(|_| B256::from(random));
                env.difficulty = variant(env.difficulty, random.byte(4), random);
            }
            4 => {
                if let Some(blob) = env.blob_excess_gas_and_price.as_mut() {
                    blob.blob_gasprice =
                        variant(U256::from(blob.blob_gasprice), random.byte(5), random).saturating_to();
                }
            }
            _ => env.gas_limit = variant(U256::from(env.gas_limit), pick_, random).saturating_to::<u64>(),
        },
        5 => {
            // The fee recipient: fresh, a precompile, listed, the sender, the callee, touched.
            env.beneficiary = match pick_ % 6 {
                0 => Address::from_word(B256::from(random)),
                1 => Address::with_last_byte(1 + random.byte(6) % 10),
                2 => {
                    case.tx.access_list.0.get(index % case.tx.access_list.0.len().max(1)).map_or(account, |i| i.address)
                }
                3 => case.tx.caller,
                4 => case.tx.kind.to().copied().unwrap_or(account),
                _ => account,
            };
        }
        6 => {
            // The account no longer exists.
            db.cache.accounts.insert(account, DbAccount::new_not_existing());
        }
        7 => {
            // An account the transaction reached, absent when it ran, now exists.
            let target = pick(&case.absent, index).unwrap_or(account);
            let mut i = info(db, target);
            i.balance = variant(i.balance, pick_, random);
            i.nonce = u64::from(random.bit(0));
            db.insert_account_info(target, i);
        }
        8 => {
            // Plant a key or address the transaction used as a value it reads: a
            // data-dependent key or address may now equal another one.
            let Some(key) = pick(&case.keys, random.byte(7) as usize) else { return };
            match (pick_ % 3, pick(&case.slots, index)) {
                (0 | 1, Some((a, k))) => db.insert_account_storage(a, k, key).expect("in-memory"),
                _ => {
                    let mut i = info(db, account);
                    i.balance = key;
                    db.insert_account_info(account, i);
                }
            }
        }
        9 => {
            // Another hash for a block in the window.
            let back = U256::from(1 + random.byte(10) as u64 % 256);
            let number = env.number.saturating_sub(back);
            db.cache.block_hashes.insert(number, B256::from(random));
        }
        10 => {
            // A delegation pointed at another account (or at one the transaction ran).
            let target = pick(&case.accounts, random.byte(11) as usize).unwrap_or(account);
            let mut i = info(db, account);
            let code = Bytecode::new_eip7702(target);
            i.code_hash = code.hash_slow();
            i.code = Some(code);
            db.insert_account_info(account, i);
        }
        _ => env.gas_limit = variant(U256::from(env.gas_limit), pick_, random).saturating_to::<u64>(),
    }
}

/// One change: (kind, index, pick, random bytes), as `perturb` reads them.
type Change = (u8, usize, u8, [u8; 32]);

fn run_case(seed: (usize, Vec<Change>)) -> Result<(), TestCaseError> {
    let Some((cases, _)) = cases() else { return Ok(()) };
    let case = &cases[seed.0 % cases.len()];
    let mut db = case.db.clone();
    let mut env = case.env.clone();
    for (kind, index, pick, random) in &seed.1 {
        perturb(case, &mut db, &mut env, *kind, *index, *pick, U256::from_be_bytes(*random));
    }
    TRIED.fetch_add(1, Ordering::Relaxed);
    let checked = check(&case.prepared, &db, &case.cfg, &env, || reference(&db, &case.cfg, &env, &case.tx), &case.what);
    if checked.hit.is_some() {
        HITS.fetch_add(1, Ordering::Relaxed);
    }
    if checked.read_set_hit {
        READ_SET_HITS.fetch_add(1, Ordering::Relaxed);
    }
    prop_assert!(checked.is_sound(), "{:?} under {:?}", checked.problems, seed.1);
    Ok(())
}

fn config() -> ProptestConfig {
    let cases = std::env::var("PRESCIENT_FUZZ_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(1500);
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn perturbed_futures_never_hit_wrong(
        seed in (any::<usize>(), prop::collection::vec((any::<u8>(), any::<usize>(), any::<u8>(), any::<[u8; 32]>()), 1..5))
    ) {
        run_case(seed)?;
        let (tried, hits) = (TRIED.load(Ordering::Relaxed), HITS.load(Ordering::Relaxed));
        if tried.is_multiple_of(5000) {
            let memo = READ_SET_HITS.load(Ordering::Relaxed);
            eprintln!("perturbation fuzzing: {tried} cases, {hits} hits ({memo} through the read-set memo)");
        }
    }
}

#[test]
fn the_fuzzer_sees_programs_of_every_fork_and_can_fail() {
    // The sample must hold programs from the forks whose rules differ most, and the checker
    // must catch a corrupted program: one whose recorded gas is off by one is wrong on any
    // state.
    let Some((cases, sampled)) = cases() else { return };
    let specs: std::collections::BTreeSet<SpecId> = cases.iter().map(|c| c.cfg.spec).collect();
    assert_eq!(&specs, sampled, "every fork sampled has cases");
    assert!(
        cases.iter().any(|c| c.what.contains("duplicates")) || !specs.iter().any(|s| s.is_enabled_in(SpecId::BERLIN)),
        "no access list with duplicates"
    );
    let case = &cases[cases.len() / 2];
    let mut broken = case.prepared.clone();
    for (_, program) in &mut broken.tiers {
        program.gas_used += 1;
    }
    let checked = check(
        &broken,
        &case.db,
        &case.cfg,
        &case.env,
        || reference(&case.db, &case.cfg, &case.env, &case.tx),
        "broken",
    );
    assert!(checked.hit.is_some(), "{}: the program must hit its own state", case.what);
    assert!(!checked.is_sound(), "a program with the wrong gas must be caught");
}
