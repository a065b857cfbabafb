//! Keeping the allocator's slack small (glibc only; elsewhere no-ops).
//!
//! Opening a large store and loading every open case's SLA plan allocate
//! hundreds of megabytes that are freed once start-up is done, but glibc's
//! allocator keeps freed memory in its arenas, so the process would sit at
//! its start-up peak for good. Trimming once after start-up returns it.
//!
//! glibc also gives threads up to eight arenas per core, each keeping its
//! own free memory. A restart after downtime fires every missed SLA
//! deadline from up to 128 blocking threads: with a million-case store
//! (23k-25k alerts) the process grew to 448-487 MB with the default,
//! 387-442 MB with 4 arenas and 358-372 MB with 2 (2 cores). Two arenas
//! per core are the default here: one per core cost intake a tenth of its
//! throughput, two cost nothing measurable. `MALLOC_ARENA_MAX` in the
//! environment still decides.

/// Limits glibc to two malloc arenas per core unless `MALLOC_ARENA_MAX`
/// says otherwise. Call first thing in `main`, before any thread starts.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
            return;
        }
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let arenas = libc::c_int::try_from(2 * cores).unwrap_or(libc::c_int::MAX);
        // SAFETY: mallopt takes two integers and only sets a tunable of
        // the allocator; called before any other thread exists.
        #[allow(unsafe_code)]
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, arenas);
        }
    }
}

/// Returns freed heap memory to the OS (glibc only; elsewhere a no-op).
/// Returns whether anything was released.
pub fn trim() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // One of the crate's two `unsafe` blocks, both FFI calls into the
        // allocator with no pointers to check.
        // SAFETY: malloc_trim only walks the allocator's own free lists; it
        // takes the allocator's locks and is safe to call from any thread.
        #[allow(unsafe_code)]
        unsafe {
            libc::malloc_trim(0) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}
