//! The command line: typed arguments, one module per subcommand.

mod audit;
mod certs;
mod config;
mod eval;
mod plugin;
mod serve;
mod test;

use crate::runtime::{ArtifactCache, Runtime, RuntimeOptions};
use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(name = "berth", version, about = "Kubernetes admission webhook with WebAssembly policies")]
pub struct Args {
    #[command(subcommand)]
    command: Command,
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve /mutate and /validate over HTTPS for kube-apiserver.
    // Boxed: its options are most of the enum's size.
    Serve(Box<serve::ServeArgs>),
    /// Run policies against AdmissionReview files, offline, exactly as the
    /// server would.
    Eval(eval::EvalArgs),
    /// Start, build and pin a policy plugin in Rust, JavaScript, Python or Go.
    Plugin(plugin::PluginArgs),
    /// Run declarative policy tests (`*.test.yaml`): reviews or objects,
    /// and what berth must answer, through the server's own path.
    Test(test::TestArgs),
    /// Read the audit log: denials, policy errors and mutations, from rotated
    /// files and several replicas' logs merged by time.
    Audit(audit::AuditArgs),
    /// Print the embedded default policy configuration, the one a
    /// berth.yaml takes in with `include: [builtin:default]`.
    Config(config::ConfigArgs),
    /// Create a CA and a serving certificate for the webhook's Service, or
    /// renew the certificate under that CA.
    Certs(certs::CertsArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Options every subcommand that loads plugins shares.
#[derive(Debug, Clone, clap::Args)]
struct RuntimeArgs {
    /// Keep compiled plugins here between runs (default: $BERTH_CACHE_DIR,
    /// else ~/.cache/berth). Must be writable only by berth.
    #[arg(long, env = "BERTH_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Do not cache compiled plugins. Wins over --cache-dir and
    /// $BERTH_CACHE_DIR (an explicit flag beats the environment).
    #[arg(long)]
    no_cache: bool,
    /// The most the cache directory may hold (Ki, Mi, Gi or bytes). Past
    /// it, compiled plugins no loaded policy uses are removed first, then
    /// the least recently used. In a pod: the cache volume's sizeLimit.
    /// [default: 256Mi]
    #[arg(long, default_value_t = crate::runtime::DEFAULT_CACHE_SIZE_LIMIT, hide_default_value = true, value_parser = parse_cache_size)]
    cache_size_limit: u64,
    /// Refuse every policy whose plugin file has no `sha256` pin (bundled
    /// `builtin:` plugins are pinned by the binary). `berth serve` applies
    /// it to every configuration reload too.
    #[arg(long)]
    require_pinned: bool,
}

impl RuntimeArgs {
    fn options(&self) -> RuntimeOptions {
        let cache = match (&self.cache_dir, self.no_cache) {
            (_, true) => ArtifactCache::disabled(),
            (Some(dir), false) => ArtifactCache::at(dir),
            (None, false) => ArtifactCache::from_env(),
        };
        RuntimeOptions { cache: cache.with_size_limit(self.cache_size_limit), ..RuntimeOptions::default() }
    }

    fn runtime(&self) -> anyhow::Result<Runtime> {
        Ok(Runtime::new(self.options())?)
    }
}

fn parse_cache_size(text: &str) -> Result<u64, String> {
    crate::config::parse_byte_size(text).ok_or_else(|| format!("{text:?} is not a size; write 256Mi, 1Gi or bytes"))
}

/// The `berth` binary: parse the command line, run it, and say why it
/// failed. The error is printed here rather than returned from `main`,
/// whose `Debug` print adds a Rust backtrace when RUST_BACKTRACE is set:
/// noise on a user's mistake.
pub fn main() -> ExitCode {
    match Args::parse().run() {
        Ok(code) => code,
        // `berth test --output json | head`: the reader had enough.
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("Error: {}", crate::error_chain(err.as_ref()));
            ExitCode::FAILURE
        }
    }
}

/// Whether writing the output failed because its reader went away.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

impl Args {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        // `berth test` reports every outcome in its table; a policy failing
        // on purpose in a case is not news for the log (BERTH_LOG shows it,
        // and the plugins' own log lines).
        let default_filter = match self.command {
            Command::Test(_) => "off",
            _ => "info,wasmtime=warn,cranelift=warn",
        };
        init_logging(self.log_format, default_filter);
        match self.command {
            Command::Serve(args) => args.run(),
            Command::Eval(args) => args.run(),
            Command::Plugin(args) => args.run(),
            Command::Test(args) => args.run(),
            Command::Audit(args) => args.run(),
            Command::Config(args) => args.run(),
            Command::Certs(args) => args.run(),
        }
    }
}

fn init_logging(format: LogFormat, default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("BERTH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    // Colour only a terminal: a file or `kubectl logs` would show the codes.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
