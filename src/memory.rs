//! Giving freed heap back to the operating system.
//!
//! Opening a large store and loading every open case's SLA plan allocate
//! hundreds of megabytes that are freed once start-up is done, but glibc's
//! allocator keeps freed memory in its arenas, so the process would sit at
//! its start-up peak for good. Trimming once after start-up returns it.

/// Returns freed heap memory to the OS (glibc only; elsewhere a no-op).
/// Returns whether anything was released.
pub fn trim() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // The crate's one `unsafe`: an FFI call with no arguments to check.
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
