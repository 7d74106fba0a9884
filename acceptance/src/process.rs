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

/// How many of process `pid`'s TCP sockets are connected to a peer whose IPv4 address
/// `from` accepts (read from `/proc/<pid>/fd` and the namespace's `/proc/<pid>/net/tcp`).
pub fn tcp_sockets_from(pid: u32, from: impl Fn(std::net::Ipv4Addr) -> bool) -> usize {
    let inodes: std::collections::HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter_map(|link| {
            let link = link.to_string_lossy().into_owned();
            Some(
                link.strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .to_string(),
            )
        })
        .collect();
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // rem_address is field 2 (ADDR:PORT, the address's four bytes read as a native
            // u32, in hex), the inode field 9.
            let remote = fields
                .get(2)
                .and_then(|a| a.split_once(':'))
                .and_then(|(hex, _)| u32::from_str_radix(hex, 16).ok())
                .map(|raw| std::net::Ipv4Addr::from(raw.to_ne_bytes()));
            fields.len() > 9 && inodes.contains(fields[9]) && remote.is_some_and(&from)
        })
        .count()
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
