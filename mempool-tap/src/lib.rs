#![doc = include_str!("../README.md")]

pub mod recorded;

pub use recorded::{BlockRef, BlockSource, Dataset, LoadError, LoadErrorKind, RecordedBlock};
