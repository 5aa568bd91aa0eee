//! Recording: pre-execute a transaction in revm and turn what happened into a [`Program`].
//!
//! ```text
//!   record(db, cfg, block, tx)
//!     ├─ prologue   validity guards (nonce, sender code, balance, fee caps, gas limit),
//!     │             the price paid, gas purchase, nonce bump
//!     ├─ revm + Tracer (Inspector): value transfer, every frame's opcodes, world
//!     │             checkpoints on revert (tracer.rs, world.rs, memory.rs)
//!     ├─ epilogue   refund of unused gas, fee-recipient payment
//!     └─ stores     final info of every touched account, changed slots, logs, output
//! ```
//!
//! **Soundness.** Every value the path's shape depends on is guarded, at the place the
//! dependency arises (each guard says why it is needed and why it is enough). Every traced
//! value is checked against revm as the recording goes (stack at each step, memory size,
//! calldata, frame outputs, final accounts and slots): a disagreement ends the recording
//! with [`NoApReason::Unmodelled`]. What is not modelled gets no program and a counted
//! reason; it never gets a wrong one.

mod memory;
mod tracer;
mod world;

use std::collections::BTreeMap;

use revm::{
    DatabaseRef, InspectEvm,
    context::{BlockEnv, CfgEnv, TxEnv, result::ExecutionResult},
    database_interface::{DBErrorMarker, WrapDatabaseRef},
    precompile::{PrecompileSpecId, Precompiles},
    primitives::{Address, B256, KECCAK_EMPTY, TxKind, U256, hardfork::SpecId},
    state::EvmState,
};

use crate::{
    ops::{GuardKind, Op},
    outcome::TxOutcome,
    program::{AccountFlags, Builder, Imm, Program, ProgramEnv, Value},
};
use tracer::{TopCall, Tracer};
use world::{Lowering, SymAccount, World, word};

/// Why a pre-execution produced no program. A value, not an error: counted, never fatal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum NoApReason {
    /// EXTCODECOPY of an EIP-7702 delegation designator (not modelled).
    Authorization,
    /// The trace exceeded the size cap.
    TooLarge,
    /// revm did something the tracer does not model, or a traced value disagreed with
    /// revm's: refused rather than guessed.
    Unmodelled,
}

impl NoApReason {
    /// Short name for reports and metrics.
    pub const fn name(self) -> &'static str {
        match self {
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
    /// Most interpreter steps traced; a longer execution gets [`NoApReason::TooLarge`]
    /// (revm still runs it to the end, so the outcome is known either way).
    pub max_steps: u64,
    /// Keep a line per interpreter step (for `prescient diff`; costly, off by default).
    pub log_steps: bool,
}

impl Default for RecordConfig {
    fn default() -> Self {
        Self { max_insts: 1 << 20, max_steps: 4_000_000, log_steps: false }
    }
}

/// What the tracer saw, for reports and `prescient diff`.
#[derive(Clone, Debug, Default)]
pub struct TraceSummary {
    /// Interpreter steps traced.
    pub steps: u64,
    /// Why the recording stopped early, in words.
    pub abort: Option<String>,
    /// One line per step (depth, pc, opcode, stack top, program size), when asked for.
    pub log: Vec<String>,
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
    pub trace: TraceSummary,
}

/// A pre-execution that produced no outcome at all. Two classes a caller must keep apart: the
/// transaction is invalid in this future (a value of the prediction, counted), or the state
/// backend failed (an environment failure: a node outage must not count as an invalid
/// transaction).
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// revm rejected the transaction in this future (nonce, balance, fee, gas limit).
    #[error("revm rejected the transaction: {0}")]
    Rejected(String),
    /// The state backend failed while the transaction ran.
    #[error("the state backend failed: {0}")]
    Database(String),
}

impl RecordError {
    /// Whether the state backend failed (retry, or report the backend), rather than the
    /// transaction being invalid.
    pub fn is_database(&self) -> bool {
        matches!(self, Self::Database(_))
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
    let precompiles = Precompiles::new(PrecompileSpecId::from_spec_id(cfg.spec));
    let bound = precompiles.addresses().map(|a| word(*a)).max().unwrap_or_default() + U256::from(1);
    // EIP-2930 allows an address to appear more than once; revm warms the union of its keys.
    let mut prewarmed: BTreeMap<Address, Vec<B256>> = BTreeMap::new();
    for item in &tx.access_list.0 {
        prewarmed.entry(item.address).or_default().extend_from_slice(&item.storage_keys);
    }
    for keys in prewarmed.values_mut() {
        keys.sort_unstable();
        keys.dedup();
    }
    let mut low = Lowering {
        db,
        cfg,
        block,
        b: Builder::new(),
        world: World::default(),
        prewarmed,
        precompile_bound: bound,
        price: Value(0),
    };
    let to = match tx.kind {
        TxKind::Call(to) => to,
        TxKind::Create => Address::ZERO,
    };
    let top = prologue(&mut low, tx, to);
    let mut tracer = Tracer::new(low, top, config.max_insts, config.max_steps);
    if config.log_steps {
        tracer.log = Some(Vec::new());
    }
    let mut evm = crate::reference::evm_with_inspector(WrapDatabaseRef(db), cfg, block, tracer);
    let res = evm.inspect_tx(tx.clone()).map_err(|e| match e {
        revm::context::result::EVMError::Database(e) => RecordError::Database(e.to_string()),
        other => RecordError::Rejected(other.to_string()),
    })?;
    let tracer = evm.inspector;
    let outcome = TxOutcome::from_revm(&res.result, &res.state);
    let trace = TraceSummary {
        steps: tracer.steps,
        abort: tracer.abort.as_ref().map(|(_, why)| why.clone()),
        log: tracer.log.clone().unwrap_or_default(),
    };
    let program = match tracer.abort {
        Some((reason, _)) => Err(reason),
        None => {
            let (output, created) = (tracer.top_output, tracer.top_created);
            finish(tracer.low, tx, &outcome, &res.state, output, created)
                .and_then(|p| if p.insts.len() > config.max_insts { Err(NoApReason::TooLarge) } else { Ok(p) })
        }
    };
    Ok(Recording { result: res.result, state: res.state, outcome, program, trace })
}

impl<D: DatabaseRef> Lowering<'_, D> {
    /// `a + x`, guarded not to wrap: revm refuses a credit that would overflow a balance.
    pub(crate) fn add_no_overflow(&mut self, a: Value, x: Value) -> Value {
        let sum = self.b.compute(Op::Add, &[a, x]);
        let wrapped = self.b.compute(Op::Lt, &[sum, a]);
        self.b.guard(GuardKind::Envelope, wrapped);
        sum
    }

    /// Whether `address` is a precompile under the recording's spec.
    pub(crate) fn is_precompile(&self, address: Address) -> bool {
        Precompiles::new(PrecompileSpecId::from_spec_id(self.cfg.spec)).contains(&address)
    }
}

/// The envelope before execution: the guards behind every check revm's handler makes
/// against the state and the block, the price paid, the gas purchase and the nonce bump.
/// Transaction-only checks (chain id, intrinsic gas, priority fee <= max fee) depend on
/// constants and need no guard.
fn prologue<D: DatabaseRef>(w: &mut Lowering<'_, D>, tx: &TxEnv, to: Address) -> TopCall {
    let caller = w.b.word(word(tx.caller));
    let recipient = w.b.word(word(to));
    let coinbase = w.load(Op::Coinbase, &[]);
    let basefee = w.load(Op::BaseFee, &[]);
    // The fee recipient is in the world from the start, so every account the transaction
    // touches is compared with it: the fee payment at the end then lands on the right one.
    w.account(w.block.beneficiary, coinbase);
    let sender = w.account(tx.caller, caller).clone();
    // The nonce must equal the transaction's: pinning it is exactly revm's check.
    w.b.guard(GuardKind::Envelope, sender.nonce);
    // EIP-3607: a sender with code is rejected (EIP-7702 delegations excepted); pinning the
    // code hash decides the check the same way in every future.
    w.b.guard(GuardKind::Envelope, sender.code_hash);
    // The balance must cover gas_limit * max_fee + value (+ max blob fee): revm's
    // `max_balance_spending`, with the same constants.
    let blob_gas = U256::from(tx.blob_hashes.len() as u64) * U256::from(revm::primitives::eip4844::GAS_PER_BLOB);
    let max_spending =
        U256::from(tx.gas_limit) * U256::from(tx.gas_price) + tx.value + blob_gas * U256::from(tx.max_fee_per_blob_gas);
    let max_spending = w.b.word(max_spending);
    let short = w.b.compute(Op::Lt, &[sender.balance, max_spending]);
    w.b.guard(GuardKind::Envelope, short);
    // The fee cap must reach the base fee (checked for every type; 0 before London).
    let max_fee = w.b.word(U256::from(tx.gas_price));
    let below_base = w.b.compute(Op::Lt, &[max_fee, basefee]);
    w.b.guard(GuardKind::Envelope, below_base);
    // The gas limit must fit in the block's.
    let block_gas = w.load(Op::GasLimit, &[]);
    let tx_gas = w.b.word(U256::from(tx.gas_limit));
    let over = w.b.compute(Op::Lt, &[block_gas, tx_gas]);
    w.b.guard(GuardKind::Envelope, over);
    // EIP-1559 types pay min(max fee, base fee + tip); older types their gas price.
    w.price = match tx.gas_priority_fee {
        Some(tip) if tx.tx_type >= 2 => {
            let tip = w.b.word(U256::from(tip));
            let offered = w.b.compute(Op::Add, &[basefee, tip]);
            w.b.compute(Op::Min, &[max_fee, offered])
        }
        _ => max_fee,
    };
    // Gas purchase: the whole limit now (the unused part comes back in the epilogue), and
    // the blob fee, which does not.
    let purchase = w.b.compute(Op::Mul, &[tx_gas, w.price]);
    let mut balance = w.b.compute(Op::Sub, &[sender.balance, purchase]);
    if !blob_gas.is_zero() {
        // EIP-4844: the blob base fee must not exceed the transaction's cap.
        let blob_price = w.load(Op::BlobBaseFee, &[]);
        let cap = w.b.word(U256::from(tx.max_fee_per_blob_gas));
        let over = w.b.compute(Op::Lt, &[cap, blob_price]);
        w.b.guard(GuardKind::Envelope, over);
        let blob_gas = w.b.word(blob_gas);
        let blob_fee = w.b.compute(Op::Mul, &[blob_gas, blob_price]);
        balance = w.b.compute(Op::Sub, &[balance, blob_fee]);
    }
    let one = w.b.word(U256::from(1));
    let nonce = w.b.compute(Op::Add, &[sender.nonce, one]);
    let account = w.account(tx.caller, caller);
    account.balance = balance;
    if matches!(tx.kind, TxKind::Call(_)) {
        account.nonce = nonce;
    }
    authorizations(w, tx);
    let value_v = w.b.word(tx.value);
    let calldata = w.b.bytes(tx.data.clone());
    TopCall { caller_v: caller, to, to_v: recipient, value_v, calldata }
}

/// EIP-7702: applies the authorization list as revm's `apply_auth_list` does, after the gas
/// purchase. Chain id, nonce bound and the signer are transaction constants; the authority's
/// code, nonce, existence and emptiness decide each step and are pinned.
fn authorizations<D: DatabaseRef>(w: &mut Lowering<'_, D>, tx: &TxEnv) {
    use revm::context_interface::transaction::AuthorizationTr;
    for auth in &tx.authorization_list {
        let chain = auth.chain_id();
        if (!chain.is_zero() && chain != U256::from(w.cfg.chain_id)) || auth.nonce() == u64::MAX {
            continue;
        }
        let Some(authority) = auth.authority() else { continue };
        let authority_v = w.b.word(word(authority));
        let account = w.account(authority, authority_v).clone();
        // Only an account without code, or already delegated, can be delegated: pin its code.
        w.b.guard(GuardKind::Code, account.code_hash);
        let code = match account.code.and_then(|c| w.b.traced(c).cloned()) {
            Some(crate::semantics::Val::Bytes(bytes)) => bytes,
            _ => w.code_of(authority),
        };
        let delegated = world::delegate_of(&code).is_some();
        if !(code.is_empty() || delegated) {
            continue;
        }
        // The authorization's nonce must equal the account's: pin the equality.
        let wanted = w.b.word(U256::from(auth.nonce()));
        let same = w.b.compute(Op::Eq, &[account.nonce, wanted]);
        w.b.guard(GuardKind::Path, same);
        if w.b.traced_word(same).is_zero() {
            continue;
        }
        // Whether the account existed decides a gas refund: pin existence and emptiness.
        let exists = w.load(Op::Exists, &[authority_v]);
        w.b.guard(GuardKind::Gas, exists);
        let used = w.b.compute(Op::Or, &[account.balance, account.nonce]);
        let no_funds = w.b.compute(Op::IsZero, &[used]);
        w.b.guard(GuardKind::Gas, no_funds);
        // Delegate (or clear, for the zero address) and bump the nonce.
        let designator = if auth.address().is_zero() {
            revm::primitives::Bytes::new()
        } else {
            revm::state::Bytecode::new_eip7702(Address::from(*auth.address())).original_bytes()
        };
        let hash = if designator.is_empty() { KECCAK_EMPTY } else { revm::primitives::keccak256(&designator) };
        let hash = w.b.word(hash.into());
        let code = w.b.bytes(designator);
        let one = w.b.word(U256::from(1));
        let nonce = w.b.compute(Op::Add, &[account.nonce, one]);
        let account = w.account(authority, authority_v);
        account.code_hash = hash;
        account.code = Some(code);
        account.nonce = nonce;
    }
}

/// The envelope after execution, then the stores.
fn finish<D: DatabaseRef>(
    mut w: Lowering<'_, D>,
    tx: &TxEnv,
    outcome: &TxOutcome,
    state: &EvmState,
    output: Option<Value>,
    created: Option<Value>,
) -> Result<Program, NoApReason> {
    let spec = w.cfg.spec;
    let caller = w.b.word(word(tx.caller));
    let gas_used = w.b.word(U256::from(outcome.gas_used));
    // Refund of unused gas: (limit - used) * price, which nets the purchase to used * price.
    let unused = w.b.word(U256::from(tx.gas_limit - outcome.gas_used.min(tx.gas_limit)));
    let refund = w.b.compute(Op::Mul, &[unused, w.price]);
    let before = w.account(tx.caller, caller).balance;
    // revm drops a credit that would overflow the balance; the program must not wrap
    // instead (found by the perturbation fuzzer), so the no-overflow case is pinned.
    let after = w.add_no_overflow(before, refund);
    w.account(tx.caller, caller).balance = after;
    // The fee recipient gets used * (price - base fee) from London, used * price before.
    let basefee = w.load(Op::BaseFee, &[]);
    let tip_price =
        if spec.is_enabled_in(SpecId::LONDON) { w.b.compute(Op::Sub, &[w.price, basefee]) } else { w.price };
    let reward = w.b.compute(Op::Mul, &[gas_used, tip_price]);
    let coinbase = w.load(Op::Coinbase, &[]);
    let before = w.account(w.block.beneficiary, coinbase).balance;
    let after = w.add_no_overflow(before, reward);
    w.account(w.block.beneficiary, coinbase).balance = after;

    // Guards first, stores after them all: a miss must leave nothing behind.
    let mut account_stores = Vec::new();
    let mut slot_stores = Vec::new();
    let mut code_stores = Vec::new();
    let world = w.world.clone();
    // In the order the transaction reached the accounts (their symbolic addresses' order),
    // not their concrete addresses': the futures of one transaction then lower to the same
    // instruction sequence wherever they agree, which is what merging shares.
    let mut accounts: Vec<(&Address, &SymAccount)> = world.accounts.iter().collect();
    accounts.sort_by_key(|(_, sym)| sym.addr);
    for (address, sym) in accounts {
        if !spec.is_enabled_in(SpecId::SPURIOUS_DRAGON) {
            // Before EIP-161 revm normalizes touched accounts left empty: marked created if
            // they did not exist, untouched if they did. Whether an account ends up in the
            // write set therefore depends on its emptiness after the transaction, and when
            // empty on its existence, for every account the transaction reached (an untouched
            // one may be untouched only because it was empty): pin emptiness, and existence
            // where it matters. An account left with funds or code is committed alike whether
            // it existed or not (a fee recipient of another block, say).
            let empty = w.is_empty(sym);
            w.b.guard(GuardKind::WriteSet, empty);
            if w.b.traced_word(empty) != U256::ZERO {
                let exists = w.load(Op::Exists, &[sym.addr]);
                w.b.guard(GuardKind::WriteSet, exists);
            }
        }
        let revm_account = state.get(address).filter(|a| a.is_touched());
        let Some(account) = revm_account else {
            // Loaded but not touched: the lowering must not have changed it.
            let loaded = (w.load(Op::Balance, &[sym.addr]), w.load(Op::Nonce, &[sym.addr]));
            let changed_slot = sym.storage.values().any(|s| w.b.traced_word(s.current) != w.b.traced_word(s.original));
            if loaded != (sym.balance, sym.nonce) || changed_slot {
                return Err(NoApReason::Unmodelled);
            }
            continue;
        };
        let traced = (w.b.traced_word(sym.balance), w.b.traced_word(sym.nonce), w.b.traced_word(sym.code_hash));
        if traced != (account.info.balance, U256::from(account.info.nonce), account.info.code_hash.into()) {
            return Err(NoApReason::Unmodelled);
        }
        let mut changed: BTreeMap<U256, U256> =
            account.changed_storage_slots().map(|(k, v)| (*k, v.present_value())).collect();
        let mut slots: Vec<(&U256, _)> = sym.storage.iter().collect();
        slots.sort_by_key(|(_, slot)| slot.key);
        for (key, slot) in slots {
            if slot.current == slot.original {
                continue;
            }
            // Whether a written slot ends up changed decides the write set: pin it.
            let same = w.b.compute(Op::Eq, &[slot.original, slot.current]);
            w.b.guard(GuardKind::WriteSet, same);
            if w.b.traced_word(same) == U256::ZERO {
                if changed.remove(key) != Some(w.b.traced_word(slot.current)) {
                    return Err(NoApReason::Unmodelled);
                }
                slot_stores.push([sym.addr, slot.key, slot.current]);
            }
        }
        if !changed.is_empty() {
            // revm changed a slot the lowering did not see written.
            return Err(NoApReason::Unmodelled);
        }
        let flags = AccountFlags { created: account.is_created(), selfdestructed: account.is_selfdestructed() };
        account_stores.push(([sym.addr, sym.balance, sym.nonce, sym.code_hash], flags));
        // Code the transaction set is part of the change (empty code is not), by the
        // outcome's rule. Whether it was set is a constant of the path: a creation, or a
        // delegation whose authority's prior code hash is pinned.
        if let Some(code) = sym.code
            && crate::outcome::code_was_set(account)
            && matches!(w.b.traced(code), Some(crate::semantics::Val::Bytes(c)) if !c.is_empty())
        {
            code_stores.push([sym.addr, code]);
        }
    }
    // Every account revm touched must be one the lowering knows.
    if state.iter().any(|(a, acc)| acc.is_touched() && !world.accounts.contains_key(a)) {
        return Err(NoApReason::Unmodelled);
    }
    for (args, flags) in account_stores {
        w.b.store(Op::StoreAccount, &args, Imm::Flags(flags));
    }
    for args in code_stores {
        w.b.store(Op::StoreCode, &args, Imm::None);
    }
    for args in slot_stores {
        w.b.store(Op::StoreSlot, &args, Imm::None);
    }
    if outcome.status.is_success() {
        // The logs must be revm's, field by field (a modelling error in memory would show
        // here first).
        let traced_logs: Vec<(U256, Option<crate::semantics::Val>, Vec<U256>)> = world
            .logs
            .iter()
            .map(|l| {
                (
                    w.b.traced_word(l.address),
                    w.b.traced(l.data).cloned(),
                    l.topics.iter().map(|t| w.b.traced_word(*t)).collect(),
                )
            })
            .collect();
        let revm_logs: Vec<(U256, Option<crate::semantics::Val>, Vec<U256>)> = outcome
            .logs
            .iter()
            .map(|l| {
                let data = Some(crate::semantics::Val::Bytes(l.data.data.clone()));
                (word(l.address), data, l.topics().iter().map(|t| U256::from_be_bytes(t.0)).collect())
            })
            .collect();
        if traced_logs != revm_logs {
            return Err(NoApReason::Unmodelled);
        }
        for log in &world.logs {
            let mut args = vec![log.address, log.data];
            args.extend(&log.topics);
            w.b.store(Op::Log, &args, Imm::None);
        }
    }
    let output = output.unwrap_or_else(|| w.b.bytes(Default::default()));
    w.b.store(Op::Output, &[output], Imm::None);
    if let Some(created) = created {
        w.b.store(Op::Created, &[created], Imm::None);
    }
    let env = ProgramEnv { spec, chain_id: w.cfg.chain_id };
    Ok(w.b.finish(env, outcome.status.clone(), outcome.gas_used, outcome.gas_refunded))
}
