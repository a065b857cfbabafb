//! The gateway side: serenity's client (one shard), whose event handler
//! only acknowledges what must be acknowledged within 3 s (interactions)
//! and queues the rest for the adapter's translator. serenity heartbeats,
//! reconnects and resumes the session after a drop; events replayed on a
//! resume keep their ids, so the core handles each once.

use std::sync::Arc;
use std::time::Duration;

use serenity::all::{
    AutocompleteChoice, Context, CreateAutocompleteResponse, CreateInteractionResponse,
    EventHandler, GatewayIntents, GuildChannel, Interaction, Message, Reaction, Ready,
    ResumedEvent,
};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::DiscordPlatform;
use super::render::is_private_command;

/// The intents caseroom asks for: guilds (threads), guild messages and
/// reactions, and MESSAGE_CONTENT (privileged) to read typed commands.
pub fn intents() -> GatewayIntents {
    GatewayIntents::GUILDS
        | GatewayIntents::GUILD_MESSAGES
        | GatewayIntents::GUILD_MESSAGE_REACTIONS
        | GatewayIntents::MESSAGE_CONTENT
}

/// Autocomplete shows at most this many playbooks.
const CHOICES_MAX: usize = 25;

/// Something the gateway delivered, acknowledged if it needed to be, not
/// yet translated.
#[derive(Debug)]
pub(crate) enum Inbound {
    Message(Box<Message>),
    Reaction(Box<Reaction>),
    Interaction(Box<Interaction>),
}

/// An [`Inbound`] as the adapter's journal keeps it: serenity's models in
/// their wire form. An interaction is serialized without the `type` field
/// its own deserializer dispatches on, so it is added back.
#[derive(serde::Serialize, serde::Deserialize)]
enum Stored {
    Message(Box<Message>),
    Reaction(Box<Reaction>),
    Interaction(serde_json::Value),
}

impl Inbound {
    /// The journal's form of this event.
    pub(crate) fn to_stored(&self) -> Result<serde_json::Value, serde_json::Error> {
        let stored = match self {
            Inbound::Message(m) => Stored::Message(m.clone()),
            Inbound::Reaction(r) => Stored::Reaction(r.clone()),
            Inbound::Interaction(i) => {
                let mut v = serde_json::to_value(i)?;
                if let Some(o) = v.as_object_mut() {
                    o.insert("type".into(), u8::from(i.kind()).into());
                }
                Stored::Interaction(v)
            }
        };
        serde_json::to_value(stored)
    }

    /// Reads what [`Inbound::to_stored`] wrote.
    pub(crate) fn from_stored(bytes: &[u8]) -> Option<Inbound> {
        Some(match serde_json::from_slice::<Stored>(bytes).ok()? {
            Stored::Message(m) => Inbound::Message(m),
            Stored::Reaction(r) => Inbound::Reaction(r),
            Stored::Interaction(v) => {
                Inbound::Interaction(Box::new(serde_json::from_value(v).ok()?))
            }
        })
    }
}

/// An event on its way to the translator, with its journal key (`None`
/// when nothing is kept).
pub(crate) type Queued = (Option<String>, Inbound);

/// serenity's event handler: every call runs in its own task, so it only
/// keeps, acknowledges and queues.
pub(crate) struct Handler {
    pub platform: Arc<DiscordPlatform>,
    pub inbound: mpsc::Sender<Queued>,
}

impl Handler {
    /// Keeps `ev` on disk, so a crash before the bot has handled it loses
    /// nothing: the next start hands it over again. `None` when it could
    /// not be kept (logged; the event is still handled in this run).
    async fn keep(&self, ev: &Inbound) -> Option<String> {
        let stored = match ev.to_stored() {
            Ok(v) => v,
            Err(e) => {
                warn!("encoding a Discord event to keep: {e}");
                return None;
            }
        };
        match self.platform.journal.keep(&stored) {
            Ok(Some((key, durable))) => match durable.wait_async().await {
                Ok(()) => Some(key),
                Err(e) => {
                    warn!("flushing a kept Discord event: {e}");
                    Some(key)
                }
            },
            Ok(None) => None,
            Err(e) => {
                warn!("keeping a Discord event: {e}");
                None
            }
        }
    }

    async fn queue(&self, key: Option<String>, ev: Inbound) {
        if self.inbound.send((key, ev)).await.is_err() {
            debug!("the translator is gone; event dropped");
        }
    }

    async fn keep_and_queue(&self, ev: Inbound) {
        let key = self.keep(&ev).await;
        self.queue(key, ev).await;
    }
}

#[serenity::async_trait]
impl EventHandler for Handler {
    async fn ready(&self, _ctx: Context, ready: Ready) {
        info!(
            user = %ready.user.id,
            session = %ready.session_id,
            guilds = ready.guilds.len(),
            "Discord gateway ready"
        );
        self.platform.gateway_event("ready");
    }

    async fn resume(&self, _ctx: Context, _: ResumedEvent) {
        info!("Discord gateway session resumed");
        self.platform.gateway_event("resumed");
    }

    async fn message(&self, _ctx: Context, msg: Message) {
        if msg.author.id.get() == self.platform.bot_user() {
            // The bot's own posts: nothing to keep.
            return self.queue(None, Inbound::Message(Box::new(msg))).await;
        }
        self.keep_and_queue(Inbound::Message(Box::new(msg))).await;
    }

    async fn reaction_add(&self, _ctx: Context, reaction: Reaction) {
        self.keep_and_queue(Inbound::Reaction(Box::new(reaction)))
            .await;
    }

    async fn thread_create(&self, _ctx: Context, thread: GuildChannel) {
        if let Some(parent) = thread.parent_id {
            self.platform
                .learn_thread(&thread.id.get().to_string(), &parent.get().to_string());
        }
    }

    async fn interaction_create(&self, ctx: Context, interaction: Interaction) {
        // Discord wants an answer within 3 s: keep it (one flush, a few
        // milliseconds), defer (a "thinking" state for commands, a silent
        // ack for buttons), work afterwards.
        match &interaction {
            Interaction::Command(_) | Interaction::Component(_) => {}
            Interaction::Autocomplete(a) => return self.autocomplete(&ctx, a).await,
            Interaction::Modal(m) => {
                let _ = m
                    .create_response(&ctx.http, CreateInteractionResponse::Acknowledge)
                    .await;
                return;
            }
            _ => return,
        }
        let ev = Inbound::Interaction(Box::new(interaction));
        let key = self.keep(&ev).await;
        let acked = match &ev {
            Inbound::Interaction(i) => match i.as_ref() {
                Interaction::Command(c) => {
                    let private = c.data.kind != serenity::all::CommandType::ChatInput
                        || is_private_command(&c.data.name);
                    let r = if private {
                        c.defer_ephemeral(&ctx.http).await
                    } else {
                        c.defer(&ctx.http).await
                    };
                    if r.is_ok() {
                        self.platform.watch_answer(c.token.clone());
                    }
                    r
                }
                Interaction::Component(c) => c.defer(&ctx.http).await,
                _ => Ok(()),
            },
            _ => Ok(()),
        };
        if let Err(e) = acked {
            // Too late or already answered (a replay): the core still
            // handles it once; its reply falls back to the channel.
            warn!("could not acknowledge the interaction: {e}");
        }
        self.queue(key, ev).await;
    }
}

impl Handler {
    /// Offers the playbook ids that contain what was typed.
    async fn autocomplete(&self, ctx: &Context, a: &serenity::all::CommandInteraction) {
        let typed = a
            .data
            .autocomplete()
            .map(|o| o.value.to_lowercase())
            .unwrap_or_default();
        let choices: Vec<AutocompleteChoice> = self
            .platform
            .playbooks
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|p| p.to_lowercase().contains(&typed))
            .take(CHOICES_MAX)
            .map(|p| AutocompleteChoice::new(p.clone(), p.clone()))
            .collect();
        let resp = CreateAutocompleteResponse::new().set_choices(choices);
        if let Err(e) = a
            .create_response(&ctx.http, CreateInteractionResponse::Autocomplete(resp))
            .await
        {
            warn!("autocomplete answer failed: {e}");
        }
    }
}

/// How long a deferred command may stay "thinking" before it is answered
/// with a plain "Done" (a command whose result went to the thread).
pub(crate) const ANSWER_FALLBACK: Duration = Duration::from_millis(2500);
