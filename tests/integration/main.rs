//! caseroom's integration tests: one binary, a module per area.

mod bot;
mod config;
mod http;
#[cfg(feature = "matrix")]
mod matrix_adapter;
mod outbox;
mod sla;
mod store;
mod util;
