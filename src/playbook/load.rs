//! Loading and validating `playbooks/*.toml`.
//!
//! Loading happens in two stages, like ripgrep's arguments: the file is first
//! read into raw serde structs ([`RawPlaybook`]) that mirror what the author
//! wrote, with `toml::Spanned` wherever an error must point at a line; then
//! [`validate`] turns them into a [`Playbook`] holding compiled regexes and
//! checked templates. Validation never stops at the first problem: every
//! error of every file is collected, so `caseroom check` shows them all at
//! once, each as `file:line: key: message`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use regex::Regex;
use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::case::Priority;
use crate::lang::Lang;

use super::render::{self, TEMPLATE_GLOBALS};

/// The id of the abstain class: tickets no playbook fits.
pub const NONE_ID: &str = "none";

/// File stem of the special playbook that lists out-of-scope examples.
pub(crate) const OUT_OF_SCOPE_STEM: &str = "out-of-scope";

/// Fields every playbook template may use, filled by the built-in extractors.
pub const BUILTIN_FIELDS: [&str; 7] = [
    "amount",
    "currency",
    "transaction_id",
    "email",
    "card_last4",
    "country",
    "date",
];

/// One problem in one playbook file.
///
/// Displays as `playbooks/refund.toml:12: triggers[1].pattern: message`, the
/// shape editors and CI logs turn into links.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PlaybookError {
    /// The file as it was found (directory joined with the file name).
    pub file: PathBuf,
    /// 1-based line the problem is on.
    pub line: usize,
    /// Dotted path of the offending key, e.g. `reply.zh`; empty for errors
    /// that concern the whole file (unreadable file, TOML syntax).
    pub key: String,
    /// What is wrong, in one line.
    pub message: String,
}

impl fmt::Display for PlaybookError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: ", self.file.display(), self.line)?;
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

/// Text in both languages (titles, reply templates).
#[derive(Debug, Clone, Default)]
pub(crate) struct ByLang<T> {
    /// Simplified Chinese.
    pub(crate) zh: T,
    /// English.
    pub(crate) en: T,
}

impl<T> ByLang<T> {
    pub(crate) fn get(&self, lang: Lang) -> &T {
        match lang {
            Lang::Zh => &self.zh,
            Lang::En => &self.en,
        }
    }
}

/// A weighted regex that is strong evidence for a playbook.
#[derive(Debug, Clone)]
pub(crate) struct Trigger {
    /// Compiled with case-insensitivity, like the phrases.
    pub(crate) regex: Regex,
    /// How much a match counts; the file's `weight`, default 1.
    pub(crate) weight: f32,
}

/// A playbook-specific value to pull out of a ticket.
#[derive(Debug, Clone)]
pub(crate) struct FieldRule {
    /// Template variable name.
    pub(crate) name: String,
    /// Has a named group `value` (checked at load).
    pub(crate) regex: Regex,
    /// What the field means, for `caseroom check` and help output.
    pub(crate) description: String,
}

/// A validated playbook: everything compiled, both languages present.
#[derive(Debug, Clone)]
pub struct Playbook {
    /// Unique id, equal to the file stem.
    pub(crate) id: String,
    /// Where it was loaded from, for messages.
    pub(crate) file: PathBuf,
    pub(crate) title: ByLang<String>,
    pub(crate) description: String,
    /// Priority a case gets when this playbook is chosen.
    pub(crate) priority: Priority,
    pub(crate) tags: Vec<String>,
    /// Case-insensitive substrings; a hit is strong evidence.
    pub(crate) phrases: Vec<String>,
    pub(crate) triggers: Vec<Trigger>,
    /// Example utterances, the classifier's seed training data.
    pub(crate) examples: ByLang<Vec<String>>,
    pub(crate) fields: Vec<FieldRule>,
    pub(crate) checklist: ByLang<Vec<String>>,
    /// Template sources; the compiled templates live in the set's environment.
    pub(crate) reply: ByLang<String>,
}

impl Playbook {
    /// The playbook id (also its file stem).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The file the playbook was loaded from.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// Short human title in `lang`.
    pub fn title(&self, lang: Lang) -> &str {
        self.title.get(lang)
    }

    /// What the playbook is for.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// Default priority of a case handled with this playbook.
    pub fn priority(&self) -> Priority {
        self.priority
    }

    /// Free-form tags, e.g. `payments`.
    pub fn tags(&self) -> &[String] {
        &self.tags
    }

    /// The agent checklist in `lang`.
    pub fn checklist(&self, lang: Lang) -> &[String] {
        self.checklist.get(lang)
    }

    /// Example tickets in `lang`.
    pub fn examples(&self, lang: Lang) -> &[String] {
        self.examples.get(lang)
    }

    /// The precise phrases that count as strong evidence.
    pub fn phrases(&self) -> &[String] {
        &self.phrases
    }

    /// Names of the playbook's own `[[fields]]`.
    pub fn field_names(&self) -> impl Iterator<Item = &str> {
        self.fields.iter().map(|f| f.name.as_str())
    }

    /// The playbook's own `[[fields]]` as (name, description).
    pub fn field_descriptions(&self) -> impl Iterator<Item = (&str, &str)> {
        self.fields
            .iter()
            .map(|f| (f.name.as_str(), f.description.as_str()))
    }

    /// The reply template source in `lang`.
    pub fn reply_template(&self, lang: Lang) -> &str {
        self.reply.get(lang)
    }
}

/// Examples of tickets that fit no playbook (`out-of-scope.toml`).
#[derive(Debug, Clone, Default)]
pub(crate) struct OutOfScope {
    pub(crate) description: String,
    pub(crate) examples: ByLang<Vec<String>>,
}

/// Every playbook of a directory, validated, with compiled reply templates.
#[derive(Debug)]
pub struct PlaybookSet {
    /// The directory it was loaded from (reloads watch it).
    pub(crate) dir: PathBuf,
    /// Sorted by id, so class indices are stable across reloads.
    pub(crate) playbooks: Vec<Playbook>,
    /// Abstain-class examples; empty when the directory has none.
    pub(crate) out_of_scope: OutOfScope,
    /// Holds every reply template as `<id>.<lang>`; built once at load.
    pub(crate) env: minijinja::Environment<'static>,
}

impl PlaybookSet {
    /// All playbooks, sorted by id.
    pub fn iter(&self) -> impl Iterator<Item = &Playbook> {
        self.playbooks.iter()
    }

    /// Number of playbooks (the out-of-scope examples are not one).
    pub fn len(&self) -> usize {
        self.playbooks.len()
    }

    /// True when the directory held no playbook.
    pub fn is_empty(&self) -> bool {
        self.playbooks.is_empty()
    }

    /// The playbook with this id.
    pub fn get(&self, id: &str) -> Option<&Playbook> {
        self.playbooks
            .binary_search_by(|p| p.id.as_str().cmp(id))
            .ok()
            .map(|i| &self.playbooks[i])
    }

    /// Playbook ids, sorted.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.playbooks.iter().map(|p| p.id.as_str())
    }

    /// The directory the set was loaded from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What `out-of-scope.toml` says tickets without a playbook look like.
    pub fn out_of_scope_description(&self) -> &str {
        &self.out_of_scope.description
    }

    /// The out-of-scope (abstain class) examples in `lang`.
    pub fn out_of_scope_examples(&self, lang: Lang) -> &[String] {
        self.out_of_scope.examples.get(lang)
    }
}

/// Loads and validates every `*.toml` file in `dir`.
///
/// Returns every problem found, across all files, sorted by file and line.
pub fn load_dir(dir: &Path) -> Result<PlaybookSet, Vec<PlaybookError>> {
    let mut errors = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            return Err(vec![PlaybookError {
                file: dir.to_path_buf(),
                line: 0,
                key: String::new(),
                message: format!("cannot read playbook directory: {e}"),
            }]);
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
        .collect();
    files.sort();

    let mut playbooks: Vec<Playbook> = Vec::new();
    let mut out_of_scope = OutOfScope::default();
    let mut seen: BTreeMap<String, (PathBuf, usize)> = BTreeMap::new();
    for file in &files {
        let source = match std::fs::read_to_string(file) {
            Ok(s) => s,
            Err(e) => {
                errors.push(err(file, 0, "", format!("cannot read file: {e}")));
                continue;
            }
        };
        match parse_file(file, &source, &mut errors) {
            Some(Parsed::Playbook(pb, line)) => {
                if let Some((other, other_line)) = seen.get(&pb.id) {
                    errors.push(err(
                        file,
                        line,
                        "id",
                        format!(
                            "duplicate id `{}` (also in {}:{other_line})",
                            pb.id,
                            other.display()
                        ),
                    ));
                } else {
                    seen.insert(pb.id.clone(), (file.clone(), line));
                    playbooks.push(*pb);
                }
            }
            Some(Parsed::OutOfScope(oos)) => out_of_scope = oos,
            None => {}
        }
    }
    if files.is_empty() {
        errors.push(err(dir, 0, "", "no playbook files (*.toml) found".into()));
    }
    if !errors.is_empty() {
        errors.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
        return Err(errors);
    }
    playbooks.sort_by(|a, b| a.id.cmp(&b.id));
    let mut env = render::environment();
    for pb in &playbooks {
        for lang in Lang::ALL {
            // Compiled once already during validation; kept fallible anyway.
            let name = render::template_name(&pb.id, lang);
            if let Err(e) = env.add_template_owned(name, pb.reply.get(lang).clone()) {
                errors.push(err(&pb.file, 0, &format!("reply.{lang}"), e.to_string()));
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(PlaybookSet {
        dir: dir.to_path_buf(),
        playbooks,
        out_of_scope,
        env,
    })
}

/// The result of reading one file.
enum Parsed {
    /// A playbook and the line of its `id`.
    Playbook(Box<Playbook>, usize),
    OutOfScope(OutOfScope),
}

/// The file as written: every key optional so that missing keys are
/// reported by validation (with a line) instead of by serde.
#[derive(Debug, Deserialize)]
pub(crate) struct RawPlaybook {
    id: Option<Spanned<String>>,
    priority: Option<Spanned<String>>,
    #[serde(default)]
    tags: Vec<String>,
    description: Option<Spanned<String>>,
    #[serde(default)]
    phrases: Vec<Spanned<String>>,
    title: Option<Spanned<RawByLang<Spanned<String>>>>,
    #[serde(default)]
    triggers: Vec<Spanned<RawTrigger>>,
    examples: Option<Spanned<RawByLang<Vec<Spanned<String>>>>>,
    #[serde(default)]
    fields: Vec<Spanned<RawField>>,
    checklist: Option<Spanned<RawByLang<Vec<Spanned<String>>>>>,
    reply: Option<Spanned<RawByLang<Spanned<String>>>>,
}

/// A `[title]`, `[examples]`, `[checklist]` or `[reply]` table.
#[derive(Debug, Clone, Deserialize)]
struct RawByLang<T> {
    zh: Option<T>,
    en: Option<T>,
}

/// One `[[triggers]]` entry.
#[derive(Debug, Deserialize)]
struct RawTrigger {
    pattern: Option<Spanned<String>>,
    weight: Option<Spanned<f64>>,
}

/// One `[[fields]]` entry.
#[derive(Debug, Deserialize)]
struct RawField {
    name: Option<Spanned<String>>,
    pattern: Option<Spanned<String>>,
    #[serde(default)]
    description: String,
}

/// Allowed keys, as (table path, keys); `*` stands for an array index.
const SCHEMA: &[(&str, &[&str])] = &[
    (
        "",
        &[
            "id",
            "priority",
            "tags",
            "description",
            "phrases",
            "title",
            "triggers",
            "examples",
            "fields",
            "checklist",
            "reply",
        ],
    ),
    ("title", &["zh", "en"]),
    ("examples", &["zh", "en"]),
    ("checklist", &["zh", "en"]),
    ("reply", &["zh", "en"]),
    ("triggers.*", &["pattern", "weight"]),
    ("fields.*", &["name", "pattern", "description"]),
];

/// `out-of-scope.toml` may only hold these.
const OUT_OF_SCOPE_SCHEMA: &[(&str, &[&str])] = &[
    ("", &["id", "description", "examples"]),
    ("examples", &["zh", "en"]),
];

/// Line/byte bookkeeping for one file's error messages.
struct Ctx<'a> {
    file: &'a Path,
    source: &'a str,
}

impl Ctx<'_> {
    fn line(&self, offset: usize) -> usize {
        line_of(self.source, offset)
    }

    fn error(
        &self,
        offset: usize,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> PlaybookError {
        err(self.file, self.line(offset), &key.into(), message.into())
    }
}

fn err(file: &Path, line: usize, key: &str, message: String) -> PlaybookError {
    PlaybookError {
        file: file.to_path_buf(),
        line,
        key: key.to_string(),
        message,
    }
}

/// 1-based line of a byte offset.
pub(crate) fn line_of(source: &str, offset: usize) -> usize {
    let offset = offset.min(source.len());
    source.as_bytes()[..offset]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Parses and validates one file, pushing every problem into `errors`.
fn parse_file(file: &Path, source: &str, errors: &mut Vec<PlaybookError>) -> Option<Parsed> {
    let cx = Ctx { file, source };
    let stem = file
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    let is_oos = stem == OUT_OF_SCOPE_STEM;
    let table = match DeTable::parse(source) {
        Ok(t) => t,
        Err(e) => {
            let offset = e.span().map_or(0, |s| s.start);
            errors.push(cx.error(
                offset,
                "",
                format!("invalid TOML: {}", one_line(e.message())),
            ));
            return None;
        }
    };
    let schema = if is_oos { OUT_OF_SCOPE_SCHEMA } else { SCHEMA };
    check_keys(&cx, table.get_ref(), "", schema, errors);
    let raw: RawPlaybook = match toml::from_str(source) {
        Ok(r) => r,
        Err(e) => {
            let offset = e.span().map_or(0, |s| s.start);
            errors.push(cx.error(
                offset,
                "",
                format!("invalid playbook: {}", one_line(e.message())),
            ));
            return None;
        }
    };
    if is_oos {
        validate_out_of_scope(&cx, raw, errors).map(Parsed::OutOfScope)
    } else {
        validate(&cx, stem, raw, errors).map(|(pb, line)| Parsed::Playbook(Box::new(pb), line))
    }
}

/// Reports every key that the schema does not know, recursively.
fn check_keys(
    cx: &Ctx<'_>,
    table: &DeTable<'_>,
    path: &str,
    schema: &[(&str, &[&str])],
    errors: &mut Vec<PlaybookError>,
) {
    let Some((_, allowed)) = schema.iter().find(|(p, _)| *p == path) else {
        return;
    };
    for (key, value) in table {
        let name = key.get_ref().as_ref();
        let full = if path.is_empty() {
            name.to_string()
        } else {
            format!("{path}.{name}")
        };
        if !allowed.contains(&name) {
            let hint = format!("unknown key (expected one of: {})", allowed.join(", "));
            errors.push(cx.error(key.span().start, display_path(&full), hint));
            continue;
        }
        match value.get_ref() {
            DeValue::Table(t) => check_keys(cx, t, &full, schema, errors),
            DeValue::Array(items) => {
                let item_path = format!("{full}.*");
                for item in items.iter() {
                    if let DeValue::Table(t) = item.get_ref() {
                        check_keys(cx, t, &item_path, schema, errors);
                    }
                }
            }
            _ => {}
        }
    }
}

/// `triggers.*.x` is shown as `triggers[].x` when the index is unknown.
fn display_path(path: &str) -> String {
    path.replace(".*", "[]")
}

/// Flattens multi-line library messages (regex, TOML) into one line.
pub(crate) fn one_line(message: &str) -> String {
    message
        .split('\n')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// A regex error without the ASCII-art pointer the regex crate draws.
fn regex_message(e: &regex::Error) -> String {
    match e {
        regex::Error::Syntax(s) => {
            let reason = s
                .lines()
                .rev()
                .find_map(|l| l.trim().strip_prefix("error:"))
                .unwrap_or(s)
                .trim();
            format!("regex parse error: {reason}")
        }
        other => format!("regex error: {}", one_line(&other.to_string())),
    }
}

/// Compiles a trigger or field pattern the way the engine uses it.
pub(crate) fn compile_pattern(pattern: &str) -> Result<Regex, regex::Error> {
    regex::RegexBuilder::new(pattern)
        .case_insensitive(true)
        .size_limit(1 << 22)
        // Unicode `.{0,25}` repetitions make many lazy-DFA states; a cache
        // that holds them all avoids rebuilding states on every ticket.
        .dfa_size_limit(16 << 20)
        .build()
}

fn validate(
    cx: &Ctx<'_>,
    stem: &str,
    raw: RawPlaybook,
    errors: &mut Vec<PlaybookError>,
) -> Option<(Playbook, usize)> {
    let id_line;
    let id = match raw.id {
        Some(id) => {
            id_line = cx.line(id.span().start);
            let value = id.get_ref().clone();
            if value != stem {
                errors.push(cx.error(
                    id.span().start,
                    "id",
                    format!("id `{value}` does not match the file name (expected `{stem}`)"),
                ));
            } else if value == NONE_ID {
                errors.push(cx.error(
                    id.span().start,
                    "id",
                    format!("`{NONE_ID}` is reserved for {OUT_OF_SCOPE_STEM}.toml"),
                ));
            }
            value
        }
        None => {
            id_line = 1;
            errors.push(cx.error(0, "id", "missing (must equal the file name)"));
            stem.to_string()
        }
    };
    let priority = match raw.priority {
        Some(p) => match p.get_ref().parse::<Priority>() {
            Ok(p) => p,
            Err(e) => {
                errors.push(cx.error(p.span().start, "priority", e));
                Priority::default()
            }
        },
        None => {
            errors.push(cx.error(0, "priority", "missing (p1, p2, p3 or p4)"));
            Priority::default()
        }
    };
    let description = raw.description.map(|d| d.into_inner()).unwrap_or_default();

    let title = by_lang_text(cx, "title", raw.title, errors);
    let examples = by_lang_list(cx, "examples", raw.examples, errors);
    let checklist = by_lang_list(cx, "checklist", raw.checklist, errors);

    let mut phrases = Vec::new();
    for (i, p) in raw.phrases.into_iter().enumerate() {
        if p.get_ref().trim().is_empty() {
            errors.push(cx.error(p.span().start, format!("phrases[{i}]"), "empty phrase"));
        } else {
            phrases.push(p.into_inner().trim().to_string());
        }
    }

    let mut triggers = Vec::new();
    for (i, t) in raw.triggers.into_iter().enumerate() {
        let at = t.span().start;
        let t = t.into_inner();
        let weight = match t.weight {
            Some(w) if !(w.get_ref().is_finite() && *w.get_ref() > 0.0) => {
                errors.push(cx.error(
                    w.span().start,
                    format!("triggers[{i}].weight"),
                    "must be a positive number",
                ));
                1.0
            }
            Some(w) => *w.get_ref() as f32,
            None => 1.0,
        };
        let Some(pattern) = t.pattern else {
            errors.push(cx.error(at, format!("triggers[{i}].pattern"), "missing"));
            continue;
        };
        match compile_pattern(pattern.get_ref()) {
            Ok(regex) => triggers.push(Trigger { regex, weight }),
            Err(e) => errors.push(cx.error(
                pattern.span().start,
                format!("triggers[{i}].pattern"),
                regex_message(&e),
            )),
        }
    }

    let mut fields: Vec<FieldRule> = Vec::new();
    // Names declared, valid regex or not: a bad pattern must not also make
    // every template using the field fail.
    let mut declared: Vec<String> = Vec::new();
    for (i, f) in raw.fields.into_iter().enumerate() {
        let at = f.span().start;
        let f = f.into_inner();
        let Some(name) = f.name else {
            errors.push(cx.error(at, format!("fields[{i}].name"), "missing"));
            continue;
        };
        let name_ok = is_identifier(name.get_ref());
        if name_ok {
            declared.push(name.get_ref().clone());
        }
        if !name_ok {
            errors.push(cx.error(
                name.span().start,
                format!("fields[{i}].name"),
                format!("`{}` is not a valid template variable name", name.get_ref()),
            ));
        } else if BUILTIN_FIELDS.contains(&name.get_ref().as_str())
            || name.get_ref() == "customer_name"
        {
            errors.push(cx.error(
                name.span().start,
                format!("fields[{i}].name"),
                format!("`{}` is a built-in field", name.get_ref()),
            ));
        } else if fields.iter().any(|x| &x.name == name.get_ref()) {
            errors.push(cx.error(
                name.span().start,
                format!("fields[{i}].name"),
                format!("duplicate field `{}`", name.get_ref()),
            ));
        }
        let Some(pattern) = f.pattern else {
            errors.push(cx.error(at, format!("fields[{i}].pattern"), "missing"));
            continue;
        };
        match compile_pattern(pattern.get_ref()) {
            Ok(regex) => {
                if !regex.capture_names().any(|n| n == Some("value")) {
                    errors.push(cx.error(
                        pattern.span().start,
                        format!("fields[{i}].pattern"),
                        "needs a named group `value`, e.g. `(?P<value>[0-9]+)`",
                    ));
                } else if name_ok {
                    fields.push(FieldRule {
                        name: name.into_inner(),
                        regex,
                        description: f.description,
                    });
                }
            }
            Err(e) => errors.push(cx.error(
                pattern.span().start,
                format!("fields[{i}].pattern"),
                regex_message(&e),
            )),
        }
    }

    let mut allowed: BTreeSet<&str> = BUILTIN_FIELDS.into_iter().collect();
    allowed.insert("customer_name");
    allowed.extend(declared.iter().map(String::as_str));
    allowed.extend(TEMPLATE_GLOBALS);
    let reply = by_lang_text(cx, "reply", raw.reply.clone(), errors);
    if let Some(r) = &raw.reply {
        for (lang, text) in [(Lang::Zh, &r.get_ref().zh), (Lang::En, &r.get_ref().en)] {
            if let Some(text) = text {
                check_template(cx, &format!("reply.{lang}"), text, &allowed, errors);
            }
        }
    }

    let pb = Playbook {
        id,
        file: cx.file.to_path_buf(),
        title,
        description,
        priority,
        tags: raw.tags,
        phrases,
        triggers,
        examples,
        fields,
        checklist,
        reply,
    };
    Some((pb, id_line))
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Compiles a template and checks it only uses known variables.
fn check_template(
    cx: &Ctx<'_>,
    key: &str,
    text: &Spanned<String>,
    allowed: &BTreeSet<&str>,
    errors: &mut Vec<PlaybookError>,
) {
    let start = text.span().start;
    // Line of the template's first line: a multi-line string that opens with
    // a newline starts on the next line.
    let rest = &cx.source[start.min(cx.source.len())..];
    let first_line = cx.line(start)
        + usize::from(
            rest.starts_with("\"\"\"\n")
                || rest.starts_with("'''\n")
                || rest.starts_with("\"\"\"\r\n")
                || rest.starts_with("'''\r\n"),
        );
    let env = render::environment();
    match env.template_from_named_str(key, text.get_ref()) {
        Ok(tmpl) => {
            let mut unknown: Vec<String> = tmpl
                .undeclared_variables(false)
                .into_iter()
                .filter(|v| !allowed.contains(v.as_str()))
                .collect();
            unknown.sort();
            for var in unknown {
                let line =
                    find_var_line(text.get_ref(), &var).map_or(first_line, |l| first_line + l - 1);
                errors.push(err(
                    cx.file,
                    line,
                    key,
                    format!(
                        "template uses unknown variable `{var}` (known: {})",
                        allowed
                            .iter()
                            .filter(|v| !TEMPLATE_GLOBALS.contains(v))
                            .copied()
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
        }
        Err(e) => {
            let line = e
                .line()
                .map_or(first_line, |l| first_line + l.saturating_sub(1));
            let detail = e.detail().map(|d| format!(": {d}")).unwrap_or_default();
            errors.push(err(
                cx.file,
                line,
                key,
                format!("template syntax error: {}{detail}", e.kind()),
            ));
        }
    }
}

/// 1-based line of the first line of `template` that mentions `var`.
fn find_var_line(template: &str, var: &str) -> Option<usize> {
    template
        .lines()
        .position(|l| {
            l.match_indices(var).any(|(i, _)| {
                let before = l[..i].chars().next_back();
                let after = l[i + var.len()..].chars().next();
                !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
                    && !after.is_some_and(|c| c.is_alphanumeric() || c == '_')
            })
        })
        .map(|i| i + 1)
}

fn by_lang_text(
    cx: &Ctx<'_>,
    key: &str,
    raw: Option<Spanned<RawByLang<Spanned<String>>>>,
    errors: &mut Vec<PlaybookError>,
) -> ByLang<String> {
    let Some(raw) = raw else {
        errors.push(cx.error(0, key, "missing (needs zh and en)"));
        return ByLang::default();
    };
    let at = raw.span().start;
    let raw = raw.into_inner();
    let mut pick = |lang: &str, v: Option<Spanned<String>>| match v {
        Some(v) if v.get_ref().trim().is_empty() => {
            errors.push(cx.error(v.span().start, format!("{key}.{lang}"), "empty"));
            String::new()
        }
        Some(v) => v.into_inner(),
        None => {
            errors.push(cx.error(
                at,
                format!("{key}.{lang}"),
                "missing language (every playbook needs zh and en)",
            ));
            String::new()
        }
    };
    let zh = pick("zh", raw.zh);
    let en = pick("en", raw.en);
    ByLang { zh, en }
}

fn by_lang_list(
    cx: &Ctx<'_>,
    key: &str,
    raw: Option<Spanned<RawByLang<Vec<Spanned<String>>>>>,
    errors: &mut Vec<PlaybookError>,
) -> ByLang<Vec<String>> {
    let Some(raw) = raw else {
        errors.push(cx.error(0, key, "missing (needs zh and en)"));
        return ByLang::default();
    };
    let at = raw.span().start;
    let raw = raw.into_inner();
    let mut pick = |lang: &str, v: Option<Vec<Spanned<String>>>| match v {
        Some(v) if v.is_empty() => {
            errors.push(cx.error(at, format!("{key}.{lang}"), "empty list"));
            Vec::new()
        }
        Some(v) => v.into_iter().map(|s| s.into_inner()).collect(),
        None => {
            errors.push(cx.error(
                at,
                format!("{key}.{lang}"),
                "missing language (every playbook needs zh and en)",
            ));
            Vec::new()
        }
    };
    let zh = pick("zh", raw.zh);
    let en = pick("en", raw.en);
    ByLang { zh, en }
}

fn validate_out_of_scope(
    cx: &Ctx<'_>,
    raw: RawPlaybook,
    errors: &mut Vec<PlaybookError>,
) -> Option<OutOfScope> {
    match &raw.id {
        Some(id) if id.get_ref() != NONE_ID => errors.push(cx.error(
            id.span().start,
            "id",
            format!("must be `{NONE_ID}` in {OUT_OF_SCOPE_STEM}.toml"),
        )),
        Some(_) => {}
        None => errors.push(cx.error(0, "id", format!("missing (must be `{NONE_ID}`)"))),
    }
    let examples = by_lang_list(cx, "examples", raw.examples, errors);
    Some(OutOfScope {
        description: raw.description.map(|d| d.into_inner()).unwrap_or_default(),
        examples,
    })
}
