//! prescient attached to a real anvil: pre-execution of competing pending transactions,
//! `prescient_executeBlock` against what anvil mined, the recorder, node restarts and
//! hostile requests.

use std::time::Duration;

use jsonrpsee::http_client::{HttpClient, HttpClientBuilder};
use mempool_tap::Dataset;
use prescient_tools::evaluate::{EvaluateOptions, evaluate_block, recorded_arrivals};
use revm::primitives::{KECCAK_EMPTY, keccak256};
use serde_json::{Value, json};

use crate::devnet::*;

const TRANSFER: &str = "a9059cbb";
const APPROVE: &str = "095ea7b3";
const ADD_LIQUIDITY: &str = "9cd441da";
const SWAP: &str = "9f1d0f59";
const E18: u128 = 1_000_000_000_000_000_000;

fn node_client(anvil: &Anvil) -> HttpClient {
    HttpClientBuilder::default().request_timeout(Duration::from_secs(30)).build(anvil.http()).expect("client")
}

async fn accounts(node: &HttpClient) -> Vec<String> {
    must(node, "eth_accounts", vec![])
        .await
        .as_array()
        .expect("accounts")
        .iter()
        .map(|a| a.as_str().expect("address").to_lowercase())
        .collect()
}

async fn nonce(node: &HttpClient, who: &str) -> u64 {
    quantity(&must(node, "eth_getTransactionCount", vec![json!(who), json!("pending")]).await) as u64
}

async fn receipt(node: &HttpClient, hash: &str) -> Value {
    must(node, "eth_getTransactionReceipt", vec![json!(hash)]).await
}

/// Waits until prescient has no pre-execution queued or running: a block is mined after
/// its transactions were heard and pre-executed, as on a real chain.
async fn settle(api: &HttpClient) {
    tokio::time::sleep(Duration::from_millis(200)).await;
    wait_for("pre-execution to settle", Duration::from_secs(60), || async {
        let s = call(api, "prescient_status", vec![]).await.ok()?;
        (s["queued"] == json!(0) && s["inFlight"] == json!(0)).then_some(())
    })
    .await;
}

/// Deploys two tokens and a pool, funds accounts 1-4 with token A, adds liquidity, and has
/// accounts 1-4 approve the pool. Returns (token A, token B, pool).
async fn deploy(node: &HttpClient, api: &HttpClient, acct: &[String]) -> (String, String, String) {
    let owner = &acct[0];
    let supply = word(1_000_000 * E18);
    let a =
        send(node, owner, None, &format!("0x{}{supply}", creation_code("Token")), 0, nonce(node, owner).await, 1).await;
    let b =
        send(node, owner, None, &format!("0x{}{supply}", creation_code("Token")), 0, nonce(node, owner).await, 1).await;
    settle(api).await;
    mine(node).await;
    let addr = |r: Value| r["contractAddress"].as_str().expect("a creation").to_lowercase();
    let (token_a, token_b) = (addr(receipt(node, &a).await), addr(receipt(node, &b).await));
    let pool_code = format!("0x{}{}{}", creation_code("Pool"), word_addr(&token_a), word_addr(&token_b));
    let p = send(node, owner, None, &pool_code, 0, nonce(node, owner).await, 1).await;
    settle(api).await;
    mine(node).await;
    let pool = addr(receipt(node, &p).await);
    let mut hashes = Vec::new();
    for token in [&token_a, &token_b] {
        let data = format!("0x{APPROVE}{}{}", word_addr(&pool), word(u128::MAX));
        hashes.push(send(node, owner, Some(token), &data, 0, nonce(node, owner).await, 1).await);
    }
    let data = format!("0x{ADD_LIQUIDITY}{}{}", word(100_000 * E18), word(100_000 * E18));
    hashes.push(send(node, owner, Some(&pool), &data, 0, nonce(node, owner).await, 1).await);
    for who in &acct[1..=4] {
        let data = format!("0x{TRANSFER}{}{}", word_addr(who), word(10_000 * E18));
        hashes.push(send(node, owner, Some(&token_a), &data, 0, nonce(node, owner).await, 1).await);
        let data = format!("0x{APPROVE}{}{}", word_addr(&pool), word(u128::MAX));
        hashes.push(send(node, who, Some(&token_a), &data, 0, nonce(node, who).await, 1).await);
    }
    settle(api).await;
    mine(node).await;
    for h in hashes {
        assert_eq!(receipt(node, &h).await["status"], json!("0x1"), "setup transaction {h}");
    }
    (token_a, token_b, pool)
}

/// Competing pending transactions: swaps on one pool, transfers, nonce chains, a revert.
async fn competing(node: &HttpClient, acct: &[String], token_a: &str, token_b: &str, pool: &str) -> Vec<String> {
    let mut sent = Vec::new();
    let swap = |amount: u128, min_out: u128| format!("0x{SWAP}{}{}{}", word_addr(token_a), word(amount), word(min_out));
    let transfer = |to: &str, amount: u128| format!("0x{TRANSFER}{}{}", word_addr(to), word(amount));
    // Three swaps on the same pool, different tips: their order decides every output.
    sent.push(send(node, &acct[1], Some(pool), &swap(100 * E18, 0), 0, nonce(node, &acct[1]).await, 3).await);
    sent.push(send(node, &acct[2], Some(pool), &swap(200 * E18, 0), 0, nonce(node, &acct[2]).await, 2).await);
    sent.push(send(node, &acct[3], Some(pool), &swap(50 * E18, 0), 0, nonce(node, &acct[3]).await, 5).await);
    // A nonce chain: account 3 then transfers token A, account 1 moves token A to account 2.
    sent.push(
        send(node, &acct[3], Some(token_a), &transfer(&acct[5], 7 * E18), 0, nonce(node, &acct[3]).await, 5).await,
    );
    sent.push(send(node, &acct[1], Some(token_a), &transfer(&acct[2], E18), 0, nonce(node, &acct[1]).await, 3).await);
    // Ether transfers, a chain of three from account 4.
    for i in 0..3u128 {
        sent.push(send(node, &acct[4], Some(&acct[6]), "0x", E18 + i, nonce(node, &acct[4]).await, 1).await);
    }
    // A swap that must revert (slippage), and a token-B transfer by the owner.
    sent.push(send(node, &acct[2], Some(pool), &swap(E18, 1_000_000 * E18), 0, nonce(node, &acct[2]).await, 2).await);
    sent.push(
        send(node, &acct[0], Some(token_b), &transfer(&acct[7], 3 * E18), 0, nonce(node, &acct[0]).await, 4).await,
    );
    sent
}

/// Checks a `prescient_executeBlock` report against anvil's receipts and state.
async fn check_against_node(node: &HttpClient, report: &Value, block: u64) {
    assert_eq!(report["matchesHeader"], json!(true), "gas and receipts root equal the node's header");
    assert_eq!(report["divergences"], json!([]), "every transaction equals sequential revm");
    let tag = json!(format!("{block:#x}"));
    for tx in report["transactions"].as_array().expect("transactions") {
        let hash = tx["hash"].as_str().expect("hash");
        let r = receipt(node, hash).await;
        assert_eq!(quantity(&r["status"]) == 1, tx["status"].as_bool().expect("status"), "status of {hash}");
        assert_eq!(quantity(&r["gasUsed"]), u128::from(tx["gasUsed"].as_u64().expect("gas")), "gas of {hash}");
        assert_eq!(
            quantity(&r["cumulativeGasUsed"]),
            u128::from(tx["cumulativeGasUsed"].as_u64().expect("gas")),
            "cumulative gas of {hash}"
        );
        let ours = tx["logs"].as_array().expect("logs");
        let theirs = r["logs"].as_array().expect("logs");
        assert_eq!(ours.len(), theirs.len(), "log count of {hash}");
        for (o, t) in ours.iter().zip(theirs) {
            assert_eq!(
                o["address"].as_str().map(str::to_lowercase),
                t["address"].as_str().map(str::to_lowercase),
                "log address"
            );
            assert_eq!(o["topics"], t["topics"], "log topics of {hash}");
            assert_eq!(o["data"], t["data"], "log data of {hash}");
        }
    }
    let state = report["state"].as_object().expect("state");
    assert!(!state.is_empty());
    for (address, account) in state {
        let balance = must(node, "eth_getBalance", vec![json!(address), tag.clone()]).await;
        assert_eq!(quantity(&balance), quantity(&account["balance"]), "balance of {address}");
        let n = must(node, "eth_getTransactionCount", vec![json!(address), tag.clone()]).await;
        assert_eq!(quantity(&n), u128::from(account["nonce"].as_u64().expect("nonce")), "nonce of {address}");
        let code = must(node, "eth_getCode", vec![json!(address), tag.clone()]).await;
        let code = alloy::primitives::hex::decode(code.as_str().expect("hex")).expect("hex code");
        let hash = if code.is_empty() { KECCAK_EMPTY } else { keccak256(&code) };
        assert_eq!(json!(hash), account["codeHash"], "code hash of {address}");
        for (slot, value) in account["storage"].as_object().expect("storage") {
            let slot_word = format!("0x{:0>64}", slot.trim_start_matches("0x"));
            let got = must(node, "eth_getStorageAt", vec![json!(address), json!(slot_word), tag.clone()]).await;
            assert_eq!(quantity(&got), quantity(value), "slot {slot} of {address}");
        }
    }
}

/// Runtime of a contract with two paths. No calldata: `SSTORE(0, 1)`. With calldata: if the
/// calldata word equals COINBASE, `SSTORE(1, CLZ(calldata word))` (EIP-7939, Osaka); else stop.
const TWO_PATHS: &str = "36600a576001600055005b6000354114601457005b6000351e60015500";

/// A hit followed by a miss on the same contract, in one block, with CLZ on the miss's
/// recorded path. One sender sends A (no calldata) then B (the current fee recipient as
/// calldata), so the block runs A then B whatever the node's ordering. Both are
/// pre-executed with the fee recipient prescient predicts (the head's); the node's fee
/// recipient is then changed before mining. A's program holds (the fee recipient is data
/// for it) and hits; B's path depended on it and misses: revm runs B on the contract the hit
/// just touched, which on a node-backed state needs the contract's code to have been
/// committed with the hit. Returns the block.
async fn hit_then_miss_on_one_contract(node: &HttpClient, api: &HttpClient, acct: &[String]) -> u64 {
    let len = TWO_PATHS.len() / 2;
    // PUSH1 len DUP1 PUSH1 11 PUSH1 0 CODECOPY PUSH1 0 RETURN, then the runtime.
    let init = format!("0x60{len:02x}80600b6000396000f3{TWO_PATHS}");
    let owner = &acct[0];
    // Fee recipients that are plain funded accounts (anvil's default, the zero address, is
    // below the precompile range, where a program pins the address itself).
    let (coinbase, next) = (&acct[7], &acct[8]);
    must(node, "anvil_setCoinbase", vec![json!(coinbase)]).await;
    let deploy = send(node, owner, None, &init, 0, nonce(node, owner).await, 1).await;
    settle(api).await;
    mine(node).await;
    let r = receipt(node, &deploy).await;
    let contract = r["contractAddress"].as_str().expect("a creation").to_lowercase();
    let code = must(node, "eth_getCode", vec![json!(contract), json!("latest")]).await;
    assert_eq!(code, json!(format!("0x{TWO_PATHS}")), "the two-path contract is deployed");

    let head = must(node, "eth_getBlockByNumber", vec![json!("latest"), json!(false)]).await;
    assert_eq!(head["miner"].as_str().map(str::to_lowercase).as_ref(), Some(coinbase), "the head's fee recipient");
    let sender = &acct[1];
    let first = nonce(node, sender).await;
    let a = send(node, sender, Some(&contract), "0x", 0, first, 2).await;
    let b = send(node, sender, Some(&contract), &format!("0x{}", word_addr(coinbase)), 0, first + 1, 2).await;
    settle(api).await;
    for h in [&a, &b] {
        let fast = must(api, "prescient_fastPath", vec![json!(h)]).await;
        assert!(!fast["programs"].as_array().expect("programs").is_empty(), "{h} gets a program");
    }
    must(node, "anvil_setCoinbase", vec![json!(next)]).await;
    let block = mine(node).await;
    wait_for("prescient to see the mined head", Duration::from_secs(30), || async {
        let s = call(api, "prescient_status", vec![]).await.ok()?;
        (s["head"] == json!(block)).then_some(())
    })
    .await;
    let report = must(api, "prescient_executeBlock", vec![json!(block), json!({ "verify": true })]).await;
    check_against_node(node, &report, block).await;
    let txs = report["transactions"].as_array().expect("transactions");
    let positions: Vec<&str> = txs.iter().map(|t| t["hash"].as_str().expect("hash")).collect();
    assert_eq!(positions, [a.as_str(), b.as_str()], "A then B (one sender)");
    assert_eq!(txs[0]["path"], json!("hit"), "{report}");
    assert_eq!(txs[1]["path"], json!("miss"), "B's path compared the fee recipient: {report}");
    block
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_of_competing_transactions_equals_anvil() {
    let Some(binary) = anvil_binary("import_of_competing_transactions_equals_anvil") else { return };
    let anvil = Anvil::start(&binary, free_port());
    let node = node_client(&anvil);
    let acct = accounts(&node).await;
    let metrics_port = free_port();
    let prescient = Prescient::serve(&anvil.ws(), metrics_port);
    let recording = tempfile::tempdir().expect("tempdir");
    let out = std::env::var_os("PRESCIENT_RECORD_OUT").map_or_else(|| recording.path().join("devnet"), Into::into);
    let recorder = Prescient::record(&anvil.ws(), &out);
    let api = prescient.client();
    // Both attached before anything happens on chain.
    wait_for("prescient to see the head", Duration::from_secs(30), || async {
        let s = call(&api, "prescient_status", vec![]).await.ok()?;
        (s["connected"] == json!(true) && s["head"].is_number()).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let (token_a, token_b, pool) = deploy(&node, &api, &acct).await;
    // Rounds of competing transactions, each pre-executed while pending, then mined.
    let (mut total, mut hits, mut heard) = (0, 0, Vec::new());
    for round in 0..3 {
        let sent = competing(&node, &acct, &token_a, &token_b, &pool).await;
        wait_for("programs for every pending transaction", Duration::from_secs(90), || async {
            let s = call(&api, "prescient_status", vec![]).await.ok()?;
            let mut all = true;
            for h in &sent {
                all &= call(&api, "prescient_fastPath", vec![json!(h)]).await.is_ok();
            }
            (all && s["queued"] == json!(0) && s["inFlight"] == json!(0)).then_some(())
        })
        .await;
        // The recorder is another process: the block is mined only once it has logged every
        // transaction (it appends and flushes one line per arrival), so that "heard before
        // the block" below is a fact of the run and not a race with its scheduling.
        wait_for("the recorder to log every pending transaction", Duration::from_secs(60), || async {
            let logged = logged_arrivals(&out);
            sent.iter().all(|h| logged.contains(&h.to_lowercase())).then_some(())
        })
        .await;
        if round == 0 {
            let fast = must(&api, "prescient_fastPath", vec![json!(sent[0])]).await;
            let program = fast["programs"][0]["bincode"].as_str().expect("bincode hex");
            let bytes = alloy::primitives::hex::decode(program).expect("hex");
            let (decoded, _): (ir::program::Program, usize) =
                bincode::serde::decode_from_slice(&bytes, bincode::config::standard()).expect("a program");
            ir::verify::verify(&decoded).expect("the served program verifies");
        }
        let block = mine(&node).await;
        wait_for("prescient to see the mined head", Duration::from_secs(30), || async {
            let s = call(&api, "prescient_status", vec![]).await.ok()?;
            (s["head"] == json!(block)).then_some(())
        })
        .await;
        let report = must(&api, "prescient_executeBlock", vec![json!(block), json!({ "verify": true })]).await;
        assert_eq!(report["txCount"], json!(sent.len()), "every competing transaction is in block {block}");
        check_against_node(&node, &report, block).await;
        let reverted =
            report["transactions"].as_array().expect("txs").iter().filter(|t| t["status"] == json!(false)).count();
        assert_eq!(reverted, 1, "exactly the slippage swap reverts");
        let h = report["hits"].as_u64().expect("hits");
        eprintln!("block {block}: {h} of {} transactions hit; misses {}", sent.len(), report["misses"]);
        total += sent.len();
        hits += h as usize;
        heard.push((block, sent.len()));
    }
    eprintln!("hit rate over {} competing transactions: {:.1}%", total, 100.0 * hits as f64 / total as f64);
    assert!(hits > 0, "pre-execution hit nothing");
    let block = hit_then_miss_on_one_contract(&node, &api, &acct).await;

    // Shadow import of every head, with no divergence.
    let status = wait_for("the shadow import of the block", Duration::from_secs(30), || async {
        let s = call(&api, "prescient_status", vec![]).await.ok()?;
        (s["shadowBlocks"].as_u64()? >= 1 && s["head"] == json!(block)).then_some(s)
    })
    .await;
    assert_eq!(status["shadowDivergences"], json!(0), "{status}");

    // Metrics are exported.
    let (code, body) = {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], metrics_port));
        let mut s = std::net::TcpStream::connect(addr).expect("metrics endpoint");
        use std::io::{Read, Write};
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").expect("write");
        let mut raw = String::new();
        let _ = s.read_to_string(&mut raw);
        (raw.split_whitespace().nth(1).unwrap_or("").to_string(), raw)
    };
    assert_eq!(code, "200");
    for name in [
        "prescient_pre_executions_total",
        "prescient_import_txs_total",
        "prescient_node_rpc_seconds",
        "prescient_ap_memory_bytes",
        "prescient_queue_depth",
    ] {
        assert!(body.contains(name), "metric {name} missing from /metrics");
    }

    // The recorder captured the session in the loader's format; the offline evaluation of
    // it imports every block exactly as sequential revm.
    let (clean, log) = recorder.terminate(Duration::from_secs(15));
    assert!(clean, "prescient record did not stop cleanly:\n{log}");
    let dataset = Dataset::open(&out).expect("the recording opens");
    let arrivals = recorded_arrivals(&dataset.arrivals().expect("arrivals"));
    assert!(!arrivals.is_empty(), "the recording has arrivals");
    let blocks: Vec<_> = dataset.complete_blocks().cloned().collect();
    assert!(
        blocks.iter().any(|b| b.number == block),
        "the recording has block {block}: {:?}",
        blocks.iter().map(|b| b.number).collect::<Vec<_>>()
    );
    for b in &blocks {
        let loaded = dataset.load(b).expect("a recorded block loads");
        let replay = prescient_tools::replay::replay_block(&loaded);
        for check in &replay.checks {
            assert_eq!(check.verdict, prescient_tools::replay::Verdict::Pass, "block {} {}", b.number, check.name);
        }
        let options = EvaluateOptions { reps: 1, ..EvaluateOptions::default() };
        let e = evaluate_block(&loaded, &Default::default(), &options, Some(&arrivals)).expect("evaluate");
        assert!(e.divergences.is_empty(), "block {}: {:?}", b.number, e.divergences);
        if let Some((_, n)) = heard.iter().find(|(number, _)| *number == b.number) {
            let block_ms = loaded.env.timestamp.saturating_to::<u64>() * 1000;
            let offsets: Vec<Option<i128>> = loaded
                .txs
                .iter()
                .map(|t| t.hash.and_then(|h| arrivals.get(&h)).map(|ms| *ms as i128 - block_ms as i128))
                .collect();
            assert_eq!(
                e.heard(),
                *n,
                "every competing transaction was heard before block {} (arrival ms after the block's \
                 timestamp: {offsets:?}); the recorder's log:\n{log}",
                b.number
            );
        }
    }
    let (clean, log) = prescient.terminate(Duration::from_secs(15));
    assert!(clean, "prescient serve did not stop cleanly on SIGTERM:\n{log}");
    assert!(!log.contains("shadow import diverged"), "{log}");
}

/// The hashes (lowercase hex) of the transactions in a recording's arrival log so far.
fn logged_arrivals(recording: &std::path::Path) -> std::collections::HashSet<String> {
    let text = std::fs::read_to_string(recording.join("arrivals.jsonl")).unwrap_or_default();
    text.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter_map(|a| a["tx"]["hash"].as_str().map(str::to_lowercase))
        .collect()
}
