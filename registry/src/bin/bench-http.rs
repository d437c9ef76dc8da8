//! The push through HTTP: the median latency of a manifest PUT to a new tag,
//! over one kept-alive connection, against tagguard-registry with ten
//! policies in scope, with none, and against Debian's `docker-registry` (the
//! distribution project's server) for the same push. Prints medians and the
//! ratios measured in the same run.
//!
//! With a PostgreSQL server in `TAGGUARD_TEST_POSTGRES` (a URL), it also measures
//! push throughput with one replica and with two on one PostgreSQL database, four
//! clients each time, and where the CPU time goes (registry processes, PostgreSQL,
//! the clients).
//!
//! `cargo run --release -p tagguard-registry --bin bench-http [-- --smoke]`

use sha2::{Digest, Sha256};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const AUTH: &str = "Basic YmVuY2g6YmVuY2gtc2VjcmV0"; // bench:bench-secret

fn main() -> anyhow::Result<()> {
    let smoke = std::env::args().any(|a| a == "--smoke");
    let (pushes, rounds) = if smoke { (60, 1) } else { (1500, 3) };
    let work = std::env::temp_dir().join(format!("tagguard-bench-http-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let mut result = run(&work, pushes, rounds, smoke);
    if result.is_ok() {
        match std::env::var("TAGGUARD_TEST_POSTGRES") {
            Ok(url) if !url.is_empty() => {
                let per_client = if smoke { 50 } else { 1000 };
                result = replicas(&work, &url, per_client);
            }
            _ => println!(
                "replica throughput: not measured (set TAGGUARD_TEST_POSTGRES to a PostgreSQL server URL)"
            ),
        }
    }
    let _ = std::fs::remove_dir_all(&work);
    result
}

/// A server process killed on drop.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn wait_ready(port: u16) -> anyhow::Result<()> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    anyhow::bail!("the server on port {port} did not start in 60 s")
}

fn start_tagguard(work: &Path) -> anyhow::Result<(Server, u16)> {
    start_registry(work, &work.join("tagguard-data"), None)
}

/// Starts a registry process on `data`, and on `database` when given.
fn start_registry(
    work: &Path,
    data: &Path,
    database: Option<&str>,
) -> anyhow::Result<(Server, u16)> {
    let exe = std::env::current_exe()?
        .parent()
        .map(|d| d.join("tagguard-registry"))
        .ok_or_else(|| anyhow::anyhow!("no directory for the registry binary"))?;
    let tokens = work.join("tokens.toml");
    std::fs::write(
        &tokens,
        "[[account]]\nname = \"bench\"\nsecret = \"bench-secret\"\nkind = \"user\"\nadmin = true\n",
    )?;
    let port = free_port()?;
    let child = Command::new(&exe)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data"])
        .arg(data)
        .arg("--tokens")
        .arg(&tokens)
        .args(database.iter().flat_map(|d| ["--database", d]))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| anyhow::anyhow!("starting {}: {e} (build it first)", exe.display()))?;
    let server = Server(child);
    wait_ready(port)?;
    Ok((server, port))
}

fn start_docker_registry(work: &Path) -> anyhow::Result<Option<(Server, u16)>> {
    let port = free_port()?;
    let config = work.join("docker-registry.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            work.join("docker-registry-data").display()
        ),
    )?;
    let child = match Command::new("docker-registry")
        .arg("serve")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(c) => c,
        Err(_) => return Ok(None),
    };
    let server = Server(child);
    wait_ready(port)?;
    Ok(Some((server, port)))
}

/// One kept-alive HTTP/1.1 connection.
struct Conn {
    reader: BufReader<TcpStream>,
    auth: Option<&'static str>,
}

impl Conn {
    fn open(port: u16, auth: Option<&'static str>) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            reader: BufReader::new(stream),
            auth,
        })
    }

    /// Sends a request and reads the response; returns the status and the body.
    fn request(
        &mut self,
        method: &str,
        path: &str,
        content_type: &str,
        body: &[u8],
    ) -> anyhow::Result<(u16, Vec<u8>)> {
        self.exchange(method, path, content_type, body)
            .map(|(status, _, body)| (status, body))
    }

    /// Sends a request; returns the status, the `Location` header and the body.
    fn exchange(
        &mut self,
        method: &str,
        path: &str,
        content_type: &str,
        body: &[u8],
    ) -> anyhow::Result<(u16, Option<String>, Vec<u8>)> {
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n",
            body.len()
        );
        if !content_type.is_empty() {
            head.push_str(&format!("Content-Type: {content_type}\r\n"));
        }
        if let Some(auth) = self.auth {
            head.push_str(&format!("Authorization: {auth}\r\n"));
        }
        head.push_str("\r\n");
        let stream = self.reader.get_mut();
        stream.write_all(head.as_bytes())?;
        stream.write_all(body)?;
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| anyhow::anyhow!("bad status line {line:?}"))?;
        let mut length = 0usize;
        let mut chunked = false;
        let mut location = None;
        loop {
            line.clear();
            self.reader.read_line(&mut line)?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let lower = l.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                length = v.trim().parse()?;
            }
            if lower.starts_with("location:") {
                location = Some(l["location:".len()..].trim().to_string());
            }
            if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
                chunked = true;
            }
        }
        let mut out = Vec::new();
        if chunked {
            loop {
                line.clear();
                self.reader.read_line(&mut line)?;
                let size = usize::from_str_radix(line.trim(), 16)?;
                let mut chunk = vec![0; size + 2];
                self.reader.read_exact(&mut chunk)?;
                if size == 0 {
                    break;
                }
                out.extend_from_slice(&chunk[..size]);
            }
        } else {
            out.resize(length, 0);
            self.reader.read_exact(&mut out)?;
        }
        Ok((status, location, out))
    }
}

fn digest(bytes: &[u8]) -> String {
    let hex: String = Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

/// Uploads a config and a layer, and returns a manifest that refers to them.
fn prepare(conn: &mut Conn, repo: &str) -> anyhow::Result<Vec<u8>> {
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let layer = vec![7u8; 4096];
    // POST, then PUT with the content: the upload both servers support.
    for blob in [&config[..], &layer[..]] {
        let path = format!("/v2/{repo}/blobs/uploads/");
        let (status, location, _) = conn.exchange("POST", &path, "", b"")?;
        let location = location
            .filter(|_| status == 202)
            .ok_or_else(|| anyhow::anyhow!("starting an upload: {status}, no Location"))?;
        let path = location
            .find("/v2/")
            .map(|i| location[i..].to_string())
            .unwrap_or(location);
        let sep = if path.contains('?') { '&' } else { '?' };
        let put = format!("{path}{sep}digest={}", digest(blob));
        let (status, body) = conn.request("PUT", &put, "application/octet-stream", blob)?;
        anyhow::ensure!(
            status == 201,
            "blob upload: {status} {}",
            String::from_utf8_lossy(&body)
        );
    }
    Ok(format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{}","size":{}}}]}}"#,
        digest(config),
        config.len(),
        digest(&layer),
        layer.len()
    )
    .into_bytes())
}

/// One server under test: its connection, repository, manifest and push times (µs).
struct Target {
    name: &'static str,
    conn: Option<Conn>,
    repo: &'static str,
    manifest: Vec<u8>,
    times: Vec<f64>,
}

impl Target {
    /// Pushes the manifest to a new tag and records the time the PUT took.
    fn push(&mut self, tag: &str) -> anyhow::Result<()> {
        let Some(conn) = self.conn.as_mut() else {
            return Ok(());
        };
        let path = format!("/v2/{}/manifests/{tag}", self.repo);
        let start = Instant::now();
        let (status, body) = conn.request(
            "PUT",
            &path,
            "application/vnd.oci.image.manifest.v1+json",
            &self.manifest,
        )?;
        self.times.push(start.elapsed().as_secs_f64() * 1e6);
        anyhow::ensure!(
            status == 201,
            "push {path}: {status} {}",
            String::from_utf8_lossy(&body)
        );
        Ok(())
    }

    /// The median and the 90th percentile, in µs.
    fn summary(&self) -> Option<(f64, f64)> {
        let mut t = self.times.clone();
        t.sort_by(f64::total_cmp);
        (!t.is_empty()).then(|| (t[t.len() / 2], t[t.len() * 9 / 10]))
    }
}

/// Creates ten policies in scope of org/app, none of which fires for the pushed tags:
/// the decision evaluates all ten on every push.
fn ten_policies(conn: &mut Conn) -> anyhow::Result<()> {
    for i in 0..10 {
        let body = format!(r#"{{"tagPattern":"release-{i}\\.[0-9]+"}}"#);
        let (status, text) = conn.request(
            "POST",
            "/api/v1/organization/org/immutabilitypolicy/",
            "application/json",
            body.as_bytes(),
        )?;
        anyhow::ensure!(
            status == 201,
            "policy: {status} {}",
            String::from_utf8_lossy(&text)
        );
    }
    Ok(())
}

/// Creates one policy in `rec` that fires for every pushed tag (`r...`): each push
/// creates an immutable tag and commits its record with it.
fn recording_policy(conn: &mut Conn) -> anyhow::Result<()> {
    let (status, text) = conn.request(
        "POST",
        "/api/v1/organization/rec/immutabilitypolicy/",
        "application/json",
        br#"{"tagPattern":"r[0-9]+-t[0-9]+"}"#,
    )?;
    anyhow::ensure!(
        status == 201,
        "policy: {status} {}",
        String::from_utf8_lossy(&text)
    );
    Ok(())
}

/// The target for the audit overhead end to end: a push that is recorded against
/// the same push with no policy in scope, at most this factor.
const BAR_AUDIT_HTTP: f64 = 1.05;

fn run(work: &Path, pushes: usize, rounds: usize, smoke: bool) -> anyhow::Result<()> {
    let (_ours, port) = start_tagguard(work)?;
    let mut conn = Conn::open(port, Some(AUTH))?;
    let bare = prepare(&mut conn, "bare/app")?;
    let guarded = prepare(&mut conn, "org/app")?;
    let recorded = prepare(&mut conn, "rec/app")?;
    ten_policies(&mut conn)?;
    recording_policy(&mut conn)?;
    let docker = start_docker_registry(work)?;
    let docker_target = match &docker {
        Some((_, port)) => {
            let mut c = Conn::open(*port, None)?;
            let m = prepare(&mut c, "org/app")?;
            (Some(c), m)
        }
        None => (None, Vec::new()),
    };
    let mut targets = [
        Target {
            name: "tagguard-registry, 10 policies in scope",
            conn: Some(conn),
            repo: "org/app",
            manifest: guarded,
            times: Vec::new(),
        },
        Target {
            name: "tagguard-registry, no policy in scope",
            conn: Some(Conn::open(port, Some(AUTH))?),
            repo: "bare/app",
            manifest: bare,
            times: Vec::new(),
        },
        Target {
            name: "tagguard-registry, a policy fires (tag immutable, its record committed)",
            conn: Some(Conn::open(port, Some(AUTH))?),
            repo: "rec/app",
            manifest: recorded,
            times: Vec::new(),
        },
        Target {
            name: "docker-registry 2.8 (no immutability)",
            conn: docker_target.0,
            repo: "org/app",
            manifest: docker_target.1,
            times: Vec::new(),
        },
    ];
    // Push by push in turn, so that machine noise falls on every row alike; the
    // order rotates, so no server always follows the same one (a push right after
    // docker-registry's, which syncs its files, is slower whoever makes it).
    let n = targets.len();
    for round in 0..rounds {
        for i in 0..pushes {
            for k in 0..n {
                targets[(i + k) % n].push(&format!("r{round}-t{i}"))?;
            }
        }
    }
    println!(
        "push through HTTP: manifest PUT to a new tag, {} pushes per server taken in turn, one kept-alive connection each",
        pushes * rounds
    );
    println!("| server | median µs | p90 µs |");
    println!("|---|---|---|");
    for t in &targets {
        match t.summary() {
            Some((m, p)) => println!("| {} | {m:.0} | {p:.0} |", t.name),
            None => println!(
                "| {} | not measured (docker-registry is not installed) | |",
                t.name
            ),
        }
    }
    let m = |i: usize| targets[i].summary().map(|s| s.0);
    if let (Some(a), Some(b)) = (m(0), m(1)) {
        println!("ratio: 10 policies / no policy = {:.2}x", a / b);
    }
    if let (Some(r), Some(b)) = (m(2), m(1)) {
        let ratio = r / b;
        println!(
            "ratio: audit overhead end to end, recorded push / push with no policy in scope = {ratio:.2}x (target <= {BAR_AUDIT_HTTP:.2}x: {})",
            if smoke {
                "(smoke)"
            } else if ratio <= BAR_AUDIT_HTTP {
                "met"
            } else {
                "not met"
            }
        );
    }
    match (m(0), m(3)) {
        (Some(a), Some(c)) => println!(
            "ratio: tagguard-registry (10 policies) / docker-registry = {:.2}x",
            a / c
        ),
        _ => println!("ratio against docker-registry: not measured"),
    }
    Ok(())
}

/// CPU time (user + system) of a process so far, in seconds; 0 when it is gone.
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of stat: 12 and 13 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

/// CPU seconds of every `postgres` process on the machine.
fn postgres_cpu_seconds() -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "postgres")
        })
        .map(cpu_seconds)
        .sum()
}

/// A fresh database on the PostgreSQL server `url`; returns its URL.
fn fresh_database(url: &str) -> anyhow::Result<String> {
    let name = format!("tg_bench_{}", std::process::id());
    let mut client = postgres::Client::connect(url, postgres::NoTls)?;
    client.batch_execute(&format!("DROP DATABASE IF EXISTS {name}"))?;
    client.batch_execute(&format!("CREATE DATABASE {name}"))?;
    let base = url.rsplit_once('/').map_or(url, |(b, _)| b);
    Ok(format!("{base}/{name}"))
}

/// One throughput phase: four clients, each on its own kept-alive connection to one
/// of `ports` (in turn), push `per_client` new tags each.
struct Phase {
    pushes: usize,
    seconds: f64,
    registry_cpu: f64,
    postgres_cpu: f64,
    client_cpu: f64,
}

fn phase(
    ports: &[u16],
    pids: &[u32],
    manifest: &[u8],
    per_client: usize,
    label: &str,
) -> anyhow::Result<Phase> {
    const CLIENTS: usize = 4;
    let registry_before: f64 = pids.iter().map(|p| cpu_seconds(*p)).sum();
    let postgres_before = postgres_cpu_seconds();
    let client_before = cpu_seconds(std::process::id());
    let start = Instant::now();
    let workers: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let port = ports[c % ports.len()];
            let manifest = manifest.to_vec();
            let label = label.to_string();
            std::thread::spawn(move || -> anyhow::Result<()> {
                let mut conn = Conn::open(port, Some(AUTH))?;
                for i in 0..per_client {
                    let path = format!("/v2/org/app/manifests/{label}-c{c}-{i}");
                    let (status, body) = conn.request(
                        "PUT",
                        &path,
                        "application/vnd.oci.image.manifest.v1+json",
                        &manifest,
                    )?;
                    anyhow::ensure!(
                        status == 201,
                        "push {path}: {status} {}",
                        String::from_utf8_lossy(&body)
                    );
                }
                Ok(())
            })
        })
        .collect();
    for w in workers {
        w.join()
            .map_err(|_| anyhow::anyhow!("a client thread panicked"))??;
    }
    let seconds = start.elapsed().as_secs_f64();
    Ok(Phase {
        pushes: CLIENTS * per_client,
        seconds,
        registry_cpu: pids.iter().map(|p| cpu_seconds(*p)).sum::<f64>() - registry_before,
        postgres_cpu: postgres_cpu_seconds() - postgres_before,
        client_cpu: cpu_seconds(std::process::id()) - client_before,
    })
}

/// Push throughput with one replica, then two, on one PostgreSQL database.
fn replicas(work: &Path, url: &str, per_client: usize) -> anyhow::Result<()> {
    let database = fresh_database(url)?;
    let data = work.join("replicas-data");
    let (a, port_a) = start_registry(work, &data, Some(&database))?;
    let mut conn = Conn::open(port_a, Some(AUTH))?;
    let manifest = prepare(&mut conn, "org/app")?;
    ten_policies(&mut conn)?;
    // Warm both paths before measuring.
    phase(&[port_a], &[a.0.id()], &manifest, 10, "warm-one")?;
    let one = phase(&[port_a], &[a.0.id()], &manifest, per_client, "one")?;
    let (b, port_b) = start_registry(work, &data, Some(&database))?;
    let pids = [a.0.id(), b.0.id()];
    phase(&[port_a, port_b], &pids, &manifest, 10, "warm-two")?;
    let two = phase(&[port_a, port_b], &pids, &manifest, per_client, "two")?;
    println!(
        "replica throughput on PostgreSQL: manifest PUTs to new tags, 10 policies in scope, 4 clients with one kept-alive connection each"
    );
    println!("| replicas | pushes | pushes/s | CPU µs per push: registry | PostgreSQL | clients |");
    println!("|---|---|---|---|---|---|");
    for (n, p) in [(1, &one), (2, &two)] {
        let per = |cpu: f64| cpu * 1e6 / p.pushes as f64;
        println!(
            "| {n} | {} | {:.0} | {:.0} | {:.0} | {:.0} |",
            p.pushes,
            p.pushes as f64 / p.seconds,
            per(p.registry_cpu),
            per(p.postgres_cpu),
            per(p.client_cpu)
        );
    }
    println!(
        "ratio: two replicas / one replica = {:.2}x pushes/s ({} cores on this machine)",
        (two.pushes as f64 / two.seconds) / (one.pushes as f64 / one.seconds),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    drop(b);
    drop(a);
    let mut client = postgres::Client::connect(url, postgres::NoTls)?;
    let name = database.rsplit_once('/').map_or("", |(_, n)| n);
    let _ = client.batch_execute(&format!("DROP DATABASE IF EXISTS {name}"));
    Ok(())
}
