//! The berth CLI, built inside the e2e package so its suites can start it:
//! the same as webhook/src/main.rs, allocator included.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    berth::cli::main()
}
