#![doc = include_str!("../README.md")]

pub mod interp;
pub mod ops;
pub mod outcome;
pub mod program;
pub mod record;
pub mod reference;

pub use outcome::{AccountChange, Difference, StateChanges, TxOutcome, TxStatus};
pub use reference::{BlockOutcome, ReferenceError, execute_block, execute_tx, warm_up};
