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
        /// Also set the new sha256 in this berth.yaml, in place, on every
        /// policy whose plugin is the built file (by path, else by file
        /// name); the rest of the file, comments too, stays as it is.
        #[arg(long, value_name = "FILE")]
        pin: Option<PathBuf>,
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
            PluginCommand::Build { dir, pin, runtime } => {
                let built = project::build(&dir)?;
                // What berth would refuse, it refuses here, not in the cluster.
                runtime.runtime()?.load(&built.path.display().to_string(), &built.bytes)?;
                print_built(&built, &dir)?;
                if let Some(config) = pin {
                    let count = pin_in_file(&config, &built)?;
                    println!("\npinned {count} polic{} in {}", if count == 1 { "y" } else { "ies" }, config.display());
                }
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
    let at = lines.iter().position(|line| plugin_value(line).is_some_and(|value| value == file_name))?;
    Some(with_pins(&lines, &[at], sha256))
}

/// `--pin FILE`: set the built component's sha256, in place, on every
/// policy in FILE whose plugin is that component: the path, relative to
/// FILE's directory, names the built file; else (a path in the cluster, say
/// /plugins/NAME.wasm) the file name is the component's. Returns how many.
fn pin_in_file(config: &Path, built: &Built) -> anyhow::Result<usize> {
    use anyhow::Context as _;
    let text = std::fs::read_to_string(config).with_context(|| format!("reading {}", config.display()))?;
    let sha256 = hex::encode(sha2::Sha256::digest(&built.bytes));
    let base = config.parent().unwrap_or(Path::new("."));
    let component = std::fs::canonicalize(&built.path).ok();
    let file_name = built.path.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let plugins: Vec<(usize, &str)> = lines
        .iter()
        .enumerate()
        .filter(|(_, line)| !line.trim_start().starts_with('#'))
        .filter_map(|(at, line)| Some((at, plugin_value(line)?)))
        .collect();
    let same_file = |value: &str| component.is_some() && std::fs::canonicalize(base.join(value)).ok() == component;
    let mut at: Vec<usize> = plugins.iter().filter(|(_, value)| same_file(value)).map(|(at, _)| *at).collect();
    if at.is_empty() {
        at = plugins
            .iter()
            .filter(|(_, value)| Path::new(value).file_name().is_some_and(|name| name.to_string_lossy() == file_name))
            .map(|(at, _)| *at)
            .collect();
    }
    if at.is_empty() {
        anyhow::bail!(
            "no policy in {} has `plugin:` {file_name} (or a path to {})",
            config.display(),
            built.path.display()
        );
    }
    let mut out = with_pins(&lines, &at, &sha256);
    if !text.ends_with('\n') {
        out.pop();
    }
    // Written aside and renamed, so that a berth watching the file reads the
    // old pin or the new one, never half a file.
    let dir = config.parent().filter(|dir| !dir.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut tmp =
        tempfile::NamedTempFile::new_in(dir).with_context(|| format!("writing beside {}", config.display()))?;
    tmp.write_all(out.as_bytes()).with_context(|| format!("writing beside {}", config.display()))?;
    if let Ok(meta) = std::fs::metadata(config) {
        let _ = std::fs::set_permissions(tmp.path(), meta.permissions());
    }
    tmp.persist(config).with_context(|| format!("replacing {}", config.display()))?;
    Ok(at.len())
}

/// The value of a `plugin:` line (`- plugin:` too), unquoted.
fn plugin_value(line: &str) -> Option<&str> {
    let line = line.trim_start();
    let line = line.strip_prefix("- ").unwrap_or(line).trim_start();
    let value = line.strip_prefix("plugin:")?.trim();
    let value = value.split(" #").next().unwrap_or(value).trim();
    Some(value.trim_matches('"').trim_matches('\''))
}

/// `lines` with `sha256:` set under each `plugin:` line in `at`: an old
/// pin of the same policy goes, the new one follows its plugin line.
fn with_pins(lines: &[&str], at: &[usize], sha256: &str) -> String {
    // Each policy's keys' indent, and its own lines: from its `- ` to the
    // next policy's.
    let policies: Vec<(String, std::ops::Range<usize>)> = at
        .iter()
        .map(|&at| {
            let line = lines[at];
            let indent = &line[..line.len() - line.trim_start().len()];
            // `- plugin: x.wasm`: the policy starts here, its keys two further in.
            let (indent, item) = if line.trim_start().starts_with("- ") {
                (format!("{indent}  "), format!("{indent}- "))
            } else {
                (indent.to_owned(), format!("{}- ", &indent[..indent.len().saturating_sub(2)]))
            };
            let start = lines[..=at].iter().rposition(|line| line.starts_with(&item)).unwrap_or(0);
            let end =
                lines[at + 1..].iter().position(|line| line.starts_with(&item)).map_or(lines.len(), |n| at + 1 + n);
            (indent, start..end)
        })
        .collect();
    let mut out = String::new();
    for (index, line) in lines.iter().enumerate() {
        let old_pin = policies.iter().any(|(indent, own)| {
            own.contains(&index) && line.strip_prefix(indent.as_str()).is_some_and(|rest| rest.starts_with("sha256:"))
        });
        if !old_pin {
            out.push_str(line);
            out.push('\n');
        }
        if let Some(n) = at.iter().position(|&a| a == index) {
            out.push_str(&format!("{}sha256: {sha256}\n", policies[n].0));
        }
    }
    out
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

    #[test]
    fn pinning_in_place_keeps_the_rest_of_the_file() {
        let text = "# mine\npolicies:\n  - name: a\n    plugin: ./a.wasm # built by berth\n    sha256: old\n    mode: mutate\n  - plugin: b.wasm\n    name: b\n  - name: a-again\n    plugin: \"a.wasm\"\n";
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(super::plugin_value(lines[3]), Some("./a.wasm"));
        assert_eq!(super::plugin_value(lines[9]), Some("a.wasm"));
        let out = super::with_pins(&lines, &[3, 9], "new");
        assert_eq!(
            out,
            "# mine\npolicies:\n  - name: a\n    plugin: ./a.wasm # built by berth\n    sha256: new\n    mode: mutate\n  - plugin: b.wasm\n    name: b\n  - name: a-again\n    plugin: \"a.wasm\"\n    sha256: new\n"
        );
        // A policy that starts with its plugin line.
        let out = super::with_pins(&lines, &[6], "new");
        assert!(out.contains("  - plugin: b.wasm\n    sha256: new\n    name: b\n"), "{out}");
        assert!(out.contains("    sha256: old\n"), "another policy's pin stays: {out}");
    }
}
