//! Denials aggregated into Events, as Kubernetes' own event recorder does
//! (client-go `tools/events`): identical denials (the same object, reason
//! and message) make one Event, created once and then patched with
//! a `series` (count, lastObservedTime). What goes to the API is bounded
//! twice: each Event is written at most once per [`Limits::interval`]
//! after its creation (the denials between are one patch), and all writes
//! share a token bucket. Pure logic, with time passed in: the writer task
//! (`writer.rs`) does the I/O.
//!
//! client-go keys on regarding, related, reason and action, not on the
//! note; here the note is part of the key, because the API refuses to
//! change an Event's note, and a second reason for the same object must
//! not disappear into the first one's count. `related` is not: a
//! controller retrying a refused pod sends a new object each time (a new
//! uid, and a new name from a generateName), and those retries are the
//! count `kubectl describe` should show. The Event relates to the first.

use super::Denial;
use super::Regarding;
use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

/// How much berth writes to the API, and how long it holds what it could
/// not write. docs/AUDIT.md gives the figures these make.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// After an Event is created, it is written again at most this often;
    /// the count `kubectl describe` shows lags by at most this.
    pub interval: Duration,
    /// All writes take a token from a bucket this large...
    pub burst: f64,
    /// ... refilled at this many a second.
    pub per_second: f64,
    /// Events held in memory; a denial that would make one more is dropped.
    pub max_events: usize,
    /// An Event whose denials are all written is forgotten after this long
    /// without another (client-go: 6 minutes); the next one starts a new
    /// Event.
    pub idle: Duration,
    /// Denials not written after this long of the API failing (counted from
    /// the failure, or from the denial if it came later) are dropped, with
    /// their Event if it was never created; a created one keeps its name
    /// and the count the API has. The bucket alone holding denials back
    /// drops nothing: `max_events` bounds the memory.
    pub give_up: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(10),
            burst: 25.0,
            per_second: 5.0,
            max_events: 4096,
            idle: Duration::from_secs(6 * 60),
            give_up: Duration::from_secs(10 * 60),
        }
    }
}

/// After a failed write, writing pauses this long, doubling per failure
/// in a row up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Expired Events are looked for at most this often (a scan of the map).
const EXPIRY_EVERY: Duration = Duration::from_secs(1);

/// What makes two denials one Event.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    pub regarding: Regarding,
    pub reason: &'static str,
    pub note: String,
}

#[derive(Debug)]
struct Entry {
    /// The Event's name, chosen at its first denial.
    name: String,
    /// The first denial's object, when the Event regards its owner.
    related: Option<Regarding>,
    /// The first denial: the Event's `eventTime`.
    first: SystemTime,
    last_observed: SystemTime,
    /// Denials seen.
    count: u32,
    /// The count the API holds; 0 while the Event is not created.
    written: u32,
    last_write: Option<Instant>,
    last_seen: Instant,
    /// Since when denials have waited to be written.
    pending_since: Option<Instant>,
    /// When its last write failed: it then waits behind the others, so
    /// that one Event the API keeps refusing cannot hold back the rest.
    failed_at: Option<Instant>,
    in_flight: bool,
}

/// A write for the writer task to make.
#[derive(Debug, Clone, PartialEq)]
pub struct Write {
    pub key: Key,
    pub name: String,
    pub related: Option<Regarding>,
    /// Create the Event (with its series if it has one by now), or patch
    /// its series.
    pub create: bool,
    pub event_time: SystemTime,
    pub count: u32,
    pub last_observed: SystemTime,
}

/// What the aggregator wants next. Returned, never stored: the size of
/// `Write` costs nothing here.
#[derive(Debug, PartialEq)]
#[allow(clippy::large_enum_variant)]
pub enum Next {
    Write(Write),
    /// Nothing can be written before then (an interval, the bucket, a
    /// backoff).
    Wait(Instant),
    /// Nothing to write.
    Idle,
}

/// What became of a denial.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observed {
    /// A new Event: due at once.
    New,
    /// A count for an Event that had nothing waiting: due after its interval.
    Resumed,
    /// A count for an Event already waiting.
    Counted,
    /// No room for another Event.
    Dropped,
}

/// How a write ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Stored (an AlreadyExists on create too: a retry of a create that
    /// had in fact been stored).
    Stored,
    /// The patch found no Event (its TTL ran out): create it again.
    Gone,
    /// Unreachable, too slow, 429 or 5xx: pause, then try again.
    Retry,
    /// Refused for good (forbidden, invalid): drop the Event.
    Rejected,
}

#[derive(Debug)]
pub struct Aggregator {
    limits: Limits,
    entries: HashMap<Key, Entry>,
    tokens: f64,
    refilled: Instant,
    paused_until: Option<Instant>,
    backoff: Duration,
    /// Since the first of the failed writes in a row; none once the API
    /// answers.
    failing_since: Option<Instant>,
    expired_at: Instant,
    /// The last name stamp given, so that two Events of one object made in
    /// the same nanosecond get different names.
    stamp: u128,
}

impl Aggregator {
    pub fn new(limits: Limits, now: Instant) -> Self {
        Self {
            limits,
            entries: HashMap::new(),
            tokens: limits.burst,
            refilled: now,
            paused_until: None,
            backoff: FIRST_BACKOFF,
            failing_since: None,
            expired_at: now,
            stamp: 0,
        }
    }

    /// Count `denial` in its Event, making one if it is the first.
    pub fn observe(&mut self, denial: Denial, now: Instant) -> Observed {
        let Denial { regarding, related, reason, note, name_hint, at } = denial;
        let key = Key { regarding, reason, note };
        if let Some(entry) = self.entries.get_mut(&key) {
            entry.count = entry.count.saturating_add(1);
            entry.last_observed = at.max(entry.last_observed);
            entry.last_seen = now;
            if entry.pending_since.is_some() {
                return Observed::Counted;
            }
            entry.pending_since = Some(now);
            return Observed::Resumed;
        }
        if self.entries.len() >= self.limits.max_events {
            return Observed::Dropped;
        }
        let name = self.name(&key.regarding, &name_hint, at);
        let entry = Entry {
            name,
            related,
            first: at,
            last_observed: at,
            count: 1,
            written: 0,
            last_write: None,
            last_seen: now,
            pending_since: Some(now),
            failed_at: None,
            in_flight: false,
        };
        self.entries.insert(key, entry);
        Observed::New
    }

    /// `<regarding's name>.<hex>` as client-go names Events: a DNS
    /// subdomain, unique within this process.
    fn name(&mut self, regarding: &Regarding, hint: &str, at: SystemTime) -> String {
        let nanos = at.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_nanos();
        self.stamp = nanos.max(self.stamp + 1);
        let prefix = [regarding.name.as_str(), hint, regarding.kind.as_str()]
            .into_iter()
            .find(|p| !p.is_empty())
            .unwrap_or("berth");
        format!("{}.{:x}", dns_prefix(prefix, 253 - 1 - 32), self.stamp)
    }

    /// The next write, if one is due and the bucket has a token; it is
    /// then in flight until [`settle`](Self::settle). `flushing` (at
    /// shutdown) writes what waits without waiting for intervals.
    pub fn next(&mut self, now: Instant, flushing: bool) -> Next {
        if let Some(until) = self.paused_until {
            if now < until {
                return Next::Wait(until);
            }
            self.paused_until = None;
        }
        let interval = self.limits.interval;
        let due = |entry: &Entry| match entry.last_write {
            Some(last) if entry.written > 0 && !flushing => last + interval,
            _ => now,
        };
        self.tokens = (self.tokens + now.duration_since(self.refilled).as_secs_f64() * self.limits.per_second)
            .min(self.limits.burst);
        self.refilled = now;
        // Before the scan: under a flood of new Events the bucket is what
        // holds writes back, and looking for the next one is then wasted.
        if self.tokens < 1.0 {
            return Next::Wait(now + Duration::from_secs_f64((1.0 - self.tokens) / self.limits.per_second));
        }
        // Creations first: a new reason matters more than a higher count.
        let best = self
            .entries
            .iter_mut()
            .filter(|(_, e)| !e.in_flight && e.count > e.written)
            .min_by_key(|(_, e)| (due(e).max(now), e.failed_at, e.written > 0, e.pending_since));
        let Some((key, entry)) = best else { return Next::Idle };
        let at = due(entry);
        if at > now {
            return Next::Wait(at);
        }
        self.tokens -= 1.0;
        entry.in_flight = true;
        Next::Write(Write {
            key: key.clone(),
            name: entry.name.clone(),
            related: entry.related.clone(),
            create: entry.written == 0,
            event_time: entry.first,
            count: entry.count,
            last_observed: entry.last_observed,
        })
    }

    /// Record how `write` ended. Returns the denials dropped with it (a
    /// refusal drops the Event).
    pub fn settle(&mut self, write: &Write, outcome: Outcome, now: Instant) -> u64 {
        // Any answer, even a refusal, means the API is there.
        self.failing_since = match outcome {
            Outcome::Retry => Some(self.failing_since.unwrap_or(now)),
            _ => None,
        };
        let Some(entry) = self.entries.get_mut(&write.key) else { return 0 };
        entry.in_flight = false;
        match outcome {
            Outcome::Stored => {
                self.backoff = FIRST_BACKOFF;
                entry.failed_at = None;
                entry.written = write.count;
                entry.last_write = Some(now);
                entry.pending_since = (entry.count > entry.written).then_some(now);
                0
            }
            Outcome::Gone => {
                entry.written = 0;
                0
            }
            Outcome::Retry => {
                entry.failed_at = Some(now);
                self.paused_until = Some(now + self.backoff);
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                0
            }
            Outcome::Rejected => {
                let dropped = entry.count - entry.written;
                self.entries.remove(&write.key);
                u64::from(dropped)
            }
        }
    }

    /// Forget Events idle past [`Limits::idle`], and drop denials that the
    /// failing API has kept from being written for [`Limits::give_up`].
    /// Returns the denials dropped.
    pub fn expire(&mut self, now: Instant) -> u64 {
        if now.duration_since(self.expired_at) < EXPIRY_EVERY {
            return 0;
        }
        self.expired_at = now;
        let failing_since = self.failing_since;
        let Limits { idle, give_up, .. } = self.limits;
        let given_up =
            |since: Instant| failing_since.is_some_and(|failing| now.duration_since(since.max(failing)) >= give_up);
        let mut dropped = 0_u64;
        self.entries.retain(|_, entry| {
            if entry.in_flight {
                return true;
            }
            match entry.pending_since {
                None => now.duration_since(entry.last_seen) < idle,
                Some(since) if !given_up(since) => true,
                Some(_) => {
                    dropped += u64::from(entry.count - entry.written);
                    // A created Event stays, so that the next denial
                    // counts in it rather than making a second one.
                    entry.count = entry.written;
                    entry.pending_since = None;
                    entry.written > 0
                }
            }
        });
        dropped
    }

    /// Events with denials not written yet.
    pub fn pending(&self) -> usize {
        self.entries.values().filter(|e| e.count > e.written).count()
    }
}

/// `text` as the start of a DNS subdomain name: lowercase letters, digits,
/// `-` and `.`, at most `max` bytes, starting and ending with a letter or
/// digit. Object names mostly are one already; RBAC's may hold `:`.
fn dns_prefix(text: &str, max: usize) -> String {
    let mapped: String = text
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c } else { '-' })
        .take(max)
        .collect();
    let trimmed = mapped.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    if trimmed.is_empty() { "berth".to_owned() } else { trimmed.to_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn denial(name: &str, note: &str, at_secs: u64) -> Denial {
        Denial {
            regarding: Regarding {
                api_version: "apps/v1".into(),
                kind: "StatefulSet".into(),
                namespace: "pulsar".into(),
                name: name.into(),
                uid: format!("{name}-uid"),
            },
            related: None,
            reason: super::super::REASON_DENIED,
            note: note.into(),
            name_hint: String::new(),
            at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + at_secs),
        }
    }

    /// An aggregator whose one Event ("bookie", "no") the API has stored;
    /// the create, and the time it was made.
    fn one_event_created() -> (Aggregator, Write, Instant) {
        let t0 = Instant::now();
        let mut series = Aggregator::new(Limits::default(), t0);
        series.observe(denial("bookie", "no", 0), t0);
        let create = write(series.next(t0, false));
        series.settle(&create, Outcome::Stored, t0);
        (series, create, t0)
    }

    fn write(next: Next) -> Write {
        match next {
            Next::Write(write) => write,
            other => panic!("expected a write, got {other:?}"),
        }
    }

    #[test]
    fn repeats_become_one_event_whose_series_is_patched_once_per_interval() {
        let t0 = Instant::now();
        let mut series = Aggregator::new(Limits::default(), t0);
        assert_eq!(series.observe(denial("bookie", "no", 0), t0), Observed::New);
        let create = write(series.next(t0, false));
        assert!(create.create && create.count == 1 && create.name.starts_with("bookie."), "{create:?}");
        assert!(matches!(series.next(t0, false), Next::Idle), "one write at a time per Event");
        assert_eq!(series.settle(&create, Outcome::Stored, t0), 0);

        let mut observed = Vec::new();
        for second in 1..=100 {
            let now = t0 + Duration::from_millis(10 * second);
            observed.push(series.observe(denial("bookie", "no", 1), now));
        }
        assert_eq!(observed[0], Observed::Resumed);
        assert!(observed[1..].iter().all(|o| *o == Observed::Counted));
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(series.next(t1, false), Next::Wait(t0 + Limits::default().interval));
        let patch = write(series.next(t0 + Limits::default().interval, false));
        assert!(!patch.create && patch.count == 101 && patch.name == create.name, "{patch:?}");
        assert_eq!(patch.last_observed, SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_001));
        assert_eq!(patch.event_time, create.event_time);
        series.settle(&patch, Outcome::Stored, t0 + Limits::default().interval);
        assert_eq!(series.pending(), 0);
        assert!(matches!(series.next(t0 + Duration::from_secs(60), false), Next::Idle));
    }

    #[test]
    fn a_controllers_retries_of_a_refused_pod_count_in_the_first_ones_event() {
        // The real apiserver gives each retry a new uid (and a Job's pod a
        // new name) before the validating webhooks see it.
        let t0 = Instant::now();
        let mut series = Aggregator::new(Limits::default(), t0);
        let attempt = |pod: &str| Denial {
            related: Some(Regarding { kind: "Pod".into(), name: pod.into(), ..Regarding::default() }),
            ..denial("initialize", "no", 0)
        };
        assert_eq!(series.observe(attempt("initialize-mxgkj"), t0), Observed::New);
        let create = write(series.next(t0, false));
        series.settle(&create, Outcome::Stored, t0);
        assert_eq!(series.observe(attempt("initialize-frtfv"), t0), Observed::Resumed);
        assert_eq!(series.observe(attempt("initialize-5fvlj"), t0), Observed::Counted);
        let patch = write(series.next(t0 + Limits::default().interval, false));
        assert_eq!((patch.name.as_str(), patch.count), (create.name.as_str(), 3));
        assert_eq!(patch.related.map(|r| r.name), Some("initialize-mxgkj".to_owned()));
    }

    #[test]
    fn another_message_or_object_is_another_event() {
        let t0 = Instant::now();
        let mut series = Aggregator::new(Limits::default(), t0);
        series.observe(denial("bookie", "no", 0), t0);
        assert_eq!(series.observe(denial("bookie", "not this either", 0), t0), Observed::New);
        assert_eq!(series.observe(denial("broker", "no", 0), t0), Observed::New);
        let names: Vec<String> = (0..3).map(|_| write(series.next(t0, false)).name).collect();
        assert_eq!(names.iter().collect::<std::collections::BTreeSet<_>>().len(), 3, "{names:?}");
    }

    #[test]
    fn the_bucket_bounds_writes_overall() {
        let t0 = Instant::now();
        let limits = Limits { burst: 3.0, per_second: 2.0, ..Limits::default() };
        let mut series = Aggregator::new(limits, t0);
        for i in 0..10 {
            series.observe(denial(&format!("sts-{i}"), "no", 0), t0);
        }
        for _ in 0..3 {
            write(series.next(t0, false));
        }
        assert_eq!(series.next(t0, false), Next::Wait(t0 + Duration::from_millis(500)));
        write(series.next(t0 + Duration::from_millis(500), false));
        assert!(matches!(series.next(t0 + Duration::from_millis(500), false), Next::Wait(_)));
    }

    #[test]
    fn a_flush_writes_what_waits_without_waiting_for_the_interval() {
        let (mut series, _, t0) = one_event_created();
        series.observe(denial("bookie", "no", 0), t0);
        assert!(matches!(series.next(t0, false), Next::Wait(_)));
        assert_eq!(write(series.next(t0, true)).count, 2);
    }

    #[test]
    fn failures_pause_all_writes_with_a_growing_backoff_and_keep_the_counts() {
        let t0 = Instant::now();
        let mut series = Aggregator::new(Limits::default(), t0);
        series.observe(denial("bookie", "no", 0), t0);
        let first = write(series.next(t0, false));
        series.settle(&first, Outcome::Retry, t0);
        assert_eq!(series.next(t0, false), Next::Wait(t0 + Duration::from_secs(1)));
        series.observe(denial("bookie", "no", 0), t0);
        let t1 = t0 + Duration::from_secs(1);
        let again = write(series.next(t1, false));
        assert!(again.create && again.count == 2, "created at last, with the denials meanwhile: {again:?}");
        series.settle(&again, Outcome::Retry, t1);
        assert_eq!(series.next(t1, false), Next::Wait(t1 + Duration::from_secs(2)));
    }

    #[test]
    fn an_event_whose_ttl_ran_out_is_created_again_with_its_count() {
        let (mut series, create, t0) = one_event_created();
        series.observe(denial("bookie", "no", 0), t0);
        let t1 = t0 + Duration::from_secs(10);
        let patch = write(series.next(t1, false));
        series.settle(&patch, Outcome::Gone, t1);
        let recreate = write(series.next(t1, false));
        assert!(recreate.create && recreate.count == 2 && recreate.name == create.name, "{recreate:?}");
    }

    #[test]
    fn what_cannot_be_written_is_dropped_and_counted() {
        let t0 = Instant::now();
        let limits = Limits { max_events: 2, ..Limits::default() };
        let mut series = Aggregator::new(limits, t0);
        series.observe(denial("a", "no", 0), t0);
        series.observe(denial("a", "no", 0), t0);
        series.observe(denial("b", "no", 0), t0);
        assert_eq!(series.observe(denial("c", "no", 0), t0), Observed::Dropped, "no room for a third Event");
        let refused = write(series.next(t0, false));
        assert_eq!(series.settle(&refused, Outcome::Rejected, t0), u64::from(refused.count));
        // The other one never gets written: given up on, with its denials.
        let stuck = write(series.next(t0, false));
        series.settle(&stuck, Outcome::Retry, t0);
        assert_eq!(series.expire(t0 + limits.give_up + Duration::from_secs(1)), u64::from(stuck.count));
        assert_eq!(series.pending(), 0);
        assert!(matches!(series.next(t0 + limits.give_up + Duration::from_secs(2), false), Next::Idle));
    }

    #[test]
    fn only_a_long_failure_of_the_api_gives_up_on_what_waits() {
        // 4,096 new Events at 5 writes a second take longer than give_up.
        let t0 = Instant::now();
        let limits = Limits { burst: 1.0, per_second: 0.001, ..Limits::default() };
        let mut series = Aggregator::new(limits, t0);
        series.observe(denial("a", "no", 0), t0);
        series.observe(denial("b", "no", 0), t0);
        let first = write(series.next(t0, false));
        series.settle(&first, Outcome::Stored, t0);
        let late = t0 + limits.give_up * 2;
        assert_eq!(series.expire(late), 0, "the API works: the second Event waits its turn");
        assert_eq!(series.pending(), 1);
        // One failure is not a long one, however long the denial waited.
        let second = write(series.next(late, false));
        series.settle(&second, Outcome::Retry, late);
        assert_eq!(series.expire(late + Duration::from_secs(2)), 0);
        assert_eq!(series.expire(late + limits.give_up - Duration::from_secs(1)), 0);
        assert_eq!(series.expire(late + limits.give_up), 1, "give_up after the failure began");
    }

    #[test]
    fn an_event_the_api_keeps_refusing_waits_behind_the_others() {
        let t0 = Instant::now();
        let mut series = Aggregator::new(Limits::default(), t0);
        series.observe(denial("a", "no", 0), t0);
        series.observe(denial("b", "no", 1), t0 + Duration::from_millis(1));
        let first = write(series.next(t0, false));
        assert_eq!(first.key.regarding.name, "a", "the older first");
        series.settle(&first, Outcome::Retry, t0);
        let t1 = t0 + Duration::from_secs(1);
        let second = write(series.next(t1, false));
        assert_eq!(second.key.regarding.name, "b", "then the one that has not failed");
        series.settle(&second, Outcome::Stored, t1);
        assert_eq!(series.expire(t1 + Limits::default().give_up), 0, "the API answered: nothing is given up");
    }

    #[test]
    fn a_created_event_given_up_on_keeps_its_name_for_the_next_denial() {
        let (mut series, create, t0) = one_event_created();
        series.observe(denial("bookie", "no", 0), t0);
        let t1 = t0 + Limits::default().interval;
        let patch = write(series.next(t1, false));
        series.settle(&patch, Outcome::Retry, t1);
        assert_eq!(series.expire(t1 + Limits::default().give_up), 1, "the count the API never got");
        assert_eq!(series.observe(denial("bookie", "no", 0), t1 + Limits::default().give_up), Observed::Resumed);
        let t2 = t1 + Limits::default().give_up + Duration::from_secs(60);
        let again = write(series.next(t2, false));
        assert!(!again.create && again.name == create.name && again.count == 2, "{again:?}");
    }

    #[test]
    fn written_events_are_forgotten_once_idle() {
        let (mut series, _, t0) = one_event_created();
        assert_eq!(series.expire(t0 + Duration::from_secs(60)), 0);
        assert_eq!(series.observe(denial("bookie", "no", 0), t0 + Duration::from_secs(60)), Observed::Resumed);
        let patch = write(series.next(t0 + Duration::from_secs(60), false));
        series.settle(&patch, Outcome::Stored, t0 + Duration::from_secs(60));
        let later = t0 + Duration::from_secs(60) + Limits::default().idle + Duration::from_secs(1);
        assert_eq!(series.expire(later), 0, "nothing was waiting");
        assert_eq!(series.observe(denial("bookie", "no", 0), later), Observed::New, "a new Event after idling");
    }

    #[test]
    fn names_are_dns_subdomains() {
        assert_eq!(dns_prefix("system:controller:Job", 100), "system-controller-job");
        assert_eq!(dns_prefix("-x-", 100), "x");
        assert_eq!(dns_prefix("::", 100), "berth");
        assert_eq!(dns_prefix(&"a".repeat(300), 220).len(), 220);
    }
}
