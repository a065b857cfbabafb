//! The suggestion engine: which playbook fits a ticket, and how sure we are.
//!
//! Two kinds of evidence are combined in one linear model:
//!
//! - **rules** written by people: each playbook's regex `triggers` (weighted)
//!   and precise `phrases`, found with one literal pass over the text and
//!   a few short anchored regex searches (see [`Rules`]);
//! - **n-gram features** (see [`super::features`]) learned from the
//!   playbooks' examples, the out-of-scope examples and labelled history.
//!
//! Rule hits enter the model as features too, so training learns how much
//! to trust them; half the training copies hide them, so the n-gram weights
//! still learn to stand on their own when no rule fires. The softmax over
//! `none` + every playbook gives the confidence; the engine abstains when
//! `none` wins or the best playbook is below [`SuggestOptions::threshold`].

use std::collections::BTreeMap;
use std::sync::Arc;

use aho_corasick::{AhoCorasick, AhoCorasickKind};
use regex_automata::{Anchored, Input, meta, util::syntax};
use regex_syntax::hir::literal::{ExtractKind, Extractor};
use serde::{Deserialize, Serialize};

use crate::lang::Lang;
use crate::redact::redact;

use super::extract;
use super::features::{self, Feature, Kind};
use super::load::{BUILTIN_FIELDS, NONE_ID, PlaybookSet};
use super::model::{Example, Model, TrainConfig, softmax};
use super::render::{self, RenderError};

/// A ticket text with the playbook a person chose for it.
///
/// Used for imported history and, later, for resolved cases. `label` is a
/// playbook id or `"none"` (no playbook fits).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Labelled {
    pub text: String,
    pub label: String,
}

/// How the engine decides to abstain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SuggestOptions {
    /// Minimum confidence (0..1) for suggesting a playbook; below it the
    /// engine abstains. Tuned on the project's data: see the module docs of
    /// `playbook` for the measured trade-off.
    pub threshold: f32,
}

impl Default for SuggestOptions {
    fn default() -> Self {
        SuggestOptions {
            threshold: DEFAULT_THRESHOLD,
        }
    }
}

/// The default abstention threshold.
pub const DEFAULT_THRESHOLD: f32 = 0.35;

/// One candidate playbook and its confidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ranked {
    pub playbook: String,
    /// The playbook's softmax probability (`none` takes part), so the
    /// ranking reads as shares that sum to at most 1.
    pub confidence: f32,
}

/// What the engine thinks of one ticket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Suggestion {
    /// The suggested playbook, or `None` when the engine abstains.
    pub playbook: Option<String>,
    /// Confidence (0..1) in the best playbook, also when abstaining: its
    /// probability minus that of `none` (see `Engine::confidence`).
    pub confidence: f32,
    /// Up to three playbooks, best first, present even when abstaining.
    pub ranked: Vec<Ranked>,
    /// The customer's language: picks the reply and checklist language.
    pub lang: Lang,
    /// Extracted template fields (built-ins, plus the suggested playbook's
    /// own fields). Taken from redacted text: never a full card number.
    pub fields: BTreeMap<String, String>,
    /// Human explanation: rules that fired, strongest classifier features.
    pub why: Vec<String>,
}

/// Training-time knobs that are not configuration: fixed by tuning.
#[derive(Debug, Clone)]
pub(crate) struct Tuning {
    /// Weight of a playbook example relative to a history example.
    pub(crate) example_weight: f32,
    /// Weight of a playbook phrase used as a (short) training example.
    pub(crate) phrase_weight: f32,
    /// Exponent of the class-balancing factor (0 = none, 1 = full).
    pub(crate) balance: f32,
    /// Extra weight of the `none` class after balancing.
    pub(crate) none_weight: f32,
    /// Value of a phrase-hit feature.
    pub(crate) phrase_value: f32,
    /// Cap on the summed trigger weight of one playbook.
    pub(crate) rule_cap: f32,
    /// Scale of the trigger-hit feature (value = min(sum, cap) * scale).
    pub(crate) rule_scale: f32,
    /// Value of a "field found" feature (0 turns them off).
    pub(crate) field_value: f32,
    /// Share of each rule-matching example trained without its rule
    /// features, so n-gram weights also learn to stand on their own.
    pub(crate) rule_dropout: f32,
    /// Softmax temperature applied at suggestion time.
    pub(crate) temperature: f32,
    /// How much the `none` probability counts against the best playbook's:
    /// confidence = p(best) - none_penalty * p(none). See [`Engine::confidence`].
    pub(crate) none_penalty: f32,
    pub(crate) train: TrainConfig,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            example_weight: 2.0,
            phrase_weight: 0.5,
            balance: 0.4,
            none_weight: 1.0,
            phrase_value: 1.0,
            rule_cap: 5.0,
            rule_scale: 0.4,
            field_value: 0.5,
            rule_dropout: 0.5,
            temperature: 1.0,
            none_penalty: 1.0,
            train: TrainConfig::default(),
        }
    }
}

/// One phrase of the set.
#[derive(Debug, Clone)]
struct PhraseTarget {
    /// Class index (playbook index + 1).
    class: usize,
    /// The phrase as written, for explanations.
    phrase: String,
}

/// Every trigger and phrase of the set.
///
/// Triggers run one by one: each regex alone keeps a small lazy DFA, while
/// a `RegexSet` of all of them (with Unicode `.` repetitions) outgrows its
/// DFA cache and falls back to the slow PikeVM. To avoid running seventy
/// regexes per ticket, one Aho-Corasick pass over the text finds three
/// kinds of literal at once: the phrases; the literal prefixes every match
/// of a trigger must start with; and the literal suffixes every match must
/// end with. A trigger is only run (anchored, from a prefix) when a suffix
/// of it occurs at or after that prefix: `card … declined` is not tried at
/// every "card" of a text that never says "declined". That filter took
/// the anchored searches from about 3.5 to under 1 per ticket.
#[derive(Debug)]
pub(crate) struct Rules {
    /// (class, playbook trigger index) per entry of the flattened list.
    triggers: Vec<(usize, usize)>,
    /// The same triggers as `regex-automata` regexes, which can run an
    /// anchored search from a given position.
    anchored: Vec<meta::Regex>,
    /// Phrases, trigger prefixes and trigger suffixes, in one automaton.
    literals: AhoCorasick,
    /// What each pattern of `literals` stands for.
    owners: Vec<Literal>,
    /// Triggers with a finite set of suffixes (the others are not filtered).
    has_suffixes: Vec<bool>,
    /// Triggers without usable prefixes: always run.
    always: Vec<usize>,
    phrase_targets: Vec<PhraseTarget>,
}

/// What one pattern of [`Rules::literals`] is.
#[derive(Debug, Clone, Copy)]
enum Literal {
    /// Phrase (index into `phrase_targets`).
    Phrase(usize),
    /// Prefix of trigger (index into `triggers`).
    Prefix(usize),
    /// Suffix of trigger.
    Suffix(usize),
}

/// The literal prefixes every match of `pattern` starts with, up to ASCII
/// case, or `None` when there is no finite, non-empty set of them.
///
/// Triggers are compiled case-insensitively. Extracting prefixes from a
/// case-insensitive parse enumerates every case variant and soon exceeds
/// the extractor's limits, so the pattern is parsed case-sensitively and
/// the prefixes are matched ASCII-case-insensitively instead. That is
/// exact for ASCII and caseless scripts (Chinese); a literal with other
/// cased letters (é, Ж) gets no prefilter.
pub(crate) fn literal_prefixes(pattern: &str) -> Option<Vec<Vec<u8>>> {
    literals(pattern, ExtractKind::Prefix)
}

/// [`literal_prefixes`] for the literals every match ends with.
pub(crate) fn literal_suffixes(pattern: &str) -> Option<Vec<Vec<u8>>> {
    literals(pattern, ExtractKind::Suffix)
}

fn literals(pattern: &str, kind: ExtractKind) -> Option<Vec<Vec<u8>>> {
    // A leading `(?i)` is dropped (the AC search is case-insensitive);
    // an inner `(?i:…)` group is kept and its case variants enumerated,
    // which the extractor bounds by shortening the literals.
    let suffix = matches!(kind, ExtractKind::Suffix);
    let stripped = pattern.strip_prefix("(?i)").unwrap_or(pattern);
    let hir = regex_syntax::ParserBuilder::new()
        .build()
        .parse(stripped)
        .ok()?;
    // Short literals: a cross product such as `(did|has) (my|the) (card )?
    // (payment|…)` would otherwise give thousands of long prefixes, and
    // eight bytes already make an occurrence rare.
    let seq = Extractor::new()
        .kind(kind)
        .limit_literal_len(8)
        .limit_total(1000)
        .extract(&hir);
    let lits = seq.literals()?;
    if lits.is_empty() || lits.iter().any(|l| l.as_bytes().is_empty()) {
        return None;
    }
    let mut out = Vec::with_capacity(lits.len());
    for l in lits {
        // A literal may start or end inside a UTF-8 sequence; only whole
        // chars are checked.
        let text = String::from_utf8_lossy(l.as_bytes());
        if text
            .chars()
            .any(|c| !c.is_ascii() && c.to_lowercase().ne(c.to_uppercase()))
        {
            return None;
        }
        out.push(l.as_bytes().to_ascii_lowercase());
    }
    // Only the shortest are needed: where `cards` occurs, `card` does too
    // (and for suffixes: where `declined` ends, `ined` does). Sorting the
    // suffixes reversed puts each right after the ones it ends with.
    if suffix {
        out.iter_mut().for_each(|l| l.reverse());
    }
    out.sort();
    out.dedup_by(|later, kept| later.starts_with(kept));
    if suffix {
        out.iter_mut().for_each(|l| l.reverse());
    }
    Some(out)
}

/// Per-class rule evidence of one text.
#[derive(Debug, Default, Clone)]
pub(crate) struct RuleHits {
    /// Summed trigger weight per class.
    trigger: Vec<f32>,
    /// Number of distinct phrases hit per class.
    phrase: Vec<f32>,
    /// Indices into [`Rules::triggers`] that matched, with where the
    /// match starts (`None`: somewhere, found by an unanchored search).
    matched_triggers: Vec<(usize, Option<usize>)>,
    /// Indices into [`Rules::phrase_targets`] that matched.
    matched_phrases: Vec<usize>,
}

impl Rules {
    pub(crate) fn build(set: &PlaybookSet) -> Rules {
        let mut triggers = Vec::new();
        let mut phrase_targets = Vec::new();
        let mut lits: Vec<Vec<u8>> = Vec::new();
        let mut owners = Vec::new();
        let mut has_suffixes = Vec::new();
        let mut always = Vec::new();
        let mut anchored = Vec::new();
        for (i, pb) in set.playbooks.iter().enumerate() {
            for (t, trig) in pb.triggers.iter().enumerate() {
                // Same syntax as the validated `regex::Regex`, so this only
                // fails on resource limits; such a trigger is left out.
                let re = match meta::Regex::builder()
                    .syntax(syntax::Config::new().case_insensitive(true))
                    .configure(meta::Config::new().hybrid_cache_capacity(8 << 20))
                    .build(trig.regex.as_str())
                {
                    Ok(re) => re,
                    Err(e) => {
                        tracing::warn!(playbook = %pb.id, trigger = t, "trigger left out: {e}");
                        continue;
                    }
                };
                let n = triggers.len();
                match literal_prefixes(trig.regex.as_str()) {
                    Some(p) => {
                        owners.extend(std::iter::repeat_n(Literal::Prefix(n), p.len()));
                        lits.extend(p);
                    }
                    None => always.push(n),
                }
                match literal_suffixes(trig.regex.as_str()) {
                    Some(p) => {
                        owners.extend(std::iter::repeat_n(Literal::Suffix(n), p.len()));
                        lits.extend(p);
                        has_suffixes.push(true);
                    }
                    None => has_suffixes.push(false),
                }
                anchored.push(re);
                triggers.push((i + 1, t));
            }
            for p in &pb.phrases {
                owners.push(Literal::Phrase(phrase_targets.len()));
                lits.push(p.to_lowercase().into_bytes());
                phrase_targets.push(PhraseTarget {
                    class: i + 1,
                    phrase: p.to_lowercase(),
                });
            }
        }
        // About 4,000 short literals: a contiguous NFA is ~0.7 MB and stays
        // in cache next to the model's weights; a full DFA of the same set
        // is 17 MB and was slower in context, not faster.
        let literals = AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .kind(Some(AhoCorasickKind::ContiguousNFA))
            .build(&lits)
            .expect("literal automaton");
        Rules {
            triggers,
            anchored,
            literals,
            owners,
            has_suffixes,
            always,
            phrase_targets,
        }
    }

    pub(crate) fn hits(&self, set: &PlaybookSet, text: &str, k: usize) -> RuleHits {
        let mut h = RuleHits {
            trigger: vec![0.0; k],
            phrase: vec![0.0; k],
            matched_triggers: Vec::new(),
            matched_phrases: Vec::new(),
        };
        // One pass: phrases are counted at once; prefix occurrences wait
        // until every suffix is known. `last_suffix[i]` is one past the
        // start of the last suffix of trigger `i` (0: none seen).
        let mut candidates: Vec<(usize, usize)> = Vec::new();
        let mut last_suffix = vec![0usize; self.triggers.len()];
        for m in self.literals.find_overlapping_iter(text) {
            match self.owners[m.pattern().as_usize()] {
                Literal::Phrase(i) => {
                    if !h.matched_phrases.contains(&i) {
                        h.matched_phrases.push(i);
                        h.phrase[self.phrase_targets[i].class] += 1.0;
                    }
                }
                Literal::Prefix(i) => candidates.push((i, m.start())),
                Literal::Suffix(i) => last_suffix[i] = m.start() + 1,
            }
        }
        let hit = |i: usize, at: Option<usize>, h: &mut RuleHits| {
            let (class, t) = self.triggers[i];
            h.trigger[class] += set.playbooks[class - 1].triggers[t].weight;
            h.matched_triggers.push((i, at));
        };
        // Every match of a prefixed trigger starts where one of its literal
        // prefixes occurs and ends with one of its suffixes, so an anchored
        // search from each prefix with a suffix at or after it is an exact
        // test, and a short one: no scan of the whole text, and an anchored
        // lazy DFA stays small.
        for (i, at) in candidates {
            if (self.has_suffixes[i] && last_suffix[i] <= at)
                || h.matched_triggers.iter().any(|&(m, _)| m == i)
            {
                continue;
            }
            let input = Input::new(text).range(at..).anchored(Anchored::Yes);
            if self.anchored[i].is_match(input) {
                hit(i, Some(at), &mut h);
            }
        }
        for &i in &self.always {
            if (!self.has_suffixes[i] || last_suffix[i] > 0) && self.anchored[i].is_match(text) {
                hit(i, None, &mut h);
            }
        }
        h.matched_triggers.sort_unstable();
        h
    }
}

/// A trained suggestion engine for one playbook set. Immutable: reloads
/// build a new one and swap it in (see [`super::watch::SharedEngine`]).
#[derive(Debug)]
pub struct Engine {
    set: Arc<PlaybookSet>,
    opts: SuggestOptions,
    /// Kept so a playbook reload can retrain on the same history.
    history: Arc<[Labelled]>,
    /// Class names: `none`, then playbook ids in set order.
    classes: Vec<String>,
    rules: Rules,
    model: Model,
    tuning: Tuning,
}

impl Engine {
    /// Trains an engine on the playbooks' examples and `history`.
    ///
    /// History entries whose label is neither `none` nor a playbook id are
    /// skipped (use [`super::parse_history`] to report them).
    pub fn build(set: Arc<PlaybookSet>, history: &[Labelled], opts: &SuggestOptions) -> Engine {
        Self::build_tuned(set, history.into(), opts.clone(), Tuning::default())
    }

    /// Retrains for a new playbook set, keeping history and options.
    pub fn rebuild(&self, set: Arc<PlaybookSet>) -> Engine {
        Self::build_tuned(
            set,
            self.history.clone(),
            self.opts.clone(),
            self.tuning.clone(),
        )
    }

    /// The labelled history the engine was trained on.
    pub fn history(&self) -> &[Labelled] {
        &self.history
    }

    /// The options the engine was built with.
    pub fn options(&self) -> &SuggestOptions {
        &self.opts
    }

    /// The playbooks the engine suggests from.
    pub fn playbooks(&self) -> &PlaybookSet {
        &self.set
    }

    /// A shared handle to the playbook set.
    pub fn playbook_set(&self) -> Arc<PlaybookSet> {
        self.set.clone()
    }

    /// Softmax over the classes for a redacted text; leaves the n-gram
    /// origins in `s` for [`Engine::top_features`].
    fn score(
        &self,
        text: &str,
        lang: Lang,
        hits: &RuleHits,
        fields: &BTreeMap<String, String>,
        s: &mut features::Scratch,
    ) -> Vec<f32> {
        let mut probs = vec![0f32; self.classes.len()];
        features::normalize_into(text, &mut s.chars);
        features::vectorize_with_origins(&s.chars, &mut s.feats, &mut s.origins, &mut s.dedup);
        s.feats.push((lang_bucket(lang), 1.0));
        push_field_features(fields, self.tuning.field_value, &mut s.feats);
        push_rule_features(hits, &self.tuning, &mut s.feats);
        self.model.add_scores(&s.feats, &mut probs);
        softmax(&mut probs, self.model.temperature);
        probs
    }

    pub(crate) fn build_tuned(
        set: Arc<PlaybookSet>,
        history: Arc<[Labelled]>,
        opts: SuggestOptions,
        tuning: Tuning,
    ) -> Engine {
        let mut classes = vec![NONE_ID.to_string()];
        classes.extend(set.ids().map(str::to_string));
        let rules = Rules::build(&set);
        let k = classes.len();
        let class_of = |label: &str| classes.iter().position(|c| c == label);

        // (text, class, weight) from every source.
        let mut raw: Vec<(&str, usize, f32)> = Vec::new();
        for (i, pb) in set.playbooks.iter().enumerate() {
            for lang in Lang::ALL {
                for ex in pb.examples.get(lang) {
                    raw.push((ex, i + 1, tuning.example_weight));
                }
            }
            for phrase in &pb.phrases {
                raw.push((phrase, i + 1, tuning.phrase_weight));
            }
        }
        for lang in Lang::ALL {
            for ex in set.out_of_scope.examples.get(lang) {
                raw.push((ex, 0, tuning.example_weight));
            }
        }
        for h in history.iter() {
            if let Some(c) = class_of(&h.label) {
                raw.push((&h.text, c, 1.0));
            }
        }
        // Balance classes: scale each by (mean class mass / class mass)^b.
        let mut mass = vec![0f32; k];
        for &(_, c, w) in &raw {
            mass[c] += w;
        }
        let present = mass.iter().filter(|m| **m > 0.0).count().max(1);
        let mean = mass.iter().sum::<f32>() / present as f32;
        let factor: Vec<f32> = mass
            .iter()
            .map(|&m| {
                if m > 0.0 {
                    (mean / m).powf(tuning.balance)
                } else {
                    0.0
                }
            })
            .collect();

        let mut examples = Vec::with_capacity(raw.len() * 2);
        let mut chars = Vec::new();
        let mut dedup = features::Dedup::default();
        let mut fields = BTreeMap::new();
        for &(text, class, w) in &raw {
            let text = redact(text);
            let mut feats = Vec::new();
            features::normalize_into(&text, &mut chars);
            features::vectorize(&chars, &mut feats, &mut dedup);
            feats.push((lang_bucket(detect_lang(&text)), 1.0));
            fields.clear();
            extract::extract_builtin(&text, &mut fields);
            push_field_features(&fields, tuning.field_value, &mut feats);
            let hits = rules.hits(&set, &text, k);
            let weight = w * factor[class] * if class == 0 { tuning.none_weight } else { 1.0 };
            let mut with_rules = feats.clone();
            push_rule_features(&hits, &tuning, &mut with_rules);
            if with_rules.len() != feats.len() {
                // Part of the mass with the rule features, part without.
                examples.push(Example {
                    features: with_rules,
                    class,
                    weight: weight * (1.0 - tuning.rule_dropout),
                });
                examples.push(Example {
                    features: feats,
                    class,
                    weight: weight * tuning.rule_dropout,
                });
            } else {
                examples.push(Example {
                    features: feats,
                    class,
                    weight,
                });
            }
        }
        let mut model = Model::train(&examples, k, &tuning.train);
        model.temperature = tuning.temperature;
        Engine {
            set,
            opts,
            history,
            classes,
            rules,
            model,
            tuning,
        }
    }

    /// Class index of a label (`none` is 0), if known.
    #[cfg(test)]
    pub(crate) fn class_index(&self, label: &str) -> Option<usize> {
        self.classes.iter().position(|c| c == label)
    }

    /// Class probabilities (`none` first) for a ticket, as `suggest` sees them.
    #[cfg(test)]
    pub(crate) fn class_probs(&self, text: &str) -> Vec<f32> {
        let text = redact(text);
        let lang = detect_lang(&text);
        let hits = self.rules.hits(&self.set, &text, self.classes.len());
        let mut fields = BTreeMap::new();
        extract::extract_builtin(&text, &mut fields);
        features::with_scratch(|s| self.score(&text, lang, &hits, &fields, s))
    }

    /// Name of class `c` (`none` is 0).
    #[cfg(test)]
    pub(crate) fn class_name(&self, c: usize) -> &str {
        &self.classes[c]
    }

    /// The best playbook class by probability, if any.
    pub(crate) fn best(probs: &[f32]) -> Option<usize> {
        (1..probs.len()).reduce(|a, b| if probs[b] > probs[a] { b } else { a })
    }

    /// The confidence of suggesting class `c`: its probability less what
    /// the `none` class takes (`p(c) - none_penalty * p(none)`, at least 0).
    ///
    /// The plain probability of the best playbook says how it compares with
    /// the other playbooks, not whether the ticket is out of scope: 0.55 for
    /// a playbook with `none` at 0.40 is a coin toss about scope. Taking the
    /// `none` mass off gives one score that falls for both kinds of doubt,
    /// and it abstains on more out-of-scope tickets at the same top-1 than a
    /// higher threshold on the plain probability (see the module docs).
    pub(crate) fn confidence(&self, probs: &[f32], c: usize) -> f32 {
        (probs[c] - self.tuning.none_penalty * probs[0]).max(0.0)
    }

    /// The class to suggest, or `None` to abstain.
    pub(crate) fn decide(
        &self,
        probs: &[f32],
        _lang: Lang,
        opts: &SuggestOptions,
    ) -> Option<usize> {
        let c = Self::best(probs)?;
        let conf = self.confidence(probs, c);
        (probs[c] >= probs[0] && conf > 0.0 && conf >= opts.threshold).then_some(c)
    }

    /// Suggests a playbook for a ticket.
    pub fn suggest(&self, text: &str) -> Suggestion {
        let text = redact(text);
        let lang = detect_lang(&text);
        let k = self.classes.len();
        let hits = self.rules.hits(&self.set, &text, k);
        let mut fields = BTreeMap::new();
        extract::extract_builtin(&text, &mut fields);
        features::with_scratch(|s| {
            let probs = self.score(&text, lang, &hits, &fields, s);
            let mut order: Vec<usize> = (1..k).collect();
            order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
            let ranked: Vec<Ranked> = order
                .iter()
                .take(3)
                .map(|&c| Ranked {
                    playbook: self.classes[c].clone(),
                    confidence: round4(probs[c]),
                })
                .collect();
            let best = order.first().copied();
            let confidence = best.map_or(0.0, |c| round4(self.confidence(&probs, c)));
            let chosen = self.decide(&probs, lang, &self.opts);

            if let Some(c) = chosen {
                extract::extract_playbook_fields(&self.set.playbooks[c - 1], &text, &mut fields);
            }
            let why = self.explain(&text, &hits, &probs, best, chosen.is_some(), s);
            Suggestion {
                playbook: chosen.map(|c| self.classes[c].clone()),
                confidence,
                ranked,
                lang,
                fields,
                why,
            }
        })
    }

    /// Renders a playbook's reply draft.
    pub fn render_reply(
        &self,
        playbook: &str,
        lang: Lang,
        fields: &BTreeMap<String, String>,
        customer_name: Option<&str>,
    ) -> Result<String, RenderError> {
        render::render_reply(&self.set, playbook, lang, fields, customer_name)
    }

    /// Builds the `why` lines for a suggestion.
    fn explain(
        &self,
        text: &str,
        hits: &RuleHits,
        probs: &[f32],
        best: Option<usize>,
        suggested: bool,
        s: &features::Scratch,
    ) -> Vec<String> {
        let mut why = Vec::new();
        let Some(best) = best else {
            why.push("no playbooks loaded".to_string());
            return why;
        };
        if !suggested {
            if probs[0] > probs[best] {
                why.push(format!(
                    "abstained: looks out of scope (none {:.2} > {} {:.2})",
                    probs[0], self.classes[best], probs[best]
                ));
            } else {
                why.push(format!(
                    "abstained: best guess {} at {:.2} (probability {:.2}, none {:.2}) is below the threshold {:.2}",
                    self.classes[best],
                    self.confidence(probs, best),
                    probs[best],
                    probs[0],
                    self.opts.threshold
                ));
            }
        }
        for &(i, at) in &hits.matched_triggers {
            let (class, t) = self.rules.triggers[i];
            let trig = &self.set.playbooks[class - 1].triggers[t];
            let input = match at {
                Some(at) => Input::new(text).range(at..).anchored(Anchored::Yes),
                None => Input::new(text),
            };
            let seen = self.rules.anchored[i]
                .find(input)
                .map(|m| &text[m.range()])
                .unwrap_or_default();
            why.push(format!(
                "trigger of {} matched “{seen}” (weight {})",
                self.classes[class], trig.weight
            ));
        }
        for &i in &hits.matched_phrases {
            let p = &self.rules.phrase_targets[i];
            why.push(format!(
                "phrase of {}: “{}”",
                self.classes[p.class], p.phrase
            ));
        }
        let top = self.top_features(s, best, 4);
        if !top.is_empty() {
            let mut line = format!("words pointing to {}: ", self.classes[best]);
            for (n, &i) in top.iter().enumerate() {
                if n > 0 {
                    line.push_str(", ");
                }
                features::describe_into(&s.chars, &s.origins[i].1, &mut line);
            }
            why.push(line);
        }
        why
    }

    /// The n-grams (recorded in `s` by the last [`Engine::score`]) that
    /// push most towards `class`, as indices into `s.origins`: largest
    /// weight above the row's mean.
    fn top_features(&self, s: &features::Scratch, class: usize, n: usize) -> Vec<usize> {
        let k = self.model.k;
        // Best `n` (score, origin index), kept sorted; no allocation per n-gram.
        let mut top: Vec<(f32, usize)> = Vec::with_capacity(n + 1);
        for (i, &(j, o)) in s.origins.iter().enumerate() {
            // Only explaining kinds are recorded; checked again so the
            // two cannot drift apart.
            if !o.kind.explains() {
                continue;
            }
            let row = self.model.row(j);
            let score = row[class] - row.iter().sum::<f32>() / k as f32;
            if score <= 0.0 || top.iter().any(|&(_, t)| s.origins[t].0 == j) {
                continue;
            }
            if top.len() < n || score > top[top.len() - 1].0 {
                let at = top
                    .iter()
                    .position(|&(t, _)| score > t)
                    .unwrap_or(top.len());
                top.insert(at, (score, i));
                top.truncate(n);
            }
        }
        top.iter().map(|&(_, i)| i).collect()
    }
}

/// Which built-in fields were found: a foreign country or currency is
/// evidence for cross-border payments, a transaction id for payment
/// questions, and so on. The model learns how much each says.
fn push_field_features(fields: &BTreeMap<String, String>, value: f32, out: &mut Vec<Feature>) {
    if value == 0.0 {
        return;
    }
    for (i, name) in BUILTIN_FIELDS.iter().enumerate() {
        let Some(v) = fields.get(*name) else { continue };
        let foreign = match *name {
            "country" => v != "中国" && v != "China",
            "currency" => v != "CNY",
            _ => false,
        };
        let n = 2 * i as u64 + u64::from(foreign);
        out.push((features::synthetic(Kind::Field, n), value));
    }
}

fn push_rule_features(hits: &RuleHits, tuning: &Tuning, out: &mut Vec<Feature>) {
    for c in 1..hits.trigger.len() {
        if hits.trigger[c] > 0.0 {
            let v = hits.trigger[c].min(tuning.rule_cap) * tuning.rule_scale;
            out.push((features::synthetic(Kind::Rule, c as u64), v));
        }
        if hits.phrase[c] > 0.0 {
            let v = hits.phrase[c].min(2.0) * tuning.phrase_value;
            out.push((features::synthetic(Kind::Phrase, c as u64), v));
        }
    }
}

fn lang_bucket(lang: Lang) -> u32 {
    features::synthetic(Kind::Lang, lang as u64)
}

fn round4(x: f32) -> f32 {
    (x * 10_000.0).round() / 10_000.0
}

/// The language to answer in: Chinese when CJK characters carry the text,
/// English otherwise.
///
/// A Chinese word is one to two characters, so a CJK character counts for
/// half a Latin word: `我的card被decline了` is Chinese, `My transfer to 杭州
/// failed` and an English ticket quoting `订单号` are English. (A general
/// detector such as whatlang was measured at ~200 µs on mixed text and
/// does no better with only two languages to tell apart.)
pub fn detect_lang(text: &str) -> Lang {
    let mut cjk = 0usize;
    let mut words = 0usize;
    let mut in_word = false;
    for c in text.chars() {
        if features::is_cjk(c) {
            cjk += 1;
            in_word = false;
        } else if c.is_alphabetic() {
            if !in_word {
                words += 1;
            }
            in_word = true;
        } else {
            in_word = false;
        }
    }
    if cjk == 0 && words == 0 {
        Lang::default()
    } else if cjk * 2 > words {
        Lang::Zh
    } else {
        Lang::En
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The literal prefilter (prefixes, suffixes, one Aho-Corasick pass)
    /// only skips work: on every example of the shipped playbooks, with
    /// case changes and noise around it, the same triggers and phrases
    /// fire as when every regex runs over the whole text.
    #[test]
    fn prefilter_fires_the_same_rules_as_running_every_regex() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("playbooks");
        let set = super::super::load_dir(&dir).unwrap();
        let rules = Rules::build(&set);
        let k = set.playbooks.len() + 1;
        let mut texts: Vec<String> = Vec::new();
        for pb in &set.playbooks {
            for lang in Lang::ALL {
                for ex in pb.examples.get(lang) {
                    texts.push(ex.clone());
                    texts.push(format!("Hi, {} THANKS 谢谢", ex.to_uppercase()));
                }
            }
        }
        for lang in Lang::ALL {
            texts.extend(set.out_of_scope.examples.get(lang).iter().cloned());
        }
        let mut fired = 0;
        for text in &texts {
            let h = rules.hits(&set, text, k);
            let got: Vec<usize> = h.matched_triggers.iter().map(|&(i, _)| i).collect();
            let want: Vec<usize> = (0..rules.triggers.len())
                .filter(|&i| rules.anchored[i].is_match(text.as_str()))
                .collect();
            assert_eq!(got, want, "triggers of {text:?}");
            let lower = text.to_lowercase();
            let mut want_phrases: Vec<usize> = (0..rules.phrase_targets.len())
                .filter(|&i| lower.contains(&rules.phrase_targets[i].phrase))
                .collect();
            let mut got_phrases = h.matched_phrases.clone();
            got_phrases.sort_unstable();
            want_phrases.sort_unstable();
            assert_eq!(got_phrases, want_phrases, "phrases of {text:?}");
            fired += got.len();
        }
        assert!(fired > texts.len() / 2, "the check saw triggers fire");
    }

    #[test]
    fn literals_of_a_trigger() {
        let p = literal_prefixes("(?i)(card|pay)s?.{0,20}(declined|failed)").unwrap();
        assert_eq!(p, vec![b"card".to_vec(), b"pay".to_vec()]);
        let s = literal_suffixes("(?i)(card|pay)s?.{0,20}(declined|failed)").unwrap();
        assert_eq!(s, vec![b"failed".to_vec(), b"declined".to_vec()]);
        assert_eq!(literal_suffixes("(?i)refund.*"), None);
    }
}
