//! The reference IR interpreter: evaluates a program against a state and a block context.
//!
//! It is the semantics of the IR: the JIT must agree with it, and it must agree with revm
//! on every hit. It is written for clarity, not speed. Evaluation is fuel-limited (one unit
//! per instruction) so a malformed or hostile program cannot hang it.
//!
//! ```text
//!   for inst in program:       load/context ─▶ read state / block
//!                              compute      ─▶ pure function (revm's own i256 helpers)
//!                              guard        ─▶ value ≠ expected ⇒ Miss(kind)
//!                              store        ─▶ append to the outcome (stores follow every guard)
//!   ⇒ Hit(TxOutcome)
//! ```

use std::collections::BTreeMap;

use revm::{
    DatabaseRef,
    context::{BlockEnv, CfgEnv},
    primitives::{B256, Bytes, Log, LogData, U256},
};

pub use crate::semantics::{Val, compute_val, context, fold_word, load_word, word_to_address};
use crate::{
    ops::{GuardKind, Op, OpKind},
    outcome::{AccountChange, TxOutcome},
    program::{Imm, Program, Value},
};

/// Instructions a program may run before its evaluation counts as a miss: four times the
/// largest program the recorder emits (`RecordConfig::max_insts`). One rule for import and
/// for every test layer; a hostile program cannot make an evaluation run longer.
pub const FUEL: u64 = 1 << 22;

/// Why an evaluation did not produce an outcome. A value, not an error: misses are normal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum MissReason {
    /// A guard of this kind failed.
    Guard(GuardKind),
    /// The fuel ran out.
    OutOfFuel,
    /// The chain rules (spec, chain id) differ from the recording's.
    Env,
    /// The state backend failed.
    State,
    /// The program is ill-formed (a verifier would have rejected it): a bug.
    Malformed,
}

impl MissReason {
    /// Short name for reports and metrics (`guard:alias`, `out-of-fuel`, …).
    pub const fn name(self) -> &'static str {
        match self {
            Self::Guard(kind) => kind.miss_name(),
            Self::OutOfFuel => "out-of-fuel",
            Self::Env => "env",
            Self::State => "state",
            Self::Malformed => "malformed",
        }
    }
}

/// A miss: the reason and the instruction where it happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Miss {
    /// Why.
    pub reason: MissReason,
    /// Where.
    pub at: Value,
}

/// The result of evaluating a program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Evaluation {
    /// Every guard held: the transaction's outcome.
    Hit(TxOutcome),
    /// A guard failed (or the program could not run): fall back to execution.
    Miss(Miss),
}

/// Evaluates `program` on `db` in the context `block` / `cfg`, with at most `fuel`
/// instructions.
pub fn evaluate<D: DatabaseRef>(program: &Program, db: &D, cfg: &CfgEnv, block: &BlockEnv, fuel: u64) -> Evaluation {
    match run(program, db, cfg, block, fuel) {
        Ok(outcome) => Evaluation::Hit(outcome),
        Err(miss) => Evaluation::Miss(miss),
    }
}

fn run<D: DatabaseRef>(
    program: &Program,
    db: &D,
    cfg: &CfgEnv,
    block: &BlockEnv,
    fuel: u64,
) -> Result<TxOutcome, Miss> {
    let Some(status) = program.status.clone() else {
        return Err(Miss { reason: MissReason::Malformed, at: Value(0) });
    };
    // A program holds only under the rules it was recorded under.
    if program.env.spec != cfg.spec || program.env.chain_id != cfg.chain_id {
        return Err(Miss { reason: MissReason::Env, at: Value(0) });
    }
    let mut vals: Vec<Option<Val>> = Vec::with_capacity(program.insts.len());
    let mut outcome = TxOutcome {
        status,
        gas_used: program.gas_used,
        gas_refunded: program.gas_refunded,
        logs: Vec::new(),
        output: Bytes::new(),
        created_address: None,
        state: BTreeMap::new(),
    };
    if program.insts.len() as u64 > fuel {
        return Err(Miss { reason: MissReason::OutOfFuel, at: Value(fuel.min(u32::MAX as u64) as u32) });
    }
    for (index, inst) in program.insts.iter().enumerate() {
        let here = Value(index as u32);
        let malformed = Miss { reason: MissReason::Malformed, at: here };
        let state_err = |_| Miss { reason: MissReason::State, at: here };
        let word = |v: &Value| match vals.get(v.index()) {
            Some(Some(Val::Word(w))) if v.index() < index => Ok(*w),
            _ => Err(malformed),
        };
        let bytes = |v: &Value| match vals.get(v.index()) {
            Some(Some(Val::Bytes(b))) if v.index() < index => Ok(b.clone()),
            _ => Err(malformed),
        };
        let result = match (inst.op.kind(), inst.op) {
            (OpKind::Const, Op::Const) => match &inst.imm {
                Imm::Word(w) => Some(Val::Word(*w)),
                _ => return Err(malformed),
            },
            (OpKind::Const, _) => match &inst.imm {
                Imm::Bytes(b) => Some(Val::Bytes(b.clone())),
                _ => return Err(malformed),
            },
            (OpKind::Load, op) => {
                let args: Vec<U256> = inst.args.iter().map(word).collect::<Result<_, _>>()?;
                Some(Val::Word(load_word(op, &args, db, block).map_err(state_err)?.ok_or(malformed)?))
            }
            (OpKind::Context, op) => Some(Val::Word(context(op, cfg, block))),
            (OpKind::Compute, op) => Some(compute(op, inst, &vals, here)?),
            (OpKind::Guard, _) => {
                let Imm::Guard(kind, expected) = inst.imm else {
                    return Err(malformed);
                };
                let v = word(inst.args.first().ok_or(malformed)?)?;
                if v != expected {
                    return Err(Miss { reason: MissReason::Guard(kind), at: here });
                }
                None
            }
            (OpKind::Store, op) => {
                store(op, inst, &mut outcome, &word, &bytes)?.then_some(()).ok_or(malformed)?;
                None
            }
        };
        vals.push(result);
    }
    Ok(outcome)
}

type WordOf<'a> = dyn Fn(&Value) -> Result<U256, Miss> + 'a;
type BytesOf<'a> = dyn Fn(&Value) -> Result<Bytes, Miss> + 'a;

fn compute(op: Op, inst: &crate::program::Inst, vals: &[Option<Val>], here: Value) -> Result<Val, Miss> {
    let malformed = Miss { reason: MissReason::Malformed, at: here };
    let args: Vec<&Val> = inst
        .args
        .iter()
        .map(|a| if a.index() < here.index() { vals.get(a.index()).and_then(Option::as_ref) } else { None })
        .collect::<Option<_>>()
        .ok_or(malformed)?;
    compute_val(op, &inst.imm, &args).ok_or(malformed)
}

/// Applies a store to the outcome; `Ok(false)` when the store is ill-formed.
fn store(
    op: Op,
    inst: &crate::program::Inst,
    out: &mut TxOutcome,
    word: &WordOf<'_>,
    bytes: &BytesOf<'_>,
) -> Result<bool, Miss> {
    match (op, inst.args.as_slice()) {
        (Op::StoreAccount, [a, balance, nonce, code_hash]) => {
            let Imm::Flags(flags) = inst.imm else {
                return Ok(false);
            };
            let nonce = word(nonce)?;
            if nonce > U256::from(u64::MAX) {
                return Ok(false);
            }
            let change = AccountChange {
                balance: word(balance)?,
                nonce: nonce.to::<u64>(),
                code_hash: B256::from(word(code_hash)?),
                code: None,
                created: flags.created,
                selfdestructed: flags.selfdestructed,
                storage: BTreeMap::new(),
            };
            // Two stores to one account mean two symbolic addresses met without an alias
            // guard: never a hit.
            Ok(out.state.insert(word_to_address(word(a)?), change).is_none())
        }
        (Op::StoreSlot, [a, k, v]) => match out.state.get_mut(&word_to_address(word(a)?)) {
            Some(account) => Ok(account.storage.insert(word(k)?, word(v)?).is_none()),
            None => Ok(false),
        },
        (Op::StoreCode, [a, code]) => match out.state.get_mut(&word_to_address(word(a)?)) {
            Some(account) => {
                account.code = Some(bytes(code)?);
                Ok(true)
            }
            None => Ok(false),
        },
        (Op::Log, [a, data, topics @ ..]) if topics.len() <= 4 => {
            let topics: Vec<B256> = topics.iter().map(|t| word(t).map(B256::from)).collect::<Result<_, _>>()?;
            let data = LogData::new_unchecked(topics, bytes(data)?);
            out.logs.push(Log { address: word_to_address(word(a)?), data });
            Ok(true)
        }
        (Op::Output, [b]) => {
            out.output = bytes(b)?;
            Ok(true)
        }
        (Op::Created, [a]) => {
            out.created_address = Some(word_to_address(word(a)?));
            Ok(true)
        }
        _ => Ok(false),
    }
}
