//! Guard folding: a guard on a comparison's result becomes a guard on what was compared.
//!
//! Solidity compiles `if (c)` to `ISZERO` chains before `JUMPI`, so the recorder emits
//! guards such as `guard iszero(iszero(iszero(x))) == 0`. Each rewrite below accepts exactly
//! the states the original guard accepts, so the program's meaning is unchanged; the
//! computations left unused go with dead-code elimination. A compiled program then
//! dispatches fewer instructions on every hit, and native code has fewer to compile.
//!
//! - `guard iszero(x) == 1` is `guard x == 0`;
//! - `guard iszero(x) == 0` is `guard x == 1` when `x` is 0 or 1 by construction (a
//!   comparison, `iszero`, `exists`);
//! - `guard eq(x, K) == 1` for a constant `K` is `guard x == K`.

use revm::primitives::U256;

use crate::{
    ops::Op,
    program::{Imm, Inst, Program, Value},
};

use super::Rewriter;

/// Rewrites every guard on `iszero` / `eq`-with-a-constant results into a guard on the
/// compared value (see the module docs).
pub fn guard_fold(p: &Program) -> Program {
    let mut rw = Rewriter::new(p);
    for inst in &p.insts {
        let inst = rw.renamed(inst);
        if let (Op::Guard, Imm::Guard(kind, expected), [v]) = (inst.op, &inst.imm, inst.args.as_slice()) {
            let (v, expected) = fold(&rw.out, *v, *expected);
            rw.emit(Inst { op: Op::Guard, args: vec![v], imm: Imm::Guard(*kind, expected) });
            continue;
        }
        rw.emit(inst);
    }
    rw.finish()
}

/// The simplest guard equivalent to `guard v == expected` in `p` (see the module docs).
fn fold(p: &Program, mut v: Value, mut expected: U256) -> (Value, U256) {
    let (zero, one) = (U256::ZERO, U256::from(1));
    loop {
        let def = &p.insts[v.index()];
        match (def.op, def.args.as_slice()) {
            (Op::IsZero, [x]) if expected == one => (v, expected) = (*x, zero),
            (Op::IsZero, [x]) if expected == zero && is_boolean(p, *x) => (v, expected) = (*x, one),
            (Op::Eq, [a, b]) if expected == one => match (constant(p, *a), constant(p, *b)) {
                (_, Some(k)) => (v, expected) = (*a, k),
                (Some(k), None) => (v, expected) = (*b, k),
                (None, None) => return (v, expected),
            },
            _ => return (v, expected),
        }
    }
}

/// Whether `v` is 0 or 1 on every state.
fn is_boolean(p: &Program, v: Value) -> bool {
    let def = &p.insts[v.index()];
    match def.op {
        Op::IsZero | Op::Eq | Op::Lt | Op::Gt | Op::SLt | Op::SGt | Op::Exists => true,
        Op::Const => matches!(def.imm, Imm::Word(w) if w <= U256::from(1)),
        _ => false,
    }
}

/// The value of `v` when it is a word constant.
fn constant(p: &Program, v: Value) -> Option<U256> {
    match (&p.insts[v.index()].op, &p.insts[v.index()].imm) {
        (Op::Const, Imm::Word(w)) => Some(*w),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{passes::dce, text};

    fn folded(src: &str) -> String {
        let p = text::parse(src).expect("the test program parses");
        text::print(&dce(&guard_fold(&p)))
    }

    const HEAD: &str = "env OSAKA chain 1\nstatus {\"Success\":\"Stop\"}\ngas 21000 refund 0\n";

    #[test]
    fn iszero_chains_fold_to_one_guard_on_the_loaded_value() {
        let src = format!(
            "{HEAD}v0 = const 0x44\nv1 = load.storage v0, v0\nv2 = iszero v1\nv3 = iszero v2\nv4 = iszero v3\n    guard path v4, 0x0\n    store.output v0\n"
        );
        let out = folded(&src);
        // iszero(iszero(iszero(x))) == 0 <=> iszero(iszero(x)) == 1 <=> iszero(x) == 0,
        // and x is not boolean: one iszero stays.
        assert!(out.contains("iszero v1"), "{out}");
        assert_eq!(out.matches("iszero").count(), 1, "{out}");
        assert!(out.contains("guard path v2, 0x0"), "{out}");
    }

    #[test]
    fn a_guard_on_iszero_expecting_one_guards_the_value_on_zero() {
        let src = format!(
            "{HEAD}v0 = const 0x44\nv1 = load.storage v0, v0\nv2 = iszero v1\n    guard gas v2, 0x1\n    store.output v0\n"
        );
        let out = folded(&src);
        assert!(!out.contains("iszero"), "{out}");
        assert!(out.contains("guard gas v1, 0x0"), "{out}");
    }

    #[test]
    fn boolean_operands_and_equality_with_a_constant_fold() {
        let src = format!(
            "{HEAD}v0 = const 0x44\nv1 = load.storage v0, v0\nv2 = lt v1, v0\nv3 = iszero v2\n    guard path v3, 0x0\nv5 = eq v1, v0\n    guard path v5, 0x1\nv7 = eq v0, v1\n    guard path v7, 0x0\n    store.output v0\n"
        );
        let out = folded(&src);
        // iszero(lt) == 0 <=> lt == 1; eq(x, K) == 1 <=> x == K; eq(x, K) == 0 stays.
        assert!(out.contains("guard path v2, 0x1"), "{out}");
        assert!(out.contains("guard path v1, 0x44"), "{out}");
        assert!(out.contains("guard path v5, 0x0"), "{out}");
        assert!(!out.contains("iszero"), "{out}");
    }
}
