//! The C allocator: its arenas, one per core, and its free pages given back between phases.
//!
//! glibc's `malloc` lets threads spread over up to eight arenas per core, and memory freed
//! into an arena serves only the threads allocating from it. An import allocates parsed labels
//! on its parsing threads, heads and index entries on the runtime's threads: the memory freed
//! on one side sat idle while the other grew. Measured on 2 cores, a million new series
//! imported in about 7.8 s either way: peak resident memory 524-536 MB with glibc's default,
//! 455 MB with two arenas (one arena: 454 MB, but 9.7 s). `MALLOC_ARENA_MAX` (or
//! `GLIBC_TUNABLES` naming `arena_max`) in the environment wins.

/// Limits glibc's arenas to the number of cores, unless the environment chose. Call first
/// thing in `main`, before any other thread exists.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub(crate) fn limit_to_cores() {
    let chosen = std::env::var_os("MALLOC_ARENA_MAX").is_some()
        || std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("arena_max"));
    if chosen {
        return;
    }
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let arenas = libc::c_int::try_from(cores).unwrap_or(libc::c_int::MAX);
    // SAFETY: `mallopt` only sets one of malloc's tuning parameters (it takes malloc's own
    // lock); it is called before any other thread exists, with a valid parameter.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, arenas);
    }
}

/// Other platforms keep their allocator's behaviour.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub(crate) fn limit_to_cores() {}

/// Hands the allocator's free pages back to the OS (glibc's `malloc_trim`), after a phase
/// that freed much memory in small pieces (an import's parsed labels) and before one that
/// allocates again (closing: every head flushed), so that the pages sitting free between
/// live allocations stop counting as resident.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub(crate) fn give_back_free_pages() {
    // SAFETY: `malloc_trim` takes malloc's locks and only releases memory malloc holds free;
    // no pointer is passed.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Other platforms keep their allocator's behaviour.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub(crate) fn give_back_free_pages() {}
