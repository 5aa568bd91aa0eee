//! Streams of pending transactions and new heads from a node.
//!
//! ```text
//!   NodeTap::spawn(client) ── task ──┬─ ws:   eth_subscribe newHeads
//!                                    │        eth_subscribe newPendingTransactions (full bodies;
//!                                    │        hash-only falls back to eth_getTransactionByHash)
//!                                    ├─ http: eth_newPendingTransactionFilter + eth_getFilterChanges,
//!                                    │        eth_getBlockByNumber("latest") polling
//!                                    └─ lost connection ─▶ Disconnected ─▶ backoff ─▶ reconnect
//!                                         ─▶ Connected ─▶ resync (txpool_content, latest head)
//!   consumer: tap.next_event().await  (bounded channel: a slow consumer slows the tap task,
//!                                      never the runtime, and nothing is dropped)
//! ```

use std::{
    future::Future,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use alloy::rpc::types::{Header, Transaction as RpcTransaction};
use jsonrpsee::rpc_params;
use revm::primitives::B256;
use serde_json::Value;
use tokio::{sync::mpsc, task::JoinHandle};

use super::client::{NodeClient, NodeError};

/// A pending transaction as heard.
#[derive(Clone, Debug)]
pub struct PendingTx {
    /// The transaction with its sender, as the node reports it.
    pub tx: RpcTransaction,
    /// When it was heard, in milliseconds since the Unix epoch.
    pub seen_ms: u64,
}

/// What a tap reports.
#[derive(Clone, Debug)]
pub enum TapEvent {
    /// A pending transaction (possibly heard before: consumers deduplicate by hash).
    Pending(Box<PendingTx>),
    /// A new head (possibly the same head again after a reconnect).
    Head(Box<Header>),
    /// The connection is up; after a reconnect the tap resyncs the pool and head.
    Connected {
        /// Whether this is a reconnect.
        reconnect: bool,
    },
    /// The connection was lost; the tap retries with backoff.
    Disconnected(String),
}

/// A source of [`TapEvent`]s. `None` means the stream ended for good.
pub trait MempoolTap: Send {
    /// The next event.
    fn next_event(&mut self) -> impl Future<Output = Option<TapEvent>> + Send;
}

/// A tap that hears nothing (for a sidecar fed only through `prescient_submitTransactions`).
#[derive(Debug, Default)]
pub struct NoopTap;

impl MempoolTap for NoopTap {
    async fn next_event(&mut self) -> Option<TapEvent> {
        None
    }
}

/// A tap fed by hand, for tests.
#[derive(Debug)]
pub struct MockTap {
    rx: mpsc::Receiver<TapEvent>,
}

impl MockTap {
    /// A tap and the sender that feeds it; dropping the sender ends the stream.
    pub fn channel(capacity: usize) -> (Self, mpsc::Sender<TapEvent>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (Self { rx }, tx)
    }
}

impl MempoolTap for MockTap {
    async fn next_event(&mut self) -> Option<TapEvent> {
        self.rx.recv().await
    }
}

/// How the node tap behaves.
#[derive(Clone, Copy, Debug)]
pub struct TapConfig {
    /// Polling period over HTTP.
    pub poll_interval: Duration,
    /// Events buffered before the tap task waits for the consumer.
    pub capacity: usize,
    /// First reconnect delay; doubles up to `max_backoff`.
    pub min_backoff: Duration,
    /// Longest reconnect delay.
    pub max_backoff: Duration,
}

impl Default for TapConfig {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_millis(250),
            capacity: 65_536,
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// The live tap on a node: a background task feeding a bounded channel.
#[derive(Debug)]
pub struct NodeTap {
    rx: mpsc::Receiver<TapEvent>,
    task: JoinHandle<()>,
}

impl Drop for NodeTap {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl MempoolTap for NodeTap {
    async fn next_event(&mut self) -> Option<TapEvent> {
        self.rx.recv().await
    }
}

/// The receiver is gone: the tap task ends.
struct Closed;

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn parse_tx(v: Value) -> Result<RpcTransaction, String> {
    serde_json::from_value(v).map_err(|e| format!("malformed transaction: {e}"))
}

fn parse_header(v: Value) -> Result<Header, String> {
    serde_json::from_value(v).map_err(|e| format!("malformed header: {e}"))
}

/// Why a connection cycle ended.
enum End {
    Closed,
    Lost(String),
}

impl From<Closed> for End {
    fn from(_: Closed) -> Self {
        End::Closed
    }
}

impl From<NodeError> for End {
    fn from(e: NodeError) -> Self {
        End::Lost(e.to_string())
    }
}

struct Sink(mpsc::Sender<TapEvent>);

impl Sink {
    async fn send(&self, event: TapEvent) -> Result<(), Closed> {
        if let TapEvent::Pending(_) = &event {
            metrics::counter!(crate::metrics::TAP_PENDING).increment(1);
        }
        self.0.send(event).await.map_err(|_| Closed)
    }

    /// Fetches a body heard by hash, off the subscription loop.
    fn fetch_body(&self, client: &std::sync::Arc<NodeClient>, hash: B256) {
        let client = client.clone();
        let sink = Sink(self.0.clone());
        tokio::spawn(async move {
            match client.call::<Option<RpcTransaction>>("eth_getTransactionByHash", rpc_params![hash]).await {
                Ok(Some(tx)) => {
                    let _closed = sink.send(TapEvent::Pending(Box::new(PendingTx { tx, seen_ms: now_ms() }))).await;
                }
                Ok(None) => tracing::debug!(%hash, "pending transaction gone before its body was fetched"),
                Err(e) => tracing::warn!(%hash, error = %e, "fetching a pending transaction body"),
            }
        });
    }

    /// A pending-transaction notification: a body, or a hash to fetch.
    fn pending(&self, client: &std::sync::Arc<NodeClient>, v: Value) -> Option<TapEvent> {
        if let Ok(hash) = serde_json::from_value::<B256>(v.clone()) {
            self.fetch_body(client, hash);
            return None;
        }
        match parse_tx(v) {
            Ok(tx) => Some(TapEvent::Pending(Box::new(PendingTx { tx, seen_ms: now_ms() }))),
            Err(e) => {
                metrics::counter!(crate::metrics::TAP_MALFORMED).increment(1);
                tracing::warn!(error = %e, "ignoring a malformed pending-transaction notification");
                None
            }
        }
    }
}

impl NodeTap {
    /// Starts the tap task on the current runtime.
    pub fn spawn(client: std::sync::Arc<NodeClient>, config: TapConfig) -> Self {
        let (tx, rx) = mpsc::channel(config.capacity.max(1));
        let task = tokio::spawn(run(client, config, Sink(tx)));
        Self { rx, task }
    }
}

async fn run(client: std::sync::Arc<NodeClient>, config: TapConfig, sink: Sink) {
    let mut backoff = config.min_backoff;
    let mut connected_before = false;
    loop {
        let cycle = if client.is_websocket() {
            websocket_cycle(&client, &sink, &mut connected_before, &mut backoff, config).await
        } else {
            polling_cycle(&client, &sink, &mut connected_before, &mut backoff, config).await
        };
        match cycle {
            End::Closed => return,
            End::Lost(reason) => {
                tracing::warn!(node = client.url(), %reason, retry_in = ?backoff, "node connection lost");
                if sink.send(TapEvent::Disconnected(reason)).await.is_err() {
                    return;
                }
                client.disconnect().await;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(config.max_backoff);
            }
        }
    }
}

/// After (re)connecting: announce, then resync the pool and the head.
async fn on_connect(
    client: &std::sync::Arc<NodeClient>,
    sink: &Sink,
    connected_before: &mut bool,
    backoff: &mut Duration,
    config: TapConfig,
) -> Result<(), End> {
    *backoff = config.min_backoff;
    let reconnect = std::mem::replace(connected_before, true);
    tracing::info!(node = client.url(), reconnect, "connected to node");
    sink.send(TapEvent::Connected { reconnect }).await?;
    // Transactions that arrived while disconnected are only in the node's pool.
    match client.call::<Value>("txpool_content", rpc_params![]).await {
        Ok(content) => {
            for section in ["pending", "queued"] {
                let Some(by_sender) = content.get(section).and_then(Value::as_object) else { continue };
                for by_nonce in by_sender.values().filter_map(Value::as_object) {
                    for tx in by_nonce.values() {
                        if let Some(event) = sink.pending(client, tx.clone()) {
                            sink.send(event).await?;
                        }
                    }
                }
            }
        }
        Err(e) if e.is_connection() => return Err(e.into()),
        Err(e) => tracing::debug!(error = %e, "node has no txpool_content; no pool resync"),
    }
    let latest: Value = client.call("eth_getBlockByNumber", rpc_params!["latest", false]).await?;
    match parse_header(latest) {
        Ok(header) => sink.send(TapEvent::Head(Box::new(header))).await?,
        Err(e) => tracing::warn!(error = %e, "latest block"),
    }
    Ok(())
}

async fn websocket_cycle(
    client: &std::sync::Arc<NodeClient>,
    sink: &Sink,
    connected_before: &mut bool,
    backoff: &mut Duration,
    config: TapConfig,
) -> End {
    let result: Result<(), End> = async {
        let mut heads = client.subscribe(rpc_params!["newHeads"]).await?;
        let mut pending = match client.subscribe(rpc_params!["newPendingTransactions", true]).await {
            Ok(s) => s,
            Err(NodeError::Rpc { .. }) => client.subscribe(rpc_params!["newPendingTransactions"]).await?,
            Err(e) => return Err(e.into()),
        };
        on_connect(client, sink, connected_before, backoff, config).await?;
        loop {
            tokio::select! {
                head = heads.next() => match head {
                    Some(Ok(v)) => match parse_header(v) {
                        Ok(h) => sink.send(TapEvent::Head(Box::new(h))).await?,
                        Err(e) => tracing::warn!(error = %e, "ignoring a malformed head"),
                    },
                    Some(Err(e)) => tracing::warn!(error = %e, "ignoring a malformed head notification"),
                    None => return Err(End::Lost("head subscription closed".into())),
                },
                tx = pending.next() => match tx {
                    Some(Ok(v)) => if let Some(event) = sink.pending(client, v) { sink.send(event).await? },
                    Some(Err(e)) => tracing::warn!(error = %e, "ignoring a malformed pending notification"),
                    None => return Err(End::Lost("pending subscription closed".into())),
                },
            }
        }
    }
    .await;
    match result {
        Ok(()) => End::Closed,
        Err(end) => end,
    }
}

async fn polling_cycle(
    client: &std::sync::Arc<NodeClient>,
    sink: &Sink,
    connected_before: &mut bool,
    backoff: &mut Duration,
    config: TapConfig,
) -> End {
    let result: Result<(), End> = async {
        let mut filter = match client.call::<Value>("eth_newPendingTransactionFilter", rpc_params![]).await {
            Ok(id) => Some(id),
            Err(e) if e.is_connection() => return Err(e.into()),
            Err(e) => {
                tracing::warn!(error = %e, "node has no pending-transaction filter; heads only");
                None
            }
        };
        on_connect(client, sink, connected_before, backoff, config).await?;
        let mut last_head: Option<B256> = None;
        let mut ticker = tokio::time::interval(config.poll_interval);
        loop {
            ticker.tick().await;
            if let Some(id) = &filter {
                match client.call::<Vec<Value>>("eth_getFilterChanges", rpc_params![id.clone()]).await {
                    Ok(changes) => {
                        for v in changes {
                            if let Some(event) = sink.pending(client, v) {
                                sink.send(event).await?;
                            }
                        }
                    }
                    Err(e) if e.is_connection() => return Err(e.into()),
                    // The node forgot the filter (it expires when unpolled): make another.
                    Err(_) => filter = client.call("eth_newPendingTransactionFilter", rpc_params![]).await.ok(),
                }
            }
            let latest: Value = client.call("eth_getBlockByNumber", rpc_params!["latest", false]).await?;
            if let Ok(header) = parse_header(latest)
                && last_head != Some(header.hash)
            {
                last_head = Some(header.hash);
                sink.send(TapEvent::Head(Box::new(header))).await?;
            }
        }
    }
    .await;
    match result {
        Ok(()) => End::Closed,
        Err(end) => end,
    }
}
