#![doc = include_str!("../README.md")]

pub mod metrics;
pub mod node;
pub mod recorded;

pub use node::{
    MempoolTap, MockTap, NodeClient, NodeError, NodeTap, NoopTap, PendingTx, RpcState, StateView, TapEvent,
};
pub use recorded::{BlockRef, BlockSource, BlockSystemInputs, Dataset, LoadError, LoadErrorKind, RecordedBlock};
