//! The C allocator: its arenas, one per core plus the main thread's, large blocks mapped on
//! their own, and its free pages given back between phases.
//!
//! glibc's `malloc` lets threads spread over up to eight arenas per core, and memory freed
//! into an arena serves only the threads allocating from it. An import allocates parsed labels
//! on its parsing threads, heads and index entries on the runtime's threads: the memory freed
//! on one side sat idle while the other grew. Measured on 2 cores, a million new series
//! imported in about 7.8 s either way: peak resident memory 524-536 MB with glibc's default,
//! 455 MB with two arenas (one arena: 454 MB, but 9.7 s).
//!
//! But glibc ties each thread to one arena for good, and the main thread has its own: with
//! as many arenas as cores, a runtime worker could share one with the other worker, and every
//! allocation of a query decoding on both took that arena's lock in turn. Seen in the server:
//! cold Q2 over HTTP 21.6 ms (Q3 57 ms) in one run, against 8.4-8.6 ms (Q3 39 ms) with one
//! arena more or eight a core, in process 7.9 ms; whether it happened depended on the order
//! the threads first allocated. One arena more than the cores gives the main thread and each
//! worker its own: the million new series imported peaked at 242 MB against 238 with two.
//!
//! glibc also raises its threshold for mapping a block on its own (from 128 KiB up to
//! 32 MiB) each time it frees such a block, so that once the index's large tables have grown
//! a few times, every table of the database's shards (hundreds of KiB each, growing by
//! doubling) comes from the arenas, and the old copies left behind stay resident. A fixed
//! threshold of 256 KiB keeps large blocks mapped (grown in place, given back when freed):
//! the same import of a million series peaked at 231-233 MB resident instead of 264-269, in
//! the same time, and 10M points of 1,000 series in the same time.
//!
//! `MALLOC_ARENA_MAX` and `MALLOC_MMAP_THRESHOLD_` (or `GLIBC_TUNABLES` naming `arena_max`
//! or `mmap_threshold`) in the environment win.

/// Blocks of at least this many bytes are mapped on their own (see the module doc).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 256 << 10;

/// Limits glibc's arenas to the number of cores plus one and fixes its threshold for mapping large
/// blocks, unless the environment chose. Call first thing in `main`, before any other thread
/// exists.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub(crate) fn configure() {
    let tunables = std::env::var("GLIBC_TUNABLES").unwrap_or_default();
    let chosen = |variable: &str, tunable: &str| {
        std::env::var_os(variable).is_some() || tunables.contains(tunable)
    };
    if !chosen("MALLOC_ARENA_MAX", "arena_max") {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let arenas = libc::c_int::try_from(cores.saturating_add(1)).unwrap_or(libc::c_int::MAX);
        // SAFETY: `mallopt` only sets one of malloc's tuning parameters (it takes malloc's
        // own lock); it is called before any other thread exists, with a valid parameter.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, arenas);
        }
    }
    if !chosen("MALLOC_MMAP_THRESHOLD_", "mmap_threshold") {
        // SAFETY: as above.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        }
    }
}

/// Other platforms keep their allocator's behaviour.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub(crate) fn configure() {}

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
