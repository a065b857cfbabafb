//! An in-memory platform for tests: records what the bot sends and can be
//! told to rate-limit or fail, like a real chat server would.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use super::{BoxFuture, Platform, SendError};
use crate::message::{Action, Outgoing};

/// One delivered message, as the fake server stored it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub id: String,
    pub room: String,
    pub text: String,
    pub thread_root: Option<String>,
    pub mentions: Vec<String>,
    pub txn_id: String,
    /// Set when this was a removal of an earlier message.
    pub redacts: Option<String>,
    /// The actions (buttons) shown with it.
    pub actions: Vec<Action>,
    /// Only this user was meant to see it.
    pub private_to: Option<String>,
}

/// One edit of an earlier message, as the fake server applied it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    /// The edited message's id.
    pub target: String,
    pub room: String,
    pub text: String,
    pub actions: Vec<Action>,
    pub txn_id: String,
}

/// A fake chat server. Like Matrix, it deduplicates by transaction id: a
/// retried send with the same `txn_id` returns the first message's id.
#[derive(Debug, Default)]
pub struct FakePlatform {
    /// Guarded by a `std::sync::Mutex`: held only to push or read, never
    /// across an `.await`.
    state: Mutex<FakeState>,
}

#[derive(Debug, Default)]
struct FakeState {
    sent: Vec<Sent>,
    edits: Vec<Edit>,
    by_txn: HashMap<String, String>,
    /// Scripted answers per room, used before delivering.
    failures: HashMap<String, VecDeque<SendError>>,
    /// Every send attempt, including refused ones: (room, txn id, refused?).
    attempts: Vec<(String, String, bool)>,
    /// The playbook ids of each reload it was told about.
    playbooks: Vec<Vec<String>>,
}

impl FakePlatform {
    pub fn new() -> FakePlatform {
        FakePlatform::default()
    }

    /// The next `n` sends to `room` fail with `err` (e.g. a 429).
    pub fn fail_next(&self, room: &str, n: usize, err: SendError) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let q = st.failures.entry(room.to_owned()).or_default();
        q.extend(std::iter::repeat_n(err, n));
    }

    /// The next `n` sends to `room` answer 429 with `Retry-After`.
    pub fn rate_limit_next(&self, room: &str, n: usize, retry_after: Duration) {
        self.fail_next(room, n, SendError::RateLimited(retry_after));
    }

    /// Everything delivered so far, in delivery order.
    pub fn sent(&self) -> Vec<Sent> {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .sent
            .clone()
    }

    /// Every edit so far, in order.
    pub fn edits(&self) -> Vec<Edit> {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .edits
            .clone()
    }

    /// The edits of message `target`, in order.
    pub fn edits_of(&self, target: &str) -> Vec<Edit> {
        self.edits()
            .into_iter()
            .filter(|e| e.target == target)
            .collect()
    }

    /// The message `id` as it reads now: its text after the latest edit.
    pub fn current_text(&self, id: &str) -> Option<String> {
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.edits
            .iter()
            .rev()
            .find(|e| e.target == id)
            .map(|e| e.text.clone())
            .or_else(|| st.sent.iter().find(|m| m.id == id).map(|m| m.text.clone()))
    }

    /// Every attempt: (room, txn id, refused).
    pub fn attempts(&self) -> Vec<(String, String, bool)> {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .attempts
            .clone()
    }

    /// The playbook ids of each reload the bot told it about, in order.
    pub fn playbook_reloads(&self) -> Vec<Vec<String>> {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .playbooks
            .clone()
    }
}

impl Platform for FakePlatform {
    fn name(&self) -> &'static str {
        "fake"
    }

    fn playbooks_changed(&self, ids: Vec<String>) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.playbooks.push(ids);
    }

    fn send<'a>(
        &'a self,
        msg: &'a Outgoing,
        thread_root: Option<&'a str>,
        txn_id: &'a str,
    ) -> BoxFuture<'a, Result<String, SendError>> {
        Box::pin(async move {
            let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(err) = st.failures.get_mut(&msg.room).and_then(|q| q.pop_front()) {
                st.attempts
                    .push((msg.room.clone(), txn_id.to_owned(), true));
                return Err(err);
            }
            st.attempts
                .push((msg.room.clone(), txn_id.to_owned(), false));
            if let Some(id) = st.by_txn.get(txn_id) {
                return Ok(id.clone());
            }
            let id = format!("$fake{}", st.sent.len() + 1);
            st.by_txn.insert(txn_id.to_owned(), id.clone());
            st.sent.push(Sent {
                id: id.clone(),
                room: msg.room.clone(),
                text: msg.text.clone(),
                thread_root: thread_root.map(str::to_owned),
                mentions: msg.mentions.clone(),
                txn_id: txn_id.to_owned(),
                redacts: msg.redacts.clone(),
                actions: msg.actions.clone(),
                private_to: msg.private_to.clone(),
            });
            Ok(id)
        })
    }

    fn edit<'a>(
        &'a self,
        msg: &'a Outgoing,
        target: &'a str,
        txn_id: &'a str,
    ) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async move {
            let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(err) = st.failures.get_mut(&msg.room).and_then(|q| q.pop_front()) {
                st.attempts
                    .push((msg.room.clone(), txn_id.to_owned(), true));
                return Err(err);
            }
            st.attempts
                .push((msg.room.clone(), txn_id.to_owned(), false));
            if !st.sent.iter().any(|m| m.id == target) {
                return Err(SendError::Permanent(format!("no message {target} to edit")));
            }
            st.edits.push(Edit {
                target: target.to_owned(),
                room: msg.room.clone(),
                text: msg.text.clone(),
                actions: msg.actions.clone(),
                txn_id: txn_id.to_owned(),
            });
            Ok(())
        })
    }

    fn remove<'a>(
        &'a self,
        room: &'a str,
        target: &'a str,
        reason: &'a str,
        txn_id: &'a str,
    ) -> BoxFuture<'a, Result<String, SendError>> {
        let mut msg = Outgoing::redaction(room, target, reason);
        msg.what = "redaction".into();
        Box::pin(async move { self.send(&msg, None, txn_id).await })
    }
}
