//! The cgroup plan: which files to write with which values, computed without side effects.

use crate::parse::{MAX_CPUS, MAX_PIDS, MIN_CPUS, MIN_MEMORY, UNLIMITED, cpu_max};
use crabcan_errors::{Errcode, Result};
use std::fmt;

/// The pids.max applied when `--pids` is not given, against fork bombs; only where the pids
/// controller is available, so it never makes a run fail.
pub const DEFAULT_PIDS_MAX: u64 = 4096;

/// The prefix of a container's cgroup directory name.
pub const CGROUP_PREFIX: &str = "crabcan-";

/// The longest container name: the directory name must fit in NAME_MAX (255).
pub const MAX_NAME_LEN: usize = 255 - CGROUP_PREFIX.len();

/// The resource limits the user asked for explicitly; `None` means not asked.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Limits {
    /// `--memory`: memory.max in bytes.
    pub memory: Option<u64>,
    /// `--memory-swap`: memory + swap total in bytes ([`UNLIMITED`] for no swap cap).
    pub memory_swap: Option<u64>,
    /// `--pids`: pids.max ([`UNLIMITED`] lifts the default cap).
    pub pids: Option<u64>,
    /// `--cpus`: number of CPUs, turned into a cpu.max quota.
    pub cpus: Option<f64>,
    /// `--cpu-weight`: cpu.weight, 1..=10000.
    pub cpu_weight: Option<u64>,
}

/// A cgroup v2 controller crabcan may need.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Controller {
    /// memory.max, memory.swap.max, memory.events.
    Memory,
    /// pids.max.
    Pids,
    /// cpu.max, cpu.weight.
    Cpu,
}

impl Controller {
    /// The kernel's name for it ("memory").
    pub fn name(self) -> &'static str {
        match self {
            Controller::Memory => "memory",
            Controller::Pids => "pids",
            Controller::Cpu => "cpu",
        }
    }
}

impl fmt::Display for Controller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a file is written: an explicit flag (must succeed) or a default (best effort).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The user asked with this flag ("--memory"); failing to apply it fails the run.
    Flag(&'static str),
    /// crabcan's own default; skipped when the controller is not available.
    Default,
}

/// One cgroup interface file to write in the container's cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupWrite {
    /// The file name ("memory.max").
    pub file: &'static str,
    /// The exact text to write ("536870912", "max", "50000 100000").
    pub value: String,
    /// The controller that provides the file.
    pub controller: Controller,
    /// Why it is written.
    pub source: Source,
}

/// The container's cgroup as data: its directory name and the files to write, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupPlan {
    /// The directory name, `crabcan-<container name>`.
    pub name: String,
    /// The writes, in the order they are made.
    pub writes: Vec<CgroupWrite>,
}

impl CgroupPlan {
    /// The controllers explicit flags need, in a fixed order (memory, pids, cpu), no repeats.
    pub fn required_controllers(&self) -> Vec<Controller> {
        self.controllers(|s| matches!(s, Source::Flag(_)))
    }

    /// The controllers only defaults need: enabled when available, skipped otherwise.
    pub fn optional_controllers(&self) -> Vec<Controller> {
        let required = self.required_controllers();
        self.controllers(|s| s == Source::Default)
            .into_iter()
            .filter(|c| !required.contains(c))
            .collect()
    }

    /// Whether any explicit flag needs a cgroup.
    pub fn has_explicit(&self) -> bool {
        self.writes
            .iter()
            .any(|w| matches!(w.source, Source::Flag(_)))
    }

    /// The first flag that needs `controller`, for error messages.
    pub fn flag_for(&self, controller: Controller) -> Option<&'static str> {
        self.writes.iter().find_map(|w| match w.source {
            Source::Flag(f) if w.controller == controller => Some(f),
            _ => None,
        })
    }

    fn controllers(&self, keep: impl Fn(Source) -> bool) -> Vec<Controller> {
        let mut v: Vec<Controller> = self
            .writes
            .iter()
            .filter(|w| keep(w.source))
            .map(|w| w.controller)
            .collect();
        v.sort();
        v.dedup();
        v
    }
}

/// Checks a container name for use in a cgroup directory name.
pub fn check_container_name(name: &str) -> Result<()> {
    let ok_first = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric());
    let ok_rest = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !ok_first || !ok_rest || name.len() > MAX_NAME_LEN {
        return Err(Errcode::usage(format!(
            "invalid container name '{}': use up to {MAX_NAME_LEN} letters, digits, '-', '_' or '.', starting with a letter or digit",
            name.escape_debug()
        )));
    }
    Ok(())
}

/// Computes the cgroup plan for `limits`; pure. Refuses inconsistent limits.
///
/// `container_name` should end in `-<pid of the crabcan that owns it>`: a later run then
/// removes the cgroup if that crabcan was SIGKILLed before it could ([`owner_pid`]).
///
/// [`owner_pid`]: crate::owner_pid
/// `--memory-swap` is the memory+swap total, as in other container tools: memory.swap.max
/// gets `total - memory` (0 when equal: no swap), and it needs `--memory`. Without it, swap
/// use is left to the kernel's default (not capped).
pub fn plan(limits: &Limits, container_name: &str) -> Result<CgroupPlan> {
    check_container_name(container_name)?;
    let mut writes = Vec::new();
    let mut add = |file, value: String, controller, source| {
        writes.push(CgroupWrite {
            file,
            value,
            controller,
            source,
        })
    };

    if let Some(mem) = limits.memory {
        if !(MIN_MEMORY..UNLIMITED).contains(&mem) {
            return Err(Errcode::usage(format!(
                "invalid --memory {mem}: must be at least 1m"
            )));
        }
        add(
            "memory.max",
            mem.to_string(),
            Controller::Memory,
            Source::Flag("--memory"),
        );
    }
    if let Some(total) = limits.memory_swap {
        let Some(mem) = limits.memory else {
            return Err(Errcode::usage(
                "--memory-swap needs --memory: it is the memory+swap total".to_string(),
            ));
        };
        let swap = if total == UNLIMITED {
            "max".to_string()
        } else if total < mem {
            return Err(Errcode::usage(format!(
                "invalid --memory-swap {total}: it is the memory+swap total and must be at least --memory ({mem})"
            )));
        } else {
            (total - mem).to_string()
        };
        add(
            "memory.swap.max",
            swap,
            Controller::Memory,
            Source::Flag("--memory-swap"),
        );
    }
    match limits.pids {
        None => add(
            "pids.max",
            DEFAULT_PIDS_MAX.to_string(),
            Controller::Pids,
            Source::Default,
        ),
        // Lifting the default needs no cgroup: a fresh pids cgroup is unlimited anyway.
        Some(UNLIMITED) => {}
        Some(n @ 1..=MAX_PIDS) => add(
            "pids.max",
            n.to_string(),
            Controller::Pids,
            Source::Flag("--pids"),
        ),
        Some(n) => {
            return Err(Errcode::usage(format!(
                "invalid --pids {n}: must be between 1 and {MAX_PIDS}, or unlimited"
            )));
        }
    }
    if let Some(cpus) = limits.cpus {
        if !cpus.is_finite() || !(MIN_CPUS..=MAX_CPUS).contains(&cpus) {
            return Err(Errcode::usage(format!(
                "invalid --cpus {cpus}: must be between {MIN_CPUS} and {MAX_CPUS}"
            )));
        }
        add(
            "cpu.max",
            cpu_max(cpus),
            Controller::Cpu,
            Source::Flag("--cpus"),
        );
    }
    if let Some(w) = limits.cpu_weight {
        if !(1..=10_000).contains(&w) {
            return Err(Errcode::usage(format!(
                "invalid --cpu-weight {w}: must be between 1 and 10000"
            )));
        }
        add(
            "cpu.weight",
            w.to_string(),
            Controller::Cpu,
            Source::Flag("--cpu-weight"),
        );
    }
    Ok(CgroupPlan {
        name: format!("{CGROUP_PREFIX}{container_name}"),
        writes,
    })
}

/// A human-readable account of the plan, one line per file, for `--debug`.
pub fn describe(plan: &CgroupPlan) -> String {
    if plan.writes.is_empty() {
        return format!("cgroup {}: no limits, not created", plan.name);
    }
    let mut out = format!(
        "cgroup {}/{} (needs: {}; if available: {})",
        crate::host::PARENT_DIR,
        plan.name,
        list(&plan.required_controllers()),
        list(&plan.optional_controllers()),
    );
    for w in &plan.writes {
        let why = match w.source {
            Source::Flag(f) => f.to_string(),
            Source::Default => format!(
                "default, only if the {} controller is available",
                w.controller
            ),
        };
        out.push_str(&format!("\n  {} = {} ({why})", w.file, w.value));
    }
    out
}

fn list(c: &[Controller]) -> String {
    if c.is_empty() {
        return "none".into();
    }
    c.iter().map(|c| c.name()).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn files(p: &CgroupPlan) -> Vec<(&str, &str)> {
        p.writes
            .iter()
            .map(|w| (w.file, w.value.as_str()))
            .collect()
    }

    #[test]
    fn defaults_only_cap_pids_optionally() {
        let p = plan(&Limits::default(), "web").unwrap();
        assert_eq!(p.name, "crabcan-web");
        assert_eq!(files(&p), [("pids.max", "4096")]);
        assert_eq!(p.writes[0].source, Source::Default);
        assert!(p.required_controllers().is_empty());
        assert_eq!(p.optional_controllers(), [Controller::Pids]);
        assert!(!p.has_explicit());
    }

    #[test]
    fn everything_in_order() {
        let l = Limits {
            memory: Some(512 << 20),
            memory_swap: Some(1 << 30),
            pids: Some(100),
            cpus: Some(0.5),
            cpu_weight: Some(200),
        };
        let p = plan(&l, "a").unwrap();
        assert_eq!(
            files(&p),
            [
                ("memory.max", "536870912"),
                ("memory.swap.max", "536870912"),
                ("pids.max", "100"),
                ("cpu.max", "50000 100000"),
                ("cpu.weight", "200"),
            ]
        );
        assert_eq!(
            p.required_controllers(),
            [Controller::Memory, Controller::Pids, Controller::Cpu]
        );
        assert!(p.optional_controllers().is_empty());
        assert_eq!(p.flag_for(Controller::Cpu), Some("--cpus"));
        let d = describe(&p);
        assert!(d.contains("memory.max = 536870912 (--memory)"), "{d}");
        assert!(d.contains("needs: memory pids cpu"), "{d}");
    }

    #[test]
    fn memory_swap_is_the_total() {
        let mut l = Limits {
            memory: Some(1 << 30),
            memory_swap: Some(1 << 30),
            ..Limits::default()
        };
        assert_eq!(plan(&l, "a").unwrap().writes[1].value, "0");
        l.memory_swap = Some(UNLIMITED);
        assert_eq!(plan(&l, "a").unwrap().writes[1].value, "max");
        l.memory_swap = Some(1 << 29);
        let e = plan(&l, "a").unwrap_err().to_string();
        assert!(
            e.contains("--memory-swap") && e.contains("at least --memory"),
            "{e}"
        );
        let e = plan(
            &Limits {
                memory_swap: Some(1 << 30),
                ..Limits::default()
            },
            "a",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("--memory-swap needs --memory"), "{e}");
    }

    #[test]
    fn unlimited_pids_lifts_the_default() {
        let l = Limits {
            pids: Some(UNLIMITED),
            ..Limits::default()
        };
        let p = plan(&l, "a").unwrap();
        assert!(p.writes.is_empty());
        assert!(describe(&p).contains("not created"));
    }

    #[test]
    fn out_of_range_values_from_code_are_refused() {
        let bad = [
            Limits {
                memory: Some(0),
                ..Limits::default()
            },
            Limits {
                pids: Some(0),
                ..Limits::default()
            },
            Limits {
                pids: Some(MAX_PIDS + 1),
                ..Limits::default()
            },
            Limits {
                cpus: Some(f64::NAN),
                ..Limits::default()
            },
            Limits {
                cpus: Some(f64::INFINITY),
                ..Limits::default()
            },
            Limits {
                cpus: Some(0.0),
                ..Limits::default()
            },
            Limits {
                cpu_weight: Some(0),
                ..Limits::default()
            },
            Limits {
                cpu_weight: Some(10_001),
                ..Limits::default()
            },
        ];
        for l in bad {
            let e = plan(&l, "a").unwrap_err();
            assert_eq!(e.exit_code(), 125, "{l:?}");
        }
    }

    #[test]
    fn container_names() {
        for ok in ["a", "web-1", "A_b.c", &"x".repeat(MAX_NAME_LEN)] {
            assert!(plan(&Limits::default(), ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "-a",
            "a/b",
            "a b",
            "a\n",
            "é",
            &"x".repeat(MAX_NAME_LEN + 1),
        ] {
            let e = plan(&Limits::default(), bad).unwrap_err().to_string();
            assert!(e.contains("invalid container name"), "{e}");
        }
    }

    #[test]
    fn each_explicit_flag_counts_as_explicit() {
        let each = [
            Limits {
                memory: Some(64 << 20),
                ..Limits::default()
            },
            Limits {
                memory: Some(64 << 20),
                memory_swap: Some(UNLIMITED),
                ..Limits::default()
            },
            Limits {
                pids: Some(10),
                ..Limits::default()
            },
            Limits {
                cpus: Some(1.5),
                ..Limits::default()
            },
            Limits {
                cpu_weight: Some(50),
                ..Limits::default()
            },
        ];
        for l in each {
            let p = plan(&l, "a").unwrap();
            assert!(p.has_explicit(), "{l:?} planned as defaults only: {p:?}");
        }
        let lifted = plan(
            &Limits {
                pids: Some(UNLIMITED),
                ..Limits::default()
            },
            "a",
        )
        .unwrap();
        assert!(!lifted.has_explicit());
    }

    #[test]
    fn flags_name_their_controllers() {
        let p = plan(
            &Limits {
                memory_swap: Some(UNLIMITED),
                memory: Some(64 << 20),
                cpu_weight: Some(50),
                ..Limits::default()
            },
            "a",
        )
        .unwrap();
        assert_eq!(p.flag_for(Controller::Memory), Some("--memory"));
        assert_eq!(p.flag_for(Controller::Cpu), Some("--cpu-weight"));
        // The pids write is the default cap: no flag asked for it.
        assert_eq!(p.flag_for(Controller::Pids), None);
        assert_eq!(
            p.required_controllers(),
            [Controller::Memory, Controller::Cpu]
        );
        assert_eq!(p.optional_controllers(), [Controller::Pids]);
        // A controller both a flag and a default need is required, not optional.
        let both = plan(
            &Limits {
                pids: Some(7),
                ..Limits::default()
            },
            "a",
        )
        .unwrap();
        assert_eq!(both.required_controllers(), [Controller::Pids]);
        assert!(both.optional_controllers().is_empty());
        assert_eq!(
            [Controller::Memory, Controller::Pids, Controller::Cpu].map(|c| c.to_string()),
            ["memory", "pids", "cpu"]
        );
    }

    #[test]
    fn name_length_boundary_in_literals() {
        // The directory name "crabcan-" + name must fit in NAME_MAX, 255 bytes.
        assert!(check_container_name(&"x".repeat(247)).is_ok());
        let e = check_container_name(&"x".repeat(248))
            .unwrap_err()
            .to_string();
        assert!(e.contains("up to 247 letters"), "{e}");
        assert_eq!(
            plan(&Limits::default(), &"x".repeat(247))
                .unwrap()
                .name
                .len(),
            255
        );
        // What the front end builds: the longest hostname, '-', a 7-digit pid.
        let longest = format!("{}-4194304", "h".repeat(63));
        assert!(check_container_name(&longest).is_ok(), "{longest}");
    }

    #[test]
    fn describe_spells_out_every_write() {
        let p = plan(
            &Limits {
                memory: Some(64 << 20),
                memory_swap: Some(96 << 20),
                cpus: Some(0.25),
                cpu_weight: Some(300),
                ..Limits::default()
            },
            "box-42",
        )
        .unwrap();
        assert_eq!(
            describe(&p),
            "cgroup crabcan/crabcan-box-42 (needs: memory cpu; if available: pids)
  memory.max = 67108864 (--memory)
  memory.swap.max = 33554432 (--memory-swap)
  pids.max = 4096 (default, only if the pids controller is available)
  cpu.max = 25000 100000 (--cpus)
  cpu.weight = 300 (--cpu-weight)"
        );
        let defaults = plan(&Limits::default(), "d").unwrap();
        assert_eq!(
            describe(&defaults),
            "cgroup crabcan/crabcan-d (needs: none; if available: pids)
  pids.max = 4096 (default, only if the pids controller is available)"
        );
        let none = plan(
            &Limits {
                pids: Some(UNLIMITED),
                ..Limits::default()
            },
            "n",
        )
        .unwrap();
        assert_eq!(describe(&none), "cgroup crabcan-n: no limits, not created");
    }

    #[test]
    fn range_edges_in_literals() {
        let ok = |l: Limits| plan(&l, "a").is_ok();
        let mem = |m| Limits {
            memory: Some(m),
            ..Limits::default()
        };
        assert!(!ok(mem(1_048_575)));
        assert!(ok(mem(1_048_576)));
        assert!(ok(mem(u64::MAX - 1)));
        assert!(!ok(mem(u64::MAX)));
        let pids = |n| Limits {
            pids: Some(n),
            ..Limits::default()
        };
        assert!(ok(pids(1)));
        assert!(ok(pids(4_194_304)));
        assert!(!ok(pids(4_194_305)));
        let cpus = |c| Limits {
            cpus: Some(c),
            ..Limits::default()
        };
        assert!(!ok(cpus(0.009)));
        assert!(ok(cpus(0.01)));
        assert!(ok(cpus(8192.0)));
        assert!(!ok(cpus(8192.5)));
        assert!(!ok(cpus(f64::NEG_INFINITY)));
        let weight = |w| Limits {
            cpu_weight: Some(w),
            ..Limits::default()
        };
        assert!(ok(weight(1)));
        assert!(ok(weight(10_000)));
        // memory-swap equal to memory means no swap; one byte more is one byte of swap.
        let swap = |t| Limits {
            memory: Some(2 << 20),
            memory_swap: Some(t),
            ..Limits::default()
        };
        assert_eq!(plan(&swap(2 << 20), "a").unwrap().writes[1].value, "0");
        assert_eq!(
            plan(&swap((2 << 20) + 1), "a").unwrap().writes[1].value,
            "1"
        );
        assert!(plan(&swap((2 << 20) - 1), "a").is_err());
    }

    proptest! {
        #[test]
        fn plan_never_panics_and_orders_files(
            memory in proptest::option::of(any::<u64>()),
            memory_swap in proptest::option::of(any::<u64>()),
            pids in proptest::option::of(any::<u64>()),
            cpus in proptest::option::of(any::<f64>()),
            cpu_weight in proptest::option::of(any::<u64>()),
        ) {
            let l = Limits { memory, memory_swap, pids, cpus, cpu_weight };
            if let Ok(p) = plan(&l, "p") {
                let order = ["memory.max", "memory.swap.max", "pids.max", "cpu.max", "cpu.weight"];
                let idx: Vec<usize> = p.writes.iter()
                    .map(|w| order.iter().position(|f| *f == w.file).unwrap())
                    .collect();
                prop_assert!(idx.windows(2).all(|w| w[0] < w[1]));
                prop_assert!(p.writes.iter().all(|w| !w.value.is_empty() && !w.value.contains('\n')));
            }
        }
    }
}
