//! Playbooks: what the team does for a kind of ticket, and picking one.
//!
//! A playbook (one TOML file in `playbooks/`) has titles, triggers and
//! phrases, examples, fields to extract, an agent checklist and reply
//! templates in Chinese and English. This module loads and validates them,
//! suggests the right one for a ticket, extracts the template fields and
//! renders the reply draft.
//!
//! # Layout
//! - [`load`](load_dir): raw TOML -> validated [`PlaybookSet`], every error
//!   with file and line ([`PlaybookError`]).
//! - `features`: normalisation and hashed n-gram features (zh, en, mixed).
//! - `model`: multinomial logistic regression over those features.
//! - [`Engine`]: rules + model -> [`Suggestion`] with calibrated confidence
//!   and an explanation; abstains below [`SuggestOptions::threshold`].
//! - `extract`: built-in and per-playbook field extraction (on redacted text).
//! - `render`: minijinja reply drafts.
//! - `cli`: [`parse_history`], [`suggest_jsonl`], [`format_suggestion`].
//! - `watch`: hot reload ([`spawn_watcher`], [`SharedEngine`]).
//!
//! # Confidence and threshold
//! Confidence is the softmax probability of the best playbook (the `none`
//! class takes part in the softmax). On held-out history it is roughly
//! calibrated: suggestions made at 0.3–0.5 are right about a third of the
//! time, at 0.5–0.7 about 65%, at 0.7–0.9 about 90%, above 0.9 about 99%.
//! [`DEFAULT_THRESHOLD`] (0.5) was chosen on the project's data; top-1 /
//! false-suggestion rate (share of `none` tickets that still got a playbook):
//!
//! | threshold | dev tickets | dev + history | history 80/20 | examples 5-fold |
//! |---|---|---|---|---|
//! | 0.3 | 1.000 / 0.00 | 1.000 / 0.10 | 0.975 / 0.016 | 0.896 / 0.105 |
//! | 0.4 | 0.986 / 0.00 | 0.986 / 0.05 | 0.971 / 0.016 | 0.875 / 0.074 |
//! | 0.5 | 0.986 / 0.00 | 0.972 / 0.00 | 0.969 / 0.016 | 0.853 / 0.049 |
//! | 0.6 | 0.944 / 0.00 | 0.958 / 0.00 | 0.960 / 0.014 | 0.827 / 0.041 |
//! | 0.7 | 0.944 / 0.00 | 0.931 / 0.00 | 0.948 / 0.008 | 0.793 / 0.022 |
//!
//! ("examples 5-fold": each playbook's own examples held out in turn, a
//! harder test of unseen wording than the dev tickets.)
//! Lower it to suggest more often at the cost of more wrong suggestions on
//! out-of-scope tickets; raise it to abstain more.

pub(crate) mod cli;
pub(crate) mod engine;
pub(crate) mod extract;
pub(crate) mod features;
pub(crate) mod load;
pub(crate) mod model;
#[cfg(test)]
mod quality;
pub(crate) mod render;
pub(crate) mod watch;

#[cfg(test)]
mod tests;

pub use crate::lang::Lang;
pub use cli::{format_suggestion, parse_history, suggest_jsonl};
pub use engine::{
    DEFAULT_THRESHOLD, Engine, Labelled, Ranked, SuggestOptions, Suggestion, detect_lang,
};
pub use load::{BUILTIN_FIELDS, NONE_ID, Playbook, PlaybookError, PlaybookSet, load_dir};
pub use render::RenderError;
pub use watch::{POLL_INTERVAL, SharedEngine, current, share, spawn_watcher, spawn_watcher_every};
