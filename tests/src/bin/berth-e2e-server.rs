//! The berth CLI, built inside the e2e package so its suites can start it.

fn main() -> anyhow::Result<std::process::ExitCode> {
    berth::cli::main()
}
