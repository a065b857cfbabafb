//! Load test of the ticket webhook on loopback, with durability on.
//!
//! Starts the real HTTP server (axum on 127.0.0.1), the bot core with the
//! shipped playbooks, a sled store in a temp dir and the outbox delivering to
//! an in-memory platform, then drives it with keep-alive HTTP/1.1 clients
//! sending signed tickets with unique external ids. Prints sustained
//! tickets/s and p50/p99 latency.
//!
//! `cargo bench --no-default-features --bench webhook_load` (env:
//! `LOAD_SECONDS`, default 10; `LOAD_CONNECTIONS`, default 32;
//! `LOAD_OUTBOUND=fast|slow|down` also delivers every `case.opened` event to
//! a helpdesk receiver on loopback that answers at once, after 500 ms, or
//! not at all, and reports the events delivered per second).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use caseroom::bot::Bot;
use caseroom::config::{Config, Secret};
use caseroom::http::{AppState, serve, signature::sign};
use caseroom::outbox::Outbox;
use caseroom::platform::fake::FakePlatform;
use caseroom::playbook::{Engine, SuggestOptions};
use caseroom::store::Store;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

const SECRET: &str = "bench-secret";

fn main() {
    // criterion-style benches get `--bench`; this one takes no arguments.
    let seconds: u64 = std::env::var("LOAD_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let conns: usize = std::env::var("LOAD_CONNECTIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(32);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(seconds, conns));
}

async fn run(seconds: u64, conns: usize) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let src = std::fs::read_to_string(root.join("config/caseroom.toml")).unwrap();
    let mut config = Config::parse(Path::new("caseroom.toml"), &src, &|_| None).unwrap();
    config.data_dir = dir.path().to_owned();
    config.suggest.playbooks_dir = root.join("playbooks");
    config.http.enabled = true;
    config.http.secrets = vec![Secret::new("BENCH", SECRET)];
    config.http.rate_limit_per_minute = u32::MAX;
    let store = Store::open(dir.path()).unwrap();
    let set = caseroom::playbook::load_dir(&config.suggest.playbooks_dir).unwrap();
    let engine = Arc::new(Engine::build(
        Arc::new(set),
        &[],
        &SuggestOptions::default(),
    ));
    let outbound = std::env::var("LOAD_OUTBOUND").ok();
    let receiver = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    if let Some(mode) = &outbound {
        let url = helpdesk(mode, receiver.clone()).await;
        config.outbound = caseroom::config::OutboundConfig {
            enabled: true,
            url,
            secrets: vec![Secret::new("BENCH_OUT", SECRET)],
            timeout: Duration::from_secs(2),
            ..Default::default()
        };
    }
    let outbox = Outbox::new();
    let http = config.http.clone();
    let bot = Bot::new(
        config,
        store.clone(),
        Arc::new(RwLock::new(engine)),
        outbox.clone(),
        "fake",
    );
    let token = CancellationToken::new();
    let tracker = TaskTracker::new();
    let fake = Arc::new(FakePlatform::new());
    if std::env::var_os("LOAD_NO_OUTBOX").is_none() {
        outbox.spawn(store.clone(), fake.clone(), token.clone(), &tracker);
    }
    bot.spawn_outbound(token.clone(), &tracker).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = AppState::new(bot, http, Arc::new(AtomicBool::new(true)));
    let server = tokio::spawn(serve(listener, state, token.clone()));

    eprintln!(
        "webhook load: {conns} connections for {seconds}s against {addr} (durable sled store)"
    );
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut clients = Vec::new();
    for c in 0..conns {
        clients.push(tokio::spawn(client(addr, c, deadline)));
    }
    let mut lat: Vec<Duration> = Vec::new();
    let mut errors = 0usize;
    for c in clients {
        let (l, e) = c.await.unwrap();
        lat.extend(l);
        errors += e;
    }
    let elapsed = seconds as f64;
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    println!(
        "webhook_load: {} tickets in {seconds}s = {:.0} tickets/s; latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; errors {errors}; cases stored {}",
        lat.len(),
        lat.len() as f64 / elapsed,
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        lat.last().unwrap().as_secs_f64() * 1e3,
        store.case_count(),
    );
    if let Some(mode) = &outbound {
        // Let delivery catch up for a while, then report.
        let start = Instant::now();
        let total = store.case_count() as usize;
        while receiver.load(std::sync::atomic::Ordering::Relaxed) < total
            && start.elapsed() < Duration::from_secs(seconds)
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let got = receiver.load(std::sync::atomic::Ordering::Relaxed);
        println!(
            "outbound ({mode} helpdesk): {got} of {total} case.opened events accepted {:.1}s after the load ({:.0} events/s over load + catch-up); {} still queued",
            start.elapsed().as_secs_f64(),
            got as f64 / (elapsed + start.elapsed().as_secs_f64()),
            store.outbound_from(0).map(|v| v.len()).unwrap_or(0),
        );
    }
    token.cancel();
    let _ = server.await;
    tracker.close();
    tracker.wait().await;
}

/// One keep-alive connection sending tickets until `deadline`.
async fn client(addr: SocketAddr, c: usize, deadline: Instant) -> (Vec<Duration>, usize) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    let mut lat = Vec::new();
    let mut errors = 0;
    let mut buf = vec![0u8; 4096];
    let mut i = 0u64;
    let bodies = [
        "我的卡付款一直失败，提示交易被拒绝",
        "I was charged twice for order 20231105, please refund",
        "转账显示处理中，对方还没收到钱",
        "My account is locked after too many password attempts",
    ];
    while Instant::now() < deadline {
        i += 1;
        let body = serde_json::json!({
            "external_id": format!("load-{c}-{i}"),
            "body": bodies[(i as usize + c) % bodies.len()],
            "customer": {"name": "Load Test"},
            "channel": "web",
        })
        .to_string();
        let sig = sign(SECRET, jiff::Timestamp::now().as_second(), body.as_bytes());
        let req = format!(
            "POST /v1/tickets HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nX-Caseroom-Signature: {sig}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let t0 = Instant::now();
        s.write_all(req.as_bytes()).await.unwrap();
        // Read one response: headers, then Content-Length bytes of body.
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
            got.extend_from_slice(&buf[..n]);
        }
        lat.push(t0.elapsed());
        if !got.starts_with(b"HTTP/1.1 201") {
            errors += 1;
        }
    }
    (lat, errors)
}

/// A helpdesk on loopback that counts accepted events: `fast` answers at
/// once, `slow` after 500 ms, `down` is a closed port.
async fn helpdesk(mode: &str, count: Arc<std::sync::atomic::AtomicUsize>) -> String {
    if mode == "down" {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        return format!("http://{}/events", l.local_addr().unwrap());
    }
    let delay = if mode == "slow" {
        Duration::from_millis(500)
    } else {
        Duration::ZERO
    };
    let app = axum::Router::new().route(
        "/events",
        axum::routing::post(move || {
            let count = count.clone();
            async move {
                tokio::time::sleep(delay).await;
                count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/events", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    url
}
