//! Helpers shared by the integration tests.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `caseroom` binary built for these tests.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_caseroom"))
}

/// The repository root (where `config/` and `playbooks/` live).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `caseroom --data-dir DIR ARGS...` from the repository root.
pub fn caseroom(data_dir: &Path, args: &[&str]) -> Output {
    Command::new(bin())
        .current_dir(root())
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("caseroom runs")
}

/// Like [`caseroom`], but insists on success and returns stdout.
pub fn caseroom_ok(data_dir: &Path, args: &[&str]) -> String {
    let out = caseroom(data_dir, args);
    assert!(
        out.status.success(),
        "caseroom {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};

use caseroom::bot::Bot;
use caseroom::config::Config;
use caseroom::http::signature::sign;
use caseroom::message::{Incoming, IncomingKind};
use caseroom::outbox::Outbox;
use caseroom::platform::fake::{FakePlatform, Sent};
use caseroom::playbook::{Engine, SuggestOptions};
use caseroom::store::Store;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub const TEAM: &str = "!team:test";
pub const INTAKE: &str = "!intake:test";
pub const ONCALL: &str = "!oncall:test";
pub const ALICE: &str = "@alice:test";
pub const BOB: &str = "@bob:test";
pub const LEAD: &str = "@lead:test";
pub const STRANGER: &str = "@mallory:test";

/// The shipped config with test rooms and roles.
pub fn test_config(data_dir: &Path) -> Config {
    let src = std::fs::read_to_string(root().join("config/caseroom.toml")).unwrap();
    let src = src
        .replace("team = \"team\"", &format!("team = \"{TEAM}\""))
        .replace("intake = [\"intake\"]", &format!("intake = [\"{INTAKE}\"]"))
        .replace("oncall = \"oncall\"", &format!("oncall = \"{ONCALL}\""))
        .replace(
            "agent = [\"local\"]",
            &format!("agent = [\"{ALICE}\", \"{BOB}\"]"),
        )
        .replace("lead = [\"local\"]", &format!("lead = [\"{LEAD}\"]"))
        .replace("oncall = [\"local\"]", "oncall = []")
        .replace("admin = [\"local\"]", "admin = []");
    let mut cfg = Config::parse(Path::new("test.toml"), &src, &|_| None).unwrap();
    cfg.data_dir = data_dir.to_owned();
    cfg.suggest.playbooks_dir = root().join("playbooks");
    cfg
}

/// The engine built from the shipped playbooks, once per test process.
pub fn engine() -> Arc<Engine> {
    static ENGINE: OnceLock<Arc<Engine>> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            let set = caseroom::playbook::load_dir(&root().join("playbooks"))
                .expect("shipped playbooks load");
            Arc::new(Engine::build(
                Arc::new(set),
                &[],
                &SuggestOptions::default(),
            ))
        })
        .clone()
}

/// The bot core on a fake platform, with its outbox running.
pub struct Harness {
    pub bot: Bot,
    pub fake: Arc<FakePlatform>,
    pub store: Store,
    pub shutdown: CancellationToken,
    tracker: TaskTracker,
    next: AtomicU64,
}

static HARNESS_SEQ: AtomicU64 = AtomicU64::new(0);

impl Harness {
    pub fn start(data_dir: &Path) -> Harness {
        Harness::start_on(data_dir, Arc::new(FakePlatform::new()))
    }

    /// Starts on an existing fake server (to simulate a bot restart).
    pub fn start_on(data_dir: &Path, fake: Arc<FakePlatform>) -> Harness {
        Harness::start_with(data_dir, fake, |_| {})
    }

    /// Starts with the test config changed by `tweak` (e.g. `[outbound]`).
    pub fn start_with(
        data_dir: &Path,
        fake: Arc<FakePlatform>,
        tweak: impl FnOnce(&mut Config),
    ) -> Harness {
        let store = Store::open(data_dir).unwrap();
        let shared = Arc::new(RwLock::new(engine()));
        let outbox = Outbox::new();
        let mut config = test_config(data_dir);
        tweak(&mut config);
        let bot = Bot::new(config, store.clone(), shared, outbox.clone(), "fake");
        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        outbox.spawn(store.clone(), fake.clone(), shutdown.clone(), &tracker);
        bot.spawn_outbound(shutdown.clone(), &tracker).unwrap();
        outbox.wake();
        let base = HARNESS_SEQ.fetch_add(1, Ordering::Relaxed) * 1_000_000;
        Harness {
            bot,
            fake,
            store,
            shutdown,
            tracker,
            next: AtomicU64::new(base),
        }
    }

    fn event_id(&self) -> String {
        format!(
            "$ev{}-{}",
            std::process::id(),
            self.next.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// `sender` writes `text` in `room` (in a thread when `thread` is set);
    /// returns the event id.
    pub fn say(&self, room: &str, sender: &str, text: &str, thread: Option<&str>) -> String {
        let id = self.event_id();
        self.deliver(&Incoming {
            room: room.into(),
            sender: sender.into(),
            groups: Vec::new(),
            event_id: id.clone(),
            kind: IncomingKind::Message {
                text: text.into(),
                thread_root: thread.map(str::to_owned),
            },
            reply_handle: None,
        });
        id
    }

    /// Hands an event to the bot, as an adapter would.
    pub fn deliver(&self, msg: &Incoming) {
        self.bot.handle(msg).expect("handle");
    }

    /// Waits until the outbox is empty.
    pub async fn settle(&self) {
        for _ in 0..400 {
            if self.store.pending_outbox().unwrap().is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "outbox did not drain: {:?}",
            self.store.pending_outbox().unwrap()
        );
    }

    pub fn sent(&self) -> Vec<Sent> {
        self.fake.sent()
    }

    /// The last message the bot sent.
    pub fn last(&self) -> Sent {
        self.sent().last().cloned().expect("bot sent something")
    }

    /// The root message id of case `id` (e.g. "C-1").
    pub fn root(&self, id: &str) -> String {
        let case: caseroom::case::CaseId = id.parse().unwrap();
        self.store
            .posted(&caseroom::message::root_key(case))
            .unwrap()
            .expect("root delivered")
    }

    /// Stops the outbox (as a bot shutdown would).
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

// ---------------------------------------------------------------------------
// The running binary over HTTP.

/// The webhook secret the binary tests export as `CASEROOM_WEBHOOK_SECRET`.
pub const WEBHOOK_SECRET: &str = "crash-test-secret";

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The shipped config with the webhook on `port` (metrics on `mport`) and
/// the data dir in `dir`.
pub fn webhook_config(dir: &Path, port: u16, mport: u16) -> String {
    let src = std::fs::read_to_string(root().join("config/caseroom.toml")).unwrap();
    src.replace(
        "data_dir = \"data\"",
        &format!("data_dir = \"{}\"", dir.join("data").display()),
    )
    .replace(
        "enabled = false\n# Address the webhook",
        "enabled = true\n# Address the webhook",
    )
    .replace(
        "listen = \"127.0.0.1:8080\"",
        &format!("listen = \"127.0.0.1:{port}\""),
    )
    .replace(
        "metrics_listen = \"127.0.0.1:9090\"",
        &format!("metrics_listen = \"127.0.0.1:{mport}\""),
    )
}

/// One HTTP/1.1 request on a fresh connection: (status, raw response).
pub async fn http(addr: SocketAddr, req: String) -> Option<(u16, String)> {
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    s.write_all(req.as_bytes()).await.ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).await.ok()?;
    let status = out.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, out))
}

pub async fn wait_healthy(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Some((200, _)) = http(
            addr,
            format!("GET /readyz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
        )
        .await
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("caseroom did not become ready on {addr}");
}

pub async fn post_ticket(addr: SocketAddr, ext: &str) -> Option<(u16, String)> {
    let body = serde_json::json!({"external_id": ext, "body": "付款失败，提示交易被拒绝", "channel": "web"}).to_string();
    let sig = sign(
        WEBHOOK_SECRET,
        jiff::Timestamp::now().as_second(),
        body.as_bytes(),
    );
    let req = format!(
        "POST /v1/tickets HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nX-Caseroom-Signature: {sig}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    http(addr, req).await
}

/// SLA and on-call for the platform tests: P1 first response in 10 minutes
/// of wall time (80% warning); a breach pages the rotation (`primary`),
/// then `second` 5 minutes later, twice over.
#[cfg(any(feature = "slack", feature = "discord"))]
pub fn paging_sla_toml(primary: &str, second: &str) -> String {
    format!(
        r#"
[sla.calendars.default]
timezone = "Asia/Shanghai"
hours = {{ mon = "09:00-18:00", tue = "09:00-18:00", wed = "09:00-18:00", thu = "09:00-18:00", fri = "09:00-18:00" }}

[sla.policies.p1]
business_time = false
first_response = "10m"
resolution = "4h"
warnings = ["80%"]
escalation = "page"

[oncall.rotations.primary]
timezone = "Asia/Shanghai"
members = ["{primary}"]
start = "2026-03-02T09:00"
shift = "1d"

[oncall.escalations.page]
repeat = 2
repeat_after = "10m"
remind_every = "30m"

[[oncall.escalations.page.steps]]
target = "rotation:primary"

[[oncall.escalations.page.steps]]
delay = "5m"
target = "user:{second}"
"#
    )
}
