//! A container's resources in the crate's own types (the shape of the runtime-spec's
//! LinuxResources) and their plan: which file of which hierarchy gets which text, on v1, v2
//! or a hybrid host. Pure; conversions follow runc 1.1 so engines see the same effect.

use crate::devices::{DeviceRule, V1Write, check_rules, v1_writes};
use crate::layout::{Layout, Where};
use crabcan_errors::{Errcode, Result};
use std::collections::BTreeMap;

/// The smallest memory limit accepted: below this not even a shell can be loaded.
pub const MIN_MEMORY_LIMIT: i64 = crate::parse::MIN_MEMORY as i64;

/// The cpu period used when only a quota is given (the kernel's default).
pub const DEFAULT_CPU_PERIOD: u64 = 100_000;

/// Memory limits, in bytes; -1 means unlimited where the runtime-spec allows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Memory {
    /// Hard limit.
    pub limit: Option<i64>,
    /// Soft limit (v1 memory.soft_limit_in_bytes, v2 memory.low).
    pub reservation: Option<i64>,
    /// Memory plus swap, as v1's memsw (v2 gets `swap - limit`).
    pub swap: Option<i64>,
    /// Kernel memory: ignored, as runc does (the kernel dropped the v1 knob).
    pub kernel: Option<i64>,
    /// Kernel TCP memory: ignored, as runc does.
    pub kernel_tcp: Option<i64>,
    /// v1 swappiness, 0..=100.
    pub swappiness: Option<u64>,
    /// v1: the OOM killer leaves the cgroup's processes alone (they wait instead).
    pub disable_oom_killer: Option<bool>,
}

/// CPU limits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cpu {
    /// v1 shares (2..=262144); v2 gets the converted weight.
    pub shares: Option<u64>,
    /// A v2 weight (1..=10000) given directly; v1 gets the converted shares.
    pub weight: Option<u64>,
    /// Quota in microseconds per period; -1 for none.
    pub quota: Option<i64>,
    /// Period in microseconds.
    pub period: Option<u64>,
    /// Real-time runtime in microseconds per real-time period (v1 only).
    pub realtime_runtime: Option<i64>,
    /// Real-time period in microseconds (v1 only).
    pub realtime_period: Option<u64>,
    /// The CPUs the container may run on ("0-3,6").
    pub cpus: Option<String>,
    /// The memory nodes it may use.
    pub mems: Option<String>,
}

/// The process limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pids {
    /// The most processes; 0 or negative: unlimited.
    pub limit: i64,
}

/// A per-device weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WeightDevice {
    /// Device major number.
    pub major: u32,
    /// Device minor number.
    pub minor: u32,
    /// Weight 10..=1000.
    pub weight: u16,
}

/// A per-device throttle: bytes or operations per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleDevice {
    /// Device major number.
    pub major: u32,
    /// Device minor number.
    pub minor: u32,
    /// The rate.
    pub rate: u64,
}

/// Block I/O limits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockIo {
    /// Default weight 10..=1000 (v1 blkio.weight; v2 converted io.weight).
    pub weight: Option<u16>,
    /// Per-device weights.
    pub weight_device: Vec<WeightDevice>,
    /// Read bytes per second.
    pub throttle_read_bps: Vec<ThrottleDevice>,
    /// Write bytes per second.
    pub throttle_write_bps: Vec<ThrottleDevice>,
    /// Read operations per second.
    pub throttle_read_iops: Vec<ThrottleDevice>,
    /// Write operations per second.
    pub throttle_write_iops: Vec<ThrottleDevice>,
}

/// A huge page limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HugepageLimit {
    /// The page size as the kernel names it in file names ("2MB", "1GB").
    pub page_size: String,
    /// Bytes.
    pub limit: u64,
}

/// Network classes and priorities (cgroup v1 only).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Network {
    /// net_cls.classid.
    pub class_id: Option<u32>,
    /// net_prio.ifpriomap entries: interface name and priority.
    pub priorities: Vec<(String, u32)>,
}

/// Everything that may be limited; `None` (or empty) leaves the kernel's default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    /// Memory.
    pub memory: Option<Memory>,
    /// CPU.
    pub cpu: Option<Cpu>,
    /// Processes.
    pub pids: Option<Pids>,
    /// Block I/O.
    pub block_io: Option<BlockIo>,
    /// Huge pages.
    pub hugepage_limits: Option<Vec<HugepageLimit>>,
    /// Network classes (v1).
    pub network: Option<Network>,
    /// Raw cgroup v2 files ("memory.high" → "1G"); refused where there is no v2 hierarchy.
    pub unified: Option<BTreeMap<String, String>>,
    /// Device rules, in order (the last matching rule decides).
    pub devices: Option<Vec<DeviceRule>>,
}

impl Resources {
    /// Checks every value against the kernel's and the runtime-spec's ranges, saying which
    /// and why in the crate's words ("memory limit 12 below minimum …"). The plan calls it;
    /// nothing checks these values elsewhere.
    pub fn check(&self) -> Result<()> {
        if let Some(m) = &self.memory {
            if let Some(l) = m.limit
                && l != -1
                && !(MIN_MEMORY_LIMIT..=i64::MAX).contains(&l)
            {
                return Err(Errcode::usage(format!(
                    "memory limit {l} below the minimum of {MIN_MEMORY_LIMIT} bytes (1 MiB)"
                )));
            }
            if let Some(r) = m.reservation
                && r < -1
            {
                return Err(Errcode::usage(format!(
                    "memory reservation {r} is negative"
                )));
            }
            if let Some(s) = m.swappiness
                && s > 100
            {
                return Err(Errcode::usage(format!(
                    "memory swappiness {s} is above 100"
                )));
            }
            // The swap value is checked against the limit by its conversion.
            swap_to_v2(m.swap.unwrap_or(0), m.limit.unwrap_or(0))?;
        }
        if let Some(c) = &self.cpu {
            if let Some(s) = c.shares
                && !(2..=262_144).contains(&s)
            {
                return Err(Errcode::usage(format!("cpu shares {s} outside 2..=262144")));
            }
            if let Some(w) = c.weight
                && !(1..=10_000).contains(&w)
            {
                return Err(Errcode::usage(format!("cpu weight {w} outside 1..=10000")));
            }
            if c.shares.is_some() && c.weight.is_some() {
                return Err(Errcode::usage(
                    "cpu shares and cpu weight both given: give one",
                ));
            }
            if let Some(q) = c.quota
                && q != -1
                && !(1000..=i64::MAX).contains(&q)
            {
                return Err(Errcode::usage(format!(
                    "cpu quota {q} below the kernel's minimum of 1000 microseconds"
                )));
            }
            if let Some(p) = c.period
                && !(1000..=1_000_000).contains(&p)
            {
                return Err(Errcode::usage(format!(
                    "cpu period {p} outside 1000..=1000000 microseconds"
                )));
            }
        }
        if let Some(p) = &self.pids
            && p.limit > MAX_PIDS
        {
            return Err(Errcode::usage(format!(
                "pids limit {} above the kernel's maximum {MAX_PIDS}",
                p.limit
            )));
        }
        if let Some(b) = &self.block_io {
            for w in b
                .weight
                .iter()
                .copied()
                .chain(b.weight_device.iter().map(|d| d.weight))
            {
                if !(10..=1000).contains(&w) {
                    return Err(Errcode::usage(format!(
                        "block I/O weight {w} outside 10..=1000"
                    )));
                }
            }
        }
        Ok(())
    }
}

/// The largest pids limit the kernel takes (PID_MAX_LIMIT).
pub const MAX_PIDS: i64 = 4 * 1024 * 1024;

/// Which hierarchy a write goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The v1 hierarchy holding this controller.
    V1(String),
    /// The v2 hierarchy.
    V2,
}

/// One file to write in the container's directory of a hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    /// Where.
    pub target: Target,
    /// The file name ("memory.limit_in_bytes").
    pub file: String,
    /// The exact text.
    pub value: String,
    /// What it is for, in the crate's words ("memory limit"), for errors.
    pub what: &'static str,
}

/// How the device rules are enforced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DevicePlan {
    /// Lines for devices.deny/devices.allow of the v1 devices hierarchy, in order.
    V1(Vec<V1Write>),
    /// A BPF_PROG_TYPE_CGROUP_DEVICE program built from these rules, on the v2 directory.
    V2(Vec<DeviceRule>),
}

/// The resources as writes, in the order they are made.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResourcePlan {
    /// File writes.
    pub writes: Vec<Write>,
    /// Device rules, if any were given.
    pub devices: Option<DevicePlan>,
}

impl ResourcePlan {
    /// The controllers the writes need in the v2 hierarchy (from the file names).
    pub fn v2_controllers(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .writes
            .iter()
            .filter(|w| w.target == Target::V2)
            .filter_map(|w| w.file.split_once('.').map(|(c, _)| c.to_string()))
            .filter(|c| c != "cgroup")
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// One line per write, for a debug log.
    pub fn describe(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .writes
            .iter()
            .map(|w| {
                let at = match &w.target {
                    Target::V1(c) => format!("v1 {c}"),
                    Target::V2 => "v2".into(),
                };
                format!("{at}: {} = {} ({})", w.file, w.value, w.what)
            })
            .collect();
        match &self.devices {
            Some(DevicePlan::V1(lines)) => out.extend(
                lines
                    .iter()
                    .map(|l| format!("v1 devices: {} = {}", l.file, l.value)),
            ),
            Some(DevicePlan::V2(rules)) => {
                out.push(format!("v2: device program for {} rules", rules.len()))
            }
            None => {}
        }
        out
    }
}

/// runc 1.1's cpu shares → cgroup v2 weight (`ConvertCPUSharesToCgroupV2Value`):
/// weight = 1 + ((shares − 2) × 9999) / 262142, mapping [2, 262144] onto [1, 10000].
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    1 + (shares.clamp(2, 262_144) - 2) * 9999 / 262_142
}

/// The inverse of [`shares_to_weight`]: the smallest shares that convert back to `weight`,
/// shares = 2 + ⌈(weight − 1) × 262142 / 9999⌉.
pub fn weight_to_shares(weight: u64) -> u64 {
    let w = weight.clamp(1, 10_000) - 1;
    2 + (w * 262_142).div_ceil(9999)
}

/// runc 1.1's blkio weight → io.weight (`ConvertBlkIOToIOWeightValue`):
/// io.weight = 1 + (weight − 10) × 9999 / 990, mapping [10, 1000] onto [1, 10000].
pub fn blkio_weight_to_io_weight(weight: u64) -> u64 {
    if weight == 0 {
        return 0;
    }
    1 + (weight.clamp(10, 1000) - 10) * 9999 / 990
}

/// runc 1.1's memory+swap → memory.swap.max (`ConvertMemorySwapToCgroupV2Value`): v1's
/// memsw counts memory and swap together, v2's swap.max only the swap. `None`: unset.
pub fn swap_to_v2(swap: i64, limit: i64) -> Result<Option<String>> {
    // An unlimited memory with no swap given means both unlimited, as on v1.
    if limit == -1 && swap == 0 {
        return Ok(Some("max".into()));
    }
    match swap {
        0 => Ok(None),
        -1 => Ok(Some("max".into())),
        s if s < -1 => Err(Errcode::usage(format!("memory swap {s} is negative"))),
        s => {
            if limit <= 0 {
                return Err(Errcode::usage(
                    "memory swap needs a memory limit: it is the memory+swap total",
                ));
            }
            if s < limit {
                return Err(Errcode::usage(format!(
                    "memory swap {s} is below the memory limit {limit}: it is the memory+swap total"
                )));
            }
            Ok(Some((s - limit).to_string()))
        }
    }
}

/// v1 wants memsw at least memory.limit at every moment: when the new memsw is above the
/// current memory limit (or unlimited) it goes first, else the memory limit goes first, so
/// an update never fails half-way (runc's `setMemoryAndSwap`).
pub fn memsw_first(current_limit: u64, new_memsw: i64) -> bool {
    new_memsw == -1 || u64::try_from(new_memsw).is_ok_and(|m| current_limit < m)
}

fn limit_text(v: i64) -> String {
    if v < 0 { "max".into() } else { v.to_string() }
}

fn v1_text(v: i64) -> String {
    if v < 0 { "-1".into() } else { v.to_string() }
}

/// Plans `r` on `layout`: every limit goes to the hierarchy holding its controller. A limit
/// whose controller this host has nowhere, or whose form one hierarchy cannot express, is
/// an error naming the limit and why.
pub fn plan_resources(r: &Resources, layout: &Layout) -> Result<ResourcePlan> {
    r.check()?;
    let mut p = Planner {
        layout,
        out: Vec::new(),
    };
    if let Some(m) = &r.memory {
        p.memory(m)?;
    }
    if let Some(c) = &r.cpu {
        p.cpu(c)?;
    }
    if let Some(pids) = &r.pids {
        let v = if pids.limit > 0 {
            pids.limit.to_string()
        } else {
            "max".into()
        };
        let t = p.target("pids", "pids limit")?;
        p.add(t, "pids.max", v, "pids limit");
    }
    if let Some(b) = &r.block_io {
        p.block_io(b)?;
    }
    for h in r.hugepage_limits.iter().flatten() {
        p.hugepage(h)?;
    }
    if let Some(n) = &r.network {
        p.network(n)?;
    }
    if let Some(u) = &r.unified {
        p.unified(u)?;
    }
    let devices = match &r.devices {
        None => None,
        Some(rules) => Some(plan_devices(rules, layout)?),
    };
    Ok(ResourcePlan {
        writes: p.out,
        devices,
    })
}

/// The device rules' form on this layout: v1 lines where a v1 devices hierarchy exists (as
/// runc on hybrid hosts), else a v2 program.
pub fn plan_devices(rules: &[DeviceRule], layout: &Layout) -> Result<DevicePlan> {
    check_rules(rules)?;
    if layout.v1_of("devices").is_some() {
        return Ok(DevicePlan::V1(v1_writes(rules)?));
    }
    if layout.v2.is_some() {
        return Ok(DevicePlan::V2(rules.to_vec()));
    }
    Err(Errcode::setup(
        "device rules: no devices controller on this host (no v1 devices hierarchy, no cgroup v2)",
    ))
}

struct Planner<'a> {
    layout: &'a Layout,
    out: Vec<Write>,
}

impl Planner<'_> {
    fn target(&self, controller: &str, what: &str) -> Result<Target> {
        match self.layout.controller(controller) {
            Some(Where::V1(_)) => Ok(Target::V1(controller.into())),
            Some(Where::V2(_)) => Ok(Target::V2),
            None => Err(missing(controller, self.layout).context(what)),
        }
    }

    fn add(&mut self, target: Target, file: &str, value: String, what: &'static str) {
        self.out.push(Write {
            target,
            file: file.into(),
            value,
            what,
        });
    }

    fn memory(&mut self, m: &Memory) -> Result<()> {
        let any = m.limit.is_some()
            || m.reservation.is_some()
            || m.swap.is_some()
            || m.swappiness.is_some()
            || m.disable_oom_killer == Some(true);
        if !any {
            // kernel and kernelTCP alone: nothing runc would write either.
            return Ok(());
        }
        let t = self.target("memory", "memory limit")?;
        let limit = m.limit.unwrap_or(0);
        match t {
            Target::V1(_) => {
                if let Some(l) = m.limit {
                    self.add(
                        t.clone(),
                        "memory.limit_in_bytes",
                        v1_text(l),
                        "memory limit",
                    );
                }
                // The v1 value is the total, as in the spec; the same checks as for v2.
                let swap = m.swap.unwrap_or(0);
                if swap_to_v2(swap, limit)?.is_some() {
                    let v = if swap == 0 { -1 } else { swap };
                    self.add(
                        t.clone(),
                        "memory.memsw.limit_in_bytes",
                        v1_text(v),
                        "memory+swap limit",
                    );
                }
                if let Some(r) = m.reservation {
                    self.add(
                        t.clone(),
                        "memory.soft_limit_in_bytes",
                        v1_text(r),
                        "memory reservation",
                    );
                }
                if let Some(s) = m.swappiness {
                    self.add(
                        t.clone(),
                        "memory.swappiness",
                        s.to_string(),
                        "memory swappiness",
                    );
                }
                if m.disable_oom_killer == Some(true) {
                    self.add(
                        t,
                        "memory.oom_control",
                        "1".into(),
                        "disabling the OOM killer",
                    );
                }
            }
            Target::V2 => {
                if let Some(l) = m.limit {
                    self.add(Target::V2, "memory.max", limit_text(l), "memory limit");
                }
                if let Some(v) = swap_to_v2(m.swap.unwrap_or(0), limit)? {
                    self.add(Target::V2, "memory.swap.max", v, "memory+swap limit");
                }
                if let Some(r) = m.reservation {
                    self.add(
                        Target::V2,
                        "memory.low",
                        limit_text(r),
                        "memory reservation",
                    );
                }
                // cgroup v2 has neither a per-cgroup swappiness nor an OOM-killer switch;
                // runc 1.1 ignores both there, and so does crabcan.
            }
        }
        Ok(())
    }

    fn cpu(&mut self, c: &Cpu) -> Result<()> {
        let sched = c.shares.is_some()
            || c.weight.is_some()
            || c.quota.is_some()
            || c.period.is_some()
            || c.realtime_period.is_some()
            || c.realtime_runtime.is_some();
        if sched {
            let t = self.target("cpu", "cpu limit")?;
            match t {
                Target::V1(_) => {
                    if let Some(s) = c.shares.or(c.weight.map(weight_to_shares)) {
                        self.add(t.clone(), "cpu.shares", s.to_string(), "cpu shares");
                    }
                    // The period first: a quota is checked against the period in place.
                    if let Some(p) = c.period {
                        self.add(t.clone(), "cpu.cfs_period_us", p.to_string(), "cpu period");
                    }
                    if let Some(q) = c.quota {
                        self.add(t.clone(), "cpu.cfs_quota_us", v1_text(q), "cpu quota");
                    }
                    // The period before the runtime, as runc: the runtime must fit it.
                    if let Some(p) = c.realtime_period {
                        self.add(
                            t.clone(),
                            "cpu.rt_period_us",
                            p.to_string(),
                            "cpu realtime period",
                        );
                    }
                    if let Some(r) = c.realtime_runtime {
                        self.add(
                            t,
                            "cpu.rt_runtime_us",
                            r.to_string(),
                            "cpu realtime runtime",
                        );
                    }
                }
                Target::V2 => {
                    if c.realtime_period.is_some() || c.realtime_runtime.is_some() {
                        return Err(Errcode::setup(
                            "cpu realtime period/runtime: cgroup v2 has no realtime cpu limits",
                        ));
                    }
                    if let Some(w) = c.weight.or(c.shares.map(shares_to_weight)) {
                        self.add(Target::V2, "cpu.weight", w.to_string(), "cpu weight");
                    }
                    if c.quota.is_some() || c.period.is_some() {
                        let q = match c.quota {
                            Some(q) if q > 0 => q.to_string(),
                            _ => "max".into(),
                        };
                        let period = c.period.unwrap_or(DEFAULT_CPU_PERIOD);
                        self.add(Target::V2, "cpu.max", format!("{q} {period}"), "cpu quota");
                    }
                }
            }
        }
        for (value, file, what) in [
            (&c.cpus, "cpuset.cpus", "cpuset cpus"),
            (&c.mems, "cpuset.mems", "cpuset mems"),
        ] {
            if let Some(v) = value {
                check_list(v, what)?;
                let t = self.target("cpuset", what)?;
                self.add(t, file, v.clone(), what);
            }
        }
        Ok(())
    }

    fn block_io(&mut self, b: &BlockIo) -> Result<()> {
        let empty = b.weight.is_none()
            && b.weight_device.is_empty()
            && b.throttle_read_bps.is_empty()
            && b.throttle_write_bps.is_empty()
            && b.throttle_read_iops.is_empty()
            && b.throttle_write_iops.is_empty();
        if empty {
            return Ok(());
        }
        let controller = if self.layout.v1_of("blkio").is_some() {
            "blkio"
        } else {
            "io"
        };
        let t = self.target(controller, "block I/O limit")?;
        match t {
            Target::V1(_) => {
                if let Some(w) = b.weight {
                    self.add(t.clone(), "blkio.weight", w.to_string(), "block I/O weight");
                }
                for d in &b.weight_device {
                    self.add(
                        t.clone(),
                        "blkio.weight_device",
                        format!("{}:{} {}", d.major, d.minor, d.weight),
                        "block I/O device weight",
                    );
                }
                for (list, file) in [
                    (&b.throttle_read_bps, "blkio.throttle.read_bps_device"),
                    (&b.throttle_write_bps, "blkio.throttle.write_bps_device"),
                    (&b.throttle_read_iops, "blkio.throttle.read_iops_device"),
                    (&b.throttle_write_iops, "blkio.throttle.write_iops_device"),
                ] {
                    for d in list {
                        self.add(
                            t.clone(),
                            file,
                            format!("{}:{} {}", d.major, d.minor, d.rate),
                            "block I/O throttle",
                        );
                    }
                }
            }
            Target::V2 => {
                if let Some(w) = b.weight {
                    let v = blkio_weight_to_io_weight(u64::from(w));
                    self.add(Target::V2, "io.weight", v.to_string(), "block I/O weight");
                }
                for d in &b.weight_device {
                    let v = blkio_weight_to_io_weight(u64::from(d.weight));
                    self.add(
                        Target::V2,
                        "io.weight",
                        format!("{}:{} {v}", d.major, d.minor),
                        "block I/O device weight",
                    );
                }
                for (list, key) in [
                    (&b.throttle_read_bps, "rbps"),
                    (&b.throttle_write_bps, "wbps"),
                    (&b.throttle_read_iops, "riops"),
                    (&b.throttle_write_iops, "wiops"),
                ] {
                    for d in list {
                        // A rate of 0 is "no limit" in the spec; io.max spells that "max".
                        let rate = if d.rate == 0 {
                            "max".to_string()
                        } else {
                            d.rate.to_string()
                        };
                        self.add(
                            Target::V2,
                            "io.max",
                            format!("{}:{} {key}={rate}", d.major, d.minor),
                            "block I/O throttle",
                        );
                    }
                }
            }
        }
        Ok(())
    }

    fn hugepage(&mut self, h: &HugepageLimit) -> Result<()> {
        let ok = h.page_size.len() <= 8
            && h.page_size.ends_with('B')
            && h.page_size[..h.page_size.len() - 2]
                .bytes()
                .all(|b| b.is_ascii_digit())
            && matches!(
                h.page_size
                    .as_bytes()
                    .get(h.page_size.len().wrapping_sub(2)),
                Some(b'K' | b'M' | b'G')
            )
            && h.page_size.len() > 2;
        if !ok {
            return Err(Errcode::usage(format!(
                "hugepage size '{}' is not a size such as 2MB or 1GB",
                h.page_size.escape_debug()
            )));
        }
        let t = self.target("hugetlb", "hugepage limit")?;
        let file = match t {
            Target::V1(_) => format!("hugetlb.{}.limit_in_bytes", h.page_size),
            Target::V2 => format!("hugetlb.{}.max", h.page_size),
        };
        self.add(t, &file, h.limit.to_string(), "hugepage limit");
        Ok(())
    }

    fn network(&mut self, n: &Network) -> Result<()> {
        if let Some(id) = n.class_id {
            let t = self.v1_only("net_cls", "network class id")?;
            self.add(t, "net_cls.classid", id.to_string(), "network class id");
        }
        for (iface, prio) in &n.priorities {
            if iface.is_empty()
                || iface.len() > 15
                || iface.bytes().any(|b| b.is_ascii_whitespace() || b == b'/')
            {
                return Err(Errcode::usage(format!(
                    "network priority: '{}' is not an interface name",
                    iface.escape_debug()
                )));
            }
            let t = self.v1_only("net_prio", "network priority")?;
            self.add(
                t,
                "net_prio.ifpriomap",
                format!("{iface} {prio}"),
                "network priority",
            );
        }
        Ok(())
    }

    fn v1_only(&self, controller: &str, what: &str) -> Result<Target> {
        if self.layout.v1_of(controller).is_some() {
            return Ok(Target::V1(controller.into()));
        }
        Err(Errcode::setup(format!(
            "{what}: no {controller} controller on this host (it exists only on cgroup v1, and no v1 hierarchy holds it)"
        )))
    }

    fn unified(&mut self, u: &BTreeMap<String, String>) -> Result<()> {
        for (key, value) in u {
            let Some(v2) = &self.layout.v2 else {
                return Err(Errcode::setup(format!(
                    "unified {key}: raw cgroup v2 files need a cgroup v2 hierarchy, and this host has only cgroup v1"
                )));
            };
            let Some((controller, rest)) = key.split_once('.') else {
                return Err(bad_key(key));
            };
            let ok_name = |s: &str| {
                !s.is_empty()
                    && s.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
            };
            if !ok_name(controller) || !ok_name(rest) {
                return Err(bad_key(key));
            }
            if value.contains('\n') && value.trim_end_matches('\n').contains('\n') {
                return Err(Errcode::usage(format!(
                    "unified {key}: the value is more than one line"
                )));
            }
            if controller != "cgroup" && !v2.controllers.iter().any(|c| c == controller) {
                let why = match self.layout.v1_of(controller) {
                    Some(h) => format!(
                        "the {controller} controller is on the cgroup v1 hierarchy at {} on this host",
                        h.mount_point.display()
                    ),
                    None => format!("the cgroup v2 hierarchy has no {controller} controller"),
                };
                return Err(Errcode::setup(format!("unified {key}: {why}")));
            }
            self.out.push(Write {
                target: Target::V2,
                file: key.clone(),
                value: value.clone(),
                what: "unified value",
            });
        }
        Ok(())
    }
}

fn bad_key(key: &str) -> Errcode {
    Errcode::usage(format!(
        "unified '{}': not a cgroup v2 file name (controller.file)",
        key.escape_debug()
    ))
}

/// A cpu or memory-node list: "0-3,6".
fn check_list(v: &str, what: &str) -> Result<()> {
    let ok = !v.is_empty()
        && v.split(',').all(|r| {
            let mut it = r.splitn(2, '-');
            let num = |s: Option<&str>| {
                s.is_some_and(|s| {
                    !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit())
                })
            };
            let a = it.next();
            match it.next() {
                None => num(a),
                Some(b) => num(a) && num(Some(b)),
            }
        });
    if ok {
        Ok(())
    } else {
        Err(Errcode::usage(format!(
            "{what} '{}' is not a list such as 0-3,6",
            v.escape_debug()
        )))
    }
}

/// The error for a limit whose controller this host has nowhere, saying where it looked;
/// the caller adds which limit.
pub fn missing(controller: &str, layout: &Layout) -> Errcode {
    let where_ = match (&layout.v2, layout.v1.is_empty()) {
        (Some(v2), false) => format!(
            "no v1 hierarchy holds it and the cgroup v2 hierarchy at {} does not offer it",
            v2.mount_point.display()
        ),
        (Some(v2), true) => format!(
            "not listed in {}",
            v2.mount_point.join("cgroup.controllers").display()
        ),
        (None, _) => "no cgroup v1 hierarchy holds it and no cgroup v2 is mounted".into(),
    };
    Errcode::setup(format!(
        "the {controller} controller is not available on this host ({where_})"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::default_rules;
    use crate::layout::tests::{
        HOST_CGROUP, HOST_MOUNTINFO, V1_CGROUP, V1_MOUNTINFO, V2_CGROUP, V2_MOUNTINFO,
    };
    use proptest::prelude::*;

    fn host() -> Layout {
        let mut l = Layout::from_mountinfo(HOST_MOUNTINFO, HOST_CGROUP).unwrap();
        l.v2.as_mut().unwrap().controllers = vec!["hugetlb".into()];
        l
    }
    fn v1() -> Layout {
        Layout::from_mountinfo(V1_MOUNTINFO, V1_CGROUP).unwrap()
    }
    fn v2() -> Layout {
        let mut l = Layout::from_mountinfo(V2_MOUNTINFO, V2_CGROUP).unwrap();
        l.v2.as_mut().unwrap().controllers = [
            "cpuset", "cpu", "io", "memory", "hugetlb", "pids", "rdma", "misc",
        ]
        .map(String::from)
        .to_vec();
        l
    }
    fn files(p: &ResourcePlan) -> Vec<(String, &str, &str)> {
        p.writes
            .iter()
            .map(|w| {
                let t = match &w.target {
                    Target::V1(c) => c.clone(),
                    Target::V2 => "v2".into(),
                };
                (t, w.file.as_str(), w.value.as_str())
            })
            .collect()
    }
    fn t(t: &str, f: &'static str, v: &'static str) -> (String, &'static str, &'static str) {
        (t.to_string(), f, v)
    }

    fn engine_like() -> Resources {
        Resources {
            memory: Some(Memory {
                limit: Some(256 << 20),
                swap: Some(512 << 20),
                reservation: Some(128 << 20),
                kernel: Some(64 << 20),
                kernel_tcp: Some(1 << 20),
                swappiness: Some(10),
                disable_oom_killer: Some(false),
            }),
            cpu: Some(Cpu {
                shares: Some(1024),
                quota: Some(50_000),
                period: Some(100_000),
                cpus: Some("0-1".into()),
                mems: Some("0".into()),
                ..Cpu::default()
            }),
            pids: Some(Pids { limit: 100 }),
            hugepage_limits: Some(vec![HugepageLimit {
                page_size: "2MB".into(),
                limit: 0,
            }]),
            ..Resources::default()
        }
    }

    #[test]
    fn on_this_hybrid_host_everything_goes_to_v1_but_hugetlb() {
        let p = plan_resources(&engine_like(), &host()).unwrap();
        assert_eq!(
            files(&p),
            [
                t("memory", "memory.limit_in_bytes", "268435456"),
                t("memory", "memory.memsw.limit_in_bytes", "536870912"),
                t("memory", "memory.soft_limit_in_bytes", "134217728"),
                t("memory", "memory.swappiness", "10"),
                t("cpu", "cpu.shares", "1024"),
                t("cpu", "cpu.cfs_period_us", "100000"),
                t("cpu", "cpu.cfs_quota_us", "50000"),
                t("cpuset", "cpuset.cpus", "0-1"),
                t("cpuset", "cpuset.mems", "0"),
                t("pids", "pids.max", "100"),
                t("v2", "hugetlb.2MB.max", "0"),
            ]
        );
        assert_eq!(p.v2_controllers(), ["hugetlb"]);
    }

    #[test]
    fn pure_v2_converts() {
        let p = plan_resources(&engine_like(), &v2()).unwrap();
        assert_eq!(
            files(&p),
            [
                t("v2", "memory.max", "268435456"),
                t("v2", "memory.swap.max", "268435456"),
                t("v2", "memory.low", "134217728"),
                // 1 + (1024 - 2) * 9999 / 262142 = 39
                t("v2", "cpu.weight", "39"),
                t("v2", "cpu.max", "50000 100000"),
                t("v2", "cpuset.cpus", "0-1"),
                t("v2", "cpuset.mems", "0"),
                t("v2", "pids.max", "100"),
                t("v2", "hugetlb.2MB.max", "0"),
            ]
        );
        assert_eq!(
            p.v2_controllers(),
            ["cpu", "cpuset", "hugetlb", "memory", "pids"]
        );
    }

    #[test]
    fn pure_v1_hugetlb_and_network() {
        let mut r = engine_like();
        r.network = Some(Network {
            class_id: Some(0x10001),
            priorities: vec![("eth0".into(), 5)],
        });
        r.memory.as_mut().unwrap().disable_oom_killer = Some(true);
        let p = plan_resources(&r, &v1()).unwrap();
        let f = files(&p);
        assert!(f.contains(&t("hugetlb", "hugetlb.2MB.limit_in_bytes", "0")));
        assert!(f.contains(&t("net_cls", "net_cls.classid", "65537")));
        assert!(f.contains(&t("net_prio", "net_prio.ifpriomap", "eth0 5")));
        assert!(f.contains(&t("memory", "memory.oom_control", "1")));
        // Network is v1 only: refused elsewhere, naming it.
        let e = plan_resources(&r, &v2()).unwrap_err().to_string();
        assert!(
            e.starts_with("network class id: no net_cls controller"),
            "{e}"
        );
        let e = plan_resources(&r, &host()).unwrap_err().to_string();
        assert!(e.contains("net_cls"), "{e}");
    }

    #[test]
    fn kernel_memory_is_ignored() {
        let r = Resources {
            memory: Some(Memory {
                kernel: Some(1 << 30),
                kernel_tcp: Some(1 << 30),
                ..Memory::default()
            }),
            ..Resources::default()
        };
        for l in [host(), v1(), v2()] {
            assert_eq!(plan_resources(&r, &l).unwrap(), ResourcePlan::default());
        }
    }

    #[test]
    fn swap_conversions() {
        assert_eq!(swap_to_v2(0, 100 << 20).unwrap(), None);
        assert_eq!(swap_to_v2(-1, 100 << 20).unwrap().unwrap(), "max");
        assert_eq!(swap_to_v2(0, -1).unwrap().unwrap(), "max");
        assert_eq!(swap_to_v2(200, 100).unwrap().unwrap(), "100");
        assert_eq!(swap_to_v2(100, 100).unwrap().unwrap(), "0");
        assert!(
            swap_to_v2(99, 100)
                .unwrap_err()
                .to_string()
                .contains("below the memory limit 100")
        );
        assert!(
            swap_to_v2(99, 0)
                .unwrap_err()
                .to_string()
                .contains("needs a memory limit")
        );
        assert!(swap_to_v2(-5, 100).is_err());
        // Unlimited memory with no swap given: both unlimited, on v1 too.
        let r = Resources {
            memory: Some(Memory {
                limit: Some(-1),
                ..Memory::default()
            }),
            ..Resources::default()
        };
        assert_eq!(
            files(&plan_resources(&r, &v1()).unwrap()),
            [
                t("memory", "memory.limit_in_bytes", "-1"),
                t("memory", "memory.memsw.limit_in_bytes", "-1")
            ]
        );
        assert_eq!(
            files(&plan_resources(&r, &v2()).unwrap()),
            [
                t("v2", "memory.max", "max"),
                t("v2", "memory.swap.max", "max")
            ]
        );
    }

    #[test]
    fn memsw_order() {
        // Raising: memsw first, else memory.limit_in_bytes would exceed the old memsw.
        assert!(memsw_first(100 << 20, 400 << 20));
        assert!(memsw_first(100 << 20, -1));
        // Lowering: the limit first, else memsw would fall below the old limit.
        assert!(!memsw_first(400 << 20, 200 << 20));
        assert!(!memsw_first(200 << 20, 200 << 20));
    }

    #[test]
    fn cpu_conversions_cite_runc() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(shares_to_weight(0), 0);
        assert_eq!(weight_to_shares(1), 2);
        assert_eq!(weight_to_shares(10_000), 262_144);
        assert_eq!(blkio_weight_to_io_weight(10), 1);
        assert_eq!(blkio_weight_to_io_weight(500), 4950);
        assert_eq!(blkio_weight_to_io_weight(1000), 10_000);
        // A weight given directly goes to v1 as shares.
        let r = Resources {
            cpu: Some(Cpu {
                weight: Some(100),
                quota: Some(25_000),
                ..Cpu::default()
            }),
            ..Resources::default()
        };
        assert_eq!(
            files(&plan_resources(&r, &host()).unwrap()),
            [
                t("cpu", "cpu.shares", "2598"),
                t("cpu", "cpu.cfs_quota_us", "25000")
            ]
        );
        assert_eq!(
            files(&plan_resources(&r, &v2()).unwrap()),
            [
                t("v2", "cpu.weight", "100"),
                t("v2", "cpu.max", "25000 100000")
            ]
        );
        let rt = Resources {
            cpu: Some(Cpu {
                realtime_period: Some(1_000_000),
                realtime_runtime: Some(950_000),
                ..Cpu::default()
            }),
            ..Resources::default()
        };
        assert_eq!(
            files(&plan_resources(&rt, &v1()).unwrap()),
            [
                t("cpu", "cpu.rt_period_us", "1000000"),
                t("cpu", "cpu.rt_runtime_us", "950000")
            ]
        );
        let e = plan_resources(&rt, &v2()).unwrap_err().to_string();
        assert!(e.contains("realtime"), "{e}");
    }

    #[test]
    fn block_io_both_ways() {
        let r = Resources {
            block_io: Some(BlockIo {
                weight: Some(500),
                weight_device: vec![WeightDevice {
                    major: 8,
                    minor: 0,
                    weight: 100,
                }],
                throttle_read_bps: vec![ThrottleDevice {
                    major: 8,
                    minor: 0,
                    rate: 1 << 20,
                }],
                throttle_write_iops: vec![ThrottleDevice {
                    major: 8,
                    minor: 0,
                    rate: 0,
                }],
                ..BlockIo::default()
            }),
            ..Resources::default()
        };
        // This host has a blkio hierarchy (whose blkio.weight file is missing: the apply
        // step reports that; the plan is the same as on any v1 host).
        assert_eq!(
            files(&plan_resources(&r, &host()).unwrap()),
            [
                t("blkio", "blkio.weight", "500"),
                t("blkio", "blkio.weight_device", "8:0 100"),
                t("blkio", "blkio.throttle.read_bps_device", "8:0 1048576"),
                t("blkio", "blkio.throttle.write_iops_device", "8:0 0"),
            ]
        );
        assert_eq!(
            files(&plan_resources(&r, &v2()).unwrap()),
            [
                t("v2", "io.weight", "4950"),
                t("v2", "io.weight", "8:0 910"),
                t("v2", "io.max", "8:0 rbps=1048576"),
                t("v2", "io.max", "8:0 wiops=max"),
            ]
        );
        let mut bad = r.clone();
        bad.block_io.as_mut().unwrap().weight = Some(5);
        assert!(
            plan_resources(&bad, &v2())
                .unwrap_err()
                .to_string()
                .contains("weight 5")
        );
    }

    #[test]
    fn unified_only_where_v2_has_the_controller() {
        let mut u = BTreeMap::new();
        u.insert("memory.high".to_string(), "1G".to_string());
        let r = Resources {
            unified: Some(u),
            ..Resources::default()
        };
        assert_eq!(
            files(&plan_resources(&r, &v2()).unwrap()),
            [t("v2", "memory.high", "1G")]
        );
        let e = plan_resources(&r, &v1()).unwrap_err().to_string();
        assert!(
            e.starts_with("unified memory.high: raw cgroup v2 files need"),
            "{e}"
        );
        let e = plan_resources(&r, &host()).unwrap_err().to_string();
        assert!(
            e.contains("on the cgroup v1 hierarchy at /sys/fs/cgroup/memory"),
            "{e}"
        );
        for key in ["memory", "../x.y", "memory./x", ".x", "a.b/c"] {
            let mut u = BTreeMap::new();
            u.insert(key.to_string(), "1".to_string());
            let r = Resources {
                unified: Some(u),
                ..Resources::default()
            };
            assert!(plan_resources(&r, &v2()).is_err(), "{key}");
        }
    }

    #[test]
    fn a_controller_nowhere_is_one_clear_error() {
        let mut l = host();
        l.v1.retain(|h| h.controllers != ["pids"]);
        let r = Resources {
            pids: Some(Pids { limit: 10 }),
            ..Resources::default()
        };
        let e = plan_resources(&r, &l).unwrap_err();
        assert_eq!(
            e.to_string(),
            "pids limit: the pids controller is not available on this host (no v1 hierarchy holds it and the cgroup v2 hierarchy at /sys/fs/cgroup/unified does not offer it)"
        );
        assert_eq!(e.exit_code(), 125);
        // hugetlb on this host is only on v2; without the v2 controllers list it is nowhere.
        let bare = Layout::from_mountinfo(HOST_MOUNTINFO, HOST_CGROUP).unwrap();
        let h = Resources {
            hugepage_limits: Some(vec![HugepageLimit {
                page_size: "1GB".into(),
                limit: 1 << 30,
            }]),
            ..Resources::default()
        };
        assert!(
            plan_resources(&h, &bare)
                .unwrap_err()
                .to_string()
                .contains("hugetlb")
        );
    }

    #[test]
    fn values_are_checked_once_here() {
        let mem = |l| Resources {
            memory: Some(Memory {
                limit: Some(l),
                ..Memory::default()
            }),
            ..Resources::default()
        };
        let e = plan_resources(&mem(12), &v2()).unwrap_err().to_string();
        assert_eq!(
            e,
            "memory limit 12 below the minimum of 1048576 bytes (1 MiB)"
        );
        assert!(plan_resources(&mem(1 << 20), &v2()).is_ok());
        assert!(plan_resources(&mem(-2), &v2()).is_err());
        let cpu = |c: Cpu| Resources {
            cpu: Some(c),
            ..Resources::default()
        };
        assert!(
            plan_resources(
                &cpu(Cpu {
                    shares: Some(1),
                    ..Cpu::default()
                }),
                &v1()
            )
            .is_err()
        );
        assert!(
            plan_resources(
                &cpu(Cpu {
                    quota: Some(999),
                    ..Cpu::default()
                }),
                &v1()
            )
            .is_err()
        );
        assert!(
            plan_resources(
                &cpu(Cpu {
                    cpus: Some("0-".into()),
                    ..Cpu::default()
                }),
                &v1()
            )
            .is_err()
        );
        assert!(
            plan_resources(
                &cpu(Cpu {
                    cpus: Some("0-3,6".into()),
                    ..Cpu::default()
                }),
                &v1()
            )
            .is_ok()
        );
        let hp = |s: &str| Resources {
            hugepage_limits: Some(vec![HugepageLimit {
                page_size: s.into(),
                limit: 1,
            }]),
            ..Resources::default()
        };
        for s in ["2MB", "1GB", "64KB"] {
            assert!(plan_resources(&hp(s), &v2()).is_ok(), "{s}");
        }
        for s in ["", "MB", "2M", "2XB", "../2MB", "2MB/x"] {
            assert!(plan_resources(&hp(s), &v2()).is_err(), "{s}");
        }
    }

    #[test]
    fn devices_go_to_v1_where_it_exists() {
        let r = Resources {
            devices: Some(default_rules()),
            ..Resources::default()
        };
        let p = plan_resources(&r, &host()).unwrap();
        let Some(DevicePlan::V1(lines)) = &p.devices else {
            panic!("{p:?}")
        };
        assert_eq!(lines[0].value, "a");
        assert_eq!(lines[1].value, "c 1:3 rwm");
        let p = plan_resources(&r, &v2()).unwrap();
        assert_eq!(p.devices, Some(DevicePlan::V2(default_rules())));
    }

    proptest! {
        #[test]
        fn shares_weight_round_trip(w in 1u64..=10_000) {
            let s = weight_to_shares(w);
            prop_assert!((2..=262_144).contains(&s));
            prop_assert_eq!(shares_to_weight(s), w);
        }

        #[test]
        fn conversions_are_monotonic_and_in_range(s in 2u64..262_144, b in 10u64..1000) {
            prop_assert!(shares_to_weight(s) <= shares_to_weight(s + 1));
            prop_assert!((1..=10_000).contains(&shares_to_weight(s)));
            prop_assert!(blkio_weight_to_io_weight(b) <= blkio_weight_to_io_weight(b + 1));
            prop_assert!((1..=10_000).contains(&blkio_weight_to_io_weight(b)));
        }

        #[test]
        fn memory_plans_are_consistent(limit in proptest::option::of(-3i64..(4i64 << 30)),
                                       swap in proptest::option::of(-3i64..(8i64 << 30))) {
            let r = Resources {
                memory: Some(Memory { limit, swap, ..Memory::default() }),
                ..Resources::default()
            };
            let a = plan_resources(&r, &v1());
            let b = plan_resources(&r, &v2());
            // Both forms accept and refuse the same values.
            prop_assert_eq!(a.is_ok(), b.is_ok());
            if let (Ok(a), Ok(b)) = (a, b) {
                let get = |p: &ResourcePlan, f: &str| p.writes.iter().find(|w| w.file == f).map(|w| w.value.clone());
                if let (Some(total), Some(l), Some(sw)) = (get(&a, "memory.memsw.limit_in_bytes"), limit, get(&b, "memory.swap.max")) {
                    if total != "-1" && sw != "max" {
                        prop_assert_eq!(total.parse::<i64>().unwrap() - l, sw.parse::<i64>().unwrap());
                    }
                }
                prop_assert!(a.writes.iter().chain(&b.writes).all(|w| !w.value.is_empty() && !w.value.contains('\n')));
            }
        }
    }
}
