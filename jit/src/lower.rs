//! Lowering a compiled program ([`ir::compact::Compiled`]) to Cranelift IR, following
//! `ir::compact::native`'s convention.
//!
//! - **Words** are two `i128` halves (Cranelift has no 256-bit type; x86-64 lowers `i128`
//!   arithmetic to pairs of 64-bit instructions with carries). Constants are immediates,
//!   built at each use; comparisons with a constant and `and` with a constant mask go limb by
//!   limb against immediates, and shifts by a constant amount are 64-bit shifts of limbs.
//!   Results of comparisons stay one-byte booleans until something needs the whole word, and
//!   words known below 2^64 stay one `i64` through masks, comparisons and bitwise operations.
//! - **Segments**: a node's code alternates between runs of instructions the host runs (one
//!   [`HOST_RUN`] call per run) and segments of at least `Limits::min_segment` inline
//!   instructions (a shorter run joins the host's). A segment is one straight-line block: its
//!   guards are and-ed, and one branch at its end leaves it for a cold block where the host
//!   runs the segment again to record which guard failed ([`HOST_RECHECK`]). Its values
//!   live in SSA values within it only; what anything outside the segment reads is stored
//!   to the register file, and read back from there.
//!   So no value lives across a block boundary or a call, where the single-pass register
//!   allocator would spill it, and the blocks grow with the runs, not with the guards.
//! - **Inline**: add, sub, and, or, xor, not, eq, iszero, lt, gt, slt, sgt, min, shifts by a
//!   constant amount, guards and short runs of alias guards. Everything else goes to the
//!   host, which runs the compact evaluator's code for those instructions.
//! - **The tree**: each node's code, then its children in order; a miss before any store
//!   branches to the next sibling (rewinding the byte arena to where the node left it) or,
//!   after the last, to the parent's own failure, as `Compiled::walk` does. The path's first
//!   store starts a host run of its own, so every run's miss has one target.
//! - **The register file's address** is in Cranelift's pinned register (r15 on x86-64).

use std::collections::HashMap;

use cranelift_codegen::{
    ir::{
        AbiParam, Block, BlockArg, Function, InstBuilder, MemFlagsData, SigRef, Signature, UserFuncName, Value,
        condcodes::IntCC, types,
    },
    isa::TargetFrontendConfig,
};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_module::Module;
use ir::{
    compact::{Compiled, HOST_ELEMENT, HOST_MARK, HOST_RECHECK, HOST_REWIND, HOST_RUN, Lowered, MISS},
    ops::Op,
};
use revm::primitives::U256;

use crate::Limits;

/// The entry's signature: `(regs, host, call) -> u64` in the C convention.
pub(crate) fn entry_signature(module: &impl Module) -> Signature {
    let mut sig = module.make_signature();
    for _ in 0..3 {
        sig.params.push(AbiParam::new(types::I64));
    }
    sig.returns.push(AbiParam::new(types::I64));
    sig
}

/// The host's signature: `(host, what, arg) -> u64`.
fn host_signature(call_conv: cranelift_codegen::isa::CallConv) -> Signature {
    let mut sig = Signature::new(call_conv);
    for _ in 0..3 {
        sig.params.push(AbiParam::new(types::I64));
    }
    sig.returns.push(AbiParam::new(types::I64));
    sig
}

/// The result of a miss the host recorded.
const HOST_MISS: u64 = MISS | (HOST_ELEMENT << 32);

/// Bytes per word register.
const WORD: i32 = 32;

/// A word as two `i128` SSA values, low half first.
type Word = (Value, Value);

/// A register's value in SSA form.
#[derive(Clone, Copy, Debug)]
enum V {
    /// Any word.
    Wide(Word),
    /// A word known to be 0 or 1, as an `i8`.
    Bool(Value),
    /// A word known to be below 2^64 (a constant, or masked to 64 bits or fewer), as an
    /// `i64`: comparisons, equality and bitwise operations between such words take 64-bit
    /// instructions.
    Small(Value),
}

/// The longest run of alias guards lowered inline: a longer one goes to the host, one call
/// for the run, rather than code growing with it (merged trees have runs of thousands).
const NOT_IN_INLINE: usize = 8;

/// An instruction run by the host, in `Lowering::segment_of`.
const ON_HOST: u32 = u32::MAX;

/// Which segments read a register (see `Lowering::segment_of`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Readers {
    /// None.
    None,
    /// Only this one.
    One(u32),
    /// Several, or the host.
    Many,
}

struct Lowering<'c, 'f> {
    c: &'c Compiled,
    b: FunctionBuilder<'f>,

    host: Value,
    call: Value,
    host_sig: SigRef,
    /// Returns its one parameter: the result of a miss that ends the evaluation.
    ret: Block,
    /// Register-file accesses: in bounds (the lowering checks), never trapping.
    flags: MemFlagsData,
    /// Constants are read from the register file (see `Limits::opaque_constants`).
    opaque_constants: bool,
    /// Per instruction, the segment it belongs to: a maximal run of inline instructions of
    /// one node, lowered as one straight-line block with one branch for all its guards
    /// ([`ON_HOST`] for an instruction the host runs).
    segment_of: Vec<u32>,
    /// Per register, the segments that read it: what native code computes is stored to the
    /// register file only when something outside its own segment reads it.
    readers: Vec<Readers>,
    /// The segment being lowered.
    segment: u32,
    /// Registers in SSA values in the current segment (computed ones, and those loaded from
    /// the file); cleared at each segment's start, so that no value lives across a block
    /// boundary or a host call (the single-pass allocator would spill it there).
    cache: HashMap<u32, V>,
    /// Whether the segment's guards so far all passed (an `i8`).
    pending: Option<Value>,
}

/// Lowers `c` into `func` (whose signature is [`entry_signature`]).
pub(crate) fn lower(c: &Compiled, func: &mut Function, config: TargetFrontendConfig, limits: &Limits) {
    func.name = UserFuncName::user(0, 0);
    let call_conv = func.signature.call_conv;
    let mut fbc = FunctionBuilderContext::new();
    let mut b = FunctionBuilder::new(func, &mut fbc);
    let host_sig = b.import_signature(host_signature(call_conv));
    let entry = b.create_block();
    b.append_block_params_for_function_params(entry);
    let ret = b.create_block();
    b.append_block_param(ret, types::I64);
    b.switch_to_block(entry);
    let [regs, host, call] = [0, 1, 2].map(|i| b.block_params(entry)[i]);
    // The register file's address lives in the pinned register (r15 on x86-64) for the whole
    // function, so that the allocator does not reload it from the stack at every use (a
    // value live across blocks lives in a stack slot with the single-pass allocator). The
    // pinned register is global to Cranelift: the caller's value is saved here and put back
    // on return; the host, called in the C convention, preserves it.
    let saved = b.ins().get_pinned_reg(types::I64);
    b.ins().set_pinned_reg(regs);
    let flags = MemFlagsData::new().with_notrap();
    let mut l = Lowering {
        c,
        b,

        host,
        call,
        host_sig,
        ret,
        flags,
        opaque_constants: limits.opaque_constants,
        segment_of: Vec::new(),
        readers: vec![Readers::None; c.word_registers()],
        segment: ON_HOST,
        cache: HashMap::new(),
        pending: None,
    };
    l.plan(limits.min_segment.max(1));
    if c.nodes() > 0 {
        l.node(0, ret, false);
    } else {
        let code = l.b.ins().iconst(types::I64, HOST_MISS as i64);
        l.b.ins().jump(ret, &[BlockArg::Value(code)]);
    }
    l.b.switch_to_block(ret);
    let code = l.b.block_params(ret)[0];
    l.b.ins().set_pinned_reg(saved);
    l.b.ins().return_(&[code]);
    l.b.seal_all_blocks();
    l.b.finalize(config);
}

impl Lowering<'_, '_> {
    /// Fills `segment_of` (segments of at least `min_segment` instructions: see
    /// `Limits::min_segment`) and `readers`.
    fn plan(&mut self, min_segment: usize) {
        self.segment_of = vec![ON_HOST; self.c.code_len()];
        let mut segments = 0;
        for n in 0..self.c.nodes() as u32 {
            let code = self.c.node(n).code;
            let mut i = code.start;
            while i < code.end {
                let inline = self.lowerable(i);
                let mut j = i + 1;
                while j < code.end && self.lowerable(j) == inline {
                    j += 1;
                }
                if inline && j - i >= min_segment {
                    self.segment_of[i..j].fill(segments);
                    segments += 1;
                }
                i = j;
            }
        }
        for i in 0..self.c.code_len() {
            let segment = self.segment_of[i];
            let readers = &mut self.readers;
            self.c.word_operands(i, |r| {
                if let Some(readers) = readers.get_mut(r as usize) {
                    *readers = match *readers {
                        Readers::None if segment != ON_HOST => Readers::One(segment),
                        Readers::One(s) if s == segment => Readers::One(s),
                        _ => Readers::Many,
                    };
                }
            });
        }
    }

    /// Whether instruction `i` runs on the host.
    fn on_host(&self, i: usize) -> bool {
        self.segment_of[i] == ON_HOST
    }

    /// Whether native code can run instruction `i` inline.
    fn lowerable(&self, i: usize) -> bool {
        match self.c.lowered(i) {
            Lowered::Word1 { op, .. } => inline1(op),
            Lowered::Word2 { op, a, .. } | Lowered::Word2Guard { op, a, .. } => self.inline2(op, a),
            Lowered::Guard { .. } => true,
            Lowered::NotIn { runs, .. } => runs.len() <= NOT_IN_INLINE,
            Lowered::Host { .. } => false,
        }
    }

    /// Lowers node `n` and below, starting in the current block. `fail` takes a miss's result
    /// when the node misses; `stored` says whether a store ran on the path already.
    fn node(&mut self, n: u32, fail: Block, mut stored: bool) {
        let node = self.c.node(n);
        let c = self.c;
        let stores = |i: usize| matches!(c.lowered(i), Lowered::Host { stores: true });
        let mut i = node.code.start;
        while i < node.code.end {
            let host = self.on_host(i);
            // The path's first store starts a host run of its own: a miss before it lets the
            // walk try a sibling, one from it on ends the evaluation, so each run's miss has
            // one target, known here.
            stored |= host && stores(i);
            let target = if stored { self.ret } else { fail };
            let mut j = i + 1;
            while j < node.code.end && self.on_host(j) == host && !(host && !stored && stores(j)) {
                j += 1;
            }
            if host {
                self.host_run(i, j, target);
            } else {
                self.segment(i, j, target);
            }
            i = j;
        }
        if let Some(leaf) = node.leaf {
            let code = self.b.ins().iconst(types::I64, i64::from(leaf));
            self.b.ins().jump(self.ret, &[BlockArg::Value(code)]);
            return;
        }
        let children = node.children;
        if children.is_empty() {
            // A node with neither leaf nor children reaches no program: a miss.
            let code = self.b.ins().iconst(types::I64, HOST_MISS as i64);
            self.b.ins().jump(if stored { self.ret } else { fail }, &[BlockArg::Value(code)]);
            return;
        }
        let mark = (children.len() > 1 && !stored).then(|| self.host_call(HOST_MARK, None));
        let entries: Vec<Block> = children.iter().map(|_| self.b.create_block()).collect();
        self.b.ins().jump(entries[0], &[]);
        for (k, &child) in children.iter().enumerate() {
            let child_fail = if k + 1 < children.len() {
                let block = self.b.create_block();
                self.b.append_block_param(block, types::I64);
                block
            } else {
                fail
            };
            self.b.switch_to_block(entries[k]);
            self.node(child, child_fail, stored);
            if k + 1 < children.len() {
                // The sibling's miss result is dropped: the next sibling gives its own.
                self.b.switch_to_block(child_fail);
                if let Some(mark) = mark {
                    self.host_call(HOST_REWIND, Some(mark));
                }
                self.b.ins().jump(entries[k + 1], &[]);
            }
        }
    }

    /// Calls the host with `what` and `arg` (an SSA value, or 0).
    fn host_call(&mut self, what: u64, arg: Option<Value>) -> Value {
        let what = self.b.ins().iconst(types::I64, what as i64);
        let arg = arg.unwrap_or_else(|| self.b.ins().iconst(types::I64, 0));
        let call = self.b.ins().call_indirect(self.host_sig, self.call, &[self.host, what, arg]);
        self.b.inst_results(call)[0]
    }

    /// Lowers the inline instructions `from..to` (one segment) as straight-line code, then
    /// one branch, when any of its guards failed, to a cold block that has the host run the
    /// segment again ([`HOST_RECHECK`]: it records the evaluator's miss, at the first guard
    /// that fails) and goes on to `fail`.
    ///
    /// Deferring the guards is sound because nothing inline has an effect or can trap: word
    /// operations, loads from the register file at fixed offsets and stores to it. What a
    /// failed guard lets run computes values no hit uses, and the branch is taken before
    /// the next host call or the node's end. The host's run reads the segment's inputs from
    /// the file (what other segments and the host computed is there: see `write`) and
    /// computes the rest again.
    fn segment(&mut self, from: usize, to: usize, fail: Block) {
        self.cache.clear();
        self.segment = self.segment_of[from];
        self.pending = None;
        for i in from..to {
            self.inst(i);
        }
        if let Some(ok) = self.pending.take() {
            let next = self.b.create_block();
            let missed = self.b.create_block();
            self.b.set_cold_block(missed);
            self.b.ins().brif(ok, next, &[], missed, &[]);
            self.b.switch_to_block(missed);
            let range = self.b.ins().iconst(types::I64, (from as u64 | ((to as u64) << 32)) as i64);
            let disagrees = self.host_call(HOST_RECHECK, Some(range));
            let code = self.b.ins().iconst(types::I64, HOST_MISS as i64);
            // Where the evaluator finds no failing guard, native code is wrong: the
            // evaluation ends with the malformed miss the host recorded.
            self.b.ins().brif(disagrees, self.ret, &[BlockArg::Value(code)], fail, &[BlockArg::Value(code)]);
            self.b.switch_to_block(next);
        }
    }

    /// Lowers inline instruction `i`.
    fn inst(&mut self, i: usize) {
        match self.c.lowered(i) {
            Lowered::Word1 { op, dst, a } => {
                let a = self.read(a);
                let v = self.word1(op, a);
                self.write(dst, v);
            }
            Lowered::Word2 { op: Op::Eq, dst, a, b }
                if self.inline_constant(a).is_some() || self.inline_constant(b).is_some() =>
            {
                let eq = self.equal_regs(a, b);
                self.write(dst, V::Bool(eq));
            }
            Lowered::Word2 { op: Op::And, dst, a, b }
                if self.inline_constant(a).is_some() || self.inline_constant(b).is_some() =>
            {
                let (x, c) = match self.inline_constant(b) {
                    Some(c) => (a, c),
                    None => (b, self.inline_constant(a).expect("one operand is a constant")),
                };
                let x = self.read(x);
                let v = self.and_const(x, c);
                self.write(dst, v);
            }
            Lowered::Word2 { op, dst, a, b } => {
                let (x, y) = (self.read(a), self.read(b));
                let v = self.word2(op, a, x, y);
                self.write(dst, v);
            }
            Lowered::Guard { a, expected } => {
                let eq = self.equal_regs(a, expected);
                self.check(eq);
            }
            Lowered::Word2Guard { op, dst, a, b, expected } => {
                let (x, y) = (self.read(a), self.read(b));
                let v = self.word2(op, a, x, y);
                self.write(dst, v);
                let eq = self.equal_regs(dst, expected);
                self.check(eq);
            }
            Lowered::NotIn { x, runs } => {
                for &(y, dst, _) in runs {
                    let eq = self.equal_regs(x, y);
                    let ne = self.b.ins().bxor_imm_u(eq, 1);
                    self.check(ne);
                    // Past the check the two differ: the result is 0.
                    let zero = self.b.ins().iconst(types::I8, 0);
                    self.write(dst, V::Bool(zero));
                }
            }
            Lowered::Host { .. } => unreachable!("host instructions are run by `host_run`"),
        }
    }

    /// Whether registers `a` and `b` hold the same word, as an `i8`.
    fn equal_regs(&mut self, a: u32, b: u32) -> Value {
        if let Some(c) = self.inline_constant(b) {
            let x = self.read(a);
            return self.equal_const(x, c);
        }
        if let Some(c) = self.inline_constant(a) {
            let y = self.read(b);
            return self.equal_const(y, c);
        }
        let (x, y) = (self.read(a), self.read(b));
        self.equal_v(x, y)
    }

    /// Register `r`'s value when it is a constant native code has inline.
    fn inline_constant(&self, r: u32) -> Option<U256> {
        self.c.constant(r).filter(|_| !self.opaque_constants)
    }

    /// `x & c`, limb by limb: a limb of `c` that is zero gives zero, one that is all ones
    /// gives `x`'s limb, any other an `and` with its immediate (the masks of addresses, of
    /// packed fields and of `uint` widths).
    fn and_const(&mut self, x: V, c: U256) -> V {
        let low = c.as_limbs()[0];
        let (lo, hi) = match x {
            V::Bool(b) if c.bit(0) => return V::Bool(b),
            V::Bool(_) => return V::Bool(self.b.ins().iconst(types::I8, 0)),
            V::Small(x) => return V::Small(self.and_limb(x, low)),
            V::Wide(w) => w,
        };
        let (x0, x1) = self.b.ins().isplit(lo);
        if c < U256::from(1u128 << 64) {
            return V::Small(self.and_limb(x0, low));
        }
        let (x2, x3) = self.b.ins().isplit(hi);
        let mut limbs = [x0, x1, x2, x3];
        for (x, &limb) in limbs.iter_mut().zip(c.as_limbs()) {
            *x = match limb {
                0 => self.b.ins().iconst(types::I64, 0),
                u64::MAX => *x,
                limb => self.b.ins().band_imm_u(*x, limb as i64),
            };
        }
        let lo = self.b.ins().iconcat(limbs[0], limbs[1]);
        let hi = self.b.ins().iconcat(limbs[2], limbs[3]);
        V::Wide((lo, hi))
    }

    /// `x & c` on one 64-bit limb.
    fn and_limb(&mut self, x: Value, c: u64) -> Value {
        match c {
            0 => self.b.ins().iconst(types::I64, 0),
            u64::MAX => x,
            c => self.b.ins().band_imm_u(x, c as i64),
        }
    }

    /// `x == c`, as an `i8`, limb by limb against immediates: the limbs where `c` is zero are
    /// or-ed together and tested once, the others compared with their immediate. The constant
    /// is never built as a word (a guard on a selector, an address or a hash compares with
    /// what would otherwise take six instructions and two registers to materialize).
    fn equal_const(&mut self, x: V, c: U256) -> Value {
        let (lo, hi) = match x {
            V::Bool(b) if c <= U256::ONE => return self.b.ins().icmp_imm_u(IntCC::Equal, b, c.to::<i64>()),
            V::Bool(_) => return self.b.ins().iconst(types::I8, 0),
            V::Small(x) if c < U256::from(1u128 << 64) => {
                return self.b.ins().icmp_imm_u(IntCC::Equal, x, c.as_limbs()[0] as i64);
            }
            V::Small(_) => return self.b.ins().iconst(types::I8, 0),
            V::Wide(w) => w,
        };
        let (x0, x1) = self.b.ins().isplit(lo);
        let (x2, x3) = self.b.ins().isplit(hi);
        let mut zeros: Option<Value> = None;
        let mut equal: Option<Value> = None;
        for (x, &limb) in [x0, x1, x2, x3].into_iter().zip(c.as_limbs()) {
            if limb == 0 {
                zeros = Some(match zeros {
                    Some(z) => self.b.ins().bor(z, x),
                    None => x,
                });
            } else {
                let e = self.b.ins().icmp_imm_u(IntCC::Equal, x, limb as i64);
                equal = Some(match equal {
                    Some(p) => self.b.ins().band(p, e),
                    None => e,
                });
            }
        }
        if let Some(z) = zeros {
            let e = self.b.ins().icmp_imm_u(IntCC::Equal, z, 0);
            equal = Some(match equal {
                Some(p) => self.b.ins().band(p, e),
                None => e,
            });
        }
        equal.expect("a word has four limbs")
    }

    /// Adds a guard to the segment's: a miss unless `ok` (an `i8` 0 or 1) is 1.
    fn check(&mut self, ok: Value) {
        self.pending = Some(match self.pending {
            None => ok,
            Some(all) => self.b.ins().band(all, ok),
        });
    }

    /// Runs instructions `from..to` on the host, one call; a miss branches to `fail` (the
    /// evaluation's end for a run from the path's first store on: see `node`).
    ///
    /// The miss goes through a cold block, laid out at the end of the function, so that the
    /// hit path falls through: a block's programs run cold at import, and each taken branch
    /// the predictor has not seen costs a front-end redirect.
    fn host_run(&mut self, from: usize, to: usize, fail: Block) {
        let range = self.b.ins().iconst(types::I64, (from as u64 | ((to as u64) << 32)) as i64);
        let r = self.host_call(HOST_RUN, Some(range));
        let next = self.b.create_block();
        let missed = self.b.create_block();
        self.b.ins().brif(r, missed, &[], next, &[]);
        self.b.set_cold_block(missed);
        self.b.switch_to_block(missed);
        let code = self.b.ins().iconst(types::I64, HOST_MISS as i64);
        self.b.ins().jump(fail, &[BlockArg::Value(code)]);
        self.b.switch_to_block(next);
    }

    /// Register `r`'s value.
    fn read(&mut self, r: u32) -> V {
        if let Some(v) = self.cache.get(&r) {
            return *v;
        }
        if let Some(value) = self.inline_constant(r) {
            // Built again at every use rather than kept: a constant costs an instruction or two.
            return if value <= U256::ONE {
                V::Bool(self.b.ins().iconst(types::I8, value.to::<i64>()))
            } else if value < U256::from(1u128 << 64) {
                V::Small(self.b.ins().iconst(types::I64, value.as_limbs()[0] as i64))
            } else {
                V::Wide(self.constant(value))
            };
        }
        // Computed outside this segment (by the host, or stored by its segment because this
        // one reads it), or a constant in opaque mode.
        let offset = r as i32 * WORD;
        let flags = self.flags;
        let regs = self.b.ins().get_pinned_reg(types::I64);
        let lo = self.b.ins().load(types::I128, flags, regs, offset);
        let hi = self.b.ins().load(types::I128, flags, regs, offset + 16);
        let v = V::Wide((lo, hi));
        self.cache.insert(r, v);
        v
    }

    /// Sets register `r` to `v`, storing it to the file when something outside this segment
    /// reads it.
    fn write(&mut self, r: u32, v: V) {
        let stored = match self.readers.get(r as usize).copied().unwrap_or(Readers::Many) {
            Readers::None => false,
            Readers::One(s) => s != self.segment,
            Readers::Many => true,
        };
        if stored {
            let w = self.wide(v);
            let offset = r as i32 * WORD;
            let flags = self.flags;
            let regs = self.b.ins().get_pinned_reg(types::I64);
            self.b.ins().store(flags, w.0, regs, offset);
            self.b.ins().store(flags, w.1, regs, offset + 16);
        }
        self.cache.insert(r, v);
    }

    /// `v` as a whole word.
    fn wide(&mut self, v: V) -> Word {
        match v {
            V::Wide(w) => w,
            V::Bool(b) => {
                let lo = self.b.ins().uextend(types::I128, b);
                let zero = self.b.ins().iconst(types::I64, 0);
                let hi = self.b.ins().uextend(types::I128, zero);
                (lo, hi)
            }
            V::Small(x) => {
                let lo = self.b.ins().uextend(types::I128, x);
                let zero = self.b.ins().iconst(types::I64, 0);
                let hi = self.b.ins().uextend(types::I128, zero);
                (lo, hi)
            }
        }
    }

    /// `v` as an `i64` when it is below 2^64 (a boolean or a small word).
    fn small(&mut self, v: V) -> Option<Value> {
        match v {
            V::Small(x) => Some(x),
            V::Bool(b) => Some(self.b.ins().uextend(types::I64, b)),
            V::Wide(_) => None,
        }
    }

    /// A word constant, as SSA values at the current position.
    fn constant(&mut self, w: U256) -> Word {
        let l = w.as_limbs();
        let half = |b: &mut FunctionBuilder<'_>, lo: u64, hi: u64| {
            let lo = b.ins().iconst(types::I64, lo as i64);
            let hi = b.ins().iconst(types::I64, hi as i64);
            b.ins().iconcat(lo, hi)
        };
        (half(&mut self.b, l[0], l[1]), half(&mut self.b, l[2], l[3]))
    }

    /// Whether `op` with first operand `a` is lowered inline.
    fn inline2(&self, op: Op, a: u32) -> bool {
        match op {
            Op::Add | Op::Sub | Op::And | Op::Or | Op::Xor | Op::Eq | Op::Lt | Op::Gt | Op::SLt | Op::SGt | Op::Min => {
                true
            }
            // Shifts by a constant amount.
            Op::Shl | Op::Shr => self.c.constant(a).is_some(),
            // Multiplication too goes to the host: inline, its 256-bit product was about 40
            // Cranelift instructions, a fifth of all code over the shared data, and the hits
            // were no faster with it (`prescient evaluate`: native 10.33x revm with it inline,
            // 10.32x without; compile median 6.5 -> 5.3 ms).
            _ => false,
        }
    }

    fn word1(&mut self, op: Op, a: V) -> V {
        match (op, a) {
            (Op::IsZero, V::Bool(b)) => V::Bool(self.b.ins().bxor_imm_u(b, 1)),
            (Op::IsZero, V::Small(x)) => V::Bool(self.b.ins().icmp_imm_u(IntCC::Equal, x, 0)),
            (Op::IsZero, V::Wide((lo, hi))) => {
                let any = self.b.ins().bor(lo, hi);
                V::Bool(self.b.ins().icmp_imm_u(IntCC::Equal, any, 0))
            }
            (Op::Not, a) => {
                let (lo, hi) = self.wide(a);
                V::Wide((self.b.ins().bnot(lo), self.b.ins().bnot(hi)))
            }
            _ => unreachable!("only inline operations are lowered here"),
        }
    }

    /// `op(x, y)`; `a` is the first operand's register (for constant shift amounts).
    fn word2(&mut self, op: Op, a: u32, x: V, y: V) -> V {
        // Booleans stay booleans through the bitwise operations.
        if let (V::Bool(p), V::Bool(q)) = (x, y) {
            match op {
                Op::And => return V::Bool(self.b.ins().band(p, q)),
                Op::Or => return V::Bool(self.b.ins().bor(p, q)),
                Op::Xor => return V::Bool(self.b.ins().bxor(p, q)),
                Op::Eq => return V::Bool(self.b.ins().icmp(IntCC::Equal, p, q)),
                _ => {}
            }
        }
        // Words below 2^64 stay in 64 bits through comparisons and bitwise operations. Both
        // are non-negative as 256-bit words, so a signed comparison is the unsigned one.
        if matches!(op, Op::Eq | Op::Lt | Op::Gt | Op::SLt | Op::SGt | Op::And | Op::Or | Op::Xor)
            && matches!((x, y), (V::Small(_), V::Small(_) | V::Bool(_)) | (V::Bool(_), V::Small(_)))
        {
            let (p, q) = (self.small(x).expect("small"), self.small(y).expect("small"));
            return match op {
                Op::Eq => V::Bool(self.b.ins().icmp(IntCC::Equal, p, q)),
                Op::Lt | Op::SLt => V::Bool(self.b.ins().icmp(IntCC::UnsignedLessThan, p, q)),
                Op::Gt | Op::SGt => V::Bool(self.b.ins().icmp(IntCC::UnsignedLessThan, q, p)),
                Op::And => V::Small(self.b.ins().band(p, q)),
                Op::Or => V::Small(self.b.ins().bor(p, q)),
                _ => V::Small(self.b.ins().bxor(p, q)),
            };
        }
        match op {
            Op::Eq => V::Bool(self.equal_v(x, y)),
            Op::Lt | Op::Gt | Op::SLt | Op::SGt => {
                let (x, y) = (self.wide(x), self.wide(y));
                let signed = matches!(op, Op::SLt | Op::SGt);
                V::Bool(if matches!(op, Op::Lt | Op::SLt) { self.less(x, y, signed) } else { self.less(y, x, signed) })
            }
            _ => {
                let (x, y) = (self.wide(x), self.wide(y));
                V::Wide(self.word2_wide(op, a, x, y))
            }
        }
    }

    /// `op(x, y)` on whole words, for what does not give a boolean.
    fn word2_wide(&mut self, op: Op, a: u32, x: Word, y: Word) -> Word {
        match op {
            Op::Add => {
                let lo = self.b.ins().iadd(x.0, y.0);
                let carry = self.b.ins().icmp(IntCC::UnsignedLessThan, lo, x.0);
                let carry = self.b.ins().uextend(types::I128, carry);
                let hi = self.b.ins().iadd(x.1, y.1);
                (lo, self.b.ins().iadd(hi, carry))
            }
            Op::Sub => {
                let lo = self.b.ins().isub(x.0, y.0);
                let borrow = self.b.ins().icmp(IntCC::UnsignedLessThan, x.0, y.0);
                let borrow = self.b.ins().uextend(types::I128, borrow);
                let hi = self.b.ins().isub(x.1, y.1);
                (lo, self.b.ins().isub(hi, borrow))
            }
            Op::And => (self.b.ins().band(x.0, y.0), self.b.ins().band(x.1, y.1)),
            Op::Or => (self.b.ins().bor(x.0, y.0), self.b.ins().bor(x.1, y.1)),
            Op::Xor => (self.b.ins().bxor(x.0, y.0), self.b.ins().bxor(x.1, y.1)),
            Op::Min => {
                // `select_spectre_guard`, not `select`: the mid-end turns `select(x < y, x, y)`
                // into `umin`, which x86-64 has no lowering for at `i128`.
                let lt = self.less(x, y, false);
                (self.b.ins().select_spectre_guard(lt, x.0, y.0), self.b.ins().select_spectre_guard(lt, x.1, y.1))
            }
            Op::Shl | Op::Shr => {
                let amount = self.c.constant(a).expect("inline shifts have a constant amount");
                self.shift(op == Op::Shl, amount, y)
            }
            _ => unreachable!("only inline operations are lowered here"),
        }
    }

    /// `w` shifted left (or right) by the constant `amount`, limb by limb with 64-bit shifts
    /// by immediates (Cranelift lowers an `i128` shift as a shift by a variable amount, with
    /// selects for the halves).
    fn shift(&mut self, left: bool, amount: U256, (lo, hi): Word) -> Word {
        if amount >= U256::from(256) {
            let zero = self.constant(U256::ZERO).0;
            return (zero, zero);
        }
        let s = amount.to::<usize>();
        let (q, r) = (s / 64, (s % 64) as i64);
        let (x0, x1) = self.b.ins().isplit(lo);
        let (x2, x3) = self.b.ins().isplit(hi);
        let x = [x0, x1, x2, x3];
        // Limb `i` of the input, or none past either end.
        let limb = |i: isize| usize::try_from(i).ok().and_then(|i| x.get(i).copied());
        let mut out = [x0; 4];
        for (i, o) in out.iter_mut().enumerate() {
            let i = i as isize;
            let q = q as isize;
            // The limb the bits come from, and its neighbour that fills the vacated bits.
            let (from, fill) = if left { (limb(i - q), limb(i - q - 1)) } else { (limb(i + q), limb(i + q + 1)) };
            *o = match (from, fill) {
                (None, _) => self.b.ins().iconst(types::I64, 0),
                (Some(f), _) if r == 0 => f,
                (Some(f), fill) => {
                    let main = if left { self.b.ins().ishl_imm_u(f, r) } else { self.b.ins().ushr_imm_u(f, r) };
                    match fill {
                        None => main,
                        Some(g) => {
                            let carried = if left {
                                self.b.ins().ushr_imm_u(g, 64 - r)
                            } else {
                                self.b.ins().ishl_imm_u(g, 64 - r)
                            };
                            self.b.ins().bor(main, carried)
                        }
                    }
                }
            };
        }
        (self.b.ins().iconcat(out[0], out[1]), self.b.ins().iconcat(out[2], out[3]))
    }

    /// `x == y`, as an `i8`.
    fn equal_v(&mut self, x: V, y: V) -> Value {
        match (x, y) {
            (V::Bool(p), V::Bool(q)) => self.b.ins().icmp(IntCC::Equal, p, q),
            _ => {
                let (x, y) = (self.wide(x), self.wide(y));
                self.equal(x, y)
            }
        }
    }

    /// `x == y` on whole words, as an `i8`.
    fn equal(&mut self, x: Word, y: Word) -> Value {
        let lo = self.b.ins().icmp(IntCC::Equal, x.0, y.0);
        let hi = self.b.ins().icmp(IntCC::Equal, x.1, y.1);
        self.b.ins().band(lo, hi)
    }

    /// `x < y` (signed or not), as an `i8`.
    fn less(&mut self, x: Word, y: Word, signed: bool) -> Value {
        let cc = if signed { IntCC::SignedLessThan } else { IntCC::UnsignedLessThan };
        let hi_lt = self.b.ins().icmp(cc, x.1, y.1);
        let hi_eq = self.b.ins().icmp(IntCC::Equal, x.1, y.1);
        let lo_lt = self.b.ins().icmp(IntCC::UnsignedLessThan, x.0, y.0);
        let low = self.b.ins().band(hi_eq, lo_lt);
        self.b.ins().bor(hi_lt, low)
    }
}

/// Whether a one-operand `op` is lowered inline.
fn inline1(op: Op) -> bool {
    matches!(op, Op::Not | Op::IsZero)
}
