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

use std::{cell::RefCell, collections::BTreeMap, fmt};

use revm::{
    context::result::{ExecutionResult, HaltReason, Output, SuccessReason},
    primitives::{Address, B256, Bytes, KECCAK_EMPTY, Log, U256},
    state::{Account, AccountInfo, Bytecode, EvmState, EvmStorageSlot},
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

/// A transaction's result in the form a block import commits: the state as revm's
/// `transact` returns it ([`EvmState`], no ordered maps), with what its receipt takes. The
/// compact evaluator builds a hit in this form directly; [`Applied::outcome`] gives the
/// oracle's [`TxOutcome`] of exactly what is committed, and only when someone asks for it.
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
    /// was), with its final info and every changed slot's value. Code is not filled in:
    /// [`Applied::commit_state`] does.
    pub state: EvmState,
    /// The code the transaction set, by account (a creation's deployed code, a delegation
    /// designator): bytes as the program stored them.
    pub codes: Vec<(Address, Bytes)>,
}

thread_local! {
    /// Emptied state maps of committed hits, reused by the next results on this thread
    /// ([`recycle_state`]): a hit's map would otherwise be allocated, grown and freed per
    /// transaction, a tenth of a transfer's import.
    static SPARE_STATES: RefCell<Vec<EvmState>> = const { RefCell::new(Vec::new()) };
}

/// Spare maps a thread keeps, and the largest capacity kept (a huge map is freed).
const SPARE_STATES_KEPT: usize = 4;
const SPARE_STATE_CAPACITY: usize = 64;

/// Hands an emptied-or-not state map back for reuse by [`Applied::new`] on this thread.
pub fn recycle_state(mut state: EvmState) {
    if state.capacity() > SPARE_STATE_CAPACITY {
        return;
    }
    state.clear();
    let _ = SPARE_STATES.try_with(|spare| {
        let mut spare = spare.borrow_mut();
        if spare.len() < SPARE_STATES_KEPT {
            spare.push(state);
        }
    });
}

impl Applied {
    /// An empty result (reverted, no gas, no change), to be filled.
    pub fn new() -> Self {
        let state = SPARE_STATES.try_with(|spare| spare.borrow_mut().pop()).ok().flatten().unwrap_or_default();
        debug_assert!(state.is_empty());
        Self {
            status: TxStatus::Revert,
            gas_used: 0,
            gas_refunded: 0,
            logs: Vec::new(),
            output: Bytes::new(),
            created_address: None,
            state,
            codes: Vec::new(),
        }
    }

    /// Records a changed account. `false` when the account was already recorded.
    pub fn store_account(&mut self, address: Address, info: AccountInfo, created: bool, selfdestructed: bool) -> bool {
        let mut account = Account::from(info);
        account.mark_touch();
        if created {
            account.mark_created();
        }
        if selfdestructed {
            account.mark_selfdestruct();
        }
        // (Through `insert`: the map's entry type depends on alloy's map features.)
        self.state.insert(address, account).is_none()
    }

    /// Records a changed slot of a recorded account. `false` when the account is not
    /// recorded or the slot already is.
    pub fn store_slot(&mut self, address: &Address, slot: U256, value: U256) -> bool {
        let Some(account) = self.state.get_mut(address) else { return false };
        account.storage.insert(slot, EvmStorageSlot::new(value, Default::default())).is_none()
    }

    /// Records the code a recorded account is left with (a later store replaces an earlier
    /// one). `false` when the account is not recorded.
    pub fn store_code(&mut self, address: Address, code: Bytes) -> bool {
        if !self.state.contains_key(&address) {
            return false;
        }
        match self.codes.iter_mut().find(|(a, _)| *a == address) {
            Some((_, held)) => *held = code,
            None => self.codes.push((address, code)),
        }
        true
    }

    /// The oracle's form of this result: exactly what [`Applied::commit_state`] commits.
    pub fn outcome(&self) -> TxOutcome {
        let state = self
            .state
            .iter()
            .map(|(address, account)| {
                let change = AccountChange {
                    balance: account.info.balance,
                    nonce: account.info.nonce,
                    code_hash: account.info.code_hash,
                    code: self.codes.iter().find(|(a, _)| a == address).map(|(_, c)| c.clone()),
                    created: account.is_created(),
                    selfdestructed: account.is_selfdestructed(),
                    storage: account.storage.iter().map(|(k, v)| (*k, v.present_value())).collect(),
                };
                (*address, change)
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

    /// The state revm's commit receives: [`Applied::state`] with every account's code. Committed
    /// to a database, it leaves what committing revm's own post-transaction state leaves.
    ///
    /// An account whose code the transaction did not set carries only its code hash. A
    /// commit replaces the account's cached info, so the code must come with it or a later
    /// transaction that runs it asks the backend for code by hash, which a node's state
    /// view cannot answer (it knows code only through its account). `code_of(address,
    /// hash)` supplies that code; it must return code whose hash is `hash`. Returns the
    /// address whose code could not be supplied.
    ///
    /// Every slot is committed with its value as both original and present value, as a
    /// `CacheDB` takes it; a backend that keeps only slots whose value changed from the
    /// original (revm's `State`) would need the originals, which a program does not carry.
    pub fn commit_state(
        &mut self,
        mut code_of: impl FnMut(&Address, B256) -> Option<Bytecode>,
    ) -> Result<EvmState, Address> {
        for (address, account) in self.state.iter_mut() {
            let set = self.codes.iter().find(|(a, _)| a == address).map(|(_, c)| c);
            account.info.code = match set {
                // revm deploys a creation's output as legacy bytecode (even when it looks
                // like a designator, before EIP-3541), and writes a delegation as EIP-7702.
                Some(code) if account.is_created() => Some(Bytecode::new_legacy(code.clone())),
                Some(code) => {
                    Some(Bytecode::new_raw_checked(code.clone()).unwrap_or_else(|_| Bytecode::new_legacy(code.clone())))
                }
                // No code, or an account the commit removes: nothing to carry.
                None if account.info.code_hash == KECCAK_EMPTY || account.is_selfdestructed() => None,
                None => Some(code_of(address, account.info.code_hash).ok_or(*address)?),
            };
        }
        Ok(std::mem::take(&mut self.state))
    }
}

impl Applied {
    /// revm's `result` without its state (committed by the caller): what a receipt takes.
    pub fn result_of(result: ExecutionResult) -> Self {
        let (status, output, created_address) = ending(&result);
        Self {
            status,
            gas_used: result.tx_gas_used(),
            gas_refunded: result.gas().final_refunded(),
            output,
            created_address,
            logs: result.into_logs(),
            state: EvmState::default(),
            codes: Vec::new(),
        }
    }
}

impl Default for Applied {
    fn default() -> Self {
        Self::new()
    }
}

impl From<TxOutcome> for Applied {
    fn from(outcome: TxOutcome) -> Self {
        let mut applied = Applied {
            status: outcome.status,
            gas_used: outcome.gas_used,
            gas_refunded: outcome.gas_refunded,
            logs: outcome.logs,
            output: outcome.output,
            created_address: outcome.created_address,
            state: EvmState::default(),
            codes: Vec::new(),
        };
        applied.state.reserve(outcome.state.len());
        for (address, change) in outcome.state {
            let info = AccountInfo {
                balance: change.balance,
                nonce: change.nonce,
                code_hash: change.code_hash,
                ..Default::default()
            };
            applied.store_account(address, info, change.created, change.selfdestructed);
            if let Some(account) = applied.state.get_mut(&address) {
                account.storage =
                    change.storage.into_iter().map(|(k, v)| (k, EvmStorageSlot::new(v, Default::default()))).collect();
            }
            if let Some(code) = change.code {
                applied.codes.push((address, code));
            }
        }
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
    use revm::primitives::{KECCAK_EMPTY, LogData, address, b256, keccak256};

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
        let mut asked = Vec::new();
        let state = applied
            .commit_state(|a, h| {
                asked.push(*a);
                (h == running.hash_slow()).then(|| running.clone())
            })
            .expect("every code is known");
        assert_eq!(asked, vec![contract], "only code the transaction did not set is looked up");
        assert_eq!(state[&contract].info.code, Some(running.clone()));
        assert_eq!(state[&created].info.code, Some(Bytecode::new_legacy(deployed)));
        assert!(state[&created].is_created() && state[&gone].is_selfdestructed());
        assert!(state.values().all(|a| a.is_touched()));
        assert_eq!(state[&contract].storage[&U256::from(3)].present_value(), U256::from(4));
        // Code nobody can give: the address, and no state.
        let mut applied = Applied::from(outcome);
        assert_eq!(applied.commit_state(|_, _| None).err(), Some(contract));
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
