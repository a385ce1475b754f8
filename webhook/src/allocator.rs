//! What berth asks of its allocator (mimalloc, the global allocator in
//! `main.rs`) beyond allocating: that its memory is what it uses, not what
//! it once needed.
//!
//! A start in a big cluster parses the owner lists (~240 MB of JSON for
//! 100,000 owners, a page at a time) and keeps ~26 MB of it. Measured at
//! 100,000 owners (BENCHMARKS.md, Round 3), two things kept RSS 20-25 MiB
//! higher than it need be: mimalloc gives freed memory back after a delay,
//! and only once some later allocation on that thread gets round to it,
//! which an idle server does not do; and it asks the kernel for transparent
//! huge pages on its arenas, which makes a 2 MiB page resident whole for a
//! few bytes in use.

/// Transparent huge pages off for this process, unless the environment
/// asks for them (`MIMALLOC_ALLOW_THP=1`). Called first thing in `main`:
/// mimalloc asked for them (`MADV_HUGEPAGE`) on the arena it reserved
/// before `main`, and the kernel honours this flag on every later fault,
/// in that arena too. Paired on the admission path it cost 2-3% more CPU
/// per review, within the noise (BENCHMARKS.md, Round 3), and RSS under
/// load fell from 75-110 to 55-58 MiB.
pub fn no_huge_pages() {
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_some_and(|v| v != "0") {
        return;
    }
    // SAFETY: PR_SET_THP_DISABLE takes integers and touches no memory of
    // ours; on a kernel without it the call fails, and nothing changes.
    #[allow(unsafe_code)]
    let _ = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
}

/// Give the memory freed so far back to the system now rather than when
/// mimalloc next gets round to it. For after a large one-off job (a
/// completed list), never the admission path: it walks the calling thread's
/// pages and every arena.
pub fn release_freed() {
    // SAFETY: mi_collect has no preconditions; with `force` it frees the
    // calling thread's empty pages and purges free arena memory at once.
    #[allow(unsafe_code)]
    unsafe {
        libmimalloc_sys::mi_collect(true)
    };
}
