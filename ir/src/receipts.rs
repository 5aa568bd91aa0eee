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
//! [`build_while`] runs the builder on a second thread, fed through a queue it polls (`Feed`),
//! while the caller executes the block (the block executor: hits cost about as much as a receipt, so building
//! them inline would be a third of a fast import). When the caller's block is done before its
//! receipts, the caller's thread builds the last receipts of the queue and hashes their leaves
//! while the builder takes the first ([`Feed::help`]). The receipts are those of
//! [`crate::reference::receipts`], bit for bit (see the tests).

use std::{
    collections::VecDeque,
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
};

use alloy::{
    consensus::{Eip658Value, Receipt, ReceiptEnvelope, ReceiptWithBloom, TxType},
    eips::eip2718::Encodable2718,
    primitives::{B256, Bloom, Log},
    rlp::Encodable,
    trie::{EMPTY_ROOT_HASH, HashBuilder, Nibbles, nodes::LeafNodeRef, root::adjust_index_for_rlp},
};

use crate::{
    keccak_batch::{LANES, keccak256_batch},
    reference::Receipts,
};

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
    /// Their bloom, when the caller knows it already (it must be the bloom of `logs`): a
    /// read-set hit's logs are its pre-execution's, whose bloom was computed then. Boxed: an
    /// input is moved three or four times on its way to the builder, and with the bloom
    /// inline each move copied 300 bytes, `None` too (9% of an import of transfers in a
    /// profile went to `memcpy`, most of it these moves).
    pub logs_bloom: Option<Box<Bloom>>,
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
    /// Leaves encoded and waiting to be hashed together ([`keccak256_batch`]): where each
    /// goes in the trie, and its node in the buffer of the same position.
    pending: Vec<Nibbles>,
    nodes: [Vec<u8>; LANES],
    bloom_of: F,
    /// Leaf hashes of receipts prepared away from the builder ([`Prepared`]), by index; empty
    /// until one arrives.
    hashed: Vec<Option<B256>>,
    /// Set when a prepared receipt arrived out of order: the block then has no receipts.
    broken: bool,
}

/// A receipt built, and its trie leaf hashed, away from its builder (on the block's own
/// thread once the block is done: [`Feed::help`]).
#[derive(Debug)]
struct Prepared {
    index: usize,
    receipt: ReceiptEnvelope,
    bloom: Bloom,
    /// The hash of the leaf's node; `None` when the node is shorter than a hash (it then sits
    /// inline in its branch, and the builder adds it as a leaf).
    leaf: Option<B256>,
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
            pending: Vec::with_capacity(LANES),
            nodes: Default::default(),
            bloom_of,
            hashed: Vec::new(),
            broken: false,
        }
    }

    /// The next transaction's receipt, built and hashed elsewhere ([`prepare`]).
    fn push_prepared(&mut self, prepared: Prepared) {
        if prepared.index != self.receipts.len() || prepared.index >= self.len {
            self.broken = true;
            return;
        }
        self.gas_used = prepared.receipt.cumulative_gas_used();
        self.logs_bloom.accrue_bloom(&prepared.bloom);
        self.receipts.push(prepared.receipt);
        if let Some(leaf) = prepared.leaf {
            if self.hashed.is_empty() {
                self.hashed.resize(self.len, None);
            }
            self.hashed[prepared.index] = Some(leaf);
        }
        self.add_ready_leaves();
    }

    /// The next transaction's receipt. Receipts past the block's length are ignored (the
    /// caller's bug, caught by [`ReceiptBuilder::finish`]'s count).
    pub fn push(&mut self, input: ReceiptInput) {
        if self.receipts.len() >= self.len {
            self.receipts.push(envelope(input, 0, Bloom::ZERO));
            return;
        }
        self.gas_used += input.gas_used;
        let bloom = match input.logs_bloom.as_deref().copied() {
            Some(given) => {
                // Given by convention (a read-set hit's recorded logs): checked where it costs
                // nothing in a release build.
                debug_assert_eq!(given, (self.bloom_of)(&input.logs), "a given bloom is its logs' bloom");
                given
            }
            None => (self.bloom_of)(&input.logs),
        };
        self.logs_bloom.accrue_bloom(&bloom);
        self.receipts.push(envelope(input, self.gas_used, bloom));
        self.add_ready_leaves();
    }

    /// Adds every leaf whose receipt and predecessors in key order are known.
    ///
    /// A block of one transaction has a lone leaf for its trie, which the trie builder hashes
    /// itself. In a longer block every leaf hangs from a branch at the length of the longest
    /// prefix its key shares with a neighbour in key order (the keys are known from the
    /// block's length, and none is a prefix of another). So the leaf's node, and its hash,
    /// are known as soon as its receipt is: leaves are hashed eight at a time
    /// ([`keccak256_batch`]) and given to the trie builder as hashed children at that
    /// position (a receipt's node is always longer than a hash: its bloom alone is 256
    /// bytes).
    fn add_ready_leaves(&mut self) {
        while self.added < self.len {
            let index = adjust_index_for_rlp(self.added, self.len);
            let Some(receipt) = self.receipts.get(index) else { break };
            if let Some(leaf) = self.hashed.get(index).copied().flatten() {
                // Hashed ahead: the leaves pending before it in key order go in first.
                self.hash_pending();
                let key = key_of(index);
                self.trie.add_branch(key.slice(..hanging_at(&key, self.added, self.len)), leaf, false);
                self.added += 1;
                continue;
            }
            let key = key_of(index);
            if self.len == 1 {
                self.buffer.clear();
                receipt.encode_2718(&mut self.buffer);
                self.trie.add_leaf(key, &self.buffer);
                self.added += 1;
                continue;
            }
            let node = &mut self.nodes[self.pending.len()];
            let (at, streamed) = encode_leaf(receipt, &key, self.added, self.len, &mut self.buffer, node);
            if let Some(leaf) = streamed {
                // A long receipt, hashed as it was encoded: the leaves pending before it in
                // key order go in first.
                self.hash_pending();
                self.trie.add_branch(key.slice(..at), leaf, false);
                self.added += 1;
                continue;
            }
            if node.len() < 32 {
                // A node shorter than a hash sits inline in its branch, not by hash: the trie
                // builder adds it as a leaf (after the hashes before it, in key order). No
                // receipt gets here (its bloom alone is 256 bytes); the root stays right if
                // one ever did.
                self.hash_pending();
                self.trie.add_leaf(key, &self.buffer);
                self.added += 1;
                continue;
            }
            self.pending.push(key.slice(..at));
            self.added += 1;
            if self.pending.len() == LANES || self.added == self.len {
                self.hash_pending();
            }
        }
    }

    /// Hashes the pending leaves together and adds them to the trie, in key order.
    fn hash_pending(&mut self) {
        let n = self.pending.len();
        if n == 0 {
            return;
        }
        let hashes = hash_nodes(&self.nodes[..n]);
        for (at, hash) in self.pending.drain(..).zip(hashes) {
            self.trie.add_branch(at, hash, false);
        }
    }

    /// The block's receipts. `None` unless exactly the block's length was pushed.
    pub fn finish(mut self) -> Option<Receipts> {
        if self.receipts.len() != self.len || self.broken {
            return None;
        }
        let receipts_root = if self.len == 0 { EMPTY_ROOT_HASH } else { self.trie.root() };
        Some(Receipts { receipts: self.receipts, gas_used: self.gas_used, logs_bloom: self.logs_bloom, receipts_root })
    }
}

/// Where the leaf of `key`, the `position`-th of `len >= 2` in key order, hangs: the length of
/// its key's part above it (one nibble past the longest prefix it shares with a neighbour in
/// key order). The rest of the key is the leaf node's path.
fn hanging_at(key: &Nibbles, position: usize, len: usize) -> usize {
    let shared = |neighbour: Option<usize>| {
        neighbour.filter(|n| *n < len).map_or(0, |n| key.common_prefix_length(&key_of(adjust_index_for_rlp(n, len))))
    };
    shared(position.checked_sub(1)).max(shared(Some(position + 1))) + 1
}

/// Where the receipt at `index` of a block of `len >= 1` comes in the trie's key order: the
/// inverse of `adjust_index_for_rlp` (`rlp(0)` sorts after `rlp(1)` to `rlp(127)`).
fn position_of(index: usize, len: usize) -> usize {
    match index {
        0 => (len - 1).min(0x7f),
        1..=0x7f => index - 1,
        _ => index,
    }
}

/// Encodes `receipt`, whose key is `key` and which comes `position`-th in key order in a
/// block of `len >= 2`, into `buffer`, and its trie leaf's node into `node`. Returns where the
/// leaf hangs ([`hanging_at`]): the rest of the key is the node's path; and for a receipt
/// longer than [`STREAM_FROM`], the leaf's hash instead of its node (`buffer` and `node` are
/// then left empty): see [`hash_long_leaf`].
fn encode_leaf(
    receipt: &ReceiptEnvelope,
    key: &Nibbles,
    position: usize,
    len: usize,
    buffer: &mut Vec<u8>,
    node: &mut Vec<u8>,
) -> (usize, Option<B256>) {
    let at = hanging_at(key, position, len);
    buffer.clear();
    node.clear();
    let receipt_len = receipt.encode_2718_len();
    if receipt_len > STREAM_FROM {
        return (at, Some(hash_long_leaf(receipt, receipt_len, &key.slice(at..))));
    }
    receipt.encode_2718(buffer);
    LeafNodeRef::new(&key.slice(at..), buffer).encode(node);
    (at, None)
}

/// Receipts longer than this are hashed as they are encoded ([`hash_long_leaf`]). A keccak
/// batch hashes such an input alone anyway ([`crate::keccak_batch::LONG`]).
const STREAM_FROM: usize = crate::keccak_batch::LONG;

/// The hash of the trie leaf holding `receipt` (`receipt_len` bytes encoded) at `path`: the
/// node [`LeafNodeRef`] encodes, written straight into the hasher through a small buffer.
/// A receipt of ten thousand logs (1.6 MB, block 15,537,394) took 1.5-2 ms to encode into a
/// buffer and copy into its node, both grown afresh for each block, then 4.6-6.3 ms to hash,
/// on the import's critical path (a temporary timer in the import). Streamed, it is never
/// held whole: 4.4-4.8 ms for encoding and hashing in 29 of 42 timings (the others about 7 ms),
/// and the `mint` shape of the `receipts` bench (blooms given, as the import gives them) went
/// from 8.78 ms to 5.69 ms. Through the trait's default byte-at-a-time writes it took 7.4-9.2
/// ms: [`HashingSink`] copies what the encoders write itself.
fn hash_long_leaf(receipt: &ReceiptEnvelope, receipt_len: usize, path: &Nibbles) -> B256 {
    use alloy::rlp::Header;
    let path = alloy::trie::nodes::encode_path_leaf(path, true);
    // The value is a byte string: its header, then the receipt.
    let value = Header { list: false, payload_length: receipt_len };
    let payload_length = path.as_slice().length() + value.length() + receipt_len;
    let mut sink = HashingSink::default();
    Header { list: true, payload_length }.encode(&mut sink);
    path.as_slice().encode(&mut sink);
    value.encode(&mut sink);
    receipt.encode_2718(&mut sink);
    sink.finish()
}

/// Bytes [`HashingSink`] gathers before it hands them to the hasher (a multiple of the
/// rate, so the hasher absorbs whole blocks without buffering).
const SINK: usize = 30 * 136;

/// A [`BufMut`](alloy::rlp::BufMut) that hashes what is written into it (Keccak-256).
struct HashingSink {
    hasher: alloy::primitives::Keccak256,
    buffer: Box<[u8; SINK]>,
    filled: usize,
}

impl Default for HashingSink {
    fn default() -> Self {
        Self { hasher: alloy::primitives::Keccak256::new(), buffer: Box::new([0; SINK]), filled: 0 }
    }
}

impl HashingSink {
    fn flush(&mut self) {
        self.hasher.update(&self.buffer[..self.filled]);
        self.filled = 0;
    }

    fn finish(mut self) -> B256 {
        self.hasher.update(&self.buffer[..self.filled]);
        self.hasher.finalize()
    }
}

// SAFETY: `chunk_mut` hands out the unfilled, initialized rest of the buffer (never empty:
// a full buffer is hashed and emptied first), and `advance_mut` counts what the caller wrote
// into it, which it may not exceed (the trait's contract).
unsafe impl alloy::rlp::BufMut for HashingSink {
    fn remaining_mut(&self) -> usize {
        isize::MAX as usize
    }

    unsafe fn advance_mut(&mut self, cnt: usize) {
        debug_assert!(self.filled + cnt <= SINK);
        self.filled = (self.filled + cnt).min(SINK);
    }

    fn chunk_mut(&mut self) -> &mut alloy::rlp::bytes::buf::UninitSlice {
        if self.filled == SINK {
            self.flush();
        }
        alloy::rlp::bytes::buf::UninitSlice::new(&mut self.buffer[self.filled..])
    }

    // The encoders write a few bytes a call (a header, an address, a topic): copied here
    // directly, rather than through the trait's loop over `chunk_mut`, which made a long
    // receipt slower to hash streamed than encoded whole.
    #[inline]
    fn put_slice(&mut self, src: &[u8]) {
        if let Some(free) = self.buffer.get_mut(self.filled..self.filled + src.len()) {
            free.copy_from_slice(src);
            self.filled += src.len();
            return;
        }
        let mut src = src;
        while !src.is_empty() {
            if self.filled == SINK {
                self.flush();
            }
            let n = src.len().min(SINK - self.filled);
            self.buffer[self.filled..self.filled + n].copy_from_slice(&src[..n]);
            self.filled += n;
            src = &src[n..];
        }
    }

    #[inline]
    fn put_u8(&mut self, n: u8) {
        if self.filled == SINK {
            self.flush();
        }
        self.buffer[self.filled] = n;
        self.filled += 1;
    }

    #[inline]
    fn put_i8(&mut self, n: i8) {
        self.put_u8(n as u8);
    }
}

/// The hashes of up to [`LANES`] nodes, hashed together ([`keccak256_batch`]), in order.
fn hash_nodes(nodes: &[Vec<u8>]) -> [B256; LANES] {
    let n = nodes.len().min(LANES);
    let mut inputs: [&[u8]; LANES] = [&[]; LANES];
    for (input, node) in inputs.iter_mut().zip(&nodes[..n]) {
        *input = node;
    }
    let mut hashes = [B256::ZERO; LANES];
    keccak256_batch(&inputs[..n], &mut hashes[..n]);
    hashes
}

/// What [`prepare`] encodes into, kept across its calls.
#[derive(Default)]
struct Scratch {
    buffer: Vec<u8>,
    nodes: [Vec<u8>; LANES],
}

/// Builds the receipts of up to [`LANES`] `items` (of a block of `len >= 2`) and hashes their
/// leaves, as [`ReceiptBuilder`] would: what the block's own thread does for its builder once
/// it has nothing else to do.
fn prepare(
    items: Vec<Item>,
    len: usize,
    bloom_of: &(dyn Fn(&[Log]) -> Bloom + Sync),
    scratch: &mut Scratch,
    out: &mut Vec<Prepared>,
) {
    let first = out.len();
    for (item, node) in items.into_iter().zip(&mut scratch.nodes) {
        let Item { index, cumulative_gas_used, input } = item;
        let bloom = input.logs_bloom.as_deref().copied().unwrap_or_else(|| bloom_of(&input.logs));
        let receipt = envelope(input, cumulative_gas_used, bloom);
        let (_, leaf) = encode_leaf(&receipt, &key_of(index), position_of(index, len), len, &mut scratch.buffer, node);
        out.push(Prepared { index, receipt, bloom, leaf });
    }
    let nodes = &scratch.nodes[..out.len() - first];
    for ((prepared, node), hash) in out[first..].iter_mut().zip(nodes).zip(hash_nodes(nodes)) {
        // A node shorter than a hash sits inline: the builder adds it itself. A long receipt
        // was hashed as it was encoded (its node is empty, and its hash given).
        if prepared.leaf.is_none() {
            prepared.leaf = (node.len() >= 32).then_some(hash);
        }
    }
}

/// The trie key of the receipt at `index`: `rlp(index)`, as nibbles.
fn key_of(index: usize) -> Nibbles {
    Nibbles::unpack(alloy::rlp::encode_fixed_size(&index))
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
///
/// `side` is work for the builder's thread that is worth something only before `body` gets
/// to it (a transaction executed ahead): it is called there before any receipt is built, one
/// short unit a call, until it returns `false` (nothing left) or `body` ends. The receipts
/// waiting meanwhile are built after, by the builder and, once `body` is done, by the body's
/// thread too. It is never called for blocks built inline, and has returned for the last time
/// when `build_while` returns or unwinds.
pub fn build_while<R>(
    len: usize,
    bloom_of: impl Fn(&[Log]) -> Bloom + Send + Sync + 'static,
    side: Option<&mut (dyn FnMut() -> bool + Send + '_)>,
    body: impl FnOnce(&mut dyn FnMut(ReceiptInput)) -> R,
) -> (R, Option<Receipts>) {
    if len < THREAD_FROM {
        let mut builder = ReceiptBuilder::new(len, bloom_of);
        let result = body(&mut |input| builder.push(input));
        return (result, builder.finish());
    }
    // Inputs go over through a queue the builder polls, and sleeps on only after a long gap
    // (a transaction revm runs): waking a sleeping thread costs tens of microseconds on a
    // VM, as much as several hits, and the wake-ups of a channel were up to a third of a fast
    // import (see `Feed`).
    let queue = Arc::new(Feed::default());
    // SAFETY: the job below is the only user of `side`, and it has ended (its result sent,
    // or its sender dropped by a panic) before this function returns or unwinds: the
    // long-lived worker's path waits for that (`Joined`, also while unwinding), and the other
    // paths run it on a scoped thread, joined at the scope's end. So `side` and what it
    // borrows outlive every use.
    let side = side.map(|side| unsafe {
        std::mem::transmute::<&mut (dyn FnMut() -> bool + Send + '_), &'static mut (dyn FnMut() -> bool + Send)>(side)
    });
    let bloom_of = Arc::new(bloom_of);
    let build = {
        let queue = Arc::clone(&queue);
        let bloom_of = Arc::clone(&bloom_of);
        move || {
            let mut builder = ReceiptBuilder::new(len, move |logs: &[Log]| bloom_of(logs));
            let prepared = queue.drain(|input| builder.push(input), side);
            for prepared in prepared {
                builder.push_prepared(prepared);
            }
            builder.finish()
        }
    };
    let feed = |queue: Arc<Feed>| {
        // Closed however the body ends (a panic too), so the builder never waits forever.
        let _closed = Closing(&queue);
        // Inputs go over in batches (see `BATCH`); what is left is handed over before the
        // feed closes.
        let mut batch = Vec::with_capacity(BATCH);
        let (mut index, mut cumulative_gas_used) = (0, 0u64);
        let result = body(&mut |input| {
            let heavy = input.logs.len() >= HEAVY_LOGS;
            cumulative_gas_used += input.gas_used;
            batch.push(Item { index, cumulative_gas_used, input });
            index += 1;
            if heavy || batch.len() >= BATCH {
                queue.push_all(&mut batch);
            }
        });
        queue.push_all(&mut batch);
        // The block is done; its last receipts, if the builder has not taken them yet, are
        // built here while it builds the others.
        if index == len {
            queue.help(len, &*bloom_of);
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
                let mut joined = Joined { receipts: &receipts, done: false };
                let result = feed(queue);
                // A worker that panicked dropped `done`: no receipts, which the caller rebuilds.
                let built = wait_for(joined.receipts);
                joined.done = true;
                (result, built)
            }
            // The worker is gone (a job panicked before): the job runs on a thread of this
            // block's own.
            Err(std::sync::mpsc::SendError(job)) => std::thread::scope(|scope| {
                scope.spawn(job);
                let result = feed(queue);
                (result, wait_for(&receipts))
            }),
        };
    }
    std::thread::scope(|scope| {
        let worker = scope.spawn(build);
        let result = feed(queue);
        let receipts = match worker.join() {
            Ok(receipts) => receipts,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        (result, receipts)
    })
}

/// The worker's receipts: polled for up to [`POLL_RESULT`] first (it is usually a few leaves
/// behind the body, and being woken costs more than that), then waited for.
fn wait_for(receipts: &std::sync::mpsc::Receiver<Option<Receipts>>) -> Option<Receipts> {
    let started = std::time::Instant::now();
    for polls in 0u32.. {
        match receipts.try_recv() {
            Ok(receipts) => return receipts,
            Err(std::sync::mpsc::TryRecvError::Disconnected) => return None,
            Err(std::sync::mpsc::TryRecvError::Empty) => std::hint::spin_loop(),
        }
        if polls.is_multiple_of(64) && started.elapsed() >= POLL_RESULT {
            break;
        }
    }
    receipts.recv().ok().flatten()
}

/// How long the body polls for the worker's receipts before it sleeps on them. The builder is
/// typically 70-90 µs behind at the body's end on this VM (medians of five blocks of 98 to
/// 1,414 transactions); a thread asleep on the channel is woken by a system call in the
/// worker's send, and runs again tens of microseconds later. The core has nothing else to do
/// meanwhile: the block's import waits for its receipts.
const POLL_RESULT: std::time::Duration = std::time::Duration::from_micros(500);

/// Waits, when dropped before the worker's result was taken (the body unwound), until the
/// worker's job has ended: it may be using the caller's `side` work.
struct Joined<'r> {
    receipts: &'r std::sync::mpsc::Receiver<Option<Receipts>>,
    done: bool,
}

impl Drop for Joined<'_> {
    fn drop(&mut self) {
        if !self.done {
            // The feed is closed (the body's `Closing` ran first), so the job ends.
            let _ = self.receipts.recv();
        }
    }
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

/// One receipt input on its way to the builder, with what the block's thread knows of its
/// place.
#[derive(Debug)]
struct Item {
    index: usize,
    cumulative_gas_used: u64,
    input: ReceiptInput,
}

/// The inputs on their way from the block's body to the receipts builder.
#[derive(Debug, Default)]
struct Feed {
    /// Inputs in block order; the builder takes them from the front, the block's thread
    /// (once the block is done) from the back.
    queue: Mutex<VecDeque<Item>>,
    /// Inputs in the queue (the builder looks at it before taking the lock).
    queued: AtomicUsize,
    /// Set once the body pushes no more.
    closed: AtomicBool,
    /// Set once the block's thread builds no more receipts ([`Feed::help`]), or never will.
    helped: AtomicBool,
    /// The receipts the block's thread built, last first.
    prepared: Mutex<Vec<Prepared>>,
    /// Set while the builder sleeps: only then does the body wake it.
    parked: AtomicBool,
    /// The builder's thread.
    builder: OnceLock<std::thread::Thread>,
}

/// Polls of an empty feed before the builder sleeps: tens of microseconds, longer than the
/// gap between two hits, shorter than a transaction revm runs.
const SPINS: u32 = 512;

/// How long the builder then yields between polls before it sleeps: longer than most
/// transactions revm runs, so that the body rarely has to wake it.
const YIELDING: std::time::Duration = std::time::Duration::from_millis(1);

/// Inputs the body hands over at once. Each hand-over moves the queue's lock and counter
/// to the body's core and back to the builder's (about 150 ns a transaction on this VM's two
/// cores, the cost of a transfer's whole evaluation); in eights, the builder starts a cheap
/// receipt a few transactions later, which it has time for.
const BATCH: usize = 8;

/// An input with this many logs is handed over at once with those before it: its receipt
/// is long to encode and hash, and the builder should start it as soon as it can.
const HEAVY_LOGS: usize = 4;

impl Feed {
    /// Moves every input of `batch` to the queue (leaving it empty).
    fn push_all(&self, batch: &mut Vec<Item>) {
        if batch.is_empty() {
            return;
        }
        {
            // Counted under the lock, so that the count never falls below the queue's length
            // (a taker subtracts what it took under the same lock).
            let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            self.queued.fetch_add(batch.len(), Ordering::SeqCst);
            queue.extend(batch.drain(..));
        }
        self.wake();
    }

    /// Up to `n` inputs from the front of the queue (`back`: from its back, last first).
    fn take(&self, n: usize, back: bool, into: &mut Vec<Item>) {
        let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        let n = n.min(queue.len());
        if back {
            into.extend((0..n).filter_map(|_| queue.pop_back()));
        } else {
            into.extend(queue.drain(..n));
        }
        self.queued.fetch_sub(n, Ordering::SeqCst);
    }

    /// Called by the body's thread once the block's `len` inputs are all pushed: closes the
    /// feed, then builds receipts from the back of the queue, [`LANES`] at a time, until the
    /// builder (taking from the front) has the rest. The body's thread has nothing else to
    /// do: the block's import waits for its receipts. Blocks of cheap transactions outrun
    /// their builder (on a CPU without AVX-512 each receipt's leaf costs about what a hit
    /// does), and the import then waited up to a third of its time for them.
    fn help(&self, len: usize, bloom_of: &(dyn Fn(&[Log]) -> Bloom + Sync)) {
        self.close();
        if len < 2 {
            return;
        }
        let mut items = Vec::with_capacity(LANES);
        let mut scratch = Scratch::default();
        loop {
            self.take(LANES, true, &mut items);
            if items.is_empty() {
                break;
            }
            #[cfg(test)]
            tests::HELPED.with(|h| h.set(h.get() + items.len()));
            // Last first, as taken: the builder reverses them.
            let mut done = self.prepared.lock().unwrap_or_else(|p| p.into_inner());
            prepare(std::mem::take(&mut items), len, bloom_of, &mut scratch, &mut done);
        }
    }

    fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.wake();
    }

    /// The block's thread builds no more receipts.
    fn helped(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.helped.store(true, Ordering::SeqCst);
        self.wake();
    }

    fn wake(&self) {
        if self.parked.load(Ordering::SeqCst)
            && let Some(builder) = self.builder.get()
        {
            builder.unpark();
        }
    }

    /// Hands every input to `take` in order, [`LANES`] at a time, until the feed is closed and
    /// empty and the block's thread has built what it took from the back; returns what it
    /// built, the block's last receipts in order. Runs `side` first (one unit a call) until
    /// it has nothing left or the feed is closed. While no input is waiting, spins [`SPINS`]
    /// polls, then sleeps until the body pushes or closes.
    fn drain(
        &self,
        mut take: impl FnMut(ReceiptInput),
        mut side: Option<&mut (dyn FnMut() -> bool + Send)>,
    ) -> Vec<Prepared> {
        let _ = self.builder.set(std::thread::current());
        let mut idle = 0u32;
        let mut idle_since = None;
        let mut local = Vec::with_capacity(LANES);
        loop {
            // `helped` and `closed` are read before the queue: once `closed` is set, every
            // input is in the queue, and once `helped` is, no more leaves it from the back.
            let helped = self.helped.load(Ordering::SeqCst);
            let closed = self.closed.load(Ordering::SeqCst);
            if closed {
                side = None;
            }
            // Side work first: it is only worth something before the body reaches it (see
            // `build_while`), while receipts left behind are shared with the block's thread
            // once it is done (`Feed::help`).
            if let Some(work) = side.as_mut() {
                if !work() {
                    side = None;
                }
                (idle, idle_since) = (0, None);
            } else if self.queued.load(Ordering::SeqCst) > 0 {
                self.take(LANES, false, &mut local);
                local.drain(..).for_each(|item| take(item.input));
                (idle, idle_since) = (0, None);
            } else if helped {
                let mut prepared = std::mem::take(&mut *self.prepared.lock().unwrap_or_else(|p| p.into_inner()));
                prepared.reverse();
                return prepared;
            } else if closed {
                // The block's thread is building the last receipts: a few leaves' time.
                std::hint::spin_loop();
            } else if idle < SPINS {
                idle += 1;
                std::hint::spin_loop();
            } else if idle_since.get_or_insert_with(std::time::Instant::now).elapsed() < YIELDING {
                // Awake but giving the core up between polls: a sleeping builder must be
                // woken by the body, a system call on the importer's thread per input.
                std::thread::yield_now();
            } else {
                // Announce the sleep, then look once more: a push or close after this sees
                // `parked` and wakes the thread (an unpark before the park is kept).
                self.parked.store(true, Ordering::SeqCst);
                if self.queued.load(Ordering::SeqCst) == 0 && !self.closed.load(Ordering::SeqCst) {
                    std::thread::park_timeout(std::time::Duration::from_millis(10));
                }
                self.parked.store(false, Ordering::SeqCst);
            }
        }
    }
}

/// Closes a [`Feed`] when dropped.
struct Closing<'a>(&'a Feed);

impl Drop for Closing<'_> {
    fn drop(&mut self) {
        self.0.helped();
    }
}

#[cfg(test)]
mod tests {
    use alloy::primitives::{Address, B256, Bytes, LogData, logs_bloom};

    use super::*;
    use crate::{TxOutcome, TxStatus, reference::receipts};

    fn outcome(i: usize) -> TxOutcome {
        // Some receipts long enough to be hashed as they are encoded (`STREAM_FROM`).
        let count = if i % 61 == 7 { 20 + i % 50 } else { i % 4 };
        let logs = (0..count)
            .map(|j| Log {
                address: Address::repeat_byte((i + j) as u8),
                data: LogData::new_unchecked(
                    vec![B256::repeat_byte(j as u8); j % 4],
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
            .enumerate()
            .map(|(i, (o, ty))| ReceiptInput {
                ty: *ty,
                success: o.status.is_success(),
                gas_used: o.gas_used,
                logs: o.logs.clone(),
                // Half of them with the bloom given, as a read-set hit gives it.
                logs_bloom: (i % 2 == 0).then(|| Box::new(logs_bloom(&o.logs))),
            })
            .collect()
    }

    /// Every length across the trie's key-order boundaries (0, 1, 127, 128, 129, 256), inline
    /// and threaded: the same receipts, root, bloom and gas as the block-at-once builder.
    #[test]
    fn streamed_receipts_are_the_block_at_once_receipts() {
        let lengths = (0..=40).chain([63, 64, 65, 126, 127, 128, 129, 130, 255, 256, 257, 300, 1_000, 1_425, 4_097]);
        for len in lengths {
            let outcomes: Vec<TxOutcome> = (0..len).map(outcome).collect();
            let types: Vec<u8> = (0..len).map(|i| (i % 3) as u8).collect();
            let expected = receipts(&outcomes, &types);
            let (count, streamed) = build_while(
                len,
                |logs: &[Log]| logs_bloom(logs),
                None,
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

    thread_local! {
        /// Receipts this thread built for its builder ([`Feed::help`]).
        pub(super) static HELPED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    #[test]
    fn positions_invert_the_key_order() {
        for len in 1..=300 {
            for position in 0..len {
                let index = adjust_index_for_rlp(position, len);
                assert_eq!(position_of(index, len), position, "{len} txs, index {index}");
            }
        }
    }

    /// A block done long before its receipts (its builder slowed down by a slow bloom): the
    /// block's thread builds the last of them, and they are the block-at-once receipts, on
    /// lengths across the key-order boundaries.
    #[test]
    fn the_blocks_thread_builds_the_last_receipts_when_it_is_done_first() {
        let mut helped = 0;
        for len in [32, 33, 127, 128, 129, 130, 300] {
            let outcomes: Vec<TxOutcome> = (0..len).map(outcome).collect();
            let types: Vec<u8> = (0..len).map(|i| (i % 3) as u8).collect();
            let expected = receipts(&outcomes, &types);
            let slow_bloom = |logs: &[Log]| {
                std::thread::sleep(std::time::Duration::from_millis(1));
                logs_bloom(logs)
            };
            let before = HELPED.with(|h| h.get());
            let (_, built) =
                build_while(len, slow_bloom, None, |sink| inputs(&outcomes, &types).into_iter().for_each(&mut *sink));
            helped += HELPED.with(|h| h.get()) - before;
            let built = built.expect("all pushed");
            assert_eq!(built.receipts_root, expected.receipts_root, "root, {len} txs");
            assert_eq!(built.receipts, expected.receipts, "receipts, {len} txs");
            assert_eq!(built.logs_bloom, expected.logs_bloom, "bloom, {len} txs");
            assert_eq!(built.gas_used, expected.gas_used, "gas, {len} txs");
        }
        assert!(helped > 0, "the block's thread built none of the receipts");
    }

    /// A prepared receipt out of order leaves the block without receipts.
    #[test]
    fn a_prepared_receipt_out_of_order_breaks_the_block() {
        let len = 4;
        let outcomes: Vec<TxOutcome> = (0..len).map(outcome).collect();
        let types = vec![2u8; len];
        let mut all = inputs(&outcomes, &types).into_iter();
        let mut builder = ReceiptBuilder::new(len, |logs: &[Log]| logs_bloom(logs));
        builder.push(all.next().expect("four"));
        let mut prepared = Vec::new();
        let skipped = all.nth(1).expect("four");
        let item = Item { index: 2, cumulative_gas_used: skipped.gas_used, input: skipped };
        prepare(vec![item], len, &|logs: &[Log]| logs_bloom(logs), &mut Scratch::default(), &mut prepared);
        builder.push_prepared(prepared.pop().expect("one"));
        builder.push(all.next().expect("four"));
        assert!(builder.finish().is_none());
    }

    /// The scheme the builder relies on, for any values: a trie of `rlp(index)` keys built
    /// from leaves hashed ahead (`add_branch` at [`hanging_at`]) where their node is 32 bytes
    /// or more, and from plain leaves where it is shorter (the builder's fallback, which no
    /// receipt reaches), mixed in key order, has the root of the same trie built leaf by leaf.
    #[test]
    fn leaves_hashed_ahead_give_the_trie_of_plain_leaves() {
        for len in [2, 3, 16, 17, 127, 128, 129, 300] {
            // Short and long values mixed (short ones give nodes under 32 bytes).
            let value = |index: usize| vec![index as u8; if index.is_multiple_of(3) { 4 } else { 120 }];
            let (mut plain, mut ahead) = (HashBuilder::default(), HashBuilder::default());
            for position in 0..len {
                let index = adjust_index_for_rlp(position, len);
                let key = key_of(index);
                plain.add_leaf(key, &value(index));
                let at = hanging_at(&key, position, len);
                let mut node = Vec::new();
                LeafNodeRef::new(&key.slice(at..), &value(index)).encode(&mut node);
                if node.len() < 32 {
                    ahead.add_leaf(key, &value(index));
                } else {
                    ahead.add_branch(key.slice(..at), alloy::primitives::keccak256(&node), false);
                }
            }
            assert_eq!(ahead.root(), plain.root(), "{len} leaves");
        }
    }

    /// Side work runs on the builder's thread while the body runs, before the receipts
    /// waiting, until it says it has nothing left; it is never called again after that, nor
    /// after `build_while` returns or unwinds from a panicking body.
    #[test]
    fn side_work_runs_beside_the_receipts_and_has_ended_on_return() {
        use std::sync::atomic::AtomicBool;
        // Blooms the builder computed (half the inputs come without theirs): receipts built.
        static BLOOMS: AtomicUsize = AtomicUsize::new(0);
        let len = 40;
        let outcomes: Vec<TxOutcome> = (0..len).map(outcome).collect();
        let types = vec![2u8; len];
        let expected = receipts(&outcomes, &types);
        let (calls, late) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let mut side = || {
            if BLOOMS.load(Ordering::SeqCst) > 0 {
                late.fetch_add(1, Ordering::SeqCst);
            }
            calls.fetch_add(1, Ordering::SeqCst) + 1 < 5
        };
        let (_, built) = build_while(
            len,
            |logs: &[Log]| {
                BLOOMS.fetch_add(1, Ordering::SeqCst);
                logs_bloom(logs)
            },
            Some(&mut side),
            |sink| {
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
                for input in inputs(&outcomes, &types) {
                    sink(input);
                }
                // Every input is waiting: the builder runs the side work first, until it has
                // nothing left.
                while calls.load(Ordering::SeqCst) < 5 && std::time::Instant::now() < deadline {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
            },
        );
        assert_eq!(built.expect("all pushed").receipts_root, expected.receipts_root);
        assert_eq!(calls.load(Ordering::SeqCst), 5, "called until it returned false, then never");
        assert_eq!(late.load(Ordering::SeqCst), 0, "no receipt was built before the side work was done");
        assert!(BLOOMS.load(Ordering::SeqCst) > 0, "the receipts were built after it");

        let (running, after) = (AtomicBool::new(false), AtomicUsize::new(0));
        let mut slow = || {
            running.store(true, Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(2));
            after.fetch_add(1, Ordering::SeqCst);
            running.store(false, Ordering::SeqCst);
            true
        };
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            build_while(
                len,
                |logs: &[Log]| logs_bloom(logs),
                Some(&mut slow),
                |sink| {
                    inputs(&outcomes, &types).into_iter().take(7).for_each(&mut *sink);
                    std::thread::sleep(std::time::Duration::from_millis(10));
                    panic!("a transaction's import failed");
                },
            )
        }));
        assert!(panicked.is_err());
        assert!(!running.load(Ordering::SeqCst), "no side work runs after the unwind");
        let count = after.load(Ordering::SeqCst);
        assert!(count > 0, "the side work ran while the body slept");
        std::thread::sleep(std::time::Duration::from_millis(10));
        assert_eq!(after.load(Ordering::SeqCst), count, "and never again");
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
                None,
                |sink| all[..len - 1].iter().cloned().for_each(&mut *sink),
            );
            assert!(short.is_none(), "short, {len}");
            let (_, long) = build_while(
                len,
                |logs: &[Log]| logs_bloom(logs),
                None,
                |sink| all.iter().cloned().for_each(&mut *sink),
            );
            assert!(long.is_none(), "long, {len}");
        }
    }

    /// The builder sleeps through long gaps (a transaction revm runs) and is woken by the next
    /// input or by the end; a body that panics closes the feed, and the next block still gets
    /// its receipts from the long-lived worker.
    #[test]
    fn gaps_and_a_panicking_body_leave_the_receipts_whole() {
        let len = 40;
        let outcomes: Vec<TxOutcome> = (0..len).map(outcome).collect();
        let types = vec![2u8; len];
        let expected = receipts(&outcomes, &types);
        let (_, slow) = build_while(
            len,
            |logs: &[Log]| logs_bloom(logs),
            None,
            |sink| {
                for (i, input) in inputs(&outcomes, &types).into_iter().enumerate() {
                    if i % 13 == 0 {
                        std::thread::sleep(std::time::Duration::from_millis(3));
                    }
                    sink(input);
                }
                std::thread::sleep(std::time::Duration::from_millis(3));
            },
        );
        assert_eq!(slow.expect("all pushed").receipts_root, expected.receipts_root);
        let panicked = std::panic::catch_unwind(|| {
            build_while(
                len,
                |logs: &[Log]| logs_bloom(logs),
                None,
                |sink| {
                    inputs(&outcomes, &types).into_iter().take(7).for_each(&mut *sink);
                    panic!("a transaction's import failed");
                },
            )
        });
        assert!(panicked.is_err());
        let (_, after) = build_while(
            len,
            |logs: &[Log]| logs_bloom(logs),
            None,
            |sink| inputs(&outcomes, &types).into_iter().for_each(&mut *sink),
        );
        assert_eq!(after.expect("all pushed").receipts_root, expected.receipts_root);
    }
}
