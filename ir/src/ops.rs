//! The IR's operations: one declarative table (name, kind, operand count, result type).
//!
//! Every operation is listed once, in the `ops!` macro below; the printer, the parser, the verifier and the
//! interpreter all read this table, so adding an operation is one line here plus its
//! semantics in `interp.rs` (see the checklist in `ARCHITECTURE.md`).

use std::fmt;

use revm::primitives::{Address, Bytes, U256, hardfork::SpecId};
use serde::{Deserialize, Serialize};

/// What an operation does, which decides where it may appear and what passes may do to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpKind {
    /// A constant word or byte string (the immediate).
    Const,
    /// Reads the state before the transaction (balance, nonce, code hash, storage, block hash).
    Load,
    /// Reads the block context (number, timestamp, fee recipient, base fee, …).
    Context,
    /// A pure function of its operands.
    Compute,
    /// Asserts that its operand equals the immediate; a failed guard is a miss.
    Guard,
    /// Writes an output. Stores come after every guard, so a miss writes nothing.
    Store,
}

/// The type of an operation's result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Ty {
    /// A 256-bit word.
    Word,
    /// A byte string whose length is fixed by the path.
    Bytes,
    /// No result.
    None,
}

/// Operand count: fixed, or variable (`concat`, `log`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arity {
    /// Exactly this many operands.
    Fixed(u8),
    /// At least this many.
    AtLeast(u8),
}

macro_rules! ops {
    ($( $(#[$doc:meta])* $variant:ident = $name:literal, $kind:ident, $arity:expr, $ty:ident; )*) => {
        /// An IR operation.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        pub enum Op {
            $( $(#[$doc])* $variant, )*
        }

        impl Op {
            /// Every operation, in table order.
            pub const ALL: &'static [Op] = &[$(Op::$variant),*];

            /// The name in the text format.
            pub const fn name(self) -> &'static str {
                match self { $(Op::$variant => $name,)* }
            }

            /// What the operation does.
            pub const fn kind(self) -> OpKind {
                match self { $(Op::$variant => OpKind::$kind,)* }
            }

            /// How many operands it takes.
            pub const fn arity(self) -> Arity {
                match self { $(Op::$variant => $arity,)* }
            }

            /// The type of its result.
            pub const fn ty(self) -> Ty {
                match self { $(Op::$variant => Ty::$ty,)* }
            }
        }
    };
}

use Arity::{AtLeast, Fixed};

ops! {
    /// A word constant (immediate).
    Const = "const", Const, Fixed(0), Word;
    /// A byte-string constant (immediate).
    ConstBytes = "bytes", Const, Fixed(0), Bytes;

    /// Balance of the account at the operand's address.
    Balance = "load.balance", Load, Fixed(1), Word;
    /// Nonce of the account.
    Nonce = "load.nonce", Load, Fixed(1), Word;
    /// Code hash of the account as the state holds it: `KECCAK_EMPTY` for an account
    /// without code, and for one that does not exist (use `load.exists` to tell them apart).
    CodeHash = "load.codehash", Load, Fixed(1), Word;
    /// 1 when the account exists in the state, 0 otherwise.
    Exists = "load.exists", Load, Fixed(1), Word;
    /// Storage slot (address, key) before the transaction.
    Storage = "load.storage", Load, Fixed(2), Word;
    /// Hash of a block by number (0 outside the 256-block window).
    BlockHash = "load.blockhash", Load, Fixed(1), Word;

    /// Block number.
    Number = "ctx.number", Context, Fixed(0), Word;
    /// Block timestamp.
    Timestamp = "ctx.timestamp", Context, Fixed(0), Word;
    /// Fee recipient.
    Coinbase = "ctx.coinbase", Context, Fixed(0), Word;
    /// Base fee per gas (0 before London).
    BaseFee = "ctx.basefee", Context, Fixed(0), Word;
    /// Block gas limit.
    GasLimit = "ctx.gaslimit", Context, Fixed(0), Word;
    /// PREVRANDAO from the Merge, DIFFICULTY before.
    Random = "ctx.random", Context, Fixed(0), Word;
    /// Blob base fee (0 before Cancun).
    BlobBaseFee = "ctx.blobbasefee", Context, Fixed(0), Word;

    /// Wrapping addition.
    Add = "add", Compute, Fixed(2), Word;
    /// Wrapping subtraction.
    Sub = "sub", Compute, Fixed(2), Word;
    /// Wrapping multiplication.
    Mul = "mul", Compute, Fixed(2), Word;
    /// Unsigned division (x / 0 = 0).
    Div = "div", Compute, Fixed(2), Word;
    /// Signed division.
    SDiv = "sdiv", Compute, Fixed(2), Word;
    /// Unsigned remainder (x % 0 = 0).
    Mod = "mod", Compute, Fixed(2), Word;
    /// Signed remainder.
    SMod = "smod", Compute, Fixed(2), Word;
    /// (a + b) % n without overflow.
    AddMod = "addmod", Compute, Fixed(3), Word;
    /// (a * b) % n without overflow.
    MulMod = "mulmod", Compute, Fixed(3), Word;
    /// Wrapping exponentiation.
    Exp = "exp", Compute, Fixed(2), Word;
    /// Sign-extends operand 1 from byte operand 0.
    SignExtend = "signextend", Compute, Fixed(2), Word;
    /// Unsigned less-than (1 or 0).
    Lt = "lt", Compute, Fixed(2), Word;
    /// Unsigned greater-than.
    Gt = "gt", Compute, Fixed(2), Word;
    /// Signed less-than.
    SLt = "slt", Compute, Fixed(2), Word;
    /// Signed greater-than.
    SGt = "sgt", Compute, Fixed(2), Word;
    /// Equality.
    Eq = "eq", Compute, Fixed(2), Word;
    /// Is zero.
    IsZero = "iszero", Compute, Fixed(1), Word;
    /// Bitwise and.
    And = "and", Compute, Fixed(2), Word;
    /// Bitwise or.
    Or = "or", Compute, Fixed(2), Word;
    /// Bitwise xor.
    Xor = "xor", Compute, Fixed(2), Word;
    /// Bitwise not.
    Not = "not", Compute, Fixed(1), Word;
    /// Byte operand 0 of operand 1 (big-endian).
    Byte = "byte", Compute, Fixed(2), Word;
    /// Operand 1 shifted left by operand 0.
    Shl = "shl", Compute, Fixed(2), Word;
    /// Operand 1 shifted right by operand 0.
    Shr = "shr", Compute, Fixed(2), Word;
    /// Operand 1 arithmetically shifted right by operand 0.
    Sar = "sar", Compute, Fixed(2), Word;
    /// Count of leading zero bits (256 for zero): EIP-7939's CLZ, from Osaka.
    Clz = "clz", Compute, Fixed(1), Word;
    /// Unsigned minimum (envelope arithmetic: the EIP-1559 effective price).
    Min = "min", Compute, Fixed(2), Word;

    /// Concatenation of byte strings.
    Concat = "concat", Compute, AtLeast(1), Bytes;
    /// `len` bytes of operand 0 from `offset`, zero-padded past its end (immediate: offset, len).
    Slice = "slice", Compute, Fixed(1), Bytes;
    /// A word as 32 big-endian bytes.
    ToBytes = "tobytes", Compute, Fixed(1), Bytes;
    /// Up to 32 bytes as a big-endian word.
    ToWord = "toword", Compute, Fixed(1), Word;
    /// keccak256 of a byte string.
    Keccak = "keccak", Compute, Fixed(1), Word;
    /// Length of a byte string.
    Len = "len", Compute, Fixed(1), Word;
    /// A precompile run on its input (immediate: address, gas limit, spec), as revm runs
    /// it: one status byte (0 success, 1 revert, 2 halt), the gas used as 8 big-endian
    /// bytes, then the output.
    PCall = "pcall", Compute, Fixed(1), Bytes;

    /// Asserts operand 0 equals the immediate word (immediate: guard kind, expected value).
    Guard = "guard", Guard, Fixed(1), None;

    /// Final info of a touched account: address, balance, nonce, code hash (immediate: flags).
    StoreAccount = "store.account", Store, Fixed(4), None;
    /// Final value of a changed slot: address, key, value.
    StoreSlot = "store.slot", Store, Fixed(3), None;
    /// Code deployed to an account: address, code.
    StoreCode = "store.code", Store, Fixed(2), None;
    /// A log: address, data, then 0 to 4 topics.
    Log = "store.log", Store, AtLeast(2), None;
    /// The transaction's output bytes.
    Output = "store.output", Store, Fixed(1), None;
    /// The address a top-level creation deployed to.
    Created = "store.created", Store, Fixed(1), None;
}

impl Op {
    /// Looks an operation up by its text name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|op| op.name() == name)
    }

    /// Whether the operation has no side effect and its result depends only on its operands
    /// (and immediate), so CSE and dead-code elimination may touch it.
    pub const fn is_pure(self) -> bool {
        matches!(self.kind(), OpKind::Const | OpKind::Compute | OpKind::Load | OpKind::Context)
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a guard exists. Each kind is documented where the tracer emits it; the kind is
/// carried into miss reasons and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub enum GuardKind {
    /// Transaction validity: nonce, balance sufficiency, fee caps, sender code.
    Envelope,
    /// Control flow: a JUMPI condition, a dynamic jump target, a call's success.
    Path,
    /// Which code runs: the code hash (or absence) of an account that is called or created.
    Code,
    /// Data-flow wiring: whether two non-constant addresses or storage keys are equal.
    Alias,
    /// The predicate behind a dynamic gas cost (warm/cold, SSTORE relations, new account).
    Gas,
    /// Memory layout: an offset or size taken from data.
    Memory,
    /// The shape of the write set: whether a written slot ends up changed.
    WriteSet,
}

impl GuardKind {
    /// Every kind, in order.
    pub const ALL: [GuardKind; 7] = [
        GuardKind::Envelope,
        GuardKind::Path,
        GuardKind::Code,
        GuardKind::Alias,
        GuardKind::Gas,
        GuardKind::Memory,
        GuardKind::WriteSet,
    ];

    /// The name in the text format.
    pub const fn name(self) -> &'static str {
        match self {
            GuardKind::Envelope => "envelope",
            GuardKind::Path => "path",
            GuardKind::Code => "code",
            GuardKind::Alias => "alias",
            GuardKind::Gas => "gas",
            GuardKind::Memory => "memory",
            GuardKind::WriteSet => "writeset",
        }
    }

    /// The name of a miss on a guard of this kind, for reports and metrics (`guard:alias`).
    pub const fn miss_name(self) -> &'static str {
        match self {
            GuardKind::Envelope => "guard:envelope",
            GuardKind::Path => "guard:path",
            GuardKind::Code => "guard:code",
            GuardKind::Alias => "guard:alias",
            GuardKind::Gas => "guard:gas",
            GuardKind::Memory => "guard:memory",
            GuardKind::WriteSet => "guard:writeset",
        }
    }

    /// Looks a kind up by name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }
}

impl fmt::Display for GuardKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_round_trip() {
        for op in Op::ALL {
            assert_eq!(Op::from_name(op.name()), Some(*op));
        }
        let mut names: Vec<_> = Op::ALL.iter().map(|o| o.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Op::ALL.len());
        for kind in GuardKind::ALL {
            assert_eq!(GuardKind::from_name(kind.name()), Some(kind));
        }
    }

    #[test]
    fn only_value_producing_ops_are_pure() {
        for op in Op::ALL {
            assert_eq!(op.is_pure(), op.ty() != Ty::None, "{op}");
        }
    }
}

/// Flags of a touched account's final state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AccountFlags {
    /// Created by this transaction: storage starts empty.
    pub created: bool,
    /// Self-destructed in this transaction.
    pub selfdestructed: bool,
}

/// An instruction's immediate operand.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Imm {
    /// No immediate.
    None,
    /// A word (`const`).
    Word(U256),
    /// A byte string (`bytes`).
    Bytes(Bytes),
    /// A guard's kind and the value the trace saw.
    Guard(GuardKind, U256),
    /// A slice's offset and length.
    Slice(u32, u32),
    /// Account flags (`store.account`).
    Flags(AccountFlags),
    /// A precompile call: which precompile, the gas it is given, and the rules it runs under.
    Precompile(Address, u64, SpecId),
}
