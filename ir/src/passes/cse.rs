//! Common-subexpression elimination: identical pure instructions become one.

use std::collections::{HashMap, HashSet};

use revm::primitives::U256;

use crate::{
    ops::Op,
    program::{Imm, Inst, Program, Value},
};

use super::Rewriter;

/// Merges every pure instruction identical (operation, operands, immediate) to an earlier
/// one. Loads are pure here: they read the state before the transaction, which no
/// instruction changes (stores are outputs).
///
/// A guard that asserts what an earlier guard already asserted (same value, same expected
/// word, whatever its kind) is dropped: it can never be the one that fails.
pub fn cse(p: &Program) -> Program {
    let mut rw = Rewriter::new(p);
    let mut seen: HashMap<Inst, Value> = HashMap::new();
    let mut guarded: HashSet<(Value, U256)> = HashSet::new();
    for inst in &p.insts {
        let inst = rw.renamed(inst);
        if let (Op::Guard, Imm::Guard(_, expected), [v]) = (inst.op, &inst.imm, inst.args.as_slice())
            && !guarded.insert((*v, *expected))
        {
            rw.drop_inst();
            continue;
        }
        if inst.op.is_pure() {
            if let Some(v) = seen.get(&inst) {
                rw.alias(*v);
                continue;
            }
            let v = rw.emit(inst.clone());
            seen.insert(inst, v);
        } else {
            rw.emit(inst);
        }
    }
    rw.finish()
}
