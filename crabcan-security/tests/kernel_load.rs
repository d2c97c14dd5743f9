//! The running kernel takes the compiled engine default profile and gives the verdicts
//! it encodes: a process loads the program on itself (no_new_privs, no privilege needed)
//! and makes a few calls. host_only: the loader is a Python helper, which the VM's bare
//! guest lacks.

use std::process::Command;

use crabcan_security::profile;

#[path = "support/engine.rs"]
mod engine;

const PYTHON: &str = "/usr/bin/python3";
const HELPER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/support/load_and_call.py"
);

#[cfg(target_arch = "x86_64")]
#[test]
fn host_only_the_kernel_runs_the_engine_default_profile() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/engine-default-seccomp.json"
    );
    let shipped: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("JSON");
    let v = engine::engine_profile(&shipped);
    let c = profile::compile(&profile::from_value(&v).expect("profile")).expect("compile");
    let hex: String = c
        .instructions
        .iter()
        .flat_map(|i| {
            let mut b = i.code.to_le_bytes().to_vec();
            b.extend([i.jt, i.jf]);
            b.extend(i.k.to_le_bytes());
            b
        })
        .map(|b| format!("{b:02x}"))
        .collect();
    // (call, expected errno): numbers and verdicts written out. Every call is harmless
    // should the filter let it through (bad arguments, or a query).
    let cases: [(&[i64], i32); 7] = [
        (&[39], 0),                  // getpid: allowed
        (&[321, 9999, 0, 0], 1),     // bpf (an unknown command): EPERM
        (&[298, 0, 0, 0, -1, 0], 1), // perf_event_open (no attributes): EPERM
        (&[41, 16, 3, 9], 22),       // socket(AF_NETLINK, SOCK_RAW, NETLINK_AUDIT): EINVAL
        (&[135, 0xffff_ffff], 0),    // personality(query): allowed
        (&[135, 0x0040_0000], 38),   // personality(READ_IMPLIES_EXEC): the default, ENOSYS
        (&[1000], 38),               // no such call: the default, ENOSYS
    ];
    let calls: Vec<&[i64]> = cases.iter().map(|(c, _)| *c).collect();
    let out = Command::new(PYTHON)
        .arg(HELPER)
        .arg(hex)
        .arg(serde_json::to_string(&calls).expect("calls"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {PYTHON}: {e}"));
    assert!(
        out.status.success(),
        "loading the program failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Vec<i32> = serde_json::from_slice(&out.stdout).expect("errnos");
    let want: Vec<i32> = cases.iter().map(|(_, e)| *e).collect();
    assert_eq!(got, want, "errno per call: {calls:?}");
}
