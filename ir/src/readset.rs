//! The read-set memo: a pre-execution's inputs and outcome, applied without computation
//! when every input is the same at import (Forerunner's "perfect hit").
//!
//! A program is a pure function of what it reads: the context words, the account fields and
//! storage slots its loads name, and the block hashes. A [`ReadSet`] keeps every such read of
//! one evaluation in program order, with the value it returned, beside the outcome that
//! evaluation produced. At import, [`ReadSet::check`] reads the same inputs again: when every
//! one has its recorded value, every value the program computes is the recorded one too, and
//! so is the outcome, which is returned with no computation at all. Any difference is a miss
//! of the memo (the merged program then runs as usual).
//!
//! **The fee recipient is a parameter where the program allows it.** Every transaction of a
//! block credits the fee recipient's balance, so that balance is never the value a
//! pre-execution saw; and the recipient itself is often mispredicted (builders change). Both
//! are handled by what the program does with them, checked on its instructions
//! ([`fee_shape`]):
//! - **the credit**: when the program's only uses of the recipient's balance are the fee
//!   credit itself (`balance + fee`, its overflow guard, and the store of the sum into the
//!   recipient's account), the outcome's balance is the current one plus the recorded credit,
//!   which must not overflow. Otherwise the balance is compared like any other input.
//! - **the recipient**: when, besides that, the program uses the recipient's address only in
//!   comparisons that feed guards (the alias checks against every account it touches), in the
//!   loads of its balance, nonce and code hash, and as the account of that one store, whose
//!   nonce and code hash are the loaded ones, then any recipient is accepted for which every
//!   such comparison gives the recorded result, that exists, and that is not empty after the
//!   credit: the outcome's recipient entry is moved to it, with its own nonce and code hash.
//!   Otherwise the recipient is compared like any other input.
//!
//! Keys are compared by value, not recomputed: a load's address or slot is whatever the
//! recorded evaluation computed, and when every earlier read matched, the program computes
//! the same key again, so the reads are the same reads.

use revm::{
    DatabaseRef,
    context::{BlockEnv, CfgEnv},
    primitives::{Address, B256, KECCAK_EMPTY, U256},
    state::AccountInfo,
};

use crate::{
    ops::{Imm, Op, OpKind, Ty},
    outcome::{Applied, TxOutcome},
    program::{Program, ProgramEnv, Value},
    semantics::{account_word, context, fold_word, load_word, word_to_address},
};

/// One input an evaluation read: the operation (a load or a context read), its operands
/// (address, slot; unused ones zero) and the value it returned. `at` is the instruction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Read {
    /// The load or context operation.
    pub op: Op,
    /// Its operands.
    pub args: [U256; 2],
    /// The value it returned.
    pub value: U256,
    /// The instruction index in its program.
    pub at: u32,
}

/// What a read of the read set is, in the check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// Compared with the recorded value.
    Input,
    /// The fee recipient's balance: credited, not compared.
    Credited,
    /// The fee recipient's address (a parameter): not compared.
    Recipient,
    /// The fee recipient's nonce or code hash, carried into its stored entry: not compared.
    Carried,
}

/// An operand of a comparison involving the fee recipient.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Operand {
    /// The fee recipient's address.
    Recipient,
    /// A recorded word (a constant, or a value read).
    Word(U256),
}

/// A comparison of the fee recipient's address that feeds guards only: recomputed with the
/// current recipient, it must give the recorded result.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Comparison {
    op: Op,
    args: Vec<Operand>,
    result: U256,
}

/// How the read set treats the fee recipient (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Fee {
    /// The recorded fee recipient.
    recorded: Address,
    /// What the recorded evaluation added to its balance.
    credit: U256,
    /// Whether the recipient is a parameter (else its address is compared).
    any_recipient: bool,
    /// The comparisons to recompute when it is.
    comparisons: Vec<Comparison>,
}

/// A pre-execution's reads and outcome (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadSet {
    env: ProgramEnv,
    reads: Vec<(Read, Role)>,
    fee: Option<Fee>,
    /// The recorded outcome, in the form a commit takes (a hit copies it: flat lists), with
    /// its logs' bloom computed once here rather than at every hit's receipt.
    applied: Applied,
}

impl ReadSet {
    /// The read set of one evaluation of `program`: its `reads` in order and the `outcome`
    /// they produced (from [`crate::compact::Compiled::capture_reads`] on `program` alone).
    pub fn new(program: &Program, reads: Vec<Read>, outcome: TxOutcome) -> Self {
        let mut reads: Vec<(Read, Role)> = reads.into_iter().map(|r| (r, Role::Input)).collect();
        let fee = fee_shape(program).and_then(|shape| {
            let balance = reads.iter().position(|(r, _)| r.at == shape.balance)?;
            let recorded = word_to_address(reads[balance].0.args[0]);
            let entry = outcome.state.get(&recorded)?;
            let credit = entry.balance.checked_sub(reads[balance].0.value)?;
            reads[balance].1 = Role::Credited;
            let mut fee = Fee { recorded, credit, any_recipient: false, comparisons: Vec::new() };
            // The recipient as a parameter: every comparison's other operands recorded.
            let recorded_word = |v: Value| -> Option<U256> {
                let inst = program.insts.get(v.index())?;
                match (&inst.imm, inst.op.kind()) {
                    (Imm::Word(w), OpKind::Const) => Some(*w),
                    (_, OpKind::Load | OpKind::Context) => {
                        reads.iter().find(|(r, _)| r.at == v.0).map(|(r, _)| r.value)
                    }
                    _ => None,
                }
            };
            let comparisons: Option<Vec<Comparison>> = shape
                .recipient
                .as_ref()
                .filter(|_| entry.storage.is_empty() && !entry.created && !entry.selfdestructed && entry.code.is_none())
                .and_then(|r| {
                    r.comparisons
                        .iter()
                        .map(|&at| {
                            let inst = &program.insts[at as usize];
                            let args = inst
                                .args
                                .iter()
                                .map(|a| {
                                    if program.insts[a.index()].op == Op::Coinbase {
                                        Some(Operand::Recipient)
                                    } else {
                                        recorded_word(*a).map(Operand::Word)
                                    }
                                })
                                .collect::<Option<Vec<_>>>()?;
                            let values: Vec<U256> = args
                                .iter()
                                .map(|a| match a {
                                    Operand::Recipient => recorded.into_word().into(),
                                    Operand::Word(w) => *w,
                                })
                                .collect();
                            Some(Comparison { op: inst.op, args, result: fold_word(inst.op, &values)? })
                        })
                        .collect()
                });
            if let (Some(comparisons), Some(recipient)) = (comparisons, &shape.recipient) {
                for (read, role) in &mut reads {
                    if read.op == Op::Coinbase {
                        *role = Role::Recipient;
                    } else if read.at == recipient.nonce || read.at == recipient.code_hash {
                        *role = Role::Carried;
                    }
                }
                fee.any_recipient = true;
                fee.comparisons = comparisons;
            }
            Some(fee)
        });
        // Every read must match and the keys are values, so the order is free: the likeliest
        // to differ first, so that a read set that fails fails early.
        // 1. Balances compared, but the first in program order: few in a read set, and the
        //    input that differed most often (the ether balance of an account other than the
        //    sender and the fee recipient, which other transactions of the block moved: on six
        //    mainnet blocks, 182 of 314 failed checks differed at a balance, after 41 reads on
        //    average with storage first).
        // 2. Storage, where a pool's reserves change (132 of 314, after 13 reads).
        // 3. The rest in program order (one account's reads together), with the first balance
        //    (in a transaction's program the sender's): a read set failing on its first slot
        //    (a token transfer's) then reads no account before it (with it first, `evaluate`'s
        //    p10 fell from 1.93x-1.97x to 1.89x-1.91x over three runs each).
        // [`ReadSet::probe`] takes the first balance of this order.
        let probe = reads.iter().position(|(r, role)| *role == Role::Input && r.op == Op::Balance);
        let mut keyed: Vec<(u8, (Read, Role))> = reads
            .into_iter()
            .enumerate()
            .map(|(i, (r, role))| {
                let key = match (role, r.op) {
                    (Role::Input, Op::Balance) if Some(i) != probe => 0,
                    (Role::Input, Op::Storage) => 1,
                    _ => 2,
                };
                (key, (r, role))
            })
            .collect();
        keyed.sort_by_key(|(key, _)| *key);
        let reads: Vec<(Read, Role)> = keyed.into_iter().map(|(_, read)| read).collect();
        let logs_bloom = alloy::primitives::logs_bloom(&outcome.logs);
        let mut applied = Applied::from(outcome);
        applied.logs_bloom = Some(logs_bloom);
        Self { env: program.env, reads, fee, applied }
    }

    /// Adds what this pre-execution touched to `accounts` and `slots`: every account and slot
    /// it read and every one its outcome wrote (a predicted access list's entries).
    pub fn footprint(
        &self,
        accounts: &mut std::collections::HashSet<Address>,
        slots: &mut std::collections::HashSet<(Address, U256)>,
    ) {
        for (read, _) in &self.reads {
            match read.op {
                Op::Balance | Op::Nonce | Op::CodeHash | Op::Exists => {
                    accounts.insert(word_to_address(read.args[0]));
                }
                Op::Storage => {
                    let address = word_to_address(read.args[0]);
                    accounts.insert(address);
                    slots.insert((address, read.args[1]));
                }
                _ => {}
            }
        }
        accounts.extend(self.applied.accounts().iter().map(|a| a.address));
        slots.extend(self.applied.slots().map(|(address, slot, _)| (address, slot)));
    }

    /// Whether any fee recipient is accepted (else only the recorded one).
    pub fn any_recipient(&self) -> bool {
        self.fee.as_ref().is_some_and(|f| f.any_recipient)
    }

    /// The fee recipient the read set needs, when it needs one: the recorded one, unless any
    /// is accepted. A cheap first filter before [`ReadSet::check`].
    pub fn recipient(&self) -> Option<Address> {
        match &self.fee {
            Some(fee) if fee.any_recipient => None,
            Some(fee) => Some(fee.recorded),
            None => self.reads.iter().find(|(r, _)| r.op == Op::Coinbase).map(|(r, _)| word_to_address(r.value)),
        }
    }

    /// A cheap first test of the read set: the first account balance it compares in its check
    /// order (see [`ReadSet::new`]), with the recorded value: another account's than the
    /// sender's where the program compares one (the balances that most often differed), else
    /// the sender's (whose balance differs when it has several transactions in a block).
    /// Testing it from a copy kept beside the read set spares reading the read set itself; it
    /// is a filter only, the check compares every input.
    pub fn probe(&self) -> Option<(Address, U256)> {
        self.reads
            .iter()
            .find(|(r, role)| *role == Role::Input && r.op == Op::Balance)
            .map(|(r, _)| (word_to_address(r.args[0]), r.value))
    }

    /// Approximate heap size.
    pub fn heap_bytes(&self) -> usize {
        let a = &self.applied;
        let outcome = a.logs.iter().map(|l| l.data.data.len() + 32 * l.topics().len() + 64).sum::<usize>()
            + a.output.len()
            + size_of_val(a.accounts())
            + a.slots().count() * 72
            + a.codes.iter().map(|(_, c)| c.len() + 48).sum::<usize>();
        let comparisons = self.fee.as_ref().map_or(0, |f| f.comparisons.len() * 96);
        self.reads.capacity() * size_of::<(Read, Role)>() + outcome + comparisons
    }

    /// The recorded outcome, when every input of `db` / `block` equals the recorded one (the
    /// fee recipient aside, see the module docs); `None` otherwise, or when the state cannot
    /// be read.
    pub fn check<D: DatabaseRef>(&self, db: &D, cfg: &CfgEnv, block: &BlockEnv) -> Option<TxOutcome> {
        let mut out = Applied::new();
        self.check_into(db, cfg, block, &mut out).then(|| out.outcome())
    }

    /// [`ReadSet::check`] into `out`, in the form a commit takes: `true` and the recorded
    /// outcome (adjusted for the fee recipient) copied into `out` when every input holds;
    /// `false` otherwise, `out` then meaning nothing. What an import runs.
    pub fn check_into<D: DatabaseRef>(&self, db: &D, cfg: &CfgEnv, block: &BlockEnv, out: &mut Applied) -> bool {
        let Some(fee) = self.validate(db, cfg, block) else { return false };
        out.copy_from(&self.applied);
        let adjusted = match fee {
            None => true,
            Some(Adjust::Credit { recorded, balance }) => {
                out.account_mut(&recorded).map(|e| e.balance = balance).is_some()
            }
            Some(Adjust::Recipient { recorded, recipient, balance, nonce, code_hash }) => {
                // The alias checks exclude it, but never merge two accounts' changes.
                (recipient == recorded || out.move_account(&recorded, recipient))
                    && out
                        .account_mut(&recipient)
                        .map(|e| {
                            e.balance = balance;
                            e.nonce = nonce;
                            e.code_hash = code_hash;
                        })
                        .is_some()
            }
        };
        if !adjusted {
            out.clear();
        }
        adjusted
    }

    /// Whether every input of `db` / `block` equals the recorded one (the fee recipient
    /// aside): `Some` with how the recorded outcome's fee recipient entry changes, if it does.
    fn validate<D: DatabaseRef>(&self, db: &D, cfg: &CfgEnv, block: &BlockEnv) -> Option<Option<Adjust>> {
        if self.env.spec != cfg.spec || self.env.chain_id != cfg.chain_id {
            return None;
        }
        let any_recipient = self.any_recipient();
        let recorded = self.fee.as_ref().map_or(Address::ZERO, |f| f.recorded);
        let recipient = if any_recipient { block.beneficiary } else { recorded };
        // The fee goes to another account than in the recorded run.
        let moved = recipient != recorded;
        // Reads of one account come together (balance, nonce, code hash): one state read.
        // The word `op` reads of `address`, and whether the account exists.
        let mut account: Option<(Address, Option<AccountInfo>)> = None;
        let mut account_read = |address: Address, op: Op, db: &D| -> Option<(U256, bool)> {
            if account.as_ref().is_none_or(|(a, _)| *a != address) {
                account = Some((address, db.basic_ref(address).ok()?));
            }
            let info = account.as_ref()?.1.as_ref();
            Some((account_word(op, info)?, info.is_some()))
        };
        let (mut balance, mut nonce, mut code_hash) = (None, None, None);
        for (read, role) in &self.reads {
            match role {
                Role::Recipient => continue,
                Role::Credited | Role::Carried => {
                    // The recipient's own fields (the current one's when it is a parameter).
                    let (now, exists) = account_read(recipient, read.op, db)?;
                    match read.op {
                        Op::Balance => balance = Some(now),
                        Op::Nonce => nonce = Some(now),
                        _ => code_hash = Some(now),
                    }
                    if moved && !exists {
                        // Another recipient, which the state does not hold: revm would
                        // create it, which the recorded run did not.
                        return None;
                    }
                    continue;
                }
                Role::Input => {}
            }
            let now = match read.op {
                Op::Balance | Op::Nonce | Op::CodeHash | Op::Exists => {
                    account_read(word_to_address(read.args[0]), read.op, db)?.0
                }
                op if op.kind() == OpKind::Context => context(op, cfg, block),
                Op::Storage => load_word(read.op, &read.args, db, block).ok()??,
                op => load_word(op, &read.args[..1], db, block).ok()??,
            };
            if now != read.value {
                return None;
            }
        }
        let Some(fee) = &self.fee else { return Some(None) };
        let balance = balance?.checked_add(fee.credit)?;
        if !any_recipient {
            return Some(Some(Adjust::Credit { recorded: fee.recorded, balance }));
        }
        let word: U256 = recipient.into_word().into();
        for c in &fee.comparisons {
            let args: Vec<U256> = c
                .args
                .iter()
                .map(|a| match a {
                    Operand::Recipient => word,
                    Operand::Word(w) => *w,
                })
                .collect();
            if fold_word(c.op, &args)? != c.result {
                return None;
            }
        }
        let (nonce, code_hash) = (nonce?, code_hash?);
        // Another recipient must not be empty after the credit (an empty touched account
        // would be removed, which the recorded run's did not need).
        if moved && balance.is_zero() && nonce.is_zero() && code_hash == U256::from_be_bytes(KECCAK_EMPTY.0) {
            return None;
        }
        Some(Some(Adjust::Recipient {
            recorded: fee.recorded,
            recipient,
            balance,
            nonce: nonce.try_into().ok()?,
            code_hash: code_hash.into(),
        }))
    }
}

/// How a read-set hit's recorded fee recipient entry changes ([`ReadSet::validate`]).
enum Adjust {
    /// Its balance is the current one plus the recorded credit.
    Credit { recorded: Address, balance: U256 },
    /// It moves to the current recipient, with that one's balance (credited), nonce and code
    /// hash.
    Recipient { recorded: Address, recipient: Address, balance: U256, nonce: u64, code_hash: B256 },
}

/// The fee recipient's part in a program (see [`fee_shape`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeeShape {
    /// The load of the recipient's balance, used only for the fee credit.
    pub balance: u32,
    /// Set when the recipient's address is a parameter.
    pub recipient: Option<RecipientShape>,
}

/// The uses of the fee recipient's address when it can be a parameter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecipientShape {
    /// The load of its nonce, carried into its store.
    pub nonce: u32,
    /// The load of its code hash, carried into its store.
    pub code_hash: u32,
    /// Word computations on its address whose results feed guards only.
    pub comparisons: Vec<u32>,
}

/// How `program` uses the fee recipient (`ctx.coinbase`), when the read-set memo can treat
/// its balance as a credit and perhaps its address as a parameter (see the module docs);
/// `None` when the balance is used for anything but the credit.
pub fn fee_shape(program: &Program) -> Option<FeeShape> {
    let insts = &program.insts;
    let mut uses: Vec<Vec<usize>> = vec![Vec::new(); insts.len()];
    for (i, inst) in insts.iter().enumerate() {
        for a in &inst.args {
            uses.get_mut(a.index())?.push(i);
        }
    }
    let is_coinbase = |v: &Value| insts.get(v.index()).is_some_and(|i| i.op == Op::Coinbase);
    // The recipient's account store: its address is the recipient.
    let stores: Vec<usize> = (0..insts.len())
        .filter(|&i| insts[i].op == Op::StoreAccount && insts[i].args.len() == 4 && is_coinbase(&insts[i].args[0]))
        .collect();
    let [store] = stores[..] else { return None };
    let stored = &insts[store].args;
    // `s` is stored only as the recipient's balance.
    let stored_as_balance =
        |s: usize, at: usize| at == store && stored[1].index() == s && stored[2..].iter().all(|a| a.index() != s);
    let guards_only = |v: usize| {
        !uses[v].is_empty()
            && uses[v].iter().all(|&u| insts[u].op == Op::Guard && matches!(insts[u].imm, Imm::Guard(..)))
    };
    let guarded_zero = |lt: usize| {
        uses[lt].len() == 1 && {
            let guard = &insts[uses[lt][0]];
            guard.op == Op::Guard && matches!(guard.imm, Imm::Guard(_, expected) if expected.is_zero())
        }
    };
    let loads = |op: Op| -> Vec<usize> {
        (0..insts.len()).filter(|&i| insts[i].op == op && insts[i].args.first().is_some_and(is_coinbase)).collect()
    };
    let [b] = loads(Op::Balance)[..] else { return None };
    let credit_only = uses[b].iter().all(|&u| {
        let user = &insts[u];
        match user.op {
            Op::StoreAccount => stored_as_balance(b, u),
            Op::Add => {
                user.args.iter().filter(|a| a.index() != b).count() == 1
                    && uses[u].iter().all(|&w| {
                        let next = &insts[w];
                        match next.op {
                            Op::StoreAccount => stored_as_balance(u, w),
                            Op::Lt => {
                                next.args.len() == 2
                                    && next.args[0].index() == u
                                    && next.args[1].index() == b
                                    && guarded_zero(w)
                            }
                            _ => false,
                        }
                    })
            }
            // The overflow check `lt s, b`, where `s` is this load's credit (checked above).
            Op::Lt => {
                user.args.len() == 2
                    && user.args[1].index() == b
                    && insts[user.args[0].index()].op == Op::Add
                    && insts[user.args[0].index()].args.iter().any(|a| a.index() == b)
                    && guarded_zero(u)
            }
            _ => false,
        }
    });
    if !credit_only {
        return None;
    }
    let recipient = (|| {
        let ([nonce], [code_hash]) = (&loads(Op::Nonce)[..], &loads(Op::CodeHash)[..]) else { return None };
        let (nonce, code_hash) = (*nonce, *code_hash);
        // The loaded nonce and code hash go into the store unchanged, and nowhere else.
        if uses[nonce] != [store]
            || stored[2].index() != nonce
            || uses[code_hash] != [store]
            || stored[3].index() != code_hash
        {
            return None;
        }
        let mut comparisons = Vec::new();
        for c in (0..insts.len()).filter(|&i| insts[i].op == Op::Coinbase) {
            for &u in &uses[c] {
                let user = &insts[u];
                let allowed = match user.op.kind() {
                    OpKind::Load => u == b || u == nonce || u == code_hash,
                    OpKind::Store => {
                        u == store && user.args[0].index() == c && user.args[1..].iter().all(|a| a.index() != c)
                    }
                    OpKind::Compute => {
                        user.op.ty() == Ty::Word
                            && user.args.iter().all(|a| insts[a.index()].op.ty() == Ty::Word)
                            && guards_only(u)
                            && {
                                if !comparisons.contains(&(u as u32)) {
                                    comparisons.push(u as u32);
                                }
                                true
                            }
                    }
                    _ => false,
                };
                if !allowed {
                    return None;
                }
            }
        }
        Some(RecipientShape { nonce: nonce as u32, code_hash: code_hash as u32, comparisons })
    })();
    Some(FeeShape { balance: b as u32, recipient })
}

#[cfg(test)]
mod tests {
    use revm::{
        database::InMemoryDB,
        primitives::{Address, Bytes, hardfork::SpecId},
        state::{AccountInfo, Bytecode},
    };

    use super::*;
    use crate::{
        compact::Compiled,
        passes::optimize,
        record::{RecordConfig, record},
        reference::execute_tx,
        synthetic::{SENDER, synthetic_call, synthetic_env},
    };

    const TO: Address = Address::repeat_byte(0x22);

    fn state() -> InMemoryDB {
        let mut db = InMemoryDB::default();
        db.insert_account_info(SENDER, AccountInfo::from_balance(U256::from(10u64.pow(18))));
        db
    }

    /// A value transfer's read set, recorded on `db` in `block`.
    fn transfer_read_set(db: &InMemoryDB, cfg: &CfgEnv, block: &BlockEnv) -> (ReadSet, revm::context::TxEnv) {
        let mut tx = synthetic_call(TO, Bytes::new());
        tx.value = U256::from(1000);
        let rec = record(db, cfg, block, &tx, RecordConfig::default()).expect("runs");
        let program = optimize(&rec.program.expect("a program"));
        let (outcome, reads) =
            Compiled::new(&program).expect("compiles").capture_reads(db, cfg, block, None).expect("hits its own state");
        (ReadSet::new(&program, reads, outcome), tx)
    }

    #[test]
    fn a_transfer_takes_any_fee_recipient_and_credits_the_current_balance() {
        let (cfg, block) = synthetic_env(SpecId::PRAGUE);
        let mut db = state();
        db.insert_account_info(block.beneficiary, AccountInfo::from_balance(U256::from(5)));
        let (reads, tx) = transfer_read_set(&db, &cfg, &block);
        assert!(reads.any_recipient() && reads.recipient().is_none());
        let expect = |db: &InMemoryDB, block: &BlockEnv| execute_tx(db, &cfg, block, &tx).expect("valid").0;
        // Its own state: the recorded outcome.
        assert_eq!(reads.check(&db, &cfg, &block).as_ref(), Some(&expect(&db, &block)));
        // The fee recipient's balance changed (earlier transactions paid it): credited.
        db.insert_account_info(block.beneficiary, AccountInfo::from_balance(U256::from(777)));
        assert_eq!(reads.check(&db, &cfg, &block).as_ref(), Some(&expect(&db, &block)));
        // Another fee recipient, with its own nonce and code: the entry moves to it.
        let mut other = block.clone();
        other.beneficiary = Address::repeat_byte(0x44);
        let code = Bytecode::new_legacy(Bytes::from_static(&[0x00]));
        db.insert_account_info(other.beneficiary, AccountInfo::new(U256::from(9), 3, code.hash_slow(), code));
        let got = reads.check(&db, &cfg, &other).expect("any fee recipient");
        assert_eq!(got, expect(&db, &other));
        // The sender's balance changed: a miss.
        let mut poorer = db.clone();
        poorer.insert_account_info(SENDER, AccountInfo::from_balance(U256::from(10u64.pow(17))));
        assert_eq!(reads.check(&poorer, &cfg, &block), None);
    }

    #[test]
    fn a_fee_recipient_the_transaction_touches_or_that_does_not_exist_misses() {
        let (cfg, block) = synthetic_env(SpecId::PRAGUE);
        let mut db = state();
        db.insert_account_info(block.beneficiary, AccountInfo::from_balance(U256::from(5)));
        db.insert_account_info(TO, AccountInfo::from_balance(U256::from(5)));
        let (reads, _) = transfer_read_set(&db, &cfg, &block);
        for recipient in [TO, SENDER, Address::repeat_byte(0x55), Address::with_last_byte(3)] {
            let mut other = block.clone();
            other.beneficiary = recipient;
            assert_eq!(reads.check(&db, &cfg, &other), None, "fee recipient {recipient}");
        }
    }

    #[test]
    fn a_program_reading_the_fee_recipient_compares_it() {
        // COINBASE BALANCE PUSH0 SSTORE: the balance is stored, not only credited.
        let (cfg, block) = synthetic_env(SpecId::PRAGUE);
        let mut db = state();
        db.insert_account_info(block.beneficiary, AccountInfo::from_balance(U256::from(5)));
        let code = Bytecode::new_legacy(Bytes::from_static(&[0x41, 0x31, 0x5f, 0x55, 0x00]));
        db.insert_account_info(TO, AccountInfo::new(U256::ZERO, 1, code.hash_slow(), code));
        let tx = synthetic_call(TO, Bytes::new());
        let rec = record(&db, &cfg, &block, &tx, RecordConfig::default()).expect("runs");
        let program = optimize(&rec.program.expect("a program"));
        assert_eq!(fee_shape(&program), None, "the balance is used beyond the credit");
        let (outcome, captured) =
            Compiled::new(&program).expect("compiles").capture_reads(&db, &cfg, &block, None).expect("hits");
        let reads = ReadSet::new(&program, captured, outcome);
        assert_eq!(reads.recipient(), Some(block.beneficiary));
        assert!(reads.check(&db, &cfg, &block).is_some());
        db.insert_account_info(block.beneficiary, AccountInfo::from_balance(U256::from(6)));
        assert_eq!(reads.check(&db, &cfg, &block), None, "the balance it stored changed");
    }
}
