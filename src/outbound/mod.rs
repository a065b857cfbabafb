//! Outbound case events: the helpdesk kept in sync.
//!
//! Every case change the helpdesk cares about (opened, assigned, waiting,
//! resumed, resolved, reopened, closed, an agent's reply to the customer,
//! notes, SLA warnings and breaches, acknowledged alerts) becomes an
//! [`OutboundEvent`], queued by the store **in the same atomic write** as the
//! change itself, so an event is never lost and never made up. The
//! [`deliver`] task POSTs them as JSON to `[outbound] url`, signed like the
//! inbound webhook (`X-Caseroom-Signature`) with an `Idempotency-Key` equal
//! to the event id; ids are stable, so a retry after a crash is recognisable.
//! Delivery is at least once, in order per case, with backoff on 5xx and
//! timeouts, honouring `429 Retry-After`; after `max_attempts` an event is
//! set aside (`caseroom outbound list|retry`). It runs apart from the chat
//! side: a dead helpdesk never slows chat or intake.
//!
//! Agents' replies (`reply`, `send`) reach the customer this way, as
//! `case.reply` events; the thread is told when the helpdesk accepted one.

pub mod deliver;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::case::{Case, CaseId, Event, EventKind};

/// Every event type, in the order of the docs.
pub const TYPES: &[&str] = &[
    "case.opened",
    "case.assigned",
    "case.waiting",
    "case.resumed",
    "case.resolved",
    "case.reopened",
    "case.closed",
    "case.reply",
    "case.note",
    "sla.warning",
    "sla.breached",
    "alert.acknowledged",
];

/// One event as POSTed: `{"id", "type", "at", "case": {...}, "data": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboundEvent {
    /// Stable: the same change always has the same id.
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub at: Timestamp,
    pub case: CaseSummary,
    pub data: serde_json::Value,
}

/// The case as it stood right after the change (no customer text: the
/// helpdesk has the ticket).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseSummary {
    pub id: CaseId,
    pub external_id: String,
    pub status: String,
    pub priority: String,
    pub assignee: Option<String>,
    pub playbook: Option<String>,
    pub tags: Vec<String>,
}

/// An event waiting in the store, with its delivery state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Queued {
    pub event: OutboundEvent,
    /// Delivery tries so far.
    #[serde(default)]
    pub attempts: u32,
    /// Why the last try failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// For a reply: whether the thread was told it is pending.
    #[serde(default)]
    pub told_pending: bool,
}

/// The event type of a history event, if it is one the helpdesk hears of.
pub fn event_type(kind: &EventKind) -> Option<&'static str> {
    Some(match kind {
        EventKind::Opened(_) => return None, // sent at triage, with the playbook
        EventKind::Triaged { .. } => "case.opened",
        EventKind::Assigned { .. } => "case.assigned",
        EventKind::WaitingOnCustomer => "case.waiting",
        EventKind::Resumed => "case.resumed",
        EventKind::Resolved { .. } => "case.resolved",
        EventKind::Reopened => "case.reopened",
        EventKind::Closed => "case.closed",
        EventKind::Reply { .. } => "case.reply",
        EventKind::Note { .. } => "case.note",
        EventKind::Sla { what, .. } if what.starts_with("warning") => "sla.warning",
        EventKind::Sla { what, .. } if what == "breached" => "sla.breached",
        EventKind::Sla { what, .. } if what.ends_with(" acknowledged") => "alert.acknowledged",
        _ => return None,
    })
}

/// The outbound event for history event `ev` of `case` (as it stands after
/// `ev`), when `ev` is of a type in `types`. `instance` makes ids unique per
/// data dir.
pub fn event_for(instance: &str, case: &Case, ev: &Event, types: &[String]) -> Option<Queued> {
    let kind = event_type(&ev.kind)?;
    if !types.iter().any(|t| t == kind) {
        return None;
    }
    let data = match &ev.kind {
        EventKind::Triaged {
            playbook,
            confidence,
        } => serde_json::json!({
            "subject": case.subject,
            "channel": case.channel.as_str(),
            "customer": {"name": case.customer.name, "language": case.customer.language.to_string()},
            "suggested_playbook": playbook,
            "confidence": confidence,
        }),
        EventKind::Assigned { assignee } => serde_json::json!({"assignee": assignee}),
        EventKind::Resolved { playbook } => serde_json::json!({"playbook": playbook}),
        EventKind::Reply { text } => serde_json::json!({
            "text": text,
            "language": case.customer.language.to_string(),
            "public": true,
        }),
        EventKind::Note { text } => serde_json::json!({"text": text, "public": false}),
        EventKind::Sla { target, what } => {
            let mut d = serde_json::json!({"target": target, "what": what});
            if let Some(alert) = what
                .split_whitespace()
                .nth(1)
                .filter(|a| a.starts_with("A-"))
            {
                d["alert"] = alert.into();
            }
            d
        }
        _ => serde_json::json!({}),
    };
    let mut data = data;
    data["actor"] = ev.actor.clone().into();
    if let Some(reason) = &ev.reason {
        data["reason"] = reason.clone().into();
    }
    Some(Queued {
        event: OutboundEvent {
            id: format!("evt_{instance}_{}_{}", case.id.0, ev.seq),
            kind: kind.to_owned(),
            at: ev.at,
            case: CaseSummary {
                id: case.id,
                external_id: case.external_id.clone(),
                status: case.status.as_str().to_owned(),
                priority: case.priority.as_str().to_owned(),
                assignee: case.assignee.clone(),
                playbook: case
                    .chosen_playbook
                    .clone()
                    .or_else(|| case.suggested_playbook.clone()),
                tags: case.tags.iter().cloned().collect(),
            },
            data,
        },
        attempts: 0,
        last_error: None,
        told_pending: false,
    })
}
