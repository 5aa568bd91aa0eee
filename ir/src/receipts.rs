//! Receipts built while a block executes.
//!
//! The receipts root is a Merkle-Patricia trie keyed by `rlp(index)`. Its leaves are the
//! encoded receipts, and hashing them is a fixed cost of every block: on log-heavy blocks it
//! is a fifth of sequential revm's whole block time. Nothing in it depends on a later
//! transaction except the trie's shape, and the order in which the trie takes its leaves is
//! known from the block's length alone (`rlp(1) < … < rlp(127) < rlp(0) < rlp(128) < …`). So
//! [`ReceiptBuilder`] adds each leaf as soon as every leaf before it in key order has arrived,
//! and a block's receipts are done a few leaves after its last transaction.
//!
//! [`build_while`] runs the builder on a second thread fed by a channel while the caller
//! executes the block (the block executor: hits cost about as much as a receipt, so building
//! them inline would be a third of a fast import). The receipts are those of
//! [`crate::receipts`], bit for bit (see the tests).

use std::sync::{Mutex, OnceLock};

use alloy::{
    consensus::{Eip658Value, Receipt, ReceiptEnvelope, ReceiptWithBloom, TxType},
    eips::eip2718::Encodable2718,
    primitives::{Bloom, Log},
    trie::{EMPTY_ROOT_HASH, HashBuilder, Nibbles, root::adjust_index_for_rlp},
};

use crate::reference::Receipts;

/// What a receipt needs from one transaction.
#[derive(Clone, Debug)]
pub struct ReceiptInput {
    /// The EIP-2718 type byte of the transaction.
    pub ty: u8,
    /// Whether it succeeded (receipt status 1).
    pub success: bool,
    /// Gas used as the receipt reports it.
    pub gas_used: u64,
    /// Its logs.
    pub logs: Vec<Log>,
}

/// Builds a block's receipts, bloom, gas and receipts root from its transactions in order,
/// adding each trie leaf as soon as the leaves before it in key order are known.
#[derive(Debug)]
pub struct ReceiptBuilder<F> {
    /// Transactions in the block.
    len: usize,
    receipts: Vec<ReceiptEnvelope>,
    gas_used: u64,
    logs_bloom: Bloom,
    trie: HashBuilder,
    /// Leaves added to the trie, in key order.
    added: usize,
    buffer: Vec<u8>,
    bloom_of: F,
}

impl<F: FnMut(&[Log]) -> Bloom> ReceiptBuilder<F> {
    /// A builder for a block of `len` transactions; `bloom_of` computes a receipt's bloom (it
    /// must compute what `alloy::primitives::logs_bloom` does).
    pub fn new(len: usize, bloom_of: F) -> Self {
        Self {
            len,
            receipts: Vec::with_capacity(len),
            gas_used: 0,
            logs_bloom: Bloom::ZERO,
            trie: HashBuilder::default(),
            added: 0,
            buffer: Vec::new(),
            bloom_of,
        }
    }

    /// The next transaction's receipt. Receipts past the block's length are ignored (the
    /// caller's bug, caught by [`ReceiptBuilder::finish`]'s count).
    pub fn push(&mut self, input: ReceiptInput) {
        if self.receipts.len() >= self.len {
            self.receipts.push(envelope(input, 0, Bloom::ZERO));
            return;
        }
        self.gas_used += input.gas_used;
        let bloom = (self.bloom_of)(&input.logs);
        self.logs_bloom.accrue_bloom(&bloom);
        self.receipts.push(envelope(input, self.gas_used, bloom));
        self.add_ready_leaves();
    }

    /// Adds every leaf whose receipt and predecessors in key order are known.
    fn add_ready_leaves(&mut self) {
        while self.added < self.len {
            let index = adjust_index_for_rlp(self.added, self.len);
            let Some(receipt) = self.receipts.get(index) else { break };
            self.buffer.clear();
            receipt.encode_2718(&mut self.buffer);
            let key = alloy::rlp::encode_fixed_size(&index);
            self.trie.add_leaf(Nibbles::unpack(&key), &self.buffer);
            self.added += 1;
        }
    }

    /// The block's receipts. `None` unless exactly the block's length was pushed.
    pub fn finish(mut self) -> Option<Receipts> {
        if self.receipts.len() != self.len {
            return None;
        }
        let receipts_root = if self.len == 0 { EMPTY_ROOT_HASH } else { self.trie.root() };
        Some(Receipts { receipts: self.receipts, gas_used: self.gas_used, logs_bloom: self.logs_bloom, receipts_root })
    }
}

fn envelope(input: ReceiptInput, cumulative_gas_used: u64, logs_bloom: Bloom) -> ReceiptEnvelope {
    let receipt = Receipt { status: Eip658Value::Eip658(input.success), cumulative_gas_used, logs: input.logs };
    // revm accepted the transaction, so its type byte is one alloy knows.
    let ty = TxType::try_from(input.ty).unwrap_or(TxType::Legacy);
    ReceiptEnvelope::from_typed(ty, ReceiptWithBloom { receipt, logs_bloom })
}

/// Blocks with fewer transactions build their receipts inline: a thread costs more.
pub const THREAD_FROM: usize = 32;

/// Runs `body` with a sink for a block of `len` transactions' receipt inputs, in order, and
/// builds the receipts beside it: on a second thread when the block has at least
/// [`THREAD_FROM`] transactions (the long-lived receipts thread when no other block holds it,
/// else one of this block's own), inline otherwise. Returns `body`'s result and the receipts;
/// `None` receipts when `body` did not push exactly `len` inputs (it failed part way), or the
/// receipts thread died (the caller then builds them itself).
pub fn build_while<R>(
    len: usize,
    bloom_of: impl Fn(&[Log]) -> Bloom + Send + 'static,
    body: impl FnOnce(&mut dyn FnMut(ReceiptInput)) -> R,
) -> (R, Option<Receipts>) {
    if len < THREAD_FROM {
        let mut builder = ReceiptBuilder::new(len, bloom_of);
        let result = body(&mut |input| builder.push(input));
        return (result, builder.finish());
    }
    // Inputs go over in batches: waking the worker costs microseconds, as much as a hit.
    let (sender, batches) = std::sync::mpsc::channel::<Vec<ReceiptInput>>();
    let build = move || {
        let mut builder = ReceiptBuilder::new(len, bloom_of);
        for input in batches.into_iter().flatten() {
            builder.push(input);
        }
        builder.finish()
    };
    let feed = |sender: std::sync::mpsc::Sender<Vec<ReceiptInput>>| {
        let mut batch = Vec::with_capacity(BATCH);
        let mut sent = 0;
        let result = body(&mut |input| {
            batch.push(input);
            // Batches shrink towards the block's end, so that little is left for the worker
            // once the body is done.
            if batch.len() >= BATCH.min(len.saturating_sub(sent) / 4).max(1) {
                sent += batch.len();
                // The worker only stops when the sender is dropped; a failed send means it
                // died, which the caller sees as missing receipts.
                let _ = sender.send(std::mem::replace(&mut batch, Vec::with_capacity(BATCH)));
            }
        });
        if !batch.is_empty() {
            let _ = sender.send(batch);
        }
        result
    };
    // The long-lived worker when it is free; a thread of this block's own otherwise (another
    // import is using it).
    // (A body that panicked poisoned the lock; the thread itself is fine.)
    let free = |w: &'static Worker| match w.jobs.try_lock() {
        Ok(jobs) => Some(jobs),
        Err(std::sync::TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
        Err(std::sync::TryLockError::WouldBlock) => None,
    };
    if let Some(jobs) = WORKER.get_or_init(Worker::start).as_ref().and_then(free) {
        let (done, receipts) = std::sync::mpsc::channel();
        let job: Job = Box::new(move || {
            let _ = done.send(build());
        });
        return match jobs.send(job) {
            Ok(()) => {
                let result = feed(sender);
                // A worker that panicked dropped `done`: no receipts, which the caller rebuilds.
                (result, receipts.recv().ok().flatten())
            }
            // The worker is gone (a job panicked before): the job runs on a thread of this
            // block's own.
            Err(std::sync::mpsc::SendError(job)) => std::thread::scope(|scope| {
                scope.spawn(job);
                let result = feed(sender);
                (result, receipts.recv().ok().flatten())
            }),
        };
    }
    std::thread::scope(|scope| {
        let worker = scope.spawn(build);
        let result = feed(sender);
        let receipts = match worker.join() {
            Ok(receipts) => receipts,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        (result, receipts)
    })
}

type Job = Box<dyn FnOnce() + Send>;

/// The long-lived receipts thread. Spawning one per block and tearing it down (its
/// allocator cache flushed, its stack unmapped) cost about 200 µs at the block's end, a
/// seventh of a median shared block's import.
struct Worker {
    /// Locked while one block's receipts are built: it takes one block at a time.
    jobs: Mutex<std::sync::mpsc::Sender<Job>>,
}

static WORKER: OnceLock<Option<Worker>> = OnceLock::new();

impl Worker {
    /// Starts the thread; `None` when the system refuses one (blocks then use their own).
    fn start() -> Option<Self> {
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("prescient-receipts".into())
            .spawn(move || {
                for job in queue {
                    job();
                }
            })
            .ok()?;
        Some(Self { jobs: Mutex::new(jobs) })
    }
}

/// Receipt inputs sent to the worker at once.
const BATCH: usize = 32;

#[cfg(test)]
mod tests {
    use alloy::primitives::{Address, B256, Bytes, LogData, logs_bloom};

    use super::*;
    use crate::{TxOutcome, TxStatus, reference::receipts};

    fn outcome(i: usize) -> TxOutcome {
        let logs = (0..i % 4)
            .map(|j| Log {
                address: Address::repeat_byte((i + j) as u8),
                data: LogData::new_unchecked(
                    vec![B256::repeat_byte(j as u8); j],
                    Bytes::from(vec![i as u8; (i * 37 + j * 11) % 300]),
                ),
            })
            .collect();
        TxOutcome {
            status: if i % 5 == 3 {
                TxStatus::Revert
            } else {
                TxStatus::Success(revm::context::result::SuccessReason::Stop)
            },
            gas_used: 21_000 + i as u64 * 1_003,
            gas_refunded: 0,
            logs,
            output: Bytes::new(),
            created_address: None,
            state: Default::default(),
        }
    }

    fn inputs(outcomes: &[TxOutcome], types: &[u8]) -> Vec<ReceiptInput> {
        outcomes
            .iter()
            .zip(types)
            .map(|(o, ty)| ReceiptInput {
                ty: *ty,
                success: o.status.is_success(),
                gas_used: o.gas_used,
                logs: o.logs.clone(),
            })
            .collect()
    }

    /// Every length across the trie's key-order boundaries (0, 1, 127, 128, 129, 256), inline
    /// and threaded: the same receipts, root, bloom and gas as the block-at-once builder.
    #[test]
    fn streamed_receipts_are_the_block_at_once_receipts() {
        for len in [0, 1, 2, 3, 31, 32, 33, 126, 127, 128, 129, 130, 255, 256, 257, 300] {
            let outcomes: Vec<TxOutcome> = (0..len).map(outcome).collect();
            let types: Vec<u8> = (0..len).map(|i| (i % 3) as u8).collect();
            let expected = receipts(&outcomes, &types);
            let (count, streamed) = build_while(
                len,
                |logs: &[Log]| logs_bloom(logs),
                |sink| {
                    let mut n = 0;
                    for input in inputs(&outcomes, &types) {
                        sink(input);
                        n += 1;
                    }
                    n
                },
            );
            assert_eq!(count, len);
            let streamed = streamed.expect("all pushed");
            assert_eq!(streamed.receipts_root, expected.receipts_root, "root, {len} txs");
            assert_eq!(streamed.receipts, expected.receipts, "receipts, {len} txs");
            assert_eq!(streamed.logs_bloom, expected.logs_bloom, "bloom, {len} txs");
            assert_eq!(streamed.gas_used, expected.gas_used, "gas, {len} txs");
        }
    }

    /// A body that stops part way (a rejected transaction) gets no receipts, inline or
    /// threaded, and too many inputs are refused too.
    #[test]
    fn a_short_or_long_block_has_no_receipts() {
        for len in [5, 100] {
            let outcomes: Vec<TxOutcome> = (0..len + 1).map(outcome).collect();
            let types = vec![2u8; len + 1];
            let all = inputs(&outcomes, &types);
            let (_, short) = build_while(
                len,
                |logs: &[Log]| logs_bloom(logs),
                |sink| all[..len - 1].iter().cloned().for_each(&mut *sink),
            );
            assert!(short.is_none(), "short, {len}");
            let (_, long) =
                build_while(len, |logs: &[Log]| logs_bloom(logs), |sink| all.iter().cloned().for_each(&mut *sink));
            assert!(long.is_none(), "long, {len}");
        }
    }
}
