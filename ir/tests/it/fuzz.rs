//! Perturbation fuzzing: change the state and context between pre-execution and evaluation,
//! and require that every hit equals what revm does in the changed future.
//!
//! A sample of mainnet transactions is pre-executed on its actual state. Each case then
//! applies one to four random changes to what the transaction read (balances, nonces,
//! storage values, code) and to the block context (timestamp, number, base fee, fee
//! recipient, randomness, gas limit), evaluates the program there, and, on a hit, runs revm
//! on the same changed state. A hit where revm rejects the transaction, or any field that
//! differs, is a wrong hit. Misses are fine: they are what guards are for.
//!
//! The case count is bounded for CI; `PRESCIENT_FUZZ_CASES=100000` runs longer.

use std::sync::{
    OnceLock,
    atomic::{AtomicUsize, Ordering},
};

/// Cases tried and cases that hit, across the run (a fuzzer that never hits proves little).
static TRIED: AtomicUsize = AtomicUsize::new(0);
static HITS: AtomicUsize = AtomicUsize::new(0);

use mempool_tap::{Dataset, recorded::shared_data_for_tests};
use proptest::prelude::*;
use revm::{
    DatabaseCommit, DatabaseRef,
    context::{BlockEnv, CfgEnv, TxEnv},
    database::InMemoryDB,
    primitives::{Address, B256, Bytes, U256},
    state::{AccountInfo, Bytecode},
};

use crate::ir::{
    interp::{Evaluation, evaluate},
    program::Program,
    record::{RecordConfig, record},
};

/// One pre-executed transaction: its state, context, program, and what it read.
struct Case {
    what: String,
    db: InMemoryDB,
    cfg: CfgEnv,
    env: BlockEnv,
    tx: TxEnv,
    program: Program,
    accounts: Vec<Address>,
    slots: Vec<(Address, U256)>,
    codes: Vec<Bytes>,
}

/// Blocks from several forks (the last two are Prague and Osaka, with EIP-7702
/// delegations); every `STRIDE`th transaction of each.
const BLOCKS: [u64; 10] =
    [116_525, 2_675_000, 4_370_000, 9_069_000, 13_217_637, 15_537_394, 18_988_207, 19_932_703, 22_546_209, 25_323_281];
const STRIDE: usize = 3;

fn cases() -> Option<&'static Vec<Case>> {
    static CASES: OnceLock<Option<Vec<Case>>> = OnceLock::new();
    CASES
        .get_or_init(|| {
            let dir = shared_data_for_tests("perturbation fuzzing")?;
            let dataset = Dataset::open(&dir).expect("open the shared data");
            crate::ir::warm_up();
            let mut cases = Vec::new();
            for number in BLOCKS {
                let block = dataset.load(dataset.find(number).expect("listed")).expect("load");
                let mut db = block.state_db();
                for (i, tx) in block.txs.iter().enumerate() {
                    let rec = record(&db, &block.cfg, &block.env, &tx.env, RecordConfig::default()).expect("valid");
                    if let (Ok(program), 0) = (&rec.program, i % STRIDE) {
                        let accounts: Vec<Address> = rec.state.keys().copied().collect();
                        let slots =
                            rec.state.iter().flat_map(|(a, acc)| acc.storage.keys().map(|k| (*a, *k))).collect();
                        let codes = rec
                            .state
                            .values()
                            .filter_map(|a| a.info.code.as_ref().map(|c| c.original_bytes()))
                            .filter(|c| !c.is_empty())
                            .collect();
                        cases.push(Case {
                            what: format!("block {number} tx {i}"),
                            db: db.clone(),
                            cfg: block.cfg.clone(),
                            env: block.env.clone(),
                            tx: tx.env.clone(),
                            program: program.clone(),
                            accounts,
                            slots,
                            codes,
                        });
                    }
                    db.commit(rec.state);
                }
            }
            Some(cases)
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

/// Applies one change, chosen by `(kind, index, pick, random)`.
fn perturb(case: &Case, db: &mut InMemoryDB, env: &mut BlockEnv, kind: u8, index: usize, pick: u8, random: U256) {
    let account = case.accounts[index % case.accounts.len().max(1)];
    match kind % 6 {
        0 => {
            let mut i = info(db, account);
            i.balance = variant(i.balance, pick, random);
            db.insert_account_info(account, i);
        }
        1 => {
            let mut i = info(db, account);
            i.nonce = variant(U256::from(i.nonce), pick, random).saturating_to::<u64>();
            db.insert_account_info(account, i);
        }
        2 if !case.slots.is_empty() => {
            let (a, k) = case.slots[index % case.slots.len()];
            let old = db.storage_ref(a, k).unwrap_or_default();
            db.insert_account_storage(a, k, variant(old, pick, random)).expect("in-memory");
        }
        3 => {
            // Another code at this account: one the transaction ran elsewhere, or none.
            let mut i = info(db, account);
            let code = match case.codes.get(pick as usize % (case.codes.len() + 1)) {
                Some(c) => Bytecode::new_raw(c.clone()),
                None => Bytecode::default(),
            };
            i.code_hash = code.hash_slow();
            i.code = Some(code);
            db.insert_account_info(account, i);
        }
        4 => match pick % 5 {
            0 => env.timestamp = variant(env.timestamp, random.byte(1), random) % U256::from(1u64 << 40),
            1 => env.number = env.number.saturating_sub(U256::from(random.byte(2))),
            2 => env.basefee = variant(U256::from(env.basefee), random.byte(3), random).saturating_to::<u64>(),
            3 => env.beneficiary = case.accounts[random.byte(4) as usize % case.accounts.len().max(1)],
            _ => env.prevrandao = env.prevrandao.map(|_| B256::from(random)),
        },
        _ => env.gas_limit = variant(U256::from(env.gas_limit), pick, random).saturating_to::<u64>(),
    }
}

/// One change: (kind, index, pick, random bytes), as `perturb` reads them.
type Change = (u8, usize, u8, [u8; 32]);

fn run_case(seed: (usize, Vec<Change>)) -> Result<(), TestCaseError> {
    let Some(cases) = cases() else { return Ok(()) };
    let case = &cases[seed.0 % cases.len()];
    let mut db = case.db.clone();
    let mut env = case.env.clone();
    for (kind, index, pick, random) in &seed.1 {
        perturb(case, &mut db, &mut env, *kind, *index, *pick, U256::from_be_bytes(*random));
    }
    TRIED.fetch_add(1, Ordering::Relaxed);
    if let Evaluation::Hit(got) = evaluate(&case.program, &db, &case.cfg, &env, 1 << 24) {
        HITS.fetch_add(1, Ordering::Relaxed);
        match crate::ir::execute_tx(&db, &case.cfg, &env, &case.tx) {
            Err(e) => {
                prop_assert!(false, "{}: WRONG HIT: revm rejects the transaction ({e}) under {:?}", case.what, seed.1)
            }
            Ok((expected, _)) => {
                if let Some(d) = got.first_difference(&expected) {
                    prop_assert!(false, "{}: WRONG HIT: {d} under {:?}", case.what, seed.1);
                }
            }
        }
    }
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
        if tried % 500 == 0 {
            eprintln!("perturbation fuzzing: {tried} cases, {hits} hits");
        }
    }
}

#[test]
fn the_fuzzer_sees_programs_and_can_fail() {
    // The sample must hold programs, and the checker must catch a corrupted one: a program
    // whose recorded gas is off by one is wrong on any state.
    let Some(cases) = cases() else { return };
    assert!(cases.len() > 200, "only {} fuzz cases", cases.len());
    let case = &cases[cases.len() / 2];
    let mut broken = case.program.clone();
    broken.gas_used += 1;
    let Evaluation::Hit(got) = evaluate(&broken, &case.db, &case.cfg, &case.env, 1 << 24) else {
        panic!("{}: the program must hit its own state", case.what)
    };
    let (expected, _) = crate::ir::execute_tx(&case.db, &case.cfg, &case.env, &case.tx).expect("valid");
    assert!(got.first_difference(&expected).is_some());
}
