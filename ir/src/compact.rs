//! The compact evaluator: the hot-path form of a program.
//!
//! The reference interpreter ([`crate::interp`]) is the IR's semantics, written for clarity:
//! it allocates an operand vector per instruction, clones byte strings, and keeps every
//! value as an enum. A hit must cost little more than reading its inputs and writing its
//! outputs, so import runs programs in this form instead:
//!
//! - **compiled once**, when the program enters the store: every operand is resolved to a
//!   register number, words and byte strings get separate register files, and constants are
//!   written into a register template (a constant costs nothing at evaluation);
//! - **words in a flat register file** (`[U256]`), byte strings as ranges of one byte arena;
//!   both live in a per-thread scratch reused across evaluations, so an evaluation allocates
//!   nothing per instruction (only the outcome it returns: its logs, output and state map);
//! - **state read only from memory**: loads go to the `DatabaseRef` the import hands in, which
//!   at import is a cache over the pre-state (the same as revm reads);
//! - **hashes of long inputs memoized** ([`crate::keccak`], carried by the precompile memo);
//! - **precompile results memoized** ([`PrecompileMemo`]): a call already run on the same
//!   input under the same rules (while pre-executing, or by an earlier hit) is a lookup.
//!
//! Every operation's meaning is still [`crate::semantics`]'s: word computations go through
//! [`fold_word`], loads through [`load_word`], context reads through [`context`], byte-string
//! operations through the same definitions as [`compute_val`]. The oracle runs this tier
//! beside the reference interpreter and revm on every test case.
//!
//! Compilation is total: a program the interpreter would call malformed (an operand of the
//! wrong type, defined later, a bad immediate) does not compile, and the caller serves it with
//! the interpreter, which misses on it.

use std::{
    cell::RefCell,
    hash::Hash,
    sync::{Arc, LazyLock, Mutex, Weak},
};

use revm::{
    context::{BlockEnv, CfgEnv},
    primitives::{Address, B256, Bytes, KECCAK_EMPTY, Log, LogData, U256, hardfork::SpecId, keccak256},
};

use crate::{
    backend::{AccountFieldsOf, AccountRead},
    interp::{Evaluation, FUEL, Miss, MissReason},
    keccak::KeccakMemo,
    memo::{MemoStats, MemoTable},
    ops::{AccountFlags, GuardKind, Imm, Op, OpKind, Ty},
    outcome::{Applied, Stored, TxOutcome, TxStatus},
    program::{Program, ProgramEnv, Value},
    readset::Read,
    semantics::{context, fold_word, load_word, run_precompile, word_to_address},
};

/// The pattern of every two-operand word computation, `Word2` and its specialized variants
/// (see `CInst::specialized`), binding its result and operands to the given names.
macro_rules! word2_variants {
    ($dst:ident, $a:ident, $b:ident) => {
        CInst::Word2 { dst: $dst, a: $a, b: $b, .. }
            | CInst::Add { dst: $dst, a: $a, b: $b }
            | CInst::Sub { dst: $dst, a: $a, b: $b }
            | CInst::Lt { dst: $dst, a: $a, b: $b }
            | CInst::Gt { dst: $dst, a: $a, b: $b }
            | CInst::Eq { dst: $dst, a: $a, b: $b }
            | CInst::And { dst: $dst, a: $a, b: $b }
    };
}

mod native;

pub use native::{
    HOST_ELEMENT, HOST_MARK, HOST_RECHECK, HOST_REWIND, HOST_RUN, HostCall, Lowered, MISS, NativeEntry, STEP_FATAL,
    STEP_MISS, STEP_OK, TreeNode,
};

/// A word register.
type W = u32;

/// An evaluation's result, its outcome written into the caller's [`Applied`]: which program
/// hit, or the miss.
type Applying = Result<usize, Miss>;

/// Marks a computed register while compiling (see [`Compiled::place_computed`]).
const COMPUTED: u32 = 1 << 31;
/// While compiling: the register of a guarded result that nothing but its guard reads (an
/// alias check's `eq`, by the thousand in an airdrop's program). Every such result goes to
/// this one register, placed after the computed ones: its writes hit one cache line, where
/// a register each spread them over megabytes of scratch.
const SINK: u32 = u32::MAX;
/// A byte-string register.
type B = u32;

/// One compiled instruction. Constants are not instructions: they live in the templates.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum CInst {
    Load {
        op: Op,
        dst: W,
        a: W,
        b: W,
        at: u32,
    },
    Ctx {
        op: Op,
        dst: W,
        at: u32,
    },
    Word1 {
        op: Op,
        dst: W,
        a: W,
    },
    Word2 {
        op: Op,
        dst: W,
        a: W,
        b: W,
    },
    Word3 {
        op: Op,
        dst: W,
        a: W,
        b: W,
        c: W,
    },
    Guard {
        a: W,
        expected: W,
        kind: GuardKind,
        at: u32,
    },
    /// A two-operand computation and the guard on its result right after it, in one dispatch
    /// (alias guards come as `eq` and `guard` pairs, by the thousand in an airdrop's program).
    Word2Guard {
        op: Op,
        dst: W,
        a: W,
        b: W,
        expected: W,
        kind: GuardKind,
        at: u32,
    },
    /// `Word2` of the commonest operations, one variant each, so that the evaluator
    /// dispatches once per instruction rather than again on its operation. Set by
    /// [`CInst::specialized`], the last step of compiling; what else reads the code sees them
    /// as `Word2` ([`CInst::word2`]).
    Add {
        dst: W,
        a: W,
        b: W,
    },
    Sub {
        dst: W,
        a: W,
        b: W,
    },
    Lt {
        dst: W,
        a: W,
        b: W,
    },
    Gt {
        dst: W,
        a: W,
        b: W,
    },
    Eq {
        dst: W,
        a: W,
        b: W,
    },
    And {
        dst: W,
        a: W,
        b: W,
    },
    /// `Word2Guard` of `eq` (alias guards) and `lt` (balance and bounds checks), likewise
    /// ([`CInst::word2_guard`]).
    EqGuard {
        dst: W,
        a: W,
        b: W,
        expected: W,
        kind: GuardKind,
        at: u32,
    },
    LtGuard {
        dst: W,
        a: W,
        b: W,
        expected: W,
        kind: GuardKind,
        at: u32,
    },
    /// A run of `eq` guards expecting 0 that share one operand `x`: `x` differs from each
    /// register of `runs[from..to]` (other operand, result register, guard position), checked
    /// in order, each result written. A symbolic address is guarded against every address
    /// touched before it: an airdrop's program holds thousands of these, in runs.
    NotIn {
        x: W,
        from: u32,
        to: u32,
        kind: GuardKind,
    },
    Concat {
        dst: B,
        from: u32,
        to: u32,
        at: u32,
    },
    Slice {
        dst: B,
        src: B,
        offset: u32,
        len: u32,
        at: u32,
    },
    ToBytes {
        dst: B,
        a: W,
        at: u32,
    },
    ToWord {
        dst: W,
        src: B,
        at: u32,
    },
    Keccak {
        dst: W,
        src: B,
    },
    Len {
        dst: W,
        src: B,
    },
    PCall {
        dst: B,
        src: B,
        precompile: u32,
        at: u32,
    },
    StoreAccount {
        a: W,
        balance: W,
        nonce: W,
        code_hash: W,
        flags: AccountFlags,
        at: u32,
    },
    StoreSlot {
        a: W,
        k: W,
        v: W,
        at: u32,
    },
    StoreCode {
        a: W,
        code: B,
        at: u32,
    },
    Log {
        a: W,
        data: B,
        from: u32,
        to: u32,
    },
    Output {
        b: B,
    },
    Created {
        a: W,
    },
}

impl CInst {
    /// A two-operand computation's operation, result and operands, specialized or not.
    fn word2(&self) -> Option<(Op, W, W, W)> {
        Some(match *self {
            CInst::Word2 { op, dst, a, b } => (op, dst, a, b),
            CInst::Add { dst, a, b } => (Op::Add, dst, a, b),
            CInst::Sub { dst, a, b } => (Op::Sub, dst, a, b),
            CInst::Lt { dst, a, b } => (Op::Lt, dst, a, b),
            CInst::Gt { dst, a, b } => (Op::Gt, dst, a, b),
            CInst::Eq { dst, a, b } => (Op::Eq, dst, a, b),
            CInst::And { dst, a, b } => (Op::And, dst, a, b),
            _ => return None,
        })
    }

    /// A fused computation and guard's operation, result, operands, expected register, kind
    /// and position, specialized or not.
    #[allow(clippy::type_complexity)]
    fn word2_guard(&self) -> Option<(Op, W, W, W, W, GuardKind, u32)> {
        Some(match *self {
            CInst::Word2Guard { op, dst, a, b, expected, kind, at } => (op, dst, a, b, expected, kind, at),
            CInst::EqGuard { dst, a, b, expected, kind, at } => (Op::Eq, dst, a, b, expected, kind, at),
            CInst::LtGuard { dst, a, b, expected, kind, at } => (Op::Lt, dst, a, b, expected, kind, at),
            _ => return None,
        })
    }

    /// This instruction in its specialized variant, when it has one (the same computation).
    fn specialized(&self) -> Option<CInst> {
        Some(match *self {
            CInst::Word2 { op: Op::Add, dst, a, b } => CInst::Add { dst, a, b },
            CInst::Word2 { op: Op::Sub, dst, a, b } => CInst::Sub { dst, a, b },
            CInst::Word2 { op: Op::Lt, dst, a, b } => CInst::Lt { dst, a, b },
            CInst::Word2 { op: Op::Gt, dst, a, b } => CInst::Gt { dst, a, b },
            CInst::Word2 { op: Op::Eq, dst, a, b } => CInst::Eq { dst, a, b },
            CInst::Word2 { op: Op::And, dst, a, b } => CInst::And { dst, a, b },
            CInst::Word2Guard { op: Op::Eq, dst, a, b, expected, kind, at } => {
                CInst::EqGuard { dst, a, b, expected, kind, at }
            }
            CInst::Word2Guard { op: Op::Lt, dst, a, b, expected, kind, at } => {
                CInst::LtGuard { dst, a, b, expected, kind, at }
            }
            _ => return None,
        })
    }
}

/// Why a program has no compact form (the interpreter serves it, and misses on it).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("instruction {at}: {message}")]
pub struct CompileError {
    /// Where.
    pub at: usize,
    /// What.
    pub message: String,
}

/// The programs of one transaction, merged and in compact form (see the module docs).
///
/// **Merging.** The programs recorded under a transaction's futures share their beginning
/// (the envelope checks, the loads and computation up to the first branch the futures took
/// differently). They are merged into one tree: a node is a run of instructions shared by
/// every program below it, and its children are where those programs part (usually at a
/// guard expecting another value). Evaluation walks the tree depth first: a node's
/// instructions run once whatever number of futures share them, and a failed guard moves on
/// to the next sibling with the registers computed so far, so a miss in one future costs
/// nothing already shared. A leaf is one program: reaching it is a hit with that program's
/// outcome; an outcome no program saw is a miss. Stores come after every guard of a program,
/// so by the time a store runs the walk has committed to one leaf; a later failure (the state
/// backend) is a miss of the whole evaluation, never a partial outcome.
#[derive(Clone, Debug)]
pub struct Compiled {
    /// The chain rules of the programs (merged programs share them).
    env: ProgramEnv,
    /// What depends only on the programs' shape (the tree and its instructions), shared by
    /// every compiled program of the same shape ([`Skeleton`]).
    skel: Arc<Skeleton>,
    /// The constant word registers (the first registers of an evaluation); computed
    /// registers follow them.
    words: Vec<U256>,
    /// Computed word registers: the deepest path's (sibling branches reuse the same ones).
    computed: u32,
    /// While compiling: the next computed register.
    computed_top: u32,
    /// Computed byte registers; they follow the constant ones (`ranges`).
    computed_bytes: u32,
    /// While compiling: the register of each constant word, so that equal constants (the
    /// merged programs share most of theirs; guards expect 0 and 1 again and again) take one
    /// register and the template an evaluation copies stays small.
    interned: std::collections::HashMap<U256, W>,
    /// The byte arena at the start: the constant byte strings.
    arena: Vec<u8>,
    /// Byte registers at the start: ranges of the arena (constants filled).
    ranges: Vec<(u32, u32)>,
    /// Instructions of the source programs, summed.
    source_len: usize,
}

/// The part of a compiled tree that depends only on its shape: nodes, instructions (register
/// numbers, not values), operand lists, leaves. Transactions of one kind (transfers, token
/// transfers through one contract) compile to the same skeleton with other constants, so it
/// is interned ([`Skeleton::intern`]): a block's thousand transfers run one copy of the
/// instructions, which stays in the caches, and each hit fetches only its own constants.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
struct Skeleton {
    nodes: Vec<Node>,
    /// Children of each node, as node indices (`Node::children` ranges into it).
    edges: Vec<u32>,
    leaves: Vec<Leaf>,
    code: Vec<CInst>,
    /// Operand lists of `concat` (byte registers) and `store.log` (topic word registers).
    lists: Vec<u32>,
    /// The elements of `NotIn` runs: the other operand, the result register, the guard's
    /// position.
    runs: Vec<(W, W, u32)>,
    /// Precompile immediates.
    precompiles: Vec<(Address, u64, SpecId)>,
}

/// Interned skeletons by content hash: weak, so a skeleton is freed with its last program.
static SKELETONS: LazyLock<Mutex<Interned>> = LazyLock::new(Default::default);

#[derive(Default)]
struct Interned {
    by_hash: std::collections::HashMap<u64, Vec<Weak<Skeleton>>>,
    /// Inserts since the last sweep of dead entries.
    inserts: usize,
}

impl Skeleton {
    /// The shared copy of `skeleton`: an equal live one when there is one, else `skeleton`
    /// itself, registered. Equality is structural, so a shared skeleton is exactly the one
    /// the program compiled to.
    fn intern(skeleton: Skeleton) -> Arc<Skeleton> {
        use std::hash::Hasher;
        let mut hasher = std::hash::DefaultHasher::new();
        skeleton.hash(&mut hasher);
        let hash = hasher.finish();
        let mut interned = SKELETONS.lock().unwrap_or_else(|e| e.into_inner());
        let bucket = interned.by_hash.entry(hash).or_default();
        bucket.retain(|w| w.strong_count() > 0);
        if let Some(shared) = bucket.iter().filter_map(Weak::upgrade).find(|held| **held == skeleton) {
            return shared;
        }
        let shared = Arc::new(skeleton);
        bucket.push(Arc::downgrade(&shared));
        interned.inserts += 1;
        // Sweep dead buckets once the map has had as many inserts as it holds: amortized
        // constant work per insert, and the map stays within twice the live skeletons.
        if interned.inserts > interned.by_hash.len().max(1024) {
            interned.by_hash.retain(|_, bucket| {
                bucket.retain(|w| w.strong_count() > 0);
                !bucket.is_empty()
            });
            interned.inserts = 0;
        }
        shared
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Node {
    code: (u32, u32),
    children: (u32, u32),
    leaf: Option<u32>,
}

/// Prefetches the cache lines of `s` (at most [`PREFETCH_BYTES`] of them), for reading.
pub fn prefetch_slice<T>(s: &[T]) {
    prefetch_bytes(s.as_ptr().cast(), std::mem::size_of_val(s));
}

/// Prefetches the cache lines of `value` itself (its address is all that is read), for
/// reading: the first stage of a chain of prefetches through pointers.
pub fn prefetch_value<T>(value: &T) {
    prefetch_slice(std::slice::from_ref(value));
}

/// Prefetches the lines of `bytes` bytes from `start` (at most [`PREFETCH_BYTES`]).
fn prefetch_bytes(start: *const u8, bytes: usize) {
    #[cfg(target_arch = "x86_64")]
    for offset in (0..bytes.min(PREFETCH_BYTES)).step_by(64) {
        // SAFETY: SSE is part of the x86_64 baseline, and a prefetch is a hint: it never
        // faults, whatever the address, and changes nothing the program observes.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                start.wrapping_add(offset).cast::<i8>(),
            );
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (start, bytes);
}

/// Most bytes [`prefetch_slice`] asks for from one slice: past this a program is large
/// enough that its evaluation hides the misses, and more would evict what the current
/// transaction uses. (16 KiB measured 2-3% slower whole-block import than 4 KiB: the
/// prefetch loop of a large program cost more than the misses it saved; 1 KiB was between.)
pub const PREFETCH_BYTES: usize = 4 << 10;

/// One merged program's constants of the path.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Leaf {
    program: u32,
    status: TxStatus,
    gas_used: u64,
    gas_refunded: u64,
}

/// A tree node before compilation: instructions `from..to` of `programs[0]` (shared by all).
struct Shape<'p> {
    program: &'p Program,
    from: usize,
    to: usize,
    leaf: Option<u32>,
    children: Vec<Shape<'p>>,
}

impl<'p> Shape<'p> {
    fn build(programs: Vec<(u32, &'p Program)>, from: usize) -> Self {
        let first = programs[0].1;
        let mut to = from;
        while programs.iter().all(|(_, p)| p.insts.len() > to && p.insts[to] == first.insts[to]) {
            to += 1;
        }
        // A program that ends here is complete: it hits whatever longer programs below it
        // would go on to check, so they are not reachable and are dropped.
        if let Some((index, _)) = programs.iter().find(|(_, p)| p.insts.len() == to) {
            return Shape { program: first, from, to, leaf: Some(*index), children: Vec::new() };
        }
        let mut groups: Vec<Vec<(u32, &'p Program)>> = Vec::new();
        for (i, p) in programs {
            match groups.iter_mut().find(|g| g[0].1.insts[to] == p.insts[to]) {
                Some(group) => group.push((i, p)),
                None => groups.push(vec![(i, p)]),
            }
        }
        let children = groups.into_iter().map(|g| Shape::build(g, to)).collect();
        Shape { program: first, from, to, leaf: None, children }
    }
}

/// Per-thread scratch reused by every evaluation: no allocation once warm.
#[derive(Default)]
struct Scratch {
    words: Vec<U256>,
    arena: Vec<u8>,
    ranges: Vec<(u32, u32)>,
    /// Accounts read by this evaluation.
    accounts: AccountCache,
}

/// Accounts read by one evaluation, each read from the state once: most programs read a
/// handful (a linear scan), some thousands (then through `index`). Keyed by the address
/// word as the program holds it (no conversion on a lookup); two words naming one address
/// (they differ above its 20 bytes) read the same state twice, with the same answer.
#[derive(Default)]
struct AccountCache {
    accounts: Vec<(U256, Fields)>,
    /// Positions in `accounts`, kept once it outgrows a scan.
    index: std::collections::HashMap<U256, usize>,
}

/// What account loads read of an account: its info without the code (cloning that is an
/// atomic increment, and no load needs it).
#[derive(Clone, Copy)]
struct Fields {
    balance: U256,
    code_hash: B256,
    nonce: u64,
    exists: bool,
}

impl Fields {
    fn of(fields: AccountFieldsOf) -> Self {
        match fields {
            Some((balance, nonce, code_hash)) => Fields { balance, code_hash, nonce, exists: true },
            None => Fields { balance: U256::ZERO, code_hash: KECCAK_EMPTY, nonce: 0, exists: false },
        }
    }

    /// What account load `op` reads (what [`crate::semantics::account_word`] reads of the info);
    /// `None` for other operations.
    #[inline(always)]
    fn word(&self, op: Op) -> Option<U256> {
        Some(match op {
            Op::Balance => self.balance,
            Op::Nonce => U256::from(self.nonce),
            Op::CodeHash => self.code_hash.into(),
            Op::Exists => bool_word(self.exists),
            _ => return None,
        })
    }
}

/// Accounts an evaluation scans before it indexes them.
const SCAN: usize = 16;

impl AccountCache {
    fn clear(&mut self) {
        self.accounts.clear();
        if !self.index.is_empty() {
            self.index.clear();
        }
    }

    /// The account at address word `word`, read from `db` the first time.
    #[inline]
    fn account<D: AccountRead>(&mut self, word: &U256, db: &D) -> Result<&Fields, D::Error> {
        let found = if self.accounts.len() <= SCAN {
            self.accounts.iter().position(|(held, _)| held == word)
        } else {
            self.index.get(word).copied()
        };
        let at = match found {
            Some(at) => at,
            None => self.read(word, db)?,
        };
        Ok(&self.accounts[at].1)
    }

    #[cold]
    #[inline(never)]
    fn read<D: AccountRead>(&mut self, word: &U256, db: &D) -> Result<usize, D::Error> {
        let fields = Fields::of(db.account_fields(word_to_address(*word))?);
        self.accounts.push((*word, fields));
        let at = self.accounts.len() - 1;
        if self.accounts.len() > SCAN {
            if self.index.is_empty() {
                self.index.extend(self.accounts.iter().enumerate().map(|(i, (a, _))| (*a, i)));
            } else {
                self.index.insert(*word, at);
            }
        }
        Ok(at)
    }
}

/// Per value index of `programs`, whether every program that has that value reads it once at
/// most (a guard on it, in [`Compiled::compile_node`]). Counted over all the programs, not
/// only those sharing the value's node: a program whose instruction at that index differs
/// only makes the answer more conservative.
fn only_guarded<'p>(programs: impl Iterator<Item = &'p Program> + Clone) -> Vec<bool> {
    let len = programs.clone().map(|p| p.insts.len()).max().unwrap_or(0);
    let mut uses = vec![0u8; len];
    for p in programs {
        let mut own = vec![0u8; p.insts.len()];
        for inst in &p.insts {
            for a in &inst.args {
                if let Some(u) = own.get_mut(a.index()) {
                    *u = u.saturating_add(1);
                }
            }
        }
        for (u, o) in uses.iter_mut().zip(own) {
            *u = (*u).max(o);
        }
    }
    uses.into_iter().map(|u| u <= 1).collect()
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Where a value of the source program lives.
#[derive(Clone, Copy, Debug)]
enum Reg {
    Word(W),
    Bytes(B),
    None,
}

impl Compiled {
    /// Compiles one program. Fails on anything the interpreter would call malformed.
    pub fn new(program: &Program) -> Result<Self, CompileError> {
        Self::merge(&[program])
    }

    /// Merges the programs of one transaction into one tree and compiles it. Programs under
    /// other chain rules than the first one's are left out (futures on both sides of a fork
    /// boundary; the caller keeps the first rules' programs). Fails on anything the
    /// interpreter would call malformed, and on no program at all.
    pub fn merge(programs: &[&Program]) -> Result<Self, CompileError> {
        let Some(first) = programs.first() else {
            return Err(CompileError { at: 0, message: "no program to merge".into() });
        };
        let mut c = Compiled {
            env: first.env,
            skel: Arc::default(),
            words: Vec::new(),
            computed: 0,
            computed_top: 0,
            computed_bytes: 0,
            interned: std::collections::HashMap::new(),
            arena: Vec::new(),
            ranges: Vec::new(),
            source_len: 0,
        };
        let mut kept = Vec::new();
        for (i, p) in programs.iter().enumerate() {
            if p.env != first.env {
                continue;
            }
            let Some(status) = p.status.clone() else {
                return Err(CompileError { at: 0, message: "no status".into() });
            };
            if p.insts.len() as u64 > FUEL {
                return Err(CompileError { at: 0, message: "longer than the fuel allows".into() });
            }
            c.source_len += p.insts.len();
            kept.push((i as u32, *p));
            c.k().leaves.push(Leaf { program: i as u32, status, gas_used: p.gas_used, gas_refunded: p.gas_refunded });
        }
        let only_guarded = only_guarded(kept.iter().map(|(_, p)| *p));
        let shape = Shape::build(kept, 0);
        let mut regs = Vec::new();
        c.compile_node(&shape, &mut regs, &only_guarded)?;
        c.place_computed();
        for inst in &mut c.k().code {
            if let Some(specialized) = inst.specialized() {
                *inst = specialized;
            }
        }
        c.interned = std::collections::HashMap::new();
        c.skel = Skeleton::intern(std::mem::take(c.k()));
        Ok(c)
    }

    /// The skeleton, to fill while compiling (it is shared only once compiled, so this
    /// never copies).
    fn k(&mut self) -> &mut Skeleton {
        Arc::make_mut(&mut self.skel)
    }

    /// Compiles `shape` (and below) as node number `self.skel.nodes.len()`; `regs` maps the
    /// source values before `shape.from` to registers.
    fn compile_node(
        &mut self,
        shape: &Shape<'_>,
        regs: &mut Vec<Reg>,
        only_guarded: &[bool],
    ) -> Result<u32, CompileError> {
        let index = self.skel.nodes.len() as u32;
        self.k().nodes.push(Node { code: (0, 0), children: (0, 0), leaf: None });
        regs.truncate(shape.from);
        let code_from = self.skel.code.len() as u32;
        for i in shape.from..shape.to {
            let inst = &shape.program.insts[i];
            let reg = self.compile_inst(inst, i, regs)?;
            regs.push(reg);
            // A guard on a value nothing else reads: its computation writes the sink.
            let sink = match inst.args.as_slice() {
                [guarded] if inst.op == Op::Guard && only_guarded.get(guarded.index()) == Some(&true) => {
                    Some(guarded.index())
                }
                _ => None,
            };
            if self.fuse_guard(code_from as usize, sink.is_some())
                && let Some(v) = sink
            {
                regs[v] = Reg::None;
            }
        }
        let code_to = self.skel.code.len() as u32;
        let leaf =
            shape.leaf.map(|program| self.skel.leaves.iter().position(|l| l.program == program).unwrap_or(0) as u32);
        let mut children = Vec::with_capacity(shape.children.len());
        // Siblings exclude each other: each starts from this node's computed registers.
        let top = self.computed_top;
        for child in &shape.children {
            self.computed_top = top;
            children.push(self.compile_node(child, regs, only_guarded)?);
        }
        let from = self.skel.edges.len() as u32;
        self.k().edges.extend(children);
        self.k().nodes[index as usize] =
            Node { code: (code_from, code_to), children: (from, self.skel.edges.len() as u32), leaf };
        Ok(index)
    }

    /// Fuses the last two instructions (both at or after `from`, in one node) when they are a
    /// two-operand computation and a guard on its result; with `sink` (nothing but the guard
    /// reads the result) the result goes to [`SINK`] and its register is freed. Whether it
    /// fused.
    fn fuse_guard(&mut self, from: usize, sink: bool) -> bool {
        let n = self.skel.code.len();
        if n < from + 2 {
            return false;
        }
        let [CInst::Word2 { op, mut dst, a, b }, CInst::Guard { a: guarded, expected, kind, at }] =
            self.skel.code[n - 2..]
        else {
            return false;
        };
        if guarded != dst {
            return false;
        }
        if sink {
            if self.computed_top.checked_sub(1).is_some_and(|top| dst == COMPUTED | top) {
                self.computed_top -= 1;
            }
            dst = SINK;
        }
        self.k().code.truncate(n - 2);
        self.k().code.push(CInst::Word2Guard { op, dst, a, b, expected, kind, at });
        self.fuse_run(from);
        true
    }

    /// Joins the last instruction, an `eq` guard expecting 0, to the run of such guards
    /// before it that share an operand with it (see `CInst::NotIn`).
    fn fuse_run(&mut self, from: usize) {
        let n = self.skel.code.len();
        if n < from + 2 {
            return;
        }
        let CInst::Word2Guard { op: Op::Eq, dst, a, b, expected, kind, at } = self.skel.code[n - 1] else { return };
        // A constant register (computed ones are flagged until placed): its value is known.
        if expected & COMPUTED != 0 || self.words.get(expected as usize) != Some(&U256::ZERO) {
            return;
        }
        // The other operand, when `x` is one of `a`, `b` (`eq` is symmetric).
        let other = |x: W| {
            if x == b {
                Some(a)
            } else if x == a {
                Some(b)
            } else {
                None
            }
        };
        match self.skel.code[n - 2] {
            CInst::NotIn { x, from: start, to, kind: k } if k == kind && to as usize == self.skel.runs.len() => {
                let Some(y) = other(x) else { return };
                self.k().runs.push((y, dst, at));
                self.k().code.truncate(n - 1);
                self.k().code[n - 2] = CInst::NotIn { x, from: start, to: to + 1, kind };
            }
            CInst::Word2Guard { op: Op::Eq, dst: d0, a: a0, b: b0, expected: e0, kind: k0, at: at0 }
                if e0 == expected && k0 == kind =>
            {
                // The operand the two share.
                let Some((x, y0)) = [(b0, a0), (a0, b0)].into_iter().find(|(x, _)| other(*x).is_some()) else {
                    return;
                };
                let Some(y) = other(x) else { return };
                let start = self.skel.runs.len() as u32;
                self.k().runs.push((y0, d0, at0));
                self.k().runs.push((y, dst, at));
                self.k().code.truncate(n - 2);
                self.k().code.push(CInst::NotIn { x, from: start, to: start + 2, kind });
            }
            _ => {}
        }
    }

    /// Compiles instruction `i` of a program, given the registers of its operands.
    fn compile_inst(&mut self, inst: &crate::program::Inst, i: usize, regs: &[Reg]) -> Result<Reg, CompileError> {
        let c = self;
        let err = |message: &str| CompileError { at: i, message: message.to_string() };
        let word = |v: &Value| match regs.get(v.index()) {
            Some(Reg::Word(w)) => Ok(*w),
            _ => Err(err("operand is not a word defined earlier")),
        };
        let bytes = |v: &Value| match regs.get(v.index()) {
            Some(Reg::Bytes(b)) => Ok(*b),
            _ => Err(err("operand is not a byte string defined earlier")),
        };
        let arity = |n: usize| if inst.args.len() == n { Ok(()) } else { Err(err("wrong operand count")) };
        let at = i as u32;
        Ok(match (inst.op.kind(), inst.op) {
            (OpKind::Const, Op::Const) => {
                arity(0)?;
                let Imm::Word(w) = inst.imm else { return Err(err("const without a word")) };
                Reg::Word(c.word_const(w))
            }
            (OpKind::Const, _) => {
                arity(0)?;
                let Imm::Bytes(b) = &inst.imm else { return Err(err("bytes without bytes")) };
                if c.arena.len() + b.len() >= ARENA_LIMIT {
                    return Err(err("constant byte strings beyond the arena limit"));
                }
                let start = c.arena.len() as u32;
                c.arena.extend_from_slice(b);
                c.ranges.push((start | CONST_BYTES, b.len() as u32));
                Reg::Bytes(c.ranges.len() as u32 - 1)
            }
            (OpKind::Load, op) => {
                let (a, b) = match inst.args.as_slice() {
                    [a] if op != Op::Storage => (word(a)?, 0),
                    [a, b] if op == Op::Storage => (word(a)?, word(b)?),
                    _ => return Err(err("wrong operand count")),
                };
                let dst = c.word_reg();
                c.k().code.push(CInst::Load { op, dst, a, b, at });
                Reg::Word(dst)
            }
            (OpKind::Context, op) => {
                arity(0)?;
                let dst = c.word_reg();
                c.k().code.push(CInst::Ctx { op, dst, at });
                Reg::Word(dst)
            }
            (OpKind::Compute, op) => c.compute(op, inst, &word, &bytes, &err, at)?,
            (OpKind::Guard, _) => {
                arity(1)?;
                let Imm::Guard(kind, expected) = inst.imm else { return Err(err("guard without kind")) };
                let a = word(&inst.args[0])?;
                let expected = c.word_const(expected);
                c.k().code.push(CInst::Guard { a, expected, kind, at });
                Reg::None
            }
            (OpKind::Store, op) => {
                let store = match (op, inst.args.as_slice(), &inst.imm) {
                    (Op::StoreAccount, [a, balance, nonce, code_hash], Imm::Flags(flags)) => CInst::StoreAccount {
                        a: word(a)?,
                        balance: word(balance)?,
                        nonce: word(nonce)?,
                        code_hash: word(code_hash)?,
                        flags: *flags,
                        at,
                    },
                    (Op::StoreSlot, [a, k, v], _) => CInst::StoreSlot { a: word(a)?, k: word(k)?, v: word(v)?, at },
                    (Op::StoreCode, [a, code], _) => CInst::StoreCode { a: word(a)?, code: bytes(code)?, at },
                    (Op::Log, [a, data, topics @ ..], _) if topics.len() <= 4 => {
                        let (a, data) = (word(a)?, bytes(data)?);
                        let from = c.skel.lists.len() as u32;
                        for t in topics {
                            c.k().lists.push(word(t)?);
                        }
                        CInst::Log { a, data, from, to: c.skel.lists.len() as u32 }
                    }
                    (Op::Output, [b], _) => CInst::Output { b: bytes(b)? },
                    (Op::Created, [a], _) => CInst::Created { a: word(a)? },
                    _ => return Err(err("ill-formed store")),
                };
                c.k().code.push(store);
                Reg::None
            }
        })
    }

    /// A computed word register, numbered apart from the constants until
    /// [`Compiled::place_computed`] puts them after the constants.
    fn word_reg(&mut self) -> W {
        let r = COMPUTED | self.computed_top;
        self.computed_top += 1;
        self.computed = self.computed.max(self.computed_top);
        r
    }

    /// Renumbers computed registers to follow the constants.
    fn place_computed(&mut self) {
        let base = self.words.len() as u32;
        // The sink, when a result went to it (a fused guard's, or one of a run's), is the last
        // computed register.
        let sinks = self.skel.code.iter().any(|i| matches!(i, CInst::Word2Guard { dst: SINK, .. }))
            || self.skel.runs.iter().any(|&(_, dst, _)| dst == SINK);
        let sink = base + self.computed;
        self.computed += sinks as u32;
        let fix = |r: &mut W| {
            if *r == SINK {
                *r = sink;
            } else if *r & COMPUTED != 0 {
                *r = base + (*r & !COMPUTED);
            }
        };
        // Byte registers likewise: the constants' ranges first, then the computed ones.
        let base_bytes = self.ranges.len() as u32;
        let fix_bytes = |r: &mut B| {
            if *r & COMPUTED != 0 {
                *r = base_bytes + (*r & !COMPUTED);
            }
        };
        let skel = Arc::make_mut(&mut self.skel);
        for inst in &mut skel.code {
            match inst {
                CInst::Concat { dst, from, to, .. } => {
                    fix_bytes(dst);
                    skel.lists[*from as usize..*to as usize].iter_mut().for_each(fix_bytes);
                }
                CInst::Slice { dst, src, .. } | CInst::PCall { dst, src, .. } => {
                    [dst, src].into_iter().for_each(fix_bytes)
                }
                CInst::ToBytes { dst, .. } => fix_bytes(dst),
                CInst::ToWord { src, .. } | CInst::Keccak { src, .. } | CInst::Len { src, .. } => fix_bytes(src),
                CInst::StoreCode { code, .. } => fix_bytes(code),
                CInst::Log { data, .. } => fix_bytes(data),
                CInst::Output { b } => fix_bytes(b),
                _ => {}
            }
        }
        for inst in &mut skel.code {
            match inst {
                CInst::Load { dst, a, b, .. } => [dst, a, b].into_iter().for_each(fix),
                CInst::Ctx { dst, .. }
                | CInst::ToWord { dst, .. }
                | CInst::Keccak { dst, .. }
                | CInst::Len { dst, .. } => fix(dst),
                CInst::Word1 { dst, a, .. } => [dst, a].into_iter().for_each(fix),
                word2_variants!(dst, a, b) => [dst, a, b].into_iter().for_each(fix),
                CInst::Word3 { dst, a, b, c, .. } => [dst, a, b, c].into_iter().for_each(fix),
                CInst::Guard { a, expected, .. } => [a, expected].into_iter().for_each(fix),
                CInst::Word2Guard { dst, a, b, expected, .. }
                | CInst::EqGuard { dst, a, b, expected, .. }
                | CInst::LtGuard { dst, a, b, expected, .. } => [dst, a, b, expected].into_iter().for_each(fix),
                CInst::NotIn { x, .. } => fix(x),
                CInst::ToBytes { a, .. } | CInst::StoreCode { a, .. } | CInst::Created { a } => fix(a),
                CInst::StoreAccount { a, balance, nonce, code_hash, .. } => {
                    [a, balance, nonce, code_hash].into_iter().for_each(fix)
                }
                CInst::StoreSlot { a, k, v, .. } => [a, k, v].into_iter().for_each(fix),
                CInst::Log { a, from, to, .. } => {
                    fix(a);
                    skel.lists[*from as usize..*to as usize].iter_mut().for_each(fix);
                }
                CInst::Concat { .. } | CInst::Slice { .. } | CInst::PCall { .. } | CInst::Output { .. } => {}
            }
        }
        for (y, dst, _) in &mut skel.runs {
            fix(y);
            fix(dst);
        }
    }

    fn word_const(&mut self, w: U256) -> W {
        if let Some(r) = self.interned.get(&w) {
            return *r;
        }
        self.words.push(w);
        let r = self.words.len() as u32 - 1;
        self.interned.insert(w, r);
        r
    }

    fn bytes_reg(&mut self) -> B {
        let r = COMPUTED | self.computed_bytes;
        self.computed_bytes += 1;
        r
    }

    fn compute(
        &mut self,
        op: Op,
        inst: &crate::program::Inst,
        word: &dyn Fn(&Value) -> Result<W, CompileError>,
        bytes: &dyn Fn(&Value) -> Result<B, CompileError>,
        err: &dyn Fn(&str) -> CompileError,
        at: u32,
    ) -> Result<Reg, CompileError> {
        let args = inst.args.as_slice();
        let one = || match args {
            [a] => Ok(a),
            _ => Err(err("wrong operand count")),
        };
        Ok(match op {
            Op::Concat => {
                if args.is_empty() {
                    return Err(err("concat of nothing"));
                }
                let from = self.skel.lists.len() as u32;
                for a in args {
                    let b = bytes(a)?;
                    self.k().lists.push(b);
                }
                let to = self.skel.lists.len() as u32;
                let dst = self.bytes_reg();
                self.k().code.push(CInst::Concat { dst, from, to, at });
                Reg::Bytes(dst)
            }
            Op::Slice => {
                let Imm::Slice(offset, len) = inst.imm else { return Err(err("slice without range")) };
                let src = bytes(one()?)?;
                let dst = self.bytes_reg();
                self.k().code.push(CInst::Slice { dst, src, offset, len, at });
                Reg::Bytes(dst)
            }
            Op::ToBytes => {
                let a = word(one()?)?;
                let dst = self.bytes_reg();
                self.k().code.push(CInst::ToBytes { dst, a, at });
                Reg::Bytes(dst)
            }
            Op::PCall => {
                let Imm::Precompile(address, gas, spec) = inst.imm else {
                    return Err(err("pcall without precompile"));
                };
                let src = bytes(one()?)?;
                self.k().precompiles.push((address, gas, spec));
                let dst = self.bytes_reg();
                let precompile = self.skel.precompiles.len() as u32 - 1;
                self.k().code.push(CInst::PCall { dst, src, precompile, at });
                Reg::Bytes(dst)
            }
            Op::ToWord | Op::Keccak | Op::Len => {
                let src = bytes(one()?)?;
                let dst = self.word_reg();
                self.k().code.push(match op {
                    Op::ToWord => CInst::ToWord { dst, src, at },
                    Op::Keccak => CInst::Keccak { dst, src },
                    _ => CInst::Len { dst, src },
                });
                Reg::Word(dst)
            }
            _ => {
                if op.ty() != Ty::Word || !matches!(inst.imm, Imm::None) {
                    return Err(err("not a word computation"));
                }
                // Only word computations are left; `fold_word` decides the arity it accepts.
                let regs: Vec<W> = args.iter().map(word).collect::<Result<_, _>>()?;
                if fold_word(op, &vec![U256::ZERO; regs.len()]).is_none() {
                    return Err(err("not a word computation of this arity"));
                }
                let dst = self.word_reg();
                self.k().code.push(match regs.as_slice() {
                    [a] => CInst::Word1 { op, dst, a: *a },
                    [a, b] => CInst::Word2 { op, dst, a: *a, b: *b },
                    [a, b, c] => CInst::Word3 { op, dst, a: *a, b: *b, c: *c },
                    _ => return Err(err("wrong operand count")),
                });
                Reg::Word(dst)
            }
        })
    }

    /// The chain rules the programs hold under.
    pub fn env(&self) -> ProgramEnv {
        self.env
    }

    /// Programs merged (distinct outcomes the tree can reach).
    pub fn programs(&self) -> usize {
        self.skel.leaves.len()
    }

    /// Instructions of the source programs, summed.
    pub fn source_len(&self) -> usize {
        self.source_len
    }

    /// Compiled instructions: what a walk may run, shared runs counted once.
    pub fn code_len(&self) -> usize {
        self.skel.code.len()
    }

    /// Approximate heap size, for the store's memory budget. The skeleton is counted in
    /// full although programs of one shape share it: an upper bound.
    pub fn heap_bytes(&self) -> usize {
        self.skel.code.capacity() * size_of::<CInst>()
            + self.words.capacity() * size_of::<U256>()
            + self.arena.capacity()
            + self.ranges.capacity() * 8
            + self.skel.lists.capacity() * 4
            + self.skel.runs.capacity() * size_of::<(W, W, u32)>()
            + self.skel.precompiles.capacity() * size_of::<(Address, u64, SpecId)>()
            + self.skel.nodes.capacity() * size_of::<Node>()
            + self.skel.edges.capacity() * 4
            + self.skel.leaves.capacity() * size_of::<Leaf>()
    }

    /// Asks the CPU to bring the memory an evaluation reads (the tree, its instructions,
    /// constants and byte strings) into its caches, without waiting for it: a block's
    /// programs are cold when an import reaches them, and fetching them on demand cost a
    /// transfer's hit more than its evaluation. Each step reads pointers from memory the step
    /// before brought in, so an import runs them in stages, transactions ahead: the struct
    /// itself ([`prefetch_value`]), then this, then [`Compiled::prefetch_skeleton`]. Done all
    /// at once, the reads of this struct and of the skeleton's counts waited for memory, 6%
    /// of a large block's import (perf, 13,330,992).
    ///
    /// This step: the registers' template, the byte strings and the skeleton's header (with
    /// its counts), read from this struct.
    pub fn prefetch_own(&self) {
        prefetch_slice(&self.words);
        prefetch_slice(&self.ranges);
        prefetch_slice(&self.arena);
        // An `Arc`'s counts are the two words before its value.
        let counts = 2 * size_of::<usize>();
        prefetch_bytes(Arc::as_ptr(&self.skel).cast::<u8>().wrapping_sub(counts), counts + size_of::<Skeleton>());
    }

    /// The last step of [`Compiled::prefetch_own`]'s chain: the skeleton's code and tables,
    /// read from its header.
    pub fn prefetch_skeleton(&self) {
        // A skeleton other programs share (a transfer's, say) is run often enough to be in
        // the caches already: asking for its lines again only fills the queue of misses.
        if Arc::strong_count(&self.skel) == 1 {
            prefetch_slice(&self.skel.code);
            prefetch_slice(&self.skel.nodes);
            prefetch_slice(&self.skel.edges);
            prefetch_slice(&self.skel.leaves);
            prefetch_slice(&self.skel.lists);
            prefetch_slice(&self.skel.runs);
        }
    }

    /// Evaluates the merged programs on `db` in the context `cfg` / `block`, with precompile
    /// results from (and into) `memo`. On a hit, also which program (its index in the list
    /// given to [`Compiled::merge`]) hit. A single program's result is always the reference
    /// interpreter's ([`crate::interp::evaluate`]) on it; a merged tree hits only with an
    /// outcome one of its programs gives on this state.
    pub fn evaluate_merged<D: AccountRead>(
        &self,
        db: &D,
        cfg: &CfgEnv,
        block: &BlockEnv,
        memo: Option<&PrecompileMemo>,
    ) -> (Evaluation, Option<usize>) {
        evaluation_of(self.evaluate_applied(db, cfg, block, memo))
    }

    /// [`Compiled::evaluate_merged`], the hit in the form a commit takes ([`Applied`]: the
    /// state as revm returns it, no ordered maps): what an import runs. Its
    /// [`Applied::outcome`] is the outcome [`Compiled::evaluate_merged`] gives.
    pub fn evaluate_applied<D: AccountRead>(
        &self,
        db: &D,
        cfg: &CfgEnv,
        block: &BlockEnv,
        memo: Option<&PrecompileMemo>,
    ) -> Result<(Applied, usize), Miss> {
        Applied::filled(|out| self.evaluate_into(db, cfg, block, memo, out))
    }

    /// [`Compiled::evaluate_applied`] into `out` (emptied first; on a miss its content means
    /// nothing): what an import runs, with one result reused across its transactions, so a
    /// hit moves nothing and allocates only what grows.
    pub fn evaluate_into<D: AccountRead>(
        &self,
        db: &D,
        cfg: &CfgEnv,
        block: &BlockEnv,
        memo: Option<&PrecompileMemo>,
        out: &mut Applied,
    ) -> Result<usize, Miss> {
        self.evaluate_capturing(db, cfg, block, memo, None, out).0
    }

    /// Evaluates like [`Compiled::evaluate`] and, on a hit, also returns every input the
    /// program read, in order, with the value it had: the read set of this evaluation
    /// ([`crate::readset::ReadSet`]).
    pub fn capture_reads<D: AccountRead>(
        &self,
        db: &D,
        cfg: &CfgEnv,
        block: &BlockEnv,
        memo: Option<&PrecompileMemo>,
    ) -> Option<(TxOutcome, Vec<Read>)> {
        let mut applied = Applied::new();
        match self.evaluate_capturing(db, cfg, block, memo, Some(Vec::new()), &mut applied) {
            (Ok(_), Some(reads)) => Some((applied.outcome(), reads)),
            _ => None,
        }
    }

    fn evaluate_capturing<D: AccountRead>(
        &self,
        db: &D,
        cfg: &CfgEnv,
        block: &BlockEnv,
        memo: Option<&PrecompileMemo>,
        capture: Option<Vec<Read>>,
        out: &mut Applied,
    ) -> (Applying, Option<Vec<Read>>) {
        out.clear();
        if let Some(miss) = self.env_miss(cfg) {
            return (Err(miss), None);
        }
        with_scratch(|s| self.start(s, db, cfg, block, memo, capture, out))
    }

    /// [`Compiled::evaluate_merged`] without saying which program hit.
    pub fn evaluate<D: AccountRead>(
        &self,
        db: &D,
        cfg: &CfgEnv,
        block: &BlockEnv,
        memo: Option<&PrecompileMemo>,
    ) -> Evaluation {
        self.evaluate_merged(db, cfg, block, memo).0
    }

    #[allow(clippy::too_many_arguments)]
    fn start<D: AccountRead>(
        &self,
        s: &mut Scratch,
        db: &D,
        cfg: &CfgEnv,
        block: &BlockEnv,
        memo: Option<&PrecompileMemo>,
        capture: Option<Vec<Read>>,
        out: &mut Applied,
    ) -> (Applying, Option<Vec<Read>>) {
        self.ready(s);
        let mut walk = Walk { s, outcome: out, stored: false, capture };
        let result = self.walk(0, &mut walk, db, cfg, block, memo);
        if walk.s.arena.capacity() > KEEP_ARENA {
            walk.s.arena = Vec::new();
        }
        let capture = walk.capture;
        (result.map(|leaf| self.finish(leaf, walk.outcome)), capture)
    }

    /// Readies the scratch for an evaluation of this program.
    fn ready(&self, s: &mut Scratch) {
        // Constants are read from the template in place (`Regs`): only the computed registers
        // live in the scratch, and each is written before it is read (the program is SSA),
        // so the scratch is only grown, never cleared or copied into.
        let registers = self.words.len() + self.computed as usize;
        if s.words.len() < registers {
            s.words.resize(registers, U256::ZERO);
        }
        // Constant byte strings are read in place too (their ranges are flagged
        // `CONST_BYTES`); the scratch arena holds only computed ones.
        s.arena.clear();
        let byte_registers = self.ranges.len() + self.computed_bytes as usize;
        if s.ranges.len() < byte_registers {
            s.ranges.resize(byte_registers, (0, 0));
        }
        s.accounts.clear();
    }

    /// The hit at leaf `leaf` (below `leaves.len()`): `outcome` with the leaf's constants,
    /// and which program it is.
    fn finish(&self, leaf: u32, outcome: &mut Applied) -> usize {
        let leaf = &self.skel.leaves[leaf as usize];
        outcome.status = leaf.status.clone();
        outcome.gas_used = leaf.gas_used;
        outcome.gas_refunded = leaf.gas_refunded;
        leaf.program as usize
    }

    /// The miss of an evaluation under other chain rules than the program's (or of no
    /// program), when it is one.
    fn env_miss(&self, cfg: &CfgEnv) -> Option<Miss> {
        (self.env.spec != cfg.spec || self.env.chain_id != cfg.chain_id || self.skel.nodes.is_empty())
            .then_some(Miss { reason: MissReason::Env, at: Value(0) })
    }

    /// Runs node `node` and below: the index of the leaf reached, or the last miss.
    fn walk<D: AccountRead>(
        &self,
        node: u32,
        w: &mut Walk<'_>,
        db: &D,
        cfg: &CfgEnv,
        block: &BlockEnv,
        memo: Option<&PrecompileMemo>,
    ) -> Result<u32, Miss> {
        let n = &self.skel.nodes[node as usize];
        self.run(&self.skel.code[n.code.0 as usize..n.code.1 as usize], w, db, cfg, block, memo)?;
        if let Some(leaf) = n.leaf {
            return Ok(leaf);
        }
        let mark = w.s.arena.len();
        let mut last = Miss { reason: MissReason::Malformed, at: Value(0) };
        for &child in &self.skel.edges[n.children.0 as usize..n.children.1 as usize] {
            match self.walk(child, w, db, cfg, block, memo) {
                Ok(leaf) => return Ok(leaf),
                // Past a store the walk has committed to one program.
                Err(miss) if w.stored => return Err(miss),
                Err(miss) => {
                    last = miss;
                    w.s.arena.truncate(mark);
                }
            }
        }
        Err(last)
    }

    fn run<D: AccountRead>(
        &self,
        code: &[CInst],
        walk: &mut Walk<'_>,
        db: &D,
        cfg: &CfgEnv,
        block: &BlockEnv,
        memo: Option<&PrecompileMemo>,
    ) -> Result<(), Miss> {
        let Scratch { words, arena, ranges, accounts } = &mut *walk.s;
        let outcome = &mut *walk.outcome;
        let capture = &mut walk.capture;
        let miss = |reason, at: u32| Miss { reason, at: Value(at) };
        // The register file as one slice for the whole run (its length in a register, not
        // reloaded through the scratch at every access): nothing here resizes it.
        let w = &mut Regs { k: &self.words, w: words.as_mut_slice() };
        for inst in code {
            match *inst {
                CInst::Load { op: op @ (Op::Balance | Op::Nonce | Op::CodeHash | Op::Exists), dst, a, at, .. } => {
                    let Ok(fields) = accounts.account(&w[a], db) else {
                        return Err(miss(MissReason::State, at));
                    };
                    match fields.word(op) {
                        Some(v) => w.w[dst as usize] = v,
                        None => return Err(miss(MissReason::Malformed, at)),
                    }
                    if let Some(reads) = capture {
                        reads.push(Read { op, args: [w[a], U256::ZERO], value: w[dst], at });
                    }
                }
                CInst::Load { op, dst, a, b, at } => {
                    let args = [w[a], w[b]];
                    let n = if op == Op::Storage { 2 } else { 1 };
                    match load_word(op, &args[..n], db, block) {
                        Ok(Some(v)) => w.w[dst as usize] = v,
                        Ok(None) => return Err(miss(MissReason::Malformed, at)),
                        Err(_) => return Err(miss(MissReason::State, at)),
                    }
                    if let Some(reads) = capture {
                        reads.push(Read { op, args, value: w[dst], at });
                    }
                }
                CInst::Ctx { op, dst, at } => {
                    w.w[dst as usize] = context(op, cfg, block);
                    if let Some(reads) = capture {
                        reads.push(Read { op, args: [U256::ZERO; 2], value: w[dst], at });
                    }
                }
                CInst::Word1 { op, dst, a } => w.w[dst as usize] = word1(op, w[a]),
                CInst::Word2 { op, dst, a, b } => w.w[dst as usize] = word2(op, w[a], w[b]),
                // The specialized variants: `word2` with the operation a constant, so its match
                // folds away (one definition of each operation).
                CInst::Add { dst, a, b } => w.w[dst as usize] = word2(Op::Add, w[a], w[b]),
                CInst::Sub { dst, a, b } => w.w[dst as usize] = word2(Op::Sub, w[a], w[b]),
                CInst::Lt { dst, a, b } => w.put_bool(dst, w[a] < w[b]),
                CInst::Gt { dst, a, b } => w.put_bool(dst, w[a] > w[b]),
                CInst::Eq { dst, a, b } => w.put_bool(dst, w[a] == w[b]),
                CInst::And { dst, a, b } => w.w[dst as usize] = word2(Op::And, w[a], w[b]),
                CInst::Word3 { op, dst, a, b, c } => {
                    let args = [w[a], w[b], w[c]];
                    w.w[dst as usize] = fold_word(op, &args).unwrap_or_default();
                }
                CInst::Guard { a, expected, kind, at } => {
                    if w[a] != w[expected] {
                        return Err(miss(MissReason::Guard(kind), at));
                    }
                }
                CInst::NotIn { x, from, to, kind } => {
                    let x = w[x];
                    for &(y, dst, at) in &self.skel.runs[from as usize..to as usize] {
                        let equal = w[y] == x;
                        w.put_bool(dst, equal);
                        if equal {
                            return Err(miss(MissReason::Guard(kind), at));
                        }
                    }
                }
                CInst::Word2Guard { op, dst, a, b, expected, kind, at } => {
                    if !w.put_expecting(dst, word2(op, w[a], w[b]), expected) {
                        return Err(miss(MissReason::Guard(kind), at));
                    }
                }
                CInst::EqGuard { dst, a, b, expected, kind, at } => {
                    if !w.put_bool_expecting(dst, w[a] == w[b], expected) {
                        return Err(miss(MissReason::Guard(kind), at));
                    }
                }
                CInst::LtGuard { dst, a, b, expected, kind, at } => {
                    if !w.put_bool_expecting(dst, w[a] < w[b], expected) {
                        return Err(miss(MissReason::Guard(kind), at));
                    }
                }
                CInst::Concat { dst, from, to, at } => {
                    let start = arena.len();
                    let parts = &self.skel.lists[from as usize..to as usize];
                    let total: usize = parts.iter().map(|&p| range_of(&self.ranges, ranges, p).1 as usize).sum();
                    if start + total > ARENA_LIMIT {
                        return Err(miss(MissReason::OutOfFuel, at));
                    }
                    for &part in parts {
                        extend_with(arena, &self.arena, range_of(&self.ranges, ranges, part), 0, u32::MAX);
                    }
                    ranges[dst as usize] = (start as u32, total as u32);
                }
                CInst::Slice { dst, src, offset, len, at } => {
                    let (o, l) = range_of(&self.ranges, ranges, src);
                    let start = arena.len();
                    if start + len as usize > ARENA_LIMIT {
                        return Err(miss(MissReason::OutOfFuel, at));
                    }
                    let from = offset.min(l) as usize;
                    let to = offset.saturating_add(len).min(l) as usize;
                    extend_with(arena, &self.arena, (o, l), from as u32, to as u32);
                    arena.resize(start + len as usize, 0);
                    ranges[dst as usize] = (start as u32, len);
                }
                CInst::ToBytes { dst, a, at } => {
                    let start = arena.len();
                    if start + 32 > ARENA_LIMIT {
                        return Err(miss(MissReason::OutOfFuel, at));
                    }
                    arena.extend_from_slice(&w[a].to_be_bytes::<32>());
                    ranges[dst as usize] = (start as u32, 32);
                }
                CInst::ToWord { dst, src, at } => {
                    let b = bytes_of(&self.arena, arena, range_of(&self.ranges, ranges, src));
                    if b.len() > 32 {
                        return Err(miss(MissReason::Malformed, at));
                    }
                    w.w[dst as usize] = U256::from_be_slice(b);
                }
                CInst::Keccak { dst, src } => {
                    let input = bytes_of(&self.arena, arena, range_of(&self.ranges, ranges, src));
                    w.w[dst as usize] = match memo {
                        Some(memo) => memo.keccak.hash(input),
                        None => keccak256(input),
                    }
                    .into();
                }
                CInst::Len { dst, src } => w.w[dst as usize] = U256::from(range_of(&self.ranges, ranges, src).1),
                CInst::PCall { dst, src, precompile, at } => {
                    let (address, gas, spec) = self.skel.precompiles[precompile as usize];
                    let input = bytes_of(&self.arena, arena, range_of(&self.ranges, ranges, src));
                    let key = PrecompileKey { address, gas, spec };
                    let out = match memo.and_then(|m| m.get(&key, input)) {
                        Some(out) => out,
                        None => {
                            let Some(out) = run_precompile(address, gas, spec, input) else {
                                return Err(miss(MissReason::Malformed, at));
                            };
                            if let Some(m) = memo {
                                m.insert(key, input, out.clone());
                            }
                            out
                        }
                    };
                    let start = arena.len();
                    if start + out.len() > ARENA_LIMIT {
                        return Err(miss(MissReason::OutOfFuel, at));
                    }
                    arena.extend_from_slice(&out);
                    ranges[dst as usize] = (start as u32, out.len() as u32);
                }
                CInst::StoreAccount { a, balance, nonce, code_hash, flags, at } => {
                    walk.stored = true;
                    let nonce = w[nonce];
                    if nonce > U256::from(u64::MAX) {
                        return Err(miss(MissReason::Malformed, at));
                    }
                    let stored = Stored {
                        address: word_to_address(w[a]),
                        balance: w[balance],
                        nonce: nonce.to::<u64>(),
                        code_hash: B256::from(w[code_hash]),
                        created: flags.created,
                        selfdestructed: flags.selfdestructed,
                    };
                    // Two stores to one account: two symbolic addresses met without an alias
                    // guard, never a hit.
                    if !outcome.store_account(stored) {
                        return Err(miss(MissReason::Malformed, at));
                    }
                }
                CInst::StoreSlot { a, k, v, at } => {
                    walk.stored = true;
                    if !outcome.store_slot(&word_to_address(w[a]), w[k], w[v]) {
                        return Err(miss(MissReason::Malformed, at));
                    }
                }
                CInst::StoreCode { a, code, at } => {
                    walk.stored = true;
                    let code =
                        Bytes::copy_from_slice(bytes_of(&self.arena, arena, range_of(&self.ranges, ranges, code)));
                    if !outcome.store_code(word_to_address(w[a]), code) {
                        return Err(miss(MissReason::Malformed, at));
                    }
                }
                CInst::Log { a, data, from, to } => {
                    walk.stored = true;
                    let topics = self.skel.lists[from as usize..to as usize].iter().map(|t| B256::from(w[*t]));
                    let data =
                        Bytes::copy_from_slice(bytes_of(&self.arena, arena, range_of(&self.ranges, ranges, data)));
                    let data = LogData::new_unchecked(topics.collect(), data);
                    outcome.logs.push(Log { address: word_to_address(w[a]), data });
                }
                CInst::Output { b } => {
                    walk.stored = true;
                    outcome.output =
                        Bytes::copy_from_slice(bytes_of(&self.arena, arena, range_of(&self.ranges, ranges, b)));
                }
                CInst::Created { a } => {
                    walk.stored = true;
                    outcome.created_address = Some(word_to_address(w[a]));
                }
            }
        }
        Ok(())
    }
}

/// Runs `f` on this thread's scratch, or on a fresh one when it is in use (an evaluation
/// re-entered from a database callback: still correct).
fn with_scratch<T>(f: impl FnOnce(&mut Scratch) -> T) -> T {
    SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
        Ok(mut scratch) => f(&mut scratch),
        Err(_) => f(&mut Scratch::default()),
    })
}

/// An evaluation in the form of [`Compiled::evaluate_merged`]: the outcome of a hit and
/// which program gave it, or the miss.
pub fn evaluation_of(applying: Result<(Applied, usize), Miss>) -> (Evaluation, Option<usize>) {
    match applying {
        Ok((applied, program)) => (Evaluation::Hit(applied.outcome()), Some(program)),
        Err(miss) => (Evaluation::Miss(miss), None),
    }
}

/// The word registers of an evaluation: the constants, read in place from the template,
/// then the computed registers in the scratch (which also spans the constants' numbers,
/// unused there).
struct Regs<'a> {
    k: &'a [U256],
    w: &'a mut [U256],
}

impl Regs<'_> {
    /// Writes `v` to computed register `dst`; whether it equals register `expected` (a fused
    /// guard holds).
    #[inline(always)]
    fn put_expecting(&mut self, dst: u32, v: U256, expected: u32) -> bool {
        self.w[dst as usize] = v;
        v == self[expected]
    }

    /// Writes the word of a comparison (1 or 0) to computed register `dst`, limb by limb in
    /// place. Built as a `U256` first, it went through the stack in three stores (of 8, 16
    /// and 8 bytes) that the copy's two 16-byte loads could not forward from: one instruction
    /// after them held 16% of the evaluator's own samples (perf, `prescient bench hit` on a
    /// block of transfers).
    #[inline(always)]
    fn put_bool(&mut self, dst: u32, b: bool) {
        // SAFETY: a `U256` is four whole limbs, so any limbs are a value in range.
        let limbs = unsafe { self.w[dst as usize].as_limbs_mut() };
        limbs[0] = b as u64;
        limbs[1] = 0;
        limbs[2] = 0;
        limbs[3] = 0;
    }

    /// [`Regs::put_bool`]; whether the word equals register `expected` (a fused guard holds).
    #[inline(always)]
    fn put_bool_expecting(&mut self, dst: u32, b: bool, expected: u32) -> bool {
        self.put_bool(dst, b);
        let e = self[expected].as_limbs();
        e[0] == b as u64 && (e[1] | e[2] | e[3]) == 0
    }
}

impl std::ops::Index<u32> for Regs<'_> {
    type Output = U256;

    #[inline(always)]
    fn index(&self, r: u32) -> &U256 {
        let r = r as usize;
        if r < self.k.len() { &self.k[r] } else { &self.w[r] }
    }
}

/// An evaluation in progress: the scratch, the outcome so far, whether a store ran, and
/// the reads so far when they are captured.
struct Walk<'s> {
    s: &'s mut Scratch,
    outcome: &'s mut Applied,
    stored: bool,
    capture: Option<Vec<Read>>,
}

/// The range of byte register `r`: a constant's from the program, a computed one's from the
/// scratch.
#[inline(always)]
fn range_of(consts: &[(u32, u32)], scratch: &[(u32, u32)], r: u32) -> (u32, u32) {
    let r = r as usize;
    if r < consts.len() { consts[r] } else { scratch[r] }
}

/// Flags a byte register's range as lying in the program's constant arena rather than the
/// evaluation's (arena offsets stay below `ARENA_LIMIT`, so the bit is free).
const CONST_BYTES: u32 = 1 << 31;

/// The bytes of `range`: in the constants `consts` when flagged, in `arena` otherwise.
fn bytes_of<'a>(consts: &'a [u8], arena: &'a [u8], (o, l): (u32, u32)) -> &'a [u8] {
    let (source, o) = if o & CONST_BYTES != 0 { (consts, o & !CONST_BYTES) } else { (arena, o) };
    &source[o as usize..o as usize + l as usize]
}

/// Appends bytes `from..to` (clamped to its length) of `range` to `arena`.
fn extend_with(arena: &mut Vec<u8>, consts: &[u8], (o, l): (u32, u32), from: u32, to: u32) {
    let (from, to) = (from.min(l) as usize, to.min(l) as usize);
    if o & CONST_BYTES != 0 {
        let o = (o & !CONST_BYTES) as usize;
        arena.extend_from_slice(&consts[o + from..o + to]);
    } else {
        arena.extend_from_within(o as usize + from..o as usize + to);
    }
}

/// The most bytes an evaluation's arena holds (byte strings are `u32` ranges of it). A path
/// the recorder emits stays far below (memory-expansion gas bounds every length); a hostile
/// program that would grow past it misses (`out-of-fuel`) instead of wrapping a range.
const ARENA_LIMIT: usize = 1 << 31;

/// Scratch arenas above this capacity are released after the evaluation, so one huge
/// evaluation does not keep its peak memory on the thread for good.
const KEEP_ARENA: usize = 64 << 20;

/// One-operand word computations: the common ones inline, the rest through `fold_word`.
#[inline(always)]
fn word1(op: Op, a: U256) -> U256 {
    match op {
        Op::IsZero => bool_word(a.is_zero()),
        Op::Not => !a,
        _ => fold_word(op, &[a]).unwrap_or_default(),
    }
}

/// A comparison's word (1 or 0), from its limbs (see [`Regs::put_bool`] for the register file).
#[inline(always)]
fn bool_word(b: bool) -> U256 {
    U256::from_limbs([b as u64, 0, 0, 0])
}

/// Two-operand word computations: the common ones inline (the same definitions as
/// `fold_word`, which the tests compare them with), the rest through it.
#[inline(always)]
fn word2(op: Op, a: U256, b: U256) -> U256 {
    match op {
        Op::Add => a.wrapping_add(b),
        Op::Sub => a.wrapping_sub(b),
        Op::And => a & b,
        Op::Or => a | b,
        Op::Eq => bool_word(a == b),
        Op::Lt => bool_word(a < b),
        Op::Gt => bool_word(a > b),
        Op::Xor => a ^ b,
        Op::Mul => a.wrapping_mul(b),
        Op::Min => a.min(b),
        Op::Shl if a < U256::from(256) => b << a.to::<usize>(),
        Op::Shr if a < U256::from(256) => b >> a.to::<usize>(),
        Op::Shl | Op::Shr => U256::ZERO,
        _ => fold_word(op, &[a, b]).unwrap_or_default(),
    }
}

/// What identifies a precompile call besides its input: which precompile, the gas it is
/// given, the rules it runs under.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PrecompileKey {
    /// The precompile.
    pub address: Address,
    /// The gas it is given.
    pub gas: u64,
    /// The rules.
    pub spec: SpecId,
}

/// A bounded memo of precompile results, keyed by the call and its **whole input** (compared
/// byte for byte, never by a hash alone), with the memory it holds accounted. Filled while
/// pre-executing and by evaluations; read at import, where a precompile's arithmetic (BLS,
/// modexp, pairing, ecrecover) would otherwise run again.
#[derive(Debug)]
pub struct PrecompileMemo {
    results: MemoTable<PrecompileKey>,
    /// The segment memo for hashing long inputs ([`crate::keccak`]), a quarter of the budget
    /// beside the precompile results': it travels with them to every evaluation.
    keccak: KeccakMemo,
}

impl PrecompileMemo {
    /// A memo holding at most `max_bytes` of precompile results, and a quarter of that of
    /// hashes.
    pub fn new(max_bytes: usize) -> Self {
        Self { results: MemoTable::new(max_bytes), keccak: KeccakMemo::new(max_bytes / 4) }
    }

    /// The hashes of long inputs the evaluator computed ([`crate::keccak`]).
    pub fn keccak(&self) -> &KeccakMemo {
        &self.keccak
    }

    /// With `frozen`, both memos answer what they hold and hold nothing new
    /// ([`MemoTable::freeze`]).
    pub fn freeze(&self, frozen: bool) {
        self.results.freeze(frozen);
        self.keccak.freeze(frozen);
    }

    /// The result of `key` on `input`, when held.
    pub fn get(&self, key: &PrecompileKey, input: &[u8]) -> Option<Bytes> {
        self.results.get(key, input)
    }

    /// Holds `output` as the result of `key` on `input`, evicting the least recently used
    /// entries beyond the budget.
    pub fn insert(&self, key: PrecompileKey, input: &[u8], output: Bytes) {
        self.results.insert(key, input, output)
    }

    /// What it holds and has done (precompile results).
    pub fn stats(&self) -> MemoStats {
        self.results.stats()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interp::evaluate;
    use crate::semantics::account_word;
    use revm::state::AccountInfo;

    #[test]
    fn inline_word_ops_equal_fold_word() {
        let samples = [
            U256::ZERO,
            U256::from(1),
            U256::from(255),
            U256::from(256),
            U256::MAX,
            U256::from(1) << 255,
            U256::from(0xdead_beef_u64) << 100,
        ];
        for op in [
            Op::Add,
            Op::Sub,
            Op::And,
            Op::Or,
            Op::Xor,
            Op::Eq,
            Op::Lt,
            Op::Gt,
            Op::Mul,
            Op::Min,
            Op::Shl,
            Op::Shr,
            Op::Sar,
        ] {
            for a in samples {
                for b in samples {
                    assert_eq!(Some(word2(op, a, b)), fold_word(op, &[a, b]), "{op} {a} {b}");
                }
            }
        }
        for op in [Op::IsZero, Op::Not, Op::Clz] {
            for a in samples {
                assert_eq!(Some(word1(op, a)), fold_word(op, &[a]), "{op} {a}");
            }
        }
    }

    #[test]
    fn account_fields_read_what_account_word_reads() {
        let info =
            AccountInfo { balance: U256::from(7), nonce: 3, code_hash: B256::repeat_byte(9), ..Default::default() };
        for info in [Some(&info), None] {
            for op in [Op::Balance, Op::Nonce, Op::CodeHash, Op::Exists, Op::Storage] {
                let fields = info.map(|i| (i.balance, i.nonce, i.code_hash));
                assert_eq!(Fields::of(fields).word(op), account_word(op, info), "{op}");
            }
        }
    }

    const PROGRAM: &str = "\
env OSAKA chain 1
status {\"Success\":\"Stop\"}
gas 21000 refund 0
v0 = const 0x44
v1 = load.storage v0, v0
v2 = const 0x1
v3 = add v1, v2
v4 = tobytes v3
v5 = bytes 0xaabb
v6 = concat v5, v4
v7 = slice v6, 1, 40
v8 = keccak v7
v9 = len v7
v10 = lt v1, v2
    guard path v10, 0x1
v12 = load.balance v0
v13 = load.nonce v0
v14 = load.codehash v0
    store.account v0, v12, v13, v14
    store.slot v0, v0, v3
    store.log v0, v7, v8, v9
    store.output v6
";

    #[test]
    fn agrees_with_the_interpreter_on_a_hand_written_program() {
        let program = crate::text::parse(PROGRAM).expect("the test program parses");
        let compiled = Compiled::new(&program).expect("compiles");
        let (cfg, block) = crate::synthetic::synthetic_env(SpecId::OSAKA);
        let mut db = revm::database::InMemoryDB::default();
        let reference = evaluate(&program, &db, &cfg, &block, FUEL);
        assert!(matches!(reference, Evaluation::Hit(_)), "{reference:?}");
        assert_eq!(compiled.evaluate(&db, &cfg, &block, None), reference);
        // Slot 0x44 now 5: the guard (v1 < 1) fails at both.
        let address = word_to_address(U256::from(0x44));
        db.insert_account_storage(address, U256::from(0x44), U256::from(5)).expect("in memory");
        let reference = evaluate(&program, &db, &cfg, &block, FUEL);
        assert!(matches!(reference, Evaluation::Miss(_)));
        assert_eq!(compiled.evaluate(&db, &cfg, &block, None), reference);
    }

    #[test]
    fn programs_of_one_shape_share_instructions_and_keep_their_own_constants() {
        let program = crate::text::parse(PROGRAM).expect("the test program parses");
        // The same program on another account: one skeleton. (Equal constants share a
        // register, so another increment, equal to the guard's 0x1 no more, would be another
        // register layout and another skeleton.)
        let other_text = PROGRAM.replace("const 0x44", "const 0x55");
        let other = crate::text::parse(&other_text).expect("parses");
        // Another shape (the guard expects the other outcome): its own skeleton.
        let branch =
            crate::text::parse(&PROGRAM.replace("guard path v10, 0x1", "guard path v10, 0x0")).expect("parses");
        let (a, b, c) = (Compiled::new(&program), Compiled::new(&other), Compiled::new(&branch));
        let (a, b, c) = (a.expect("compiles"), b.expect("compiles"), c.expect("compiles"));
        assert!(Arc::ptr_eq(&a.skel, &b.skel), "one shape, one copy of its instructions");
        assert!(!Arc::ptr_eq(&a.skel, &c.skel), "another shape has its own");
        let (cfg, block) = crate::synthetic::synthetic_env(SpecId::OSAKA);
        let mut db = revm::database::InMemoryDB::default();
        db.insert_account_storage(word_to_address(U256::from(0x55)), U256::from(0x55), U256::from(9)).expect("memory");
        for (compiled, source) in [(&a, &program), (&b, &other), (&c, &branch)] {
            let reference = evaluate(source, &db, &cfg, &block, FUEL);
            assert_eq!(compiled.evaluate(&db, &cfg, &block, None), reference);
        }
        // Once no program holds it, the skeleton is freed, and an equal one compiled later is
        // a fresh copy.
        let weak = Arc::downgrade(&c.skel);
        drop(c);
        assert!(weak.upgrade().is_none(), "the interner keeps no skeleton alive");
        let again = Compiled::new(&branch).expect("compiles");
        assert_eq!(again.evaluate(&db, &cfg, &block, None), evaluate(&branch, &db, &cfg, &block, FUEL));
    }

    /// The start of the alias tests' programs: `v1` is slot 0x44 of account 0x44.
    const SLOT_44: &str = "\
env OSAKA chain 1
status {\"Success\":\"Stop\"}
gas 21000 refund 0
v0 = const 0x44
v1 = load.storage v0, v0
";

    /// A state where slot 0x44 of account 0x44 holds `value`.
    fn slot_44(value: u64) -> revm::database::InMemoryDB {
        let mut db = revm::database::InMemoryDB::default();
        let address = word_to_address(U256::from(0x44));
        db.insert_account_storage(address, U256::from(0x44), U256::from(value)).expect("in memory");
        db
    }

    #[test]
    fn a_run_of_alias_guards_is_one_instruction_that_misses_where_the_interpreter_does() {
        // A symbolic address (from a slot) guarded against five constants, one with its
        // operands the other way round, then a guard of another kind.
        let text = format!(
            "{SLOT_44}\
v2 = const 0xa1
v3 = eq v2, v1
    guard alias v3, 0x0
v5 = const 0xa2
v6 = eq v5, v1
    guard alias v6, 0x0
v8 = const 0xa3
v9 = eq v1, v8
    guard alias v9, 0x0
v11 = const 0xa4
v12 = eq v11, v1
    guard alias v12, 0x0
v14 = const 0xa5
v15 = eq v14, v1
    guard alias v15, 0x0
v17 = lt v1, v0
    guard path v17, 0x0
v19 = load.balance v1
v20 = load.nonce v1
v21 = load.codehash v1
    store.account v1, v19, v20, v21
"
        );
        let program = crate::text::parse(&text).expect("parses");
        let compiled = Compiled::new(&program).expect("compiles");
        assert!(
            compiled.skel.code.iter().any(|i| matches!(i, CInst::NotIn { from: 0, to: 5, .. })),
            "{:?}",
            compiled.skel.code
        );
        // The same run where nothing else goes to the sink (the path guard's `lt` is also
        // stored): the run's results alone need it. Every register the code writes is inside
        // the register file, and a thread whose scratch nothing grew before (where a register
        // past the file would be out of bounds) evaluates it as the interpreter does.
        let run_only = text.replace("store.account v1, v19, v20, v21", "store.account v1, v17, v20, v21");
        let run_only = crate::text::parse(&run_only).expect("parses");
        let compiled_run_only = Compiled::new(&run_only).expect("compiles");
        for c in [&compiled, &compiled_run_only] {
            let registers = c.word_registers() as u32;
            for i in 0..c.code_len() {
                if let Some(dst) = c.word_operands(i, |_| {}) {
                    assert!(dst < registers, "{dst} >= {registers}: {:?}", c.skel.code[i]);
                }
            }
            for &(_, dst, _) in &c.skel.runs {
                assert!(dst < registers, "run result {dst} >= {registers}: {:?}", c.skel.runs);
            }
        }
        let fresh = std::thread::spawn(move || {
            let (cfg, block) = crate::synthetic::synthetic_env(SpecId::OSAKA);
            [0x99u64, 0xa3]
                .map(|value| {
                    let db = slot_44(value);
                    (compiled_run_only.evaluate(&db, &cfg, &block, None), evaluate(&run_only, &db, &cfg, &block, FUEL))
                })
                .to_vec()
        })
        .join()
        .expect("evaluates without a panic");
        for (compact, reference) in fresh {
            assert_eq!(compact, reference);
        }
        let (cfg, block) = crate::synthetic::synthetic_env(SpecId::OSAKA);
        for (value, hits) in [(0x99u64, true), (0xa1, false), (0xa3, false), (0xa5, false), (0x10, false)] {
            let db = slot_44(value);
            let reference = evaluate(&program, &db, &cfg, &block, FUEL);
            assert_eq!(matches!(reference, Evaluation::Hit(_)), hits, "{value:#x}: {reference:?}");
            // Equal evaluations: the same outcome, or the same reason at the same guard.
            assert_eq!(compiled.evaluate(&db, &cfg, &block, None), reference, "{value:#x}");
        }
    }

    #[test]
    fn a_guarded_result_nothing_else_reads_goes_to_the_sink() {
        // v3 is read by its guard alone; v5 by its guard and by the store.
        let only_guarded = format!(
            "{SLOT_44}\
v2 = const 0xa1
v3 = eq v2, v1
    guard alias v3, 0x0
v5 = lt v1, v2
    guard path v5, 0x1
v7 = load.nonce v1
v8 = load.codehash v1
    store.account v1, v5, v7, v8
"
        );
        // The same, with v3 also stored by a second future.
        let also_stored = only_guarded.replace("store.account v1, v5, v7, v8", "store.account v1, v5, v3, v8");
        let (a, b) =
            (crate::text::parse(&only_guarded).expect("parses"), crate::text::parse(&also_stored).expect("parses"));
        let dst_at = |c: &Compiled, guard: u32| {
            c.skel.code.iter().find_map(|i| i.word2_guard().filter(|g| g.6 == guard).map(|g| g.1))
        };
        let sink = |c: &Compiled| (c.words.len() + c.computed as usize - 1) as u32;
        let single = Compiled::new(&a).expect("compiles");
        assert_eq!(dst_at(&single, 4), Some(sink(&single)), "{:?}", single.skel.code);
        assert_ne!(dst_at(&single, 6), Some(sink(&single)), "{:?}", single.skel.code);
        // Merged with a program that reads v3 elsewhere, v3 keeps a register of its own.
        let merged = Compiled::merge(&[&a, &b]).expect("compiles");
        assert_ne!(dst_at(&merged, 4), Some(sink(&merged)), "{:?}", merged.skel.code);
        let (cfg, block) = crate::synthetic::synthetic_env(SpecId::OSAKA);
        // A hit, a miss at the alias guard, a miss at the path guard.
        for value in [0x99u64, 0xa1, 0xb0] {
            let db = slot_44(value);
            for (compiled, program) in [(&single, &a), (&merged, &a)] {
                let reference = evaluate(program, &db, &cfg, &block, FUEL);
                assert_eq!(matches!(reference, Evaluation::Hit(_)), value == 0x99, "{value:#x}: {reference:?}");
                assert_eq!(compiled.evaluate(&db, &cfg, &block, None), reference, "{value:#x}");
            }
        }
    }

    #[test]
    fn a_merged_tree_shares_its_prefix_and_picks_the_program_whose_guards_hold() {
        // Two futures of one transaction: slot 0x44 was 0, or it was 1.
        let zero = crate::text::parse(PROGRAM).expect("parses");
        let one_src =
            PROGRAM.replace("v10 = lt v1, v2\n    guard path v10, 0x1", "v10 = lt v1, v2\n    guard path v10, 0x0");
        let one = crate::text::parse(&one_src).expect("parses");
        let merged = Compiled::merge(&[&zero, &one]).expect("compiles");
        assert_eq!(merged.programs(), 2);
        let single = Compiled::new(&zero).expect("compiles").code_len();
        assert!(merged.code_len() < 2 * single, "the prefix is shared: {} vs {single}", merged.code_len());
        let (cfg, block) = crate::synthetic::synthetic_env(SpecId::OSAKA);
        let address = word_to_address(U256::from(0x44));
        for (slot, program, expected) in [(0u64, &zero, 0usize), (1, &one, 1)] {
            let mut db = revm::database::InMemoryDB::default();
            db.insert_account_storage(address, U256::from(0x44), U256::from(slot)).expect("in memory");
            let reference = evaluate(program, &db, &cfg, &block, FUEL);
            assert!(matches!(reference, Evaluation::Hit(_)));
            assert_eq!(merged.evaluate_merged(&db, &cfg, &block, None), (reference, Some(expected)));
        }
        // Any other value takes the second future's branch, with its outcome.
        let mut db = revm::database::InMemoryDB::default();
        db.insert_account_storage(address, U256::from(0x44), U256::from(7)).expect("in memory");
        let reference = evaluate(&one, &db, &cfg, &block, FUEL);
        assert_eq!(merged.evaluate_merged(&db, &cfg, &block, None), (reference, Some(1)));
        // Under other rules: a miss, before any work.
        let (prague, _) = crate::synthetic::synthetic_env(SpecId::PRAGUE);
        assert!(matches!(
            merged.evaluate(&db, &prague, &block, None),
            Evaluation::Miss(Miss { reason: MissReason::Env, .. })
        ));
    }

    #[test]
    fn a_byte_string_past_the_arena_limit_misses_without_allocating_or_wrapping() {
        // Regression (review): ranges are u32; a 4 GiB slice wrapped `offset + len` and
        // panicked. The recorder never emits this (memory gas bounds lengths); a hostile
        // program must still get a miss.
        let src = "\
env OSAKA chain 1
status {\"Success\":\"Stop\"}
gas 21000 refund 0
v0 = bytes 0x01
v1 = slice v0, 0, 4294967295
v2 = keccak v1
v3 = const 0x44
    store.account v3, v2, v2, v2
";
        let program = crate::text::parse(src).expect("parses");
        let compiled = Compiled::new(&program).expect("compiles");
        let (cfg, block) = crate::synthetic::synthetic_env(SpecId::OSAKA);
        let db = revm::database::InMemoryDB::default();
        assert!(matches!(
            compiled.evaluate(&db, &cfg, &block, None),
            Evaluation::Miss(Miss { reason: MissReason::OutOfFuel, .. })
        ));
    }

    #[test]
    fn memo_answers_the_same_input_only_and_stays_in_budget() {
        let memo = PrecompileMemo::new(8192);
        let key = PrecompileKey { address: Address::with_last_byte(2), gas: 100, spec: SpecId::OSAKA };
        memo.insert(key, b"abc", Bytes::from_static(b"out"));
        assert_eq!(memo.get(&key, b"abc"), Some(Bytes::from_static(b"out")));
        assert_eq!(memo.get(&key, b"abd"), None);
        assert_eq!(memo.get(&PrecompileKey { gas: 101, ..key }, b"abc"), None);
        for i in 0..1000u32 {
            memo.insert(key, &i.to_be_bytes(), Bytes::from_static(b"x"));
        }
        let stats = memo.stats();
        assert!(stats.bytes <= 8192, "{stats:?}");
        assert_eq!((stats.hits, stats.misses), (1, 2));
    }
}
