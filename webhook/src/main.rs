/// Each review allocates and frees many small objects on several threads;
/// mimalloc's thread-local free lists beat glibc's malloc there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    berth::allocator::no_huge_pages();
    berth::cli::main()
}
