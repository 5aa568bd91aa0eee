//! The AP store: accelerated programs by transaction hash, bounded in memory.
//!
//! Each transaction keeps up to `max_per_tx` distinct programs (one per predicted future
//! that produced a different path), and the **accelerated program** built from them: the
//! programs merged into one tree and compiled for the compact evaluator
//! ([`ir::compact::Compiled::merge`]), rebuilt when a program arrives, so that import finds
//! it ready. The store as a whole keeps at most `max_bytes` (programs and compiled forms),
//! evicting the least recently used transaction first. Programs are keyed by the
//! transaction hash, which binds every field of the signed transaction (and so the sender):
//! a program's constants are that transaction's fields.

use std::sync::{Arc, Mutex, MutexGuard};

use ir::{
    compact::Compiled,
    program::{Imm, Inst, Program},
};
use lru::LruCache;
use revm::primitives::B256;

/// Approximate heap size of a program, for the memory budget.
pub fn program_bytes(p: &Program) -> usize {
    let imm_bytes: usize = p
        .insts
        .iter()
        .map(|i| {
            i.args.capacity() * size_of::<ir::program::Value>()
                + match &i.imm {
                    Imm::Bytes(b) => b.len(),
                    _ => 0,
                }
        })
        .sum();
    size_of::<Program>() + p.insts.capacity() * size_of::<Inst>() + imm_bytes
}

/// What import runs for one transaction: its programs, and their merged compiled form
/// (`None` only if compiling failed, a bug: the programs are then interpreted one by one).
#[derive(Debug)]
pub struct Accelerated {
    /// The programs, oldest future first.
    pub programs: Vec<Arc<Program>>,
    /// The programs merged and compiled, newest first (a hit's program index `i` in the tree
    /// is `programs[programs.len() - 1 - i]`).
    pub compiled: Option<Compiled>,
}

impl Accelerated {
    /// Merges and compiles `programs` (oldest future first). The tree tries the newest
    /// future first: it was predicted with the most information.
    pub fn new(programs: Vec<Arc<Program>>) -> Self {
        let refs: Vec<&Program> = programs.iter().rev().map(|p| &**p).collect();
        let compiled = match Compiled::merge(&refs) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(%e, "a program does not compile; it will be interpreted");
                metrics::counter!(crate::metrics::COMPILE_FAILURES).increment(1);
                None
            }
        };
        Self { programs, compiled }
    }

    /// Approximate heap size.
    pub fn bytes(&self) -> usize {
        self.programs.iter().map(|p| program_bytes(p)).sum::<usize>()
            + self.compiled.as_ref().map_or(0, Compiled::heap_bytes)
    }
}

struct Entry {
    accelerated: Arc<Accelerated>,
    bytes: usize,
}

struct Inner {
    entries: LruCache<B256, Entry>,
    bytes: usize,
    programs: usize,
}

/// Accelerated programs by transaction hash.
pub struct ApStore {
    inner: Mutex<Inner>,
    max_bytes: usize,
    max_per_tx: usize,
}

impl std::fmt::Debug for ApStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (txs, programs, bytes) = self.stats();
        f.debug_struct("ApStore").field("txs", &txs).field("programs", &programs).field("bytes", &bytes).finish()
    }
}

impl ApStore {
    /// A store holding at most `max_bytes` of programs, `max_per_tx` per transaction.
    pub fn new(max_bytes: usize, max_per_tx: usize) -> Self {
        Self {
            inner: Mutex::new(Inner { entries: LruCache::unbounded(), bytes: 0, programs: 0 }),
            max_bytes,
            max_per_tx: max_per_tx.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds a program for `hash` and rebuilds its accelerated program. Returns false when an
    /// equal program is already there, or when the program alone is larger than the whole
    /// budget.
    pub fn insert(&self, hash: B256, program: Program) -> bool {
        if program_bytes(&program) > self.max_bytes {
            return false;
        }
        let mut programs = match self.lock().entries.get(&hash) {
            Some(e) if e.accelerated.programs.iter().any(|p| **p == program) => return false,
            Some(e) => e.accelerated.programs.clone(),
            None => Vec::new(),
        };
        if programs.len() >= self.max_per_tx {
            // The oldest future is the least likely one now.
            programs.remove(0);
        }
        programs.push(Arc::new(program));
        // Merged and compiled outside the lock.
        let accelerated = Accelerated::new(programs);
        let bytes = accelerated.bytes();
        let count = accelerated.programs.len();
        let mut inner = self.lock();
        if let Some(old) = inner.entries.put(hash, Entry { accelerated: Arc::new(accelerated), bytes }) {
            inner.bytes -= old.bytes;
            inner.programs -= old.accelerated.programs.len();
        }
        inner.bytes += bytes;
        inner.programs += count;
        while inner.bytes > self.max_bytes {
            let Some((_, evicted)) = inner.entries.pop_lru() else { break };
            inner.bytes -= evicted.bytes;
            inner.programs -= evicted.accelerated.programs.len();
            metrics::counter!(crate::metrics::AP_EVICTIONS).increment(1);
        }
        self.publish(&inner);
        true
    }

    /// The programs of `hash`, most recent future last.
    pub fn get(&self, hash: &B256) -> Vec<Arc<Program>> {
        self.accelerated(hash).map(|a| a.programs.clone()).unwrap_or_default()
    }

    /// The accelerated program of `hash`.
    pub fn accelerated(&self, hash: &B256) -> Option<Arc<Accelerated>> {
        self.lock().entries.get(hash).map(|e| e.accelerated.clone())
    }

    /// Whether `hash` has a program.
    pub fn contains(&self, hash: &B256) -> bool {
        self.lock().entries.contains(hash)
    }

    /// Forgets the programs of `hash` (the transaction was included or dropped).
    pub fn remove(&self, hash: &B256) {
        let mut inner = self.lock();
        if let Some(e) = inner.entries.pop(hash) {
            inner.bytes -= e.bytes;
            inner.programs -= e.accelerated.programs.len();
        }
        self.publish(&inner);
    }

    /// Transactions, programs and bytes held.
    pub fn stats(&self) -> (usize, usize, usize) {
        let inner = self.lock();
        (inner.entries.len(), inner.programs, inner.bytes)
    }

    fn publish(&self, inner: &Inner) {
        metrics::gauge!(crate::metrics::AP_MEMORY_BYTES).set(inner.bytes as f64);
        metrics::gauge!(crate::metrics::AP_PROGRAMS).set(inner.programs as f64);
        metrics::gauge!(crate::metrics::AP_TXS).set(inner.entries.len() as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ir::ops::Op;
    use revm::primitives::U256;

    fn program(n: usize) -> Program {
        let insts = (0..n).map(|i| Inst { op: Op::Const, args: vec![], imm: Imm::Word(U256::from(i)) }).collect();
        Program { insts, ..Default::default() }
    }

    #[test]
    fn deduplicates_caps_per_tx_and_evicts_least_recent() {
        let one = program_bytes(&program(10));
        let store = ApStore::new(one * 3, 2);
        let (a, b) = (B256::with_last_byte(1), B256::with_last_byte(2));
        assert!(store.insert(a, program(10)));
        assert!(!store.insert(a, program(10)), "an equal program is not stored twice");
        let mut other = program(10);
        other.gas_used = 1;
        assert!(store.insert(a, other.clone()));
        let mut third = program(10);
        third.gas_used = 2;
        assert!(store.insert(a, third.clone()));
        assert_eq!(store.get(&a).len(), 2, "at most two per transaction, oldest dropped");
        assert_eq!(*store.get(&a)[0], other);
        assert!(store.insert(b, program(10)));
        let _touch = store.get(&a);
        let mut big = program(10);
        big.gas_used = 3;
        assert!(store.insert(b, big));
        // Four programs over a budget of three: the least recently used transaction goes.
        assert!(!store.contains(&a) || !store.contains(&b));
        let (_, programs, bytes) = store.stats();
        assert!(bytes <= one * 3 && programs <= 3);
    }

    #[test]
    fn refuses_a_program_larger_than_the_budget() {
        let store = ApStore::new(100, 4);
        assert!(!store.insert(B256::ZERO, program(1000)));
        assert_eq!(store.stats(), (0, 0, 0));
    }
}
