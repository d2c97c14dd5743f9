//! The pure (syscall-free) parts of crabcan's start path, timed with std only:
//! `cargo bench -p crabcan-cli --bench pure`. Prints the median ns per iteration.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crabcan_mounts::{BindMount, MountConfig, Root};
use crabcan_security::SecurityConfig;

/// Samples per case; the median of them is reported.
const SAMPLES: usize = 31;
/// Each sample runs long enough that the clock's resolution does not matter.
const SAMPLE_TIME: Duration = Duration::from_millis(5);

/// Times `f` and returns the median ns per call over [`SAMPLES`] samples.
fn bench<T>(mut f: impl FnMut() -> T) -> (f64, u64) {
    // Calibrate: double the batch until one batch takes at least SAMPLE_TIME.
    let mut iters: u64 = 1;
    loop {
        let start = Instant::now();
        for _ in 0..iters {
            black_box(f());
        }
        if start.elapsed() >= SAMPLE_TIME || iters >= 1 << 30 {
            break;
        }
        iters *= 2;
    }
    let mut per_iter: Vec<f64> = (0..SAMPLES)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..iters {
                black_box(f());
            }
            start.elapsed().as_nanos() as f64 / iters as f64
        })
        .collect();
    per_iter.sort_by(f64::total_cmp);
    (per_iter[SAMPLES / 2], iters)
}

fn report(name: &str, (ns, iters): (f64, u64)) {
    println!("{name:<40} {ns:>12.1} ns/iter   ({SAMPLES} samples of {iters} iterations)");
}

fn mount_config(binds: usize) -> MountConfig {
    let mut cfg = MountConfig::new(Root::Dir("/r".into()));
    cfg.binds = (0..binds)
        .map(|i| BindMount {
            source: PathBuf::from(format!("/srv/bench/b{i:04}")),
            target: PathBuf::from(format!("/mnt/bench/b{i:04}")),
            read_only: i % 2 == 1,
            dev: false,
            idmap: false,
        })
        .collect();
    cfg
}

fn main() {
    // `cargo test --benches` runs this with `--bench` absent; keep that quick.
    if !std::env::args().any(|a| a == "--bench") {
        println!("pure: run with `cargo bench -p crabcan-cli --bench pure` to measure");
        return;
    }
    report(
        "hostname::generate",
        bench(|| crabcan_hostname::generate(&mut rand::rng())),
    );
    for binds in [0, 100, 1000] {
        let cfg = mount_config(binds);
        if let Err(e) = crabcan_mounts::plan(&cfg) {
            eprintln!("mounts::plan with {binds} binds failed: {e}");
            std::process::exit(1);
        }
        report(
            &format!("mounts::plan ({binds} binds)"),
            bench(|| crabcan_mounts::plan(black_box(&cfg))),
        );
    }
    for (name, cfg) in [
        (
            "security::plan (default, seccomp on)",
            SecurityConfig::default(),
        ),
        (
            "security::plan (seccomp off)",
            SecurityConfig {
                seccomp: crabcan_security::Seccomp::Unconfined,
                ..SecurityConfig::default()
            },
        ),
    ] {
        if let Err(e) = crabcan_security::plan(&cfg) {
            eprintln!("{name} failed: {e}");
            std::process::exit(1);
        }
        report(name, bench(|| crabcan_security::plan(black_box(&cfg))));
    }
    // podman's profile as its config.json carries it: read from JSON and compiled.
    let text = include_str!("../../crabcan-security/tests/fixtures/podman-config-seccomp.json");
    let value: serde_json::Value = serde_json::from_str(text).expect("the fixture is JSON");
    let read = || crabcan_security::profile::from_value(black_box(&value));
    let profile = match read() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("podman's profile: {e}");
            std::process::exit(1);
        }
    };
    report("security::profile::from_value (podman's)", bench(read));
    let cfg = SecurityConfig {
        seccomp: crabcan_security::Seccomp::Profile(profile),
        ..SecurityConfig::default()
    };
    report(
        "security::plan (podman's profile)",
        bench(|| crabcan_security::plan(black_box(&cfg))),
    );
}
