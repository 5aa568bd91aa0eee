//! Transactions without a program, executed ahead on the receipts thread.
//!
//! A block's transactions that were not heard (or have no program) would run in revm on the
//! importer's thread, at revm's speed, while the second core mostly waits for receipts. Here
//! that core runs them ahead, in block order, between receipts ([`ir::receipts::build_while`]'s
//! side work), each on the **pre-block state** (a view the caller gives), recording every
//! account, slot and block hash it read, with revm's mainnet handler minus the fee
//! recipient's credit ([`parallel::DeferFee`]).
//!
//! When the importer reaches such a transaction, it takes its execution ([`Ahead::take`]):
//! - **valid**: every value it read is, in the importer's state at that point (every lower
//!   transaction committed), the value it read. Then its result and state are exactly what
//!   revm would produce there (an execution is a function of what it reads), and they are
//!   committed with the fee credit added as revm's `reward_beneficiary` adds it (the same
//!   check and credit as the parallel fallback's, [`parallel`]).
//! - **anything else** (a read that changed, a failure on the view, a fee that would
//!   overflow, a destroyed fee recipient, not executed yet, or still under way after the wait
//!   below): the importer executes the transaction itself, as before.
//!
//! An execution still under way when the importer reaches it is waited for, at most as long as
//! it has run already ([`Ahead::take`]): one nearly done costs the importer its last part
//! instead of the whole, and one that runs long on the parent state (a loop on a flag an
//! earlier transaction sets, an attacker's griefing) costs it at most what the receipts thread
//! spent on it, which [`MAX_GAS`] bounds.
//!
//! Only the first transaction of each sender in the block, of at most [`MAX_GAS`] gas, is
//! executed ahead, and only under rules from Spurious Dragon on where revm's fee credit can be
//! deferred.
//!
//! The view only decides how often the work pays, never what is committed: a stale view
//! fails validation.

use std::{
    sync::{
        Mutex, OnceLock,
        atomic::{AtomicUsize, Ordering},
    },
    time::Instant,
};

use ir::TxOutcome;
use revm::{
    Database, DatabaseCommit, DatabaseRef, ExecuteEvm,
    context::{BlockEnv, CfgEnv, ContextSetters, ContextTr, result::EVMError},
    context_interface::result::ExecutionResult,
    database::CacheDB,
    database_interface::DBErrorMarker,
    handler::Handler,
    primitives::{Address, B256, StorageKey, StorageValue, U256, hardfork::SpecId},
    state::{Account, AccountInfo, Bytecode, EvmState},
};

use super::{ImportTx, parallel};

/// The most gas a transaction executed ahead may have. An execution ahead runs on the parent
/// state, where a transaction may run far longer than at its turn (a loop on a flag an earlier
/// transaction sets); the importer waits for one at most as long as it has run
/// ([`Ahead::take`]), and the block's end waits for the unit under way: this bounds both.
const MAX_GAS: u64 = 1_000_000;

/// One value an execution ahead read.
#[derive(Debug)]
enum Read {
    Account(Address, Option<AccountInfo>),
    Slot(Address, StorageKey, StorageValue),
    BlockHash(u64, B256),
}

/// One transaction executed ahead: its result and state without the fee credit (`None` when
/// it failed on the view), what it read, and the recipient of a plain transfer it only
/// credited ([`parallel::credit_of`]).
#[derive(Debug)]
pub(crate) struct Executed {
    outcome: Option<(ExecutionResult, EvmState)>,
    reads: Vec<Read>,
    credited: Option<(Address, U256)>,
}

#[derive(Debug)]
enum Slot {
    /// Not claimed yet.
    Open,
    /// Being executed on the receipts thread, since then.
    Running(Instant),
    /// Executed, waiting for the importer.
    Done(Box<Executed>),
    /// The importer took it (or passed it): no one works on it any more.
    Taken,
}

/// The transactions of one block to execute ahead, and their executions.
pub(crate) struct Ahead<'a, S, F> {
    cfg: &'a CfgEnv,
    block: &'a BlockEnv,
    txs: &'a [ImportTx],
    view: &'a S,
    without_program: F,
    /// Block positions of the transactions to execute ahead, ascending: chosen on the
    /// receipts thread at its first step, so that the importer pays nothing for the choice.
    targets: OnceLock<Vec<usize>>,
    /// One per transaction of the block, by position.
    slots: Vec<Mutex<Slot>>,
    /// The next target the receipts thread looks at.
    next: AtomicUsize,
}

impl<'a, S, F> Ahead<'a, S, F>
where
    S: DatabaseRef + Sync,
    S::Error: DBErrorMarker,
    F: Fn(usize) -> bool + Sync,
{
    /// The transactions of `txs` to execute ahead ([`Ahead::targets`], chosen later on the
    /// receipts thread). `None` for an empty block, or under rules where the fee credit cannot
    /// be deferred (before Spurious Dragon, from Amsterdam, fees off).
    pub(crate) fn new(
        cfg: &'a CfgEnv,
        block: &'a BlockEnv,
        txs: &'a [ImportTx],
        view: &'a S,
        without_program: F,
    ) -> Option<Self> {
        // Before Spurious Dragon, revm's end-of-transaction cleanup of empty touched accounts
        // runs after the fee credit, which here is added after it: not executed ahead.
        if txs.is_empty() || !parallel::fee_deferrable(cfg) || !cfg.spec.is_enabled_in(SpecId::SPURIOUS_DRAGON) {
            return None;
        }
        let slots = txs.iter().map(|_| Mutex::new(Slot::Open)).collect();
        Some(Self {
            cfg,
            block,
            txs,
            view,
            without_program,
            targets: OnceLock::new(),
            slots,
            next: AtomicUsize::new(0),
        })
    }

    /// The transactions `without_program` selects, of at most [`MAX_GAS`] gas, except those
    /// whose sender sent an earlier transaction of the block (on the pre-block state their
    /// nonce is not yet valid).
    fn targets(&self) -> &[usize] {
        self.targets.get_or_init(|| {
            let mut senders = alloy::primitives::map::AddressHashSet::default();
            self.txs
                .iter()
                .enumerate()
                .filter_map(|(i, tx)| {
                    let first_of_sender = senders.insert(tx.env.caller);
                    (first_of_sender && tx.env.gas_limit <= MAX_GAS && (self.without_program)(i)).then_some(i)
                })
                .collect()
        })
    }

    /// The receipts thread's unit of work: executes the next open target. `false` when none
    /// is left.
    pub(crate) fn step(&self) -> bool {
        loop {
            let k = self.next.fetch_add(1, Ordering::Relaxed);
            let Some(&index) = self.targets().get(k) else { return false };
            let slot = &self.slots[index];
            {
                let mut slot = lock(slot);
                if !matches!(*slot, Slot::Open) {
                    continue;
                }
                *slot = Slot::Running(Instant::now());
            }
            // A panic in revm becomes a failed execution (the importer runs the transaction
            // itself), and the receipts thread goes on with the block's receipts.
            let executed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.execute(index)))
                .unwrap_or(Executed { outcome: None, reads: Vec::new(), credited: None });
            let mut slot = lock(slot);
            // Taken meanwhile: the importer executed it itself.
            if matches!(*slot, Slot::Running(_)) {
                *slot = Slot::Done(Box::new(executed));
            }
            return true;
        }
    }

    /// Executes transaction `index` on the view, without the fee credit, recording its reads.
    fn execute(&self, index: usize) -> Executed {
        let recording = Recording { view: self.view, reads: Vec::new() };
        let mut evm = ir::reference::evm(recording, self.cfg, self.block);
        evm.ctx.set_tx(self.txs[index].env.clone());
        let run = parallel::DeferFee::<_, EVMError<S::Error>, revm::handler::EthFrame>::default().run(&mut evm);
        let state = evm.finalize();
        let reads = std::mem::take(&mut evm.ctx.db_mut().reads);
        let Ok(result) = run else { return Executed { outcome: None, reads, credited: None } };
        // A deposit to a busy account (an exchange's, a bridge's) is not undone by the deposits
        // before it in the block: it commits as a credit to what they left.
        let tx = &self.txs[index].env;
        let precompile = tx.kind.to().is_some_and(|to| evm.precompiles.contains(to));
        let credited = (!precompile)
            .then(|| {
                parallel::credit_of(tx, self.block.beneficiary, &result, &state, |to| {
                    reads.iter().find_map(|read| match read {
                        Read::Account(address, seen) if *address == to => Some(seen.as_ref()),
                        _ => None,
                    })
                })
            })
            .flatten();
        Executed { outcome: Some((result, state)), reads, credited }
    }

    /// The execution of transaction `index` ahead, if it was chosen and is done. One under way
    /// is waited for at most as long as it has run already: on the parent state it may run
    /// much longer than at its turn (an attacker's griefing), and then the importer loses at
    /// most that time before executing the transaction itself. Either way no one works on it
    /// afterwards (an execution still under way is dropped when it ends).
    pub(crate) fn take(&self, index: usize) -> Option<Executed> {
        let slot = self.slots.get(index)?;
        let mut taken = lock(slot);
        if let Slot::Running(started) = *taken {
            let arrived = Instant::now();
            let patience = arrived.saturating_duration_since(started);
            let mut polls = 0u32;
            while matches!(*taken, Slot::Running(_)) && arrived.elapsed() < patience {
                drop(taken);
                // The core is given up now and then, as the executor's spinning locks do: on
                // a machine with fewer free cores than threads, the receipts thread may need
                // this one to finish.
                polls = polls.wrapping_add(1);
                if polls.is_multiple_of(32) {
                    std::thread::yield_now();
                } else {
                    for _ in 0..64 {
                        std::hint::spin_loop();
                    }
                }
                taken = lock(slot);
            }
        }
        match std::mem::replace(&mut *taken, Slot::Taken) {
            Slot::Done(executed) => Some(*executed),
            Slot::Open | Slot::Running(_) | Slot::Taken => None,
        }
    }
}

/// Commits `executed` (transaction `tx` executed ahead) on `db` if every value it read still
/// holds there, with the fee recipient's credit added as revm adds it. Returns its result and
/// the outcome the oracle keeps (when `keep`); `None` (nothing written) when it does not hold.
pub(crate) fn commit_if_valid<D>(
    db: &mut CacheDB<D>,
    cfg: &CfgEnv,
    block: &BlockEnv,
    tx: &ImportTx,
    executed: Executed,
    keep: bool,
) -> Option<(ExecutionResult, Option<TxOutcome>)>
where
    D: DatabaseRef,
{
    let (result, mut state) = executed.outcome?;
    let fee = parallel::fee_of(cfg, block, &tx.env, &result)?;
    let coinbase = block.beneficiary;
    // A destroyed fee recipient would have burnt the fee: revm runs it.
    if state.get(&coinbase).is_some_and(|a| a.is_selfdestructed()) {
        return None;
    }
    // Read through the cache (what is read is what revm would load), so that later reads of a
    // hot account or slot come from memory.
    // A credited recipient's balance as it commits: what lower transactions left, plus the
    // credit (its other fields are validated as any read).
    let mut credited_balance = None;
    let valid = executed.reads.iter().all(|read| match read {
        Read::Account(address, seen) => db.basic(*address).is_ok_and(|now| {
            parallel::account_read_holds(
                *address,
                seen.as_ref(),
                now.as_ref(),
                executed.credited,
                &mut credited_balance,
            )
        }),
        Read::Slot(address, key, seen) => db.storage(*address, *key).is_ok_and(|now| now == *seen),
        Read::BlockHash(number, seen) => db.block_hash(*number).is_ok_and(|now| now == *seen),
    });
    if !valid {
        return None;
    }
    if let (Some((to, _)), Some(balance)) = (executed.credited, credited_balance) {
        state.get_mut(&to)?.info.balance = balance;
    }
    // The credit revm's `reward_beneficiary` adds last: to the account as the transaction left
    // it, else as the state holds it now, touched either way.
    let mut recipient = match state.remove(&coinbase) {
        Some(account) => account,
        None => match db.basic(coinbase).ok()? {
            Some(info) => Account::from(info),
            None => Account::new_not_existing(Default::default()),
        },
    };
    // As the journal's `incr_balance`: a credit that would overflow leaves the balance, and
    // touches the account either way.
    if let Some(balance) = recipient.info.balance.checked_add(fee) {
        recipient.info.balance = balance;
    }
    recipient.mark_touch();
    state.insert(coinbase, recipient);
    let outcome = keep.then(|| TxOutcome::from_revm(&result, &state));
    db.commit(state);
    Some((result, outcome))
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The view, recording every account, slot and block hash read.
struct Recording<'a, S> {
    view: &'a S,
    reads: Vec<Read>,
}

impl<S: DatabaseRef> Database for Recording<'_, S> {
    type Error = S::Error;

    fn basic(&mut self, address: Address) -> Result<Option<AccountInfo>, Self::Error> {
        let info = self.view.basic_ref(address)?;
        self.reads.push(Read::Account(address, info.clone()));
        Ok(info)
    }

    fn code_by_hash(&mut self, code_hash: B256) -> Result<Bytecode, Self::Error> {
        // Code is named by its hash, which the account reads above recorded.
        self.view.code_by_hash_ref(code_hash)
    }

    fn storage(&mut self, address: Address, key: StorageKey) -> Result<StorageValue, Self::Error> {
        let value = self.view.storage_ref(address, key)?;
        self.reads.push(Read::Slot(address, key, value));
        Ok(value)
    }

    fn block_hash(&mut self, number: u64) -> Result<B256, Self::Error> {
        let hash = self.view.block_hash_ref(number)?;
        self.reads.push(Read::BlockHash(number, hash));
        Ok(hash)
    }
}

#[cfg(test)]
mod tests {
    use ir::synthetic::synthetic_env;
    use revm::{
        ExecuteCommitEvm,
        context::TxEnv,
        database::InMemoryDB,
        primitives::{Bytes, TxKind, U256, address, hardfork::SpecId, hex},
    };

    use super::*;
    use crate::executor::first_state_difference;

    const ALICE: Address = address!("0x1000000000000000000000000000000000000001");
    const BOB: Address = address!("0x1000000000000000000000000000000000000002");
    const CAROL: Address = address!("0x1000000000000000000000000000000000000003");
    /// `SSTORE(0, SLOAD(0) + 1)`.
    const COUNTER: Address = address!("0x4000000000000000000000000000000000000004");
    /// `SSTORE(0, BALANCE(COINBASE))`: reads the fee recipient.
    const PEEK: Address = address!("0x4000000000000000000000000000000000000005");

    fn state() -> InMemoryDB {
        let mut db = InMemoryDB::default();
        for who in [ALICE, BOB, CAROL] {
            db.insert_account_info(who, AccountInfo::from_balance(U256::from(10u64.pow(18))));
        }
        for (address, code) in [(COUNTER, "60005460010160005500"), (PEEK, "413160005500")] {
            let code = Bytecode::new_raw(hex::decode(code).expect("hex").into());
            db.insert_account_info(address, AccountInfo::new(U256::ZERO, 1, code.hash_slow(), code));
        }
        db
    }

    fn call(from: Address, to: Address, value: u64) -> ImportTx {
        let env = TxEnv {
            tx_type: 2,
            caller: from,
            gas_limit: 100_000,
            gas_price: 100,
            gas_priority_fee: Some(3),
            kind: TxKind::Call(to),
            value: U256::from(value),
            data: Bytes::new(),
            chain_id: Some(1),
            ..Default::default()
        };
        ImportTx { hash: B256::with_last_byte(from.0[19]) ^ B256::with_last_byte(to.0[19]), env }
    }

    /// Executes every transaction ahead on `pre` (as the receipts thread would, all before
    /// the import), then imports them in order on `pre`'s state, each from its execution
    /// ahead when that holds and by revm otherwise; returns which were committed from ahead,
    /// after checking the state against sequential revm's.
    fn import_all_ahead(pre: &InMemoryDB, txs: &[ImportTx]) -> Vec<bool> {
        import_all_ahead_at(SpecId::CANCUN, pre, txs)
    }

    /// [`import_all_ahead`] under `spec`'s rules.
    fn import_all_ahead_at(spec: SpecId, pre: &InMemoryDB, txs: &[ImportTx]) -> Vec<bool> {
        let (cfg, block) = synthetic_env(spec);
        let ahead = Ahead::new(&cfg, &block, txs, pre, |_| true).expect("targets");
        while ahead.step() {}
        let mut ours = CacheDB::new(pre);
        let mut committed = Vec::new();
        for (index, tx) in txs.iter().enumerate() {
            let executed = ahead.take(index);
            let from_ahead = executed.and_then(|e| commit_if_valid(&mut ours, &cfg, &block, tx, e, true));
            committed.push(from_ahead.is_some());
            if let Some((result, outcome)) = from_ahead {
                // The kept outcome is the committed result's.
                let outcome = outcome.expect("kept");
                assert_eq!(outcome.gas_used, result.tx_gas_used());
            } else {
                let mut evm = ir::reference::evm(&mut ours, &cfg, &block);
                let res = evm.transact(tx.env.clone()).expect("valid");
                evm.commit(res.state);
            }
        }
        assert_eq!(first_state_difference(&ours, &sequential_at(spec, pre, txs)), None, "{committed:?}");
        committed
    }

    /// `txs` executed by sequential revm on `pre`.
    fn sequential<'p>(pre: &'p InMemoryDB, txs: &[ImportTx]) -> CacheDB<&'p InMemoryDB> {
        sequential_at(SpecId::CANCUN, pre, txs)
    }

    /// [`sequential`] under `spec`'s rules.
    fn sequential_at<'p>(spec: SpecId, pre: &'p InMemoryDB, txs: &[ImportTx]) -> CacheDB<&'p InMemoryDB> {
        let (cfg, block) = synthetic_env(spec);
        let mut db = CacheDB::new(pre);
        let envs: Vec<TxEnv> = txs.iter().map(|t| t.env.clone()).collect();
        ir::execute_block(&mut db, &cfg, &block, &envs).expect("valid");
        db
    }

    /// Independent transactions commit from ahead, the fee recipient credited as revm credits
    /// it (created by the first, then added to).
    #[test]
    fn independent_transactions_commit_from_ahead() {
        let txs = [call(ALICE, BOB, 5), call(CAROL, COUNTER, 0)];
        assert_eq!(import_all_ahead(&state(), &txs), vec![true, true]);
    }

    /// Plain transfers to one account from several senders (deposits to an exchange) commit
    /// from ahead, each credited to the balance the ones before left; the recipient's nonce or
    /// code changing in between, or a transfer with input (code could read the balance), is
    /// executed again.
    #[test]
    fn deposits_to_one_account_commit_as_credits() {
        let txs = [call(ALICE, CAROL, 5), call(BOB, CAROL, 7)];
        assert_eq!(import_all_ahead(&state(), &txs), vec![true, true]);
        // CAROL's own transaction first: her nonce changed under the deposit's read.
        let txs = [call(CAROL, BOB, 1), call(ALICE, CAROL, 5)];
        assert_eq!(import_all_ahead(&state(), &txs), vec![true, false]);
        let mut with_input = call(BOB, CAROL, 7);
        with_input.env.data = Bytes::from_static(&[1]);
        let txs = [call(ALICE, CAROL, 5), with_input];
        assert_eq!(import_all_ahead(&state(), &txs), vec![true, false]);
        // A recipient that did not exist before the block, created by the first: the second
        // read no account there, which no longer holds.
        let nobody = Address::repeat_byte(0x77);
        let txs = [call(ALICE, nobody, 5), call(BOB, nobody, 7)];
        assert_eq!(import_all_ahead(&state(), &txs), vec![true, false]);
    }

    /// A deposit into an account an earlier transaction delegated to code (EIP-7702): executed
    /// ahead on the view, where the account has no code, it was a plain credit; at its turn the
    /// transfer runs the delegated code (`SSTORE(0, SLOAD(0) + 1)` in the depositee's storage).
    /// The recipient's code and nonce (the authority's bump) no longer hold, so it is executed
    /// again, and the state equals sequential revm's.
    #[test]
    fn a_deposit_into_an_account_delegated_before_it_is_executed_again() {
        use revm::context_interface::transaction::{Authorization, RecoveredAuthority, RecoveredAuthorization};
        let mut delegate = call(ALICE, ALICE, 0);
        delegate.env.tx_type = 4;
        delegate.env.set_recovered_authorization(vec![RecoveredAuthorization::new_unchecked(
            Authorization { chain_id: U256::from(1), address: COUNTER, nonce: 0 },
            RecoveredAuthority::Valid(CAROL),
        )]);
        let txs = [delegate, call(BOB, CAROL, 7)];
        assert_eq!(import_all_ahead_at(SpecId::PRAGUE, &state(), &txs), vec![true, false]);
    }

    /// A view whose recipient differs from the block's parent in its balance only: the deposit
    /// still commits, and equals revm on the parent; a credit that would overflow the balance
    /// the block holds is executed again.
    #[test]
    fn a_deposit_commits_whatever_balance_its_view_held() {
        let (cfg, block) = synthetic_env(SpecId::CANCUN);
        let txs = [call(ALICE, CAROL, 5)];
        let mut view = state();
        view.insert_account_info(CAROL, AccountInfo::from_balance(U256::from(7)));
        let ahead = Ahead::new(&cfg, &block, &txs, &view, |_| true).expect("targets");
        while ahead.step() {}
        let parent = state();
        let mut ours = CacheDB::new(&parent);
        let executed = ahead.take(0).expect("executed");
        assert!(commit_if_valid(&mut ours, &cfg, &block, &txs[0], executed, false).is_some());
        assert_eq!(first_state_difference(&ours, &sequential(&parent, &txs)), None);

        let mut full = state();
        full.insert_account_info(CAROL, AccountInfo::from_balance(U256::MAX - U256::from(2)));
        let ahead = Ahead::new(&cfg, &block, &txs, &view, |_| true).expect("targets");
        while ahead.step() {}
        let executed = ahead.take(0).expect("executed");
        assert!(commit_if_valid(&mut CacheDB::new(full), &cfg, &block, &txs[0], executed, false).is_none());
    }

    /// A transaction whose slot an earlier one changed, or that read the fee recipient after
    /// an earlier fee, is executed again; the same read as the first transaction holds.
    #[test]
    fn a_read_that_changed_is_executed_again() {
        let txs = [call(ALICE, COUNTER, 0), call(BOB, COUNTER, 0)];
        assert_eq!(import_all_ahead(&state(), &txs), vec![true, false]);
        let txs = [call(ALICE, PEEK, 0), call(BOB, PEEK, 0)];
        assert_eq!(import_all_ahead(&state(), &txs), vec![true, false]);
    }

    /// The importer waits for an execution under way no longer than it has run: one that has
    /// just started is taken over (and the receipts thread does not start it again); one that
    /// has run longer than it still needs is waited for, and the receipts thread's result is
    /// what commits.
    #[test]
    fn an_execution_under_way_is_waited_for_as_long_as_it_has_run() {
        let (cfg, block) = synthetic_env(SpecId::CANCUN);
        let pre = state();
        let txs = [call(ALICE, BOB, 5)];
        let running_since = |started: Instant| {
            let ahead = Ahead::new(&cfg, &block, &txs, &pre, |_| true).expect("targets");
            *lock(&ahead.slots[0]) = Slot::Running(started);
            ahead
        };

        // Started an hour from now: no patience at all, so `take` cannot hang on it.
        let ahead = running_since(Instant::now() + std::time::Duration::from_secs(3600));
        assert!(ahead.take(0).is_none());
        assert!(matches!(*lock(&ahead.slots[0]), Slot::Taken));
        // The receipts thread's own view: the slot is no longer open, so it is not executed.
        assert!(!ahead.step());
        assert!(matches!(*lock(&ahead.slots[0]), Slot::Taken));

        // Under way for two seconds already: the importer may wait that long.
        let ahead = running_since(Instant::now().checked_sub(std::time::Duration::from_secs(2)).expect("uptime"));
        let executed = std::thread::scope(|scope| {
            let taking = scope.spawn(|| ahead.take(0));
            std::thread::sleep(std::time::Duration::from_millis(20));
            // The receipts thread finishing it, as `step` does.
            let done = ahead.execute(0);
            let mut slot = lock(&ahead.slots[0]);
            assert!(matches!(*slot, Slot::Running(_)), "not taken while under way");
            *slot = Slot::Done(Box::new(done));
            drop(slot);
            taking.join().expect("no panic")
        });
        let executed = executed.expect("waited for");
        assert!(matches!(*lock(&ahead.slots[0]), Slot::Taken));
        let mut db = CacheDB::new(&pre);
        assert!(commit_if_valid(&mut db, &cfg, &block, &txs[0], executed, false).is_some());
        assert_eq!(first_state_difference(&db, &sequential(&pre, &txs)), None);
    }

    /// A stale view (the block does not start from it) only costs re-execution; a later
    /// transaction of one sender is not executed ahead; nor is anything under rules where
    /// the fee credit cannot be deferred.
    #[test]
    fn stale_views_chains_and_rules_fall_back() {
        let (cfg, block) = synthetic_env(SpecId::CANCUN);
        let txs = [call(ALICE, COUNTER, 0), call(BOB, CAROL, 1)];
        let mut stale = state();
        stale.insert_account_storage(COUNTER, U256::ZERO, U256::from(41)).expect("in memory");
        stale.insert_account_info(CAROL, AccountInfo { nonce: 3, ..AccountInfo::from_balance(U256::from(7)) });
        let ahead = Ahead::new(&cfg, &block, &txs, &stale, |_| true).expect("targets");
        while ahead.step() {}
        let mut db = CacheDB::new(state());
        for (index, tx) in txs.iter().enumerate() {
            let executed = ahead.take(index).expect("executed");
            assert!(commit_if_valid(&mut db, &cfg, &block, tx, executed, false).is_none(), "tx {index}");
        }
        // Validation loads into the cache what it read; nothing differs from the parent.
        assert_eq!(first_state_difference(&db, &CacheDB::new(state())), None, "nothing written");

        let mut second = call(ALICE, CAROL, 1);
        second.env.nonce = 1;
        let chain = [call(ALICE, BOB, 1), second];
        let ahead = Ahead::new(&cfg, &block, &chain, &stale, |_| true).expect("targets");
        assert_eq!(ahead.targets(), [0]);

        let mut long = call(CAROL, BOB, 1);
        long.env.gas_limit = MAX_GAS + 1;
        let ahead = Ahead::new(&cfg, &block, std::slice::from_ref(&long), &stale, |_| true).expect("rules");
        assert!(ahead.targets().is_empty(), "more gas than an execution ahead may have");
        assert!(!ahead.step());

        let mut old = cfg.clone();
        old.spec = SpecId::HOMESTEAD;
        assert!(Ahead::new(&old, &block, &chain, &stale, |_| true).is_none());
        let mut amsterdam = cfg.clone();
        amsterdam.spec = SpecId::AMSTERDAM;
        assert!(Ahead::new(&amsterdam, &block, &chain, &stale, |_| true).is_none());
    }
}
