//! The SLA engine: a timer per case, the task that fires them, and what
//! firing writes.
//!
//! Every case with something ahead (a warning, a breach, an escalation
//! step, a reminder) has exactly one entry in an ordered timer set, keyed by
//! the earliest of those instants. One task sleeps until the first entry is
//! due (on the injected [`Clock`]) — no polling — and then *fires* the case:
//! it re-reads the case's history, [`plan`]s what is due, and writes the
//! `sla` events and the messages that announce them in one atomic store
//! commit. Because what fired is in the history, the next plan no longer
//! contains it: nothing fires twice, before or after a restart, and a
//! deadline that passed while the bot was down is due at start and fires
//! once, right away.
//!
//! After any change to a case the bot calls [`Sla::touch`], which re-plans
//! that case and moves its timer. Read-plan-commit for one case is
//! serialized by a striped lock, so a touch, an `ack` and a firing timer
//! never act on the same stale history.
//!
//! At start the engine loads every open case, plus every case listed in the
//! store's SLA due index (`Store::set_due`), where it keeps one entry per
//! open alert, keyed by the time the alert opened. An open case's plan (its
//! next instant and targets) is persisted whenever it is made
//! (`Store::put_sla_plan`), tagged with the number of events it was made
//! from; at start a plan whose number matches the case's (kept in the
//! store's status index, written with every change) and that was made
//! under the same SLA settings is armed as it is, so a restart reads no
//! histories except of cases with open alerts or stale plans. A plan only
//! says when to look again: firing re-reads the history, so a stale or lost
//! plan can make a case be looked at early, never fire twice. That is how an alert
//! whose case was resolved while the bot was down still gets closed. Alert
//! numbers come from a counter persisted in blocks: a crash may skip a few
//! numbers, but never reuses one.

use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::clock::Clock;
use super::plan::{Action, Plan, Risk, Settings, TargetSla, plan};
use super::render::{self, MetTable, Paged};
use super::timeline::{AlertId, End, Target, Timeline};
use crate::case::{CaseId, Event, EventKind};
use crate::config::PageTarget;
use crate::message::{self, ActionKind, ActionStyle, Outgoing, ThreadRef, root_key};
use crate::outbox::Outbox;
use crate::store::{Settler, SlaOutcome, Store};

/// How many cases fire at once (blocking threads, mostly parked waiting for
/// a disk flush). Many concurrent firings share each flush of the store's
/// group commit: in `benches/sla.rs` a burst of 1,000 breaches due at one
/// instant is written with p99 lateness ~0.5-0.7 s at 128, ~1 s at 32.
const FIRE_CONCURRENCY: usize = 128;
/// Number of per-case locks (cases share a stripe by number).
const STRIPES: usize = 256;
/// Store state key of the alert-number high-water mark: every number
/// below it may have been used.
const ALERT_HW_KEY: &str = "sla:alert_hw";
/// Alert numbers are reserved (persisted) this many at a time.
const ALERT_BLOCK: u64 = 16;
/// Store state key of the fingerprint of the SLA settings the persisted
/// plans were made under.
const PLANS_SETTINGS_KEY: &str = "sla:plans_settings";
/// When writing a firing fails (disk trouble), try again after this.
const RETRY: SignedDuration = SignedDuration::from_secs(5);

/// The SLA engine. Cheap to clone; clones share state.
#[derive(Clone)]
pub struct Sla {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Sla {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sla").finish_non_exhaustive()
    }
}

struct Shared {
    settings: Settings,
    store: Store,
    outbox: Outbox,
    clock: Clock,
    /// Timers and per-case summaries. A `std::sync::Mutex`: it guards
    /// in-memory maps only and is never held across I/O or an `.await`.
    state: Mutex<State>,
    /// Serializes read-plan-commit per case, so a firing timer, a touch and
    /// an `ack` never act on the same stale history. Striped to bound memory;
    /// held across a store commit, which is why these are not the `state` lock.
    stripes: Box<[Mutex<()>]>,
    /// The alert counter. Held while a new block of numbers is persisted,
    /// once every [`ALERT_BLOCK`] alerts.
    numbers: Mutex<AlertNumbers>,
    /// Wakes the scheduler when a timer was added or moved.
    wake: Notify,
    /// Signalled whenever a firing finishes (for [`Sla::idle`]).
    progress: Notify,
}

#[derive(Default)]
struct State {
    cases: HashMap<CaseId, CaseSla>,
    /// One entry per case with something ahead: (when, case).
    timers: BTreeSet<(Timestamp, CaseId)>,
    /// Open alerts and their cases.
    alerts: BTreeMap<AlertId, CaseId>,
    /// Firings dispatched and not finished.
    in_flight: usize,
    /// Whether the start-up load finished.
    loaded: bool,
    /// How many cases the start-up load planned from their histories (the
    /// others were armed from their persisted plans).
    replayed: usize,
}

/// What the engine keeps in memory per case.
#[derive(Debug, Clone)]
struct CaseSla {
    next: Option<Timestamp>,
    targets: Box<[TargetSla]>,
    /// The number of the case's events the plan was made from: while the
    /// store's open-case index says the same, the plan is current.
    events: u32,
    /// Its worst risk over time, kept beside the targets so `queue` reads
    /// no target of 100k cases to find it ([`Sla::risks`]).
    worst: WorstRisk,
}

/// When a case's worst target is breached and at risk
/// (`Timestamp::MAX`: never): the maximum of [`TargetSla::risk`] over its
/// active targets, as two instants.
#[derive(Debug, Clone, Copy)]
struct WorstRisk {
    breached_at: Timestamp,
    at_risk_at: Timestamp,
}

impl WorstRisk {
    fn of(targets: &[TargetSla]) -> WorstRisk {
        let never = Timestamp::MAX;
        targets
            .iter()
            .filter(|t| t.due.is_some() || t.paused_left.is_some())
            .fold(
                WorstRisk {
                    breached_at: never,
                    at_risk_at: never,
                },
                |w, t| WorstRisk {
                    breached_at: w.breached_at.min(t.due.unwrap_or(never)),
                    at_risk_at: w.at_risk_at.min(t.risk_at.unwrap_or(never)),
                },
            )
    }

    fn at(self, now: Timestamp) -> Risk {
        if self.breached_at <= now {
            Risk::Breached
        } else if self.at_risk_at <= now {
            Risk::AtRisk
        } else {
            Risk::Ok
        }
    }
}

/// The next alert number, and the first number not yet reserved in the
/// store.
#[derive(Debug, Default)]
struct AlertNumbers {
    next: u64,
    reserved: u64,
}

/// What `ack` and `snooze` ask of an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertCommand {
    Ack,
    Snooze(SignedDuration),
}

/// Which rows `sla` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportFilter {
    All,
    AtRisk,
    Breached,
}

/// Effects of firing one case: events for its history, messages, and the
/// alerts it opens and closes.
#[derive(Default)]
struct Effects {
    events: Vec<(EventKind, Option<String>)>,
    out: Vec<Outgoing>,
    /// Whether this firing opens alerts (all opened at the firing's time,
    /// so they share one due-index entry).
    opened: bool,
    /// When each alert this firing closes was opened (its due-index key).
    closed: Vec<Timestamp>,
}

impl Sla {
    pub fn new(settings: Settings, store: Store, outbox: Outbox, clock: Clock) -> Sla {
        store.set_settler(settler(settings.clone()));
        Sla {
            shared: Arc::new(Shared {
                settings,
                store,
                outbox,
                clock,
                state: Mutex::new(State::default()),
                stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
                numbers: Mutex::new(AlertNumbers::default()),
                wake: Notify::new(),
                progress: Notify::new(),
            }),
        }
    }

    pub fn clock(&self) -> &Clock {
        &self.shared.clock
    }

    pub fn settings(&self) -> &Settings {
        &self.shared.settings
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn stripe(&self, id: CaseId) -> MutexGuard<'_, ()> {
        self.shared.stripes[(id.0 as usize) % STRIPES]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// How many cases the start-up load had to plan from their histories
    /// (`None` before it finished); the rest were armed from the plans
    /// persisted with them, which is what keeps a restart fast.
    pub fn replayed_at_start(&self) -> Option<usize> {
        let st = self.state();
        st.loaded.then_some(st.replayed)
    }

    /// Re-plans a case after it changed. Never fails: a problem is logged,
    /// and the next change or restart plans the case again.
    pub fn touch(&self, id: CaseId) {
        let _g = self.stripe(id);
        if let Err(e) = self.refresh(id) {
            tracing::warn!(case = %id, "SLA re-plan failed: {e:#}");
        }
    }

    /// Plans a case just opened from the events it was opened with,
    /// without reading them back (read after all if the case changed
    /// meanwhile).
    pub fn touch_opened(&self, id: CaseId, events: &[Event]) {
        let _g = self.stripe(id);
        let current = u32::try_from(events.len())
            .is_ok_and(|n| self.shared.store.open_case_event_count(id) == Some(n));
        let planned = if current {
            self.plan_from(id, events)
        } else {
            self.refresh(id)
        };
        if let Err(e) = planned {
            tracing::warn!(case = %id, "SLA plan failed: {e:#}");
        }
    }

    /// Reads, plans and installs one case; the caller holds its stripe.
    fn refresh(&self, id: CaseId) -> anyhow::Result<Option<Timeline>> {
        let events = self.shared.store.events(id)?;
        self.plan_from(id, &events)
    }

    /// Plans and installs one case from its whole history; the caller
    /// holds its stripe.
    fn plan_from(&self, id: CaseId, events: &[Event]) -> anyhow::Result<Option<Timeline>> {
        if events.is_empty() {
            self.install(id, &Plan::default(), 0);
            self.shared.store.put_sla_plan(id, None)?;
            return Ok(None);
        }
        let tl = Timeline::build(id, events).map_err(anyhow::Error::msg)?;
        let p = plan(&tl, &self.shared.settings, self.shared.clock.now());
        self.install(id, &p, events.len());
        self.persist(&tl, events.len(), &p)?;
        Ok(Some(tl))
    }

    /// Persists an open case's plan (see the module docs); removes it for
    /// a case that is no longer open.
    fn persist(&self, tl: &Timeline, events: usize, p: &Plan) -> anyhow::Result<()> {
        let id = tl.case.id;
        if tl.case.status.is_open() {
            let bytes = encode_plan(events as u32, p, tl);
            self.shared.store.put_sla_plan(id, Some(&bytes))?;
        } else {
            self.shared.store.put_sla_plan(id, None)?;
        }
        Ok(())
    }

    /// A fingerprint of the settings plans depend on.
    fn settings_fingerprint(&self) -> String {
        use sha2::Digest as _;
        let s = &self.shared.settings;
        let text = format!("{:?}\n{:?}", s.sla, s.oncall.escalations);
        hex::encode(&sha2::Sha256::digest(text.as_bytes())[..16])
    }

    /// Replaces a case's timer and summary.
    fn install(&self, id: CaseId, p: &Plan, events: usize) {
        let mut st = self.state();
        let earlier = {
            if let Some(old) = st.cases.remove(&id) {
                if let Some(t) = old.next {
                    st.timers.remove(&(t, id));
                }
                for (a, _) in old.targets.iter().filter_map(|t| t.alert) {
                    st.alerts.remove(&a);
                }
            }
            if p.next.is_none() && p.targets.is_empty() {
                return;
            }
            for (a, _) in p.targets.iter().filter_map(|t| t.alert) {
                st.alerts.insert(a, id);
            }
            let first = st.timers.first().map(|(t, _)| *t);
            if let Some(t) = p.next {
                st.timers.insert((t, id));
            }
            st.cases.insert(
                id,
                CaseSla {
                    next: p.next,
                    targets: p.targets.clone().into_boxed_slice(),
                    events: u32::try_from(events).unwrap_or(u32::MAX),
                    worst: WorstRisk::of(&p.targets),
                },
            );
            p.next.is_some_and(|t| first.is_none_or(|f| t < f))
        };
        drop(st);
        if earlier {
            self.shared.wake.notify_one();
        }
    }

    /// Loads every open case (and every case with an open alert) and plans
    /// it. Deadlines that passed meanwhile are due at once.
    pub fn load(&self) -> anyhow::Result<usize> {
        let store = &self.shared.store;
        let hw = match store.get_state(ALERT_HW_KEY)? {
            Some(v) => String::from_utf8_lossy(&v).parse::<u64>().unwrap_or(1),
            None => 1,
        };
        let mut indexed: BTreeMap<CaseId, Vec<Timestamp>> = BTreeMap::new();
        for (t, id) in store.due_before(Timestamp::MAX)? {
            indexed.entry(id).or_default().push(t);
        }
        let open = store.open_case_events()?;
        // Persisted plans, when made under these settings.
        let fingerprint = self.settings_fingerprint();
        let same_settings = store
            .get_state(PLANS_SETTINGS_KEY)?
            .is_some_and(|v| v == fingerprint.as_bytes());
        let mut plans: HashMap<CaseId, Vec<u8>> = HashMap::new();
        if same_settings {
            for kv in store.sla_plans() {
                let (id, v) = kv?;
                plans.insert(id, v);
            }
        }
        let mut ids: BTreeSet<CaseId> = BTreeSet::new();
        let mut armed = 0usize;
        let mut max_alert = 0;
        for (id, events) in open {
            // Current, and its open alerts are exactly the ones the due
            // index lists for the case (a crash between an alert's write
            // and its index entry leaves them apart: then it is replayed).
            let current = plans.remove(&id).and_then(|v| decode_plan(&v)).filter(|p| {
                Some(p.events) == events
                    && p.alerts_opened.as_ref().is_some_and(|opened| {
                        let ms = |v: &[Timestamp]| {
                            let mut v: Vec<i64> = v.iter().map(|t| t.as_millisecond()).collect();
                            v.sort_unstable();
                            v
                        };
                        ms(opened) == ms(indexed.get(&id).map_or(&[][..], Vec::as_slice))
                    })
            });
            match current {
                Some(p) => {
                    indexed.remove(&id);
                    max_alert = p
                        .plan
                        .targets
                        .iter()
                        .filter_map(|t| t.alert)
                        .map(|(a, _)| a.0)
                        .fold(max_alert, u64::max);
                    self.install(id, &p.plan, p.events as usize);
                    armed += 1;
                }
                None => {
                    ids.insert(id);
                }
            }
        }
        drop(plans);
        tracing::info!(
            from_plans = armed,
            replayed = ids.len(),
            "SLA: open cases armed from persisted plans; the rest replay their histories"
        );
        ids.extend(indexed.keys().copied());
        for id in &ids {
            let _g = self.stripe(*id);
            let tl = match self.refresh(*id) {
                Ok(tl) => tl,
                Err(e) => {
                    tracing::warn!(case = %id, "SLA: cannot plan: {e:#}");
                    continue;
                }
            };
            let open: Vec<Timestamp> = tl
                .iter()
                .flat_map(|tl| tl.alerts())
                .filter(|(_, a)| a.is_open())
                .map(|(_, a)| a.opened)
                .collect();
            max_alert = tl
                .iter()
                .flat_map(|tl| tl.alerts())
                .map(|(_, a)| a.id.0)
                .fold(max_alert, u64::max);
            // Make the index list exactly the open alerts (a crash between
            // an alert's commit and its index write leaves them apart).
            let ms = |t: &Timestamp| t.as_millisecond();
            let have = indexed.remove(id).unwrap_or_default();
            for t in have.iter().filter(|t| !open.iter().any(|o| ms(o) == ms(t))) {
                store.set_due(*id, Some(*t), None)?;
            }
            for t in open.iter().filter(|o| !have.iter().any(|t| ms(o) == ms(t))) {
                store.set_due(*id, None, Some(*t))?;
            }
        }
        if !same_settings {
            // Every open case was re-planned (and its plan persisted) above.
            store.put_state(PLANS_SETTINGS_KEY, fingerprint.as_bytes())?;
        }
        let next = hw.max(max_alert + 1).max(1);
        *self
            .shared
            .numbers
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = AlertNumbers {
            next,
            reserved: next,
        };
        let mut st = self.state();
        st.loaded = true;
        st.replayed = ids.len();
        let n = st.cases.len();
        drop(st);
        self.shared.wake.notify_one();
        self.shared.progress.notify_waiters();
        Ok(n)
    }

    /// Starts the scheduler: loads the cases, then fires timers as they
    /// fall due until `shutdown`.
    pub fn spawn(&self, shutdown: CancellationToken, tracker: &TaskTracker) {
        let sla = self.clone();
        let tracker2 = tracker.clone();
        tracker.spawn(async move {
            let s = sla.clone();
            let started = std::time::Instant::now();
            match tokio::task::spawn_blocking(move || s.load()).await {
                Ok(Ok(n)) => {
                    tracing::info!(cases = n, took = ?started.elapsed(), "SLA timers loaded");
                    // Start-up is over: hand its freed buffers back.
                    crate::memory::trim();
                }
                Ok(Err(e)) => tracing::error!("SLA timers could not be loaded: {e:#}"),
                Err(e) => tracing::error!("SLA load panicked: {e}"),
            }
            {
                // Even after a failed load, keep serving what touches add.
                sla.state().loaded = true;
            }
            sla.run(shutdown, tracker2).await;
        });
    }

    async fn run(&self, shutdown: CancellationToken, tracker: TaskTracker) {
        let permits = Arc::new(Semaphore::new(FIRE_CONCURRENCY));
        'run: loop {
            let now = self.shared.clock.now();
            let due = self.take_due(now);
            for id in due {
                let permit = tokio::select! {
                    _ = shutdown.cancelled() => break 'run,
                    p = permits.clone().acquire_owned() => p.expect("semaphore is never closed"),
                };
                let sla = self.clone();
                tracker.spawn_blocking(move || {
                    sla.fire(id);
                    drop(permit);
                    sla.state().in_flight -= 1;
                    sla.shared.progress.notify_waiters();
                });
            }
            let next = self.state().timers.first().map(|(t, _)| *t);
            let clock = self.shared.clock.clone();
            tokio::select! {
                _ = shutdown.cancelled() => break 'run,
                _ = self.shared.wake.notified() => {}
                _ = async move {
                    match next {
                        Some(t) => clock.sleep_until(t).await,
                        None => std::future::pending().await,
                    }
                } => {}
            }
        }
        if let Err(e) = self.release_numbers() {
            tracing::warn!("SLA: could not save the alert counter: {e:#}");
        }
    }

    /// Persists the alert counter exactly, giving back the unused part of
    /// the reserved block, so a clean restart continues without a gap. Safe
    /// while firings still run: the next number handed out reserves again.
    fn release_numbers(&self) -> anyhow::Result<()> {
        let mut n = self
            .shared
            .numbers
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if n.next > 0 && n.reserved > n.next {
            self.shared
                .store
                .put_state(ALERT_HW_KEY, n.next.to_string().as_bytes())?;
            n.reserved = n.next;
        }
        Ok(())
    }

    /// Removes the timers due by `now` and counts them in flight.
    fn take_due(&self, now: Timestamp) -> Vec<CaseId> {
        let mut st = self.state();
        let mut due = Vec::new();
        while let Some(&(t, id)) = st.timers.first() {
            if t > now {
                break;
            }
            st.timers.pop_first();
            if let Some(c) = st.cases.get_mut(&id) {
                c.next = None;
            }
            due.push(id);
        }
        st.in_flight += due.len();
        due
    }

    /// Waits until the engine has loaded, nothing is firing and no timer is
    /// due on its clock. Tests call this after moving a manual clock.
    pub async fn idle(&self) {
        loop {
            let notified = self.shared.progress.notified();
            {
                let now = self.shared.clock.now();
                let st = self.state();
                if st.loaded && st.in_flight == 0 && st.timers.first().is_none_or(|(t, _)| *t > now)
                {
                    return;
                }
            }
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep(Duration::from_millis(10)) => {}
            }
        }
    }

    /// Fires one case: writes what is due and re-plans it.
    fn fire(&self, id: CaseId) {
        let _g = self.stripe(id);
        if let Err(e) = self.fire_locked(id) {
            tracing::error!(case = %id, "SLA: firing failed, retrying in {RETRY}: {e:#}");
            let at = self.shared.clock.now() + RETRY;
            let mut st = self.state();
            if let Some(c) = st.cases.get_mut(&id) {
                if let Some(old) = c.next.replace(at) {
                    st.timers.remove(&(old, id));
                }
                st.timers.insert((at, id));
            }
        }
    }

    fn fire_locked(&self, id: CaseId) -> anyhow::Result<()> {
        let now = self.shared.clock.now();
        let events = self.shared.store.events(id)?;
        if events.is_empty() {
            self.install(id, &Plan::default(), 0);
            return Ok(());
        }
        let tl = Timeline::build(id, &events).map_err(anyhow::Error::msg)?;
        let p = plan(&tl, &self.shared.settings, now);
        if p.actions.is_empty() {
            self.install(id, &p, events.len());
            self.persist(&tl, events.len(), &p)?;
            return Ok(());
        }
        let mut fx = self.effects(&tl, &p.actions, now)?;
        tracing::info!(case = %id, actions = ?p.actions, "SLA fired");
        let store = &self.shared.store;
        if !fx.events.is_empty() {
            // The card shows the SLA state: warnings and breaches change it.
            fx.out.push(Outgoing::card(
                self.shared.settings.team_room.clone(),
                id,
                true,
            ));
        }
        store.commit(Some(id), "bot", now, fx.events, fx.out, None)?;
        self.shared.outbox.wake();
        let tl = self.refresh(id)?;
        // The due index lists open alerts by their opening time; it is
        // written after the commit (if this write is lost, the case is
        // still open and start-up re-creates the entry). An entry stays
        // while another open alert shares its time.
        let ms = |t: &Timestamp| t.as_millisecond();
        let still: Vec<i64> = tl
            .iter()
            .flat_map(|tl| tl.alerts())
            .filter(|(_, a)| a.is_open())
            .map(|(_, a)| ms(&a.opened))
            .collect();
        if fx.opened {
            store.set_due(id, None, Some(now))?;
        }
        for opened in fx.closed {
            if !still.contains(&ms(&opened)) {
                store.set_due(id, Some(opened), None)?;
            }
        }
        Ok(())
    }

    /// Numbers a new alert. Numbers are persisted a block at a time, before
    /// any of them is used, so a restart never hands one out twice.
    fn next_alert(&self) -> anyhow::Result<AlertId> {
        let mut n = self
            .shared
            .numbers
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let id = n.next.max(1);
        if id >= n.reserved {
            let reserved = id + ALERT_BLOCK;
            self.shared
                .store
                .put_state(ALERT_HW_KEY, reserved.to_string().as_bytes())?;
            n.reserved = reserved;
        }
        n.next = id + 1;
        Ok(AlertId(id))
    }

    /// Turns due actions into history events and messages.
    fn effects(
        &self,
        tl: &Timeline,
        actions: &[Action],
        now: Timestamp,
    ) -> anyhow::Result<Effects> {
        let s = &self.shared.settings;
        let tz = s.display_tz();
        let case = &tl.case;
        let policy = s.policy(case.priority);
        let esc = policy.and_then(|p| p.escalation);
        let steps = esc.map_or(0, |e| e.steps.len());
        let thread = || {
            Outgoing::new(s.team_room.clone(), String::new())
                .in_thread(Some(ThreadRef::Key(root_key(case.id))))
                .about(case.id, "sla")
                .mention(case.assignee.clone())
        };
        let oncall = |text: String, paged: Option<&Paged>| {
            let mut m = Outgoing::new(s.oncall_room.clone(), text).about(case.id, "alert");
            if let Some(p) = paged {
                m = m.mention(p.mentions.clone());
            }
            m
        };
        let ev = |target: Target, what: String, reason: Option<String>| {
            (
                EventKind::Sla {
                    target: target.as_str().to_owned(),
                    what,
                },
                reason,
            )
        };
        let mut fx = Effects::default();
        for action in actions {
            match action {
                Action::Warn { run, label, due } => {
                    let target = tl.runs[*run].target;
                    fx.events.push(ev(
                        target,
                        format!("warning {label}"),
                        Some(format!("due {due}")),
                    ));
                    let mut m = thread();
                    m.text = render::warning(case, target, label, *due, now, &tz);
                    fx.out.push(m);
                }
                Action::Breach { run, due } => {
                    let target = tl.runs[*run].target;
                    let alert = self.next_alert()?;
                    fx.opened = true;
                    fx.events
                        .push(ev(target, "breached".into(), Some(format!("due {due}"))));
                    fx.events
                        .push(ev(target, format!("alert {alert} opened"), None));
                    let mut note = thread();
                    note.text = render::breach_note(case, target, *due, alert, &tz);
                    fx.out.push(note);
                    let first = esc.and_then(|e| e.steps.first());
                    let (paged, later) = match first {
                        Some(step) if step.delay <= SignedDuration::ZERO => {
                            let p = self.page_target(&step.target, now);
                            fx.events.push(ev(
                                target,
                                format!("alert {alert} paged step 1 round 1"),
                                Some(format!("paged {}", p.who)),
                            ));
                            (Some(p), None)
                        }
                        Some(step) => (None, Some(step.delay)),
                        None => (None, None),
                    };
                    let about = render::About {
                        case,
                        target,
                        alert,
                    };
                    let first = paged.as_ref().map(|p| (p, steps));
                    let text = render::alert(about, *due, now, first, later, &tz);
                    let msg = oncall(text, paged.as_ref()).with_actions(alert_actions(alert));
                    fx.out.extend(self.page_messages(msg, paged.as_ref()));
                }
                Action::Page {
                    run,
                    alert,
                    step,
                    round,
                } => {
                    let r = &tl.runs[*run];
                    let Some(st) = esc.and_then(|e| e.steps.get(*step as usize - 1)) else {
                        continue;
                    };
                    let p = self.page_target(&st.target, now);
                    fx.events.push(ev(
                        r.target,
                        format!("alert {alert} paged step {step} round {round}"),
                        Some(format!("paged {}", p.who)),
                    ));
                    let since = r
                        .breached
                        .map_or(SignedDuration::ZERO, |b| now.duration_since(b));
                    let about = render::About {
                        case,
                        target: r.target,
                        alert: *alert,
                    };
                    let text = render::page(about, &p, (*step, steps, *round), since);
                    let msg = oncall(text, Some(&p)).with_actions(alert_actions(*alert));
                    fx.out.extend(self.page_messages(msg, Some(&p)));
                }
                Action::Remind { run, alert } => {
                    let r = &tl.runs[*run];
                    let Some((acker, _)) = r.alert.as_ref().and_then(|a| a.acked.clone()) else {
                        continue;
                    };
                    fx.events
                        .push(ev(r.target, format!("alert {alert} reminder"), None));
                    let over = policy
                        .and_then(|p| p.target(r.target).and_then(|d| r.instant_at(p.counting, d)))
                        .map_or(SignedDuration::ZERO, |due| now.duration_since(due));
                    let text = render::reminder(case, r.target, *alert, &acker, over);
                    fx.out.push(oncall(text, None).mention([acker]));
                }
                Action::Close { run, alert, why } => {
                    let target = tl.runs[*run].target;
                    if let Some(a) = &tl.runs[*run].alert {
                        fx.closed.push(a.opened);
                    }
                    fx.events.push(ev(
                        target,
                        format!("alert {alert} closed"),
                        Some(why.clone()),
                    ));
                    fx.out.push(oncall(render::closed(*alert, why), None));
                }
            }
        }
        Ok(fx)
    }

    /// The alert/page message, plus a copy in the target's own room when a
    /// step pages a room other than the on-call room.
    fn page_messages(&self, msg: Outgoing, paged: Option<&Paged>) -> Vec<Outgoing> {
        let mut out = vec![msg.clone()];
        if let Some(p) = paged
            && p.room != msg.room
        {
            let mut copy = msg;
            copy.room = p.room.clone();
            out.push(copy);
        }
        out
    }

    /// Resolves whom a step pages, now.
    fn page_target(&self, target: &PageTarget, now: Timestamp) -> Paged {
        let s = &self.shared.settings;
        let room = s.oncall_room.clone();
        match target {
            PageTarget::User(u) => Paged {
                room,
                mentions: vec![u.clone()],
                who: u.clone(),
            },
            PageTarget::Rotation(r) => {
                match s
                    .oncall
                    .rotations
                    .get(r)
                    .and_then(|rot| rot.on_call_at(now))
                {
                    Some(u) => Paged {
                        room,
                        mentions: vec![u.to_owned()],
                        who: format!("{u} (on call for {r})"),
                    },
                    None => Paged {
                        room,
                        mentions: vec![],
                        who: format!("nobody: rotation {r} has nobody on call right now"),
                    },
                }
            }
            PageTarget::Room(None) => Paged {
                room,
                mentions: vec![],
                who: "@room — everyone here".into(),
            },
            PageTarget::Room(Some(other)) => Paged {
                room: other.clone(),
                mentions: vec![],
                who: format!("@room in {other}"),
            },
        }
    }

    /// `ack` and `snooze`: records the command on the alert's case, with
    /// `reply` (built from the reply text) and `seen` in the same commit.
    /// Returns a refusal text when the alert cannot take it.
    pub fn alert_command(
        &self,
        alert: AlertId,
        actor: &str,
        cmd: AlertCommand,
        seen: &str,
        reply: impl FnOnce(String) -> Outgoing,
    ) -> anyhow::Result<Result<(), String>> {
        let Some(case) = self.state().alerts.get(&alert).copied() else {
            return Ok(Err(format!(
                "No open alert {alert}. `!oncall` lists the open ones."
            )));
        };
        let _g = self.stripe(case);
        let events = self.shared.store.events(case)?;
        let tl = Timeline::build(case, &events).map_err(anyhow::Error::msg)?;
        let Some((run, log)) = tl.alert(alert) else {
            return Ok(Err(format!("No open alert {alert}.")));
        };
        if !log.is_open() {
            return Ok(Err(format!("{alert} is already closed.")));
        }
        let now = self.shared.clock.now();
        let tz = self.shared.settings.display_tz();
        let esc = self
            .shared
            .settings
            .policy(tl.case.priority)
            .and_then(|p| p.escalation);
        let (what, text, note) = match cmd {
            AlertCommand::Ack => {
                if let Some((who, at)) = &log.acked {
                    return Ok(Err(format!(
                        "{alert} was already acknowledged by {who} at {}.",
                        render::when(*at, &tz)
                    )));
                }
                let remind = esc
                    .and_then(|e| e.remind_every)
                    .map(|d| {
                        format!(
                            " I'll remind {actor} every {} while it stays breached.",
                            crate::view::human(d)
                        )
                    })
                    .unwrap_or_default();
                (
                    format!("alert {alert} acknowledged"),
                    format!(
                        "✅ **{alert}** acknowledged by {actor}: escalation stopped for **{}** ({}).{remind} It closes when the case is no longer breached.",
                        tl.case.id, run.target
                    ),
                    format!("👀 {actor} acknowledged **{alert}** ({}).", run.target),
                )
            }
            AlertCommand::Snooze(d) => {
                let until = now.checked_add(d)?;
                (
                    format!("alert {alert} snoozed until {until}"),
                    format!(
                        "😴 **{alert}** snoozed until {} ({}): no pages or reminders until then.",
                        render::when(until, &tz),
                        crate::view::human(d)
                    ),
                    format!(
                        "😴 {actor} snoozed **{alert}** until {}.",
                        render::when(until, &tz)
                    ),
                )
            }
        };
        let thread = Outgoing::new(self.shared.settings.team_room.clone(), note)
            .in_thread(Some(ThreadRef::Key(root_key(case))))
            .about(case, "sla");
        self.shared.store.commit(
            Some(case),
            actor,
            now,
            vec![(
                EventKind::Sla {
                    target: run.target.as_str().to_owned(),
                    what,
                },
                None,
            )],
            vec![
                reply(text),
                thread,
                Outgoing::card(self.shared.settings.team_room.clone(), case, true),
            ],
            Some(seen),
        )?;
        self.shared.outbox.wake();
        self.refresh(case)?;
        Ok(Ok(()))
    }

    /// Every tracked target at risk or breached now, most urgent first.
    /// Targets at risk or breached: how many of each, and the first
    /// `keep` of each (breached first, earliest due first). Only the kept
    /// rows are copied and sorted, however many cases are open.
    fn rows(&self, now: Timestamp, keep: usize) -> (Vec<(CaseId, TargetSla, Risk)>, [usize; 2]) {
        let order = |id: CaseId, t: &TargetSla, r: Risk| {
            (std::cmp::Reverse(r), t.due.unwrap_or(Timestamp::MAX), id)
        };
        let st = self.state();
        let mut counts = [0usize; 2];
        // The `keep` smallest per kind, in a max-heap by sort order.
        type Key = (std::cmp::Reverse<Risk>, Timestamp, CaseId, usize);
        let mut best: [BinaryHeap<Key>; 2] = [BinaryHeap::new(), BinaryHeap::new()];
        for (id, c) in &st.cases {
            for (i, t) in c.targets.iter().enumerate() {
                if t.due.is_none() && t.paused_left.is_none() {
                    continue;
                }
                let r = t.risk(now);
                let k = match r {
                    Risk::Ok => continue,
                    Risk::Breached => 0,
                    Risk::AtRisk => 1,
                };
                counts[k] += 1;
                let (r, due, id) = order(*id, t, r);
                let key = (r, due, id, i);
                if best[k].len() < keep {
                    best[k].push(key);
                } else if best[k].peek().is_some_and(|top| key < *top) {
                    best[k].pop();
                    best[k].push(key);
                }
            }
        }
        let mut rows: Vec<(CaseId, TargetSla, Risk)> = best
            .into_iter()
            .flat_map(BinaryHeap::into_vec)
            .filter_map(|(r, _, id, i)| {
                let t = st.cases.get(&id)?.targets.get(i)?;
                Some((id, t.clone(), r.0))
            })
            .collect();
        drop(st);
        rows.sort_by_key(|(id, t, r)| order(*id, t, *r));
        (rows, counts)
    }

    /// A case's SLA targets as they stand now (re-planned first when the
    /// case changed since its plan, so a change that was just written
    /// shows), for its card.
    pub fn targets(&self, id: CaseId) -> Vec<TargetSla> {
        let planned = self
            .state()
            .cases
            .get(&id)
            .map(|c| (c.events, c.targets.to_vec()));
        if let Some((events, targets)) = planned
            && self.shared.store.open_case_event_count(id) == Some(events)
        {
            return targets;
        }
        self.touch(id);
        self.state()
            .cases
            .get(&id)
            .map(|c| c.targets.to_vec())
            .unwrap_or_default()
    }

    /// The highest risk of each case that has one, for `queue`.
    pub fn risks(&self) -> HashMap<CaseId, Risk> {
        let now = self.shared.clock.now();
        let st = self.state();
        let mut out: HashMap<CaseId, Risk> = HashMap::new();
        for (id, c) in &st.cases {
            let r = c.worst.at(now);
            if r != Risk::Ok {
                out.insert(*id, r);
            }
        }
        out
    }

    /// The lead's `sla` report.
    pub fn report(&self, filter: ReportFilter) -> anyhow::Result<String> {
        let now = self.shared.clock.now();
        let (rows, counts) = self.rows(now, render::REPORT_ROWS);
        // Priority and assignee of the listed cases (at most 25 of each
        // kind), from the store's open-case index: nothing read from disk.
        let wanted: BTreeSet<CaseId> = [Risk::Breached, Risk::AtRisk]
            .into_iter()
            .flat_map(|k| rows.iter().filter(move |r| r.2 == k).take(25))
            .map(|r| r.0)
            .collect();
        let cases = self.shared.store.open_cases_among(&wanted);
        let show = match filter {
            ReportFilter::All => (true, true),
            ReportFilter::AtRisk => (false, true),
            ReportFilter::Breached => (true, false),
        };
        Ok(render::report(
            &rows,
            counts,
            &cases,
            show,
            now,
            &self.shared.settings.display_tz(),
        ))
    }

    /// `oncall`: who is on call now and next per rotation, and open alerts.
    pub fn oncall_report(&self) -> String {
        use std::fmt::Write as _;
        let now = self.shared.clock.now();
        let s = &self.shared.settings;
        let mut out = format!("📟 **On call** — {}\n", render::when(now, &s.display_tz()));
        if s.oncall.rotations.is_empty() {
            out.push_str("No rotations configured ([oncall.rotations] in the config).\n");
        }
        for (name, r) in &s.oncall.rotations {
            let tz = &r.timezone;
            let who = r.on_call_at(now).unwrap_or("nobody");
            let next = match r.next(now) {
                Some(h) => format!(
                    "next {} from {}",
                    h.user.as_deref().unwrap_or("nobody"),
                    render::when(h.at, tz)
                ),
                None => "no handoff ahead".into(),
            };
            let _ = writeln!(out, "- **{name}**: {who} now · {next}");
        }
        let st = self.state();
        let open: Vec<String> = st
            .alerts
            .iter()
            .map(|(a, c)| {
                let found = st.cases.get(c).and_then(|cs| {
                    cs.targets
                        .iter()
                        .find(|t| t.alert.is_some_and(|(x, _)| x == *a))
                });
                let acked = found.and_then(|t| t.alert).is_some_and(|(_, acked)| acked);
                let target = found.map_or("?", |t| t.target.label());
                format!(
                    "**{a}** {c} {target} ({})",
                    if acked {
                        "acknowledged"
                    } else {
                        "not acknowledged"
                    }
                )
            })
            .collect();
        if open.is_empty() {
            out.push_str("Open alerts: none");
        } else {
            let _ = write!(out, "Open alerts: {}", open.join(" · "));
        }
        out
    }

    /// Number of cases with SLA state in memory, and an estimate of the
    /// bytes it takes (for the benchmark).
    pub fn footprint(&self) -> (usize, usize) {
        let st = self.state();
        let per_case = std::mem::size_of::<(CaseId, CaseSla)>() + 8;
        let targets: usize = st
            .cases
            .values()
            .map(|c| c.targets.len() * std::mem::size_of::<TargetSla>())
            .sum();
        // A B-tree entry costs about its size plus a share of node overhead.
        let timers = st.timers.len() * (std::mem::size_of::<(Timestamp, CaseId)>() * 3 / 2);
        let alerts = st.alerts.len() * std::mem::size_of::<(AlertId, CaseId)>() * 3 / 2;
        let table = st.cases.capacity() * per_case;
        (st.cases.len(), table + targets + timers + alerts)
    }
}

/// How the store judges a case's SLA runs for `stats` (see
/// [`SlaOutcome`]): a run counts as met when it was done before its
/// deadline, as missed once its deadline passed (a breach was recorded, or
/// it ended late); runs still in time and runs stopped short of their
/// target do not count. Judged at each change of the case, with the
/// policy in force then.
pub fn settler(settings: Settings) -> Arc<Settler> {
    Arc::new(move |id: CaseId, events: &[Event]| {
        let Some(now) = events.last().map(|e| e.at) else {
            return Vec::new();
        };
        let Ok(tl) = Timeline::build(id, events) else {
            return Vec::new();
        };
        let Some(p) = settings.policy(tl.case.priority) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for run in &tl.runs {
            let Some(d) = p.target(run.target) else {
                continue;
            };
            let missed =
                run.breached.is_some() || run.instant_at(p.counting, d).is_some_and(|t| t <= now);
            let met = match run.end {
                _ if missed => false,
                Some((_, End::Done)) => true,
                _ => continue,
            };
            out.push(SlaOutcome {
                target: run.target.as_str().to_owned(),
                priority: tl.case.priority,
                met,
            });
        }
        out
    })
}

/// The SLA part of the totals as `stats` shows it.
pub fn met_table(tally: &crate::store::Tally) -> MetTable {
    tally
        .sla
        .iter()
        .filter_map(|((target, priority), (met, n))| {
            let t = target.parse::<Target>().ok()?;
            Some(((t, *priority), (*met as u32, *n as u32)))
        })
        .collect()
}

/// A persisted plan: the number of events it was made from, the next
/// instant and the targets, in a fixed binary layout (~40 bytes a target;
/// read for every open case at start, so no JSON).
fn encode_plan(events: u32, p: &Plan, tl: &Timeline) -> Vec<u8> {
    fn ts(out: &mut Vec<u8>, t: Option<Timestamp>) {
        match t {
            Some(t) => {
                out.push(1);
                out.extend_from_slice(&t.as_second().to_be_bytes());
                out.extend_from_slice(&t.subsec_nanosecond().to_be_bytes());
            }
            None => out.push(0),
        }
    }
    let mut out = Vec::with_capacity(16 + p.targets.len() * 48);
    out.extend_from_slice(&events.to_be_bytes());
    ts(&mut out, p.next);
    out.push(p.targets.len() as u8);
    for t in &p.targets {
        out.push(match t.target {
            Target::FirstResponse => 0,
            Target::NextResponse => 1,
            Target::Resolution => 2,
        });
        ts(&mut out, t.due);
        match t.paused_left {
            Some(d) => {
                out.push(1);
                out.extend_from_slice(&d.as_secs().to_be_bytes());
                out.extend_from_slice(&d.subsec_nanos().to_be_bytes());
            }
            None => out.push(0),
        }
        ts(&mut out, t.risk_at);
        // An open alert also keeps when it opened (tags 3 and 4; 1 and 2
        // were written before): at start that is checked against the due
        // index, so a case with an open alert needs no replay either.
        match t.alert {
            Some((a, acked)) => match tl.alert(a) {
                Some((_, log)) => {
                    out.push(3 + u8::from(acked));
                    out.extend_from_slice(&a.0.to_be_bytes());
                    ts(&mut out, Some(log.opened));
                }
                None => {
                    out.push(1 + u8::from(acked));
                    out.extend_from_slice(&a.0.to_be_bytes());
                }
            },
            None => out.push(0),
        }
    }
    out
}

/// A persisted plan: the number of events it was made from, the plan, and
/// when each of its open alerts opened (`None` when a plan written by an
/// older version does not say).
struct Persisted {
    events: u32,
    plan: Plan,
    alerts_opened: Option<Vec<Timestamp>>,
}

/// Reads [`encode_plan`]'s layout; `None` when it does not parse (the
/// case is then re-planned from its history).
fn decode_plan(v: &[u8]) -> Option<Persisted> {
    struct R<'a>(&'a [u8]);
    impl R<'_> {
        fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
            let (a, rest) = self.0.split_first_chunk::<N>()?;
            self.0 = rest;
            Some(*a)
        }
        fn u8(&mut self) -> Option<u8> {
            self.take::<1>().map(|[b]| b)
        }
        fn ts(&mut self) -> Option<Option<Timestamp>> {
            match self.u8()? {
                0 => Some(None),
                1 => {
                    let s = i64::from_be_bytes(self.take()?);
                    let ns = i32::from_be_bytes(self.take()?);
                    Timestamp::new(s, ns).ok().map(Some)
                }
                _ => None,
            }
        }
    }
    let mut r = R(v);
    let events = u32::from_be_bytes(r.take()?);
    let next = r.ts()?;
    let n = r.u8()?;
    let mut targets = Vec::with_capacity(n as usize);
    let mut opened = Some(Vec::new());
    for _ in 0..n {
        let target = match r.u8()? {
            0 => Target::FirstResponse,
            1 => Target::NextResponse,
            2 => Target::Resolution,
            _ => return None,
        };
        let due = r.ts()?;
        let paused_left = match r.u8()? {
            0 => None,
            1 => {
                let s = i64::from_be_bytes(r.take()?);
                let ns = i32::from_be_bytes(r.take()?);
                Some(SignedDuration::new(s, ns))
            }
            _ => return None,
        };
        let risk_at = r.ts()?;
        let alert = match r.u8()? {
            0 => None,
            k @ (1 | 2) => {
                opened = None;
                Some((AlertId(u64::from_be_bytes(r.take()?)), k == 2))
            }
            k @ (3 | 4) => {
                let id = AlertId(u64::from_be_bytes(r.take()?));
                let at = r.ts()??;
                if let Some(o) = &mut opened {
                    o.push(at);
                }
                Some((id, k == 4))
            }
            _ => return None,
        };
        targets.push(TargetSla {
            target,
            due,
            paused_left,
            risk_at,
            alert,
        });
    }
    if !r.0.is_empty() {
        return None;
    }
    Some(Persisted {
        events,
        plan: Plan {
            actions: Vec::new(),
            next,
            targets,
        },
        alerts_opened: opened,
    })
}

fn alert_actions(alert: AlertId) -> Vec<message::Action> {
    vec![
        message::Action::new(ActionKind::Ack { alert }, "Ack", ActionStyle::Primary),
        message::Action::new(
            ActionKind::Snooze { alert, minutes: 15 },
            "Snooze 15m",
            ActionStyle::Secondary,
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The two instants kept per case give the same risk as asking every
    /// active target, at every moment around their thresholds.
    #[test]
    fn worst_risk_matches_the_targets_at_every_instant() {
        let t0 = Timestamp::from_second(1_800_000_000).unwrap();
        let at = |s: i64| t0 + SignedDuration::from_secs(s);
        let target = |due: Option<i64>, risk_at: Option<i64>, paused: bool| TargetSla {
            target: Target::Resolution,
            due: due.map(at),
            paused_left: paused.then(|| SignedDuration::from_mins(5)),
            risk_at: risk_at.map(at),
            alert: None,
        };
        let sets = [
            vec![],
            vec![target(Some(100), Some(60), false)],
            vec![
                target(Some(100), Some(80), false),
                target(Some(300), Some(40), false),
            ],
            // Paused past its at-risk point; and an inactive target that
            // does not count whatever its instants say.
            vec![
                target(None, Some(20), true),
                target(None, Some(0), false),
                target(Some(500), Some(450), false),
            ],
        ];
        for targets in &sets {
            let worst = WorstRisk::of(targets);
            for s in (-10..=520).step_by(5).chain([59, 60, 61, 99, 100, 101]) {
                let now = at(s);
                let want = targets
                    .iter()
                    .filter(|t| t.due.is_some() || t.paused_left.is_some())
                    .map(|t| t.risk(now))
                    .max()
                    .unwrap_or(Risk::Ok);
                assert_eq!(worst.at(now), want, "{targets:?} at +{s}s");
            }
        }
        // Exact to the nanosecond, not rounded to a millisecond.
        let w = WorstRisk::of(&[target(Some(100), None, false)]);
        let due = at(100);
        assert_eq!(w.at(due - SignedDuration::from_nanos(1)), Risk::Ok);
        assert_eq!(w.at(due), Risk::Breached);
    }
}
