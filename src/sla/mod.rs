//! SLA clocks, business calendars, on-call rotations and escalation.
//!
//! | file            | concept                                                     |
//! |-----------------|-------------------------------------------------------------|
//! | [`clock`]       | injectable time: the system clock, or a manual one in tests |
//! | [`calendar`]    | counting wall time or business hours (IANA zones via jiff)  |
//! | [`timeline`]    | a case's target clocks (runs) and alerts, from its history  |
//! | [`plan`]        | what is due for a case now, and when next (pure)            |
//! | [`oncall`]      | rotations: who is on call at an instant, who is next        |
//! | [`render`]      | how warnings, alerts and reports read                       |
//! | [`engine`]      | one timer per case, the task that fires them, `ack`/`snooze`|
//!
//! The case history is the single source of truth: due times are computed
//! from it, and every warning, breach and page is an `sla` event committed
//! atomically with the messages announcing it. So a restart re-plans every
//! open case from its history and fires exactly what has not fired yet.

pub mod calendar;
pub mod clock;
pub mod engine;
pub mod oncall;
pub mod plan;
pub mod render;
pub mod timeline;

pub use clock::Clock;
pub use engine::{AlertCommand, ReportFilter, Sla};
pub use plan::{Risk, Settings};
pub use timeline::{AlertId, Target};
