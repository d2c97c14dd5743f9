//! crabcan's developer and CI tasks, run as `cargo xtask <task>`.

mod bench;
mod ci;
mod cri;
mod engines;
mod mutants;
mod syscalls;
mod vmtest;

use xtask::{rootfs, util};

use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: cargo xtask <task>
tasks:
  ci [--no-vm]           everything CI checks, as root: setup, fmt, clippy, tests, vm-test
  bench [--help]         start latency, memory, growth and throughput against peers
  cri [--runtime PATH] [-- FILTER…]
                         pods through containerd's CRI with crabcan (or PATH), as root
  engines [--runtime PATH] [-- FILTER…]
                         podman, ctr and docker driving crabcan (or PATH), as root
  mutants [CRATE…]       mutation testing of the pure crates (slow; not part of ci)
  rootfs DIR             build the busybox test root filesystem in DIR
  syscalls [--check]     regenerate the seccomp syscall tables from the kernel headers
  vm-test [-- FILTER…]   run the test suite as root in a QEMU guest with cgroup v2";

fn usage_error(msg: &str) -> ExitCode {
    eprintln!("xtask: {msg}\n{USAGE}");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("rootfs") => match &args[1..] {
            [dir] if !dir.starts_with('-') => rootfs::ensure(&PathBuf::from(dir)).map(|()| true),
            _ => return usage_error("rootfs takes exactly one argument, the directory"),
        },
        Some("bench") => bench::main(&args[1..]),
        Some("ci") => ci::run(&args[1..]),
        Some("cri") => cri::run(&args[1..]),
        Some("engines") => engines::run(&args[1..]),
        Some("mutants") => mutants::run(&args[1..]),
        Some("syscalls") => syscalls::run(&args[1..]),
        Some("vm-test") => {
            let mut rest = &args[1..];
            if rest.first().map(String::as_str) == Some("--") {
                rest = &rest[1..];
            }
            vmtest::run(rest)
        }
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some(other) => return usage_error(&format!("unknown task `{other}`")),
        None => return usage_error("no task given"),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}
