//! End-to-end encryption: the bot's crypto store, its cross-signed identity,
//! recovery, and the state `caseroom check` reports.
//!
//! matrix-sdk keeps the Olm account, the room keys and the rooms' state in
//! SQLite databases under `<data_dir>/matrix/` ([`STORE_DIR`]), encrypted
//! with the passphrase from `matrix.store_passphrase_env`. The store belongs
//! to one device: it is kept and restored together with the session saved in
//! our own store, and a session whose crypto store is gone is never resumed
//! (the device's keys are lost with it).
//!
//! **Identity** ([`ensure_identity`], on every start): Element (MSC4153)
//! only talks to devices their owner has cross-signed, so the bot
//!
//! - on the account's very first start, creates the cross-signing identity
//!   (signing its device), enables secret storage and key backup, and prints
//!   the recovery key once for the operator ([`announce`]);
//! - on a new device of an account that already has an identity (the data
//!   dir was lost), imports the identity with the recovery key from
//!   `matrix.recovery_key_env`, which cross-signs the new device; without
//!   that key it refuses to start rather than run as an untrusted device.
//!
//! Room keys go only to devices cross-signed by their owner
//! ([`CollectStrategy::IdentityBasedStrategy`], what Element does when it
//! excludes insecure devices).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use matrix_sdk::config::{SyncSettings, SyncToken};
use matrix_sdk::encryption::recovery::RecoveryState;
use matrix_sdk::encryption::{BackupDownloadStrategy, EncryptionSettings};
use matrix_sdk::ruma::api::client::filter::FilterDefinition;
use matrix_sdk::ruma::api::client::sync::sync_events::v3::Filter;
use matrix_sdk::ruma::api::client::uiaa;
use matrix_sdk::{Client, ClientBuilder};
use matrix_sdk_base::crypto::CollectStrategy;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::config::{E2eeConfig, MatrixConfig};

/// Directory under the data dir holding matrix-sdk's SQLite stores.
pub const STORE_DIR: &str = "matrix";
/// The crypto database; its presence is what "the store exists" means.
const CRYPTO_DB: &str = "matrix-sdk-crypto.sqlite3";
/// The identity state the bot last saw, for `caseroom check` (which cannot
/// open the stores while the bot runs). Holds no secrets.
const STATUS_FILE: &str = "e2ee-status.json";

/// Where the crypto store of a data dir lives.
pub fn store_dir(data_dir: &Path) -> PathBuf {
    data_dir.join(STORE_DIR)
}

/// Whether a crypto store exists in `dir`.
pub fn store_present(dir: &Path) -> bool {
    dir.join(CRYPTO_DB).exists()
}

/// Adds the encrypted SQLite store and our encryption policy to a client.
pub(super) fn configure(builder: ClientBuilder, dir: &Path, e2ee: &E2eeConfig) -> ClientBuilder {
    builder
        .sqlite_store(dir, Some(e2ee.store_passphrase.expose()))
        .with_encryption_settings(EncryptionSettings {
            // Both are done by `ensure_identity`, which knows whether the
            // account already has an identity that must be recovered
            // instead of replaced.
            auto_enable_cross_signing: false,
            auto_enable_backups: false,
            // A key the bot missed may be in its own backup.
            backup_download_strategy: BackupDownloadStrategy::AfterDecryptionFailure,
        })
        .with_room_key_recipient_strategy(CollectStrategy::IdentityBasedStrategy)
}

/// The error for a crypto store that cannot be opened: nearly always the
/// passphrase. Nothing has been written at that point.
pub(super) fn open_error(dir: &Path, e2ee: &E2eeConfig, e: impl std::fmt::Display) -> String {
    format!(
        "cannot open the Matrix crypto store in {} with the passphrase from ${}: is it the passphrase the store was created with? Nothing was changed. ({e})",
        dir.display(),
        e2ee.store_passphrase.var
    )
}

/// The error for a saved session whose crypto store is gone and no
/// recovery key to bring up a new, cross-signed device.
pub(super) fn missing_store_error(dir: &Path, device: &str) -> String {
    format!(
        "the Matrix session (device {device}) is saved in the data dir but its crypto store {} is missing: restore the data dir from the same backup, or set matrix.recovery_key_env (the recovery key printed on the first start) so the bot logs in a new device and recovers its cross-signed identity. Not starting as a new, untrusted device.",
        dir.display()
    )
}

/// Makes sure the bot's device is cross-signed by its account and that
/// secret storage and key backup are on. Returns the recovery key when one
/// was created now (the first start of the account), which the caller
/// prints once.
pub(super) async fn ensure_identity(
    client: &Client,
    config: &MatrixConfig,
    e2ee: &E2eeConfig,
) -> anyhow::Result<Option<String>> {
    let encryption = client.encryption();
    encryption.wait_for_e2ee_initialization_tasks().await;
    let user_id = client.user_id().context("not logged in")?.to_owned();
    let complete = encryption
        .cross_signing_status()
        .await
        .is_some_and(|s| s.is_complete());
    let mut new_key = None;
    if !complete {
        // A new device's keys are uploaded by the SDK around a sync; they
        // must be on the server before the identity can sign the device.
        flush(client).await?;
        let published = encryption
            .request_user_identity(&user_id)
            .await
            .context("asking the homeserver for the bot's cross-signing identity")?;
        if published.is_some() {
            let Some(key) = &e2ee.recovery_key else {
                bail!(
                    "{user_id} already has a cross-signing identity but this device {} cannot sign itself: set matrix.recovery_key_env to the recovery key printed on the bot's first start. Not starting as an untrusted device.",
                    client.device_id().map(|d| d.as_str()).unwrap_or("?")
                );
            };
            encryption
                .recovery()
                .recover(key.expose())
                .await
                .with_context(|| {
                    format!(
                        "recovering the bot's identity with the recovery key from ${} (is it the right key?)",
                        key.var
                    )
                })?;
            info!(
                "recovered the cross-signing identity with the recovery key; this device is cross-signed"
            );
        } else {
            bootstrap_cross_signing(client, config, &user_id).await?;
            info!("created the bot's cross-signing identity");
            new_key = Some(enable_recovery(client).await?);
        }
    }
    if new_key.is_none() && encryption.recovery().state() == RecoveryState::Disabled {
        // An identity without secret storage: a first start that stopped
        // half-way. Finish it.
        new_key = Some(enable_recovery(client).await?);
    }
    if !complete || new_key.is_some() {
        // Send what is pending, then read our device back with its new
        // signatures.
        flush(client).await?;
        encryption
            .request_user_identity(&user_id)
            .await
            .context("reading back the bot's cross-signing identity")?;
    }
    let own = encryption
        .get_own_device()
        .await
        .context("reading the bot's own device")?;
    if !own.is_some_and(|d| d.is_cross_signed_by_owner()) {
        bail!("the bot's device is not cross-signed by its account after setting up its identity");
    }
    Ok(new_key)
}

/// Sends the SDK's pending crypto requests (key uploads, signature
/// uploads, key queries) with a sync that asks for nothing else and does
/// not wait. Our own sync token is not touched.
async fn flush(client: &Client) -> anyhow::Result<()> {
    // No token: an initial sync filtered down to nothing. Reusing the
    // SDK's last token here made the next real sync skip the events since.
    let settings = SyncSettings::new()
        .token(SyncToken::NoToken)
        .timeout(Duration::ZERO)
        .filter(Filter::FilterDefinition(FilterDefinition::ignore_all()));
    client
        .sync_once(settings)
        .await
        .context("uploading the bot's device keys")?;
    Ok(())
}

/// Uploads a new cross-signing identity; answers the homeserver's
/// user-interactive auth with the password when it asks.
async fn bootstrap_cross_signing(
    client: &Client,
    config: &MatrixConfig,
    user_id: &matrix_sdk::ruma::UserId,
) -> anyhow::Result<()> {
    let encryption = client.encryption();
    let Err(e) = encryption.bootstrap_cross_signing(None).await else {
        return Ok(());
    };
    let (Some(uiaa), Some(password)) = (e.as_uiaa_response(), &config.password) else {
        return Err(anyhow::Error::new(e).context("creating the bot's cross-signing identity"));
    };
    let mut auth = uiaa::Password::new(
        uiaa::UserIdentifier::Matrix(uiaa::MatrixUserIdentifier::new(
            user_id.localpart().to_owned(),
        )),
        password.expose().to_owned(),
    );
    auth.session = uiaa.session.clone();
    encryption
        .bootstrap_cross_signing(Some(uiaa::AuthData::Password(auth)))
        .await
        .context("creating the bot's cross-signing identity (with the password)")
}

/// Enables secret storage and key backup; returns the new recovery key.
async fn enable_recovery(client: &Client) -> anyhow::Result<String> {
    let key = client
        .encryption()
        .recovery()
        .enable()
        .await
        .context("enabling secret storage and key backup")?;
    info!("enabled secret storage and key backup");
    Ok(key)
}

/// Prints a new recovery key once, for the operator to keep as a secret.
/// It goes to stderr and never into the logs.
pub(super) fn announce(key: &str, e2ee: &E2eeConfig) {
    let var = e2ee
        .recovery_key
        .as_ref()
        .map_or("the variable named by matrix.recovery_key_env", |k| {
            k.var.as_str()
        });
    // Not `tracing`: the key must never reach log files.
    eprintln!(
        "\n==== caseroom: Matrix recovery key (shown once) ====\n{key}\n\
         Keep it as a secret now, e.g. in {var}. It restores the bot's\n\
         cross-signed identity and key backup if the data dir is lost.\n\
         ====================================================\n"
    );
}

/// Undoes a device created in this start whose identity could not be set
/// up: logs it out (so no untrusted device is left on the account) and
/// removes its fresh crypto store.
pub(super) async fn discard_new_device(client: Client, dir: &Path) {
    if let Err(e) = client.matrix_auth().logout().await {
        warn!(error = %e, "cannot log out the half set-up device");
    }
    drop(client);
    if let Err(e) = std::fs::remove_dir_all(dir) {
        warn!(dir = %dir.display(), error = %e, "cannot remove the new crypto store");
    }
}

/// What `caseroom check` shows about encryption.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct E2eeStatus {
    pub user_id: String,
    pub device_id: String,
    /// The device carries its account's self-signing signature.
    pub cross_signed: bool,
    /// Room keys are backed up to the homeserver.
    pub backup: bool,
    /// Secret storage (the recovery key) is set up.
    pub recovery: String,
    /// When the bot last wrote this (RFC 3339).
    pub updated: String,
}

/// Records the identity state for `caseroom check`; best effort.
pub(super) async fn write_status(client: &Client, dir: &Path) {
    let encryption = client.encryption();
    let cross_signed =
        matches!(encryption.get_own_device().await, Ok(Some(d)) if d.is_cross_signed_by_owner());
    let status = E2eeStatus {
        user_id: client.user_id().map(|u| u.to_string()).unwrap_or_default(),
        device_id: client
            .device_id()
            .map(|d| d.to_string())
            .unwrap_or_default(),
        cross_signed,
        backup: encryption.backups().are_enabled().await,
        recovery: format!("{:?}", encryption.recovery().state()),
        updated: jiff::Timestamp::now().to_string(),
    };
    let write = serde_json::to_vec_pretty(&status)
        .map_err(std::io::Error::other)
        .and_then(|json| std::fs::write(dir.join(STATUS_FILE), json));
    if let Err(e) = write {
        warn!(error = %e, "cannot write the E2EE status file");
    }
}

/// What `caseroom check` says about encryption.
#[derive(Debug, Default)]
pub struct E2eeCheck {
    /// Everything, in order (printed on stderr).
    pub lines: Vec<String>,
    /// The lines that are problems: `check` fails with them.
    pub problems: Vec<String>,
}

/// `caseroom check`: store present, identity cross-signed, backup on, as
/// last seen by the bot; and whether the passphrase in the environment
/// opens the store (when it is set here). A device Element will not share
/// keys with, backup off, or a passphrase that does not open the store are
/// problems; no store yet is not (the first start makes it).
pub fn report(data_dir: &Path, homeserver: &str, e2ee: Option<&E2eeConfig>) -> E2eeCheck {
    let mut out = E2eeCheck::default();
    let dir = store_dir(data_dir);
    if !store_present(&dir) {
        out.lines.push(format!(
            "matrix e2ee: no crypto store in {} yet (the first start creates it, cross-signs the bot's device and prints the recovery key once)",
            dir.display()
        ));
        return out;
    }
    let problem = |out: &mut E2eeCheck, line: String| {
        out.problems.push(line.clone());
        out.lines.push(line);
    };
    let mut lines = vec![format!(
        "matrix e2ee: crypto store present in {}",
        dir.display()
    )];
    match std::fs::read(dir.join(STATUS_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice::<E2eeStatus>(&b).ok())
    {
        Some(s) => {
            let device = format!(
                "matrix e2ee: device {} of {}: {}",
                s.device_id,
                s.user_id,
                if s.cross_signed {
                    "cross-signed by its account"
                } else {
                    "NOT cross-signed (Element will not share keys with it)"
                }
            );
            let backup = format!(
                "matrix e2ee: key backup {}, recovery {} (as of {})",
                if s.backup { "on" } else { "OFF" },
                s.recovery,
                s.updated
            );
            out.lines.append(&mut lines);
            if s.cross_signed {
                out.lines.push(device);
            } else {
                problem(&mut out, device);
            }
            if s.backup {
                out.lines.push(backup);
            } else {
                problem(&mut out, backup);
            }
        }
        None => lines.push("matrix e2ee: identity state unknown (the bot has not finished a start with this store)".to_owned()),
    }
    out.lines.append(&mut lines);
    if let Some(e2ee) = e2ee.filter(|e| !e.store_passphrase.expose().is_empty()) {
        match check_passphrase(&dir, homeserver, e2ee) {
            Ok(()) => out.lines.push(format!(
                "matrix e2ee: the passphrase from ${} opens the store",
                e2ee.store_passphrase.var
            )),
            Err(e) => problem(&mut out, format!("matrix e2ee: {e:#}")),
        }
    }
    out
}

/// Opens the store with the configured passphrase (no network).
fn check_passphrase(dir: &Path, homeserver: &str, e2ee: &E2eeConfig) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        configure(Client::builder().homeserver_url(homeserver), dir, e2ee)
            .build()
            .await
            .map(drop)
            .map_err(|e| anyhow::anyhow!(open_error(dir, e2ee, e)))
    })
}
