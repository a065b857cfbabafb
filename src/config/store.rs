//! `[store]`: the sled store's memory. Raw form, validation, types.

use serde::Deserialize;
use toml::Spanned;

use super::Validator;

/// What the user wrote under `[store]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStore {
    cache_mb: Option<Spanned<u64>>,
}

/// The validated `[store]` section.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Page cache of the store, in MiB: what sled keeps of the data in
    /// memory beyond its index. Bounds the process size with a large store.
    pub cache_mb: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            cache_mb: crate::store::DEFAULT_CACHE_MB,
        }
    }
}

impl StoreConfig {
    pub fn cache_bytes(&self) -> u64 {
        self.cache_mb * 1024 * 1024
    }
}

impl Validator<'_> {
    pub(super) fn store(&mut self, raw: RawStore) -> StoreConfig {
        let mut out = StoreConfig::default();
        if let Some(n) = raw.cache_mb {
            if !(4..=65_536).contains(n.get_ref()) {
                self.error(
                    Some(n.span()),
                    "store.cache_mb",
                    "must be between 4 and 65536 (MiB)",
                );
            } else {
                out.cache_mb = *n.get_ref();
            }
        }
        out
    }
}
