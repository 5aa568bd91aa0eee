//! Integration tests of the `prescient` tools (one binary, as reth does, to keep link time down).

mod anvil;
mod devnet;
mod faults;
mod ground_truth;
