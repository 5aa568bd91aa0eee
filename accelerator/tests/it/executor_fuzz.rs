//! The block executor under fuzzing: multi-transaction blocks imported through
//! [`import_block`], every block compared with sequential revm in full.
//!
//! Windows of mainnet blocks (one small block per fork, chosen by property) are pre-executed
//! three ways per transaction, as the predictor would: in its own future (the block so far),
//! alone on the block's pre-state (heard early), and with the transaction before it left out
//! (a wrong order). Each case then imports a random sub-block (transactions dropped, with
//! the rest of their sender's nonce chain), giving each transaction a random subset of its
//! programs in random order, or none, on a randomly perturbed pre-state, and half the time
//! on a backend that knows code only through its account, as a node's state does. That mixes
//! hits followed by misses on the same contract, misses followed by hits, and delegations
//! followed by calls into the authority (in the Prague and Osaka blocks).
//!
//! The block count is bounded for CI; `PRESCIENT_EXECUTOR_FUZZ_BLOCKS=10000` runs longer.

use std::sync::{
    Arc, OnceLock,
    atomic::{AtomicUsize, Ordering},
};

use crate::accelerator::{
    ImportTx, PreExecution, TxPath, executor::Accelerated, import_block, pre_execute, store::ReadSetEntry,
    verify_against_reference,
};
use ir::{AccountCodeOnly, compact::PrecompileMemo, program::Program, readset::ReadSet, record::RecordConfig};
use mempool_tap::{Dataset, recorded::shared_data_for_tests};
use proptest::prelude::*;
use revm::{
    DatabaseCommit, DatabaseRef,
    context::{BlockEnv, CfgEnv},
    database::{CacheDB, DbAccount, InMemoryDB},
    database_interface::DBErrorMarker,
    primitives::{Address, B256, U256},
};

/// Transactions of each block pre-executed and imported (the first ones).
const WINDOW: usize = 24;
/// Blocks must have this many transactions to be sampled.
const MIN_TXS: usize = 8;

/// A window of one block with every transaction's programs.
struct Base {
    what: String,
    db: InMemoryDB,
    cfg: CfgEnv,
    env: BlockEnv,
    txs: Vec<ImportTx>,
    /// Per transaction: own future, alone, without the transaction before it; each with
    /// the read set of its recording.
    programs: Vec<Vec<Recorded>>,
    accounts: Vec<Address>,
    slots: Vec<(Address, U256)>,
}

static TRIED: AtomicUsize = AtomicUsize::new(0);
static BLOCKS: AtomicUsize = AtomicUsize::new(0);
static HITS: AtomicUsize = AtomicUsize::new(0);
static PERFECT: AtomicUsize = AtomicUsize::new(0);
static MISSES: AtomicUsize = AtomicUsize::new(0);
static HIT_THEN_MISS: AtomicUsize = AtomicUsize::new(0);
static REJECTED: AtomicUsize = AtomicUsize::new(0);

/// A program and the read set of the run that recorded it.
type Recorded = (Arc<Program>, Option<Arc<ReadSet>>);

fn program<D>(db: &D, base: &Base, predecessors: &[revm::context::TxEnv], i: usize) -> Option<Recorded>
where
    D: DatabaseRef,
    D::Error: DBErrorMarker,
{
    match pre_execute(db, &base.cfg, &base.env, predecessors, &base.txs[i].env, RecordConfig::default(), Some(memo())) {
        PreExecution::Program(p, reads) => Some((Arc::new(p), reads.map(|r| Arc::new(*r)))),
        _ => None,
    }
}

fn memo() -> &'static PrecompileMemo {
    static MEMO: OnceLock<PrecompileMemo> = OnceLock::new();
    MEMO.get_or_init(|| PrecompileMemo::new(64 << 20))
}

fn bases() -> Option<&'static Vec<Base>> {
    static BASES: OnceLock<Option<Vec<Base>>> = OnceLock::new();
    BASES
        .get_or_init(|| {
            let dir = shared_data_for_tests("executor fuzzing")?;
            let dataset = Dataset::open(&dir).expect("open the shared data");
            ir::warm_up();
            let mut bases = Vec::new();
            for block_ref in dataset.sample_by_fork(1, MIN_TXS) {
                let block = dataset.load(block_ref).expect("load");
                // A layout without hashes (grevm) gets the position as the key.
                let txs: Vec<ImportTx> = block
                    .txs
                    .iter()
                    .take(WINDOW)
                    .enumerate()
                    .map(|(i, t)| ImportTx { hash: t.hash.unwrap_or(B256::from(U256::from(i))), env: t.env.clone() })
                    .collect();
                let mut base = Base {
                    what: format!("block {} ({:?})", block.number, block.spec),
                    db: block.state_db(),
                    cfg: block.cfg.clone(),
                    env: block.env.clone(),
                    txs,
                    programs: Vec::new(),
                    accounts: Vec::new(),
                    slots: Vec::new(),
                };
                let envs: Vec<_> = base.txs.iter().map(|t| t.env.clone()).collect();
                let mut sequential = base.db.clone();
                for i in 0..base.txs.len() {
                    let mut programs = Vec::new();
                    programs.extend(program(&sequential, &base, &[], i));
                    programs.extend(program(&base.db, &base, &[], i));
                    if i > 0 {
                        let skipped: Vec<_> = envs[..i - 1].to_vec();
                        programs.extend(program(&base.db, &base, &skipped, i));
                    }
                    base.programs.push(programs);
                    let (_, state) = ir::execute_tx(&sequential, &base.cfg, &base.env, &envs[i]).expect("valid");
                    for (address, account) in &state {
                        base.accounts.push(*address);
                        base.slots.extend(account.storage.keys().map(|k| (*address, *k)));
                    }
                    sequential.commit(state);
                }
                base.accounts.sort_unstable();
                base.accounts.dedup();
                base.slots.sort_unstable();
                base.slots.dedup();
                bases.push(base);
            }
            eprintln!("executor fuzzing: {} block windows", bases.len());
            Some(bases)
        })
        .as_ref()
}

/// One case: which window, which transactions to drop (bit per transaction, dropped when
/// set in both masks: about one in four), programs per transaction (a byte each), state
/// changes, and whether the backend is node-like.
type Seed = (usize, u64, u64, Vec<u8>, Vec<(u8, usize, [u8; 32])>, bool);

fn perturb(base: &Base, db: &mut InMemoryDB, kind: u8, index: usize, random: U256) {
    if base.accounts.is_empty() {
        return;
    }
    let account = base.accounts[index % base.accounts.len()];
    let mut info = db.basic_ref(account).ok().flatten().unwrap_or_default();
    match kind % 4 {
        0 => {
            info.balance = if random.bit(0) { random >> 128 } else { info.balance.saturating_add(random >> 200) };
            db.insert_account_info(account, info);
        }
        1 => {
            if !base.slots.is_empty() {
                let (a, k) = base.slots[index % base.slots.len()];
                let value = if random.bit(1) { U256::ZERO } else { random >> (random.byte(1) as usize) };
                db.insert_account_storage(a, k, value).expect("in memory");
            }
        }
        2 => {
            // The account no longer exists (its transactions may become invalid: both sides
            // must then reject the block at the same transaction).
            db.cache.accounts.insert(account, DbAccount::new_not_existing());
        }
        _ => {
            info.nonce = info.nonce.wrapping_add(u64::from(random.byte(2) % 3)).wrapping_sub(1);
            db.insert_account_info(account, info);
        }
    }
}

/// Imports the case's sub-block on `backend` and compares with sequential revm.
fn check<D>(
    base: &Base,
    backend: D,
    txs: &[ImportTx],
    programs: &[Vec<Recorded>],
    seed: &Seed,
) -> Result<(), TestCaseError>
where
    D: DatabaseRef + Clone,
    D::Error: DBErrorMarker,
{
    // Half the cases run production's path (the read-set memo, then the merged compact tree),
    // half the interpreter over each program; the precompile memo is shared by every case, as
    // a node's is by every block.
    let interpreted = seed.1 >> 63 == 1;
    let lookup = |hash: &B256| -> Option<Arc<Accelerated>> {
        let recorded = txs.iter().position(|t| t.hash == *hash).map(|i| &programs[i])?;
        let programs: Vec<Arc<Program>> = recorded.iter().map(|(p, _)| p.clone()).collect();
        if interpreted {
            return Some(Arc::new(Accelerated {
                programs,
                compiled: None,
                read_sets: Vec::new(),
                native: Default::default(),
            }));
        }
        let mut accelerated = Accelerated::new(programs);
        accelerated.read_sets =
            recorded.iter().enumerate().filter_map(|(j, (_, r))| Some(ReadSetEntry::new(j, r.clone()?))).collect();
        Some(Arc::new(accelerated))
    };
    let by_position = crate::accelerator::executor::BlockPrograms::new(txs.iter().map(|t| (t.hash, lookup(&t.hash))));
    let imported = import_block(
        &mut CacheDB::new(backend.clone()),
        &base.cfg,
        &base.env,
        txs,
        &by_position,
        Some(memo()),
        true,
        true,
    );
    let envs: Vec<_> = txs.iter().map(|t| t.env.clone()).collect();
    let import = match imported {
        Ok(import) => import,
        Err(e) => {
            // Only a block revm itself rejects, at the same transaction, may fail.
            let reference = ir::execute_block(&mut CacheDB::new(backend), &base.cfg, &base.env, &envs);
            match reference {
                Err(r) if r.index == e.index && !r.is_database => {
                    REJECTED.fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
                other => {
                    let what = other.map(|_| "accepts the block".to_string()).unwrap_or_else(|r| r.to_string());
                    let message = format!("{}: import failed ({e}) where revm {what}; seed {seed:?}", base.what);
                    return Err(TestCaseError::fail(message));
                }
            }
        }
    };
    let (divergences, _) =
        match verify_against_reference(&mut CacheDB::new(backend), &base.cfg, &base.env, txs, &import) {
            Ok(checked) => checked,
            Err(e) => {
                let message = format!("{}: imported a block revm rejects ({e}); seed {seed:?}", base.what);
                return Err(TestCaseError::fail(message));
            }
        };
    prop_assert!(divergences.is_empty(), "{}: DIVERGENCE {divergences:#?}; seed {seed:?}", base.what);
    BLOCKS.fetch_add(1, Ordering::Relaxed);
    HITS.fetch_add(import.hits(), Ordering::Relaxed);
    PERFECT.fetch_add(
        import.paths.iter().filter(|p| matches!(p, TxPath::Hit { perfect: true, .. })).count(),
        Ordering::Relaxed,
    );
    MISSES.fetch_add(import.paths.len() - import.hits(), Ordering::Relaxed);
    let hit_then_miss = import
        .paths
        .windows(2)
        .filter(|w| matches!(w[0], TxPath::Hit { .. }) && !matches!(w[1], TxPath::Hit { .. }))
        .count();
    HIT_THEN_MISS.fetch_add(hit_then_miss, Ordering::Relaxed);
    Ok(())
}

fn run(seed: Seed) -> Result<(), TestCaseError> {
    let Some(bases) = bases() else { return Ok(()) };
    if bases.is_empty() {
        return Ok(());
    }
    let (which, drop_a, drop_b, choice, changes, node_like) = &seed;
    let base = &bases[which % bases.len()];
    // The sub-block: drop about one transaction in four, and every later one of its sender.
    let mut dropped_senders = Vec::new();
    let (mut txs, mut programs) = (Vec::new(), Vec::new());
    for (i, tx) in base.txs.iter().enumerate() {
        let bit = 1u64 << (i % 64);
        if dropped_senders.contains(&tx.env.caller) || (drop_a & drop_b & bit) != 0 {
            dropped_senders.push(tx.env.caller);
            continue;
        }
        let c = choice.get(i).copied().unwrap_or(0);
        let mut mine: Vec<Recorded> = base.programs[i].clone();
        // Low bits: which programs; high bits: rotate the order.
        let mut kept: Vec<Recorded> =
            mine.drain(..).enumerate().filter(|(j, _)| c & (1 << j) != 0).map(|(_, p)| p).collect();
        if !kept.is_empty() {
            let r = (c >> 4) as usize % kept.len();
            kept.rotate_left(r);
        }
        txs.push(tx.clone());
        programs.push(kept);
    }
    let mut db = base.db.clone();
    for (kind, index, random) in changes {
        perturb(base, &mut db, *kind, *index, U256::from_be_bytes(*random));
    }
    if *node_like {
        check(base, AccountCodeOnly(db), &txs, &programs, &seed)
    } else {
        check(base, db, &txs, &programs, &seed)
    }
}

fn config() -> ProptestConfig {
    let cases = std::env::var("PRESCIENT_EXECUTOR_FUZZ_BLOCKS").ok().and_then(|c| c.parse().ok()).unwrap_or(64);
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn imported_blocks_equal_sequential_revm(
        seed in (
            any::<usize>(),
            any::<u64>(),
            any::<u64>(),
            prop::collection::vec(any::<u8>(), WINDOW),
            prop::collection::vec((any::<u8>(), any::<usize>(), any::<[u8; 32]>()), 0..3),
            any::<bool>(),
        )
    ) {
        run(seed)?;
        let tried = TRIED.fetch_add(1, Ordering::Relaxed) + 1;
        if tried.is_multiple_of(500) {
            eprintln!(
                "executor fuzzing: {tried} cases, {} blocks compared, {} hits ({} through the read-set memo), {} misses, {} hit-then-miss pairs, {} rejected by revm",
                BLOCKS.load(Ordering::Relaxed),
                HITS.load(Ordering::Relaxed),
                PERFECT.load(Ordering::Relaxed),
                MISSES.load(Ordering::Relaxed),
                HIT_THEN_MISS.load(Ordering::Relaxed),
                REJECTED.load(Ordering::Relaxed),
            );
        }
    }
}

#[test]
fn the_executor_fuzzer_sees_hits_and_misses() {
    // Every window must have programs for most of its transactions, and some transactions
    // several (the futures differ), or the fuzzer exercises nothing.
    let Some(bases) = bases() else { return };
    assert!(!bases.is_empty(), "no block sampled");
    for base in bases {
        let with = base.programs.iter().filter(|p| !p.is_empty()).count();
        assert!(
            with * 2 >= base.txs.len(),
            "{}: only {with} of {} transactions have a program",
            base.what,
            base.txs.len()
        );
    }
    assert!(bases.iter().flat_map(|b| &b.programs).any(|p| p.len() >= 2), "no transaction with several futures");
    // Every program hits the state it was recorded on, so every one has its read set.
    assert!(
        bases.iter().flat_map(|b| b.programs.iter().flatten()).all(|(_, reads)| reads.is_some()),
        "a program without its read set"
    );
}
