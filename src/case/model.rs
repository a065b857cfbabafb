//! The case record and its lifecycle rules.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::event::{Event, EventKind};
use crate::lang::Lang;

/// A short, human-friendly case number such as `C-1042`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct CaseId(pub u64);

impl fmt::Display for CaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "C-{}", self.0)
    }
}

impl FromStr for CaseId {
    type Err = String;

    /// Accepts `C-1042`, `c-1042`, `#1042` and `1042`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_short_id(s, 'C')
            .map(CaseId)
            .ok_or_else(|| format!("`{s}` is not a case id (expected something like C-1042)"))
    }
}

/// Parses a short id such as `C-1042` (or `c-1042`, `#1042`, `1042`) for
/// the given letter; ids start at 1.
pub fn parse_short_id(s: &str, letter: char) -> Option<u64> {
    let t = s.trim();
    let digits = t
        .strip_prefix(letter.to_ascii_uppercase())
        .or_else(|| t.strip_prefix(letter.to_ascii_lowercase()))
        .and_then(|r| r.strip_prefix('-'))
        .or_else(|| t.strip_prefix('#'))
        .unwrap_or(t);
    digits.parse::<u64>().ok().filter(|n| *n > 0)
}

impl From<CaseId> for String {
    fn from(id: CaseId) -> String {
        id.to_string()
    }
}

impl TryFrom<String> for CaseId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

/// Where a case is in its lifecycle.
///
/// `new -> triaged -> assigned -> waiting_on_customer <-> assigned ->
/// resolved -> (reopened -> assigned) -> closed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    New,
    Triaged,
    Assigned,
    WaitingOnCustomer,
    Resolved,
    Reopened,
    Closed,
}

impl Status {
    pub const ALL: [Status; 7] = [
        Status::New,
        Status::Triaged,
        Status::Assigned,
        Status::WaitingOnCustomer,
        Status::Resolved,
        Status::Reopened,
        Status::Closed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::New => "new",
            Status::Triaged => "triaged",
            Status::Assigned => "assigned",
            Status::WaitingOnCustomer => "waiting_on_customer",
            Status::Resolved => "resolved",
            Status::Reopened => "reopened",
            Status::Closed => "closed",
        }
    }

    /// Open cases are the ones the queue shows and SLA clocks run for.
    pub fn is_open(self) -> bool {
        !matches!(self, Status::Resolved | Status::Closed)
    }

    /// A stable one-byte code, used as an index key prefix by the store.
    pub fn code(self) -> u8 {
        self as u8
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Status {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let norm = s.trim().to_ascii_lowercase().replace('-', "_");
        Status::ALL
            .into_iter()
            .find(|st| {
                st.as_str() == norm || (norm == "waiting" && *st == Status::WaitingOnCustomer)
            })
            .ok_or_else(|| {
                let all: Vec<_> = Status::ALL.iter().map(|s| s.as_str()).collect();
                format!("unknown status `{s}` (expected one of: {})", all.join(", "))
            })
    }
}

/// Urgency, P1 (most urgent) to P4.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    P1,
    P2,
    #[default]
    P3,
    P4,
}

impl Priority {
    pub const ALL: [Priority; 4] = [Priority::P1, Priority::P2, Priority::P3, Priority::P4];

    pub fn as_str(self) -> &'static str {
        match self {
            Priority::P1 => "p1",
            Priority::P2 => "p2",
            Priority::P3 => "p3",
            Priority::P4 => "p4",
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_str().to_ascii_uppercase())
    }
}

impl FromStr for Priority {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "p1" | "1" => Ok(Priority::P1),
            "p2" | "2" => Ok(Priority::P2),
            "p3" | "3" => Ok(Priority::P3),
            "p4" | "4" => Ok(Priority::P4),
            _ => Err(format!(
                "unknown priority `{s}` (expected p1, p2, p3 or p4)"
            )),
        }
    }
}

/// How the customer reached support.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Email,
    #[default]
    Chat,
    Phone,
    Social,
    Web,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Chat => "chat",
            Channel::Phone => "phone",
            Channel::Social => "social",
            Channel::Web => "web",
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Channel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "email" => Ok(Channel::Email),
            "chat" => Ok(Channel::Chat),
            "phone" => Ok(Channel::Phone),
            "social" => Ok(Channel::Social),
            "web" => Ok(Channel::Web),
            _ => Err(format!(
                "unknown channel `{s}` (expected email, chat, phone, social or web)"
            )),
        }
    }
}

/// Who raised the ticket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Customer {
    /// The helpdesk's id for the customer, when it sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// The language replies are drafted in.
    pub language: Lang,
}

/// The current state of a case, derived from its events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Case {
    pub id: CaseId,
    /// The helpdesk's ticket id (or a chat message id for chat escalations);
    /// unique across cases, which is what makes intake idempotent.
    pub external_id: String,
    pub subject: String,
    /// Customer text, already redacted (no card numbers, CVVs or passwords).
    pub body: String,
    pub customer: Customer,
    pub channel: Channel,
    pub priority: Priority,
    pub tags: BTreeSet<String>,
    pub status: Status,
    pub assignee: Option<String>,
    /// The playbook the engine suggested when the case was triaged.
    pub suggested_playbook: Option<String>,
    pub suggestion_confidence: Option<f32>,
    /// The playbook an agent used or resolved the case with.
    pub chosen_playbook: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub first_response_at: Option<Timestamp>,
    pub resolved_at: Option<Timestamp>,
    pub closed_at: Option<Timestamp>,
    /// Number of events in the history; the next event's sequence number.
    pub events: u32,
}

/// An event that is not legal in the case's current state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot {action} {case}: it is {status}{hint}")]
pub struct TransitionError {
    pub case: CaseId,
    pub status: Status,
    pub action: &'static str,
    /// A short suggestion of what to do instead, starting with "; ".
    pub hint: &'static str,
}

impl Case {
    /// Rebuilds a case from its full history. The first event must be
    /// [`EventKind::Opened`].
    pub fn replay(id: CaseId, events: &[Event]) -> Result<Case, String> {
        let (first, rest) = events
            .split_first()
            .ok_or_else(|| format!("{id} has no events"))?;
        let mut case = Case::open(id, first)?;
        for ev in rest {
            case.apply(ev).map_err(|e| e.to_string())?;
        }
        Ok(case)
    }

    /// Creates a case from its opening event.
    pub fn open(id: CaseId, ev: &Event) -> Result<Case, String> {
        let EventKind::Opened(new) = &ev.kind else {
            return Err(format!(
                "{id}: first event must be `opened`, not `{}`",
                ev.kind.name()
            ));
        };
        Ok(Case {
            id,
            external_id: new.external_id.clone(),
            subject: new.subject.clone(),
            body: new.body.clone(),
            customer: new.customer.clone(),
            channel: new.channel,
            priority: new.priority,
            tags: new.tags.iter().cloned().collect(),
            status: Status::New,
            assignee: None,
            suggested_playbook: None,
            suggestion_confidence: None,
            chosen_playbook: None,
            created_at: ev.at,
            updated_at: ev.at,
            first_response_at: None,
            resolved_at: None,
            closed_at: None,
            events: 1,
        })
    }

    /// Checks `ev` against the lifecycle and applies it. On error the case
    /// is unchanged.
    pub fn apply(&mut self, ev: &Event) -> Result<(), TransitionError> {
        use EventKind as K;
        use Status as S;
        let refuse = |action, hint| TransitionError {
            case: self.id,
            status: self.status,
            action,
            hint,
        };
        if self.status == S::Closed {
            return Err(refuse(ev.kind.action(), "; closed cases are final"));
        }
        match &ev.kind {
            K::Opened(_) => return Err(refuse("open", "; it already exists")),
            K::Triaged {
                playbook,
                confidence,
            } => {
                if self.status != S::New {
                    return Err(refuse("triage", "; only new cases are triaged"));
                }
                self.status = S::Triaged;
                self.suggested_playbook = playbook.clone();
                self.suggestion_confidence = Some(*confidence);
            }
            K::Suggested {
                playbook,
                confidence,
            } => {
                self.suggested_playbook = playbook.clone();
                self.suggestion_confidence = Some(*confidence);
            }
            K::Assigned { assignee } => match self.status {
                S::New | S::Triaged | S::Assigned | S::Reopened => {
                    self.status = S::Assigned;
                    self.assignee = Some(assignee.clone());
                }
                // Handing a waiting case to a colleague keeps it waiting.
                S::WaitingOnCustomer => self.assignee = Some(assignee.clone()),
                _ => return Err(refuse("assign", "; reopen it first")),
            },
            K::Unassigned => {
                if self.status != S::Assigned {
                    return Err(refuse(
                        "unassign",
                        "; only assigned cases can be unassigned",
                    ));
                }
                self.status = S::Triaged;
                self.assignee = None;
            }
            K::WaitingOnCustomer => {
                if self.status != S::Assigned {
                    let hint = match self.status {
                        S::Resolved => "; reopen it first",
                        _ => "; claim it first (only assigned cases wait)",
                    };
                    return Err(refuse("wait on the customer for", hint));
                }
                self.status = S::WaitingOnCustomer;
            }
            K::Resumed => {
                if self.status != S::WaitingOnCustomer {
                    return Err(refuse(
                        "resume",
                        "; only cases waiting on the customer resume",
                    ));
                }
                self.status = S::Assigned;
            }
            K::Resolved { playbook } => {
                if !matches!(self.status, S::Assigned | S::WaitingOnCustomer) {
                    let hint = match self.status {
                        // Two agents resolving at once: the second is told
                        // it is done, not to claim it.
                        S::Resolved => "; nothing to do",
                        _ => "; claim it first",
                    };
                    return Err(refuse("resolve", hint));
                }
                self.status = S::Resolved;
                self.resolved_at = Some(ev.at);
                if playbook.is_some() {
                    self.chosen_playbook = playbook.clone();
                }
            }
            K::Reopened => {
                if self.status != S::Resolved {
                    return Err(refuse("reopen", "; only resolved cases can be reopened"));
                }
                self.status = S::Reopened;
                self.resolved_at = None;
            }
            K::Closed => {
                if self.status != S::Resolved {
                    return Err(refuse("close", "; resolve it first"));
                }
                self.status = S::Closed;
                self.closed_at = Some(ev.at);
            }
            K::PriorityChanged { priority } => self.priority = *priority,
            K::Tagged { tag } => {
                self.tags.insert(tag.clone());
            }
            K::ReplyDrafted { playbook } => self.chosen_playbook = Some(playbook.clone()),
            K::AgentMessage { .. } | K::Reply { .. } => {
                if self.first_response_at.is_none() {
                    self.first_response_at = Some(ev.at);
                }
            }
            K::Note { .. } | K::CustomerMessage { .. } | K::Posted { .. } | K::Sla { .. } => {}
        }
        self.updated_at = ev.at;
        self.events += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::case::NewCase;

    fn opened() -> (Case, Vec<Event>) {
        let ev = Event {
            seq: 0,
            at: Timestamp::from_second(1_700_000_000).unwrap(),
            actor: "test".into(),
            kind: EventKind::Opened(NewCase {
                external_id: "T-1".into(),
                subject: "s".into(),
                body: "b".into(),
                customer: Customer::default(),
                channel: Channel::Chat,
                priority: Priority::P3,
                tags: vec![],
            }),
            reason: None,
        };
        (Case::open(CaseId(7), &ev).unwrap(), vec![ev])
    }

    fn any_kind() -> impl Strategy<Value = EventKind> {
        prop_oneof![
            (proptest::option::of("[a-z-]{3,8}"), 0.0f32..1.0).prop_map(
                |(playbook, confidence)| EventKind::Triaged {
                    playbook,
                    confidence
                }
            ),
            "[a-z]{1,6}".prop_map(|assignee| EventKind::Assigned { assignee }),
            Just(EventKind::Unassigned),
            Just(EventKind::WaitingOnCustomer),
            Just(EventKind::Resumed),
            proptest::option::of("[a-z-]{3,8}")
                .prop_map(|playbook| EventKind::Resolved { playbook }),
            Just(EventKind::Reopened),
            Just(EventKind::Closed),
            (0usize..4).prop_map(|i| EventKind::PriorityChanged {
                priority: Priority::ALL[i]
            }),
            "[a-z]{1,6}".prop_map(|tag| EventKind::Tagged { tag }),
            "[a-z ]{0,10}".prop_map(|text| EventKind::Note { text }),
            "[a-z ]{0,10}".prop_map(|text| EventKind::AgentMessage { text }),
            "[a-z ]{0,10}".prop_map(|text| EventKind::Reply { text }),
        ]
    }

    /// The lifecycle as a table, written independently of `Case::apply`.
    fn allowed(status: Status, kind: &EventKind) -> bool {
        use EventKind as K;
        use Status as S;
        if status == S::Closed {
            return false;
        }
        match kind {
            K::Opened(_) => false,
            K::Triaged { .. } => status == S::New,
            K::Assigned { .. } => matches!(
                status,
                S::New | S::Triaged | S::Assigned | S::Reopened | S::WaitingOnCustomer
            ),
            K::Unassigned => status == S::Assigned,
            K::WaitingOnCustomer => status == S::Assigned,
            K::Resumed => status == S::WaitingOnCustomer,
            K::Resolved { .. } => matches!(status, S::Assigned | S::WaitingOnCustomer),
            K::Reopened => status == S::Resolved,
            K::Closed => status == S::Resolved,
            _ => true,
        }
    }

    fn check_invariants(c: &Case) {
        match c.status {
            Status::Assigned | Status::WaitingOnCustomer => assert!(c.assignee.is_some(), "{c:?}"),
            Status::New | Status::Triaged => assert!(c.assignee.is_none(), "{c:?}"),
            _ => {}
        }
        assert_eq!(
            c.resolved_at.is_some(),
            matches!(c.status, Status::Resolved | Status::Closed),
            "{c:?}"
        );
        assert_eq!(c.closed_at.is_some(), c.status == Status::Closed);
        assert!(c.first_response_at.is_none_or(|t| t >= c.created_at));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Random command sequences never reach an inconsistent state; every
        /// refusal names the case and its status and changes nothing; and
        /// replaying the accepted events rebuilds the same case.
        #[test]
        fn lifecycle_stays_consistent(kinds in proptest::collection::vec(any_kind(), 0..60)) {
            let (mut case, mut history) = opened();
            for (i, kind) in kinds.into_iter().enumerate() {
                let ev = Event {
                    seq: case.events,
                    at: Timestamp::from_second(1_700_000_000 + i as i64 + 1).unwrap(),
                    actor: "a".into(),
                    kind,
                    reason: None,
                };
                let before = case.clone();
                let expect_ok = allowed(case.status, &ev.kind);
                match case.apply(&ev) {
                    Ok(()) => {
                        prop_assert!(expect_ok, "{:?} accepted in {}", ev.kind, before.status);
                        prop_assert_eq!(case.events, before.events + 1);
                        history.push(ev);
                    }
                    Err(e) => {
                        prop_assert!(!expect_ok, "{:?} refused in {}: {}", ev.kind, before.status, e);
                        prop_assert_eq!(&case, &before);
                        let msg = e.to_string();
                        prop_assert!(msg.contains("C-7") && msg.contains(before.status.as_str()), "{}", msg);
                        prop_assert!(msg.starts_with("cannot "), "{}", msg);
                    }
                }
                check_invariants(&case);
            }
            prop_assert_eq!(Case::replay(CaseId(7), &history).unwrap(), case);
        }
    }

    #[test]
    fn refusal_reads_well() {
        let (mut case, _) = opened();
        let ev = Event {
            seq: 1,
            at: Timestamp::from_second(1_700_000_001).unwrap(),
            actor: "a".into(),
            kind: EventKind::Resolved { playbook: None },
            reason: None,
        };
        assert_eq!(
            case.apply(&ev).unwrap_err().to_string(),
            "cannot resolve C-7: it is new; claim it first"
        );
        // Once resolved, resolving again or waiting is not a matter of
        // claiming it.
        let at = |s| Timestamp::from_second(1_700_000_000 + s).unwrap();
        let kind = EventKind::Assigned {
            assignee: "a".into(),
        };
        for (i, kind) in [kind, ev.kind.clone()].into_iter().enumerate() {
            let ev = Event {
                seq: i as u32 + 1,
                at: at(i as i64 + 1),
                kind,
                ..ev.clone()
            };
            case.apply(&ev).unwrap();
        }
        let again = |kind| Event {
            seq: 3,
            at: at(3),
            kind,
            ..ev.clone()
        };
        assert_eq!(
            case.apply(&again(ev.kind.clone())).unwrap_err().to_string(),
            "cannot resolve C-7: it is resolved; nothing to do"
        );
        assert_eq!(
            case.apply(&again(EventKind::WaitingOnCustomer))
                .unwrap_err()
                .to_string(),
            "cannot wait on the customer for C-7: it is resolved; reopen it first"
        );
    }

    #[test]
    fn ids_parse_in_friendly_forms() {
        for s in ["C-1042", "c-1042", "#1042", "1042"] {
            assert_eq!(s.parse::<CaseId>().unwrap(), CaseId(1042));
        }
        assert!("C-".parse::<CaseId>().is_err());
        assert!("0".parse::<CaseId>().is_err());
        assert_eq!(
            "waiting".parse::<Status>().unwrap(),
            Status::WaitingOnCustomer
        );
    }
}
