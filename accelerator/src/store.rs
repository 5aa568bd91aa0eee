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
    readset::ReadSet,
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

/// The most read sets kept per transaction: each failed check costs reads at import.
pub const MAX_READ_SETS: usize = 4;

/// What import runs for one transaction: the read sets of its pre-executions, its programs,
/// and their merged compiled form (`None` only if compiling failed, a bug: the programs are
/// then interpreted one by one).
#[derive(Debug)]
pub struct Accelerated {
    /// The programs, oldest future first.
    pub programs: Vec<Arc<Program>>,
    /// The programs merged and compiled, newest first (a hit's program index `i` in the tree
    /// is `programs[programs.len() - 1 - i]`).
    pub compiled: Option<Arc<Compiled>>,
    /// Read sets of pre-executions (the read-set memo, [`ir::readset`]), newest first; at
    /// most [`MAX_READ_SETS`].
    pub read_sets: Vec<ReadSetEntry>,
    /// The tree's native code, once the background compiler has built it
    /// ([`crate::tiering`]); shared by copies that hold the same tree.
    pub native: crate::tiering::NativeSlot,
}

impl Accelerated {
    /// Prefetches what running it reads first (its read sets' inline entries and its merged
    /// tree) in the four stages an import runs ahead of a transaction, furthest first; each
    /// reads only pointers the stage before brought into the caches (see
    /// [`ir::compact::Compiled::prefetch_own`]). (Prefetching native code too, up to 64 KiB
    /// of it, made no measurable difference to whole-block import, and was dropped.)
    ///
    /// Stage 4: this struct.
    pub fn prefetch_header(&self) {
        ir::compact::prefetch_value(self);
    }

    /// Stage 3: the merged tree's struct.
    pub fn prefetch_tree_header(&self) {
        if let Some(compiled) = &self.compiled {
            ir::compact::prefetch_value(&**compiled);
        }
    }

    /// Stage 2: the read sets' entries, and the tree's constants, byte strings and
    /// skeleton header.
    pub fn prefetch_own(&self) {
        ir::compact::prefetch_slice(&self.read_sets);
        if let Some(compiled) = &self.compiled {
            compiled.prefetch_own();
        }
    }

    /// Stage 1: the tree's skeleton.
    pub fn prefetch_skeleton(&self) {
        if let Some(compiled) = &self.compiled {
            compiled.prefetch_skeleton();
        }
    }
}

/// A read set of one of a transaction's programs.
#[derive(Clone, Debug)]
pub struct ReadSetEntry {
    /// The index in [`Accelerated::programs`] of the program it is a run of.
    pub program: usize,
    /// The fee recipient it needs, if one ([`ReadSet::recipient`]): kept beside it so that
    /// a read set of another recipient is skipped without touching its memory.
    pub recipient: Option<revm::primitives::Address>,
    /// Its first compared balance ([`ReadSet::probe`]), kept beside it for the same reason.
    pub probe: Option<(revm::primitives::Address, revm::primitives::U256)>,
    /// The read set.
    pub reads: Arc<ReadSet>,
}

impl ReadSetEntry {
    /// The entry of `reads`, a run of program `program`.
    pub fn new(program: usize, reads: Arc<ReadSet>) -> Self {
        Self { program, recipient: reads.recipient(), probe: reads.probe(), reads }
    }
}

impl Accelerated {
    /// Merges and compiles `programs` (oldest future first). The tree tries the newest
    /// future first: it was predicted with the most information.
    pub fn new(programs: Vec<Arc<Program>>) -> Self {
        let refs: Vec<&Program> = programs.iter().rev().map(|p| &**p).collect();
        let compiled = match Compiled::merge(&refs) {
            Ok(c) => Some(Arc::new(c)),
            Err(e) => {
                tracing::warn!(%e, "a program does not compile; it will be interpreted");
                metrics::counter!(crate::metrics::COMPILE_FAILURES).increment(1);
                None
            }
        };
        Self { programs, compiled, read_sets: Vec::new(), native: Default::default() }
    }

    /// Approximate heap size.
    pub fn bytes(&self) -> usize {
        self.programs.iter().map(|p| program_bytes(p)).sum::<usize>()
            + self.compiled.as_ref().map_or(0, |c| c.heap_bytes())
            + self.read_sets.iter().map(|e| e.reads.heap_bytes()).sum::<usize>()
    }

    /// Adds the read set of a run of `programs[program]` in front (newest first), dropping
    /// an equal one and the oldest past [`MAX_READ_SETS`].
    fn add_read_set(&mut self, program: usize, reads: ReadSet) {
        self.read_sets.retain(|e| *e.reads != reads);
        self.read_sets.insert(0, ReadSetEntry::new(program, Arc::new(reads)));
        self.read_sets.truncate(MAX_READ_SETS);
    }
}

/// A block's accelerated programs by position, each with the hash of the transaction it was
/// looked up for ([`ApStore::accelerated_all`]). A program carries its transaction's fields as
/// constants, so it is used only at the position of a transaction with that hash: a list
/// that does not line up with the block gives misses, never another transaction's outcome.
#[derive(Clone, Debug, Default)]
pub struct BlockPrograms {
    entries: Vec<(B256, Option<Arc<Accelerated>>)>,
}

impl BlockPrograms {
    /// Programs by position, each with its transaction's hash.
    pub fn new(entries: impl IntoIterator<Item = (B256, Option<Arc<Accelerated>>)>) -> Self {
        Self { entries: entries.into_iter().collect() }
    }

    /// The program at `index`, if it was looked up for the transaction `hash`.
    pub fn get(&self, index: usize, hash: &B256) -> Option<&Accelerated> {
        self.entries.get(index).filter(|(h, _)| h == hash).and_then(|(_, p)| p.as_deref())
    }

    /// Positions held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no position is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
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
    /// Compiles each new tree to native code in the background, when set.
    compiler: Option<crate::tiering::Compiler>,
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
            compiler: None,
        }
    }

    /// This store, with every new tree also compiled to native code by `compiler` (served
    /// by the evaluator until then).
    pub fn with_compiler(mut self, compiler: crate::tiering::Compiler) -> Self {
        self.compiler = Some(compiler);
        self
    }

    /// The background compiler, when there is one.
    pub fn compiler(&self) -> Option<&crate::tiering::Compiler> {
        self.compiler.as_ref()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds a program for `hash` with the read set of the run that recorded it, and rebuilds
    /// its accelerated program. Returns false when an equal program is already there (its
    /// read set is still added: another future, other inputs, the same path), or when the
    /// program alone is larger than the whole budget.
    pub fn insert(&self, hash: B256, program: Program, reads: Option<ReadSet>) -> bool {
        if program_bytes(&program) > self.max_bytes {
            return false;
        }
        let existing = self.lock().entries.get(&hash).map(|e| e.accelerated.clone());
        let (accelerated, stored) = match existing {
            Some(e) => match e.programs.iter().position(|p| **p == program) {
                Some(at) => {
                    let Some(reads) = reads else { return false };
                    let mut same = Accelerated {
                        programs: e.programs.clone(),
                        compiled: e.compiled.clone(),
                        read_sets: e.read_sets.clone(),
                        native: e.native.clone(),
                    };
                    same.add_read_set(at, reads);
                    (same, false)
                }
                None => (Self::with_program(Some(&e), program, reads, self.max_per_tx), true),
            },
            None => (Self::with_program(None, program, reads, self.max_per_tx), true),
        };
        let bytes = accelerated.bytes();
        let count = accelerated.programs.len();
        let accelerated = Arc::new(accelerated);
        if let Some(compiler) = &self.compiler {
            compiler.submit(&accelerated);
        }
        let mut inner = self.lock();
        if let Some(old) = inner.entries.put(hash, Entry { accelerated, bytes }) {
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
        stored
    }

    /// `old`'s programs (at most `max_per_tx - 1` of them, newest kept) and `program`, merged
    /// and compiled (outside the store's lock), with the read sets of the kept programs.
    fn with_program(
        old: Option<&Accelerated>,
        program: Program,
        reads: Option<ReadSet>,
        max_per_tx: usize,
    ) -> Accelerated {
        let mut programs = old.map(|e| e.programs.clone()).unwrap_or_default();
        // The oldest futures are the least likely ones now.
        let dropped = (programs.len() + 1).saturating_sub(max_per_tx);
        programs.drain(..dropped.min(programs.len()));
        programs.push(Arc::new(program));
        let mut accelerated = Accelerated::new(programs);
        accelerated.read_sets = old
            .map(|e| {
                e.read_sets
                    .iter()
                    .filter(|e| e.program >= dropped)
                    .map(|e| ReadSetEntry { program: e.program - dropped, ..e.clone() })
                    .collect()
            })
            .unwrap_or_default();
        if let Some(reads) = reads {
            accelerated.add_read_set(accelerated.programs.len() - 1, reads);
        }
        accelerated
    }

    /// The programs of `hash`, most recent future last.
    pub fn get(&self, hash: &B256) -> Vec<Arc<Program>> {
        self.accelerated(hash).map(|a| a.programs.clone()).unwrap_or_default()
    }

    /// The accelerated program of `hash`.
    pub fn accelerated(&self, hash: &B256) -> Option<Arc<Accelerated>> {
        self.lock().entries.get(hash).map(|e| e.accelerated.clone())
    }

    /// The accelerated programs of `hashes`, in order, under one lock (a block's lookup).
    pub fn accelerated_all<'h>(&self, hashes: impl Iterator<Item = &'h B256>) -> BlockPrograms {
        let inner = self.lock();
        BlockPrograms::new(hashes.map(|hash| (*hash, inner.entries.peek(hash).map(|e| e.accelerated.clone()))))
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
        assert!(store.insert(a, program(10), None));
        assert!(!store.insert(a, program(10), None), "an equal program is not stored twice");
        let mut other = program(10);
        other.gas_used = 1;
        assert!(store.insert(a, other.clone(), None));
        let mut third = program(10);
        third.gas_used = 2;
        assert!(store.insert(a, third.clone(), None));
        assert_eq!(store.get(&a).len(), 2, "at most two per transaction, oldest dropped");
        assert_eq!(*store.get(&a)[0], other);
        assert!(store.insert(b, program(10), None));
        let _touch = store.get(&a);
        let mut big = program(10);
        big.gas_used = 3;
        assert!(store.insert(b, big, None));
        // Four programs over a budget of three: the least recently used transaction goes.
        assert!(!store.contains(&a) || !store.contains(&b));
        let (_, programs, bytes) = store.stats();
        assert!(bytes <= one * 3 && programs <= 3);
    }

    /// A read set whose one read distinguishes it (its value is `tag`).
    fn read_set(p: &Program, tag: u64) -> ReadSet {
        let read = ir::readset::Read { op: Op::Timestamp, args: [U256::ZERO; 2], value: U256::from(tag), at: 0 };
        let outcome = ir::TxOutcome {
            status: ir::TxStatus::Revert,
            gas_used: 0,
            gas_refunded: 0,
            logs: Vec::new(),
            output: Default::default(),
            created_address: None,
            state: Default::default(),
        };
        ReadSet::new(p, vec![read], outcome)
    }

    #[test]
    fn read_sets_follow_their_programs() {
        let store = ApStore::new(1 << 20, 2);
        let hash = B256::with_last_byte(1);
        let (first, mut second, mut third) = (program(10), program(10), program(10));
        second.gas_used = 1;
        third.gas_used = 2;
        assert!(store.insert(hash, first.clone(), Some(read_set(&first, 1))));
        // An equal program from another future: no new program, its read set is added,
        // newest first; an equal read set is not kept twice.
        assert!(!store.insert(hash, first.clone(), Some(read_set(&first, 2))));
        assert!(!store.insert(hash, first.clone(), Some(read_set(&first, 2))));
        let a = store.accelerated(&hash).expect("stored");
        assert_eq!(a.programs.len(), 1);
        let tags: Vec<_> = a.read_sets.iter().map(|e| (e.program, e.reads.clone())).collect();
        assert_eq!(tags, vec![(0, Arc::new(read_set(&first, 2))), (0, Arc::new(read_set(&first, 1)))]);
        // A second program: its read set in front, pointing at it.
        assert!(store.insert(hash, second.clone(), Some(read_set(&second, 3))));
        let a = store.accelerated(&hash).expect("stored");
        assert_eq!(a.read_sets.iter().map(|e| e.program).collect::<Vec<_>>(), vec![1, 0, 0]);
        // A third drops the oldest program (two per transaction) and its read sets; the
        // others' indices follow their programs.
        assert!(store.insert(hash, third.clone(), Some(read_set(&third, 4))));
        let a = store.accelerated(&hash).expect("stored");
        assert_eq!(*a.programs[0], second);
        assert_eq!(*a.programs[1], third);
        let kept: Vec<_> = a.read_sets.iter().map(|e| (e.program, e.reads.clone())).collect();
        assert_eq!(kept, vec![(1, Arc::new(read_set(&third, 4))), (0, Arc::new(read_set(&second, 3)))]);
        // At most MAX_READ_SETS, newest kept.
        for tag in 10..20 {
            store.insert(hash, third.clone(), Some(read_set(&third, tag)));
        }
        let a = store.accelerated(&hash).expect("stored");
        assert_eq!(a.read_sets.len(), MAX_READ_SETS);
        assert_eq!(a.read_sets[0].reads, Arc::new(read_set(&third, 19)));
    }

    #[test]
    fn refuses_a_program_larger_than_the_budget() {
        let store = ApStore::new(100, 4);
        assert!(!store.insert(B256::ZERO, program(1000), None));
        assert_eq!(store.stats(), (0, 0, 0));
    }
}
