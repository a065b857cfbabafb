//! caseroom's integration tests: one binary, a module per area.

mod backup;
mod bot;
mod config;
mod fuzz;
mod http;
#[cfg(feature = "matrix")]
mod matrix_adapter;
#[cfg(feature = "matrix")]
mod matrix_crash;
#[cfg(feature = "matrix")]
mod matrix_e2e;
#[cfg(feature = "matrix")]
mod matrix_sla;
mod outbox;
mod redact;
mod shutdown;
mod sla;
mod store;
mod suggest;
mod util;
