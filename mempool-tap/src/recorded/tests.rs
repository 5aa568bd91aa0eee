//! Loader tests: the round trip through [`RecordingWriter`], and every error path.

use std::{fs, io::Write, path::Path};

use alloy::{
    consensus::{Header, SignableTransaction, Signed, TxEnvelope, TxLegacy, proofs::calculate_transaction_root},
    primitives::Signature,
    rpc::types::{Block as RpcBlock, BlockTransactions, Header as RpcHeader, Transaction as RpcTransaction},
};
use revm::{
    primitives::{Address, B256, Bytes, TxKind, U256, address, hardfork::SpecId},
    state::Bytecode,
};

use super::*;

const SENDER: Address = address!("0x1000000000000000000000000000000000000001");
const RECIPIENT: Address = address!("0x2000000000000000000000000000000000000002");
const CONTRACT: Address = address!("0x3000000000000000000000000000000000000003");

fn sample_tx(nonce: u64) -> RpcTransaction {
    let tx = TxLegacy {
        chain_id: Some(31337),
        nonce,
        gas_price: 10,
        gas_limit: 21_000,
        to: TxKind::Call(RECIPIENT),
        value: U256::from(1),
        input: Bytes::new(),
    };
    let signed: Signed<TxLegacy> = tx.into_signed(Signature::test_signature());
    let envelope: TxEnvelope = signed.into();
    RpcTransaction {
        inner: alloy::consensus::transaction::Recovered::new_unchecked(envelope, SENDER),
        block_hash: None,
        block_number: None,
        transaction_index: None,
        effective_gas_price: None,
        block_timestamp: None,
    }
}

fn sample_block(number: u64, txs: Vec<RpcTransaction>) -> RpcBlock<RpcTransaction> {
    let envelopes: Vec<TxEnvelope> = txs.iter().map(|t| t.inner.inner().clone()).collect();
    let header = Header {
        number,
        gas_limit: 30_000_000,
        gas_used: 21_000 * txs.len() as u64,
        timestamp: 1_700_000_000 + number * 12,
        base_fee_per_gas: Some(7),
        parent_hash: B256::repeat_byte(0xaa),
        transactions_root: calculate_transaction_root(&envelopes),
        ..Default::default()
    };
    RpcBlock::new(RpcHeader::new(header), BlockTransactions::Full(txs))
}

fn sample_pre_state() -> PreState {
    let code = Bytecode::new_raw(Bytes::from_static(&[0x60, 0x01, 0x60, 0x00, 0x55, 0x00]));
    PreState::from([
        (SENDER, PreAccount { balance: U256::from(10u64.pow(18)), nonce: 0, code: None, storage: Default::default() }),
        (
            CONTRACT,
            PreAccount {
                balance: U256::ZERO,
                nonce: 1,
                code: Some(code),
                storage: [(U256::from(1), U256::from(42))].into_iter().collect(),
            },
        ),
    ])
}

/// Writes a one-block recording with two arrivals into `dir`.
fn write_sample(dir: &Path) {
    let manifest = RecordingManifest {
        format: "prescient-recording".into(),
        version: 1,
        chain_id: 31337,
        node: Some("anvil/test".into()),
    };
    let mut w = RecordingWriter::create(dir, &manifest).expect("create");
    w.add_arrival(1_700_000_001_000, &sample_tx(0)).expect("arrival");
    w.add_arrival(1_700_000_000_500, &sample_tx(1)).expect("arrival");
    w.add_block("PRAGUE", &sample_block(5, vec![sample_tx(0), sample_tx(1)]), &sample_pre_state()).expect("block");
    w.finish().expect("finish");
}

fn rewrite_gz(path: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let mut value: serde_json::Value = json::read(path).expect("readable");
    f(&mut value);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&serde_json::to_vec(&value).expect("json")).expect("gzip");
    fs::write(path, gz.finish().expect("gzip")).expect("write");
}

fn load_err(dir: &Path) -> LoadError {
    let dataset = match Dataset::open(dir) {
        Ok(d) => d,
        Err(e) => return e,
    };
    let block = dataset.find(5).expect("listed").clone();
    dataset.load(&block).expect_err("must fail")
}

#[test]
fn round_trip_through_the_writer() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_sample(dir.path());
    let dataset = Dataset::open(dir.path()).expect("open");
    assert_eq!(dataset.manifest().map(|m| m.chain_id), Some(31337));
    let block_ref = dataset.find(5).expect("listed");
    assert_eq!(block_ref.source, BlockSource::Recording);
    let block = dataset.load(block_ref).expect("load");
    assert_eq!(block.spec, SpecId::PRAGUE);
    assert_eq!(block.cfg.chain_id, 31337);
    assert_eq!(block.txs.len(), 2);
    assert_eq!(block.txs[1].env.nonce, 1);
    assert_eq!(block.txs[0].env.caller, SENDER);
    assert_eq!(block.txs[0].env.gas_price, 10);
    assert_eq!(block.pre_state, sample_pre_state());
    assert_eq!(block.block_hashes.get(&4), Some(&B256::repeat_byte(0xaa)));
    assert_eq!(block.header.as_ref().map(|h| h.gas_used), Some(42_000));
    // Arrivals come back in time order, whatever order they were written in.
    let arrivals = dataset.arrivals().expect("arrivals");
    assert_eq!(arrivals.iter().map(|a| a.t_ms).collect::<Vec<_>>(), [1_700_000_000_500, 1_700_000_001_000]);
    assert_eq!(arrivals[0].tx.inner.inner().tx_hash(), sample_tx(1).inner.inner().tx_hash());
    // The pre-state is usable by revm as is.
    let db = block.state_db();
    assert_eq!(db.cache.accounts[&CONTRACT].storage[&U256::from(1)], U256::from(42));
}

#[test]
fn open_missing_folder_names_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nope");
    let err = Dataset::open(&missing).expect_err("missing");
    assert!(err.is_not_found());
    assert_eq!(err.file, missing);
}

#[test]
fn open_folder_without_traffic_says_what_it_expected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = Dataset::open(dir.path()).expect_err("empty");
    assert!(err.to_string().contains("expected index.json"), "{err}");
}

#[test]
fn missing_block_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_sample(dir.path());
    fs::remove_file(dir.path().join("blocks/5/pre_state.json.gz")).expect("rm");
    let err = load_err(dir.path());
    assert!(err.is_not_found(), "{err}");
    assert!(err.file.ends_with("blocks/5/pre_state.json.gz"), "{err}");
}

#[test]
fn malformed_json_names_the_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_sample(dir.path());
    rewrite_gz(&dir.path().join("blocks/5/block.json.gz"), |v| v["transactions"][1]["gas"] = "lots".into());
    let err = load_err(dir.path());
    assert!(matches!(*err.kind, LoadErrorKind::Json(_)), "{err}");
    assert_eq!(err.field.as_deref(), Some("transactions[1]"), "{err}");
    assert!(err.to_string().contains("block.json.gz: field `transactions[1]`"), "{err}");
}

#[test]
fn truncated_gzip_is_an_io_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_sample(dir.path());
    let path = dir.path().join("blocks/5/block.json.gz");
    let bytes = fs::read(&path).expect("read");
    fs::write(&path, &bytes[..bytes.len() / 2]).expect("truncate");
    let err = load_err(dir.path());
    assert!(matches!(*err.kind, LoadErrorKind::Io(_)), "{err}");
    assert_eq!(err.file, path);
}

#[test]
fn malformed_pre_state_value_names_account_and_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_sample(dir.path());
    let key = format!("{CONTRACT:#x}");
    rewrite_gz(&dir.path().join("blocks/5/pre_state.json.gz"), |v| v[&key]["nonce"] = "0xzz".into());
    let err = load_err(dir.path());
    assert_eq!(err.field, Some(format!("{key}.nonce")), "{err}");
}

#[test]
fn unknown_fork() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_sample(dir.path());
    let index = dir.path().join("index.json");
    let text = fs::read_to_string(&index).expect("read").replace("PRAGUE", "GLAMSTERDAM");
    fs::write(&index, text).expect("write");
    let err = load_err(dir.path());
    assert!(matches!(&*err.kind, LoadErrorKind::UnknownFork(f) if f == "GLAMSTERDAM"), "{err}");
    assert_eq!(err.file, index);
    assert_eq!(err.field.as_deref(), Some("[number=5].fork"));
}

#[test]
fn missing_bytecode() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_sample(dir.path());
    let path = dir.path().join("bytecodes.json.gz");
    rewrite_gz(&path, |v| *v = serde_json::json!({}));
    let err = load_err(dir.path());
    assert!(matches!(*err.kind, LoadErrorKind::MissingBytecode(_)), "{err}");
    assert_eq!(err.field, Some(format!("{CONTRACT:#x}.code_hash")), "{err}");
}

#[test]
fn bytecode_with_wrong_hash() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_sample(dir.path());
    rewrite_gz(&dir.path().join("bytecodes.json.gz"), |v| {
        for code in v.as_object_mut().expect("object").values_mut() {
            *code = "0x6000".into();
        }
    });
    let err = load_err(dir.path());
    assert!(matches!(*err.kind, LoadErrorKind::HashMismatch { what: "bytecode", .. }), "{err}");
}

#[test]
fn transaction_with_wrong_hash() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_sample(dir.path());
    rewrite_gz(&dir.path().join("blocks/5/block.json.gz"), |v| v["transactions"][0]["value"] = "0x2".into());
    let err = load_err(dir.path());
    assert!(matches!(*err.kind, LoadErrorKind::HashMismatch { what: "transaction", .. }), "{err}");
    assert_eq!(err.field.as_deref(), Some("transactions[0].hash"));
}

#[test]
fn header_with_wrong_hash() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_sample(dir.path());
    rewrite_gz(&dir.path().join("blocks/5/block.json.gz"), |v| v["gasUsed"] = "0x1".into());
    let err = load_err(dir.path());
    assert!(matches!(*err.kind, LoadErrorKind::HashMismatch { what: "header", .. }), "{err}");
}

#[test]
fn dropped_transaction_breaks_the_transactions_root() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_sample(dir.path());
    rewrite_gz(&dir.path().join("blocks/5/block.json.gz"), |v| {
        v["transactions"].as_array_mut().expect("array").pop();
    });
    let err = load_err(dir.path());
    assert!(matches!(*err.kind, LoadErrorKind::HashMismatch { what: "transaction list", .. }), "{err}");
}

#[test]
fn malformed_arrival_names_the_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_sample(dir.path());
    let mut f = fs::OpenOptions::new().append(true).open(dir.path().join("arrivals.jsonl")).expect("open");
    writeln!(f, "{{\"t_ms\": 5, \"tx\": 17}}").expect("write");
    let err = Dataset::open(dir.path()).expect("open").arrivals().expect_err("bad line");
    assert!(err.field.as_deref().is_some_and(|f| f.starts_with("line 3")), "{err}");
}

#[test]
fn incomplete_block_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_sample(dir.path());
    let index = dir.path().join("index.json");
    let text = fs::read_to_string(&index).expect("read").replace("\"complete\":true", "\"complete\":false");
    fs::write(&index, text).expect("write");
    let err = load_err(dir.path());
    assert!(matches!(*err.kind, LoadErrorKind::Incomplete { number: 5, .. }), "{err}");
}

#[test]
fn grevm_fixture_errors_name_the_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let block_dir = dir.path().join("mainnet_blocks/7");
    fs::create_dir_all(&block_dir).expect("mkdir");
    let write = |name: &str, value: serde_json::Value| {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(value.to_string().as_bytes()).expect("gzip");
        fs::write(block_dir.join(name), gz.finish().expect("gzip")).expect("write");
    };
    write(
        "block.json.gz",
        serde_json::json!({"number": 7, "coinbase": format!("{RECIPIENT:#x}"), "timestamp": 1_748_011_091u64,
            "gas_limit": 30_000_000, "basefee": 7, "difficulty": "0x0", "prevrandao": format!("{:#x}", B256::ZERO),
            "excess_blob_gas": 0, "chain_id": 1, "spec_id": "Prague"}),
    );
    write("txs.json.gz", serde_json::json!([{"tx_type": 2, "caller": "0x12"}]));
    write("pre_state.json.gz", serde_json::json!({}));
    let dataset = Dataset::open(dir.path()).expect("open");
    let block = dataset.find(7).expect("listed").clone();
    let err = dataset.load(&block).expect_err("short address");
    assert_eq!(err.field.as_deref(), Some("[0].caller"), "{err}");
    assert!(err.file.ends_with("mainnet_blocks/7/txs.json.gz"));
}

#[test]
fn locate_reports_every_place_it_looked() {
    let err = locate_data_dir(Some(Path::new("/definitely/not/here"))).expect_err("absent");
    let text = err.to_string();
    assert!(text.contains("--data /definitely/not/here: does not exist"), "{text}");
    assert!(text.contains("PRESCIENT_DATA"), "{text}");
}
