//! Store sinking: every store moves after every other instruction, in its original order.
//!
//! Stores take effect only on a hit, after every guard held, so where they sit among the
//! guards does not change the outcome; sinking them makes that explicit (the verifier
//! requires it) and lets a miss stop before any output is built.

use crate::{
    ops::OpKind,
    program::{Program, Value},
};

/// Moves stores to the end, keeping the relative order of stores (logs stay in order).
pub fn store_sink(p: &Program) -> Program {
    let (stores, rest): (Vec<usize>, Vec<usize>) =
        (0..p.insts.len()).partition(|i| p.insts[*i].op.kind() == OpKind::Store);
    let order: Vec<usize> = rest.into_iter().chain(stores).collect();
    let mut new_index = vec![0u32; p.insts.len()];
    for (new, old) in order.iter().enumerate() {
        new_index[*old] = new as u32;
    }
    let mut out = Program { insts: Vec::with_capacity(p.insts.len()), ..p.clone() };
    for old in order {
        let mut inst = p.insts[old].clone();
        // Stores define no value, so no operand ever points at a moved instruction.
        inst.args = inst.args.iter().map(|a| Value(new_index[a.index()])).collect();
        out.insts.push(inst);
    }
    out
}
