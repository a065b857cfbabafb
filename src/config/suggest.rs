//! `[suggest]`: where playbooks live and how sure a suggestion must be.
//! Raw form, validation, types.

use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use super::Validator;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSuggest {
    playbooks_dir: Option<String>,
    threshold: Option<Spanned<f64>>,
}

#[derive(Debug, Clone)]
pub struct SuggestConfig {
    pub playbooks_dir: PathBuf,
    /// Below this confidence the engine abstains.
    pub threshold: f32,
}

impl Validator<'_> {
    pub(super) fn suggest(&mut self, raw: RawSuggest) -> SuggestConfig {
        let threshold = match raw.threshold {
            None => crate::playbook::DEFAULT_THRESHOLD,
            Some(t) if !(0.0..=1.0).contains(t.get_ref()) => {
                self.error(
                    Some(t.span()),
                    "suggest.threshold",
                    "must be between 0 and 1",
                );
                crate::playbook::DEFAULT_THRESHOLD
            }
            Some(t) => *t.get_ref() as f32,
        };
        SuggestConfig {
            playbooks_dir: PathBuf::from(raw.playbooks_dir.unwrap_or_else(|| "playbooks".into())),
            threshold,
        }
    }
}
