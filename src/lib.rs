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

pub mod app;
pub mod case;
pub mod cli;
pub mod config;
pub mod lang;
pub mod store;
