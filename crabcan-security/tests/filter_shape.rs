//! How many instructions a call runs through the engine default profile's filter: the
//! search must stay short for every syscall number of every ABI (a filter runs on every
//! syscall the container makes).

use crabcan_security::profile::interp::{SeccompData, run_counted, validate};
use crabcan_security::profile::{self, Arch};

#[test]
fn every_call_runs_a_short_path() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/engine-default-seccomp.json"
    );
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("JSON");
    v["architectures"] = serde_json::json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]);
    let c = profile::compile(&profile::from_value(&v).expect("profile")).expect("compile");
    validate(&c.instructions).expect("valid");
    for arch in Arch::ALL {
        let (mut worst, mut total) = (0, 0);
        for (_, nr) in arch.table() {
            let d = SeccompData {
                nr: *nr,
                arch: arch.audit_arch(),
                ip: 0,
                args: [0; 6],
            };
            let (_, steps) = run_counted(&c.instructions, &d).expect("runs");
            worst = worst.max(steps);
            total += steps;
        }
        let mean = total as f64 / arch.table().len() as f64;
        eprintln!("{arch:?}: longest path {worst} instructions, mean {mean:.1}");
        // A balanced search over this profile's ranges is about 8 deep; rows of
        // comparisons at the bottom add a few.
        assert!(worst <= 20, "{arch:?}: {worst}");
    }
    eprintln!("{} instructions in all", c.instructions.len());
}
