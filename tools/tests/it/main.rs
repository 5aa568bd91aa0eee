//! Integration tests of the `prescient` tools (one binary, as reth does, to keep link time down).

mod ground_truth;
mod anvil;
mod devnet;
mod faults;
