//! Suggestion quality on the shared labelled data (skipped when
//! `../shared/data` is absent), and the `suggest`/`learn` command lines.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use caseroom::playbook::{Engine, Labelled, Lang, SuggestOptions, detect_lang, load_dir};
use sha2::{Digest, Sha256};

use super::util::{caseroom, caseroom_ok, root};

fn data(name: &str) -> Option<Vec<Labelled>> {
    read_labelled(&root().join("../shared/data").join(name))
}

fn read_labelled(path: &Path) -> Option<Vec<Labelled>> {
    let text = std::fs::read_to_string(path).ok()?;
    Some(
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap())
            .collect(),
    )
}

/// (in-scope top-1, false-suggestion rate on `none`).
fn score(engine: &Engine, rows: &[Labelled]) -> (f64, f64) {
    let (mut ins, mut top1, mut none, mut false_) = (0, 0, 0, 0);
    for r in rows {
        let s = engine.suggest(&r.text);
        if r.label == "none" {
            none += 1;
            false_ += s.playbook.is_some() as usize;
        } else {
            ins += 1;
            top1 += (s.playbook.as_deref() == Some(r.label.as_str())) as usize;
        }
    }
    (
        top1 as f64 / ins.max(1) as f64,
        false_ as f64 / none.max(1) as f64,
    )
}

/// A deterministic stratified split: per label, texts are ordered by hash
/// and fold `fold` of 5 (20%) is held out.
fn split(rows: Vec<Labelled>, fold: usize) -> (Vec<Labelled>, Vec<Labelled>) {
    let mut by_label: BTreeMap<String, Vec<(Vec<u8>, Labelled)>> = BTreeMap::new();
    for r in rows {
        let h = Sha256::digest(r.text.as_bytes()).to_vec();
        by_label.entry(r.label.clone()).or_default().push((h, r));
    }
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for (_, mut v) in by_label {
        v.sort_by(|a, b| a.0.cmp(&b.0));
        for (i, (_, r)) in v.into_iter().enumerate() {
            if i % 5 == fold {
                test.push(r)
            } else {
                train.push(r)
            }
        }
    }
    (train, test)
}

#[test]
fn quality_on_dev_tickets_and_held_out_history() {
    let (Some(dev), Some(history)) = (
        data("tickets-dev.jsonl"),
        data("history-banking77-train.jsonl"),
    ) else {
        eprintln!("../shared/data not found; skipping the quality test");
        return;
    };
    let set = Arc::new(load_dir(&root().join("playbooks")).unwrap());
    let bare = Engine::build(set.clone(), &[], &SuggestOptions::default());
    // Measured (issue 16): 0.986 / 0.000 with and without history. The
    // bounds allow one more miss and one false suggestion (1 of 20 `none`).
    let (top1, false_) = score(&bare, &dev);
    eprintln!("dev, no history: top-1 {top1:.3}, false {false_:.3}");
    assert!(
        top1 >= 0.97 && false_ <= 0.05,
        "dev: top-1 {top1:.3}, false {false_:.3}"
    );

    // Five stratified folds, so the figure does not hang on one lucky split.
    let (mut t1_sum, mut f_sum) = (0.0, 0.0);
    for fold in 0..5 {
        let (train, test) = split(history.clone(), fold);
        let learned = Engine::build(set.clone(), &train, &SuggestOptions::default());
        let (top1, false_) = score(&learned, &test);
        eprintln!("history fold {fold} (20% held out): top-1 {top1:.3}, false {false_:.3}");
        t1_sum += top1;
        f_sum += false_;
        if fold == 0 {
            let (top1, false_) = score(&learned, &dev);
            eprintln!("dev with history: top-1 {top1:.3}, false {false_:.3}");
            assert!(
                top1 >= 0.97 && false_ <= 0.05,
                "dev with history: top-1 {top1:.3}, false {false_:.3}"
            );
        }
    }
    let (top1, false_) = (t1_sum / 5.0, f_sum / 5.0);
    eprintln!("history, mean of 5 folds: top-1 {top1:.3}, false {false_:.3}");
    // Issue 16 measured 0.954 / 0.015 across five folds (single folds
    // 0.945-0.965 / 0.006-0.024; before it: 0.955 / 0.020). This guards
    // against regressions from that level.
    assert!(
        top1 >= 0.945 && false_ <= 0.02,
        "held-out history: top-1 {top1:.3}, false {false_:.3}"
    );
}

/// Our own probe tickets (`tests/data/suggest-probe.jsonl`, written for the
/// project and never used for tuning), per language, playbooks only.
#[test]
fn quality_on_own_probe_tickets_per_language() {
    let probe = read_labelled(&root().join("tests/data/suggest-probe.jsonl")).unwrap();
    let set = Arc::new(load_dir(&root().join("playbooks")).unwrap());
    let bare = Engine::build(set, &[], &SuggestOptions::default());
    for lang in [Lang::Zh, Lang::En] {
        let rows: Vec<Labelled> = probe
            .iter()
            .filter(|r| detect_lang(&r.text) == lang)
            .cloned()
            .collect();
        let (top1, false_) = score(&bare, &rows);
        eprintln!("probe {lang}: top-1 {top1:.3}, false {false_:.3}");
        // Measured: zh 1.000 / 0.045, en 0.981 / 0.045 (44 `none` each).
        assert!(
            top1 >= 0.95 && false_ <= 0.08,
            "probe {lang}: top-1 {top1:.3}, false {false_:.3}"
        );
    }
}

/// A third probe, `tests/data/suggest-zh-holdout.jsonl`: 98 Chinese
/// tickets (colloquial, typos, some English words) written before the
/// issue-16 tuning and never tuned on, playbooks only.
#[test]
fn quality_on_chinese_holdout_probe() {
    let probe = read_labelled(&root().join("tests/data/suggest-zh-holdout.jsonl")).unwrap();
    assert!(probe.iter().all(|r| detect_lang(&r.text) == Lang::Zh));
    let set = Arc::new(load_dir(&root().join("playbooks")).unwrap());
    let bare = Engine::build(set, &[], &SuggestOptions::default());
    let (top1, false_) = score(&bare, &probe);
    eprintln!("Chinese hold-out probe: top-1 {top1:.3}, false {false_:.3}");
    // Measured 0.936 / 0.000 (78 in scope, 20 `none`); the bounds allow
    // one more miss and one false suggestion.
    assert!(
        top1 >= 0.92 && false_ <= 0.05,
        "Chinese hold-out probe: top-1 {top1:.3}, false {false_:.3}"
    );
}

#[test]
fn learn_is_idempotent_and_names_bad_lines() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("h.jsonl");
    std::fs::write(&file, "{\"text\": \"where is my refund\", \"label\": \"refund\"}\n{\"text\": \"hello\", \"label\": \"none\"}\n").unwrap();
    let data = dir.path().join("data");
    let out = caseroom_ok(&data, &["learn", file.to_str().unwrap()]);
    assert!(out.contains("learned 2 new"), "{out}");
    let out = caseroom_ok(&data, &["learn", file.to_str().unwrap()]);
    assert!(
        out.contains("learned 0 new") && out.contains("2 already known"),
        "{out}"
    );

    std::fs::write(
        &file,
        "{\"text\": \"x\", \"label\": \"refunds\"}\nnot json\n",
    )
    .unwrap();
    let out = caseroom(&data, &["learn", file.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 1") && err.contains("refunds"), "{err}");
    assert!(err.contains("line 2"), "{err}");
}

#[test]
fn suggest_cli_human_and_jsonl() {
    let dir = tempfile::tempdir().unwrap();
    let out = caseroom_ok(
        dir.path(),
        &["suggest", "我要退款，订单号 202311050001，金额 ¥1,299.00"],
    );
    assert!(out.contains("refund"), "{out}");
    let mut child = std::process::Command::new(super::util::bin())
        .current_dir(root())
        .args([
            "--data-dir",
            dir.path().to_str().unwrap(),
            "suggest",
            "--jsonl",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all("{\"text\": \"my card payment was declined\"}\nnot json\n{\"id\": 3}\n{\"text\": \"你好\", \"other\": 1}\n".as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "bad lines make the exit code 1");
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4, "one answer per input line");
    assert_eq!(lines[0]["playbook"], "payment-failed");
    assert!(lines[0]["ranked"].as_array().unwrap().len() <= 3);
    assert!(lines[1]["error"].as_str().unwrap().starts_with("line 2:"));
    assert!(lines[2]["error"].as_str().unwrap().starts_with("line 3:"));
    assert_eq!(lines[3]["lang"], "zh");
}
