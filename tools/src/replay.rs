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
