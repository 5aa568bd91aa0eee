//! A JSON-RPC connection to a node: WebSocket (with subscriptions) or HTTP, reconnecting.
//!
//! ```text
//!   NodeClient::connect(url) ─▶ ws:// → WsClient (requests, batches, subscriptions)
//!                               http:// → HttpClient (requests, batches; polling for streams)
//!   call / batch ─▶ transport gone? ─▶ one reconnect attempt ─▶ NodeError::Unavailable
//! ```
//!
//! Every call is timed into the `prescient_node_rpc_seconds` histogram (by method) and
//! every failure counted in `prescient_node_rpc_errors_total`. The client never retries a
//! call by itself beyond one reconnect: callers (the tap, the state view) decide.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use jsonrpsee::{
    core::{
        ClientError,
        client::{BatchResponse, ClientT, Subscription, SubscriptionClientT},
        params::{ArrayParams, BatchRequestBuilder},
    },
    http_client::{HttpClient, HttpClientBuilder},
    ws_client::{WsClient, WsClientBuilder},
};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::RwLock;

/// Largest response accepted from the node (a full mainnet block with transactions is a few MiB).
const MAX_RESPONSE_BYTES: u32 = 64 << 20;
/// How long one request may take before it fails.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A failure talking to the node.
#[derive(Debug, Clone, thiserror::Error)]
pub enum NodeError {
    /// The URL is not `ws://`, `wss://`, `http://` or `https://`.
    #[error("node url {0:?}: expected ws://, wss://, http:// or https://")]
    BadUrl(String),
    /// No connection: the node is down or unreachable.
    #[error("node unavailable: {0}")]
    Unavailable(String),
    /// The node answered with a JSON-RPC error.
    #[error("node answered {method} with an error: {message}")]
    Rpc {
        /// The method called.
        method: String,
        /// The node's error, rendered.
        message: String,
    },
    /// The node's answer does not have the expected shape.
    #[error("node answered {method} with an unexpected value: {message}")]
    Decode {
        /// The method called.
        method: String,
        /// What did not parse.
        message: String,
    },
    /// Subscriptions need a WebSocket connection.
    #[error("subscriptions need a ws:// node url")]
    NoSubscriptions,
}

impl NodeError {
    /// Whether the failure is the connection's (worth a reconnect), not the request's.
    pub fn is_connection(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

#[derive(Clone)]
enum Transport {
    Ws(Arc<WsClient>),
    Http(Arc<HttpClient>),
}

/// A reconnecting JSON-RPC client for one node.
pub struct NodeClient {
    url: String,
    websocket: bool,
    transport: RwLock<Option<Transport>>,
    reconnects: std::sync::atomic::AtomicU64,
    connected_once: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for NodeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeClient").field("url", &self.url).finish_non_exhaustive()
    }
}

fn classify(method: &str, e: ClientError) -> NodeError {
    match e {
        ClientError::Call(err) => NodeError::Rpc { method: method.to_string(), message: err.to_string() },
        ClientError::ParseError(err) => NodeError::Decode { method: method.to_string(), message: err.to_string() },
        other => NodeError::Unavailable(other.to_string()),
    }
}

impl NodeClient {
    /// Checks the URL and connects once; a node that is down at start is an error here (the
    /// caller may retry), later disconnections are handled by reconnecting.
    pub async fn connect(url: &str) -> Result<Arc<Self>, NodeError> {
        let client = Self::lazy(url)?;
        client.transport().await?;
        Ok(client)
    }

    /// Checks the URL without connecting; the first call connects.
    pub fn lazy(url: &str) -> Result<Arc<Self>, NodeError> {
        let lower = url.to_ascii_lowercase();
        let websocket = if lower.starts_with("ws://") || lower.starts_with("wss://") {
            true
        } else if lower.starts_with("http://") || lower.starts_with("https://") {
            false
        } else {
            return Err(NodeError::BadUrl(url.to_string()));
        };
        Ok(Arc::new(Self {
            url: url.to_string(),
            websocket,
            transport: RwLock::new(None),
            reconnects: Default::default(),
            connected_once: Default::default(),
        }))
    }

    /// The node's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Whether the connection is a WebSocket (subscriptions available).
    pub fn is_websocket(&self) -> bool {
        self.websocket
    }

    /// How many times the connection was re-established after a loss.
    pub fn reconnects(&self) -> u64 {
        self.reconnects.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether the last known connection is up (an HTTP client is up until a call fails).
    pub async fn is_connected(&self) -> bool {
        match &*self.transport.read().await {
            Some(Transport::Ws(ws)) => ws.is_connected(),
            Some(Transport::Http(_)) => true,
            None => false,
        }
    }

    /// Drops the connection so that the next call reconnects.
    pub async fn disconnect(&self) {
        *self.transport.write().await = None;
    }

    async fn transport(&self) -> Result<Transport, NodeError> {
        if let Some(t) = &*self.transport.read().await {
            match t {
                Transport::Ws(ws) if !ws.is_connected() => {}
                live => return Ok(live.clone()),
            }
        }
        let mut slot = self.transport.write().await;
        // Another caller may have reconnected while this one waited for the lock.
        if let Some(t) = &*slot {
            match t {
                Transport::Ws(ws) if !ws.is_connected() => {}
                live => return Ok(live.clone()),
            }
        }
        let fresh = if self.websocket {
            let ws = WsClientBuilder::default()
                .max_response_size(MAX_RESPONSE_BYTES)
                .request_timeout(REQUEST_TIMEOUT)
                .connection_timeout(CONNECT_TIMEOUT)
                .max_buffer_capacity_per_subscription(65_536)
                .build(&self.url)
                .await
                .map_err(|e| NodeError::Unavailable(format!("connecting to {}: {e}", self.url)))?;
            Transport::Ws(Arc::new(ws))
        } else {
            let http = HttpClientBuilder::default()
                .max_response_size(MAX_RESPONSE_BYTES)
                .request_timeout(REQUEST_TIMEOUT)
                .build(&self.url)
                .map_err(|e| NodeError::Unavailable(format!("connecting to {}: {e}", self.url)))?;
            Transport::Http(Arc::new(http))
        };
        if self.connected_once.swap(true, std::sync::atomic::Ordering::Relaxed) {
            self.reconnects.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            metrics::counter!(crate::metrics::NODE_RECONNECTS).increment(1);
        }
        *slot = Some(fresh.clone());
        Ok(fresh)
    }

    /// Calls `method` and decodes its result.
    pub async fn call<R: DeserializeOwned>(&self, method: &'static str, params: ArrayParams) -> Result<R, NodeError> {
        let started = Instant::now();
        let result = match self.transport().await {
            Ok(Transport::Ws(ws)) => ws.request::<R, _>(method, params).await.map_err(|e| classify(method, e)),
            Ok(Transport::Http(http)) => http.request::<R, _>(method, params).await.map_err(|e| classify(method, e)),
            Err(e) => Err(e),
        };
        self.observe(method, started, &result).await;
        result
    }

    /// Sends several calls as one JSON-RPC batch; each answer succeeds or fails on its own.
    pub async fn batch(
        &self,
        calls: Vec<(&'static str, ArrayParams)>,
    ) -> Result<Vec<Result<Value, NodeError>>, NodeError> {
        if calls.is_empty() {
            return Ok(Vec::new());
        }
        let methods: Vec<&'static str> = calls.iter().map(|(m, _)| *m).collect();
        let mut builder = BatchRequestBuilder::new();
        for (method, params) in calls {
            builder.insert(method, params).map_err(|e| NodeError::Decode {
                method: method.to_string(),
                message: format!("parameters do not serialize: {e}"),
            })?;
        }
        let started = Instant::now();
        let result: Result<BatchResponse<'_, Value>, NodeError> = match self.transport().await {
            Ok(Transport::Ws(ws)) => ws.batch_request(builder).await.map_err(|e| classify("batch", e)),
            Ok(Transport::Http(http)) => http.batch_request(builder).await.map_err(|e| classify("batch", e)),
            Err(e) => Err(e),
        };
        let result = result.map(|response| {
            response
                .into_iter()
                .zip(&methods)
                .map(|(entry, method)| {
                    entry.map_err(|e| NodeError::Rpc { method: method.to_string(), message: e.to_string() })
                })
                .collect::<Vec<_>>()
        });
        self.observe("batch", started, &result).await;
        let answers = result?;
        if answers.len() != methods.len() {
            return Err(NodeError::Decode {
                method: "batch".into(),
                message: format!("{} answers to {} calls", answers.len(), methods.len()),
            });
        }
        Ok(answers)
    }

    /// Opens an `eth_subscribe` subscription (WebSocket only).
    pub async fn subscribe(&self, params: ArrayParams) -> Result<Subscription<Value>, NodeError> {
        let started = Instant::now();
        let result = match self.transport().await? {
            Transport::Ws(ws) => ws
                .subscribe::<Value, _>("eth_subscribe", params, "eth_unsubscribe")
                .await
                .map_err(|e| classify("eth_subscribe", e)),
            Transport::Http(_) => Err(NodeError::NoSubscriptions),
        };
        self.observe("eth_subscribe", started, &result).await;
        result
    }

    async fn observe<T>(&self, method: &'static str, started: Instant, result: &Result<T, NodeError>) {
        metrics::histogram!(crate::metrics::NODE_RPC_SECONDS, "method" => method)
            .record(started.elapsed().as_secs_f64());
        if let Err(e) = result {
            metrics::counter!(crate::metrics::NODE_RPC_ERRORS, "method" => method).increment(1);
            if e.is_connection() {
                // Forget a dead transport so that the next call reconnects.
                let mut slot = self.transport.write().await;
                if let Some(Transport::Http(_)) = &*slot {
                    *slot = None;
                }
            }
        }
    }
}
