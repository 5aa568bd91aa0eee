//! Integration tests of `prescient-ir` (one binary, as reth does, to keep link time down).

use prescient_ir as ir;

mod delegation;
mod fuzz;
mod golden;
mod opcodes;
mod oracle;
mod regressions;
mod state_tests;
mod support;
