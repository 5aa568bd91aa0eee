//! Integration tests of `prescient-ir` (one binary, as reth does, to keep link time down).
//! The differential layers (mainnet, state tests, fuzzing) live with the oracle,
//! `jit/oracle`.

use prescient_ir as ir;

mod golden;
mod support;
