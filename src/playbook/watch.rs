//! Hot reload: watch the playbook directory and swap in a new engine.
//!
//! The watcher polls file names, sizes and modification times (about once a
//! second; no inotify dependency, works on every file system). When they
//! change it reloads and retrains off the async runtime; a set with errors
//! is refused and the previous engine stays in place, with every error
//! logged via `tracing::warn!`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::engine::Engine;
use super::load::load_dir;

/// The engine everyone reads, swapped as a whole on reload.
///
/// The outer `Arc` is the handle tasks clone; the `RwLock` guards only the
/// pointer swap (a `std::sync` lock: no `.await` happens while it is held);
/// the inner `Arc<Engine>` lets a reader clone the current engine and drop
/// the lock at once, so a suggestion in flight keeps the engine it started
/// with while a reload replaces it. Read it with [`current`].
pub type SharedEngine = Arc<RwLock<Arc<Engine>>>;

/// Wraps an engine in a [`SharedEngine`].
pub fn share(engine: Engine) -> SharedEngine {
    Arc::new(RwLock::new(Arc::new(engine)))
}

/// The engine currently in use.
pub fn current(shared: &SharedEngine) -> Arc<Engine> {
    // A poisoned lock still holds a valid `Arc`: the writer only swaps it.
    shared.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// How often the watcher looks at the directory.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Spawns the watcher for `dir` (the directory the engine's playbooks came
/// from), polling every [`POLL_INTERVAL`] until `cancel` fires.
pub fn spawn_watcher(
    dir: PathBuf,
    shared: SharedEngine,
    cancel: CancellationToken,
) -> JoinHandle<()> {
    spawn_watcher_every(dir, shared, POLL_INTERVAL, cancel)
}

/// [`spawn_watcher`] with a chosen poll interval (tests use a short one).
pub fn spawn_watcher_every(
    dir: PathBuf,
    shared: SharedEngine,
    interval: Duration,
    cancel: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut seen = snapshot(&dir);
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tick.tick() => {}
            }
            let now = snapshot(&dir);
            if now == seen {
                continue;
            }
            // Remember this state even if it is bad, so a broken file is
            // reported once, not every second.
            seen = now;
            let old = current(&shared);
            let dir2 = dir.clone();
            let result = tokio::task::spawn_blocking(move || {
                load_dir(&dir2).map(|set| old.rebuild(Arc::new(set)))
            })
            .await;
            match result {
                Ok(Ok(engine)) => {
                    let n = engine.playbooks().len();
                    *shared.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(engine);
                    tracing::info!(dir = %dir.display(), playbooks = n, "playbooks reloaded");
                }
                Ok(Err(errors)) => {
                    tracing::warn!(
                        dir = %dir.display(),
                        errors = errors.len(),
                        "playbook reload refused, keeping the previous set"
                    );
                    for e in errors {
                        tracing::warn!("{e}");
                    }
                }
                Err(e) => tracing::warn!("playbook reload task failed: {e}"),
            }
        }
    })
}

/// Names, sizes and mtimes of the `*.toml` files in `dir`.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (u64, Option<SystemTime>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return BTreeMap::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "toml"))
        .filter_map(|e| {
            let meta = e.metadata().ok()?;
            Some((e.path(), (meta.len(), meta.modified().ok())))
        })
        .collect()
}
