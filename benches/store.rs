//! Store benchmarks: durable appends with 1 and 16 concurrent writers, and
//! opening a store that holds 1,000,000 cases.
//!
//! Run with `cargo bench --no-default-features --bench store`. The 1M-case
//! store is built once under `target/bench-data/` and reused.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use caseroom::case::{CaseId, Channel, Customer, Event, EventKind, NewCase, Priority};
use caseroom::store::Store;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use jiff::Timestamp;

fn new_case(ext: String) -> NewCase {
    NewCase {
        external_id: ext,
        subject: "付款失败".into(),
        body: "我的卡付款一直失败，提示交易被拒绝，订单号 202311050001".into(),
        customer: Customer::default(),
        channel: Channel::Chat,
        priority: Priority::P2,
        tags: vec![],
    }
}

fn durable_appends(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut group = c.benchmark_group("durable_append");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    for writers in [1usize, 16] {
        // One case per writer, so writers do not contend on a case.
        let ids: Vec<CaseId> = (0..writers)
            .map(|w| {
                store
                    .open_case(
                        new_case(format!("bench-{writers}-{w}")),
                        "bench",
                        Timestamp::now(),
                    )
                    .unwrap()
                    .case
                    .id
            })
            .collect();
        let per_writer = 64;
        group.throughput(Throughput::Elements((writers * per_writer) as u64));
        group.bench_function(format!("{writers}_writers"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    std::thread::scope(|s| {
                        for id in &ids {
                            let store = store.clone();
                            s.spawn(move || {
                                for i in 0..per_writer {
                                    store
                                        .append(
                                            *id,
                                            "bench",
                                            EventKind::Note {
                                                text: format!("note {i}"),
                                            },
                                            None,
                                            Timestamp::now(),
                                        )
                                        .unwrap();
                                }
                            });
                        }
                    });
                    total += start.elapsed();
                }
                total
            })
        });
    }
    group.finish();
}

fn million_case_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join("bench-data/store-1m");
    let done = dir.join("READY");
    if done.exists() {
        return dir;
    }
    let _ = std::fs::remove_dir_all(&dir);
    let store = Store::open(&dir).unwrap();
    let at = Timestamp::now();
    let chunk = 50_000u64;
    for start in (1..=1_000_000u64).step_by(chunk as usize) {
        let batch = (start..start + chunk)
            .map(|n| {
                let opened = Event {
                    seq: 0,
                    at,
                    actor: "bench".into(),
                    kind: EventKind::Opened(new_case(format!("T-{n}"))),
                    reason: None,
                };
                let assigned = Event {
                    seq: 1,
                    at,
                    actor: "bench".into(),
                    kind: EventKind::Assigned {
                        assignee: format!("agent{}", n % 40),
                    },
                    reason: None,
                };
                (CaseId(n), vec![opened, assigned])
            })
            .collect();
        store.import_cases(batch).unwrap();
        eprintln!("built {} cases", start + chunk - 1);
    }
    store.flush().unwrap();
    drop(store);
    std::fs::write(&done, b"").unwrap();
    dir
}

fn open_million(c: &mut Criterion) {
    let dir = million_case_dir();
    let mut group = c.benchmark_group("open");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(30));
    group.bench_function("1m_cases_ready", |b| {
        b.iter(|| {
            let store = Store::open(&dir).unwrap();
            assert_eq!(store.case_count(), 1_000_000);
            // Ready means it can serve: read a case and look one up by ticket id.
            assert!(store.case(CaseId(999_999)).unwrap().is_some());
            assert!(store.case_by_external("T-123456").unwrap().is_some());
        })
    });
    group.finish();
}

criterion_group!(benches, durable_appends, open_million);
criterion_main!(benches);
