//! Dead-code elimination: pure instructions nothing uses are dropped.

use crate::program::Program;

use super::Rewriter;

/// Keeps guards, stores and everything they transitively use; drops the rest.
pub fn dce(p: &Program) -> Program {
    let mut live = vec![false; p.insts.len()];
    for (i, inst) in p.insts.iter().enumerate().rev() {
        if !inst.op.is_pure() {
            live[i] = true;
        }
        if live[i] {
            for a in &inst.args {
                live[a.index()] = true;
            }
        }
    }
    let mut rw = Rewriter::new(p);
    for (inst, live) in p.insts.iter().zip(live) {
        if live {
            let inst = rw.renamed(inst);
            rw.emit(inst);
        } else {
            rw.drop_inst();
        }
    }
    rw.finish()
}
