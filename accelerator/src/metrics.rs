//! The metrics `accelerator` exports: one list, one name per series (Prometheus names).
//! The node-facing series live in `mempool_tap::metrics`.

/// Every series this crate exports: (name, kind, labels, meaning). The root README's
/// Metrics table lists the same (a test checks it).
pub const SERIES: &[mempool_tap::metrics::Series] = &[
    (POOL_PENDING, "gauge", "", "Pending transactions held by the pool."),
    (POOL_REJECTED, "counter", "", "Pending transactions the full pool refused."),
    (
        PRE_EXECUTION_SECONDS,
        "histogram",
        "",
        "Wall time of one pre-execution (one future, with its same-block-touch variants): predecessors, recording, optimization.",
    ),
    (
        PRE_EXECUTIONS,
        "counter",
        "result: program, a no-program reason, invalid, state_error",
        "Pre-executions by result.",
    ),
    (RECORD_SECONDS, "histogram", "", "Wall time of tracing one transaction."),
    (OPTIMIZE_SECONDS, "histogram", "", "Wall time of optimizing one program."),
    (
        OPTIMIZER_REJECTS,
        "counter",
        "",
        "Optimized programs the verifier rejected (a bug; the unoptimized program is kept).",
    ),
    (IMPORT_TXS, "counter", "path: perfect_hit, hit, miss, no_program", "Transactions imported, by path."),
    (
        IMPORT_MISSES,
        "counter",
        "reason",
        "Imported transactions whose programs missed, by reason (guard kind, code-unknown, ...).",
    ),
    (
        SELF_MISSES,
        "counter",
        "",
        "Programs that missed on the state they were recorded on (a bug; import checks every hit).",
    ),
    (COMPILE_FAILURES, "counter", "", "Accelerated programs that did not compile (a bug; they are interpreted)."),
    (JIT_COMPILED, "counter", "", "Accelerated programs compiled to native code by the background compiler."),
    (
        JIT_NOT_COMPILED,
        "counter",
        "reason: too_small, too_large, budget, error, no_tree",
        "Accelerated programs left to the evaluator instead of native code, by reason.",
    ),
    (JIT_DROPPED, "counter", "", "Native compile jobs dropped because the compiler's queue was full."),
    (JIT_COMPILE_SECONDS, "histogram", "", "Wall time of compiling one accelerated program to native code."),
    (JIT_CODE_BYTES, "gauge", "", "Bytes of code pages held by native programs (against the code budget)."),
    (PRECOMPILE_MEMO_HITS, "counter", "", "Precompile calls answered by the memo instead of run again."),
    (PRECOMPILE_MEMO_MISSES, "counter", "", "Precompile calls the memo did not hold (run, then held)."),
    (PRECOMPILE_MEMO_BYTES, "gauge", "", "Bytes held by the precompile memo (inputs and outputs)."),
    (KECCAK_MEMO_HITS, "counter", "", "Hashes of long inputs answered by the keccak memo instead of computed."),
    (KECCAK_MEMO_MISSES, "counter", "", "Hashes of long inputs the keccak memo did not hold (computed, then held)."),
    (KECCAK_MEMO_BYTES, "gauge", "", "Bytes held by the keccak memo (inputs and per-entry overhead)."),
    (AP_EVICTIONS, "counter", "", "Programs evicted from the AP store for its memory budget."),
    (AP_MEMORY_BYTES, "gauge", "", "Estimated bytes held by the AP store."),
    (AP_PROGRAMS, "gauge", "", "Programs held by the AP store."),
    (AP_TXS, "gauge", "", "Transactions with at least one program."),
    (QUEUE_DEPTH, "gauge", "", "Pre-execution jobs waiting for a worker."),
    (QUEUE_DROPPED, "counter", "", "Pre-execution jobs dropped because the queue was full (retried on the next head)."),
    (HEAD, "gauge", "", "The block number pre-execution works on."),
    (SHADOW_BLOCKS, "counter", "", "Blocks imported in shadow mode and compared with sequential revm."),
    (
        SHADOW_DIVERGENCES,
        "counter",
        "",
        "Transactions whose shadow import differed from sequential revm (must stay 0).",
    ),
];

/// Pending transactions held by the pool. (gauge).
pub const POOL_PENDING: &str = "prescient_pool_pending";
/// Pending transactions the full pool refused. (counter).
pub const POOL_REJECTED: &str = "prescient_pool_rejected_total";
/// Wall time of one pre-execution (one future, with its same-block-touch variants): predecessors, recording, optimization. (histogram).
pub const PRE_EXECUTION_SECONDS: &str = "prescient_pre_execution_seconds";
/// Pre-executions by result. (counter, labels: result: program, a no-program reason, invalid, state_error).
pub const PRE_EXECUTIONS: &str = "prescient_pre_executions_total";
/// Wall time of tracing one transaction. (histogram).
pub const RECORD_SECONDS: &str = "prescient_record_seconds";
/// Wall time of optimizing one program. (histogram).
pub const OPTIMIZE_SECONDS: &str = "prescient_optimize_seconds";
/// Optimized programs the verifier rejected (a bug; the unoptimized program is kept). (counter).
pub const OPTIMIZER_REJECTS: &str = "prescient_optimizer_rejects_total";
/// Transactions imported, by path. (counter, labels: path: perfect_hit, hit, miss, no_program).
pub const IMPORT_TXS: &str = "prescient_import_txs_total";
/// Imported transactions whose programs missed, by reason (guard kind, code-unknown, ...). (counter, labels: reason).
pub const IMPORT_MISSES: &str = "prescient_import_misses_total";
/// Programs that missed on the state they were recorded on (a bug; import checks every hit). (counter).
pub const SELF_MISSES: &str = "prescient_self_misses_total";
/// Accelerated programs that did not compile (a bug; they are interpreted). (counter).
pub const COMPILE_FAILURES: &str = "prescient_compile_failures_total";
/// Accelerated programs compiled to native code by the background compiler. (counter).
pub const JIT_COMPILED: &str = "prescient_jit_compiled_total";
/// Accelerated programs left to the evaluator instead of native code, by reason. (counter, labels: reason: too_small, too_large, budget, error, no_tree).
pub const JIT_NOT_COMPILED: &str = "prescient_jit_not_compiled_total";
/// Native compile jobs dropped because the compiler's queue was full. (counter).
pub const JIT_DROPPED: &str = "prescient_jit_dropped_total";
/// Wall time of compiling one accelerated program to native code. (histogram).
pub const JIT_COMPILE_SECONDS: &str = "prescient_jit_compile_seconds";
/// Bytes of code pages held by native programs (against the code budget). (gauge).
pub const JIT_CODE_BYTES: &str = "prescient_jit_code_bytes";
/// Precompile calls answered by the memo instead of run again. (counter).
pub const PRECOMPILE_MEMO_HITS: &str = "prescient_precompile_memo_hits_total";
/// Precompile calls the memo did not hold (run, then held). (counter).
pub const PRECOMPILE_MEMO_MISSES: &str = "prescient_precompile_memo_misses_total";
/// Bytes held by the precompile memo (inputs and outputs). (gauge).
pub const PRECOMPILE_MEMO_BYTES: &str = "prescient_precompile_memo_bytes";
/// Hashes of long inputs answered by the keccak memo instead of computed. (counter).
pub const KECCAK_MEMO_HITS: &str = "prescient_keccak_memo_hits_total";
/// Hashes of long inputs the keccak memo did not hold (computed, then held). (counter).
pub const KECCAK_MEMO_MISSES: &str = "prescient_keccak_memo_misses_total";
/// Bytes held by the keccak memo (inputs and per-entry overhead). (gauge).
pub const KECCAK_MEMO_BYTES: &str = "prescient_keccak_memo_bytes";
/// Programs evicted from the AP store for its memory budget. (counter).
pub const AP_EVICTIONS: &str = "prescient_ap_evictions_total";
/// Estimated bytes held by the AP store. (gauge).
pub const AP_MEMORY_BYTES: &str = "prescient_ap_memory_bytes";
/// Programs held by the AP store. (gauge).
pub const AP_PROGRAMS: &str = "prescient_ap_programs";
/// Transactions with at least one program. (gauge).
pub const AP_TXS: &str = "prescient_ap_txs";
/// Pre-execution jobs waiting for a worker. (gauge).
pub const QUEUE_DEPTH: &str = "prescient_queue_depth";
/// Pre-execution jobs dropped because the queue was full (retried on the next head). (counter).
pub const QUEUE_DROPPED: &str = "prescient_queue_dropped_total";
/// The block number pre-execution works on. (gauge).
pub const HEAD: &str = "prescient_head";
/// Blocks imported in shadow mode and compared with sequential revm. (counter).
pub const SHADOW_BLOCKS: &str = "prescient_shadow_blocks_total";
/// Transactions whose shadow import differed from sequential revm (must stay 0). (counter).
pub const SHADOW_DIVERGENCES: &str = "prescient_shadow_divergences_total";

/// Registers the descriptions of every series of this crate.
pub fn describe() {
    mempool_tap::metrics::describe_series(SERIES)
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_series_is_in_the_operators_table() {
        let missing = mempool_tap::metrics::missing_from_table(include_str!("../../README.md"), super::SERIES);
        assert!(missing.is_empty(), "missing from the README's Metrics table: {missing:?}");
    }
}
