//! The command line: `caseroom run | check | case | export | import | suggest | learn`.
//!
//! Each subcommand is a small function that loads what it needs (config,
//! store, playbooks) and prints for a person, or JSON where other tools read
//! it. Errors go back to `main` as `anyhow` errors and are printed with their
//! causes.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use jiff::Timestamp;

use crate::case::{Case, CaseId, Channel, Customer, Event, EventKind, NewCase, Priority, Status};
use crate::config::Config;
use crate::store::{CaseFilter, Delivery, HistoryItem, Store, StoreError};

/// caseroom: escalated support tickets become chat threads with playbook
/// suggestions, durable case state and SLA paging.
#[derive(Debug, Parser)]
#[command(
    name = "caseroom",
    version,
    after_help = "Examples:
  caseroom run                          # the bot (terminal mode when no chat platform is enabled)
  caseroom check                        # validate config/caseroom.toml and playbooks/
  caseroom suggest \"付款一直失败，卡被拒了\"  # try the playbook engine
  caseroom case list --status assigned
  caseroom case show C-1042
  caseroom export > backup.jsonl && caseroom --data-dir /tmp/restore import backup.jsonl"
)]
pub struct Cli {
    /// Config file.
    #[arg(
        long,
        global = true,
        default_value = "config/caseroom.toml",
        env = "CASEROOM_CONFIG"
    )]
    pub config: PathBuf,
    /// Data directory (overrides `data_dir` in the config).
    #[arg(long, global = true, env = "CASEROOM_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the bot until ctrl-c or SIGTERM.
    Run,
    /// Validate the config and the playbooks; lists every error, exits 1 if any.
    Check,
    /// Inspect and change cases.
    #[command(subcommand)]
    Case(CaseCommand),
    /// Write all cases, their events and learned history as JSON Lines to stdout.
    Export,
    /// Helpdesk events (`[outbound]`): what waits, what was set aside, retry.
    #[command(subcommand)]
    Outbound(OutboundCommand),
    /// Restore an export into an empty data dir. The export is written to a
    /// new dir next to the data dir, which takes its place only when all of
    /// it is in: a failed import leaves the data dir as it was.
    Import {
        /// The JSON Lines file written by `caseroom export` (`-` for stdin).
        file: PathBuf,
        /// Import even when the data dir already holds data (ids must not
        /// clash). Needs a file, not `-`: it is read twice, first to check
        /// everything, then to write.
        #[arg(long)]
        force: bool,
        /// Records written per batch (for tuning; sled keeps a batch's
        /// replaced pages alive until the batch ends).
        #[arg(long, hide = true, default_value_t = IMPORT_CHUNK)]
        chunk_records: usize,
    },
    /// Writes a synthetic export of N cases to stdout (for measuring import).
    #[command(hide = true)]
    GenExport {
        #[arg(long, default_value_t = 100_000)]
        cases: u64,
    },
    /// Suggest a playbook for a ticket text.
    #[command(after_help = "Examples:
  caseroom suggest \"I was charged twice for order 20231105, please refund\"
  echo '{\"text\": \"支付失败\"}' | caseroom suggest --jsonl")]
    Suggest {
        /// The ticket text (omit with --jsonl).
        text: Option<String>,
        /// Read JSON Lines (`{\"text\": ...}`) on stdin, write one JSON answer per line.
        #[arg(long, conflicts_with = "text")]
        jsonl: bool,
    },
    /// Import labelled history (`{"text", "label"}` JSON Lines) for the classifier.
    Learn {
        /// JSON Lines file; label is a playbook id or `none`.
        file: PathBuf,
    },
    /// Load generator for durability tests: appends events, printing each
    /// acknowledged one as `C-<n> <seq>`.
    #[command(hide = true)]
    AppendLoop {
        #[arg(long, default_value_t = 4)]
        writers: usize,
        #[arg(long, default_value_t = 1000)]
        cases: usize,
    },
}

#[derive(Debug, Subcommand)]
pub enum OutboundCommand {
    /// Events waiting for delivery and events set aside after too many tries.
    List {
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Queue events that were set aside again (fresh count of tries).
    #[command(
        after_help = "With the bot running, the data dir is in use: the command then asks the
running bot through its metrics listener (`http.metrics_listen`)."
    )]
    Retry {
        /// The event id (or queue number) to retry.
        #[arg(required_unless_present = "all")]
        id: Option<String>,
        /// Every event set aside.
        #[arg(long, conflicts_with = "id")]
        all: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum CaseCommand {
    /// List cases, newest last.
    List {
        /// Only cases in this status (new, triaged, assigned, waiting, resolved, reopened, closed).
        #[arg(long)]
        status: Option<Status>,
        /// Only cases assigned to this user.
        #[arg(long)]
        assignee: Option<String>,
        /// Only open cases.
        #[arg(long)]
        open: bool,
        /// One JSON object per case, one per line.
        #[arg(long)]
        json: bool,
    },
    /// Show a case and its full history.
    Show {
        /// Case id, e.g. C-1042.
        id: CaseId,
        /// One JSON object: `{"case": {...}, "events": [...]}`.
        #[arg(long)]
        json: bool,
    },
    /// Open a case by hand.
    Open(OpenArgs),
    /// Move a case through its lifecycle, e.g. `case event C-1 assign alice`.
    #[command(
        after_help = "Actions: assign USER, unassign, wait, resume, resolve [PLAYBOOK], reopen, close,
         priority p1..p4, tag TAG, note TEXT"
    )]
    Event {
        id: CaseId,
        /// assign, unassign, wait, resume, resolve, reopen, close, priority, tag, note
        action: String,
        /// The action's argument (user, playbook, priority, tag or note text).
        value: Vec<String>,
        /// Why (kept in the history).
        #[arg(long)]
        reason: Option<String>,
        /// Who is acting (kept in the history).
        #[arg(long, default_value = "cli")]
        actor: String,
    },
}

#[derive(Debug, Args)]
pub struct OpenArgs {
    /// The helpdesk ticket id (unique).
    #[arg(long)]
    external_id: String,
    #[arg(long, default_value = "")]
    subject: String,
    #[arg(long)]
    body: String,
    #[arg(long)]
    customer: Option<String>,
    #[arg(long)]
    email: Option<String>,
    #[arg(long, default_value = "zh")]
    lang: crate::lang::Lang,
    #[arg(long, default_value = "chat")]
    channel: Channel,
    #[arg(long, default_value = "p3")]
    priority: Priority,
}

/// Runs the parsed command line.
pub fn main(cli: Cli) -> Result<i32> {
    match cli.command {
        Command::Check => check(&cli.config),
        Command::Run => {
            let mut config = Config::load(&cli.config).map_err(|e| anyhow::anyhow!("{e}"))?;
            if let Some(d) = cli.data_dir {
                config.data_dir = d;
            }
            crate::app::run_blocking(config)?;
            Ok(0)
        }
        Command::Case(cmd) => {
            let store = open_store(&cli.config, cli.data_dir.as_deref())?;
            case_command(&store, cmd)
        }
        Command::Export => {
            // Export reads every page once: a big page cache only costs memory.
            let dir = data_dir(&cli.config, cli.data_dir.as_deref())?;
            let store = open_data_dir(&dir, IMPORT_CACHE)?;
            let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
            export(&store, &mut out)?;
            Ok(0)
        }
        Command::Outbound(cmd) => outbound_command(&cli.config, cli.data_dir.as_deref(), cmd),
        Command::Import {
            file,
            force,
            chunk_records,
        } => {
            let dir = data_dir(&cli.config, cli.data_dir.as_deref())?;
            let settler = settler(&cli.config, cli.data_dir.as_deref());
            import(&dir, &file, force, chunk_records.max(1), settler)
        }
        Command::GenExport { cases } => {
            let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
            gen_export(cases, &mut out)?;
            Ok(0)
        }
        Command::Suggest { text, jsonl } => {
            crate::app::suggest_command(&cli.config, cli.data_dir.as_deref(), text, jsonl)
        }
        Command::Learn { file } => {
            crate::app::learn_command(&cli.config, cli.data_dir.as_deref(), &file)
        }
        Command::AppendLoop { writers, cases } => {
            let store = open_store(&cli.config, cli.data_dir.as_deref())?;
            append_loop(&store, writers, cases)
        }
    }
}

/// Loads the config for an offline command (no secret needed), applying
/// `--data-dir`. `run` loads with [`Config::load`], which insists on them.
pub fn load_config(path: &Path, data_dir: Option<&Path>) -> Result<Config> {
    let mut config = Config::load_offline(path).map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Some(d) = data_dir {
        config.data_dir = d.to_owned();
    }
    Ok(config)
}

/// The data dir from `--data-dir`, else from the config (which then must be valid).
pub fn data_dir(config: &Path, data_dir: Option<&Path>) -> Result<PathBuf> {
    match data_dir {
        Some(d) => Ok(d.to_owned()),
        None => Ok(load_config(config, None)?.data_dir),
    }
}

/// Opens the store in `dir` with a page cache of `cache_bytes`. Errors
/// that do not already name the dir (a lock held by another process or a
/// dir that cannot be opened do) say which one it was.
pub fn open_data_dir(dir: &Path, cache_bytes: u64) -> Result<Store> {
    Store::open_with_cache(dir, cache_bytes).map_err(|e| match e {
        e @ (StoreError::Locked { .. } | StoreError::Open { .. }) => anyhow::Error::new(e),
        e => anyhow::Error::new(e).context(format!("opening the store in {}", dir.display())),
    })
}

pub fn open_store(config: &Path, dir: Option<&Path>) -> Result<Store> {
    let path = data_dir(config, dir)?;
    let store = open_data_dir(&path, crate::store::DEFAULT_CACHE_BYTES)?;
    store.set_settler(settler(config, dir));
    Ok(store)
}

/// How offline commands (and `import`) judge SLA runs for `stats`: the way
/// the bot does, with this config's policy (none without a config).
fn settler(config: &Path, dir: Option<&Path>) -> std::sync::Arc<crate::store::Settler> {
    let settings = load_config(config, dir)
        .map(|c| crate::sla::Settings::from_config(&c))
        .unwrap_or_default();
    crate::sla::engine::settler(settings)
}

fn check(config: &Path) -> Result<i32> {
    let mut errors: Vec<String> = Vec::new();
    let cfg = match Config::load_offline(config) {
        Ok(c) => {
            // Not an error here: `check` also runs where the secrets are
            // not (a CI job, a laptop), but `run` will want them.
            for e in &c.missing_secrets {
                eprintln!("note: {e} (needed by `caseroom run`)");
            }
            Some(c)
        }
        Err(e) => {
            errors.extend(e.0.iter().map(|e| e.to_string()));
            None
        }
    };
    #[cfg(feature = "matrix")]
    if let Some(c) = &cfg
        && let Some(m) = &c.matrix
        && m.e2ee.is_some()
    {
        // Store present, identity cross-signed, backup on.
        let report =
            crate::platform::matrix::e2ee_report(&c.data_dir, &m.homeserver, m.e2ee.as_ref());
        for line in &report.lines {
            eprintln!("{line}");
        }
        errors.extend(report.problems);
    }
    let playbooks_dir = cfg
        .as_ref()
        .map(|c| c.suggest.playbooks_dir.clone())
        .unwrap_or_else(|| PathBuf::from("playbooks"));
    let playbooks = crate::app::check_playbooks(&playbooks_dir);
    match &playbooks {
        Ok(n) => eprintln!("{}: {n} playbooks ok", playbooks_dir.display()),
        Err(errs) => errors.extend(errs.iter().cloned()),
    }
    if errors.is_empty() {
        println!("{}: ok", config.display());
        Ok(0)
    } else {
        for e in &errors {
            println!("{e}");
        }
        eprintln!("{} error(s)", errors.len());
        Ok(1)
    }
}

/// `caseroom outbound list|retry`.
fn outbound_command(config: &Path, dir: Option<&Path>, cmd: OutboundCommand) -> Result<i32> {
    let store = match open_store(config, dir) {
        Ok(s) => s,
        Err(e) => {
            // The bot holds the data dir: ask it instead.
            if let OutboundCommand::Retry { id, .. } = &cmd
                && let Ok(cfg) = load_config(config, dir)
            {
                let url = format!("http://{}/outbound/retry", cfg.http.metrics_listen);
                if let Some(n) = ask_running_bot(&url, id.as_deref()) {
                    println!("{n} event(s) queued again (by the running bot)");
                    return Ok(if n == 0 { 1 } else { 0 });
                }
            }
            return Err(e.context(
                "is the bot running? `outbound list` needs the data dir; stop the bot, or enable [http] so `outbound retry` can ask it",
            ));
        }
    };
    match cmd {
        OutboundCommand::List { json } => {
            let mut out = std::io::stdout().lock();
            let pending = store.outbound_from(0)?;
            let failed = store.outbound_failed()?;
            for (state, list) in [("pending", &pending), ("set_aside", &failed)] {
                for (seq, q) in list {
                    if json {
                        serde_json::to_writer(
                            &mut out,
                            &serde_json::json!({
                                "seq": seq, "state": state, "event": q.event,
                                "attempts": q.attempts, "last_error": q.last_error,
                            }),
                        )?;
                        writeln!(out)?;
                    } else {
                        writeln!(
                            out,
                            "{seq:>6} {state:<9} {:<18} {:<6} {} tries={} {}",
                            q.event.kind,
                            q.event.case.id,
                            q.event.id,
                            q.attempts,
                            q.last_error.as_deref().unwrap_or("")
                        )?;
                    }
                }
            }
            if !json {
                writeln!(out, "{} pending, {} set aside", pending.len(), failed.len())?;
            }
            Ok(0)
        }
        OutboundCommand::Retry { id, .. } => {
            let n = store.outbound_retry(id.as_deref())?;
            println!(
                "{n} event(s) queued again; the bot delivers them at its next start (or within seconds if it is running)"
            );
            Ok(if n == 0 { 1 } else { 0 })
        }
    }
}

/// `POST <url>?id=...` to a running bot's metrics listener; the number of
/// events it queued again, or `None` when no bot answered.
fn ask_running_bot(url: &str, id: Option<&str>) -> Option<u64> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    rt.block_on(async {
        // Ids and queue numbers are [A-Za-z0-9_]: nothing to escape.
        let url = match id {
            Some(id) if id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => {
                format!("{url}?id={id}")
            }
            Some(_) => return Some(0),
            None => url.to_owned(),
        };
        let response = reqwest::Client::new()
            .post(url)
            .timeout(std::time::Duration::from_secs(5))
            .send()
            .await
            .ok()?;
        let v: serde_json::Value = serde_json::from_slice(&response.bytes().await.ok()?).ok()?;
        v["retried"].as_u64()
    })
}

fn case_command(store: &Store, cmd: CaseCommand) -> Result<i32> {
    match cmd {
        CaseCommand::List {
            status,
            assignee,
            open,
            json,
        } => {
            let cases = store.cases(&CaseFilter {
                status,
                assignee,
                open_only: open,
            })?;
            let mut out = std::io::stdout().lock();
            if json {
                for c in cases {
                    serde_json::to_writer(&mut out, &c)?;
                    writeln!(out)?;
                }
                return Ok(0);
            }
            if cases.is_empty() {
                writeln!(out, "no cases")?;
            }
            for c in cases {
                writeln!(out, "{}", list_line(&c))?;
            }
            Ok(0)
        }
        CaseCommand::Show { id, json } => {
            let Some(case) = store.case(id)? else {
                eprintln!("no case {id}");
                return Ok(1);
            };
            let events = store.events(id)?;
            let deliveries = store.deliveries(id)?;
            if json {
                let mut out = std::io::stdout().lock();
                serde_json::to_writer(
                    &mut out,
                    &serde_json::json!({"case": case, "events": events, "deliveries": deliveries}),
                )?;
                writeln!(out)?;
                return Ok(0);
            }
            write!(
                std::io::stdout().lock(),
                "{}",
                show_case(&case, &events, &deliveries)
            )?;
            Ok(0)
        }
        CaseCommand::Open(a) => {
            let new = NewCase {
                external_id: a.external_id,
                subject: a.subject,
                body: a.body,
                customer: Customer {
                    id: None,
                    name: a.customer,
                    email: a.email,
                    language: a.lang,
                },
                channel: a.channel,
                priority: a.priority,
                tags: Vec::new(),
            };
            let opened = store.open_case(new, "cli", Timestamp::now())?;
            let c = &opened.case;
            if opened.created {
                println!("opened {}", c.id);
            } else {
                println!("{} already exists for external id {}", c.id, c.external_id);
            }
            Ok(0)
        }
        CaseCommand::Event {
            id,
            action,
            value,
            reason,
            actor,
        } => {
            let kind = event_from_cli(&action, &value.join(" "))?;
            match store.append(id, &actor, kind, reason, Timestamp::now()) {
                Ok((case, ev)) => {
                    println!(
                        "{}: #{} {} -> {}",
                        case.id,
                        ev.seq,
                        ev.kind.summary(),
                        case.status
                    );
                    Ok(0)
                }
                Err(crate::store::StoreError::Transition(e)) => {
                    eprintln!("refused: {e}");
                    Ok(1)
                }
                Err(e) => Err(e.into()),
            }
        }
    }
}

fn event_from_cli(action: &str, value: &str) -> Result<EventKind> {
    let need = |what: &str| -> Result<String> {
        if value.trim().is_empty() {
            bail!("`{action}` needs {what}");
        }
        Ok(value.trim().to_owned())
    };
    Ok(match action {
        "assign" => EventKind::Assigned {
            assignee: need("a user")?,
        },
        "unassign" => EventKind::Unassigned,
        "wait" => EventKind::WaitingOnCustomer,
        "resume" => EventKind::Resumed,
        "resolve" => EventKind::Resolved {
            playbook: (!value.trim().is_empty()).then(|| value.trim().to_owned()),
        },
        "reopen" => EventKind::Reopened,
        "close" => EventKind::Closed,
        "priority" => EventKind::PriorityChanged {
            priority: need("p1..p4")?.parse().map_err(anyhow::Error::msg)?,
        },
        "tag" => EventKind::Tagged {
            tag: need("a tag")?,
        },
        "note" => EventKind::Note {
            text: need("the note text")?,
        },
        other => bail!(
            "unknown action `{other}` (expected assign, unassign, wait, resume, resolve, reopen, close, priority, tag or note)"
        ),
    })
}

/// One line per case for `case list`.
pub fn list_line(c: &Case) -> String {
    format!(
        "{:<8} {:<20} {} {:<18} {:<24} {}",
        c.id.to_string(),
        c.status.as_str(),
        c.priority,
        c.assignee.as_deref().unwrap_or("-"),
        c.chosen_playbook
            .as_deref()
            .or(c.suggested_playbook.as_deref())
            .unwrap_or("-"),
        truncate(
            if c.subject.is_empty() {
                &c.body
            } else {
                &c.subject
            },
            50
        ),
    )
}

/// The `case show` text: the case, then its history.
pub fn show_case(c: &Case, events: &[Event], deliveries: &[Delivery]) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(s, "{}  [{}]  {}", c.id, c.status, c.priority);
    let _ = writeln!(s, "external id: {}", c.external_id);
    if !c.subject.is_empty() {
        let _ = writeln!(s, "subject:     {}", c.subject);
    }
    let _ = writeln!(s, "body:        {}", c.body);
    let _ = writeln!(
        s,
        "customer:    {}{} ({}) via {}",
        c.customer.name.as_deref().unwrap_or("(no name)"),
        c.customer
            .email
            .as_deref()
            .map(|e| format!(" <{e}>"))
            .unwrap_or_default(),
        c.customer.language,
        c.channel
    );
    let _ = writeln!(s, "assignee:    {}", c.assignee.as_deref().unwrap_or("-"));
    if !c.tags.is_empty() {
        let _ = writeln!(
            s,
            "tags:        {}",
            c.tags.iter().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    match (&c.suggested_playbook, c.suggestion_confidence) {
        (Some(p), Some(conf)) => {
            let _ = writeln!(s, "suggested:   {p} ({:.0}%)", conf * 100.0);
        }
        (None, Some(conf)) => {
            let _ = writeln!(s, "suggested:   none (abstained, {:.0}%)", conf * 100.0);
        }
        _ => {}
    }
    if let Some(p) = &c.chosen_playbook {
        let _ = writeln!(s, "playbook:    {p}");
    }
    let _ = writeln!(s, "created:     {}", c.created_at);
    let _ = writeln!(s, "updated:     {}", c.updated_at);
    if let Some(t) = c.first_response_at {
        let _ = writeln!(s, "first reply: {t}");
    }
    if let Some(t) = c.resolved_at {
        let _ = writeln!(s, "resolved:    {t}");
    }
    let _ = writeln!(s, "\nhistory ({} events):", events.len());
    for e in events {
        let _ = write!(
            s,
            "  #{:<3} {}  {:<16} {}",
            e.seq,
            e.at,
            e.actor,
            e.kind.summary()
        );
        if let Some(r) = &e.reason {
            let _ = write!(s, "  (reason: {r})");
        }
        s.push('\n');
    }
    if !deliveries.is_empty() {
        let _ = writeln!(s, "\nposted to chat ({}):", deliveries.len());
        for d in deliveries {
            let _ = writeln!(
                s,
                "  {}  {:<10} {} in {} ({})",
                d.at, d.what, d.message_id, d.room, d.platform
            );
        }
    }
    s
}

fn truncate(s: &str, n: usize) -> String {
    let one_line = s.replace('\n', " ");
    if one_line.chars().count() <= n {
        one_line
    } else {
        one_line
            .chars()
            .take(n - 1)
            .chain(std::iter::once('…'))
            .collect()
    }
}

/// One line of an export.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(tag = "record", rename_all = "snake_case")]
enum ExportRecord {
    Case(Box<Case>),
    Event {
        case: CaseId,
        #[serde(flatten)]
        event: Event,
    },
    History(HistoryItem),
    /// A link between a case and chat (thread root, delivered message id),
    /// so a restored bot keeps working in the existing threads.
    Link {
        key: String,
        value: String,
    },
}

/// Writes every case, its events and the learned history as JSON Lines.
///
/// Reads one case at a time, so memory stays flat however big the store.
pub fn export(store: &Store, out: &mut impl Write) -> Result<()> {
    let mut progress = Progress::new("exporting", Some(store.case_count()));
    for case in store.iter_cases() {
        let case = case?;
        let events = store.events(case.id)?;
        let id = case.id;
        write_record(out, &ExportRecord::Case(Box::new(case)))?;
        for event in events {
            write_record(out, &ExportRecord::Event { case: id, event })?;
        }
        progress.tick(1);
    }
    for link in store.iter_case_links() {
        let (key, value) = link?;
        let value = hex::encode(value);
        write_record(out, &ExportRecord::Link { key, value })?;
    }
    for item in store.iter_history() {
        write_record(out, &ExportRecord::History(item?))?;
    }
    out.flush()?;
    progress.done();
    Ok(())
}

fn write_record(out: &mut impl Write, rec: &ExportRecord) -> Result<()> {
    serde_json::to_writer(&mut *out, rec).map_err(std::io::Error::from)?;
    out.write_all(b"\n")?;
    Ok(())
}

/// Records per import batch. sled keeps the pages a batch replaces alive
/// until the batch ends, so memory grows with the batch: 20,000 records
/// peaked at 400 MB for 50k cases, 500–2,000 at under 100 MB.
const IMPORT_CHUNK: usize = 1_000;
/// Records between flushes during an import, so written pages can leave
/// memory without paying for a flush per batch.
const IMPORT_FLUSH_EVERY: usize = 100_000;
/// The page cache of the store an import writes (it reads nothing back) or
/// an export reads (each page once).
const IMPORT_CACHE: u64 = 32 * 1024 * 1024;

/// `caseroom import`: streams the export into a fresh dir next to
/// `target` and swaps it in at the end, so a failure half way leaves
/// `target` as it was. With `force` into a non-empty store, the file is
/// checked in full first, then written.
fn import(
    target: &Path,
    file: &Path,
    force: bool,
    chunk_records: usize,
    settler: std::sync::Arc<crate::store::Settler>,
) -> Result<i32> {
    let target_empty = match std::fs::metadata(target) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
        Err(e) => return Err(e).with_context(|| format!("reading {}", target.display())),
        Ok(_) => {
            let store = open_data_dir(target, crate::store::DEFAULT_CACHE_BYTES)?;
            store.is_empty()?
        }
    };
    if !target_empty {
        if !force {
            bail!(
                "the data dir already holds cases or history; import into an empty one, or pass --force"
            );
        }
        if file == Path::new("-") {
            bail!("--force needs the export as a file (it is read twice), not `-`");
        }
        let store = open_data_dir(target, crate::store::DEFAULT_CACHE_BYTES)?;
        // Pass 1 writes nothing: every record parses, every case matches its
        // history, no case number clashes.
        import_stream(file, chunk_records, |chunk| {
            for (case, events) in &chunk.cases {
                let rebuilt = Case::replay(case.id, events).map_err(anyhow::Error::msg)?;
                if &rebuilt != case {
                    bail!(
                        "{} does not match its own history; the export is damaged",
                        case.id
                    );
                }
                if store.case(case.id)?.is_some() {
                    bail!("{} already exists in {}", case.id, target.display());
                }
            }
            Ok(())
        })?;
        let counts = import_stream(file, chunk_records, chunked_writer(&store))?;
        store.flush()?;
        counts.report();
        return Ok(0);
    }
    if let Some(existing) = foreign_entry(target)? {
        bail!(
            "{} holds {} which is not caseroom data; import into an empty or new dir",
            target.display(),
            existing.display()
        );
    }
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "data".into());
    let staging = target.with_file_name(format!(".{name}.import-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    let result = (|| -> Result<ImportCounts> {
        let store = Store::open_with_cache(&staging, IMPORT_CACHE)
            .with_context(|| format!("creating {}", staging.display()))?;
        store.set_settler(settler);
        let counts = import_stream(file, chunk_records, chunked_writer(&store))?;
        store.flush()?;
        Ok(counts)
    })();
    let counts = match result {
        Ok(c) => c,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e.context(format!(
                "nothing was imported; {} is unchanged",
                target.display()
            )));
        }
    };
    swap_in(&staging, target)?;
    counts.report();
    Ok(0)
}

/// Writes import chunks, flushing every [`IMPORT_FLUSH_EVERY`] records.
fn chunked_writer(store: &Store) -> impl FnMut(crate::store::ImportChunk) -> Result<()> + '_ {
    let mut unflushed = 0;
    move |chunk| {
        unflushed += chunk.len();
        store.import_chunk(chunk)?;
        if unflushed >= IMPORT_FLUSH_EVERY {
            store.flush()?;
            unflushed = 0;
        }
        Ok(())
    }
}

/// The first entry in `dir` that sled did not create (so `import` never
/// deletes someone's files when it replaces an empty store).
fn foreign_entry(dir: &Path) -> Result<Option<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    for entry in entries {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if !(name == "conf" || name == "db" || name == "blobs" || name.starts_with("snap.")) {
            return Ok(Some(dir.join(&*name)));
        }
    }
    Ok(None)
}

/// Puts the finished `staging` dir in the place of `target` (absent, or
/// an empty store).
fn swap_in(staging: &Path, target: &Path) -> Result<()> {
    if !target.exists() {
        return std::fs::rename(staging, target)
            .with_context(|| format!("moving {} to {}", staging.display(), target.display()));
    }
    let old = staging.with_extension("old");
    std::fs::rename(target, &old).with_context(|| format!("moving {} aside", target.display()))?;
    if let Err(e) = std::fs::rename(staging, target) {
        let _ = std::fs::rename(&old, target);
        return Err(e)
            .with_context(|| format!("moving {} to {}", staging.display(), target.display()));
    }
    std::fs::remove_dir_all(&old).with_context(|| format!("removing {}", old.display()))
}

/// What an import read.
#[derive(Debug, Default, Clone, Copy)]
struct ImportCounts {
    cases: usize,
    history: usize,
    links: usize,
}

impl ImportCounts {
    fn report(&self) {
        eprintln!(
            "imported {} cases, {} history examples and {} chat links",
            self.cases, self.history, self.links
        );
    }
}

/// Reads an export line by line and hands it to `write` in chunks of about
/// [`IMPORT_CHUNK`] records; a case and its events always share a chunk.
fn import_stream(
    file: &Path,
    chunk_records: usize,
    mut write: impl FnMut(crate::store::ImportChunk) -> Result<()>,
) -> Result<ImportCounts> {
    let (mut reader, size): (Box<dyn BufRead>, Option<u64>) = if file == Path::new("-") {
        (Box::new(BufReader::new(std::io::stdin().lock())), None)
    } else {
        let f = std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
        let size = f.metadata().ok().map(|m| m.len());
        (Box::new(BufReader::with_capacity(1 << 16, f)), size)
    };
    let mut progress = Progress::new("importing", size);
    let mut counts = ImportCounts::default();
    let mut chunk = crate::store::ImportChunk::default();
    let mut current: Option<(Case, Vec<Event>)> = None;
    let mut line = String::new();
    let mut n = 0usize;
    loop {
        line.clear();
        let read = reader
            .read_line(&mut line)
            .with_context(|| format!("{}: line {}", file.display(), n + 1))?;
        if read == 0 {
            break;
        }
        n += 1;
        progress.tick(read as u64);
        if line.trim().is_empty() {
            continue;
        }
        let at = || format!("{}: line {n}", file.display());
        let rec: ExportRecord = serde_json::from_str(&line)
            .with_context(|| format!("{}: not an export record", at()))?;
        match rec {
            ExportRecord::Case(c) => {
                counts.cases += 1;
                if let Some(done) = current.replace((*c, Vec::new())) {
                    chunk.cases.push(done);
                    if chunk.len() >= chunk_records {
                        write(std::mem::take(&mut chunk)).with_context(at)?;
                    }
                }
            }
            ExportRecord::Event { case, event } => match &mut current {
                Some((c, evs)) if c.id == case => evs.push(event),
                _ => bail!("{}: event for {case} does not follow its case", at()),
            },
            ExportRecord::History(h) => {
                counts.history += 1;
                chunk.history.push(h);
            }
            ExportRecord::Link { key, value } => {
                let value = hex::decode(&value)
                    .with_context(|| format!("{}: link value is not hex", at()))?;
                counts.links += 1;
                chunk.links.push((key, value));
            }
        }
    }
    chunk.cases.extend(current);
    if !chunk.is_empty() {
        write(chunk).with_context(|| format!("{}: at the end", file.display()))?;
    }
    progress.done();
    Ok(counts)
}

/// Progress on stderr, only when stderr is a terminal, at most 5 times a
/// second: `importing: 41%` with a known total, else a running count.
struct Progress {
    what: &'static str,
    total: Option<u64>,
    done: u64,
    shown: bool,
    last: std::time::Instant,
    enabled: bool,
}

impl Progress {
    fn new(what: &'static str, total: Option<u64>) -> Progress {
        use std::io::IsTerminal;
        Progress {
            what,
            total: total.filter(|t| *t > 0),
            done: 0,
            shown: false,
            last: std::time::Instant::now(),
            enabled: std::io::stderr().is_terminal(),
        }
    }

    fn tick(&mut self, n: u64) {
        self.done += n;
        if !self.enabled || self.last.elapsed() < std::time::Duration::from_millis(200) {
            return;
        }
        self.last = std::time::Instant::now();
        self.shown = true;
        match self.total {
            Some(t) => eprint!("\r{}: {}%", self.what, (self.done * 100 / t).min(100)),
            None => eprint!("\r{}: {}", self.what, self.done),
        }
    }

    fn done(&self) {
        if self.shown {
            eprintln!("\r{}: done     ", self.what);
        }
    }
}

/// A synthetic export of `cases` cases (opened, triaged, assigned, a note,
/// resolved; every fifth still open), for measuring import. Case numbers
/// start at 1; times are fixed, so the output is the same on every run.
pub fn gen_export(cases: u64, out: &mut impl Write) -> Result<()> {
    let base = Timestamp::from_second(1_767_225_600)?; // 2026-01-01
    for n in 1..=cases {
        let at = |s: i64| base + jiff::SignedDuration::from_secs(n as i64 * 60 + s);
        let ev = |seq: u32, secs: i64, kind: EventKind| Event {
            seq,
            at: at(secs),
            actor: if seq == 0 {
                "webhook"
            } else {
                "@agent:example.org"
            }
            .into(),
            kind,
            reason: None,
        };
        let mut events = vec![
            ev(
                0,
                0,
                EventKind::Opened(NewCase {
                    external_id: format!("GEN-{n}"),
                    subject: "Payment failed".into(),
                    body: format!(
                        "付款失败，订单号 {}，卡号 [card ****1111]",
                        20_260_000_000 + n
                    ),
                    customer: Customer {
                        id: None,
                        name: Some(format!("customer {n}")),
                        email: None,
                        language: crate::lang::Lang::Zh,
                    },
                    channel: Channel::Web,
                    priority: Priority::P3,
                    tags: vec!["payment".into()],
                }),
            ),
            ev(
                1,
                1,
                EventKind::Triaged {
                    playbook: Some("payment_failed".into()),
                    confidence: 0.875,
                },
            ),
            ev(
                2,
                30,
                EventKind::Assigned {
                    assignee: format!("@agent{}:example.org", n % 40),
                },
            ),
            ev(
                3,
                90,
                EventKind::Note {
                    text: "asked the customer for the transaction id".into(),
                },
            ),
        ];
        if n % 5 != 0 {
            events.push(ev(
                4,
                600,
                EventKind::Resolved {
                    playbook: Some("payment_failed".into()),
                },
            ));
        }
        let id = CaseId(n);
        let case = Case::replay(id, &events).map_err(anyhow::Error::msg)?;
        write_record(out, &ExportRecord::Case(Box::new(case)))?;
        for event in events {
            write_record(out, &ExportRecord::Event { case: id, event })?;
        }
    }
    out.flush()?;
    Ok(())
}

/// Appends events from several threads, printing each durable one.
fn append_loop(store: &Store, writers: usize, cases: usize) -> Result<i32> {
    let stdout = std::sync::Mutex::new(std::io::stdout());
    std::thread::scope(|s| {
        for w in 0..writers {
            let store = store.clone();
            let stdout = &stdout;
            s.spawn(move || -> Result<()> {
                for i in 0..cases {
                    let new = NewCase {
                        external_id: format!("loop-{}-{w}-{i}", std::process::id()),
                        subject: format!("load {w}/{i}"),
                        body: "payment failed".into(),
                        customer: Customer::default(),
                        channel: Channel::Chat,
                        priority: Priority::P3,
                        tags: vec![],
                    };
                    let opened = store.open_case(new, "loop", Timestamp::now())?;
                    let id = opened.case.id;
                    report(stdout, id, 0);
                    for (seq, kind) in [
                        EventKind::Assigned {
                            assignee: format!("agent{w}"),
                        },
                        EventKind::Note {
                            text: format!("note {i}"),
                        },
                        EventKind::WaitingOnCustomer,
                        EventKind::Resumed,
                    ]
                    .into_iter()
                    .enumerate()
                    {
                        store.append(id, "loop", kind, None, Timestamp::now())?;
                        report(stdout, id, seq as u32 + 1);
                    }
                }
                Ok(())
            });
        }
    });
    Ok(0)
}

fn report(out: &std::sync::Mutex<std::io::Stdout>, id: CaseId, seq: u32) {
    let mut o = out.lock().unwrap_or_else(|e| e.into_inner());
    let _ = writeln!(o, "{id} {seq}");
    let _ = o.flush();
}
