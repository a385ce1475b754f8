//! `berth audit report`: the audit records read, aggregated here into what
//! the HTML page plots and lists ([`html`] writes the page).
//!
//! Everything a chart shows is counted over every record read, however many;
//! the page's table holds the newest `table_limit` of them in full, so the
//! file stays one a browser opens at a million records.

pub mod html;
pub mod images;

use super::reader::Entry;
use super::record::{AuditRecord, Decision, format_rfc3339};
use super::summary::Counts;
use serde::Serialize;
use serde_json::value::RawValue;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Bars on the time axis, at most.
const MAX_BUCKETS: u64 = 120;
/// Policies the timeline stacks by name; the rest are summed as "other".
const TIMELINE_POLICIES: usize = 8;
pub const OTHER: &str = "(other policies)";
/// What the report calls the policy of a record berth itself wrote.
const BERTH: &str = "(berth)";
const CLUSTER: &str = "(cluster-scoped)";

/// What the report covers, as the command line gave it.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    pub since: Option<SystemTime>,
    pub until: Option<SystemTime>,
    /// The filters, as the user typed them: `--namespace pulsar`.
    pub filters: Vec<String>,
    /// Rows of the page's table: the newest records.
    pub table_limit: usize,
    /// Rows of each "top" chart.
    pub top: usize,
}

/// Counts by decision, in the order the page stacks them.
#[derive(Debug, Clone, Copy, Default, Serialize)]
struct ByDecision([u64; 3]);

impl ByDecision {
    fn add(&mut self, decision: Decision) {
        self.0[decision_index(decision)] += 1;
    }

    fn total(&self) -> u64 {
        self.0.iter().sum()
    }
}

fn decision_index(decision: Decision) -> usize {
    match decision {
        Decision::Denied => 0,
        Decision::Error => 1,
        Decision::Mutated => 2,
    }
}

/// A report being built: feed it every record read, then [`finish`](Self::finish).
pub struct Report {
    scope: Scope,
    counts: Counts,
    first: Option<SystemTime>,
    last: Option<SystemTime>,
    /// Records read from each file.
    files: HashMap<PathBuf, u64>,
    namespaces: HashMap<String, ByDecision>,
    policies: HashMap<String, ByDecision>,
    users: HashMap<String, ByDecision>,
    reasons: HashMap<String, ByDecision>,
    /// Denials by (second since the epoch, policy): bucketed at the end,
    /// when the range is known.
    denials: HashMap<(u64, String), u64>,
    /// Denied records naming each image, by registry.
    registries: BTreeMap<String, BTreeMap<String, u64>>,
    /// Denied records by registry (a record naming two images of one
    /// registry counts once).
    registry_records: BTreeMap<String, u64>,
    /// The newest records' lines, as read: text is a fraction of the
    /// memory of a parsed object, and only these are parsed again.
    newest: VecDeque<String>,
}

impl Report {
    pub fn new(scope: Scope) -> Self {
        Self {
            scope,
            counts: Counts::default(),
            first: None,
            last: None,
            files: HashMap::new(),
            namespaces: HashMap::new(),
            policies: HashMap::new(),
            users: HashMap::new(),
            reasons: HashMap::new(),
            denials: HashMap::new(),
            registries: BTreeMap::new(),
            registry_records: BTreeMap::new(),
            newest: VecDeque::new(),
        }
    }

    pub fn add(&mut self, entry: Entry) {
        let Entry { record, file, line } = entry;
        *self.files.entry(file.to_path_buf()).or_default() += 1;
        self.counts.add(&record);
        self.first = Some(self.first.map_or(record.time, |t| t.min(record.time)));
        self.last = Some(self.last.map_or(record.time, |t| t.max(record.time)));
        let policy = policy_name(&record);
        self.namespaces.entry(namespace_name(&record).to_owned()).or_default().add(record.decision);
        self.policies.entry(policy.to_owned()).or_default().add(record.decision);
        self.users.entry(record.user.clone()).or_default().add(record.decision);
        self.reasons.entry(record.reason()).or_default().add(record.decision);
        if record.decision == Decision::Denied {
            let second = record.time.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs();
            *self.denials.entry((second, policy.to_owned())).or_default() += 1;
            if let Some(object) = &record.object {
                let found = images::images(object);
                let mut registries: Vec<&str> = found.iter().map(|i| i.registry.as_str()).collect();
                registries.dedup();
                for registry in registries {
                    *self.registry_records.entry(registry.to_owned()).or_default() += 1;
                }
                for image in found {
                    *self.registries.entry(image.registry).or_default().entry(image.image).or_default() += 1;
                }
            }
        }
        if self.scope.table_limit > 0 {
            if self.newest.len() == self.scope.table_limit {
                self.newest.pop_front();
            }
            self.newest.push_back(line);
        }
    }

    /// The page's data. `logs` are the logs read (one per replica), each
    /// with its files.
    pub fn finish(self, logs: &[(PathBuf, Vec<PathBuf>)], generated: SystemTime) -> PageData {
        let logs = logs
            .iter()
            .map(|(log, files)| LogRead {
                log: log.display().to_string(),
                replica: replica_name(log),
                files: files
                    .iter()
                    .map(|f| FileRead {
                        path: f.display().to_string(),
                        records: self.files.get(f).copied().unwrap_or(0),
                    })
                    .collect(),
            })
            .collect();
        let top = self.scope.top;
        PageData {
            generated: format_rfc3339(generated),
            version: env!("CARGO_PKG_VERSION"),
            since: self.scope.since.map(format_rfc3339),
            until: self.scope.until.map(format_rfc3339),
            filters: self.scope.filters.clone(),
            first: self.first.map(format_rfc3339),
            last: self.last.map(format_rfc3339),
            counts: self.counts,
            logs,
            timeline: timeline(&self.denials),
            namespaces: Ranking::of(self.namespaces, top),
            policies: Ranking::of(self.policies, top),
            users: Ranking::of(self.users, top),
            reasons: Ranking::of(self.reasons, top),
            registries: registries(self.registries, self.registry_records, top),
            table: Table::of(self.newest, self.counts.total),
        }
    }
}

fn policy_name(record: &AuditRecord) -> &str {
    if record.policy.is_empty() { BERTH } else { &record.policy }
}

fn namespace_name(record: &AuditRecord) -> &str {
    record.namespace.as_deref().unwrap_or(CLUSTER)
}

/// The chart keeps each replica's log on its own claim, mounted at the same
/// path; copied out (deploy/README.md) they sit in a directory per pod, or
/// a file per pod. The name that tells them apart: the file's stem, unless
/// that is the chart's `audit` (then its directory's name).
fn replica_name(log: &Path) -> String {
    let stem = log.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
    let parent = log.parent().and_then(|p| p.file_name()).and_then(|s| s.to_str());
    match (stem, parent) {
        ("audit" | "berth-audit", Some(dir)) => dir.to_owned(),
        ("", _) => log.display().to_string(),
        (stem, _) => stem.to_owned(),
    }
}

/// What the page draws and lists. Field names are the page's (page.js).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PageData {
    pub generated: String,
    pub version: &'static str,
    pub since: Option<String>,
    pub until: Option<String>,
    pub filters: Vec<String>,
    pub first: Option<String>,
    pub last: Option<String>,
    pub counts: Counts,
    pub logs: Vec<LogRead>,
    pub timeline: Timeline,
    pub namespaces: Ranking,
    pub policies: Ranking,
    pub users: Ranking,
    pub reasons: Ranking,
    pub registries: Vec<RegistryCount>,
    pub table: Table,
}

#[derive(Debug, Serialize)]
pub struct LogRead {
    pub log: String,
    pub replica: String,
    pub files: Vec<FileRead>,
}

#[derive(Debug, Serialize)]
pub struct FileRead {
    pub path: String,
    pub records: u64,
}

/// Denials per time bucket, one series per policy.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Timeline {
    /// The first bucket's start, in milliseconds since the epoch.
    pub start_ms: u64,
    pub step_ms: u64,
    pub series: Vec<Series>,
}

#[derive(Debug, Serialize)]
pub struct Series {
    pub name: String,
    pub counts: Vec<u64>,
}

/// Bucket widths a reader takes in at a glance.
const STEPS: [u64; 16] =
    [1, 5, 10, 30, 60, 300, 600, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 7 * 86400, 30 * 86400];

fn timeline(denials: &HashMap<(u64, String), u64>) -> Timeline {
    let (Some(first), Some(last)) = (denials.keys().map(|k| k.0).min(), denials.keys().map(|k| k.0).max()) else {
        return Timeline::default();
    };
    let span = last - first + 1;
    let step = STEPS.iter().copied().find(|s| span.div_ceil(*s) <= MAX_BUCKETS).unwrap_or(span.div_ceil(MAX_BUCKETS));
    let start = first - first % step;
    let buckets = (last - start) / step + 1;
    let mut totals: HashMap<&str, u64> = HashMap::new();
    for ((_, policy), n) in denials {
        *totals.entry(policy).or_default() += n;
    }
    let mut named: Vec<(&str, u64)> = totals.into_iter().collect();
    named.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    let shown: Vec<&str> = named.iter().take(TIMELINE_POLICIES).map(|p| p.0).collect();
    let others = named.len() > shown.len();
    let mut series: Vec<Series> = shown
        .iter()
        .map(|p| (*p).to_owned())
        .chain(others.then(|| OTHER.to_owned()))
        .map(|name| Series { name, counts: vec![0; buckets as usize] })
        .collect();
    for ((second, policy), n) in denials {
        let index = shown.iter().position(|p| *p == policy.as_str()).unwrap_or(shown.len());
        series[index].counts[((second - start) / step) as usize] += n;
    }
    Timeline { start_ms: start * 1000, step_ms: step * 1000, series }
}

/// The largest groups, with counts by decision, and what the rest add up to.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Ranking {
    /// (name, [denied, errors, mutated]), largest first.
    rows: Vec<(String, ByDecision)>,
    /// Groups not shown, and their records.
    others: usize,
    other_records: u64,
}

impl Ranking {
    fn of(groups: HashMap<String, ByDecision>, top: usize) -> Self {
        let mut rows: Vec<(String, ByDecision)> = groups.into_iter().collect();
        rows.sort_by(|a, b| b.1.total().cmp(&a.1.total()).then_with(|| a.0.cmp(&b.0)));
        let rest = rows.split_off(top.min(rows.len()));
        Self { others: rest.len(), other_records: rest.iter().map(|r| r.1.total()).sum(), rows }
    }
}

#[derive(Debug, Serialize)]
pub struct RegistryCount {
    pub registry: String,
    /// Denied records naming an image of this registry.
    pub records: u64,
    /// Its images, most denied first (at most `top`), with their records.
    pub images: Vec<(String, u64)>,
}

fn registries(
    images: BTreeMap<String, BTreeMap<String, u64>>,
    records: BTreeMap<String, u64>,
    top: usize,
) -> Vec<RegistryCount> {
    let mut out: Vec<RegistryCount> = images
        .into_iter()
        .map(|(registry, images)| {
            let mut images: Vec<(String, u64)> = images.into_iter().collect();
            images.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            images.truncate(top);
            RegistryCount { records: records.get(&registry).copied().unwrap_or(0), registry, images }
        })
        .collect();
    out.sort_by(|a, b| b.records.cmp(&a.records).then_with(|| a.registry.cmp(&b.registry)));
    out
}

/// The newest records, newest first, their repeated strings and objects
/// stored once: a controller retrying a Pod sends the same object again
/// and again.
#[derive(Debug, Default, Serialize)]
pub struct Table {
    /// Records read; `rows` holds the newest of them.
    pub total: u64,
    pub rows: Vec<Row>,
    pub strings: Vec<String>,
    pub objects: Vec<Box<RawValue>>,
}

/// One record: numbers index `strings` (and `objects`; -1 for none).
/// Serialised as an array, to keep the page small.
#[derive(Debug, Serialize)]
pub struct Row(
    /// time, in milliseconds since the epoch
    pub u64,
    /// nanoseconds within the millisecond: the log's exact time
    pub u32,
    /// decision
    pub u32,
    /// namespace
    pub u32,
    /// policy
    pub u32,
    /// plugin
    pub u32,
    /// sha256
    pub u32,
    /// user
    pub u32,
    /// operation
    pub u32,
    /// kind
    pub u32,
    /// name
    pub u32,
    /// reason
    pub u32,
    /// endpoint
    pub u32,
    /// uid
    pub u32,
    /// code (0: none)
    pub u16,
    /// dry run (0 or 1)
    pub u8,
    /// object
    pub i64,
);

#[derive(Default)]
struct Interner {
    strings: Vec<String>,
    index: HashMap<String, u32>,
}

impl Interner {
    fn get(&mut self, text: &str) -> u32 {
        if let Some(i) = self.index.get(text) {
            return *i;
        }
        let i = self.strings.len() as u32;
        self.strings.push(text.to_owned());
        self.index.insert(text.to_owned(), i);
        i
    }
}

impl Table {
    fn of(newest: VecDeque<String>, total: u64) -> Self {
        let mut strings = Interner::default();
        let mut objects: Vec<Box<RawValue>> = Vec::new();
        let mut object_index: HashMap<String, i64> = HashMap::new();
        let mut rows = Vec::with_capacity(newest.len());
        // Each line parsed once already, when it was read.
        for record in newest.iter().rev().filter_map(|line| serde_json::from_str::<AuditRecord>(line).ok()) {
            let since_epoch = record.time.duration_since(SystemTime::UNIX_EPOCH).unwrap_or(Duration::ZERO);
            let object = match record.object.as_ref().map(serde_json::to_string) {
                Some(Ok(text)) => match object_index.get(&text) {
                    Some(i) => *i,
                    None => match RawValue::from_string(text.clone()) {
                        Ok(raw) => {
                            objects.push(raw);
                            object_index.insert(text, objects.len() as i64 - 1);
                            objects.len() as i64 - 1
                        }
                        Err(_) => -1,
                    },
                },
                _ => -1,
            };
            let kind = if record.kind.kind.is_empty() { &record.resource.resource } else { &record.kind.kind };
            let operation = serde_json::to_value(record.operation).ok();
            rows.push(Row(
                since_epoch.as_millis() as u64,
                since_epoch.subsec_nanos() % 1_000_000,
                strings.get(record.decision.as_str()),
                strings.get(namespace_name(&record)),
                strings.get(policy_name(&record)),
                strings.get(&record.plugin),
                strings.get(&record.sha256),
                strings.get(&record.user),
                strings.get(operation.as_ref().and_then(|o| o.as_str()).unwrap_or_default()),
                strings.get(kind),
                strings.get(&record.display_name()),
                strings.get(&record.reason()),
                strings.get(&record.endpoint),
                strings.get(&record.uid),
                record.code.unwrap_or(0),
                u8::from(record.dry_run),
                object,
            ));
        }
        Self { total, rows, strings: strings.strings, objects }
    }
}

#[cfg(test)]
mod tests;
