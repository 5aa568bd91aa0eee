//! Programs: straight-line SSA over 256-bit words and byte strings.
//!
//! A [`Program`] is one path of one transaction: loads, compute, guards, then stores. The
//! result of instruction `N` is the value `vN` (instructions without a result still take an
//! index, so numbering is the line number of the text format). Gas, refund and status are
//! constants of the path; everything the path's data depends on is an instruction.

use std::{collections::HashMap, fmt};

use revm::primitives::{Bytes, U256, hardfork::SpecId};
use serde::{Deserialize, Serialize};

pub use crate::ops::{AccountFlags, Imm};
use crate::{
    ops::{GuardKind, Op, OpKind},
    outcome::TxStatus,
    semantics::Val,
};

/// An SSA value: the result of the instruction at the same index. Prints as `v7`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Value(pub u32);

impl Value {
    /// The instruction index defining this value.
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}", self.0)
    }
}

/// One instruction.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Inst {
    /// The operation.
    pub op: Op,
    /// Operands, each defined by an earlier instruction.
    pub args: Vec<Value>,
    /// The immediate.
    pub imm: Imm,
}

/// One path of one transaction, as a straight-line program.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Program {
    /// Instructions; `insts[N]` defines `vN`.
    pub insts: Vec<Inst>,
    /// How the transaction ends on this path.
    pub status: Option<TxStatus>,
    /// Receipt gas on this path.
    pub gas_used: u64,
    /// Refund granted on this path.
    pub gas_refunded: u64,
    /// The chain rules the program was recorded under; it only evaluates under the same.
    pub env: ProgramEnv,
}

/// The chain rules a program was recorded under.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgramEnv {
    /// The spec.
    pub spec: SpecId,
    /// The chain id.
    pub chain_id: u64,
}

impl Default for ProgramEnv {
    fn default() -> Self {
        Self { spec: SpecId::default(), chain_id: 1 }
    }
}

impl Program {
    /// The instruction defining `v`.
    pub fn inst(&self, v: Value) -> &Inst {
        &self.insts[v.index()]
    }

    /// The constant word `v` holds, when it is a `const`.
    pub fn as_const(&self, v: Value) -> Option<U256> {
        match &self.inst(v).imm {
            Imm::Word(w) if self.inst(v).op == Op::Const => Some(*w),
            _ => None,
        }
    }

    /// Number of guards.
    pub fn guard_count(&self) -> usize {
        self.insts.iter().filter(|i| i.op == Op::Guard).count()
    }
}

/// Builds a program while recording, folding constants and sharing identical pure
/// instructions as it goes, and carrying the **traced** (concrete) value of every value.
///
/// Folding here is what keeps traces small (the stack, jumps and every transaction constant
/// disappear while recording); the passes do the same on programs from elsewhere (parsed,
/// merged). Because every value carries what the trace saw, a guard's expected value is by
/// construction the traced one: the tracer never states it separately.
#[derive(Debug, Default)]
pub struct Builder {
    program: Program,
    traced: Vec<Option<Val>>,
    interned: HashMap<Inst, Value>,
}

impl Builder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends `inst` whose traced value is `traced`, reusing an identical earlier pure
    /// instruction.
    pub fn push(&mut self, inst: Inst, traced: Option<Val>) -> Value {
        if inst.op.is_pure()
            && let Some(v) = self.interned.get(&inst)
        {
            return *v;
        }
        let v = Value(self.program.insts.len() as u32);
        if inst.op.is_pure() {
            self.interned.insert(inst.clone(), v);
        }
        self.program.insts.push(inst);
        self.traced.push(traced);
        v
    }

    /// A word constant.
    pub fn word(&mut self, w: U256) -> Value {
        self.push(Inst { op: Op::Const, args: vec![], imm: Imm::Word(w) }, Some(Val::Word(w)))
    }

    /// A byte-string constant.
    pub fn bytes(&mut self, b: Bytes) -> Value {
        let traced = Some(Val::Bytes(b.clone()));
        self.push(Inst { op: Op::ConstBytes, args: vec![], imm: Imm::Bytes(b) }, traced)
    }

    /// A load or context read that returned `traced` in the trace.
    pub fn load(&mut self, op: Op, args: &[Value], traced: U256) -> Value {
        debug_assert!(matches!(op.kind(), OpKind::Load | OpKind::Context), "{op} is not a load");
        self.push(Inst { op, args: args.to_vec(), imm: Imm::None }, Some(Val::Word(traced)))
    }

    /// A computation (with immediate `imm`), folded when every operand is a constant.
    pub fn compute_imm(&mut self, op: Op, args: &[Value], imm: Imm) -> Value {
        debug_assert_eq!(op.kind(), OpKind::Compute);
        let inst = Inst { op, args: args.to_vec(), imm };
        let arg_vals: Option<Vec<&Val>> = args.iter().map(|a| self.traced[a.index()].as_ref()).collect();
        let traced = arg_vals.and_then(|vals| crate::semantics::compute_val(op, &inst.imm, &vals));
        if args.iter().all(|a| self.program.inst(*a).op.kind() == OpKind::Const) {
            match &traced {
                Some(Val::Word(w)) => return self.word(*w),
                Some(Val::Bytes(b)) => return self.bytes(b.clone()),
                None => {}
            }
        }
        self.push(inst, traced)
    }

    /// A word or byte computation without immediate.
    pub fn compute(&mut self, op: Op, args: &[Value]) -> Value {
        self.compute_imm(op, args, Imm::None)
    }

    /// Asserts that `v` keeps the value it had in the trace. A guard on a constant always
    /// holds and is dropped.
    pub fn guard(&mut self, kind: GuardKind, v: Value) {
        if self.program.as_const(v).is_some() {
            return;
        }
        let Some(Val::Word(expected)) = self.traced(v).cloned() else {
            // Only words are guarded; a byte string here is a tracer bug.
            panic!("guard on {v}, which has no traced word: a tracer bug");
        };
        self.push(Inst { op: Op::Guard, args: vec![v], imm: Imm::Guard(kind, expected) }, None);
    }

    /// Appends a store.
    pub fn store(&mut self, op: Op, args: &[Value], imm: Imm) {
        debug_assert_eq!(op.kind(), OpKind::Store);
        self.push(Inst { op, args: args.to_vec(), imm }, None);
    }

    /// The constant word `v` holds, if any.
    pub fn as_const(&self, v: Value) -> Option<U256> {
        self.program.as_const(v)
    }

    /// The instruction defining `v`.
    pub fn program_inst(&self, v: Value) -> &Inst {
        self.program.inst(v)
    }

    /// Number of instructions so far.
    pub fn len(&self) -> usize {
        self.program.insts.len()
    }

    /// Whether nothing has been built yet.
    pub fn is_empty(&self) -> bool {
        self.program.insts.is_empty()
    }

    /// The value `v` had in the trace.
    pub fn traced(&self, v: Value) -> Option<&Val> {
        self.traced.get(v.index()).and_then(Option::as_ref)
    }

    /// The traced word of `v` (zero for a byte string, which callers never ask for).
    pub fn traced_word(&self, v: Value) -> U256 {
        match self.traced(v) {
            Some(Val::Word(w)) => *w,
            _ => U256::ZERO,
        }
    }

    /// Finishes the program with the path's constants and environment.
    pub fn finish(mut self, env: ProgramEnv, status: TxStatus, gas_used: u64, gas_refunded: u64) -> Program {
        self.program.env = env;
        self.program.status = Some(status);
        self.program.gas_used = gas_used;
        self.program.gas_refunded = gas_refunded;
        self.program
    }
}
