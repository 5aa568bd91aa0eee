//! The differential layers, every one through the oracle (`prescient_oracle::check`): every
//! mainnet transaction in its own and other futures, the GeneralStateTests, perturbation
//! fuzzing, every opcode under every fork, and one regression test per soundness hole found.

use ::ir;
use prescient_oracle as oracle;

mod delegation;
mod fuzz;
mod mainnet;
mod opcodes;
mod programs;
mod regressions;
mod state_tests;
