//! `berth test`'s output: a pass/fail table for people, or JSON for CI.

use super::{CaseResult, FileResult};
use serde_json::json;
use std::io::{self, Write};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
}

/// Every file's results, and the totals.
#[derive(Debug, Default)]
pub struct Report {
    pub files: Vec<FileResult>,
}

impl Report {
    /// Cases that passed and failed; a file that could not run counts as
    /// one failure.
    pub fn totals(&self) -> (usize, usize) {
        let passed = self.files.iter().flat_map(|file| &file.cases).filter(|case| case.passed()).count();
        let failed_cases = self.files.iter().flat_map(|file| &file.cases).filter(|case| !case.passed()).count();
        let failed_files = self.files.iter().filter(|file| file.error.is_some()).count();
        (passed, failed_cases + failed_files)
    }

    pub fn passed(&self) -> bool {
        self.totals().1 == 0
    }

    pub fn write(&self, format: Format, out: &mut impl Write) -> io::Result<()> {
        match format {
            Format::Table => self.table(out),
            Format::Json => {
                serde_json::to_writer_pretty(&mut *out, &self.json())?;
                writeln!(out)
            }
        }
    }

    fn table(&self, out: &mut impl Write) -> io::Result<()> {
        for file in &self.files {
            writeln!(out, "{}", file.path.display())?;
            if let Some(error) = &file.error {
                writeln!(out, "  FAIL  the file cannot run: {error}")?;
            }
            let width = file.cases.iter().map(|case| case.name.chars().count()).max().unwrap_or(0);
            for case in &file.cases {
                let mark = if case.passed() { "ok  " } else { "FAIL" };
                let ms = case.elapsed.as_secs_f64() * 1000.0;
                writeln!(out, "  {mark}  {:<width$}  {ms:>7.1} ms", case.name)?;
                for failure in &case.failures {
                    write_indented(out, failure)?;
                }
            }
        }
        let (passed, failed) = self.totals();
        writeln!(out, "berth test: {passed} passed, {failed} failed")
    }

    fn json(&self) -> serde_json::Value {
        let (passed, failed) = self.totals();
        let files: Vec<_> = self
            .files
            .iter()
            .map(|file| {
                json!({
                    "path": file.path,
                    "passed": file.passed(),
                    "error": file.error,
                    "cases": file.cases.iter().map(case_json).collect::<Vec<_>>(),
                })
            })
            .collect();
        json!({"passed": passed, "failed": failed, "files": files})
    }
}

fn case_json(case: &CaseResult) -> serde_json::Value {
    json!({
        "name": case.name,
        "passed": case.passed(),
        "failures": case.failures,
        "elapsedMs": case.elapsed.as_secs_f64() * 1000.0,
    })
}

/// A failure under its case, its later lines (a diff) kept in line.
fn write_indented(out: &mut impl Write, text: &str) -> io::Result<()> {
    let mut lines = text.lines();
    if let Some(first) = lines.next() {
        writeln!(out, "        - {first}")?;
    }
    for line in lines {
        writeln!(out, "          {line}")?;
    }
    Ok(())
}
