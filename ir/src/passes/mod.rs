//! Optimization passes, one file per pass, each a function `Program -> Program`.
//!
//! The recorder already folds constants and shares identical instructions while it builds
//! (see `program::Builder`); these passes do the same for programs from anywhere (parsed,
//! merged, hand-written in golden tests) and add what needs the whole program: alias-aware
//! load forwarding, dead-code elimination and store sinking. Every pass preserves the
//! program's meaning on every state; the verifier holds before and after.

mod bytes_forward;
mod const_fold;
mod cse;
mod dce;
mod guard_fold;
mod load_forward;
mod store_sink;

pub use bytes_forward::bytes_forward;
pub use const_fold::const_fold;
pub use cse::cse;
pub use dce::dce;
pub use guard_fold::guard_fold;
pub use load_forward::load_forward;
pub use store_sink::store_sink;

use crate::program::{Inst, Program, Value};

/// The standard pipeline: forwarding exposes duplicates, folding exposes more, memory read
/// back is resolved to what was written, guards move from comparison results to the compared
/// values, CSE merges duplicates (guards that became equal too), DCE drops what nothing uses,
/// and stores go last.
pub fn optimize(p: &Program) -> Program {
    store_sink(&dce(&cse(&guard_fold(&bytes_forward(&const_fold(&load_forward(p)))))))
}

/// Rebuilds a program instruction by instruction, renumbering values.
pub(crate) struct Rewriter {
    pub(crate) out: Program,
    map: Vec<Option<Value>>,
}

impl Rewriter {
    pub(crate) fn new(p: &Program) -> Self {
        let out = Program { insts: Vec::with_capacity(p.insts.len()), ..p.clone() };
        Self { out, map: Vec::with_capacity(p.insts.len()) }
    }

    /// The new value for old value `v` (every operand is mapped before it is used).
    pub(crate) fn map(&self, v: Value) -> Value {
        self.map[v.index()].expect("operands are rewritten before their users")
    }

    /// `inst` with its operands renamed.
    pub(crate) fn renamed(&self, inst: &Inst) -> Inst {
        Inst { op: inst.op, args: inst.args.iter().map(|a| self.map(*a)).collect(), imm: inst.imm.clone() }
    }

    /// Emits `inst` as the image of the next old instruction.
    pub(crate) fn emit(&mut self, inst: Inst) -> Value {
        let v = Value(self.out.insts.len() as u32);
        self.out.insts.push(inst);
        self.map.push(Some(v));
        v
    }

    /// Maps the next old instruction onto an existing new value (it is not emitted).
    pub(crate) fn alias(&mut self, v: Value) {
        self.map.push(Some(v));
    }

    /// Drops the next old instruction (nothing may use it).
    pub(crate) fn drop_inst(&mut self) {
        self.map.push(None);
    }

    pub(crate) fn finish(self) -> Program {
        self.out
    }
}
