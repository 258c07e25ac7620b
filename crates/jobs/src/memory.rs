//! What the process holds, for the phase logs, and handing freed memory back to the system
//! between `net`'s phases.
//!
//! Why: netting frees its whole state (the id index, the refund history, thousands of hash
//! tables of a few hundred kilobytes each) just before encoding allocates the output buffers.
//! glibc keeps memory freed in the middle of its heaps, so without a trim the encoders' buffers
//! came on top of the freed state and the run's peak was after netting, not during it
//! (docs/benchmarks.md: 482-514 MB against 454-459 MB at one million lines).

/// The process's resident set now (Linux `VmRSS`), in KiB; 0 elsewhere.
pub(crate) fn rss_kb() -> u64 {
    status_kb("VmRSS:")
}

/// The process's peak resident set so far (Linux `VmHWM`), in KiB; 0 elsewhere.
pub(crate) fn peak_rss_kb() -> u64 {
    status_kb("VmHWM:")
}

fn status_kb(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Returns the free pages of every malloc arena to the system (glibc's `malloc_trim`); a no-op
/// with another C library.
pub(crate) fn return_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` has no preconditions: it only releases pages the allocator holds
    // free, and is safe to call from any thread at any time. The one `unsafe` of the
    // workspace, allowed here alone.
    #[allow(unsafe_code)]
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_os = "linux")]
    fn reads_the_resident_set_and_trims_without_harm() {
        let before = rss_kb();
        assert!(before > 0 && peak_rss_kb() >= before, "{before} KiB resident");
        let freed: Vec<Vec<u8>> = (0..64).map(|i| vec![i as u8; 256 * 1024]).collect();
        drop(freed);
        return_freed_memory();
        assert!(rss_kb() > 0);
    }
}
