//! A state backend that behaves like a node's: code is known only through its account.
//!
//! revm asks a database for code in two ways: with the account (`basic_ref` returns the
//! info with its code) and by hash (`code_by_hash_ref`). An in-memory database answers
//! both, so code that a fast path forgot to carry is silently found again by hash. A node's
//! state view (prescient's RPC view, a node's account trie) answers only the first: code by
//! hash is refused for any hash but the empty one. Tests wrap their in-memory state in
//! [`AccountCodeOnly`] so that they see what a node would see.

use revm::{
    DatabaseRef,
    database::{AccountState, CacheDB},
    database_interface::DBErrorMarker,
    primitives::{Address, B256, KECCAK_EMPTY, StorageKey, StorageValue, U256},
    state::{AccountInfo, Bytecode},
};

/// The backend failed, or refused code by hash.
#[derive(Debug, thiserror::Error)]
pub enum AccountCodeOnlyError<E> {
    /// Code was asked for by hash; a node's state knows code only through its account.
    #[error("code {0} was asked for by hash; a node's state knows code only through its account")]
    CodeByHash(B256),
    /// The wrapped backend failed.
    #[error(transparent)]
    Inner(E),
}

impl<E: std::error::Error + Send + Sync + 'static> DBErrorMarker for AccountCodeOnlyError<E> {}

/// Wraps a backend so that it answers like a node's state: every account comes with its
/// code, and code by hash is refused (except the empty code).
#[derive(Clone, Debug, Default)]
pub struct AccountCodeOnly<D>(pub D);

impl<D: DatabaseRef> DatabaseRef for AccountCodeOnly<D>
where
    D::Error: std::error::Error + Send + Sync + 'static,
{
    type Error = AccountCodeOnlyError<D::Error>;

    fn basic_ref(&self, address: Address) -> Result<Option<AccountInfo>, Self::Error> {
        let Some(mut info) = self.0.basic_ref(address).map_err(AccountCodeOnlyError::Inner)? else {
            return Ok(None);
        };
        // A node returns the code with the account; fetch it here if the inner backend keeps
        // it by hash only.
        if info.code.is_none() {
            let code = if info.code_hash == KECCAK_EMPTY {
                Bytecode::default()
            } else {
                self.0.code_by_hash_ref(info.code_hash).map_err(AccountCodeOnlyError::Inner)?
            };
            info.code = Some(code);
        }
        Ok(Some(info))
    }

    fn code_by_hash_ref(&self, code_hash: B256) -> Result<Bytecode, Self::Error> {
        if code_hash == KECCAK_EMPTY {
            return Ok(Bytecode::default());
        }
        Err(AccountCodeOnlyError::CodeByHash(code_hash))
    }

    fn storage_ref(&self, address: Address, index: StorageKey) -> Result<StorageValue, Self::Error> {
        self.0.storage_ref(address, index).map_err(AccountCodeOnlyError::Inner)
    }

    fn block_hash_ref(&self, number: u64) -> Result<B256, Self::Error> {
        self.0.block_hash_ref(number).map_err(AccountCodeOnlyError::Inner)
    }
}

/// What an account load of a program reads: balance, nonce and code hash (`None` for an
/// absent account).
pub type AccountFieldsOf = Option<(U256, u64, B256)>;

/// The fields an account load reads of `info` (the evaluators' form of `basic_ref`'s answer).
#[inline]
pub fn fields_of(info: Option<AccountInfo>) -> AccountFieldsOf {
    info.map(|info| (info.balance, info.nonce, info.code_hash))
}

/// A state the evaluators read account fields from. The provided method reads through
/// `basic_ref`, which returns an owned `AccountInfo`: its clone takes an atomic increment of
/// the code's `Arc` (and a decrement on drop), for every externally owned account the same
/// static empty code on one cache line every thread running revm shares. A `CacheDB` reads
/// its own accounts in place ([`CacheDB::basic_ref`]'s answer without the clone) and asks its
/// backend only for the others.
pub trait AccountRead: DatabaseRef {
    /// The fields of `address`, as `basic_ref` gives them.
    #[inline]
    fn account_fields(&self, address: Address) -> Result<AccountFieldsOf, Self::Error> {
        self.basic_ref(address).map(fields_of)
    }
}

impl<D: DatabaseRef> AccountRead for CacheDB<D> {
    #[inline]
    fn account_fields(&self, address: Address) -> Result<AccountFieldsOf, Self::Error> {
        match self.cache.accounts.get(&address) {
            // As `DbAccount::info`: a cached non-existent account is absent.
            Some(account) => Ok((!matches!(account.account_state, AccountState::NotExisting)).then_some((
                account.info.balance,
                account.info.nonce,
                account.info.code_hash,
            ))),
            None => self.db.basic_ref(address).map(fields_of),
        }
    }
}

impl<T: AccountRead + ?Sized> AccountRead for &T {
    #[inline]
    fn account_fields(&self, address: Address) -> Result<AccountFieldsOf, Self::Error> {
        (**self).account_fields(address)
    }
}

impl<D: DatabaseRef> AccountRead for AccountCodeOnly<D> where D::Error: std::error::Error + Send + Sync + 'static {}
impl AccountRead for revm::database::EmptyDB {}

#[cfg(test)]
mod tests {
    use super::*;
    use revm::{database::InMemoryDB, primitives::Bytes};

    /// `CacheDB`'s in-place read answers what `basic_ref` answers, for an account it holds,
    /// one it holds as non-existent, one only its backend holds and one nobody holds.
    #[test]
    fn cache_db_reads_fields_as_basic_ref_does() {
        let code = Bytecode::new_raw(Bytes::from_static(&[0x60, 0x01, 0x00]));
        let mut backend = InMemoryDB::default();
        let below = Address::with_last_byte(1);
        backend.insert_account_info(below, AccountInfo::new(U256::from(5), 2, code.hash_slow(), code.clone()));
        let mut db = CacheDB::new(backend);
        let held = Address::with_last_byte(2);
        db.insert_account_info(held, AccountInfo::from_balance(U256::from(9)));
        let gone = Address::with_last_byte(3);
        db.cache.accounts.insert(gone, revm::database::DbAccount::new_not_existing());
        let nobody = Address::with_last_byte(4);
        for address in [below, held, gone, nobody] {
            let through_info = fields_of(db.basic_ref(address).unwrap());
            assert_eq!(db.account_fields(address).unwrap(), through_info, "{address}");
            // And through a reference, as the evaluators are often handed one.
            fn by_ref<D: AccountRead>(db: D, address: Address) -> AccountFieldsOf {
                db.account_fields(address).ok().flatten()
            }
            assert_eq!(by_ref(&db, address), through_info, "{address}");
        }
        assert_eq!(db.account_fields(below).unwrap(), Some((U256::from(5), 2, code.hash_slow())));
        assert_eq!(db.account_fields(gone).unwrap(), None);
    }

    #[test]
    fn code_comes_with_the_account_and_never_by_hash() {
        let code = Bytecode::new_raw(Bytes::from_static(&[0x60, 0x01, 0x00]));
        let hash = code.hash_slow();
        let address = Address::with_last_byte(7);
        let mut db = InMemoryDB::default();
        db.insert_account_info(address, AccountInfo::new(Default::default(), 1, hash, code.clone()));
        let node = AccountCodeOnly(db);
        let info = node.basic_ref(address).expect("present").expect("exists");
        assert_eq!(info.code.map(|c| c.original_bytes()), Some(code.original_bytes()));
        assert!(matches!(node.code_by_hash_ref(hash), Err(AccountCodeOnlyError::CodeByHash(h)) if h == hash));
        assert!(node.code_by_hash_ref(KECCAK_EMPTY).expect("empty code").is_empty());
    }
}
