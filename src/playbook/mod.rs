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
//! # Threshold
//! [`DEFAULT_THRESHOLD`] was chosen on the project's data (see the
//! engine's `tests` and the bench); lower it to suggest more often at the
//! cost of more wrong suggestions on out-of-scope tickets.

pub(crate) mod cli;
pub(crate) mod engine;
pub(crate) mod extract;
pub(crate) mod features;
pub(crate) mod load;
pub(crate) mod model;
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
