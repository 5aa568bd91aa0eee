//! `prescient serve` and `prescient record`: the commands attached to a live node.

use std::{collections::HashSet, net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use accelerator::{Service, ServiceConfig, rpc};
use eyre::{Result, WrapErr, eyre};
use jsonrpsee::rpc_params;
use mempool_tap::{
    MempoolTap, NodeClient, NodeTap, RpcState, TapEvent,
    node::{CacheSizes, TapConfig},
    recorded::{ChainRules, RecordingManifest, RecordingWriter, fork::parse_fork},
};
use revm::{database::CacheDB, primitives::hardfork::SpecId};
use tokio::sync::watch;

/// Options of `prescient serve`.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// Node URL.
    pub node: String,
    /// JSON-RPC listen address.
    pub listen: SocketAddr,
    /// Prometheus listen address (`None`: no exporter).
    pub metrics: Option<SocketAddr>,
    /// The devnet hardfork, when the chain is not mainnet.
    pub hardfork: Option<String>,
    /// The service's configuration (its `hardfork` is set from `hardfork` above).
    pub service: ServiceConfig,
}

/// Parses a hardfork name for `--hardfork`.
pub fn parse_hardfork(name: Option<&str>) -> Result<Option<SpecId>> {
    name.map(|n| parse_fork(n).ok_or_else(|| eyre!("unknown hardfork {n:?} (frontier … prague, osaka, bpo1, bpo2)")))
        .transpose()
}

/// Resolves when SIGINT or SIGTERM arrives.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "no SIGTERM handler; only Ctrl-C stops the service");
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// Connects, retrying with backoff until it works or a shutdown signal arrives.
async fn connect_with_retry(url: &str, stop: &mut watch::Receiver<bool>) -> Result<Arc<NodeClient>> {
    let mut delay = Duration::from_millis(200);
    loop {
        match NodeClient::connect(url).await {
            Ok(c) => return Ok(c),
            Err(e @ mempool_tap::NodeError::BadUrl(_)) => return Err(e.into()),
            Err(e) => tracing::warn!(node = url, error = %e, retry_in = ?delay, "node not reachable yet"),
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {},
            _ = stop.wait_for(|s| *s) => return Err(eyre!("stopped before the node was reachable")),
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// Runs `prescient serve` until SIGINT/SIGTERM.
pub async fn serve(options: ServeOptions) -> Result<()> {
    let hardfork = parse_hardfork(options.hardfork.as_deref())?;
    let (stop_tx, mut stop) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutdown requested");
        let _ = stop_tx.send(true);
    });
    if let Some(addr) = options.metrics {
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .with_http_listener(addr)
            .install()
            .wrap_err_with(|| format!("starting the metrics exporter on {addr}"))?;
        mempool_tap::metrics::describe();
        accelerator::metrics::describe();
        tracing::info!(%addr, "prometheus metrics");
    }
    let client = connect_with_retry(&options.node, &mut stop).await?;
    let config = ServiceConfig { hardfork, ..options.service };
    let service = Service::new(client.clone(), config).await?;
    let rules = service.rules();
    let (addr, handle) = rpc::start(service.clone(), options.listen, rpc::ServerLimits::default())
        .await
        .wrap_err_with(|| format!("binding {}", options.listen))?;
    tracing::info!(%addr, chain_id = rules.chain_id, spec = ?rules.fixed, node = options.node, "prescient serving");
    // The line tests and scripts wait for.
    println!("listening on http://{addr}");
    let tap = NodeTap::spawn(client, TapConfig::default());
    service.clone().run(tap, stop, Duration::from_secs(5)).await;
    let _ = handle.stop();
    handle.stopped().await;
    let status = service.status().await;
    tracing::info!(
        pending = status.pending,
        programs = status.ap_programs,
        shadow_blocks = status.shadow_blocks,
        shadow_hits = status.shadow_hits,
        shadow_txs = status.shadow_txs,
        divergences = status.shadow_divergences,
        "stopped"
    );
    Ok(())
}

/// Options of `prescient record`.
#[derive(Clone, Debug)]
pub struct RecordOptions {
    /// Node URL.
    pub node: String,
    /// Output folder (empty or absent).
    pub out: PathBuf,
    /// Stop after this many blocks.
    pub blocks: Option<u64>,
    /// The devnet hardfork, when the chain is not mainnet.
    pub hardfork: Option<String>,
}

/// Runs `prescient record` until `blocks` blocks are recorded or SIGINT/SIGTERM.
pub async fn record(options: RecordOptions) -> Result<u64> {
    let hardfork = parse_hardfork(options.hardfork.as_deref())?;
    let (stop_tx, mut stop) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let client = connect_with_retry(&options.node, &mut stop).await?;
    let chain_id: alloy::primitives::U64 = client.call("eth_chainId", rpc_params![]).await?;
    let chain_id = chain_id.to::<u64>();
    let rules = ChainRules { chain_id, fixed: if chain_id == 1 { hardfork } else { hardfork.or(Some(SpecId::OSAKA)) } };
    let node_version: Option<String> = client.call("web3_clientVersion", rpc_params![]).await.ok();
    let manifest = RecordingManifest { format: "prescient-recording".into(), version: 1, chain_id, node: node_version };
    let mut writer = RecordingWriter::create(&options.out, &manifest)?;
    let state = RpcState::new(client.clone(), tokio::runtime::Handle::current(), CacheSizes::default());
    let mut tap = NodeTap::spawn(client.clone(), TapConfig::default());
    let mut heard = HashSet::new();
    let mut start_head: Option<u64> = None;
    let mut last: Option<u64> = None;
    let mut recorded = 0u64;
    tracing::info!(node = options.node, out = %options.out.display(), chain_id, "recording");
    loop {
        let event = tokio::select! {
            e = tap.next_event() => e,
            _ = stop.wait_for(|s| *s) => break,
        };
        match event {
            None => break,
            Some(TapEvent::Pending(p)) => {
                if heard.insert(*p.tx.inner.inner().tx_hash()) {
                    writer.add_arrival(p.seen_ms, &p.tx)?;
                }
            }
            Some(TapEvent::Head(header)) => {
                // Blocks before the recording started have no arrivals: skip them.
                let first = *start_head.get_or_insert(header.number);
                if header.number <= first || last.is_some_and(|l| header.number <= l) {
                    continue;
                }
                for number in last.map_or(header.number, |l| l + 1)..=header.number {
                    record_block(&client, &state, &rules, &mut writer, number).await?;
                    recorded += 1;
                    tracing::info!(number, recorded, arrivals = heard.len(), "recorded block");
                }
                last = Some(header.number);
                if options.blocks.is_some_and(|max| recorded >= max) {
                    break;
                }
            }
            Some(TapEvent::Connected { .. }) | Some(TapEvent::Disconnected(_)) => {}
        }
    }
    writer.finish()?;
    tracing::info!(recorded, arrivals = heard.len(), out = %options.out.display(), "recording finished");
    Ok(recorded)
}

async fn record_block(
    client: &Arc<NodeClient>,
    state: &Arc<RpcState>,
    rules: &ChainRules,
    writer: &mut RecordingWriter,
    number: u64,
) -> Result<()> {
    let value: serde_json::Value =
        client.call("eth_getBlockByNumber", rpc_params![format!("{number:#x}"), true]).await?;
    let block: alloy::rpc::types::Block<alloy::rpc::types::Transaction> =
        serde_json::from_value(value).wrap_err_with(|| format!("block {number}"))?;
    let spec = rules.spec(number, block.header.timestamp);
    let cfg = rules.cfg(spec);
    let env = rules.block_env(&block.header, spec);
    let txs: Vec<revm::context::TxEnv> = block
        .transactions
        .as_transactions()
        .unwrap_or_default()
        .iter()
        .map(|t| mempool_tap::recorded::tx_env(t.inner.signer(), t.inner.inner()))
        .collect();
    let (view, log) = state.view(number.saturating_sub(1)).logging();
    // Execute the block on the parent state, logging every read: that is its pre-state.
    let outcome = tokio::task::spawn_blocking(move || {
        let mut db = CacheDB::new(view);
        ir::execute_block(&mut db, &cfg, &env, &txs).map(|o| o.gas_used)
    })
    .await?
    .map_err(|e| eyre!("block {number}: {e}"))?;
    if outcome != block.header.gas_used {
        tracing::warn!(number, ours = outcome, node = block.header.gas_used, "gas differs from the node's header");
    }
    let log = log.lock().map_err(|_| eyre!("read log poisoned"))?.clone();
    for (n, hash) in &log.block_hashes {
        writer.add_block_hash(*n, *hash);
    }
    let fork: &'static str = spec.into();
    writer.add_block(fork, &block, &log.to_pre_state())?;
    Ok(())
}
