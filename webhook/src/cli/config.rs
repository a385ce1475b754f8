//! `berth config`: what berth embeds, so an author can read what they
//! build on.

use crate::config::{DEFAULT_INCLUDE, DEFAULT_POLICY_FILES};
use std::io::Write as _;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct ConfigArgs {
    #[command(subcommand)]
    command: ConfigCommand,
}

#[derive(Debug, clap::Subcommand)]
enum ConfigCommand {
    /// Print the embedded default policy configuration (what berth runs
    /// without --config, and what `include: [builtin:default]` runs before
    /// a file's own policies), one YAML document per file.
    Default,
}

impl ConfigArgs {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        match self.command {
            ConfigCommand::Default => {
                let mut out = std::io::stdout().lock();
                writeln!(out, "# berth's embedded default ({DEFAULT_INCLUDE}): these files, in this order.")?;
                for (path, text) in DEFAULT_POLICY_FILES {
                    writeln!(out, "---\n# {path}")?;
                    out.write_all(text.as_bytes())?;
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}
