//! A process's resource limits (rlimits), written `NAME=SOFT[:HARD]`: parsed (pure) and set
//! in the container's process before `execve`.

use crabcan_errors::{Errcode, Result, SysContext};
use crabcan_units::{is_unlimited, parse_digits, parse_size};
use nix::errno::Errno;
use nix::sys::resource::{RLIM_INFINITY, Resource, getrlimit, setrlimit};
use std::fmt;

/// How the value of an rlimit is counted; decides which suffixes are accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    /// Bytes: size suffixes (k, m, g, t) are accepted.
    Bytes,
    /// A plain count (files, processes, signals, seconds, microseconds, priorities).
    Count,
}

/// The rlimit names, their resource and unit.
const RLIMITS: &[(&str, Resource, Unit)] = &[
    ("as", Resource::RLIMIT_AS, Unit::Bytes),
    ("core", Resource::RLIMIT_CORE, Unit::Bytes),
    ("cpu", Resource::RLIMIT_CPU, Unit::Count),
    ("data", Resource::RLIMIT_DATA, Unit::Bytes),
    ("fsize", Resource::RLIMIT_FSIZE, Unit::Bytes),
    ("locks", Resource::RLIMIT_LOCKS, Unit::Count),
    ("memlock", Resource::RLIMIT_MEMLOCK, Unit::Bytes),
    ("msgqueue", Resource::RLIMIT_MSGQUEUE, Unit::Bytes),
    ("nice", Resource::RLIMIT_NICE, Unit::Count),
    ("nofile", Resource::RLIMIT_NOFILE, Unit::Count),
    ("nproc", Resource::RLIMIT_NPROC, Unit::Count),
    ("rtprio", Resource::RLIMIT_RTPRIO, Unit::Count),
    ("rttime", Resource::RLIMIT_RTTIME, Unit::Count),
    ("sigpending", Resource::RLIMIT_SIGPENDING, Unit::Count),
    ("stack", Resource::RLIMIT_STACK, Unit::Bytes),
];

/// The kernel's rlimit names by number (the generic Linux numbering, which x86 uses; libc
/// types the numbers differently on glibc and musl), as the OCI config spells them.
pub const KERNEL_RLIMIT_NAMES: [&str; 16] = [
    "RLIMIT_CPU",
    "RLIMIT_FSIZE",
    "RLIMIT_DATA",
    "RLIMIT_STACK",
    "RLIMIT_CORE",
    "RLIMIT_RSS",
    "RLIMIT_NPROC",
    "RLIMIT_NOFILE",
    "RLIMIT_MEMLOCK",
    "RLIMIT_AS",
    "RLIMIT_LOCKS",
    "RLIMIT_SIGPENDING",
    "RLIMIT_MSGQUEUE",
    "RLIMIT_NICE",
    "RLIMIT_RTPRIO",
    "RLIMIT_RTTIME",
];

/// The rlimit names [`parse_rlimit`] accepts, lowercase and without the `RLIMIT_` prefix.
pub fn rlimit_names() -> impl Iterator<Item = &'static str> {
    RLIMITS.iter().map(|(n, _, _)| *n)
}

/// One rlimit: a resource, its soft limit and, if given, its hard limit.
///
/// Values are in the kernel's units (bytes, seconds for `cpu`, microseconds for `rttime`,
/// the raw 0..=40 ceiling for `nice`); [`RLIM_INFINITY`] means unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RlimitSpec {
    /// The rlimit's name ("nofile").
    pub name: &'static str,
    /// The resource it sets.
    pub resource: Resource,
    /// The soft limit.
    pub soft: u64,
    /// The hard limit; `None` keeps the inherited one, raised to `soft` if lower.
    pub hard: Option<u64>,
}

/// The spec as [`parse_rlimit`] reads it ("nofile=1024:2048", "stack=unlimited").
impl fmt::Display for RlimitSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.name, show(self.soft))?;
        match self.hard {
            Some(h) => write!(f, ":{}", show(h)),
            None => Ok(()),
        }
    }
}

/// Parses `NAME=SOFT[:HARD]`: "nofile=1024:2048", "core=0", "stack=unlimited".
///
/// Names are case-insensitive and may carry an `RLIMIT_` prefix; byte-valued limits accept
/// size suffixes ("stack=8m"). A soft limit above the hard limit is refused. Errors say
/// why, not which value: the caller names it.
pub fn parse_rlimit(s: &str) -> Result<RlimitSpec> {
    let Some((name, value)) = s.split_once('=') else {
        return Err(Errcode::usage(
            "expected NAME=SOFT[:HARD], e.g. nofile=1024:2048",
        ));
    };
    let lower = name.to_ascii_lowercase();
    let key = lower.strip_prefix("rlimit_").unwrap_or(&lower);
    let Some(&(name, resource, unit)) = RLIMITS.iter().find(|(n, _, _)| *n == key) else {
        let known: Vec<&str> = rlimit_names().collect();
        return Err(Errcode::usage(format!(
            "unknown limit '{}' (known: {})",
            name.escape_debug(),
            known.join(", ")
        )));
    };
    let one = |v: &str, which: &str| -> Result<u64> {
        if is_unlimited(v) || v == "-1" {
            return Ok(RLIM_INFINITY);
        }
        let n = match unit {
            Unit::Count => parse_digits(v),
            Unit::Bytes => parse_size(v).ok(),
        };
        n.filter(|&n| n != RLIM_INFINITY).ok_or_else(|| {
            let what = match unit {
                Unit::Count => "a whole number",
                Unit::Bytes => "a size in bytes (k, m, g, t suffixes allowed)",
            };
            Errcode::usage(format!(
                "the {which} limit '{}' is not {what} or 'unlimited'",
                v.escape_debug()
            ))
        })
    };
    let (soft, hard) = match value.split_once(':') {
        Some((soft, hard)) => (one(soft, "soft")?, Some(one(hard, "hard")?)),
        None => (one(value, "soft")?, None),
    };
    if let Some(h) = hard {
        // RLIM_INFINITY is u64::MAX, so plain comparison orders "unlimited" last.
        if soft > h {
            return Err(Errcode::usage("the soft limit is above the hard limit"));
        }
    }
    Ok(RlimitSpec {
        name,
        resource,
        soft,
        hard,
    })
}

/// Sets the rlimits on the calling process, in order (a later spec for the same name wins).
///
/// Call it in the container's child process, after the namespaces are set up and before
/// `execve`, never in crabcan's parent. A soft-only spec keeps the inherited hard limit,
/// raised to the soft one when the soft one is higher. Raising a hard limit needs
/// CAP_SYS_RESOURCE in the host's initial user namespace; the error says so.
pub fn apply_rlimits(specs: &[RlimitSpec]) -> Result<()> {
    for spec in specs {
        let (_, cur_hard) = getrlimit(spec.resource)
            .sys_ctx(|| format!("read the current {} limit (getrlimit)", spec.name))?;
        let hard = target_hard(spec, cur_hard);
        setrlimit(spec.resource, spec.soft, hard).map_err(|e| {
            // A soft-only spec does not show the hard limit the call asked for.
            let what = match spec.hard {
                Some(_) => format!("set rlimit {spec} (setrlimit)"),
                None => format!(
                    "set rlimit {spec} (setrlimit with the hard limit {})",
                    show(hard)
                ),
            };
            if e == Errno::EPERM && hard > cur_hard {
                Errcode::sys(
                    format!(
                        "{what}: raising the hard limit above the inherited {} needs CAP_SYS_RESOURCE in the host's user namespace, which this process lacks",
                        show(cur_hard)
                    ),
                    e,
                )
                .with_hint(format!(
                    "ask for at most {} or raise crabcan's own hard limit before the run",
                    show(cur_hard)
                ))
            } else {
                Errcode::sys(what, e)
            }
        })?;
    }
    Ok(())
}

/// The hard limit to set for `spec` when the current one is `cur_hard`.
pub fn target_hard(spec: &RlimitSpec, cur_hard: u64) -> u64 {
    spec.hard.unwrap_or(cur_hard.max(spec.soft))
}

fn show(v: u64) -> String {
    if v == RLIM_INFINITY {
        "unlimited".into()
    } else {
        v.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_name_parses() {
        for name in rlimit_names() {
            let spec = parse_rlimit(&format!("{name}=1:2")).unwrap();
            assert_eq!(spec.name, name);
            assert_eq!((spec.soft, spec.hard), (1, Some(2)));
            let upper = parse_rlimit(&format!("RLIMIT_{}=0", name.to_uppercase())).unwrap();
            assert_eq!(upper.resource, spec.resource);
        }
        assert_eq!(rlimit_names().count(), 15);
    }

    #[test]
    fn examples() {
        let s = parse_rlimit("nofile=1024:2048").unwrap();
        assert_eq!(s.resource, Resource::RLIMIT_NOFILE);
        assert_eq!((s.soft, s.hard), (1024, Some(2048)));
        let s = parse_rlimit("core=0").unwrap();
        assert_eq!(
            (s.resource, s.soft, s.hard),
            (Resource::RLIMIT_CORE, 0, None)
        );
        let s = parse_rlimit("stack=unlimited").unwrap();
        assert_eq!((s.soft, s.hard), (RLIM_INFINITY, None));
        let s = parse_rlimit("stack=8m:unlimited").unwrap();
        assert_eq!((s.soft, s.hard), (8 << 20, Some(RLIM_INFINITY)));
        let s = parse_rlimit("nproc=-1").unwrap();
        assert_eq!(s.soft, RLIM_INFINITY);
    }

    #[test]
    fn garbage_is_refused_saying_why() {
        let form = "expected NAME=SOFT[:HARD]";
        let count = "is not a whole number or 'unlimited'";
        for (s, why) in [
            ("nofile", form),
            ("nofile=", "the soft limit '' is not a whole number"),
            ("nofile=:5", "the soft limit ''"),
            ("nofile=5:", "the hard limit ''"),
            ("nofile=abc", "the soft limit 'abc' is not a whole number"),
            ("nofile=1k", count),
            ("nofile=-2", count),
            ("nofile=1:2:3", "the hard limit '2:3'"),
            ("bogus=1", "unknown limit 'bogus'"),
            ("=1", "unknown limit ''"),
            ("nofile=2048:1024", "the soft limit is above the hard limit"),
            (
                "nofile=unlimited:1024",
                "the soft limit is above the hard limit",
            ),
            ("stack=1.5m", "is not a size in bytes"),
            ("cpu=18446744073709551615", count),
        ] {
            let e = parse_rlimit(s).unwrap_err();
            let msg = e.to_string();
            assert!(msg.contains(why), "{s}: {msg}");
            // The caller names the value and where it came from.
            assert!(!msg.contains("--"), "{s}: {msg}");
            assert_eq!(e.exit_code(), 125);
        }
        let msg = parse_rlimit("bogus=1").unwrap_err().to_string();
        assert!(msg.contains("nofile") && msg.contains("rttime"), "{msg}");
    }

    #[test]
    fn soft_only_keeps_or_raises_the_hard_limit() {
        let s = parse_rlimit("nofile=100").unwrap();
        assert_eq!(target_hard(&s, 4096), 4096);
        let s = parse_rlimit("nofile=8192").unwrap();
        assert_eq!(target_hard(&s, 4096), 8192);
        let s = parse_rlimit("nofile=unlimited").unwrap();
        assert_eq!(target_hard(&s, 4096), RLIM_INFINITY);
        let s = parse_rlimit("nofile=10:20").unwrap();
        assert_eq!(target_hard(&s, 4096), 20);
    }

    proptest! {
        #[test]
        fn round_trips(i in 0usize..15, soft in 0u64..1 << 40, extra in proptest::option::of(0u64..1 << 40)) {
            let name = rlimit_names().nth(i).unwrap();
            let hard = extra.map(|e| soft + e);
            let s = match hard {
                Some(h) => format!("{name}={soft}:{h}"),
                None => format!("{name}={soft}"),
            };
            let spec = parse_rlimit(&s).unwrap();
            prop_assert_eq!((spec.soft, spec.hard), (soft, hard));
            prop_assert_eq!(spec.to_string(), s);
        }

        #[test]
        fn never_panics(s in ".{0,30}") {
            let _ = parse_rlimit(&s);
        }
    }
}
