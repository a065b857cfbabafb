//! caseroom's integration tests: one binary, a module per area.

mod bot;
mod config;
mod http;
mod store;
mod util;
