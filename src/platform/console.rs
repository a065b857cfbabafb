//! Local terminal mode: the bot without a chat account.
//!
//! Each line typed is a message in the team room from the local user, who
//! holds every role. Start a line with a case id (`C-3: !claim`) to write in
//! that case's thread. What the bot sends is printed with its room and
//! thread, so the whole flow can be tried on one machine. A case's card is
//! printed again whenever it changes, with its actions as the commands to
//! type.

use std::io::{BufRead, IsTerminal, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use std::sync::Arc;

use super::{BoxFuture, Platform, SendError};
use crate::case::CaseId;
use crate::config::Config;
use crate::message::{Incoming, IncomingKind, Outgoing, command_hint, root_key};
use crate::store::Store;

/// The local user's id in terminal mode.
pub const LOCAL_USER: &str = "local";

/// Prints the bot's messages to stdout; reads the local user's lines.
#[derive(Debug)]
pub struct ConsolePlatform {
    next_id: AtomicU64,
    /// Serializes printing so messages never interleave. A `std::sync::Mutex`
    /// because it is held only while writing to stdout.
    out: Mutex<()>,
    /// The room the local user types in (the team room).
    room: String,
    /// The command prefix, for the typed form of actions.
    prefix: String,
    /// Where case threads are looked up for `C-3:` lines.
    store: Option<Store>,
}

impl Default for ConsolePlatform {
    fn default() -> Self {
        ConsolePlatform {
            next_id: AtomicU64::new(1),
            out: Mutex::new(()),
            room: "team".into(),
            prefix: "!".into(),
            store: None,
        }
    }
}

impl ConsolePlatform {
    /// Terminal mode: the local user types in the team room, which also
    /// serves as the intake room, and holds every role.
    pub fn start(config: &mut Config, store: &Store) -> Arc<ConsolePlatform> {
        let team = config.rooms.team.clone();
        if !config.rooms.intake.contains(&team) {
            config.rooms.intake.push(team.clone());
        }
        config.roles.admin.insert(LOCAL_USER.to_owned());
        Arc::new(ConsolePlatform {
            room: team,
            prefix: config.command_prefix.clone(),
            store: Some(store.clone()),
            ..ConsolePlatform::default()
        })
    }

    /// Prints one message box.
    fn print(&self, header: &str, text: &str, hint: &str) {
        let _guard = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "\n┌─ {header}");
        for line in text.lines() {
            let _ = writeln!(out, "│ {line}");
        }
        if !hint.is_empty() {
            let _ = writeln!(out, "│ {hint}");
        }
        let _ = writeln!(out, "└─");
        let _ = out.flush();
    }
}

impl Platform for ConsolePlatform {
    fn name(&self) -> &'static str {
        "console"
    }

    fn send<'a>(
        &'a self,
        msg: &'a Outgoing,
        thread_root: Option<&'a str>,
        _txn_id: &'a str,
    ) -> BoxFuture<'a, Result<String, SendError>> {
        Box::pin(async move {
            let id = format!(
                "m{}-{}",
                std::process::id(),
                self.next_id.fetch_add(1, Ordering::Relaxed)
            );
            let place = match (thread_root, msg.case) {
                (Some(_), Some(case)) => format!("{} ↳ {case}", msg.room),
                (Some(root), None) => format!("{} ↳ {root}", msg.room),
                (None, _) => msg.room.clone(),
            };
            let to = match &msg.private_to {
                Some(user) => format!(" (only to {user})"),
                None => String::new(),
            };
            let hint = command_hint(&msg.actions, &self.prefix);
            self.print(&format!("[{place}] caseroom{to}"), &msg.text, &hint);
            Ok(id)
        })
    }

    fn edit<'a>(
        &'a self,
        msg: &'a Outgoing,
        _target: &'a str,
        _txn_id: &'a str,
    ) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async move {
            let what = msg.case.map(|c| format!(" {c}")).unwrap_or_default();
            let hint = command_hint(&msg.actions, &self.prefix);
            self.print(
                &format!("[{}] caseroom ✎ card{what} updated", msg.room),
                &msg.text,
                &hint,
            );
            Ok(())
        })
    }

    fn remove<'a>(
        &'a self,
        room: &'a str,
        target: &'a str,
        reason: &'a str,
        _txn_id: &'a str,
    ) -> BoxFuture<'a, Result<String, SendError>> {
        Box::pin(async move {
            self.print_removal(room, target, reason);
            Ok(format!("removal-{target}"))
        })
    }

    fn run(
        self: Arc<Self>,
        tx: mpsc::Sender<Incoming>,
        shutdown: CancellationToken,
    ) -> BoxFuture<'static, anyhow::Result<()>> {
        Box::pin(async move {
            let Some(store) = self.store.clone() else {
                anyhow::bail!("the terminal platform was not started with a store");
            };
            read_stdin(self.room.clone(), store, tx, shutdown).await;
            Ok(())
        })
    }
}

impl ConsolePlatform {
    fn print_removal(&self, room: &str, target: &str, reason: &str) {
        let _guard = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "\n(caseroom removed message {target} in [{room}]: {reason})"
        );
        let _ = out.flush();
    }
}

/// Reads lines from stdin and turns them into messages from [`LOCAL_USER`]
/// in `room`, until stdin closes or `shutdown` fires.
///
/// Lines are read on a plain thread, not with `tokio::io::stdin`: Tokio
/// reads stdin on a blocking-pool thread that the runtime waits for at
/// shutdown, so an open terminal kept ctrl-c and SIGTERM from ending the
/// process. A plain thread blocked in `read` never holds the runtime.
///
/// At end of input (ctrl-d, or the end of piped commands) this returns and
/// drops `tx` without cancelling `shutdown`: the bot then handles every
/// line already sent and delivers its replies before it stops.
pub async fn read_stdin(
    room: String,
    store: Store,
    tx: mpsc::Sender<Incoming>,
    shutdown: CancellationToken,
) {
    let piped = !std::io::stdin().is_terminal();
    let mut lines = spawn_line_reader();
    let session = jiff::Timestamp::now().as_millisecond();
    let mut n = 0u64;
    println!(
        "caseroom terminal mode: you are `{LOCAL_USER}` in room `{room}` with every role.\n\
         Try `!escalate 我的卡付款失败了，卡号 4111 1111 1111 1111`, then `C-1: !claim`. `!help` lists commands; ctrl-d quits."
    );
    loop {
        let line = tokio::select! {
            _ = shutdown.cancelled() => return,
            line = lines.recv() => line,
        };
        let Some(line) = line else { return };
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        n += 1;
        let (thread_root, text) = match split_case_prefix(line) {
            Some((case, rest)) => match thread_of(&store, case, piped, &shutdown).await {
                Some(root) => (Some(root), rest),
                None => {
                    println!("(no thread for {case} yet)");
                    continue;
                }
            },
            None => (None, line),
        };
        let msg = Incoming {
            room: room.clone(),
            sender: LOCAL_USER.to_owned(),
            groups: Vec::new(),
            event_id: format!("console-{session}-{n}"),
            kind: IncomingKind::Message {
                text: text.to_owned(),
                thread_root,
            },
            reply_handle: None,
        };
        if tx.send(msg).await.is_err() {
            return;
        }
    }
}

/// Reads stdin line by line on its own thread. The channel closes at end
/// of input or on a read error. The thread is never joined: it may stay
/// blocked in `read` until the process exits.
fn spawn_line_reader() -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel(64);
    let spawned = std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                if tx.blocking_send(line).is_err() {
                    break;
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!("cannot start the stdin reader: {e}");
    }
    rx
}

/// The thread root of `case`. Piped commands are read faster than the bot
/// answers, so there a case's thread may not exist yet: wait for it (up to
/// 10 s) instead of dropping the line.
async fn thread_of(
    store: &Store,
    case: CaseId,
    wait: bool,
    shutdown: &CancellationToken,
) -> Option<String> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if let Ok(Some(root)) = store.posted(&root_key(case)) {
            return Some(root);
        }
        if !wait || tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            _ = tokio::time::sleep(std::time::Duration::from_millis(50)) => {}
        }
    }
}

/// `C-3: text` or `C-3 text` -> (C-3, text).
fn split_case_prefix(line: &str) -> Option<(CaseId, &str)> {
    let (head, rest) = line.split_once([':', ' '])?;
    let id: CaseId = head.parse().ok()?;
    if !head.starts_with(['C', 'c']) {
        return None;
    }
    Some((id, rest.trim_start_matches(':').trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_prefix() {
        assert_eq!(
            split_case_prefix("C-3: !claim"),
            Some((CaseId(3), "!claim"))
        );
        assert_eq!(
            split_case_prefix("c-12 hello there"),
            Some((CaseId(12), "hello there"))
        );
        assert_eq!(split_case_prefix("!escalate C-3"), None);
        assert_eq!(split_case_prefix("1042 foo"), None);
    }
}
