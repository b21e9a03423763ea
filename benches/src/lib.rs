//! Benchmarks live in `benches/`; this library holds what several of them share.

/// Resident memory of process `pid` (`"self"` for this one) in bytes, from the `VmRSS` line
/// of `/proc/<pid>/status`; `None` where there is no such file (not Linux, a process gone).
pub fn rss_bytes(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
