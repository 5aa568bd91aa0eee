//! A devnet for integration tests: a real anvil (npm `@foundry-rs/anvil`, installed by
//! `.ci/run`), prescient's binary, and JSON-RPC helpers.
//!
//! anvil is found through `PRESCIENT_ANVIL`, then `.ci/node/node_modules`, then `PATH`. A test
//! that needs it skips with a loud message when it is absent, and fails when `CI` is set.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use jsonrpsee::{
    core::{client::ClientT, params::ArrayParams},
    http_client::{HttpClient, HttpClientBuilder},
};
use serde_json::{Value, json};

/// The hardfork the devnet runs, passed to anvil and to prescient.
pub(crate) const HARDFORK: &str = "osaka";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The anvil binary, or `None` (after saying so loudly; in CI this panics instead).
pub(crate) fn anvil_binary(test: &str) -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("PRESCIENT_ANVIL").map(PathBuf::from),
        Some(repo_root().join(".ci/node/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil")),
        Some(repo_root().join(".ci/node/node_modules/.bin/anvil")),
    ];
    if let Some(found) = candidates.into_iter().flatten().find(|p| p.is_file()) {
        return Some(found);
    }
    if let Ok(out) = Command::new("anvil").arg("--version").output()
        && out.status.success()
    {
        return Some(PathBuf::from("anvil"));
    }
    let why = "anvil not found: run `(cd .ci/node && npm install --no-package-lock)` or set PRESCIENT_ANVIL";
    if std::env::var_os("CI").is_some() {
        panic!("{test}: {why}");
    }
    eprintln!("\n!!! SKIPPED {test}: {why} !!!\n");
    None
}

/// A loopback port nobody listens on right now.
pub(crate) fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("bound").port()
}

/// A running anvil, killed on drop.
pub(crate) struct Anvil {
    child: Child,
    /// Its port (HTTP and WebSocket).
    pub(crate) port: u16,
}

impl Anvil {
    /// Starts anvil on `port`, mining off, and waits until it answers.
    pub(crate) fn start(binary: &Path, port: u16) -> Self {
        let child = Command::new(binary)
            .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--no-mining", "--hardfork", HARDFORK])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start anvil");
        let anvil = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok((200, _)) =
                http_post(anvil.http_addr(), br#"{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}"#)
            {
                return anvil;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("anvil did not answer on port {port} within 30 s");
    }

    /// `ws://` URL.
    pub(crate) fn ws(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }

    /// `http://` URL.
    pub(crate) fn http(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn http_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Kills it (SIGKILL: nothing is saved).
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A running `prescient` subcommand, killed on drop.
pub(crate) struct Prescient {
    child: Child,
    /// The JSON-RPC address, for `serve`.
    pub(crate) addr: Option<SocketAddr>,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl Prescient {
    /// Starts `prescient serve --node <ws>` and waits for its listening line.
    pub(crate) fn serve(node: &str, metrics_port: u16) -> Self {
        let metrics = format!("127.0.0.1:{metrics_port}");
        let args = ["serve", "--node", node, "--listen", "127.0.0.1:0", "--metrics", &metrics, "--hardfork", HARDFORK];
        let mut me = Self::spawn(&args);
        let stdout = me.child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let line = lines.next().and_then(Result::ok).unwrap_or_default();
        let addr =
            line.strip_prefix("listening on http://").unwrap_or_else(|| panic!("prescient serve printed {line:?}"));
        me.addr = Some(addr.trim().parse().expect("a socket address"));
        me
    }

    /// Starts `prescient record --node <ws> --out <dir>`.
    pub(crate) fn record(node: &str, out: &Path) -> Self {
        let out = out.to_str().expect("utf-8 path");
        Self::spawn(&["record", "--node", node, "--out", out, "--hardfork", HARDFORK])
    }

    fn spawn(args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_prescient"))
            .args(args)
            .env("RUST_LOG", "info,jsonrpsee=warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start prescient");
        let mut stderr = child.stderr.take().expect("piped stderr");
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            s
        });
        Self { child, addr: None, stderr: Some(stderr) }
    }

    /// A JSON-RPC client for `serve`.
    pub(crate) fn client(&self) -> HttpClient {
        let addr = self.addr.expect("a serve process");
        HttpClientBuilder::default()
            .request_timeout(Duration::from_secs(60))
            .build(format!("http://{addr}"))
            .expect("client")
    }

    /// Sends SIGTERM and waits (at most `within`) for a clean exit; returns its stderr.
    pub(crate) fn terminate(mut self, within: Duration) -> (bool, String) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + within;
        let mut clean = false;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                clean = status.success();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let log = self.stderr.take().map(|h| h.join().unwrap_or_default()).unwrap_or_default();
        (clean, log)
    }
}

impl Drop for Prescient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One raw HTTP POST of `body` to `addr`: (status, body). For hostile-input tests.
pub(crate) fn http_post(addr: SocketAddr, body: &[u8]) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let head = format!(
        "POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())?;
    // The server may answer (413) before reading everything; a reset then is fine.
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).to_string();
    let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((status, body))
}

/// Calls `method` with positional `params`.
pub(crate) async fn call(client: &HttpClient, method: &str, params: Vec<Value>) -> Result<Value, String> {
    let mut p = ArrayParams::new();
    for v in params {
        p.insert(v).expect("a JSON value serializes");
    }
    client.request::<Value, _>(method, p).await.map_err(|e| e.to_string())
}

/// Calls `method`, panicking with the error.
pub(crate) async fn must(client: &HttpClient, method: &str, params: Vec<Value>) -> Value {
    call(client, method, params).await.unwrap_or_else(|e| panic!("{method}: {e}"))
}

/// Polls `f` every 100 ms until it returns `Some`, for at most `within`.
pub(crate) async fn wait_for<T, F, Fut>(what: &str, within: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `eth_sendTransaction` from an unlocked dev account with explicit gas and fees (so that
/// the same call signs the same transaction again after a restart).
pub(crate) async fn send(
    node: &HttpClient,
    from: &str,
    to: Option<&str>,
    data: &str,
    value: u128,
    nonce: u64,
    tip_gwei: u64,
) -> String {
    let mut tx = json!({
        "from": from,
        "data": data,
        "value": format!("{value:#x}"),
        "nonce": format!("{nonce:#x}"),
        "gas": "0x1e8480",
        "maxFeePerGas": format!("{:#x}", 50_000_000_000u64),
        "maxPriorityFeePerGas": format!("{:#x}", tip_gwei * 1_000_000_000),
        "chainId": "0x7a69",
    });
    if let Some(to) = to {
        tx["to"] = json!(to);
    }
    must(node, "eth_sendTransaction", vec![tx]).await.as_str().expect("a hash").to_string()
}

/// Mines one block and returns its number.
pub(crate) async fn mine(node: &HttpClient) -> u64 {
    must(node, "evm_mine", vec![]).await;
    let n = must(node, "eth_blockNumber", vec![]).await;
    u64::from_str_radix(n.as_str().expect("hex").trim_start_matches("0x"), 16).expect("a quantity")
}

/// A 32-byte ABI word of an address.
pub(crate) fn word_addr(a: &str) -> String {
    format!("{:0>64}", a.trim_start_matches("0x"))
}

/// A 32-byte ABI word of a number.
pub(crate) fn word(n: u128) -> String {
    format!("{n:064x}")
}

/// The test contracts' creation code (compiled from `tests/contracts/*.sol`).
pub(crate) fn creation_code(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/contracts").join(format!("{name}.bin"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).trim().to_string()
}

/// Parses a hex quantity.
pub(crate) fn quantity(v: &Value) -> u128 {
    let s = v.as_str().unwrap_or_else(|| panic!("expected a quantity, got {v}"));
    u128::from_str_radix(s.trim_start_matches("0x"), 16).unwrap_or_else(|e| panic!("{s}: {e}"))
}
