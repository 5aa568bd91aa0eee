//! Receipt blooms from remembered hashes.
//!
//! A receipt's bloom sets three bits per log address and per topic, taken from the value's
//! keccak hash: a block of ten thousand logs hashes forty thousand values, most of them the
//! same few (an event signature, a popular token). Pre-execution sees the logs a transaction
//! will emit, so it can hash those values before the block exists: [`BloomMemo::learn`] keeps
//! each value's hash, and at import [`BloomMemo::logs_bloom`] looks them up, hashing only
//! values it has not seen. Import only reads the memo: what it holds at a block's import
//! came from pre-executions, never from the block itself. The result is the bloom
//! `alloy::primitives::logs_bloom` computes, bit for bit (see the tests).

use std::sync::{LazyLock, Mutex, MutexGuard};

use alloy::primitives::{
    Address, B256, Bloom, Log, keccak256,
    map::{AddressMap, B256Map},
};

/// Hashes of log addresses and topics, bounded.
#[derive(Debug)]
pub struct BloomMemo {
    inner: Mutex<Inner>,
    max_entries: usize,
}

#[derive(Debug, Default)]
struct Inner {
    addresses: AddressMap<B256>,
    topics: B256Map<B256>,
}

/// The process's memo: pre-execution learns into it, import reads it.
pub static MEMO: LazyLock<BloomMemo> = LazyLock::new(|| BloomMemo::new(1 << 18));

impl BloomMemo {
    /// A memo holding at most `max_entries` hashes (about 90 bytes each); when full it is
    /// emptied and refills from later pre-executions.
    pub fn new(max_entries: usize) -> Self {
        Self { inner: Mutex::new(Inner::default()), max_entries }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Remembers the hashes of `logs`' addresses and topics.
    pub fn learn(&self, logs: &[Log]) {
        let mut inner = self.lock();
        for log in logs {
            if inner.addresses.len() + inner.topics.len() >= self.max_entries {
                *inner = Inner::default();
            }
            inner.addresses.entry(log.address).or_insert_with(|| keccak256(log.address));
            for topic in log.topics() {
                inner.topics.entry(*topic).or_insert_with(|| keccak256(topic));
            }
        }
    }

    /// The bloom of `logs`, from remembered hashes where it has them.
    pub fn logs_bloom(&self, logs: &[Log]) -> Bloom {
        let mut bloom = Bloom::ZERO;
        if logs.is_empty() {
            return bloom;
        }
        let inner = self.lock();
        let address = |a: &Address| inner.addresses.get(a).copied().unwrap_or_else(|| keccak256(a));
        let topic = |t: &B256| inner.topics.get(t).copied().unwrap_or_else(|| keccak256(t));
        for log in logs {
            bloom.m3_2048_hashed(&address(&log.address));
            for t in log.topics() {
                bloom.m3_2048_hashed(&topic(t));
            }
        }
        bloom
    }

    /// Hashes held.
    pub fn len(&self) -> usize {
        let inner = self.lock();
        inner.addresses.len() + inner.topics.len()
    }

    /// Whether no hash is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use alloy::primitives::{Bytes, LogData, logs_bloom};

    use super::*;

    fn log(seed: u8, topics: usize) -> Log {
        let topics = (0..topics as u8).map(|i| B256::repeat_byte(seed.wrapping_mul(7).wrapping_add(i))).collect();
        Log { address: Address::repeat_byte(seed), data: LogData::new_unchecked(topics, Bytes::new()) }
    }

    #[test]
    fn the_bloom_is_alloys_whatever_the_memo_holds() {
        let logs: Vec<Log> = (0..40u8).map(|i| log(i, (i % 5) as usize)).collect();
        let memo = BloomMemo::new(16);
        assert_eq!(memo.logs_bloom(&logs), logs_bloom(&logs), "nothing learned");
        memo.learn(&logs[..10]);
        assert!(!memo.is_empty());
        assert_eq!(memo.logs_bloom(&logs), logs_bloom(&logs), "some learned");
        memo.learn(&logs);
        assert!(memo.len() <= 16 + 5, "bounded: {}", memo.len());
        assert_eq!(memo.logs_bloom(&logs), logs_bloom(&logs), "emptied and refilled");
        assert_eq!(memo.logs_bloom(&[]), Bloom::ZERO);
    }
}
