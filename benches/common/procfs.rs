//! What the kernel tells in /proc: resident memory, bytes written, CPU ticks of threads and
//! processes.

use std::collections::HashMap;

use super::Res;

/// Resident set size of this process, from `/proc/self/status`.
pub fn rss_bytes() -> Res<u64> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| format!("cannot read /proc/self/status: {e}"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .ok_or("no VmRSS line in /proc/self/status")?;
    let kb: u64 = line
        .trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .map_err(|_| format!("cannot parse {line:?}"))?;
    Ok(kb * 1024)
}

/// Bytes this process caused to be sent to the storage layer (`write_bytes` of
/// `/proc/self/io`): pages dirtied and flushed, what a durable commit costs the disk.
pub fn written_bytes() -> Res<u64> {
    let io = std::fs::read_to_string("/proc/self/io")
        .map_err(|e| format!("cannot read /proc/self/io: {e}"))?;
    io.lines()
        .find_map(|l| l.strip_prefix("write_bytes:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| "no write_bytes line in /proc/self/io".into())
}

/// utime + stime (clock ticks) from a `/proc/.../stat` line.
fn stat_ticks(stat: &str) -> Option<u64> {
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// id → (name, CPU ticks) of every numbered entry of `dir` but `except`; one that vanishes
/// while being read is left out.
fn ticks_in(dir: &str, except: Option<u32>) -> HashMap<u32, (String, u64)> {
    let mut found = HashMap::new();
    if let Ok(dir) = std::fs::read_dir(dir) {
        for e in dir.flatten() {
            let Some(id) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if Some(id) == except {
                continue;
            }
            let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
            let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            if let Some(t) = stat_ticks(&stat) {
                found.insert(id, (comm.trim_end().to_string(), t));
            }
        }
    }
    found
}

/// tid → (name, CPU ticks) of every thread of this process.
pub fn own_threads() -> HashMap<u32, (String, u64)> {
    ticks_in("/proc/self/task", None)
}

/// pid → (name, CPU ticks) of every process but this one.
pub fn other_processes() -> HashMap<u32, (String, u64)> {
    ticks_in("/proc", Some(std::process::id()))
}

/// The machine's CPU ticks from `/proc/stat`: user nice system idle iowait irq softirq steal.
pub fn machine_ticks() -> [u64; 8] {
    let mut machine = [0u64; 8];
    if let Ok(s) = std::fs::read_to_string("/proc/stat") {
        if let Some(line) = s.lines().next() {
            for (slot, v) in machine.iter_mut().zip(line.split_whitespace().skip(1)) {
                *slot = v.parse().unwrap_or(0);
            }
        }
    }
    machine
}
