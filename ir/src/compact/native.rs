//! The compiled program as native code sees it: the view a code generator lowers
//! ([`Compiled::lowered`], [`Compiled::node`]) and the calling convention its code follows
//! ([`NativeEntry`], [`HostCall`]), with [`Compiled::evaluate_native`] running such code.
//!
//! Native code does what pays to do inline (word arithmetic, comparisons, guards, the walk
//! over the merged tree) and hands every other instruction back to the host, which runs it
//! with the compact evaluator's own code (`Compiled::run` on that one instruction): loads,
//! context reads, byte strings, hashes, precompile calls and every store. So the outcome of
//! a hit is built by exactly the code every differential test checks, and native code never
//! touches the state, the memo or the outcome.
//!
//! **The convention.** An entry is `unsafe extern "C" fn(regs, host, call) -> u64`:
//! - `regs` is the evaluation's word register file (`[U256]`, four little-endian 64-bit
//!   limbs each); constant registers hold their values only when asked for
//!   (`constants_in_file`: native code normally has them inline, [`Compiled::constant`]);
//!   every computed register is written before it is read;
//! - `call(host, what, arg)` is the host: [`HOST_RUN`] runs the instructions from
//!   `arg & 0xffff_ffff` up to (not including) `arg >> 32`, in order, and answers
//!   [`STEP_OK`], [`STEP_MISS`] (a miss the walk may recover from by trying a sibling) or
//!   [`STEP_FATAL`] (a miss after a store: the evaluation is over); [`HOST_MARK`] answers the
//!   byte arena's length and [`HOST_REWIND`] truncates it back to `arg` (what the walk does
//!   before trying a sibling); [`HOST_RECHECK`] runs a range as [`HOST_RUN`] does when
//!   native code found that one of its guards fails, to record which one (answering 0), or,
//!   when none does, records a malformed miss and answers 1 (native code then ends the
//!   evaluation: a disagreement the tests see);
//! - the result is the leaf reached (below 2^32: a hit), or [`MISS`] with the instruction
//!   whose guard failed in the low 32 bits and, for a `NotIn` run, the element that failed
//!   in bits 32..62; [`HOST_ELEMENT`] there means the host recorded the miss (its last one).
//!
//! A failing guard before any store tries the next sibling, as [`Compiled::walk`] does; the
//! last miss of a node's children is the node's.

use std::ffi::c_void;

use revm::{
    context::{BlockEnv, CfgEnv},
    primitives::U256,
};

use super::{Applying, CInst, Compiled, PrecompileMemo, Walk, with_scratch};
use crate::{
    backend::AccountRead,
    interp::{Miss, MissReason},
    ops::{GuardKind, Op},
    outcome::Applied,
    program::Value,
};

/// A compiled program's native entry (see the module docs).
pub type NativeEntry = unsafe extern "C" fn(regs: *mut U256, host: *mut c_void, call: HostCall) -> u64;

/// The host's entry, handed to native code (see the module docs).
pub type HostCall = unsafe extern "C" fn(host: *mut c_void, what: u64, arg: u64) -> u64;

/// [`HostCall`]: run instructions `arg & 0xffff_ffff .. arg >> 32` (a run of consecutive
/// instructions native code hands back; one call for the run, so that the host's calls, and
/// the blocks around each in native code, grow with the runs rather than the instructions).
pub const HOST_RUN: u64 = 0;
/// [`HostCall`]: the byte arena's length.
pub const HOST_MARK: u64 = 1;
/// [`HostCall`]: truncate the byte arena to `arg`.
pub const HOST_REWIND: u64 = 2;
/// [`HostCall`]: run instructions `arg & 0xffff_ffff .. arg >> 32`, which native code found
/// to miss, and record the miss (the evaluator's own: the first guard that fails), so that
/// native code need not compute which guard of a run of them failed.
pub const HOST_RECHECK: u64 = 3;

/// [`HOST_RUN`]'s answer: the instructions ran.
pub const STEP_OK: u64 = 0;
/// [`HOST_RUN`]'s answer: one missed, before any store.
pub const STEP_MISS: u64 = 1;
/// [`HOST_RUN`]'s answer: one missed after a store; the evaluation is a miss.
pub const STEP_FATAL: u64 = 2;

/// Flags a miss in an entry's result.
pub const MISS: u64 = 1 << 63;
/// The element bits of a miss the host recorded.
pub const HOST_ELEMENT: u64 = 0x7fff_ffff;

/// How native code sees one compiled instruction. Registers below
/// [`Compiled::constants`] are constants ([`Compiled::constant`]).
#[derive(Clone, Copy, Debug)]
pub enum Lowered<'a> {
    /// `dst = op(a)`.
    Word1 {
        /// The operation.
        op: Op,
        /// The result register.
        dst: u32,
        /// The operand.
        a: u32,
    },
    /// `dst = op(a, b)`.
    Word2 {
        /// The operation.
        op: Op,
        /// The result register.
        dst: u32,
        /// The first operand.
        a: u32,
        /// The second operand.
        b: u32,
    },
    /// A miss unless `a == expected`.
    Guard {
        /// The guarded register.
        a: u32,
        /// The expected value's register (a constant).
        expected: u32,
    },
    /// `dst = op(a, b)`, then a miss unless `dst == expected`.
    Word2Guard {
        /// The operation.
        op: Op,
        /// The result register.
        dst: u32,
        /// The first operand.
        a: u32,
        /// The second operand.
        b: u32,
        /// The expected value's register.
        expected: u32,
    },
    /// For each `(y, dst, _)` in order: `dst = (x == y)`, and a miss (at that element) when
    /// they are equal.
    NotIn {
        /// The shared operand.
        x: u32,
        /// The other operands and result registers (the third field is the source position).
        runs: &'a [(u32, u32, u32)],
    },
    /// Anything else: native code calls the host ([`HOST_RUN`]). `stores` when it is a store
    /// (after one, every miss is the evaluation's).
    Host {
        /// Whether the instruction stores.
        stores: bool,
    },
}

/// A node of the merged tree, for native code: run `code`, then either hit with `leaf` or try
/// `children` in order.
#[derive(Clone, Debug)]
pub struct TreeNode<'a> {
    /// Its instructions (indices for [`Compiled::lowered`] and [`HOST_RUN`]).
    pub code: std::ops::Range<usize>,
    /// Its children, as node numbers.
    pub children: &'a [u32],
    /// The leaf it reaches, when it is one.
    pub leaf: Option<u32>,
}

impl Compiled {
    /// A hash of the skeleton: the instructions and the tree, without the constants. Programs
    /// that share one are the same code over other constants, which native code reading its
    /// constants from the register file could compile once for all of them.
    pub fn skeleton_hash(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::hash::DefaultHasher::new();
        self.skel.hash(&mut hasher);
        hasher.finish()
    }

    /// Tree nodes; node 0 is the root.
    pub fn nodes(&self) -> usize {
        self.skel.nodes.len()
    }

    /// Node `i` (below [`Compiled::nodes`]).
    pub fn node(&self, i: u32) -> TreeNode<'_> {
        let n = &self.skel.nodes[i as usize];
        TreeNode {
            code: n.code.0 as usize..n.code.1 as usize,
            children: &self.skel.edges[n.children.0 as usize..n.children.1 as usize],
            leaf: n.leaf,
        }
    }

    /// How many registers are constants (they come first).
    pub fn constants(&self) -> u32 {
        self.words.len() as u32
    }

    /// Word registers an evaluation has, constants included.
    pub fn word_registers(&self) -> usize {
        self.words.len() + self.computed as usize
    }

    /// The value of register `r` when it is a constant.
    pub fn constant(&self, r: u32) -> Option<U256> {
        self.words.get(r as usize).copied()
    }

    /// Instruction `i` (below [`Compiled::code_len`]) as native code sees it.
    pub fn lowered(&self, i: usize) -> Lowered<'_> {
        let inst = &self.skel.code[i];
        if let Some((op, dst, a, b)) = inst.word2() {
            return Lowered::Word2 { op, dst, a, b };
        }
        if let Some((op, dst, a, b, expected, ..)) = inst.word2_guard() {
            return Lowered::Word2Guard { op, dst, a, b, expected };
        }
        match *inst {
            CInst::Word1 { op, dst, a } => Lowered::Word1 { op, dst, a },
            CInst::Guard { a, expected, .. } => Lowered::Guard { a, expected },
            CInst::NotIn { x, from, to, .. } => Lowered::NotIn { x, runs: &self.skel.runs[from as usize..to as usize] },
            CInst::StoreAccount { .. }
            | CInst::StoreSlot { .. }
            | CInst::StoreCode { .. }
            | CInst::Log { .. }
            | CInst::Output { .. }
            | CInst::Created { .. } => Lowered::Host { stores: true },
            _ => Lowered::Host { stores: false },
        }
    }

    /// The word registers instruction `i` reads, each passed to `read` (repeats possible), and
    /// the word register it writes, if any (byte-string registers are not reported: native
    /// code never touches them).
    ///
    /// A code generator that keeps values in SSA uses this to store to the register file
    /// only what a host step will read, and to know which registers a host step leaves in
    /// the file for native code to load.
    pub fn word_operands(&self, i: usize, mut read: impl FnMut(u32)) -> Option<u32> {
        match self.skel.code[i] {
            CInst::Load { dst, a, b, .. } => {
                read(a);
                read(b);
                Some(dst)
            }
            CInst::Ctx { dst, .. } | CInst::ToWord { dst, .. } | CInst::Keccak { dst, .. } | CInst::Len { dst, .. } => {
                Some(dst)
            }
            CInst::Word1 { dst, a, .. } => {
                read(a);
                Some(dst)
            }
            word2_variants!(dst, a, b) => {
                read(a);
                read(b);
                Some(dst)
            }
            CInst::Word3 { dst, a, b, c, .. } => {
                read(a);
                read(b);
                read(c);
                Some(dst)
            }
            CInst::Guard { a, expected, .. } => {
                read(a);
                read(expected);
                None
            }
            CInst::Word2Guard { dst, a, b, expected, .. }
            | CInst::EqGuard { dst, a, b, expected, .. }
            | CInst::LtGuard { dst, a, b, expected, .. } => {
                read(a);
                read(b);
                read(expected);
                Some(dst)
            }
            CInst::NotIn { x, from, to, .. } => {
                // Several results: a code generator handles runs itself (`Lowered::NotIn`).
                read(x);
                self.skel.runs[from as usize..to as usize].iter().for_each(|&(y, _, _)| read(y));
                None
            }
            CInst::ToBytes { a, .. } | CInst::StoreCode { a, .. } | CInst::Created { a } => {
                read(a);
                None
            }
            CInst::StoreAccount { a, balance, nonce, code_hash, .. } => {
                [a, balance, nonce, code_hash].into_iter().for_each(read);
                None
            }
            CInst::StoreSlot { a, k, v, .. } => {
                [a, k, v].into_iter().for_each(read);
                None
            }
            CInst::Log { a, from, to, .. } => {
                read(a);
                self.skel.lists[from as usize..to as usize].iter().for_each(|&t| read(t));
                None
            }
            CInst::Concat { .. } | CInst::Slice { .. } | CInst::PCall { .. } | CInst::Output { .. } => None,
        }
    }

    /// The miss a native entry reported as `code` (see the module docs), `host` being the
    /// host's last recorded one.
    fn native_miss(&self, code: u64, host: Option<Miss>) -> Miss {
        let malformed = Miss { reason: MissReason::Malformed, at: Value(0) };
        let element = (code >> 32) & HOST_ELEMENT;
        if element == HOST_ELEMENT {
            return host.unwrap_or(malformed);
        }
        let guard = |kind: GuardKind, at: u32| Miss { reason: MissReason::Guard(kind), at: Value(at) };
        match self.skel.code.get((code & u64::from(u32::MAX)) as usize) {
            Some(
                CInst::Guard { kind, at, .. }
                | CInst::Word2Guard { kind, at, .. }
                | CInst::EqGuard { kind, at, .. }
                | CInst::LtGuard { kind, at, .. },
            ) => guard(*kind, *at),
            Some(CInst::NotIn { from, to, kind, .. }) => {
                match self.skel.runs[*from as usize..*to as usize].get(element as usize) {
                    Some(&(_, _, at)) => guard(*kind, at),
                    None => malformed,
                }
            }
            _ => malformed,
        }
    }

    /// [`Compiled::evaluate_applied`] through native code compiled from this program.
    ///
    /// # Safety
    ///
    /// `entry` must have been generated from this `Compiled` (its registers, constants, tree
    /// and instruction numbers) following the module's convention, and must still be
    /// mapped.
    ///
    /// With `constants_in_file`, the constants are also written to their registers in the file
    /// first, for code that reads them from there instead of having them inline (the tests'
    /// way of hiding constants from the code generator's folding).
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn evaluate_native<D: AccountRead>(
        &self,
        entry: NativeEntry,
        constants_in_file: bool,
        db: &D,
        cfg: &CfgEnv,
        block: &BlockEnv,
        memo: Option<&PrecompileMemo>,
        out: &mut Applied,
    ) -> Applying {
        out.clear();
        if let Some(miss) = self.env_miss(cfg) {
            return Err(miss);
        }
        with_scratch(|s| {
            self.ready(s);
            if constants_in_file {
                s.words[..self.words.len()].copy_from_slice(&self.words);
            }
            // In debug builds the computed registers start poisoned, so that code reading a
            // register nothing wrote on this path fails the tests instead of finding the
            // right value left by an earlier evaluation (the oracle runs the compact
            // evaluator on the same inputs just before).
            if cfg!(debug_assertions) {
                s.words[self.words.len()..self.word_registers()].fill(U256::from_limbs([0xdead_beef_dead_beef; 4]));
            }
            let regs = s.words.as_mut_ptr();
            let mut host = Host {
                compiled: self,
                walk: Walk { s, outcome: out, stored: false, capture: None },
                db,
                cfg,
                block,
                memo,
                miss: None,
            };
            // SAFETY: the caller guarantees `entry` follows the convention for this program:
            // it writes only registers below `word_registers` (the file is that long and is
            // not resized during the call) and calls back only `host_call::<D>` with `host`.
            let code = unsafe { entry(regs, (&raw mut host).cast(), host_call::<D>) };
            let Host { walk, miss, .. } = host;
            if walk.s.arena.capacity() > super::KEEP_ARENA {
                walk.s.arena = Vec::new();
            }
            if code & MISS != 0 {
                return Err(self.native_miss(code, miss));
            }
            if code >= self.skel.leaves.len() as u64 {
                return Err(Miss { reason: MissReason::Malformed, at: Value(0) });
            }
            Ok(self.finish(code as u32, walk.outcome))
        })
    }
}

/// What a native evaluation's host calls reach.
struct Host<'a, 's, D> {
    compiled: &'a Compiled,
    walk: Walk<'s>,
    db: &'a D,
    cfg: &'a CfgEnv,
    block: &'a BlockEnv,
    memo: Option<&'a PrecompileMemo>,
    /// The last miss an instruction run by the host gave.
    miss: Option<Miss>,
}

/// The host side of the convention (see the module docs).
///
/// # Safety
///
/// `host` is the `Host<D>` [`Compiled::evaluate_native`] passed to the entry.
unsafe extern "C" fn host_call<D: AccountRead>(host: *mut c_void, what: u64, arg: u64) -> u64 {
    // SAFETY: the entry passes back the pointer it was given, to a live `Host<D>`, and no
    // other reference to it is in use while native code runs.
    let host = unsafe { &mut *host.cast::<Host<'_, '_, D>>() };
    match what {
        HOST_RECHECK => {
            let malformed = Miss { reason: MissReason::Malformed, at: Value(0) };
            // SAFETY: as above: the same host, the same convention.
            match unsafe { host_call::<D>((&raw mut *host).cast(), HOST_RUN, arg) } {
                STEP_OK => {
                    host.miss = Some(malformed);
                    1
                }
                _ => 0,
            }
        }
        HOST_RUN => {
            let (from, to) = ((arg & u64::from(u32::MAX)) as usize, (arg >> 32) as usize);
            let Some(inst) = host.compiled.skel.code.get(from..to) else {
                host.miss = Some(Miss { reason: MissReason::Malformed, at: Value(0) });
                return STEP_FATAL;
            };
            // A panic must not unwind through native frames; the evaluation is then a miss.
            let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                host.compiled.run(inst, &mut host.walk, host.db, host.cfg, host.block, host.memo)
            }));
            match ran {
                Ok(Ok(())) => STEP_OK,
                Ok(Err(miss)) => {
                    host.miss = Some(miss);
                    if host.walk.stored { STEP_FATAL } else { STEP_MISS }
                }
                Err(_) => {
                    host.miss = Some(Miss { reason: MissReason::Malformed, at: Value(0) });
                    STEP_FATAL
                }
            }
        }
        HOST_MARK => host.walk.s.arena.len() as u64,
        HOST_REWIND => {
            host.walk.s.arena.truncate(arg as usize);
            STEP_OK
        }
        _ => STEP_FATAL,
    }
}
