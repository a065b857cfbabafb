//! Wiring: logging, the async runtime, start-up and one shutdown path.
//!
//! [`run`] opens the store, loads the playbooks, connects the chat platform
//! the config enables ([`crate::platform::connect`]; the terminal when none
//! is), and runs the bot until the shutdown token fires. Tests call [`run_with`] with their own platform
//! and token.

use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::bot::Bot;
use crate::config::Config;
use crate::message::Incoming;
use crate::outbox::Outbox;
use crate::platform::Platform;
use crate::playbook::{self, Engine, Labelled, SharedEngine, SuggestOptions};
use crate::store::{HistoryItem, Store};

/// Changes the log filter after start (see [`quiet_for_terminal`]).
type FilterHandle =
    tracing_subscriber::reload::Handle<tracing_subscriber::EnvFilter, tracing_subscriber::Registry>;
static LOG_FILTER: std::sync::OnceLock<FilterHandle> = std::sync::OnceLock::new();

/// Logs go to stderr, filtered by `RUST_LOG` (default `info`).
pub fn init_tracing() {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false);
    if tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .try_init()
        .is_ok()
    {
        let _ = LOG_FILTER.set(handle);
    }
}

/// Someone typing to the bot in terminal mode reads its replies on the
/// same screen as its logs: unless `RUST_LOG` says otherwise, show only
/// warnings and errors there. Piped input and chat platforms keep `info`.
fn quiet_for_terminal(config: &Config) {
    use std::io::IsTerminal as _;
    let chat = config.matrix.is_some() || config.slack.is_some() || config.discord.is_some();
    if chat || !std::io::stdin().is_terminal() || std::env::var_os("RUST_LOG").is_some() {
        return;
    }
    if let Some(h) = LOG_FILTER.get() {
        let _ = h.reload(tracing_subscriber::EnvFilter::new("warn"));
        eprintln!("(logs: warnings only in terminal mode; RUST_LOG=info shows everything)");
    }
}

/// How long shutdown waits for tasks (webhook requests in flight, message
/// deliveries) before giving up on them; pending outbox messages stay in
/// the store for the next start.
const TASKS_GRACE: Duration = Duration::from_secs(3);
/// How long the runtime waits for blocking work (a store write, a read
/// from a terminal) once the bot has stopped. Together with
/// [`TASKS_GRACE`] this keeps a signal-to-exit time under 5 s.
const RUNTIME_GRACE: Duration = Duration::from_millis(500);
/// At the end of piped input, how long the bot waits for its replies to be
/// delivered before it stops.
const DRAIN_OUTBOX: Duration = Duration::from_secs(10);

/// Runs the bot on a fresh Tokio runtime until ctrl-c or SIGTERM.
pub fn run_blocking(config: Config) -> Result<()> {
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let result = rt.block_on(async {
        let shutdown = CancellationToken::new();
        spawn_signal_handler(shutdown.clone());
        run(config, shutdown).await
    });
    // Dropping the runtime would wait for every blocking task without a
    // limit; a stuck one must never hold the process.
    rt.shutdown_timeout(RUNTIME_GRACE);
    result
}

/// Runs the bot until `shutdown` is cancelled, on the configured platform.
pub async fn run(mut config: Config, shutdown: CancellationToken) -> Result<()> {
    quiet_for_terminal(&config);
    let store = crate::cli::open_data_dir(&config.data_dir, config.store.cache_bytes())?;
    tracing::info!(data_dir = %config.data_dir.display(), cases = store.case_count(), "store open");
    let (tx, rx) = mpsc::channel::<Incoming>(1024);
    let tracker = TaskTracker::new();

    let platform = crate::platform::connect(&mut config, &store).await?;
    let receiver = platform.clone();
    let token = shutdown.clone();
    let name = platform.name();
    tracker.spawn(async move {
        if let Err(e) = receiver.run(tx, token.clone()).await {
            tracing::error!("{name} stopped: {e:#}");
            token.cancel();
        }
    });
    run_with(config, store, platform, rx, shutdown, tracker).await
}

/// Runs the bot core with a given platform: incoming events arrive on `rx`,
/// messages leave through the outbox to `platform`.
pub async fn run_with(
    config: Config,
    store: Store,
    platform: Arc<dyn Platform>,
    mut rx: mpsc::Receiver<Incoming>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) -> Result<()> {
    let engine = playbook::share(load_engine(&config, &store)?);
    tracker.spawn({
        let watcher = playbook::spawn_watcher(
            config.suggest.playbooks_dir.clone(),
            engine.clone(),
            shutdown.clone(),
        );
        async move {
            let _ = watcher.await;
        }
    });
    let outbox = Outbox::new();
    let http = config.http.clone();

    let bot = Bot::new(
        config,
        store.clone(),
        engine.clone(),
        outbox.clone(),
        platform.name(),
    );
    let receiver = platform.clone();
    tracker.spawn(tell_playbook_changes(
        engine.clone(),
        platform.clone(),
        shutdown.clone(),
    ));
    outbox.spawn(store.clone(), platform, shutdown.clone(), &tracker);
    bot.spawn_outbound(shutdown.clone(), &tracker)
        .context("starting the helpdesk event delivery")?;
    tracker.spawn(relearn(bot.clone(), engine, shutdown.clone()));
    // SLA timers: loads open cases' deadlines, then fires each when due.
    bot.sla().spawn(shutdown.clone(), &tracker);
    if http.enabled {
        start_http(&http, bot.clone(), &shutdown, &tracker).await?;
    }
    tracing::info!("caseroom is running");
    loop {
        let msg = tokio::select! {
            _ = shutdown.cancelled() => break,
            m = rx.recv() => m,
        };
        let Some(msg) = msg else {
            // Input ended (end of piped commands, ctrl-d): every message has
            // been handled; let the replies go out before stopping.
            drain_outbox(&store, &shutdown).await;
            if http.enabled && !shutdown.is_cancelled() {
                // A webhook-only service (stdin is /dev/null under systemd)
                // keeps serving tickets until it is told to stop.
                tracing::info!("no more chat input; serving the webhook until SIGTERM or ctrl-c");
                shutdown.cancelled().await;
            }
            break;
        };
        let b = bot.clone();
        let event_id = msg.event_id.clone();
        // Store writes wait for a disk flush: keep them off the async workers.
        let result = tokio::task::spawn_blocking(move || b.handle(&msg)).await;
        match result {
            Ok(Ok(())) => receiver.handled(&event_id),
            Ok(Err(e)) => tracing::error!("handling a message failed: {e:#}"),
            Err(e) => tracing::error!("message handler panicked: {e}"),
        }
    }
    tracing::info!("shutting down");
    shutdown.cancel();
    tracker.close();
    if tokio::time::timeout(TASKS_GRACE, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("some tasks did not stop within {TASKS_GRACE:?}");
    }
    store.flush()?;
    Ok(())
}

/// Waits until the outbox has nothing pending, for at most [`DRAIN_OUTBOX`]
/// or until `shutdown`.
async fn drain_outbox(store: &Store, shutdown: &CancellationToken) {
    let deadline = tokio::time::Instant::now() + DRAIN_OUTBOX;
    loop {
        let pending = store.outbox_seqs_from(0).map(|s| s.len()).unwrap_or(0);
        if pending == 0 {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(
                pending,
                "messages not delivered yet; they stay queued for the next start"
            );
            return;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
}

/// Binds the webhook and metrics listeners and serves them until shutdown.
async fn start_http(
    http: &crate::config::HttpConfig,
    bot: Bot,
    shutdown: &CancellationToken,
    tracker: &TaskTracker,
) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(http.listen)
        .await
        .with_context(|| format!("binding the webhook listener on {}", http.listen))?;
    let metrics = tokio::net::TcpListener::bind(http.metrics_listen)
        .await
        .with_context(|| format!("binding the metrics listener on {}", http.metrics_listen))?;
    let ready = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let state = crate::http::AppState::new(bot.clone(), http.clone(), ready);
    let token = shutdown.clone();
    tracker.spawn(async move {
        if let Err(e) = crate::http::serve(listener, state, token).await {
            tracing::error!("webhook server stopped: {e}");
        }
    });
    let token = shutdown.clone();
    let store = bot.store().clone();
    tracker.spawn(async move {
        if let Err(e) = crate::http::metrics::serve(metrics, store, token).await {
            tracing::error!("metrics server stopped: {e}");
        }
    });
    Ok(())
}

/// Tells `platform` the playbook ids whenever a reload swaps the engine.
async fn tell_playbook_changes(
    engine: SharedEngine,
    platform: Arc<dyn Platform>,
    shutdown: CancellationToken,
) {
    let mut last = playbook::current(&engine);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(playbook::POLL_INTERVAL) => {}
        }
        let now = playbook::current(&engine);
        if !Arc::ptr_eq(&now, &last) {
            platform.playbooks_changed(now.playbooks().ids().map(str::to_owned).collect());
            last = now;
        }
    }
}

/// Rebuilds the classifier (debounced) when resolved cases added examples.
async fn relearn(bot: Bot, engine: SharedEngine, shutdown: CancellationToken) {
    let learned = bot.learned();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = learned.notified() => {}
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
        let store = bot.store().clone();
        let current = playbook::current(&engine);
        let rebuilt = tokio::task::spawn_blocking(move || -> Result<Engine> {
            let history = labelled(&store)?;
            Ok(Engine::build(
                current.playbook_set(),
                &history,
                current.options(),
            ))
        })
        .await;
        match rebuilt {
            Ok(Ok(e)) => {
                *engine.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(e);
                tracing::info!("classifier rebuilt with resolved cases");
            }
            Ok(Err(e)) => tracing::warn!("classifier rebuild failed: {e:#}"),
            Err(e) => tracing::warn!("classifier rebuild panicked: {e}"),
        }
    }
}

fn labelled(store: &Store) -> Result<Vec<Labelled>> {
    Ok(store
        .history()?
        .into_iter()
        .map(|h| Labelled {
            text: h.text,
            label: h.label,
        })
        .collect())
}

/// Loads the playbooks and builds the engine with everything learned.
pub fn load_engine(config: &Config, store: &Store) -> Result<Engine> {
    let set = load_playbooks(&config.suggest.playbooks_dir)?;
    let history = labelled(store)?;
    Ok(Engine::build(
        Arc::new(set),
        &history,
        &SuggestOptions {
            threshold: config.suggest.threshold,
        },
    ))
}

fn load_playbooks(dir: &Path) -> Result<playbook::PlaybookSet> {
    playbook::load_dir(dir).map_err(|errs| {
        let lines: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        anyhow::anyhow!(
            "the playbooks in {} have errors:\n{}",
            dir.display(),
            lines.join("\n")
        )
    })
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
        // A second ctrl-c means "now": skip the rest of the graceful stop.
        // Nothing acknowledged is lost; undelivered messages stay queued.
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("stopping now");
            std::process::exit(130);
        }
    });
}

/// `check`'s playbook half: the number of playbooks, or every error.
pub fn check_playbooks(dir: &Path) -> std::result::Result<usize, Vec<String>> {
    playbook::load_dir(dir)
        .map(|set| set.len())
        .map_err(|errs| errs.iter().map(|e| e.to_string()).collect())
}

/// `caseroom suggest`.
pub fn suggest_command(
    config: &Path,
    data_dir: Option<&Path>,
    text: Option<String>,
    jsonl: bool,
) -> Result<i32> {
    let cfg = crate::cli::load_config(config, data_dir)?;
    let store = crate::cli::open_data_dir(&cfg.data_dir, crate::store::DEFAULT_CACHE_BYTES)?;
    let engine = load_engine(&cfg, &store)?;
    if jsonl {
        let stdin = std::io::stdin();
        let stdout = std::io::stdout();
        let failed = playbook::suggest_jsonl(
            &engine,
            stdin.lock(),
            std::io::BufWriter::new(stdout.lock()),
        )?;
        if failed > 0 {
            eprintln!("{failed} line(s) could not be read");
            return Ok(1);
        }
        return Ok(0);
    }
    let Some(text) = text else {
        bail!("give the ticket text, e.g. caseroom suggest \"付款失败\", or use --jsonl");
    };
    print!("{}", playbook::format_suggestion(&engine, &text));
    Ok(0)
}

/// `caseroom learn FILE`.
pub fn learn_command(config: &Path, data_dir: Option<&Path>, file: &Path) -> Result<i32> {
    let cfg = crate::cli::load_config(config, data_dir)?;
    let set = load_playbooks(&cfg.suggest.playbooks_dir)?;
    let f = std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
    let items = match playbook::parse_history(BufReader::new(f), &set) {
        Ok(items) => items,
        Err(errs) => {
            for e in &errs {
                eprintln!("{}: {e}", file.display());
            }
            bail!(
                "{} bad line(s) in {}; nothing was learned",
                errs.len(),
                file.display()
            );
        }
    };
    let store = crate::cli::open_data_dir(&cfg.data_dir, crate::store::DEFAULT_CACHE_BYTES)?;
    let items: Vec<HistoryItem> = items
        .into_iter()
        .map(|l| HistoryItem {
            text: crate::redact::redact(&l.text).into_owned(),
            label: l.label,
        })
        .collect();
    let added = store.add_history(&items)?;
    println!(
        "learned {added} new example(s) from {} ({} already known)",
        file.display(),
        items.len() - added
    );
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::fake::FakePlatform;

    fn engine(dir: &Path) -> Engine {
        Engine::build(
            Arc::new(load_playbooks(dir).unwrap()),
            &[],
            &SuggestOptions::default(),
        )
    }

    /// A reload that swaps the engine reaches the platform with the new
    /// playbook ids (Discord's `/use` autocomplete); no swap, no call.
    #[tokio::test]
    async fn a_playbook_reload_is_told_to_the_platform() {
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("playbooks");
        let shared = playbook::share(engine(&shipped));
        let platform = Arc::new(FakePlatform::new());
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(tell_playbook_changes(
            shared.clone(),
            platform.clone(),
            shutdown.clone(),
        ));
        tokio::time::sleep(playbook::POLL_INTERVAL * 2).await;
        assert!(platform.playbook_reloads().is_empty());

        let dir = tempfile::tempdir().unwrap();
        for f in std::fs::read_dir(&shipped).unwrap() {
            let f = f.unwrap().path();
            std::fs::copy(&f, dir.path().join(f.file_name().unwrap())).unwrap();
        }
        let mut refund = std::fs::read_to_string(dir.path().join("refund.toml")).unwrap();
        refund = refund.replacen("id = \"refund\"", "id = \"refund-express\"", 1);
        std::fs::write(dir.path().join("refund-express.toml"), refund).unwrap();
        *shared.write().unwrap() = Arc::new(engine(dir.path()));

        let deadline = std::time::Instant::now() + playbook::POLL_INTERVAL * 5;
        while platform.playbook_reloads().is_empty() {
            assert!(std::time::Instant::now() < deadline, "never told");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let told = platform.playbook_reloads()[0].clone();
        assert!(told.iter().any(|id| id == "refund-express"), "{told:?}");
        assert!(told.iter().any(|id| id == "refund"), "{told:?}");
        shutdown.cancel();
        task.await.unwrap();
    }
}
