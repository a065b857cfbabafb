//! Cases: an escalated ticket the team works from a chat thread.
//!
//! A [`Case`] is a projection of its [`Event`] history: every change is an
//! event, and [`Case::apply`] is the single place that decides whether an
//! event is legal in the case's current [`Status`] and what it changes. The
//! store writes the event and the new projection in one atomic batch, so the
//! two never disagree, and [`Case::replay`] can always rebuild a case from
//! its history.

mod event;
mod model;

pub use event::{Event, EventKind, NewCase};
pub use model::{
    Case, CaseId, Channel, Customer, Priority, Status, TransitionError, parse_short_id,
};
