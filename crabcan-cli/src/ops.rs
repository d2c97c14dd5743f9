//! The OCI commands that act on a running container through its cgroup (`pause`, `resume`,
//! `update`, `events`, `ps`): runc's flags turned into the runtime's calls.

use clap::{Subcommand, ValueEnum};
use crabcan_cgroups::{BlockIo, Cpu, Memory, Pids, Resources, UNLIMITED};
use crabcan_errors::{Errcode, Result};
use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

/// The names of these commands, for telling the OCI front end from the tutorial's.
pub const COMMANDS: &[&str] = &["pause", "resume", "update", "events", "ps"];

/// The commands of this module.
#[derive(Debug, Subcommand)]
pub enum OpsCmd {
    /// Freeze every process of a container.
    Pause {
        /// The container id.
        id: String,
    },
    /// Thaw a paused container.
    Resume {
        /// The container id.
        id: String,
    },
    /// Change a running container's resource limits.
    Update(Box<UpdateArgs>),
    /// Print a container's usage counters and OOM events as JSON lines.
    Events {
        /// Print the counters once and exit.
        #[arg(long)]
        stats: bool,
        /// How often to print the counters (a duration: 5s, 500ms, 1m).
        #[arg(long, default_value = "5s", value_name = "DURATION")]
        interval: String,
        /// The container id.
        id: String,
    },
    /// List the processes of a container.
    Ps {
        /// table (ps output filtered to the container's processes) or json (their pids).
        #[arg(short, long, value_enum, default_value_t = PsFormat::Table)]
        format: PsFormat,
        /// The container id.
        id: String,
        /// Arguments for ps(1) in table form [default: -ef].
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
}

/// `ps` formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PsFormat {
    /// ps(1)'s own columns.
    Table,
    /// A JSON array of pids.
    Json,
}

/// `update`'s flags (runc's).
#[derive(Debug, clap::Args)]
pub struct UpdateArgs {
    /// The container id.
    pub id: String,
    /// A LinuxResources JSON file, or - for stdin; the single flags are then ignored.
    #[arg(short, long, value_name = "FILE")]
    pub resources: Option<String>,
    /// Memory limit in bytes (k, m, g suffixes), -1 for none.
    #[arg(long, allow_hyphen_values = true)]
    pub memory: Option<String>,
    /// Memory plus swap limit in bytes, -1 for none.
    #[arg(long = "memory-swap", allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// Memory soft limit in bytes.
    #[arg(long = "memory-reservation", allow_hyphen_values = true)]
    pub memory_reservation: Option<String>,
    /// Kernel memory limit (ignored, as by runc).
    #[arg(long = "kernel-memory", allow_hyphen_values = true)]
    pub kernel_memory: Option<String>,
    /// CPU shares (relative weight).
    #[arg(long = "cpu-shares")]
    pub cpu_shares: Option<u64>,
    /// CPU time in microseconds per period, -1 for none.
    #[arg(long = "cpu-quota", allow_hyphen_values = true)]
    pub cpu_quota: Option<i64>,
    /// CPU period in microseconds.
    #[arg(long = "cpu-period")]
    pub cpu_period: Option<u64>,
    /// Real-time runtime in microseconds per real-time period.
    #[arg(long = "cpu-rt-runtime", allow_hyphen_values = true)]
    pub cpu_rt_runtime: Option<i64>,
    /// Real-time period in microseconds.
    #[arg(long = "cpu-rt-period")]
    pub cpu_rt_period: Option<u64>,
    /// CPUs the container may use (0-3, 0,1).
    #[arg(long = "cpuset-cpus")]
    pub cpuset_cpus: Option<String>,
    /// Memory nodes the container may use.
    #[arg(long = "cpuset-mems")]
    pub cpuset_mems: Option<String>,
    /// Most processes, -1 for none.
    #[arg(long = "pids-limit", allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// Block I/O weight, 10 to 1000.
    #[arg(long = "blkio-weight")]
    pub blkio_weight: Option<u16>,
}

/// Runs one of these commands; returns the exit code.
pub fn run(root: &Path, cmd: &OpsCmd) -> Result<i32> {
    match cmd {
        OpsCmd::Pause { id } => crabcan_runtime::pause(root, id)?,
        OpsCmd::Resume { id } => crabcan_runtime::resume(root, id)?,
        OpsCmd::Update(a) => {
            let r = match &a.resources {
                Some(src) => crabcan_oci::parse_update(&read_source(src)?)
                    .map_err(|e| e.context(format!("--resources {src}")))?,
                None => from_flags(a)?,
            };
            crabcan_runtime::update(root, &a.id, &r)?;
        }
        OpsCmd::Events {
            stats,
            interval,
            id,
        } => {
            let every = parse_duration(interval)
                .map_err(|why| Errcode::usage(format!("invalid --interval {interval:?}: {why}")))?;
            if *stats {
                print_json(&crabcan_runtime::stats(root, id)?)?;
            } else {
                crabcan_runtime::watch(root, id, every, print_json)?;
            }
        }
        OpsCmd::Ps {
            format,
            id,
            ps_args,
        } => {
            let pids = crabcan_runtime::pids(root, id)?;
            match format {
                PsFormat::Json => {
                    if !ps_args.is_empty() {
                        return Err(Errcode::usage(
                            "ps arguments are not taken with --format json",
                        ));
                    }
                    print_json(&pids)?;
                }
                PsFormat::Table => print!("{}", ps_table(ps_args, &pids)?),
            }
        }
    }
    Ok(0)
}

/// runc's table form: ps(1) with the given arguments, its lines filtered to the
/// container's pids.
fn ps_table(args: &[String], pids: &[i32]) -> Result<String> {
    let args: Vec<&str> = if args.is_empty() {
        vec!["-ef"]
    } else {
        args.iter().map(String::as_str).collect()
    };
    let out = std::process::Command::new("ps")
        .args(&args)
        .output()
        .map_err(|e| Errcode::setup(format!("cannot run ps: {e}")))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(Errcode::usage(format!(
            "ps {}: {}: {}",
            args.join(" "),
            out.status,
            err.trim()
        )));
    }
    crabcan_runtime::filter_ps(&text, pids)
}

fn print_json(v: &impl serde::Serialize) -> Result<()> {
    let mut line =
        serde_json::to_vec(v).map_err(|e| Errcode::setup(format!("cannot encode JSON: {e}")))?;
    line.push(b'\n');
    let mut out = std::io::stdout().lock();
    out.write_all(&line)
        .and_then(|()| out.flush())
        .map_err(|e| Errcode::setup(format!("cannot write to stdout: {e}")))
}

/// The bytes of `--resources FILE`, or of stdin for `-`.
fn read_source(src: &str) -> Result<Vec<u8>> {
    if src == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .map_err(|e| Errcode::setup(format!("cannot read the resources from stdin: {e}")))?;
        return Ok(buf);
    }
    std::fs::read(src).map_err(|e| Errcode::usage(format!("cannot read --resources {src}: {e}")))
}

/// A byte size flag: runc's `-1` (and crabcan's `unlimited`) is -1, zero is "not given".
fn size_flag(flag: &str, v: &Option<String>) -> Result<Option<i64>> {
    let Some(s) = v else { return Ok(None) };
    let n = crabcan_cgroups::parse_size_or_unlimited(s)
        .map_err(|e| e.context(format!("invalid --{flag} {s:?}")))?;
    Ok(match n {
        0 => None,
        UNLIMITED => Some(-1),
        n => Some(i64::try_from(n).map_err(|_| {
            Errcode::usage(format!("invalid --{flag} {s:?}: the number is too large"))
        })?),
    })
}

/// runc's single flags as resources; a flag left out, or given as 0, changes nothing.
fn from_flags(a: &UpdateArgs) -> Result<Resources> {
    let nz = |v: Option<u64>| v.filter(|v| *v != 0);
    let mem = Memory {
        limit: size_flag("memory", &a.memory)?,
        swap: size_flag("memory-swap", &a.memory_swap)?,
        reservation: size_flag("memory-reservation", &a.memory_reservation)?,
        kernel: size_flag("kernel-memory", &a.kernel_memory)?,
        ..Memory::default()
    };
    let cpu = Cpu {
        shares: nz(a.cpu_shares),
        quota: a.cpu_quota.filter(|q| *q != 0),
        period: nz(a.cpu_period),
        realtime_runtime: a.cpu_rt_runtime.filter(|q| *q != 0),
        realtime_period: nz(a.cpu_rt_period),
        cpus: a.cpuset_cpus.clone().filter(|s| !s.is_empty()),
        mems: a.cpuset_mems.clone().filter(|s| !s.is_empty()),
        ..Cpu::default()
    };
    let r = Resources {
        memory: (mem != Memory::default()).then_some(mem),
        cpu: (cpu != Cpu::default()).then_some(cpu),
        pids: a.pids_limit.filter(|l| *l != 0).map(|limit| Pids { limit }),
        block_io: a.blkio_weight.filter(|w| *w != 0).map(|w| BlockIo {
            weight: Some(w),
            ..BlockIo::default()
        }),
        ..Resources::default()
    };
    r.check().map_err(|e| e.context("update"))?;
    Ok(r)
}

/// A Go duration as runc takes it: a sequence of numbers with units (ns, us, µs, ms, s,
/// m, h), like "5s", "1m30s" or "0.5s"; it must be positive.
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let mut total = 0f64;
    let mut rest = s;
    if rest.is_empty() {
        return Err("empty".into());
    }
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or("missing unit")?;
        let (num, tail) = rest.split_at(num_end);
        let n: f64 = num.parse().map_err(|_| format!("bad number {num:?}"))?;
        let unit_end = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_end);
        let scale = match unit {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(format!("unknown unit {unit:?}")),
        };
        total += n * scale;
        rest = tail;
    }
    if !(total > 0.0 && total < 1e9) {
        return Err("duration interval must be greater than 0".into());
    }
    Ok(Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct T {
        #[command(subcommand)]
        cmd: OpsCmd,
    }

    fn parse(v: &[&str]) -> OpsCmd {
        T::try_parse_from(std::iter::once("c").chain(v.iter().copied()))
            .unwrap()
            .cmd
    }

    #[test]
    fn durations_as_go_writes_them() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("100ms"), Ok(Duration::from_millis(100)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("0.5s"), Ok(Duration::from_millis(500)));
        for bad in ["", "5", "0s", "s", "5x", "-1s", "1e3s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn update_flags_become_resources() {
        let OpsCmd::Update(a) = parse(&[
            "update",
            "--memory",
            "64m",
            "--memory-swap=-1",
            "--cpu-quota",
            "-1",
            "--pids-limit",
            "64",
            "--blkio-weight",
            "0",
            "c1",
        ]) else {
            panic!("not update")
        };
        let r = from_flags(&a).unwrap();
        let m = r.memory.unwrap();
        assert_eq!(m.limit, Some(64 << 20));
        assert_eq!(m.swap, Some(-1));
        assert_eq!(r.cpu.unwrap().quota, Some(-1));
        assert_eq!(r.pids, Some(Pids { limit: 64 }));
        assert_eq!(r.block_io, None);
        let OpsCmd::Update(a) = parse(&["update", "c1"]) else {
            panic!("not update")
        };
        assert_eq!(from_flags(&a).unwrap(), Resources::default());
        let OpsCmd::Update(a) = parse(&["update", "--memory", "12q", "c1"]) else {
            panic!("not update")
        };
        let e = from_flags(&a).unwrap_err().to_string();
        assert!(e.contains("invalid --memory \"12q\""), "{e}");
        let OpsCmd::Update(a) = parse(&["update", "--cpu-shares", "1", "c1"]) else {
            panic!("not update")
        };
        assert!(from_flags(&a).is_err());
    }

    #[test]
    fn ps_takes_ps_arguments_after_the_id() {
        let OpsCmd::Ps {
            format,
            id,
            ps_args,
        } = parse(&["ps", "--format", "json", "c1"])
        else {
            panic!("not ps")
        };
        assert_eq!(
            (format, id.as_str(), ps_args.len()),
            (PsFormat::Json, "c1", 0)
        );
        let OpsCmd::Ps { id, ps_args, .. } = parse(&["ps", "c1", "-o", "pid,args"]) else {
            panic!("not ps")
        };
        assert_eq!(id, "c1");
        assert_eq!(ps_args, ["-o", "pid,args"]);
        let OpsCmd::Ps { ps_args, .. } = parse(&["ps", "c1", "-ef"]) else {
            panic!("not ps")
        };
        assert_eq!(ps_args, ["-ef"]);
    }
}
