//! The meaning of every IR operation on runtime values, apart from any evaluator.
//!
//! The recording builder (traced values), `const_fold`, the reference interpreter and the
//! JIT's helpers all read the same definitions from here, so a guard's traced value and its
//! evaluated value mean the same thing at every tier. Nothing here knows about programs,
//! fuel or misses: imports flow one way, `semantics` ← `program` ← `interp`.
//!
//! - [`fold_word`]: word computations (revm's own i256 helpers for the signed ones);
//! - [`compute_val`]: every pure operation on words and byte strings, precompiles included;
//! - [`load_word`], [`context`]: what loads and context reads return from a state and block.

use revm::{
    DatabaseRef,
    context::{BlockEnv, CfgEnv},
    interpreter::instructions::i256::{i256_cmp, i256_div, i256_mod},
    primitives::{Address, B256, Bytes, KECCAK_EMPTY, U256, hardfork::SpecId, keccak256},
};

use crate::ops::{Imm, Op};

/// A runtime value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Val {
    /// A word.
    Word(U256),
    /// A byte string.
    Bytes(Bytes),
}

/// Folds a word computation over constant operands; `None` for ops that are not word
/// computations.
pub fn fold_word(op: Op, a: &[U256]) -> Option<U256> {
    let bool_word = |b: bool| if b { U256::from(1) } else { U256::ZERO };
    let shift = |s: U256| {
        if s < U256::from(256) { Some(s.to::<usize>()) } else { None }
    };
    Some(match (op, a) {
        (Op::Add, [x, y]) => x.wrapping_add(*y),
        (Op::Sub, [x, y]) => x.wrapping_sub(*y),
        (Op::Mul, [x, y]) => x.wrapping_mul(*y),
        (Op::Div, [x, y]) => x.checked_div(*y).unwrap_or_default(),
        (Op::SDiv, [x, y]) => i256_div(*x, *y),
        (Op::Mod, [x, y]) => x.checked_rem(*y).unwrap_or_default(),
        (Op::SMod, [x, y]) => i256_mod(*x, *y),
        (Op::AddMod, [x, y, n]) => x.add_mod(*y, *n),
        (Op::MulMod, [x, y, n]) => x.mul_mod(*y, *n),
        (Op::Exp, [x, y]) => x.pow(*y),
        (Op::SignExtend, [b, x]) => {
            if *b < U256::from(31) {
                let bit = b.to::<usize>() * 8 + 7;
                let mask = (U256::from(1) << bit) - U256::from(1);
                if x.bit(bit) { *x | !mask } else { *x & mask }
            } else {
                *x
            }
        }
        (Op::Lt, [x, y]) => bool_word(x < y),
        (Op::Gt, [x, y]) => bool_word(x > y),
        (Op::SLt, [x, y]) => bool_word(i256_cmp(x, y).is_lt()),
        (Op::SGt, [x, y]) => bool_word(i256_cmp(x, y).is_gt()),
        (Op::Eq, [x, y]) => bool_word(x == y),
        (Op::IsZero, [x]) => bool_word(x.is_zero()),
        (Op::And, [x, y]) => x & y,
        (Op::Or, [x, y]) => x | y,
        (Op::Xor, [x, y]) => x ^ y,
        (Op::Not, [x]) => !x,
        (Op::Byte, [i, x]) => {
            if *i < U256::from(32) {
                U256::from(x.byte(31 - i.to::<usize>()))
            } else {
                U256::ZERO
            }
        }
        (Op::Shl, [s, x]) => shift(*s).map_or(U256::ZERO, |s| *x << s),
        (Op::Shr, [s, x]) => shift(*s).map_or(U256::ZERO, |s| *x >> s),
        (Op::Sar, [s, x]) => {
            let negative = x.bit(255);
            match shift(*s) {
                Some(s) => x.arithmetic_shr(s),
                None if negative => U256::MAX,
                None => U256::ZERO,
            }
        }
        (Op::Clz, [x]) => U256::from(x.leading_zeros()),
        (Op::Min, [x, y]) => *x.min(y),
        _ => return None,
    })
}

/// Reads an address from the low 160 bits of a word.
pub fn word_to_address(w: U256) -> Address {
    Address::from_word(B256::from(w))
}

/// Reads a load's value from the state: the one definition the tracer and the interpreter
/// share, so a guard's traced value and its evaluated value mean the same thing.
pub fn load_word<D: DatabaseRef>(op: Op, args: &[U256], db: &D, block: &BlockEnv) -> Result<Option<U256>, D::Error> {
    Ok(Some(match (op, args) {
        (Op::Balance | Op::Nonce | Op::CodeHash | Op::Exists, [a]) => {
            return Ok(account_word(op, db.basic_ref(word_to_address(*a))?.as_ref()));
        }
        (Op::Storage, [a, k]) => db.storage_ref(word_to_address(*a), *k)?,
        (Op::BlockHash, [n]) => {
            // BLOCKHASH: only the 256 blocks before the current one.
            let current = block.number;
            if *n < current && current - *n <= U256::from(256) {
                db.block_hash_ref(n.to::<u64>())?.into()
            } else {
                U256::ZERO
            }
        }
        _ => return Ok(None),
    }))
}

/// What an account load returns from the account's info (`None`: it does not exist);
/// `None` for other operations.
pub fn account_word(op: Op, info: Option<&revm::state::AccountInfo>) -> Option<U256> {
    Some(match op {
        Op::Balance => info.map_or(U256::ZERO, |i| i.balance),
        Op::Nonce => U256::from(info.map_or(0, |i| i.nonce)),
        Op::CodeHash => info.map_or(KECCAK_EMPTY, |i| i.code_hash).into(),
        Op::Exists => U256::from(info.is_some() as u8),
        _ => return None,
    })
}

/// Reads a block-context field.
#[inline]
pub fn context(op: Op, cfg: &CfgEnv, block: &BlockEnv) -> U256 {
    match op {
        Op::Number => block.number,
        Op::Timestamp => block.timestamp,
        Op::Coinbase => block.beneficiary.into_word().into(),
        Op::BaseFee => U256::from(block.basefee),
        Op::GasLimit => U256::from(block.gas_limit),
        Op::Random => match block.prevrandao {
            Some(r) if cfg.spec.is_enabled_in(SpecId::MERGE) => r.into(),
            _ => block.difficulty,
        },
        Op::BlobBaseFee => U256::from(block.blob_excess_gas_and_price.map_or(0, |b| b.blob_gasprice)),
        _ => U256::ZERO,
    }
}

/// Computes a pure operation on runtime values; `None` when the operands do not fit the
/// operation (a malformed program). Shared by the interpreter and the recording builder.
pub fn compute_val(op: Op, imm: &Imm, args: &[&Val]) -> Option<Val> {
    let word = |v: &Val| match v {
        Val::Word(w) => Some(*w),
        Val::Bytes(_) => None,
    };
    let bytes = |v: &Val| match v {
        Val::Bytes(b) => Some(b.clone()),
        Val::Word(_) => None,
    };
    Some(match (op, args) {
        (Op::Concat, _) => {
            let mut out = Vec::new();
            for a in args {
                out.extend_from_slice(&bytes(a)?);
            }
            Val::Bytes(out.into())
        }
        (Op::Slice, [src]) => {
            let Imm::Slice(offset, len) = *imm else {
                return None;
            };
            let src = bytes(src)?;
            let mut out = vec![0u8; len as usize];
            let start = (offset as usize).min(src.len());
            let end = (offset as usize + len as usize).min(src.len());
            out[..end - start].copy_from_slice(&src[start..end]);
            Val::Bytes(out.into())
        }
        (Op::ToBytes, [a]) => Val::Bytes(Bytes::copy_from_slice(&word(a)?.to_be_bytes::<32>())),
        (Op::ToWord, [a]) => {
            let b = bytes(a)?;
            if b.len() > 32 {
                return None;
            }
            Val::Word(U256::from_be_slice(&b))
        }
        (Op::Keccak, [a]) => Val::Word(keccak256(bytes(a)?).into()),
        (Op::Len, [a]) => Val::Word(U256::from(bytes(a)?.len())),
        (Op::PCall, [a]) => {
            let Imm::Precompile(address, gas_limit, spec) = *imm else { return None };
            Val::Bytes(run_precompile(address, gas_limit, spec, &bytes(a)?)?)
        }
        _ => {
            let words: Vec<U256> = args.iter().map(|a| word(a)).collect::<Option<_>>()?;
            Val::Word(fold_word(op, &words)?)
        }
    })
}

/// Runs a precompile exactly as revm does, packed as `pcall` defines: status byte, gas used
/// (8 bytes, big-endian), output. `None` when there is no such precompile (a bug) or revm
/// reports a fatal error.
pub(crate) fn run_precompile(address: Address, gas_limit: u64, spec: SpecId, input: &[u8]) -> Option<Bytes> {
    use revm::precompile::{PrecompileSpecId, PrecompileStatus, Precompiles};
    let precompile = Precompiles::new(PrecompileSpecId::from_spec_id(spec)).get(&address)?;
    let out = precompile.execute(input, gas_limit, 0).ok()?;
    let status = match out.status {
        PrecompileStatus::Success => 0u8,
        PrecompileStatus::Revert => 1,
        PrecompileStatus::Halt(_) => 2,
    };
    let mut packed = Vec::with_capacity(9 + out.bytes.len());
    packed.push(status);
    packed.extend_from_slice(&out.gas_used.to_be_bytes());
    packed.extend_from_slice(&out.bytes);
    Some(packed.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fold_matches_evm_semantics_on_edge_cases() {
        let n = |x: u64| U256::from(x);
        let neg = |x: u64| U256::ZERO.wrapping_sub(U256::from(x));
        let cases: &[(Op, &[U256], U256)] = &[
            (Op::Div, &[n(7), n(0)], n(0)),
            (Op::Mod, &[n(7), n(0)], n(0)),
            (Op::SDiv, &[neg(7), n(2)], neg(3)),
            (Op::SMod, &[neg(7), n(2)], neg(1)),
            (Op::AddMod, &[U256::MAX, n(2), n(10)], n(7)),
            (Op::MulMod, &[U256::MAX, U256::MAX, n(12)], n(9)),
            (Op::Exp, &[n(2), n(256)], n(0)),
            (Op::SignExtend, &[n(0), n(0xff)], U256::MAX),
            (Op::SignExtend, &[n(0), n(0x7f)], n(0x7f)),
            (Op::SignExtend, &[n(40), n(0xff)], n(0xff)),
            (Op::SLt, &[neg(1), n(0)], n(1)),
            (Op::SGt, &[neg(1), n(0)], n(0)),
            (Op::Byte, &[n(31), n(0xab)], n(0xab)),
            (Op::Byte, &[n(32), n(0xab)], n(0)),
            (Op::Shl, &[n(256), n(1)], n(0)),
            (Op::Shr, &[n(1), n(2)], n(1)),
            (Op::Sar, &[n(300), neg(5)], U256::MAX),
            (Op::Sar, &[n(1), neg(4)], neg(2)),
            (Op::Min, &[n(3), n(2)], n(2)),
            (Op::Clz, &[n(0)], n(256)),
            (Op::Clz, &[n(1)], n(255)),
            (Op::Clz, &[U256::MAX], n(0)),
            (Op::Clz, &[U256::from(1) << 200], n(55)),
        ];
        for (op, args, expected) in cases {
            assert_eq!(fold_word(*op, args), Some(*expected), "{op} {args:?}");
        }
        assert_eq!(fold_word(Op::Keccak, &[n(1)]), None);
    }
}
