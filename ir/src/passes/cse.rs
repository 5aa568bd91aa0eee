//! Common-subexpression elimination: identical pure instructions become one.

use std::collections::HashMap;

use crate::program::{Inst, Program, Value};

use super::Rewriter;

/// Merges every pure instruction identical (operation, operands, immediate) to an earlier
/// one. Loads are pure here: they read the state before the transaction, which no
/// instruction changes (stores are outputs).
pub fn cse(p: &Program) -> Program {
    let mut rw = Rewriter::new(p);
    let mut seen: HashMap<Inst, Value> = HashMap::new();
    for inst in &p.insts {
        let inst = rw.renamed(inst);
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
