//! The bot core: what happens when someone writes in a room.
//!
//! [`Bot::handle`] takes one [`Incoming`] event, finds the case it belongs
//! to (from the thread it is in), parses a command if it is one, checks the
//! sender's role, and applies it. Every effect — case events and the
//! messages that report them — is written in one atomic store commit that
//! also marks the chat event as handled, so a restart never answers the same
//! command twice and never loses a change it announced. Messages go out
//! through the [`Outbox`].
//!
//! The core never imports a chat SDK: adapters in `platform/` translate.

use std::sync::Arc;

use jiff::Timestamp;

use crate::case::{Case, CaseId, Channel, Customer, EventKind, NewCase};
use crate::command::{self, CmdError};
use crate::config::{Config, Role};
use crate::message::{
    Action, ActionKind, Incoming, IncomingKind, Outgoing, Render, ThreadRef, root_key,
    same_reaction,
};
use crate::outbox::{Outbox, Renderer};
use crate::playbook::{self, Engine, SharedEngine, Suggestion};
use crate::redact::redact;
use crate::sla::{Clock, Sla};
use crate::store::{Durable, HistoryItem, Store};
use crate::view;

/// The bot: cheap to clone, shared by the adapters' tasks.
#[derive(Clone)]
pub struct Bot {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Bot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bot").finish_non_exhaustive()
    }
}

pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) store: Store,
    pub(crate) engine: SharedEngine,
    pub(crate) outbox: Outbox,
    /// Name of the platform, recorded with chat escalations' external ids.
    pub(crate) platform: String,
    /// Signalled when resolved cases added examples, so the classifier is
    /// rebuilt in the background.
    pub(crate) learned: Arc<tokio::sync::Notify>,
    /// The time events are stamped with; a manual clock in tests.
    pub(crate) clock: Clock,
    /// SLA timers, told about every case change (see [`Bot::case_changed`]).
    pub(crate) sla: Sla,
}

/// A ticket to open as a case, from a chat escalation or the webhook.
#[derive(Debug, Clone)]
pub struct Ticket {
    pub external_id: String,
    pub subject: String,
    pub body: String,
    pub customer: Customer,
    pub channel: Channel,
    /// `None` takes the suggested playbook's default priority.
    pub priority: Option<crate::case::Priority>,
    pub tags: Vec<String>,
    /// Whether `customer.language` was given; otherwise it is detected
    /// from the text.
    pub language_known: bool,
}

impl Bot {
    pub fn new(
        config: Config,
        store: Store,
        engine: SharedEngine,
        outbox: Outbox,
        platform: &str,
    ) -> Bot {
        Bot::with_clock(config, store, engine, outbox, platform, Clock::system())
    }

    /// Like [`Bot::new`], on the given clock (tests pass a manual one).
    pub fn with_clock(
        config: Config,
        store: Store,
        engine: SharedEngine,
        outbox: Outbox,
        platform: &str,
        clock: Clock,
    ) -> Bot {
        let sla = Sla::new(
            crate::sla::Settings::from_config(&config),
            store.clone(),
            outbox.clone(),
            clock.clone(),
        );
        if config.outbound.enabled {
            // Before the first write: every change from now on queues its
            // helpdesk event in the same write.
            store.set_outbound_events(config.outbound.events.clone());
        }
        let bot = Bot {
            shared: Arc::new(Shared {
                config,
                store,
                engine,
                outbox,
                platform: platform.to_owned(),
                learned: Arc::new(tokio::sync::Notify::new()),
                clock,
                sla,
            }),
        };
        bot.shared
            .outbox
            .set_renderer(Arc::new(CardRenderer(Arc::downgrade(&bot.shared))));
        bot
    }

    /// Starts delivering helpdesk events (`[outbound]`), when enabled.
    pub fn spawn_outbound(
        &self,
        shutdown: tokio_util::sync::CancellationToken,
        tracker: &tokio_util::task::TaskTracker,
    ) -> anyhow::Result<()> {
        let s = &self.shared;
        if !s.config.outbound.enabled {
            return Ok(());
        }
        crate::outbound::deliver::spawn(
            s.config.outbound.clone(),
            s.store.clone(),
            s.outbox.clone(),
            s.config.rooms.team.clone(),
            shutdown,
            tracker,
        )
    }

    /// Whether agents' replies can reach the customer (through the
    /// helpdesk, `[outbound]` with `case.reply`).
    pub fn replies_enabled(&self) -> bool {
        self.shared.config.outbound.sends("case.reply")
    }

    /// The live card of case `id` as it should read now: text and actions.
    /// `None` when there is no such case.
    pub fn render_card(&self, id: CaseId) -> anyhow::Result<Option<(String, Vec<Action>)>> {
        let Some(case) = self.shared.store.case(id)? else {
            return Ok(None);
        };
        let sla = self.shared.sla.targets(id);
        let tz = self.shared.sla.settings().display_tz();
        let text = view::card(&case, &self.engine(), &sla, self.now(), &tz);
        Ok(Some((
            text,
            view::card_actions(&case, self.replies_enabled()),
        )))
    }

    /// The message that edits case `id`'s card, to queue with a change.
    pub(crate) fn card_update(&self, id: CaseId) -> Outgoing {
        Outgoing::card(self.shared.config.rooms.team.clone(), id, true)
    }

    /// The current time on the bot's clock.
    pub fn now(&self) -> Timestamp {
        self.shared.clock.now()
    }

    /// The SLA engine (start its timers with [`Sla::spawn`]).
    pub fn sla(&self) -> &Sla {
        &self.shared.sla
    }

    /// The one hook for SLA: called after anything may have changed a
    /// case, so its deadlines are re-planned and its timer moved.
    pub fn case_changed(&self, id: CaseId) {
        self.shared.sla.touch(id);
    }

    pub fn store(&self) -> &Store {
        &self.shared.store
    }

    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// Notified whenever resolved cases taught the classifier something.
    pub fn learned(&self) -> Arc<tokio::sync::Notify> {
        self.shared.learned.clone()
    }

    pub fn engine(&self) -> Arc<Engine> {
        playbook::current(&self.shared.engine)
    }

    /// Handles one chat event. Errors are logged and, where a person is
    /// waiting for an answer, replied to; they never stop the bot.
    pub fn handle(&self, msg: &Incoming) -> anyhow::Result<()> {
        let s = &self.shared;
        if s.store.seen(&msg.event_id)? {
            tracing::debug!(event = %msg.event_id, "already handled");
            return Ok(());
        }
        self.remove_secrets(msg)?;
        match &msg.kind {
            IncomingKind::Message { text, thread_root } => {
                let case = match thread_root {
                    Some(root) => match s.store.case_for_thread(&msg.room, root)? {
                        Some(id) => s.store.case(id)?,
                        None => None,
                    },
                    None => None,
                };
                let mut ctx = Ctx {
                    bot: self,
                    msg,
                    case,
                    thread_root: thread_root.clone(),
                };
                match command::parse(text, &s.config.command_prefix) {
                    Some(Ok(cmd)) => self.apply(&mut ctx, cmd, false)?,
                    Some(Err(usage)) => ctx.reply(usage)?,
                    None => self.plain_message(&ctx, text)?,
                }
                if let Some(case) = &ctx.case {
                    self.case_changed(case.id);
                }
            }
            IncomingKind::Reaction {
                key,
                target,
                target_text,
                ..
            } => {
                if let Some(kind) = self.reaction_action(msg, key, target)? {
                    self.run_action(msg, kind)?;
                    s.outbox.wake();
                    return Ok(());
                }
                if !same_reaction(key, &s.config.escalate_reaction)
                    || !s.config.rooms.intake.contains(&msg.room)
                {
                    return Ok(());
                }
                if !s.config.roles.has_in(&msg.sender, &msg.groups, Role::Agent) {
                    tracing::info!(sender = %msg.sender, "escalation reaction from a non-agent ignored");
                    return Ok(());
                }
                let ctx = Ctx {
                    bot: self,
                    msg,
                    case: None,
                    thread_root: Some(target.clone()),
                };
                let Some(text) = target_text.as_deref().filter(|t| !t.trim().is_empty()) else {
                    ctx.reply("I could not read the message you reacted to; use `!escalate <text>` instead.".into())?;
                    return Ok(());
                };
                self.escalate_from_chat(&ctx, text, target)?;
            }
            IncomingKind::Action { id, .. } => match ActionKind::parse(id) {
                Some(kind) => self.run_action(msg, kind)?,
                None => {
                    tracing::info!(sender = %msg.sender, action = %id, "unknown action");
                    let ctx = Ctx {
                        bot: self,
                        msg,
                        case: None,
                        thread_root: None,
                    };
                    ctx.reply_to(
                        "That button is not one of mine any more (an old message?). Nothing was changed; `!help` lists what you can type.".into(),
                        true,
                    )?;
                }
            },
        }
        s.outbox.wake();
        Ok(())
    }

    /// Runs a parsed command; a refusal or mistake is answered (only to the
    /// sender when `private`, as for a click).
    fn apply(&self, ctx: &mut Ctx, cmd: command::Command, private: bool) -> anyhow::Result<()> {
        let name = cmd.name();
        let msg = ctx.msg;
        tracing::info!(sender = %msg.sender, room = %msg.room, command = name, "command");
        let started = std::time::Instant::now();
        let result = cmd.apply(ctx);
        // Reports (`queue`, `stats`, `sla`) grow with the store: say how
        // long they took, so a slow one shows in the log.
        tracing::info!(command = name, took = ?started.elapsed(), "command done");
        match result {
            Ok(()) => {}
            Err(CmdError::Internal(e)) => {
                tracing::error!(command = name, "command failed: {e:#}");
                ctx.reply_to(
                    format!("⚠️ `{name}` failed on our side: {e}. Nothing was changed; please try again."),
                    private,
                )?;
            }
            Err(e) => ctx.reply_to(e.to_string(), private)?,
        }
        Ok(())
    }

    /// The action a reaction stands for: a reaction on a case's card (✋
    /// claims, ✅ resolves) or on another message of ours that carried
    /// actions (👍 on an alert acknowledges it).
    fn reaction_action(
        &self,
        msg: &Incoming,
        key: &str,
        target: &str,
    ) -> anyhow::Result<Option<ActionKind>> {
        let store = &self.shared.store;
        let mut kinds: Vec<ActionKind> = store
            .actions_on(&msg.room, target)?
            .into_iter()
            .map(|a| a.kind)
            .collect();
        if let Some(case) = store.case_for_thread(&msg.room, target)? {
            // A card's reactions work whatever the card showed when posted:
            // the command then answers for the case as it is now.
            kinds.push(ActionKind::Claim { case });
            kinds.push(ActionKind::Resolve { case });
        }
        Ok(kinds
            .into_iter()
            .find(|k| k.reaction().is_some_and(|r| same_reaction(key, r))))
    }

    /// Runs a click (or a reaction standing for one) as the command it is:
    /// same role check, same refusals (only to the clicker where the platform
    /// can), and the line saying who did what goes in the case's thread.
    fn run_action(&self, msg: &Incoming, kind: ActionKind) -> anyhow::Result<()> {
        let s = &self.shared;
        let (case, thread_root) = match kind.case() {
            Some(id) => (s.store.case(id)?, s.store.posted(&root_key(id))?),
            None => (None, None),
        };
        let mut ctx = Ctx {
            bot: self,
            msg,
            case,
            thread_root,
        };
        if let (Some(id), None) = (kind.case(), &ctx.case) {
            return ctx.reply_to(format!("There is no case {id} any more."), true);
        }
        let prefix = &s.config.command_prefix;
        let text = format!("{prefix}{}", kind.command());
        tracing::info!(sender = %msg.sender, action = %kind, "action");
        match command::parse(&text, prefix) {
            Some(Ok(cmd)) => self.apply(&mut ctx, cmd, true)?,
            Some(Err(usage)) => ctx.reply_to(usage, true)?,
            None => {}
        }
        if let Some(case) = &ctx.case {
            self.case_changed(case.id);
        }
        Ok(())
    }

    /// Card numbers, CVVs, passwords and codes must not stay in chat: a
    /// message in one of our rooms that holds one (or an escalated message
    /// that does) is removed, with a note saying why. The case keeps a
    /// redacted copy.
    fn remove_secrets(&self, msg: &Incoming) -> anyhow::Result<()> {
        let rooms = &self.shared.config.rooms;
        let ours =
            msg.room == rooms.team || msg.room == rooms.oncall || rooms.intake.contains(&msg.room);
        let (target, text, thread) = match &msg.kind {
            IncomingKind::Message { text, thread_root } => {
                (msg.event_id.as_str(), text.as_str(), thread_root.clone())
            }
            IncomingKind::Reaction {
                key,
                target,
                target_text: Some(text),
                ..
            } if *key == self.shared.config.escalate_reaction => {
                (target.as_str(), text.as_str(), Some(target.clone()))
            }
            _ => return Ok(()),
        };
        if !ours || redact(text) == text {
            return Ok(());
        }
        let reason = "contained a card number, CVV, password or one-time code";
        let out = vec![
            Outgoing::redaction(msg.room.clone(), target, reason),
            Outgoing::new(
                msg.room.clone(),
                format!("🔒 A message here {reason}, so I am removing it. Cases keep a redacted copy; please do not paste these into chat."),
            )
            .in_thread(thread.map(ThreadRef::Message)),
        ];
        tracing::info!(room = %msg.room, event = target, "removing a message with sensitive data");
        self.shared
            .store
            .commit(None, "bot", self.now(), vec![], out, None)?;
        Ok(())
    }

    /// A plain message in a case thread is case activity; the team's first
    /// one is the case's first response.
    fn plain_message(&self, ctx: &Ctx, text: &str) -> anyhow::Result<()> {
        let Some(case) = &ctx.case else { return Ok(()) };
        if !self
            .shared
            .config
            .roles
            .is_member_in(&ctx.msg.sender, &ctx.msg.groups)
            || case.status == crate::case::Status::Closed
        {
            return Ok(());
        }
        let kind = EventKind::AgentMessage {
            text: redact(text).into_owned(),
        };
        self.shared.store.commit(
            Some(case.id),
            &ctx.msg.sender,
            self.now(),
            vec![(kind, None)],
            vec![],
            Some(&ctx.msg.event_id),
        )?;
        Ok(())
    }

    /// Opens a case for a message escalated in an intake room; the same
    /// message never opens two cases.
    pub(crate) fn escalate_from_chat(
        &self,
        ctx: &Ctx,
        text: &str,
        message_id: &str,
    ) -> anyhow::Result<()> {
        let s = &self.shared;
        let body = redact(text).into_owned();
        let ticket = Ticket {
            external_id: format!("{}:{}:{}", s.platform, ctx.msg.room, message_id),
            subject: String::new(),
            body,
            customer: Customer::default(),
            channel: Channel::Chat,
            priority: None,
            tags: Vec::new(),
            language_known: false,
        };
        let ack_room = ctx.msg.room.clone();
        let ack_thread = ctx.thread_root.clone();
        let (case, created) =
            self.open_ticket(ticket, &ctx.msg.sender, Some(&ctx.msg.event_id), |case| {
                vec![
                    Outgoing::new(
                        ack_room.clone(),
                        format!(
                            "🎫 Opened **{}** — it is in the team room, with a suggested playbook.",
                            case.id
                        ),
                    )
                    .in_thread(ack_thread.clone().map(ThreadRef::Message))
                    .about(case.id, "ack"),
                ]
            })?;
        if !created {
            ctx.reply(format!(
                "That message is already **{}** ({}).",
                case.id, case.status
            ))?;
        }
        Ok(())
    }

    /// Opens a case for a ticket (chat escalation or webhook): suggests a
    /// playbook, and queues the root message in the team room and the
    /// suggestion in its thread — all in one atomic write. Returns the case
    /// and whether it is new (an existing external id opens nothing).
    pub fn open_ticket(
        &self,
        ticket: Ticket,
        actor: &str,
        seen: Option<&str>,
        extra: impl FnOnce(&Case) -> Vec<Outgoing>,
    ) -> anyhow::Result<(Case, bool)> {
        let (case, created, durable) = self.open_ticket_deferred(ticket, actor, seen, extra)?;
        if let Some(d) = durable {
            d.wait()?;
        }
        self.shared.outbox.wake();
        Ok((case, created))
    }

    /// [`Bot::open_ticket`] that returns before the disk flush: the case is
    /// acknowledged once the returned [`Durable`] resolves; then call
    /// [`Bot::wake_outbox`]. The webhook uses this to wait without a thread.
    pub fn open_ticket_deferred(
        &self,
        mut ticket: Ticket,
        actor: &str,
        seen: Option<&str>,
        extra: impl FnOnce(&Case) -> Vec<Outgoing>,
    ) -> anyhow::Result<(Case, bool, Option<Durable>)> {
        let s = &self.shared;
        // No redaction pass here: the engine redacts before it reads the
        // text, and the store redacts the case before anything is written or
        // rendered from it, so the webhook's hot path does it once per layer
        // that needs it.
        let engine = self.engine();
        let text = if ticket.subject.is_empty() {
            ticket.body.clone()
        } else {
            format!("{}\n{}", ticket.subject, ticket.body)
        };
        let started = std::time::Instant::now();
        let suggestion = engine.suggest(&text);
        crate::http::metrics::suggestion_latency(started.elapsed());
        if !ticket.language_known {
            ticket.customer.language = suggestion.lang;
        }
        let priority = ticket.priority.unwrap_or_else(|| {
            suggestion
                .playbook
                .as_deref()
                .and_then(|p| engine.playbooks().get(p))
                .map(|p| p.priority())
                .unwrap_or_default()
        });
        let mut tags = ticket.tags.clone();
        if let Some(pb) = suggestion
            .playbook
            .as_deref()
            .and_then(|p| engine.playbooks().get(p))
        {
            tags.extend(pb.tags().iter().cloned());
        }
        tags.sort();
        tags.dedup();
        let new = NewCase {
            external_id: ticket.external_id.clone(),
            subject: ticket.subject.clone(),
            body: ticket.body.clone(),
            customer: ticket.customer.clone(),
            channel: ticket.channel,
            priority,
            tags,
        };
        let team = s.config.rooms.team.clone();
        let (opened, durable) =
            s.store
                .open_case_deferred(new, actor, self.now(), seen, |case| {
                    let triaged = EventKind::Triaged {
                        playbook: suggestion.playbook.clone(),
                        confidence: suggestion.confidence,
                    };
                    let mut case = case.clone();
                    case.suggested_playbook = suggestion.playbook.clone();
                    case.suggestion_confidence = Some(suggestion.confidence);
                    let root = Outgoing::card(team.clone(), case.id, false);
                    // Rendered when delivered (see `Render::Suggestion`).
                    let mut thread = Outgoing::new(team.clone(), String::new())
                        .in_thread(Some(ThreadRef::Key(root_key(case.id))))
                        .about(case.id, "suggestion");
                    thread.render = Some(Render::Suggestion {
                        case: case.id,
                        suggestion: Box::new(suggestion.clone()),
                    });
                    let mut out = vec![root, thread];
                    out.extend(extra(&case));
                    (vec![triaged], out)
                })?;
        if opened.created {
            s.sla.touch_opened(opened.case.id, &opened.events);
            tracing::info!(case = %opened.case.id, playbook = ?opened.case.suggested_playbook, "case opened");
        }
        Ok((opened.case, opened.created, durable))
    }

    /// The customer wrote again on ticket `external_id` (a helpdesk
    /// update): recorded (redacted) in the history and posted in the case
    /// thread mentioning the assignee; a waiting case resumes and a resolved
    /// one reopens. `None` when no case has that external id; a closed case
    /// is refused with a transition error.
    pub fn customer_message(&self, external_id: &str, text: &str) -> anyhow::Result<Option<Case>> {
        let s = &self.shared;
        let Some(case) = s.store.case_by_external(external_id)? else {
            return Ok(None);
        };
        let text = redact(text).into_owned();
        let mut events = vec![(EventKind::CustomerMessage { text: text.clone() }, None)];
        match case.status {
            crate::case::Status::WaitingOnCustomer => {
                events.push((EventKind::Resumed, Some("the customer replied".into())))
            }
            crate::case::Status::Resolved => {
                events.push((EventKind::Reopened, Some("the customer replied".into())))
            }
            _ => {}
        }
        let out = Outgoing::new(
            s.config.rooms.team.clone(),
            format!(
                "💬 **{}** — the customer wrote:\n{}",
                case.id,
                view::quote(&text)
            ),
        )
        .in_thread(Some(ThreadRef::Key(root_key(case.id))))
        .about(case.id, "customer")
        .mention(case.assignee.clone());
        let updated = s.store.commit(
            Some(case.id),
            "webhook",
            self.now(),
            events,
            vec![out, self.card_update(case.id)],
            None,
        )?;
        self.case_changed(case.id);
        s.outbox.wake();
        Ok(updated)
    }

    /// Tells the outbox there are new messages.
    pub fn wake_outbox(&self) {
        self.shared.outbox.wake();
    }

    /// The suggestion for a case: its text plus any later notes and
    /// customer messages, and `extra`.
    pub(crate) fn suggest_for(&self, case: &Case, extra: &str) -> anyhow::Result<Suggestion> {
        let mut text = format!("{}\n{}", case.subject, case.body);
        for ev in self.shared.store.events(case.id)? {
            if let EventKind::Note { text: t } | EventKind::CustomerMessage { text: t } = ev.kind {
                text.push('\n');
                text.push_str(&t);
            }
        }
        if !extra.is_empty() {
            text.push('\n');
            text.push_str(extra);
        }
        let mut s = self.engine().suggest(&text);
        s.lang = case.customer.language;
        Ok(s)
    }

    /// Teaches the classifier a resolved case's playbook.
    pub(crate) fn learn_resolved(&self, case: &Case, playbook: &str) {
        let item = HistoryItem {
            text: format!("{} {}", case.subject, case.body).trim().to_owned(),
            label: playbook.to_owned(),
        };
        match self.shared.store.add_history([&item]) {
            Ok(_) => self.shared.learned.notify_one(),
            Err(e) => tracing::warn!("could not learn from {}: {e}", case.id),
        }
    }
}

/// What a command sees: the message, its case (when sent in a case thread)
/// and the bot.
pub(crate) struct Ctx<'a> {
    pub(crate) bot: &'a Bot,
    pub(crate) msg: &'a Incoming,
    pub(crate) case: Option<Case>,
    /// Where replies go: the thread the message was in.
    pub(crate) thread_root: Option<String>,
}

impl Ctx<'_> {
    pub(crate) fn shared(&self) -> &Shared {
        &self.bot.shared
    }

    pub(crate) fn sender(&self) -> &str {
        &self.msg.sender
    }

    /// Whether the sender (or one of their platform groups) holds `role`.
    pub(crate) fn holds(&self, role: Role) -> bool {
        self.shared()
            .config
            .roles
            .has_in(&self.msg.sender, &self.msg.groups, role)
    }

    /// Refuses unless the sender holds `role`, saying why.
    pub(crate) fn require(&self, role: Role, command: &str) -> Result<(), CmdError> {
        if self.holds(role) {
            Ok(())
        } else {
            Err(CmdError::Refused(format!(
                "Sorry {}, `{command}` is for the {role} role and you do not have it. An admin can add you under [roles] {role} in the config.",
                self.sender()
            )))
        }
    }

    /// The case this command is about: the one whose thread it was sent in.
    pub(crate) fn case(&self, command: &str) -> Result<&Case, CmdError> {
        self.case.as_ref().ok_or_else(|| {
            CmdError::Usage(format!(
                "`{command}` works in a case thread: reply in the thread under the case's root message."
            ))
        })
    }

    /// A reply where the command was sent (its thread, if any).
    pub(crate) fn reply_msg(&self, text: String) -> Outgoing {
        let mut out = Outgoing::new(self.msg.room.clone(), text)
            .in_thread(self.thread_root.clone().map(ThreadRef::Message));
        if let Some(c) = &self.case {
            out = out.about(c.id, "reply");
        }
        out.reply_handle = self.msg.reply_handle.clone();
        out
    }

    /// Replies and marks the message handled.
    pub(crate) fn reply(&self, text: String) -> anyhow::Result<()> {
        self.reply_to(text, false)
    }

    /// Replies (only to the sender when `private` and the platform can) and
    /// marks the message handled.
    pub(crate) fn reply_to(&self, text: String, private: bool) -> anyhow::Result<()> {
        let mut out = self.reply_msg(text);
        if private {
            out.private_to = Some(self.sender().to_owned());
        }
        self.shared().store.commit(
            None,
            self.sender(),
            self.bot.now(),
            vec![],
            vec![out],
            Some(&self.msg.event_id),
        )?;
        Ok(())
    }

    /// Applies events to this command's case and replies, atomically. An
    /// illegal transition is refused with a readable reason and changes
    /// nothing.
    pub(crate) fn change(
        &mut self,
        command: &str,
        events: Vec<(EventKind, Option<String>)>,
        reply: impl FnOnce(&Case) -> String,
    ) -> Result<Case, CmdError> {
        let id: CaseId = self.case(command)?.id;
        let preview = {
            let mut c = self.case(command)?.clone();
            for (i, (kind, reason)) in events.iter().enumerate() {
                let ev = crate::case::Event {
                    seq: c.events + i as u32,
                    at: self.bot.now(),
                    actor: self.sender().to_owned(),
                    kind: kind.clone(),
                    reason: reason.clone(),
                };
                c.apply(&ev)
                    .map_err(|e| CmdError::Refused(format!("{e}.")))?;
            }
            c
        };
        let out = self.reply_msg(reply(&preview));
        let case = self
            .shared()
            .store
            .commit(
                Some(id),
                self.sender(),
                self.bot.now(),
                events,
                vec![out, self.bot.card_update(id)],
                Some(&self.msg.event_id),
            )
            .map_err(|e| match e {
                crate::store::StoreError::Transition(t) => CmdError::Refused(format!("{t}.")),
                other => CmdError::Internal(other.into()),
            })?
            .ok_or_else(|| CmdError::Internal(anyhow::anyhow!("{id} vanished")))?;
        self.case = Some(case.clone());
        Ok(case)
    }
}

/// Renders cards for the outbox from the bot's current state. Holds the
/// bot weakly: the bot owns the outbox, which owns this.
struct CardRenderer(std::sync::Weak<Shared>);

impl Renderer for CardRenderer {
    fn render(&self, msg: &Outgoing) -> Option<Outgoing> {
        let case = match &msg.render {
            Some(Render::Card { case }) => *case,
            Some(Render::Suggestion { case, suggestion }) => {
                let bot = Bot {
                    shared: self.0.upgrade()?,
                };
                let mut out = msg.clone();
                match bot.shared.store.case(*case) {
                    Ok(Some(c)) => {
                        out.text = view::suggestion_message(&c, suggestion, &bot.engine());
                    }
                    Ok(None) => out.text = format!("🎫 **{case}** is no longer in the store."),
                    Err(e) => {
                        tracing::warn!(%case, "cannot render the suggestion yet: {e:#}");
                        return None;
                    }
                }
                out.render = None;
                return Some(out);
            }
            None => return Some(msg.clone()),
        };
        let bot = Bot {
            shared: self.0.upgrade()?,
        };
        let mut out = msg.clone();
        match bot.render_card(case) {
            Ok(Some((text, actions))) => {
                out.text = text;
                out.actions = actions;
            }
            Ok(None) => out.text = format!("🎫 **{case}** is no longer in the store."),
            Err(e) => {
                tracing::warn!(%case, "cannot render the card yet: {e:#}");
                return None;
            }
        }
        Some(out)
    }
}
