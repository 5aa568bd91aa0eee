//! Constant folding: a computation whose operands are all constants becomes a constant.

use revm::primitives::U256;

use crate::{
    ops::{Op, OpKind},
    program::{Imm, Inst, Program},
    semantics::{Val, compute_val},
};

use super::Rewriter;

/// Replaces every computation over constants by its value (computed by the interpreter's
/// own semantics, so folding cannot change a result).
pub fn const_fold(p: &Program) -> Program {
    let mut rw = Rewriter::new(p);
    for inst in &p.insts {
        let inst = rw.renamed(inst);
        // A guard on a constant that equals its expectation always holds. (One that differs
        // always fails: it is kept, and the program never hits.)
        if let (Op::Guard, Imm::Guard(_, expected), [v]) = (inst.op, &inst.imm, inst.args.as_slice())
            && rw_const(&rw, v.index()) == Some(&Imm::Word(*expected))
        {
            rw.drop_inst();
            continue;
        }
        // Identities on one operand used twice: eq(x, x) = 1, sub(x, x) = xor(x, x) = 0.
        if let [a, b] = inst.args.as_slice()
            && a == b
            && let Some(w) = match inst.op {
                Op::Eq => Some(U256::from(1)),
                Op::Sub | Op::Xor => Some(U256::ZERO),
                _ => None,
            }
        {
            rw.emit(Inst { op: Op::Const, args: vec![], imm: Imm::Word(w) });
            continue;
        }
        if inst.op.kind() == OpKind::Compute {
            let constants: Option<Vec<Val>> = inst
                .args
                .iter()
                .map(|a| match rw_const(&rw, a.index()) {
                    Some(Imm::Word(w)) => Some(Val::Word(*w)),
                    Some(Imm::Bytes(b)) => Some(Val::Bytes(b.clone())),
                    _ => None,
                })
                .collect();
            if let Some(constants) = constants {
                let refs: Vec<&Val> = constants.iter().collect();
                match compute_val(inst.op, &inst.imm, &refs) {
                    Some(Val::Word(w)) => {
                        rw.emit(Inst { op: Op::Const, args: vec![], imm: Imm::Word(w) });
                        continue;
                    }
                    Some(Val::Bytes(b)) => {
                        rw.emit(Inst { op: Op::ConstBytes, args: vec![], imm: Imm::Bytes(b) });
                        continue;
                    }
                    None => {}
                }
            }
        }
        rw.emit(inst);
    }
    rw.finish()
}

/// The immediate of new instruction `index` when it is a constant.
fn rw_const(rw: &Rewriter, index: usize) -> Option<&Imm> {
    let inst = &rw.out.insts[index];
    matches!(inst.op, Op::Const | Op::ConstBytes).then_some(&inst.imm)
}
