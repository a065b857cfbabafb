//! caseroom's integration tests: one binary, a module per area.

mod bot;
mod config;
mod http;
mod outbox;
mod store;
mod util;
