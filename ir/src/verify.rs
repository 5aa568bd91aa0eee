//! The verifier: structural rules every program must satisfy.
//!
//! **A verifier failure is always a bug** in whatever produced the program (the recorder, a
//! pass, the parser's caller): never bad user input and never a miss. Passes run it in tests
//! after every change; the AP store runs it before accepting a program.

use crate::{
    ops::{Arity, Op, OpKind, Ty},
    program::{Imm, Program, Value},
};

/// A broken rule, at an instruction.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{at}: {message}")]
pub struct VerifierError {
    /// The offending instruction.
    pub at: Value,
    /// The rule it breaks.
    pub message: String,
}

/// What each operand of `op` must be, by position.
fn operand_ty(op: Op, position: usize) -> Ty {
    match (op, position) {
        (Op::Concat | Op::Slice | Op::ToWord | Op::Keccak | Op::Len | Op::PCall | Op::Output, _) => Ty::Bytes,
        (Op::StoreCode, 1) | (Op::Log, 1) => Ty::Bytes,
        _ => Ty::Word,
    }
}

/// Checks `program`: operands defined before use and of the right type, arity, immediates
/// of the right shape, every store after every guard, and a status.
pub fn verify(program: &Program) -> Result<(), VerifierError> {
    check(program, true)
}

/// [`verify`] without the store-ordering rule: for programs that have not been through
/// `store_sink` yet (pass inputs). Their meaning is the same; only the layout differs.
pub fn verify_structure(program: &Program) -> Result<(), VerifierError> {
    check(program, false)
}

fn check(program: &Program, stores_last: bool) -> Result<(), VerifierError> {
    let fail = |i: usize, message: String| Err(VerifierError { at: Value(i as u32), message });
    if program.status.is_none() {
        return fail(0, "program has no status".into());
    }
    let mut seen_store = false;
    for (i, inst) in program.insts.iter().enumerate() {
        let op = inst.op;
        let n = inst.args.len();
        let arity_ok = match op.arity() {
            Arity::Fixed(k) => n == k as usize,
            Arity::AtLeast(k) => n >= k as usize,
        };
        if !arity_ok || (op == Op::Log && n > 6) {
            return fail(i, format!("`{op}` takes {:?} operands, has {n}", op.arity()));
        }
        for (position, arg) in inst.args.iter().enumerate() {
            if arg.index() >= i {
                return fail(i, format!("operand {arg} is not defined before use"));
            }
            let defined = program.insts[arg.index()].op.ty();
            let wanted = operand_ty(op, position);
            if defined != wanted {
                return fail(i, format!("operand {arg} is {defined:?}, `{op}` wants {wanted:?} there"));
            }
        }
        let imm_ok =
            matches!(
                (op, &inst.imm),
                (Op::Const, Imm::Word(_))
                    | (Op::ConstBytes, Imm::Bytes(_))
                    | (Op::Guard, Imm::Guard(..))
                    | (Op::Slice, Imm::Slice(..))
                    | (Op::StoreAccount, Imm::Flags(_))
                    | (Op::PCall, Imm::Precompile(..))
            ) || (!matches!(op, Op::Const | Op::ConstBytes | Op::Guard | Op::Slice | Op::StoreAccount | Op::PCall)
                && inst.imm == Imm::None);
        if !imm_ok {
            return fail(i, format!("`{op}` has the wrong immediate {:?}", inst.imm));
        }
        match op.kind() {
            OpKind::Store => seen_store = true,
            OpKind::Guard if seen_store && stores_last => {
                return fail(i, "guard after a store: a miss would leave writes behind".into());
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::parse;

    const HEADER: &str = "env CANCUN chain 1\nstatus {\"Success\":\"Stop\"}\ngas 21000 refund 0\n";

    #[test]
    fn accepts_a_well_formed_program() {
        let text = format!(
            "{HEADER}v0 = const 0x1\nv1 = load.balance v0\nv2 = lt v1, v0\n    guard envelope v2, 0x0\n    store.account v0, v1, v0, v0\n"
        );
        verify(&parse(&text).expect("parses")).expect("valid");
    }

    #[test]
    fn rejects_broken_programs() {
        let cases = [
            ("v0 = load.balance v0", "not defined before use"),
            ("v0 = const 0x1\nv1 = keccak v0", "wants Bytes"),
            ("v0 = const 0x1\n    store.account v0, v0, v0, v0\n    guard path v0, 0x1", "guard after a store"),
            ("v0 = const 0x1\nv1 = add v0", "takes"),
        ];
        for (body, needle) in cases {
            let p = parse(&format!("{HEADER}{body}\n")).expect("parses");
            let e = verify(&p).expect_err(body);
            assert!(e.message.contains(needle), "{body}: {e}");
        }
        let mut no_status = parse("v0 = const 0x1\n").expect("parses");
        no_status.status = None;
        assert!(verify(&no_status).is_err());
    }
}
