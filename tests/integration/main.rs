//! caseroom's integration tests: one binary, a module per area.

mod bot;
mod config;
mod store;
mod util;
