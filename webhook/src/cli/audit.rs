//! `berth audit`: read the audit log (rotated files included, several logs
//! merged by time), and `berth audit summary`: counts over a window.

use crate::audit::reader::parse_since;
use crate::audit::report::{self, Report, Scope};
use crate::audit::summary::{Table, format_row, one_line, truncate};
use crate::audit::{AuditRecord, AuditSpec, Decision, Entry, Filter, LogReader, Summary};
use crate::config::Config;
use anyhow::Context;
use clap::{Subcommand, ValueEnum};
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    command: Option<AuditCommand>,
    /// The options the list and `summary` share. They are global, so that
    /// `berth audit --log F summary` and `berth audit summary --log F` both
    /// work: users type both orders.
    #[command(flatten)]
    shared: SharedArgs,
    /// Keep reading records as they are written (rotation included).
    #[arg(long, short)]
    follow: bool,
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Counts by policy, by namespace and by reason over a time window.
    Summary(SummaryArgs),
    /// One self-contained HTML page of the records: denials over time by
    /// policy, the top namespaces, policies, users and reasons, denied
    /// images by registry, and the records to filter, search and open.
    Report(ReportArgs),
}

#[derive(Debug, clap::Args)]
struct SharedArgs {
    #[command(flatten)]
    logs: LogArgs,
    #[command(flatten)]
    filter: FilterArgs,
    /// How to print.
    #[arg(long, short, global = true, value_enum, default_value_t = Output::Table)]
    output: Output,
}

#[derive(Debug, clap::Args)]
struct SummaryArgs {
    /// Rows per table.
    #[arg(long, default_value_t = 20)]
    top: usize,
}

#[derive(Debug, clap::Args)]
struct ReportArgs {
    /// Write the page here; `-` writes it to stdout (`kubectl exec berth-0
    /// -- berth audit report --html - > report.html`).
    #[arg(long, value_name = "FILE")]
    html: PathBuf,
    /// Records the page's table holds, the newest (every chart counts all
    /// records read, whatever this is).
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    table_limit: usize,
    /// Rows of each "top" chart.
    #[arg(long, value_name = "N", default_value_t = 10)]
    top: usize,
}

#[derive(Debug, Clone, clap::Args)]
struct LogArgs {
    /// An audit log file (its rotated files PATH.1, PATH.2 … are read too,
    /// oldest first) or a directory of logs. Repeat to merge several
    /// replicas' logs by time. Default: $BERTH_AUDIT_LOG (the chart sets
    /// it in berth's pods), else audit.path of --config, else
    /// berth-audit.log.
    #[arg(long = "log", value_name = "PATH", global = true, env = "BERTH_AUDIT_LOG")]
    logs: Vec<PathBuf>,
    /// berth.yaml, for its audit.path.
    #[arg(long, short, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
}

#[derive(Debug, Clone, clap::Args)]
struct FilterArgs {
    /// Records at or after this: an RFC 3339 time, or a duration ago (1h, 30m, 2d).
    #[arg(long, value_name = "TIME|DURATION", global = true)]
    since: Option<String>,
    /// Records before this: an RFC 3339 time, or a duration ago.
    #[arg(long, value_name = "TIME|DURATION", global = true)]
    until: Option<String>,
    /// Only this namespace (repeat for several; a trailing * matches a prefix).
    #[arg(long, short, global = true)]
    namespace: Vec<String>,
    /// Only this policy.
    #[arg(long, short, global = true)]
    policy: Vec<String>,
    /// Only this kind (Pod) or resource (pods).
    #[arg(long, short, global = true)]
    kind: Vec<String>,
    /// Only this user (system:serviceaccount:ci:*).
    #[arg(long, short, global = true)]
    user: Vec<String>,
    /// Only records of this decision.
    #[arg(long, value_enum, global = true)]
    decision: Vec<DecisionArg>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum DecisionArg {
    Denied,
    Error,
    Mutated,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    /// Aligned columns.
    Table,
    /// One JSON record per line, as written.
    Json,
}

impl AuditArgs {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        match self.command {
            // A summary counts a finished window; following never finishes.
            Some(AuditCommand::Summary(_)) if self.follow => Err(anyhow::anyhow!(
                "--follow reads records as they come and `summary` counts a window: use one or the other"
            )),
            Some(AuditCommand::Report(_)) if self.follow => Err(anyhow::anyhow!(
                "--follow reads records as they come and `report` writes a page of a window: use one or the other"
            )),
            Some(AuditCommand::Summary(args)) => args.run(self.shared),
            Some(AuditCommand::Report(args)) => args.run(self.shared),
            // `berth audit | head` ends quietly: cli::main sees the broken pipe.
            None => list(self.shared, self.follow),
        }
    }
}

impl LogArgs {
    fn paths(&self) -> anyhow::Result<Vec<PathBuf>> {
        if !self.logs.is_empty() {
            return Ok(self.logs.clone());
        }
        let spec = match &self.config {
            Some(path) => Config::read(path)?.config.audit.unwrap_or_default(),
            None => AuditSpec::default(),
        };
        Ok(vec![spec.path])
    }
}

impl FilterArgs {
    fn filter(&self) -> anyhow::Result<Filter> {
        let now = SystemTime::now();
        let time = |text: &Option<String>, flag: &str| {
            text.as_deref().map(|t| parse_since(t, now).map_err(|e| anyhow::anyhow!("--{flag}: {e}"))).transpose()
        };
        Ok(Filter {
            since: time(&self.since, "since")?,
            until: time(&self.until, "until")?,
            namespaces: self.namespace.clone(),
            policies: self.policy.clone(),
            kinds: self.kind.clone(),
            users: self.user.clone(),
            decisions: self
                .decision
                .iter()
                .map(|d| match d {
                    DecisionArg::Denied => Decision::Denied,
                    DecisionArg::Error => Decision::Error,
                    DecisionArg::Mutated => Decision::Mutated,
                })
                .collect(),
        })
    }
}

fn warn(reader: &mut LogReader) {
    for warning in reader.take_warnings() {
        eprintln!("warning: {warning}");
    }
}

const HEADER: [&str; 9] = ["TIME", "ENDPOINT", "DECISION", "POLICY", "NAMESPACE", "KIND", "NAME", "USER", "MESSAGE"];

fn row(record: &AuditRecord) -> [String; 9] {
    let mut decision = record.decision.as_str().to_owned();
    if record.decision == Decision::Error
        && let Some(policy) = &record.failure_policy
    {
        decision = format!("error/{policy}");
    }
    if record.dry_run {
        decision.push_str(" (dry run)");
    }
    let message = match record.decision {
        Decision::Mutated => {
            let ops = record.patch.as_ref().and_then(|p| p.as_array()).map_or(0, Vec::len);
            format!("{ops} patch operation{}", if ops == 1 { "" } else { "s" })
        }
        Decision::Error => format!(
            "{}: {}",
            record.error_kind.as_deref().unwrap_or("error"),
            record.message.as_deref().unwrap_or_default()
        ),
        Decision::Denied => record.message.clone().unwrap_or_default(),
    };
    [
        humantime::format_rfc3339_millis(record.time).to_string(),
        record.endpoint.clone(),
        decision,
        if record.policy.is_empty() { "(berth)".into() } else { truncate(&record.policy, 40) },
        record.namespace.clone().unwrap_or_default(),
        record.kind.kind.clone(),
        truncate(&record.display_name(), 60),
        truncate(&record.user, 50),
        one_line(&message),
    ]
}

/// `berth audit`: the records, as a table or as written.
fn list(shared: SharedArgs, follow: bool) -> anyhow::Result<ExitCode> {
    let paths = shared.logs.paths()?;
    let filter = shared.filter.filter()?;
    let mut reader = if follow { LogReader::follow(&paths, filter)? } else { LogReader::open(&paths, filter)? };
    let mut out = io::stdout().lock();
    let mut table = Table::new(HEADER);
    let mut shown = 0usize;
    while let Some(entry) = reader.next_entry() {
        warn(&mut reader);
        shown += 1;
        match shared.output {
            Output::Json => writeln!(out, "{}", entry.line)?,
            Output::Table => table.row(row(&entry.record)),
        }
    }
    warn(&mut reader);
    if shared.output == Output::Table && (!table.is_empty() || follow) {
        write!(out, "{}", table.render())?;
    }
    out.flush()?;
    if !follow {
        if shown == 0 {
            eprintln!("no audit records match (read {})", describe(&reader));
        }
        return Ok(ExitCode::SUCCESS);
    }
    // Following: rows as they come, in the backlog's column widths.
    let widths: Vec<usize> = table.widths().into_iter().map(|w| w.max(12)).collect();
    loop {
        let entries: Vec<Entry> = reader.poll(Duration::from_millis(500));
        warn(&mut reader);
        for entry in entries {
            match shared.output {
                Output::Json => writeln!(out, "{}", entry.line)?,
                Output::Table => write!(out, "{}", format_row(&row(&entry.record), &widths))?,
            }
        }
        out.flush()?;
    }
}

fn describe(reader: &LogReader) -> String {
    let logs: Vec<String> = reader.logs().iter().map(|p| p.display().to_string()).collect();
    if logs.is_empty() { "no logs".into() } else { logs.join(", ") }
}

impl SummaryArgs {
    fn run(self, shared: SharedArgs) -> anyhow::Result<ExitCode> {
        let paths = shared.logs.paths()?;
        let filter = shared.filter.filter()?;
        let window = (filter.since, filter.until);
        let mut reader = LogReader::open(&paths, filter)?;
        let mut summary = Summary::default();
        while let Some(entry) = reader.next_entry() {
            warn(&mut reader);
            summary.add(&entry.record);
        }
        warn(&mut reader);
        let mut out = io::stdout().lock();
        match shared.output {
            Output::Table => write!(out, "{}", summary.render(window, self.top))?,
            Output::Json => {
                writeln!(out, "{}", serde_json::to_string_pretty(&summary).context("encoding the summary")?)?
            }
        }
        out.flush()?;
        Ok(ExitCode::SUCCESS)
    }
}

impl FilterArgs {
    /// The filters as typed, for the report to show what it covers.
    fn describe(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut flag = |name: &str, values: &[String]| {
            for value in values {
                out.push(format!("--{name} {value}"));
            }
        };
        flag("since", self.since.as_slice());
        flag("until", self.until.as_slice());
        flag("namespace", &self.namespace);
        flag("policy", &self.policy);
        flag("kind", &self.kind);
        flag("user", &self.user);
        for decision in &self.decision {
            out.push(format!(
                "--decision {}",
                decision.to_possible_value().map(|v| v.get_name().to_owned()).unwrap_or_default()
            ));
        }
        out
    }
}

impl ReportArgs {
    fn run(self, shared: SharedArgs) -> anyhow::Result<ExitCode> {
        let paths = shared.logs.paths()?;
        let filter = shared.filter.filter()?;
        let scope = Scope {
            since: filter.since,
            until: filter.until,
            filters: shared.filter.describe(),
            table_limit: self.table_limit,
            top: self.top,
        };
        let mut reader = LogReader::open(&paths, filter)?;
        let mut report = Report::new(scope);
        while let Some(entry) = reader.next_entry() {
            warn(&mut reader);
            report.add(entry);
        }
        warn(&mut reader);
        let data = report.finish(&reader.files(), SystemTime::now());
        if self.html == Path::new("-") {
            let mut out = io::BufWriter::new(io::stdout().lock());
            report::html::write(&data, &mut out)?;
        } else {
            // Written beside, then renamed: an interrupted run leaves no
            // half page where an old report was.
            let partial = self.html.with_extension("html.partial");
            let file = File::create(&partial).with_context(|| format!("creating {}", partial.display()))?;
            let mut out = io::BufWriter::new(file);
            report::html::write(&data, &mut out).with_context(|| format!("writing {}", partial.display()))?;
            drop(out);
            std::fs::rename(&partial, &self.html).with_context(|| format!("writing {}", self.html.display()))?;
            eprintln!(
                "wrote {} ({} records, the newest {} in its table)",
                self.html.display(),
                data.counts.total,
                data.table.rows.len()
            );
        }
        Ok(ExitCode::SUCCESS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<AuditArgs, clap::Error> {
        let args = super::super::Args::try_parse_from(std::iter::once("berth").chain(args.iter().copied()))?;
        match args.command {
            super::super::Command::Audit(audit) => Ok(audit),
            other => panic!("not `berth audit`: {other:?}"),
        }
    }

    #[test]
    fn the_shared_options_go_before_or_after_summary() {
        let orders: [&[&str]; 3] = [
            &["audit", "--log", "a.log", "--since", "1h", "-n", "pulsar", "-o", "json", "summary", "--top", "5"],
            &["audit", "summary", "--log", "a.log", "--since", "1h", "-n", "pulsar", "-o", "json", "--top", "5"],
            &[
                "audit",
                "--log",
                "a.log",
                "-o",
                "json",
                "summary",
                "--top",
                "5",
                "--namespace",
                "pulsar",
                "--since",
                "1h",
            ],
        ];
        for args in orders {
            let audit = parse(args).unwrap_or_else(|err| panic!("{args:?}: {err}"));
            assert!(matches!(audit.command, Some(AuditCommand::Summary(SummaryArgs { top: 5 }))), "{args:?}");
            assert_eq!(audit.shared.logs.logs, [PathBuf::from("a.log")], "{args:?}");
            assert_eq!(audit.shared.filter.since.as_deref(), Some("1h"), "{args:?}");
            assert_eq!(audit.shared.filter.namespace, ["pulsar"], "{args:?}");
            assert_eq!(audit.shared.output, Output::Json, "{args:?}");
        }
        let list = parse(&["audit", "--log", "a.log", "--decision", "denied"]).expect("the list parses");
        assert!(list.command.is_none());
        assert_eq!(list.shared.logs.logs, [PathBuf::from("a.log")]);
        assert_eq!(list.shared.output, Output::Table);
        let summary = parse(&["audit", "summary"]).expect("no options at all");
        assert!(summary.shared.logs.logs.is_empty() && summary.shared.output == Output::Table);
    }

    #[test]
    fn follow_is_for_the_list_only() {
        assert!(parse(&["audit", "summary", "--follow"]).is_err());
        let err = parse(&["audit", "--follow", "summary"]).expect("parses").run().expect_err("refused");
        assert!(err.to_string().contains("--follow"), "{err}");
    }
}
