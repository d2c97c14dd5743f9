//! The running kernel loads each profile and decides each call as the interpreter says:
//! crabcan's default, docker's and podman's profiles from their config.json, and a
//! hand-made x32 profile. Each call runs in a fresh child that sets no_new_privs, installs
//! the compiled program through `seccomp::install` and makes the call; its exit status
//! carries the errno (or the signal that killed it). The same call without a filter gives
//! the answer for calls the filter lets through. Runs in the VM too (booted with
//! syscall.x32=y, where the x32 call must reach the kernel).

use crabcan_security::profile::interp::{SeccompData, run};
use crabcan_security::profile::{self, AUDIT_ARCH_X86_64, Compiled};
use crabcan_security::seccomp;

/// What a call ended with in a child: `Ok(errno or 0)`, or `Err(signal)`.
fn in_child(filter: Option<&Compiled>, nr: i64, args: [i64; 6]) -> Result<i32, i32> {
    // SAFETY: the child only makes system calls and exits; it never returns into the
    // harness.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // SAFETY: integer arguments only; the child ends with _exit.
        unsafe {
            libc::signal(libc::SIGSYS, libc::SIG_DFL);
            if let Some(f) = filter {
                if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                    || seccomp::install(f).is_err()
                {
                    libc::_exit(200);
                }
            }
            let r = libc::syscall(nr, args[0], args[1], args[2], args[3], args[4], args[5]);
            let code = if r < 0 { *libc::__errno_location() } else { 0 };
            libc::_exit(code.min(199));
        }
    }
    let mut st = 0;
    // SAFETY: st is a valid int.
    assert_eq!(unsafe { libc::waitpid(pid, &mut st, 0) }, pid);
    if libc::WIFSIGNALED(st) {
        Err(libc::WTERMSIG(st))
    } else {
        let code = libc::WEXITSTATUS(st);
        assert_ne!(code, 200, "the child could not install the filter");
        Ok(code)
    }
}

/// Calls that are harmless whatever the filter says (bad arguments, queries, or changes
/// confined to the child).
const CALLS: &[(i64, [i64; 6], &str)] = &[
    (39, [0; 6], "getpid"),
    (321, [9999, 0, 0, 0, 0, 0], "bpf(unknown command)"),
    (298, [0, 0, 0, -1, 0, 0], "perf_event_open(no attributes)"),
    (135, [0xffff_ffff, 0, 0, 0, 0, 0], "personality(query)"),
    (
        135,
        [0x40_0000, 0, 0, 0, 0, 0],
        "personality(READ_IMPLIES_EXEC)",
    ),
    (41, [40, 1, 0, 0, 0, 0], "socket(AF_VSOCK)"),
    (41, [1, 1, 0, 0, 0, 0], "socket(AF_UNIX)"),
    (272, [0x1000_0000, 0, 0, 0, 0, 0], "unshare(CLONE_NEWUSER)"),
    (165, [0; 6], "mount(nothing)"),
    (437, [-100, 0, 0, 0, 0, 0], "openat2(bad pointers)"),
    (90, [0, 0o4755, 0, 0, 0, 0], "chmod(NULL, 04755)"),
    (1000, [0; 6], "no such call"),
];

fn check(what: &str, c: &Compiled, calls: &[(i64, [i64; 6], &str)]) {
    for (nr, args, name) in calls {
        let d = SeccompData {
            nr: *nr as u32,
            arch: AUDIT_ARCH_X86_64,
            ip: 0,
            args: args.map(|a| a as u64),
        };
        let verdict = run(&c.instructions, &d).expect("the program runs");
        let want = match verdict & 0xffff_0000 {
            0x7fff_0000 | 0x7ffc_0000 => in_child(None, *nr, *args),
            0x0005_0000 => Ok((verdict & 0xffff) as i32),
            0x0000_0000 | 0x8000_0000 | 0x0003_0000 => Err(libc::SIGSYS),
            // No tracer attached: the kernel fails the call with ENOSYS.
            0x7ff0_0000 => Ok(libc::ENOSYS),
            other => panic!("{what}: {name}: verdict {other:#x} not checked here"),
        };
        let got = in_child(Some(c), *nr, *args);
        assert_eq!(got, want, "{what}: {name} (verdict {verdict:#x})");
    }
}

fn fixture(name: &str) -> Compiled {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    profile::compile(&profile::parse(&text).expect("profile")).expect("compile")
}

#[cfg(target_arch = "x86_64")]
#[test]
fn the_kernel_decides_as_the_interpreter_for_each_profile() {
    let default = profile::compile(&profile::Profile::crabcan_default()).expect("compile");
    check("crabcan default", &default, CALLS);
    check("docker", &fixture("docker-config-seccomp.json"), CALLS);
    check("podman", &fixture("podman-config-seccomp.json"), CALLS);
    // The default refuses x32 calls by killing the caller.
    assert_eq!(
        in_child(Some(&default), 0x4000_0000 | 39, [0; 6]),
        Err(libc::SIGSYS),
        "x32 getpid under the default"
    );
}

#[cfg(target_arch = "x86_64")]
#[test]
fn every_action_and_flag_acts_in_the_kernel() {
    // actions.json: ERRNO (default and 95), KILL, KILL_THREAD, KILL_PROCESS, TRAP, TRACE
    // (7 and the default), LOG, ALLOW, a condition; flags LOG and SPEC_ALLOW.
    let calls: &[(i64, [i64; 6], &str)] = &[
        (165, [0; 6], "mount: ERRNO"),
        (166, [0; 6], "umount2: ERRNO(95)"),
        (169, [0; 6], "reboot: KILL"),
        (246, [0; 6], "kexec_load: KILL_THREAD"),
        (175, [0; 6], "init_module: KILL_PROCESS"),
        (101, [-1, 0, 0, 0, 0, 0], "ptrace: TRAP"),
        (321, [9999, 0, 0, 0, 0, 0], "bpf: TRACE(7)"),
        (298, [0, 0, 0, -1, 0, 0], "perf_event_open: TRACE"),
        (272, [0; 6], "unshare(0): LOG"),
        (39, [0; 6], "getpid: ALLOW"),
        (308, [-1, 0, 0, 0, 0, 0], "setns(-1, 0): ERRNO"),
        (308, [-1, 1, 0, 0, 0, 0], "setns(-1, 1): the default, ALLOW"),
    ];
    let c = fixture("profiles/actions.json");
    assert_eq!(c.flag_bits(), 2 | 4, "LOG and SPEC_ALLOW");
    check("actions.json", &c, calls);
    // TSYNC too: a single-threaded child has no other thread to bring along.
    let p = profile::parse(
        r#"{"defaultAction":"SCMP_ACT_ALLOW","flags":["SECCOMP_FILTER_FLAG_TSYNC",
            "SECCOMP_FILTER_FLAG_LOG","SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
            "syscalls":[{"names":["getppid"],"action":"SCMP_ACT_ERRNO","errnoRet":33}]}"#,
    )
    .expect("profile");
    let c = profile::compile(&p).expect("compile");
    assert_eq!(c.flag_bits(), 7);
    assert_eq!(
        in_child(Some(&c), 110, [0; 6]),
        Ok(33),
        "getppid under TSYNC"
    );
}

#[cfg(target_arch = "x86_64")]
#[test]
fn x32_rules_act_on_x32_calls() {
    let p = profile::parse(
        r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86_64","SCMP_ARCH_X32"],
            "syscalls":[{"names":["getppid"],"action":"SCMP_ACT_ERRNO","errnoRet":77}]}"#,
    )
    .expect("profile");
    let c = profile::compile(&p).expect("compile");
    let x32 = |nr: i64| 0x4000_0000 | nr;
    // getppid is 110 on both ABIs: refused on x32 and on x86_64 alike.
    assert_eq!(in_child(Some(&c), x32(110), [0; 6]), Ok(77), "x32 getppid");
    assert_eq!(in_child(Some(&c), 110, [0; 6]), Ok(77), "x86_64 getppid");
    // getpid on x32 passes the filter; the kernel then runs it where x32 is on.
    let x32_on = std::fs::read_to_string("/proc/cmdline")
        .unwrap_or_default()
        .split_whitespace()
        .any(|w| w == "syscall.x32=y");
    let want = if x32_on { 0 } else { libc::ENOSYS };
    assert_eq!(in_child(Some(&c), x32(39), [0; 6]), Ok(want), "x32 getpid");
}
