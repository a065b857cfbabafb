//! Fuzzing with long proptest runs: the chat command parser, ticket and
//! customer-message JSON (through the webhook router), the signature
//! header, playbook TOML, config TOML, reply templates and redaction. Every
//! input must end in a value or an error: no panic, no hang (each case is
//! timed against [`CASE_LIMIT`]).
//!
//! `cargo test` runs a short run (`CASEROOM_FUZZ_CASES`, default 64 per
//! target). A long run, e.g. ten minutes per target:
//!
//! ```sh
//! CASEROOM_FUZZ_SECONDS=600 nice -n 19 cargo test --release --no-default-features \
//!     --test integration fuzz:: -- --nocapture --test-threads 1
//! ```
//!
//! `CASEROOM_FUZZ_SEED` (a number) repeats a run. A failing case is shrunk
//! and printed; it becomes a regression test named after the bug.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use caseroom::config::{Config, Secret};
use caseroom::http::signature::{sign, verify};
use caseroom::http::{AppState, router};
use caseroom::playbook::{Engine, Lang, SuggestOptions, load_dir};
use caseroom::redact::redact;
use proptest::prelude::*;
use proptest::test_runner::{Config as RunConfig, RngAlgorithm, TestRng, TestRunner};
use tower::ServiceExt;

use super::util::{Harness, root};

/// Longest time one input may take before it counts as a hang. Generous:
/// a debug build on a busy 2-core machine once took 2.3 s to load a
/// playbook whose regexes compile in milliseconds when the machine is idle.
const CASE_LIMIT: Duration = Duration::from_secs(10);

/// Runs `test` on inputs from `strategy`: `CASEROOM_FUZZ_CASES` inputs
/// (default 64), or as many as fit in `CASEROOM_FUZZ_SECONDS`. Prints the
/// count and rate.
fn fuzz<S: Strategy>(name: &str, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S::Value: std::fmt::Debug,
{
    let seconds: Option<u64> = std::env::var("CASEROOM_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok());
    let cases: u32 = std::env::var("CASEROOM_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(64);
    let seed: u64 = std::env::var("CASEROOM_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| jiff::Timestamp::now().as_nanosecond() as u64);
    let started = Instant::now();
    let mut executed = 0u64;
    let mut round = 0u64;
    loop {
        // Rounds of fresh inputs until the time is up (or one round).
        let per_round = if seconds.is_some() { 2_000 } else { cases };
        let mut seed_bytes = [0u8; 32];
        seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
        seed_bytes[8..16].copy_from_slice(&round.to_le_bytes());
        let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes);
        let config = RunConfig {
            cases: per_round,
            failure_persistence: None,
            max_shrink_iters: 4096,
            ..RunConfig::default()
        };
        let mut runner = TestRunner::new_with_rng(config, rng);
        let result = runner.run(&strategy, |input| {
            let t = Instant::now();
            test(input)?;
            let took = t.elapsed();
            prop_assert!(took < CASE_LIMIT, "took {took:?}");
            Ok(())
        });
        if let Err(e) = result {
            panic!("fuzz {name} (CASEROOM_FUZZ_SEED={seed}, round {round}): {e}");
        }
        executed += u64::from(per_round);
        round += 1;
        match seconds {
            Some(s) if started.elapsed() < Duration::from_secs(s) => continue,
            _ => break,
        }
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "fuzz {name}: {executed} inputs in {secs:.1} s ({:.0}/s), seed {seed}",
        executed as f64 / secs
    );
}

/// Random text that is likely to hit the interesting paths: pieces of the
/// real syntax mixed with arbitrary characters.
fn text_from(pieces: &'static [&'static str], max: usize) -> impl Strategy<Value = String> + Clone {
    prop::collection::vec(
        prop_oneof![
            3 => prop::sample::select(pieces).prop_map(str::to_owned),
            1 => "\\PC{0,6}",
            1 => any::<char>().prop_map(String::from),
            1 => "[0-9]{1,20}",
            1 => prop::sample::select(&[" ", "  ", "\n", "\t", ":", "@", "#", "-", "\u{3000}", "，"][..])
                .prop_map(str::to_owned),
        ],
        0..max,
    )
    .prop_map(|v| v.concat())
}

const COMMAND_PIECES: &[&str] = &[
    "!",
    "!!",
    "！",
    "escalate",
    "claim",
    "assign",
    "unassign",
    "priority",
    "prio",
    "tag",
    "note",
    "suggest",
    "use",
    "wait",
    "resume",
    "resolve",
    "reopen",
    "help",
    "queue",
    "case",
    "stats",
    "reassign",
    "sla",
    "oncall",
    "ack",
    "snooze",
    "C-1",
    "C-",
    "c-99999999999999999999",
    "A-3",
    "@alice:test",
    "@",
    "p1",
    "p4",
    "p0",
    "p9",
    "24h",
    "7d",
    "30m",
    "0m",
    "999999999h",
    "-5m",
    "refund",
    "at-risk",
    "breached",
    "--status",
    "assigned",
    "new",
    "我的卡付款失败了",
    "1h 30m",
];

#[test]
fn fuzz_chat_command_parser() {
    fuzz(
        "command parser",
        (
            text_from(COMMAND_PIECES, 12),
            prop::sample::select(&["!", "/", "caseroom:", "！"][..]),
        ),
        |(text, prefix)| {
            if let Some(Ok(cmd)) = caseroom::command::parse(&text, prefix) {
                // A parsed command has a name and parses the same again.
                let name = cmd.name();
                prop_assert!(!name.is_empty());
            }
            Ok(())
        },
    );
}

const SIGNATURE_PIECES: &[&str] = &[
    "t=",
    "v1=",
    "v0=",
    ",",
    ", ",
    "=",
    "1764748800",
    "-1",
    "9223372036854775807",
    "99999999999999999999",
    "deadbeef",
    "0",
    "00",
    "abc",
    "t",
    "v1",
    " ",
];

#[test]
fn fuzz_signature_header() {
    let secrets = vec![Secret::new("S", "fuzz-secret")];
    fuzz(
        "signature header",
        (
            text_from(SIGNATURE_PIECES, 10),
            prop::collection::vec(any::<u8>(), 0..64),
            any::<i64>(),
            any::<bool>(),
        ),
        |(header, body, now, real)| {
            // Half the time, a real signature with random damage around it.
            let header = if real {
                format!(
                    "{header}{}",
                    sign("fuzz-secret", now.clamp(-1 << 40, 1 << 40), &body)
                )
            } else {
                header
            };
            let _ = verify(Some(&header), &body, &secrets, now);
            Ok(())
        },
    );
}

/// Mutations of a valid TOML document, line by line and byte by byte.
#[derive(Debug, Clone)]
enum Mutation {
    DeleteLine(usize),
    DuplicateLine(usize),
    ReplaceValue(usize, String),
    Insert(usize, String),
    Truncate(usize),
}

fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    let junk = text_from(
        &[
            "=",
            "\"",
            "'",
            "[",
            "]",
            "[[",
            "]]",
            "{",
            "}",
            "\"\"\"",
            "true",
            "-1",
            "1e999",
            "nan",
            "inf",
            "0x",
            "\"(\"",
            "'(?P<value>'",
            "\"25:99-00:00\"",
            "\"Mars/Olympus\"",
            "\"9999999999d\"",
            "\"{{\"",
            "\"{% if %}\"",
            "\"p7\"",
            "\"\\u0000\"",
            "1.5",
            "\"\"",
            "[]",
            "{}",
            "\"-5m\"",
            "\"100%\"",
            "\"0%\"",
            "\"150%\"",
        ],
        6,
    );
    prop::collection::vec(
        prop_oneof![
            any::<usize>().prop_map(Mutation::DeleteLine),
            any::<usize>().prop_map(Mutation::DuplicateLine),
            (any::<usize>(), junk.clone()).prop_map(|(l, v)| Mutation::ReplaceValue(l, v)),
            (any::<usize>(), junk).prop_map(|(l, v)| Mutation::Insert(l, v)),
            any::<usize>().prop_map(Mutation::Truncate),
        ],
        1..6,
    )
}

fn mutate(src: &str, muts: &[Mutation]) -> String {
    let mut lines: Vec<String> = src.lines().map(str::to_owned).collect();
    for m in muts {
        if lines.is_empty() {
            break;
        }
        let n = lines.len();
        match m {
            Mutation::DeleteLine(i) => {
                lines.remove(i % n);
            }
            Mutation::DuplicateLine(i) => {
                let l = lines[i % n].clone();
                lines.insert(i % n, l);
            }
            Mutation::ReplaceValue(i, v) => {
                let l = &mut lines[i % n];
                if let Some((key, _)) = l.split_once('=') {
                    *l = format!("{key}= {v}");
                } else {
                    *l = v.clone();
                }
            }
            Mutation::Insert(i, v) => lines.insert(i % n, v.clone()),
            Mutation::Truncate(i) => {
                let mut s = lines.join("\n");
                let mut at = i % (s.len() + 1);
                while !s.is_char_boundary(at) {
                    at -= 1;
                }
                s.truncate(at);
                lines = s.lines().map(str::to_owned).collect();
            }
        }
    }
    lines.join("\n")
}

#[test]
fn fuzz_config_toml() {
    let shipped = std::fs::read_to_string(root().join("config/caseroom.toml")).unwrap();
    let matrix = std::fs::read_to_string(root().join("config/matrix.example.toml")).unwrap();
    fuzz(
        "config TOML",
        (mutations(), any::<bool>(), any::<bool>()),
        |(muts, use_matrix, env_set)| {
            let src = mutate(if use_matrix { &matrix } else { &shipped }, &muts);
            let env = move |_: &str| env_set.then(|| "fuzz-secret".to_owned());
            if let Err(errors) = Config::parse(Path::new("fuzz.toml"), &src, &env) {
                prop_assert!(!errors.0.is_empty());
                // Every error points at a line that exists.
                let lines = src.lines().count().max(1);
                for e in &errors.0 {
                    if let Some(l) = e.line {
                        prop_assert!(l >= 1 && l <= lines + 1, "line {} of {}: {}", l, lines, e);
                    }
                }
            }
            Ok(())
        },
    );
}

#[test]
fn fuzz_playbook_toml() {
    let dir = tempfile::tempdir().unwrap();
    let shipped: Vec<(String, String)> = ["refund", "payment-failed", "out-of-scope"]
        .iter()
        .map(|n| {
            let src = std::fs::read_to_string(root().join(format!("playbooks/{n}.toml"))).unwrap();
            (format!("{n}.toml"), src)
        })
        .collect();
    fuzz(
        "playbook TOML",
        (0..shipped.len(), mutations()),
        |(which, muts)| {
            let (name, src) = &shipped[which];
            for entry in std::fs::read_dir(dir.path()).unwrap() {
                std::fs::remove_file(entry.unwrap().path()).unwrap();
            }
            std::fs::write(dir.path().join(name), mutate(src, &muts)).unwrap();
            if let Err(errors) = load_dir(dir.path()) {
                prop_assert!(!errors.is_empty());
            }
            Ok(())
        },
    );
}

const TEMPLATE_PIECES: &[&str] = &[
    "{{",
    "}}",
    "{%",
    "%}",
    "{#",
    "#}",
    " if ",
    " endif ",
    " for x in ",
    " endfor ",
    " else ",
    "customer_name",
    "order_id",
    "amount",
    "currency",
    "card_last4",
    " | default(\"x\")",
    " | upper",
    " | length",
    " | int",
    " | round",
    " ~ ",
    " + ",
    " * 99999999 ",
    "range(",
    "range(999999999)",
    ")",
    "(",
    "\"",
    "'",
    "loop.index",
    " set y = ",
    " macro m() ",
    " endmacro ",
    "m()",
    "debug()",
    "namespace()",
    "dict(a=1)",
    "[1,2]",
    "1/0",
    "-",
    ".",
    "您好",
    "\n",
];

#[test]
fn fuzz_reply_templates() {
    let dir = tempfile::tempdir().unwrap();
    let base = "id = \"fuzz\"\npriority = \"p3\"\ndescription = \"fuzz\"\n\
                phrases = [\"fuzz\"]\n[title]\nzh = \"模糊\"\nen = \"Fuzz\"\n\
                [examples]\nzh = [\"模糊测试\"]\nen = [\"fuzz test\"]\n\
                [checklist]\nzh = [\"查\"]\nen = [\"check\"]\n";
    let fields = prop::collection::btree_map(
        prop::sample::select(&["order_id", "amount", "currency", "card_last4", "email"][..])
            .prop_map(str::to_owned),
        "\\PC{0,12}",
        0..4,
    );
    fuzz(
        "reply templates",
        (
            text_from(TEMPLATE_PIECES, 16),
            fields,
            prop::option::of("\\PC{0,8}"),
        ),
        |(template, fields, name): (String, BTreeMap<String, String>, Option<String>)| {
            let toml_str = toml::Value::String(template.clone()).to_string();
            let src = format!("{base}[reply]\nzh = {toml_str}\nen = {toml_str}\n");
            std::fs::write(dir.path().join("fuzz.toml"), src).unwrap();
            let Ok(set) = load_dir(dir.path()) else {
                return Ok(());
            };
            let engine = Engine::build(Arc::new(set), &[], &SuggestOptions::default());
            for lang in [Lang::Zh, Lang::En] {
                let _ = engine.render_reply("fuzz", lang, &fields, name.as_deref());
            }
            Ok(())
        },
    );
}

#[test]
fn fuzz_redaction() {
    const PIECES: &[&str] = &[
        "4111",
        "1111",
        "5500",
        "0000",
        "0004",
        "6222",
        "０",
        "４",
        "１",
        " ",
        "-",
        ".",
        "/",
        "_",
        "\n",
        "\u{3000}",
        "－",
        "．",
        "CVV",
        "cvc",
        "安全码",
        "校验码",
        "密码",
        "password",
        "PIN",
        "验证码",
        "code",
        "is",
        "是",
        "：",
        ":",
        "卡号",
        "card number",
        "+86",
        "[card ****1111]",
        "[redacted]",
        "error code",
        "错误码",
        "订单",
        "2024-03-12",
        "¥1,299.00",
    ];
    fuzz("redaction", text_from(PIECES, 40), |text| {
        let once = redact(&text).into_owned();
        // Masks only shrink digit runs: never more digits out than in.
        let digits = |s: &str| s.chars().filter(char::is_ascii_digit).count();
        let wide = text.chars().filter(|c| ('０'..='９').contains(c)).count();
        prop_assert!(digits(&once) <= digits(&text) + wide + 4 * once.matches("[card").count());
        Ok(())
    });
    // Linear time on large input: 1 MB of digits and separators.
    let big: String = "4111 1111-1111.1111 ".repeat(50_000);
    let t = Instant::now();
    let out = redact(&big);
    assert!(out.contains("[card ****1111]"));
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
}

/// JSON bodies shaped like tickets and customer messages, with wrong
/// types, missing and extra fields, huge and odd values.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::{Value, json};
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        "\\PC{0,40}".prop_map(Value::String),
        prop::sample::select(
            &[
                "zh",
                "en",
                "fr",
                "",
                "email",
                "chat",
                "web",
                "phone",
                "p1",
                "p4",
                "p9",
                "2026-11-26T10:00:00Z",
                "not a date",
                "卡号 4111 1111 1111 1111",
            ][..]
        )
        .prop_map(|s| Value::String(s.to_owned())),
    ];
    let keys = prop::sample::select(
        &[
            "external_id",
            "subject",
            "body",
            "customer",
            "channel",
            "priority",
            "created_at",
            "metadata",
            "name",
            "email",
            "language",
            "id",
            "x",
        ][..],
    );
    leaf.prop_recursive(3, 24, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(keys.clone().prop_map(str::to_owned), inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

#[test]
fn fuzz_ticket_and_customer_message_json() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let h = rt.block_on(async { Harness::start(dir.path()) });
    let mut cfg = super::util::test_config(Path::new("unused")).http;
    cfg.enabled = true;
    cfg.secrets = vec![Secret::new("S", "fuzz-secret")];
    cfg.rate_limit_per_minute = u32::MAX;
    let app = router(AppState::new(
        h.bot.clone(),
        cfg,
        Arc::new(AtomicBool::new(true)),
    ));
    let body = prop_oneof![
        json_value().prop_map(|v| v.to_string().into_bytes()),
        // Valid-looking tickets, cut or damaged.
        (
            "\\PC{1,20}",
            "\\PC{0,200}",
            any::<usize>(),
            prop::collection::vec(any::<u8>(), 0..4)
        )
            .prop_map(|(ext, text, cut, junk)| {
                let mut b = serde_json::json!({"external_id": ext, "body": text})
                    .to_string()
                    .into_bytes();
                let at = cut % (b.len() + 1);
                b.truncate(at.max(b.len() / 2));
                b.extend(junk);
                b
            }),
        prop::collection::vec(any::<u8>(), 0..256),
    ];
    let path = prop_oneof![
        Just("/v1/tickets".to_owned()),
        "[A-Za-z0-9_.~%-]{1,30}".prop_map(|ext| format!("/v1/tickets/{ext}/messages")),
    ];
    fuzz("ticket and message JSON", (path, body), |(path, body)| {
        let sig = sign("fuzz-secret", jiff::Timestamp::now().as_second(), &body);
        let req = Request::post(path)
            .header("content-type", "application/json")
            .header("x-caseroom-signature", sig)
            .body(Body::from(body))
            .unwrap();
        let status = rt.block_on(app.clone().oneshot(req)).unwrap().status();
        prop_assert!(!status.is_server_error(), "status {}", status);
        Ok(())
    });
    rt.block_on(h.stop());
}
