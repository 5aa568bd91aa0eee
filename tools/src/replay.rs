//! `prescient replay`: recorded blocks through the block executors, checked against ground truth.
//!
//! For each block the reference executor applies the block as a node does (the pre-block
//! system calls and the DAO drain, every transaction, the request calls, rewards and
//! withdrawals: `accelerator::executor::system`) on the recorded pre-state, and the result is
//! checked against what the chain recorded:
//!
//! | check      | ground truth                                         | applies                         |
//! |------------|------------------------------------------------------|---------------------------------|
//! | `valid`    | revm accepts every transaction                       | every block                     |
//! | `system`   | the system part applies                              | blocks whose layout records it  |
//! | `gas`      | header `gasUsed`                                     | blocks with a header            |
//! | `receipts` | header `receiptsRoot`                                | with a header, Byzantium on     |
//! | `bloom`    | header `logsBloom`                                   | blocks with a header            |
//! | `post`     | proven balances, nonces and storage after the block  | blocks with `post_state.json.gz` |
//!
//! Receipts before Byzantium carry an intermediate state root that a transaction-only
//! replay does not compute, so their root is not checked. The grevm fixtures record no
//! withdrawals, beacon root or uncles: they are replayed as their transactions only. An
//! uncle's own reward needs its header, which an RPC block does not carry: the miner's share
//! is applied, the uncle's is not (no block with a proven post-state has uncles).

use std::time::Duration;

use accelerator::executor::system::{BlockInputs, apply_post_block, apply_pre_block};
use ir::{BlockOutcome, execute_block};
use mempool_tap::{BlockSource, RecordedBlock};
use revm::{
    DatabaseRef,
    database::InMemoryDB,
    primitives::{U256, hardfork::SpecId},
};

/// The verdict of one check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The replay reproduces the ground truth.
    Pass,
    /// It does not; the text says where.
    Fail(String),
}

/// One named check on one block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    /// Short name, as in the table: `gas`, `receipts`, `bloom`, `post`, `valid`.
    pub name: &'static str,
    /// The verdict.
    pub verdict: Verdict,
}

/// What replaying one block gave.
#[derive(Clone, Debug)]
pub struct BlockReport {
    /// Block number.
    pub number: u64,
    /// The fork label as recorded.
    pub fork: String,
    /// The spec it ran under.
    pub spec: SpecId,
    /// Transactions in the block.
    pub txs: usize,
    /// Gas the replay used.
    pub gas_used: u64,
    /// Time inside revm.
    pub exec_time: Duration,
    /// Checks, in table order.
    pub checks: Vec<Check>,
}

impl BlockReport {
    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.verdict == Verdict::Pass)
    }

    /// Throughput in million gas per second.
    pub fn mgas_per_s(&self) -> f64 {
        mgas_per_s(self.gas_used, self.exec_time)
    }
}

/// Million gas per second, or 0 for no time.
pub fn mgas_per_s(gas: u64, time: Duration) -> f64 {
    let secs = time.as_secs_f64();
    if secs > 0.0 { gas as f64 / secs / 1e6 } else { 0.0 }
}

/// Replays one block and checks it. A transaction revm rejects fails the `valid` check and
/// ends the block there.
pub fn replay_block(block: &RecordedBlock) -> BlockReport {
    let mut db = block.state_db();
    let mut report = BlockReport {
        number: block.number,
        fork: block.fork.clone(),
        spec: block.spec,
        txs: block.txs.len(),
        gas_used: 0,
        exec_time: Duration::ZERO,
        checks: Vec::new(),
    };
    let inputs = BlockInputs::of_recorded(block);
    if let Some(inputs) = &inputs
        && let Err(e) = apply_pre_block(&mut db, &block.cfg, &block.env, inputs)
    {
        report.checks.push(Check { name: "system", verdict: Verdict::Fail(format!("before the transactions: {e}")) });
        return report;
    }
    let outcome = match execute_block(&mut db, &block.cfg, &block.env, &block.tx_envs()) {
        Ok(outcome) => outcome,
        Err(e) => {
            let hash = block.txs.get(e.index).and_then(|t| t.hash).map(|h| format!(" ({h})")).unwrap_or_default();
            report.checks.push(Check { name: "valid", verdict: Verdict::Fail(format!("{e}{hash}")) });
            return report;
        }
    };
    report.gas_used = outcome.gas_used;
    report.exec_time = outcome.exec_time;
    report.checks.push(Check { name: "valid", verdict: Verdict::Pass });
    if let Some(inputs) = &inputs {
        let verdict = match apply_post_block(&mut db, &block.cfg, &block.env, inputs) {
            Ok(_) => Verdict::Pass,
            Err(e) => Verdict::Fail(format!("after the transactions: {e}")),
        };
        report.checks.push(Check { name: "system", verdict });
    }
    report.checks.extend(header_checks(block, &outcome));
    if block.post_state.is_some() {
        report.checks.push(Check { name: "post", verdict: post_state_check(block, &db) });
    }
    report
}

fn header_checks(block: &RecordedBlock, outcome: &BlockOutcome) -> Vec<Check> {
    let Some(header) = &block.header else {
        return Vec::new();
    };
    let compare = |name, ok: bool, expected: String, got: String| Check {
        name,
        verdict: if ok { Verdict::Pass } else { Verdict::Fail(format!("header says {expected}, replay gives {got}")) },
    };
    let mut checks = vec![compare(
        "gas",
        outcome.gas_used == header.gas_used,
        header.gas_used.to_string(),
        outcome.gas_used.to_string(),
    )];
    if block.spec.is_enabled_in(SpecId::BYZANTIUM) {
        checks.push(compare(
            "receipts",
            outcome.receipts_root == header.receipts_root,
            header.receipts_root.to_string(),
            outcome.receipts_root.to_string(),
        ));
    }
    checks.push(compare(
        "bloom",
        outcome.logs_bloom == header.logs_bloom,
        header.logs_bloom.to_string(),
        outcome.logs_bloom.to_string(),
    ));
    checks
}

/// Compares every account of the proven post-state with the replay: existence, balance, nonce
/// and every proven slot. A block whose layout does not record its system part is checked on
/// nonces and storage only (its balances miss rewards and withdrawals).
fn post_state_check(block: &RecordedBlock, db: &InMemoryDB) -> Verdict {
    let full = block.system.recorded;
    let Some(post) = &block.post_state else {
        return Verdict::Pass;
    };
    let mut failures = Vec::new();
    for (address, expected) in post {
        let ours = match db.basic_ref(*address) {
            Ok(info) => info,
            Err(never) => match never {},
        };
        let nonce = ours.as_ref().map_or(0, |i| i.nonce);
        if nonce != expected.nonce {
            failures.push(format!("{address} nonce: proven {}, replay {nonce}", expected.nonce));
        }
        if full {
            let balance = ours.as_ref().map_or(U256::ZERO, |i| i.balance);
            if balance != expected.balance {
                failures.push(format!("{address} balance: proven {}, replay {balance}", expected.balance));
            }
            // An empty account is absent once EIP-161 holds (the in-memory state keeps touched
            // empty accounts; the trie does not).
            let exists =
                ours.as_ref().is_some_and(|i| !(i.is_empty() && block.spec.is_enabled_in(SpecId::SPURIOUS_DRAGON)));
            if exists != expected.exists {
                failures.push(format!("{address} exists: proven {}, replay {exists}", expected.exists));
            }
        }
        for (slot, value) in &expected.storage {
            let got = match db.storage_ref(*address, *slot) {
                Ok(v) => v,
                Err(never) => match never {},
            };
            if got != *value {
                failures.push(format!("{address} slot {slot:#x}: proven {value:#x}, replay {got:#x}"));
            }
        }
    }
    match failures.len() {
        0 => Verdict::Pass,
        n => Verdict::Fail(format!("{n} mismatches, first: {}", failures[0])),
    }
}

/// Short label for a block's source, for the table.
pub fn source_label(source: BlockSource) -> &'static str {
    match source {
        BlockSource::Mainnet => "mainnet",
        BlockSource::Recording => "recorded",
        BlockSource::Grevm => "grevm",
    }
}

/// Sums and counts over many block reports.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// Blocks replayed.
    pub blocks: usize,
    /// Transactions replayed.
    pub txs: usize,
    /// Gas used in total.
    pub gas: u64,
    /// Time inside revm in total.
    pub exec_time: Duration,
    /// Checks that passed.
    pub passed: usize,
    /// Checks that failed, plus blocks that could not be loaded.
    pub failed: usize,
}

impl Summary {
    /// Adds one block's report.
    pub fn add(&mut self, report: &BlockReport) {
        self.blocks += 1;
        self.txs += report.txs;
        self.gas += report.gas_used;
        self.exec_time += report.exec_time;
        for check in &report.checks {
            match check.verdict {
                Verdict::Pass => self.passed += 1,
                Verdict::Fail(_) => self.failed += 1,
            }
        }
    }
}

/// The executor `prescient replay --mode` times against sequential revm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Sequential revm only (the checks, and its own time).
    Sequential,
    /// The parallel fallback (`accelerator::executor::parallel`).
    Parallel,
    /// Import through prescient (`accelerator::executor::import_whole_block`), each
    /// transaction's programs predicted first as `prescient evaluate` does (simulated mempool,
    /// `--heard`), misses in revm.
    Accelerated,
}

/// Most timed runs of each executor per block that [`ModeConfig::min_time`] asks for (an
/// empty block runs in microseconds); `reps` above it still runs `reps`.
pub const MAX_REPS: usize = 2_000;

/// How `--mode` runs.
#[derive(Clone, Debug)]
pub struct ModeConfig {
    /// The executor compared with sequential revm.
    pub mode: Mode,
    /// Threads of the parallel fallback.
    pub threads: usize,
    /// Read latency of the modelled disk-backed state (zero: in memory).
    pub latency: Duration,
    /// Timed runs of each executor per block, alternating which goes first: at least this
    /// many, and more until each executor has run for [`ModeConfig::min_time`].
    pub reps: usize,
    /// Least time measured per executor and block: a block of a few transactions runs in
    /// microseconds, where five runs give a median as noisy as the machine, so it runs again
    /// (at most [`MAX_REPS`] times) until both medians stand on this much work.
    pub min_time: Duration,
    /// Share of transactions heard before their block (accelerated mode).
    pub heard: f64,
    /// Most same-block-touch pre-executions per transaction (accelerated mode; see
    /// [`crate::evaluate::EvaluateOptions::touched_per_tx`]).
    pub touched_per_tx: usize,
    /// Every block's fee recipient, for the predictor's candidates (accelerated mode; see
    /// [`crate::evaluate::recorded_recipients`]).
    pub recipients: std::sync::Arc<Vec<crate::evaluate::RecordedRecipient>>,
    /// The recording's arrival log, when it has one (accelerated mode; it replaces the
    /// simulated mempool, as in `evaluate`).
    pub arrivals: Option<std::sync::Arc<std::collections::HashMap<revm::primitives::B256, u64>>>,
}

/// One block through one executor and sequential revm.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ModeReport {
    /// Block number.
    pub number: u64,
    /// Transactions.
    pub txs: usize,
    /// Median whole-block time of sequential revm, in ms.
    pub sequential_ms: f64,
    /// Median whole-block time of the executor, in ms.
    pub mode_ms: f64,
    /// `sequential_ms / mode_ms`.
    pub ratio: f64,
    /// The median over rounds of each round's sequential time over the executor's. The two runs
    /// of a round are back to back, so a slow spell of the machine slows both: a block run
    /// sequentially in both columns measured 0.89x-1.10x as `ratio` and 0.93x-1.08x as this
    /// over a full replay on a noisy day of the 2-core VM.
    pub paired_ratio: f64,
    /// The first difference from sequential revm (results, receipts or state), if any.
    pub mismatch: Option<String>,
    /// What the parallel fallback did (its last timed run).
    pub parallel: Option<accelerator::executor::parallel::ParallelStats>,
    /// Reads that paid the modelled latency in the executor's last run (in accelerated mode
    /// with the read-ahead before the block: predicted and unpredicted together).
    pub cold_reads: u64,
    /// Accelerated mode: transactions imported through a program (the rest ran in revm).
    pub hits: Option<usize>,
    /// Parallel mode: what two threads computed against this thread alone just before the
    /// block was timed ([`crate::machine::compute_scaling`], 30 ms a phase): the ceiling of
    /// two threads over one at that moment, which a VM's neighbours move.
    pub compute_scaling: Option<f64>,
}

/// Runs `block` whole (system part, transactions, system part) on `db` with the parallel
/// fallback at `threads` (1: sequential revm).
fn run_whole<D>(
    block: &RecordedBlock,
    txs: &[revm::context::TxEnv],
    threads: usize,
    db: &mut revm::database::CacheDB<D>,
) -> Result<accelerator::executor::WholeBlock, accelerator::executor::WholeBlockError>
where
    D: DatabaseRef + Send + Sync,
    D::Error: revm::database_interface::DBErrorMarker + std::fmt::Display,
{
    let config = accelerator::executor::parallel::ParallelConfig { threads, ..Default::default() };
    let inputs = BlockInputs::of_recorded(block);
    accelerator::executor::execute_whole_block(db, &block.cfg, &block.env, inputs.as_ref(), txs, &config)
}

/// One whole-block run through sequential revm or the mode's executor.
struct Run {
    time: Duration,
    receipts_root: revm::primitives::B256,
    requests: alloy::eips::eip7685::Requests,
    /// Every transaction's result (sequential and parallel; the import keeps none).
    results: Option<Vec<revm::context_interface::result::ExecutionResult>>,
    parallel: Option<accelerator::executor::parallel::ParallelStats>,
    hits: Option<usize>,
}

/// Runs `block` through sequential revm and `config.mode`, compares them in full, then times
/// both `config.reps` times (more for a block that runs in less than `config.min_time`),
/// alternating which goes first, on fresh state each time. The
/// accelerated mode first predicts the block's programs (untimed, as `prescient evaluate`).
pub fn compare_mode(block: &RecordedBlock, config: &ModeConfig) -> ModeReport {
    use accelerator::executor::{first_state_difference, import_whole_block, latency::LatencyDb};
    use revm::database::CacheDB;
    let base = block.state_db();
    let txs = block.tx_envs();
    let mut report = ModeReport {
        number: block.number,
        txs: txs.len(),
        sequential_ms: 0.0,
        mode_ms: 0.0,
        ratio: 0.0,
        paired_ratio: 0.0,
        mismatch: None,
        parallel: None,
        cold_reads: 0,
        hits: None,
        compute_scaling: None,
    };
    let predicted = match config.mode {
        Mode::Accelerated => {
            let options = crate::evaluate::EvaluateOptions {
                heard: config.heard,
                touched_per_tx: config.touched_per_tx,
                ..Default::default()
            };
            let known =
                crate::evaluate::KnownRecipients::of_recorded(&config.recipients, block.number, options.fee_recipients);
            match crate::evaluate::predict_block(block, &known, &options, config.arrivals.as_deref()) {
                Ok(predicted) => Some(predicted),
                Err(e) => {
                    report.mismatch = Some(format!("prediction failed: {e}"));
                    return report;
                }
            }
        }
        Mode::Sequential | Mode::Parallel => None,
    };
    let inputs = BlockInputs::of_recorded(block);
    // Before the block arrives, prescient reads what it predicts the block will touch into its
    // cache: on a disk-backed node (`--latency-us`) this is where its cold reads go; sequential
    // revm has nothing to read ahead. In memory nothing is read ahead, so that no load moves
    // out of the timed import.
    let access_list = predicted.as_ref().filter(|_| !config.latency.is_zero()).map(|p| p.access_list());
    let fresh = |mode: bool| {
        let mut db = CacheDB::new(LatencyDb::new(&base, config.latency));
        if let (true, Some((accounts, slots))) = (mode, &access_list) {
            use revm::Database;
            // A read that fails here fails again, counted, in the import.
            for address in accounts {
                let _ = db.basic(*address);
            }
            for (address, key) in slots {
                let _ = db.storage(*address, *key);
            }
        }
        db
    };
    // `mode`: the mode's executor, or else sequential revm.
    let run = |mode: bool, db: &mut CacheDB<LatencyDb<&InMemoryDB>>| -> Result<Run, String> {
        if let (true, Some(predicted)) = (mode, &predicted) {
            let started = std::time::Instant::now();
            let programs = predicted.pipeline.store().accelerated_all(predicted.txs.iter().map(|t| &t.hash));
            let memo = Some(predicted.pipeline.memo());
            // Transactions without a program execute ahead on the parent state, read as the
            // import reads it (with the same modelled latency).
            let parent = LatencyDb::new(&base, config.latency);
            let imported = import_whole_block(
                db,
                Some(&parent),
                &block.cfg,
                &block.env,
                inputs.as_ref(),
                &predicted.txs,
                &programs,
                memo,
                false,
            )
            .map_err(|e| e.to_string())?;
            return Ok(Run {
                time: started.elapsed(),
                receipts_root: imported.import.receipts.receipts_root,
                requests: imported.requests,
                results: None,
                parallel: None,
                hits: Some(imported.import.hits()),
            });
        }
        let threads = if mode && config.mode == Mode::Parallel { config.threads } else { 1 };
        let whole = run_whole(block, &txs, threads, db).map_err(|e| e.to_string())?;
        Ok(Run {
            time: whole.time,
            receipts_root: whole.receipts.receipts_root,
            requests: whole.requests,
            results: Some(whole.results),
            parallel: (mode && config.mode == Mode::Parallel).then_some(whole.stats),
            hits: None,
        })
    };
    // The comparison, untimed.
    let (mut sequential_db, mut mode_db) = (fresh(false), fresh(true));
    let compared = run(false, &mut sequential_db).and_then(|reference| Ok((reference, run(true, &mut mode_db)?)));
    let mismatch = match compared {
        Err(e) => Some(format!("execution failed: {e}")),
        Ok((reference, ours)) => {
            let results = ours.results.as_ref().zip(reference.results.as_ref());
            if let Some((a, b)) = results.filter(|(a, b)| a.len() != b.len()) {
                Some(format!("{} results where sequential has {}", a.len(), b.len()))
            } else if let Some((i, (a, b))) =
                results.and_then(|(a, b)| a.iter().zip(b).enumerate().find(|(_, (a, b))| a != b))
            {
                Some(format!("transaction {i}: {a:?} against {b:?}"))
            } else if ours.requests != reference.requests {
                Some(format!("requests {:?} against {:?}", ours.requests, reference.requests))
            } else if ours.receipts_root != reference.receipts_root {
                Some(format!("receipts root {} against {}", ours.receipts_root, reference.receipts_root))
            } else {
                first_state_difference(&mode_db, &sequential_db)
            }
        }
    };
    if mismatch.is_some() {
        report.mismatch = mismatch;
        return report;
    }
    if config.mode == Mode::Parallel {
        report.compute_scaling = crate::machine::compute_scaling(Duration::from_millis(30));
    }
    let (mut sequential, mut ours): (Vec<Duration>, Vec<Duration>) = (Vec::new(), Vec::new());
    let enough = |times: &[Duration]| times.iter().sum::<Duration>() >= config.min_time;
    let mut rep = 0;
    while rep < config.reps.max(1) || (rep < MAX_REPS && !(enough(&sequential) && enough(&ours))) {
        rep += 1;
        for first in [rep % 2 == 1, rep % 2 == 0] {
            let into = if first { &mut sequential } else { &mut ours };
            let mut db = fresh(!first);
            match run(!first, &mut db) {
                Ok(run) => {
                    into.push(run.time);
                    if !first {
                        report.parallel = run.parallel;
                        report.hits = run.hits;
                        report.cold_reads = db.db.cold_reads();
                    }
                }
                Err(e) => {
                    report.mismatch = Some(format!("a timed run failed: {e}"));
                    return report;
                }
            }
        }
    }
    let median = |times: &mut Vec<Duration>| {
        times.sort_unstable();
        times[times.len() / 2].as_secs_f64() * 1e3
    };
    // Each round's two runs, back to back, as one ratio (before the medians sort them).
    let mut pairs: Vec<f64> = sequential
        .iter()
        .zip(&ours)
        .filter(|(_, o)| !o.is_zero())
        .map(|(s, o)| s.as_secs_f64() / o.as_secs_f64())
        .collect();
    pairs.sort_unstable_by(f64::total_cmp);
    report.paired_ratio = pairs.get(pairs.len() / 2).copied().unwrap_or(0.0);
    report.sequential_ms = median(&mut sequential);
    report.mode_ms = median(&mut ours);
    report.ratio = if report.mode_ms > 0.0 { report.sequential_ms / report.mode_ms } else { 0.0 };
    report
}

/// `--mode` figures over many blocks.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ModeSummary {
    /// Blocks compared and timed.
    pub blocks: usize,
    /// Σ sequential time / Σ executor time.
    pub speedup: f64,
    /// The same over blocks of 150 transactions or more.
    pub speedup_150: f64,
    /// How many blocks have 150 transactions or more.
    pub blocks_150: usize,
    /// The lowest per-block ratio.
    pub lowest: f64,
    /// The lowest per-block paired ratio ([`ModeReport::paired_ratio`]).
    pub lowest_paired: f64,
    /// Blocks where the executor differed from sequential revm.
    pub mismatches: usize,
}

impl ModeSummary {
    /// Sums the reports (blocks that differed count only as mismatches).
    pub fn of(reports: &[ModeReport]) -> Self {
        let timed: Vec<&ModeReport> = reports.iter().filter(|r| r.mismatch.is_none()).collect();
        let ratio = |rs: &[&ModeReport]| {
            let (s, m) = rs.iter().fold((0.0, 0.0), |(s, m), r| (s + r.sequential_ms, m + r.mode_ms));
            if m > 0.0 { s / m } else { 0.0 }
        };
        let large: Vec<&ModeReport> = timed.iter().copied().filter(|r| r.txs >= 150).collect();
        Self {
            blocks: timed.len(),
            speedup: ratio(&timed),
            speedup_150: ratio(&large),
            blocks_150: large.len(),
            lowest: timed.iter().map(|r| r.ratio).reduce(f64::min).unwrap_or(0.0),
            lowest_paired: timed.iter().map(|r| r.paired_ratio).reduce(f64::min).unwrap_or(0.0),
            mismatches: reports.len() - timed.len(),
        }
    }
}
