//! Shared harness for the real-client tests: temp dirs, free ports, the
//! registry under test as a child process, a small std-only HTTP/1.1 client,
//! external commands with a deadline, and helpers for the REST API.
#![allow(dead_code)]

use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The admin account in every tokens file.
pub const ALICE: Auth = Auth::Basic("alice", "s3cret");
/// A non-admin account in every tokens file.
pub const BOB: Auth = Auth::Basic("bob", "hunter2");

/// A robot account (not admin) in every tokens file.
pub const ROBOT: Auth = Auth::Basic("org+ci", "robot-secret");

/// The media type of an OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// What a client sends in `Accept` when it asks for a manifest.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
     application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json, \
     application/vnd.docker.distribution.manifest.list.v2+json";

const TOKENS: &str = r#"[[account]]
name = "alice"
secret = "s3cret"
kind = "user"
admin = true

[[account]]
name = "bob"
secret = "hunter2"
kind = "user"
admin = false

[[account]]
name = "org+ci"
secret = "robot-secret"
kind = "robot"
admin = false
"#;

// ---------------------------------------------------------------------------
// Temp dirs, ports, client binaries

/// A directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "tagguard-clients-{name}-{}-{nanos}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    /// A directory with a short path (podman refuses a runroot longer than
    /// 50 characters).
    pub fn short(tag: &str) -> TempDir {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "tg{tag}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("TAGGUARD_KEEP_TEMP").is_some() {
            eprintln!("keeping {}", self.0.display());
            return;
        }
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

/// Whether `bin` is an executable on PATH.
pub fn on_path(bin: &str) -> bool {
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    std::env::split_paths(&path).any(|dir| {
        let candidate = dir.join(bin);
        fs::metadata(&candidate)
            .map(|m| {
                use std::os::unix::fs::PermissionsExt;
                m.is_file() && m.permissions().mode() & 0o111 != 0
            })
            .unwrap_or(false)
    })
}

/// Whether TAGGUARD_REQUIRE_CLIENTS=1 (CI): a missing client is a failure.
pub fn clients_required() -> bool {
    std::env::var("TAGGUARD_REQUIRE_CLIENTS").is_ok_and(|v| v == "1")
}

/// True when every client is installed. When one is missing the test should
/// return early: this prints why, or panics when TAGGUARD_REQUIRE_CLIENTS=1
/// (CI installs them, so a missing one there is a failure, not a skip).
pub fn clients_available(test: &str, bins: &[&str]) -> bool {
    let missing: Vec<&str> = bins.iter().copied().filter(|b| !on_path(b)).collect();
    if missing.is_empty() {
        return true;
    }
    if clients_required() {
        panic!(
            "{test}: required client(s) not installed: {} (TAGGUARD_REQUIRE_CLIENTS=1)",
            missing.join(", ")
        );
    }
    eprintln!(
        "SKIPPED {test}: client(s) not installed: {} (install them, or set \
         TAGGUARD_REQUIRE_CLIENTS=1 to make this a failure)",
        missing.join(", ")
    );
    false
}

// ---------------------------------------------------------------------------
// Digests and encodings

pub fn sha256_hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(64);
    for b in Sha256::digest(bytes) {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// `sha256:<hex>` of the bytes.
pub fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(bytes))
}

pub fn base64(input: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(TABLE[(n >> 18) as usize & 63] as char);
        out.push(TABLE[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            TABLE[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            TABLE[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

// ---------------------------------------------------------------------------
// A small HTTP/1.1 client (one connection per request, `Connection: close`; the
// answer is read by its length, so servers that keep connections open work too)

#[derive(Clone, Copy, Debug)]
pub enum Auth {
    None,
    Basic(&'static str, &'static str),
    Bearer(&'static str),
}

impl Auth {
    fn header(self) -> Option<String> {
        match self {
            Auth::None => None,
            Auth::Basic(user, secret) => Some(format!(
                "Basic {}",
                base64(format!("{user}:{secret}").as_bytes())
            )),
            Auth::Bearer(token) => Some(format!("Bearer {token}")),
        }
    }

    /// `user:secret` for `--creds` options.
    pub fn creds(self) -> String {
        match self {
            Auth::Basic(user, secret) => format!("{user}:{secret}"),
            other => panic!("no user:secret form for {other:?}"),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Response {
    pub method: String,
    pub path: String,
    pub status: u16,
    /// Header names are lowercased; repeated headers keep every value.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of a header (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics with the request and the body when it is not.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{} {} -> {}: body is not JSON ({e}): {}",
                self.method,
                self.path,
                self.status,
                self.text()
            )
        })
    }

    /// The `code` of each entry of an OCI error body (empty when there is none).
    pub fn error_codes(&self) -> Vec<String> {
        serde_json::from_slice::<Value>(&self.body)
            .ok()
            .and_then(|v| v.get("errors").and_then(|e| e.as_array()).cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|e| e.get("code").and_then(|c| c.as_str()).map(str::to_owned))
            .collect()
    }

    /// A one-line description for assertion messages.
    pub fn describe(&self) -> String {
        let mut body = self.text();
        if body.len() > 600 {
            body.truncate(600);
            body.push_str("...");
        }
        format!("{} {} -> {} {}", self.method, self.path, self.status, body)
    }

    /// Panics unless the status is `want`.
    pub fn expect(self, want: u16) -> Response {
        assert_eq!(self.status, want, "unexpected status: {}", self.describe());
        self
    }
}

/// One HTTP request. `path` goes on the request line exactly as given (no
/// normalisation: the path-traversal tests rely on that).
pub fn try_http(
    addr: &str,
    method: &str,
    path: &str,
    auth: Auth,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> io::Result<Response> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(value) = auth.header() {
        let _ = write!(head, "Authorization: {value}\r\n");
    }
    let mut has_length = false;
    for (name, value) in headers {
        has_length |= name.eq_ignore_ascii_case("content-length");
        let _ = write!(head, "{name}: {value}\r\n");
    }
    if !has_length && (!body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH")) {
        let _ = write!(head, "Content-Length: {}\r\n", body.len());
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    // A server may answer (for instance 413) before it reads a large body and
    // close its side; the answer is still worth reading, so a failed write
    // falls through to the read.
    let write_result = stream.write_all(body).and_then(|_| stream.flush());
    let mut raw = Vec::new();
    let read_result = read_response(&mut stream, method, &mut raw);
    if raw.is_empty() {
        write_result?;
        read_result?;
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed without a response",
        ));
    }
    if let Err(e) = read_result {
        // A reset after a complete response is harmless; parse what arrived.
        if parse_response(method, path, &raw).is_err() {
            return Err(e);
        }
    }
    let _ = stream.shutdown(Shutdown::Both);
    parse_response(method, path, &raw)
}

/// Reads one response into `raw`: the head, then the body by `Content-Length`,
/// by chunks, or (with neither) to the end of the stream. A keep-alive server
/// that leaves the connection open is therefore read to the end of its answer.
fn read_response(stream: &mut TcpStream, method: &str, raw: &mut Vec<u8>) -> io::Result<()> {
    let mut buf = [0u8; 65536];
    loop {
        if response_complete(method, raw) {
            return Ok(());
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        raw.extend_from_slice(&buf[..n]);
    }
}

/// Whether `raw` holds a whole response (head and body) already.
fn response_complete(method: &str, raw: &[u8]) -> bool {
    let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let rest = &raw[end + 4..];
    let header = |name: &str| {
        head.lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .find(|(n, _)| n.trim() == name)
            .map(|(_, v)| v.trim().to_string())
    };
    if method == "HEAD" || status == 204 || status == 304 || status < 200 {
        true
    } else if header("transfer-encoding").is_some_and(|v| v == "chunked") {
        decode_chunked(rest).is_some()
    } else if let Some(len) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        rest.len() >= len
    } else {
        false
    }
}

fn parse_response(method: &str, path: &str, raw: &[u8]) -> io::Result<Response> {
    let bad = |msg: &str| io::Error::new(io::ErrorKind::InvalidData, msg.to_owned());
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of headers"))?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| bad("headers are not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or_else(|| bad("no status line"))?;
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("bad status line"))?;
    let mut headers = Vec::new();
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    let rest = &raw[end + 4..];
    let get = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
    };
    let body = if method == "HEAD" || status == 204 || status == 304 || status < 200 {
        Vec::new()
    } else if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        decode_chunked(rest).ok_or_else(|| bad("bad chunked body"))?
    } else if let Some(len) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
        if rest.len() < len {
            return Err(bad("body shorter than Content-Length"));
        }
        rest[..len].to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Response {
        method: method.to_owned(),
        path: path.to_owned(),
        status,
        headers,
        body,
    })
}

fn decode_chunked(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        if data.len() < size + 2 {
            return None;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// One HTTP request that must get a response (panics on a transport error).
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    auth: Auth,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    try_http(
        addr,
        method,
        path,
        auth,
        headers,
        body,
        Duration::from_secs(300),
    )
    .unwrap_or_else(|e| panic!("{method} http://{addr}{path}: {e}"))
}

/// The path part of a `Location` (scheme and authority stripped, query kept).
pub fn location_path(location: &str) -> &str {
    match location.find("://") {
        Some(i) => {
            let after = &location[i + 3..];
            after.find('/').map_or("/", |j| &after[j..])
        }
        None => location,
    }
}

// ---------------------------------------------------------------------------
// External commands with a deadline

pub struct CmdOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub line: String,
}

impl CmdOutput {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    pub fn describe(&self) -> String {
        format!(
            "`{}` exited {}\n--- stdout\n{}\n--- stderr\n{}",
            self.line, self.status, self.stdout, self.stderr
        )
    }

    /// Panics with the command, its status and its output unless it succeeded.
    pub fn ok(self) -> CmdOutput {
        assert!(self.success(), "command failed: {}", self.describe());
        self
    }
}

/// Runs a command to completion with a deadline, capturing its output.
pub fn run_cmd(cmd: &mut Command, timeout: Duration) -> CmdOutput {
    let line = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {line}: {e}"));
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out_reader = thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    let err_reader = thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{line} did not finish within {timeout:?}");
        }
        thread::sleep(Duration::from_millis(20));
    };
    let stdout = String::from_utf8_lossy(&out_reader.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&err_reader.join().unwrap_or_default()).into_owned();
    CmdOutput {
        status,
        stdout,
        stderr,
        line,
    }
}

// ---------------------------------------------------------------------------
// The registry under test

// ---------------------------------------------------------------------------
// The database under test

/// The PostgreSQL server the tests may use (`TAGGUARD_TEST_POSTGRES`, a URL such as
/// `postgres://tg@127.0.0.1:55432/postgres`). Without it, `None`; with
/// `TAGGUARD_REQUIRE_CLIENTS=1` set, a missing server fails the test instead.
pub fn postgres_server() -> Option<String> {
    match std::env::var("TAGGUARD_TEST_POSTGRES") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var("TAGGUARD_REQUIRE_CLIENTS").as_deref() != Ok("1"),
                "TAGGUARD_TEST_POSTGRES is not set (TAGGUARD_REQUIRE_CLIENTS=1): start a server with .ci/postgres"
            );
            eprintln!("TAGGUARD_TEST_POSTGRES is not set: skipping a PostgreSQL test");
            None
        }
    }
}

/// Whether the servers of this test run use PostgreSQL
/// (`TAGGUARD_TEST_BACKEND=postgres`), each on a fresh database of its own.
pub fn on_postgres() -> bool {
    std::env::var("TAGGUARD_TEST_BACKEND").as_deref() == Ok("postgres")
}

/// A fresh, empty database on the PostgreSQL server `server`; returns its URL.
pub fn fresh_postgres_database(server: &str, hint: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let clean: String = hint
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(30)
        .collect::<String>()
        .to_ascii_lowercase();
    let name = format!(
        "tg_{clean}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    let mut client = postgres::Client::connect(server, postgres::NoTls)
        .unwrap_or_else(|e| panic!("connecting to {server}: {e}"));
    // Two statements: one string of both would run as one transaction, which
    // CREATE DATABASE refuses.
    for sql in [
        format!("DROP DATABASE IF EXISTS {name}"),
        format!("CREATE DATABASE {name}"),
    ] {
        client
            .batch_execute(&sql)
            .unwrap_or_else(|e| panic!("creating database {name}: {e}"));
    }
    let base = server.rsplit_once('/').map_or(server, |(base, _)| base);
    format!("{base}/{name}")
}

/// A `tagguard-registry serve` child process; killed on drop.
pub struct Server {
    pub port: u16,
    pub data: PathBuf,
    pub tokens: PathBuf,
    /// `--database`, when the server runs on PostgreSQL.
    pub database: Option<String>,
    root: PathBuf,
    child: Option<Child>,
    starts: u32,
    stdout_log: PathBuf,
    stderr_log: PathBuf,
}

impl Server {
    /// Writes the tokens file and starts a server with its data in `root/data`: on
    /// SQLite there, or on a fresh PostgreSQL database when [`on_postgres`].
    pub fn start(root: &Path) -> Server {
        let database = on_postgres().then(|| {
            let server = postgres_server().expect("TAGGUARD_TEST_BACKEND=postgres needs a server");
            fresh_postgres_database(&server, &root.display().to_string())
        });
        Server::start_on(root, database)
    }

    /// Writes the tokens file and starts a server with its data in `root/data` and the
    /// database `database` (`None`: SQLite in the data dir).
    pub fn start_on(root: &Path, database: Option<String>) -> Server {
        let data = root.join("data");
        fs::create_dir_all(&data).expect("create data dir");
        let tokens = root.join("tokens.toml");
        fs::write(&tokens, TOKENS).expect("write tokens file");
        let mut server = Server {
            port: 0,
            data,
            tokens,
            database,
            root: root.to_owned(),
            child: None,
            starts: 0,
            stdout_log: PathBuf::new(),
            stderr_log: PathBuf::new(),
        };
        server.spawn();
        server
    }

    /// Another registry process on the same data dir and database (a replica), with
    /// its logs in `root`.
    pub fn replica(&self, root: &Path) -> Server {
        fs::create_dir_all(root).expect("create replica dir");
        let mut server = Server {
            port: 0,
            data: self.data.clone(),
            tokens: self.tokens.clone(),
            database: self.database.clone(),
            root: root.to_owned(),
            child: None,
            starts: 0,
            stdout_log: PathBuf::new(),
            stderr_log: PathBuf::new(),
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "server already running");
        self.starts += 1;
        self.port = free_port();
        self.stdout_log = self.root.join(format!("server-{}.stdout", self.starts));
        self.stderr_log = self.root.join(format!("server-{}.stderr", self.starts));
        let stdout = fs::File::create(&self.stdout_log).expect("stdout log");
        let stderr = fs::File::create(&self.stderr_log).expect("stderr log");
        let child = Command::new(env!("CARGO_BIN_EXE_tagguard-registry"))
            .arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--data")
            .arg(&self.data)
            .arg("--tokens")
            .arg(&self.tokens)
            .args(
                self.database
                    .iter()
                    .flat_map(|d| ["--database", d.as_str()]),
            )
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("spawn tagguard-registry");
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let banner = format!("listening on http://127.0.0.1:{}", self.port);
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "tagguard-registry exited before it was ready ({status})\n{}",
                    self.logs()
                );
            }
            let printed = fs::read_to_string(&self.stdout_log)
                .map(|s| s.contains(&banner))
                .unwrap_or(false);
            if printed {
                let health = try_http(
                    &self.addr(),
                    "GET",
                    "/healthz",
                    Auth::None,
                    &[],
                    b"",
                    Duration::from_secs(10),
                );
                match health {
                    Ok(r) if r.status == 200 => return,
                    Ok(r) => panic!(
                        "printed {banner:?} but GET /healthz answered {}\n{}",
                        r.describe(),
                        self.logs()
                    ),
                    Err(_) => {}
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "tagguard-registry did not print {banner:?} and answer /healthz within 180 s\n{}",
                    self.logs()
                );
            }
            thread::sleep(Duration::from_millis(25));
        }
    }

    /// The names of alive, non-hidden, immutable tags, read from the database itself
    /// (SQLite through the `sqlite3` client); `None` when that client is missing.
    pub fn immutable_tags_in_db(&self) -> Option<std::collections::BTreeSet<String>> {
        const ALIVE_IMMUTABLE: &str = "SELECT name FROM tag WHERE lifetime_end_ms IS NULL \
             AND hidden = FALSE AND immutable = TRUE";
        if let Some(url) = &self.database {
            let mut client = postgres::Client::connect(url, postgres::NoTls)
                .unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
            let rows = client.query(ALIVE_IMMUTABLE, &[]).expect("query tags");
            return Some(rows.iter().map(|r| r.get::<_, String>(0)).collect());
        }
        if !on_path("sqlite3") {
            assert!(
                !clients_required(),
                "sqlite3 not installed (TAGGUARD_REQUIRE_CLIENTS=1)"
            );
            return None;
        }
        let out = run_cmd(
            Command::new("sqlite3")
                .arg("-readonly")
                .arg(self.data.join("registry.db"))
                .arg(format!("{ALIVE_IMMUTABLE};")),
            Duration::from_secs(120),
        )
        .ok();
        Some(out.stdout.lines().map(str::to_owned).collect())
    }

    /// The last lines of the server's stdout and stderr, for failure messages.
    pub fn logs(&self) -> String {
        let tail = |p: &Path| {
            let s = fs::read_to_string(p).unwrap_or_default();
            let lines: Vec<&str> = s.lines().collect();
            lines[lines.len().saturating_sub(40)..].join("\n")
        };
        format!(
            "--- server stdout (tail)\n{}\n--- server stderr (tail)\n{}",
            tail(&self.stdout_log),
            tail(&self.stderr_log)
        )
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `127.0.0.1:PORT/<repo>` for client image references.
    pub fn image(&self, repo_and_tag: &str) -> String {
        format!("docker://127.0.0.1:{}/{repo_and_tag}", self.port)
    }

    /// The server's peak resident memory so far (VmHWM), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let pid = self.child.as_ref().expect("server running").id();
        let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc status")
    }

    /// SIGKILL, no shutdown.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("kill -9 the server");
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits (up to `timeout`) for the process to exit.
    pub fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("server running");
        run_cmd(
            Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string()),
            Duration::from_secs(10),
        )
        .ok();
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "tagguard-registry did not exit within {timeout:?} of SIGTERM\n{}",
                    self.logs()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the server again on the same data dir (and a new port) after
    /// it stopped.
    pub fn start_again(&mut self) {
        self.spawn();
    }

    /// Starts a new process on the same data dir (and a new port).
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    pub fn request(
        &self,
        method: &str,
        path: &str,
        auth: Auth,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        http(&self.addr(), method, path, auth, headers, body)
    }

    pub fn get(&self, path: &str, auth: Auth) -> Response {
        self.request("GET", path, auth, &[], b"")
    }

    pub fn post_json(&self, path: &str, auth: Auth, body: &Value) -> Response {
        self.request(
            "POST",
            path,
            auth,
            &[("Content-Type", "application/json")],
            body.to_string().as_bytes(),
        )
    }

    /// POST an organization immutability policy.
    pub fn create_org_policy(&self, org: &str, pattern: &str, auth: Auth) -> Response {
        self.post_json(
            &format!("/api/v1/organization/{org}/immutabilitypolicy/"),
            auth,
            &serde_json::json!({"tagPattern": pattern, "tagPatternMatches": true}),
        )
    }

    /// Every log entry of `base` (`/api/v1/organization/org/logs` or a
    /// repository's), following `next_page` to the end, newest first.
    pub fn all_logs(&self, base: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut next: Option<String> = None;
        let mut pages = 0u32;
        loop {
            let path = match &next {
                None => base.to_owned(),
                Some(token) => format!("{base}?next_page={}", percent_encode(token)),
            };
            let page = self.get(&path, ALICE).expect(200).json();
            let logs = page["logs"]
                .as_array()
                .unwrap_or_else(|| panic!("GET {path}: no \"logs\" array: {page}"));
            assert!(
                logs.len() <= 100,
                "GET {path}: {} entries on one page, more than 100",
                logs.len()
            );
            out.extend(logs.iter().cloned());
            pages += 1;
            assert!(pages < 100_000, "GET {base}: next_page does not end");
            match page.get("next_page").and_then(|v| v.as_str()) {
                Some(token) if !token.is_empty() => {
                    assert_ne!(
                        next.as_deref(),
                        Some(token),
                        "GET {path}: next_page repeats itself"
                    );
                    next = Some(token.to_owned());
                }
                _ => return out,
            }
        }
    }

    /// `GET /api/v1/tagguard/verify` as JSON.
    pub fn verify(&self) -> Value {
        self.get("/api/v1/tagguard/verify", ALICE)
            .expect(200)
            .json()
    }

    /// `GET /api/v1/tagguard/runs`, the `runs` array.
    pub fn runs(&self) -> Vec<Value> {
        let body = self.get("/api/v1/tagguard/runs", ALICE).expect(200).json();
        body["runs"]
            .as_array()
            .unwrap_or_else(|| panic!("GET /api/v1/tagguard/runs: no \"runs\" array: {body}"))
            .clone()
    }

    /// Uploads a blob with POST then PUT `?digest=` (body on the PUT);
    /// returns its digest.
    pub fn push_blob(&self, repo: &str, bytes: &[u8], auth: Auth) -> String {
        let d = digest(bytes);
        let start = self
            .request(
                "POST",
                &format!("/v2/{repo}/blobs/uploads/"),
                auth,
                &[],
                b"",
            )
            .expect(202);
        let location = start
            .header("location")
            .unwrap_or_else(|| panic!("no Location: {}", start.describe()))
            .to_owned();
        let path = location_path(&location);
        let sep = if path.contains('?') { '&' } else { '?' };
        self.request(
            "PUT",
            &format!("{path}{sep}digest={d}"),
            auth,
            &[("Content-Type", "application/octet-stream")],
            bytes,
        )
        .expect(201);
        d
    }

    /// Pushes a small image (a config and one layer, both unique to `seed`)
    /// to `repo:tag`; returns the manifest bytes and digest.
    pub fn push_image(&self, repo: &str, tag: &str, seed: &str, auth: Auth) -> (Vec<u8>, String) {
        let (config, layer) = image_blobs(seed);
        let config_digest = self.push_blob(repo, &config, auth);
        let layer_digest = self.push_blob(repo, &layer, auth);
        let manifest = oci_manifest(&config_digest, config.len(), &layer_digest, layer.len());
        let put = self.request(
            "PUT",
            &format!("/v2/{repo}/manifests/{tag}"),
            auth,
            &[("Content-Type", OCI_MANIFEST)],
            &manifest,
        );
        assert_eq!(put.status, 201, "manifest PUT: {}", put.describe());
        let d = digest(&manifest);
        (manifest, d)
    }

    /// The tags of `repo` (status and body of `tags/list`), for
    /// before-and-after comparisons.
    pub fn tag_list(&self, repo: &str) -> (u16, String) {
        let r = self.get(&format!("/v2/{repo}/tags/list"), ALICE);
        (r.status, r.text())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A config blob and a layer blob whose content depends on `seed`.
pub fn image_blobs(seed: &str) -> (Vec<u8>, Vec<u8>) {
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Labels": {"seed": seed}},
        "rootfs": {"type": "layers", "diff_ids": [digest(seed.as_bytes())]},
    })
    .to_string()
    .into_bytes();
    let layer = format!("layer for {seed}\n").into_bytes();
    (config, layer)
}

/// The bytes of an OCI image manifest with one config and one layer.
pub fn oci_manifest(config: &str, config_size: usize, layer: &str, layer_size: usize) -> Vec<u8> {
    serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config,
            "size": config_size,
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": layer,
            "size": layer_size,
        }],
    })
    .to_string()
    .into_bytes()
}

// ---------------------------------------------------------------------------
// Bulk tag writes with one curl process

/// The outcome of a bulk tag write.
pub struct Bulk {
    /// How many requests got each status code.
    pub codes: BTreeMap<String, usize>,
    /// Each request's status code, in the order of the tags.
    pub statuses: Vec<String>,
    pub elapsed: Duration,
}

/// PUTs `manifest` to every tag with ONE curl process reading a config file
/// (`curl -K`), so the connection is reused between requests.
pub fn bulk_put_tags(
    server: &Server,
    dir: &Path,
    repo: &str,
    manifest: &[u8],
    content_type: &str,
    tags: &[String],
) -> Bulk {
    let manifest_path = dir.join("bulk-manifest.json");
    fs::write(&manifest_path, manifest).expect("write manifest");
    let mut config = String::new();
    config.push_str("silent\nshow-error\n");
    let _ = writeln!(config, "user = \"{}\"", ALICE.creds());
    config.push_str("request = \"PUT\"\n");
    let _ = writeln!(config, "header = \"Content-Type: {content_type}\"");
    config.push_str("header = \"Expect:\"\n");
    let _ = writeln!(config, "data-binary = \"@{}\"", manifest_path.display());
    config.push_str("write-out = \"%{http_code}\\n\"\n");
    for tag in tags {
        let _ = writeln!(
            config,
            "url = \"http://{}/v2/{repo}/manifests/{tag}\"\noutput = \"/dev/null\"",
            server.addr()
        );
    }
    let config_path = dir.join("bulk.curl");
    fs::write(&config_path, config).expect("write curl config");
    let start = Instant::now();
    let out = run_cmd(
        Command::new("curl").arg("-K").arg(&config_path),
        Duration::from_secs(900),
    );
    let elapsed = start.elapsed();
    let mut codes = BTreeMap::new();
    let statuses: Vec<String> = out.stdout.lines().map(|l| l.trim().to_owned()).collect();
    for status in &statuses {
        *codes.entry(status.clone()).or_insert(0) += 1;
    }
    assert!(
        out.success(),
        "bulk curl failed after {elapsed:?} ({codes:?}): {}",
        out.stderr
    );
    Bulk {
        codes,
        statuses,
        elapsed,
    }
}

// ---------------------------------------------------------------------------
// Log entries

/// `metadata.tag` of a log entry, or the entry's own `tag`.
pub fn log_tag(entry: &Value) -> Option<&str> {
    entry["metadata"]["tag"]
        .as_str()
        .or_else(|| entry["tag"].as_str())
}

pub fn log_kind(entry: &Value) -> &str {
    entry["kind"].as_str().unwrap_or("")
}

pub fn performer(entry: &Value) -> &str {
    entry["performer"]["name"].as_str().unwrap_or("")
}

/// Entries of one kind.
pub fn of_kind<'a>(logs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    logs.iter().filter(|e| log_kind(e) == kind).collect()
}

// ---------------------------------------------------------------------------
// Images built offline with umoci, pushed with skopeo; tags in bulk

/// How long one client command may take.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(300);

/// An OCI layout `dir/img` with `base` (empty) and one image per name, each
/// adding the file `/<name>.txt` with its own content to the base.
pub fn umoci_images(dir: &Path, names: &[&str]) -> PathBuf {
    let layout = dir.join("img");
    let layout_s = layout.to_str().expect("utf-8 path");
    run_cmd(
        Command::new("umoci").args(["init", "--layout", layout_s]),
        CLIENT_TIMEOUT,
    )
    .ok();
    run_cmd(
        Command::new("umoci").args(["new", "--image", &format!("{layout_s}:base")]),
        CLIENT_TIMEOUT,
    )
    .ok();
    for name in names {
        let bundle = dir.join(format!("bundle-{name}"));
        let bundle_s = bundle.to_str().expect("utf-8 path");
        run_cmd(
            Command::new("umoci").args([
                "unpack",
                "--rootless",
                "--image",
                &format!("{layout_s}:base"),
                bundle_s,
            ]),
            CLIENT_TIMEOUT,
        )
        .ok();
        fs::write(
            bundle.join("rootfs").join(format!("{name}.txt")),
            format!("this is image {name}\n"),
        )
        .expect("write file into bundle");
        run_cmd(
            Command::new("umoci").args([
                "repack",
                "--image",
                &format!("{layout_s}:{name}"),
                bundle_s,
            ]),
            CLIENT_TIMEOUT,
        )
        .ok();
    }
    layout
}

pub fn skopeo_copy(
    server: &Server,
    layout: &Path,
    name: &str,
    dest: &str,
    digestfile: &Path,
) -> CmdOutput {
    run_cmd(
        Command::new("skopeo").args([
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            &ALICE.creds(),
            "--digestfile",
            digestfile.to_str().expect("utf-8 path"),
            &format!("oci:{}:{name}", layout.display()),
            &server.image(dest),
        ]),
        CLIENT_TIMEOUT,
    )
}

pub fn get_manifest(server: &Server, repo: &str, reference: &str) -> Response {
    server.request(
        "GET",
        &format!("/v2/{repo}/manifests/{reference}"),
        ALICE,
        &[("Accept", MANIFEST_ACCEPT)],
        b"",
    )
}

pub fn seed_tags(server: &Server, dir: &TempDir, tags: &[String]) -> (Vec<u8>, Duration) {
    server.push_image("org/app", "seed", "seed image", ALICE);
    let got = get_manifest(server, "org/app", "seed").expect(200);
    let content_type = got
        .header("content-type")
        .expect("manifest Content-Type")
        .to_owned();
    let bulk = bulk_put_tags(
        server,
        dir.path(),
        "org/app",
        &got.body,
        &content_type,
        tags,
    );
    let created = bulk.codes.get("201").copied().unwrap_or(0);
    assert_eq!(
        created,
        tags.len(),
        "every tag PUT answers 201; got {:?}",
        bulk.codes
    );
    eprintln!("pushed {} tags in {:.1?}", tags.len(), bulk.elapsed);
    (got.body, bulk.elapsed)
}

/// The `tag_made_immutable_by_policy` records of `logs`, by tag.
pub fn marks_by_tag(logs: &[Value]) -> BTreeMap<String, Vec<&Value>> {
    let mut by_tag: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for e in of_kind(logs, "tag_made_immutable_by_policy") {
        let tag = log_tag(e).unwrap_or_else(|| panic!("record without a tag: {e}"));
        by_tag.entry(tag.to_owned()).or_default().push(e);
    }
    by_tag
}
