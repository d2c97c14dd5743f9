use super::interp::{SeccompData, run, validate};
use super::*;
use proptest::prelude::*;

/// x86_64 numbers written out, not looked up in the generated tables.
const READ: u32 = 0;
const WRITE: u32 = 1;
const CLOSE: u32 = 3;
const GETPID: u32 = 39;
const X86_READ: u32 = 3;
const X86_SOCKETCALL: u32 = 102;
const EPERM_RET: u32 = 0x0005_0001;

fn data(arch: u32, nr: u32, args: [u64; 6]) -> SeccompData {
    SeccompData {
        nr,
        arch,
        ip: 0,
        args,
    }
}

fn verdict(json: &str, arch: u32, nr: u32, args: [u64; 6]) -> u32 {
    let c = compile(&parse(json).unwrap()).unwrap();
    validate(&c.instructions).unwrap();
    run(&c.instructions, &data(arch, nr, args)).unwrap()
}

fn err(json: &str) -> String {
    match parse(json).and_then(|p| compile(&p)) {
        Ok(_) => panic!("accepted: {json}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn errors_name_the_json_path() {
    assert_eq!(
        err(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["read"],"action":"SCMP_ACT_ERRNO","args":[{"index":0,"op":"SCMP_CMP_FOO"}]}]}"#
        ),
        r#"syscalls[0].args[0].op: unknown op "SCMP_CMP_FOO""#
    );
    assert_eq!(
        err(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["read"],"action":"SCMP_ACT_NOTIFY"}]}"#
        ),
        "syscalls[0].action: SCMP_ACT_NOTIFY is not supported: no seccomp agent can be attached"
    );
    assert!(
        err(r#"{"defaultAction":"SCMP_ACT_NOTIFY","listenerPath":"/run/a.sock"}"#).starts_with(
            r#"defaultAction: SCMP_ACT_NOTIFY (listenerPath "/run/a.sock") is not supported"#
        )
    );
    // A condition without its value is not a comparison with 0.
    assert_eq!(
        err(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["read"],"action":"SCMP_ACT_ERRNO","args":[{"index":0,"Value":8,"op":"SCMP_CMP_EQ"}]}]}"#
        ),
        "syscalls[0].args[0].value: missing"
    );
    // A key given twice is refused, not read as its last value.
    assert!(
        err(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["ptrace"],"action":"SCMP_ACT_ERRNO","action":"SCMP_ACT_LOG"}]}"#
        )
        .contains(r#"syscalls[0]: the key "action" is given twice"#)
    );
    // The path inside a bigger document, and the file it came from.
    let e = parse(r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["read"],"action":"SCMP_ACT_ERRNO","args":[{"index":0,"op":"SCMP_CMP_FOO"}]}]}"#).unwrap_err();
    assert_eq!(
        e.describe_in("config.json", "linux.seccomp"),
        r#"config.json linux.seccomp.syscalls[0].args[0].op: unknown op "SCMP_CMP_FOO""#
    );
    assert_eq!(
        e.describe_in("my-profile.json", ""),
        r#"my-profile.json syscalls[0].args[0].op: unknown op "SCMP_CMP_FOO""#
    );
    let whole = parse("[]").unwrap_err();
    assert_eq!(
        whole.describe_in("config.json", "linux.seccomp"),
        "config.json linux.seccomp: expected an object, found an array"
    );
    assert_eq!(
        whole.describe_in("p.json", ""),
        "p.json: expected an object, found an array"
    );
    assert!(err(r#"{"defaultAction":"SCMP_ACT_ALLOW","flags":["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]}"#)
        .starts_with("flags[0]: SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV only applies"));
    assert_eq!(
        err(r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_AARCH64"]}"#),
        "architectures[0]: unsupported architecture \"SCMP_ARCH_AARCH64\" (supported: \
         SCMP_ARCH_X86_64, SCMP_ARCH_X86, SCMP_ARCH_X32)"
    );
    assert_eq!(
        err(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["read"],"action":"SCMP_ACT_ERRNO","args":[{"index":6,"op":"SCMP_CMP_EQ"}]}]}"#
        ),
        "syscalls[0].args[0].index: expected an argument index 0..=5, found 6"
    );
    assert_eq!(
        err(r#"{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":70000}"#),
        "defaultErrnoRet: 70000 is out of range (at most 65535)"
    );
    assert_eq!(err(r#"{}"#), "defaultAction: missing");
    assert_eq!(err(r#"[]"#), "expected an object, found an array");
    assert_eq!(
        err(r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":{}}"#),
        "syscalls: expected an array, found an object"
    );
    assert!(err("{").starts_with("invalid JSON"));
}

#[test]
fn overlapping_rules_with_different_actions_are_refused() {
    let e = err(r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[
        {"names":["read"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":5,"op":"SCMP_CMP_GE"}]},
        {"names":["read"],"action":"SCMP_ACT_KILL","args":[{"index":0,"value":9,"op":"SCMP_CMP_LE"}]}]}"#);
    assert!(
        e.starts_with("syscalls[1]: the rule for \"read\" can match the same call as syscalls[0]"),
        "{e}"
    );
    // Disjoint on x86_64 (the high halves differ) but the same low half on x86.
    let e = err(
        r#"{"defaultAction":"SCMP_ACT_ERRNO","architectures":["SCMP_ARCH_X86_64","SCMP_ARCH_X86"],"syscalls":[
        {"names":["read"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":5,"op":"SCMP_CMP_EQ"}]},
        {"names":["read"],"action":"SCMP_ACT_KILL","args":[{"index":0,"value":4294967301,"op":"SCMP_CMP_EQ"}]}]}"#,
    );
    assert!(
        e.contains("on SCMP_ARCH_X86 (arguments compare as their low 32 bits there)"),
        "{e}"
    );
}

#[test]
fn unknown_keys_and_unknown_names_are_ignored() {
    let j = r#"{"defaultAction":"SCMP_ACT_ERRNO","comment":"x","syscalls":[
        {"names":["getpid","no_such_call"],"action":"SCMP_ACT_ALLOW","includes":{}}]}"#;
    assert_eq!(verdict(j, AUDIT_ARCH_X86_64, GETPID, [0; 6]), 0x7fff_0000);
    assert_eq!(verdict(j, AUDIT_ARCH_X86_64, READ, [0; 6]), EPERM_RET);
}

#[test]
fn flags_are_reported() {
    let c = compile(
        &parse(r#"{"defaultAction":"SCMP_ACT_ALLOW","flags":["SECCOMP_FILTER_FLAG_TSYNC","SECCOMP_FILTER_FLAG_SPEC_ALLOW"]}"#)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(c.flags, vec![Flag::Tsync, Flag::SpecAllow]);
    assert_eq!(c.flag_bits(), 5);
}

#[test]
fn every_action_returns_its_value() {
    let j = r#"{"defaultAction":"SCMP_ACT_LOG","syscalls":[
        {"names":["read"],"action":"SCMP_ACT_ERRNO","errnoRet":13},
        {"names":["write"],"action":"SCMP_ACT_TRACE","errnoRet":7},
        {"names":["open"],"action":"SCMP_ACT_KILL"},
        {"names":["close"],"action":"SCMP_ACT_KILL_PROCESS"},
        {"names":["stat"],"action":"SCMP_ACT_TRAP"},
        {"names":["fstat"],"action":"SCMP_ACT_ERRNO"},
        {"names":["lstat"],"action":"SCMP_ACT_ALLOW"}]}"#;
    let v = |nr| verdict(j, AUDIT_ARCH_X86_64, nr, [0; 6]);
    assert_eq!(v(READ), 0x0005_000d);
    assert_eq!(v(WRITE), 0x7ff0_0007);
    assert_eq!(v(2), 0);
    assert_eq!(v(CLOSE), 0x8000_0000);
    assert_eq!(v(4), 0x0003_0000);
    assert_eq!(v(5), EPERM_RET);
    assert_eq!(v(6), 0x7fff_0000);
    assert_eq!(v(GETPID), 0x7ffc_0000);
}

#[test]
fn arches_and_the_x32_bit() {
    let only64 = r#"{"defaultAction":"SCMP_ACT_ERRNO","architectures":["SCMP_ARCH_X86_64"],
        "syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW"}]}"#;
    assert_eq!(
        verdict(only64, AUDIT_ARCH_X86_64, READ, [0; 6]),
        0x7fff_0000
    );
    // x32 read is 0x40000000: not an x86_64 call, so the bad-arch action (kill thread).
    assert_eq!(verdict(only64, AUDIT_ARCH_X86_64, 0x4000_0000, [0; 6]), 0);
    // -1 (a tracer skipping the call) gets the default action.
    assert_eq!(
        verdict(only64, AUDIT_ARCH_X86_64, u32::MAX, [0; 6]),
        EPERM_RET
    );
    assert_eq!(verdict(only64, AUDIT_ARCH_I386, X86_READ, [0; 6]), 0);
    let all = r#"{"defaultAction":"SCMP_ACT_ERRNO","architectures":["SCMP_ARCH_X86_64","SCMP_ARCH_X86","SCMP_ARCH_X32"],
        "syscalls":[{"names":["read","socketcall"],"action":"SCMP_ACT_ALLOW"}]}"#;
    assert_eq!(
        verdict(all, AUDIT_ARCH_X86_64, 0x4000_0000, [0; 6]),
        0x7fff_0000
    );
    assert_eq!(verdict(all, AUDIT_ARCH_I386, X86_READ, [0; 6]), 0x7fff_0000);
    assert_eq!(
        verdict(all, AUDIT_ARCH_I386, X86_SOCKETCALL, [0; 6]),
        0x7fff_0000
    );
    assert_eq!(
        verdict(all, AUDIT_ARCH_X86_64, X86_SOCKETCALL, [0; 6]),
        EPERM_RET
    );
    assert_eq!(verdict(all, 0xc000_00b7, READ, [0; 6]), 0);
}

#[test]
fn sixty_four_bit_compares_on_x86_64_low_halves_on_x86() {
    let j = r#"{"defaultAction":"SCMP_ACT_ERRNO","architectures":["SCMP_ARCH_X86_64","SCMP_ARCH_X86"],
        "syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW","args":[{"index":1,"value":4294967301,"op":"SCMP_CMP_GT"}]}]}"#;
    let v = |arch, nr, a1| verdict(j, arch, nr, [0, a1, 0, 0, 0, 0]);
    assert_eq!(v(AUDIT_ARCH_X86_64, READ, 0x1_0000_0006), 0x7fff_0000);
    assert_eq!(v(AUDIT_ARCH_X86_64, READ, 0x1_0000_0005), EPERM_RET);
    assert_eq!(v(AUDIT_ARCH_X86_64, READ, 0x2_0000_0000), 0x7fff_0000);
    assert_eq!(v(AUDIT_ARCH_X86_64, READ, 0xffff_ffff), EPERM_RET);
    assert_eq!(v(AUDIT_ARCH_I386, X86_READ, 6), 0x7fff_0000);
    assert_eq!(v(AUDIT_ARCH_I386, X86_READ, 5), EPERM_RET);
}

#[test]
fn masked_eq_and_anded_conditions() {
    let j = r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["clone"],"action":"SCMP_ACT_ERRNO",
        "args":[{"index":0,"value":268435456,"valueTwo":268435456,"op":"SCMP_CMP_MASKED_EQ"},
                {"index":2,"value":10,"op":"SCMP_CMP_LT"}]}]}"#;
    let v = |a0, a2| verdict(j, AUDIT_ARCH_X86_64, 56, [a0, 0, a2, 0, 0, 0]);
    assert_eq!(v(0x1000_0011, 9), EPERM_RET);
    assert_eq!(v(0x1000_0011, 10), 0x7fff_0000);
    assert_eq!(v(0x11, 0), 0x7fff_0000);
}

#[test]
fn masked_eq_ignores_datum_bits_outside_the_mask() {
    let j = r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86_64","SCMP_ARCH_X86"],
        "syscalls":[{"names":["read"],"action":"SCMP_ACT_ERRNO","args":[{"index":0,"value":240,"valueTwo":19,"op":"SCMP_CMP_MASKED_EQ"}]}]}"#;
    assert_eq!(
        verdict(j, AUDIT_ARCH_X86_64, READ, [0x1f, 0, 0, 0, 0, 0]),
        EPERM_RET
    );
    assert_eq!(
        verdict(j, AUDIT_ARCH_X86_64, READ, [0x23, 0, 0, 0, 0, 0]),
        0x7fff_0000
    );
    assert_eq!(
        verdict(j, AUDIT_ARCH_I386, X86_READ, [0x10, 0, 0, 0, 0, 0]),
        EPERM_RET
    );
}

#[test]
fn x86_socket_rules_also_cover_socketcall() {
    let j = r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86"],"syscalls":[
        {"names":["socket"],"action":"SCMP_ACT_ERRNO"},
        {"names":["send"],"action":"SCMP_ACT_ERRNO","errnoRet":13,"args":[{"index":2,"value":4,"op":"SCMP_CMP_EQ"}]}]}"#;
    // socketcall(SYS_SOCKET, …) is socket(…); SYS_SEND is 9.
    assert_eq!(
        verdict(j, AUDIT_ARCH_I386, X86_SOCKETCALL, [1, 0, 0, 0, 0, 0]),
        EPERM_RET
    );
    assert_eq!(
        verdict(j, AUDIT_ARCH_I386, X86_SOCKETCALL, [2, 0, 0, 0, 0, 0]),
        0x7fff_0000
    );
    assert_eq!(
        verdict(j, AUDIT_ARCH_I386, X86_SOCKETCALL, [9, 0, 4, 0, 0, 0]),
        0x0005_000d
    );
    assert_eq!(
        verdict(j, AUDIT_ARCH_I386, X86_SOCKETCALL, [9, 0, 5, 0, 0, 0]),
        0x7fff_0000
    );
    // The direct socket call (359) too.
    assert_eq!(verdict(j, AUDIT_ARCH_I386, 359, [0; 6]), EPERM_RET);
}

#[test]
fn unconditional_rules_win_the_first_one_first() {
    let j = r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[
        {"names":["read"],"action":"SCMP_ACT_ALLOW"},
        {"names":["read"],"action":"SCMP_ACT_KILL"},
        {"names":["write"],"action":"SCMP_ACT_KILL","args":[{"index":0,"value":1,"op":"SCMP_CMP_EQ"}]},
        {"names":["write"],"action":"SCMP_ACT_ALLOW"}]}"#;
    assert_eq!(verdict(j, AUDIT_ARCH_X86_64, READ, [0; 6]), 0x7fff_0000);
    assert_eq!(
        verdict(j, AUDIT_ARCH_X86_64, WRITE, [1, 0, 0, 0, 0, 0]),
        0x7fff_0000
    );
}

#[test]
fn tables_know_the_classic_numbers() {
    assert_eq!(Arch::X86_64.syscall_nr("execve"), Some(59));
    assert_eq!(Arch::X86.syscall_nr("execve"), Some(11));
    assert_eq!(Arch::X32.syscall_nr("execve"), Some(0x4000_0208));
    assert_eq!(Arch::X86_64.syscall_nr("socketcall"), None);
    for a in Arch::ALL {
        assert!(
            a.table().windows(2).all(|w| w[0].0 < w[1].0),
            "{a:?} sorted"
        );
    }
}

proptest! {
    #[test]
    fn no_input_reaches_a_panic(s in ".{0,200}") {
        let _ = parse(&s).map(|p| compile(&p));
    }

    #[test]
    fn random_profiles_compile_to_valid_programs_or_an_error(
        rules in proptest::collection::vec(
            (0usize..6, 0u8..7, 0u8..7, any::<u64>(), any::<u64>(), 0u8..3), 0..12),
        arch_mask in 0u8..8,
    ) {
        let names = ["read", "write", "ioctl", "socket", "socketcall", "nope"];
        let ops = ["SCMP_CMP_NE","SCMP_CMP_LT","SCMP_CMP_LE","SCMP_CMP_EQ","SCMP_CMP_GE","SCMP_CMP_GT","SCMP_CMP_MASKED_EQ"];
        let acts = ["SCMP_ACT_ALLOW","SCMP_ACT_ERRNO","SCMP_ACT_KILL","SCMP_ACT_TRAP","SCMP_ACT_LOG","SCMP_ACT_TRACE","SCMP_ACT_KILL_PROCESS"];
        let archs = ["SCMP_ARCH_X86_64","SCMP_ARCH_X86","SCMP_ARCH_X32"];
        let syscalls: Vec<serde_json::Value> = rules.iter().map(|&(n, a, o, v, w, nargs)| {
            let args: Vec<serde_json::Value> = (0..nargs).map(|i| serde_json::json!(
                {"index": i, "op": ops[usize::from(o)], "value": v, "valueTwo": w})).collect();
            serde_json::json!({"names":[names[n]], "action": acts[usize::from(a)], "args": args})
        }).collect();
        let arches: Vec<&str> = (0..3).filter(|i| arch_mask & (1 << i) != 0).map(|i| archs[i]).collect();
        let j = serde_json::json!({"defaultAction":"SCMP_ACT_ERRNO","architectures":arches,"syscalls":syscalls});
        let p = from_value(&j).unwrap();
        if let Ok(c) = compile(&p) {
            prop_assert!(validate(&c.instructions).is_ok());
        }
    }
}

#[test]
fn far_bad_arch_jumps_get_a_return_of_their_own() {
    // Hundreds of distinct verdicts make the x86_64 search far longer than a jump reaches.
    let rules: Vec<String> = Arch::X86_64
        .table()
        .iter()
        .enumerate()
        .map(|(i, (n, _))| {
            format!(
                r#"{{"names":["{n}"],"action":"SCMP_ACT_ERRNO","errnoRet":{}}}"#,
                i + 2
            )
        })
        .collect();
    for arches in [
        r#""SCMP_ARCH_X86_64","SCMP_ARCH_X86""#,
        r#""SCMP_ARCH_X86_64""#,
    ] {
        let j = format!(
            r#"{{"defaultAction":"SCMP_ACT_ALLOW","architectures":[{arches}],"syscalls":[{}]}}"#,
            rules.join(",")
        );
        let c = compile(&parse(&j).unwrap()).unwrap();
        assert!(c.instructions.len() > 300);
        validate(&c.instructions).unwrap();
        let v = |nr| run(&c.instructions, &data(AUDIT_ARCH_X86_64, nr, [0; 6])).unwrap();
        assert_eq!(v(0x4000_0000), 0, "x32 read: bad arch");
        assert_eq!(v(0x4000_1234), 0);
        assert_eq!(v(u32::MAX), 0x7fff_0000, "-1: the default");
        assert_eq!(v(2000), 0x7fff_0000, "unassigned: the default");
    }
    let j = format!(
        r#"{{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X32","SCMP_ARCH_X86"],"syscalls":[{}]}}"#,
        rules.join(",")
    );
    let c = compile(&parse(&j).unwrap()).unwrap();
    validate(&c.instructions).unwrap();
    let v = |nr| run(&c.instructions, &data(AUDIT_ARCH_X86_64, nr, [0; 6])).unwrap();
    assert_eq!(v(READ), 0, "x86_64 read on an x32 filter: bad arch");
    assert_eq!(v(u32::MAX), 0x7fff_0000);
}

#[test]
fn many_rules_for_one_syscall_keep_their_jumps_in_reach() {
    let rules: Vec<String> = (1..=90)
        .map(|i| {
            format!(
                r#"{{"names":["ioctl"],"action":"SCMP_ACT_ERRNO","errnoRet":{i},
                   "args":[{{"index":1,"value":255,"valueTwo":{i},"op":"SCMP_CMP_MASKED_EQ"}}]}}"#
            )
        })
        .collect();
    let j = format!(
        r#"{{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86_64","SCMP_ARCH_X86"],"syscalls":[{}]}}"#,
        rules.join(",")
    );
    let c = compile(&parse(&j).unwrap()).unwrap();
    validate(&c.instructions).unwrap();
    let v = |arch, nr, a1| run(&c.instructions, &data(arch, nr, [0, a1, 0, 0, 0, 0])).unwrap();
    const IOCTL: u32 = 16;
    const X86_IOCTL: u32 = 54;
    assert_eq!(v(AUDIT_ARCH_X86_64, IOCTL, 1), 0x0005_0001);
    assert_eq!(v(AUDIT_ARCH_X86_64, IOCTL, 0x1_0000_0f5a), 0x0005_005a);
    assert_eq!(v(AUDIT_ARCH_X86_64, IOCTL, 91), 0x7fff_0000);
    assert_eq!(v(AUDIT_ARCH_X86_64, IOCTL, 0), 0x7fff_0000);
    assert_eq!(v(AUDIT_ARCH_I386, X86_IOCTL, 0x145), 0x0005_0045);
    assert_eq!(v(AUDIT_ARCH_I386, X86_IOCTL, 0x100), 0x7fff_0000);
}

/// The text of `default_program.rs` for `program`.
fn default_program_source(program: &[crate::BpfInsn]) -> String {
    let mut s = String::from(
        "//! @generated by `CRABCAN_BLESS=1 cargo test -p crabcan-security default_program`: \
         crabcan-default.json\n//! compiled. Do not edit; a test checks it against the JSON.\n\n\
         use crate::seccomp::BpfInsn;\n\n",
    );
    s += &format!(
        "pub(super) const PROGRAM: [BpfInsn; {}] = [\n",
        program.len()
    );
    for i in program {
        s += &format!(
            "    BpfInsn {{ code: 0x{:02x}, jt: {}, jf: {}, k: 0x{:x} }},\n",
            i.code, i.jt, i.jf, i.k
        );
    }
    s + "];\n"
}

#[test]
fn the_default_program_shipped_is_the_default_profile_compiled() {
    let fresh = compile(&Profile::crabcan_default()).unwrap();
    assert!(fresh.flags.is_empty(), "default_program.rs holds no flags");
    if fresh == crabcan_default_program() {
        return;
    }
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src/profile/default_program.rs"
    );
    if std::env::var_os("CRABCAN_BLESS").is_some() {
        std::fs::write(path, default_program_source(&fresh.instructions)).unwrap();
        // This build still holds the old program: only the next one is checked.
        panic!("{path} written again: build and run the tests once more");
    }
    panic!(
        "{path} is not crabcan-default.json compiled: write it again with \
         CRABCAN_BLESS=1 cargo test -p crabcan-security default_program"
    );
}

#[test]
fn a_program_goes_through_bytes_whole_or_not_at_all() {
    let mut c = crabcan_default_program();
    c.flags = vec![Flag::Log, Flag::SpecAllow];
    let b = c.to_bytes();
    assert_eq!(Compiled::from_bytes(&b), Some(c.clone()));
    // Cut short, empty, or with a flag bit no flag has: refused.
    assert_eq!(Compiled::from_bytes(&b[..b.len() - 1]), None);
    assert_eq!(Compiled::from_bytes(&b[..4]), None);
    assert_eq!(Compiled::from_bytes(&[]), None);
    let mut odd = b.clone();
    odd[0] |= 0x80;
    assert_eq!(Compiled::from_bytes(&odd), None);
}

/// A thousand and more rules for one call, each testing all six arguments: too long for the
/// kernel, refused in one error, on a small stack and quickly, not a stack overflow or
/// gigabytes of memory in the decision diagram.
///
/// Host only: it bounds the time taken, which the emulated test VM (some 20 times slower,
/// on the host's busy CPUs) cannot judge; the compile is the same code there.
#[test]
fn host_only_thousands_of_rules_for_one_call_are_refused_without_exhausting_the_stack() {
    let rule = |i: usize| {
        let args: Vec<String> = (0..6)
            .map(|a| {
                format!(
                    r#"{{"index":{a},"value":{},"op":"SCMP_CMP_EQ"}}"#,
                    i * 7 + a
                )
            })
            .collect();
        format!(
            r#"{{"names":["ioctl"],"action":"SCMP_ACT_ERRNO","args":[{}]}}"#,
            args.join(",")
        )
    };
    let rules: Vec<String> = (0..1200).map(rule).collect();
    let json = format!(
        r#"{{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86_64"],"syscalls":[{}]}}"#,
        rules.join(",")
    );
    let p = parse(&json).unwrap();
    let started = std::time::Instant::now();
    let e = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || compile(&p).map(|_| ()))
        .unwrap()
        .join()
        .expect("the compile crashed");
    let e = e.expect_err("a program past the kernel's limit was made");
    assert!(e.to_string().contains("more than the kernel's 4096"), "{e}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
}

/// A name repeated in one rule is checked once: 20000 copies of it compile as one.
///
/// Host only: it bounds the time taken, which the emulated test VM (some 20 times slower,
/// on the host's busy CPUs) cannot judge; the compile is the same code there.
#[test]
fn host_only_a_name_repeated_in_a_rule_counts_once() {
    let names = vec![r#""ioctl""#; 20_000].join(",");
    let json = format!(
        r#"{{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86_64"],"syscalls":[
            {{"names":[{names}],"action":"SCMP_ACT_ERRNO",
              "args":[{{"index":0,"value":1,"op":"SCMP_CMP_EQ"}}]}},
            {{"names":[{names}],"action":"SCMP_ACT_KILL",
              "args":[{{"index":0,"value":2,"op":"SCMP_CMP_EQ"}}]}}]}}"#
    );
    let ioctl = Arch::X86_64.syscall_nr("ioctl").unwrap();
    let started = std::time::Instant::now();
    let v = |a0| verdict(&json, AUDIT_ARCH_X86_64, ioctl, [a0, 0, 0, 0, 0, 0]);
    assert_eq!(v(1) & 0xffff_0000, 0x0005_0000, "errno");
    assert_eq!(v(2), 0, "kill");
    assert_eq!(v(3), 0x7fff_0000, "allow");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

/// More distinct conditional rules for one call than the kernel takes instructions are
/// refused before the quadratic overlap check, and many calls sharing long lists of rules
/// with different actions stop at the check's budget: one error each, quickly.
///
/// Host only: it bounds the time taken, which the emulated test VM (some 20 times slower,
/// on the host's busy CPUs) cannot judge; the compile is the same code there.
#[test]
fn host_only_huge_rule_sets_are_refused_before_the_overlap_check_runs_for_minutes() {
    let rule = |i: usize, names: &str| {
        let action = if i % 2 == 0 {
            "SCMP_ACT_ERRNO"
        } else {
            "SCMP_ACT_LOG"
        };
        format!(
            r#"{{"names":[{names}],"action":"{action}","args":[{{"index":0,"value":{i},"op":"SCMP_CMP_EQ"}}]}}"#
        )
    };
    let profile = |rules: Vec<String>| {
        format!(
            r#"{{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86_64"],"syscalls":[{}]}}"#,
            rules.join(",")
        )
    };
    let started = std::time::Instant::now();
    let one_call: Vec<String> = (0..5000).map(|i| rule(i, r#""ioctl""#)).collect();
    let e = compile(&parse(&profile(one_call)).unwrap()).unwrap_err();
    assert!(
        e.to_string()
            .contains("5000 conditional rules for \"ioctl\""),
        "{e}"
    );
    let calls = Arch::X86_64
        .table()
        .iter()
        .take(200)
        .map(|(n, _)| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(",");
    let many_calls: Vec<String> = (0..1000).map(|i| rule(i, &calls)).collect();
    let e = compile(&parse(&profile(many_calls)).unwrap()).unwrap_err();
    assert!(
        e.to_string()
            .contains("pairs of rules with different actions"),
        "{e}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
}

/// A rule that repeats names (numbered ones, and `send`, which x86 reaches only through
/// socketcall) compiles to the very program of the rule naming each once.
#[test]
fn repeated_names_compile_as_if_named_once() {
    let profile = |names: &str| {
        format!(
            r#"{{"defaultAction":"SCMP_ACT_ERRNO",
                "architectures":["SCMP_ARCH_X86_64","SCMP_ARCH_X86"],
                "syscalls":[{{"names":[{names}],"action":"SCMP_ACT_ALLOW"}},
                            {{"names":["read"],"action":"SCMP_ACT_KILL"}}]}}"#
        )
    };
    let compiled = |names: &str| compile(&parse(&profile(names)).unwrap()).unwrap();
    let once = compiled(r#""read","send","write""#);
    let many = compiled(&(vec![r#""read","send""#; 100].join(",") + r#","write""#));
    assert_eq!(once.instructions, many.instructions);
    // The first rule's allow holds for each (the second rule's kill comes after).
    let read = verdict(
        &profile(r#""read","send""#),
        AUDIT_ARCH_X86_64,
        READ,
        [0; 6],
    );
    assert_eq!(read, 0x7fff_0000);
}
