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

/// serenity's event handler: every call runs in its own task, so it only
/// acknowledges and queues.
pub(crate) struct Handler {
    pub platform: Arc<DiscordPlatform>,
    pub inbound: mpsc::Sender<Inbound>,
}

impl Handler {
    async fn queue(&self, ev: Inbound) {
        if self.inbound.send(ev).await.is_err() {
            debug!("the translator is gone; event dropped");
        }
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
        self.queue(Inbound::Message(Box::new(msg))).await;
    }

    async fn reaction_add(&self, _ctx: Context, reaction: Reaction) {
        self.queue(Inbound::Reaction(Box::new(reaction))).await;
    }

    async fn thread_create(&self, _ctx: Context, thread: GuildChannel) {
        if let Some(parent) = thread.parent_id {
            self.platform
                .learn_thread(&thread.id.get().to_string(), &parent.get().to_string());
        }
    }

    async fn interaction_create(&self, ctx: Context, interaction: Interaction) {
        // Discord wants an answer within 3 s: defer first (a "thinking"
        // state for commands, a silent ack for buttons), work afterwards.
        let acked = match &interaction {
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
            Interaction::Autocomplete(a) => {
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
                return;
            }
            Interaction::Modal(m) => {
                let _ = m
                    .create_response(&ctx.http, CreateInteractionResponse::Acknowledge)
                    .await;
                return;
            }
            _ => return,
        };
        if let Err(e) = acked {
            // Too late or already answered (a replay): the core still
            // handles it once; its reply falls back to the channel.
            warn!("could not acknowledge the interaction: {e}");
        }
        self.queue(Inbound::Interaction(Box::new(interaction)))
            .await;
    }
}

/// How long a deferred command may stay "thinking" before it is answered
/// with a plain "Done" (a command whose result went to the thread).
pub(crate) const ANSWER_FALLBACK: Duration = Duration::from_millis(2500);
