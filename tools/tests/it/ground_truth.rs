//! Ground truth: sequential revm over every complete recorded block, with the block's system
//! part (system calls, rewards, withdrawals, the DAO drain), reproduces the chain.
//!
//! Needs `../shared/bench-data`: skipped with a loud message when absent, failed in CI.

use mempool_tap::{BlockSource, Dataset, recorded::shared_data_for_tests};
use prescient_tools::replay::{Verdict, replay_block};

/// Gas the two grevm blocks use, from the shared data README (its own revm 38 replay; the
/// fixtures carry no header). 25,323,281 runs under Osaka, as mainnet did.
const GREVM_GAS: [(u64, u64); 2] = [(22_546_209, 13_664_078), (25_323_281, 21_040_973)];

#[test]
fn every_complete_block_matches_its_ground_truth() {
    let Some(dir) = shared_data_for_tests("every_complete_block_matches_its_ground_truth") else {
        return;
    };
    let dataset = Dataset::open(&dir).expect("open the shared data");
    ir::warm_up();
    let blocks: Vec<_> = dataset.complete_blocks().cloned().collect();
    let mainnet = blocks.iter().filter(|b| b.source == BlockSource::Mainnet).count();
    assert!(mainnet > 0, "the shared data lists no complete mainnet block");

    let mut failures = Vec::new();
    // What must be checked is derived from the data: every block with a proven post-state
    // gets the post check, every block with a header from Byzantium on the receipts check.
    let (mut post_checked, mut receipts_checked) = (0, 0);
    let (mut post_expected, mut receipts_expected) = (0, 0);
    for block_ref in &blocks {
        let block = dataset.load(block_ref).unwrap_or_else(|e| panic!("block {}: {e}", block_ref.number));
        post_expected += usize::from(block.post_state.is_some());
        receipts_expected += usize::from(
            block.header.is_some() && block.spec.is_enabled_in(revm::primitives::hardfork::SpecId::BYZANTIUM),
        );
        let report = replay_block(&block);
        // A layout that records the block's system part has it applied and checked.
        let applied = report.checks.iter().any(|c| c.name == "system");
        assert_eq!(applied, block.system.recorded, "block {}: {:?}", block.number, report.checks);
        for check in &report.checks {
            match (&check.verdict, check.name) {
                (Verdict::Fail(why), name) => failures.push(format!("block {} {name}: {why}", block.number)),
                (Verdict::Pass, "post") => post_checked += 1,
                (Verdict::Pass, "receipts") => receipts_checked += 1,
                _ => {}
            }
        }
        if block.source == BlockSource::Mainnet {
            // Every mainnet block has a header, so the gas and bloom checks must have run.
            let names: Vec<_> = report.checks.iter().map(|c| c.name).collect();
            assert!(names.contains(&"gas") && names.contains(&"bloom"), "block {}: {names:?}", block.number);
        }
        if let Some((_, gas)) = GREVM_GAS.iter().find(|(n, _)| *n == block.number) {
            assert_eq!(report.gas_used, *gas, "grevm block {}", block.number);
        }
    }
    assert!(failures.is_empty(), "{} checks failed:\n{}", failures.len(), failures.join("\n"));
    eprintln!(
        "ground truth: {} blocks ({mainnet} mainnet), {post_checked} post-state and {receipts_checked} receipts-root checks",
        blocks.len()
    );
    assert_eq!(post_checked, post_expected, "every proven post-state is checked");
    assert_eq!(receipts_checked, receipts_expected, "every receipts root from Byzantium on is checked");
}

#[test]
fn a_wrong_pre_state_fails_the_checks() {
    // The checks must be able to fail. Without the first sender's account, the first
    // transaction of any block cannot pay and the block is invalid. (Blocks are chosen by
    // property, so any set in this layout will do.)
    let Some(dir) = shared_data_for_tests("a_wrong_pre_state_fails_the_checks") else {
        return;
    };
    let dataset = Dataset::open(&dir).expect("open the shared data");
    let smallest =
        dataset.sample_by_fork(1, 1).into_iter().min_by_key(|b| b.tx_count).expect("a block with transactions");
    let mut block = dataset.load(smallest).expect("load");
    let sender = block.txs[0].env.caller;
    block.pre_state.remove(&sender);
    let report = replay_block(&block);
    assert!(!report.passed());
    assert!(matches!(&report.checks[0].verdict, Verdict::Fail(why) if why.contains("transaction 0")), "{report:?}");

    // A changed storage slot in a post-state block fails the post check.
    let with_post = dataset
        .complete_blocks()
        .filter(|b| b.tx_count.unwrap_or(0) > 0)
        .map(|b| dataset.load(b).expect("load"))
        .find(|b| b.post_state.as_ref().is_some_and(|p| p.values().any(|a| !a.storage.is_empty())));
    let Some(mut block) = with_post else {
        eprintln!("no block with a proven post-state in this data set: post check not exercised");
        return;
    };
    let post = block.post_state.as_mut().expect("chosen for its post-state");
    let (_, account) = post.iter_mut().find(|(_, a)| !a.storage.is_empty()).expect("some storage");
    let value = account.storage.values_mut().next().expect("a slot");
    *value += revm::primitives::U256::from(1);
    let report = replay_block(&block);
    let post_check = report.checks.iter().find(|c| c.name == "post").expect("post check ran");
    assert!(matches!(&post_check.verdict, Verdict::Fail(why) if why.contains("slot")), "{post_check:?}");
}

#[test]
fn withdrawals_dropped_fail_the_balance_check() {
    // The post check compares balances once the block's system part is applied. Every block
    // with a proven post-state that pays a withdrawal to a proven account passes whole, and
    // fails on that balance with its withdrawals dropped. Blocks are chosen by property.
    let Some(dir) = shared_data_for_tests("withdrawals_dropped_fail_the_balance_check") else {
        return;
    };
    let dataset = Dataset::open(&dir).expect("open the shared data");
    let mut checked = 0;
    for block_ref in dataset.complete_blocks() {
        let mut block = dataset.load(block_ref).expect("load");
        let Some(post) = &block.post_state else { continue };
        let Some(withdrawals) = block.system.withdrawals.as_deref() else { continue };
        if !withdrawals.iter().any(|w| w.amount > 0 && post.contains_key(&w.address)) {
            continue;
        }
        let whole = replay_block(&block);
        assert!(whole.passed(), "block {}: {:?}", block.number, whole.checks);
        block.system.withdrawals = Some(Vec::new());
        let report = replay_block(&block);
        let post_check = report.checks.iter().find(|c| c.name == "post").expect("post check ran");
        assert!(
            matches!(&post_check.verdict, Verdict::Fail(why) if why.contains("balance")),
            "block {}: {post_check:?}",
            block.number
        );
        checked += 1;
    }
    if checked == 0 {
        eprintln!("no block with a proven post-state pays a withdrawal: the balance check's failure is not exercised");
    }
}

#[test]
fn replay_parallel_mode_matches_sequential_on_every_block() {
    use prescient_tools::replay::{Mode, ModeConfig, compare_mode};
    let Some(dir) = shared_data_for_tests("replay_parallel_mode_matches_sequential_on_every_block") else {
        return;
    };
    let dataset = Dataset::open(&dir).expect("open the shared data");
    ir::warm_up();
    let mut compared = 0;
    for (i, block_ref) in dataset.complete_blocks().enumerate() {
        let block = dataset.load(block_ref).expect("load");
        // Every fourth block on the modelled disk-backed state, so its reads are exercised too.
        let latency = std::time::Duration::from_micros(if i % 4 == 0 { 2 } else { 0 });
        let config = ModeConfig {
            mode: Mode::Parallel,
            threads: 2,
            latency,
            reps: 1,
            min_time: std::time::Duration::ZERO,
            heard: 0.95,
            touched_per_tx: prescient_tools::evaluate::EvaluateOptions::default().touched_per_tx,
            recipients: Default::default(),
            arrivals: None,
        };
        let report = compare_mode(&block, &config);
        assert_eq!(report.mismatch, None, "block {}", block.number);
        assert!(report.sequential_ms > 0.0 && report.mode_ms > 0.0, "block {}: {report:?}", block.number);
        if !latency.is_zero() && report.txs > 0 {
            assert!(report.cold_reads > 0, "block {}: no read paid the latency", block.number);
        }
        compared += 1;
    }
    assert!(compared > 0);
}

#[test]
fn replay_accelerated_mode_matches_sequential_whole_blocks() {
    use prescient_tools::replay::{Mode, ModeConfig, compare_mode};
    let Some(dir) = shared_data_for_tests("replay_accelerated_mode_matches_sequential_whole_blocks") else {
        return;
    };
    let dataset = Dataset::open(&dir).expect("open the shared data");
    ir::warm_up();
    let recipients = std::sync::Arc::new(
        prescient_tools::evaluate::recorded_recipients(&dataset, |_| {}).expect("read the fee recipients"),
    );
    // Small blocks with transactions and a system part (a debug build predicts slowly), each
    // at a share heard that leaves misses and on the modelled disk-backed state once.
    let small: Vec<_> = dataset
        .complete_blocks()
        .filter(|b| b.tx_count.is_some_and(|n| (1..=40).contains(&n)))
        .filter_map(|b| dataset.load(b).ok())
        .filter(|b| b.system.recorded)
        .take(3)
        .collect();
    assert!(!small.is_empty(), "no small block with a recorded system part");
    let mut hits = 0;
    for (i, block) in small.iter().enumerate() {
        let latency = std::time::Duration::from_micros(if i == 0 { 2 } else { 0 });
        let config = ModeConfig {
            mode: Mode::Accelerated,
            threads: 1,
            latency,
            reps: 1,
            min_time: std::time::Duration::ZERO,
            heard: 0.6,
            touched_per_tx: prescient_tools::evaluate::EvaluateOptions::default().touched_per_tx,
            recipients: recipients.clone(),
            arrivals: None,
        };
        let report = compare_mode(block, &config);
        assert_eq!(report.mismatch, None, "block {}", block.number);
        assert!(report.sequential_ms > 0.0 && report.mode_ms > 0.0, "block {}: {report:?}", block.number);
        let block_hits = report.hits.expect("the accelerated mode counts its hits");
        assert!(block_hits <= block.txs.len());
        hits += block_hits;
    }
    assert!(hits > 0, "no transaction was imported through a program: the fast path went untested");
}
