//! `crabcan run`'s limits: the few a one-shot container takes, turned into [`Resources`].

use crate::parse::{CPU_PERIOD_US, MAX_CPUS, MIN_CPUS, UNLIMITED};
use crate::resources::{Cpu, Memory, Pids, Resources};
use crabcan_errors::{Errcode, Result};

/// The pids limit a run gets when none is asked, against fork bombs; only where the pids
/// controller exists, so it never makes a run fail.
pub const DEFAULT_PIDS_MAX: u64 = 4096;

/// The prefix of a container's cgroup directory name.
pub const CGROUP_PREFIX: &str = "crabcan-";

/// The longest container name: the directory name must fit in NAME_MAX (255).
pub const MAX_NAME_LEN: usize = 255 - CGROUP_PREFIX.len();

/// The resource limits asked for explicitly; `None` means not asked.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Limits {
    /// Memory limit in bytes.
    pub memory: Option<u64>,
    /// Memory plus swap in bytes ([`UNLIMITED`] for no swap cap).
    pub memory_swap: Option<u64>,
    /// Process limit ([`UNLIMITED`] lifts the default cap).
    pub pids: Option<u64>,
    /// A number of CPUs, turned into a quota over a 100 ms period.
    pub cpus: Option<f64>,
    /// A cgroup v2 cpu weight, 1..=10000 (shares on v1).
    pub cpu_weight: Option<u64>,
}

/// Which of the [`Limits`] an error is about, for the front end to name it its way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    /// [`Limits::memory`].
    Memory,
    /// [`Limits::memory_swap`].
    MemorySwap,
    /// [`Limits::pids`].
    Pids,
    /// [`Limits::cpus`].
    Cpus,
    /// [`Limits::cpu_weight`].
    CpuWeight,
}

impl Limits {
    /// Whether the default pids cap applies (no process limit asked, none lifted).
    pub fn wants_default_pids(&self) -> bool {
        self.pids.is_none()
    }

    /// The resources these limits ask for, every value checked (here or by
    /// [`Resources::check`], never twice); the error says which limit is wrong.
    pub fn resources(&self) -> std::result::Result<Resources, (LimitKind, Errcode)> {
        let mut r = Resources::default();
        let too_big =
            |kind, what: &str, v: u64| (kind, Errcode::usage(format!("{what} {v} is too large")));
        if let Some(m) = self.memory {
            let limit =
                i64::try_from(m).map_err(|_| too_big(LimitKind::Memory, "memory limit", m))?;
            let mem = Memory {
                limit: Some(limit),
                ..Memory::default()
            };
            check(&mem_only(mem.clone()), LimitKind::Memory)?;
            r.memory = Some(mem);
        }
        if let Some(total) = self.memory_swap {
            let limit = r.memory.as_ref().and_then(|m| m.limit).unwrap_or(0);
            let swap = match total {
                UNLIMITED => -1,
                // 0 would mean "not set" to the runtime-spec form: refuse it as the
                // total below memory that it is.
                0 => {
                    return Err((
                        LimitKind::MemorySwap,
                        Errcode::usage(format!(
                            "memory swap 0 is below the memory limit {limit}: it is the memory+swap total"
                        )),
                    ));
                }
                t => i64::try_from(t)
                    .map_err(|_| too_big(LimitKind::MemorySwap, "memory swap", t))?,
            };
            let mem = Memory {
                limit: Some(limit).filter(|&l| l != 0),
                swap: Some(swap),
                ..Memory::default()
            };
            check(&mem_only(mem.clone()), LimitKind::MemorySwap)?;
            r.memory = Some(mem);
        }
        match self.pids {
            // Lifting the default needs no cgroup: a fresh pids cgroup is unlimited anyway.
            None | Some(UNLIMITED) => {}
            Some(0) => {
                return Err((
                    LimitKind::Pids,
                    Errcode::usage("pids limit 0: at least 1 process, or unlimited"),
                ));
            }
            Some(n) => {
                let limit =
                    i64::try_from(n).map_err(|_| too_big(LimitKind::Pids, "pids limit", n))?;
                r.pids = Some(Pids { limit });
                check(
                    &Resources {
                        pids: r.pids,
                        ..Resources::default()
                    },
                    LimitKind::Pids,
                )?;
            }
        }
        if let Some(c) = self.cpus {
            if !c.is_finite() || !(MIN_CPUS..=MAX_CPUS).contains(&c) {
                return Err((
                    LimitKind::Cpus,
                    Errcode::usage(format!(
                        "cpus {c}: must be between {MIN_CPUS} and {MAX_CPUS}"
                    )),
                ));
            }
            // In range, so the product fits: at most 8192 × 100000.
            let quota = (c * CPU_PERIOD_US as f64).round() as i64;
            r.cpu = Some(Cpu {
                quota: Some(quota),
                period: Some(CPU_PERIOD_US),
                ..Cpu::default()
            });
        }
        if let Some(w) = self.cpu_weight {
            let cpu = r.cpu.get_or_insert_with(Cpu::default);
            cpu.weight = Some(w);
            check(
                &Resources {
                    cpu: Some(Cpu {
                        weight: Some(w),
                        ..Cpu::default()
                    }),
                    ..Resources::default()
                },
                LimitKind::CpuWeight,
            )?;
        }
        Ok(r)
    }
}

fn mem_only(m: Memory) -> Resources {
    Resources {
        memory: Some(m),
        ..Resources::default()
    }
}

fn check(r: &Resources, kind: LimitKind) -> std::result::Result<(), (LimitKind, Errcode)> {
    r.check().map_err(|e| (kind, e))
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn kind(l: Limits) -> LimitKind {
        l.resources().unwrap_err().0
    }

    #[test]
    fn everything_converts() {
        let l = Limits {
            memory: Some(512 << 20),
            memory_swap: Some(1 << 30),
            pids: Some(100),
            cpus: Some(0.5),
            cpu_weight: Some(200),
        };
        let r = l.resources().unwrap();
        let m = r.memory.unwrap();
        assert_eq!((m.limit, m.swap), (Some(512 << 20), Some(1 << 30)));
        assert_eq!(r.pids, Some(Pids { limit: 100 }));
        let c = r.cpu.unwrap();
        assert_eq!(
            (c.quota, c.period, c.weight),
            (Some(50_000), Some(100_000), Some(200))
        );
        assert!(!l.wants_default_pids());
        assert!(Limits::default().wants_default_pids());
        assert_eq!(Limits::default().resources().unwrap(), Resources::default());
    }

    #[test]
    fn unlimited_forms() {
        let l = Limits {
            memory: Some(64 << 20),
            memory_swap: Some(UNLIMITED),
            pids: Some(UNLIMITED),
            ..Limits::default()
        };
        let r = l.resources().unwrap();
        assert_eq!(r.memory.unwrap().swap, Some(-1));
        assert_eq!(r.pids, None);
        assert!(!l.wants_default_pids());
    }

    #[test]
    fn each_error_names_its_limit() {
        assert_eq!(
            kind(Limits {
                memory: Some(12),
                ..Limits::default()
            }),
            LimitKind::Memory
        );
        let e = Limits {
            memory: Some(12),
            ..Limits::default()
        }
        .resources()
        .unwrap_err()
        .1
        .to_string();
        assert_eq!(
            e,
            "memory limit 12 below the minimum of 1048576 bytes (1 MiB)"
        );
        for swap in [0, 1 << 20] {
            assert_eq!(
                kind(Limits {
                    memory: Some(2 << 20),
                    memory_swap: Some(swap),
                    ..Limits::default()
                }),
                LimitKind::MemorySwap
            );
        }
        assert_eq!(
            kind(Limits {
                memory_swap: Some(1 << 30),
                ..Limits::default()
            }),
            LimitKind::MemorySwap
        );
        for n in [0, 4_194_305, u64::MAX - 1] {
            assert_eq!(
                kind(Limits {
                    pids: Some(n),
                    ..Limits::default()
                }),
                LimitKind::Pids,
                "{n}"
            );
        }
        for c in [0.0, 0.009, 8192.5, f64::NAN, f64::INFINITY] {
            assert_eq!(
                kind(Limits {
                    cpus: Some(c),
                    ..Limits::default()
                }),
                LimitKind::Cpus
            );
        }
        for w in [0, 10_001] {
            assert_eq!(
                kind(Limits {
                    cpu_weight: Some(w),
                    ..Limits::default()
                }),
                LimitKind::CpuWeight
            );
        }
    }

    #[test]
    fn range_edges() {
        let ok = |l: Limits| l.resources().is_ok();
        let mem = |m| Limits {
            memory: Some(m),
            ..Limits::default()
        };
        assert!(!ok(mem(1_048_575)));
        assert!(ok(mem(1_048_576)));
        assert!(!ok(mem(u64::MAX - 1)));
        let pids = |n| Limits {
            pids: Some(n),
            ..Limits::default()
        };
        assert!(ok(pids(1)));
        assert!(ok(pids(4_194_304)));
        let cpus = |c| Limits {
            cpus: Some(c),
            ..Limits::default()
        };
        assert!(ok(cpus(0.01)));
        assert!(ok(cpus(8192.0)));
        let swap = |t| Limits {
            memory: Some(2 << 20),
            memory_swap: Some(t),
            ..Limits::default()
        };
        assert!(ok(swap(2 << 20)));
        assert!(!ok(swap((2 << 20) - 1)));
    }

    #[test]
    fn container_names() {
        assert!(check_container_name("web-1.a_b").is_ok());
        assert!(check_container_name(&"a".repeat(MAX_NAME_LEN)).is_ok());
        for n in ["", "-a", "a/b", "a b", ".."] {
            assert!(check_container_name(n).is_err(), "{n}");
        }
        assert!(check_container_name(&"a".repeat(MAX_NAME_LEN + 1)).is_err());
    }

    proptest! {
        #[test]
        fn resources_never_panic(
            memory in proptest::option::of(any::<u64>()),
            memory_swap in proptest::option::of(any::<u64>()),
            pids in proptest::option::of(any::<u64>()),
            cpus in proptest::option::of(any::<f64>()),
            cpu_weight in proptest::option::of(any::<u64>()),
        ) {
            let l = Limits { memory, memory_swap, pids, cpus, cpu_weight };
            if let Ok(r) = l.resources() {
                prop_assert!(r.check().is_ok());
            }
        }
    }
}
