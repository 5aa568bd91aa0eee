#![doc = include_str!("../README.md")]

pub mod executor;
pub mod metrics;
pub mod pipeline;
pub mod predictor;
pub mod rpc;
pub mod service;
pub mod store;
pub mod tiering;

pub use executor::{
    Import, ImportError, ImportErrorKind, ImportMiss, ImportTx, TxPath, import_block, import_block_ahead,
    verify_against_reference,
};
pub use pipeline::{ImportMode, Imported, Pipeline, PipelineConfig, PreExecuted};
pub use predictor::{PendingPool, PreExecution, pre_execute};
pub use service::{Service, ServiceConfig};
pub use store::ApStore;
