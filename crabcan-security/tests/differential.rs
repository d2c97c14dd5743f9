//! The compiler against libseccomp: both compile the same profiles and both programs run
//! in the BPF interpreter on every syscall number of the three x86 ABIs, on argument
//! values at and around every constant of the profile and on random ones. Every verdict
//! (action and errno) must be the same.
//!
//! libseccomp runs through its Python bindings (Debian's python3-seccomp, which
//! `cargo xtask ci` installs); without them this test fails.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};

use crabcan_security::profile::interp::{self, SeccompData};
use crabcan_security::profile::{self, AUDIT_ARCH_I386, AUDIT_ARCH_X86_64, Arch, X32_SYSCALL_BIT};
use crabcan_security::seccomp::BpfInsn;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};

const PYTHON: &str = "/usr/bin/python3";
const HELPER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/support/libseccomp_bpf.py"
);
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

/// Capabilities an engine gives a container by default.
const ENGINE_CAPS: [&str; 11] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_NET_BIND_SERVICE",
    "CAP_SETFCAP",
    "CAP_SETGID",
    "CAP_SETPCAP",
    "CAP_SETUID",
    "CAP_SYS_CHROOT",
];

fn table_key(a: Arch) -> &'static str {
    match a {
        Arch::X86_64 => "x86_64",
        Arch::X86 => "x86",
        Arch::X32 => "x32",
    }
}

/// libseccomp's program for `profile` and, per ABI, the names it knows.
struct Reference {
    program: Vec<BpfInsn>,
    known: Vec<(Arch, BTreeSet<String>)>,
}

fn libseccomp(profile: &Value) -> Reference {
    let mut names = serde_json::Map::new();
    for a in Arch::ALL {
        let list: Vec<&str> = a.table().iter().map(|(n, _)| *n).collect();
        names.insert(table_key(a).into(), json!(list));
    }
    let req = json!({"profile": profile, "names": names}).to_string();
    let mut child = Command::new(PYTHON)
        .arg(HELPER)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {PYTHON}: {e} (install python3-seccomp)"));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(req.as_bytes())
        .expect("write the request");
    let out = child.wait_with_output().expect("wait for the helper");
    assert!(
        out.status.success(),
        "the libseccomp helper failed (install python3-seccomp; cargo xtask ci does): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("helper output is JSON");
    let hex = v["bpf"].as_str().expect("bpf");
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect();
    let program = interp::from_bytes(&bytes).expect("whole instructions");
    let known = Arch::ALL
        .iter()
        .map(|&a| {
            let set = v["known"][table_key(a)]
                .as_array()
                .expect("known")
                .iter()
                .map(|n| n.as_str().expect("name").to_string())
                .collect();
            (a, set)
        })
        .collect();
    Reference { program, known }
}

/// Argument values at and around every constant of the profile.
fn interesting_values(profile: &profile::Profile) -> Vec<u64> {
    let mut set = BTreeSet::from([u64::MAX, u64::from(u32::MAX), 1 << 32]);
    // The call codes of x86's socketcall and ipc multiplexers, and the numbers just past.
    set.extend(0..=32);
    for r in &profile.syscalls {
        for c in &r.args {
            for v in [
                c.value,
                c.value_two,
                c.value & c.value_two,
                c.value_two | !c.value,
            ] {
                for x in [v, v.wrapping_sub(1), v.wrapping_add(1)] {
                    set.insert(x);
                    set.insert(x & u64::from(u32::MAX));
                    set.insert(x ^ (1 << 32));
                    set.insert(x | (0xffff_ffff << 32));
                }
            }
        }
    }
    set.into_iter().collect()
}

/// (arch, nr) pairs to try: every number libseccomp knows on each ABI, the gaps, the edges,
/// and each number under the other ABIs' arch value and with the x32 bit flipped.
fn numbers(reference: &Reference) -> Vec<(u32, u32)> {
    let mut set = BTreeSet::new();
    let all_arches = [AUDIT_ARCH_X86_64, AUDIT_ARCH_I386, 0xc000_00b7, 0];
    for (arch, known) in &reference.known {
        let mut assigned = BTreeSet::new();
        for (name, nr) in arch.table() {
            assigned.insert(*nr);
            if known.contains(*name) {
                for a in all_arches {
                    set.insert((a, *nr));
                    set.insert((a, nr ^ X32_SYSCALL_BIT));
                }
            }
        }
        let base = if *arch == Arch::X32 {
            X32_SYSCALL_BIT
        } else {
            0
        };
        let top = assigned.iter().next_back().copied().unwrap_or(base) + 16;
        for nr in base..=top {
            if !assigned.contains(&nr) {
                set.insert((arch.audit_arch(), nr));
            }
        }
    }
    for nr in [
        u32::MAX,
        X32_SYSCALL_BIT - 1,
        X32_SYSCALL_BIT,
        0x7fff_ffff,
        0x8000_0000,
    ] {
        for a in all_arches {
            set.insert((a, nr));
        }
    }
    set.into_iter().collect()
}

fn call(arch: u32, nr: u32, args: [u64; 6]) -> SeccompData {
    SeccompData {
        nr,
        arch,
        ip: 0x7fff_1234_5678,
        args,
    }
}

/// Runs both programs on `d`; a mismatch is a test failure naming the input.
fn same(ours: &[BpfInsn], theirs: &[BpfInsn], d: &SeccompData, what: &str) {
    let a = interp::run(ours, d).unwrap_or_else(|e| panic!("{what}: ours fails: {e} on {d:x?}"));
    let b = interp::run(theirs, d)
        .unwrap_or_else(|e| panic!("{what}: libseccomp's fails: {e} on {d:x?}"));
    assert_eq!(
        a, b,
        "{what}: ours {a:#x}, libseccomp {b:#x} on (hex) {d:x?}"
    );
}

/// Compares the two compilers on one profile; returns (inputs, our length, theirs).
fn differential(what: &str, json: &Value) -> (usize, usize, usize) {
    let parsed = profile::from_value(json).unwrap_or_else(|e| panic!("{what}: {e}"));
    let ours = profile::compile(&parsed)
        .unwrap_or_else(|e| panic!("{what}: {e}"))
        .instructions;
    interp::validate(&ours).unwrap_or_else(|e| panic!("{what}: ours is invalid: {e}"));
    let reference = libseccomp(json);
    let theirs = &reference.program;
    let values = interesting_values(&parsed);
    // Constants exactly (and off by one) for pairs of arguments: rules AND conditions.
    let exact: Vec<u64> = {
        let mut s = BTreeSet::from([0u64]);
        for r in &parsed.syscalls {
            for c in &r.args {
                s.extend([c.value, c.value.wrapping_add(1), c.value_two]);
            }
        }
        s.into_iter().collect()
    };
    // Argument sweeps for names with conditions, and for the multiplexers whose rules
    // libseccomp derives from socket and IPC names.
    let mut with_args: BTreeSet<&str> = parsed
        .syscalls
        .iter()
        .filter(|r| !r.args.is_empty())
        .flat_map(|r| r.names.iter().map(String::as_str))
        .collect();
    with_args.extend(["socketcall", "ipc"]);
    let mut inputs = 0;
    let nrs = numbers(&reference);
    for &(arch, nr) in &nrs {
        same(&ours, theirs, &call(arch, nr, [0; 6]), what);
        inputs += 1;
        let checked = Arch::ALL.iter().any(|a| {
            a.audit_arch() == arch
                && a.table()
                    .iter()
                    .any(|(n, x)| *x == nr && with_args.contains(n))
        });
        if !checked {
            continue;
        }
        for i in 0..6 {
            for &v in &values {
                let mut args = [0u64; 6];
                args[i] = v;
                same(&ours, theirs, &call(arch, nr, args), what);
                inputs += 1;
            }
            for j in i + 1..6 {
                for &v in &exact {
                    for &w in &exact {
                        let mut args = [0u64; 6];
                        args[i] = v;
                        args[j] = w;
                        same(&ours, theirs, &call(arch, nr, args), what);
                        inputs += 1;
                    }
                }
            }
        }
    }
    // Random calls: any known number (or any number), any arch of interest, any arguments,
    // some drawn from the profile's constants.
    let mut runner = TestRunner::new(Config {
        cases: 4000,
        failure_persistence: None,
        ..Config::default()
    });
    let arg = prop_oneof![any::<u64>(), proptest::sample::select(values.clone())];
    let strategy = (
        prop_oneof![proptest::sample::select(nrs.clone()), any::<(u32, u32)>()],
        proptest::array::uniform6(arg),
    );
    runner
        .run(&strategy, |((arch, nr), args)| {
            let d = call(arch, nr, args);
            let a = interp::run(&ours, &d);
            let b = interp::run(theirs, &d);
            prop_assert!(a.is_ok(), "{:?}", a);
            prop_assert_eq!(a, b, "{:x?}", d);
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    inputs += 4000;
    eprintln!(
        "{what}: {inputs} inputs agree; {} instructions here, {} from libseccomp",
        ours.len(),
        theirs.len()
    );
    (inputs, ours.len(), theirs.len())
}

fn fixture(name: &str) -> Value {
    let path = format!("{FIXTURES}/{name}");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The profile an engine writes into config.json from its shipped default on x86_64 with
/// the default capabilities: rules filtered by includes and excludes, the architecture map
/// turned into the list.
pub fn engine_profile(shipped: &Value) -> Value {
    let has_cap = |c: &Value| ENGINE_CAPS.contains(&c.as_str().unwrap_or(""));
    let has_arch = |a: &Value| a.as_str() == Some("amd64");
    let list = |v: &Value, k: &str| {
        v.get(k)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let mut syscalls = Vec::new();
    for s in shipped["syscalls"].as_array().expect("syscalls") {
        let (inc, exc) = (&s["includes"], &s["excludes"]);
        let inc_arches = list(inc, "arches");
        let keep = (inc_arches.is_empty() || inc_arches.iter().any(has_arch))
            && list(inc, "caps").iter().all(has_cap)
            && !list(exc, "arches").iter().any(has_arch)
            && !list(exc, "caps").iter().any(has_cap);
        if keep {
            let mut r = serde_json::Map::new();
            for k in ["names", "action", "errnoRet", "args"] {
                if let Some(v) = s.get(k) {
                    r.insert(k.into(), v.clone());
                }
            }
            syscalls.push(Value::Object(r));
        }
    }
    let mut arches = vec![json!("SCMP_ARCH_X86_64")];
    for m in shipped["archMap"].as_array().expect("archMap") {
        if m["architecture"] == "SCMP_ARCH_X86_64" {
            arches.extend(list(m, "subArchitectures"));
        }
    }
    json!({
        "defaultAction": shipped["defaultAction"],
        "defaultErrnoRet": shipped["defaultErrnoRet"],
        "architectures": arches,
        "syscalls": syscalls,
    })
}

#[test]
fn engine_default_profile_matches_libseccomp() {
    let p = engine_profile(&fixture("containers-common-seccomp.json"));
    differential("engine default profile", &p);
}

#[test]
fn engine_default_profile_native_arch_only_matches_libseccomp() {
    let mut p = engine_profile(&fixture("containers-common-seccomp.json"));
    p["architectures"] = json!([]);
    differential("engine default profile, x86_64 only", &p);
}

#[test]
fn hand_made_profiles_match_libseccomp() {
    for name in [
        "ops.json",
        "actions.json",
        "x32-only.json",
        "x86_64-only.json",
        "x86-only.json",
        "socket-x86_64.json",
        "x86-multiplexers.json",
        "x86-multiplexer-args.json",
    ] {
        differential(name, &fixture(&format!("profiles/{name}")));
    }
}
