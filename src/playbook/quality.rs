//! Offline measurement of suggestion quality, for tuning the engine.
//!
//! Not part of the normal test run: `tune_report` is `#[ignore]`d and reads
//! labelled JSON Lines from the directory in `CASEROOM_TUNE_DIR`:
//! `train.jsonl` (history to learn) and `tune.jsonl` (held out, English),
//! plus `../shared/data/tickets-dev.jsonl`. It prints top-1, top-3 and the
//! false-suggestion rate for several abstention thresholds, a reliability
//! table, and a 5-fold cross-validation over the playbooks' own examples
//! (unseen wording, per language).
//!
//! ```sh
//! CASEROOM_TUNE_DIR=path/to/split cargo test --release --no-default-features \
//!     --lib playbook::quality -- --ignored --nocapture
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::lang::Lang;

use super::engine::{Engine, Labelled, SuggestOptions, Tuning, detect_lang};
use super::load::{PlaybookSet, load_dir};

/// One scored ticket: gold class, class probabilities, language.
#[derive(Clone)]
pub(crate) struct Scored {
    gold: usize,
    probs: Vec<f32>,
    lang: Lang,
}

fn read(path: &Path) -> Vec<Labelled> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn score_all(engine: &Engine, rows: &[Labelled]) -> Vec<Scored> {
    rows.iter()
        .filter_map(|r| {
            let gold = engine.class_index(&r.label)?;
            Some(Scored {
                gold,
                probs: engine.class_probs(&r.text),
                lang: detect_lang(&r.text),
            })
        })
        .collect()
}

/// (top-1, top-3, false rate, in-scope n, none n) at `opts`.
fn metrics(
    engine: &Engine,
    rows: &[Scored],
    opts: &SuggestOptions,
) -> (f64, f64, f64, usize, usize) {
    let (mut ins, mut t1, mut t3, mut none, mut fals) = (0, 0, 0, 0, 0);
    for s in rows {
        let chosen = engine.decide(&s.probs, s.lang, opts);
        if s.gold == 0 {
            none += 1;
            fals += chosen.is_some() as usize;
        } else {
            ins += 1;
            t1 += (chosen == Some(s.gold)) as usize;
            let mut order: Vec<usize> = (1..s.probs.len()).collect();
            order.sort_by(|&a, &b| s.probs[b].total_cmp(&s.probs[a]));
            t3 += order.iter().take(3).any(|&c| c == s.gold) as usize;
        }
    }
    (
        t1 as f64 / ins.max(1) as f64,
        t3 as f64 / ins.max(1) as f64,
        fals as f64 / none.max(1) as f64,
        ins,
        none,
    )
}

fn line(name: &str, engine: &Engine, rows: &[Scored], opts: &SuggestOptions) -> String {
    let (t1, t3, f, ins, none) = metrics(engine, rows, opts);
    format!("{name}: top-1 {t1:.3} top-3 {t3:.3} false {f:.3} (in {ins}, none {none})")
}

/// Confidence of the suggested playbook vs. how often it was right, over
/// every ticket the engine would suggest for at threshold 0 (none tickets
/// count as wrong).
pub(crate) fn reliability(engine: &Engine, rows: &[Scored]) -> String {
    let mut bins = [(0usize, 0usize, 0f64); 10];
    let zero = SuggestOptions { threshold: 0.0 };
    for s in rows {
        let Some(c) = engine.decide(&s.probs, s.lang, &zero) else {
            continue;
        };
        let p = engine.confidence(&s.probs, c);
        let b = ((p * 10.0) as usize).min(9);
        bins[b].0 += 1;
        bins[b].1 += (c == s.gold) as usize;
        bins[b].2 += p as f64;
    }
    let mut out =
        String::from("| confidence | tickets | mean conf. | accuracy |\n|---|---|---|---|\n");
    for (i, (n, ok, sum)) in bins.iter().enumerate() {
        if *n == 0 {
            continue;
        }
        out.push_str(&format!(
            "| {:.1}–{:.1} | {n} | {:.2} | {:.2} |\n",
            i as f32 / 10.0,
            (i + 1) as f32 / 10.0,
            sum / *n as f64,
            *ok as f64 / *n as f64
        ));
    }
    out
}

/// The playbook set with fold `fold` of 5 of every example list removed;
/// returns the set and the held-out examples.
fn fold_set(fold: usize) -> (PlaybookSet, Vec<Labelled>) {
    let mut set = load_dir(&root().join("playbooks")).unwrap();
    let mut held = Vec::new();
    let mut take = |label: &str, v: &mut Vec<String>| {
        let mut keep = Vec::new();
        for (i, ex) in v.drain(..).enumerate() {
            if i % 5 == fold {
                held.push(Labelled {
                    text: ex,
                    label: label.to_string(),
                });
            } else {
                keep.push(ex);
            }
        }
        *v = keep;
    };
    for pb in &mut set.playbooks {
        take(&pb.id, &mut pb.examples.zh);
        take(&pb.id, &mut pb.examples.en);
    }
    take("none", &mut set.out_of_scope.examples.zh);
    take("none", &mut set.out_of_scope.examples.en);
    (set, held)
}

fn report(tuning: &Tuning, label: &str) {
    let dir = PathBuf::from(std::env::var("CASEROOM_TUNE_DIR").expect("CASEROOM_TUNE_DIR"));
    let train = read(&dir.join("train.jsonl"));
    let tune = read(&dir.join("tune.jsonl"));
    let dev = read(&root().join("../shared/data/tickets-dev.jsonl"));
    let extra: Vec<(String, Vec<Labelled>)> = std::env::var("CASEROOM_TUNE_EXTRA")
        .ok()
        .into_iter()
        .flat_map(|v| v.split(',').map(str::to_string).collect::<Vec<_>>())
        .map(|p| (p.clone(), read(Path::new(&p))))
        .collect();
    let set = Arc::new(load_dir(&root().join("playbooks")).unwrap());
    let opts = SuggestOptions::default();
    let bare = Engine::build_tuned(
        set.clone(),
        Arc::from(&[][..]),
        opts.clone(),
        tuning.clone(),
    );
    let warm = Engine::build_tuned(
        set.clone(),
        Arc::from(&train[..]),
        opts.clone(),
        tuning.clone(),
    );
    let sets = [
        ("dev cold", &bare, score_all(&bare, &dev)),
        ("dev warm", &warm, score_all(&warm, &dev)),
        ("hist cold", &bare, score_all(&bare, &tune)),
        ("hist warm", &warm, score_all(&warm, &tune)),
    ];
    // Cross-validation over the playbooks' own examples.
    let mut cv: Vec<Scored> = Vec::new();
    let mut cv_engine = None;
    for fold in 0..5 {
        let (s, held) = fold_set(fold);
        let e = Engine::build_tuned(
            Arc::new(s),
            Arc::from(&[][..]),
            opts.clone(),
            tuning.clone(),
        );
        cv.extend(score_all(&e, &held));
        cv_engine = Some(e);
    }
    let cv_engine = cv_engine.unwrap();
    let (cv_zh, cv_en): (Vec<Scored>, Vec<Scored>) =
        cv.into_iter().partition(|s| s.lang == Lang::Zh);
    println!("== {label}");
    for t in [0.2f32, 0.3, 0.35, 0.4, 0.5] {
        let o = SuggestOptions { threshold: t };
        println!("-- threshold {t}");
        for (name, e, rows) in &sets {
            println!("  {}", line(name, e, rows, &o));
        }
        println!("  {}", line("cv zh", &cv_engine, &cv_zh, &o));
        println!("  {}", line("cv en", &cv_engine, &cv_en, &o));
        for (name, rows) in &extra {
            for (n, e) in [("cold", &bare), ("warm", &warm)] {
                let sc = score_all(e, rows);
                let (zh, en): (Vec<Scored>, Vec<Scored>) =
                    sc.into_iter().partition(|s| s.lang == Lang::Zh);
                println!("  {}", line(&format!("{name} {n} zh"), e, &zh, &o));
                println!("  {}", line(&format!("{name} {n} en"), e, &en, &o));
            }
        }
    }
    if let Ok(path) = std::env::var("CASEROOM_TUNE_DUMP") {
        let mut out = String::new();
        let all = [
            ("dev_cold", &sets[0].2),
            ("dev_warm", &sets[1].2),
            ("hist_cold", &sets[2].2),
            ("hist_warm", &sets[3].2),
            ("cv_zh", &cv_zh),
            ("cv_en", &cv_en),
        ];
        for (name, rows) in all {
            for s in rows.iter() {
                out.push_str(
                    &serde_json::json!({"set": name, "gold": s.gold, "lang": s.lang, "p": s.probs})
                        .to_string(),
                );
                out.push('\n');
            }
        }
        std::fs::write(format!("{path}.{label}.jsonl"), out).unwrap();
    }
    if let Ok(which) = std::env::var("CASEROOM_TUNE_ERRORS") {
        let o = SuggestOptions::default();
        let (warm, scored) = match which.as_str() {
            "cold" => (&bare, &sets[2].2),
            _ => (&warm, &sets[3].2),
        };
        for (r, sc) in tune.iter().zip(scored) {
            let got = warm.decide(&sc.probs, sc.lang, &o);
            if got != Some(sc.gold) && !(sc.gold == 0 && got.is_none()) {
                let best = Engine::best(&sc.probs).unwrap();
                println!(
                    "ERR {} -> {} (best {} {:.2}, none {:.2}): {}",
                    r.label,
                    got.map_or("(abstain)", |c| warm.class_name(c)),
                    warm.class_name(best),
                    sc.probs[best],
                    sc.probs[0],
                    r.text
                );
            }
        }
    }
    println!(
        "reliability, hist cold:\n{}",
        reliability(&bare, &sets[2].2)
    );
    println!("reliability, dev cold:\n{}", reliability(&bare, &sets[0].2));
    println!(
        "reliability, hist warm:\n{}",
        reliability(&warm, &sets[3].2)
    );
    println!(
        "reliability, cv zh+en cold:\n{}",
        reliability(&cv_engine, &[cv_zh, cv_en].concat())
    );
}

#[test]
#[ignore = "needs CASEROOM_TUNE_DIR; run by hand when tuning"]
fn tune_report() {
    let base = Tuning::default();
    report(&base, "default");
    if let Ok(spec) = std::env::var("CASEROOM_TUNE_VARIANTS") {
        for v in spec.split(';').filter(|v| !v.is_empty()) {
            let mut t = base.clone();
            for kv in v.split(',') {
                let (k, val) = kv.split_once('=').unwrap();
                let x: f32 = val.parse().unwrap();
                match k {
                    "example_weight" => t.example_weight = x,
                    "phrase_weight" => t.phrase_weight = x,
                    "balance" => t.balance = x,
                    "none_weight" => t.none_weight = x,
                    "rule_scale" => t.rule_scale = x,
                    "rule_dropout" => t.rule_dropout = x,
                    "field_value" => t.field_value = x,
                    "temperature" => t.temperature = x,
                    "epochs" => t.train.epochs = x as usize,
                    "lr" => t.train.learning_rate = x,
                    "l2" => t.train.l2 = x,
                    "runs" => t.train.runs = x as usize,
                    "seed" => t.train.seed = x as u64,
                    "none_penalty" => t.none_penalty = x,
                    "phrase_value" => t.phrase_value = x,
                    other => panic!("unknown knob {other}"),
                }
            }
            report(&t, v);
        }
    }
}
