//! Wiring: logging, the async runtime, start-up and one shutdown path.

use std::path::Path;

use anyhow::{Context, Result};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::store::Store;

/// Logs go to stderr, filtered by `RUST_LOG` (default `info`).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

/// Runs the bot on a fresh Tokio runtime until ctrl-c or SIGTERM.
pub fn run_blocking(config: Config) -> Result<()> {
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    rt.block_on(async {
        let shutdown = CancellationToken::new();
        spawn_signal_handler(shutdown.clone());
        run(config, shutdown).await
    })
}

/// Runs the bot until `shutdown` is cancelled. Tests pass their own token.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<()> {
    let store = Store::open(&config.data_dir)
        .with_context(|| format!("opening the store in {}", config.data_dir.display()))?;
    tracing::info!(data_dir = %config.data_dir.display(), cases = store.case_count(), "store open");
    shutdown.cancelled().await;
    tracing::info!("shutting down");
    store.flush()?;
    Ok(())
}

/// Cancels `token` on ctrl-c or SIGTERM.
pub fn spawn_signal_handler(token: CancellationToken) {
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!("cannot listen for SIGTERM: {e}");
                        let _ = ctrl_c.await;
                        token.cancel();
                        return;
                    }
                };
            tokio::select! {
                _ = ctrl_c => {},
                _ = term.recv() => {},
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        token.cancel();
    });
}

pub fn check_playbooks(_dir: &Path) -> std::result::Result<usize, Vec<String>> {
    Ok(0)
}

pub fn suggest_command(
    _config: &Path,
    _data_dir: Option<&Path>,
    _text: Option<String>,
    _jsonl: bool,
) -> Result<i32> {
    anyhow::bail!("not wired yet")
}

pub fn learn_command(_config: &Path, _data_dir: Option<&Path>, _file: &Path) -> Result<i32> {
    anyhow::bail!("not wired yet")
}
