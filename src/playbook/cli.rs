//! The engine's line-oriented interfaces: history import, `suggest --jsonl`
//! and the human-readable `suggest "text"` output.
//!
//! These are pure functions over readers and writers so the CLI stays thin
//! and every error path is unit tested.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, Write};

use serde::{Deserialize, Serialize};

use crate::lang::Lang;

use super::engine::{Engine, Labelled, Ranked};
use super::load::{NONE_ID, PlaybookSet};

/// Reads labelled history (JSON Lines of `{"text", "label"}`; other keys
/// are ignored, blank lines skipped).
///
/// Checks every line and returns all problems, e.g. ``line 7: unknown label
/// `refunds` (known: none, account-locked, …)`` or `line 3: not JSON: …`.
pub fn parse_history(input: impl BufRead, set: &PlaybookSet) -> Result<Vec<Labelled>, Vec<String>> {
    #[derive(Deserialize)]
    struct Line {
        text: Option<String>,
        label: Option<String>,
    }
    let mut out = Vec::new();
    let mut errors = Vec::new();
    let known = || {
        std::iter::once(NONE_ID)
            .chain(set.ids())
            .collect::<Vec<_>>()
            .join(", ")
    };
    for (i, line) in input.lines().enumerate() {
        let n = i + 1;
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                errors.push(format!("line {n}: cannot read: {e}"));
                break;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        let parsed: Line = match serde_json::from_str(&line) {
            Ok(p) => p,
            Err(e) => {
                errors.push(format!("line {n}: not JSON: {e}"));
                continue;
            }
        };
        let Some(text) = parsed.text.filter(|t| !t.trim().is_empty()) else {
            errors.push(format!("line {n}: missing or empty \"text\""));
            continue;
        };
        let Some(label) = parsed.label else {
            errors.push(format!("line {n}: missing \"label\""));
            continue;
        };
        if label != NONE_ID && set.get(&label).is_none() {
            errors.push(format!(
                "line {n}: unknown label `{label}` (known: {})",
                known()
            ));
            continue;
        }
        out.push(Labelled { text, label });
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// One answer line of `suggest --jsonl`.
#[derive(Serialize)]
struct Answer<'a> {
    playbook: Option<&'a str>,
    confidence: f32,
    ranked: &'a [Ranked],
    lang: Lang,
    fields: &'a BTreeMap<String, String>,
}

/// Answers JSON Lines of `{"text": ...}` with one JSON line each, in order:
/// `{"playbook", "confidence", "ranked", "lang", "fields"}`, or
/// `{"error": "line N: ..."}` for a bad line (blank lines included, so
/// output lines always match input lines). Returns how many lines failed.
pub fn suggest_jsonl(
    engine: &Engine,
    input: impl BufRead,
    mut out: impl Write,
) -> std::io::Result<usize> {
    #[derive(Deserialize)]
    struct Line {
        text: serde_json::Value,
    }
    let mut failed = 0;
    for (i, line) in input.lines().enumerate() {
        let n = i + 1;
        let line = line?;
        let text = match serde_json::from_str::<Line>(&line) {
            Ok(Line {
                text: serde_json::Value::String(t),
            }) => Ok(t),
            Ok(_) => Err(format!("line {n}: \"text\" must be a string")),
            Err(e) if line.trim().is_empty() => Err(format!("line {n}: empty line ({e})")),
            Err(e) => Err(format!("line {n}: not a JSON object with \"text\": {e}")),
        };
        match text {
            Ok(text) => {
                let s = engine.suggest(&text);
                let answer = Answer {
                    playbook: s.playbook.as_deref(),
                    confidence: s.confidence,
                    ranked: &s.ranked,
                    lang: s.lang,
                    fields: &s.fields,
                };
                serde_json::to_writer(&mut out, &answer)?;
            }
            Err(error) => {
                failed += 1;
                serde_json::to_writer(&mut out, &serde_json::json!({ "error": error }))?;
            }
        }
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(failed)
}

/// A suggestion for people: playbook and title, confidence, why, fields,
/// checklist and the rendered reply draft.
pub fn format_suggestion(engine: &Engine, text: &str) -> String {
    let s = engine.suggest(text);
    let mut out = String::new();
    let lang = s.lang;
    let zh = lang == Lang::Zh;
    match s
        .playbook
        .as_deref()
        .and_then(|id| engine.playbooks().get(id))
    {
        Some(pb) => {
            let _ = writeln!(
                out,
                "playbook: {} ({}), confidence {:.2}, priority {}",
                pb.id(),
                pb.title(lang),
                s.confidence,
                pb.priority()
            );
        }
        None => {
            let _ = writeln!(
                out,
                "playbook: none (abstained), best confidence {:.2}",
                s.confidence
            );
        }
    }
    let ranked: Vec<String> = s
        .ranked
        .iter()
        .map(|r| format!("{} {:.2}", r.playbook, r.confidence))
        .collect();
    let _ = writeln!(out, "ranked: {}", ranked.join(", "));
    let _ = writeln!(out, "language: {lang}");
    if !s.why.is_empty() {
        let _ = writeln!(out, "why:");
        for w in &s.why {
            let _ = writeln!(out, "  - {w}");
        }
    }
    if !s.fields.is_empty() {
        let _ = writeln!(out, "fields:");
        for (k, v) in &s.fields {
            let _ = writeln!(out, "  {k}: {v}");
        }
    }
    if let Some(pb) = s
        .playbook
        .as_deref()
        .and_then(|id| engine.playbooks().get(id))
    {
        let _ = writeln!(out, "{}", if zh { "检查清单:" } else { "checklist:" });
        for item in pb.checklist(lang) {
            let _ = writeln!(out, "  [ ] {item}");
        }
        match engine.render_reply(pb.id(), lang, &s.fields, None) {
            Ok(reply) => {
                let _ = writeln!(out, "{}", if zh { "回复草稿:" } else { "reply draft:" });
                for line in reply.lines() {
                    let _ = writeln!(out, "  {line}");
                }
            }
            Err(e) => {
                let _ = writeln!(out, "reply draft unavailable: {e}");
            }
        }
    }
    out
}
