//! The live side: a node connection, its pending-transaction and head streams, and its
//! state as a revm database.

pub mod client;
pub mod state;
pub mod tap;

pub use client::{NodeClient, NodeError};
pub use state::{CacheSizes, ReadLog, RpcState, StateError, StateView};
pub use tap::{MempoolTap, MockTap, NodeTap, NoopTap, PendingTx, TapConfig, TapEvent};
