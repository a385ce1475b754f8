//! `berth test`: run declarative test files (`*.test.yaml`) through the
//! server's admission path, with the real plugins.

use super::RuntimeArgs;
use crate::policy_test::{Format, Report, discover, run_file};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// Test files, or directories searched for `*.test.yaml` (a plugin
    /// project, a folder of policies). Default: the current directory.
    paths: Vec<PathBuf>,
    /// `table` for people, `json` for CI.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    output: Format,
    #[command(flatten)]
    runtime: RuntimeArgs,
}

impl TestArgs {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let paths = if self.paths.is_empty() { vec![PathBuf::from(".")] } else { self.paths };
        let mut files = Vec::new();
        for path in &paths {
            files.extend(discover(path)?);
        }
        let runtime = self.runtime.runtime()?;
        let report = Report { files: files.iter().map(|file| run_file(&runtime, file)).collect() };
        report.write(self.output, &mut std::io::stdout().lock())?;
        Ok(if report.passed() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
    }
}
