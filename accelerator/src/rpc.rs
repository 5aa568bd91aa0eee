//! prescient's JSON-RPC API (served by `prescient serve`, 127.0.0.1 by default).
//!
//! | method | params | result |
//! |---|---|---|
//! | `prescient_executeBlock` | `block` (number, hex, `"latest"` or hash), `{ "verify": bool }`? | [`BlockReport`](crate::service::BlockReport) |
//! | `prescient_status` | none | [`Status`](crate::service::Status) |
//! | `prescient_fastPath` | transaction hash | `{ hash, programs: [{ bincode, instructions, guards }] }` |
//! | `prescient_submitTransactions` | array of raw signed transactions (hex) | [`SubmitResult`](crate::service::SubmitResult) per entry |
//!
//! Bad parameters get `-32602` with a message naming what is wrong; node failures `-32010`;
//! an unknown block or transaction `-32004`. Request size, batch length and connection count
//! are bounded by the server (see [`ServerLimits`]).

use std::{net::SocketAddr, sync::Arc};

use jsonrpsee::{
    RpcModule,
    server::{BatchRequestConfig, Server, ServerConfig, ServerHandle},
    types::{ErrorObjectOwned, Params, error::INVALID_PARAMS_CODE},
};
use revm::primitives::{B256, Bytes};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::service::{BlockSelector, Service, ServiceError};

/// Error code: the node failed.
pub const NODE_ERROR_CODE: i32 = -32010;
/// Error code: no such block or transaction.
pub const NOT_FOUND_CODE: i32 = -32004;
/// Error code: the import failed.
pub const IMPORT_ERROR_CODE: i32 = -32011;
/// Most raw transactions per `prescient_submitTransactions` call.
pub const MAX_SUBMIT: usize = 1024;

/// Server limits.
#[derive(Clone, Copy, Debug)]
pub struct ServerLimits {
    /// Largest request body, in bytes.
    pub max_request_bytes: u32,
    /// Largest response body, in bytes.
    pub max_response_bytes: u32,
    /// Most concurrent connections.
    pub max_connections: u32,
    /// Most calls in one batch.
    pub max_batch: u32,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self { max_request_bytes: 8 << 20, max_response_bytes: 64 << 20, max_connections: 128, max_batch: 64 }
    }
}

fn invalid(message: impl Into<String>) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(INVALID_PARAMS_CODE, message.into(), None::<()>)
}

fn service_error(e: ServiceError) -> ErrorObjectOwned {
    let code = match &e {
        ServiceError::Node(_) => NODE_ERROR_CODE,
        ServiceError::UnknownBlock(_) => NOT_FOUND_CODE,
        // The node's state failed under the import: a node error, not an invalid block.
        ServiceError::Import(e) if e.is_database() => NODE_ERROR_CODE,
        ServiceError::BadBlock { .. } | ServiceError::Import(_) | ServiceError::Internal(_) => IMPORT_ERROR_CODE,
    };
    ErrorObjectOwned::owned(code, e.to_string(), None::<()>)
}

/// Parses a block parameter: a JSON number, a `0x` quantity, a decimal string, `"latest"`,
/// or a 32-byte hash.
pub fn parse_block(v: &Value) -> Result<BlockSelector, String> {
    match v {
        Value::Number(n) => {
            n.as_u64().map(BlockSelector::Number).ok_or_else(|| format!("block number {n} is not a u64"))
        }
        Value::String(s) if s == "latest" => Ok(BlockSelector::Latest),
        Value::String(s) if s.len() == 66 && s.starts_with("0x") => {
            s.parse::<B256>().map(BlockSelector::Hash).map_err(|e| format!("block hash {s:?}: {e}"))
        }
        Value::String(s) if s.starts_with("0x") => {
            u64::from_str_radix(&s[2..], 16).map(BlockSelector::Number).map_err(|e| format!("block number {s:?}: {e}"))
        }
        Value::String(s) => s
            .parse::<u64>()
            .map(BlockSelector::Number)
            .map_err(|_| format!("block {s:?}: expected a number, a 0x quantity, \"latest\" or a block hash")),
        other => Err(format!("block: expected a number or a string, got {other}")),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExecuteOptions {
    #[serde(default)]
    verify: bool,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ProgramOut {
    bincode: String,
    instructions: usize,
    guards: usize,
}

#[derive(Clone, Debug, Serialize)]
struct FastPathOut {
    hash: B256,
    programs: Vec<ProgramOut>,
}

fn positional(params: &Params<'_>, max: usize) -> Result<Vec<Value>, ErrorObjectOwned> {
    let values: Vec<Value> = if params.is_object() {
        return Err(invalid("parameters must be an array"));
    } else {
        params
            .parse::<Option<Vec<Value>>>()
            .map_err(|e| invalid(format!("parameters: {}", e.message())))?
            .unwrap_or_default()
    };
    if values.len() > max {
        return Err(invalid(format!("at most {max} parameters, got {}", values.len())));
    }
    Ok(values)
}

/// The RPC module over `service`.
pub fn module(service: Arc<Service>) -> RpcModule<Service> {
    let mut module = RpcModule::from_arc(service);
    module
        .register_async_method("prescient_status", |params, service, _| async move {
            positional(&params, 0)?;
            Ok::<_, ErrorObjectOwned>(service.status().await)
        })
        .expect("method names are unique");
    module
        .register_async_method("prescient_executeBlock", |params, service, _| async move {
            let values = positional(&params, 2)?;
            let block = values.first().ok_or_else(|| invalid("missing the block parameter"))?;
            let which = parse_block(block).map_err(invalid)?;
            let options: ExecuteOptions = match values.get(1) {
                None | Some(Value::Null) => ExecuteOptions::default(),
                Some(v) => serde_json::from_value(v.clone()).map_err(|e| invalid(format!("options: {e}")))?,
            };
            service.execute_block(which, options.verify).await.map_err(service_error)
        })
        .expect("method names are unique");
    module
        .register_async_method("prescient_fastPath", |params, service, _| async move {
            let values = positional(&params, 1)?;
            let hash: B256 = values.first().ok_or_else(|| invalid("missing the transaction hash")).and_then(|v| {
                serde_json::from_value(v.clone()).map_err(|e| invalid(format!("transaction hash: {e}")))
            })?;
            let programs = service.fast_path(&hash);
            if programs.is_empty() {
                return Err(ErrorObjectOwned::owned(
                    NOT_FOUND_CODE,
                    format!("no accelerated program for transaction {hash}"),
                    None::<()>,
                ));
            }
            let programs = programs
                .iter()
                .map(|p| {
                    let bytes = bincode::serde::encode_to_vec(&**p, bincode::config::standard()).map_err(|e| {
                        ErrorObjectOwned::owned(IMPORT_ERROR_CODE, format!("encoding: {e}"), None::<()>)
                    })?;
                    Ok(ProgramOut {
                        bincode: format!("0x{}", alloy::primitives::hex::encode(bytes)),
                        instructions: p.insts.len(),
                        guards: p.guard_count(),
                    })
                })
                .collect::<Result<Vec<_>, ErrorObjectOwned>>()?;
            Ok(FastPathOut { hash, programs })
        })
        .expect("method names are unique");
    module
        .register_async_method("prescient_submitTransactions", |params, service, _| async move {
            let values = positional(&params, 1)?;
            let list = match values.first() {
                Some(Value::Array(list)) => list,
                _ => return Err(invalid("expected one parameter: an array of raw signed transactions (hex)")),
            };
            if list.len() > MAX_SUBMIT {
                return Err(invalid(format!("at most {MAX_SUBMIT} transactions per call, got {}", list.len())));
            }
            let raw = list
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    serde_json::from_value::<Bytes>(v.clone()).map_err(|e| invalid(format!("transaction {i}: {e}")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok::<_, ErrorObjectOwned>(service.submit(&raw))
        })
        .expect("method names are unique");
    module
}

/// Starts the server on `addr` with `limits`; returns its address and handle.
pub async fn start(
    service: Arc<Service>,
    addr: SocketAddr,
    limits: ServerLimits,
) -> std::io::Result<(SocketAddr, ServerHandle)> {
    let config = ServerConfig::builder()
        .max_request_body_size(limits.max_request_bytes)
        .max_response_body_size(limits.max_response_bytes)
        .max_connections(limits.max_connections)
        .set_batch_request_config(BatchRequestConfig::Limit(limits.max_batch))
        .build();
    let server = Server::builder().set_config(config).build(addr).await?;
    let local = server.local_addr()?;
    Ok((local, server.start(module(service))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_parameters() {
        assert_eq!(parse_block(&serde_json::json!(7)), Ok(BlockSelector::Number(7)));
        assert_eq!(parse_block(&serde_json::json!("0x10")), Ok(BlockSelector::Number(16)));
        assert_eq!(parse_block(&serde_json::json!("12")), Ok(BlockSelector::Number(12)));
        assert_eq!(parse_block(&serde_json::json!("latest")), Ok(BlockSelector::Latest));
        let hash = format!("0x{}", "ab".repeat(32));
        assert!(matches!(parse_block(&serde_json::json!(hash)), Ok(BlockSelector::Hash(_))));
        for bad in [
            serde_json::json!(-1),
            serde_json::json!(1.5),
            serde_json::json!("0xzz"),
            serde_json::json!("pending"),
            serde_json::json!([1]),
            serde_json::json!(null),
        ] {
            assert!(parse_block(&bad).is_err(), "{bad}");
        }
    }
}
