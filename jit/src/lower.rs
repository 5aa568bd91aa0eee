//! Lowering a compiled program ([`ir::compact::Compiled`]) to Cranelift IR, following
//! `ir::compact::native`'s convention.
//!
//! - **Words** are two `i128` halves (Cranelift has no 256-bit type; x86-64 lowers `i128`
//!   arithmetic to pairs of 64-bit instructions with carries). Constants are immediates,
//!   built at each use; comparisons with a constant and `and` with a constant mask go limb by
//!   limb against immediates. Results of comparisons stay one-byte booleans until something
//!   needs the whole word.
//! - **Registers** live in SSA values along a path of the tree (a value defined in a node
//!   dominates the node's descendants). Only what a host step reads is stored to the register
//!   file, and only what a host step wrote is loaded from it; after a host call, stored
//!   registers are let go (reloaded) to keep live ranges short.
//! - **Inline**: add, sub, mul, and, or, xor, not, eq, iszero, lt, gt, slt, sgt, min, shifts
//!   by a constant amount, guards and runs of alias guards. Everything else goes to the host
//!   ([`HOST_STEP`]), which runs the compact evaluator's code for that one instruction.
//! - **The tree**: each node's code, then its children in order; a miss before any store
//!   branches to the next sibling (rewinding the byte arena to where the node left it) or,
//!   after the last, to the parent's own failure, as `Compiled::walk` does.

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
    compact::{Compiled, HOST_ELEMENT, HOST_MARK, HOST_REWIND, HOST_STEP, Lowered, MISS, STEP_FATAL},
    ops::Op,
};
use revm::primitives::U256;

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
}

struct Lowering<'c, 'f> {
    c: &'c Compiled,
    b: FunctionBuilder<'f>,
    regs: Value,
    host: Value,
    call: Value,
    host_sig: SigRef,
    /// Returns its one parameter: the result of a miss that ends the evaluation.
    ret: Block,
    /// Register-file accesses: in bounds (the lowering checks), never trapping.
    flags: MemFlagsData,
    /// Constants are read from the register file (see `Limits::opaque_constants`).
    opaque_constants: bool,
    /// Registers already in SSA values on the current path (computed ones, and constants read
    /// from the file under `opaque_constants`), each with whether that value is also in the
    /// register file (loaded from it, or stored).
    cache: HashMap<u32, (V, bool)>,
    /// Registers some host step reads: what native code computes into them is stored.
    host_reads: Vec<bool>,
    /// Registers in the register file when native code needs them: written by a host step,
    /// stored because a host step reads them, or constants in opaque mode.
    in_file: Vec<bool>,
}

/// Lowers `c` into `func` (whose signature is [`entry_signature`]).
pub(crate) fn lower(c: &Compiled, func: &mut Function, config: TargetFrontendConfig, opaque_constants: bool) {
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
    let flags = MemFlagsData::new().with_notrap();
    let registers = c.word_registers();
    let mut l = Lowering {
        c,
        b,
        regs,
        host,
        call,
        host_sig,
        ret,
        flags,
        opaque_constants,
        cache: HashMap::new(),
        host_reads: vec![false; registers],
        in_file: vec![false; registers],
    };
    l.mark_file_registers();
    if c.nodes() > 0 {
        l.node(0, ret, false);
    } else {
        let code = l.b.ins().iconst(types::I64, HOST_MISS as i64);
        l.b.ins().return_(&[code]);
    }
    l.b.switch_to_block(ret);
    let code = l.b.block_params(ret)[0];
    l.b.ins().return_(&[code]);
    l.b.seal_all_blocks();
    l.b.finalize(config);
}

impl Lowering<'_, '_> {
    /// Fills `host_reads` and `in_file` from what each host step reads and writes.
    fn mark_file_registers(&mut self) {
        for i in 0..self.c.code_len() {
            if !self.on_host(i) {
                continue;
            }
            let reads = &mut self.host_reads;
            let written = self.c.word_operands(i, |r| {
                if let Some(flag) = reads.get_mut(r as usize) {
                    *flag = true;
                }
            });
            if let Some(flag) = written.and_then(|r| self.in_file.get_mut(r as usize)) {
                *flag = true;
            }
        }
        for (r, read) in self.host_reads.iter().enumerate() {
            self.in_file[r] |= *read;
        }
        if self.opaque_constants {
            self.in_file[..self.c.constants() as usize].fill(true);
        }
    }

    /// Whether instruction `i` runs on the host.
    fn on_host(&self, i: usize) -> bool {
        match self.c.lowered(i) {
            Lowered::Word1 { op, .. } => !inline1(op),
            Lowered::Word2 { op, a, .. } | Lowered::Word2Guard { op, a, .. } => !self.inline2(op, a),
            Lowered::Guard { .. } | Lowered::NotIn { .. } => false,
            Lowered::Host { .. } => true,
        }
    }

    /// Lowers node `n` and below, starting in the current block. `fail` takes a miss's result
    /// when the node misses; `stored` says whether a store ran on the path already.
    fn node(&mut self, n: u32, fail: Block, mut stored: bool) {
        let node = self.c.node(n);
        for i in node.code.clone() {
            let target = if stored { self.ret } else { fail };
            self.inst(i, target);
            if let Lowered::Host { stores: true } = self.c.lowered(i) {
                stored = true;
            }
        }
        if let Some(leaf) = node.leaf {
            let code = self.b.ins().iconst(types::I64, i64::from(leaf));
            self.b.ins().return_(&[code]);
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
        let cache = self.cache.clone();
        for (k, &child) in children.iter().enumerate() {
            let child_fail = if k + 1 < children.len() {
                let block = self.b.create_block();
                self.b.append_block_param(block, types::I64);
                block
            } else {
                fail
            };
            self.b.switch_to_block(entries[k]);
            self.cache = cache.clone();
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

    /// Lowers instruction `i`; a miss branches to `fail` with its result.
    fn inst(&mut self, i: usize, fail: Block) {
        let at = i as u64;
        if self.on_host(i) {
            return self.host_step(i, fail);
        }
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
                self.check(eq, fail, MISS | at);
            }
            Lowered::Word2Guard { op, dst, a, b, expected } => {
                let (x, y) = (self.read(a), self.read(b));
                let v = self.word2(op, a, x, y);
                self.write(dst, v);
                let eq = self.equal_regs(dst, expected);
                self.check(eq, fail, MISS | at);
            }
            Lowered::NotIn { x, runs } => {
                for (k, &(y, dst, _)) in runs.iter().enumerate() {
                    let eq = self.equal_regs(x, y);
                    let ne = self.b.ins().bxor_imm_u(eq, 1);
                    self.check(ne, fail, MISS | ((k as u64) << 32) | at);
                    // Past the check the two differ: the result is 0.
                    let zero = self.b.ins().iconst(types::I8, 0);
                    self.write(dst, V::Bool(zero));
                }
            }
            Lowered::Host { .. } => unreachable!("host instructions are stepped above"),
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
        let (lo, hi) = match x {
            V::Bool(b) if c.bit(0) => return V::Bool(b),
            V::Bool(_) => return V::Bool(self.b.ins().iconst(types::I8, 0)),
            V::Wide(w) => w,
        };
        let (x0, x1) = self.b.ins().isplit(lo);
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

    /// `x == c`, as an `i8`, limb by limb against immediates: the limbs where `c` is zero are
    /// or-ed together and tested once, the others compared with their immediate. The constant
    /// is never built as a word (a guard on a selector, an address or a hash compares with
    /// what would otherwise take six instructions and two registers to materialize).
    fn equal_const(&mut self, x: V, c: U256) -> Value {
        let (lo, hi) = match x {
            V::Bool(b) if c <= U256::ONE => return self.b.ins().icmp_imm_u(IntCC::Equal, b, c.to::<i64>()),
            V::Bool(_) => return self.b.ins().iconst(types::I8, 0),
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

    /// Continues when `ok` (an `i8` 0 or 1) is 1; otherwise branches to `fail` with `code`.
    ///
    /// The miss goes through a cold block of its own, laid out at the end of the function, so
    /// that the hit path falls through every check: a block's programs run cold at import,
    /// and each taken branch the predictor has not seen costs a front-end redirect.
    fn check(&mut self, ok: Value, fail: Block, code: u64) {
        let next = self.b.create_block();
        let missed = self.b.create_block();
        self.b.set_cold_block(missed);
        self.b.ins().brif(ok, next, &[], missed, &[]);
        self.b.switch_to_block(missed);
        let code = self.b.ins().iconst(types::I64, code as i64);
        self.b.ins().jump(fail, &[BlockArg::Value(code)]);
        self.b.switch_to_block(next);
    }

    /// Runs instruction `i` on the host.
    fn host_step(&mut self, i: usize, fail: Block) {
        let index = self.b.ins().iconst(types::I64, i as i64);
        let r = self.host_call(HOST_STEP, Some(index));
        // What the path cached is still right (registers are written once on a path); what is
        // cheap to get again (registers in the file; inline constants are never cached) is let
        // go to keep live ranges across calls short.
        // (Whether a register's value is in the file is a property of this path: a register
        // numbered alike in a sibling's subtree may be stored there and not here.)
        self.cache.retain(|_, &mut (_, stored)| !stored);
        let next = self.b.create_block();
        let missed = self.b.create_block();
        self.b.ins().brif(r, missed, &[], next, &[]);
        self.b.set_cold_block(missed);
        self.b.switch_to_block(missed);
        let code = self.b.ins().iconst(types::I64, HOST_MISS as i64);
        let fatal = self.b.ins().icmp_imm_u(IntCC::Equal, r, STEP_FATAL as i64);
        self.b.ins().brif(fatal, self.ret, &[BlockArg::Value(code)], fail, &[BlockArg::Value(code)]);
        self.b.switch_to_block(next);
    }

    /// Register `r`'s value.
    fn read(&mut self, r: u32) -> V {
        if let Some((v, _)) = self.cache.get(&r) {
            return *v;
        }
        if let Some(value) = self.c.constant(r).filter(|_| !self.opaque_constants) {
            // Built again at every use rather than kept: a constant kept in a register along
            // the path is a live range the allocator must carry (and spill) across every
            // host call, while building it again costs an instruction or two.
            return if value <= U256::ONE {
                V::Bool(self.b.ins().iconst(types::I8, value.to::<i64>()))
            } else {
                V::Wide(self.constant(value))
            };
        }
        // Every register native code reads was defined on the current path: either in SSA
        // (the cache) or, past a host call, in the file (`in_file`).
        debug_assert!(
            self.in_file.get(r as usize).copied().unwrap_or(false),
            "register {r} is neither cached nor in the file"
        );
        let offset = r as i32 * WORD;
        let flags = self.flags;
        let lo = self.b.ins().load(types::I128, flags, self.regs, offset);
        let hi = self.b.ins().load(types::I128, flags, self.regs, offset + 16);
        let v = V::Wide((lo, hi));
        self.cache.insert(r, (v, true));
        v
    }

    /// Sets register `r` to `v`, storing it to the file when a host step reads it.
    fn write(&mut self, r: u32, v: V) {
        let stored = self.host_reads.get(r as usize).copied().unwrap_or(true);
        if stored {
            let w = self.wide(v);
            let offset = r as i32 * WORD;
            let flags = self.flags;
            self.b.ins().store(flags, w.0, self.regs, offset);
            self.b.ins().store(flags, w.1, self.regs, offset + 16);
        }
        self.cache.insert(r, (v, stored));
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
            Op::Add
            | Op::Sub
            | Op::Mul
            | Op::And
            | Op::Or
            | Op::Xor
            | Op::Eq
            | Op::Lt
            | Op::Gt
            | Op::SLt
            | Op::SGt
            | Op::Min => true,
            // Shifts by a constant amount.
            Op::Shl | Op::Shr => self.c.constant(a).is_some(),
            _ => false,
        }
    }

    fn word1(&mut self, op: Op, a: V) -> V {
        match (op, a) {
            (Op::IsZero, V::Bool(b)) => V::Bool(self.b.ins().bxor_imm_u(b, 1)),
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
            Op::Mul => self.mul(x, y),
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

    /// `x * y` modulo 2^256. With `x = X1·2^128 + X0` (and `y` alike), that is the full
    /// 256-bit product `X0·Y0` plus `(X0·Y1 + X1·Y0) mod 2^128` in the high half; `X0·Y0`
    /// comes from four 64-bit products (`imul` and `umulhi`) with their carries.
    fn mul(&mut self, x: Word, y: Word) -> Word {
        let (a0, a1) = self.b.ins().isplit(x.0);
        let (b0, b1) = self.b.ins().isplit(y.0);
        // The 128-bit product of two 64-bit limbs.
        let wide = |l: &mut Self, p: Value, q: Value| {
            let lo = l.b.ins().imul(p, q);
            let hi = l.b.ins().umulhi(p, q);
            l.b.ins().iconcat(lo, hi)
        };
        let p00 = wide(self, a0, b0);
        let p01 = wide(self, a0, b1);
        let p10 = wide(self, a1, b0);
        let p11 = wide(self, a1, b1);
        // mid = p01 + p10 (may carry out at bit 192 of the product).
        let mid = self.b.ins().iadd(p01, p10);
        let mid_carry = self.b.ins().icmp(IntCC::UnsignedLessThan, mid, p01);
        // low = p00 + (mid << 64) (may carry into bit 128).
        let shifted = self.b.ins().ishl_imm_u(mid, 64);
        let low = self.b.ins().iadd(p00, shifted);
        let low_carry = self.b.ins().icmp(IntCC::UnsignedLessThan, low, p00);
        // high = p11 + (mid >> 64) + mid_carry·2^64 + low_carry.
        let mid_high = self.b.ins().ushr_imm_u(mid, 64);
        let mut high = self.b.ins().iadd(p11, mid_high);
        let mid_carry = self.b.ins().uextend(types::I128, mid_carry);
        let mid_carry = self.b.ins().ishl_imm_u(mid_carry, 64);
        high = self.b.ins().iadd(high, mid_carry);
        let low_carry = self.b.ins().uextend(types::I128, low_carry);
        high = self.b.ins().iadd(high, low_carry);
        // The cross terms, modulo 2^128.
        let c1 = self.b.ins().imul(x.0, y.1);
        let c2 = self.b.ins().imul(x.1, y.0);
        high = self.b.ins().iadd(high, c1);
        high = self.b.ins().iadd(high, c2);
        (low, high)
    }

    /// `w` shifted left (or right) by the constant `amount`.
    fn shift(&mut self, left: bool, amount: U256, (lo, hi): Word) -> Word {
        let zero = self.constant(U256::ZERO).0;
        if amount >= U256::from(256) {
            return (zero, zero);
        }
        let s = amount.to::<u32>() as i64;
        match (left, s) {
            (_, 0) => (lo, hi),
            (true, 128) => (zero, lo),
            (false, 128) => (hi, zero),
            (true, s) if s > 128 => (zero, self.b.ins().ishl_imm_u(lo, s - 128)),
            (false, s) if s > 128 => (self.b.ins().ushr_imm_u(hi, s - 128), zero),
            (true, s) => {
                let carried = self.b.ins().ushr_imm_u(lo, 128 - s);
                let high = self.b.ins().ishl_imm_u(hi, s);
                (self.b.ins().ishl_imm_u(lo, s), self.b.ins().bor(high, carried))
            }
            (false, s) => {
                let carried = self.b.ins().ishl_imm_u(hi, 128 - s);
                let low = self.b.ins().ushr_imm_u(lo, s);
                (self.b.ins().bor(low, carried), self.b.ins().ushr_imm_u(hi, s))
            }
        }
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
