//! `berth plugin`: start a plugin project in Rust, JavaScript, Python or Go,
//! build it into a component, and print the contract.

use super::RuntimeArgs;
use crate::project::{self, Built, Language};
use sha2::Digest as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct PluginArgs {
    #[command(subcommand)]
    command: PluginCommand,
}

#[derive(Debug, clap::Subcommand)]
enum PluginCommand {
    /// Start a plugin project: a settings type, one `evaluate`, a test file
    /// with a real review, the SDK and the WIT, in a new directory.
    New {
        /// The project's name, also its policy's name.
        name: String,
        #[arg(long, value_enum)]
        lang: Language,
        /// Where to write it (default: ./NAME).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Build a project into a component with its language's toolchain,
    /// check that berth can load it, and print its pin.
    Build {
        /// The project's directory.
        #[arg(default_value = ".")]
        dir: PathBuf,
        #[command(flatten)]
        runtime: RuntimeArgs,
    },
    /// Print the WIT contract plugins export (`berth:policy`).
    Wit,
}

impl PluginArgs {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        match self.command {
            PluginCommand::New { name, lang, dir } => {
                let dir = dir.unwrap_or_else(|| PathBuf::from(&name));
                project::scaffold(&name, lang, &dir)?;
                let shown = dir.display();
                println!("wrote a {} plugin project to {shown}", lang.as_str());
                println!("  build it:  berth plugin build {shown}");
                println!("  test it:   berth test {shown}");
                println!("  read:      {shown}/README.md");
            }
            PluginCommand::Build { dir, runtime } => {
                let built = project::build(&dir)?;
                // What berth would refuse, it refuses here, not in the cluster.
                runtime.runtime()?.load(&built.path.display().to_string(), &built.bytes)?;
                print_built(&built, &dir)?;
            }
            PluginCommand::Wit => print!("{}", project::wit()),
        }
        Ok(ExitCode::SUCCESS)
    }
}

fn print_built(built: &Built, dir: &Path) -> anyhow::Result<()> {
    let sha256 = hex::encode(sha2::Sha256::digest(&built.bytes));
    let mut out = std::io::stdout().lock();
    writeln!(out, "built {} (a {} project)", built.path.display(), built.language.as_str())?;
    writeln!(out, "  size    {} bytes ({:.1} MiB)", built.bytes.len(), built.bytes.len() as f64 / (1 << 20) as f64)?;
    writeln!(out, "  sha256  {sha256}")?;
    writeln!(out, "  loads   in berth (berth:policy@0.3.0), compiled and cached")?;
    writeln!(out)?;
    writeln!(out, "Paste into berth.yaml (`plugin:` is where berth reads the file; deploy/README.md ships it):")?;
    let file_name = format!("{}.wasm", built.name);
    let entry = std::fs::read_to_string(dir.join("berth.yaml"))
        .ok()
        .and_then(|text| pinned(&text, &file_name, &sha256))
        .unwrap_or_else(|| {
            format!(
                "policies:\n  - name: {name}\n    plugin: {file_name}\n    sha256: {sha256}\n    mode: mutate\n",
                name = built.name
            )
        });
    write!(out, "{entry}")?;
    Ok(())
}

/// The project's berth.yaml, without its comments, with `sha256:` set on
/// the policy whose plugin is `file_name`; `None` if no policy names it.
fn pinned(text: &str, file_name: &str, sha256: &str) -> Option<String> {
    let lines: Vec<&str> = text.lines().filter(|line| !line.trim_start().starts_with('#')).collect();
    let at = lines.iter().position(|line| {
        line.trim_start().strip_prefix("plugin:").is_some_and(|value| value.trim().trim_matches('"') == file_name)
    })?;
    let indent = &lines[at][..lines[at].len() - lines[at].trim_start().len()];
    // The policy's own lines: from its `- ` to the next policy's.
    let item = format!("{}- ", &indent[..indent.len().saturating_sub(2)]);
    let start = lines[..=at].iter().rposition(|line| line.starts_with(&item)).unwrap_or(0);
    let end = lines[at..].iter().position(|line| line.starts_with(&item)).map_or(lines.len(), |n| at + n);
    let mut out = String::new();
    for (index, line) in lines.iter().enumerate() {
        let old_pin =
            (start..end).contains(&index) && line.strip_prefix(indent).is_some_and(|l| l.starts_with("sha256:"));
        if !old_pin {
            out.push_str(line);
            out.push('\n');
        }
        if index == at {
            out.push_str(&format!("{indent}sha256: {sha256}\n"));
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::pinned;

    #[test]
    fn the_pin_goes_under_the_plugin_once() {
        let text = "# c\npolicies:\n  - name: a\n    plugin: a.wasm\n    sha256: old\n    mode: mutate\n  - name: b\n    plugin: b.wasm\n    sha256: keep\n    mode: validate\n";
        let out = pinned(text, "a.wasm", "abc").unwrap();
        assert_eq!(
            out,
            "policies:\n  - name: a\n    plugin: a.wasm\n    sha256: abc\n    mode: mutate\n  - name: b\n    plugin: b.wasm\n    sha256: keep\n    mode: validate\n"
        );
        let config =
            crate::config::Config::parse(&out.replace("abc", &"a".repeat(64)).replace("keep", &"b".repeat(64)), "x")
                .unwrap();
        assert_eq!(config.policies[0].sha256.as_deref(), Some("a".repeat(64).as_str()));
        assert!(pinned(text, "c.wasm", "abc").is_none());
    }
}
