#![doc = include_str!("../README.md")]

pub mod outcome;
pub mod reference;

pub use outcome::{AccountChange, Difference, StateChanges, TxOutcome, TxStatus};
pub use reference::{BlockOutcome, ReferenceError, execute_block, warm_up};
