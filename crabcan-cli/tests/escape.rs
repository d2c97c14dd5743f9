//! Escape attempts from inside a container: each test runs `crabcan-probe ATTEMPT` in a
//! container over the test rootfs and expects `blocked:` with exit 0. Plus positive checks
//! (normal workloads keep working) and the expected capability/seccomp status.
//!
//! Many of these only pass once the confinement (capabilities, no_new_privs, seccomp,
//! /proc masks) is in place; those that only need namespaces and pivot_root pass without it.

mod common;

use std::process::{Command, Output};

use common::{code, crabcan, require_root, rootfs, sh, stderr, stdout};

/// Runs `/bin/crabcan-probe ARGS` in a container with extra crabcan `flags`.
fn probe(flags: &[&str], args: &[&str]) -> Output {
    let root = rootfs();
    let mut c = crabcan();
    c.arg("run").arg("--mount").arg(&root).args(flags);
    c.arg("--").arg("/bin/crabcan-probe").args(args);
    c.output().expect("cannot start crabcan")
}

/// Everything about a run, for failure messages.
fn describe(o: &Output) -> String {
    format!(
        "status: {:?}\n--- stdout ---\n{}--- stderr ---\n{}",
        o.status,
        stdout(o),
        stderr(o)
    )
}

/// Runs the probe as root (or with `flags`) and asserts the attempt was blocked.
fn assert_blocked(flags: &[&str], args: &[&str]) -> Output {
    require_root();
    let o = probe(flags, args);
    let ok = o.status.code() == Some(0) && stdout(&o).starts_with("blocked: ");
    assert!(
        ok,
        "crabcan run {flags:?} -- crabcan-probe {args:?} was not blocked:\n{}",
        describe(&o)
    );
    o
}

/// Runs a positive check and asserts it worked.
fn assert_check(check: &str) {
    require_root();
    let o = probe(&[], &[check]);
    let ok = o.status.code() == Some(0) && stdout(&o).starts_with("ok: ");
    assert!(ok, "crabcan-probe {check} did not work:\n{}", describe(&o));
}

/// One test per attempt that takes no arguments and runs as root.
macro_rules! blocked_as_root {
    ($($test:ident => $attempt:literal,)*) => {
        $(
            #[test]
            fn $test() {
                assert_blocked(&[], &[$attempt]);
            }
        )*

        /// The attempts covered by the tests generated above.
        const PLAIN_ATTEMPTS: &[&str] = &[$($attempt),*];
    };
}

blocked_as_root! {
    mount => "mount",
    umount => "umount",
    pivot_root => "pivot-root",
    open_by_handle_at => "open-by-handle-at",
    mknod_block => "mknod-block",
    dev_nodes => "dev-nodes",
    chmod_suid => "chmod-suid",
    sysrq_trigger => "sysrq-trigger",
    read_kcore => "read-kcore",
    proc_masked => "proc-masked",
    proc_readonly => "proc-readonly",
    write_proc_sys => "write-proc-sys",
    write_sys => "write-sys",
    reboot => "reboot",
    init_module => "init-module",
    finit_module => "finit-module",
    kexec_load => "kexec-load",
    settimeofday => "settimeofday",
    clock_settime => "clock-settime",
    clock_adjtime => "clock-adjtime",
    ptrace => "ptrace",
    unshare_userns => "unshare-userns",
    clone_userns => "clone-userns",
    clone3_userns => "clone3-userns",
    setns => "setns",
    keyctl => "keyctl",
    add_key => "add-key",
    bpf => "bpf",
    perf_event_open => "perf-event-open",
    userfaultfd => "userfaultfd",
    io_uring => "io-uring",
    personality => "personality",
    tiocsti => "tiocsti",
    inherited_fd => "inherited-fd",
    extra_caps => "extra-caps",
    host_network => "host-network",
}

/// Attempts with their own tests below (arguments, another uid, or a host-side check).
const SPECIAL_ATTEMPTS: &[&str] = &[
    "chroot-breakout",
    "sethostname",
    "see-host-process",
    "raw-socket",
];

/// The positive checks, each with a test below.
const CHECKS: &[&str] = &[
    "ok-threads",
    "ok-fork-exec",
    "ok-loopback-tcp",
    "ok-file-write",
    "ok-terminal",
    "ok-rlimit",
];

#[test]
fn chroot_breakout() {
    // A path that exists on the host but not in the rootfs: seeing it means the walk
    // reached the host's root.
    let marker = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    assert!(std::path::Path::new(marker).is_file());
    assert_blocked(&[], &["chroot-breakout", marker]);
}

#[test]
fn sethostname_leaves_the_host_name_alone() {
    require_root();
    let before = nix::unistd::gethostname().expect("gethostname");
    let o = assert_blocked(&[], &["sethostname", "escape-probe-name"]);
    let after = nix::unistd::gethostname().expect("gethostname");
    assert_eq!(before, after, "the host's name changed:\n{}", describe(&o));
}

#[test]
fn see_host_process() {
    let me = std::process::id().to_string();
    assert_blocked(&[], &["see-host-process", &me]);
}

#[test]
fn raw_socket_as_non_root() {
    assert_blocked(&["--uid", "1000"], &["raw-socket"]);
}

#[test]
fn every_attempt_and_check_has_a_test() {
    // `list` touches nothing, so the probe can run it directly on the host.
    let bin = rootfs().join("bin/crabcan-probe");
    let o = Command::new(&bin)
        .arg("list")
        .output()
        .expect("cannot run crabcan-probe list");
    assert_eq!(o.status.code(), Some(0), "{}", describe(&o));
    let listed: Vec<String> = stdout(&o).lines().map(str::to_owned).collect();
    let mut tested: Vec<&str> = PLAIN_ATTEMPTS
        .iter()
        .chain(SPECIAL_ATTEMPTS)
        .chain(CHECKS)
        .copied()
        .collect();
    tested.sort_unstable();
    let mut listed_sorted: Vec<&str> = listed.iter().map(String::as_str).collect();
    listed_sorted.sort_unstable();
    assert_eq!(listed_sorted, tested, "probe attempts and tests differ");
}

#[test]
fn ok_threads() {
    assert_check("ok-threads");
}

#[test]
fn ok_fork_exec() {
    assert_check("ok-fork-exec");
}

#[test]
fn ok_loopback_tcp() {
    assert_check("ok-loopback-tcp");
}

#[test]
fn ok_file_write() {
    assert_check("ok-file-write");
}

#[test]
fn ok_terminal() {
    assert_check("ok-terminal");
}

#[test]
fn ok_rlimit() {
    assert_check("ok-rlimit");
}

#[test]
fn ordinary_shell_workload() {
    require_root();
    let o = sh(
        &[],
        "ls / && ps && echo hi > /x && cat /x && rm /x && ulimit -n",
    );
    assert_eq!(code(&o), 0, "workload failed:\n{}", describe(&o));
    assert!(stdout(&o).lines().any(|l| l == "hi"), "{}", describe(&o));
}

/// The probe's `status` lines as (key, value) pairs.
fn status(flags: &[&str]) -> (Output, Vec<(String, String)>) {
    require_root();
    let o = probe(flags, &["status"]);
    assert_eq!(
        code(&o),
        0,
        "crabcan-probe status failed:\n{}",
        describe(&o)
    );
    let pairs = stdout(&o)
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    (o, pairs)
}

fn field<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// The default 13 capabilities (docker's 14 without SETFCAP) as /proc/self/status prints them.
const DEFAULT_CAPS: &str = "00000000280425fb";

#[test]
fn status_as_root() {
    let (o, s) = status(&[]);
    let want = [
        ("CapBnd", DEFAULT_CAPS),
        ("CapEff", DEFAULT_CAPS),
        ("CapPrm", DEFAULT_CAPS),
        ("NoNewPrivs", "1"),
        ("Seccomp", "2"),
    ];
    for (k, v) in want {
        assert_eq!(field(&s, k), Some(v), "{k} as root:\n{}", describe(&o));
    }
}

#[test]
fn status_as_uid_1000() {
    let (o, s) = status(&["--uid", "1000"]);
    let want = [
        ("CapBnd", DEFAULT_CAPS),
        ("CapEff", "0000000000000000"),
        ("CapPrm", "0000000000000000"),
        ("NoNewPrivs", "1"),
        ("Seccomp", "2"),
    ];
    for (k, v) in want {
        assert_eq!(field(&s, k), Some(v), "{k} as uid 1000:\n{}", describe(&o));
    }
}
