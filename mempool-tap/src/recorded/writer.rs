//! Writing a prescient recording: the indexed layout plus `recording.json` and arrivals.
//!
//! Arrivals are appended line by line as they are heard, so a recorder that is killed loses
//! at most the line being written; the index, bytecode table and block-hash table are
//! rewritten on every [`RecordingWriter::add_block`], so the folder on disk is always a
//! loadable recording.

use std::{
    collections::BTreeMap,
    fs::{self, File, OpenOptions},
    io::{BufWriter, Write},
    path::{Path, PathBuf},
};

use alloy::rpc::types::{Block as RpcBlock, Transaction as RpcTransaction};
use flate2::{Compression, write::GzEncoder};
use revm::primitives::{B256, Bytes, U256};
use serde::Serialize;

use super::{
    PreState, RecordingManifest,
    error::{LoadError, LoadErrorKind},
};

#[derive(Debug, Serialize)]
struct IndexOut {
    number: u64,
    hash: B256,
    timestamp: u64,
    fork: String,
    dir: String,
    complete: bool,
    tx_count: usize,
    gas_used: u64,
}

#[derive(Serialize)]
struct PreAccountOut<'a> {
    balance: U256,
    nonce: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    code_hash: Option<B256>,
    storage: &'a BTreeMap<U256, U256>,
}

#[derive(Serialize)]
struct ArrivalOut<'a> {
    t_ms: u64,
    tx: &'a RpcTransaction,
}

/// Writes a recording folder that [`super::Dataset::open`] reads.
#[derive(Debug)]
pub struct RecordingWriter {
    root: PathBuf,
    index: Vec<IndexOut>,
    bytecodes: BTreeMap<B256, Bytes>,
    block_hashes: BTreeMap<u64, B256>,
    arrivals: BufWriter<File>,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> LoadError + '_ {
    move |e| LoadError::new(path, LoadErrorKind::Io(e))
}

fn write_json(path: &Path, value: &impl Serialize) -> Result<(), LoadError> {
    let bytes = serde_json::to_vec(value).map_err(|e| LoadError::new(path, LoadErrorKind::Json(e.to_string())))?;
    // Write to a temporary name and rename, so a reader never sees half a file.
    let tmp = path.with_extension("partial");
    {
        let file = File::create(&tmp).map_err(io_err(&tmp))?;
        if path.extension().is_some_and(|e| e == "gz") {
            // No timestamp in the gzip header: identical content gives identical files.
            let mut gz = GzEncoder::new(BufWriter::new(file), Compression::default());
            gz.write_all(&bytes).and_then(|()| gz.finish()?.flush()).map_err(io_err(&tmp))?;
        } else {
            let mut w = BufWriter::new(file);
            w.write_all(&bytes).and_then(|()| w.flush()).map_err(io_err(&tmp))?;
        }
    }
    fs::rename(&tmp, path).map_err(io_err(path))
}

impl RecordingWriter {
    /// Creates the folder (which must be empty or absent) and writes the manifest.
    pub fn create(root: impl AsRef<Path>, manifest: &RecordingManifest) -> Result<Self, LoadError> {
        let root = root.as_ref().to_path_buf();
        fs::create_dir_all(root.join("blocks")).map_err(io_err(&root))?;
        if root.join("index.json").exists() {
            let kind = LoadErrorKind::Invalid("already holds a recording; choose an empty folder".into());
            return Err(LoadError::new(&root, kind));
        }
        #[derive(Serialize)]
        struct ManifestOut<'a> {
            format: &'a str,
            version: u32,
            chain_id: u64,
            node: &'a Option<String>,
        }
        let out = ManifestOut {
            format: "prescient-recording",
            version: 1,
            chain_id: manifest.chain_id,
            node: &manifest.node,
        };
        write_json(&root.join("recording.json"), &out)?;
        let arrivals_path = root.join("arrivals.jsonl");
        let arrivals =
            OpenOptions::new().create(true).append(true).open(&arrivals_path).map_err(io_err(&arrivals_path))?;
        let mut writer = Self {
            root,
            index: Vec::new(),
            bytecodes: BTreeMap::new(),
            block_hashes: BTreeMap::new(),
            arrivals: BufWriter::new(arrivals),
        };
        writer.write_tables()?;
        Ok(writer)
    }

    /// Appends one pending-transaction arrival and flushes it to disk.
    pub fn add_arrival(&mut self, t_ms: u64, tx: &RpcTransaction) -> Result<(), LoadError> {
        let path = self.root.join("arrivals.jsonl");
        let line = serde_json::to_string(&ArrivalOut { t_ms, tx })
            .map_err(|e| LoadError::new(&path, LoadErrorKind::Json(e.to_string())))?;
        writeln!(self.arrivals, "{line}").and_then(|()| self.arrivals.flush()).map_err(io_err(&path))
    }

    /// Adds one block (full transactions) with the pre-state its transactions read.
    pub fn add_block(
        &mut self,
        fork: &str,
        block: &RpcBlock<RpcTransaction>,
        pre_state: &PreState,
    ) -> Result<(), LoadError> {
        let number = block.header.number;
        let rel = format!("blocks/{number}");
        let dir = self.root.join(&rel);
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        write_json(&dir.join("block.json.gz"), block)?;
        let mut pre = BTreeMap::new();
        for (address, account) in pre_state {
            let code_hash = account.code.as_ref().map(|code| {
                let hash = code.hash_slow();
                self.bytecodes.insert(hash, code.original_bytes());
                hash
            });
            pre.insert(
                *address,
                PreAccountOut { balance: account.balance, nonce: account.nonce, code_hash, storage: &account.storage },
            );
        }
        write_json(&dir.join("pre_state.json.gz"), &pre)?;
        if number > 0 {
            self.block_hashes.insert(number - 1, block.header.parent_hash);
        }
        self.block_hashes.insert(number, block.header.hash);
        self.index.retain(|e| e.number != number);
        self.index.push(IndexOut {
            number,
            hash: block.header.hash,
            timestamp: block.header.timestamp,
            fork: fork.to_string(),
            dir: rel,
            complete: true,
            tx_count: block.transactions.len(),
            gas_used: block.header.gas_used,
        });
        self.index.sort_by_key(|e| e.number);
        self.write_tables()
    }

    /// Records a block hash BLOCKHASH may ask for.
    pub fn add_block_hash(&mut self, number: u64, hash: B256) {
        self.block_hashes.insert(number, hash);
    }

    /// Writes the tables a last time and closes the arrival log.
    pub fn finish(mut self) -> Result<PathBuf, LoadError> {
        self.write_tables()?;
        let path = self.root.join("arrivals.jsonl");
        self.arrivals.flush().map_err(io_err(&path))?;
        Ok(self.root)
    }

    fn write_tables(&mut self) -> Result<(), LoadError> {
        write_json(&self.root.join("index.json"), &self.index)?;
        write_json(&self.root.join("bytecodes.json.gz"), &self.bytecodes)?;
        let hashes: BTreeMap<String, B256> = self.block_hashes.iter().map(|(n, h)| (n.to_string(), *h)).collect();
        write_json(&self.root.join("block_hashes.json"), &hashes)
    }
}
