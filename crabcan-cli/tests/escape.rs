//! Escape attempts from inside a container: each test runs `crabcan-probe ATTEMPT` in a
//! container over the test rootfs and expects `blocked:` with exit 0. Plus positive checks
//! (normal workloads keep working) and the expected capability/seccomp status.
//!
//! Many of these only pass once the confinement (capabilities, no_new_privs, seccomp,
//! /proc masks) is in place; those that only need namespaces and pivot_root pass without it.
//! The layer tests at the end run the battery with one layer at a time, so that a hole in
//! one layer is not hidden by another.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::{code, crabcan, output_within, require_root, rootfs, stderr, stdout};

/// How long one container run may take before the test kills it and fails.
const RUN_LIMIT: Duration = Duration::from_secs(30);

/// Runs `/bin/crabcan-probe ARGS` in a container over `root` with extra crabcan `flags`.
fn probe_in(root: &Path, flags: &[&str], args: &[&str]) -> Output {
    let mut c = crabcan();
    c.arg("run").arg("--mount").arg(root).args(flags);
    c.arg("--").arg("/bin/crabcan-probe").args(args);
    output_within(&mut c, RUN_LIMIT)
}

/// Runs `/bin/crabcan-probe ARGS` in a container over the test rootfs.
fn probe(flags: &[&str], args: &[&str]) -> Output {
    probe_in(&rootfs(), flags, args)
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
    create_suid => "create-suid",
    set_fcap => "set-fcap",
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
    vsock_socket => "vsock-socket",
    ia32_syscall => "ia32-syscall",
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
    let o = output_within(Command::new(&bin).arg("list"), RUN_LIMIT);
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
    let mut c = crabcan();
    c.arg("run")
        .arg("--mount")
        .arg(rootfs())
        .args(["--", "/bin/sh", "-c"]);
    c.arg("ls / && ps && echo hi > /x && cat /x && rm /x && ulimit -n");
    let o = output_within(&mut c, RUN_LIMIT);
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

/// The default 13 capabilities (the usual 14 without SETFCAP) as /proc/self/status prints them.
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

#[test]
fn setfcap_comes_back_with_cap_add() {
    let (o, s) = status(&["--cap-add", "SETFCAP"]);
    assert_eq!(
        field(&s, "CapBnd"),
        Some("00000000a80425fb"),
        "CapBnd with --cap-add SETFCAP:\n{}",
        describe(&o)
    );
}

// -------------------------------------------------------------------------------------
// Setuid bits and file capabilities, judged from the host.

/// A copy of the test rootfs under target/, removed when dropped (even after a failure).
struct RootCopy(PathBuf);

impl Drop for RootCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Copies a directory tree: directories, regular files and symlinks, with their modes.
fn copy_tree(from: &Path, to: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(to).unwrap_or_else(|e| panic!("mkdir {}: {e}", to.display()));
    let rd = std::fs::read_dir(from).unwrap_or_else(|e| panic!("list {}: {e}", from.display()));
    for ent in rd {
        let ent = ent.expect("directory entry");
        let (src, dst) = (ent.path(), to.join(ent.file_name()));
        let meta = std::fs::symlink_metadata(&src).expect("lstat");
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&src).expect("readlink");
            std::os::unix::fs::symlink(target, &dst).expect("symlink");
        } else if meta.is_dir() {
            copy_tree(&src, &dst);
        } else if meta.is_file() {
            std::fs::copy(&src, &dst).unwrap_or_else(|e| panic!("copy {}: {e}", src.display()));
        }
        if !meta.file_type().is_symlink() {
            let mode = std::fs::Permissions::from_mode(meta.permissions().mode());
            std::fs::set_permissions(&dst, mode).expect("chmod");
        }
    }
}

/// The `security.capability` attribute of `path` (not following a symlink), if it has one.
fn file_capability(path: &Path) -> Option<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).expect("path");
    let mut buf = [0u8; 64];
    // SAFETY: both strings are NUL-terminated and buf is writable for its length.
    let n = unsafe {
        libc::lgetxattr(
            c.as_ptr(),
            c"security.capability".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    match usize::try_from(n) {
        Ok(n) => Some(buf[..n].to_vec()),
        Err(_) => {
            let e = nix::errno::Errno::last();
            assert_eq!(
                e,
                nix::errno::Errno::ENODATA,
                "getxattr {}: unexpected error",
                path.display()
            );
            None
        }
    }
}

#[test]
fn setid_bits_and_file_capabilities_do_not_reach_the_host() {
    require_root();
    let copy = RootCopy(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../target")
            .join(format!("escape-setid-{}", std::process::id())),
    );
    let _ = std::fs::remove_dir_all(&copy.0);
    copy_tree(&rootfs(), &copy.0);
    // World-writable like /tmp, so that container root may create files in it whatever
    // host uid it maps to.
    let dir = copy.0.join("setid");
    std::fs::create_dir(&dir).expect("mkdir setid");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");

    let mut runs = Vec::new();
    let mut all_blocked = true;
    for attempt in ["set-fcap", "create-suid", "chmod-suid"] {
        let o = probe_in(&copy.0, &[], &[attempt, "/setid"]);
        all_blocked &= o.status.code() == Some(0) && stdout(&o).starts_with("blocked: ");
        runs.push(format!("{attempt}:\n{}", describe(&o)));
    }
    let runs = runs.join("\n");
    // Judge every file the attempts left, from the host.
    let mut seen = Vec::new();
    let mut bad = Vec::new();
    for ent in std::fs::read_dir(&dir).expect("list setid") {
        let p = ent.expect("entry").path();
        let meta = std::fs::symlink_metadata(&p).expect("lstat");
        let bits = meta.permissions().mode() & 0o6000;
        if bits != 0 {
            bad.push(format!("{} has mode bits {bits:o}", p.display()));
        }
        if let Some(v) = file_capability(&p) {
            bad.push(format!("{} has a file capability {v:02x?}", p.display()));
        }
        seen.push(p.file_name().unwrap().to_string_lossy().into_owned());
    }
    assert!(bad.is_empty(), "{}\n{runs}", bad.join("\n"));
    // The files made plain first and then attacked must be there: the check above saw them.
    for name in [
        "setxattr-fcap",
        "fsetxattr-fcap",
        "chmod-4755",
        "chmod-2755",
        "fchmod-4755",
        "fchmodat-4755",
        "fchmodat2-4755",
    ] {
        assert!(
            seen.iter().any(|s| s == name),
            "{name} was not created in the container (seen: {seen:?})\n{runs}"
        );
    }
    // The host's view decides; the probe's own view must agree.
    assert!(all_blocked, "an attempt was not blocked:\n{runs}");
}

// -------------------------------------------------------------------------------------
// One layer at a time. With every capability granted (`--cap-add ALL`) only the seccomp
// filter (and the user namespace) stands; with `--seccomp unconfined` only the capability
// sets (and the user namespace). Each layer must still stop what it is responsible for.

/// Attempts that only the seccomp filter stops: each escapes with neither layer (see
/// `without_filter_and_caps_the_attempts_escape`, or the kernel feature they need).
const SECCOMP_DUTIES: &[&str] = &[
    "mount",
    "umount",
    "pivot-root",
    "setns",
    "reboot",
    "ptrace",
    "unshare-userns",
    "clone-userns",
    "clone3-userns",
    "keyctl",
    "add-key",
    "personality",
    "chmod-suid",
    "create-suid",
    "perf-event-open",
    "userfaultfd",
    "io-uring",
    "tiocsti",
    "vsock-socket",
    "ia32-syscall",
];

/// Attempts the filter refuses too, though the user namespace stops them anyway.
const SECCOMP_ALSO: &[&str] = &[
    "bpf",
    "open-by-handle-at",
    "init-module",
    "finit-module",
    "kexec-load",
    "settimeofday",
    "clock-settime",
    "clock-adjtime",
];

/// Attempts the dropped capabilities stop with no filter at all.
const CAPS_DUTIES: &[&str] = &[
    "set-fcap",
    "mount",
    "umount",
    "pivot-root",
    "setns",
    "reboot",
    "extra-caps",
];

/// Attempts that must escape with neither layer on any kernel able to run the suite: the
/// proof that the layer tests can see a hole. (vsock, 32-bit emulation, perf events,
/// userfaultfd, io_uring and TIOCSTI depend on kernel options, so they are left out here.)
const LIVE_WITHOUT_BOTH: &[&str] = &[
    "mount",
    "umount",
    "pivot-root",
    "setns",
    "reboot",
    "ptrace",
    "unshare-userns",
    "clone-userns",
    "clone3-userns",
    "keyctl",
    "add-key",
    "personality",
    "chmod-suid",
    "create-suid",
    "set-fcap",
    "extra-caps",
];

/// Runs each attempt with `flags` and returns the runs whose first line does not start
/// with `want` (and exit with `code`).
fn runs_not(flags: &[&str], attempts: &[&str], want: &str, want_code: i32) -> Vec<String> {
    require_root();
    let mut wrong = Vec::new();
    for a in attempts {
        let o = probe(flags, &[a]);
        let first = stdout(&o).lines().next().unwrap_or("").to_owned();
        if o.status.code() != Some(want_code) || !first.starts_with(want) {
            wrong.push(format!("{a}:\n{}", describe(&o)));
        }
    }
    wrong
}

#[test]
fn seccomp_alone_blocks_its_attempts() {
    let all: Vec<&str> = SECCOMP_DUTIES.iter().chain(SECCOMP_ALSO).copied().collect();
    let wrong = runs_not(&["--cap-add", "ALL"], &all, "blocked: ", 0);
    assert!(
        wrong.is_empty(),
        "with every capability, the filter let through:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn caps_alone_block_their_attempts() {
    let wrong = runs_not(&["--seccomp", "unconfined"], CAPS_DUTIES, "blocked: ", 0);
    assert!(
        wrong.is_empty(),
        "without the filter, the capability sets let through:\n{}",
        wrong.join("\n")
    );
    // A non-root command holds no capability at all, whatever the bounding set.
    let o = probe(
        &["--seccomp", "unconfined", "--uid", "1000"],
        &["raw-socket"],
    );
    assert!(
        o.status.code() == Some(0) && stdout(&o).starts_with("blocked: "),
        "raw socket as uid 1000 without the filter:\n{}",
        describe(&o)
    );
}

#[test]
fn without_filter_and_caps_the_attempts_escape() {
    let flags = ["--seccomp", "unconfined", "--cap-add", "ALL"];
    let wrong = runs_not(&flags, LIVE_WITHOUT_BOTH, "ESCAPED: ", 1);
    assert!(
        wrong.is_empty(),
        "with neither layer these did not escape, so the layer tests cannot see a hole in \
         them:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn a_hung_container_fails_the_test_at_the_deadline() {
    require_root();
    let marker = format!("escape-deadline-{}", std::process::id());
    let root = rootfs();
    let started = std::time::Instant::now();
    let r = std::panic::catch_unwind(|| {
        let mut c = crabcan();
        c.arg("run").arg("--mount").arg(&root);
        c.args(["--", "/bin/sh", "-c", &format!("sleep 30; : {marker}")]);
        output_within(&mut c, Duration::from_millis(500))
    });
    let e = r.expect_err("a 30 s container finished within half a second");
    let msg = e
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_else(|| "(no message)".into());
    assert!(msg.contains("killed"), "{msg}");
    assert!(started.elapsed() < Duration::from_secs(10));
    // crabcan was killed; the container must go with it.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !common::processes_with(&marker).is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(common::processes_with(&marker), Vec::<i32>::new());
}

/// Runs every plain attempt under `flags`, as the user `as_uid` (root when `None`), and
/// returns those that were not blocked, with what the probe said.
fn not_blocked_under(flags: &[&str], as_uid: Option<u32>) -> Vec<String> {
    let root = rootfs();
    PLAIN_ATTEMPTS
        .iter()
        .filter_map(|a| {
            let mut c = crabcan();
            if let Some(uid) = as_uid {
                std::os::unix::process::CommandExt::uid(&mut c, uid);
                std::os::unix::process::CommandExt::gid(&mut c, uid);
            }
            c.arg("run").arg("--mount").arg(&root).args(flags);
            c.args(["--", "/bin/crabcan-probe", a]);
            let o = output_within(&mut c, RUN_LIMIT);
            let blocked = o.status.code() == Some(0) && stdout(&o).starts_with("blocked: ");
            (!blocked).then(|| format!("{a}: {}", describe(&o)))
        })
        .collect()
}

#[test]
fn the_battery_holds_with_the_identity_map() {
    // Root inside is host root on what it is given (--userns host): the other layers must
    // still block every attempt.
    require_root();
    let escaped = not_blocked_under(&["--userns", "host"], None);
    assert!(
        escaped.is_empty(),
        "escaped under --userns host:\n{}",
        escaped.join("\n")
    );
}

#[test]
fn the_battery_holds_for_an_ordinary_user() {
    // crabcan started by an ordinary user (uid 65534): container root is that user.
    require_root();
    let escaped = not_blocked_under(&[], Some(65534));
    assert!(
        escaped.is_empty(),
        "escaped as uid 65534:\n{}",
        escaped.join("\n")
    );
}
