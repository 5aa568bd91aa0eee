//! Criterion groups for a block's receipts, the work the import hands its second thread:
//!
//! - `receipts/{shape}/alloy`: `ir::reference::receipts` (alloy's receipts root, hashing one
//!   trie leaf at a time, and every receipt's bloom);
//! - `receipts/{shape}/builder`: `ir::receipts::ReceiptBuilder` fed the block in order, as
//!   the import builds them: blooms given (the import has them from pre-execution's hashes;
//!   the sequential baseline computes them, as `alloy` does), leaves hashed in groups on the
//!   widest path the CPU has, a long receipt's leaf as it is encoded;
//! - `keccak/leaves/{path}`: eight leaf-sized inputs (300 bytes, three permutations each)
//!   through `ir::keccak_batch` on every path the CPU has.
//!
//! Shapes (synthetic, no data needed): `transfers` (1,400 receipts without logs, as a block of
//! payouts), `tokens` (200 receipts of one `Transfer` log each) and `mint` (80 of one log,
//! the 26th of ten thousand: 1.6 MB, a long receipt hashed as it is encoded, as in block
//! 15,537,394). `cargo bench -p prescient-tools --bench receipts`.

// criterion's macros define the undocumented `benches` and `main`.
#![allow(missing_docs)]

use std::hint::black_box;

use alloy::primitives::{Address, B256, Bytes, Log, LogData, logs_bloom};
use criterion::{Criterion, criterion_group, criterion_main};
use ir::{
    TxOutcome, TxStatus,
    keccak_batch::{Path, keccak256_batch_on},
    receipts::{ReceiptBuilder, ReceiptInput},
};

fn outcome(i: usize, logs: usize) -> TxOutcome {
    let logs = (0..logs)
        .map(|_| Log {
            address: Address::repeat_byte(0xa0),
            data: LogData::new_unchecked(
                vec![B256::repeat_byte(0xdd), B256::left_padding_from(&i.to_be_bytes()), B256::repeat_byte(7)],
                Bytes::from(vec![i as u8; 32]),
            ),
        })
        .collect();
    TxOutcome {
        status: TxStatus::Success(revm::context::result::SuccessReason::Stop),
        gas_used: 21_000 + (i as u64 % 7) * 13_000,
        gas_refunded: 0,
        logs,
        output: Bytes::new(),
        created_address: None,
        state: Default::default(),
    }
}

fn receipts(c: &mut Criterion) {
    // Name, transactions, and the logs of the i-th.
    type Shape = (&'static str, usize, fn(usize) -> usize);
    let shapes: [Shape; 3] =
        [("transfers", 1_400, |_| 0), ("tokens", 200, |_| 1), ("mint", 80, |i| if i == 25 { 10_000 } else { 1 })];
    for (shape, len, logs) in shapes {
        let outcomes: Vec<TxOutcome> = (0..len).map(|i| outcome(i, logs(i))).collect();
        let types = vec![2u8; len];
        let expected = ir::reference::receipts(&outcomes, &types).receipts_root;
        // Blooms given, as the import gives them from the hashes pre-execution remembered
        // (`ir::bloom`): the builder's own work is the leaves.
        let blooms: Vec<_> = outcomes.iter().map(|o| logs_bloom(&o.logs)).collect();
        let build = || {
            let mut builder = ReceiptBuilder::new(len, |logs: &[Log]| logs_bloom(logs));
            for (o, bloom) in outcomes.iter().zip(&blooms) {
                builder.push(ReceiptInput {
                    ty: 2,
                    success: true,
                    gas_used: o.gas_used,
                    logs: o.logs.clone(),
                    logs_bloom: Some(Box::new(*bloom)),
                });
            }
            builder.finish().expect("every receipt pushed").receipts_root
        };
        assert_eq!(build(), expected, "the builder's root is alloy's");
        let mut group = c.benchmark_group(format!("receipts/{shape}"));
        group.bench_function("alloy", |b| {
            b.iter(|| black_box(ir::reference::receipts(&outcomes, &types).receipts_root))
        });
        group.bench_function("builder", |b| b.iter(|| black_box(build())));
        group.finish();
    }
    let inputs: Vec<Vec<u8>> = (0..8u8).map(|l| vec![l; 300]).collect();
    let refs: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
    let mut out = [B256::ZERO; 8];
    let mut group = c.benchmark_group("keccak/leaves");
    for path in Path::available() {
        group.bench_function(format!("{path:?}"), |b| {
            b.iter(|| {
                keccak256_batch_on(path, black_box(&refs), &mut out);
                black_box(out[7])
            })
        });
    }
    group.finish();
}

criterion_group!(benches, receipts);
criterion_main!(benches);
