//! caseroom: a chat-ops bot for a payments support team.
//!
//! # Layout
//!
//! | module       | concept                                                        |
//! |--------------|----------------------------------------------------------------|
//! | [`cli`]      | the command line (`run`, `check`, `case`, `export`, ...)        |
//! | [`app`]      | wiring: tracing, the runtime, start-up and shutdown            |
//! | [`config`]   | `config/caseroom.toml`: raw TOML -> validated [`config::Config`] |
//! | [`case`]     | cases, their lifecycle and event history                        |
//! | [`store`]    | the sled database (the only module that imports sled)           |
//! | [`lang`]     | the languages replies are written in                           |
//! | [`memory`]   | handing freed start-up memory back to the OS                   |
//! | [`message`]  | our own types for what arrives from chat and what we send      |
//! | [`bot`]      | the core: chat events -> commands -> case changes + messages   |
//! | [`command`]  | one file per chat command (parse, then apply)                  |
//! | [`view`]     | how the bot's messages read                                    |
//! | [`http`]     | ticket webhook (signed), health, Prometheus metrics listener   |
//! | [`outbound`] | signed case events to the helpdesk; replies to the customer    |
//! | [`outbox`]   | persisted outgoing messages, per-room ordered delivery         |
//! | [`platform`] | adapters: terminal, fake (tests), Matrix, Slack, Discord       |
//! | [`playbook`] | playbooks, the suggestion engine, extraction, reply drafts     |
//! | [`redact`]   | removing card numbers, CVVs, passwords and codes from text     |
//! | [`sla`]      | SLA clocks, business calendars, on-call rotations, escalation  |

pub mod app;
pub mod bot;
pub mod case;
pub mod cli;
pub mod command;
pub mod config;
pub mod http;
pub mod lang;
pub mod memory;
pub mod message;
pub mod outbound;
pub mod outbox;
pub mod platform;
pub mod playbook;
pub mod redact;
pub mod sla;
pub mod store;
pub mod view;
