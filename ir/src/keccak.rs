//! A segment memo for hashing long inputs.
//!
//! `keccak256` costs a permutation per 136 bytes, about 200 ns even for the 64 bytes of a
//! mapping slot's key. Contracts hash the same bytes again and again (mapping slots of the
//! same holders, ABI-encoded structs, Merkle leaves, signed messages), and a program hashes at
//! import the bytes it hashed while pre-executing: the data a transaction carries rarely
//! depends on the future it runs in. [`KeccakMemo`] keeps the hash of every input of at least
//! [`MIN_LEN`] bytes the compact evaluator computed, keyed by the **whole input** (a fast
//! keyed hash picks a bucket; the bucket compares the input byte for byte), so a later
//! evaluation pays a lookup of a few tens of nanoseconds instead. Shorter inputs (a word)
//! are hashed directly.
//!
//! On the heaviest hit of the shared data (2,279 hashes, nearly all of 64 bytes), the memo
//! takes a block's evaluation from 26 to 18.5 µs per hit (`prescient bench hit`); with 256
//! bytes as the threshold it answered 10 inputs of that block and changed nothing.
//!
//! Bounded in bytes, least recently used evicted, inputs compared whole: [`crate::memo`].

use alloy::primitives::{B256, Bytes, keccak256};

use crate::memo::{MemoStats, MemoTable};

/// Inputs shorter than this are hashed, not looked up.
pub const MIN_LEN: usize = 64;

/// Hashes of long inputs, bounded (see the module docs).
#[derive(Debug)]
pub struct KeccakMemo {
    table: MemoTable<()>,
}

impl KeccakMemo {
    /// A memo holding at most `max_bytes`.
    pub fn new(max_bytes: usize) -> Self {
        Self { table: MemoTable::new(max_bytes) }
    }

    /// `keccak256(input)`: from the memo for a long input it holds, computed (and held)
    /// otherwise.
    pub fn hash(&self, input: &[u8]) -> B256 {
        if input.len() < MIN_LEN {
            return keccak256(input);
        }
        if let Some(held) = self.table.get(&(), input) {
            return B256::from_slice(&held);
        }
        let hash = keccak256(input);
        self.table.insert((), input, Bytes::copy_from_slice(hash.as_slice()));
        hash
    }

    /// Holds nothing new while `frozen` ([`MemoTable::freeze`]).
    pub fn freeze(&self, frozen: bool) {
        self.table.freeze(frozen);
    }

    /// What it holds and has done: hits and misses count long inputs only.
    pub fn stats(&self) -> MemoStats {
        self.table.stats()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A test input of `len` bytes, different for each `seed`.
    pub(crate) fn input(len: usize, seed: u8) -> Vec<u8> {
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
        last[999] ^= 1;
        let prefix = &base[..999];
        for bytes in [&base[..], &last[..], prefix, &base[..], &last[..], prefix] {
            assert_eq!(memo.hash(bytes), keccak256(bytes));
        }
        assert_eq!(memo.stats().entries, 3);
        assert_eq!(memo.stats().hits, 3);
    }

    /// A frozen memo answers what it holds and holds nothing new.
    #[test]
    fn a_frozen_memo_answers_but_does_not_learn() {
        let memo = KeccakMemo::new(1 << 20);
        let (held, new) = (input(300, 1), input(300, 2));
        memo.hash(&held);
        memo.freeze(true);
        assert_eq!(memo.hash(&held), keccak256(&held));
        assert_eq!(memo.hash(&new), keccak256(&new));
        assert_eq!(memo.hash(&new), keccak256(&new));
        let stats = memo.stats();
        assert_eq!((stats.entries, stats.hits), (1, 1), "{stats:?}");
        memo.freeze(false);
        memo.hash(&new);
        assert_eq!(memo.stats().entries, 2);
    }

    #[test]
    fn inputs_beyond_the_budget_are_hashed_not_held() {
        let memo = KeccakMemo::new(2048);
        let big = input(900, 1);
        assert_eq!(memo.hash(&big), keccak256(&big));
        assert_eq!(memo.stats().entries, 0);
        for seed in 0..20 {
            let bytes = input(MIN_LEN, seed);
            assert_eq!(memo.hash(&bytes), keccak256(&bytes));
            assert!(memo.stats().bytes <= 2048);
        }
    }
}
