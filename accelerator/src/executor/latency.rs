//! A state backend that reads like a disk-backed node: each account, slot or code read the
//! backend has not served before costs a configurable latency; a repeated read is free (the
//! node's page cache). The import's state (`CacheDB`) sits on top of it, as it sits on top of
//! a node's database.
//!
//! The latency is spent spinning, so the thread is busy for it. A real disk read leaves the
//! core to another thread; spinning is the conservative model for a parallel executor (it can
//! hide no more reads than it has threads).

use std::{
    collections::HashSet,
    sync::Mutex,
    time::{Duration, Instant},
};

use revm::{
    DatabaseRef,
    primitives::{Address, B256, StorageKey, StorageValue},
    state::{AccountInfo, Bytecode},
};

/// What was read, for the cold/warm distinction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Key {
    Account(Address),
    Slot(Address, StorageKey),
    Code(B256),
}

/// `inner` with a latency on every cold read (see the module docs).
#[derive(Debug)]
pub struct LatencyDb<D> {
    inner: D,
    latency: Duration,
    seen: Mutex<HashSet<Key>>,
    cold_reads: std::sync::atomic::AtomicU64,
}

impl<D> LatencyDb<D> {
    /// `inner` whose cold reads cost `latency` each.
    pub fn new(inner: D, latency: Duration) -> Self {
        Self { inner, latency, seen: Mutex::new(HashSet::new()), cold_reads: Default::default() }
    }

    /// How many reads paid the latency.
    pub fn cold_reads(&self) -> u64 {
        self.cold_reads.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn pay(&self, key: Key) {
        if self.latency.is_zero() {
            return;
        }
        let cold = self.seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(key);
        if cold {
            self.cold_reads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let started = Instant::now();
            while started.elapsed() < self.latency {
                std::hint::spin_loop();
            }
        }
    }
}

impl<D: DatabaseRef> DatabaseRef for LatencyDb<D> {
    type Error = D::Error;

    fn basic_ref(&self, address: Address) -> Result<Option<AccountInfo>, Self::Error> {
        self.pay(Key::Account(address));
        self.inner.basic_ref(address)
    }

    fn code_by_hash_ref(&self, code_hash: B256) -> Result<Bytecode, Self::Error> {
        self.pay(Key::Code(code_hash));
        self.inner.code_by_hash_ref(code_hash)
    }

    fn storage_ref(&self, address: Address, index: StorageKey) -> Result<StorageValue, Self::Error> {
        self.pay(Key::Slot(address, index));
        self.inner.storage_ref(address, index)
    }

    fn block_hash_ref(&self, number: u64) -> Result<B256, Self::Error> {
        self.inner.block_hash_ref(number)
    }
}
