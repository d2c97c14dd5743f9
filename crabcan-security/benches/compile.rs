//! `cargo bench -p crabcan-security`: how long compiling a profile takes (podman's from
//! its config.json, docker's, crabcan's default). The budget for podman's is 200 µs.

use std::time::{Duration, Instant};

use crabcan_security::profile::{self, Profile};

/// The median of `rounds` timed runs, after a warm-up.
fn median(rounds: usize, mut f: impl FnMut()) -> Duration {
    for _ in 0..rounds / 10 {
        f();
    }
    let mut t: Vec<Duration> = (0..rounds)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed()
        })
        .collect();
    t.sort_unstable();
    t[rounds / 2]
}

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn main() {
    let budget = Duration::from_micros(200);
    let mut over = false;
    for (what, json) in [
        (
            "podman (config.json)",
            fixture("podman-config-seccomp.json"),
        ),
        (
            "docker (config.json)",
            fixture("docker-config-seccomp.json"),
        ),
        ("crabcan default", profile::CRABCAN_DEFAULT_JSON.to_string()),
    ] {
        let p: Profile = profile::parse(&json).expect("profile");
        let mut len = 0;
        let compile = median(2000, || {
            len = profile::compile(std::hint::black_box(&p))
                .expect("compile")
                .instructions
                .len();
        });
        let parse = median(500, || {
            std::hint::black_box(profile::parse(std::hint::black_box(&json)).expect("parse"));
        });
        println!("{what:24} compile {compile:>10.1?}  parse {parse:>10.1?}  {len} instructions");
        if what.starts_with("podman") && compile > budget {
            over = true;
        }
    }
    if over {
        eprintln!("compiling podman's profile takes more than {budget:?}");
        std::process::exit(1);
    }
}
