//! `[matrix]`: the homeserver, the bot's account, and end-to-end encryption
//! (the passphrase of the crypto store and the recovery key). Raw form,
//! validation, types.

use serde::Deserialize;
use toml::Spanned;

use super::{Secret, Validator};

/// What the user wrote under `[matrix]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMatrix {
    #[serde(default)]
    pub(super) enabled: bool,
    homeserver: Spanned<String>,
    user_id: Spanned<String>,
    password_env: Option<Spanned<String>>,
    access_token_env: Option<Spanned<String>>,
    #[serde(default)]
    invite_from: Vec<String>,
    /// On by default: Element encrypts private rooms and DMs.
    encryption: Option<Spanned<bool>>,
    store_passphrase_env: Option<Spanned<String>>,
    recovery_key_env: Option<Spanned<String>>,
}

/// The validated `[matrix]` section.
#[derive(Debug, Clone)]
pub struct MatrixConfig {
    pub homeserver: String,
    pub user_id: String,
    pub password: Option<Secret>,
    pub access_token: Option<Secret>,
    /// Users whose invites the bot accepts, besides invites to configured rooms.
    pub invite_from: Vec<String>,
    /// End-to-end encryption; `None` when `encryption = false` (the bot
    /// then cannot read encrypted rooms and keeps no crypto store).
    pub e2ee: Option<E2eeConfig>,
}

/// What encrypted rooms need: the secrets guarding the bot's crypto identity.
#[derive(Debug, Clone)]
pub struct E2eeConfig {
    /// Encrypts the SQLite crypto/state store in the data dir.
    pub store_passphrase: Secret,
    /// The recovery (secret storage) key printed on the first start. Needed
    /// only to bring up a new device when the store is lost.
    pub recovery_key: Option<Secret>,
}

impl Validator<'_> {
    pub(super) fn matrix(&mut self, m: RawMatrix) -> MatrixConfig {
        if !m.homeserver.get_ref().starts_with("http://")
            && !m.homeserver.get_ref().starts_with("https://")
        {
            self.error(
                Some(m.homeserver.span()),
                "matrix.homeserver",
                "must be a URL starting with https:// (or http:// for a local server)",
            );
        }
        let user = m.user_id.get_ref();
        if !user.starts_with('@') || !user.contains(':') {
            self.error(
                Some(m.user_id.span()),
                "matrix.user_id",
                format!("`{user}` is not a Matrix user id like @caseroom:example.org"),
            );
        }
        // An access token wins when both are named; the password is only
        // needed when neither a token nor a saved session exists.
        let access_token = m.access_token_env.as_ref().and_then(|v| {
            (self.env)(v.get_ref())
                .filter(|s| !s.is_empty())
                .map(|s| Secret::new(v.get_ref(), s))
        });
        let password = match (&m.password_env, &access_token) {
            (Some(v), None) => Some(self.secret(v, "matrix.password_env")),
            (Some(v), Some(_)) => (self.env)(v.get_ref()).map(|s| Secret::new(v.get_ref(), s)),
            (None, None) => {
                let span = m.access_token_env.as_ref().map(|v| v.span());
                self.error(
                    span,
                    "matrix",
                    "set password_env or access_token_env (naming a set environment variable)",
                );
                None
            }
            (None, Some(_)) => None,
        };
        let encryption = m.encryption.as_ref().is_none_or(|e| *e.get_ref());
        let e2ee = if encryption {
            match &m.store_passphrase_env {
                Some(v) => Some(E2eeConfig {
                    store_passphrase: self.secret(v, "matrix.store_passphrase_env"),
                    // Optional: only a start with a lost store needs it.
                    recovery_key: m.recovery_key_env.as_ref().and_then(|v| {
                        (self.env)(v.get_ref())
                            .filter(|s| !s.trim().is_empty())
                            .map(|s| Secret::new(v.get_ref(), s.trim()))
                    }),
                }),
                None => {
                    self.error(
                        m.encryption.as_ref().map(|e| e.span()),
                        "matrix.store_passphrase_env",
                        "encrypted rooms need a crypto store passphrase: name the environment variable holding it, or set `encryption = false`",
                    );
                    None
                }
            }
        } else {
            None
        };
        MatrixConfig {
            homeserver: m.homeserver.into_inner(),
            user_id: m.user_id.into_inner(),
            password,
            access_token,
            invite_from: m.invite_from,
            e2ee,
        }
    }
}
