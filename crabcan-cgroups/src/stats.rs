//! Usage counters of a container's cgroup in the shape of runc's `events --stats` data
//! (field names and units as runc prints them, so engines parse them unchanged).

use crabcan_errors::Result;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

/// Nanoseconds per USER_HZ tick of cpuacct.stat (USER_HZ is 100 on Linux).
const NS_PER_TICK: u64 = 10_000_000;

/// All counters.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Stats {
    /// CPU time and throttling.
    pub cpu: Cpu,
    /// Memory use and limits.
    pub memory: Memory,
    /// Process count and limit.
    pub pids: Pids,
    /// Block I/O.
    pub blkio: Blkio,
    /// Huge page use per page size ("2MB").
    pub hugetlb: BTreeMap<String, Hugetlb>,
}

/// CPU counters.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Cpu {
    /// Time used.
    pub usage: CpuUsage,
    /// Quota throttling.
    pub throttling: Throttling,
}

/// CPU time in nanoseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CpuUsage {
    /// Total.
    #[serde(skip_serializing_if = "is_zero")]
    pub total: u64,
    /// Per CPU (v1 only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu: Vec<u64>,
    /// In the kernel.
    pub kernel: u64,
    /// In user space.
    pub user: u64,
}

/// Quota throttling counters.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Throttling {
    /// Periods with the quota in force.
    #[serde(skip_serializing_if = "is_zero")]
    pub periods: u64,
    /// Periods in which the quota was used up.
    #[serde(rename = "throttledPeriods", skip_serializing_if = "is_zero")]
    pub throttled_periods: u64,
    /// Nanoseconds spent throttled.
    #[serde(rename = "throttledTime", skip_serializing_if = "is_zero")]
    pub throttled_time: u64,
}

/// One memory counter with its limit.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MemoryEntry {
    /// The limit (u64::MAX for none).
    pub limit: u64,
    /// Current use.
    #[serde(skip_serializing_if = "is_zero")]
    pub usage: u64,
    /// Highest use seen.
    #[serde(skip_serializing_if = "is_zero")]
    pub max: u64,
    /// How often the limit was hit.
    pub failcnt: u64,
}

/// Memory counters.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Memory {
    /// Page cache.
    #[serde(skip_serializing_if = "is_zero")]
    pub cache: u64,
    /// Memory.
    pub usage: MemoryEntry,
    /// Memory plus swap.
    pub swap: MemoryEntry,
    /// Kernel memory (v1).
    pub kernel: MemoryEntry,
    /// Kernel TCP memory (v1).
    #[serde(rename = "kernelTCP")]
    pub kernel_tcp: MemoryEntry,
    /// memory.stat as read.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub raw: BTreeMap<String, u64>,
}

/// Process counters.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Pids {
    /// Processes now.
    #[serde(skip_serializing_if = "is_zero")]
    pub current: u64,
    /// The limit (0: none).
    #[serde(skip_serializing_if = "is_zero")]
    pub limit: u64,
}

/// One block I/O counter.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BlkioEntry {
    /// Device major.
    #[serde(skip_serializing_if = "is_zero")]
    pub major: u64,
    /// Device minor.
    #[serde(skip_serializing_if = "is_zero")]
    pub minor: u64,
    /// "Read", "Write", …
    #[serde(skip_serializing_if = "String::is_empty")]
    pub op: String,
    /// The count.
    #[serde(skip_serializing_if = "is_zero")]
    pub value: u64,
}

/// Block I/O counters.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Blkio {
    /// Bytes per device and operation.
    #[serde(
        rename = "ioServiceBytesRecursive",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub io_service_bytes_recursive: Vec<BlkioEntry>,
    /// Operations per device and operation.
    #[serde(rename = "ioServicedRecursive", skip_serializing_if = "Vec::is_empty")]
    pub io_serviced_recursive: Vec<BlkioEntry>,
}

/// Huge page counters of one page size.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Hugetlb {
    /// Bytes in use.
    #[serde(skip_serializing_if = "is_zero")]
    pub usage: u64,
    /// Highest use seen (v1).
    #[serde(skip_serializing_if = "is_zero")]
    pub max: u64,
    /// How often the limit was hit.
    pub failcnt: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

fn num(dir: &Path, file: &str) -> u64 {
    fs::read_to_string(dir.join(file))
        .ok()
        .and_then(|t| parse_num(t.trim()))
        .unwrap_or(0)
}

/// A counter file's number; "max" is u64::MAX (no limit).
pub(crate) fn parse_num(t: &str) -> Option<u64> {
    if t == "max" {
        return Some(u64::MAX);
    }
    t.parse().ok()
}

/// "key value" lines (memory.stat, cpu.stat, cpuacct.stat).
pub fn parse_flat_keyed(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

fn keyed(dir: &Path, file: &str) -> BTreeMap<String, u64> {
    fs::read_to_string(dir.join(file))
        .map(|t| parse_flat_keyed(&t))
        .unwrap_or_default()
}

/// v1 blkio recursive files: "8:0 Read 4096" lines (and a final "Total N").
pub fn parse_v1_blkio(text: &str) -> Vec<BlkioEntry> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let (dev, op, v) = (it.next()?, it.next()?, it.next()?);
            let (ma, mi) = dev.split_once(':')?;
            Some(BlkioEntry {
                major: ma.parse().ok()?,
                minor: mi.parse().ok()?,
                op: op.to_string(),
                value: v.parse().ok()?,
            })
        })
        .collect()
}

/// v2 io.stat: "8:0 rbytes=1 wbytes=2 rios=3 wios=4 …" → (bytes, operations) entries.
pub fn parse_io_stat(text: &str) -> (Vec<BlkioEntry>, Vec<BlkioEntry>) {
    let (mut bytes, mut ios) = (Vec::new(), Vec::new());
    for l in text.lines() {
        let mut it = l.split_whitespace();
        let Some((ma, mi)) = it.next().and_then(|d| d.split_once(':')) else {
            continue;
        };
        let (Ok(major), Ok(minor)) = (ma.parse(), mi.parse()) else {
            continue;
        };
        for kv in it {
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            let Ok(value) = v.parse() else { continue };
            let (list, op) = match k {
                "rbytes" => (&mut bytes, "Read"),
                "wbytes" => (&mut bytes, "Write"),
                "rios" => (&mut ios, "Read"),
                "wios" => (&mut ios, "Write"),
                _ => continue,
            };
            list.push(BlkioEntry {
                major,
                minor,
                op: op.into(),
                value,
            });
        }
    }
    (bytes, ios)
}

/// The huge page sizes the kernel offers, as cgroup file names spell them ("2MB").
fn hugepage_sizes() -> Vec<String> {
    let Ok(entries) = fs::read_dir("/sys/kernel/mm/hugepages") else {
        return Vec::new();
    };
    let mut out: Vec<String> = entries
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_str()?.to_string();
            let kb: u64 = n
                .strip_prefix("hugepages-")?
                .strip_suffix("kB")?
                .parse()
                .ok()?;
            Some(page_size_name(kb))
        })
        .collect();
    out.sort();
    out
}

/// 2048 kB → "2MB", 1048576 kB → "1GB", 64 → "64KB".
pub fn page_size_name(kb: u64) -> String {
    if kb >= 1 << 20 && kb % (1 << 20) == 0 {
        format!("{}GB", kb >> 20)
    } else if kb >= 1 << 10 && kb % (1 << 10) == 0 {
        format!("{}MB", kb >> 10)
    } else {
        format!("{kb}KB")
    }
}

/// Reads the counters: from the v1 directory of each controller where `v1` finds one,
/// else from the v2 directory.
pub(crate) fn read_stats<'a>(
    v1: &dyn Fn(&str) -> Option<&'a Path>,
    v2: Option<&'a Path>,
) -> Result<Stats> {
    let mut s = Stats::default();
    // CPU
    if let Some(d) = v1("cpuacct") {
        s.cpu.usage.total = num(d, "cpuacct.usage");
        s.cpu.usage.percpu = fs::read_to_string(d.join("cpuacct.usage_percpu"))
            .map(|t| {
                t.split_whitespace()
                    .filter_map(|n| n.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        let st = keyed(d, "cpuacct.stat");
        s.cpu.usage.user = st.get("user").copied().unwrap_or(0) * NS_PER_TICK;
        s.cpu.usage.kernel = st.get("system").copied().unwrap_or(0) * NS_PER_TICK;
    } else if let Some(d) = v2 {
        let st = keyed(d, "cpu.stat");
        let us = |k: &str| st.get(k).copied().unwrap_or(0) * 1000;
        s.cpu.usage.total = us("usage_usec");
        s.cpu.usage.user = us("user_usec");
        s.cpu.usage.kernel = us("system_usec");
    }
    if let Some(d) = v1("cpu") {
        let st = keyed(d, "cpu.stat");
        s.cpu.throttling.periods = st.get("nr_periods").copied().unwrap_or(0);
        s.cpu.throttling.throttled_periods = st.get("nr_throttled").copied().unwrap_or(0);
        s.cpu.throttling.throttled_time = st.get("throttled_time").copied().unwrap_or(0);
    } else if let Some(d) = v2 {
        let st = keyed(d, "cpu.stat");
        s.cpu.throttling.periods = st.get("nr_periods").copied().unwrap_or(0);
        s.cpu.throttling.throttled_periods = st.get("nr_throttled").copied().unwrap_or(0);
        s.cpu.throttling.throttled_time = st.get("throttled_usec").copied().unwrap_or(0) * 1000;
    }
    // Memory
    if let Some(d) = v1("memory") {
        let entry = |prefix: &str| MemoryEntry {
            limit: num(d, &format!("{prefix}limit_in_bytes")),
            usage: num(d, &format!("{prefix}usage_in_bytes")),
            max: num(d, &format!("{prefix}max_usage_in_bytes")),
            failcnt: num(d, &format!("{prefix}failcnt")),
        };
        s.memory.usage = entry("memory.");
        s.memory.swap = entry("memory.memsw.");
        s.memory.kernel = entry("memory.kmem.");
        s.memory.kernel_tcp = entry("memory.kmem.tcp.");
        s.memory.raw = keyed(d, "memory.stat");
        s.memory.cache = s.memory.raw.get("cache").copied().unwrap_or(0);
    } else if let Some(d) = v2.filter(|d| d.join("memory.current").exists()) {
        let events = keyed(d, "memory.events");
        s.memory.usage = MemoryEntry {
            limit: num(d, "memory.max"),
            usage: num(d, "memory.current"),
            max: num(d, "memory.peak"),
            failcnt: events.get("max").copied().unwrap_or(0),
        };
        // As runc: v2's swap counters hold swap alone; report memory+swap like v1.
        s.memory.swap = MemoryEntry {
            limit: num(d, "memory.swap.max"),
            usage: num(d, "memory.swap.current") + s.memory.usage.usage,
            max: 0,
            failcnt: 0,
        };
        s.memory.raw = keyed(d, "memory.stat");
        s.memory.cache = s.memory.raw.get("file").copied().unwrap_or(0);
    }
    // Processes
    if let Some(d) = v1("pids").or(v2.filter(|d| d.join("pids.current").exists())) {
        s.pids.current = num(d, "pids.current");
        s.pids.limit = match num(d, "pids.max") {
            u64::MAX => 0,
            n => n,
        };
    }
    // Block I/O
    if let Some(d) = v1("blkio") {
        let rd = |f: &str| {
            fs::read_to_string(d.join(f))
                .map(|t| parse_v1_blkio(&t))
                .unwrap_or_default()
        };
        s.blkio.io_service_bytes_recursive = rd("blkio.throttle.io_service_bytes_recursive");
        s.blkio.io_serviced_recursive = rd("blkio.throttle.io_serviced_recursive");
    } else if let Some(d) = v2
        && let Ok(t) = fs::read_to_string(d.join("io.stat"))
    {
        let (b, i) = parse_io_stat(&t);
        s.blkio.io_service_bytes_recursive = b;
        s.blkio.io_serviced_recursive = i;
    }
    // Huge pages
    let hv1 = v1("hugetlb");
    for size in hugepage_sizes() {
        let entry = if let Some(d) = hv1 {
            Hugetlb {
                usage: num(d, &format!("hugetlb.{size}.usage_in_bytes")),
                max: num(d, &format!("hugetlb.{size}.max_usage_in_bytes")),
                failcnt: num(d, &format!("hugetlb.{size}.failcnt")),
            }
        } else if let Some(d) = v2.filter(|d| d.join(format!("hugetlb.{size}.current")).exists()) {
            Hugetlb {
                usage: num(d, &format!("hugetlb.{size}.current")),
                max: 0,
                failcnt: keyed(d, &format!("hugetlb.{size}.events"))
                    .get("max")
                    .copied()
                    .unwrap_or(0),
            }
        } else {
            continue;
        };
        s.hugetlb.insert(size, entry);
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsers() {
        assert_eq!(parse_num("max"), Some(u64::MAX));
        assert_eq!(parse_num("12"), Some(12));
        assert_eq!(parse_num("x"), None);
        let m = parse_flat_keyed("cache 4096\nrss 8192\nbad\nx y\n");
        assert_eq!(m.len(), 2);
        assert_eq!(m["rss"], 8192);
        let b = parse_v1_blkio("8:0 Read 4096\n8:0 Write 512\n8:0 Total 4608\nTotal 4608\n");
        assert_eq!(b.len(), 3);
        assert_eq!(
            (b[1].major, b[1].minor, b[1].op.as_str(), b[1].value),
            (8, 0, "Write", 512)
        );
        let (bytes, ios) =
            parse_io_stat("254:0 rbytes=10 wbytes=20 rios=1 wios=2 dbytes=0 dios=0\nbad\n");
        assert_eq!(bytes.len(), 2);
        assert_eq!(ios[1].value, 2);
        assert_eq!(bytes[0].op, "Read");
        assert_eq!(page_size_name(2048), "2MB");
        assert_eq!(page_size_name(1 << 20), "1GB");
        assert_eq!(page_size_name(64), "64KB");
    }

    #[test]
    fn json_shape_is_runcs() {
        let mut s = Stats::default();
        s.cpu.usage.total = 5;
        s.cpu.throttling.throttled_periods = 2;
        s.memory.usage.limit = 100;
        s.pids.current = 3;
        s.hugetlb.insert(
            "2MB".into(),
            Hugetlb {
                usage: 0,
                max: 0,
                failcnt: 0,
            },
        );
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["cpu"]["usage"]["total"], 5);
        assert_eq!(v["cpu"]["usage"]["kernel"], 0);
        assert!(v["cpu"]["usage"].get("percpu").is_none());
        assert_eq!(v["cpu"]["throttling"]["throttledPeriods"], 2);
        assert_eq!(v["memory"]["usage"]["limit"], 100);
        assert_eq!(v["memory"]["usage"]["failcnt"], 0);
        assert!(v["memory"].get("kernelTCP").is_some());
        assert_eq!(v["pids"]["current"], 3);
        assert_eq!(v["hugetlb"]["2MB"]["failcnt"], 0);
        assert!(v["blkio"].as_object().unwrap().is_empty());
    }
}
