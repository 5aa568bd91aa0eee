//! Ground truth: sequential revm over every complete recorded block reproduces the chain.
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
    let grevm = blocks.iter().filter(|b| b.source == BlockSource::Grevm).count();
    assert_eq!((mainnet, grevm), (72, 2), "the shared data should list 72 complete mainnet blocks and 2 grevm blocks");

    let mut failures = Vec::new();
    let (mut post_checked, mut receipts_checked) = (0, 0);
    for block_ref in &blocks {
        let block = dataset.load(block_ref).unwrap_or_else(|e| panic!("block {}: {e}", block_ref.number));
        let report = replay_block(&block);
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
    // 11 development blocks carry a proven post-state (the 12th zeth block is sealed), and
    // 49 complete mainnet blocks are Byzantium or later.
    assert_eq!(post_checked, 11, "post-state checks run");
    assert_eq!(receipts_checked, 49, "receipts-root checks run");
}

#[test]
fn a_wrong_pre_state_fails_the_checks() {
    // The checks must be able to fail. Block 46147 (Frontier) is one plain transfer: without
    // its sender's account the transaction cannot pay and the block is invalid.
    let Some(dir) = shared_data_for_tests("a_wrong_pre_state_fails_the_checks") else {
        return;
    };
    let dataset = Dataset::open(&dir).expect("open the shared data");
    let mut block = dataset.load(dataset.find(46_147).expect("listed")).expect("load");
    let sender = block.txs[0].env.caller;
    block.pre_state.remove(&sender);
    let report = replay_block(&block);
    assert!(!report.passed());
    assert!(matches!(&report.checks[0].verdict, Verdict::Fail(why) if why.contains("transaction 0")), "{report:?}");

    // A changed storage slot in a post-state block fails the post check.
    let mut block = dataset.load(dataset.find(15_050_000).expect("listed")).expect("load");
    let post = block.post_state.as_mut().expect("zeth block has a post-state");
    let (_, account) = post.iter_mut().find(|(_, a)| !a.storage.is_empty()).expect("some storage");
    let value = account.storage.values_mut().next().expect("a slot");
    *value += revm::primitives::U256::from(1);
    let report = replay_block(&block);
    let post_check = report.checks.iter().find(|c| c.name == "post").expect("post check ran");
    assert!(matches!(&post_check.verdict, Verdict::Fail(why) if why.contains("slot")), "{post_check:?}");
}
