//! Free memory from /proc/meminfo (MemAvailable), for telemetry.

/// Bytes the kernel says are available, or None where there is no procfs.
pub fn available_bytes() -> Option<u64> {
    parse(&std::fs::read_to_string("/proc/meminfo").ok()?)
}

fn parse(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_mem_available() {
        let text = "MemTotal: 100 kB\nMemAvailable:    2048 kB\n";
        assert_eq!(super::parse(text), Some(2048 * 1024));
        assert_eq!(super::parse("MemTotal: 1 kB\n"), None);
    }
}
