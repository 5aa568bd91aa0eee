//! The outcome of one transaction: the type every fast path in prescient is compared with.
//!
//! A [`TxOutcome`] holds everything a block import observes of a transaction: status, gas
//! used, refund, logs, output, the created address, and the state changes it commits. It is
//! built from revm's result by [`TxOutcome::from_revm`] (the reference executor) and, in later
//! stages, by the IR interpreter and the JIT. Two outcomes are equal exactly when a node could
//! not tell the two executions apart; [`TxOutcome::first_difference`] names the first field
//! where they are not, in words.
//!
//! **Equivalence rules**, written down in one place:
//! - status, gas used (receipt gas, after refund and the EIP-7623 floor), the final refund,
//!   the output bytes and the created address compare exactly;
//! - logs compare in order, address, topics and data;
//! - state changes compare per touched account, in address order: the account's info after
//!   the transaction (balance, nonce, code hash), whether it was created or self-destructed,
//!   and the present value of every storage slot whose value changed. Slots only read are not
//!   state changes. Accounts that were loaded but not touched are not state changes.

use std::{collections::BTreeMap, fmt};

use alloy::primitives::Bloom;
use revm::{
    context::result::{ExecutionResult, HaltReason, Output, SuccessReason},
    database::{AccountState, CacheDB, DbAccount},
    primitives::map::Entry,
    primitives::{Address, B256, Bytes, KECCAK_EMPTY, Log, U256},
    primitives::{HashSet, map::AddressMap},
    state::{Account, AccountInfo, Bytecode, EvmState},
};
use serde::{Deserialize, Serialize};

/// How a transaction ended.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TxStatus {
    /// Completed; the reason says through which opcode.
    Success(SuccessReason),
    /// Reverted by REVERT: state changes of the call are dropped, gas is charged.
    Revert,
    /// Halted with an exceptional condition: all gas of the call is consumed.
    Halt(HaltReason),
}

impl TxStatus {
    /// Whether the receipt status is 1.
    pub fn is_success(&self) -> bool {
        matches!(self, Self::Success(_))
    }
}

/// The state an account is left in by a transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountChange {
    /// Balance after the transaction.
    pub balance: U256,
    /// Nonce after the transaction.
    pub nonce: u64,
    /// Code hash after the transaction (`KECCAK_EMPTY` for no code).
    pub code_hash: B256,
    /// The code, when the transaction set it: deployed by a creation, or an EIP-7702
    /// delegation designator written by an authorization. `None` when the code is unchanged
    /// (the code hash still names it) or empty.
    pub code: Option<Bytes>,
    /// The account was created by this transaction: its storage starts empty.
    pub created: bool,
    /// The account self-destructed in this transaction: it is removed with its storage.
    pub selfdestructed: bool,
    /// Present value of every slot whose value changed, by slot.
    pub storage: BTreeMap<U256, U256>,
}

/// All state changes of one transaction, by address.
pub type StateChanges = BTreeMap<Address, AccountChange>;

/// Everything a block import observes of one transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxOutcome {
    /// How the transaction ended.
    pub status: TxStatus,
    /// Gas used as the receipt reports it (after refund and the EIP-7623 floor).
    pub gas_used: u64,
    /// The refund actually granted (zero when the EIP-7623 floor applies).
    pub gas_refunded: u64,
    /// Logs emitted, in order (empty unless the transaction succeeded).
    pub logs: Vec<Log>,
    /// Return data of the top frame, or the deployed code of a successful creation.
    pub output: Bytes,
    /// The address a successful top-level creation deployed to.
    pub created_address: Option<Address>,
    /// State changes the transaction commits.
    pub state: StateChanges,
}

impl TxOutcome {
    /// Builds the outcome from revm's result and the state revm would commit.
    pub fn from_revm(result: &ExecutionResult, state: &EvmState) -> Self {
        let (status, output, created_address) = ending(result);
        Self {
            status,
            gas_used: result.tx_gas_used(),
            gas_refunded: result.gas().final_refunded(),
            logs: result.logs().to_vec(),
            output,
            created_address,
            state: state_changes(state),
        }
    }

    /// The first difference between `self` (the outcome under test) and `expected` (the
    /// reference), in words; `None` when they are equal under the rules in the module docs.
    pub fn first_difference(&self, expected: &Self) -> Option<Difference> {
        let diff = |field: String, expected: &dyn fmt::Debug, actual: &dyn fmt::Debug| {
            Some(Difference { field, expected: format!("{expected:?}"), actual: format!("{actual:?}") })
        };
        if self.status != expected.status {
            return diff("status".into(), &expected.status, &self.status);
        }
        if self.gas_used != expected.gas_used {
            return diff("gas used".into(), &expected.gas_used, &self.gas_used);
        }
        if self.gas_refunded != expected.gas_refunded {
            return diff("gas refunded".into(), &expected.gas_refunded, &self.gas_refunded);
        }
        if self.output != expected.output {
            return diff("output".into(), &expected.output, &self.output);
        }
        if self.created_address != expected.created_address {
            return diff("created address".into(), &expected.created_address, &self.created_address);
        }
        if let Some(d) = logs_difference(&self.logs, &expected.logs) {
            return Some(d);
        }
        state_difference(&self.state, &expected.state)
    }
}

/// A transaction's result in the form a block import commits: every changed account and slot
/// as a flat list in store order (no maps, nothing built per account), with what its receipt
/// takes. The compact evaluator builds a hit in this form directly; [`Applied::commit_to`]
/// writes it into a `CacheDB` as revm's commit of the same state would, and
/// [`Applied::outcome`] gives the oracle's [`TxOutcome`] of exactly what is committed, only
/// when someone asks for it.
#[derive(Clone, Debug)]
pub struct Applied {
    /// How the transaction ended.
    pub status: TxStatus,
    /// Gas used as the receipt reports it.
    pub gas_used: u64,
    /// The refund granted.
    pub gas_refunded: u64,
    /// Logs emitted, in order.
    pub logs: Vec<Log>,
    /// Return data of the top frame, or the deployed code of a successful creation.
    pub output: Bytes,
    /// The address a successful top-level creation deployed to.
    pub created_address: Option<Address>,
    /// Every account the transaction changed, touched (and created or self-destructed as it
    /// was), with its final fields, in store order; each address once.
    accounts: Vec<Stored>,
    /// Every changed slot: the position of its account in `accounts`, the slot, its present
    /// value; each slot once.
    slots: Vec<(u32, U256, U256)>,
    /// The code the transaction set, by account (a creation's deployed code, a delegation
    /// designator): bytes as the program stored them.
    pub codes: Vec<(Address, Bytes)>,
    /// The bloom of `logs`, when it is known already (a read-set hit's logs are those of the
    /// pre-execution, whose bloom was computed then).
    pub logs_bloom: Option<Bloom>,
    /// Positions in `accounts` by address, kept once there are more than [`LINEAR`] (below
    /// that a scan is cheaper than hashing).
    index: AddressMap<u32>,
    /// The slots of `slots`, kept once there are [`LINEAR`] or more.
    slot_index: HashSet<(u32, U256)>,
}

/// One changed account of an [`Applied`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    /// The account.
    pub address: Address,
    /// Balance after the transaction.
    pub balance: U256,
    /// Nonce after the transaction.
    pub nonce: u64,
    /// Code hash after the transaction.
    pub code_hash: B256,
    /// Created by the transaction: its storage starts empty.
    pub created: bool,
    /// Self-destructed by the transaction: removed with its storage.
    pub selfdestructed: bool,
}

/// Up to this many accounts (or slots) an [`Applied`] finds one by scanning; beyond, by hash.
const LINEAR: usize = 16;

/// The code a commit gives one changed account (see [`Applied::commit_to`]).
enum CodeOf {
    /// No code: none, or the account is removed.
    Empty,
    /// The code the cached account already holds under the same hash.
    Cached,
    /// This code.
    Given(Bytecode),
}

impl Applied {
    /// An empty result (reverted, no gas, no change), to be filled.
    pub fn new() -> Self {
        Self {
            status: TxStatus::Revert,
            gas_used: 0,
            gas_refunded: 0,
            logs: Vec::new(),
            output: Bytes::new(),
            created_address: None,
            accounts: Vec::new(),
            slots: Vec::new(),
            codes: Vec::new(),
            logs_bloom: None,
            index: AddressMap::default(),
            slot_index: HashSet::default(),
        }
    }

    /// Empties this result (reverted, no gas, no change) for reuse: its lists keep their
    /// memory, so a result reused across a block's hits allocates only what grows.
    pub fn clear(&mut self) {
        self.status = TxStatus::Revert;
        self.gas_used = 0;
        self.gas_refunded = 0;
        self.logs.clear();
        self.output = Bytes::new();
        self.created_address = None;
        self.logs_bloom = None;
        self.clear_state();
    }

    /// Empties the state part (accounts, slots, codes).
    fn clear_state(&mut self) {
        self.accounts.clear();
        self.slots.clear();
        self.codes.clear();
        // A huge result's indexes are freed rather than kept for every later one.
        if self.index.capacity() > 4 * LINEAR {
            self.index = AddressMap::default();
        }
        if self.slot_index.capacity() > 4 * LINEAR {
            self.slot_index = HashSet::default();
        }
        self.index.clear();
        self.slot_index.clear();
    }

    /// This result set to `outcome`'s (what a read-set hit applies).
    pub fn set_outcome(&mut self, outcome: TxOutcome) {
        self.clear();
        self.status = outcome.status;
        self.gas_used = outcome.gas_used;
        self.gas_refunded = outcome.gas_refunded;
        self.logs = outcome.logs;
        self.output = outcome.output;
        self.created_address = outcome.created_address;
        for (address, change) in outcome.state {
            let stored = Stored {
                address,
                balance: change.balance,
                nonce: change.nonce,
                code_hash: change.code_hash,
                created: change.created,
                selfdestructed: change.selfdestructed,
            };
            self.store_account(stored);
            for (slot, value) in change.storage {
                self.store_slot(&address, slot, value);
            }
            if let Some(code) = change.code {
                self.codes.push((address, code));
            }
        }
    }

    /// This result set to revm's `result` without its state (committed by the caller): what
    /// a receipt takes.
    pub fn set_result(&mut self, result: ExecutionResult) {
        self.clear();
        (self.status, self.output, self.created_address) = ending(&result);
        self.gas_used = result.tx_gas_used();
        self.gas_refunded = result.gas().final_refunded();
        self.logs = result.into_logs();
    }

    /// The changed accounts, in store order.
    pub fn accounts(&self) -> &[Stored] {
        &self.accounts
    }

    /// The changed slots, with their account's address, in store order.
    pub fn slots(&self) -> impl Iterator<Item = (Address, U256, U256)> + '_ {
        self.slots.iter().map(|&(a, slot, value)| (self.accounts[a as usize].address, slot, value))
    }

    /// Becomes a copy of `other`, reusing this result's memory (a read-set hit copies its
    /// recorded result: flat lists, no tree). The indexes are not copied: they are rebuilt
    /// when a store needs them, and lookups scan until then.
    pub fn copy_from(&mut self, other: &Applied) {
        self.status.clone_from(&other.status);
        self.gas_used = other.gas_used;
        self.gas_refunded = other.gas_refunded;
        self.logs.clone_from(&other.logs);
        self.output.clone_from(&other.output);
        self.created_address = other.created_address;
        self.logs_bloom = other.logs_bloom;
        self.clear_state();
        self.accounts.extend_from_slice(&other.accounts);
        self.slots.extend_from_slice(&other.slots);
        self.codes.extend_from_slice(&other.codes);
    }

    /// The changed account `address`, to adjust its fields.
    pub fn account_mut(&mut self, address: &Address) -> Option<&mut Stored> {
        let at = self.position(address)?;
        self.accounts.get_mut(at as usize)
    }

    /// Moves the changed account `from`, which has no slot and no code of its own, to the
    /// address `to`, which must not be changed already. `false` (and nothing moved) otherwise.
    pub fn move_account(&mut self, from: &Address, to: Address) -> bool {
        let Some(at) = self.position(from) else { return false };
        if self.position(&to).is_some()
            || self.slots.iter().any(|&(a, _, _)| a == at)
            || self.codes.iter().any(|(a, _)| a == from)
        {
            return false;
        }
        self.accounts[at as usize].address = to;
        if !self.index.is_empty() {
            self.index.remove(from);
            self.index.insert(to, at);
        }
        true
    }

    /// Where `address` is in `accounts`.
    fn position(&self, address: &Address) -> Option<u32> {
        // The index is empty after `copy_from` until a store rebuilds it.
        if self.accounts.len() <= LINEAR || self.index.is_empty() {
            self.accounts.iter().position(|a| a.address == *address).map(|p| p as u32)
        } else {
            self.index.get(address).copied()
        }
    }

    /// Records a changed account. `false` when the account was already recorded.
    pub fn store_account(&mut self, account: Stored) -> bool {
        if self.position(&account.address).is_some() {
            return false;
        }
        self.accounts.push(account);
        let len = self.accounts.len();
        if len > LINEAR {
            if self.index.is_empty() {
                self.index.extend(self.accounts.iter().enumerate().map(|(i, a)| (a.address, i as u32)));
            } else {
                self.index.insert(self.accounts[len - 1].address, (len - 1) as u32);
            }
        }
        true
    }

    /// Records a changed slot of a recorded account. `false` when the account is not
    /// recorded or the slot already is.
    pub fn store_slot(&mut self, address: &Address, slot: U256, value: U256) -> bool {
        // Slots of one account usually come together: the last one's account first.
        let last = self.slots.last().map(|&(a, _, _)| a).filter(|&a| self.accounts[a as usize].address == *address);
        let Some(account) = last.or_else(|| self.position(address)) else { return false };
        if self.slots.len() < LINEAR {
            if self.slots.iter().any(|&(a, s, _)| a == account && s == slot) {
                return false;
            }
        } else {
            if self.slot_index.is_empty() {
                self.slot_index.extend(self.slots.iter().map(|&(a, s, _)| (a, s)));
            }
            if !self.slot_index.insert((account, slot)) {
                return false;
            }
        }
        self.slots.push((account, slot, value));
        true
    }

    /// Records the code a recorded account is left with (a later store replaces an earlier
    /// one). `false` when the account is not recorded.
    pub fn store_code(&mut self, address: Address, code: Bytes) -> bool {
        if self.position(&address).is_none() {
            return false;
        }
        match self.codes.iter_mut().find(|(a, _)| *a == address) {
            Some((_, held)) => *held = code,
            None => self.codes.push((address, code)),
        }
        true
    }

    /// The oracle's form of this result: exactly what [`Applied::commit_to`] commits.
    pub fn outcome(&self) -> TxOutcome {
        let mut storage: Vec<BTreeMap<U256, U256>> = vec![BTreeMap::new(); self.accounts.len()];
        for &(account, slot, value) in &self.slots {
            storage[account as usize].insert(slot, value);
        }
        let state = self
            .accounts
            .iter()
            .zip(storage)
            .map(|(account, storage)| {
                let change = AccountChange {
                    balance: account.balance,
                    nonce: account.nonce,
                    code_hash: account.code_hash,
                    code: self.set_code(&account.address).cloned(),
                    created: account.created,
                    selfdestructed: account.selfdestructed,
                    storage,
                };
                (account.address, change)
            })
            .collect();
        TxOutcome {
            status: self.status.clone(),
            gas_used: self.gas_used,
            gas_refunded: self.gas_refunded,
            logs: self.logs.clone(),
            output: self.output.clone(),
            created_address: self.created_address,
            state,
        }
    }

    fn set_code(&self, address: &Address) -> Option<&Bytes> {
        self.codes.iter().find(|(a, _)| a == address).map(|(_, c)| c)
    }

    /// The code each changed account is committed with, in `accounts`' order. An account
    /// whose code the transaction did not set carries only its code hash. A commit replaces
    /// the account's cached info, so the code must come with it or a later transaction that
    /// runs it asks the backend for code by hash, which a node's state view cannot answer (it
    /// knows code only through its account). The cached account's own code is kept when its
    /// hash is the same; otherwise `code_of(db, address, hash)` supplies it, and must return
    /// code whose hash is `hash`. Returns the address whose code could not be supplied.
    fn codes_for<D>(
        &self,
        db: &CacheDB<D>,
        mut code_of: impl FnMut(&CacheDB<D>, &Address, B256) -> Option<Bytecode>,
    ) -> Result<Vec<CodeOf>, Address> {
        let mut codes = Vec::with_capacity(self.accounts.len());
        for account in &self.accounts {
            let code = match self.set_code(&account.address) {
                // revm deploys a creation's output as legacy bytecode (even when it looks
                // like a designator, before EIP-3541), and writes a delegation as EIP-7702.
                Some(code) if account.created => CodeOf::Given(Bytecode::new_legacy(code.clone())),
                Some(code) => CodeOf::Given(
                    Bytecode::new_raw_checked(code.clone()).unwrap_or_else(|_| Bytecode::new_legacy(code.clone())),
                ),
                // No code, or an account the commit removes: nothing to carry.
                None if account.code_hash == KECCAK_EMPTY || account.selfdestructed => CodeOf::Empty,
                None => {
                    let cached = db.cache.accounts.get(&account.address).map(|a| &a.info);
                    if cached.is_some_and(|info| info.code_hash == account.code_hash && info.code.is_some()) {
                        CodeOf::Cached
                    } else {
                        CodeOf::Given(code_of(db, &account.address, account.code_hash).ok_or(account.address)?)
                    }
                }
            };
            codes.push(code);
        }
        Ok(codes)
    }

    /// Checks that every changed account's code can be supplied (see [`Applied::commit_to`])
    /// without committing: what a commit does before it writes. Returns the address whose
    /// code could not be supplied.
    pub fn check_codes<D>(
        &self,
        db: &CacheDB<D>,
        code_of: impl FnMut(&CacheDB<D>, &Address, B256) -> Option<Bytecode>,
    ) -> Result<(), Address> {
        self.codes_for(db, code_of).map(drop)
    }

    /// Commits this result into `db` exactly as committing the same state in revm's form
    /// (`EvmState`, every account touched and its code filled in) would: the same accounts,
    /// infos, account states, slots and contracts. Nothing is written when some account's
    /// code cannot be supplied (see `codes_for`); that address is returned, and this result
    /// is left as it was (a caller reusing it must clear it, as every fill does).
    ///
    /// Every slot is committed with its present value, as a `CacheDB` takes it; a backend that
    /// keeps only slots whose value changed from the original (revm's `State`) would need the
    /// originals, which a program does not carry. The state part is left empty.
    pub fn commit_to<D>(
        &mut self,
        db: &mut CacheDB<D>,
        code_of: impl FnMut(&CacheDB<D>, &Address, B256) -> Option<Bytecode>,
    ) -> Result<(), Address> {
        let codes = self.codes_for(db, code_of)?;
        for (account, code) in self.accounts.iter().zip(codes) {
            // As `CacheDB::commit_account`, for an account revm marked touched. Only a removed
            // account gets a default `AccountInfo`: its code is a clone of revm's one static
            // empty `Bytecode`, an atomic increment (and a decrement when replaced) on a cache
            // line every thread running revm shares, about half of `import_tx`'s own time in
            // a profile of the import when every commit built one.
            let entry = match db.cache.accounts.entry(account.address) {
                Entry::Occupied(entry) => entry.into_mut(),
                Entry::Vacant(entry) => entry.insert(DbAccount {
                    info: info_without_code(U256::ZERO, 0, KECCAK_EMPTY),
                    account_state: AccountState::None,
                    storage: Default::default(),
                }),
            };
            if account.selfdestructed {
                entry.storage.clear();
                entry.account_state = AccountState::NotExisting;
                entry.info = AccountInfo::default();
                continue;
            }
            let code = match code {
                CodeOf::Empty => None,
                CodeOf::Cached => entry.info.code.take(),
                CodeOf::Given(code) => Some(code),
            };
            let mut info = info_without_code(account.balance, account.nonce, account.code_hash);
            info.code = code;
            // `CacheDB::insert_contract`.
            if let Some(code) = info.code.as_ref().filter(|c| !c.is_empty()) {
                if info.code_hash == KECCAK_EMPTY {
                    info.code_hash = code.hash_slow();
                }
                db.cache.contracts.entry(info.code_hash).or_insert_with(|| code.clone());
            }
            if info.code_hash.is_zero() {
                info.code_hash = KECCAK_EMPTY;
            }
            entry.info = info;
            entry.account_state = if account.created {
                entry.storage.clear();
                AccountState::StorageCleared
            } else if entry.account_state.is_storage_cleared() {
                AccountState::StorageCleared
            } else {
                AccountState::Touched
            };
        }
        let mut at: Option<(u32, &mut DbAccount)> = None;
        for &(account, slot, value) in &self.slots {
            // A removed account keeps no slot (revm's commit skips its storage).
            if self.accounts[account as usize].selfdestructed {
                continue;
            }
            if at.as_ref().is_none_or(|(a, _)| *a != account) {
                at = db.cache.accounts.get_mut(&self.accounts[account as usize].address).map(|e| (account, e));
            }
            if let Some((_, entry)) = at.as_mut() {
                entry.storage.insert(slot, value);
            }
        }
        self.clear_state();
        Ok(())
    }
}

/// An account's info with these fields and no code (`AccountInfo::default()` would clone
/// revm's static empty `Bytecode`, see [`Applied::commit_to`]): revm loads the empty code for
/// `KECCAK_EMPTY` itself, and the commit sets any other code.
#[inline]
fn info_without_code(balance: U256, nonce: u64, code_hash: B256) -> AccountInfo {
    AccountInfo { balance, nonce, code_hash, account_id: None, code: None }
}

impl Applied {
    /// A fresh result filled by `fill` (an evaluation into it), with what `fill` returned:
    /// the owned form of the `evaluate_into` functions.
    pub fn filled<T, E>(fill: impl FnOnce(&mut Applied) -> Result<T, E>) -> Result<(Applied, T), E> {
        let mut applied = Applied::new();
        fill(&mut applied).map(|t| (applied, t))
    }
}

/// Two results are equal when they hold the same outcome in the same store order (the
/// lookup indexes are not compared: `copy_from` leaves them to be rebuilt).
impl PartialEq for Applied {
    fn eq(&self, other: &Self) -> bool {
        self.status == other.status
            && self.gas_used == other.gas_used
            && self.gas_refunded == other.gas_refunded
            && self.logs == other.logs
            && self.output == other.output
            && self.created_address == other.created_address
            && self.accounts == other.accounts
            && self.slots == other.slots
            && self.codes == other.codes
            && self.logs_bloom == other.logs_bloom
    }
}

impl Eq for Applied {}

impl Default for Applied {
    fn default() -> Self {
        Self::new()
    }
}

impl From<TxOutcome> for Applied {
    fn from(outcome: TxOutcome) -> Self {
        let mut applied = Applied::new();
        applied.set_outcome(outcome);
        applied
    }
}

/// One difference between two outcomes: which field, and the two values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Difference {
    /// The field, in words: `"log 2 data"`, `"account 0x… balance"`.
    pub field: String,
    /// The reference value.
    pub expected: String,
    /// The value under test.
    pub actual: String,
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} differs: expected {}, got {}", self.field, self.expected, self.actual)
    }
}

fn logs_difference(actual: &[Log], expected: &[Log]) -> Option<Difference> {
    let mk = |field: String, e: String, a: String| Some(Difference { field, expected: e, actual: a });
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        if a.address != e.address {
            return mk(format!("log {i} address"), e.address.to_string(), a.address.to_string());
        }
        if a.topics() != e.topics() {
            return mk(format!("log {i} topics"), format!("{:?}", e.topics()), format!("{:?}", a.topics()));
        }
        if a.data.data != e.data.data {
            return mk(format!("log {i} data"), e.data.data.to_string(), a.data.data.to_string());
        }
    }
    if actual.len() != expected.len() {
        return mk("number of logs".into(), expected.len().to_string(), actual.len().to_string());
    }
    None
}

fn state_difference(actual: &StateChanges, expected: &StateChanges) -> Option<Difference> {
    let mk = |field: String, e: String, a: String| Some(Difference { field, expected: e, actual: a });
    // Walk the union of addresses in order so the first difference is deterministic.
    let addresses: std::collections::BTreeSet<&Address> = actual.keys().chain(expected.keys()).collect();
    for address in addresses {
        let (a, e) = match (actual.get(address), expected.get(address)) {
            (Some(a), Some(e)) => (a, e),
            (None, Some(_)) => {
                return mk(format!("account {address}"), "changed".into(), "unchanged".into());
            }
            (Some(_), None) => {
                return mk(format!("account {address}"), "unchanged".into(), "changed".into());
            }
            (None, None) => unreachable!("address comes from one of the two maps"),
        };
        let field = |name: &str| format!("account {address} {name}");
        if a.balance != e.balance {
            return mk(field("balance"), e.balance.to_string(), a.balance.to_string());
        }
        if a.nonce != e.nonce {
            return mk(field("nonce"), e.nonce.to_string(), a.nonce.to_string());
        }
        if a.code_hash != e.code_hash || a.code != e.code {
            return mk(field("code"), e.code_hash.to_string(), a.code_hash.to_string());
        }
        if a.created != e.created {
            return mk(field("created flag"), e.created.to_string(), a.created.to_string());
        }
        if a.selfdestructed != e.selfdestructed {
            return mk(field("self-destructed flag"), e.selfdestructed.to_string(), a.selfdestructed.to_string());
        }
        let slots: std::collections::BTreeSet<&U256> = a.storage.keys().chain(e.storage.keys()).collect();
        for slot in slots {
            let (av, ev) = (a.storage.get(slot), e.storage.get(slot));
            if av != ev {
                let show = |v: Option<&U256>| v.map_or("unchanged".to_string(), U256::to_string);
                return mk(field(&format!("slot {slot:#x}")), show(ev), show(av));
            }
        }
    }
    None
}

/// Whether the transaction set the account's code, which makes the code part of the change:
/// deployed by a creation, or an EIP-7702 delegation designator written (the code hash
/// differs from the one the account was loaded with). Without the bytes, a commit could not
/// give a later transaction the code that hash names.
pub(crate) fn code_was_set(account: &Account) -> bool {
    account.is_created() || account.info.code_hash != account.original_info().code_hash
}

/// How `result` ended: status, output, created address.
fn ending(result: &ExecutionResult) -> (TxStatus, Bytes, Option<Address>) {
    match result {
        ExecutionResult::Success { reason, output, .. } => {
            let created = match output {
                Output::Create(_, address) => *address,
                Output::Call(_) => None,
            };
            (TxStatus::Success(*reason), output.data().clone(), created)
        }
        ExecutionResult::Revert { output, .. } => (TxStatus::Revert, output.clone(), None),
        ExecutionResult::Halt { reason, .. } => (TxStatus::Halt(reason.clone()), Bytes::new(), None),
    }
}

/// Extracts the committed changes from revm's post-transaction state.
fn state_changes(state: &EvmState) -> StateChanges {
    state
        .iter()
        .filter(|(_, account)| account.is_touched())
        .map(|(address, account)| {
            let created = account.is_created();
            let code = if code_was_set(account) {
                account.info.code.as_ref().map(Bytecode::original_bytes).filter(|c| !c.is_empty())
            } else {
                None
            };
            let storage = account.changed_storage_slots().map(|(slot, value)| (*slot, value.present_value())).collect();
            let change = AccountChange {
                balance: account.info.balance,
                nonce: account.info.nonce,
                code_hash: account.info.code_hash,
                code,
                created,
                selfdestructed: account.is_selfdestructed(),
                storage,
            };
            (*address, change)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use revm::{
        DatabaseCommit,
        primitives::{KECCAK_EMPTY, LogData, address, b256, keccak256},
    };

    fn sample() -> TxOutcome {
        let token = address!("0x00000000000000000000000000000000000000aa");
        let log = Log {
            address: token,
            data: LogData::new_unchecked(
                vec![b256!("0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef")],
                Bytes::from_static(&[1, 2, 3]),
            ),
        };
        let mut state = StateChanges::new();
        state.insert(
            address!("0x00000000000000000000000000000000000000bb"),
            AccountChange {
                balance: U256::from(1_000_000u64),
                nonce: 7,
                code_hash: KECCAK_EMPTY,
                code: None,
                created: false,
                selfdestructed: false,
                storage: BTreeMap::from([(U256::from(1), U256::from(2))]),
            },
        );
        TxOutcome {
            status: TxStatus::Success(SuccessReason::Stop),
            gas_used: 51_000,
            gas_refunded: 0,
            logs: vec![log.clone(), log],
            output: Bytes::new(),
            created_address: None,
            state,
        }
    }

    #[test]
    fn applied_round_trips_an_outcome_and_commits_with_code() {
        let mut outcome = sample();
        let contract = address!("0x00000000000000000000000000000000000000cc");
        let created = address!("0x00000000000000000000000000000000000000dd");
        let gone = address!("0x00000000000000000000000000000000000000ee");
        let running = Bytecode::new_legacy(Bytes::from_static(&[0x60, 0x00, 0x00]));
        let change = |code_hash, code, created, selfdestructed| AccountChange {
            balance: U256::from(5),
            nonce: 1,
            code_hash,
            code,
            created,
            selfdestructed,
            storage: BTreeMap::from([(U256::from(3), U256::from(4))]),
        };
        // Code the transaction did not set, code it deployed, an account it destroyed.
        outcome.state.insert(contract, change(running.hash_slow(), None, false, false));
        let deployed = Bytes::from_static(&[0x60, 0x01]);
        outcome.state.insert(created, change(keccak256(&deployed), Some(deployed.clone()), true, false));
        outcome.state.insert(gone, change(KECCAK_EMPTY, None, false, true));
        let mut applied = Applied::from(outcome.clone());
        assert_eq!(applied.outcome(), outcome, "the oracle's form is the outcome it came from");
        // A cache that already holds some of the accounts: one with the code (kept), one whose
        // storage was cleared earlier (stays cleared), one with slots of its own (kept beside
        // the new ones).
        let token = address!("0x00000000000000000000000000000000000000bb");
        let mut before = CacheDB::new(revm::database::EmptyDB::default());
        before.insert_account_info(
            contract,
            AccountInfo { code_hash: running.hash_slow(), code: Some(running.clone()), ..Default::default() },
        );
        before.insert_account_storage(contract, U256::from(9), U256::from(9)).expect("in memory");
        before.insert_account_info(token, AccountInfo::default());
        before.cache.accounts.get_mut(&token).expect("inserted").account_state = AccountState::StorageCleared;
        before.insert_account_storage(gone, U256::from(1), U256::from(1)).expect("in memory");
        let mut ours = before.clone();
        let mut asked = Vec::new();
        applied
            .commit_to(&mut ours, |_, a, h| {
                asked.push(*a);
                (h == running.hash_slow()).then(|| running.clone())
            })
            .expect("every code is known");
        assert!(
            asked.is_empty(),
            "the cached account's code is kept, the deployed code is the transaction's: {asked:?}"
        );
        // revm's form of the same change, committed by `CacheDB::commit`.
        let mut theirs = before.clone();
        theirs.commit(revm_form(&outcome, &running));
        assert_same_cache(&ours, &theirs);
        assert!(applied.accounts().is_empty(), "the state part is left empty");
        // Code nobody can give: the address, and nothing written.
        let mut cold = CacheDB::new(revm::database::EmptyDB::default());
        let mut applied = Applied::from(outcome);
        assert_eq!(applied.commit_to(&mut cold, |_, _, _| None).err(), Some(contract));
        let fresh = CacheDB::new(revm::database::EmptyDB::default());
        assert!(cold.cache.accounts.is_empty() && cold.cache.contracts.len() == fresh.cache.contracts.len());
    }

    /// The state revm's commit receives for `outcome`: every account touched (created or
    /// self-destructed as it was) with its code, `running` for the account that has code.
    fn revm_form(outcome: &TxOutcome, running: &Bytecode) -> EvmState {
        outcome
            .state
            .iter()
            .map(|(address, change)| {
                let code = match &change.code {
                    Some(code) if change.created => Some(Bytecode::new_legacy(code.clone())),
                    Some(code) => Some(Bytecode::new_raw(code.clone())),
                    None if change.code_hash == KECCAK_EMPTY || change.selfdestructed => None,
                    None => Some(running.clone()),
                };
                let info = AccountInfo {
                    balance: change.balance,
                    nonce: change.nonce,
                    code_hash: change.code_hash,
                    code,
                    ..Default::default()
                };
                let mut account = Account::from(info);
                account.mark_touch();
                if change.created {
                    account.mark_created();
                }
                if change.selfdestructed {
                    account.mark_selfdestruct();
                }
                account.storage = change
                    .storage
                    .iter()
                    .map(|(k, v)| (*k, revm::state::EvmStorageSlot::new(*v, Default::default())))
                    .collect();
                (*address, account)
            })
            .collect()
    }

    fn assert_same_cache<A, B>(ours: &CacheDB<A>, theirs: &CacheDB<B>) {
        assert_eq!(ours.cache.accounts.len(), theirs.cache.accounts.len(), "accounts");
        for (address, theirs) in &theirs.cache.accounts {
            let ours = &ours.cache.accounts[address];
            assert_eq!(ours.info, theirs.info, "{address} info");
            assert_eq!(ours.account_state, theirs.account_state, "{address} account state");
            assert_eq!(ours.storage, theirs.storage, "{address} storage");
        }
        assert_eq!(ours.cache.contracts, theirs.cache.contracts, "contracts");
    }

    /// Past the scan threshold the lists are indexed: a second store to one account or slot
    /// is still refused, whether it comes early or late.
    #[test]
    fn a_second_store_to_an_account_or_slot_is_refused_at_any_size() {
        for n in [3, LINEAR, LINEAR + 1, 5 * LINEAR] {
            let mut applied = Applied::new();
            let stored = |i: usize| Stored {
                address: Address::with_last_byte(i as u8),
                balance: U256::from(i),
                nonce: 0,
                code_hash: KECCAK_EMPTY,
                created: false,
                selfdestructed: false,
            };
            for i in 0..n {
                assert!(applied.store_account(stored(i)), "{n}: account {i}");
                assert!(applied.store_slot(&Address::with_last_byte(i as u8), U256::from(i), U256::from(1)));
                assert!(applied.store_slot(&Address::ZERO, U256::from(i + 1000), U256::from(1)));
            }
            for i in [0, n / 2, n - 1] {
                assert!(!applied.store_account(stored(i)), "{n}: account {i} again");
                assert!(
                    !applied.store_slot(&Address::with_last_byte(i as u8), U256::from(i), U256::from(2)),
                    "{n}: slot {i} again"
                );
                assert!(!applied.store_slot(&Address::ZERO, U256::from(i + 1000), U256::from(2)));
            }
            assert!(!applied.store_slot(&Address::with_last_byte(250), U256::ZERO, U256::ZERO), "unrecorded account");
            // A copy (into a result that held something else) holds the same and refuses the
            // same, though its indexes are rebuilt only when a store needs them.
            let mut copy = Applied::from(sample());
            copy.copy_from(&applied);
            assert_eq!(copy, applied);
            assert_eq!(copy.outcome(), applied.outcome());
            for i in [0, n / 2, n - 1] {
                assert!(copy.account_mut(&Address::with_last_byte(i as u8)).is_some(), "{n}: account {i} in the copy");
                assert!(!copy.store_account(stored(i)), "{n}: account {i} again in the copy");
                assert!(!copy.store_slot(&Address::ZERO, U256::from(i + 1000), U256::from(2)));
            }
            assert!(copy.store_account(stored(200)), "{n}: a new account in the copy");
            assert!(!copy.store_account(stored(200)), "{n}: and not twice");
            // A move needs an account without slots or code, to an address not changed yet.
            assert!(!copy.move_account(&Address::with_last_byte(0), Address::with_last_byte(201)), "it has slots");
            assert!(!copy.move_account(&Address::with_last_byte(200), Address::with_last_byte(1)), "target changed");
            assert!(copy.move_account(&Address::with_last_byte(200), Address::with_last_byte(201)));
            assert!(copy.account_mut(&Address::with_last_byte(200)).is_none());
            assert_eq!(copy.account_mut(&Address::with_last_byte(201)).map(|a| a.balance), Some(U256::from(200)));
            assert!(copy.store_account(stored(200)), "{n}: the old address is free again");
            let outcome = applied.outcome();
            assert_eq!(outcome.state.len(), n);
            assert_eq!(outcome.state.values().map(|c| c.storage.len()).sum::<usize>(), 2 * n);
            applied.clear();
            assert!(applied.store_account(stored(0)), "{n}: empty again after clear");
        }
    }

    #[test]
    fn equal_outcomes_have_no_difference() {
        assert_eq!(sample().first_difference(&sample()), None);
    }

    #[test]
    fn catches_one_wei() {
        let mut actual = sample();
        let account = actual.state.values_mut().next().expect("sample has an account");
        account.balance += U256::from(1);
        let d = actual.first_difference(&sample()).expect("one wei must differ");
        assert_eq!(d.field, "account 0x00000000000000000000000000000000000000bb balance");
        assert_eq!((d.expected.as_str(), d.actual.as_str()), ("1000000", "1000001"));
        assert!(d.to_string().contains("balance differs: expected 1000000, got 1000001"), "{d}");
    }

    #[test]
    fn catches_one_missing_log() {
        let mut actual = sample();
        actual.logs.pop();
        let d = actual.first_difference(&sample()).expect("a missing log must differ");
        assert_eq!(d.field, "number of logs");
        assert_eq!((d.expected.as_str(), d.actual.as_str()), ("2", "1"));
    }

    #[test]
    fn catches_one_byte_of_log_data() {
        let mut actual = sample();
        let data = Bytes::from_static(&[1, 2, 4]);
        actual.logs[1].data = LogData::new_unchecked(actual.logs[1].topics().to_vec(), data);
        let d = actual.first_difference(&sample()).expect("log data must differ");
        assert_eq!(d.field, "log 1 data");
    }

    #[test]
    fn table_of_single_field_changes() {
        type Mutate = fn(&mut TxOutcome);
        let cases: [(&str, Mutate); 8] = [
            ("status", |o| o.status = TxStatus::Revert),
            ("gas used", |o| o.gas_used += 1),
            ("gas refunded", |o| o.gas_refunded = 4800),
            ("output", |o| o.output = Bytes::from_static(&[0])),
            ("log 0 topics", |o| {
                o.logs[0] = Log { address: o.logs[0].address, data: LogData::new_unchecked(vec![], Bytes::new()) }
            }),
            ("nonce", |o| o.state.values_mut().for_each(|a| a.nonce += 1)),
            ("slot 0x1", |o| {
                o.state.values_mut().for_each(|a| {
                    a.storage.insert(U256::from(1), U256::ZERO);
                })
            }),
            ("account", |o| o.state.clear()),
        ];
        for (needle, mutate) in cases {
            let mut actual = sample();
            mutate(&mut actual);
            let d = actual.first_difference(&sample()).unwrap_or_else(|| panic!("{needle}: no difference"));
            assert!(d.field.contains(needle), "{needle}: reported {d}");
        }
    }
}
