//! Recording: pre-execute a transaction in revm and turn what happened into a [`Program`].
//!
//! ```text
//!   record(db, cfg, block, tx)
//!     ├─ revm + Tracer (Inspector) ──▶ result, state, what the interpreter did
//!     └─ lower:  envelope prologue (validity guards, fee price)
//!                ─▶ body (value transfer; EVM frames: not yet)
//!                ─▶ epilogue (gas payment, refund, fee recipient)
//!                ─▶ stores (final info of every touched account)
//! ```
//!
//! **Scope today.** Transactions that run no EVM code: calls to accounts without code that
//! are not precompiles, without an EIP-7702 authorization list. Everything else gets no
//! program and a counted [`NoApReason`]; it never gets a wrong one. The EVM tracer (symbolic
//! stack and memory, frames, storage aliasing) extends [`Tracer`] next.
//!
//! **Soundness.** Every value the path's shape depends on is guarded; the guards below each
//! say why they are needed and why they are enough. Values read from the state are loaded
//! through the same function the interpreter uses, so the traced value a guard expects is
//! exactly what the interpreter will compare against.

use std::collections::BTreeMap;

use revm::{
    Context, DatabaseRef, InspectEvm, Inspector, MainBuilder, MainContext,
    context::{BlockEnv, CfgEnv, ContextTr, TxEnv, result::ExecutionResult},
    database_interface::{DBErrorMarker, WrapDatabaseRef},
    interpreter::{CallInputs, CallOutcome, CreateInputs, CreateOutcome, Interpreter, interpreter::EthInterpreter},
    primitives::{Address, KECCAK_EMPTY, TxKind, U256, hardfork::SpecId},
    state::EvmState,
};

use crate::{
    interp::{context, load_word},
    ops::{GuardKind, Op},
    outcome::TxOutcome,
    program::{AccountFlags, Builder, Imm, Program, ProgramEnv, Value},
};

/// Why a pre-execution produced no program. A value, not an error: counted, never fatal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum NoApReason {
    /// The transaction runs EVM code, which the tracer does not lower yet.
    CodeExecution,
    /// The transaction creates a contract.
    Create,
    /// The transaction calls a precompile.
    Precompile,
    /// The transaction carries an EIP-7702 authorization list.
    Authorization,
    /// The trace exceeded the size cap.
    TooLarge,
    /// revm did something the lowering does not model (touched an unexpected account, or
    /// left a value the lowering did not predict): refused rather than guessed.
    Unmodelled,
}

impl NoApReason {
    /// Short name for reports and metrics.
    pub const fn name(self) -> &'static str {
        match self {
            Self::CodeExecution => "code-execution",
            Self::Create => "create",
            Self::Precompile => "precompile",
            Self::Authorization => "authorization",
            Self::TooLarge => "too-large",
            Self::Unmodelled => "unmodelled",
        }
    }
}

/// Limits on recording.
#[derive(Clone, Copy, Debug)]
pub struct RecordConfig {
    /// Largest program, in instructions; a longer trace gets [`NoApReason::TooLarge`].
    pub max_insts: usize,
}

impl Default for RecordConfig {
    fn default() -> Self {
        Self { max_insts: 1 << 20 }
    }
}

/// What one pre-execution produced.
#[derive(Debug)]
pub struct Recording {
    /// revm's result of the pre-execution.
    pub result: ExecutionResult,
    /// revm's post-transaction state (not committed).
    pub state: EvmState,
    /// The outcome of the pre-execution, as the reference executor reports it.
    pub outcome: TxOutcome,
    /// The program, or why there is none.
    pub program: Result<Program, NoApReason>,
    /// What the tracer saw.
    pub tracer: Tracer,
}

/// revm refused the transaction (invalid in this future): no outcome, no program.
#[derive(Debug, thiserror::Error)]
#[error("revm rejected the transaction: {0}")]
pub struct RecordError(pub String);

/// Watches the interpreter during a pre-execution.
///
/// Today it only notes whether any EVM code or sub-frame ran; lowering of opcodes grows here.
#[derive(Debug, Default)]
pub struct Tracer {
    steps: u64,
    frames: u64,
}

impl<CTX: ContextTr> Inspector<CTX, EthInterpreter> for Tracer {
    fn step(&mut self, _interp: &mut Interpreter<EthInterpreter>, _context: &mut CTX) {
        self.steps += 1;
    }

    fn call(&mut self, _context: &mut CTX, _inputs: &mut CallInputs) -> Option<CallOutcome> {
        self.frames += 1;
        None
    }

    fn create(&mut self, _context: &mut CTX, _inputs: &mut CreateInputs) -> Option<CreateOutcome> {
        self.frames += 1;
        None
    }
}

/// Pre-executes `tx` on `db` (read-only) in the context `cfg` / `block`, and lowers the trace.
pub fn record<D>(
    db: &D,
    cfg: &CfgEnv,
    block: &BlockEnv,
    tx: &TxEnv,
    config: RecordConfig,
) -> Result<Recording, RecordError>
where
    D: DatabaseRef,
    D::Error: DBErrorMarker,
{
    let mut evm = Context::mainnet()
        .with_db(WrapDatabaseRef(db))
        .with_cfg(cfg.clone())
        .with_block(block.clone())
        .build_mainnet_with_inspector(Tracer::default());
    let res = evm.inspect_tx(tx.clone()).map_err(|e| RecordError(e.to_string()))?;
    let tracer = std::mem::take(&mut evm.inspector);
    drop(evm);
    let outcome = TxOutcome::from_revm(&res.result, &res.state);
    let program = lower(db, cfg, block, tx, &tracer, &outcome, &res.state)
        .and_then(|p| if p.insts.len() > config.max_insts { Err(NoApReason::TooLarge) } else { Ok(p) });
    Ok(Recording { result: res.result, state: res.state, outcome, program, tracer })
}

/// One account as the lowering tracks it: its symbolic address and current info.
struct SymAccount {
    addr: Value,
    balance: Value,
    nonce: Value,
}

/// The symbolic world: accounts keyed by their *concrete* address in this trace.
///
/// Keying by the concrete address is what makes aliasing explicit: when a new symbolic
/// address is first used, it is compared with every account already in the world, and the
/// result of each comparison is guarded. Two symbolic addresses are then the same account
/// in every future the program hits in, exactly as in the trace.
struct World<'a, D> {
    db: &'a D,
    cfg: &'a CfgEnv,
    block: &'a BlockEnv,
    b: Builder,
    accounts: BTreeMap<Address, SymAccount>,
}

impl<D: DatabaseRef> World<'_, D> {
    /// A load or context read; its traced value is read through the interpreter's own
    /// functions, so it means exactly what the interpreter will compare against.
    fn load(&mut self, op: Op, args: &[Value]) -> Value {
        let traced = if args.is_empty() {
            context(op, self.cfg, self.block)
        } else {
            let words: Vec<U256> = args.iter().map(|a| self.b.traced_word(*a)).collect();
            // The pre-execution just read the same state successfully.
            load_word(op, &words, self.db, self.block).ok().flatten().unwrap_or_default()
        };
        self.b.load(op, args, traced)
    }

    /// The account at concrete address `address`, reached through the symbolic `addr`.
    fn account(&mut self, address: Address, addr: Value) -> &mut SymAccount {
        if let Some(existing) = self.accounts.get(&address).map(|a| a.addr) {
            // Alias: the same account as an earlier access. Guarding equality is enough for
            // the wiring: both symbolic addresses then name one account in any future.
            if existing != addr {
                let same = self.b.compute(Op::Eq, &[existing, addr]);
                self.b.guard(GuardKind::Alias, same);
            }
        } else {
            // A new account: it must stay distinct from every account seen so far, or its
            // loads would read values an earlier store has changed.
            let others: Vec<Value> = self.accounts.values().map(|a| a.addr).collect();
            for other in others {
                let same = self.b.compute(Op::Eq, &[other, addr]);
                self.b.guard(GuardKind::Alias, same);
            }
            let balance = self.load(Op::Balance, &[addr]);
            let nonce = self.load(Op::Nonce, &[addr]);
            self.accounts.insert(address, SymAccount { addr, balance, nonce });
        }
        self.accounts.get_mut(&address).expect("present: found or inserted above")
    }
}

fn word(a: Address) -> U256 {
    a.into_word().into()
}

/// Lowers a pre-execution that ran no EVM code into a program.
fn lower<D: DatabaseRef>(
    db: &D,
    cfg: &CfgEnv,
    block: &BlockEnv,
    tx: &TxEnv,
    tracer: &Tracer,
    outcome: &TxOutcome,
    state: &EvmState,
) -> Result<Program, NoApReason> {
    let TxKind::Call(to) = tx.kind else {
        return Err(NoApReason::Create);
    };
    if !tx.authorization_list.is_empty() {
        return Err(NoApReason::Authorization);
    }
    if tracer.steps > 0 || tracer.frames > 1 {
        return Err(NoApReason::CodeExecution);
    }
    let spec = cfg.spec;
    if revm::precompile::Precompiles::new(revm::precompile::PrecompileSpecId::from_spec_id(spec)).contains(&to) {
        return Err(NoApReason::Precompile);
    }

    let mut w = World { db, cfg, block, b: Builder::new(), accounts: BTreeMap::new() };
    let caller = w.b.word(word(tx.caller));
    let recipient = w.b.word(word(to));
    let coinbase = w.load(Op::Coinbase, &[]);
    let basefee = w.load(Op::BaseFee, &[]);

    // --- Validity: the guards behind every check revm's handler makes against the state
    // and the block. Transaction-only checks (chain id, intrinsic gas, priority <= max fee)
    // depend on constants and need no guard.
    let sender = w.account(tx.caller, caller);
    let (sender_balance, sender_nonce) = (sender.balance, sender.nonce);
    // The nonce must equal the transaction's: pinning it is exactly revm's check.
    w.b.guard(GuardKind::Envelope, sender_nonce);
    // EIP-3607: a sender with code is rejected; pinning the code hash decides the check
    // the same way in every future.
    let sender_code = w.load(Op::CodeHash, &[caller]);
    w.b.guard(GuardKind::Envelope, sender_code);
    // The balance must cover gas_limit * max_fee + value (+ max blob fee): revm's
    // `max_balance_spending`, with the same constants.
    let blob_gas = U256::from(tx.blob_hashes.len() as u64) * U256::from(revm::primitives::eip4844::GAS_PER_BLOB);
    let max_spending =
        U256::from(tx.gas_limit) * U256::from(tx.gas_price) + tx.value + blob_gas * U256::from(tx.max_fee_per_blob_gas);
    let max_spending = w.b.word(max_spending);
    let short = w.b.compute(Op::Lt, &[sender_balance, max_spending]);
    w.b.guard(GuardKind::Envelope, short);
    // The fee cap must reach the base fee (revm checks this for every type; before London
    // the base fee is 0 and the guard always holds).
    let max_fee = w.b.word(U256::from(tx.gas_price));
    let below_base = w.b.compute(Op::Lt, &[max_fee, basefee]);
    w.b.guard(GuardKind::Envelope, below_base);
    // The gas limit must fit in the block's.
    let block_gas = w.load(Op::GasLimit, &[]);
    let tx_gas = w.b.word(U256::from(tx.gas_limit));
    let over = w.b.compute(Op::Lt, &[block_gas, tx_gas]);
    w.b.guard(GuardKind::Envelope, over);
    let blob_fee = if blob_gas.is_zero() {
        None
    } else {
        // EIP-4844: the blob base fee must not exceed the transaction's cap.
        let blob_price = w.load(Op::BlobBaseFee, &[]);
        let cap = w.b.word(U256::from(tx.max_fee_per_blob_gas));
        let over = w.b.compute(Op::Lt, &[cap, blob_price]);
        w.b.guard(GuardKind::Envelope, over);
        let blob_gas = w.b.word(blob_gas);
        Some(w.b.compute(Op::Mul, &[blob_gas, blob_price]))
    };

    // --- The price actually paid: EIP-1559 types pay min(max fee, base fee + tip).
    let price = match tx.gas_priority_fee {
        Some(tip) if tx.tx_type >= 2 => {
            let tip = w.b.word(U256::from(tip));
            let offered = w.b.compute(Op::Add, &[basefee, tip]);
            w.b.compute(Op::Min, &[max_fee, offered])
        }
        _ => max_fee,
    };
    let gas_used = w.b.word(U256::from(outcome.gas_used));

    // --- Effects. The sender pays gas_used * price (revm charges the whole limit and
    // refunds the rest: the same sum; the balance guard above rules out wrapping) and the
    // blob fee, and its nonce goes up by one.
    let gas_cost = w.b.compute(Op::Mul, &[gas_used, price]);
    let mut paid = w.b.compute(Op::Sub, &[sender_balance, gas_cost]);
    if let Some(blob_fee) = blob_fee {
        paid = w.b.compute(Op::Sub, &[paid, blob_fee]);
    }
    let one = w.b.word(U256::from(1));
    let bumped = w.b.compute(Op::Add, &[sender_nonce, one]);
    let sender = w.account(tx.caller, caller);
    sender.balance = paid;
    sender.nonce = bumped;

    // The value transfer. The recipient's code decides whether code runs: pin it (this
    // also pins EIP-7702 delegations, whose code hash is that of the designator).
    let recipient_code = w.load(Op::CodeHash, &[recipient]);
    w.b.guard(GuardKind::Code, recipient_code);
    let value = w.b.word(tx.value);
    let debited = w.b.compute(Op::Sub, &[paid, value]);
    w.account(tx.caller, caller).balance = debited;
    let before = w.account(to, recipient).balance;
    let credited = add_no_overflow(&mut w.b, before, value);
    w.account(to, recipient).balance = credited;

    // The fee recipient gets gas_used * (price - base fee) from London, gas_used * price
    // before. Whether it is the sender or the recipient is guarded by `account`.
    let tip_price = if spec.is_enabled_in(SpecId::LONDON) { w.b.compute(Op::Sub, &[price, basefee]) } else { price };
    let reward = w.b.compute(Op::Mul, &[gas_used, tip_price]);
    let before = w.account(block.beneficiary, coinbase).balance;
    let credited = add_no_overflow(&mut w.b, before, reward);
    w.account(block.beneficiary, coinbase).balance = credited;

    store_accounts(&mut w, state)?;
    let output = w.b.bytes(outcome.output.clone());
    w.b.store(Op::Output, &[output], Imm::None);
    let env = ProgramEnv { spec, chain_id: cfg.chain_id };
    Ok(w.b.finish(env, outcome.status.clone(), outcome.gas_used, outcome.gas_refunded))
}

/// Emits the final info of every account revm touched, checking that the lowering's
/// traced values are revm's (a difference is a lowering bug: no program then).
fn store_accounts<D: DatabaseRef>(w: &mut World<'_, D>, state: &EvmState) -> Result<(), NoApReason> {
    let touched: Vec<(Address, &revm::state::Account)> =
        state.iter().filter(|(_, a)| a.is_touched()).map(|(addr, a)| (*addr, a)).collect();
    if touched.len() != w.accounts.len() {
        // An account changed here that revm did not touch, or the reverse.
        return Err(NoApReason::Unmodelled);
    }
    let spec = w.cfg.spec;
    // Guards first, stores after them all: a miss must leave nothing behind.
    let mut stores = Vec::with_capacity(touched.len());
    for (address, account) in touched {
        let Some(sym) = w.accounts.get(&address) else {
            return Err(NoApReason::Unmodelled);
        };
        let (addr, balance, nonce) = (sym.addr, sym.balance, sym.nonce);
        // No code runs on this path, so every code hash is the one loaded: pinned for the
        // sender and recipient, data for the fee recipient.
        let code_hash = w.load(Op::CodeHash, &[addr]);
        let traced = (w.b.traced_word(balance), w.b.traced_word(nonce), w.b.traced_word(code_hash));
        if traced != (account.info.balance, U256::from(account.info.nonce), account.info.code_hash.into()) {
            debug_assert!(false, "lowering disagrees with revm on {address}: {traced:?}");
            return Err(NoApReason::Unmodelled);
        }
        if !spec.is_enabled_in(SpecId::SPURIOUS_DRAGON) {
            // Before EIP-161 revm normalizes touched empty accounts (marked created if they
            // did not exist, untouched if they did): pin existence and emptiness, which
            // decide that normalization.
            let exists = w.load(Op::Exists, &[addr]);
            w.b.guard(GuardKind::WriteSet, exists);
            let used = w.b.compute(Op::Or, &[balance, nonce]);
            let no_funds = w.b.compute(Op::IsZero, &[used]);
            let empty_code = w.b.word(KECCAK_EMPTY.into());
            let no_code = w.b.compute(Op::Eq, &[code_hash, empty_code]);
            let empty = w.b.compute(Op::And, &[no_funds, no_code]);
            w.b.guard(GuardKind::WriteSet, empty);
        }
        let flags = AccountFlags { created: account.is_created(), selfdestructed: account.is_selfdestructed() };
        stores.push(([addr, balance, nonce, code_hash], flags));
    }
    for (args, flags) in stores {
        w.b.store(Op::StoreAccount, &args, Imm::Flags(flags));
    }
    Ok(())
}

/// `a + x`, guarded not to wrap: revm refuses a credit that would overflow a balance.
fn add_no_overflow(b: &mut Builder, a: Value, x: Value) -> Value {
    let sum = b.compute(Op::Add, &[a, x]);
    let wrapped = b.compute(Op::Lt, &[sum, a]);
    b.guard(GuardKind::Envelope, wrapped);
    sum
}
