//! A segment memo for hashing long inputs.
//!
//! `keccak256` costs about seven cycles a byte. Contracts hash long byte strings again and
//! again (ABI-encoded structs and arrays, Merkle leaves, signed messages), and a program
//! hashes the same bytes at import that it hashed while pre-executing: the data a transaction
//! carries rarely depends on the future it runs in. [`KeccakMemo`] keeps the hash of every
//! input of at least [`MIN_LEN`] bytes the compact evaluator computed, keyed by the **whole
//! input** (a fast keyed hash picks a bucket; the bucket compares the input byte for byte), so
//! a later evaluation pays a hash an order of magnitude cheaper and a comparison instead.
//! Shorter inputs are hashed directly: one or two permutations cost less than a lookup.
//!
//! Bounded in bytes (inputs plus a per-entry overhead); when full it is emptied and refills.
//! A bucket holds a few entries at most, so inputs crafted to collide cost a bounded scan.

use std::{
    collections::HashMap,
    hash::BuildHasher,
    sync::{LazyLock, Mutex, MutexGuard},
};

use alloy::primitives::{B256, keccak256, map::DefaultHashBuilder};

/// Inputs shorter than this are hashed, not looked up.
pub const MIN_LEN: usize = 256;

/// Entries a bucket holds; more inputs with one bucket hash are hashed, not held.
const BUCKET: usize = 4;

/// Bytes an entry costs beyond its input.
const ENTRY_OVERHEAD: usize = 64;

/// Hashes of long inputs, bounded (see the module docs).
#[derive(Debug)]
pub struct KeccakMemo {
    inner: Mutex<Inner>,
    max_bytes: usize,
}

#[derive(Debug, Default)]
struct Inner {
    buckets: HashMap<u64, Vec<(Box<[u8]>, B256)>>,
    bytes: usize,
    entries: usize,
    hits: u64,
    misses: u64,
}

/// What a keccak memo holds and has done.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeccakStats {
    /// Inputs held.
    pub entries: usize,
    /// Bytes held (inputs and per-entry overhead).
    pub bytes: usize,
    /// Long inputs answered by the memo.
    pub hits: u64,
    /// Long inputs hashed (and then held).
    pub misses: u64,
}

/// One random seed per process: the bucket of an input cannot be predicted from outside.
static SEED: LazyLock<DefaultHashBuilder> = LazyLock::new(DefaultHashBuilder::default);

impl KeccakMemo {
    /// A memo holding at most `max_bytes`.
    pub fn new(max_bytes: usize) -> Self {
        Self { inner: Mutex::new(Inner::default()), max_bytes }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `keccak256(input)`: from the memo for a long input it holds, computed (and held)
    /// otherwise.
    pub fn hash(&self, input: &[u8]) -> B256 {
        if input.len() < MIN_LEN {
            return keccak256(input);
        }
        let bucket = SEED.hash_one(input);
        {
            let mut inner = self.lock();
            let found = inner.buckets.get(&bucket).and_then(|b| b.iter().find(|(held, _)| **held == *input)).map(|e| e.1);
            match found {
                Some(hash) => {
                    inner.hits += 1;
                    return hash;
                }
                None => inner.misses += 1,
            }
        }
        // Hashed without the lock held: another thread may hash the same input meanwhile.
        let hash = keccak256(input);
        let size = input.len() + ENTRY_OVERHEAD;
        if size > self.max_bytes / 4 {
            return hash;
        }
        let mut inner = self.lock();
        if inner.bytes + size > self.max_bytes {
            let (hits, misses) = (inner.hits, inner.misses);
            *inner = Inner { hits, misses, ..Inner::default() };
        }
        let entries = inner.buckets.entry(bucket).or_default();
        if entries.len() < BUCKET && !entries.iter().any(|(held, _)| **held == *input) {
            entries.push((input.into(), hash));
            inner.bytes += size;
            inner.entries += 1;
        }
        hash
    }

    /// What it holds and has done.
    pub fn stats(&self) -> KeccakStats {
        let inner = self.lock();
        KeccakStats { entries: inner.entries, bytes: inner.bytes, hits: inner.hits, misses: inner.misses }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(len: usize, seed: u8) -> Vec<u8> {
        (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
    }

    #[test]
    fn the_hash_is_keccak_whatever_the_memo_holds() {
        let memo = KeccakMemo::new(4096);
        for len in [0, 1, 32, MIN_LEN - 1, MIN_LEN, MIN_LEN + 1, 700] {
            for seed in 0..3 {
                let bytes = input(len, seed);
                assert_eq!(memo.hash(&bytes), keccak256(&bytes), "first, {len}");
                assert_eq!(memo.hash(&bytes), keccak256(&bytes), "again, {len}");
            }
        }
        let stats = memo.stats();
        assert!(stats.hits > 0, "long inputs seen twice are answered: {stats:?}");
        assert!(stats.bytes <= 4096, "bounded: {stats:?}");
    }

    /// Inputs that differ only in their last byte, or are a prefix of a held one, get their
    /// own hash: the memo compares whole inputs.
    #[test]
    fn near_inputs_are_not_confused() {
        let memo = KeccakMemo::new(1 << 20);
        let base = input(1000, 7);
        let mut last = base.clone();
        *last.last_mut().unwrap() ^= 1;
        let prefix = &base[..999];
        for bytes in [&base[..], &last[..], prefix, &base[..], &last[..], prefix] {
            assert_eq!(memo.hash(bytes), keccak256(bytes));
        }
        assert_eq!(memo.stats().entries, 3);
        assert_eq!(memo.stats().hits, 3);
    }

    #[test]
    fn inputs_beyond_the_budget_are_hashed_not_held() {
        let memo = KeccakMemo::new(1024);
        let big = input(900, 1);
        assert_eq!(memo.hash(&big), keccak256(&big));
        assert_eq!(memo.stats().entries, 0);
        for seed in 0..20 {
            let bytes = input(MIN_LEN, seed);
            assert_eq!(memo.hash(&bytes), keccak256(&bytes));
            assert!(memo.stats().bytes <= 1024);
        }
    }
}
