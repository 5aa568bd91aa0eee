//! What a block changes outside its transactions, as a node applies it.
//!
//! ```text
//!   pre-block:  DAO fork drain (block 1,920,000) ─▶ EIP-2935 history call ─▶ EIP-4788 beacon-root call
//!   transactions (any executor)
//!   post-block: EIP-7002 / EIP-7251 request calls (Prague on) ─▶ block and uncle rewards (before the
//!               Merge) and withdrawals (Shanghai on), as balance increments
//! ```
//!
//! The system calls, the reward schedule and the DAO account list are alloy-evm's
//! (`SystemCaller`, `state_changes::post_block_balance_increments`, `eth::dao_fork`), run on
//! revm 43 through an [`EthEvm`] over the executor's own state. What is ours:
//!
//! - **The fork schedule of a chain that is not mainnet.** A recorded devnet runs one fixed
//!   spec from genesis; [`hardforks`] turns that spec into alloy-hardforks' schedule.
//! - **The DAO drain runs before the transactions**, as geth (whose state roots mainnet
//!   carries) applies it; alloy-evm's `EthBlockExecutor` applies it after them.
//! - **Uncles known only by hash.** The RPC block lists its uncles' hashes, not their headers:
//!   the miner's 1/32 per uncle is applied ([`Ommers::CountOnly`]), an uncle's own reward
//!   cannot be and is left out (said by [`Ommers::CountOnly`]'s docs and by `replay`).
//!
//! Every change goes through `DatabaseCommit::commit`, so the executor's state after
//! [`apply_post_block`] is the block's whole state change.

use alloy::{
    consensus::Header,
    eips::{eip4895::Withdrawal, eip7685::Requests},
};
use alloy_evm::{
    EvmEnv,
    block::{SystemCaller, calc, state_changes::post_block_balance_increments},
    eth::{
        EthEvmBuilder,
        dao_fork::{DAO_HARDFORK_ACCOUNTS, DAO_HARDFORK_BENEFICIARY},
    },
};
use alloy_hardforks::{EthereumChainHardforks, EthereumHardfork, EthereumHardforks, ForkCondition};
use revm::{
    Database, DatabaseCommit,
    context::{BlockEnv, CfgEnv},
    database_interface::DatabaseCommitExt,
    primitives::{Address, B256, StorageKey, StorageValue, U256, hardfork::SpecId},
    state::{AccountInfo, Bytecode, EvmState},
};

/// A block's uncles, as far as they are known.
#[derive(Clone, Copy, Debug)]
pub enum Ommers<'a> {
    /// The uncles' headers: every reward is applied.
    Headers(&'a [Header]),
    /// Only how many there are (an RPC block lists hashes only): the miner's 1/32 per uncle is
    /// applied, the uncles' own rewards are not.
    CountOnly(usize),
}

/// The inputs of a block's changes outside its transactions.
#[derive(Clone, Copy, Debug)]
pub struct BlockInputs<'a> {
    /// The parent block's hash (EIP-2935 stores it).
    pub parent_hash: B256,
    /// The parent beacon block root (EIP-4788, required from Cancun).
    pub parent_beacon_block_root: Option<B256>,
    /// Withdrawals (Shanghai on).
    pub withdrawals: Option<&'a [Withdrawal]>,
    /// Uncles (rewarded before the Merge).
    pub ommers: Ommers<'a>,
}

/// Why a block's system part could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum SystemError {
    /// The state backend failed.
    #[error("state backend: {0}")]
    Database(String),
    /// A system call failed as consensus defines failure (a missing beacon root, a reverted
    /// request contract).
    #[error("system call: {0}")]
    Call(String),
}

/// The fork schedule under which `cfg` runs: mainnet's for chain id 1, otherwise every fork
/// up to `cfg`'s spec active from genesis (a devnet's fixed spec).
pub fn hardforks(cfg: &CfgEnv) -> EthereumChainHardforks {
    if cfg.chain_id == 1 {
        return EthereumChainHardforks::mainnet();
    }
    let spec = cfg.spec;
    let forks = FORKS.iter().filter(|(_, s)| spec.is_enabled_in(*s)).map(|(fork, s)| {
        let condition = if *fork == EthereumHardfork::Paris {
            ForkCondition::TTD { activation_block_number: 0, fork_block: Some(0), total_difficulty: U256::ZERO }
        } else if s.is_enabled_in(SpecId::SHANGHAI) {
            ForkCondition::Timestamp(0)
        } else {
            ForkCondition::Block(0)
        };
        (*fork, condition)
    });
    EthereumChainHardforks::new(forks.collect::<Vec<_>>())
}

/// alloy-hardforks' forks with the revm spec each one starts. revm has no spec of its own for
/// Constantinople (shipped as Petersburg) or the glaciers (difficulty-bomb delays only); the DAO
/// fork changes state, not rules, and a devnet never runs it.
const FORKS: [(EthereumHardfork, SpecId); 18] = [
    (EthereumHardfork::Frontier, SpecId::FRONTIER),
    (EthereumHardfork::Homestead, SpecId::HOMESTEAD),
    (EthereumHardfork::Tangerine, SpecId::TANGERINE),
    (EthereumHardfork::SpuriousDragon, SpecId::SPURIOUS_DRAGON),
    (EthereumHardfork::Byzantium, SpecId::BYZANTIUM),
    (EthereumHardfork::Constantinople, SpecId::PETERSBURG),
    (EthereumHardfork::Petersburg, SpecId::PETERSBURG),
    (EthereumHardfork::Istanbul, SpecId::ISTANBUL),
    (EthereumHardfork::MuirGlacier, SpecId::ISTANBUL),
    (EthereumHardfork::Berlin, SpecId::BERLIN),
    (EthereumHardfork::London, SpecId::LONDON),
    (EthereumHardfork::ArrowGlacier, SpecId::LONDON),
    (EthereumHardfork::GrayGlacier, SpecId::LONDON),
    (EthereumHardfork::Paris, SpecId::MERGE),
    (EthereumHardfork::Shanghai, SpecId::SHANGHAI),
    (EthereumHardfork::Cancun, SpecId::CANCUN),
    (EthereumHardfork::Prague, SpecId::PRAGUE),
    (EthereumHardfork::Osaka, SpecId::OSAKA),
];

/// Applies what comes before a block's transactions: the DAO fork's drain at its block, then
/// the EIP-2935 and EIP-4788 system calls where their forks are active.
pub fn apply_pre_block<DB>(
    db: &mut DB,
    cfg: &CfgEnv,
    block: &BlockEnv,
    inputs: &BlockInputs<'_>,
) -> Result<(), SystemError>
where
    DB: Database + DatabaseCommit,
    DB::Error: std::fmt::Display,
{
    let spec = hardforks(cfg);
    let number: u64 = block.number.saturating_to();
    if spec.ethereum_fork_activation(EthereumHardfork::Dao).transitions_at_block(number) {
        let drained: u128 = db.drain_balances(DAO_HARDFORK_ACCOUNTS).map_err(database)?.into_iter().sum();
        db.increment_balances([(DAO_HARDFORK_BENEFICIARY, drained)]).map_err(database)?;
    }
    let mut evm = EthEvmBuilder::new(Adapter(db), EvmEnv::new(cfg.clone(), block.clone())).build();
    let mut caller = SystemCaller::new(&spec);
    caller.apply_blockhashes_contract_call(inputs.parent_hash, &mut evm).map_err(call)?;
    caller.apply_beacon_root_contract_call(inputs.parent_beacon_block_root, &mut evm).map_err(call)?;
    Ok(())
}

/// Applies what comes after a block's transactions: the EIP-7002 and EIP-7251 request calls
/// from Prague (their requests are returned), then rewards and withdrawals.
pub fn apply_post_block<DB>(
    db: &mut DB,
    cfg: &CfgEnv,
    block: &BlockEnv,
    inputs: &BlockInputs<'_>,
) -> Result<Requests, SystemError>
where
    DB: Database + DatabaseCommit,
    DB::Error: std::fmt::Display,
{
    let spec = hardforks(cfg);
    let timestamp: u64 = block.timestamp.saturating_to();
    let requests = if spec.is_prague_active_at_timestamp(timestamp) {
        let mut evm = EthEvmBuilder::new(Adapter(&mut *db), EvmEnv::new(cfg.clone(), block.clone())).build();
        SystemCaller::new(&spec).apply_post_execution_changes(&mut evm).map_err(call)?
    } else {
        Requests::default()
    };
    let mut increments = match inputs.ommers {
        Ommers::Headers(headers) => post_block_balance_increments(&spec, block, headers, inputs.withdrawals),
        Ommers::CountOnly(count) => {
            let mut increments = post_block_balance_increments::<Header>(&spec, block, &[], inputs.withdrawals);
            if let Some(base) = calc::base_block_reward(&spec, block.number.saturating_to()) {
                *increments.entry(block.beneficiary).or_default() += calc::block_reward(base, count) - base;
            }
            increments
        }
    };
    // Applied in address order, so the commit order does not depend on a hash map's.
    let mut increments: Vec<(Address, u128)> = increments.drain().collect();
    increments.sort_unstable_by_key(|(address, _)| *address);
    db.increment_balances(increments).map_err(database)?;
    Ok(requests)
}

fn database(e: impl std::fmt::Display) -> SystemError {
    SystemError::Database(e.to_string())
}

fn call(e: impl std::fmt::Display) -> SystemError {
    SystemError::Call(e.to_string())
}

/// The executor's state as alloy-evm's EVM wants it (an error type that is a
/// `std::error::Error`, and `Debug`); every read and commit goes straight through.
struct Adapter<'a, DB>(&'a mut DB);

/// A state backend's error, rendered.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct AdapterError(String);

impl revm::database_interface::DBErrorMarker for AdapterError {}

impl<DB> std::fmt::Debug for Adapter<'_, DB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Adapter")
    }
}

impl<DB> Database for Adapter<'_, DB>
where
    DB: Database,
    DB::Error: std::fmt::Display,
{
    type Error = AdapterError;

    fn basic(&mut self, address: Address) -> Result<Option<AccountInfo>, Self::Error> {
        self.0.basic(address).map_err(|e| AdapterError(e.to_string()))
    }

    fn code_by_hash(&mut self, code_hash: B256) -> Result<Bytecode, Self::Error> {
        self.0.code_by_hash(code_hash).map_err(|e| AdapterError(e.to_string()))
    }

    fn storage(&mut self, address: Address, index: StorageKey) -> Result<StorageValue, Self::Error> {
        self.0.storage(address, index).map_err(|e| AdapterError(e.to_string()))
    }

    fn block_hash(&mut self, number: u64) -> Result<B256, Self::Error> {
        self.0.block_hash(number).map_err(|e| AdapterError(e.to_string()))
    }
}

impl<DB: DatabaseCommit> DatabaseCommit for Adapter<'_, DB> {
    fn commit(&mut self, changes: EvmState) {
        self.0.commit(changes)
    }
}

impl<'a> BlockInputs<'a> {
    /// The inputs a recorded block carries, or `None` when its layout records none of them (the
    /// grevm fixtures): such a block is replayed as its transactions only.
    pub fn of_recorded(block: &'a mempool_tap::RecordedBlock) -> Option<Self> {
        let system = &block.system;
        system.recorded.then(|| Self {
            parent_hash: block.parent_hash.unwrap_or_default(),
            parent_beacon_block_root: system.parent_beacon_block_root,
            withdrawals: system.withdrawals.as_deref(),
            ommers: Ommers::CountOnly(system.ommer_hashes.len()),
        })
    }
}
