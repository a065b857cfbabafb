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
use crate::store::{CaseFilter, HistoryItem, Store};

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
    /// Restore an export into an empty data dir.
    Import {
        /// The JSON Lines file written by `caseroom export` (`-` for stdin).
        file: PathBuf,
        /// Import even when the data dir already holds data (ids must not clash).
        #[arg(long)]
        force: bool,
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
            let config = load_config(&cli.config, cli.data_dir.as_deref())?;
            crate::app::run_blocking(config)?;
            Ok(0)
        }
        Command::Case(cmd) => {
            let store = open_store(&cli.config, cli.data_dir.as_deref())?;
            case_command(&store, cmd)
        }
        Command::Export => {
            let store = open_store(&cli.config, cli.data_dir.as_deref())?;
            export(&store, &mut std::io::stdout().lock())?;
            Ok(0)
        }
        Command::Outbound(cmd) => outbound_command(&cli.config, cli.data_dir.as_deref(), cmd),
        Command::Import { file, force } => {
            let store = open_store(&cli.config, cli.data_dir.as_deref())?;
            import(&store, &file, force)
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

/// Loads the config, applying `--data-dir`.
pub fn load_config(path: &Path, data_dir: Option<&Path>) -> Result<Config> {
    let mut config = Config::load(path).map_err(|e| anyhow::anyhow!("{e}"))?;
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

pub fn open_store(config: &Path, dir: Option<&Path>) -> Result<Store> {
    let dir = data_dir(config, dir)?;
    Store::open(&dir).with_context(|| format!("opening the store in {}", dir.display()))
}

fn check(config: &Path) -> Result<i32> {
    let mut errors: Vec<String> = Vec::new();
    let cfg = match Config::load(config) {
        Ok(c) => Some(c),
        Err(e) => {
            errors.extend(e.0.iter().map(|e| e.to_string()));
            None
        }
    };
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
            if json {
                let mut out = std::io::stdout().lock();
                serde_json::to_writer(
                    &mut out,
                    &serde_json::json!({"case": case, "events": events}),
                )?;
                writeln!(out)?;
                return Ok(0);
            }
            print!("{}", show_case(&case, &events));
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
pub fn show_case(c: &Case, events: &[Event]) -> String {
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
pub fn export(store: &Store, out: &mut impl Write) -> Result<()> {
    for case in store.cases(&CaseFilter::default())? {
        let events = store.events(case.id)?;
        let id = case.id;
        serde_json::to_writer(&mut *out, &ExportRecord::Case(Box::new(case)))?;
        out.write_all(b"\n")?;
        for event in events {
            serde_json::to_writer(&mut *out, &ExportRecord::Event { case: id, event })?;
            out.write_all(b"\n")?;
        }
    }
    for (key, value) in store.case_links()? {
        let value = hex::encode(value);
        serde_json::to_writer(&mut *out, &ExportRecord::Link { key, value })?;
        out.write_all(b"\n")?;
    }
    for item in store.history()? {
        serde_json::to_writer(&mut *out, &ExportRecord::History(item))?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

fn import(store: &Store, file: &Path, force: bool) -> Result<i32> {
    if !force && !store.is_empty()? {
        bail!(
            "the data dir already holds cases or history; import into an empty one, or pass --force"
        );
    }
    let reader: Box<dyn BufRead> = if file == Path::new("-") {
        Box::new(BufReader::new(std::io::stdin()))
    } else {
        Box::new(BufReader::new(
            std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?,
        ))
    };
    let mut cases: Vec<(Case, Vec<Event>)> = Vec::new();
    let mut history = Vec::new();
    let mut links: Vec<(String, Vec<u8>)> = Vec::new();
    for (n, line) in reader.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let rec: ExportRecord = serde_json::from_str(&line)
            .with_context(|| format!("{}: line {}: not an export record", file.display(), n + 1))?;
        match rec {
            ExportRecord::Case(c) => cases.push((*c, Vec::new())),
            ExportRecord::Event { case, event } => match cases.last_mut() {
                Some((c, evs)) if c.id == case => evs.push(event),
                _ => bail!(
                    "{}: line {}: event for {case} does not follow its case",
                    file.display(),
                    n + 1
                ),
            },
            ExportRecord::History(h) => history.push(h),
            ExportRecord::Link { key, value } => {
                let value = hex::decode(&value).with_context(|| {
                    format!("{}: line {}: link value is not hex", file.display(), n + 1)
                })?;
                links.push((key, value));
            }
        }
    }
    // Rebuild each case from its events and insist it matches the exported
    // projection, so a damaged export is refused rather than half-imported.
    let mut batch = Vec::with_capacity(cases.len());
    for (case, events) in cases {
        let rebuilt = Case::replay(case.id, &events).map_err(anyhow::Error::msg)?;
        if rebuilt != case {
            bail!(
                "{}: {} does not match its own history; the export is damaged",
                file.display(),
                case.id
            );
        }
        batch.push((case.id, events));
    }
    let n = store.import_cases(batch)?;
    let h = store.add_history(&history)?;
    for (key, value) in &links {
        store.put_state(key, value)?;
    }
    eprintln!(
        "imported {n} cases, {h} history examples and {} chat links",
        links.len()
    );
    Ok(0)
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
