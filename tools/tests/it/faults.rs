//! Faults: the node killed and restarted mid-stream, and hostile requests to prescient's
//! server. prescient keeps serving, answers clear errors, and loses no pending transaction.

use std::time::Duration;

use jsonrpsee::http_client::{HttpClient, HttpClientBuilder};
use serde_json::{Value, json};

use crate::devnet::*;

fn error_of(body: &str) -> (i64, String) {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    let e = &v["error"];
    (
        e["code"].as_i64().unwrap_or_else(|| panic!("no error code: {body}")),
        e["message"].as_str().unwrap_or("").to_string(),
    )
}

async fn status(api: &HttpClient) -> Value {
    must(api, "prescient_status", vec![]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_node_restart_and_hostile_requests() {
    let Some(binary) = anvil_binary("survives_node_restart_and_hostile_requests") else { return };
    let port = free_port();
    let mut anvil = Anvil::start(&binary, port);
    let node =
        HttpClientBuilder::default().request_timeout(Duration::from_secs(30)).build(anvil.http()).expect("client");
    let prescient = Prescient::serve(&anvil.ws(), free_port());
    let api = prescient.client();
    let addr = prescient.addr.expect("listening");
    wait_for("connection", Duration::from_secs(30), || async {
        let s = call(&api, "prescient_status", vec![]).await.ok()?;
        (s["connected"] == json!(true) && s["head"].is_number()).then_some(())
    })
    .await;
    let accounts = must(&node, "eth_accounts", vec![]).await;
    let from = accounts[1].as_str().expect("account").to_string();
    let to = accounts[2].as_str().expect("account").to_string();
    let mut pending = Vec::new();
    for nonce in 0..3 {
        pending.push(send(&node, &from, Some(&to), "0x", 1_000 + u128::from(nonce), nonce, 1).await);
    }
    wait_for("programs for the pending transfers", Duration::from_secs(60), || async {
        for h in &pending {
            call(&api, "prescient_fastPath", vec![json!(h)]).await.ok()?;
        }
        Some(())
    })
    .await;

    // Kill the node: prescient keeps serving and keeps its pool and programs.
    anvil.kill();
    wait_for("prescient to notice the lost node", Duration::from_secs(30), || async {
        (status(&api).await["connected"] == json!(false)).then_some(())
    })
    .await;
    let s = status(&api).await;
    assert_eq!(s["pending"], json!(3), "no pending transaction lost: {s}");
    for h in &pending {
        must(&api, "prescient_fastPath", vec![json!(h)]).await;
    }
    let err = call(&api, "prescient_executeBlock", vec![json!(1)]).await.expect_err("no node, no block");
    assert!(err.contains("node unavailable") || err.contains("-32010"), "a clear error: {err}");

    // Restart it on the same port (a fresh chain: SIGKILL saved nothing). prescient
    // reconnects; the same transactions sent again hit the programs made before the restart.
    let anvil = Anvil::start(&binary, port);
    wait_for("the reconnect", Duration::from_secs(60), || async {
        let s = status(&api).await;
        (s["connected"] == json!(true) && s["reconnects"].as_u64()? >= 1).then_some(())
    })
    .await;
    let node =
        HttpClientBuilder::default().request_timeout(Duration::from_secs(30)).build(anvil.http()).expect("client");
    for (nonce, h) in pending.iter().enumerate() {
        let again = send(&node, &from, Some(&to), "0x", 1_000 + nonce as u128, nonce as u64, 1).await;
        assert_eq!(&again, h, "the same request signs the same transaction");
    }
    let block = mine(&node).await;
    wait_for("the new head", Duration::from_secs(30), || async {
        (status(&api).await["head"] == json!(block)).then_some(())
    })
    .await;
    let report = must(&api, "prescient_executeBlock", vec![json!(block), json!({ "verify": true })]).await;
    assert_eq!(report["txCount"], json!(3));
    assert_eq!(report["matchesHeader"], json!(true), "{report}");
    assert_eq!(report["divergences"], json!([]), "{report}");
    assert_eq!(report["hits"], json!(3), "programs recorded before the restart still hold: {report}");

    // Hostile and malformed requests: each gets a clear error; the server stays up.
    let post = |body: Vec<u8>| http_post(addr, &body).expect("the server answers");
    let (_, body) = post(b"this is not json".to_vec());
    assert_eq!(error_of(&body).0, -32700, "parse error");
    let (_, body) = post(br#"{"jsonrpc":"2.0","id":1,"method":"prescient_nope","params":[]}"#.to_vec());
    assert_eq!(error_of(&body).0, -32601, "unknown method");
    for (params, needle) in [
        (json!(["0xzz"]), "block"),
        (json!([{"number": 1}]), "block"),
        (json!({"block": 1}), "array"),
        (json!([1, {"verify": "yes"}]), "options"),
        (json!([1, {"verify": true, "extra": 1}]), "options"),
        (json!([1, 2, 3]), "at most"),
        (json!([]), "missing"),
    ] {
        let req = json!({"jsonrpc": "2.0", "id": 1, "method": "prescient_executeBlock", "params": params});
        let (_, body) = post(serde_json::to_vec(&req).expect("json"));
        let (code, message) = error_of(&body);
        assert_eq!(code, -32602, "{params}: {body}");
        assert!(message.contains(needle), "{params}: {message}");
    }
    let req = json!({"jsonrpc": "2.0", "id": 1, "method": "prescient_executeBlock", "params": [1_000_000_000u64]});
    let (_, body) = post(serde_json::to_vec(&req).expect("json"));
    assert_eq!(error_of(&body).0, -32004, "unknown block: {body}");
    let req = json!({"jsonrpc": "2.0", "id": 1, "method": "prescient_fastPath", "params": [format!("0x{}", "11".repeat(32))]});
    let (_, body) = post(serde_json::to_vec(&req).expect("json"));
    assert_eq!(error_of(&body).0, -32004, "unknown transaction: {body}");
    let req = json!({"jsonrpc": "2.0", "id": 1, "method": "prescient_fastPath", "params": ["0x1234"]});
    let (_, body) = post(serde_json::to_vec(&req).expect("json"));
    assert_eq!(error_of(&body).0, -32602, "short hash: {body}");
    // Garbage transactions are refused one by one; a flood is refused whole.
    let submitted = must(&api, "prescient_submitTransactions", vec![json!(["0x", "0x02f8", "0xdeadbeef"])]).await;
    for entry in submitted.as_array().expect("results") {
        assert_eq!(entry["accepted"], json!(false));
        assert!(entry["error"].as_str().is_some_and(|e| !e.is_empty()), "{entry}");
    }
    let flood: Vec<String> = (0..2000).map(|_| "0x00".to_string()).collect();
    let err = call(&api, "prescient_submitTransactions", vec![json!(flood)]).await.expect_err("too many");
    assert!(err.contains("at most"), "{err}");
    // Too deep, too big, too many at once.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let (_, body) =
        post(format!(r#"{{"jsonrpc":"2.0","id":1,"method":"prescient_status","params":{deep}}}"#).into_bytes());
    assert!(body.contains("error"), "deep nesting: {body}");
    let (code, _) = post(vec![b' '; 9 << 20]);
    assert_eq!(code, 413, "a 9 MiB body is refused");
    let batch: Vec<Value> =
        (0..1000).map(|i| json!({"jsonrpc": "2.0", "id": i, "method": "prescient_status", "params": []})).collect();
    let (_, body) = post(serde_json::to_vec(&batch).expect("json"));
    assert!(body.contains("error") && body.len() < 10_000, "a 1000-call batch is refused, not run");
    // An idle connection does not block others.
    let idle = std::net::TcpStream::connect(addr).expect("connect");
    let s = status(&api).await;
    assert_eq!(s["connected"], json!(true));
    drop(idle);

    let (clean, log) = prescient.terminate(Duration::from_secs(15));
    assert!(clean, "prescient serve did not stop cleanly:\n{log}");
    assert!(log.contains("node connection lost"), "the disconnect is logged");
    drop(anvil);
}
