//! caseroom's integration tests: one binary, a module per area.

// matrix-sdk's `Client::sync` future (the encrypting people in
// `matrix_e2ee`) is too deep for the default limit when checked for `Send`.
#![recursion_limit = "256"]

mod backup;
mod bot;
mod cards;
mod config;
#[cfg(feature = "discord")]
mod discord;
#[cfg(feature = "discord")]
mod fake_discord;
#[cfg(feature = "slack")]
mod fake_slack;
mod fuzz;
mod http;
#[cfg(feature = "matrix")]
mod matrix_adapter;
#[cfg(feature = "matrix")]
mod matrix_cards;
#[cfg(feature = "matrix")]
mod matrix_crash;
#[cfg(feature = "matrix")]
mod matrix_e2e;
#[cfg(feature = "matrix")]
mod matrix_e2ee;
#[cfg(feature = "matrix")]
mod matrix_sla;
mod outbound;
mod outbox;
mod redact;
mod shutdown;
mod sla;
#[cfg(feature = "slack")]
mod slack;
mod store;
mod suggest;
mod util;
