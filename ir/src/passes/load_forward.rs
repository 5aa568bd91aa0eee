//! Load forwarding across guarded aliases.
//!
//! Stores are outputs at the end of a program, so no load ever follows a store: within one
//! program a load's value is decided by its operands alone. When a guard pins
//! `eq(x, y) == 1` (an alias guard), `x` and `y` are equal on every hit, so a load through
//! `y` reads exactly what the same load through `x` read: it is forwarded. The guard stays,
//! which is what makes the forwarding sound.

use std::collections::HashMap;

use revm::primitives::U256;

use crate::{
    ops::{Op, OpKind},
    program::{Imm, Inst, Program, Value},
};

use super::Rewriter;

/// Rewrites load operands to the first of each guarded-equal class, then merges loads that
/// became identical.
pub fn load_forward(p: &Program) -> Program {
    // Classes of values pinned equal by `guard(eq(x, y)) == 1`; only guards that precede a
    // load may be used for it, so classes grow as the walk goes.
    let mut rep: HashMap<Value, Value> = HashMap::new();
    let find = |rep: &HashMap<Value, Value>, mut v: Value| {
        while let Some(next) = rep.get(&v) {
            v = *next;
        }
        v
    };
    let mut rw = Rewriter::new(p);
    let mut loads: HashMap<Inst, Value> = HashMap::new();
    for inst in &p.insts {
        let mut inst = rw.renamed(inst);
        if inst.op == Op::Guard
            && let (Imm::Guard(_, expected), [cond]) = (&inst.imm, inst.args.as_slice())
            && *expected == U256::from(1)
            && let eq = &rw_inst(&rw, *cond)
            && eq.op == Op::Eq
            && let [x, y] = eq.args.as_slice()
        {
            let (x, y) = (find(&rep, *x), find(&rep, *y));
            if x != y {
                // A constant is the best representative: loads through it may already exist
                // and later passes can fold with it. Otherwise the earlier value wins.
                let is_const = |v: Value| rw_inst(&rw, v).op == Op::Const;
                let (keep, merge) = match (is_const(x), is_const(y)) {
                    (true, false) => (x, y),
                    (false, true) => (y, x),
                    _ if x < y => (x, y),
                    _ => (y, x),
                };
                rep.insert(merge, keep);
            }
        }
        if inst.op.kind() == OpKind::Load {
            inst.args = inst.args.iter().map(|a| find(&rep, *a)).collect();
            if let Some(v) = loads.get(&inst) {
                rw.alias(*v);
                continue;
            }
            let v = rw.emit(inst.clone());
            loads.insert(inst, v);
            continue;
        }
        rw.emit(inst);
    }
    rw.finish()
}

fn rw_inst(rw: &Rewriter, v: Value) -> Inst {
    rw.out.insts[v.index()].clone()
}
