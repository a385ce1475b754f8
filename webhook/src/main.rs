fn main() -> anyhow::Result<std::process::ExitCode> {
    berth::cli::main()
}
