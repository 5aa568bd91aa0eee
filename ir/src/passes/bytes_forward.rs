//! Byte-string forwarding: reads of memory that was just written, resolved to the words
//! written.
//!
//! The tracer models EVM memory as byte strings: an `mstore` of three words followed by an
//! `mload` at offset 32 becomes `toword(slice(concat(tobytes a, tobytes b, tobytes c), 32,
//! 32))`, which is just `b`. ABI encoding and decoding across calls produce these chains by
//! the dozen in every contract call. Each link is an instruction every evaluation runs, and
//! a host call in native code; this pass resolves them statically:
//!
//! - `slice(x, 0, len(x))` is `x`;
//! - `slice(slice(y, o, l), off, len)` with `off + len <= l` is `slice(y, o + off, len)` (the
//!   zero padding past `y`'s end is the same either way);
//! - `slice(concat(p..), off, len)` inside one part `p_i` (every part's length known) is a
//!   slice of `p_i`, and so on down;
//! - `toword(tobytes(w))` is `w`, `len(x)` of a known length is a constant, `concat(x)` is `x`;
//! - what ends on a constant byte string is folded by the interpreter's own semantics.
//!
//! Lengths are known for every byte string but a precompile's output. Nothing here depends
//! on the state: every rewrite holds for all inputs, so no guard is needed.

use revm::primitives::U256;

use crate::{
    ops::Op,
    program::{Imm, Inst, Program, Value},
    semantics::{Val, compute_val},
};

use super::Rewriter;

/// Resolves reads of byte strings built in the same program (see the module docs).
pub fn bytes_forward(p: &Program) -> Program {
    let mut rw = Rewriter::new(p);
    // The length of each new value, when it is a byte string of known length.
    let mut lens: Vec<Option<u32>> = Vec::with_capacity(p.insts.len());
    for inst in &p.insts {
        let inst = rw.renamed(inst);
        match forward(&rw, &lens, inst) {
            Forwarded::Alias(v) => rw.alias(v),
            Forwarded::Emit(inst) => {
                let len = known_len(&lens, &inst);
                let v = rw.emit(inst);
                debug_assert_eq!(v.index(), lens.len());
                lens.push(len);
            }
        }
    }
    rw.finish()
}

enum Forwarded {
    /// The instruction is an existing value.
    Alias(Value),
    /// The instruction, possibly rewritten.
    Emit(Inst),
}

/// The length of the byte string `inst` gives, when known.
fn known_len(lens: &[Option<u32>], inst: &Inst) -> Option<u32> {
    match (inst.op, &inst.imm) {
        (Op::ConstBytes, Imm::Bytes(b)) => u32::try_from(b.len()).ok(),
        (Op::ToBytes, _) => Some(32),
        (Op::Slice, Imm::Slice(_, len)) => Some(*len),
        (Op::Concat, _) => inst.args.iter().try_fold(0u32, |sum, a| sum.checked_add(lens[a.index()]?)),
        _ => None,
    }
}

fn forward(rw: &Rewriter, lens: &[Option<u32>], inst: Inst) -> Forwarded {
    let def = |v: Value| &rw.out.insts[v.index()];
    match (inst.op, &inst.imm, inst.args.as_slice()) {
        (Op::ToWord, _, &[x]) if def(x).op == Op::ToBytes => Forwarded::Alias(def(x).args[0]),
        (Op::Len, _, &[x]) => match lens[x.index()] {
            Some(len) => Forwarded::Emit(Inst { op: Op::Const, args: vec![], imm: Imm::Word(U256::from(len)) }),
            None => Forwarded::Emit(inst),
        },
        (Op::Concat, _, &[x]) => Forwarded::Alias(x),
        (Op::Slice, &Imm::Slice(offset, len), &[x]) => {
            let (mut x, mut offset) = (x, offset);
            loop {
                if offset == 0 && lens[x.index()] == Some(len) {
                    return Forwarded::Alias(x);
                }
                let d = def(x);
                match (d.op, &d.imm) {
                    (Op::Slice, &Imm::Slice(inner, inner_len))
                        if u64::from(offset) + u64::from(len) <= u64::from(inner_len) =>
                    {
                        let Some(at) = inner.checked_add(offset) else { break };
                        (x, offset) = (d.args[0], at);
                    }
                    (Op::Concat, _) => {
                        let mut start = 0u64;
                        let mut inside = None;
                        for &part in &d.args {
                            let Some(part_len) = lens[part.index()] else { break };
                            let end = start + u64::from(part_len);
                            if u64::from(offset) >= start && u64::from(offset) + u64::from(len) <= end {
                                inside = Some((part, (u64::from(offset) - start) as u32));
                                break;
                            }
                            start = end;
                        }
                        let Some(found) = inside else { break };
                        (x, offset) = found;
                    }
                    _ => break,
                }
            }
            let slice = Inst { op: Op::Slice, args: vec![x], imm: Imm::Slice(offset, len) };
            // A slice of a constant is a constant.
            if let Imm::Bytes(b) = &def(x).imm
                && def(x).op == Op::ConstBytes
                && let Some(Val::Bytes(out)) = compute_val(Op::Slice, &slice.imm, &[&Val::Bytes(b.clone())])
            {
                return Forwarded::Emit(Inst { op: Op::ConstBytes, args: vec![], imm: Imm::Bytes(out) });
            }
            Forwarded::Emit(slice)
        }
        _ => Forwarded::Emit(inst),
    }
}

#[cfg(test)]
mod tests {
    use revm::primitives::Bytes;

    use super::*;
    use crate::{ops::GuardKind, passes::dce};

    fn inst(op: Op, args: &[u32], imm: Imm) -> Inst {
        Inst { op, args: args.iter().map(|&a| Value(a)).collect(), imm }
    }

    /// Evaluates every value of a program of pure instructions over word inputs `inputs`
    /// (given as the program's first instructions, `const`s), by the interpreter's semantics.
    fn values(p: &Program) -> Vec<Option<Val>> {
        let mut out: Vec<Option<Val>> = Vec::new();
        for i in &p.insts {
            let v = match (i.op, &i.imm) {
                (Op::Const, Imm::Word(w)) => Some(Val::Word(*w)),
                (Op::ConstBytes, Imm::Bytes(b)) => Some(Val::Bytes(b.clone())),
                _ => {
                    let args: Option<Vec<&Val>> = i.args.iter().map(|a| out[a.index()].as_ref()).collect();
                    args.and_then(|args| compute_val(i.op, &i.imm, &args))
                }
            };
            out.push(v);
        }
        out
    }

    #[test]
    fn memory_written_then_read_resolves_to_the_words_written() {
        let guard = |v: u32| inst(Op::Guard, &[v], Imm::Guard(GuardKind::Path, U256::ZERO));
        let w = |x: u64| inst(Op::Const, &[], Imm::Word(U256::from(x) << 200 | U256::from(x)));
        let p = Program {
            insts: vec![
                w(1),                                                           // v0
                w(2),                                                           // v1
                w(3),                                                           // v2
                inst(Op::ToBytes, &[0], Imm::None),                             // v3
                inst(Op::ToBytes, &[1], Imm::None),                             // v4
                inst(Op::ToBytes, &[2], Imm::None),                             // v5
                inst(Op::ConstBytes, &[], Imm::Bytes(Bytes::from(vec![9; 4]))), // v6: a selector
                inst(Op::Concat, &[6, 3, 4, 5], Imm::None),                     // v7: 100 bytes
                inst(Op::Slice, &[7], Imm::Slice(36, 32)),                      // v8: = v4
                inst(Op::ToWord, &[8], Imm::None),                              // v9: = v1
                inst(Op::Slice, &[7], Imm::Slice(4, 64)),                       // v10: v3 ++ v4
                inst(Op::Slice, &[10], Imm::Slice(32, 32)),                     // v11: = v4
                inst(Op::ToWord, &[11], Imm::None),                             // v12: = v1
                inst(Op::Slice, &[7], Imm::Slice(20, 32)),                      // v13: across parts
                inst(Op::ToWord, &[13], Imm::None),                             // v14
                inst(Op::Slice, &[7], Imm::Slice(90, 32)),                      // v15: past the end
                inst(Op::ToWord, &[15], Imm::None),                             // v16
                inst(Op::Slice, &[7], Imm::Slice(1, 2)),                        // v17: constant
                inst(Op::Len, &[10], Imm::None),                                // v18: 64
                inst(Op::Concat, &[5], Imm::None),                              // v19: = v5
                inst(Op::Keccak, &[19], Imm::None),                             // v20
                inst(Op::Slice, &[3], Imm::Slice(0, 32)),                       // v21: = v3
                inst(Op::Len, &[21], Imm::None),                                // v22
                guard(9),
                guard(12),
                guard(14),
                guard(16),
                guard(18),
                guard(20),
                guard(22),
            ],
            ..Default::default()
        };
        let before = values(&p);
        let q = bytes_forward(&p);
        let after = values(&q);
        // Same number of values (nothing is dropped here; DCE does that), the same value each.
        let mut rw_map = Vec::new();
        {
            // Re-derive the mapping: bytes_forward emits or aliases one old value at a time,
            // and every value it emits is equal to the old one by the semantics.
            let mut rw = Rewriter::new(&p);
            let mut lens = Vec::new();
            for i in &p.insts {
                let i = rw.renamed(i);
                match forward(&rw, &lens, i) {
                    Forwarded::Alias(v) => {
                        rw.alias(v);
                        rw_map.push(v);
                    }
                    Forwarded::Emit(i) => {
                        lens.push(known_len(&lens, &i));
                        rw_map.push(rw.emit(i));
                    }
                }
            }
        }
        for (old, new) in rw_map.iter().enumerate() {
            assert_eq!(before[old], after[new.index()], "value v{old}");
        }
        assert_eq!(rw_map[9], Value(1), "toword of a word written at 36 is the word");
        assert_eq!(rw_map[12], Value(1), "through a slice of a slice");
        assert_eq!(rw_map[19], rw_map[5], "a one-part concat is its part");
        assert_eq!(rw_map[21], rw_map[3], "a whole slice is its source");
        assert_eq!(q.insts[rw_map[17].index()].op, Op::ConstBytes, "a slice of the constant selector");
        assert_eq!(q.insts[rw_map[18].index()].op, Op::Const, "a known length");
        // After DCE, the memory round trips are gone but the two that read across parts or
        // past the end.
        let count = |p: &Program, op: Op| p.insts.iter().filter(|i| i.op == op).count();
        let live = dce(&q);
        assert_eq!(count(&dce(&p), Op::ToWord), 4);
        assert_eq!(count(&live, Op::ToWord), 2, "{live:?}");
        assert_eq!(count(&live, Op::Len), 0);
    }
}
