//! The metrics `mempool-tap` exports: one list, one name per series (Prometheus names).

/// Every series this crate exports: (name, kind, labels, meaning). The root README's
/// Metrics table lists the same (a test checks it).
pub const SERIES: &[Series] = &[
    (TAP_PENDING, "counter", "", "Pending transactions received from the node's mempool."),
    (
        TAP_MALFORMED,
        "counter",
        "",
        "Pending transactions dropped as malformed (undecodable, or a hash that does not match the body).",
    ),
    (STATE_FETCHES, "counter", "kind: account, slot, block_hash", "State reads sent to the node (cache misses)."),
    (STATE_PREFETCHED, "counter", "", "Accounts and slots fetched ahead of use, in batches."),
    (NODE_RECONNECTS, "counter", "", "Reconnections to the node."),
    (NODE_RPC_SECONDS, "histogram", "method", "Latency of each JSON-RPC call to the node."),
    (NODE_RPC_ERRORS, "counter", "method", "JSON-RPC calls to the node that failed."),
];

/// Pending transactions received from the node's mempool. (counter).
pub const TAP_PENDING: &str = "prescient_tap_pending_total";
/// Pending transactions dropped as malformed (undecodable, or a hash that does not match the body). (counter).
pub const TAP_MALFORMED: &str = "prescient_tap_malformed_total";
/// State reads sent to the node (cache misses). (counter, labels: kind: account, slot, block_hash).
pub const STATE_FETCHES: &str = "prescient_state_fetches_total";
/// Accounts and slots fetched ahead of use, in batches. (counter).
pub const STATE_PREFETCHED: &str = "prescient_state_prefetched_total";
/// Reconnections to the node. (counter).
pub const NODE_RECONNECTS: &str = "prescient_node_reconnects_total";
/// Latency of each JSON-RPC call to the node. (histogram, labels: method).
pub const NODE_RPC_SECONDS: &str = "prescient_node_rpc_seconds";
/// JSON-RPC calls to the node that failed. (counter, labels: method).
pub const NODE_RPC_ERRORS: &str = "prescient_node_rpc_errors_total";

/// One series: (name, kind, labels, meaning).
pub type Series = (&'static str, &'static str, &'static str, &'static str);

/// Registers the descriptions of `series` with the installed recorder.
pub fn describe_series(series: &[Series]) {
    for (name, kind, _, meaning) in series {
        match *kind {
            "counter" => metrics::describe_counter!(*name, *meaning),
            "gauge" => metrics::describe_gauge!(*name, *meaning),
            _ => metrics::describe_histogram!(*name, *meaning),
        }
    }
}

/// The series of `series` that the operators' table in `readme` does not list (as
/// `` | `name` | kind | ``).
pub fn missing_from_table(readme: &str, series: &[Series]) -> Vec<&'static str> {
    series
        .iter()
        .filter(|(name, kind, _, _)| !readme.contains(&format!("| `{name}` | {kind} |")))
        .map(|s| s.0)
        .collect()
}

/// Registers the descriptions of every series of this crate.
pub fn describe() {
    describe_series(SERIES)
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_series_is_in_the_operators_table() {
        let missing = super::missing_from_table(include_str!("../../README.md"), super::SERIES);
        assert!(missing.is_empty(), "missing from the README's Metrics table: {missing:?}");
    }
}
