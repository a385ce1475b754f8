use clap::Parser;

fn main() -> anyhow::Result<std::process::ExitCode> {
    berth::cli::Args::parse().run()
}
