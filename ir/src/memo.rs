//! The table behind the segment memos (precompile results, hashes of long inputs).
//!
//! Results are keyed by a key and a **whole input**: a keyed fast hash (one random seed per
//! process) picks a bucket, and the bucket compares the input byte for byte, so a result is
//! never returned for another input. A bucket holds at most [`BUCKET`] entries, so inputs
//! crafted to share one cost a bounded scan. The memory held is accounted (inputs, outputs
//! and a per-entry overhead); beyond the budget the least recently used half is evicted.

use std::{
    collections::HashMap,
    hash::{BuildHasher, Hash},
    sync::{
        LazyLock, Mutex, MutexGuard,
        atomic::{AtomicBool, Ordering},
    },
};

use alloy::primitives::{Bytes, map::DefaultHashBuilder};

/// Entries one bucket holds; more inputs with one bucket hash are not held.
pub const BUCKET: usize = 4;

/// Bytes an entry costs beyond its input and output.
const ENTRY_OVERHEAD: usize = 128;

/// A bounded table of results by key and whole input (see the module docs).
#[derive(Debug)]
pub struct MemoTable<K> {
    inner: Mutex<Inner<K>>,
    max_bytes: usize,
    /// Answers lookups but holds nothing new (see [`MemoTable::freeze`]).
    frozen: AtomicBool,
}

#[derive(Debug)]
struct Inner<K> {
    buckets: HashMap<u64, Vec<Entry<K>>>,
    entries: usize,
    bytes: usize,
    clock: u64,
    hits: u64,
    misses: u64,
}

#[derive(Debug)]
struct Entry<K> {
    key: K,
    input: Bytes,
    output: Bytes,
    used: u64,
}

impl<K> Entry<K> {
    fn size(&self) -> usize {
        self.input.len() + self.output.len() + ENTRY_OVERHEAD
    }
}

/// What a memo holds and has done.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoStats {
    /// Entries held.
    pub entries: usize,
    /// Bytes held (inputs, outputs and per-entry overhead).
    pub bytes: usize,
    /// Lookups answered.
    pub hits: u64,
    /// Lookups not answered.
    pub misses: u64,
}

static SEED: LazyLock<DefaultHashBuilder> = LazyLock::new(DefaultHashBuilder::default);

fn bucket_of<K: Hash>(key: &K, input: &[u8]) -> u64 {
    SEED.hash_one((key, input))
}

impl<K: Hash + Eq + Copy> MemoTable<K> {
    /// A table holding at most `max_bytes`.
    pub fn new(max_bytes: usize) -> Self {
        let inner = Inner { buckets: HashMap::new(), entries: 0, bytes: 0, clock: 0, hits: 0, misses: 0 };
        Self { inner: Mutex::new(inner), max_bytes, frozen: AtomicBool::new(false) }
    }

    /// With `frozen`, the table still answers what it holds but holds nothing new: an
    /// evaluation that measures a block's import must not learn from that block.
    pub fn freeze(&self, frozen: bool) {
        self.frozen.store(frozen, Ordering::Relaxed);
    }

    fn lock(&self) -> MutexGuard<'_, Inner<K>> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The result of `key` on `input`, when held.
    pub fn get(&self, key: &K, input: &[u8]) -> Option<Bytes> {
        let hash = bucket_of(key, input);
        let mut inner = self.lock();
        inner.clock += 1;
        let clock = inner.clock;
        let found = inner.buckets.get_mut(&hash).and_then(|bucket| {
            bucket.iter_mut().find(|e| e.key == *key && e.input[..] == *input).map(|e| {
                e.used = clock;
                e.output.clone()
            })
        });
        if found.is_some() {
            inner.hits += 1;
        } else {
            inner.misses += 1;
        }
        found
    }

    /// Holds `output` as the result of `key` on `input`, evicting the least recently used
    /// entries beyond the budget. An entry larger than a quarter of the budget, or a full
    /// bucket, is not held.
    pub fn insert(&self, key: K, input: &[u8], output: Bytes) {
        if self.frozen.load(Ordering::Relaxed) {
            return;
        }
        let entry = Entry { key, input: Bytes::copy_from_slice(input), output, used: 0 };
        let size = entry.size();
        if size > self.max_bytes / 4 {
            return;
        }
        let hash = bucket_of(&key, input);
        let mut inner = self.lock();
        inner.clock += 1;
        let used = inner.clock;
        let bucket = inner.buckets.entry(hash).or_default();
        if bucket.len() >= BUCKET || bucket.iter().any(|e| e.key == key && e.input[..] == *input) {
            return;
        }
        bucket.push(Entry { used, ..entry });
        inner.entries += 1;
        inner.bytes += size;
        if inner.bytes > self.max_bytes {
            // Evict the older half: amortised O(1) per insert, no ordered structure to keep.
            let mut ages: Vec<u64> = inner.buckets.values().flatten().map(|e| e.used).collect();
            ages.sort_unstable();
            let cut = ages[ages.len() / 2];
            let (mut freed, mut dropped) = (0, 0);
            for bucket in inner.buckets.values_mut() {
                bucket.retain(|e| {
                    let keep = e.used > cut;
                    if !keep {
                        freed += e.size();
                        dropped += 1;
                    }
                    keep
                });
            }
            inner.buckets.retain(|_, b| !b.is_empty());
            inner.bytes -= freed;
            inner.entries -= dropped;
        }
    }

    /// What it holds and has done.
    pub fn stats(&self) -> MemoStats {
        let inner = self.lock();
        MemoStats { entries: inner.entries, bytes: inner.bytes, hits: inner.hits, misses: inner.misses }
    }
}
