//! External load generator: drives the real `caseroom run` process.
//!
//! Unlike `webhook_load` (everything in one process), this spawns the
//! release binary as a child — terminal platform, its outbox printing every
//! root card and suggestion thread to a sink (stdout to /dev/null) — and
//! measures it from outside, the way a helpdesk sees it:
//!
//! - `intake` (default): `LOAD_CONNECTIONS` (32) keep-alive connections send
//!   signed tickets with unique external ids for `LOAD_SECONDS` (10); prints
//!   durable tickets/s, p50/p99, bytes written per ticket (the process's
//!   `/proc/<pid>/io` `write_bytes`, and the data dir's growth), RSS; then
//!   hammers `GET /healthz` for a few seconds on the same connections so the
//!   ratio to what HTTP allows here is visible.
//! - `fill`: writes a store of `LOAD_CASES` cases (1,000,000) of which
//!   `LOAD_OPEN` (100,000) are open with running SLA clocks, into
//!   `LOAD_DATA_DIR`, through the store's import path.
//! - `restart`: starts the binary on `LOAD_DATA_DIR` and reports how long
//!   until `/readyz` answers and the SLA timers are armed, and the RSS then;
//!   with `LOAD_COMMANDS=1` also times `queue`, `sla` and `stats` typed in
//!   the terminal.
//!
//! ```sh
//! cargo bench --no-default-features --bench loadgen                      # intake
//! LOAD_MODE=fill LOAD_DATA_DIR=/tmp/m1 cargo bench --no-default-features --bench loadgen
//! LOAD_MODE=restart LOAD_DATA_DIR=/tmp/m1 cargo bench --no-default-features --bench loadgen
//! ```

use std::io::{BufRead, BufReader, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use caseroom::case::{Case, CaseId, Channel, Customer, Event, EventKind, NewCase, Priority};
use caseroom::http::signature::sign;
use caseroom::store::{ImportChunk, Store};
use jiff::{SignedDuration, Timestamp};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECRET: &str = "loadgen-secret";

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let mode = std::env::var("LOAD_MODE").unwrap_or_else(|_| "intake".into());
    match mode.as_str() {
        "intake" => intake(),
        "fill" => fill(),
        "restart" => restart(),
        other => panic!("unknown LOAD_MODE {other} (intake, fill, restart)"),
    }
}

/// A config for the child: the shipped one with the webhook on `port`,
/// no rate limit, the shipped playbooks.
fn write_config(dir: &Path, port: u16, metrics_port: u16) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let src = std::fs::read_to_string(root.join("config/caseroom.toml")).unwrap();
    let mut t: toml::Table = toml::from_str(&src).unwrap();
    let http = t["http"].as_table_mut().unwrap();
    http.insert("enabled".into(), true.into());
    http.insert("listen".into(), format!("127.0.0.1:{port}").into());
    http.insert(
        "metrics_listen".into(),
        format!("127.0.0.1:{metrics_port}").into(),
    );
    http.insert("rate_limit_per_minute".into(), 1_000_000_000i64.into());
    let suggest = t["suggest"].as_table_mut().unwrap();
    suggest.insert(
        "playbooks_dir".into(),
        root.join("playbooks").display().to_string().into(),
    );
    if let Ok(mb) = std::env::var("LOAD_CACHE_MB") {
        let mut store = toml::Table::new();
        store.insert("cache_mb".into(), mb.parse::<i64>().unwrap().into());
        t.insert("store".into(), store.into());
    }
    let path = dir.join("caseroom.toml");
    std::fs::write(&path, toml::to_string(&t).unwrap()).unwrap();
    path
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The child process and where it listens.
struct Server {
    child: Child,
    addr: SocketAddr,
    started: Instant,
    /// When the log said the SLA timers were loaded.
    sla_loaded: std::sync::mpsc::Receiver<(Duration, String)>,
    /// `took` of each `command done` log line.
    commands: std::sync::mpsc::Receiver<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        // SIGTERM, then wait: a clean stop flushes the store.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

fn spawn_server(data: &Path, work: &Path, stdin: Stdio) -> Server {
    let port = free_port();
    let config = write_config(work, port, free_port());
    let bin = std::env::var("LOAD_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_caseroom").into());
    let started = Instant::now();
    let mut child = Command::new(bin)
        .args(["--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(data)
        .arg("run")
        .env("CASEROOM_WEBHOOK_SECRET", SECRET)
        .env(
            "RUST_LOG",
            std::env::var("LOAD_RUST_LOG").unwrap_or("info".into()),
        )
        .stdin(stdin)
        .stdout(Stdio::from(
            std::fs::File::create(work.join("stdout.log")).unwrap(),
        ))
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting caseroom");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let (ctx, crx) = std::sync::mpsc::channel();
    let log = work.join("stderr.log");
    std::thread::spawn(move || {
        let mut f = std::fs::File::create(log).unwrap();
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let _ = writeln!(f, "{line}");
            if line.contains("SLA timers loaded") {
                let _ = tx.send((started.elapsed(), line.clone()));
            }
            if line.contains("command done") {
                // `took=1.2ms`, maybe with colour codes around the `=`.
                let plain = strip_ansi(&line);
                if let Some(took) = plain.split("took=").nth(1) {
                    let _ = ctx.send(took.split_whitespace().next().unwrap_or("").to_owned());
                }
            }
        }
    });
    Server {
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        started,
        sla_loaded: rx,
        commands: crx,
    }
}

/// `s` without terminal colour codes (`ESC [ ... m`).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Polls `/readyz` until it answers 200; returns how long after start.
fn wait_ready(s: &Server) -> Duration {
    loop {
        if let Ok(mut c) = std::net::TcpStream::connect(s.addr) {
            let _ = c.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            let mut out = String::new();
            let _ = std::io::Read::read_to_string(&mut c, &mut out);
            if out.starts_with("HTTP/1.1 200") {
                return s.started.elapsed();
            }
        }
        assert!(
            s.started.elapsed() < Duration::from_secs(300),
            "caseroom did not become ready"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn proc_field(pid: u32, file: &str, key: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/{file}")).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn dir_size(p: &Path) -> u64 {
    let mut n = 0;
    for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
        let m = e.metadata().unwrap();
        n += if m.is_dir() {
            dir_size(&e.path())
        } else {
            m.len()
        };
    }
    n
}

fn intake() {
    let seconds: u64 = env_or("LOAD_SECONDS", 10);
    let conns: usize = env_or("LOAD_CONNECTIONS", 32);
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let server = spawn_server(&data, work.path(), Stdio::null());
    let ready = wait_ready(&server);
    let pid = server.child.id();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    // Warm up (first page faults, the engine's caches), then measure.
    rt.block_on(drive(
        server.addr,
        conns,
        Duration::from_secs(1),
        Load::Tickets("warm"),
    ));
    std::thread::sleep(Duration::from_millis(500));
    let written0 = proc_field(pid, "io", "write_bytes:");
    let size0 = dir_size(&data);
    let run = rt.block_on(drive(
        server.addr,
        conns,
        Duration::from_secs(seconds),
        Load::Tickets("load"),
    ));
    // Let the outbox deliver what is queued before counting bytes.
    std::thread::sleep(Duration::from_secs(2));
    let written = proc_field(pid, "io", "write_bytes:") - written0;
    let size = dir_size(&data).saturating_sub(size0);
    let rss = proc_field(pid, "status", "VmRSS:");
    let hwm = proc_field(pid, "status", "VmHWM:");
    let health = rt.block_on(drive(
        server.addr,
        conns,
        Duration::from_secs(3),
        Load::Healthz,
    ));
    let n = run.lat.len() as f64;
    println!(
        "intake: {conns} connections, {seconds}s: {:.0} durable tickets/s; p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; errors {}",
        n / run.elapsed.as_secs_f64(),
        run.pct(0.50),
        run.pct(0.99),
        run.pct(1.0),
        run.errors,
    );
    println!(
        "written per ticket: {:.0} B to disk (/proc io write_bytes), data dir grew {:.0} B/ticket",
        written as f64 / n,
        size as f64 / n,
    );
    println!(
        "healthz: {:.0} req/s, p99 {:.2} ms; RSS {} MB (peak {} MB); ready after {:.0} ms",
        health.lat.len() as f64 / health.elapsed.as_secs_f64(),
        health.pct(0.99),
        rss / 1024,
        hwm / 1024,
        ready.as_secs_f64() * 1e3,
    );
    let printed = std::fs::read_to_string(work.path().join("stdout.log")).unwrap_or_default();
    println!(
        "outbox: the sink printed {} lines ({} KB) of cards and suggestion threads",
        printed.lines().count(),
        printed.len() >> 10
    );
    if std::env::var_os("LOAD_KEEP").is_some() {
        let kept = work.keep();
        println!("kept {}", kept.display());
    }
}

enum Load {
    Tickets(&'static str),
    Healthz,
}

struct Run {
    lat: Vec<Duration>,
    errors: usize,
    elapsed: Duration,
}

impl Run {
    fn pct(&self, p: f64) -> f64 {
        if self.lat.is_empty() {
            return 0.0;
        }
        let i = ((self.lat.len() as f64 * p) as usize).min(self.lat.len() - 1);
        self.lat[i].as_secs_f64() * 1e3
    }
}

async fn drive(addr: SocketAddr, conns: usize, d: Duration, load: Load) -> Run {
    let started = Instant::now();
    let deadline = started + d;
    let tag = match load {
        Load::Tickets(t) => Some(t),
        Load::Healthz => None,
    };
    let mut clients = Vec::new();
    for c in 0..conns {
        clients.push(tokio::spawn(client(addr, c, deadline, tag)));
    }
    let mut lat = Vec::new();
    let mut errors = 0;
    for c in clients {
        let (l, e) = c.await.unwrap();
        lat.extend(l);
        errors += e;
    }
    lat.sort();
    Run {
        lat,
        errors,
        elapsed: started.elapsed(),
    }
}

/// One keep-alive connection: signed unique tickets (or `/healthz` when
/// `tag` is `None`) until `deadline`.
async fn client(
    addr: SocketAddr,
    c: usize,
    deadline: Instant,
    tag: Option<&'static str>,
) -> (Vec<Duration>, usize) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    let mut lat = Vec::new();
    let mut errors = 0;
    let mut buf = vec![0u8; 8192];
    let bodies = [
        "我的卡付款一直失败，提示交易被拒绝",
        "I was charged twice for order 20231105, please refund",
        "转账显示处理中，对方还没收到钱",
        "My account is locked after too many password attempts",
        "The merchant says the payment did not arrive but my bank shows it was sent on Monday",
        "退款申请已经提交一周了还没有到账，请帮忙查询",
    ];
    let pid = std::process::id();
    let mut i = 0u64;
    while Instant::now() < deadline {
        i += 1;
        let req = match tag {
            Some(tag) => {
                let body = serde_json::json!({
                    "external_id": format!("{tag}-{pid}-{c}-{i}"),
                    "subject": "Payment problem",
                    "body": bodies[(i as usize + c) % bodies.len()],
                    "customer": {"id": format!("cust-{c}-{i}"), "name": "Load Test", "email": "load@example.com"},
                    "channel": "web",
                })
                .to_string();
                let sig = sign(SECRET, jiff::Timestamp::now().as_second(), body.as_bytes());
                format!(
                    "POST /v1/tickets HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nX-Caseroom-Signature: {sig}\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                )
            }
            None => format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n"),
        };
        let t0 = Instant::now();
        s.write_all(req.as_bytes()).await.unwrap();
        let mut got = Vec::new();
        let (head_end, len) = loop {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "server closed the connection");
            got.extend_from_slice(&buf[..n]);
            if let Some(p) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&got[..p]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        l.strip_prefix("content-length:")
                            .map(|v| v.trim().parse().unwrap())
                    })
                    .unwrap_or(0);
                break (p + 4, len);
            }
        };
        while got.len() < head_end + len {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "server closed the connection");
            got.extend_from_slice(&buf[..n]);
        }
        lat.push(t0.elapsed());
        let ok = if tag.is_some() {
            &b"HTTP/1.1 201"[..]
        } else {
            &b"HTTP/1.1 200"[..]
        };
        if !got.starts_with(ok) {
            errors += 1;
        }
    }
    (lat, errors)
}

/// A store of `LOAD_CASES` cases, `LOAD_OPEN` of them open, the rest
/// resolved (half of those closed), written through `import_chunk`.
fn fill() {
    let dir = PathBuf::from(std::env::var("LOAD_DATA_DIR").expect("LOAD_DATA_DIR"));
    let total: u64 = env_or("LOAD_CASES", 1_000_000);
    let open: u64 = env_or("LOAD_OPEN", 100_000);
    let started = Instant::now();
    let store = Store::open_with_cache(&dir, 64 << 20).unwrap();
    assert!(store.is_empty().unwrap(), "{} is not empty", dir.display());
    // SLA runs judged with the shipped policy, as `caseroom import` does.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config =
        caseroom::config::Config::load_offline(&root.join("config/caseroom.toml")).unwrap();
    store.set_settler(caseroom::sla::engine::settler(
        caseroom::sla::Settings::from_config(&config),
    ));
    let now = Timestamp::now();
    let texts = [
        "My card payment keeps failing with a declined message",
        "I was charged twice for order 20231105, please refund",
        "转账显示处理中，对方还没收到钱",
        "My account is locked after too many password attempts",
    ];
    let mut chunk = ImportChunk::default();
    for n in 1..=total {
        let id = CaseId(n);
        let is_open = n > total - open;
        // Open cases arrived over the last 2 hours, so their clocks run
        // (some already breached); the rest over the last 90 days.
        let at = if is_open {
            now - SignedDuration::from_secs(((total - n) * 7200 / open.max(1)) as i64)
        } else {
            now - SignedDuration::from_secs(90 * 86400) + SignedDuration::from_secs((n * 7) as i64)
        };
        let ev = |seq: u32, at: Timestamp, actor: &str, kind: EventKind| Event {
            seq,
            at,
            actor: actor.into(),
            kind,
            reason: None,
        };
        let priority = [Priority::P2, Priority::P3, Priority::P3, Priority::P4][(n % 4) as usize];
        let mut events = vec![
            ev(
                0,
                at,
                "webhook",
                EventKind::Opened(NewCase {
                    external_id: format!("fill-{n}"),
                    subject: "Payment problem".into(),
                    body: texts[(n % 4) as usize].into(),
                    customer: Customer {
                        id: Some(format!("cust-{}", n % 50_000)),
                        name: Some("Filled Customer".into()),
                        email: None,
                        language: Default::default(),
                    },
                    channel: Channel::Web,
                    priority,
                    tags: Vec::new(),
                }),
            ),
            ev(
                1,
                at,
                "webhook",
                EventKind::Triaged {
                    playbook: Some("card-declined".into()),
                    confidence: 0.8,
                },
            ),
            ev(
                2,
                at + SignedDuration::from_millis(40),
                "bot",
                EventKind::Posted {
                    platform: "console".into(),
                    room: "team".into(),
                    message_id: format!("m{n}"),
                    what: "root".into(),
                },
            ),
        ];
        let mut push = |kind: EventKind, actor: &str, after: i64| {
            let seq = events.len() as u32;
            events.push(ev(seq, at + SignedDuration::from_secs(after), actor, kind));
        };
        if !is_open || n % 3 == 0 {
            push(
                EventKind::Assigned {
                    assignee: format!("agent{}", n % 20),
                },
                "lead",
                60,
            );
        }
        if !is_open {
            push(
                EventKind::Reply {
                    text: "We are looking into it.".into(),
                },
                "agent",
                300,
            );
            push(
                EventKind::Resolved {
                    playbook: Some("card-declined".into()),
                },
                "agent",
                3600,
            );
            if n % 2 == 0 {
                push(EventKind::Closed, "bot", 7 * 86400);
            }
        }
        let case: Case = Case::replay(id, &events).unwrap();
        chunk.cases.push((case, events));
        if chunk.len() >= 20_000 {
            store.import_chunk(std::mem::take(&mut chunk)).unwrap();
        }
        if n % 100_000 == 0 {
            eprintln!("{n} cases ({:.0}s)", started.elapsed().as_secs_f64());
        }
    }
    store.import_chunk(chunk).unwrap();
    store.flush().unwrap();
    drop(store);
    println!(
        "fill: {total} cases ({open} open) in {} in {:.0}s; {} MB on disk",
        dir.display(),
        started.elapsed().as_secs_f64(),
        dir_size(&dir) >> 20
    );
}

fn restart() {
    let dir = PathBuf::from(std::env::var("LOAD_DATA_DIR").expect("LOAD_DATA_DIR"));
    let work = tempfile::tempdir().unwrap();
    let commands = std::env::var_os("LOAD_COMMANDS").is_some();
    let server = spawn_server(
        &dir,
        work.path(),
        if commands {
            Stdio::piped()
        } else {
            Stdio::null()
        },
    );
    let ready = wait_ready(&server);
    let (armed, line) = server
        .sla_loaded
        .recv_timeout(Duration::from_secs(300))
        .expect("no `SLA timers loaded` line");
    let pid = server.child.id();
    std::thread::sleep(Duration::from_millis(300));
    let rss = proc_field(pid, "status", "VmRSS:");
    let hwm = proc_field(pid, "status", "VmHWM:");
    println!(
        "restart: /readyz 200 after {:.0} ms; SLA timers armed after {:.0} ms; RSS {} MB (peak {} MB)",
        ready.as_secs_f64() * 1e3,
        armed.as_secs_f64() * 1e3,
        rss / 1024,
        hwm / 1024,
    );
    println!("  log: {}", line.trim());
    if commands {
        let mut server = server;
        let mut stdin = server.child.stdin.take().unwrap();
        for cmd in ["!queue", "!sla", "!stats", "!queue", "!sla", "!stats"] {
            let t0 = Instant::now();
            writeln!(stdin, "{cmd}").unwrap();
            stdin.flush().unwrap();
            // The bot logs how long each command took.
            let took = server
                .commands
                .recv_timeout(Duration::from_secs(300))
                .expect("no `command done` line");
            println!(
                "  {cmd}: handled in {took} (answer written to the outbox), {:.0} ms from the keyboard",
                t0.elapsed().as_secs_f64() * 1e3
            );
        }
    }
}
