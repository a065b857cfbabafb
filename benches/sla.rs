//! SLA benchmarks: 100,000 open cases with their timers — load time,
//! memory, and how late breaches fire and their alerts are delivered —
//! plus the per-case costs behind them (planning one case, re-planning one
//! after a change, business-time arithmetic).
//!
//! Run with `cargo bench --no-default-features --bench sla`. The lateness
//! run uses the real clock and the real store (durable writes), so it takes
//! about a minute. Figures are printed as `sla:` lines before criterion's.
//!
//! Scenario: 100,000 open P2–P4 cases (the shipped config's policies, with
//! business calendars) are loaded; their deadlines lie well ahead. Then, as
//! if new tickets kept arriving, 2,000 P1 cases whose first-response
//! breaches fall due spread evenly over 20 seconds are added (each through
//! the same hook the bot calls), followed by a burst of 1,000 breaches due
//! at the same instant. Every breach opens an alert and pages the on-call
//! rotation; a platform stub timestamps each alert as it is delivered.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use caseroom::case::{CaseId, Channel, Customer, Event, EventKind, NewCase, Priority};
use caseroom::config::Config;
use caseroom::message::Outgoing;
use caseroom::outbox::Outbox;
use caseroom::platform::{BoxFuture, Platform, SendError};
use caseroom::sla::plan::plan;
use caseroom::sla::timeline::Timeline;
use caseroom::sla::{Clock, Settings, Sla};
use caseroom::store::Store;
use criterion::{Criterion, criterion_group, criterion_main};
use jiff::{SignedDuration, Timestamp};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

const OPEN_CASES: u64 = 100_000;
const SPREAD: u64 = 2_000;
const SPREAD_OVER: SignedDuration = SignedDuration::from_secs(20);
const BURST: u64 = 1_000;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn config() -> Config {
    Config::load(&root().join("config/caseroom.toml")).expect("shipped config loads")
}

/// Resident memory of this process, in bytes.
fn rss() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse::<usize>().ok())
        .map_or(0, |pages| pages * 4096)
}

fn mib(b: usize) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

fn history(
    id: u64,
    priority: Priority,
    opened: Timestamp,
    warned: &[&str],
) -> (CaseId, Vec<Event>) {
    let mut kinds = vec![
        EventKind::Opened(NewCase {
            external_id: format!("bench-{id}"),
            subject: "付款失败".into(),
            body: "我的卡付款一直失败，提示交易被拒绝，订单号 202311050001".into(),
            customer: Customer::default(),
            channel: Channel::Chat,
            priority,
            tags: vec![],
        }),
        EventKind::Triaged {
            playbook: Some("payment-failed".into()),
            confidence: 0.9,
        },
        EventKind::Assigned {
            assignee: format!("@agent{}:example.org", id % 40),
        },
    ];
    for w in warned {
        kinds.push(EventKind::Sla {
            target: "first_response".into(),
            what: format!("warning {w}"),
        });
    }
    let events = kinds
        .into_iter()
        .enumerate()
        .map(|(seq, kind)| Event {
            seq: seq as u32,
            at: opened,
            actor: "bench".into(),
            kind,
            reason: None,
        })
        .collect();
    (CaseId(id), events)
}

/// Records when each alert reaches the "chat server".
#[derive(Default)]
struct Stopwatch {
    delivered: Mutex<HashMap<CaseId, Timestamp>>,
}

impl Platform for Stopwatch {
    fn name(&self) -> &'static str {
        "stopwatch"
    }

    fn send<'a>(
        &'a self,
        msg: &'a Outgoing,
        _thread_root: Option<&'a str>,
        txn_id: &'a str,
    ) -> BoxFuture<'a, Result<String, SendError>> {
        Box::pin(async move {
            if msg.what == "alert"
                && msg.text.starts_with("🚨")
                && let Some(case) = msg.case
            {
                let mut d = self.delivered.lock().unwrap();
                d.entry(case).or_insert_with(Timestamp::now);
            }
            Ok(format!("${txn_id}"))
        })
    }

    fn remove<'a>(
        &'a self,
        _room: &'a str,
        target: &'a str,
        _reason: &'a str,
        _txn_id: &'a str,
    ) -> BoxFuture<'a, Result<String, SendError>> {
        Box::pin(async move { Ok(format!("removed-{target}")) })
    }

    fn run(
        self: Arc<Self>,
        _tx: tokio::sync::mpsc::Sender<caseroom::message::Incoming>,
        _shutdown: tokio_util::sync::CancellationToken,
    ) -> BoxFuture<'static, anyhow::Result<()>> {
        Box::pin(async { Ok(()) })
    }
}

/// p50, p99 and max of lateness samples, in milliseconds.
fn percentiles(mut v: Vec<i64>) -> (i64, i64, i64) {
    v.sort_unstable();
    let at = |q: f64| v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1];
    (at(0.5), at(0.99), *v.last().unwrap())
}

fn report(label: &str, samples: Vec<i64>, expected: usize) {
    let n = samples.len();
    let (p50, p99, max) = percentiles(samples);
    println!(
        "sla: {label}: {n}/{expected} fired · lateness p50 {p50} ms · p99 {p99} ms · max {max} ms"
    );
}

/// Writes `cases` to the store and hands each to the engine, as the bot's
/// hook does for new tickets.
fn add(store: &Store, sla: &Sla, cases: Vec<(CaseId, Vec<Event>)>) {
    let ids: Vec<CaseId> = cases.iter().map(|(id, _)| *id).collect();
    store.import_cases(cases).unwrap();
    for id in ids {
        sla.touch(id);
    }
}

fn hundred_thousand_timers(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config();
    let settings = Settings::from_config(&cfg);
    let store = Store::open(dir.path()).unwrap();
    let now = Timestamp::now();

    // 100,000 open cases on P2..P4, opened in the last 30 minutes: their
    // next deadlines (first-response warnings) are 18 minutes or more away.
    let started = Instant::now();
    let prios = [Priority::P2, Priority::P3, Priority::P4];
    for chunk in (1..=OPEN_CASES).collect::<Vec<_>>().chunks(20_000) {
        let batch = chunk
            .iter()
            .map(|id| {
                let ago = SignedDuration::from_millis((*id as i64 * 7919) % 1_800_000);
                history(*id, prios[(*id % 3) as usize], now - ago, &[])
            })
            .collect();
        store.import_cases(batch).unwrap();
    }
    println!(
        "sla: wrote {OPEN_CASES} open cases in {:.1?}",
        started.elapsed()
    );

    let rt = tokio::runtime::Runtime::new().unwrap();
    let outbox = Outbox::new();
    let platform = Arc::new(Stopwatch::default());
    let sla = Sla::new(
        settings.clone(),
        store.clone(),
        outbox.clone(),
        Clock::system(),
    );
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();

    let before = rss();
    let started = Instant::now();
    let loaded = sla.load().unwrap();
    let load_time = started.elapsed();
    let after = rss();
    let (cases, bytes) = sla.footprint();
    println!(
        "sla: loaded {loaded} cases with timers in {load_time:.1?}; engine state ≈ {:.1} MiB ({} B/case); process RSS grew {:.1} MiB (includes sled's page cache)",
        mib(bytes),
        bytes / cases.max(1),
        mib(after.saturating_sub(before))
    );

    rt.block_on(async {
        outbox.spawn(store.clone(), platform.clone(), shutdown.clone(), &tracker);
        sla.spawn(shutdown.clone(), &tracker);
        sla.idle().await;
    });

    // New P1 tickets: first response due in 15 minutes (wall time), the
    // 50% and 80% warnings already posted. Breaches spread over 20 s from
    // 5 s from now, then a burst of 1,000 due at the same instant.
    let t0 = Timestamp::now() + SignedDuration::from_secs(5);
    let fr = settings.sla.policies[&Priority::P1].first_response.unwrap();
    let mut due: HashMap<CaseId, Timestamp> = HashMap::new();
    let spread: Vec<_> = (0..SPREAD)
        .map(|i| {
            let id = OPEN_CASES + 1 + i;
            let at = t0
                + SignedDuration::from_nanos(
                    (SPREAD_OVER.as_nanos() / SPREAD as i128 * i as i128) as i64,
                );
            due.insert(CaseId(id), at);
            history(id, Priority::P1, at - fr, &["50%", "80%"])
        })
        .collect();
    let burst_at = t0 + SPREAD_OVER + SignedDuration::from_secs(10);
    let burst: Vec<_> = (0..BURST)
        .map(|i| {
            let id = OPEN_CASES + SPREAD + 1 + i;
            due.insert(CaseId(id), burst_at);
            history(id, Priority::P1, burst_at - fr, &["50%", "80%"])
        })
        .collect();
    add(&store, &sla, spread);
    add(&store, &sla, burst);
    let (cases, _) = sla.footprint();
    println!(
        "sla: {cases} cases with timers; waiting for {} breaches…",
        SPREAD + BURST
    );

    rt.block_on(async {
        let until = burst_at + SignedDuration::from_secs(20);
        while Timestamp::now() < until {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if platform.delivered.lock().unwrap().len() as u64 == SPREAD + BURST {
                break;
            }
        }
        sla.idle().await;
    });

    // Fire lateness: when the breach was written (the `breached` event's
    // time) minus its due time. Delivery lateness: when the alert reached
    // the platform minus the due time.
    let delivered = platform.delivered.lock().unwrap().clone();
    let mut fired = (Vec::new(), Vec::new());
    let mut arrived = (Vec::new(), Vec::new());
    for (id, due_at) in &due {
        let in_burst = id.0 > OPEN_CASES + SPREAD;
        let breach = store
            .events(*id)
            .unwrap()
            .into_iter()
            .find(|e| matches!(&e.kind, EventKind::Sla { what, .. } if what == "breached"));
        if let Some(e) = breach {
            let late = e.at.duration_since(*due_at).as_millis() as i64;
            if in_burst { &mut fired.1 } else { &mut fired.0 }.push(late);
        }
        if let Some(t) = delivered.get(id) {
            let late = t.duration_since(*due_at).as_millis() as i64;
            if in_burst {
                &mut arrived.1
            } else {
                &mut arrived.0
            }
            .push(late);
        }
    }
    report(
        "breach written, 2,000 spread over 20 s",
        fired.0,
        SPREAD as usize,
    );
    report(
        "alert delivered, 2,000 spread over 20 s",
        arrived.0,
        SPREAD as usize,
    );
    report(
        "breach written, burst of 1,000 at one instant",
        fired.1,
        BURST as usize,
    );
    report(
        "alert delivered, burst of 1,000 at one instant",
        arrived.1,
        BURST as usize,
    );
    let dup = store
        .events(CaseId(OPEN_CASES + 1))
        .unwrap()
        .iter()
        .filter(|e| matches!(&e.kind, EventKind::Sla { what, .. } if what == "breached"))
        .count();
    assert_eq!(dup, 1, "a breach is written once");

    // Re-planning one case after a change: what the bot's hook costs per
    // handled message (one history read, replay, plan, timer move).
    c.bench_function("sla/touch one case among 100k", |b| {
        let mut i = 0u64;
        b.iter(|| {
            i = i % OPEN_CASES + 1;
            sla.touch(CaseId(i));
        })
    });

    rt.block_on(async {
        shutdown.cancel();
        tracker.close();
        tracker.wait().await;
    });
}

fn planning(c: &mut Criterion) {
    let cfg = config();
    let settings = Settings::from_config(&cfg);
    let opened: Timestamp = "2026-03-06T16:00:00+08:00".parse().unwrap();
    let (id, mut events) = history(1, Priority::P3, opened, &[]);
    // A lived-in case: wait, resume, a customer message, a reply.
    for (i, kind) in [
        EventKind::WaitingOnCustomer,
        EventKind::Resumed,
        EventKind::AgentMessage { text: "hi".into() },
        EventKind::CustomerMessage {
            text: "still broken".into(),
        },
    ]
    .into_iter()
    .enumerate()
    {
        events.push(Event {
            seq: events.len() as u32,
            at: opened + SignedDuration::from_hours(i as i64 + 1),
            actor: "bench".into(),
            kind,
            reason: None,
        });
    }
    let now = opened + SignedDuration::from_hours(30);
    c.bench_function("sla/replay and plan one case (business time)", |b| {
        b.iter(|| {
            let tl = Timeline::build(id, std::hint::black_box(&events)).unwrap();
            plan(&tl, &settings, now)
        })
    });
    let cal = &settings.sla.calendars["default"];
    let counting = caseroom::sla::calendar::Counting::Business(cal);
    c.bench_function("sla/business due time, 3d target across weekends", |b| {
        b.iter(|| counting.add(std::hint::black_box(opened), SignedDuration::from_hours(72)))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(5));
    targets = planning, hundred_thousand_timers
}
criterion_main!(benches);
