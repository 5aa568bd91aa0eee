//! Criterion group for what the service's refresh asks the pending pool per transaction: its
//! futures (nonce chain, predicted block), its order flips, dependency and race futures
//! (`accelerator::pipeline::Pipeline::futures` and `flip_futures`), under the pool's lock.
//!
//! - `futures/{n}/admitted`: a transaction entered the pool since the last job, replacing
//!   another (the predicted order is computed again);
//! - `futures/{n}/unchanged`: the pool is as the last job left it.
//!
//! Pools of `n` pending transactions (synthetic: one sender each, tips spread over 1,000
//! values, a tenth of them in 32-strong races of one calldata), footprints noted for each.
//! `cargo bench -p prescient-tools --bench futures`.

// criterion's macros define the undocumented `benches` and `main`.
#![allow(missing_docs)]

use std::hint::black_box;

use accelerator::predictor::{Footprint, PendingPool, StateKey};
use criterion::{Criterion, criterion_group, criterion_main};
use revm::{
    context::TxEnv,
    primitives::{Address, B256, Bytes, TxKind, U256},
};

const BASEFEE: u64 = 10;

fn pending(i: u64) -> (B256, TxEnv) {
    let caller = Address::left_padding_from(&(i + 1).to_be_bytes());
    let tip = u128::from(i.wrapping_mul(7919) % 1000);
    let racing = i.is_multiple_of(10);
    let env = TxEnv {
        caller,
        nonce: 0,
        gas_price: u128::from(BASEFEE) + tip,
        gas_priority_fee: Some(tip),
        tx_type: 2,
        kind: TxKind::Call(Address::repeat_byte(if racing { 0xaa } else { (i % 200) as u8 })),
        data: Bytes::from(if racing { (i / 320).to_be_bytes().to_vec() } else { vec![] }),
        ..Default::default()
    };
    (B256::from(U256::from(i + 1)), env)
}

fn pool(n: u64) -> PendingPool {
    let mut pool = PendingPool::new(n as usize + 1);
    for i in 0..n {
        let (hash, env) = pending(i);
        pool.insert(hash, env, i);
        // Each reads and writes one of 500 slots of one contract.
        let key = StateKey::Slot(Address::repeat_byte(0xcc), U256::from(i % 500));
        let footprint = Footprint { reads: [key].into_iter().collect(), writes: [key].into_iter().collect() };
        pool.note_footprint(&hash, &footprint);
    }
    pool
}

fn job(pool: &PendingPool, hash: &B256) -> usize {
    let mut futures = pool.futures(hash, BASEFEE, 16);
    futures.extend(pool.flip_futures(hash, BASEFEE, 16, 4));
    futures.extend(pool.dependency_future(hash, 16));
    futures.extend(pool.race_futures(hash, BASEFEE, 16));
    futures.len()
}

fn futures(c: &mut Criterion) {
    for n in [1_000u64, 10_000, 50_000] {
        let mut group = c.benchmark_group(format!("futures/{n}"));
        group.sample_size(10);
        let mut pool = pool(n);
        let target = B256::from(U256::from(n / 2 + 1));
        let mut next = n;
        group.bench_function("admitted", |b| {
            b.iter(|| {
                // A replacement (same sender and nonce, another hash): the pool keeps its size.
                // (Never the target's own sender.)
                let i = next % n;
                let (_, env) = pending(if i == n / 2 { i + 1 } else { i } % n);
                next += 1;
                pool.insert(B256::from(U256::from(next)), env, next);
                black_box(job(&pool, &target))
            })
        });
        group.bench_function("unchanged", |b| b.iter(|| black_box(job(&pool, &target))));
        group.finish();
    }
}

criterion_group!(benches, futures);
criterion_main!(benches);
