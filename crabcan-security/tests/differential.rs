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
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};

#[path = "support/engine.rs"]
mod engine;
use engine::engine_profile;

const PYTHON: &str = "/usr/bin/python3";
const HELPER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/support/libseccomp_bpf.py"
);
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

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

/// Sends one request to the helper and returns its JSON answer.
fn helper(mut req: Value) -> Value {
    let mut names = serde_json::Map::new();
    for a in Arch::ALL {
        let list: Vec<&str> = a.table().iter().map(|(n, _)| *n).collect();
        names.insert(table_key(a).into(), json!(list));
    }
    req["names"] = Value::Object(names);
    let req = req.to_string();
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
    serde_json::from_slice(&out.stdout).expect("helper output is JSON")
}

fn program_from_hex(hex: &str) -> Vec<BpfInsn> {
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect();
    interp::from_bytes(&bytes).expect("whole instructions")
}

fn known_names(v: &Value) -> Vec<(Arch, BTreeSet<String>)> {
    Arch::ALL
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
        .collect()
}

fn libseccomp(profile: &Value) -> Reference {
    let v = helper(json!({ "profile": profile }));
    Reference {
        program: program_from_hex(v["bpf"].as_str().expect("bpf")),
        known: known_names(&v),
    }
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
    assert!(
        !compares_arch_as_number(theirs),
        "{what}: libseccomp's program compares the arch as a syscall number"
    );
    assert!(!compares_arch_as_number(&ours), "{what}: ours does");
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
            // Pairs of exact constants: rules AND their conditions (kept to small sets).
            for j in (i + 1..6).filter(|_| exact.len() <= 48) {
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

#[test]
fn host_only_engine_default_profile_matches_libseccomp() {
    let p = engine_profile(&fixture("engine-default-seccomp.json"));
    differential("engine default profile", &p);
}

#[test]
fn host_only_engine_default_profile_native_arch_only_matches_libseccomp() {
    let mut p = engine_profile(&fixture("engine-default-seccomp.json"));
    p["architectures"] = json!([]);
    differential("engine default profile, x86_64 only", &p);
}

#[test]
fn host_only_engine_shipped_profile_with_every_rule_matches_libseccomp() {
    // Every rule at once (the includes and excludes are unknown keys here): the allow list
    // and the rules that refuse some of the same names without a capability. The first
    // unconditional rule for a name decides, in both compilers.
    let mut p = fixture("engine-default-seccomp.json");
    p["architectures"] = json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]);
    differential("engine shipped profile, every rule", &p);
}

#[test]
fn host_only_hand_made_profiles_match_libseccomp() {
    for name in [
        "ops.json",
        "actions.json",
        "x32-only.json",
        "x86_64-only.json",
        "x86-only.json",
        "socket-x86_64.json",
        "x86-multiplexers.json",
        "x86-multiplexer-args.json",
        "many-rules.json",
    ] {
        let (_, ours, theirs) = differential(name, &fixture(&format!("profiles/{name}")));
        assert!(
            ours <= theirs,
            "{name}: ours {ours} instructions, libseccomp {theirs}"
        );
    }
}

/// Whether some path compares the arch value (still in A after the arch check) with
/// something else than an arch value: the program would treat the arch as the syscall
/// number.
fn compares_arch_as_number(prog: &[BpfInsn]) -> bool {
    let mut arch_in_a = vec![false; prog.len() + 1];
    let mut reached = vec![false; prog.len() + 1];
    reached[0] = true;
    for (pc, i) in prog.iter().enumerate() {
        if !reached[pc] {
            continue;
        }
        let here = arch_in_a[pc];
        let mut go = |t: usize, arch: bool| {
            if t < reached.len() {
                reached[t] = true;
                arch_in_a[t] |= arch;
            }
        };
        match i.code {
            interp::LD_W_ABS => go(pc + 1, i.k == 4),
            interp::JA => go(pc + 1 + i.k as usize, here),
            interp::JEQ | interp::JGT | interp::JGE | interp::JSET => {
                if here && ![AUDIT_ARCH_X86_64, AUDIT_ARCH_I386].contains(&i.k) {
                    return true;
                }
                go(pc + 1 + usize::from(i.jt), here);
                go(pc + 1 + usize::from(i.jf), here);
            }
            interp::RET | interp::RET_A => {}
            _ => go(pc + 1, false),
        }
    }
    false
}

/// Small random profiles over a few names (socket ones among them), every action and op,
/// values where the high and low halves matter, random architecture sets.
fn random_profile() -> impl Strategy<Value = Value> {
    let names = proptest::sample::select(vec![
        "read",
        "write",
        "ioctl",
        "socket",
        "connect",
        "socketcall",
        "ipc",
        "shmget",
        "send",
        "personality",
        "no_such_call",
    ]);
    let actions = proptest::sample::select(vec![
        "SCMP_ACT_ALLOW",
        "SCMP_ACT_ERRNO",
        "SCMP_ACT_KILL",
        "SCMP_ACT_KILL_PROCESS",
        "SCMP_ACT_TRAP",
        "SCMP_ACT_TRACE",
        "SCMP_ACT_LOG",
    ]);
    let ops = proptest::sample::select(vec![
        "SCMP_CMP_NE",
        "SCMP_CMP_LT",
        "SCMP_CMP_LE",
        "SCMP_CMP_EQ",
        "SCMP_CMP_GE",
        "SCMP_CMP_GT",
        "SCMP_CMP_MASKED_EQ",
    ]);
    let value = proptest::sample::select(RANDOM_VALUES.to_vec());
    let cond = (ops, value.clone(), value);
    let rule = (
        proptest::collection::vec(names, 1..3),
        actions.clone(),
        0u64..4,
        proptest::collection::btree_map(0u8..6, cond, 0..3),
    )
        .prop_map(|(names, action, errno, args)| {
            let args: Vec<Value> = args
                .into_iter()
                .map(|(i, (op, v, w))| json!({"index": i, "op": op, "value": v, "valueTwo": w}))
                .collect();
            json!({"names": names, "action": action, "errnoRet": errno, "args": args})
        });
    let arches = proptest::sample::subsequence(
        vec!["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        1..=3,
    );
    (actions, arches, proptest::collection::vec(rule, 1..6)).prop_map(|(d, arches, rules)| {
        json!({"defaultAction": d, "defaultErrnoRet": 38, "architectures": arches, "syscalls": rules})
    })
}

const RANDOM_VALUES: [u64; 10] = [
    0,
    1,
    5,
    0xffff_ffff,
    1 << 32,
    (1 << 32) | 5,
    u64::MAX,
    0x8000_0000,
    0xff,
    0xffff_ffff_0000_0000,
];

#[test]
fn host_only_random_profiles_match_libseccomp() {
    let mut runner = TestRunner::deterministic();
    let strategy = random_profile();
    let profiles: Vec<Value> = (0..400)
        .map(|_| strategy.new_tree(&mut runner).expect("a profile").current())
        .collect();
    let answer = helper(json!({ "profiles": profiles }));
    let known = known_names(&answer);
    let results = answer["results"].as_array().expect("results");
    let (mut compared, mut inputs, mut both_refuse, mut only_ours, mut only_theirs) =
        (0, 0usize, 0, 0, 0);
    let mut libseccomp_defects = 0;
    let mut longer: Vec<(usize, String)> = Vec::new();
    let args_values: Vec<u64> = RANDOM_VALUES
        .iter()
        .flat_map(|&v| [v, v.wrapping_add(1), v.wrapping_sub(1)])
        .chain(1..=20)
        .collect();
    for (p, r) in profiles.iter().zip(results) {
        let ours = profile::from_value(p).and_then(|x| profile::compile(&x));
        let theirs = r["bpf"].as_str().map(program_from_hex);
        let (ours, theirs) = match (ours, theirs) {
            (Ok(o), Some(t)) if !compares_arch_as_number(&t) => (o.instructions, t),
            (Err(_), None) => {
                both_refuse += 1;
                continue;
            }
            (Err(e), Some(_)) => {
                // Conditional rules that can match the same call with different actions:
                // libseccomp takes them and decides by its own order; we refuse.
                assert!(
                    e.reason.contains("can match the same call"),
                    "we alone refuse {p}: {e}"
                );
                only_ours += 1;
                continue;
            }
            (Ok(_), Some(_)) => {
                // libseccomp 2.5.4 can drop the load of the syscall number after the arch
                // check (seen when x86_64 or x32 rules name a syscall that only exists on
                // x86, such as socketcall): every call then gets the default action. Its
                // verdicts are wrong there, so there is nothing to compare with.
                libseccomp_defects += 1;
                continue;
            }
            (Ok(_), None) => {
                // libseccomp refuses (EEXIST) a rule that could follow another it cannot
                // order it against, even when no call matches both (a condition that
                // never holds, as `arg < 0` on the low half on x86): ours has no such
                // case to refuse. Anything else libseccomp refuses, we must refuse too.
                let error = r["error"].as_str().unwrap_or("");
                assert!(
                    error.contains("errno = -17"),
                    "libseccomp alone refuses {p}: {error}"
                );
                only_theirs += 1;
                continue;
            }
        };
        compared += 1;
        if ours.len() > theirs.len() {
            longer.push((ours.len() - theirs.len(), p.to_string()));
        }
        let reference = Reference {
            program: theirs.clone(),
            known: known.clone(),
        };
        let nrs: Vec<(u32, u32)> = numbers(&reference)
            .into_iter()
            .filter(|&(_, nr)| {
                Arch::ALL.iter().any(|a| {
                    a.table().iter().any(|(n, x)| {
                        (*x == nr || *x == nr ^ X32_SYSCALL_BIT)
                            && [
                                "read",
                                "write",
                                "ioctl",
                                "socket",
                                "connect",
                                "socketcall",
                                "ipc",
                                "shmget",
                                "personality",
                                "getpid",
                            ]
                            .contains(n)
                    })
                }) || [u32::MAX, X32_SYSCALL_BIT - 1, X32_SYSCALL_BIT, 0x8000_0000].contains(&nr)
            })
            .collect();
        let mut rng = runner.new_rng();
        for &(arch, nr) in &nrs {
            for _ in 0..8 {
                let mut args = [0u64; 6];
                for a in &mut args {
                    *a = args_values[rng.random_range(0..args_values.len())];
                }
                let d = call(arch, nr, args);
                let a = interp::run(&ours, &d);
                let b = interp::run(&theirs, &d);
                assert!(a.is_ok(), "ours fails on {p}: {a:?}");
                assert_eq!(a, b, "profile {p} on (hex) {d:x?}");
                inputs += 1;
            }
        }
    }
    eprintln!(
        "random profiles: {compared} compared on {inputs} inputs; both refuse {both_refuse}, \
         only we refuse {only_ours}, only libseccomp refuses {only_theirs}, \
         libseccomp's program defective {libseccomp_defects}"
    );
    assert!(compared >= 200, "too few profiles compared: {compared}");
    // Reported, not asserted: a tiny profile's filter can be a few instructions longer than
    // libseccomp's (an x86_64 and x32 pair, whose split costs a jump of its own here); the
    // fixed profiles above are held to libseccomp's length.
    let worst = longer.iter().map(|(d, _)| *d).max().unwrap_or(0);
    eprintln!(
        "random profiles: {} of {compared} longer than libseccomp's, by at most {worst}{}",
        longer.len(),
        longer
            .first()
            .map(|(_, p)| format!("; the first: {p}"))
            .unwrap_or_default()
    );
}

#[test]
fn host_only_crabcan_default_profile_matches_libseccomp() {
    let mut p: Value = serde_json::from_str(profile::CRABCAN_DEFAULT_JSON).expect("JSON");
    // The profile names calls newer than our syscall tables (which come from the build
    // host's kernel headers); ours skips them, so libseccomp must not see them either.
    for rule in p["syscalls"].as_array_mut().expect("syscalls") {
        let names = rule["names"].as_array_mut().expect("names");
        names.retain(|n| profile::lookup(n.as_str().unwrap_or("")).is_some());
    }
    let (_, ours, theirs) = differential("crabcan default profile", &p);
    assert!(
        ours <= theirs,
        "ours {ours} instructions, libseccomp {theirs}"
    );
}

/// `linux.seccomp` of the config.json an engine wrote for a container on this kind of
/// machine (dockerd 20.10 and podman 4.3, default settings), kept as captured.
fn captured(name: &str) -> Value {
    fixture(name)
}

#[test]
fn host_only_docker_config_profile_matches_libseccomp() {
    let (_, ours, theirs) = differential(
        "docker's profile from its config.json",
        &captured("docker-config-seccomp.json"),
    );
    assert!(
        ours <= theirs,
        "ours {ours} instructions, libseccomp {theirs}"
    );
}

#[test]
fn host_only_podman_config_profile_matches_libseccomp() {
    let (_, ours, theirs) = differential(
        "podman's profile from its config.json",
        &captured("podman-config-seccomp.json"),
    );
    assert!(
        ours <= theirs,
        "ours {ours} instructions, libseccomp {theirs}"
    );
}
