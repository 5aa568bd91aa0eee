//! The symbolic world: accounts and storage as the transaction sees them, keyed by their
//! *concrete* address and slot in this trace.
//!
//! Keying by the concrete value is what makes aliasing explicit. When a symbolic address
//! (or storage key) is first used, it is compared with every address (key) already in the
//! world and with every pre-warmed one, and each comparison is guarded. In any future where
//! the guards hold, two symbolic addresses name the same account exactly when they did in
//! the trace, so the wiring of loads to earlier stores, and warm/cold access costs, are the
//! trace's. Data stays free: only equalities are pinned, not the addresses or keys.

use std::collections::BTreeMap;

use revm::{
    DatabaseRef,
    context::{BlockEnv, CfgEnv},
    primitives::{Address, B256, U256},
};

use crate::{
    ops::{GuardKind, Op},
    program::{Builder, Value},
    semantics::{context, load_word},
};

/// One storage slot: its symbolic key, value before the transaction, and current value.
#[derive(Clone, Debug)]
pub(crate) struct SymSlot {
    pub(crate) key: Value,
    pub(crate) original: Value,
    pub(crate) current: Value,
}

/// One account: its symbolic address and current info.
#[derive(Clone, Debug)]
pub(crate) struct SymAccount {
    pub(crate) addr: Value,
    pub(crate) balance: Value,
    pub(crate) nonce: Value,
    pub(crate) code_hash: Value,
    pub(crate) storage: BTreeMap<U256, SymSlot>,
    pub(crate) transient: BTreeMap<U256, SymSlot>,
    /// Created in this transaction: its storage starts empty (no loads).
    pub(crate) created: bool,
    /// Code deployed in this transaction.
    pub(crate) code: Option<Value>,
    /// The non-constant storage keys used so far (at most [`MAX_SYMBOLIC`]).
    pub(crate) symbolic_keys: Vec<Value>,
    /// The non-constant transient-storage keys used so far.
    pub(crate) symbolic_tkeys: Vec<Value>,
}

/// Non-constant keys (per account) and addresses compared pairwise before new ones are
/// pinned outright.
pub(crate) const MAX_SYMBOLIC: usize = 64;

/// A log, in emission order.
#[derive(Clone, Debug)]
pub(crate) struct SymLog {
    pub(crate) address: Value,
    pub(crate) data: Value,
    pub(crate) topics: Vec<Value>,
}

/// Accounts, storage and logs: everything a frame revert rolls back.
#[derive(Clone, Debug, Default)]
pub(crate) struct World {
    pub(crate) accounts: BTreeMap<Address, SymAccount>,
    pub(crate) logs: Vec<SymLog>,
    /// The non-constant addresses of `accounts` (at most [`MAX_SYMBOLIC`]).
    pub(crate) symbolic_addrs: Vec<Value>,
}

/// The recording state: the builder, the world, and what loads read from.
pub(crate) struct Lowering<'a, D> {
    pub(crate) db: &'a D,
    pub(crate) cfg: &'a CfgEnv,
    pub(crate) block: &'a BlockEnv,
    pub(crate) b: Builder,
    pub(crate) world: World,
    /// Addresses warm from the start besides the world's (access list), with their keys.
    pub(crate) prewarmed: BTreeMap<Address, Vec<B256>>,
    /// One past the highest precompile address of the spec.
    pub(crate) precompile_bound: U256,
    /// The price per gas the transaction pays (set by the prologue).
    pub(crate) price: Value,
}

pub(crate) fn word(a: Address) -> U256 {
    a.into_word().into()
}

impl<D: DatabaseRef> Lowering<'_, D> {
    /// A load or context read; its traced value is read through the interpreter's own
    /// functions, so it means exactly what the interpreter will compare against.
    pub(crate) fn load(&mut self, op: Op, args: &[Value]) -> Value {
        let traced = if args.is_empty() {
            context(op, self.cfg, self.block)
        } else {
            let words: Vec<U256> = args.iter().map(|a| self.b.traced_word(*a)).collect();
            // The pre-execution just read the same state successfully.
            load_word(op, &words, self.db, self.block).ok().flatten().unwrap_or_default()
        };
        self.b.load(op, args, traced)
    }

    /// EIP-161 emptiness of `account` as the world holds it (no balance, no nonce, no code),
    /// as a value: 1 when empty. The one definition the gas and write-set guards pin.
    pub(crate) fn is_empty(&mut self, account: &SymAccount) -> Value {
        let used = self.b.compute(Op::Or, &[account.balance, account.nonce]);
        let no_funds = self.b.compute(Op::IsZero, &[used]);
        let empty_code = self.b.word(revm::primitives::KECCAK_EMPTY.into());
        let no_code = self.b.compute(Op::Eq, &[account.code_hash, empty_code]);
        self.b.compute(Op::And, &[no_funds, no_code])
    }

    /// The code an account holds before the transaction (empty when it has none).
    pub(crate) fn code_of(&self, address: Address) -> revm::primitives::Bytes {
        match self.db.basic_ref(address) {
            Ok(Some(info)) => match info.code {
                Some(code) => code.original_bytes(),
                None => self.db.code_by_hash_ref(info.code_hash).map(|c| c.original_bytes()).unwrap_or_default(),
            },
            _ => revm::primitives::Bytes::new(),
        }
    }

    /// Pins how a symbolic address relates to the constant precompile and access-list
    /// addresses: these are warm from the start, so equality with them decides gas.
    fn pin_prewarmed(&mut self, addr: Value) {
        if self.b.as_const(addr).is_some() {
            return;
        }
        // One comparison covers every precompile: below the bound, pin the address itself.
        let bound = self.b.word(self.precompile_bound);
        let below = self.b.compute(Op::Lt, &[addr, bound]);
        self.b.guard(GuardKind::Alias, below);
        if self.b.traced_word(below) == U256::from(1) {
            self.b.guard(GuardKind::Alias, addr);
        }
        let listed: Vec<Address> = self.prewarmed.keys().copied().collect();
        for other in listed {
            let other = self.b.word(word(other));
            let same = self.b.compute(Op::Eq, &[addr, other]);
            self.b.guard(GuardKind::Alias, same);
        }
    }

    /// The account at concrete `address`, reached through the symbolic `addr`.
    pub(crate) fn account(&mut self, address: Address, addr: Value) -> &mut SymAccount {
        if let Some(existing) = self.world.accounts.get(&address).map(|a| a.addr) {
            // The same account as an earlier access: pin the equality.
            if existing != addr {
                let same = self.b.compute(Op::Eq, &[existing, addr]);
                self.b.guard(GuardKind::Alias, same);
            }
        } else {
            // A new account: pin that it differs from every account seen so far, or its
            // loads would miss what earlier stores did (and warm/cold costs would change).
            // Past the bound, a non-constant address is pinned outright (linear guards).
            let mut addr = addr;
            if self.b.as_const(addr).is_none() && self.world.symbolic_addrs.len() >= MAX_SYMBOLIC {
                self.b.guard(GuardKind::Alias, addr);
                addr = self.b.word(word(address));
            }
            let mut others: Vec<Value> = if self.b.as_const(addr).is_none() {
                self.world.symbolic_addrs.push(addr);
                self.world.accounts.values().map(|a| a.addr).collect()
            } else {
                self.world.symbolic_addrs.clone()
            };
            // In symbolic order, not concrete-address order: see `record::finish`.
            others.sort();
            for other in others {
                let same = self.b.compute(Op::Eq, &[other, addr]);
                self.b.guard(GuardKind::Alias, same);
            }
            self.pin_prewarmed(addr);
            let balance = self.load(Op::Balance, &[addr]);
            let nonce = self.load(Op::Nonce, &[addr]);
            let code_hash = self.load(Op::CodeHash, &[addr]);
            let account = SymAccount {
                addr,
                balance,
                nonce,
                code_hash,
                storage: BTreeMap::new(),
                transient: BTreeMap::new(),
                created: false,
                code: None,
                symbolic_keys: Vec::new(),
                symbolic_tkeys: Vec::new(),
            };
            self.world.accounts.insert(address, account);
        }
        self.world.accounts.get_mut(&address).expect("present: found or inserted above")
    }

    /// The slot at concrete `key` of the account at `address`, reached through symbolic
    /// `key_value`; `transient` selects EIP-1153 storage (which starts at zero).
    pub(crate) fn slot(&mut self, address: Address, key: U256, key_value: Value, transient: bool) -> &mut SymSlot {
        let addr = self.world.accounts.get(&address).expect("the frame's account is in the world").addr;
        fn map(w: &mut World, address: Address, transient: bool) -> &mut BTreeMap<U256, SymSlot> {
            let account = w.accounts.get_mut(&address).expect("the frame's account is in the world");
            if transient { &mut account.transient } else { &mut account.storage }
        }
        fn symbolic(w: &mut World, address: Address, transient: bool) -> &mut Vec<Value> {
            let account = w.accounts.get_mut(&address).expect("the frame's account is in the world");
            if transient { &mut account.symbolic_tkeys } else { &mut account.symbolic_keys }
        }
        if let Some(existing) = map(&mut self.world, address, transient).get(&key).map(|s| s.key) {
            if existing != key_value {
                let same = self.b.compute(Op::Eq, &[existing, key_value]);
                self.b.guard(GuardKind::Alias, same);
            }
        } else {
            let mut key_value = key_value;
            if self.b.as_const(key_value).is_none()
                && symbolic(&mut self.world, address, transient).len() >= MAX_SYMBOLIC
            {
                // Past the bound, pin the key itself: stronger than its equalities, and it
                // keeps the number of alias guards linear in the trace (a transaction
                // writing thousands of data-dependent keys cannot make it quadratic).
                self.b.guard(GuardKind::Alias, key_value);
                key_value = self.b.word(key);
            }
            let others: Vec<Value> = if self.b.as_const(key_value).is_none() {
                // Distinct from every key seen in this account (and, for storage, from the
                // access list's keys, which start warm).
                let mut others: Vec<Value> = map(&mut self.world, address, transient).values().map(|s| s.key).collect();
                if !transient {
                    let listed = self.prewarmed.get(&address).cloned().unwrap_or_default();
                    others.extend(listed.into_iter().map(|k| self.b.word(k.into())));
                }
                symbolic(&mut self.world, address, transient).push(key_value);
                // In symbolic order, not concrete-key order: see `record::finish`.
                others.sort();
                others
            } else {
                // A constant key can still equal an earlier symbolic one.
                symbolic(&mut self.world, address, transient).clone()
            };
            for other in others {
                let same = self.b.compute(Op::Eq, &[other, key_value]);
                self.b.guard(GuardKind::Alias, same);
            }
            // Transient storage, and the storage of an account created in this transaction,
            // start at zero: nothing is loaded.
            let created = self.world.accounts.get(&address).is_some_and(|a| a.created);
            let original =
                if transient || created { self.b.word(U256::ZERO) } else { self.load(Op::Storage, &[addr, key_value]) };
            map(&mut self.world, address, transient)
                .insert(key, SymSlot { key: key_value, original, current: original });
        }
        map(&mut self.world, address, transient).get_mut(&key).expect("present: found or inserted above")
    }
}

/// Whether `code` is an EIP-7702 delegation designator (`0xef0100` and an address), and the
/// delegate it names. revm's constants, not copies.
pub(crate) fn delegate_of(code: &[u8]) -> Option<Address> {
    use revm::bytecode::eip7702::{EIP7702_BYTECODE_LEN, EIP7702_MAGIC_BYTES, EIP7702_VERSION};
    let designator = code.len() == EIP7702_BYTECODE_LEN
        && code.starts_with(EIP7702_MAGIC_BYTES)
        && code[EIP7702_MAGIC_BYTES.len()] == EIP7702_VERSION;
    designator.then(|| Address::from_slice(&code[EIP7702_MAGIC_BYTES.len() + 1..]))
}
