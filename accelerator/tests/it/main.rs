//! Integration tests of `prescient-accelerator` (one binary, as reth does).

use prescient_accelerator as accelerator;

mod executor;
mod executor_fuzz;
mod parallel;
