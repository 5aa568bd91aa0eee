#![doc = include_str!("../README.md")]

pub mod backend;
pub mod bloom;
pub mod compact;
pub mod interp;
pub mod keccak;
pub mod keccak_batch;
pub mod memo;
pub mod ops;
pub mod outcome;
pub mod passes;
pub mod program;
pub mod readset;
pub mod receipts;
pub mod record;
pub mod reference;
pub mod semantics;
pub mod synthetic;
pub mod text;
pub mod verify;

pub use backend::AccountCodeOnly;
pub use outcome::{AccountChange, Applied, Difference, StateChanges, Stored, TxOutcome, TxStatus};
pub use reference::{
    BlockOutcome, Receipts, ReferenceError, execute_block, execute_tx, receipts, receipts_with, warm_up,
};
