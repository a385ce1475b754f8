//! `berth audit summary`: counts by policy, namespace and reason.

use super::record::{AuditRecord, Decision, format_rfc3339};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::SystemTime;

/// Records of each decision.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    pub total: u64,
    pub denied: u64,
    pub errors: u64,
    pub mutated: u64,
    pub dry_run: u64,
}

impl Counts {
    pub(crate) fn add(&mut self, record: &AuditRecord) {
        self.total += 1;
        match record.decision {
            Decision::Denied => self.denied += 1,
            Decision::Error => self.errors += 1,
            Decision::Mutated => self.mutated += 1,
        }
        if record.dry_run {
            self.dry_run += 1;
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReasonCount {
    pub decision: String,
    pub reason: String,
    pub count: u64,
    pub policies: BTreeSet<String>,
}

/// Counts over the records read.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub counts: Counts,
    #[serde(serialize_with = "optional_time")]
    pub first: Option<SystemTime>,
    #[serde(serialize_with = "optional_time")]
    pub last: Option<SystemTime>,
    pub by_policy: BTreeMap<String, Counts>,
    /// Cluster-scoped objects count under "".
    pub by_namespace: BTreeMap<String, Counts>,
    /// By (decision, reason).
    #[serde(serialize_with = "reasons")]
    pub by_reason: BTreeMap<(Decision, String), ReasonCount>,
}

/// Longest reason shown in the table.
const REASON_WIDTH: usize = 80;

impl Summary {
    pub fn add(&mut self, record: &AuditRecord) {
        self.counts.add(record);
        self.first = Some(self.first.map_or(record.time, |t| t.min(record.time)));
        self.last = Some(self.last.map_or(record.time, |t| t.max(record.time)));
        let policy = if record.policy.is_empty() { "(berth)" } else { &record.policy };
        self.by_policy.entry(policy.to_owned()).or_default().add(record);
        self.by_namespace.entry(record.namespace.clone().unwrap_or_default()).or_default().add(record);
        let reason = record.reason();
        let entry = self.by_reason.entry((record.decision, reason.clone())).or_insert_with(|| ReasonCount {
            decision: record.decision.as_str().to_owned(),
            reason,
            ..ReasonCount::default()
        });
        entry.count += 1;
        entry.policies.insert(policy.to_owned());
    }

    /// Reasons, most frequent first.
    pub fn reasons(&self) -> Vec<&ReasonCount> {
        let mut reasons: Vec<&ReasonCount> = self.by_reason.values().collect();
        reasons.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.reason.cmp(&b.reason)));
        reasons
    }

    /// The readable form: the window, then one table per grouping, each
    /// with at most `top` rows, largest first.
    pub fn render(&self, window: (Option<SystemTime>, Option<SystemTime>), top: usize) -> String {
        let mut out = String::new();
        let time = |t: Option<SystemTime>| t.map(|t| humantime::format_rfc3339_seconds(t).to_string());
        let from = time(window.0.or(self.first)).unwrap_or_else(|| "the beginning".into());
        let to = time(window.1).or_else(|| time(self.last)).unwrap_or_else(|| "now".into());
        let c = &self.counts;
        let _ = writeln!(out, "Audit records from {from} to {to}: {}", c.total);
        let _ = writeln!(
            out,
            "  denied {}, errors {}, mutated {}{}",
            c.denied,
            c.errors,
            c.mutated,
            if c.dry_run > 0 { format!(" ({} of them dry runs)", c.dry_run) } else { String::new() }
        );
        if c.total == 0 {
            return out;
        }
        for (title, groups) in [("POLICY", &self.by_policy), ("NAMESPACE", &self.by_namespace)] {
            let mut rows: Vec<(&String, &Counts)> = groups.iter().collect();
            rows.sort_by(|a, b| b.1.total.cmp(&a.1.total).then_with(|| a.0.cmp(b.0)));
            let mut table = Table::new([title, "TOTAL", "DENIED", "ERRORS", "MUTATED", "DRY RUN"]);
            for (name, counts) in rows.iter().take(top) {
                let name = if name.is_empty() { "(cluster)" } else { name.as_str() };
                table.row([
                    name.to_owned(),
                    counts.total.to_string(),
                    counts.denied.to_string(),
                    counts.errors.to_string(),
                    counts.mutated.to_string(),
                    counts.dry_run.to_string(),
                ]);
            }
            out.push('\n');
            out.push_str(&table.render());
            more(&mut out, rows.len(), top);
        }
        let reasons = self.reasons();
        let mut table = Table::new(["COUNT", "DECISION", "POLICY", "REASON"]);
        for reason in reasons.iter().take(top) {
            table.row([
                reason.count.to_string(),
                reason.decision.clone(),
                reason.policies.iter().cloned().collect::<Vec<_>>().join(","),
                truncate(&one_line(&reason.reason), REASON_WIDTH),
            ]);
        }
        out.push('\n');
        out.push_str(&table.render());
        more(&mut out, reasons.len(), top);
        out
    }
}

fn more(out: &mut String, rows: usize, top: usize) {
    if rows > top {
        let _ = writeln!(out, "… and {} more (--top)", rows - top);
    }
}

fn optional_time<S: serde::Serializer>(time: &Option<SystemTime>, ser: S) -> Result<S::Ok, S::Error> {
    match time {
        Some(time) => ser.serialize_str(&format_rfc3339(*time)),
        None => ser.serialize_none(),
    }
}

fn reasons<S: serde::Serializer>(map: &BTreeMap<(Decision, String), ReasonCount>, ser: S) -> Result<S::Ok, S::Error> {
    let mut reasons: Vec<&ReasonCount> = map.values().collect();
    reasons.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.reason.cmp(&b.reason)));
    ser.collect_seq(reasons)
}

/// Newlines and tabs as spaces, for one table row.
pub fn one_line(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

pub fn truncate(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    text.chars().take(width.saturating_sub(1)).collect::<String>() + "…"
}

/// A plain text table: columns padded to their widest cell, the last one
/// left as is.
#[derive(Debug, Clone)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new<const N: usize>(header: [&str; N]) -> Self {
        Self { header: header.iter().map(|h| (*h).to_owned()).collect(), rows: Vec::new() }
    }

    pub fn row<const N: usize>(&mut self, cells: [String; N]) {
        self.rows.push(cells.into());
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn widths(&self) -> Vec<usize> {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        widths
    }

    pub fn render(&self) -> String {
        let widths = self.widths();
        let mut out = format_row(&self.header, &widths);
        for row in &self.rows {
            out.push_str(&format_row(row, &widths));
        }
        out
    }
}

/// One row, padded to `widths`, ending in a newline.
pub fn format_row(cells: &[String], widths: &[usize]) -> String {
    let mut line = String::new();
    for (i, cell) in cells.iter().enumerate() {
        let last = i + 1 == cells.len();
        if last {
            line.push_str(cell);
        } else {
            let width = widths.get(i).copied().unwrap_or(0);
            let _ = write!(line, "{:<width$}  ", cell);
        }
    }
    line.truncate(line.trim_end().len());
    line.push('\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(policy: &str, namespace: Option<&str>, decision: &str, message: &str, dry_run: bool) -> AuditRecord {
        let mut value = serde_json::json!({
            "time": "2024-01-01T00:00:00Z", "uid": "u", "operation": "CREATE",
            "kind": {"kind": "Pod"}, "resource": {"resource": "pods"},
            "endpoint": "validate", "policy": policy, "decision": decision,
            "message": message, "errorKind": "timeout", "allowed": false, "dryRun": dry_run
        });
        if let Some(namespace) = namespace {
            value["namespace"] = namespace.into();
        }
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn counts_and_table() {
        let mut summary = Summary::default();
        for _ in 0..3 {
            summary.add(&record("no-latest", Some("team-a"), "denied", "image tag latest", false));
        }
        summary.add(&record("no-latest", Some("team-b"), "denied", "image tag latest", true));
        summary.add(&record("slow", Some("team-b"), "error", "timed out after 100ms", false));
        summary.add(&record("namespaces", None, "denied", "line one\nline two", false));
        assert_eq!(summary.counts, Counts { total: 6, denied: 5, errors: 1, mutated: 0, dry_run: 1 });
        assert_eq!(summary.by_policy["no-latest"].denied, 4);
        assert_eq!(summary.by_namespace["team-b"], Counts { total: 2, denied: 1, errors: 1, mutated: 0, dry_run: 1 });
        assert_eq!(summary.by_namespace[""].total, 1);
        let reasons = summary.reasons();
        assert_eq!(reasons[0].reason, "image tag latest");
        assert_eq!(reasons[0].count, 4);

        let text = summary.render((None, None), 20);
        assert!(text.starts_with("Audit records from 2024-01-01T00:00:00Z to 2024-01-01T00:00:00Z: 6\n"), "{text}");
        assert!(
            text.contains(
                "POLICY      TOTAL  DENIED  ERRORS  MUTATED  DRY RUN\nno-latest   4      4       0       0        1\n"
            ),
            "{text}"
        );
        assert!(text.contains("(cluster)"), "{text}");
        assert!(text.contains("4      denied    no-latest   image tag latest\n"), "{text}");
        assert!(text.contains("timeout: timed out after 100ms"), "{text}");
        assert!(text.contains("line one line two"), "{text}");

        let short = summary.render((None, None), 1);
        assert!(short.contains("… and 2 more (--top)"), "{short}");
        let json = serde_json::to_value(&summary).unwrap();
        assert_eq!(json["byPolicy"]["no-latest"]["denied"], 4);
        assert_eq!(json["byReason"][0]["count"], 4);
        assert_eq!(json["first"], "2024-01-01T00:00:00.000000000Z");
    }

    #[test]
    fn empty() {
        let text = Summary::default().render((None, None), 20);
        assert_eq!(text, "Audit records from the beginning to now: 0\n  denied 0, errors 0, mutated 0\n");
    }
}
