//! Lowering a compiled program ([`ir::compact::Compiled`]) to Cranelift IR, following
//! `ir::compact::native`'s convention.
//!
//! - **Words** are two `i128` halves (Cranelift has no 256-bit type; x86-64 lowers `i128`
//!   arithmetic to pairs of 64-bit instructions with carries). Constants are immediates.
//!   A computed register is loaded from the register file once per straight-line stretch and
//!   kept in SSA values; what native code computes is also stored back, since the host reads
//!   registers from the file.
//! - **Inline**: add, sub, and, or, xor, not, eq, iszero, lt, gt, slt, sgt, min, shifts by a
//!   constant amount, guards and runs of alias guards. Everything else goes to the host
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
    /// Words (computed or constant) already in SSA values on the current stretch.
    cache: HashMap<u32, Word>,
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
    let mut l = Lowering { c, b, regs, host, call, host_sig, ret, flags, opaque_constants, cache: HashMap::new() };
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
        match self.c.lowered(i) {
            Lowered::Word1 { op, dst, a } if inline1(op) => {
                let a = self.read(a);
                let v = self.word1(op, a);
                self.write(dst, v);
            }
            Lowered::Word2 { op, dst, a, b } if self.inline2(op, a) => {
                let (x, y) = (self.read(a), self.read(b));
                let v = self.word2(op, a, x, y);
                self.write(dst, v);
            }
            Lowered::Guard { a, expected } => {
                let (x, y) = (self.read(a), self.read(expected));
                let eq = self.equal(x, y);
                self.check(eq, fail, MISS | at);
            }
            Lowered::Word2Guard { op, dst, a, b, expected } if self.inline2(op, a) => {
                let (x, y) = (self.read(a), self.read(b));
                let v = self.word2(op, a, x, y);
                self.write(dst, v);
                let e = self.read(expected);
                let eq = self.equal(v, e);
                self.check(eq, fail, MISS | at);
            }
            Lowered::NotIn { x, runs } => {
                let xv = self.read(x);
                let zero = self.constant(U256::ZERO);
                for (k, &(y, dst, _)) in runs.iter().enumerate() {
                    let yv = self.read(y);
                    let eq = self.equal(xv, yv);
                    let ne = self.b.ins().bxor_imm_u(eq, 1);
                    self.check(ne, fail, MISS | ((k as u64) << 32) | at);
                    // Past the check the two differ: the result is 0.
                    self.write(dst, zero);
                }
            }
            _ => self.host_step(i, fail),
        }
    }

    /// Continues when `ok` (an `i8` 0 or 1) is 1; otherwise branches to `fail` with `code`.
    fn check(&mut self, ok: Value, fail: Block, code: u64) {
        let next = self.b.create_block();
        let code = self.b.ins().iconst(types::I64, code as i64);
        self.b.ins().brif(ok, next, &[], fail, &[BlockArg::Value(code)]);
        self.b.switch_to_block(next);
    }

    /// Runs instruction `i` on the host.
    fn host_step(&mut self, i: usize, fail: Block) {
        let index = self.b.ins().iconst(types::I64, i as i64);
        let r = self.host_call(HOST_STEP, Some(index));
        // The host may have written its result register; what this stretch cached is still
        // right (registers are written once on a path), but is let go to keep live ranges short.
        self.cache.clear();
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
    fn read(&mut self, r: u32) -> Word {
        if let Some(w) = self.cache.get(&r) {
            return *w;
        }
        if let Some(value) = self.c.constant(r).filter(|_| !self.opaque_constants) {
            let w = self.constant(value);
            self.cache.insert(r, w);
            return w;
        }
        let offset = r as i32 * WORD;
        let flags = self.flags;
        let lo = self.b.ins().load(types::I128, flags, self.regs, offset);
        let hi = self.b.ins().load(types::I128, flags, self.regs, offset + 16);
        self.cache.insert(r, (lo, hi));
        (lo, hi)
    }

    /// Writes `w` to register `r`.
    fn write(&mut self, r: u32, w: Word) {
        let offset = r as i32 * WORD;
        let flags = self.flags;
        self.b.ins().store(flags, w.0, self.regs, offset);
        self.b.ins().store(flags, w.1, self.regs, offset + 16);
        self.cache.insert(r, w);
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
            _ => false,
        }
    }

    fn word1(&mut self, op: Op, (lo, hi): Word) -> Word {
        match op {
            Op::Not => (self.b.ins().bnot(lo), self.b.ins().bnot(hi)),
            Op::IsZero => {
                let any = self.b.ins().bor(lo, hi);
                let zero = self.b.ins().icmp_imm_u(IntCC::Equal, any, 0);
                self.boolean(zero)
            }
            _ => unreachable!("only inline operations are lowered here"),
        }
    }

    /// `op(x, y)`; `a` is the first operand's register (for constant shift amounts).
    fn word2(&mut self, op: Op, a: u32, x: Word, y: Word) -> Word {
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
            Op::Eq => {
                let eq = self.equal(x, y);
                self.boolean(eq)
            }
            Op::Lt => {
                let lt = self.less(x, y, false);
                self.boolean(lt)
            }
            Op::Gt => {
                let gt = self.less(y, x, false);
                self.boolean(gt)
            }
            Op::SLt => {
                let lt = self.less(x, y, true);
                self.boolean(lt)
            }
            Op::SGt => {
                let gt = self.less(y, x, true);
                self.boolean(gt)
            }
            Op::Min => {
                let lt = self.less(x, y, false);
                (self.b.ins().select(lt, x.0, y.0), self.b.ins().select(lt, x.1, y.1))
            }
            Op::Shl | Op::Shr => {
                let amount = self.c.constant(a).expect("inline shifts have a constant amount");
                self.shift(op == Op::Shl, amount, y)
            }
            _ => unreachable!("only inline operations are lowered here"),
        }
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

    /// An `i8` 0 or 1 as a word.
    fn boolean(&mut self, v: Value) -> Word {
        let lo = self.b.ins().uextend(types::I128, v);
        let zero = self.constant(U256::ZERO).0;
        (lo, zero)
    }
}

/// Whether a one-operand `op` is lowered inline.
fn inline1(op: Op) -> bool {
    matches!(op, Op::Not | Op::IsZero)
}
