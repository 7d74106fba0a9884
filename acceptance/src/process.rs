//! What the tests and the benchmark read about a running process from `/proc`: its resident
//! memory (now and at its peak) and its open file descriptors.

/// Resident memory of a process now, in bytes (`VmRSS`); `None` when it is gone.
pub fn resident(pid: u32) -> Option<u64> {
    status_bytes(pid, "VmRSS:")
}

/// Current resident memory of a process, in bytes (`VmRSS`; 0 if it cannot be read).
pub fn rss(pid: u32) -> u64 {
    resident(pid).unwrap_or(0)
}

/// Peak resident memory of a process, in bytes (`VmHWM`; 0 if it cannot be read).
pub fn peak_rss(pid: u32) -> u64 {
    status_bytes(pid, "VmHWM:").unwrap_or(0)
}

/// How many file descriptors a process has open (0 if it cannot be read).
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |dir| dir.count())
}

/// A `kB` line of `/proc/<pid>/status` (`field` with its colon), in bytes.
fn status_bytes(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map(|kb| kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_resident_memory_and_open_files() {
        let me = std::process::id();
        assert!(rss(me) > 0);
        assert!(peak_rss(me) >= rss(me));
        assert!(open_fds(me) > 0);
        assert_eq!(resident(u32::MAX), None);
    }
}
