//! crabcan's default profile, compiled, against a written-out specification of what it
//! must decide: the allow list, the refused calls, and every argument rule (setuid and
//! setgid modes, namespace flags, terminal injection, vsock, personalities), on every
//! syscall number and on x86 and x32 calls.

use crabcan_security::profile::interp::{SeccompData, run, validate};
use crabcan_security::profile::{Arch, Profile, compile};
use proptest::prelude::*;

// The kernel's verdict values and errnos, written out.
const ALLOW: u32 = 0x7fff_0000;
const EPERM: u32 = 0x0005_0001;
const ENOSYS: u32 = 0x0005_0026;
const KILL_THREAD: u32 = 0;
const X86_64: u32 = 0xc000_003e;

/// Numbers refused with EPERM, written out (not taken from the profile under test).
const DENIED: &[u32] = &[
    101, 103, 134, 136, 139, 153, 154, 155, 156, 159, 163, 164, 165, 166, 167, 168, 169, 172, 173,
    175, 176, 179, 212, 227, 246, 248, 249, 250, 256, 279, 298, 300, 303, 304, 305, 308, 310, 311,
    312, 313, 320, 321, 323, 425, 426, 427, 428, 429, 430, 431, 432, 433, 438, 440, 442, 443, 460,
    467,
];

/// Numbers answered with ENOSYS though assigned: retired calls, and clone3 and openat2,
/// whose flags live in memory a filter cannot read (C libraries fall back to clone and
/// openat, which the filter checks).
const NO_SYS: &[u32] = &[
    174, 177, 178, 180, 181, 182, 183, 184, 185, 214, 215, 236, 435, 437,
];

fn program() -> Vec<crabcan_security::BpfInsn> {
    compile(&Profile::crabcan_default())
        .expect("the default profile compiles")
        .instructions
}

fn call(nr: u32, args: [u64; 6]) -> SeccompData {
    SeccompData {
        nr,
        arch: X86_64,
        ip: 0x7fff_1234_5678,
        args,
    }
}

/// What the filter must answer.
fn spec(d: &SeccompData) -> u32 {
    if d.arch != X86_64 || (d.nr >= 0x4000_0000 && d.nr != u32::MAX) {
        // x86 (where socketcall multiplexes every socket call) and x32 (numbers from the
        // x32 bit up, as libseccomp checks them): not in the profile, the thread is
        // killed. -1 is a call a tracer skipped, which gets the default.
        return KILL_THREAD;
    }
    // Names newer than the syscall tables are skipped, as libseccomp does: their numbers
    // get the default, ENOSYS, until the tables are regenerated from newer headers.
    if !Arch::X86_64.table().iter().any(|(_, n)| *n == d.nr) {
        return ENOSYS;
    }
    let low = |i: usize| d.args[i] as u32;
    let high = |i: usize| (d.args[i] >> 32) as u32;
    let ok = |allowed: bool| if allowed { ALLOW } else { EPERM };
    let no_setid = |i: usize| ok(low(i) & 0o6000 == 0);
    // The kernel reads these arguments as 32-bit integers, which reach the register zero-
    // or sign-extended (then bit 31 is set): other upper halves are no call a program
    // makes, and get ENOSYS.
    let refuse = |i: usize, values: &[u32]| {
        if values.contains(&low(i)) {
            EPERM
        } else if high(i) == 0 || low(i) & 0x8000_0000 != 0 {
            ALLOW
        } else {
            ENOSYS
        }
    };
    let personalities = [0, 8, 0x2_0000, 0x2_0008, 0xffff_ffff];
    match d.nr {
        // open; creat, chmod, fchmod, mknod; openat; mknodat, fchmodat, fchmodat2
        2 => no_setid(2),
        85 | 90 | 91 | 133 => no_setid(1),
        257 => no_setid(3),
        259 | 268 | 452 => no_setid(2),
        // ioctl: TIOCSTI, TIOCLINUX; socket, socketpair: AF_VSOCK
        16 => refuse(1, &[0x5412, 0x541c]),
        41 | 53 => refuse(0, &[40]),
        // clone: namespace flags; unshare: the same and CLONE_NEWTIME
        56 => ok(low(0) & 0x7e02_0000 == 0),
        272 => ok(low(0) & 0x7e02_0080 == 0),
        // personality: the usual values (whatever the upper half); the default for others.
        135 if personalities.contains(&low(0)) => ALLOW,
        135 => ENOSYS,
        n if NO_SYS.contains(&n) => ENOSYS,
        n if DENIED.contains(&n) => EPERM,
        _ => ALLOW,
    }
}

#[test]
fn the_default_profile_is_valid_and_short_enough() {
    let p = program();
    validate(&p).expect("the kernel's checks");
    eprintln!("crabcan default profile: {} instructions", p.len());
}

#[test]
fn every_number_matches_the_written_out_spec() {
    let p = program();
    let values = [
        0u64,
        0o4755,
        0o2755,
        0o6000,
        0o755,
        0o1777,
        0o104755,
        (1 << 32) | 0o4755,
        1,
        2,
        10,
        16,
        40,
        0x1_0000_0028,
        0x5412,
        0x541c,
        0x1_0000_5412,
        0xffff_ffff_0000_541c,
        0xffff_ffff_8004_5413,
        0x7fff_0000_0000_0028,
        0x5413,
        0x8,
        0x2_0008,
        0x40_0000,
        0xffff_ffff,
        u64::MAX,
        0x1000_0000,
        0x2000_0000,
        0x80,
        0x11,
        0x0100_0011,
    ];
    for nr in (0..=520u32).chain([0x4000_0000, 0x4000_0002, 0x4000_0200, u32::MAX]) {
        for v in values {
            for at in 0..4 {
                let mut args = [0u64; 6];
                args[at] = v;
                let d = call(nr, args);
                assert_eq!(run(&p, &d), Ok(spec(&d)), "{nr} {args:x?}");
            }
        }
    }
    for arch in [0x4000_0003u32, 0xc000_00b7, 0x4000_003e, 0, u32::MAX] {
        for nr in [102u32, 359, 41, 0, 1, 11] {
            let d = SeccompData {
                arch,
                ..call(nr, [1, 0, 0, 0, 0, 0])
            };
            assert_eq!(run(&p, &d), Ok(KILL_THREAD), "{arch:#x} {nr}");
        }
    }
}

#[test]
fn verdicts_written_out() {
    let p = program();
    let v = |nr: u32, args: &[u64]| {
        let mut a = [0u64; 6];
        a[..args.len()].copy_from_slice(args);
        run(&p, &call(nr, a)).unwrap()
    };
    assert_eq!(v(165, &[]), EPERM, "mount");
    assert_eq!(v(308, &[]), EPERM, "setns");
    assert_eq!(v(437, &[]), ENOSYS, "openat2");
    assert_eq!(v(435, &[]), ENOSYS, "clone3");
    assert_eq!(v(59, &[]), ALLOW, "execve");
    assert_eq!(v(41, &[40, 1, 0]), EPERM, "socket(AF_VSOCK)");
    assert_eq!(
        v(41, &[(1 << 32) | 40, 1, 0]),
        EPERM,
        "socket(AF_VSOCK, high bits)"
    );
    assert_eq!(v(41, &[2, 1, 0]), ALLOW, "socket(AF_INET)");
    assert_eq!(v(16, &[0, 0x5412]), EPERM, "TIOCSTI");
    assert_eq!(
        v(16, &[0, 0xffff_ffff_0000_5412]),
        EPERM,
        "TIOCSTI, high bits"
    );
    assert_eq!(v(16, &[0, 0x5413]), ALLOW, "TIOCGWINSZ");
    assert_eq!(v(90, &[0, 0o4755]), EPERM, "chmod 04755");
    assert_eq!(v(90, &[0, 0o755]), ALLOW, "chmod 0755");
    assert_eq!(v(56, &[0x1000_0000 | 17]), EPERM, "clone(CLONE_NEWUSER)");
    assert_eq!(v(56, &[0x0100_0011]), ALLOW, "fork-like clone");
    assert_eq!(
        v(135, &[0x40_0000]),
        ENOSYS,
        "personality(READ_IMPLIES_EXEC)"
    );
    assert_eq!(v(135, &[0xffff_ffff]), ALLOW, "personality(query)");
}

proptest! {
    #[test]
    fn random_calls_match_the_spec(nr in prop_oneof![0..=480u32, any::<u32>()],
                                   native in any::<bool>(), arch in any::<u32>(),
                                   args in any::<[u64; 6]>()) {
        let d = SeccompData { arch: if native { X86_64 } else { arch }, ..call(nr, args) };
        prop_assert_eq!(run(&program(), &d), Ok(spec(&d)));
    }
}

#[test]
fn every_call_runs_a_short_path() {
    use crabcan_security::profile::interp::run_counted;
    let p = program();
    let (mut worst, mut total, mut n) = (0, 0, 0);
    for nr in 0..=470u32 {
        for a in [0u64, 0o4755, 0x5413, 2, 0x0100_0011, 0xffff_ffff] {
            let (v, steps) = run_counted(&p, &call(nr, [a, a, a, a, 0, 0])).expect("runs");
            // Allowed calls are the ones a workload makes all the time.
            if v == ALLOW {
                assert!(steps <= 112, "{nr} {a:#x}: {steps} instructions");
            }
            worst = worst.max(steps);
            total += steps;
            n += 1;
        }
    }
    // Everyday ioctls and socket families (terminal, FIO*, socket ioctls, _IOR/_IOW
    // numbers zero- and sign-extended) take few more tests than any other call.
    for (nr, a) in [
        (16, 0x5401u64),
        (16, 0x5413),
        (16, 0x541b),
        (16, 0x5421),
        (16, 0x5451),
        (16, 0x8912),
        (16, 0x4004_5401),
        (16, 0x8004_5401),
        (16, 0xffff_ffff_8004_5401),
        (41, 1),
        (41, 2),
        (41, 10),
        (41, 16),
    ] {
        let (v, steps) = run_counted(&p, &call(nr, [0, a, 0, 0, 0, 0])).expect("runs");
        let (v2, steps2) = run_counted(&p, &call(nr, [a, 0, 0, 0, 0, 0])).expect("runs");
        let (v, steps) = if nr == 16 { (v, steps) } else { (v2, steps2) };
        eprintln!("{nr} {a:#x}: {steps} instructions");
        assert_eq!(v, ALLOW, "{nr} {a:#x}");
        assert!(steps <= 84, "{nr} {a:#x}: {steps} instructions");
    }
    eprintln!(
        "crabcan default profile: longest path {worst} instructions, mean {:.1}",
        total as f64 / f64::from(n)
    );
    // The search is about 9 deep. ioctl's and socket's rules add a row of prefix tests
    // (one condition per argument in a rule, as libseccomp takes them): short for the
    // values above, up to about 100 for odd ones.
    assert!(worst <= 112, "{worst}");
}
